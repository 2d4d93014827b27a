//! Consumer groups (classic protocol) and committed offsets with librdkafka consumers,
//! plus raw requests for the exact error codes.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};

const T: Duration = Duration::from_secs(30);
const FAST_GROUPS: &[&str] = &[
    "group.initial.rebalance.delay.ms=0",
    "group.min.session.timeout.ms=500",
];

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// Counts rebalance callbacks and remembers what was revoked and assigned.
#[derive(Default)]
struct Tracker {
    rebalances: AtomicUsize,
    revoked: Mutex<Vec<(String, i32)>>,
    assigned: Mutex<Vec<(String, i32)>>,
}

struct TrackingContext(Arc<Tracker>);

impl ClientContext for TrackingContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        if std::env::var("STRATA_TEST_RDKAFKA_LOG").is_ok() {
            eprintln!("RDK {level:?} {fac}: {log_message}");
        }
    }
}

impl ConsumerContext for TrackingContext {
    fn pre_rebalance(&self, _c: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        self.0.rebalances.fetch_add(1, Ordering::SeqCst);
        let list = |tpl: &TopicPartitionList| {
            tpl.elements()
                .iter()
                .map(|e| (e.topic().to_string(), e.partition()))
                .collect::<Vec<_>>()
        };
        match rebalance {
            Rebalance::Revoke(tpl) => self.0.revoked.lock().unwrap().extend(list(tpl)),
            Rebalance::Assign(tpl) => self.0.assigned.lock().unwrap().extend(list(tpl)),
            Rebalance::Error(_) => {}
        }
    }
}

fn group_consumer(
    bootstrap: &str,
    group: &str,
    extra: &[(&str, &str)],
) -> (BaseConsumer<TrackingContext>, Arc<Tracker>) {
    let mut c = client_config(bootstrap);
    c.set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "200")
        .set("fetch.wait.max.ms", "100");
    for (k, v) in extra {
        c.set(*k, *v);
    }
    let tracker = Arc::new(Tracker::default());
    let consumer: BaseConsumer<TrackingContext> = c
        .create_with_context(TrackingContext(tracker.clone()))
        .expect("consumer");
    (consumer, tracker)
}

async fn produce_n(bootstrap: &str, topic: &str, partitions: i32, per_partition: usize, tag: &str) {
    let p = producer(bootstrap, &[]);
    let mut futures = Vec::new();
    for part in 0..partitions {
        for i in 0..per_partition {
            let v = format!("{tag}-{part}-{i}");
            futures.push(
                p.send_result(FutureRecord::<(), _>::to(topic).payload(&v).partition(part))
                    .unwrap(),
            );
        }
    }
    for f in futures {
        f.await.unwrap().unwrap();
    }
}

fn assigned_partitions<C: ConsumerContext>(c: &BaseConsumer<C>) -> HashSet<i32> {
    c.assignment()
        .unwrap()
        .elements()
        .iter()
        .map(|e| e.partition())
        .collect()
}

/// The error code of a single JoinGroup v5 (new member) for `group`.
fn join_error(raw: &mut RawClient, group: &str, session_ms: i32) -> i16 {
    let ResponseKind::JoinGroup(j) = raw.call(
        ApiKey::JoinGroup,
        5,
        RequestKind::JoinGroup(
            JoinGroupRequest::default()
                .with_group_id(GroupId(s(group)))
                .with_session_timeout_ms(session_ms)
                .with_protocol_type(s("consumer"))
                .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
                )
                .with_name(s("range"))]),
        ),
    ) else {
        panic!("not a JoinGroup response")
    };
    j.error_code
}

/// An OffsetCommit v8 outside any generation (as admin tools commit); the error code.
fn simple_commit(
    raw: &mut RawClient,
    group: &str,
    topic: &str,
    partition: i32,
    offset: i64,
) -> i16 {
    let ResponseKind::OffsetCommit(r) = raw.call(
        ApiKey::OffsetCommit,
        8,
        RequestKind::OffsetCommit(
            OffsetCommitRequest::default()
                .with_group_id(GroupId(s(group)))
                .with_generation_id_or_member_epoch(-1)
                .with_topics(vec![
                    offset_commit_request::OffsetCommitRequestTopic::default()
                        .with_name(TopicName(s(topic)))
                        .with_partitions(vec![
                            offset_commit_request::OffsetCommitRequestPartition::default()
                                .with_partition_index(partition)
                                .with_committed_offset(offset),
                        ]),
                ]),
        ),
    ) else {
        panic!("not an OffsetCommit response")
    };
    r.topics[0].partitions[0].error_code
}

/// Polls every consumer until `done` says so (or the deadline passes), committing each
/// record synchronously; returns what each consumer read.
fn poll_all<C: ConsumerContext>(
    consumers: &[&BaseConsumer<C>],
    mut done: impl FnMut(&[Vec<String>]) -> bool,
) -> Vec<Vec<String>> {
    let mut got = vec![Vec::new(); consumers.len()];
    let deadline = Instant::now() + T;
    while !done(&got) {
        assert!(
            Instant::now() < deadline,
            "timed out; got {:?}",
            got.iter().map(|g| g.len()).collect::<Vec<_>>()
        );
        for (i, c) in consumers.iter().enumerate() {
            if let Some(res) = c.poll(Duration::from_millis(50)) {
                let m = res.expect("consume");
                got[i].push(String::from_utf8(m.payload().unwrap().to_vec()).unwrap());
                c.commit_message(&m, CommitMode::Sync).expect("commit");
            }
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_consumers_split_partitions_then_one_leaves_and_the_other_takes_all() {
    let b = TestBroker::start_with(FAST_GROUPS).await;
    create_topic(&b.bootstrap, "split", 6, &[]).await;
    produce_n(&b.bootstrap, "split", 6, 50, "first").await;
    let (a, _) = group_consumer(&b.bootstrap, "splitters", &[]);
    let (c, _) = group_consumer(&b.bootstrap, "splitters", &[]);
    a.subscribe(&["split"]).unwrap();
    c.subscribe(&["split"]).unwrap();
    let got = poll_all(&[&a, &c], |g| {
        g[0].len() + g[1].len() >= 300 && !g[0].is_empty() && !g[1].is_empty()
    });
    let pa = assigned_partitions(&a);
    let pc = assigned_partitions(&c);
    assert_eq!(pa.len() + pc.len(), 6, "{pa:?} {pc:?}");
    assert!(
        pa.is_disjoint(&pc),
        "no partition is owned twice: {pa:?} {pc:?}"
    );
    let mut all: Vec<String> = got.concat();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 300, "each record read once");

    // One member leaves; the other takes every partition and resumes from the commits.
    a.unsubscribe();
    drop(a);
    produce_n(&b.bootstrap, "split", 6, 20, "second").await;
    let got = poll_all(&[&c], |g| g[0].len() >= 120);
    assert_eq!(assigned_partitions(&c).len(), 6);
    assert!(
        got[0].iter().all(|v| v.starts_with("second")),
        "nothing before the committed offsets is read again"
    );
    let mut second: Vec<String> = got[0].clone();
    second.sort();
    second.dedup();
    assert_eq!(second.len(), 120);

    // The group is visible with its member and committed offsets.
    let mut raw = RawClient::connect(&b.bootstrap);
    let ResponseKind::DescribeGroups(d) = raw.call(
        ApiKey::DescribeGroups,
        5,
        RequestKind::DescribeGroups(
            DescribeGroupsRequest::default().with_groups(vec![GroupId(s("splitters"))]),
        ),
    ) else {
        panic!()
    };
    assert_eq!(d.groups[0].group_state.as_str(), "Stable");
    assert_eq!(d.groups[0].protocol_type.as_str(), "consumer");
    assert_eq!(d.groups[0].members.len(), 1);
    assert!(!d.groups[0].members[0].member_assignment.is_empty());
    assert_eq!(d.groups[0].members[0].client_host.as_str(), "/127.0.0.1");
    let committed = c.committed(T).unwrap();
    for e in committed.elements() {
        assert_eq!(
            e.offset(),
            Offset::Offset(70),
            "partition {} committed after its last record",
            e.partition()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_stops_heartbeating_is_expired_after_its_session_timeout() {
    let b = TestBroker::start_with(FAST_GROUPS).await;
    create_topic(&b.bootstrap, "expire", 2, &[]).await;
    let mut raw = RawClient::connect(&b.bootstrap);
    let join = |raw: &mut RawClient, member: &str| {
        let ResponseKind::JoinGroup(j) = raw.call(
            ApiKey::JoinGroup,
            7,
            RequestKind::JoinGroup(
                JoinGroupRequest::default()
                    .with_group_id(GroupId(s("quiet")))
                    .with_session_timeout_ms(1000)
                    .with_rebalance_timeout_ms(3000)
                    .with_member_id(s(member))
                    .with_protocol_type(s("consumer"))
                    .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
                    )
                    .with_name(s("range"))
                    .with_metadata(bytes::Bytes::from_static(b"\0\0\0\0\0\0"))]),
            ),
        ) else {
            panic!()
        };
        j
    };
    let first = join(&mut raw, "");
    assert_eq!(first.error_code, 79, "MEMBER_ID_REQUIRED first (KIP-394)");
    let joined = join(&mut raw, first.member_id.as_str());
    assert_eq!(
        joined.error_code, 0,
        "the second join with the given id is accepted"
    );
    assert_eq!(joined.leader, joined.member_id);
    let ResponseKind::SyncGroup(sync) = raw.call(
        ApiKey::SyncGroup,
        5,
        RequestKind::SyncGroup(
            SyncGroupRequest::default()
                .with_group_id(GroupId(s("quiet")))
                .with_generation_id(joined.generation_id)
                .with_member_id(joined.member_id.clone())
                .with_protocol_type(Some(s("consumer")))
                .with_protocol_name(Some(s("range")))
                .with_assignments(vec![
                    sync_group_request::SyncGroupRequestAssignment::default()
                        .with_member_id(joined.member_id.clone())
                        .with_assignment(bytes::Bytes::from_static(b"assignment-bytes-kept-whole")),
                ]),
        ),
    ) else {
        panic!()
    };
    assert_eq!(sync.error_code, 0);
    assert_eq!(
        &sync.assignment[..],
        b"assignment-bytes-kept-whole",
        "SyncGroup returns the assignment untouched"
    );
    let hb = |raw: &mut RawClient, generation: i32, member: &StrBytes| {
        let ResponseKind::Heartbeat(h) = raw.call(
            ApiKey::Heartbeat,
            4,
            RequestKind::Heartbeat(
                HeartbeatRequest::default()
                    .with_group_id(GroupId(s("quiet")))
                    .with_generation_id(generation)
                    .with_member_id(member.clone()),
            ),
        ) else {
            panic!()
        };
        h.error_code
    };
    assert_eq!(hb(&mut raw, joined.generation_id, &joined.member_id), 0);
    assert_eq!(
        hb(&mut raw, joined.generation_id + 5, &joined.member_id),
        22,
        "ILLEGAL_GENERATION"
    );
    assert_eq!(
        hb(&mut raw, joined.generation_id, &s("stranger")),
        25,
        "UNKNOWN_MEMBER_ID"
    );
    // Now silence: the member must be gone after ~1 s.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ResponseKind::DescribeGroups(d) = raw.call(
            ApiKey::DescribeGroups,
            5,
            RequestKind::DescribeGroups(
                DescribeGroupsRequest::default().with_groups(vec![GroupId(s("quiet"))]),
            ),
        ) else {
            panic!()
        };
        if d.groups[0].members.is_empty() {
            assert_eq!(d.groups[0].group_state.as_str(), "Empty");
            break;
        }
        assert!(Instant::now() < deadline, "member not expired");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        hb(&mut raw, joined.generation_id, &joined.member_id),
        25,
        "expired member is unknown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_static_member_gets_its_partitions_back_without_a_rebalance() {
    let b = TestBroker::start_with(FAST_GROUPS).await;
    create_topic(&b.bootstrap, "static", 4, &[]).await;
    produce_n(&b.bootstrap, "static", 4, 5, "s").await;
    let (a, _) = group_consumer(
        &b.bootstrap,
        "statics",
        &[
            ("group.instance.id", "instance-a"),
            ("session.timeout.ms", "10000"),
        ],
    );
    let (c, c_tracker) = group_consumer(
        &b.bootstrap,
        "statics",
        &[
            ("group.instance.id", "instance-c"),
            ("session.timeout.ms", "10000"),
        ],
    );
    a.subscribe(&["static"]).unwrap();
    c.subscribe(&["static"]).unwrap();
    poll_all(&[&a, &c], |g| g[0].len() + g[1].len() >= 20);
    let deadline = Instant::now() + T;
    while assigned_partitions(&a).len() + assigned_partitions(&c).len() != 4 {
        assert!(Instant::now() < deadline);
        a.poll(Duration::from_millis(50));
        c.poll(Duration::from_millis(50));
    }
    let before_a = assigned_partitions(&a);
    let rebalances_c = c_tracker.rebalances.load(Ordering::SeqCst);
    // A static member closing does not leave the group (KIP-345)...
    drop(a);
    // ...and its replacement with the same instance id takes over without a rebalance.
    let (a2, _) = group_consumer(
        &b.bootstrap,
        "statics",
        &[
            ("group.instance.id", "instance-a"),
            ("session.timeout.ms", "10000"),
        ],
    );
    a2.subscribe(&["static"]).unwrap();
    let deadline = Instant::now() + T;
    while assigned_partitions(&a2).is_empty() {
        assert!(
            Instant::now() < deadline,
            "restarted static member got no partitions"
        );
        a2.poll(Duration::from_millis(50));
        c.poll(Duration::from_millis(50));
    }
    for _ in 0..20 {
        c.poll(Duration::from_millis(50));
    }
    assert_eq!(
        assigned_partitions(&a2),
        before_a,
        "same partitions as before the restart"
    );
    assert_eq!(
        c_tracker.rebalances.load(Ordering::SeqCst),
        rebalances_c,
        "the other member saw no rebalance"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cooperative_sticky_moves_only_the_partitions_it_must() {
    let b = TestBroker::start_with(FAST_GROUPS).await;
    create_topic(&b.bootstrap, "coop", 6, &[]).await;
    let coop = [("partition.assignment.strategy", "cooperative-sticky")];
    let (a, a_tracker) = group_consumer(&b.bootstrap, "coops", &coop);
    a.subscribe(&["coop"]).unwrap();
    let deadline = Instant::now() + T;
    while assigned_partitions(&a).len() != 6 {
        assert!(Instant::now() < deadline);
        a.poll(Duration::from_millis(50));
    }
    let (c, _) = group_consumer(&b.bootstrap, "coops", &coop);
    c.subscribe(&["coop"]).unwrap();
    let deadline = Instant::now() + T;
    while assigned_partitions(&c).len() != 3 || assigned_partitions(&a).len() != 3 {
        assert!(
            Instant::now() < deadline,
            "a={:?} c={:?}",
            assigned_partitions(&a),
            assigned_partitions(&c)
        );
        a.poll(Duration::from_millis(50));
        c.poll(Duration::from_millis(50));
    }
    let revoked = a_tracker.revoked.lock().unwrap().clone();
    assert_eq!(
        revoked.len(),
        3,
        "only the partitions that moved were revoked: {revoked:?}"
    );
    assert!(assigned_partitions(&a).is_disjoint(&assigned_partitions(&c)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_offsets_and_metadata_survive_a_broker_restart() {
    let b = TestBroker::start_with(FAST_GROUPS).await;
    create_topic(&b.bootstrap, "resume", 3, &[]).await;
    produce_n(&b.bootstrap, "resume", 3, 30, "r").await;
    {
        let (c, _) = group_consumer(&b.bootstrap, "resumers", &[]);
        c.subscribe(&["resume"]).unwrap();
        poll_all(&[&c], |g| g[0].len() >= 45);
        let mut tpl = TopicPartitionList::new();
        for p in 0..3 {
            tpl.add_partition_offset("resume", p, Offset::Offset(10 + p as i64))
                .unwrap();
        }
        c.commit(&tpl, CommitMode::Sync).unwrap();
        c.unsubscribe();
    }
    // Standalone commit with metadata, outside any group membership.
    let mut raw = RawClient::connect(&b.bootstrap);
    let ResponseKind::OffsetCommit(oc) = raw.call(
        ApiKey::OffsetCommit,
        8,
        RequestKind::OffsetCommit(
            OffsetCommitRequest::default()
                .with_group_id(GroupId(s("standalone")))
                .with_generation_id_or_member_epoch(-1)
                .with_topics(vec![
                    offset_commit_request::OffsetCommitRequestTopic::default()
                        .with_name(TopicName(s("resume")))
                        .with_partitions(vec![
                            offset_commit_request::OffsetCommitRequestPartition::default()
                                .with_partition_index(0)
                                .with_committed_offset(7)
                                .with_committed_metadata(Some(s("checkpoint-7"))),
                            offset_commit_request::OffsetCommitRequestPartition::default()
                                .with_partition_index(1)
                                .with_committed_offset(1)
                                .with_committed_metadata(Some(s(&"m".repeat(5000)))),
                            offset_commit_request::OffsetCommitRequestPartition::default()
                                .with_partition_index(9)
                                .with_committed_offset(1),
                        ]),
                ]),
        ),
    ) else {
        panic!()
    };
    let codes: Vec<i16> = oc.topics[0]
        .partitions
        .iter()
        .map(|p| p.error_code)
        .collect();
    assert_eq!(
        codes,
        vec![0, 12, 3],
        "NONE, OFFSET_METADATA_TOO_LARGE, UNKNOWN_TOPIC_OR_PARTITION"
    );

    let b = b.restart(FAST_GROUPS).await;
    let (c, _) = group_consumer(&b.bootstrap, "resumers", &[]);
    c.subscribe(&["resume"]).unwrap();
    let got = poll_all(&[&c], |g| g[0].len() >= 90 - 33);
    let firsts: HashMap<i32, String> = (0..3)
        .map(|p| {
            let prefix = format!("r-{p}-");
            (
                p,
                got[0]
                    .iter()
                    .find(|v| v.starts_with(&prefix))
                    .unwrap()
                    .clone(),
            )
        })
        .collect();
    for p in 0..3 {
        assert_eq!(
            firsts[&p],
            format!("r-{p}-{}", 10 + p),
            "partition {p} resumes exactly at its committed offset"
        );
    }
    let mut raw = RawClient::connect(&b.bootstrap);
    let ResponseKind::OffsetFetch(of) = raw.call(
        ApiKey::OffsetFetch,
        9,
        RequestKind::OffsetFetch(OffsetFetchRequest::default().with_groups(vec![
                offset_fetch_request::OffsetFetchRequestGroup::default()
                    .with_group_id(GroupId(s("standalone")))
                    .with_topics(None),
                offset_fetch_request::OffsetFetchRequestGroup::default()
                    .with_group_id(GroupId(s("never-seen")))
                    .with_topics(Some(vec![
                        offset_fetch_request::OffsetFetchRequestTopics::default()
                            .with_name(TopicName(s("resume")))
                            .with_partition_indexes(vec![0]),
                    ])),
            ])),
    ) else {
        panic!()
    };
    let p = &of.groups[0].topics[0].partitions[0];
    assert_eq!(
        (p.committed_offset, p.metadata.as_ref().unwrap().as_str()),
        (7, "checkpoint-7"),
        "metadata string round-trips a restart"
    );
    assert_eq!(
        of.groups[1].topics[0].partitions[0].committed_offset, -1,
        "no commit: -1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_describe_delete_groups_and_bad_input() {
    let b = TestBroker::start_with(FAST_GROUPS).await;
    create_topic(&b.bootstrap, "lg", 2, &[]).await;
    produce_n(&b.bootstrap, "lg", 2, 3, "x").await;
    let (c, _) = group_consumer(&b.bootstrap, "listed", &[]);
    c.subscribe(&["lg"]).unwrap();
    poll_all(&[&c], |g| g[0].len() >= 6);
    let mut raw = RawClient::connect(&b.bootstrap);
    let list = |raw: &mut RawClient, states: Vec<&str>| {
        let ResponseKind::ListGroups(l) = raw.call(
            ApiKey::ListGroups,
            5,
            RequestKind::ListGroups(
                ListGroupsRequest::default()
                    .with_states_filter(states.into_iter().map(s).collect())
                    .with_types_filter(vec![s("classic")]),
            ),
        ) else {
            panic!()
        };
        l.groups
            .iter()
            .map(|g| {
                (
                    g.group_id.0.as_str().to_string(),
                    g.group_state.as_str().to_string(),
                    g.group_type.as_str().to_string(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        list(&mut raw, vec![]),
        vec![(
            "listed".to_string(),
            "Stable".to_string(),
            "classic".to_string()
        )]
    );
    assert!(
        list(&mut raw, vec!["Empty"]).is_empty(),
        "state filter applies"
    );
    // A group with members cannot be deleted; an unknown one is not found.
    let del = |raw: &mut RawClient, g: &str| {
        let ResponseKind::DeleteGroups(d) = raw.call(
            ApiKey::DeleteGroups,
            2,
            RequestKind::DeleteGroups(
                DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s(g))]),
            ),
        ) else {
            panic!()
        };
        d.results[0].error_code
    };
    assert_eq!(del(&mut raw, "listed"), 68, "NON_EMPTY_GROUP");
    assert_eq!(del(&mut raw, "nope"), 69, "GROUP_ID_NOT_FOUND");
    // OffsetDelete refuses a topic the group is subscribed to.
    let ResponseKind::OffsetDelete(od) = raw.call(
        ApiKey::OffsetDelete,
        0,
        RequestKind::OffsetDelete(
            OffsetDeleteRequest::default()
                .with_group_id(GroupId(s("listed")))
                .with_topics(vec![
                    offset_delete_request::OffsetDeleteRequestTopic::default()
                        .with_name(TopicName(s("lg")))
                        .with_partitions(vec![
                            offset_delete_request::OffsetDeleteRequestPartition::default()
                                .with_partition_index(0),
                        ]),
                ]),
        ),
    ) else {
        panic!()
    };
    assert_eq!(
        od.topics[0].partitions[0].error_code, 86,
        "GROUP_SUBSCRIBED_TO_TOPIC"
    );
    c.unsubscribe();
    drop(c);
    let deadline = Instant::now() + T;
    while list(&mut raw, vec!["Empty"]).is_empty() {
        assert!(
            Instant::now() < deadline,
            "group did not become empty after the member left"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(del(&mut raw, "listed"), 0);
    assert!(list(&mut raw, vec![]).is_empty(), "deleted group is gone");
    // Bad input: empty group id, session timeout out of range.
    assert_eq!(join_error(&mut raw, "", 6000), 24, "INVALID_GROUP_ID");
    assert_eq!(join_error(&mut raw, "g", 10), 26, "INVALID_SESSION_TIMEOUT");
    // The deleted group's offsets stay deleted across a restart.
    let b = b.restart(FAST_GROUPS).await;
    let mut raw = RawClient::connect(&b.bootstrap);
    assert!(list(&mut raw, vec![]).is_empty());
}

fn kip848_consumer(
    bootstrap: &str,
    group: &str,
    extra: &[(&str, &str)],
) -> (BaseConsumer<TrackingContext>, Arc<Tracker>) {
    let mut c = client_config(bootstrap);
    c.set("group.id", group)
        .set("group.protocol", "consumer")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "100");
    for (k, v) in extra {
        c.set(*k, *v);
    }
    if std::env::var("STRATA_TEST_RDKAFKA_LOG").is_ok() {
        c.set("debug", "cgrp,consumer");
        c.set_log_level(rdkafka::config::RDKafkaLogLevel::Debug);
    }
    let tracker = Arc::new(Tracker::default());
    let consumer: BaseConsumer<TrackingContext> = c
        .create_with_context(TrackingContext(tracker.clone()))
        .expect("consumer");
    (consumer, tracker)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kip_848_group_of_three_librdkafka_consumers() {
    let b = TestBroker::start_with(&[
        "group.consumer.heartbeat.interval.ms=300",
        "group.consumer.session.timeout.ms=10000",
    ])
    .await;
    create_topic(&b.bootstrap, "modern", 6, &[]).await;
    produce_n(&b.bootstrap, "modern", 6, 20, "m").await;
    let consumers: Vec<_> = (0..3)
        .map(|_| kip848_consumer(&b.bootstrap, "moderns", &[]))
        .collect();
    for (c, _) in &consumers {
        c.subscribe(&["modern"]).unwrap();
    }
    let refs: Vec<&BaseConsumer<TrackingContext>> = consumers.iter().map(|(c, _)| c).collect();
    let got = poll_all(&refs, |g| g.iter().map(|x| x.len()).sum::<usize>() >= 120);
    let mut all: Vec<String> = got.concat();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 120, "every record read exactly once");
    // Settle: each member ends with two partitions, none shared.
    let deadline = Instant::now() + T;
    loop {
        let sets: Vec<HashSet<i32>> = refs.iter().map(|c| assigned_partitions(c)).collect();
        let disjoint = sets[0].is_disjoint(&sets[1])
            && sets[0].is_disjoint(&sets[2])
            && sets[1].is_disjoint(&sets[2]);
        if sets.iter().all(|s| s.len() == 2) && disjoint {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "assignments did not settle: {sets:?}"
        );
        for c in &refs {
            c.poll(Duration::from_millis(50));
        }
    }
    // The group as ConsumerGroupDescribe and ListGroups show it.
    let mut raw = RawClient::connect(&b.bootstrap);
    let ResponseKind::ConsumerGroupDescribe(d) = raw.call(
        ApiKey::ConsumerGroupDescribe,
        0,
        RequestKind::ConsumerGroupDescribe(
            ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(s("moderns"))]),
        ),
    ) else {
        panic!()
    };
    let g = &d.groups[0];
    assert_eq!(g.error_code, 0);
    assert_eq!(g.members.len(), 3);
    assert_eq!(g.assignor_name.as_str(), "uniform");
    assert_eq!(g.group_state.as_str(), "Stable");
    assert!(g
        .members
        .iter()
        .all(|m| m.member_epoch == g.assignment_epoch));
    // OffsetFetch v9 checks a member's id and epoch as Kafka does; without a member
    // (an admin client) it is always answered.
    let member = &g.members[0];
    let fetch_as = |raw: &mut RawClient, id: Option<&str>, epoch: i32| {
        let ResponseKind::OffsetFetch(of) = raw.call(
            ApiKey::OffsetFetch,
            9,
            RequestKind::OffsetFetch(OffsetFetchRequest::default().with_groups(vec![
                offset_fetch_request::OffsetFetchRequestGroup::default()
                    .with_group_id(GroupId(s("moderns")))
                    .with_member_id(id.map(s))
                    .with_member_epoch(epoch)
                    .with_topics(None),
            ])),
        ) else {
            panic!()
        };
        of.groups[0].error_code
    };
    assert_eq!(
        fetch_as(
            &mut raw,
            Some(member.member_id.as_str()),
            member.member_epoch
        ),
        0
    );
    assert_eq!(
        fetch_as(
            &mut raw,
            Some(member.member_id.as_str()),
            member.member_epoch - 1
        ),
        113,
        "STALE_MEMBER_EPOCH"
    );
    assert_eq!(
        fetch_as(&mut raw, Some("no-such-member"), 1),
        25,
        "UNKNOWN_MEMBER_ID"
    );
    assert_eq!(fetch_as(&mut raw, None, -1), 0, "admin fetch");
    let ResponseKind::ListGroups(l) = raw.call(
        ApiKey::ListGroups,
        5,
        RequestKind::ListGroups(
            ListGroupsRequest::default().with_types_filter(vec![s("consumer")]),
        ),
    ) else {
        panic!()
    };
    assert_eq!(l.groups.len(), 1);
    assert_eq!(l.groups[0].group_type.as_str(), "consumer");
    // Commits with the member epoch work, and a classic join is refused.
    let (c0, _) = &consumers[0];
    let mut tpl = TopicPartitionList::new();
    for p in assigned_partitions(c0) {
        tpl.add_partition_offset("modern", p, Offset::Offset(20))
            .unwrap();
    }
    c0.commit(&tpl, CommitMode::Sync)
        .expect("commit within the KIP-848 group");
    let committed = c0.committed(T).unwrap();
    assert!(
        committed
            .elements()
            .iter()
            .all(|e| e.offset() == Offset::Offset(20)),
        "{committed:?}"
    );
    let ResponseKind::JoinGroup(j) = raw.call(
        ApiKey::JoinGroup,
        5,
        RequestKind::JoinGroup(
            JoinGroupRequest::default()
                .with_group_id(GroupId(s("moderns")))
                .with_session_timeout_ms(10000)
                .with_protocol_type(s("consumer"))
                .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
                )
                .with_name(s("range"))]),
        ),
    ) else {
        panic!()
    };
    assert_eq!(j.error_code, 23, "INCONSISTENT_GROUP_PROTOCOL");
    // One member leaves: the other two take its partitions, three each.
    let mut consumers = consumers;
    let (gone, _) = consumers.pop().unwrap();
    gone.unsubscribe();
    drop(gone);
    let refs: Vec<&BaseConsumer<TrackingContext>> = consumers.iter().map(|(c, _)| c).collect();
    let deadline = Instant::now() + T;
    loop {
        for c in &refs {
            c.poll(Duration::from_millis(50));
        }
        let sets: Vec<HashSet<i32>> = refs.iter().map(|c| assigned_partitions(c)).collect();
        if sets.iter().all(|s| s.len() == 3) && sets[0].is_disjoint(&sets[1]) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "remaining members did not take over: {sets:?}"
        );
        for c in &refs {
            c.poll(Duration::from_millis(50));
        }
    }
    // Close one at a time: the survivor takes everything, then closes too.
    // (librdkafka 2.12 stalls in close when a new assignment arrives mid-close, so
    // the survivor first serves its new assignment.)
    let (second, _) = consumers.pop().unwrap();
    drop(second);
    let (last, _) = consumers.pop().unwrap();
    let deadline = Instant::now() + T;
    while assigned_partitions(&last).len() != 6 {
        assert!(
            Instant::now() < deadline,
            "the last member did not take all partitions"
        );
        last.poll(Duration::from_millis(50));
    }
    for _ in 0..10 {
        last.poll(Duration::from_millis(50));
    }
    // The last member leaves cleanly (librdkafka logs "Consumer group sub-system
    // terminated" after our leave response), but rdkafka 0.39's drop then never sees
    // the consumer closed; close it from a thread and do not wait on that.
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(last);
        let _ = done_tx.send(());
    });
    let _ = done_rx.recv_timeout(Duration::from_secs(5));
    let mut raw = RawClient::connect(&b.bootstrap);
    let deadline = Instant::now() + T;
    loop {
        let ResponseKind::ConsumerGroupDescribe(d) = raw.call(
            ApiKey::ConsumerGroupDescribe,
            0,
            RequestKind::ConsumerGroupDescribe(
                ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(s("moderns"))]),
            ),
        ) else {
            panic!()
        };
        if d.groups[0].members.is_empty() {
            assert_eq!(d.groups[0].group_state.as_str(), "Empty");
            break;
        }
        assert!(Instant::now() < deadline, "the last member did not leave");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kip_848_membership_and_epochs_survive_a_broker_restart() {
    let b = TestBroker::start().await;
    create_topic(&b.bootstrap, "durable", 4, &[]).await;
    let member = uuid::Uuid::new_v4().to_string();
    let heartbeat =
        |raw: &mut RawClient,
         epoch: i32,
         owned: Option<Vec<consumer_group_heartbeat_request::TopicPartitions>>| {
            let mut req = ConsumerGroupHeartbeatRequest::default()
                .with_group_id(GroupId(s("durables")))
                .with_member_id(s(&member))
                .with_member_epoch(epoch)
                .with_rebalance_timeout_ms(30_000)
                .with_topic_partitions(owned);
            if epoch == 0 {
                req = req
                    .with_subscribed_topic_names(Some(vec![TopicName(s("durable"))]))
                    .with_server_assignor(Some(s("range")));
            }
            let ResponseKind::ConsumerGroupHeartbeat(r) = raw.call(
                ApiKey::ConsumerGroupHeartbeat,
                1,
                RequestKind::ConsumerGroupHeartbeat(req),
            ) else {
                panic!()
            };
            r
        };
    let mut raw = RawClient::connect(&b.bootstrap);
    let joined = heartbeat(&mut raw, 0, Some(vec![]));
    assert_eq!(joined.error_code, 0);
    let assignment = joined.assignment.clone().expect("an assignment on join");
    assert_eq!(assignment.topic_partitions[0].partitions.len(), 4);
    let epoch = joined.member_epoch;
    assert!(epoch > 0);
    // An unknown assignor is refused.
    let ResponseKind::ConsumerGroupHeartbeat(bad) = raw.call(
        ApiKey::ConsumerGroupHeartbeat,
        1,
        RequestKind::ConsumerGroupHeartbeat(
            ConsumerGroupHeartbeatRequest::default()
                .with_group_id(GroupId(s("durables")))
                .with_member_id(s("other"))
                .with_member_epoch(0)
                .with_rebalance_timeout_ms(30_000)
                .with_subscribed_topic_names(Some(vec![TopicName(s("durable"))]))
                .with_server_assignor(Some(s("magic"))),
        ),
    ) else {
        panic!()
    };
    assert_eq!(bad.error_code, 112, "UNSUPPORTED_ASSIGNOR");
    let owned = assignment
        .topic_partitions
        .iter()
        .map(|t| {
            consumer_group_heartbeat_request::TopicPartitions::default()
                .with_topic_id(t.topic_id)
                .with_partitions(t.partitions.clone())
        })
        .collect();
    assert_eq!(heartbeat(&mut raw, epoch, Some(owned)).error_code, 0);
    assert_eq!(
        heartbeat(&mut raw, epoch + 7, None).error_code,
        110,
        "FENCED_MEMBER_EPOCH"
    );

    let b = b.restart(&[]).await;
    let mut raw = RawClient::connect(&b.bootstrap);
    let after = heartbeat(&mut raw, epoch, None);
    assert_eq!(
        after.error_code, 0,
        "the member and its epoch are known after the restart"
    );
    assert_eq!(after.member_epoch, epoch);
    let ResponseKind::ConsumerGroupDescribe(d) = raw.call(
        ApiKey::ConsumerGroupDescribe,
        0,
        RequestKind::ConsumerGroupDescribe(
            ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(s("durables"))]),
        ),
    ) else {
        panic!()
    };
    let g = &d.groups[0];
    assert_eq!(g.assignor_name.as_str(), "range");
    assert_eq!(g.members.len(), 1);
    assert_eq!(
        g.members[0].assignment.topic_partitions[0].partitions.len(),
        4,
        "its partitions are still its own"
    );
    // Leaving is durable too.
    assert_eq!(heartbeat(&mut raw, -1, None).error_code, 0);
    let b = b.restart(&[]).await;
    let mut raw = RawClient::connect(&b.bootstrap);
    let ResponseKind::ConsumerGroupDescribe(d) = raw.call(
        ApiKey::ConsumerGroupDescribe,
        0,
        RequestKind::ConsumerGroupDescribe(
            ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(s("durables"))]),
        ),
    ) else {
        panic!()
    };
    assert!(d.groups[0].members.is_empty());
}

/// A raw classic member: JoinGroup (both KIP-394 rounds) and SyncGroup.
fn raw_join(
    raw: &mut RawClient,
    group: &str,
    member: &str,
    rebalance_ms: i32,
) -> JoinGroupResponse {
    let req = |member: &str| {
        RequestKind::JoinGroup(
            JoinGroupRequest::default()
                .with_group_id(GroupId(s(group)))
                .with_session_timeout_ms(10_000)
                .with_rebalance_timeout_ms(rebalance_ms)
                .with_member_id(s(member))
                .with_protocol_type(s("consumer"))
                .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
                )
                .with_name(s("range"))
                .with_metadata(bytes::Bytes::from_static(b"\0\0\0\0\0\0"))]),
        )
    };
    let ResponseKind::JoinGroup(j) = raw.call(ApiKey::JoinGroup, 7, req(member)) else {
        panic!()
    };
    if j.error_code != 79 {
        return j;
    }
    let id = j.member_id.as_str().to_string();
    let ResponseKind::JoinGroup(j) = raw.call(ApiKey::JoinGroup, 7, req(&id)) else {
        panic!()
    };
    j
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_does_not_rejoin_within_the_rebalance_timeout_is_removed() {
    let b = TestBroker::start_with(FAST_GROUPS).await;
    let mut a = RawClient::connect(&b.bootstrap);
    let ja = raw_join(&mut a, "slow", "", 1500);
    assert_eq!(ja.error_code, 0);
    let ResponseKind::SyncGroup(sa) = a.call(
        ApiKey::SyncGroup,
        5,
        RequestKind::SyncGroup(
            SyncGroupRequest::default()
                .with_group_id(GroupId(s("slow")))
                .with_generation_id(ja.generation_id)
                .with_member_id(ja.member_id.clone())
                .with_protocol_type(Some(s("consumer")))
                .with_protocol_name(Some(s("range")))
                .with_assignments(vec![
                    sync_group_request::SyncGroupRequestAssignment::default()
                        .with_member_id(ja.member_id.clone()),
                ]),
        ),
    ) else {
        panic!()
    };
    assert_eq!(sa.error_code, 0);
    // B joins from another connection: a rebalance starts and B waits for A to rejoin.
    let bootstrap = b.bootstrap.clone();
    let joiner = std::thread::spawn(move || {
        let mut c = RawClient::connect(&bootstrap);
        raw_join(&mut c, "slow", "", 1500)
    });
    // A keeps heartbeating (told a rebalance is in progress) but never rejoins.
    let started = Instant::now();
    let mut saw_rebalance = false;
    while !joiner.is_finished() {
        let ResponseKind::Heartbeat(h) = a.call(
            ApiKey::Heartbeat,
            4,
            RequestKind::Heartbeat(
                HeartbeatRequest::default()
                    .with_group_id(GroupId(s("slow")))
                    .with_generation_id(ja.generation_id)
                    .with_member_id(ja.member_id.clone()),
            ),
        ) else {
            panic!()
        };
        saw_rebalance |= h.error_code == 27;
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the rebalance never completed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(saw_rebalance, "A was told REBALANCE_IN_PROGRESS");
    let jb = joiner.join().unwrap();
    assert_eq!(jb.error_code, 0);
    assert!(
        started.elapsed() >= Duration::from_millis(1200),
        "the join phase waited for A's rebalance timeout"
    );
    assert_eq!(jb.generation_id, ja.generation_id + 1);
    assert_eq!(jb.leader, jb.member_id, "B leads the new generation");
    assert_eq!(jb.members.len(), 1, "A was removed for not rejoining");
    let ResponseKind::Heartbeat(h) = a.call(
        ApiKey::Heartbeat,
        4,
        RequestKind::Heartbeat(
            HeartbeatRequest::default()
                .with_group_id(GroupId(s("slow")))
                .with_generation_id(ja.generation_id)
                .with_member_id(ja.member_id.clone()),
        ),
    ) else {
        panic!()
    };
    assert_eq!(h.error_code, 25, "UNKNOWN_MEMBER_ID for the removed member");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kip_848_regex_subscriptions_follow_new_topics() {
    let b = TestBroker::start_with(&["group.consumer.heartbeat.interval.ms=300"]).await;
    create_topic(&b.bootstrap, "regex-a", 2, &[]).await;
    create_topic(&b.bootstrap, "regex-b", 2, &[]).await;
    create_topic(&b.bootstrap, "unrelated", 3, &[]).await;
    let (c, _) = kip848_consumer(&b.bootstrap, "regexers", &[]);
    c.subscribe(&["^regex-.*"]).unwrap();
    let topics_of = |c: &BaseConsumer<TrackingContext>| -> HashSet<(String, i32)> {
        c.assignment()
            .unwrap()
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect()
    };
    let deadline = Instant::now() + T;
    while topics_of(&c).len() != 4 {
        assert!(
            Instant::now() < deadline,
            "regex subscription not assigned: {:?}",
            topics_of(&c)
        );
        c.poll(Duration::from_millis(50));
    }
    assert!(topics_of(&c).iter().all(|(t, _)| t.starts_with("regex-")));
    // A topic created later that matches is picked up.
    create_topic(&b.bootstrap, "regex-c", 1, &[]).await;
    let deadline = Instant::now() + T;
    while !topics_of(&c).contains(&("regex-c".to_string(), 0)) {
        assert!(
            Instant::now() < deadline,
            "new matching topic not assigned: {:?}",
            topics_of(&c)
        );
        c.poll(Duration::from_millis(50));
    }
    let mut raw = RawClient::connect(&b.bootstrap);
    let ResponseKind::ConsumerGroupDescribe(d) = raw.call(
        ApiKey::ConsumerGroupDescribe,
        0,
        RequestKind::ConsumerGroupDescribe(
            ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(s("regexers"))]),
        ),
    ) else {
        panic!()
    };
    assert!(d.groups[0].members[0].subscribed_topic_regex.is_some());
    c.unsubscribe();
    std::mem::drop(std::thread::spawn(move || drop(c)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_of_empty_groups_expire_after_offsets_retention_minutes() {
    let b = TestBroker::start_with(&["offsets.retention.minutes=1"]).await;
    create_topic(&b.bootstrap, "ret", 1, &[]).await;
    let fetch = |raw: &mut RawClient, group: &str| {
        let ResponseKind::OffsetFetch(of) = raw.call(
            ApiKey::OffsetFetch,
            7,
            RequestKind::OffsetFetch(
                OffsetFetchRequest::default()
                    .with_group_id(GroupId(s(group)))
                    .with_topics(Some(vec![
                        offset_fetch_request::OffsetFetchRequestTopic::default()
                            .with_name(TopicName(s("ret")))
                            .with_partition_indexes(vec![0]),
                    ])),
            ),
        ) else {
            panic!()
        };
        of.topics[0].partitions[0].committed_offset
    };
    let mut raw = RawClient::connect(&b.bootstrap);
    assert_eq!(simple_commit(&mut raw, "old", "ret", 0, 3), 0);
    let groups = b
        .running
        .as_ref()
        .unwrap()
        .broker
        .as_ref()
        .unwrap()
        .groups
        .clone();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    groups.expire_offsets_at(now + 30_000).await;
    assert_eq!(fetch(&mut raw, "old"), 3, "still within the minute");
    groups.expire_offsets_at(now + 61_000).await;
    assert_eq!(
        fetch(&mut raw, "old"),
        -1,
        "expired after offsets.retention.minutes"
    );
    // The expiry is durable.
    let b = b.restart(&["offsets.retention.minutes=1"]).await;
    let mut raw = RawClient::connect(&b.bootstrap);
    assert_eq!(fetch(&mut raw, "old"), -1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_group_refuses_another_member_and_oversized_group_ids_are_answered() {
    let mut config = FAST_GROUPS.to_vec();
    config.push("group.max.size=2");
    let b = TestBroker::start_with(&config).await;
    create_topic(&b.bootstrap, "full", 4, &[]).await;
    produce_n(&b.bootstrap, "full", 4, 2, "f").await;
    let (c1, _) = group_consumer(&b.bootstrap, "capped", &[]);
    let (c2, _) = group_consumer(&b.bootstrap, "capped", &[]);
    c1.subscribe(&["full"]).unwrap();
    c2.subscribe(&["full"]).unwrap();
    poll_all(&[&c1, &c2], |g| g[0].len() + g[1].len() >= 8);
    // The third member is refused with GROUP_MAX_SIZE_REACHED, surfaced by librdkafka.
    let (c3, _) = group_consumer(&b.bootstrap, "capped", &[]);
    c3.subscribe(&["full"]).unwrap();
    let deadline = Instant::now() + T;
    let refused = loop {
        assert!(Instant::now() < deadline, "third member never refused");
        for c in [&c1, &c2] {
            let _ = c.poll(Duration::from_millis(20));
        }
        match c3.poll(Duration::from_millis(100)) {
            Some(Err(e)) => break e,
            Some(Ok(m)) => panic!("third member read {:?}", m.offset()),
            None => {}
        }
    };
    assert_eq!(
        refused.rdkafka_error_code(),
        Some(rdkafka::types::RDKafkaErrorCode::GroupMaxSizeReached),
        "{refused}"
    );
    assert!(assigned_partitions(&c3).is_empty());
    assert_eq!(
        assigned_partitions(&c1).len() + assigned_partitions(&c2).len(),
        4,
        "the two members keep every partition"
    );
    // Group ids at the wire limit (32767 bytes) work; an empty one is INVALID_GROUP_ID
    // for commits too; a group id whose length overruns the frame closes only that
    // connection.
    let long = "g".repeat(i16::MAX as usize);
    let mut raw = RawClient::connect(&b.bootstrap);
    let commit = |raw: &mut RawClient, group: &str| simple_commit(raw, group, "full", 1, 2);
    assert_eq!(commit(&mut raw, &long), 0);
    assert_eq!(commit(&mut raw, ""), 24, "INVALID_GROUP_ID");
    let ResponseKind::OffsetFetch(f) = raw.call(
        ApiKey::OffsetFetch,
        8,
        RequestKind::OffsetFetch(OffsetFetchRequest::default().with_groups(vec![
            offset_fetch_request::OffsetFetchRequestGroup::default()
                .with_group_id(GroupId(s(&long)))
                .with_topics(None),
        ])),
    ) else {
        panic!("not an OffsetFetch response")
    };
    let fetched = &f.groups[0].topics[0].partitions[0];
    assert_eq!((fetched.partition_index, fetched.committed_offset), (1, 2));
    // JoinGroup v5 header then a group id claiming 32767 bytes with 10 present.
    let mut bad = RawClient::connect(&b.bootstrap);
    let mut frame = Vec::new();
    frame.extend_from_slice(&11i16.to_be_bytes()); // JoinGroup
    frame.extend_from_slice(&5i16.to_be_bytes());
    frame.extend_from_slice(&7i32.to_be_bytes());
    frame.extend_from_slice(&(-1i16).to_be_bytes()); // null client id
    frame.extend_from_slice(&i16::MAX.to_be_bytes());
    frame.extend_from_slice(b"0123456789");
    let mut sized = (frame.len() as i32).to_be_bytes().to_vec();
    sized.extend_from_slice(&frame);
    bad.send_bytes(&sized);
    assert!(
        bad.is_closed(),
        "a malformed group id closes the connection"
    );
    assert_eq!(commit(&mut raw, "after"), 0, "the broker still serves");
    drop((c1, c2, c3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offset_commit_and_fetch_v10_name_topics_by_id() {
    let b = TestBroker::start_with(FAST_GROUPS).await;
    create_topic(&b.bootstrap, "by-id", 2, &[]).await;
    let broker = b.running.as_ref().unwrap().broker.clone().unwrap();
    let id = broker.admin.image().topic_by_name("by-id").unwrap().id;
    let stranger = uuid::Uuid::new_v4();
    let mut raw = RawClient::connect(&b.bootstrap);
    let commit_topic = |topic_id, partitions: &[(i32, i64)]| {
        offset_commit_request::OffsetCommitRequestTopic::default()
            .with_topic_id(topic_id)
            .with_partitions(
                partitions
                    .iter()
                    .map(|&(p, o)| {
                        offset_commit_request::OffsetCommitRequestPartition::default()
                            .with_partition_index(p)
                            .with_committed_offset(o)
                            .with_committed_metadata(Some(s(&format!("at-{o}"))))
                    })
                    .collect(),
            )
    };
    let ResponseKind::OffsetCommit(oc) = raw.call(
        ApiKey::OffsetCommit,
        10,
        RequestKind::OffsetCommit(
            OffsetCommitRequest::default()
                .with_group_id(GroupId(s("by-id-group")))
                .with_generation_id_or_member_epoch(-1)
                .with_topics(vec![
                    commit_topic(id, &[(0, 5), (1, 6)]),
                    commit_topic(stranger, &[(0, 1)]),
                ]),
        ),
    ) else {
        panic!()
    };
    assert_eq!(oc.topics[0].topic_id, id, "answered by id");
    let codes: Vec<Vec<i16>> = oc
        .topics
        .iter()
        .map(|t| t.partitions.iter().map(|p| p.error_code).collect())
        .collect();
    assert_eq!(codes, vec![vec![0, 0], vec![100]], "UNKNOWN_TOPIC_ID");

    let fetch = |raw: &mut RawClient, version, topics| {
        let ResponseKind::OffsetFetch(of) = raw.call(
            ApiKey::OffsetFetch,
            version,
            RequestKind::OffsetFetch(OffsetFetchRequest::default().with_groups(vec![
                offset_fetch_request::OffsetFetchRequestGroup::default()
                    .with_group_id(GroupId(s("by-id-group")))
                    .with_topics(topics),
            ])),
        ) else {
            panic!()
        };
        of.groups.into_iter().next().unwrap()
    };
    // v10 by id, with an unknown id beside it.
    let g = fetch(
        &mut raw,
        10,
        Some(vec![
            offset_fetch_request::OffsetFetchRequestTopics::default()
                .with_topic_id(id)
                .with_partition_indexes(vec![0, 1]),
            offset_fetch_request::OffsetFetchRequestTopics::default()
                .with_topic_id(stranger)
                .with_partition_indexes(vec![0]),
        ]),
    );
    let got: Vec<(uuid::Uuid, i32, i64, String, i16)> = g
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| {
                (
                    t.topic_id,
                    p.partition_index,
                    p.committed_offset,
                    p.metadata
                        .as_ref()
                        .map(|m| m.to_string())
                        .unwrap_or_default(),
                    p.error_code,
                )
            })
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (id, 0, 5, "at-5".to_string(), 0),
            (id, 1, 6, "at-6".to_string(), 0),
            (stranger, 0, -1, String::new(), 100),
        ]
    );
    // v10 for every topic names them by id; v9 sees the same commits by name.
    let g = fetch(&mut raw, 10, None);
    assert_eq!(g.topics.len(), 1);
    assert_eq!(g.topics[0].topic_id, id);
    let g = fetch(
        &mut raw,
        9,
        Some(vec![
            offset_fetch_request::OffsetFetchRequestTopics::default()
                .with_name(TopicName(s("by-id")))
                .with_partition_indexes(vec![0, 1]),
        ]),
    );
    let offsets: Vec<i64> = g.topics[0]
        .partitions
        .iter()
        .map(|p| p.committed_offset)
        .collect();
    assert_eq!(offsets, vec![5, 6]);
    // And librdkafka (v9 and below) reads them too.
    let (c, _) = group_consumer(&b.bootstrap, "by-id-group", &[]);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition("by-id", 0);
    tpl.add_partition("by-id", 1);
    let committed = c.committed_offsets(tpl, T).unwrap();
    let offsets: Vec<Offset> = committed.elements().iter().map(|e| e.offset()).collect();
    assert_eq!(offsets, vec![Offset::Offset(5), Offset::Offset(6)]);
}

/// Committed offsets for `partitions` of `topic` as `group` sees them through
/// librdkafka's OffsetFetch (None = no committed offset).
fn committed(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> Vec<Option<i64>> {
    let c = consumer(bootstrap, &[("group.id", group)]);
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let got = c.committed_offsets(tpl, T).expect("committed offsets");
    (0..partitions)
        .map(|p| match got.find_partition(topic, p).unwrap().offset() {
            Offset::Offset(o) => Some(o),
            _ => None,
        })
        .collect()
}

/// Kafka removes a deleted topic's committed offsets from every group; a topic
/// re-created under the same name starts with none, also after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_topics_committed_offsets_are_removed_from_every_group() {
    let b = TestBroker::start_with(FAST_GROUPS).await;
    create_topic(&b.bootstrap, "doomed", 2, &[]).await;
    create_topic(&b.bootstrap, "kept", 1, &[]).await;
    for group in ["deleter-a", "deleter-b"] {
        let c = consumer(&b.bootstrap, &[("group.id", group)]);
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("doomed", 0, Offset::Offset(3))
            .unwrap();
        tpl.add_partition_offset("doomed", 1, Offset::Offset(4))
            .unwrap();
        tpl.add_partition_offset("kept", 0, Offset::Offset(5))
            .unwrap();
        c.commit(&tpl, CommitMode::Sync).unwrap();
        assert_eq!(
            committed(&b.bootstrap, group, "doomed", 2),
            vec![Some(3), Some(4)]
        );
    }
    let deleted = admin(&b.bootstrap)
        .delete_topics(&["doomed"], &admin_opts())
        .await
        .unwrap();
    assert!(deleted.iter().all(|r| r.is_ok()), "{deleted:?}");
    for group in ["deleter-a", "deleter-b"] {
        assert_eq!(
            committed(&b.bootstrap, group, "doomed", 2),
            vec![None, None]
        );
        assert_eq!(committed(&b.bootstrap, group, "kept", 1), vec![Some(5)]);
    }
    // An OffsetFetch for every topic of the group no longer names the deleted one.
    let mut raw = RawClient::connect(&b.bootstrap);
    let ResponseKind::OffsetFetch(all) = raw.call(
        ApiKey::OffsetFetch,
        7,
        RequestKind::OffsetFetch(
            OffsetFetchRequest::default()
                .with_group_id(GroupId(s("deleter-a")))
                .with_topics(None),
        ),
    ) else {
        panic!("not an OffsetFetch response")
    };
    let names: Vec<&str> = all.topics.iter().map(|t| t.name.0.as_str()).collect();
    assert_eq!(names, vec!["kept"]);

    // The removal is durable, and a topic re-created under the name starts clean.
    let b = b.restart(FAST_GROUPS).await;
    create_topic(&b.bootstrap, "doomed", 2, &[]).await;
    for group in ["deleter-a", "deleter-b"] {
        assert_eq!(
            committed(&b.bootstrap, group, "doomed", 2),
            vec![None, None]
        );
        assert_eq!(committed(&b.bootstrap, group, "kept", 1), vec![Some(5)]);
    }
    b.stop().await;
}

/// KIP-848 `group.remote.assignor=range` from librdkafka gets Kafka's range assignment
/// (per topic, contiguous ranges), and `group.consumer.assignors` limits what members
/// may ask for and sets the default.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kip_848_consumers_asking_for_range_get_range_assignments() {
    let b = TestBroker::start_with(&["group.consumer.heartbeat.interval.ms=300"]).await;
    create_topic(&b.bootstrap, "ranged-a", 4, &[]).await;
    create_topic(&b.bootstrap, "ranged-b", 4, &[]).await;
    let consumers: Vec<_> = (0..2)
        .map(|_| {
            kip848_consumer(
                &b.bootstrap,
                "rangers",
                &[("group.remote.assignor", "range")],
            )
        })
        .collect();
    for (c, _) in &consumers {
        c.subscribe(&["ranged-a", "ranged-b"]).unwrap();
    }
    let deadline = Instant::now() + T;
    let owned = loop {
        for (c, _) in &consumers {
            let _ = c.poll(Duration::from_millis(50));
        }
        let owned: Vec<Vec<(String, i32)>> = consumers
            .iter()
            .map(|(c, _)| {
                let mut v: Vec<(String, i32)> = c
                    .assignment()
                    .unwrap()
                    .elements()
                    .iter()
                    .map(|e| (e.topic().to_string(), e.partition()))
                    .collect();
                v.sort();
                v
            })
            .collect();
        if owned.iter().all(|o| o.len() == 4) {
            break owned;
        }
        assert!(
            Instant::now() < deadline,
            "no settled assignment: {owned:?}"
        );
    };
    let mut shapes: Vec<Vec<(String, i32)>> = owned.clone();
    shapes.sort();
    let range = |parts: [i32; 2]| -> Vec<(String, i32)> {
        ["ranged-a", "ranged-b"]
            .iter()
            .flat_map(|t| parts.iter().map(move |p| (t.to_string(), *p)))
            .collect()
    };
    assert_eq!(
        shapes,
        vec![range([0, 1]), range([2, 3])],
        "range: each member a contiguous range of every topic"
    );
    let mut raw = RawClient::connect(&b.bootstrap);
    let ResponseKind::ConsumerGroupDescribe(d) = raw.call(
        ApiKey::ConsumerGroupDescribe,
        0,
        RequestKind::ConsumerGroupDescribe(
            ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(s("rangers"))]),
        ),
    ) else {
        panic!()
    };
    assert_eq!(d.groups[0].assignor_name.as_str(), "range");
    drop(consumers);
    b.stop().await;

    // A broker that offers only range: a member asking for uniform is refused with
    // UNSUPPORTED_ASSIGNOR, and a group whose members name none uses range.
    let b = TestBroker::start_with(&["group.consumer.assignors=range"]).await;
    create_topic(&b.bootstrap, "ranged-c", 2, &[]).await;
    let mut raw = RawClient::connect(&b.bootstrap);
    let join = |raw: &mut RawClient, group: &str, assignor: Option<&str>| {
        let ResponseKind::ConsumerGroupHeartbeat(r) = raw.call(
            ApiKey::ConsumerGroupHeartbeat,
            1,
            RequestKind::ConsumerGroupHeartbeat(
                ConsumerGroupHeartbeatRequest::default()
                    .with_group_id(GroupId(s(group)))
                    .with_member_id(s(&uuid::Uuid::new_v4().to_string()))
                    .with_member_epoch(0)
                    .with_rebalance_timeout_ms(30_000)
                    .with_subscribed_topic_names(Some(vec![TopicName(s("ranged-c"))]))
                    .with_topic_partitions(Some(vec![]))
                    .with_server_assignor(assignor.map(s)),
            ),
        ) else {
            panic!()
        };
        r.error_code
    };
    assert_eq!(
        join(&mut raw, "only-range", Some("uniform")),
        112,
        "UNSUPPORTED_ASSIGNOR"
    );
    assert_eq!(join(&mut raw, "only-range", None), 0);
    let ResponseKind::ConsumerGroupDescribe(d) = raw.call(
        ApiKey::ConsumerGroupDescribe,
        0,
        RequestKind::ConsumerGroupDescribe(
            ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(s("only-range"))]),
        ),
    ) else {
        panic!()
    };
    assert_eq!(
        d.groups[0].assignor_name.as_str(),
        "range",
        "the first configured assignor is the default"
    );
    b.stop().await;
}
