//! Metadata observers: broker-only nodes (`process.roles=broker`) that hold no vote.
//!
//! As in KRaft, an observer does not take part in the quorum; it fetches the committed
//! metadata log from the active controller and applies it to its own copy of the
//! [`ClusterImage`]. The controller answers a fetch with the records committed after
//! the observer's index (waiting a little when there are none, a long poll), or with
//! its whole image when those records were already compacted into a snapshot (or the
//! observer has nothing yet). Observers keep nothing on disk: a restarted broker-only
//! node fetches the image again.
//!
//! This module owns both sides: the fetch loop an observer runs and the answer a
//! voter gives.

use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::{EntryPayload, ServerState};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::{info, warn};

use super::image::{ClusterImage, MetadataRecord};
use super::rpc::{RpcClient, RpcReply, RpcRequest};
use super::view::Published;
use super::{MetadataError, MetadataQuorum, ObserverProgress, WAITING_LOG_EVERY};

/// How long the controller holds a fetch that has nothing new (the long poll).
const FETCH_WAIT: Duration = Duration::from_millis(500);
/// Most records in one fetch answer.
const FETCH_MAX_RECORDS: u64 = 5_000;
/// One fetch round trip, the long poll included.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed fetch before asking the next voter.
const RETRY_BACKOFF: Duration = Duration::from_millis(200);

/// The controller's answer to an observer's fetch.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct MetadataFetchReply {
    /// The active controller as the answering voter knows it, and its term.
    pub leader: Option<u64>,
    pub term: u64,
    /// What the observer lacks; `None` when the answering voter is not the leader.
    pub delta: Option<MetadataDelta>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum MetadataDelta {
    /// The records committed after the observer's index, through `upto`; the leader
    /// had applied through `leader_index` when it answered.
    Records {
        upto: u64,
        leader_index: u64,
        records: Vec<MetadataRecord>,
    },
    /// The leader's whole image as of `index` (the observer had nothing, or what it
    /// lacked is compacted away).
    Image {
        index: Option<u64>,
        image: Box<ClusterImage>,
    },
}

/// What a node knows of the quorum: the active controller, its term, and the last
/// metadata index this node applied. Kept by observers (voters read raft's metrics).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct MemberStatus {
    pub leader: Option<u64>,
    pub term: u64,
    pub applied: Option<u64>,
    /// Has applied everything the leader had applied when it answered, at least once.
    pub caught_up: bool,
    pub stopped: bool,
}

impl MetadataQuorum {
    /// The leader's answer to an observer's fetch (see the module doc).
    pub(super) async fn answer_metadata_fetch(
        &self,
        node_id: u64,
        after: Option<u64>,
    ) -> MetadataFetchReply {
        let Some(voter) = &self.inner.voter else {
            return MetadataFetchReply {
                leader: None,
                term: 0,
                delta: None,
            };
        };
        let (leader, term, leads) = {
            let m = voter.metrics.borrow();
            (
                m.current_leader,
                m.current_term,
                m.state == ServerState::Leader,
            )
        };
        if !leads {
            return MetadataFetchReply {
                leader,
                term,
                delta: None,
            };
        }
        let mut rx = self.inner.rx.clone();
        if after.is_some() {
            // Nothing new: hold the fetch until something is applied (or a while).
            let _ = tokio::time::timeout(FETCH_WAIT, rx.wait_for(|p| p.index > after)).await;
        }
        self.inner.observers.lock().insert(
            node_id,
            ObserverProgress {
                applied: after,
                at: Instant::now(),
            },
        );
        let published = rx.borrow().clone();
        let delta = match (after, published.index) {
            (Some(after), Some(upto)) => {
                match voter.log.entries_after(after, upto, FETCH_MAX_RECORDS) {
                    Some(entries) => MetadataDelta::Records {
                        upto: entries.last().map_or(after, |e| e.log_id.index),
                        leader_index: upto,
                        records: entries
                            .into_iter()
                            .filter_map(|e| match e.payload {
                                EntryPayload::Normal(record) => Some(record),
                                _ => None,
                            })
                            .collect(),
                    },
                    None => image_delta(&published),
                }
            }
            _ => image_delta(&published),
        };
        MetadataFetchReply {
            leader,
            term,
            delta: Some(delta),
        }
    }

    /// An observer's fetch loop: asks the active controller (or, not knowing it, each
    /// voter in turn) for what it lacks and applies it, until the quorum handle stops.
    pub(super) async fn observe(self, publish: watch::Sender<Published>) {
        let inner = &self.inner;
        let Some(status) = inner.observer.as_ref() else {
            return;
        };
        let voters: Vec<u64> = inner.voters.keys().copied().collect();
        // A connection of its own: the long poll must not delay heartbeats.
        let mut clients: std::collections::HashMap<u64, RpcClient> = Default::default();
        let mut image: ClusterImage = (*publish.borrow().image).clone();
        let mut turn = 0usize;
        let mut last_said = Instant::now();
        let mut reached = false;
        loop {
            if inner.stop.is_cancelled() {
                break;
            }
            let current = status.borrow().clone();
            let target = current.leader.unwrap_or_else(|| {
                turn = turn.wrapping_add(1);
                voters[turn % voters.len()]
            });
            let client = clients.entry(target).or_insert_with(|| {
                RpcClient::new(
                    inner.voters.get(&target).cloned().unwrap_or_default(),
                    &inner.tls,
                )
            });
            let request = RpcRequest::FetchMetadata {
                node_id: inner.node_id,
                after: current.applied,
            };
            let reply = tokio::select! {
                r = client.call(&request, FETCH_TIMEOUT) => r,
                _ = inner.stop.cancelled() => break,
            };
            let reply = match reply {
                Ok(RpcReply::Metadata(reply)) => reply,
                other => {
                    let error = match other {
                        Err(e) => e.to_string(),
                        Ok(r) => format!("unexpected reply {r:?}"),
                    };
                    status.send_modify(|s| s.leader = None);
                    if last_said.elapsed() >= WAITING_LOG_EVERY {
                        warn!(voter = target, %error, voters = ?inner.voters, "cannot fetch metadata from the controller quorum yet; retrying");
                        last_said = Instant::now();
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(RETRY_BACKOFF) => {}
                        _ = inner.stop.cancelled() => break,
                    }
                    continue;
                }
            };
            let Some(delta) = reply.delta else {
                // Not the leader: follow its hint, or try the next voter.
                let hint = reply.leader.filter(|l| *l != target);
                status.send_modify(|s| {
                    s.leader = hint;
                    s.term = s.term.max(reply.term);
                });
                if hint.is_none() {
                    tokio::select! {
                        _ = tokio::time::sleep(RETRY_BACKOFF) => {}
                        _ = inner.stop.cancelled() => break,
                    }
                }
                continue;
            };
            if !reached {
                info!(
                    controller = target,
                    "fetching metadata from the active controller"
                );
                reached = true;
            }
            let (applied, caught_up) = match delta {
                MetadataDelta::Records {
                    upto,
                    leader_index,
                    records,
                } => {
                    for record in records {
                        image.apply(record);
                    }
                    (Some(upto), upto >= leader_index)
                }
                MetadataDelta::Image { index, image: new } => {
                    image = *new;
                    (index, true)
                }
            };
            if applied != current.applied {
                publish.send_replace(Published {
                    index: applied,
                    image: Arc::new(image.clone()),
                });
            }
            status.send_modify(|s| {
                s.leader = Some(target);
                s.term = s.term.max(reply.term);
                s.applied = applied;
                s.caught_up |= caught_up;
            });
        }
        status.send_modify(|s| s.stopped = true);
    }

    /// Waits until an observer has caught up with the controller once, saying so
    /// every few seconds while the quorum is unreachable.
    pub(super) async fn start_observer(
        &self,
        cancel: &tokio_util::sync::CancellationToken,
    ) -> Result<(), MetadataError> {
        let Some(status) = self.inner.observer.as_ref() else {
            return Ok(());
        };
        let mut rx = status.subscribe();
        let mut last_said = Instant::now();
        loop {
            let s = rx.borrow_and_update().clone();
            if s.stopped {
                return Err(MetadataError::ShuttingDown);
            }
            if s.caught_up {
                return Ok(());
            }
            if last_said.elapsed() >= WAITING_LOG_EVERY {
                warn!(node_id = self.inner.node_id, voters = ?self.inner.voters, "broker-only node waiting for the metadata of the controller quorum");
                last_said = Instant::now();
            }
            tokio::select! {
                _ = rx.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = cancel.cancelled() => return Err(MetadataError::ShuttingDown),
            }
        }
    }
}

fn image_delta(published: &Published) -> MetadataDelta {
    MetadataDelta::Image {
        index: published.index,
        image: Box::new((*published.image).clone()),
    }
}
