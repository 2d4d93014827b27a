//! Topic, partition and config changes: validated here, then proposed to the metadata
//! quorum; once applied, local replicas are reconciled so the change is usable when
//! the request is answered. Imports `replication`, `metadata`, `config`, `error`.

use std::collections::BTreeMap;
use std::sync::Arc;

use tracing::{info, warn};
use uuid::Uuid;

use crate::config::topic::{validate_topic_config, validate_topic_set};
use crate::config::BrokerConfig;
use crate::error::{apply_error_code, code, metadata_error_code};
use crate::metadata::{
    ApplyReply, ClusterImage, MetadataQuorum, MetadataRecord, PartitionImage, TopicImage, NO_LEADER,
};
use placement::{Candidate, PlacementError};

pub mod placement;

/// A new partition on `replicas`: the ISR is the replicas that are up (all of them
/// unless an explicit assignment names a fenced broker), the leader the first of them.
fn new_partition(image: &ClusterImage, replicas: Vec<i32>) -> PartitionImage {
    let isr: Vec<i32> = if image.brokers.is_empty() {
        replicas.clone()
    } else {
        replicas
            .iter()
            .copied()
            .filter(|r| image.is_usable(*r))
            .collect()
    };
    PartitionImage {
        leader: isr.first().copied().unwrap_or(NO_LEADER),
        isr,
        replicas,
        leader_epoch: 0,
        partition_epoch: 0,
        adding: Vec::new(),
        removing: Vec::new(),
    }
}
use crate::replication::ReplicaManager;

/// An admin failure: the Kafka code to answer with and a message for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (error {code})")]
pub struct AdminError {
    pub code: i16,
    pub message: String,
}

impl AdminError {
    pub fn new(code: i16, message: impl Into<String>) -> Self {
        AdminError {
            code,
            message: message.into(),
        }
    }
}

pub type AdminResult<T> = Result<T, AdminError>;

/// Kafka's topic name rules.
pub fn validate_topic_name(name: &str) -> AdminResult<()> {
    let invalid = |why: &str| {
        Err(AdminError::new(
            code::INVALID_TOPIC_EXCEPTION,
            format!("topic name '{name}' is invalid: {why}"),
        ))
    };
    if name.is_empty() {
        return invalid("it is empty");
    }
    if name == "." || name == ".." {
        return invalid("'.' and '..' are not allowed");
    }
    if name.starts_with(crate::log::manager::METADATA_DIR_PREFIX) {
        return invalid("the name is reserved for cluster metadata");
    }
    if name.len() > 249 {
        return invalid("it is longer than 249 characters");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-')
    {
        return invalid("only ASCII letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}

/// Topics whose names differ only by '.' versus '_' collide in metric names; Kafka
/// refuses the second one.
fn colliding_topic<'a>(image: &'a ClusterImage, name: &str) -> Option<&'a str> {
    let norm = name.replace('.', "_");
    image
        .topics
        .values()
        .map(|t| t.name.as_str())
        .find(|existing| *existing != name && existing.replace('.', "_") == norm)
}

/// Most partitions one topic may have (a guard against typos such as 1000000).
const MAX_PARTITIONS: i32 = 100_000;

fn check_partition_limit(count: i32) -> AdminResult<()> {
    if count > MAX_PARTITIONS {
        return Err(AdminError::new(
            code::INVALID_PARTITIONS,
            format!("{count} partitions is more than this broker allows ({MAX_PARTITIONS})"),
        ));
    }
    Ok(())
}

fn existing_topic<'a>(image: &'a ClusterImage, name: &str) -> AdminResult<&'a TopicImage> {
    image.topic_by_name(name).ok_or_else(|| {
        AdminError::new(
            code::UNKNOWN_TOPIC_OR_PARTITION,
            format!("topic '{name}' does not exist"),
        )
    })
}

pub struct Admin {
    pub config: Arc<BrokerConfig>,
    pub quorum: MetadataQuorum,
    pub replicas: Arc<ReplicaManager>,
}

/// What a successful topic creation produced.
#[derive(Debug, Clone)]
pub struct CreatedTopic {
    pub id: Uuid,
    pub num_partitions: i32,
    pub replication_factor: i16,
}

impl Admin {
    pub fn image(&self) -> Arc<ClusterImage> {
        self.quorum.view().current()
    }

    async fn propose(&self, record: MetadataRecord) -> AdminResult<ApplyReply> {
        let reply = self
            .quorum
            .propose(record)
            .await
            .map_err(|e| AdminError::new(metadata_error_code(&e), e.to_string()))?;
        if let ApplyReply::Refused(e) = &reply {
            return Err(AdminError::new(apply_error_code(e), e.to_string()));
        }
        // Make the change usable locally before answering.
        if let Err(e) = self.replicas.reconcile(&self.image()) {
            warn!(error = %e, "reconciling replicas after a metadata change failed");
            return Err(AdminError::new(code::KAFKA_STORAGE_ERROR, e.to_string()));
        }
        Ok(reply)
    }

    /// Validates a set of topic configs (names, values and cross-key rules).
    pub fn validate_topic_configs(
        &self,
        image: &ClusterImage,
        configs: &BTreeMap<String, String>,
    ) -> AdminResult<()> {
        for (k, v) in configs {
            validate_topic_config(k, Some(v))
                .map_err(|m| AdminError::new(code::INVALID_CONFIG, m))?;
        }
        let effective = self
            .config
            .effective_topic_configs(configs, &image.broker_configs);
        validate_topic_set(&effective).map_err(|m| AdminError::new(code::INVALID_CONFIG, m))?;
        let compact = effective.get("cleanup.policy").is_some_and(|v| {
            v.split(',')
                .any(|p| p.trim().eq_ignore_ascii_case("compact"))
        });
        let asked = configs
            .get("remote.storage.enable")
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
        if asked && compact {
            return Err(AdminError::new(
                code::INVALID_CONFIG,
                "remote.storage.enable=true is not supported with cleanup.policy=compact"
                    .to_string(),
            ));
        }
        if asked && !self.config.remote_storage_system_enable {
            // Kafka's wording for the same refusal.
            return Err(AdminError::new(
                code::INVALID_CONFIG,
                "Tiered Storage functionality is disabled in the broker \
                 (remote.log.storage.system.enable=false)"
                    .to_string(),
            ));
        }
        Ok(())
    }

    /// Brokers that may receive new replicas: registered and not fenced or stopping.
    /// Before this broker's own registration is applied (start-up), itself.
    fn candidates(&self, image: &ClusterImage) -> Vec<Candidate> {
        let mut out: Vec<Candidate> = image
            .usable_brokers()
            .map(|b| Candidate {
                id: b.node_id,
                rack: b.rack.clone(),
            })
            .collect();
        if out.is_empty() && image.brokers.is_empty() {
            out.push(Candidate {
                id: self.config.node_id,
                rack: self.config.rack.clone(),
            });
        }
        out
    }

    /// Kafka's placement of `count` new partitions numbered from `first_index`: leaders
    /// spread over brokers, replicas over racks when every broker has one.
    fn assign(
        &self,
        image: &ClusterImage,
        first_index: usize,
        count: usize,
        replication_factor: i16,
    ) -> AdminResult<Vec<PartitionImage>> {
        let mut brokers = self.candidates(image);
        let start = rand::random::<u32>() as usize;
        let shift = rand::random::<u32>() as usize;
        let rf = replication_factor as i32;
        let mut placed = placement::assign_replicas(&brokers, count, rf, first_index, start, shift);
        if placed == Err(PlacementError::MixedRacks) {
            // As KRaft's placer: brokers without a rack make rack-awareness moot.
            brokers.iter_mut().for_each(|b| b.rack = None);
            placed = placement::assign_replicas(&brokers, count, rf, first_index, start, shift);
        }
        let placed =
            placed.map_err(|e| AdminError::new(code::INVALID_REPLICATION_FACTOR, e.to_string()))?;
        Ok(placed
            .into_iter()
            .map(|r| new_partition(image, r))
            .collect())
    }

    fn explicit_assignment(
        &self,
        image: &ClusterImage,
        assignments: &[Vec<i32>],
    ) -> AdminResult<Vec<PartitionImage>> {
        let registered: Vec<i32> = if image.brokers.is_empty() {
            vec![self.config.node_id]
        } else {
            image.brokers.keys().copied().collect()
        };
        let rf = assignments.first().map(|a| a.len()).unwrap_or(0);
        let mut out = Vec::new();
        for replicas in assignments {
            if replicas.is_empty()
                || replicas.len() != rf
                || replicas.iter().any(|b| !registered.contains(b))
            {
                return Err(AdminError::new(
                    code::INVALID_REPLICA_ASSIGNMENT,
                    format!("invalid replica assignment {replicas:?} (registered brokers {registered:?})"),
                ));
            }
            let mut uniq = replicas.clone();
            uniq.sort_unstable();
            uniq.dedup();
            if uniq.len() != replicas.len() {
                return Err(AdminError::new(
                    code::INVALID_REPLICA_ASSIGNMENT,
                    format!("duplicate broker in assignment {replicas:?}"),
                ));
            }
            let partition = new_partition(image, replicas.clone());
            if partition.leader == NO_LEADER {
                return Err(AdminError::new(
                    code::INVALID_REPLICA_ASSIGNMENT,
                    format!("no broker of assignment {replicas:?} is available to lead"),
                ));
            }
            out.push(partition);
        }
        Ok(out)
    }

    /// Creates `__consumer_offsets` if it does not exist (compacted as in Kafka, so
    /// time and size retention never remove commits; written as the coordinator
    /// writes it), with `offsets.topic.replication.factor` replicas: refused with
    /// INVALID_REPLICATION_FACTOR until that many brokers are registered.
    pub async fn ensure_offsets_topic(&self) -> AdminResult<()> {
        use crate::metadata::OFFSETS_TOPIC;
        if self.image().topic_by_name(OFFSETS_TOPIC).is_some() {
            return Ok(());
        }
        let configs = [
            ("cleanup.policy", "compact".to_string()),
            ("compression.type", "producer".to_string()),
            (
                "segment.bytes",
                self.config.get("offsets.topic.segment.bytes").to_string(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let partitions = self.config.num("offsets.topic.num.partitions") as i32;
        let rf = self.config.offsets_topic_replication_factor();
        match self
            .create_topic(OFFSETS_TOPIC, partitions, rf, Vec::new(), configs, false)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.code == code::TOPIC_ALREADY_EXISTS => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// CreateTopics for one topic. `num_partitions`/`replication_factor` -1 mean the
    /// broker defaults; `assignments` (partition → brokers) override both.
    pub async fn create_topic(
        &self,
        name: &str,
        num_partitions: i32,
        replication_factor: i16,
        assignments: Vec<Vec<i32>>,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> AdminResult<CreatedTopic> {
        validate_topic_name(name)?;
        let image = self.image();
        if image.topic_by_name(name).is_some() {
            return Err(AdminError::new(
                code::TOPIC_ALREADY_EXISTS,
                format!("topic '{name}' already exists"),
            ));
        }
        if let Some(other) = colliding_topic(&image, name) {
            return Err(AdminError::new(
                code::INVALID_TOPIC_EXCEPTION,
                format!("topic '{name}' collides with existing topic '{other}'"),
            ));
        }
        let partitions = if !assignments.is_empty() {
            if num_partitions != -1 || replication_factor != -1 {
                return Err(AdminError::new(code::INVALID_REQUEST, "both a replica assignment and a partition count or replication factor were given"));
            }
            self.explicit_assignment(&image, &assignments)?
        } else {
            let count = if num_partitions == -1 {
                self.config.num_partitions
            } else {
                num_partitions
            };
            if count < 1 {
                return Err(AdminError::new(
                    code::INVALID_PARTITIONS,
                    format!("number of partitions must be at least 1, got {count}"),
                ));
            }
            check_partition_limit(count)?;
            let rf = if replication_factor == -1 {
                self.config.default_replication_factor
            } else {
                replication_factor
            };
            self.assign(&image, 0, count as usize, rf)?
        };
        self.validate_topic_configs(&image, &configs)?;
        let created = CreatedTopic {
            id: Uuid::new_v4(),
            num_partitions: partitions.len() as i32,
            replication_factor: partitions[0].replicas.len() as i16,
        };
        if validate_only {
            return Ok(created);
        }
        let proposed = self
            .propose(MetadataRecord::CreateTopic {
                name: name.to_string(),
                id: created.id,
                partitions,
                configs,
            })
            .await;
        if let Err(e) = proposed {
            if self.image().topic_by_id(&created.id).is_some() {
                // All or nothing: the record is committed but not every local partition
                // log could be made (out of descriptors or disk). Take the topic back
                // out so producers never wait on partitions that have no log.
                if let Err(undo) = self
                    .propose(MetadataRecord::DeleteTopic { id: created.id })
                    .await
                {
                    warn!(topic = name, error = %undo.message, "could not roll back a half-created topic");
                }
                return Err(AdminError::new(
                    e.code,
                    format!(
                        "topic '{name}' was not created: its partition logs could not all be made here ({})",
                        e.message
                    ),
                ));
            }
            return Err(e);
        }
        info!(topic = name, id = %created.id, partitions = created.num_partitions, "created topic");
        Ok(created)
    }

    pub async fn delete_topic(&self, topic: &TopicImage) -> AdminResult<()> {
        if !self.config.delete_topic_enable {
            return Err(AdminError::new(
                code::TOPIC_DELETION_DISABLED,
                "topic deletion is disabled (delete.topic.enable=false)",
            ));
        }
        self.propose(MetadataRecord::DeleteTopic { id: topic.id })
            .await?;
        info!(topic = %topic.name, id = %topic.id, "deleted topic");
        Ok(())
    }

    pub async fn create_partitions(
        &self,
        name: &str,
        count: i32,
        assignments: Option<Vec<Vec<i32>>>,
        validate_only: bool,
    ) -> AdminResult<()> {
        let image = self.image();
        let topic = existing_topic(&image, name)?;
        let current = topic.partitions.len() as i32;
        if count <= current {
            return Err(AdminError::new(
                code::INVALID_PARTITIONS,
                format!("topic currently has {current} partitions, which is higher than or equal to the requested {count}"),
            ));
        }
        check_partition_limit(count)?;
        let new_count = (count - current) as usize;
        let partitions = match assignments {
            Some(a) if !a.is_empty() => {
                if a.len() != new_count {
                    return Err(AdminError::new(
                        code::INVALID_REPLICA_ASSIGNMENT,
                        format!(
                            "{} assignments given for {new_count} new partitions",
                            a.len()
                        ),
                    ));
                }
                self.explicit_assignment(&image, &a)?
            }
            _ => {
                let rf = topic
                    .partitions
                    .first()
                    .map(|p| p.replicas.len())
                    .unwrap_or(1) as i16;
                self.assign(&image, current as usize, new_count, rf)?
            }
        };
        if validate_only {
            return Ok(());
        }
        self.propose(MetadataRecord::CreatePartitions {
            id: topic.id,
            partitions,
        })
        .await?;
        info!(topic = name, count, "added partitions");
        Ok(())
    }

    /// Replaces a topic's explicit configs after validation.
    pub async fn set_topic_configs(
        &self,
        name: &str,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> AdminResult<()> {
        let image = self.image();
        let topic = existing_topic(&image, name)?;
        self.validate_topic_configs(&image, &configs)?;
        if validate_only {
            return Ok(());
        }
        self.propose(MetadataRecord::SetTopicConfigs {
            id: topic.id,
            configs,
        })
        .await?;
        Ok(())
    }

    /// Replaces the dynamic cluster-wide broker configs after validation. Only keys
    /// that are topic defaults can change at run time; others are read-only.
    pub async fn set_broker_configs(
        &self,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> AdminResult<()> {
        for (k, v) in &configs {
            let spec = crate::config::broker::broker_key(k).ok_or_else(|| {
                AdminError::new(code::INVALID_CONFIG, format!("unknown broker config '{k}'"))
            })?;
            let dynamic = crate::config::topic::TOPIC_KEYS
                .iter()
                .any(|t| t.broker_synonyms.contains(&spec.name));
            if !dynamic {
                return Err(AdminError::new(
                    code::INVALID_CONFIG,
                    format!("broker config '{k}' cannot be changed at run time"),
                ));
            }
            spec.kind.check(v).map_err(|e| {
                AdminError::new(
                    code::INVALID_CONFIG,
                    format!("invalid value '{v}' for '{k}': {e}"),
                )
            })?;
        }
        if validate_only {
            return Ok(());
        }
        self.propose(MetadataRecord::SetBrokerConfigs { configs })
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(validate_topic_name("orders.v1_x-y").is_ok());
        for bad in ["", ".", "..", "a b", "ä", &"x".repeat(250)] {
            assert_eq!(
                validate_topic_name(bad).unwrap_err().code,
                code::INVALID_TOPIC_EXCEPTION,
                "{bad}"
            );
        }
    }
}
