//! CreateAcls (30), DescribeAcls (29) and DeleteAcls (31): ACLs kept in the metadata
//! quorum, as `kafka-acls` and the admin clients manage them. Creating or deleting
//! needs ALTER on the cluster, describing DESCRIBE; without an authorizer every
//! request is answered SECURITY_DISABLED, as Kafka does.

use std::collections::BTreeMap;

use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::authorize::Access;
use super::{str_bytes, Broker};
use crate::error::{apply_error_code, code, metadata_error_code};
use crate::metadata::acl::{
    AclBinding, AclFilter, Operation, PatternFilter, PatternType, Permission, ResourceType,
    ANY_CODE, CLUSTER_RESOURCE_NAME, MATCH_CODE,
};
use crate::metadata::{ApplyReply, MetadataRecord};

const NO_AUTHORIZER: &str = "No Authorizer is configured.";

/// A binding from CreateAcls, checked as Kafka's controller checks it.
fn binding(c: &AclCreation) -> Result<AclBinding, String> {
    let resource_type = ResourceType::from_code(c.resource_type)
        .ok_or_else(|| format!("invalid resource type {}", c.resource_type))?;
    let pattern = PatternType::from_code(c.resource_pattern_type)
        .ok_or_else(|| format!("invalid pattern type {}", c.resource_pattern_type))?;
    let operation = Operation::from_code(c.operation)
        .ok_or_else(|| format!("invalid operation {}", c.operation))?;
    let permission = Permission::from_code(c.permission_type)
        .ok_or_else(|| format!("invalid permission type {}", c.permission_type))?;
    let name = c.resource_name.to_string();
    if name.is_empty() {
        return Err("invalid empty resource name".into());
    }
    if resource_type == ResourceType::Cluster && name != CLUSTER_RESOURCE_NAME {
        return Err(format!(
            "the only valid name for the CLUSTER resource is {CLUSTER_RESOURCE_NAME}"
        ));
    }
    let principal = c.principal.to_string();
    match principal.split_once(':') {
        Some((kind, who)) if !kind.is_empty() && !who.is_empty() => {}
        _ => {
            return Err(format!(
                "could not parse principal '{principal}' (Type:name)"
            ))
        }
    }
    let host = c.host.to_string();
    if host.is_empty() {
        return Err("invalid empty host".into());
    }
    Ok(AclBinding {
        resource_type,
        pattern,
        name,
        principal,
        host,
        operation,
        permission,
    })
}

/// A DescribeAcls or DeleteAcls filter from its wire fields.
#[allow(clippy::too_many_arguments)]
fn filter(
    resource_type: i8,
    name: &Option<StrBytes>,
    pattern: i8,
    principal: &Option<StrBytes>,
    host: &Option<StrBytes>,
    operation: i8,
    permission: i8,
) -> Result<AclFilter, String> {
    fn any_or<T>(code: i8, from: fn(i8) -> Option<T>, what: &str) -> Result<Option<T>, String> {
        if code == ANY_CODE {
            return Ok(None);
        }
        from(code)
            .map(Some)
            .ok_or_else(|| format!("invalid {what} filter {code}"))
    }
    let pattern = match pattern {
        ANY_CODE => PatternFilter::Any,
        MATCH_CODE => PatternFilter::Match,
        p => PatternFilter::Exactly(
            PatternType::from_code(p).ok_or_else(|| format!("invalid pattern type filter {p}"))?,
        ),
    };
    Ok(AclFilter {
        resource_type: any_or(resource_type, ResourceType::from_code, "resource type")?,
        name: name.as_ref().map(|n| n.to_string()),
        pattern,
        principal: principal.as_ref().map(|p| p.to_string()),
        host: host.as_ref().map(|h| h.to_string()),
        operation: any_or(operation, Operation::from_code, "operation")?,
        permission: any_or(permission, Permission::from_code, "permission type")?,
    })
}

/// Why a CreateAcls or DeleteAcls is refused as a whole: no authorizer, or no ALTER
/// on the cluster.
fn change_refused(broker: &Broker, access: &Access) -> Option<(i16, &'static str)> {
    if !broker.authorizer.enabled() {
        Some((code::SECURITY_DISABLED, NO_AUTHORIZER))
    } else if !access.cluster(Operation::Alter) {
        Some((
            code::CLUSTER_AUTHORIZATION_FAILED,
            "not authorized to change ACLs (ALTER on the cluster)",
        ))
    } else {
        None
    }
}

pub async fn handle_create_acls(
    broker: &Broker,
    access: &Access,
    request: CreateAclsRequest,
) -> CreateAclsResponse {
    let fail = |code: i16, message: &str| {
        AclCreationResult::default()
            .with_error_code(code)
            .with_error_message(Some(str_bytes(message)))
    };
    if let Some((code, message)) = change_refused(broker, access) {
        return CreateAclsResponse::default().with_results(
            request
                .creations
                .iter()
                .map(|_| fail(code, message))
                .collect(),
        );
    }
    let checked: Vec<Result<AclBinding, String>> = request.creations.iter().map(binding).collect();
    let valid: Vec<AclBinding> = checked.iter().filter_map(|b| b.clone().ok()).collect();
    // The valid ones are committed together, in one record.
    let outcome = if valid.is_empty() {
        Ok(())
    } else {
        match broker
            .admin
            .quorum
            .propose(MetadataRecord::CreateAcls { bindings: valid })
            .await
        {
            Ok(ApplyReply::Refused(e)) => Err((apply_error_code(&e), e.to_string())),
            Ok(_) => Ok(()),
            Err(e) => Err((metadata_error_code(&e), e.to_string())),
        }
    };
    CreateAclsResponse::default().with_results(
        checked
            .into_iter()
            .map(|b| match (b, &outcome) {
                (Err(reason), _) => fail(code::INVALID_REQUEST, &reason),
                (Ok(_), Err((code, message))) => fail(*code, message),
                (Ok(_), Ok(())) => AclCreationResult::default(),
            })
            .collect(),
    )
}

pub fn handle_describe_acls(
    broker: &Broker,
    access: &Access,
    request: DescribeAclsRequest,
) -> DescribeAclsResponse {
    let error = |code: i16, message: &str| {
        DescribeAclsResponse::default()
            .with_error_code(code)
            .with_error_message(Some(str_bytes(message)))
    };
    if !broker.authorizer.enabled() {
        return error(
            code::SECURITY_DISABLED,
            "No Authorizer is configured on the broker",
        );
    }
    if !access.cluster(Operation::Describe) {
        return error(
            code::CLUSTER_AUTHORIZATION_FAILED,
            "not authorized to describe ACLs (DESCRIBE on the cluster)",
        );
    }
    let filter = match filter(
        request.resource_type_filter,
        &request.resource_name_filter,
        request.pattern_type_filter,
        &request.principal_filter,
        &request.host_filter,
        request.operation,
        request.permission_type,
    ) {
        Ok(f) => f,
        Err(reason) => return error(code::INVALID_REQUEST, &reason),
    };
    let image = broker.admin.image();
    let mut resources: BTreeMap<(ResourceType, PatternType, &str), Vec<AclDescription>> =
        BTreeMap::new();
    for b in image.acls.iter().filter(|b| filter.matches(b)) {
        resources
            .entry((b.resource_type, b.pattern, &b.name))
            .or_default()
            .push(
                AclDescription::default()
                    .with_principal(str_bytes(&b.principal))
                    .with_host(str_bytes(&b.host))
                    .with_operation(b.operation.code())
                    .with_permission_type(b.permission.code()),
            );
    }
    DescribeAclsResponse::default().with_resources(
        resources
            .into_iter()
            .map(|((resource_type, pattern, name), acls)| {
                DescribeAclsResource::default()
                    .with_resource_type(resource_type.code())
                    .with_resource_name(str_bytes(name))
                    .with_pattern_type(pattern.code())
                    .with_acls(acls)
            })
            .collect(),
    )
}

pub async fn handle_delete_acls(
    broker: &Broker,
    access: &Access,
    request: DeleteAclsRequest,
) -> DeleteAclsResponse {
    let fail = |code: i16, message: &str| {
        DeleteAclsFilterResult::default()
            .with_error_code(code)
            .with_error_message(Some(str_bytes(message)))
    };
    if let Some((code, message)) = change_refused(broker, access) {
        return DeleteAclsResponse::default().with_filter_results(
            request
                .filters
                .iter()
                .map(|_| fail(code, message))
                .collect(),
        );
    }
    let checked: Vec<Result<AclFilter, String>> = request
        .filters
        .iter()
        .map(|f| {
            filter(
                f.resource_type_filter,
                &f.resource_name_filter,
                f.pattern_type_filter,
                &f.principal_filter,
                &f.host_filter,
                f.operation,
                f.permission_type,
            )
        })
        .collect();
    let valid: Vec<AclFilter> = checked.iter().filter_map(|f| f.clone().ok()).collect();
    let outcome = if valid.is_empty() {
        Ok(Vec::new())
    } else {
        match broker
            .admin
            .quorum
            .propose(MetadataRecord::DeleteAcls { filters: valid })
            .await
        {
            Ok(ApplyReply::DeletedAcls(deleted)) => Ok(deleted),
            Ok(ApplyReply::Refused(e)) => Err((apply_error_code(&e), e.to_string())),
            Ok(other) => Err((code::UNKNOWN_SERVER_ERROR, format!("{other:?}"))),
            Err(e) => Err((metadata_error_code(&e), e.to_string())),
        }
    };
    let mut deleted = match &outcome {
        Ok(d) => d.clone().into_iter(),
        Err(_) => Vec::new().into_iter(),
    };
    DeleteAclsResponse::default().with_filter_results(
        checked
            .into_iter()
            .map(|f| match (f, &outcome) {
                (Err(reason), _) => fail(code::INVALID_REQUEST, &reason),
                (Ok(_), Err((code, message))) => fail(*code, message),
                (Ok(_), Ok(_)) => DeleteAclsFilterResult::default().with_matching_acls(
                    deleted
                        .next()
                        .unwrap_or_default()
                        .into_iter()
                        .map(|b| {
                            DeleteAclsMatchingAcl::default()
                                .with_resource_type(b.resource_type.code())
                                .with_resource_name(str_bytes(&b.name))
                                .with_pattern_type(b.pattern.code())
                                .with_principal(str_bytes(&b.principal))
                                .with_host(str_bytes(&b.host))
                                .with_operation(b.operation.code())
                                .with_permission_type(b.permission.code())
                        })
                        .collect(),
                ),
            })
            .collect(),
    )
}
