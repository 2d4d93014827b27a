//! `strata consumer-groups`: lists consumer groups and shows their offsets, lag,
//! members and state, as Kafka's `kafka-consumer-groups.sh --list / --describe` does.
//!
//! A small blocking Kafka client: one `TcpStream` per broker address, requests encoded
//! and responses decoded with `kafka-protocol`. For `--describe` of a group:
//!
//! 1. FindCoordinator v3 (key = group, key_type 0) at a bootstrap server;
//! 2. DescribeGroups v5 and OffsetFetch v7 (all committed partitions) at the
//!    coordinator it names; member assignments are decoded as
//!    `ConsumerProtocolAssignment` (an i16 version, then the struct at that version);
//! 3. Metadata v12 for the leaders of the partitions involved, then ListOffsets v7
//!    (timestamp -1, latest) at each leader for the log-end offsets.
//!
//! `--list` asks every broker in the cluster (Metadata v12, then ListGroups v4 to each)
//! because each broker only knows the groups it coordinates.
//!
//! Turning the answers into rows and tables is separate and pure ([`partition_rows`],
//! [`format_offsets`], [`format_members`], [`format_state`], [`format_group_list`]),
//! with Kafka's column layout, so it is unit-tested without a broker. Nothing here
//! prints: [`run`] returns the text and `main.rs` writes it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use clap::ArgGroup;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, ConsumerProtocolAssignment, DescribeGroupsRequest, FindCoordinatorRequest, GroupId,
    ListGroupsRequest, MetadataRequest, MetadataResponse, OffsetFetchRequest, RequestHeader,
    ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Message, Request, StrBytes};
use kafka_protocol::ResponseError;

use crate::protocol::list_offsets::{answered_offsets, latest_offsets_request};

/// What Kafka's tool prints for an unknown value.
const MISSING: &str = "-";
/// The client id this tool announces to brokers.
const CLIENT_ID: &str = "strata-consumer-groups";
/// Refuse response frames larger than this (a garbage length, not a real answer).
const MAX_FRAME: usize = 100 * 1024 * 1024;
/// Group states a consumer group can be in (Kafka's names), for `--list --state`.
const GROUP_STATES: &[&str] = &[
    "PreparingRebalance",
    "CompletingRebalance",
    "Stable",
    "Dead",
    "Empty",
    "Assigning",
    "Reconciling",
];

/// Request versions used (all supported by strata and by Kafka 2.4+).
const FIND_COORDINATOR_VERSION: i16 = 3;
const DESCRIBE_GROUPS_VERSION: i16 = 5;
const OFFSET_FETCH_VERSION: i16 = 7;
const LIST_OFFSETS_VERSION: i16 = 7;
const METADATA_VERSION: i16 = 12;
const LIST_GROUPS_VERSION: i16 = 4;

const AFTER_HELP: &str = "\
EXAMPLES
  strata consumer-groups --bootstrap-server localhost:9092 --list
  strata consumer-groups --bootstrap-server localhost:9092 --list --state Stable,Empty
  strata consumer-groups --bootstrap-server localhost:9092 --describe --group my-group
  strata consumer-groups --bootstrap-server localhost:9092 --describe --all-groups --members
  strata consumer-groups --bootstrap-server localhost:9092 --describe --group my-group --state

LAG is LOG-END-OFFSET (the partition's high watermark) minus CURRENT-OFFSET (the
group's committed offset); `-` marks a value that is unknown: no committed offset,
no leader for the partition, or no member it is assigned to.";

/// Arguments of `strata consumer-groups`.
#[derive(clap::Args, Debug, Clone)]
#[command(
    after_help = AFTER_HELP,
    group(ArgGroup::new("action").required(true).args(["list", "describe"])),
    group(ArgGroup::new("target").args(["groups", "all_groups"])),
)]
pub struct ConsumerGroupsArgs {
    /// The broker(s) to connect to, HOST:PORT[,HOST:PORT...].
    #[arg(long, value_name = "HOST:PORT")]
    pub bootstrap_server: String,
    /// Lists all consumer groups, one per line.
    #[arg(long)]
    pub list: bool,
    /// Describes groups: offsets and lag (default), --members or --state.
    #[arg(long, requires = "target")]
    pub describe: bool,
    /// The consumer group to describe (repeatable).
    #[arg(long = "group", value_name = "GROUP", requires = "describe")]
    pub groups: Vec<String>,
    /// Describes every consumer group.
    #[arg(long, requires = "describe")]
    pub all_groups: bool,
    /// With --describe: offsets and lag per partition (the default).
    #[arg(long, requires = "describe", conflicts_with_all = ["members", "state"])]
    pub offsets: bool,
    /// With --describe: the group's members and how many partitions each has.
    #[arg(long, requires = "describe", conflicts_with = "state")]
    pub members: bool,
    /// With --describe: coordinator, assignment strategy, state and member count.
    /// With --list: adds a STATE column, and with a value lists only groups in those
    /// comma-separated states (e.g. Stable,Empty).
    #[arg(long, value_name = "STATES", num_args = 0..=1, default_missing_value = "")]
    pub state: Option<String>,
    /// With --describe --members: each member's assignment too.
    #[arg(long, requires = "members")]
    pub verbose: bool,
    /// How long to wait for a broker (connect, each answer, retries), in ms.
    #[arg(long, value_name = "MS", default_value_t = 5000)]
    pub timeout: u64,
}

/// Why a consumer-groups command failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Usage(String),
    #[error("cannot connect to broker {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("no answer from broker {addr} within {timeout_ms} ms")]
    Timeout { addr: String, timeout_ms: u64 },
    #[error("connection to broker {addr} failed: {source}")]
    Io {
        addr: String,
        source: std::io::Error,
    },
    #[error("bad {api:?} exchange with {addr}: {detail}")]
    Protocol {
        api: ApiKey,
        addr: String,
        detail: String,
    },
    #[error("{api:?} failed: {error} (error code {code}){}", message.as_deref().map(|m| format!(": {m}")).unwrap_or_default(), code = error.code())]
    Broker {
        api: ApiKey,
        error: ResponseError,
        message: Option<String>,
    },
    #[error("Consumer group '{0}' does not exist.")]
    GroupNotFound(String),
    #[error("group '{group}' is not a consumer group (protocol type '{protocol_type}')")]
    NotConsumerGroup {
        group: String,
        protocol_type: String,
    },
}

impl Error {
    fn retriable(&self) -> bool {
        matches!(self, Error::Broker { error, .. } if error.is_retriable())
    }
}

pub(crate) fn broker_error(
    api: ApiKey,
    code: i16,
    message: Option<&StrBytes>,
) -> Result<(), Error> {
    match ResponseError::try_from_code(code) {
        None => Ok(()),
        Some(error) => Err(Error::Broker {
            api,
            error,
            message: message.map(|m| m.to_string()).filter(|m| !m.is_empty()),
        }),
    }
}

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// A topic partition.
pub type TopicPartition = (String, i32);

/// A broker as FindCoordinator names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub id: i32,
    pub host: String,
    pub port: i32,
}

impl Node {
    /// `host:port`, with brackets around an IPv6 host.
    pub fn address(&self) -> String {
        address(&self.host, self.port)
    }
}

fn address(host: &str, port: i32) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// A group member as DescribeGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub consumer_id: String,
    pub group_instance_id: Option<String>,
    pub host: String,
    pub client_id: String,
    /// Assigned partitions (empty while the group rebalances).
    pub assignment: Vec<TopicPartition>,
}

/// A consumer group as DescribeGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    pub group: String,
    pub coordinator: Node,
    /// Kafka's state name: Stable, Empty, PreparingRebalance, ...
    pub state: String,
    /// The chosen assignor (DescribeGroups' protocol data), empty when none.
    pub assignment_strategy: String,
    pub members: Vec<Member>,
}

/// One row of `--describe` (offsets): a partition with a committed offset or an owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionRow {
    pub group: String,
    pub topic: String,
    pub partition: i32,
    pub current_offset: Option<i64>,
    pub log_end_offset: Option<i64>,
    pub consumer_id: Option<String>,
    pub host: Option<String>,
    pub client_id: Option<String>,
}

impl PartitionRow {
    /// Log-end offset minus committed offset, when both are known.
    pub fn lag(&self) -> Option<i64> {
        Some(self.log_end_offset? - self.current_offset?)
    }
}

/// One piece of output, in order, for the stream Kafka's tool writes it to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chunk {
    Stdout(String),
    Stderr(String),
}

/// What a command produced: text to print, and whether every group was found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    pub chunks: Vec<Chunk>,
    /// False when some group did not exist (its error is among the chunks).
    pub success: bool,
}

/// Decodes a member's assignment from DescribeGroups: an i16 version, then
/// `ConsumerProtocolAssignment` at that version (newer versions read as the newest
/// known one, as Kafka's client does). Empty bytes mean no assignment.
pub fn decode_assignment(bytes: &[u8]) -> Result<Vec<TopicPartition>, String> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let mut buf = Bytes::copy_from_slice(bytes);
    if buf.remaining() < 2 {
        return Err("assignment shorter than its version".to_string());
    }
    let version = buf.get_i16();
    if version < ConsumerProtocolAssignment::VERSIONS.min {
        return Err(format!("assignment version {version}"));
    }
    let version = version.min(ConsumerProtocolAssignment::VERSIONS.max);
    let assignment =
        ConsumerProtocolAssignment::decode(&mut buf, version).map_err(|e| e.to_string())?;
    Ok(assignment
        .assigned_partitions
        .iter()
        .flat_map(|tp| {
            tp.partitions
                .iter()
                .map(move |p| (tp.topic.0.as_str().to_string(), *p))
        })
        .collect())
}

/// The rows of `--describe`, in Kafka's order: partitions of members with an
/// assignment (members with most partitions first, each sorted by topic and partition),
/// then committed partitions no member owns. `committed` holds committed offsets,
/// `log_end` high watermarks; a partition missing from either shows `-`.
pub fn partition_rows(
    group: &GroupInfo,
    committed: &BTreeMap<TopicPartition, i64>,
    log_end: &BTreeMap<TopicPartition, i64>,
) -> Vec<PartitionRow> {
    let row = |tp: &TopicPartition, member: Option<&Member>| PartitionRow {
        group: group.group.clone(),
        topic: tp.0.clone(),
        partition: tp.1,
        current_offset: committed.get(tp).copied(),
        log_end_offset: log_end.get(tp).copied(),
        consumer_id: member.map(|m| m.consumer_id.clone()),
        host: member.map(|m| m.host.clone()),
        client_id: member.map(|m| m.client_id.clone()),
    };
    let mut members: Vec<&Member> = group
        .members
        .iter()
        .filter(|m| !m.assignment.is_empty())
        .collect();
    members.sort_by(|a, b| {
        b.assignment
            .len()
            .cmp(&a.assignment.len())
            .then_with(|| a.consumer_id.cmp(&b.consumer_id))
    });
    let mut rows = Vec::new();
    let mut assigned = BTreeSet::new();
    for m in members {
        let parts: BTreeSet<&TopicPartition> = m.assignment.iter().collect();
        for tp in parts {
            assigned.insert(tp.clone());
            rows.push(row(tp, Some(m)));
        }
    }
    for tp in committed.keys().filter(|tp| !assigned.contains(*tp)) {
        rows.push(row(tp, None));
    }
    rows
}

/// Lays out cells left-aligned, each padded to its width plus one space (the last one
/// unpadded), without trailing blanks: Kafka's `%-Ns %-Ms ... %s`.
fn layout(cells: &[(&str, usize)]) -> String {
    let mut line = String::new();
    for (i, (text, width)) in cells.iter().enumerate() {
        if i + 1 == cells.len() {
            line.push_str(text);
        } else {
            line.push_str(&format!("{text:<width$} "));
        }
    }
    line.trim_end().to_string()
}

fn or_missing<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string())
        .unwrap_or_else(|| MISSING.to_string())
}

/// The offsets table of `--describe` for one group, as Kafka prints it: a blank line,
/// the header (GROUP TOPIC PARTITION CURRENT-OFFSET LOG-END-OFFSET LAG CONSUMER-ID HOST
/// CLIENT-ID), then one line per row. Empty when there are no rows.
pub fn format_offsets(rows: &[PartitionRow]) -> String {
    if rows.is_empty() {
        return String::new();
    }
    let cells: Vec<[String; 9]> = rows
        .iter()
        .map(|r| {
            [
                r.group.clone(),
                r.topic.clone(),
                r.partition.to_string(),
                or_missing(r.current_offset),
                or_missing(r.log_end_offset),
                or_missing(r.lag()),
                or_missing(r.consumer_id.clone()),
                or_missing(r.host.clone()),
                or_missing(r.client_id.clone()),
            ]
        })
        .collect();
    let widest = |col: usize| {
        cells
            .iter()
            .map(|c| c[col].len())
            .max()
            .unwrap_or(0)
            .max(15)
    };
    let widths = [
        widest(0),
        widest(1),
        10,
        15,
        15,
        15,
        widest(6),
        widest(7),
        0,
    ];
    let header = [
        "GROUP",
        "TOPIC",
        "PARTITION",
        "CURRENT-OFFSET",
        "LOG-END-OFFSET",
        "LAG",
        "CONSUMER-ID",
        "HOST",
        "CLIENT-ID",
    ];
    let line = |texts: [&str; 9]| {
        let cells: Vec<(&str, usize)> = texts.into_iter().zip(widths).collect();
        layout(&cells)
    };
    let mut out = format!("\n{}\n", line(header));
    for c in &cells {
        out.push_str(&line(std::array::from_fn(|i| c[i].as_str())));
        out.push('\n');
    }
    out
}

/// Kafka's `topic(0,1,2),other(0)` rendering of an assignment, `-` when empty.
fn assignment_string(assignment: &[TopicPartition]) -> String {
    if assignment.is_empty() {
        return MISSING.to_string();
    }
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in assignment {
        by_topic.entry(t).or_default().push(*p);
    }
    by_topic
        .into_iter()
        .map(|(t, mut ps)| {
            ps.sort_unstable();
            let ps: Vec<String> = ps.iter().map(|p| p.to_string()).collect();
            format!("{t}({})", ps.join(","))
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The `--describe --members` table for one group: GROUP CONSUMER-ID
/// [GROUP-INSTANCE-ID] HOST CLIENT-ID #PARTITIONS [ASSIGNMENT]. The instance-id column
/// appears only if some member is static; ASSIGNMENT only with `verbose`. Empty when
/// the group has no members.
pub fn format_members(group: &GroupInfo, verbose: bool) -> String {
    if group.members.is_empty() {
        return String::new();
    }
    let static_members = group.members.iter().any(|m| m.group_instance_id.is_some());
    let mut rows: Vec<Vec<String>> = vec![{
        let mut h = vec!["GROUP", "CONSUMER-ID"];
        if static_members {
            h.push("GROUP-INSTANCE-ID");
        }
        h.extend(["HOST", "CLIENT-ID", "#PARTITIONS"]);
        if verbose {
            h.push("ASSIGNMENT");
        }
        h.into_iter().map(String::from).collect()
    }];
    for m in &group.members {
        let mut r = vec![group.group.clone(), m.consumer_id.clone()];
        if static_members {
            r.push(or_missing(m.group_instance_id.clone()));
        }
        r.extend([
            m.host.clone(),
            m.client_id.clone(),
            m.assignment.len().to_string(),
        ]);
        if verbose {
            r.push(assignment_string(&m.assignment));
        }
        rows.push(r);
    }
    // Minimum widths as Kafka's tool: 15, and 17 for GROUP-INSTANCE-ID.
    let columns = rows[0].len();
    let widths: Vec<usize> = (0..columns)
        .map(|col| {
            let min = if static_members && col == 2 { 17 } else { 15 };
            rows[1..]
                .iter()
                .map(|r| r[col].len())
                .max()
                .unwrap_or(0)
                .max(min)
        })
        .collect();
    let mut out = String::from("\n");
    for r in &rows {
        // Every column is padded (Kafka ends its format with "%-15s "); trimmed after.
        let mut cells: Vec<(&str, usize)> = r
            .iter()
            .map(|s| s.as_str())
            .zip(widths.iter().copied())
            .collect();
        cells.push(("", 0));
        out.push_str(&layout(&cells));
        out.push('\n');
    }
    out
}

/// The `--describe --state` table for one group: GROUP COORDINATOR (ID)
/// ASSIGNMENT-STRATEGY STATE #MEMBERS.
pub fn format_state(group: &GroupInfo) -> String {
    let coordinator = format!(
        "{}  ({})",
        group.coordinator.address(),
        group.coordinator.id
    );
    let strategy = if group.assignment_strategy.is_empty() {
        MISSING.to_string()
    } else {
        group.assignment_strategy.clone()
    };
    let widths = [
        group.group.len().max(15),
        coordinator.len().max(25),
        20,
        20,
        0,
    ];
    let line = |texts: [&str; 5]| {
        let cells: Vec<(&str, usize)> = texts.into_iter().zip(widths).collect();
        layout(&cells)
    };
    format!(
        "\n{}\n{}\n",
        line([
            "GROUP",
            "COORDINATOR (ID)",
            "ASSIGNMENT-STRATEGY",
            "STATE",
            "#MEMBERS"
        ]),
        line([
            &group.group,
            &coordinator,
            &strategy,
            &group.state,
            &group.members.len().to_string()
        ])
    )
}

/// `--list` output: group ids one per line, or with `with_state` a GROUP / STATE table.
pub fn format_group_list(groups: &[(String, String)], with_state: bool) -> String {
    if !with_state {
        return groups.iter().map(|(g, _)| format!("{g}\n")).collect();
    }
    let width = groups
        .iter()
        .map(|(g, _)| g.len().max(15))
        .max()
        .unwrap_or(15)
        + 10;
    let mut out = format!("{}\n", layout(&[("GROUP", width), ("STATE", 0)]));
    for (g, s) in groups {
        out.push_str(&layout(&[(g, width), (s, 0)]));
        out.push('\n');
    }
    out
}

/// What Kafka's tool says on stderr about a group in `state` before its table, if
/// anything: no active members, or a rebalance in progress.
pub fn state_notice(group: &str, state: &str) -> Option<String> {
    match state {
        "Empty" => Some(format!(
            "\nConsumer group '{group}' has no active members.\n"
        )),
        "PreparingRebalance" | "CompletingRebalance" | "Assigning" | "Reconciling" => Some(
            format!("\nWarning: Consumer group '{group}' is rebalancing.\n"),
        ),
        _ => None,
    }
}

/// One open connection to a broker.
struct Connection {
    stream: TcpStream,
    addr: String,
    correlation: i32,
    timeout: Duration,
}

impl Connection {
    fn open(addr: &str, timeout: Duration) -> Result<Connection, Error> {
        let connect_err = |source| Error::Connect {
            addr: addr.to_string(),
            source,
        };
        let mut last = None;
        for sa in addr.to_socket_addrs().map_err(connect_err)? {
            match TcpStream::connect_timeout(&sa, timeout) {
                Ok(stream) => {
                    let io = |source| Error::Io {
                        addr: addr.to_string(),
                        source,
                    };
                    stream.set_read_timeout(Some(timeout)).map_err(io)?;
                    stream.set_write_timeout(Some(timeout)).map_err(io)?;
                    stream.set_nodelay(true).map_err(io)?;
                    return Ok(Connection {
                        stream,
                        addr: addr.to_string(),
                        correlation: 0,
                        timeout,
                    });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(connect_err(last.unwrap_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, "no address for host")
        })))
    }

    fn io_error(&self, source: std::io::Error) -> Error {
        match source.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => Error::Timeout {
                addr: self.addr.clone(),
                timeout_ms: self.timeout.as_millis() as u64,
            },
            _ => Error::Io {
                addr: self.addr.clone(),
                source,
            },
        }
    }

    fn call<R: Request>(&mut self, version: i16, request: &R) -> Result<R::Response, Error> {
        let api = ApiKey::try_from(R::KEY).expect("kafka-protocol requests have known keys");
        let protocol = |detail: String| Error::Protocol {
            api,
            addr: self.addr.clone(),
            detail,
        };
        self.correlation += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        header
            .encode(&mut buf, R::header_version(version))
            .map_err(|e| protocol(format!("encoding the request header: {e}")))?;
        request
            .encode(&mut buf, version)
            .map_err(|e| protocol(format!("encoding the request: {e}")))?;
        let len = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        self.stream.write_all(&buf).map_err(|e| self.io_error(e))?;

        let mut len = [0u8; 4];
        self.stream
            .read_exact(&mut len)
            .map_err(|e| self.io_error(e))?;
        let len = i32::from_be_bytes(len);
        if len < 0 || len as usize > MAX_FRAME {
            return Err(protocol(format!("response length {len}")));
        }
        let mut frame = vec![0u8; len as usize];
        self.stream
            .read_exact(&mut frame)
            .map_err(|e| self.io_error(e))?;
        let mut frame = Bytes::from(frame);
        let header = ResponseHeader::decode(&mut frame, R::Response::header_version(version))
            .map_err(|e| protocol(format!("decoding the response header: {e}")))?;
        if header.correlation_id != self.correlation {
            return Err(protocol(format!(
                "correlation id {} in answer to {}",
                header.correlation_id, self.correlation
            )));
        }
        R::Response::decode(&mut frame, version)
            .map_err(|e| protocol(format!("decoding the response: {e}")))
    }
}

/// A blocking client over connections kept per broker address (also used by
/// `strata cluster`).
pub(crate) struct Client {
    bootstrap: Vec<String>,
    timeout: Duration,
    connections: HashMap<String, Connection>,
}

impl Client {
    pub(crate) fn new(bootstrap: &str, timeout: Duration) -> Result<Client, Error> {
        let bootstrap: Vec<String> = bootstrap
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        if bootstrap.is_empty() {
            return Err(Error::Usage(
                "--bootstrap-server needs at least one HOST:PORT".to_string(),
            ));
        }
        Ok(Client {
            bootstrap,
            timeout,
            connections: HashMap::new(),
        })
    }

    /// Sends `request` to the broker at `addr` (connecting if needed); a connection
    /// that failed is dropped so the next call reconnects.
    fn call_at<R: Request>(
        &mut self,
        addr: &str,
        version: i16,
        request: &R,
    ) -> Result<R::Response, Error> {
        if !self.connections.contains_key(addr) {
            let c = Connection::open(addr, self.timeout)?;
            self.connections.insert(addr.to_string(), c);
        }
        let conn = self.connections.get_mut(addr).expect("just inserted");
        let result = conn.call(version, request);
        if matches!(
            result,
            Err(Error::Io { .. } | Error::Timeout { .. } | Error::Protocol { .. })
        ) {
            self.connections.remove(addr);
        }
        result
    }

    /// Sends `request` to the first bootstrap server that can be reached.
    pub(crate) fn call_any<R: Request>(
        &mut self,
        version: i16,
        request: &R,
    ) -> Result<R::Response, Error> {
        let mut last = None;
        for addr in self.bootstrap.clone() {
            match self.call_at(&addr, version, request) {
                Err(e @ Error::Connect { .. }) => last = Some(e),
                other => return other,
            }
        }
        Err(last.expect("bootstrap list is not empty"))
    }

    /// Runs `f` again while it fails with a retriable broker error (coordinator
    /// loading, not coordinator, ...), until the timeout.
    fn retrying<T>(
        &mut self,
        mut f: impl FnMut(&mut Client) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let deadline = Instant::now() + self.timeout;
        loop {
            match f(self) {
                Err(e) if e.retriable() && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                other => return other,
            }
        }
    }

    fn find_coordinator(&mut self, group: &str) -> Result<Node, Error> {
        let request = FindCoordinatorRequest::default()
            .with_key(str_bytes(group))
            .with_key_type(0);
        let r = self.call_any(FIND_COORDINATOR_VERSION, &request)?;
        broker_error(
            ApiKey::FindCoordinator,
            r.error_code,
            r.error_message.as_ref(),
        )?;
        Ok(Node {
            id: r.node_id.0,
            host: r.host.to_string(),
            port: r.port,
        })
    }

    fn describe_group(&mut self, group: &str) -> Result<GroupInfo, Error> {
        self.retrying(|c| {
            let coordinator = c.find_coordinator(group)?;
            let request =
                DescribeGroupsRequest::default().with_groups(vec![GroupId(str_bytes(group))]);
            let r = c.call_at(&coordinator.address(), DESCRIBE_GROUPS_VERSION, &request)?;
            let described = r
                .groups
                .into_iter()
                .find(|g| g.group_id.0.as_str() == group)
                .ok_or_else(|| Error::Protocol {
                    api: ApiKey::DescribeGroups,
                    addr: coordinator.address(),
                    detail: format!("no entry for group '{group}'"),
                })?;
            if described.error_code == ResponseError::GroupIdNotFound.code()
                || (described.error_code == 0 && described.group_state.as_str() == "Dead")
            {
                return Err(Error::GroupNotFound(group.to_string()));
            }
            broker_error(
                ApiKey::DescribeGroups,
                described.error_code,
                described.error_message.as_ref(),
            )?;
            let protocol_type = described.protocol_type.as_str();
            if !(protocol_type.is_empty() || protocol_type == "consumer") {
                return Err(Error::NotConsumerGroup {
                    group: group.to_string(),
                    protocol_type: protocol_type.to_string(),
                });
            }
            let members = described
                .members
                .iter()
                .map(|m| {
                    let assignment = decode_assignment(&m.member_assignment).map_err(|detail| {
                        Error::Protocol {
                            api: ApiKey::DescribeGroups,
                            addr: coordinator.address(),
                            detail: format!(
                                "assignment of member {}: {detail}",
                                m.member_id.as_str()
                            ),
                        }
                    })?;
                    Ok(Member {
                        consumer_id: m.member_id.to_string(),
                        group_instance_id: m.group_instance_id.as_ref().map(|s| s.to_string()),
                        host: m.client_host.to_string(),
                        client_id: m.client_id.to_string(),
                        assignment,
                    })
                })
                .collect::<Result<Vec<_>, Error>>()?;
            Ok(GroupInfo {
                group: group.to_string(),
                coordinator,
                state: described.group_state.to_string(),
                assignment_strategy: described.protocol_data.to_string(),
                members,
            })
        })
    }

    /// Committed offsets of every partition the group has one for.
    fn committed_offsets(&mut self, group: &str) -> Result<BTreeMap<TopicPartition, i64>, Error> {
        self.retrying(|c| {
            let coordinator = c.find_coordinator(group)?;
            let request = OffsetFetchRequest::default()
                .with_group_id(GroupId(str_bytes(group)))
                .with_topics(None)
                .with_require_stable(false);
            let r = c.call_at(&coordinator.address(), OFFSET_FETCH_VERSION, &request)?;
            broker_error(ApiKey::OffsetFetch, r.error_code, None)?;
            let mut out = BTreeMap::new();
            for t in &r.topics {
                for p in &t.partitions {
                    if p.error_code == 0 && p.committed_offset >= 0 {
                        out.insert(
                            (t.name.0.to_string(), p.partition_index),
                            p.committed_offset,
                        );
                    }
                }
            }
            Ok(out)
        })
    }

    pub(crate) fn metadata(
        &mut self,
        topics: Option<Vec<String>>,
    ) -> Result<MetadataResponse, Error> {
        let request = MetadataRequest::default()
            .with_topics(topics.map(|ts| {
                ts.into_iter()
                    .map(|t| {
                        MetadataRequestTopic::default().with_name(Some(TopicName(str_bytes(&t))))
                    })
                    .collect()
            }))
            .with_allow_auto_topic_creation(false);
        self.call_any(METADATA_VERSION, &request)
    }

    /// High watermarks of `partitions`, asked of each partition's leader. Partitions
    /// without a known leader or whose leader answers with an error are left out.
    fn log_end_offsets(
        &mut self,
        partitions: &BTreeSet<TopicPartition>,
    ) -> Result<BTreeMap<TopicPartition, i64>, Error> {
        let mut out = BTreeMap::new();
        if partitions.is_empty() {
            return Ok(out);
        }
        let topics: BTreeSet<String> = partitions.iter().map(|(t, _)| t.clone()).collect();
        let metadata = self.metadata(Some(topics.into_iter().collect()))?;
        let brokers: HashMap<i32, String> = metadata
            .brokers
            .iter()
            .map(|b| (b.node_id.0, address(b.host.as_str(), b.port)))
            .collect();
        let mut leaders: HashMap<TopicPartition, i32> = HashMap::new();
        for t in &metadata.topics {
            let (Some(name), 0) = (&t.name, t.error_code) else {
                continue;
            };
            for p in &t.partitions {
                if p.error_code == 0 && p.leader_id.0 >= 0 {
                    leaders.insert((name.0.to_string(), p.partition_index), p.leader_id.0);
                }
            }
        }
        // leader address → topic → partitions
        let mut by_leader: BTreeMap<String, BTreeMap<String, Vec<i32>>> = BTreeMap::new();
        for tp in partitions {
            if let Some(addr) = leaders.get(tp).and_then(|id| brokers.get(id)) {
                by_leader
                    .entry(addr.clone())
                    .or_default()
                    .entry(tp.0.clone())
                    .or_default()
                    .push(tp.1);
            }
        }
        for (addr, topics) in by_leader {
            let request = latest_offsets_request(
                topics
                    .iter()
                    .flat_map(|(t, ps)| ps.iter().map(move |p| (t.as_str(), *p))),
            );
            let r = self.call_at(&addr, LIST_OFFSETS_VERSION, &request)?;
            out.extend(answered_offsets(r));
        }
        Ok(out)
    }

    /// Consumer groups (protocol type "consumer" or none) on every broker of the
    /// cluster, as (group id, state), sorted by id.
    fn list_groups(&mut self, states: &[String]) -> Result<Vec<(String, String)>, Error> {
        let metadata = self.metadata(Some(Vec::new()))?;
        let mut brokers: Vec<String> = metadata
            .brokers
            .iter()
            .map(|b| address(b.host.as_str(), b.port))
            .collect();
        if brokers.is_empty() {
            brokers = self.bootstrap.clone();
        }
        let request = ListGroupsRequest::default()
            .with_states_filter(states.iter().map(|s| str_bytes(s)).collect());
        let mut groups = BTreeMap::new();
        for addr in brokers {
            let r = self.retrying(|c| {
                let r = c.call_at(&addr, LIST_GROUPS_VERSION, &request)?;
                broker_error(ApiKey::ListGroups, r.error_code, None)?;
                Ok(r)
            })?;
            for g in r.groups {
                let protocol_type = g.protocol_type.as_str();
                if protocol_type.is_empty() || protocol_type == "consumer" {
                    groups.insert(g.group_id.0.to_string(), g.group_state.to_string());
                }
            }
        }
        Ok(groups.into_iter().collect())
    }
}

/// Parses `--list --state` values (comma-separated, any case) into Kafka's names.
fn parse_states(input: &str) -> Result<Vec<String>, Error> {
    input
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            GROUP_STATES
                .iter()
                .find(|k| k.eq_ignore_ascii_case(s))
                .map(|k| k.to_string())
                .ok_or_else(|| {
                    Error::Usage(format!(
                        "Invalid state list '{input}'. Valid states are: {}",
                        GROUP_STATES.join(", ")
                    ))
                })
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum View {
    Offsets,
    Members { verbose: bool },
    State,
}

/// The chunks `--describe` prints for one group in `view`.
fn describe_one(client: &mut Client, group: &str, view: View) -> Result<Vec<Chunk>, Error> {
    let info = client.describe_group(group)?;
    let mut chunks = Vec::new();
    let notice = state_notice(group, &info.state).map(Chunk::Stderr);
    match view {
        View::Offsets => {
            let committed = client.committed_offsets(group)?;
            let partitions: BTreeSet<TopicPartition> = committed
                .keys()
                .cloned()
                .chain(
                    info.members
                        .iter()
                        .flat_map(|m| m.assignment.iter().cloned()),
                )
                .collect();
            let log_end = client.log_end_offsets(&partitions)?;
            let rows = partition_rows(&info, &committed, &log_end);
            chunks.extend(notice);
            if !rows.is_empty() {
                chunks.push(Chunk::Stdout(format_offsets(&rows)));
            }
        }
        View::Members { verbose } => {
            chunks.extend(notice);
            if !info.members.is_empty() {
                chunks.push(Chunk::Stdout(format_members(&info, verbose)));
            }
        }
        View::State => {
            chunks.extend(notice);
            chunks.push(Chunk::Stdout(format_state(&info)));
        }
    }
    Ok(chunks)
}

/// Runs `strata consumer-groups` and returns what to print. Fails outright if no broker
/// can be reached or one answers with an error; a group that does not exist is
/// reported in the output and makes [`Outcome::success`] false, and the other groups
/// are still described.
pub fn run(args: &ConsumerGroupsArgs) -> Result<Outcome, Error> {
    let mut client = Client::new(&args.bootstrap_server, Duration::from_millis(args.timeout))?;
    let mut outcome = Outcome {
        chunks: Vec::new(),
        success: true,
    };
    if args.list {
        let states = match &args.state {
            Some(s) => parse_states(s)?,
            None => Vec::new(),
        };
        let groups = client.list_groups(&states)?;
        outcome.chunks.push(Chunk::Stdout(format_group_list(
            &groups,
            args.state.is_some(),
        )));
        return Ok(outcome);
    }
    let view = match (&args.state, args.members) {
        (Some(s), _) if !s.is_empty() => {
            return Err(Error::Usage(
                "--state takes no value with --describe".to_string(),
            ))
        }
        (Some(_), _) => View::State,
        (None, true) => View::Members {
            verbose: args.verbose,
        },
        (None, false) => View::Offsets,
    };
    let groups: Vec<String> = if args.all_groups {
        client
            .list_groups(&[])?
            .into_iter()
            .map(|(g, _)| g)
            .collect()
    } else {
        let set: BTreeSet<&String> = args.groups.iter().collect();
        set.into_iter().cloned().collect()
    };
    for group in groups {
        match describe_one(&mut client, &group, view) {
            Ok(chunks) => outcome.chunks.extend(chunks),
            Err(e @ Error::GroupNotFound(_)) => {
                outcome.chunks.push(Chunk::Stderr(format!("Error: {e}\n")));
                outcome.success = false;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedTopic;

    fn node() -> Node {
        Node {
            id: 1,
            host: "127.0.0.1".to_string(),
            port: 9092,
        }
    }

    fn member(id: &str, assignment: &[(&str, i32)]) -> Member {
        Member {
            consumer_id: id.to_string(),
            group_instance_id: None,
            host: "/127.0.0.1".to_string(),
            client_id: format!("client-{id}"),
            assignment: assignment
                .iter()
                .map(|(t, p)| (t.to_string(), *p))
                .collect(),
        }
    }

    fn group(state: &str, members: Vec<Member>) -> GroupInfo {
        GroupInfo {
            group: "g".to_string(),
            coordinator: node(),
            state: state.to_string(),
            assignment_strategy: "range".to_string(),
            members,
        }
    }

    fn offsets(entries: &[(&str, i32, i64)]) -> BTreeMap<TopicPartition, i64> {
        entries
            .iter()
            .map(|(t, p, o)| ((t.to_string(), *p), *o))
            .collect()
    }

    #[test]
    fn rows_join_assignments_commits_and_log_ends() {
        let g = group(
            "Stable",
            vec![
                member("a", &[("t", 2)]),
                member("b", &[("t", 1), ("t", 0)]),
                member("idle", &[]),
            ],
        );
        let committed = offsets(&[("t", 0, 5), ("t", 2, 9), ("old", 0, 3)]);
        let log_end = offsets(&[("t", 0, 10), ("t", 1, 10), ("t", 2, 10)]);
        let rows = partition_rows(&g, &committed, &log_end);
        let view: Vec<_> = rows
            .iter()
            .map(|r| {
                (
                    r.topic.as_str(),
                    r.partition,
                    r.current_offset,
                    r.log_end_offset,
                    r.lag(),
                    r.consumer_id.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            view,
            vec![
                // b has most partitions: first, its partitions sorted.
                ("t", 0, Some(5), Some(10), Some(5), Some("b")),
                ("t", 1, None, Some(10), None, Some("b")),
                ("t", 2, Some(9), Some(10), Some(1), Some("a")),
                // committed but owned by nobody; its topic has no known log end.
                ("old", 0, Some(3), None, None, None),
            ]
        );
        assert_eq!(rows[0].client_id.as_deref(), Some("client-b"));
        assert_eq!(rows[3].host, None);
    }

    #[test]
    fn offsets_table_has_kafkas_columns_and_dashes() {
        let g = group("Stable", vec![member("consumer-1-abc", &[("orders", 0)])]);
        let rows = partition_rows(
            &g,
            &offsets(&[("orders", 0, 5), ("orders", 1, 7)]),
            &offsets(&[("orders", 0, 10)]),
        );
        let table = format_offsets(&rows);
        let expected = "
GROUP           TOPIC           PARTITION  CURRENT-OFFSET  LOG-END-OFFSET  LAG             CONSUMER-ID     HOST            CLIENT-ID
g               orders          0          5               10              5               consumer-1-abc  /127.0.0.1      client-consumer-1-abc
g               orders          1          7               -               -               -               -               -
";
        assert_eq!(table, expected);
        assert_eq!(format_offsets(&[]), "");
    }

    #[test]
    fn long_values_widen_their_columns() {
        let long = "a-consumer-id-much-longer-than-fifteen";
        let g = group("Stable", vec![member(long, &[("t", 0)])]);
        let table = format_offsets(&partition_rows(&g, &BTreeMap::new(), &BTreeMap::new()));
        let lines: Vec<&str> = table.lines().collect();
        let host_col = lines[1].find("HOST").unwrap();
        assert_eq!(host_col, lines[2].find("/127.0.0.1").unwrap());
        assert_eq!(
            host_col,
            lines[1].find("CONSUMER-ID").unwrap() + long.len() + 1
        );
    }

    #[test]
    fn members_table_with_and_without_assignments() {
        let mut g = group(
            "Stable",
            vec![
                member("m1", &[("t", 1), ("t", 0), ("u", 3)]),
                member("m2", &[]),
            ],
        );
        let expected = "
GROUP           CONSUMER-ID     HOST            CLIENT-ID       #PARTITIONS
g               m1              /127.0.0.1      client-m1       3
g               m2              /127.0.0.1      client-m2       0
";
        assert_eq!(format_members(&g, false), expected);
        let verbose = format_members(&g, true);
        assert!(
            verbose.contains("#PARTITIONS     ASSIGNMENT\n"),
            "{verbose}"
        );
        assert!(
            verbose.contains("3               t(0,1),u(3)\n"),
            "{verbose}"
        );
        assert!(verbose.contains("0               -\n"), "{verbose}");
        g.members[0].group_instance_id = Some("static-1".to_string());
        let with_instance = format_members(&g, false);
        assert!(with_instance.contains("CONSUMER-ID     GROUP-INSTANCE-ID HOST"));
        assert!(with_instance.contains("m1              static-1          /127.0.0.1"));
        g.members.clear();
        assert_eq!(format_members(&g, false), "");
    }

    #[test]
    fn state_table() {
        let g = group("Stable", vec![member("m1", &[])]);
        let expected = "
GROUP           COORDINATOR (ID)          ASSIGNMENT-STRATEGY  STATE                #MEMBERS
g               127.0.0.1:9092  (1)       range                Stable               1
";
        assert_eq!(format_state(&g), expected);
        let mut empty = group("Empty", vec![]);
        empty.assignment_strategy.clear();
        assert!(format_state(&empty).contains(" -                    Empty                0\n"));
    }

    #[test]
    fn group_list_plain_and_with_state() {
        let groups = vec![
            ("a".to_string(), "Stable".to_string()),
            ("b".to_string(), "Empty".to_string()),
        ];
        assert_eq!(format_group_list(&groups, false), "a\nb\n");
        assert_eq!(
            format_group_list(&groups, true),
            format!(
                "GROUP{}STATE\na{}Stable\nb{}Empty\n",
                " ".repeat(21),
                " ".repeat(25),
                " ".repeat(25)
            )
        );
        assert_eq!(format_group_list(&[], false), "");
    }

    #[test]
    fn notices_follow_the_group_state() {
        assert_eq!(
            state_notice("g", "Empty").as_deref(),
            Some("\nConsumer group 'g' has no active members.\n")
        );
        assert!(state_notice("g", "PreparingRebalance")
            .unwrap()
            .contains("is rebalancing"));
        assert_eq!(state_notice("g", "Stable"), None);
    }

    fn encoded_assignment(version: i16) -> Vec<u8> {
        let a = ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
            AssignedTopic::default()
                .with_topic(TopicName(str_bytes("t")))
                .with_partitions(vec![0, 2]),
            AssignedTopic::default()
                .with_topic(TopicName(str_bytes("u")))
                .with_partitions(vec![1]),
        ]);
        let mut buf = BytesMut::new();
        buf.put_i16(version);
        a.encode(&mut buf, version.min(3)).unwrap();
        buf.to_vec()
    }

    #[test]
    fn assignments_decode_at_every_version() {
        let want = vec![
            ("t".to_string(), 0),
            ("t".to_string(), 2),
            ("u".to_string(), 1),
        ];
        for v in 0..=3 {
            assert_eq!(
                decode_assignment(&encoded_assignment(v)).unwrap(),
                want,
                "v{v}"
            );
        }
        // A newer version is read as the newest known one.
        assert_eq!(decode_assignment(&encoded_assignment(7)).unwrap(), want);
        assert_eq!(decode_assignment(&[]).unwrap(), Vec::new());
        assert!(decode_assignment(&[0]).is_err());
        assert!(decode_assignment(&[0xff, 0xff, 0, 0]).is_err());
    }

    #[test]
    fn state_filters_parse_case_insensitively() {
        assert_eq!(
            parse_states("stable, EMPTY").unwrap(),
            vec!["Stable".to_string(), "Empty".to_string()]
        );
        assert!(matches!(parse_states("Sleeping"), Err(Error::Usage(_))));
    }

    #[test]
    fn ipv6_coordinators_get_brackets() {
        assert_eq!(address("::1", 9092), "[::1]:9092");
        assert_eq!(address("broker-1", 9092), "broker-1:9092");
    }
}
