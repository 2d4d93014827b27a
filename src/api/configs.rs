//! DescribeConfigs, AlterConfigs and IncrementalAlterConfigs for topics and brokers,
//! by Kafka's config names, with sources, defaults and synonyms.

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{
    alter_configs_response, incremental_alter_configs_response, AlterConfigsRequest,
    AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};

use super::authorize::Access;
use super::{str_bytes, Broker};
use crate::admin::{AdminError, AdminResult};
use crate::config::broker::BROKER_KEYS;
use crate::config::spec::Kind;
use crate::config::topic::{topic_key, TOPIC_KEYS};
use crate::config::ConfigSource;
use crate::error::code;
use crate::metadata::acl::Operation;

pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;
pub const RESOURCE_GROUP: i8 = 32;

#[allow(clippy::too_many_arguments)]
fn entry(
    name: &str,
    value: &str,
    source: ConfigSource,
    kind: Kind,
    doc: &str,
    read_only: bool,
    synonyms: Vec<DescribeConfigsSynonym>,
    version: i16,
    docs: bool,
) -> DescribeConfigsResourceResult {
    let value = if value.is_empty() && !matches!(kind, Kind::Str) {
        None
    } else {
        Some(str_bytes(value))
    };
    let mut r = DescribeConfigsResourceResult::default()
        .with_name(str_bytes(name))
        .with_value(if kind.kafka_type() == 9 { None } else { value })
        .with_read_only(read_only)
        .with_config_source(source as i8)
        .with_is_sensitive(kind.kafka_type() == 9)
        .with_synonyms(synonyms);
    if version >= 3 {
        r = r.with_config_type(kind.kafka_type());
        if docs {
            r = r.with_documentation(Some(str_bytes(doc)));
        }
    }
    r
}

/// The ACL check for a config resource: DESCRIBE_CONFIGS or ALTER_CONFIGS on the topic,
/// on the cluster for broker resources, on the group for group resources.
fn config_access(
    access: &Access,
    resource_type: i8,
    name: &str,
    operation: Operation,
) -> Result<(), i16> {
    let (allowed, refused) = match resource_type {
        RESOURCE_TOPIC => (
            access.topic(operation, name),
            code::TOPIC_AUTHORIZATION_FAILED,
        ),
        RESOURCE_GROUP => (
            access.group(operation, name),
            code::GROUP_AUTHORIZATION_FAILED,
        ),
        // BROKER, BROKER_LOGGER and anything else cluster-wide.
        _ => (
            access.cluster(operation),
            code::CLUSTER_AUTHORIZATION_FAILED,
        ),
    };
    if allowed {
        Ok(())
    } else {
        Err(refused)
    }
}

fn wanted(keys: &Option<Vec<kafka_protocol::protocol::StrBytes>>, name: &str) -> bool {
    keys.as_ref()
        .is_none_or(|k| k.is_empty() || k.iter().any(|s| s.as_str() == name))
}

pub fn handle_describe_configs(
    broker: &Broker,
    access: &Access,
    request: DescribeConfigsRequest,
    version: i16,
) -> DescribeConfigsResponse {
    let image = broker.admin.image();
    let results = request
        .resources
        .into_iter()
        .map(|res| {
            let base = DescribeConfigsResult::default()
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name.clone());
            let name = res.resource_name.as_str();
            if let Err(error) =
                config_access(access, res.resource_type, name, Operation::DescribeConfigs)
            {
                return base
                    .with_error_code(error)
                    .with_error_message(Some(str_bytes(
                        "not authorized to describe these configs",
                    )));
            }
            match res.resource_type {
                RESOURCE_TOPIC => {
                    let Some(topic) = image.topic_by_name(name) else {
                        return base
                            .with_error_code(code::UNKNOWN_TOPIC_OR_PARTITION)
                            .with_error_message(Some(str_bytes(&format!(
                                "topic '{name}' does not exist"
                            ))));
                    };
                    let configs = TOPIC_KEYS
                        .iter()
                        .filter(|k| wanted(&res.configuration_keys, k.spec.name))
                        .map(|k| {
                            let chain = broker.config.topic_synonyms(
                                k,
                                &topic.configs,
                                &image.broker_configs,
                            );
                            let (_, value, source) = chain[0].clone();
                            let synonyms = if request.include_synonyms {
                                chain
                                    .iter()
                                    .map(|(n, v, s)| {
                                        DescribeConfigsSynonym::default()
                                            .with_name(str_bytes(n))
                                            .with_value(Some(str_bytes(v)))
                                            .with_source(*s as i8)
                                    })
                                    .collect()
                            } else {
                                Vec::new()
                            };
                            entry(
                                k.spec.name,
                                &value,
                                source,
                                k.spec.kind,
                                k.spec.doc,
                                false,
                                synonyms,
                                version,
                                request.include_documentation,
                            )
                        })
                        .collect();
                    base.with_error_code(code::NONE).with_configs(configs)
                }
                RESOURCE_BROKER => {
                    if !name.is_empty() && name != broker.config.node_id.to_string() {
                        return base
                            .with_error_code(code::INVALID_REQUEST)
                            .with_error_message(Some(str_bytes(&format!(
                                "broker '{name}' is not this broker ({})",
                                broker.config.node_id
                            ))));
                    }
                    let configs = BROKER_KEYS
                        .iter()
                        .filter(|k| wanted(&res.configuration_keys, k.name))
                        .map(|k| {
                            let (value, source) =
                                broker.config.broker_value(k.name, &image.broker_configs);
                            let dynamic = TOPIC_KEYS
                                .iter()
                                .any(|t| t.broker_synonyms.contains(&k.name));
                            let synonyms = if request.include_synonyms {
                                // A secret's synonym is as null as its value (Kafka).
                                let shown =
                                    (!matches!(k.kind, Kind::Password)).then(|| str_bytes(&value));
                                vec![DescribeConfigsSynonym::default()
                                    .with_name(str_bytes(k.name))
                                    .with_value(shown)
                                    .with_source(source as i8)]
                            } else {
                                Vec::new()
                            };
                            entry(
                                k.name,
                                &value,
                                source,
                                k.kind,
                                k.doc,
                                !dynamic,
                                synonyms,
                                version,
                                request.include_documentation,
                            )
                        })
                        .collect();
                    base.with_error_code(code::NONE).with_configs(configs)
                }
                other => base
                    .with_error_code(code::INVALID_REQUEST)
                    .with_error_message(Some(str_bytes(&format!(
                        "resource type {other} is not supported"
                    )))),
            }
        })
        .collect::<Vec<_>>();
    // As Kafka answers: the resources refused by the authorizer come last.
    let mut results = results;
    results.sort_by_key(|r| {
        matches!(
            r.error_code,
            code::TOPIC_AUTHORIZATION_FAILED
                | code::GROUP_AUTHORIZATION_FAILED
                | code::CLUSTER_AUTHORIZATION_FAILED
        )
    });
    DescribeConfigsResponse::default().with_results(results)
}

/// Applies `changes` to `current`. `None` deletes; ops as in IncrementalAlterConfigs.
fn apply_ops(
    current: &BTreeMap<String, String>,
    ops: &[(String, i8, Option<String>)],
    is_topic: bool,
) -> AdminResult<BTreeMap<String, String>> {
    let mut next = current.clone();
    for (name, op, value) in ops {
        let kind = if is_topic {
            topic_key(name).map(|k| k.spec.kind)
        } else {
            crate::config::broker::broker_key(name).map(|k| k.kind)
        };
        let Some(kind) = kind else {
            return Err(AdminError::new(
                code::INVALID_CONFIG,
                format!("unknown config '{name}'"),
            ));
        };
        match op {
            0 => match value {
                Some(v) => {
                    next.insert(name.clone(), v.clone());
                }
                None => {
                    return Err(AdminError::new(
                        code::INVALID_CONFIG,
                        format!("SET of '{name}' needs a value"),
                    ))
                }
            },
            1 => {
                next.remove(name);
            }
            2 | 3 => {
                if !matches!(kind, Kind::List { .. }) {
                    return Err(AdminError::new(
                        code::INVALID_CONFIG,
                        format!("APPEND/SUBTRACT only apply to list configs; '{name}' is not one"),
                    ));
                }
                let existing = next
                    .get(name)
                    .cloned()
                    .or_else(|| {
                        if is_topic {
                            topic_key(name).map(|k| k.spec.default.to_string())
                        } else {
                            None
                        }
                    })
                    .unwrap_or_default();
                let mut items: Vec<String> = existing
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect();
                for v in value
                    .as_deref()
                    .unwrap_or("")
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                {
                    if *op == 2 {
                        if !items.iter().any(|i| i == v) {
                            items.push(v.to_string());
                        }
                    } else {
                        items.retain(|i| i != v);
                    }
                }
                next.insert(name.clone(), items.join(","));
            }
            other => {
                return Err(AdminError::new(
                    code::INVALID_REQUEST,
                    format!("unknown config operation {other}"),
                ))
            }
        }
    }
    Ok(next)
}

/// `alter`, after ALTER_CONFIGS on the resource.
async fn authorized_alter(
    broker: &Broker,
    access: &Access,
    resource_type: i8,
    resource_name: &str,
    ops: Vec<(String, i8, Option<String>)>,
    replace: bool,
    validate_only: bool,
) -> AdminResult<()> {
    config_access(
        access,
        resource_type,
        resource_name,
        Operation::AlterConfigs,
    )
    .map_err(|error| AdminError::new(error, "not authorized to alter these configs"))?;
    alter(
        broker,
        resource_type,
        resource_name,
        ops,
        replace,
        validate_only,
    )
    .await
}

async fn alter(
    broker: &Broker,
    resource_type: i8,
    resource_name: &str,
    ops: Vec<(String, i8, Option<String>)>,
    replace: bool,
    validate_only: bool,
) -> AdminResult<()> {
    let image = broker.admin.image();
    match resource_type {
        RESOURCE_TOPIC => {
            let topic = image.topic_by_name(resource_name).ok_or_else(|| {
                AdminError::new(
                    code::UNKNOWN_TOPIC_OR_PARTITION,
                    format!("topic '{resource_name}' does not exist"),
                )
            })?;
            let base = if replace {
                BTreeMap::new()
            } else {
                topic.configs.clone()
            };
            let next = apply_ops(&base, &ops, true)?;
            broker
                .admin
                .set_topic_configs(resource_name, next, validate_only)
                .await
        }
        RESOURCE_BROKER => {
            if !resource_name.is_empty() && resource_name != broker.config.node_id.to_string() {
                return Err(AdminError::new(
                    code::INVALID_REQUEST,
                    format!("broker '{resource_name}' is not this broker"),
                ));
            }
            let base = if replace {
                BTreeMap::new()
            } else {
                image.broker_configs.clone()
            };
            let next = apply_ops(&base, &ops, false)?;
            broker.admin.set_broker_configs(next, validate_only).await
        }
        other => Err(AdminError::new(
            code::INVALID_REQUEST,
            format!("resource type {other} is not supported"),
        )),
    }
}

/// The error code and message fields of an alter result.
fn outcome_fields(outcome: AdminResult<()>) -> (i16, Option<kafka_protocol::protocol::StrBytes>) {
    match outcome {
        Ok(()) => (code::NONE, None),
        Err(e) => (e.code, Some(str_bytes(&e.message))),
    }
}

pub async fn handle_alter_configs(
    broker: &Broker,
    access: &Access,
    request: AlterConfigsRequest,
) -> AlterConfigsResponse {
    let mut responses = Vec::new();
    for res in request.resources {
        let ops = res
            .configs
            .iter()
            .filter_map(|c| {
                c.value.as_ref().map(|v| {
                    (
                        c.name.as_str().to_string(),
                        0i8,
                        Some(v.as_str().to_string()),
                    )
                })
            })
            .collect();
        let outcome = authorized_alter(
            broker,
            access,
            res.resource_type,
            res.resource_name.as_str(),
            ops,
            true,
            request.validate_only,
        )
        .await;
        let (error_code, error_message) = outcome_fields(outcome);
        responses.push(
            alter_configs_response::AlterConfigsResourceResponse::default()
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name)
                .with_error_code(error_code)
                .with_error_message(error_message),
        );
    }
    AlterConfigsResponse::default().with_responses(responses)
}

pub async fn handle_incremental_alter_configs(
    broker: &Broker,
    access: &Access,
    request: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut responses = Vec::new();
    for res in request.resources {
        let ops = res
            .configs
            .iter()
            .map(|c| {
                (
                    c.name.as_str().to_string(),
                    c.config_operation,
                    c.value.as_ref().map(|v| v.as_str().to_string()),
                )
            })
            .collect();
        let outcome = authorized_alter(
            broker,
            access,
            res.resource_type,
            res.resource_name.as_str(),
            ops,
            false,
            request.validate_only,
        )
        .await;
        let (error_code, error_message) = outcome_fields(outcome);
        responses.push(
            incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name)
                .with_error_code(error_code)
                .with_error_message(error_message),
        );
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}
