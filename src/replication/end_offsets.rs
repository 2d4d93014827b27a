//! The high watermarks of partitions with no replica on this broker, asked of their
//! leaders with ListOffsets (latest, as a consumer would), over the inter-broker
//! listener. The group coordinator uses them for the lag of partitions it does not
//! hold; one request per leader, every partition of that leader in it, on a
//! connection kept per leader between rounds.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};
use tracing::debug;

use super::client::KafkaClient;
use super::ReplicaManager;
use crate::metadata::ClusterImage;
use crate::protocol::list_offsets::{answered_offsets, latest_offsets_request};

/// ListOffsets version asked: v7 has everything needed and every Kafka-protocol
/// broker (Strata included) answers it.
const LIST_OFFSETS_VERSION: i16 = 7;

/// Connections to leaders (by address), kept between rounds; one that fails is
/// dropped and made again next time.
#[derive(Default)]
pub struct LeaderClients {
    clients: HashMap<String, KafkaClient>,
}

impl ReplicaManager {
    /// The high watermark of each of `wanted` as its leader reports it; a partition
    /// whose leader is unknown or did not answer is left out.
    pub async fn leader_high_watermarks(
        &self,
        clients: &mut LeaderClients,
        image: &ClusterImage,
        wanted: &[(String, i32)],
    ) -> HashMap<(String, i32), i64> {
        let mut by_leader: BTreeMap<i32, Vec<(String, i32)>> = BTreeMap::new();
        for (topic, partition) in wanted {
            let leader = image
                .topic_ids_by_name
                .get(topic)
                .and_then(|id| image.partition(id, *partition))
                .map(|p| p.leader)
                .unwrap_or(-1);
            if leader >= 0 && leader != self.node_id {
                by_leader
                    .entry(leader)
                    .or_default()
                    .push((topic.clone(), *partition));
            }
        }
        let listener = &self.config.inter_broker_listener;
        let timeout =
            Duration::from_millis(self.config.num("replica.socket.timeout.ms").max(1) as u64);
        let mut out = HashMap::new();
        let mut asked = std::collections::HashSet::new();
        for (leader, partitions) in by_leader {
            let Some(broker) = image.brokers.get(&leader) else {
                continue;
            };
            let (host, port) = broker.address_for(listener);
            let addr = format!("{host}:{port}");
            asked.insert(addr.clone());
            match self.ask_leader(clients, &addr, &partitions, timeout).await {
                Ok(ends) => out.extend(ends),
                Err(e) => {
                    clients.clients.remove(&addr);
                    debug!(leader, %addr, error = %e, "cannot ask the leader for end offsets");
                }
            }
        }
        // Leaders no longer asked (moved or gone) lose their connection.
        clients.clients.retain(|addr, _| asked.contains(addr));
        out
    }

    async fn ask_leader(
        &self,
        clients: &mut LeaderClients,
        addr: &str,
        partitions: &[(String, i32)],
        timeout: Duration,
    ) -> std::io::Result<Vec<((String, i32), i64)>> {
        let client = match clients.clients.entry(addr.to_string()) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let client_id = format!("strata-broker-{}", self.node_id);
                e.insert(
                    KafkaClient::connect(
                        addr,
                        &client_id,
                        timeout,
                        self.inter_broker_tls(),
                        self.inter_broker_sasl(),
                    )
                    .await?,
                )
            }
        };
        let request = latest_offsets_request(partitions.iter().map(|(t, p)| (t.as_str(), *p)));
        let response = client
            .call(
                ApiKey::ListOffsets,
                LIST_OFFSETS_VERSION,
                &RequestKind::ListOffsets(request),
                timeout,
            )
            .await?;
        let ResponseKind::ListOffsets(response) = response else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "not a ListOffsets response",
            ));
        };
        Ok(answered_offsets(response).collect())
    }
}
