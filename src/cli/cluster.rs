//! `strata cluster`: the cluster as `kafka-metadata-quorum describe --status` and
//! `kafka-topics --describe` show it: the metadata quorum (leader, epoch, voters and
//! their log end offsets), the live brokers, and every partition's leader, replicas
//! and ISR, with the under-replicated ones counted (or alone, with
//! `--under-replicated-partitions`). A client like `strata consumer-groups`: it asks a
//! running broker over the wire (DescribeQuorum, Metadata) and prints text.

use std::time::Duration;

use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
use kafka_protocol::messages::{
    ApiKey, DescribeQuorumRequest, DescribeQuorumResponse, MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::consumer_groups::{broker_error, Client, Error};

const AFTER_HELP: &str = "\
EXAMPLES
  strata cluster --bootstrap-server localhost:9092
  strata cluster --bootstrap-server localhost:9092 --under-replicated-partitions
  strata cluster --bootstrap-server localhost:9092 --topic orders";

/// Arguments of `strata cluster`.
#[derive(clap::Args, Debug, Clone)]
#[command(after_help = AFTER_HELP)]
pub struct ClusterArgs {
    /// The broker(s) to ask: HOST:PORT[,HOST:PORT...].
    #[arg(long, value_name = "HOST:PORT")]
    pub bootstrap_server: String,
    /// Only partitions whose ISR is smaller than their replica set.
    #[arg(long)]
    pub under_replicated_partitions: bool,
    /// Only this topic.
    #[arg(long)]
    pub topic: Option<String>,
    /// How long to wait for each answer.
    #[arg(long, default_value_t = 10_000, value_name = "MS")]
    pub timeout_ms: u64,
}

/// Asks the cluster and returns the text to print.
pub fn run(args: &ClusterArgs) -> Result<String, Error> {
    let mut client = Client::new(
        &args.bootstrap_server,
        Duration::from_millis(args.timeout_ms),
    )?;
    let request = DescribeQuorumRequest::default().with_topics(vec![TopicData::default()
        .with_topic_name(TopicName(StrBytes::from_static_str("__cluster_metadata")))
        .with_partitions(vec![PartitionData::default().with_partition_index(0)])]);
    let quorum: DescribeQuorumResponse = client.call_any(2, &request)?;
    broker_error(
        ApiKey::DescribeQuorum,
        quorum.error_code,
        quorum.error_message.as_ref(),
    )?;
    let metadata = client.metadata(args.topic.clone().map(|t| vec![t]))?;
    let mut out = format_quorum(&quorum, &metadata);
    out.push('\n');
    out.push_str(&format_topics(&metadata, args.under_replicated_partitions));
    Ok(out)
}

fn ids(ids: &[kafka_protocol::messages::BrokerId]) -> String {
    ids.iter()
        .map(|b| b.0.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// The quorum and brokers, in `kafka-metadata-quorum describe --status` style.
pub fn format_quorum(quorum: &DescribeQuorumResponse, metadata: &MetadataResponse) -> String {
    let mut out = String::new();
    let cluster_id = metadata.cluster_id.as_deref().unwrap_or("-");
    out.push_str(&format!("ClusterId:              {cluster_id}\n"));
    if let Some(p) = quorum.topics.first().and_then(|t| t.partitions.first()) {
        let voters: Vec<String> = p
            .current_voters
            .iter()
            .map(|v| {
                format!(
                    "{{\"id\": {}, \"logEndOffset\": {}}}",
                    v.replica_id.0, v.log_end_offset
                )
            })
            .collect();
        out.push_str(&format!("LeaderId:               {}\n", p.leader_id.0));
        out.push_str(&format!("LeaderEpoch:            {}\n", p.leader_epoch));
        out.push_str(&format!("HighWatermark:          {}\n", p.high_watermark));
        out.push_str(&format!(
            "CurrentVoters:          [{}]\n",
            voters.join(", ")
        ));
    }
    let brokers: Vec<String> = metadata
        .brokers
        .iter()
        .map(|b| {
            let rack = b
                .rack
                .as_deref()
                .map(|r| format!(" rack={r}"))
                .unwrap_or_default();
            format!("{}@{}:{}{rack}", b.node_id.0, b.host, b.port)
        })
        .collect();
    out.push_str(&format!(
        "LiveBrokers:            [{}]\n",
        brokers.join(", ")
    ));
    out
}

/// Topics and partitions in `kafka-topics --describe` style, then the count of
/// under-replicated partitions.
pub fn format_topics(metadata: &MetadataResponse, under_replicated_only: bool) -> String {
    let mut out = String::new();
    let mut topics: Vec<_> = metadata.topics.iter().collect();
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    let mut under = 0;
    for t in topics {
        let name = t.name.as_ref().map(|n| n.0.as_str()).unwrap_or("-");
        if t.error_code != 0 {
            out.push_str(&format!("Topic: {name}\tError: {}\n", t.error_code));
            continue;
        }
        let mut partitions: Vec<_> = t.partitions.iter().collect();
        partitions.sort_by_key(|p| p.partition_index);
        let rf = partitions.first().map_or(0, |p| p.replica_nodes.len());
        let lines: Vec<String> = partitions
            .iter()
            .filter(|p| {
                let is_under = p.isr_nodes.len() < p.replica_nodes.len();
                if is_under {
                    under += 1;
                }
                !under_replicated_only || is_under
            })
            .map(|p| {
                format!(
                    "\tTopic: {name}\tPartition: {}\tLeader: {}\tLeaderEpoch: {}\tReplicas: {}\tIsr: {}\tOffline: {}\n",
                    p.partition_index,
                    if p.leader_id.0 < 0 { "none".to_string() } else { p.leader_id.0.to_string() },
                    p.leader_epoch,
                    ids(&p.replica_nodes),
                    ids(&p.isr_nodes),
                    ids(&p.offline_replicas),
                )
            })
            .collect();
        if under_replicated_only && lines.is_empty() {
            continue;
        }
        if !under_replicated_only {
            out.push_str(&format!(
                "Topic: {name}\tTopicId: {}\tPartitionCount: {}\tReplicationFactor: {rf}\n",
                t.topic_id,
                partitions.len()
            ));
        }
        for l in lines {
            out.push_str(&l);
        }
    }
    out.push_str(&format!("UnderReplicatedPartitions: {under}\n"));
    out
}
