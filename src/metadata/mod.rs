//! The metadata quorum.
//!
//! This module owns openraft: the raft log and state machine storage ([`store`]), the
//! transport between voters ([`network`]) and the openraft type configuration
//! ([`types`]). No openraft type leaves this module. The rest of the crate reads the
//! agreed [`ClusterImage`] through a [`MetadataView`] and changes it only through
//! [`MetadataQuorum::propose`].

pub mod image;
pub(crate) mod network;
pub(crate) mod store;
pub(crate) mod types;
pub mod view;

pub use image::*;
pub use view::MetadataView;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, Fatal, RaftError};
use openraft::{BasicNode, Config, ServerState, SnapshotPolicy};
use tokio::sync::watch;

use network::NetworkFactory;
use store::{LogStore, StateMachineStore};
use types::Raft;

/// How long `open` waits for this node to lead and catch up before giving up.
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);

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
    #[error("the metadata quorum is shutting down")]
    ShuttingDown,
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

/// A running metadata quorum member. Cheap to clone.
#[derive(Clone)]
pub struct MetadataQuorum {
    inner: Arc<Inner>,
}

struct Inner {
    raft: Raft,
    rx: watch::Receiver<Arc<ClusterImage>>,
}

impl std::fmt::Debug for MetadataQuorum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetadataQuorum").finish_non_exhaustive()
    }
}

fn raft_error(e: impl std::fmt::Display) -> MetadataError {
    MetadataError::Raft(e.to_string())
}

/// The voters to initialize a fresh cluster with. For now only a single voter (this
/// node) is supported; an empty map means "just this node, no address".
fn initial_members(
    node_id: u64,
    voters: BTreeMap<u64, String>,
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
    if voters.len() > 1 {
        return Err(MetadataError::Config(format!(
            "multi-voter metadata quorums are not supported yet (voters {:?})",
            voters.keys().collect::<Vec<_>>()
        )));
    }
    Ok(voters
        .into_iter()
        .map(|(id, addr)| (id, BasicNode::new(addr)))
        .collect())
}

/// Loads both stores from `dir` and checks they agree. Blocking.
fn load_stores(
    dir: &Path,
) -> Result<
    (
        LogStore,
        StateMachineStore,
        watch::Receiver<Arc<ClusterImage>>,
    ),
    MetadataError,
> {
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

impl MetadataQuorum {
    /// Opens (or creates) the durable raft state under `dir`, starts a raft node with
    /// `node_id` and, on a fresh directory, initializes the membership with `voters`
    /// (for now exactly this node; an empty map means "this node").
    ///
    /// Returns once this node leads and has applied its whole log, so the view reflects
    /// every previously committed record.
    pub async fn open(
        dir: &Path,
        node_id: u64,
        voters: BTreeMap<u64, String>,
    ) -> Result<Self, MetadataError> {
        Self::open_with(dir, node_id, voters, Tuning::default()).await
    }

    pub(crate) async fn open_with(
        dir: &Path,
        node_id: u64,
        voters: BTreeMap<u64, String>,
        tuning: Tuning,
    ) -> Result<Self, MetadataError> {
        let members = initial_members(node_id, voters)?;
        let owned_dir = dir.to_path_buf();
        let (log, sm, rx) = tokio::task::spawn_blocking(move || load_stores(&owned_dir))
            .await
            .map_err(raft_error)??;

        let config = Config {
            cluster_name: "strata-metadata".to_string(),
            heartbeat_interval: 100,
            election_timeout_min: 300,
            election_timeout_max: 600,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(tuning.snapshot_every),
            max_in_snapshot_log_to_keep: tuning.keep_after_snapshot,
            ..Default::default()
        }
        .validate()
        .map_err(|e| MetadataError::Config(e.to_string()))?;

        let raft = Raft::new(node_id, Arc::new(config), NetworkFactory, log, sm)
            .await
            .map_err(raft_error)?;
        let quorum = Self {
            inner: Arc::new(Inner { raft, rx }),
        };
        match quorum.start(node_id, members).await {
            Ok(()) => {
                tracing::info!(dir = %dir.display(), node_id, "metadata quorum is up");
                Ok(quorum)
            }
            Err(e) => {
                if let Err(stop) = quorum.inner.raft.shutdown().await {
                    tracing::warn!(error = %stop, "stopping metadata raft after a failed open");
                }
                Err(e)
            }
        }
    }

    /// Initializes a fresh node, then waits until it leads with its whole log applied.
    async fn start(
        &self,
        node_id: u64,
        members: BTreeMap<u64, BasicNode>,
    ) -> Result<(), MetadataError> {
        let raft = &self.inner.raft;
        if !raft.is_initialized().await.map_err(raft_error)? {
            tracing::info!(node_id, ?members, "initializing a fresh metadata quorum");
            raft.initialize(members).await.map_err(raft_error)?;
        } else {
            let voters: Vec<u64> = raft
                .with_raft_state(|st| st.membership_state.effective().voter_ids().collect())
                .await
                .map_err(raft_error)?;
            if !voters.contains(&node_id) {
                return Err(MetadataError::Config(format!(
                    "node {node_id} is not a voter of the stored metadata quorum (voters {voters:?})"
                )));
            }
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

    /// Proposes one record, waits until it is committed and applied, and returns the
    /// state machine's reply. The view reflects the record when this returns.
    pub async fn propose(&self, record: MetadataRecord) -> Result<ApplyReply, MetadataError> {
        match self.inner.raft.client_write(record).await {
            Ok(response) => Ok(response.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
                Err(MetadataError::NotLeader)
            }
            Err(RaftError::Fatal(Fatal::Stopped)) => Err(MetadataError::ShuttingDown),
            Err(e) => Err(raft_error(e)),
        }
    }

    /// A watch of the latest applied image.
    pub fn view(&self) -> MetadataView {
        MetadataView::new(self.inner.rx.clone())
    }

    /// Stops the raft node. Proposals afterwards fail with `ShuttingDown`.
    pub async fn shutdown(&self) -> Result<(), MetadataError> {
        self.inner
            .raft
            .shutdown()
            .await
            .map_err(|e| MetadataError::Raft(format!("metadata raft shutdown failed: {e}")))
    }
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
        let q = MetadataQuorum::open_with(dir.path(), 1, voters(), tuning)
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
            .inner
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

        let q = MetadataQuorum::open_with(dir.path(), 1, voters(), tuning)
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
