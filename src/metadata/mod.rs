//! The metadata quorum.
//!
//! This module owns openraft: the raft log and state machine storage ([`store`]), the
//! transport between voters ([`network`]) and the openraft type configuration
//! ([`types`]). No openraft type leaves this module. The rest of the crate reads the
//! agreed [`ClusterImage`] through a [`MetadataView`] and changes it only through
//! [`MetadataQuorum::propose`].

pub mod acl;
pub mod controller;
pub mod image;
pub mod metrics;
pub(crate) mod network;
pub(crate) mod observer;
pub(crate) mod rpc;
pub(crate) mod store;
pub(crate) mod types;
pub mod view;

pub use controller::{
    AlterPartition, AlterPartitionError, AlteredPartition, BrokerHeartbeat, ControllerReply,
    ControllerRequest, ControllerSettings, ElectionOutcome, QuorumStatus, ReassignOutcome,
    VoterStatus,
};
pub use image::*;
pub use rpc::{Admit, Admitted, RpcTls};
pub use view::MetadataView;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, Fatal, RaftError};
use openraft::{BasicNode, Config, RaftMetrics, ServerState, SnapshotPolicy};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use controller::Controller;
use network::NetworkFactory;
use observer::MemberStatus;
use rpc::{ProbeReply, RpcClient, RpcHandler, RpcReply, RpcRequest};
use store::{LogReader, LogStore, StateMachineStore};
use types::Raft;
use view::Published;

/// How long a single node waits to lead and catch up before giving up.
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a controller call (a proposal included) keeps looking for the active
/// controller before failing.
const CONTROLLER_CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// One RPC to another voter.
const RPC_TIMEOUT: Duration = Duration::from_secs(10);
/// An observer that has not fetched for this long is left out of DescribeQuorum.
const OBSERVER_FORGOTTEN_AFTER: Duration = Duration::from_secs(60);
/// How often a node still waiting for the quorum says so.
const WAITING_LOG_EVERY: Duration = Duration::from_secs(5);

/// Why a metadata operation failed.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("metadata storage I/O error on {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("metadata file {} is corrupt: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
    #[error("invalid metadata quorum configuration: {0}")]
    Config(String),
    #[error("metadata raft error: {0}")]
    Raft(String),
    #[error("this node is not the metadata quorum leader")]
    NotLeader,
    #[error("no active controller answered within {0:?}")]
    NoController(Duration),
    #[error("the metadata quorum is shutting down")]
    ShuttingDown,
    #[error("the controller refused: {0}")]
    Refused(String),
}

/// Tunables that tests lower; production uses [`Tuning::default`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tuning {
    /// Build a snapshot once this many entries were committed since the last one.
    pub(crate) snapshot_every: u64,
    /// Entries already in a snapshot that are kept in the log (for lagging followers).
    pub(crate) keep_after_snapshot: u64,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            snapshot_every: 10_000,
            keep_after_snapshot: 1_000,
        }
    }
}

/// How to open a quorum member.
pub struct QuorumOptions {
    pub node_id: u64,
    /// The voters and their controller listener addresses; empty = a single node
    /// that is its own quorum (the embedded default). A node that is not among them
    /// is an observer (a broker-only node).
    pub voters: BTreeMap<u64, String>,
    /// The bound controller listener (a voter in a cluster); `None` for a single node.
    pub listener: Option<TcpListener>,
    pub controller: ControllerSettings,
    /// This node's data shows it was part of a formed cluster before (its log dirs
    /// carry a cluster id): it must never initialize a fresh quorum.
    pub joined_before: bool,
    /// Cancels waiting for the quorum (SIGTERM during start-up).
    pub cancel: CancellationToken,
    /// Whether a connection (local, peer) to the controller listener is admitted
    /// (the security groups); `None` admits every one.
    pub admit: Option<rpc::Admit>,
    /// TLS on the controller listener, both sides (default: PLAINTEXT).
    pub tls: RpcTls,
}

/// A running metadata quorum member. Cheap to clone.
#[derive(Clone)]
pub struct MetadataQuorum {
    inner: Arc<Inner>,
}

struct Inner {
    node_id: u64,
    /// The raft member; `None` on a broker-only node (a metadata observer).
    voter: Option<Voter>,
    /// An observer's view of the quorum; `None` on a voter (raft's metrics say it).
    observer: Option<watch::Sender<MemberStatus>>,
    rx: watch::Receiver<Published>,
    /// Controller listener addresses of the voters (empty for a single node).
    voters: BTreeMap<u64, String>,
    clients: parking_lot::Mutex<HashMap<u64, Arc<RpcClient>>>,
    /// TLS for calls to other nodes and on this node's controller listener.
    tls: RpcTls,
    controller: Controller,
    /// The observers' latest metadata fetches, as the leader saw them.
    observers: parking_lot::Mutex<BTreeMap<u64, ObserverProgress>>,
    /// Which voter an observer asks next while it knows no leader.
    turn: AtomicUsize,
    /// Stops the RPC server, the controller's timer and an observer's fetches.
    stop: CancellationToken,
}

/// A voter's raft member.
struct Voter {
    raft: Raft,
    metrics: watch::Receiver<RaftMetrics<u64, BasicNode>>,
    /// The committed log, read to answer observers.
    log: LogReader,
}

/// An observer's latest fetch: the index it had applied, and when.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ObserverProgress {
    pub applied: Option<u64>,
    pub at: Instant,
}

impl std::fmt::Debug for MetadataQuorum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetadataQuorum").finish_non_exhaustive()
    }
}

fn raft_error(e: impl std::fmt::Display) -> MetadataError {
    MetadataError::Raft(e.to_string())
}

/// The voters to initialize a fresh quorum with; an empty map means "just this node,
/// no address".
fn initial_members(
    node_id: u64,
    voters: &BTreeMap<u64, String>,
) -> Result<BTreeMap<u64, BasicNode>, MetadataError> {
    if voters.is_empty() {
        return Ok(BTreeMap::from([(node_id, BasicNode::new(""))]));
    }
    if !voters.contains_key(&node_id) {
        return Err(MetadataError::Config(format!(
            "node {node_id} is not among the metadata voters {:?}",
            voters.keys().collect::<Vec<_>>()
        )));
    }
    Ok(voters
        .iter()
        .map(|(id, addr)| (*id, BasicNode::new(addr.clone())))
        .collect())
}

/// Loads both stores from `dir` and checks they agree. Blocking.
fn load_stores(
    dir: &Path,
) -> Result<(LogStore, StateMachineStore, watch::Receiver<Published>), MetadataError> {
    std::fs::create_dir_all(dir).map_err(|source| MetadataError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let log = LogStore::open(dir)?;
    let (sm, rx) = StateMachineStore::open(dir)?;

    let snapshot_index = sm.last_applied().map(|l| l.index);
    if let Some(purged) = log.last_purged() {
        if snapshot_index < Some(purged.index) {
            return Err(MetadataError::Corrupt {
                path: dir.join(store::SNAPSHOT_FILE),
                reason: format!(
                    "the log is purged up to entry {} but the snapshot covers only {:?}",
                    purged.index, snapshot_index
                ),
            });
        }
    }
    if let Some(committed) = log.committed() {
        let known = log.last_log_id().map(|l| l.index).max(snapshot_index);
        if known < Some(committed.index) {
            return Err(MetadataError::Corrupt {
                path: dir.join(store::LOG_FILE),
                reason: format!(
                    "entry {} was committed but the log and snapshot end at {:?}",
                    committed.index, known
                ),
            });
        }
    }
    Ok((log, sm, rx))
}

/// Serves the controller listener: raft RPCs go to raft, controller calls to the
/// controller when this node leads.
struct RpcServer(MetadataQuorum);

impl RpcHandler for RpcServer {
    async fn handle(&self, request: RpcRequest) -> RpcReply {
        let Some(voter) = &self.0.inner.voter else {
            return RpcReply::Error("this node is not a metadata voter".into());
        };
        match request {
            RpcRequest::AppendEntries(r) => {
                RpcReply::AppendEntries(voter.raft.append_entries(r).await)
            }
            RpcRequest::Vote(r) => RpcReply::Vote(voter.raft.vote(r).await),
            RpcRequest::InstallSnapshot(r) => {
                RpcReply::InstallSnapshot(voter.raft.install_snapshot(r).await)
            }
            RpcRequest::Probe => RpcReply::Probe(self.0.probe_reply()),
            RpcRequest::Controller(req) => {
                let (reply, applied) = self.0.handle_as_controller(req).await;
                RpcReply::Controller(reply, applied)
            }
            RpcRequest::FetchMetadata { node_id, after } => {
                RpcReply::Metadata(self.0.answer_metadata_fetch(node_id, after).await)
            }
        }
    }
}

impl MetadataQuorum {
    /// Opens (or creates) a single-node quorum under `dir` (tests and tools): this
    /// node is the only voter. Returns once it leads with its whole log applied.
    pub async fn open(
        dir: &Path,
        node_id: u64,
        voters: BTreeMap<u64, String>,
    ) -> Result<Self, MetadataError> {
        Self::open_with(
            dir,
            Self::single_node_options(node_id, voters),
            Tuning::default(),
        )
        .await
    }

    fn single_node_options(node_id: u64, voters: BTreeMap<u64, String>) -> QuorumOptions {
        QuorumOptions {
            node_id,
            voters,
            listener: None,
            controller: ControllerSettings {
                session_timeout: Duration::from_secs(9),
                rebalance: None,
                unclean_default: false,
            },
            joined_before: false,
            cancel: CancellationToken::new(),
            admit: None,
            tls: RpcTls::default(),
        }
    }

    /// Opens a quorum member as `options` say. A single node returns once it leads
    /// with its log applied; a voter of a cluster returns once a leader is known and
    /// this node has applied everything that leader had applied when asked, waiting
    /// (and saying so every few seconds) for as long as the quorum is unreachable.
    /// A node that is not among the voters is an observer (see [`observer`]).
    pub async fn open_member(dir: &Path, options: QuorumOptions) -> Result<Self, MetadataError> {
        if !options.voters.is_empty() && !options.voters.contains_key(&options.node_id) {
            return Self::open_observer(options).await;
        }
        Self::open_with(dir, options, Tuning::default()).await
    }

    pub(crate) async fn open_with(
        dir: &Path,
        options: QuorumOptions,
        tuning: Tuning,
    ) -> Result<Self, MetadataError> {
        let node_id = options.node_id;
        let members = initial_members(node_id, &options.voters)?;
        let owned_dir = dir.to_path_buf();
        let (log, sm, rx) = tokio::task::spawn_blocking(move || load_stores(&owned_dir))
            .await
            .map_err(raft_error)??;

        let config = Config {
            cluster_name: "strata-metadata".to_string(),
            heartbeat_interval: 100,
            election_timeout_min: 500,
            election_timeout_max: 1000,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(tuning.snapshot_every),
            max_in_snapshot_log_to_keep: tuning.keep_after_snapshot,
            ..Default::default()
        }
        .validate()
        .map_err(|e| MetadataError::Config(e.to_string()))?;

        let log_reader = log.reader();
        let network = NetworkFactory {
            tls: options.tls.clone(),
        };
        let raft = Raft::new(node_id, Arc::new(config), network, log, sm)
            .await
            .map_err(raft_error)?;
        let quorum = Self::new_inner(
            node_id,
            Some(Voter {
                metrics: raft.metrics(),
                raft,
                log: log_reader,
            }),
            None,
            rx,
            &options,
        );
        if let Some(listener) = options.listener {
            tokio::spawn(rpc::serve(
                listener,
                Arc::new(RpcServer(quorum.clone())),
                quorum.inner.stop.clone(),
                options.admit.clone(),
                options.tls.clone(),
            ));
        }
        tokio::spawn(quorum.clone().controller_timer());
        let started = if options.voters.len() > 1 {
            quorum
                .start_cluster_member(members, options.joined_before, &options.cancel)
                .await
        } else {
            quorum.start_single(node_id, members).await
        };
        match started {
            Ok(()) => {
                info!(dir = %dir.display(), node_id, voters = ?options.voters.keys().collect::<Vec<_>>(), "metadata quorum is up");
                Ok(quorum)
            }
            Err(e) => {
                if let Err(stop) = quorum.shutdown().await {
                    warn!(error = %stop, "stopping metadata raft after a failed open");
                }
                Err(e)
            }
        }
    }

    fn new_inner(
        node_id: u64,
        voter: Option<Voter>,
        observer: Option<watch::Sender<MemberStatus>>,
        rx: watch::Receiver<Published>,
        options: &QuorumOptions,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                node_id,
                voter,
                observer,
                rx,
                voters: options.voters.clone(),
                clients: parking_lot::Mutex::new(HashMap::new()),
                tls: options.tls.clone(),
                controller: Controller::new(options.controller.clone()),
                observers: parking_lot::Mutex::new(BTreeMap::new()),
                turn: AtomicUsize::new(0),
                stop: CancellationToken::new(),
            }),
        }
    }

    /// A broker-only node: fetches the metadata from the active controller instead of
    /// voting. Returns once it has caught up with the controller.
    async fn open_observer(options: QuorumOptions) -> Result<Self, MetadataError> {
        let (publish, rx) = watch::channel(Published::default());
        let (status, _) = watch::channel(MemberStatus::default());
        let quorum = Self::new_inner(options.node_id, None, Some(status), rx, &options);
        tokio::spawn(quorum.clone().observe(publish));
        match quorum.start_observer(&options.cancel).await {
            Ok(()) => {
                info!(node_id = options.node_id, voters = ?options.voters.keys().collect::<Vec<_>>(), "metadata observer caught up with the controller quorum");
                Ok(quorum)
            }
            Err(e) => {
                quorum.inner.stop.cancel();
                Err(e)
            }
        }
    }

    /// This node's raft member, or `NotLeader` on an observer.
    fn voter(&self) -> Result<&Voter, MetadataError> {
        self.inner.voter.as_ref().ok_or(MetadataError::NotLeader)
    }

    /// The active controller, its term and what this node applied, as it knows them.
    fn status(&self) -> MemberStatus {
        match (&self.inner.voter, &self.inner.observer) {
            (Some(v), _) => {
                let m = v.metrics.borrow();
                MemberStatus {
                    leader: m.current_leader,
                    term: m.current_term,
                    applied: m.last_applied.map(|l| l.index),
                    caught_up: true,
                    stopped: m.running_state.is_err(),
                }
            }
            (None, Some(status)) => status.borrow().clone(),
            (None, None) => MemberStatus::default(),
        }
    }

    /// Initializes a fresh single node, then waits until it leads with its whole log
    /// applied.
    async fn start_single(
        &self,
        node_id: u64,
        members: BTreeMap<u64, BasicNode>,
    ) -> Result<(), MetadataError> {
        let raft = &self.voter()?.raft;
        if !raft.is_initialized().await.map_err(raft_error)? {
            info!(node_id, ?members, "initializing a fresh metadata quorum");
            raft.initialize(members).await.map_err(raft_error)?;
        } else {
            self.check_stored_voter(node_id).await?;
        }
        // A leader commits everything in its log (a new one through its blank entry, a
        // restored one directly), so "leader and applied >= last log index" means every
        // record ever committed is in the image.
        let metrics = raft
            .wait(Some(OPEN_TIMEOUT))
            .metrics(
                move |m| {
                    m.running_state.is_err()
                        || (m.state == ServerState::Leader
                            && m.current_leader == Some(node_id)
                            && m.last_log_index.is_some()
                            && m.last_applied.map(|l| l.index) >= m.last_log_index)
                },
                "metadata node leads with its log applied",
            )
            .await
            .map_err(raft_error)?;
        if let Err(e) = &metrics.running_state {
            return Err(MetadataError::Raft(format!("metadata raft stopped: {e}")));
        }
        Ok(())
    }

    async fn check_stored_voter(&self, node_id: u64) -> Result<(), MetadataError> {
        let voters: Vec<u64> = self
            .voter()?
            .raft
            .with_raft_state(|st| st.membership_state.effective().voter_ids().collect())
            .await
            .map_err(raft_error)?;
        if !voters.contains(&node_id) {
            return Err(MetadataError::Config(format!(
                "node {node_id} is not a voter of the stored metadata quorum (voters {voters:?})"
            )));
        }
        Ok(())
    }

    /// A voter of a cluster: a fresh one initializes the quorum only when a majority
    /// of the voters answer that they are fresh too and none belongs to a formed
    /// quorum, so a voter whose metadata was wiped rejoins (the leader replicates to
    /// it) instead of starting a second cluster. Then waits until caught up.
    async fn start_cluster_member(
        &self,
        members: BTreeMap<u64, BasicNode>,
        joined_before: bool,
        cancel: &CancellationToken,
    ) -> Result<(), MetadataError> {
        let inner = &self.inner;
        let voter = self.voter()?;
        let node_id = inner.node_id;
        let majority = inner.voters.len() / 2 + 1;
        let mut last_said = Instant::now();
        // "Formed" means a membership is stored; a vote alone (another fresh voter
        // asked for ours before we probed) is not.
        if self.probe_reply().initialized {
            self.check_stored_voter(node_id).await?;
        } else {
            loop {
                if self.probe_reply().initialized {
                    // Another voter's leader replicated the membership to us meanwhile.
                    break;
                }
                let answers = self.probe_peers().await;
                let formed: Vec<u64> = answers
                    .iter()
                    .filter(|a| a.initialized)
                    .map(|a| a.node_id)
                    .collect();
                if !formed.is_empty() {
                    info!(node_id, formed = ?formed, "joining the existing metadata quorum; waiting for its leader to replicate to this node");
                    break;
                }
                let fresh = answers.len() + 1;
                if joined_before {
                    if last_said.elapsed() >= WAITING_LOG_EVERY {
                        warn!(node_id, "this node's metadata directory is empty but its log dirs belong to a cluster: waiting for the other voters to replicate the metadata to it");
                        last_said = Instant::now();
                    }
                } else if fresh >= majority {
                    info!(
                        node_id,
                        ?members,
                        fresh,
                        "initializing a fresh metadata quorum"
                    );
                    match voter.raft.initialize(members.clone()).await {
                        Ok(()) => {}
                        // Someone's leader reached us first: the quorum exists.
                        Err(RaftError::APIError(_)) => {}
                        Err(e) => return Err(raft_error(e)),
                    }
                    break;
                } else if last_said.elapsed() >= WAITING_LOG_EVERY {
                    warn!(node_id, reachable = fresh, needed = majority, voters = ?inner.voters, "waiting for a majority of controller.quorum.voters to form the metadata quorum");
                    last_said = Instant::now();
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    _ = cancel.cancelled() => return Err(MetadataError::ShuttingDown),
                }
            }
        }
        // Caught up: a leader is known and we applied what it had applied.
        let mut last_said = Instant::now();
        loop {
            let m = voter.metrics.borrow().clone();
            if let Err(e) = &m.running_state {
                return Err(MetadataError::Raft(format!("metadata raft stopped: {e}")));
            }
            let applied = m.last_applied.map(|l| l.index);
            // What must be applied here: the leader's log end if we lead, else what
            // the leader had applied when asked.
            let target = match m.current_leader {
                Some(l) if l == node_id && m.state == ServerState::Leader => m.last_log_index,
                Some(l) => match self.client(l).call(&RpcRequest::Probe, RPC_TIMEOUT).await {
                    Ok(RpcReply::Probe(p)) => p.applied,
                    _ => None,
                },
                None => None,
            };
            if target.is_some() && applied >= target {
                return Ok(());
            }
            if last_said.elapsed() >= WAITING_LOG_EVERY {
                warn!(node_id, leader = ?m.current_leader, applied = ?applied, voters = ?inner.voters, "cannot reach the metadata quorum yet; retrying");
                last_said = Instant::now();
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                _ = cancel.cancelled() => return Err(MetadataError::ShuttingDown),
            }
        }
    }

    /// Asks every other voter whether it belongs to a formed quorum; the answers of
    /// those that could be reached.
    async fn probe_peers(&self) -> Vec<ProbeReply> {
        let peers: Vec<u64> = self
            .inner
            .voters
            .keys()
            .copied()
            .filter(|id| *id != self.inner.node_id)
            .collect();
        let calls = peers.into_iter().map(|id| {
            let client = self.client(id);
            async move {
                match client
                    .call(&RpcRequest::Probe, Duration::from_secs(2))
                    .await
                {
                    Ok(RpcReply::Probe(p)) => Some(p),
                    _ => None,
                }
            }
        });
        futures::future::join_all(calls)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    fn probe_reply(&self) -> ProbeReply {
        let status = self.status();
        ProbeReply {
            node_id: self.inner.node_id,
            initialized: self.voter().is_ok_and(|v| {
                v.metrics
                    .borrow()
                    .membership_config
                    .membership()
                    .voter_ids()
                    .next()
                    .is_some()
            }),
            leader: status.leader,
            applied: status.applied,
        }
    }

    fn client(&self, id: u64) -> Arc<RpcClient> {
        let addr = self.inner.voters.get(&id).cloned().unwrap_or_default();
        self.inner
            .clients
            .lock()
            .entry(id)
            .or_insert_with(|| Arc::new(RpcClient::new(addr, &self.inner.tls)))
            .clone()
    }

    /// Proposes one record through the active controller, waits until it is
    /// committed and applied here too, and returns the state machine's reply.
    pub async fn propose(&self, record: MetadataRecord) -> Result<ApplyReply, MetadataError> {
        match self
            .call_controller(ControllerRequest::Propose(record))
            .await?
        {
            ControllerReply::Applied(reply) => Ok(reply),
            other => Err(MetadataError::Raft(format!(
                "unexpected controller reply {other:?}"
            ))),
        }
    }

    /// Sends `request` to the active controller (this node when it leads), retrying
    /// while there is none or it moves, and waits until this node has applied what the
    /// controller had applied when it answered, so the caller sees the result.
    pub async fn call_controller(
        &self,
        request: ControllerRequest,
    ) -> Result<ControllerReply, MetadataError> {
        let deadline = Instant::now() + CONTROLLER_CALL_TIMEOUT;
        loop {
            let status = self.status();
            if status.stopped || self.inner.stop.is_cancelled() {
                return Err(MetadataError::ShuttingDown);
            }
            // An observer that knows no leader asks each voter in turn.
            let target = status.leader.or_else(|| {
                let voters: Vec<u64> = self.inner.voters.keys().copied().collect();
                (self.inner.voter.is_none() && !voters.is_empty())
                    .then(|| voters[self.inner.turn.fetch_add(1, Ordering::Relaxed) % voters.len()])
            });
            let answer = match target {
                Some(l) if l == self.inner.node_id => {
                    Some(self.handle_as_controller(request.clone()).await)
                }
                Some(l) => match self
                    .client(l)
                    .call(
                        &RpcRequest::Controller(request.clone()),
                        self.inner.controller.call_timeout(),
                    )
                    .await
                {
                    Ok(RpcReply::Controller(reply, applied)) => Some((reply, applied)),
                    _ => None,
                },
                None => None,
            };
            match answer {
                Some((ControllerReply::NotController { leader }, _)) => {
                    if let Some(status) = &self.inner.observer {
                        status.send_modify(|s| s.leader = leader.filter(|l| Some(*l) != target));
                    }
                }
                None => {
                    if let Some(status) = &self.inner.observer {
                        status.send_modify(|s| s.leader = None);
                    }
                }
                Some((ControllerReply::Failed(e), _)) if e == SHUTTING_DOWN => {
                    return Err(MetadataError::ShuttingDown)
                }
                Some((reply, applied)) => {
                    self.wait_applied(applied).await;
                    return Ok(reply);
                }
            }
            if Instant::now() >= deadline {
                return Err(MetadataError::NoController(CONTROLLER_CALL_TIMEOUT));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits (bounded) until this node's state machine applied entry `index`.
    async fn wait_applied(&self, index: Option<u64>) {
        let Some(index) = index else { return };
        let waited = match (&self.inner.voter, &self.inner.observer) {
            (Some(v), _) => v
                .raft
                .wait(Some(RPC_TIMEOUT))
                .metrics(
                    |m| {
                        m.running_state.is_err() || m.last_applied.is_some_and(|l| l.index >= index)
                    },
                    "applied the controller's answer",
                )
                .await
                .is_ok(),
            (None, Some(status)) => {
                let mut rx = status.subscribe();
                tokio::time::timeout(
                    RPC_TIMEOUT,
                    rx.wait_for(|s| s.stopped || s.applied >= Some(index)),
                )
                .await
                .is_ok_and(|r| r.is_ok())
            }
            (None, None) => true,
        };
        if !waited {
            warn!(
                index,
                "this node has not applied the controller's change yet"
            );
        }
    }

    /// Handles a controller request if this node leads; the reply and the index this
    /// node had applied after handling it.
    async fn handle_as_controller(
        &self,
        request: ControllerRequest,
    ) -> (ControllerReply, Option<u64>) {
        let reply = match self.controller_decide(request).await {
            Ok(reply) => reply,
            Err(MetadataError::NotLeader) => ControllerReply::NotController {
                leader: self.status().leader,
            },
            Err(MetadataError::ShuttingDown) => ControllerReply::Failed(SHUTTING_DOWN.into()),
            Err(e) => ControllerReply::Failed(e.to_string()),
        };
        (reply, self.status().applied)
    }

    /// Commits one record on this node as leader.
    async fn write(&self, record: MetadataRecord) -> Result<ApplyReply, MetadataError> {
        match self.voter()?.raft.client_write(record).await {
            Ok(response) => Ok(response.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
                Err(MetadataError::NotLeader)
            }
            Err(RaftError::Fatal(Fatal::Stopped)) => Err(MetadataError::ShuttingDown),
            Err(e) => Err(raft_error(e)),
        }
    }

    /// Makes sure this node leads with every committed entry applied, and starts the
    /// controller's clocks when its term is new.
    async fn become_ready(&self) -> Result<(), MetadataError> {
        let voter = self.voter()?;
        let m = voter.metrics.borrow().clone();
        if m.state != ServerState::Leader {
            return Err(MetadataError::NotLeader);
        }
        if self.inner.controller.term() != m.current_term {
            voter
                .raft
                .ensure_linearizable()
                .await
                .map_err(|_| MetadataError::NotLeader)?;
            self.inner
                .controller
                .enter_term(m.current_term, &self.view().current());
        }
        Ok(())
    }

    async fn controller_decide(
        &self,
        request: ControllerRequest,
    ) -> Result<ControllerReply, MetadataError> {
        let _decide = self.inner.controller.decide.lock().await;
        self.become_ready().await?;
        let ctl = &self.inner.controller;
        match request {
            ControllerRequest::Propose(record) => {
                Ok(ControllerReply::Applied(self.write(record).await?))
            }
            ControllerRequest::RegisterBroker(mut broker) => {
                let node_id = broker.node_id;
                if let Some(old) = self.view().current().brokers.get(&node_id).cloned() {
                    if old.incarnation == broker.incarnation {
                        ctl.record_heartbeat(node_id);
                        return Ok(ControllerReply::Registered { epoch: old.epoch });
                    }
                    // A new process: the old one's leaderships end before it registers.
                    self.fence(&old, false).await?;
                }
                broker.fenced = true;
                broker.shutting_down = false;
                match self.write(MetadataRecord::RegisterBroker(broker)).await? {
                    ApplyReply::BrokerEpoch(epoch) => {
                        ctl.record_heartbeat(node_id);
                        info!(node_id, epoch, "broker registered");
                        Ok(ControllerReply::Registered { epoch })
                    }
                    other => Err(MetadataError::Refused(format!("{other:?}"))),
                }
            }
            ControllerRequest::Heartbeat(hb) => self.heartbeat(hb).await,
            ControllerRequest::AlterPartition(req) => {
                let image = self.view().current();
                let change = match ctl.alter_partition(&image, &req) {
                    Ok(c) => c,
                    Err(e) => return Ok(ControllerReply::AlterPartition(Err(e))),
                };
                if let Some(change) = change {
                    let isr = change.isr.clone();
                    match self
                        .write(MetadataRecord::PartitionChanges(vec![change]))
                        .await?
                    {
                        ApplyReply::PartitionEpochs(e)
                            if e.first().copied().flatten().is_some() =>
                        {
                            info!(topic_id = %req.topic_id, partition = req.partition, ?isr, "ISR changed");
                            let done = ctl.finish_reassignments(&self.view().current());
                            if !done.is_empty() {
                                info!(partitions = done.len(), "partition reassignment finished");
                            }
                            self.write_changes(done).await?;
                        }
                        _ => {
                            return Ok(ControllerReply::AlterPartition(Err(
                                AlterPartitionError::InvalidUpdateVersion,
                            )))
                        }
                    }
                }
                let image = self.view().current();
                let p = image
                    .partition(&req.topic_id, req.partition)
                    .ok_or(MetadataError::Refused("partition vanished".into()))?;
                Ok(ControllerReply::AlterPartition(Ok(AlteredPartition {
                    isr: p.isr.clone(),
                    leader_epoch: p.leader_epoch,
                    partition_epoch: p.partition_epoch,
                })))
            }
            ControllerRequest::DescribeQuorum => {
                Ok(ControllerReply::Quorum(self.quorum_status(self.voter()?)))
            }
            ControllerRequest::ElectLeaders {
                preferred,
                partitions,
            } => {
                let image = self.view().current();
                let targets = partitions.unwrap_or_else(|| all_partitions(&image));
                let (changes, results) = ctl.elect_leaders(&image, preferred, &targets);
                if !changes.is_empty() {
                    info!(preferred, partitions = changes.len(), "electing leaders");
                }
                self.write_changes(changes).await?;
                Ok(ControllerReply::Elected(results))
            }
            ControllerRequest::Reassign(targets) => {
                let image = self.view().current();
                let (changes, results) = ctl.reassign(&image, &targets);
                if !changes.is_empty() {
                    info!(partitions = changes.len(), "partition reassignment started");
                }
                self.write_changes(changes).await?;
                // A target already in sync (e.g. only removals) finishes at once.
                let done = ctl.finish_reassignments(&self.view().current());
                self.write_changes(done).await?;
                Ok(ControllerReply::Reassigned(results))
            }
        }
    }

    async fn heartbeat(&self, hb: BrokerHeartbeat) -> Result<ControllerReply, MetadataError> {
        let ctl = &self.inner.controller;
        let image = self.view().current();
        let Some(broker) = image
            .brokers
            .get(&hb.node_id)
            .filter(|b| b.epoch == hb.epoch)
        else {
            return Ok(ControllerReply::Heartbeat {
                stale: true,
                fenced: true,
                shutdown_ready: false,
            });
        };
        ctl.record_heartbeat(hb.node_id);
        if hb.want_shutdown {
            if !broker.fenced {
                info!(
                    node_id = hb.node_id,
                    "controlled shutdown: moving leaderships away"
                );
                self.fence(broker, true).await?;
            }
            return Ok(ControllerReply::Heartbeat {
                stale: false,
                fenced: true,
                shutdown_ready: true,
            });
        }
        if broker.fenced {
            self.write(MetadataRecord::SetBrokerState {
                node_id: hb.node_id,
                epoch: hb.epoch,
                fenced: false,
                shutting_down: false,
            })
            .await?;
            let changes = ctl.elect_offline(&self.view().current());
            info!(
                node_id = hb.node_id,
                elected = changes.len(),
                "broker unfenced"
            );
            self.write_changes(changes).await?;
        }
        Ok(ControllerReply::Heartbeat {
            stale: false,
            fenced: false,
            shutdown_ready: false,
        })
    }

    /// Fences a broker (marking it shutting down for a controlled shutdown) and moves
    /// its leaderships and ISR memberships away.
    async fn fence(&self, broker: &BrokerImage, shutting_down: bool) -> Result<(), MetadataError> {
        self.write(MetadataRecord::SetBrokerState {
            node_id: broker.node_id,
            epoch: broker.epoch,
            fenced: true,
            shutting_down,
        })
        .await?;
        let changes = self
            .inner
            .controller
            .remove_broker(&self.view().current(), broker.node_id);
        info!(
            node_id = broker.node_id,
            epoch = broker.epoch,
            partitions = changes.len(),
            "broker fenced"
        );
        self.write_changes(changes).await
    }

    async fn write_changes(&self, changes: Vec<PartitionChange>) -> Result<(), MetadataError> {
        if changes.is_empty() {
            return Ok(());
        }
        self.write(MetadataRecord::PartitionChanges(changes))
            .await?;
        Ok(())
    }

    /// Fences brokers whose session expired, and (with `auto.leader.rebalance.enable`)
    /// hands leadership back to preferred replicas every check interval, while this
    /// node leads.
    async fn controller_timer(self) {
        let mut last_rebalance = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.inner.stop.cancelled() => return,
            }
            if !self
                .voter()
                .is_ok_and(|v| v.metrics.borrow().state == ServerState::Leader)
            {
                continue;
            }
            let _decide = self.inner.controller.decide.lock().await;
            if self.become_ready().await.is_err() {
                continue;
            }
            let image = self.view().current();
            for (node_id, epoch) in self.inner.controller.expired(&image) {
                let Some(broker) = image.brokers.get(&node_id).filter(|b| b.epoch == epoch) else {
                    continue;
                };
                warn!(
                    node_id,
                    "broker session expired (no heartbeat within broker.session.timeout.ms)"
                );
                if let Err(e) = self.fence(broker, false).await {
                    warn!(node_id, error = %e, "could not fence the broker");
                }
            }
            // Offline partitions whose ISR has a live member again, or whose topic
            // now allows an unclean election (a config change), get a leader.
            let offline = self.inner.controller.elect_offline(&self.view().current());
            if !offline.is_empty() {
                info!(
                    partitions = offline.len(),
                    "electing leaders for offline partitions"
                );
                if let Err(e) = self.write_changes(offline).await {
                    warn!(error = %e, "electing leaders for offline partitions failed");
                }
            }
            if let Some((every, percentage)) = self.inner.controller.rebalance {
                if last_rebalance.elapsed() >= every {
                    last_rebalance = Instant::now();
                    let image = self.view().current();
                    let targets = self.inner.controller.imbalanced(&image, percentage);
                    if !targets.is_empty() {
                        let (changes, _) =
                            self.inner.controller.elect_leaders(&image, true, &targets);
                        info!(
                            partitions = changes.len(),
                            "leader imbalance: electing preferred leaders"
                        );
                        if let Err(e) = self.write_changes(changes).await {
                            warn!(error = %e, "preferred leader election failed");
                        }
                    }
                }
            }
        }
    }

    /// The quorum as the leader sees it.
    fn quorum_status(&self, voter: &Voter) -> QuorumStatus {
        let m = voter.metrics.borrow();
        let mut voters: Vec<VoterStatus> = m
            .membership_config
            .membership()
            .voter_ids()
            .map(|id| {
                let end = if id == self.inner.node_id {
                    m.last_log_index.map_or(-1, |i| i as i64 + 1)
                } else {
                    m.replication
                        .as_ref()
                        .and_then(|r| r.get(&id).cloned().flatten())
                        .map_or(-1, |l| l.index as i64 + 1)
                };
                VoterStatus {
                    id,
                    log_end_offset: end,
                    last_fetch_ms_ago: None,
                }
            })
            .collect();
        voters.sort_by_key(|v| v.id);
        // Observers that fetched recently (a stopped broker-only node drops out).
        let mut seen = self.inner.observers.lock();
        seen.retain(|_, p| p.at.elapsed() < OBSERVER_FORGOTTEN_AFTER);
        let observers = seen
            .iter()
            .map(|(id, p)| VoterStatus {
                id: *id,
                log_end_offset: p.applied.map_or(-1, |i| i as i64 + 1),
                last_fetch_ms_ago: Some(p.at.elapsed().as_millis() as u64),
            })
            .collect();
        QuorumStatus {
            leader: self.inner.node_id,
            term: m.current_term,
            high_watermark: m.last_applied.map_or(0, |l| l.index + 1),
            voters,
            observers,
        }
    }

    /// The active controller as this node knows it, and the controller epoch (term).
    pub fn controller(&self) -> (Option<u64>, u64) {
        let status = self.status();
        (status.leader, status.term)
    }

    /// A watch of the latest applied image.
    pub fn view(&self) -> MetadataView {
        MetadataView::new(self.inner.rx.clone())
    }

    /// Stops the raft node. Proposals afterwards fail with `ShuttingDown`.
    pub async fn shutdown(&self) -> Result<(), MetadataError> {
        self.inner.stop.cancel();
        match &self.inner.voter {
            Some(v) => v
                .raft
                .shutdown()
                .await
                .map_err(|e| MetadataError::Raft(format!("metadata raft shutdown failed: {e}"))),
            None => Ok(()),
        }
    }
}

const SHUTTING_DOWN: &str = "the controller is shutting down";

/// Every partition of every topic.
fn all_partitions(image: &ClusterImage) -> Vec<(uuid::Uuid, i32)> {
    image
        .topics
        .values()
        .flat_map(|t| (0..t.partitions.len() as i32).map(move |i| (t.id, i)))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::io::Write;

    use uuid::Uuid;

    use super::*;

    fn partition() -> PartitionImage {
        PartitionImage {
            replicas: vec![1],
            isr: vec![1],
            leader: 1,
            leader_epoch: 0,
            partition_epoch: 0,
            adding: Vec::new(),
            removing: Vec::new(),
        }
    }

    fn create_topic(name: &str) -> MetadataRecord {
        MetadataRecord::CreateTopic {
            name: name.to_string(),
            id: Uuid::new_v4(),
            partitions: vec![partition(), partition()],
            configs: BTreeMap::new(),
        }
    }

    fn voters() -> BTreeMap<u64, String> {
        BTreeMap::from([(1, "127.0.0.1:9093".to_string())])
    }

    async fn open(dir: &Path) -> MetadataQuorum {
        MetadataQuorum::open(dir, 1, voters()).await.expect("open")
    }

    #[tokio::test]
    async fn propose_and_reopen_restores_state() {
        let dir = tempfile::tempdir().expect("tempdir");
        let q = open(dir.path()).await;
        let mut view = q.view();
        assert!(view.current().topics.is_empty());

        assert_eq!(
            q.propose(create_topic("a")).await.expect("a"),
            ApplyReply::Done
        );
        view.changed().await.expect("changed");
        assert!(view.current().topic_by_name("a").is_some());
        assert!(matches!(
            q.propose(create_topic("a")).await.expect("dup"),
            ApplyReply::Refused(ApplyError::TopicAlreadyExists(_))
        ));
        assert_eq!(
            q.propose(MetadataRecord::AllocateProducerIds { count: 1000 })
                .await
                .expect("pids"),
            ApplyReply::ProducerIdBlock(0)
        );
        assert_eq!(
            q.propose(create_topic("b")).await.expect("b"),
            ApplyReply::Done
        );
        let before = view.current();
        assert_eq!(before.next_producer_id, 1000);
        assert_eq!(before.topics.len(), 2);
        q.shutdown().await.expect("shutdown");
        assert!(matches!(
            q.propose(create_topic("c")).await,
            Err(MetadataError::ShuttingDown)
        ));

        let q = open(dir.path()).await;
        let after = q.view().current();
        assert_eq!(*after, *before);
        assert_eq!(
            q.propose(MetadataRecord::AllocateProducerIds { count: 10 })
                .await
                .expect("pids"),
            ApplyReply::ProducerIdBlock(1000)
        );
        q.shutdown().await.expect("shutdown");
    }

    #[tokio::test]
    async fn torn_log_tail_is_truncated() {
        let dir = tempfile::tempdir().expect("tempdir");
        let q = open(dir.path()).await;
        for name in ["a", "b", "c"] {
            assert_eq!(
                q.propose(create_topic(name)).await.expect("create"),
                ApplyReply::Done
            );
        }
        let before = q.view().current();
        q.shutdown().await.expect("shutdown");

        let log_path = dir.path().join(store::LOG_FILE);
        let good_len = std::fs::metadata(&log_path).expect("stat").len();
        {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&log_path)
                .expect("open log");
            f.write_all(&[0xde, 0xad, 0xbe, 0xef, 0x01, 0x02, 0x03, 0x04, 0x05])
                .expect("garbage");
        }
        // Opening the store alone truncates the tail back to the last whole record.
        drop(LogStore::open(dir.path()).expect("store"));
        assert_eq!(std::fs::metadata(&log_path).expect("stat").len(), good_len);

        // Tear the tail again, this time mid-record, and reopen the quorum.
        {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&log_path)
                .expect("open log");
            f.write_all(&[40, 0, 0, 0, 1, 2, 3, 4, b'{', b'"'])
                .expect("garbage");
        }
        let q = open(dir.path()).await;
        assert_eq!(*q.view().current(), *before);
        assert_eq!(
            q.propose(create_topic("d")).await.expect("d"),
            ApplyReply::Done
        );
        q.shutdown().await.expect("shutdown");

        let q = open(dir.path()).await;
        let image = q.view().current();
        assert_eq!(image.topics.len(), 4);
        assert!(image.topic_by_name("d").is_some());
        q.shutdown().await.expect("shutdown");
    }

    #[tokio::test]
    async fn snapshot_and_purge_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tuning = Tuning {
            snapshot_every: 20,
            keep_after_snapshot: 0,
        };
        let q = MetadataQuorum::open_with(
            dir.path(),
            MetadataQuorum::single_node_options(1, voters()),
            tuning,
        )
        .await
        .expect("open");
        for i in 0..50 {
            assert_eq!(
                q.propose(MetadataRecord::AllocateProducerIds { count: 1 })
                    .await
                    .expect("pids"),
                ApplyReply::ProducerIdBlock(i)
            );
        }
        assert_eq!(
            q.propose(create_topic("t")).await.expect("t"),
            ApplyReply::Done
        );
        let metrics = q
            .voter()
            .expect("voter")
            .raft
            .wait(Some(Duration::from_secs(10)))
            .metrics(
                |m| m.purged.is_some_and(|p| p.index >= 20),
                "snapshot taken and log purged",
            )
            .await
            .expect("purged");
        let purged = metrics.purged.expect("purged").index;
        let before = q.view().current();
        assert_eq!(before.next_producer_id, 50);
        q.shutdown().await.expect("shutdown");

        assert!(dir.path().join(store::SNAPSHOT_FILE).exists());
        {
            let log = LogStore::open(dir.path()).expect("store");
            assert!(log.last_purged().is_some_and(|p| p.index >= purged));
        }

        let q = MetadataQuorum::open_with(
            dir.path(),
            MetadataQuorum::single_node_options(1, voters()),
            tuning,
        )
        .await
        .expect("reopen");
        assert_eq!(*q.view().current(), *before);
        assert_eq!(
            q.propose(MetadataRecord::AllocateProducerIds { count: 1 })
                .await
                .expect("pids"),
            ApplyReply::ProducerIdBlock(50)
        );
        q.shutdown().await.expect("shutdown");

        // And once more with the production tuning: the snapshot alone restores it.
        let q = open(dir.path()).await;
        let image = q.view().current();
        assert_eq!(image.next_producer_id, 51);
        assert!(image.topic_by_name("t").is_some());
        q.shutdown().await.expect("shutdown");
    }

    /// Like kill -9: the runtime is dropped right after `propose` returned, without
    /// `shutdown`, so nothing can rely on a graceful stop.
    #[test]
    fn nothing_is_lost_without_shutdown() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let before = rt.block_on(async {
            let q = open(dir.path()).await;
            for name in ["a", "b"] {
                assert_eq!(
                    q.propose(create_topic(name)).await.expect("create"),
                    ApplyReply::Done
                );
            }
            q.propose(MetadataRecord::AllocateProducerIds { count: 7 })
                .await
                .expect("pids");
            q.view().current()
        });
        rt.shutdown_background();

        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(async {
            let q = open(dir.path()).await;
            assert_eq!(*q.view().current(), *before);
            assert_eq!(q.view().current().next_producer_id, 7);
            q.shutdown().await.expect("shutdown");
        });
    }

    #[tokio::test]
    async fn rejects_foreign_voters() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = MetadataQuorum::open(dir.path(), 1, BTreeMap::from([(2, "x".to_string())]))
            .await
            .expect_err("not a voter");
        assert!(matches!(err, MetadataError::Config(_)));

        // A directory initialized by node 1 cannot be opened as node 2.
        open(dir.path()).await.shutdown().await.expect("shutdown");
        let err = MetadataQuorum::open(dir.path(), 2, BTreeMap::new())
            .await
            .expect_err("not a stored voter");
        assert!(matches!(err, MetadataError::Config(_)), "{err}");
    }
}
