//! Three (or more) real `strata` processes on 127.0.0.1 forming one cluster: combined
//! broker+controller nodes (or dedicated controllers beside broker-only nodes) with
//! their own ports and directories, started, killed, frozen and restarted by the tests.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
use kafka_protocol::messages::{
    ApiKey, DescribeQuorumRequest, DescribeQuorumResponse, MetadataRequest, MetadataResponse,
    RequestKind, ResponseKind, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use tempfile::TempDir;

use super::{free_port, RawClient};

/// What a node runs (`process.roles`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// broker,controller
    Combined,
    /// controller alone: a voter with only its controller listener.
    Controller,
    /// broker alone: a metadata observer.
    Broker,
}

/// One node's fixed identity: id, role, ports and data directory.
pub struct NodeSpec {
    pub id: i32,
    pub role: Role,
    pub port: u16,
    pub controller_port: u16,
    pub data: PathBuf,
}

impl NodeSpec {
    pub fn new(id: i32, role: Role, dir: &std::path::Path) -> NodeSpec {
        NodeSpec {
            id,
            role,
            port: free_port(),
            controller_port: free_port(),
            data: dir.join(format!("node{id}")),
        }
    }

    fn is_voter(&self) -> bool {
        self.role != Role::Broker
    }

    /// The port it serves first: its client listener, or a dedicated controller's
    /// controller listener.
    fn first_port(&self) -> u16 {
        if self.role == Role::Controller {
            self.controller_port
        } else {
            self.port
        }
    }
}

pub struct Cluster {
    pub dir: TempDir,
    pub specs: Vec<NodeSpec>,
    /// Running processes by node index (None = stopped).
    pub procs: Vec<Option<Child>>,
    /// Overrides every node gets.
    pub extra: Vec<String>,
    /// The security protocol of the client (and inter-broker) listener.
    pub protocol: String,
}

impl Cluster {
    /// Starts `n` combined voters and waits until every one serves clients.
    pub fn start(n: usize, extra: &[&str]) -> Cluster {
        Self::start_roles(&vec![Role::Combined; n], extra)
    }

    /// Starts one node per role (ids 1, 2, ...) and waits until every one listens.
    pub fn start_roles(roles: &[Role], extra: &[&str]) -> Cluster {
        Self::start_roles_with(roles, "PLAINTEXT", extra)
    }

    /// As [`start_roles`](Self::start_roles), with the client and inter-broker
    /// listener speaking `protocol` (e.g. SSL).
    pub fn start_roles_with(roles: &[Role], protocol: &str, extra: &[&str]) -> Cluster {
        Self::start_formatted(roles, protocol, extra, &[])
    }

    /// As [`start_roles_with`](Self::start_roles_with), each node's data directory
    /// first formatted with one cluster id and `add_scram`'s users (`strata storage
    /// format --add-scram`, as `kafka-storage format`), when any are given.
    pub fn start_formatted(
        roles: &[Role],
        protocol: &str,
        extra: &[&str],
        add_scram: &[&str],
    ) -> Cluster {
        let n = roles.len();
        let dir = tempfile::tempdir().unwrap();
        let specs: Vec<NodeSpec> = roles
            .iter()
            .enumerate()
            .map(|(i, role)| NodeSpec::new(i as i32 + 1, *role, dir.path()))
            .collect();
        let mut cluster = Cluster {
            dir,
            procs: (0..n).map(|_| None).collect(),
            specs,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            protocol: protocol.to_string(),
        };
        if !add_scram.is_empty() {
            let mut cluster_id = None::<String>;
            for s in &cluster.specs {
                let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
                cmd.args(["storage", "format", "--override"])
                    .arg(format!("log.dirs={}", s.data.display()))
                    .arg("--override")
                    .arg(format!("node.id={}", s.id));
                if let Some(id) = &cluster_id {
                    cmd.args(["--cluster-id", id]);
                }
                for user in add_scram {
                    cmd.args(["--add-scram", user]);
                }
                let out = cmd.output().unwrap();
                let stdout = String::from_utf8_lossy(&out.stdout).to_string();
                assert!(
                    out.status.success(),
                    "format: {stdout} {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                // "Formatted <dir> with cluster id <id> (node <n>)."
                cluster_id = cluster_id.or_else(|| {
                    stdout
                        .split("cluster id ")
                        .nth(1)
                        .and_then(|rest| rest.split_whitespace().next())
                        .map(str::to_string)
                });
            }
        }
        for i in 0..n {
            cluster.spawn(i);
        }
        for i in 0..n {
            cluster.wait_listening(i);
        }
        cluster
    }

    pub fn voters(&self) -> String {
        self.specs
            .iter()
            .filter(|s| s.is_voter())
            .map(|s| format!("{}@127.0.0.1:{}", s.id, s.controller_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn log_path(&self, i: usize) -> PathBuf {
        self.specs[i].data.with_extension("log")
    }

    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.log_path(i)).unwrap_or_default()
    }

    /// Starts node `i` without waiting (it waits for its quorum itself).
    pub fn spawn(&mut self, i: usize) {
        let s = &self.specs[i];
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
        let (roles, listeners) = match s.role {
            Role::Combined => (
                "broker,controller",
                format!(
                    "{}://127.0.0.1:{},CONTROLLER://127.0.0.1:{}",
                    self.protocol, s.port, s.controller_port
                ),
            ),
            Role::Controller => (
                "controller",
                format!("CONTROLLER://127.0.0.1:{}", s.controller_port),
            ),
            Role::Broker => (
                "broker",
                format!("{}://127.0.0.1:{}", self.protocol, s.port),
            ),
        };
        let mut overrides = vec![
            format!("node.id={}", s.id),
            format!("process.roles={roles}"),
            format!("listeners={listeners}"),
            "controller.listener.names=CONTROLLER".to_string(),
            format!("controller.quorum.voters={}", self.voters()),
            format!("log.dirs={}", s.data.display()),
            // One rack (availability zone) per node, as a three-AZ deployment.
            format!("broker.rack=az-{}", s.id),
            "broker.heartbeat.interval.ms=300".to_string(),
            "broker.session.timeout.ms=3000".to_string(),
        ];
        overrides.extend(self.extra.iter().cloned());
        for o in overrides {
            cmd.arg("--override").arg(o);
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(i))
            .unwrap();
        let child = cmd
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn strata");
        self.procs[i] = Some(child);
    }

    pub fn wait_listening(&mut self, i: usize) {
        let deadline = Instant::now() + Duration::from_secs(120);
        let addr: SocketAddr = format!("127.0.0.1:{}", self.specs[i].first_port())
            .parse()
            .unwrap();
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Some(Ok(Some(status))) = self.procs[i].as_mut().map(|c| c.try_wait()) {
                panic!("node {} exited with {status}: {}", i + 1, self.log(i));
            }
            assert!(
                Instant::now() < deadline,
                "node {} did not start listening: {}",
                i + 1,
                self.log(i)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn restart(&mut self, i: usize) {
        self.spawn(i);
        self.wait_listening(i);
    }

    pub fn bootstrap(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.specs[i].port)
    }

    /// Every running node's address, for `bootstrap.servers`.
    pub fn bootstrap_all(&self) -> String {
        (0..self.specs.len())
            .filter(|i| self.procs[*i].is_some() && self.specs[*i].role != Role::Controller)
            .map(|i| self.bootstrap(i))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn kill9(&mut self, i: usize) {
        if let Some(mut c) = self.procs[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn signal(&self, i: usize, sig: &str) {
        let pid = self.procs[i].as_ref().expect("running").id();
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(pid.to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// SIGTERM and wait for the process to exit (up to 60 s).
    pub fn terminate(&mut self, i: usize) -> std::process::ExitStatus {
        self.signal(i, "TERM");
        let mut child = self.procs[i].take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("node {} did not stop on SIGTERM: {}", i + 1, self.log(i));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The index of node `id`.
    pub fn index_of(&self, id: i32) -> usize {
        self.specs.iter().position(|s| s.id == id).unwrap()
    }

    /// DescribeQuorum through node `i`.
    pub fn describe_quorum(&self, i: usize) -> DescribeQuorumResponse {
        let mut raw = RawClient::connect(&self.bootstrap(i));
        let req = DescribeQuorumRequest::default().with_topics(vec![TopicData::default()
            .with_topic_name(TopicName(StrBytes::from_static_str("__cluster_metadata")))
            .with_partitions(vec![PartitionData::default().with_partition_index(0)])]);
        match raw.call(ApiKey::DescribeQuorum, 2, RequestKind::DescribeQuorum(req)) {
            ResponseKind::DescribeQuorum(r) => r,
            other => panic!("unexpected {other:?}"),
        }
    }

    /// (leader id, leader epoch) of the quorum as node `i` reports it.
    pub fn quorum_leader(&self, i: usize) -> Option<(i32, i32)> {
        let r = self.describe_quorum(i);
        if r.error_code != 0 {
            return None;
        }
        let p = &r.topics.first()?.partitions.first()?;
        (p.error_code == 0).then_some((p.leader_id.0, p.leader_epoch))
    }

    /// Metadata for every topic through node `i`.
    pub fn metadata(&self, i: usize) -> MetadataResponse {
        let mut raw = RawClient::connect(&self.bootstrap(i));
        match raw.call(
            ApiKey::Metadata,
            12,
            RequestKind::Metadata(MetadataRequest::default().with_topics(None)),
        ) {
            ResponseKind::Metadata(r) => r,
            other => panic!("unexpected {other:?}"),
        }
    }

    /// Polls `check` every 100 ms until it returns Some, failing after `within`.
    pub fn wait_for<T>(
        &self,
        what: &str,
        within: Duration,
        mut check: impl FnMut() -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + within;
        loop {
            if let Some(v) = check() {
                return v;
            }
            if Instant::now() > deadline {
                let logs: Vec<String> = (0..self.specs.len())
                    .map(|i| format!("--- node {} ---\n{}", i + 1, tail(&self.log(i), 60)))
                    .collect();
                panic!(
                    "timed out after {within:?} waiting for {what}\n{}",
                    logs.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in self.procs.iter_mut().flatten() {
            // A frozen process must be woken to die cleanly.
            let _ = Command::new("kill")
                .arg("-CONT")
                .arg(c.id().to_string())
                .status();
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
