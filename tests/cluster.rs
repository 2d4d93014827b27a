//! A real three-broker cluster: three `strata` processes on 127.0.0.1 with an openraft
//! controller quorum. Forming, controller failover, a wiped voter rejoining, broker
//! fencing and leader election from the ISR, controlled shutdown, placement.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::cluster::Cluster;
use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::types::RDKafkaErrorCode;

/// Partition → (leader, leader epoch, replicas, isr) of `topic` as node `i` reports it.
type PartitionView = BTreeMap<i32, (i32, i32, Vec<i32>, Vec<i32>)>;

fn partitions(c: &Cluster, i: usize, topic: &str) -> Option<PartitionView> {
    let md = c.metadata(i);
    let t = md
        .topics
        .iter()
        .find(|t| t.name.as_ref().map(|n| n.0.as_str()) == Some(topic))?;
    if t.error_code != 0 {
        return None;
    }
    Some(
        t.partitions
            .iter()
            .map(|p| {
                (
                    p.partition_index,
                    (
                        p.leader_id.0,
                        p.leader_epoch,
                        p.replica_nodes.iter().map(|b| b.0).collect(),
                        p.isr_nodes.iter().map(|b| b.0).collect(),
                    ),
                )
            })
            .collect(),
    )
}

fn live_brokers(c: &Cluster, i: usize) -> BTreeSet<i32> {
    c.metadata(i).brokers.iter().map(|b| b.node_id.0).collect()
}

async fn create(
    c: &Cluster,
    i: usize,
    name: &str,
    partitions: i32,
    rf: i32,
) -> Result<(), RDKafkaErrorCode> {
    let admin = common::admin(&c.bootstrap(i));
    let res = admin
        .create_topics(
            &[NewTopic::new(name, partitions, TopicReplication::Fixed(rf))],
            &common::admin_opts(),
        )
        .await
        .expect("create_topics");
    res.into_iter()
        .next()
        .unwrap()
        .map(|_| ())
        .map_err(|(_, e)| e)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_voters_form_one_cluster_fail_over_and_take_a_wiped_voter_back() {
    let mut c = Cluster::start(3, &[]);

    // One quorum: every node names the same leader, and it reports three voters.
    let (leader, epoch) = c.wait_for("a quorum leader", Duration::from_secs(30), || {
        let views: Vec<_> = (0..3).map(|i| c.quorum_leader(i)).collect();
        let first = views[0]?;
        views.iter().all(|v| *v == Some(first)).then_some(first)
    });
    assert!((1..=3).contains(&leader), "leader {leader}");
    assert!(epoch >= 1);
    let q = c.describe_quorum(0);
    let voters: BTreeSet<i32> = q.topics[0].partitions[0]
        .current_voters
        .iter()
        .map(|v| v.replica_id.0)
        .collect();
    assert_eq!(voters, BTreeSet::from([1, 2, 3]));
    assert!(q.topics[0].partitions[0]
        .current_voters
        .iter()
        .all(|v| v.log_end_offset > 0));
    let md = c.metadata(0);
    assert_eq!(
        md.controller_id.0, leader,
        "Metadata names the active controller"
    );
    let cluster_id = md.cluster_id.clone().unwrap();
    for i in 0..3 {
        assert_eq!(live_brokers(&c, i), BTreeSet::from([1, 2, 3]));
        assert_eq!(
            c.metadata(i).cluster_id.unwrap(),
            cluster_id,
            "one cluster, not three"
        );
    }

    // Placement: replication factor 3 over three brokers, leaders spread evenly.
    create(&c, 1, "spread", 6, 3).await.expect("create rf 3");
    let parts = c.wait_for("spread on every node", Duration::from_secs(10), || {
        let p = partitions(&c, 2, "spread")?;
        (p.len() == 6).then_some(p)
    });
    let mut leads: BTreeMap<i32, usize> = BTreeMap::new();
    for (leader, _, replicas, isr) in parts.values() {
        let distinct: BTreeSet<i32> = replicas.iter().copied().collect();
        assert_eq!(distinct, BTreeSet::from([1, 2, 3]));
        assert_eq!(replicas[0], *leader, "the preferred replica leads");
        assert_eq!(isr.len(), 3);
        *leads.entry(*leader).or_default() += 1;
    }
    assert_eq!(
        leads.values().copied().collect::<Vec<_>>(),
        vec![2, 2, 2],
        "{leads:?}"
    );
    assert_eq!(
        create(&c, 0, "too-many", 1, 4).await,
        Err(RDKafkaErrorCode::InvalidReplicationFactor)
    );

    // The active controller dies: another voter leads within 10 s and the cluster
    // keeps working.
    let killed = c.index_of(leader);
    let survivor = (killed + 1) % 3;
    let started = Instant::now();
    c.kill9(killed);
    let (new_leader, new_epoch) = c.wait_for("a new controller", Duration::from_secs(10), || {
        c.quorum_leader(survivor).filter(|(l, _)| *l != leader)
    });
    assert!(new_epoch > epoch, "the controller epoch moves on");
    assert!(started.elapsed() < Duration::from_secs(10));

    // The dead broker is fenced after broker.session.timeout.ms: it leaves Metadata
    // and every partition it led gets a new leader from the ISR, at epoch + 1.
    let after = c.wait_for("the dead broker fenced", Duration::from_secs(20), || {
        let p = partitions(&c, survivor, "spread")?;
        let moved = p
            .values()
            .all(|(l, _, _, isr)| *l != leader && !isr.contains(&leader));
        (moved && !live_brokers(&c, survivor).contains(&leader)).then_some(p)
    });
    for (idx, (old_leader, old_epoch, _, old_isr)) in &parts {
        let (l, e, _, isr) = &after[idx];
        if *old_leader == leader {
            assert!(
                old_isr.contains(l),
                "partition {idx}: new leader {l} from the ISR {old_isr:?}"
            );
            assert_eq!(*e, old_epoch + 1, "partition {idx}");
        } else {
            assert_eq!(l, old_leader, "partition {idx} kept its leader");
        }
        assert_eq!(isr.len(), 2);
    }
    // `strata cluster` shows the quorum and the six under-replicated partitions.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["cluster", "--bootstrap-server", &c.bootstrap(survivor)])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!("LeaderId:               {new_leader}")),
        "{text}"
    );
    assert!(text.contains("UnderReplicatedPartitions: 6"), "{text}");
    assert_eq!(
        text.matches("\tTopic: spread\tPartition:").count(),
        6,
        "{text}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .args([
            "cluster",
            "--bootstrap-server",
            &c.bootstrap(survivor),
            "--under-replicated-partitions",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.matches("Isr: ").count(), 6, "{text}");
    create(&c, survivor, "after-failover", 2, 2)
        .await
        .expect("create with two brokers");
    assert_eq!(
        create(&c, survivor, "needs-three", 1, 3).await,
        Err(RDKafkaErrorCode::InvalidReplicationFactor),
        "a replication factor above the live brokers is refused"
    );
    assert_eq!(new_leader, c.quorum_leader(survivor).unwrap().0);

    // Its metadata directory is wiped: it rejoins the same cluster and catches up.
    let meta = c.specs[killed].data.join("__cluster_metadata-0");
    std::fs::remove_dir_all(&meta).unwrap();
    c.restart(killed);
    c.wait_for(
        "the wiped voter back in the same cluster",
        Duration::from_secs(30),
        || {
            let md = c.metadata(killed);
            let topics: BTreeSet<String> = md
                .topics
                .iter()
                .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
                .collect();
            (md.cluster_id.as_deref() == Some(cluster_id.as_str())
                && topics.contains("after-failover")
                && live_brokers(&c, killed).len() == 3)
                .then_some(())
        },
    );
    let (l, _) = c.quorum_leader(killed).unwrap();
    assert_eq!(
        l,
        c.quorum_leader(survivor).unwrap().0,
        "one leader, not two"
    );
    assert!(
        c.log(killed)
            .contains("joining the existing metadata quorum")
            || c.log(killed).contains("belong to a cluster")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_moves_leadership_away_before_the_broker_stops() {
    // A long session timeout: only a controlled shutdown can move leaders this fast.
    let mut c = Cluster::start(3, &["broker.session.timeout.ms=60000"]);
    create(&c, 0, "moving", 6, 3).await.expect("create");
    let before = c.wait_for("partitions", Duration::from_secs(10), || {
        partitions(&c, 0, "moving").filter(|p| p.len() == 6)
    });
    let target = c.index_of(before[&0].0);
    let target_id = c.specs[target].id;
    let other = (target + 1) % 3;
    let status = c.terminate(target);
    assert!(status.success(), "exit status {status}");
    let log = c.log(target);
    assert!(log.contains("controlled shutdown done"), "{log}");
    // Right after it stopped (far sooner than the 60 s session timeout), nothing
    // names it as leader or in-sync replica any more. The other node may apply the
    // committed change a heartbeat later.
    c.wait_for("leaderships moved", Duration::from_secs(3), || {
        let after = partitions(&c, other, "moving")?;
        let moved = after
            .values()
            .all(|(l, _, _, isr)| *l != target_id && !isr.contains(&target_id));
        (moved && !live_brokers(&c, other).contains(&target_id)).then_some(())
    });
    // It comes back and is a live broker again.
    c.restart(target);
    c.wait_for("the broker back", Duration::from_secs(20), || {
        live_brokers(&c, other).contains(&target_id).then_some(())
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_whose_replicas_are_all_down_is_offline_until_one_returns() {
    let mut c = Cluster::start(3, &[]);
    // Replication factor 1 on the third broker only.
    let admin = common::admin(&c.bootstrap(0));
    let topic = NewTopic::new("lonely", 1, TopicReplication::Variable(&[&[3]]));
    admin
        .create_topics(&[topic], &common::admin_opts())
        .await
        .unwrap()
        .remove(0)
        .unwrap();
    c.kill9(2);
    let md = c.wait_for("the partition offline", Duration::from_secs(20), || {
        let md = c.metadata(0);
        let t = md
            .topics
            .iter()
            .find(|t| t.name.as_ref().map(|n| n.0.as_str()) == Some("lonely"))?;
        let p = &t.partitions[0];
        (p.leader_id.0 == -1).then(|| {
            (
                p.error_code,
                p.isr_nodes.clone(),
                p.offline_replicas.clone(),
            )
        })
    });
    assert_eq!(md.0, 5, "LEADER_NOT_AVAILABLE");
    assert_eq!(
        md.1.iter().map(|b| b.0).collect::<Vec<_>>(),
        vec![3],
        "the last ISR member stays"
    );
    assert_eq!(md.2.iter().map(|b| b.0).collect::<Vec<_>>(), vec![3]);
    c.restart(2);
    c.wait_for("the partition back", Duration::from_secs(20), || {
        partitions(&c, 0, "lonely")
            .filter(|p| p[&0].0 == 3)
            .map(|_| ())
    });
}

#[test]
fn a_lone_voter_waits_for_its_quorum_and_stops_on_sigterm() {
    let mut c = Cluster {
        dir: tempfile::tempdir().unwrap(),
        specs: Vec::new(),
        procs: Vec::new(),
        extra: Vec::new(),
        protocol: "PLAINTEXT".into(),
    };
    for i in 0..3 {
        c.specs.push(common::cluster::NodeSpec::new(
            i + 1,
            common::cluster::Role::Combined,
            c.dir.path(),
        ));
        c.procs.push(None);
    }
    c.spawn(0);
    c.wait_for(
        "the lone voter to say it waits",
        Duration::from_secs(30),
        || c.log(0).contains("waiting for a majority").then_some(()),
    );
    let addr: std::net::SocketAddr = c.bootstrap(0).parse().unwrap();
    assert!(
        std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err(),
        "a lone voter must not serve as a one-node cluster"
    );
    let status = c.terminate(0);
    assert!(status.success(), "{status}");
}

#[test]
fn a_misconfigured_voter_list_stops_start_up_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (
            &["controller.quorum.voters=1@127.0.0.1"],
            "controller.quorum.voters",
        ),
        (
            &["controller.quorum.voters=x@127.0.0.1:19091"],
            "controller.quorum.voters",
        ),
        (
            &[
                "controller.quorum.voters=2@127.0.0.1:19092,3@127.0.0.1:19093",
                "controller.listener.names=CONTROLLER",
                "listeners=PLAINTEXT://127.0.0.1:0,CONTROLLER://127.0.0.1:19091",
            ],
            "controller.quorum.voters",
        ),
        (
            &["controller.quorum.voters=1@127.0.0.1:19091,2@127.0.0.1:19092,3@127.0.0.1:19093"],
            "controller.listener.names",
        ),
    ];
    for (overrides, key) in cases {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_strata"));
        cmd.arg("--override")
            .arg(format!("log.dirs={}", dir.path().display()));
        for o in *overrides {
            cmd.arg("--override").arg(o);
        }
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{overrides:?}: {stderr}");
        assert!(
            stderr.contains(key),
            "{overrides:?} should name {key}: {stderr}"
        );
    }
}

/// Concatenated segment files of `topic`-`partition` on node `i` (every `.log` file in
/// offset order): replicas must end up byte for byte identical.
fn segment_bytes(c: &Cluster, i: usize, topic: &str, partition: i32) -> Vec<u8> {
    let dir = c.specs[i].data.join(format!("{topic}-{partition}"));
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "log"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
        .iter()
        .flat_map(|f| std::fs::read(f).unwrap_or_default())
        .collect()
}

async fn create_with(c: &Cluster, name: &str, partitions: i32, rf: i32, configs: &[(&str, &str)]) {
    let admin = common::admin(&c.bootstrap_all());
    let mut t = NewTopic::new(name, partitions, TopicReplication::Fixed(rf));
    for (k, v) in configs {
        t = t.set(k, v);
    }
    admin
        .create_topics(&[t], &common::admin_opts())
        .await
        .expect("create_topics")
        .remove(0)
        .expect("created");
}

fn values(got: &[common::Got]) -> Vec<u64> {
    got.iter()
        .map(|g| {
            String::from_utf8(g.value.clone().unwrap())
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_records_survive_kill9_of_the_leader_and_replicas_converge() {
    use rdkafka::producer::FutureRecord;
    let mut c = Cluster::start(3, &[]);
    create_with(&c, "durable", 1, 3, &[("min.insync.replicas", "2")]).await;
    let producer = common::producer(
        &c.bootstrap_all(),
        &[
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("message.timeout.ms", "60000"),
            ("retry.backoff.ms", "100"),
        ],
    );
    let leader = c.wait_for("a leader", Duration::from_secs(10), || {
        partitions(&c, 0, "durable").map(|p| p[&0].0)
    });
    let total = 50_000u64;
    let mut acked = Vec::new();
    let mut killed_at = None;
    let mut first_ack_after_kill = None;
    for chunk in 0..(total / 1000) {
        let mut pending = Vec::new();
        for i in chunk * 1000..(chunk + 1) * 1000 {
            let value = i.to_string();
            let f = producer
                .send_result(FutureRecord::<(), String>::to("durable").payload(&value))
                .map_err(|(e, _)| e)
                .expect("enqueue");
            pending.push((i, f));
        }
        if chunk == 15 {
            c.kill9(c.index_of(leader));
            killed_at = Some(Instant::now());
        }
        for (i, f) in pending {
            if let Ok(Ok(_)) = f.await {
                acked.push(i);
                if killed_at.is_some() && first_ack_after_kill.is_none() && chunk > 15 {
                    first_ack_after_kill = Some(Instant::now());
                }
            }
        }
    }
    let failover = first_ack_after_kill.unwrap() - killed_at.unwrap();
    assert!(
        failover < Duration::from_secs(10),
        "no acks=all write for {failover:?} after the kill"
    );
    assert_eq!(
        acked.len() as u64,
        total,
        "an idempotent producer retries through the failover"
    );

    // The killed broker comes back, truncates what it had beyond the new leader,
    // catches up and rejoins the ISR; then all three logs are identical.
    let killed = c.index_of(leader);
    c.restart(killed);
    c.wait_for(
        "the old leader back in the ISR",
        Duration::from_secs(60),
        || {
            partitions(&c, 0, "durable")
                .filter(|p| p[&0].3.len() == 3)
                .map(|_| ())
        },
    );
    c.wait_for("identical segment files", Duration::from_secs(30), || {
        let a = segment_bytes(&c, 0, "durable", 0);
        (!a.is_empty()
            && a == segment_bytes(&c, 1, "durable", 0)
            && a == segment_bytes(&c, 2, "durable", 0))
        .then_some(())
    });

    // Every acknowledged record is there exactly once, in order.
    let got = common::consume_all(&c.bootstrap_all(), "durable", 1, Duration::from_secs(60));
    let got = values(&got);
    assert_eq!(got.len(), acked.len(), "no duplicates, no loss");
    assert_eq!(got, acked, "in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_follower_leaves_the_isr_and_acks_all_then_needs_it_back() {
    use rdkafka::producer::FutureRecord;
    let c = Cluster::start(
        3,
        &[
            "replica.lag.time.max.ms=2000",
            "metrics.listener=127.0.0.1:0",
        ],
    );
    create_with(&c, "strict", 1, 3, &[("min.insync.replicas", "3")]).await;
    let (leader, _, replicas, _) = c.wait_for("a leader", Duration::from_secs(10), || {
        partitions(&c, 0, "strict").map(|p| p[&0].clone())
    });
    let follower = *replicas.iter().find(|r| **r != leader).unwrap();
    let producer = common::producer(
        &c.bootstrap_all(),
        &[
            ("acks", "all"),
            ("message.timeout.ms", "5000"),
            ("retries", "0"),
        ],
    );
    let send = |v: &str| {
        producer
            .send_result(FutureRecord::<(), str>::to("strict").payload(v))
            .map_err(|(e, _)| e)
            .unwrap()
    };
    assert!(send("before").await.unwrap().is_ok());

    c.signal(c.index_of(follower), "STOP");
    let frozen = Instant::now();
    c.wait_for(
        "the frozen follower out of the ISR",
        Duration::from_secs(20),
        || {
            partitions(&c, c.index_of(leader), "strict")
                .filter(|p| !p[&0].3.contains(&follower))
                .map(|_| ())
        },
    );
    // replica.lag.time.max.ms is 2 s, and the check runs every 1 s.
    assert!(
        frozen.elapsed() < Duration::from_secs(15),
        "took {:?}",
        frozen.elapsed()
    );
    // The leader's gauges say so, as dashboards and alerts read them.
    let leader_gauges = || scrape_gauges(&c, c.index_of(leader));
    c.wait_for(
        "the leader's gauges counting the partition under-replicated",
        Duration::from_secs(10),
        || {
            let g = leader_gauges();
            (g("kafka_server_replicamanager_underreplicatedpartitions") == Some(1)
                && g("kafka_server_replicamanager_underminisrpartitioncount") == Some(1))
            .then_some(())
        },
    );
    let refused = send("while-frozen").await.unwrap();
    let (err, _) = refused.expect_err("min.insync.replicas=3 with two in sync");
    assert!(
        matches!(
            err,
            rdkafka::error::KafkaError::MessageProduction(RDKafkaErrorCode::NotEnoughReplicas)
                | rdkafka::error::KafkaError::MessageProduction(
                    RDKafkaErrorCode::NotEnoughReplicasAfterAppend
                )
        ),
        "{err:?}"
    );

    c.signal(c.index_of(follower), "CONT");
    c.wait_for(
        "the follower back in the ISR",
        Duration::from_secs(30),
        || {
            partitions(&c, c.index_of(leader), "strict")
                .filter(|p| p[&0].3.len() == 3)
                .map(|_| ())
        },
    );
    let ok = c.wait_for("acks=all accepted again", Duration::from_secs(20), || {
        let r = futures::executor::block_on(send("after"));
        r.unwrap().ok()
    });
    assert!(ok.offset >= 1);
    c.wait_for(
        "the leader's gauges back to fully replicated",
        Duration::from_secs(10),
        || {
            let g = leader_gauges();
            (g("kafka_server_replicamanager_underreplicatedpartitions") == Some(0)
                && g("kafka_server_replicamanager_underminisrpartitioncount") == Some(0))
            .then_some(())
        },
    );
}

/// Node `i`'s `/metrics` text (its address from its log; empty while it has not
/// logged it, or if it did not answer).
fn scrape_text(c: &Cluster, i: usize) -> String {
    use std::io::{Read, Write};
    let log = c.log(i);
    let Some(addr) = log
        .split("metrics endpoint listening addr=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .map(str::to_string)
    else {
        return String::new();
    };
    let mut text = String::new();
    if let Ok(mut s) = std::net::TcpStream::connect(&addr) {
        let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let _ = s.read_to_string(&mut text);
    }
    text
}

/// Node `i`'s `/metrics`, as a lookup of unlabelled gauges.
fn scrape_gauges(c: &Cluster, i: usize) -> impl Fn(&str) -> Option<i64> {
    let text = scrape_text(c, i);
    move |name: &str| {
        text.lines()
            .find(|l| l.split(' ').next() == Some(name))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    }
}

/// The coordinator of `group` as node `i` answers FindCoordinator.
fn coordinator_of(c: &Cluster, i: usize, group: &str) -> Option<i32> {
    use kafka_protocol::messages::{ApiKey, FindCoordinatorRequest, RequestKind, ResponseKind};
    let mut raw = common::RawClient::connect(&c.bootstrap(i));
    let req = FindCoordinatorRequest::default()
        .with_key(kafka_protocol::protocol::StrBytes::from_string(
            group.to_string(),
        ))
        .with_key_type(0);
    match raw.call(
        ApiKey::FindCoordinator,
        3,
        RequestKind::FindCoordinator(req),
    ) {
        ResponseKind::FindCoordinator(r) if r.error_code == 0 => Some(r.node_id.0),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_offsets_survive_the_death_of_their_coordinator() {
    use rdkafka::consumer::{CommitMode, Consumer};
    use rdkafka::{Offset, TopicPartitionList};
    let mut c = Cluster::start(3, &["offsets.topic.num.partitions=3"]);
    create_with(&c, "events", 1, 3, &[]).await;
    // __consumer_offsets is made on first use, with replication factor 3 (the default).
    let coordinator = c.wait_for("a coordinator", Duration::from_secs(30), || {
        coordinator_of(&c, 0, "survivors")
    });
    let offsets_rf = partitions(&c, 0, "__consumer_offsets").expect("offsets topic");
    assert!(offsets_rf
        .values()
        .all(|(_, _, replicas, _)| replicas.len() == 3));

    let consumer = common::consumer(
        &c.bootstrap_all(),
        &[("group.id", "survivors"), ("enable.auto.commit", "false")],
    );
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("events", 0, Offset::Offset(42))
        .unwrap();
    consumer.commit(&tpl, CommitMode::Sync).expect("commit");
    drop(consumer);

    c.kill9(c.index_of(coordinator));
    let survivor = (c.index_of(coordinator) + 1) % 3;
    let moved = c.wait_for("a new coordinator", Duration::from_secs(30), || {
        coordinator_of(&c, survivor, "survivors").filter(|n| *n != coordinator)
    });
    assert_ne!(moved, coordinator);
    let consumer = common::consumer(
        &c.bootstrap(survivor),
        &[("group.id", "survivors"), ("enable.auto.commit", "false")],
    );
    let mut want = TopicPartitionList::new();
    want.add_partition("events", 0);
    let committed = c.wait_for("the committed offset", Duration::from_secs(30), || {
        consumer
            .committed_offsets(want.clone(), Duration::from_secs(5))
            .ok()
            .and_then(|t| t.find_partition("events", 0).map(|p| p.offset()))
            .filter(|o| *o != Offset::Invalid)
    });
    assert_eq!(committed, Offset::Offset(42), "no commit is lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_lag_covers_partitions_led_by_other_brokers() {
    use rdkafka::consumer::{CommitMode, Consumer};
    use rdkafka::producer::FutureRecord;
    use rdkafka::{Offset, TopicPartitionList};
    let c = Cluster::start(
        3,
        &[
            "offsets.topic.num.partitions=1",
            "metrics.listener=127.0.0.1:0",
        ],
    );
    // Replication factor 1: each partition lives on one broker only.
    create_with(&c, "spread", 3, 1, &[]).await;
    let view = c.wait_for("leaders", Duration::from_secs(10), || {
        partitions(&c, 0, "spread").filter(|p| p.values().all(|(l, ..)| *l >= 0))
    });
    let producer = common::producer(&c.bootstrap_all(), &[("acks", "all")]);
    for p in 0..3 {
        for i in 0..10 {
            producer
                .send(
                    FutureRecord::<(), str>::to("spread")
                        .partition(p)
                        .payload(&format!("v{i}")),
                    Duration::from_secs(10),
                )
                .await
                .expect("produced");
        }
    }
    let consumer = common::consumer(
        &c.bootstrap_all(),
        &[
            ("group.id", "spread-readers"),
            ("enable.auto.commit", "false"),
        ],
    );
    let mut at = TopicPartitionList::new();
    for p in 0..3 {
        at.add_partition_offset("spread", p, Offset::Offset(4))
            .unwrap();
    }
    consumer.commit(&at, CommitMode::Sync).expect("commit");
    let coordinator = c.wait_for("a coordinator", Duration::from_secs(30), || {
        coordinator_of(&c, 0, "spread-readers")
    });
    let remote = view.values().filter(|(l, ..)| *l != coordinator).count();
    assert!(
        remote >= 1,
        "some partition must be led elsewhere: {view:?}"
    );
    // The coordinator reports every partition's lag, asking the other leaders.
    let at = c.index_of(coordinator);
    let lag = |text: &str, p: i32| -> Option<f64> {
        let prefix = format!(
            "kafka_consumergroup_lag{{consumergroup=\"spread-readers\",topic=\"spread\",partition=\"{p}\"}} "
        );
        text.lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|v| v.trim().parse().ok())
    };
    c.wait_for(
        "the lag of all three partitions",
        Duration::from_secs(30),
        || {
            let text = scrape_text(&c, at);
            (0..3).all(|p| lag(&text, p) == Some(6.0)).then_some(())
        },
    );
    // More records: the lag follows (later rounds reuse the connections to leaders).
    for p in 0..3 {
        for i in 10..15 {
            producer
                .send(
                    FutureRecord::<(), str>::to("spread")
                        .partition(p)
                        .payload(&format!("v{i}")),
                    Duration::from_secs(10),
                )
                .await
                .expect("produced");
        }
    }
    c.wait_for("the lag to grow", Duration::from_secs(30), || {
        let text = scrape_text(&c, at);
        (0..3).all(|p| lag(&text, p) == Some(11.0)).then_some(())
    });
    // MSK's time lag covers partitions led elsewhere too (estimated from when their
    // leaders' ends passed the committed offset), and grows while the group stands
    // still: a second group (same coordinator: one offsets partition) commits only
    // partitions this coordinator holds no replica of.
    let mut elsewhere = TopicPartitionList::new();
    for (p, (leader, ..)) in &view {
        if *leader != coordinator {
            elsewhere
                .add_partition_offset("spread", *p, Offset::Offset(4))
                .unwrap();
        }
    }
    let remote_reader = common::consumer(
        &c.bootstrap_all(),
        &[
            ("group.id", "spread-remote"),
            ("enable.auto.commit", "false"),
        ],
    );
    remote_reader
        .commit(&elsewhere, CommitMode::Sync)
        .expect("commit");
    let time_lag = |text: &str| -> Option<f64> {
        let prefix = "kafka_consumergroup_max_time_lag_seconds{consumergroup=\"spread-remote\",topic=\"spread\"} ";
        text.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|v| v.trim().parse().ok())
    };
    let first = c.wait_for(
        "a time lag for remote partitions",
        Duration::from_secs(30),
        || time_lag(&scrape_text(&c, at)),
    );
    c.wait_for("the time lag to grow", Duration::from_secs(30), || {
        time_lag(&scrape_text(&c, at))
            .filter(|s| *s >= first + 2.0)
            .map(|_| ())
    });
    // The other brokers do not coordinate the group: no series there.
    for i in (0..3).filter(|i| *i != at) {
        assert!(
            !scrape_text(&c, i).contains("consumergroup=\"spread-readers\""),
            "node {i} reports a group it does not coordinate"
        );
    }
}

/// ElectLeaders (preferred) for every partition of `topic` through node `i`: the
/// error code of each partition.
fn elect_preferred(c: &Cluster, i: usize, topic: &str, partitions: i32) -> Vec<i16> {
    use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
    use kafka_protocol::messages::{
        ApiKey, ElectLeadersRequest, RequestKind, ResponseKind, TopicName,
    };
    let mut raw = common::RawClient::connect(&c.bootstrap(i));
    let req = ElectLeadersRequest::default()
        .with_election_type(0)
        .with_topic_partitions(Some(vec![TopicPartitions::default()
            .with_topic(TopicName(kafka_protocol::protocol::StrBytes::from_string(
                topic.into(),
            )))
            .with_partitions((0..partitions).collect())]))
        .with_timeout_ms(10_000);
    match raw.call(ApiKey::ElectLeaders, 2, RequestKind::ElectLeaders(req)) {
        ResponseKind::ElectLeaders(r) => {
            assert_eq!(r.error_code, 0);
            r.replica_election_results
                .iter()
                .flat_map(|t| t.partition_result.iter().map(|p| p.error_code))
                .collect()
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preferred_leaders_come_back_by_election_and_by_auto_rebalance() {
    for auto in [false, true] {
        let extra: &[&str] = if auto {
            &[
                "auto.leader.rebalance.enable=true",
                "leader.imbalance.check.interval.seconds=1",
            ]
        } else {
            &["auto.leader.rebalance.enable=false"]
        };
        let mut c = Cluster::start(3, extra);
        create_with(&c, "pref", 6, 3, &[]).await;
        let before = c.wait_for("partitions", Duration::from_secs(10), || {
            partitions(&c, 0, "pref").filter(|p| p.len() == 6)
        });
        let victim = 2usize;
        let victim_id = c.specs[victim].id;
        c.kill9(victim);
        c.wait_for(
            "leaders moved off the dead broker",
            Duration::from_secs(20),
            || {
                partitions(&c, 0, "pref")
                    .filter(|p| p.values().all(|(l, _, _, _)| *l != victim_id))
                    .map(|_| ())
            },
        );
        c.restart(victim);
        c.wait_for(
            "the broker back in every ISR",
            Duration::from_secs(30),
            || {
                partitions(&c, 0, "pref")
                    .filter(|p| p.values().all(|(_, _, _, isr)| isr.contains(&victim_id)))
                    .map(|_| ())
            },
        );
        if !auto {
            let led = partitions(&c, 0, "pref").unwrap();
            assert!(
                led.values().all(|(l, _, _, _)| *l != victim_id),
                "no automatic move back"
            );
            let codes = elect_preferred(&c, 0, "pref", 6);
            assert_eq!(codes.len(), 6);
            assert!(codes.iter().all(|c| *c == 0 || *c == 84), "{codes:?}");
        }
        // Every partition is led by its preferred (first) replica again.
        c.wait_for("preferred leaders", Duration::from_secs(20), || {
            partitions(&c, 0, "pref")
                .filter(|p| p.values().all(|(l, _, r, _)| *l == r[0]))
                .map(|_| ())
        });
        let after = partitions(&c, 0, "pref").unwrap();
        for (idx, (l, e, _, _)) in &after {
            assert_eq!(
                *l, before[idx].0,
                "partition {idx} led by its preferred replica"
            );
            if before[idx].0 == victim_id {
                assert!(
                    *e >= before[idx].1 + 2,
                    "two leader changes bump the epoch twice"
                );
            }
        }
        // Nothing left to elect: ELECTION_NOT_NEEDED everywhere.
        assert!(elect_preferred(&c, 1, "pref", 6).iter().all(|c| *c == 84));
    }
}

/// Every `.log` object under `dir` (recursively): the tiered segments.
fn tiered_segments(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(tiered_segments(&p));
        } else if p.extension().is_some_and(|x| x == "log") {
            out.push(p.file_name().unwrap().to_string_lossy().to_string());
        }
    }
    out
}

/// Base offsets of the tiered segments (file names are `<base offset>-<uuid>.log`).
fn tiered_bases(dir: &std::path::Path) -> Vec<i64> {
    let mut bases: Vec<i64> = tiered_segments(dir)
        .iter()
        .filter_map(|n| n.split('-').next()?.parse().ok())
        .collect();
    bases.sort_unstable();
    bases
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiered_topic_keeps_uploading_after_its_leader_dies() {
    use rdkafka::producer::FutureRecord;
    let store = tempfile::tempdir().unwrap();
    let url = format!("object_store.url=file://{}", store.path().display());
    let mut c = Cluster::start(
        3,
        &[
            "remote.log.storage.system.enable=true",
            &url,
            "remote.log.manager.task.interval.ms=100",
            "log.retention.check.interval.ms=100",
        ],
    );
    create_with(
        &c,
        "history",
        1,
        3,
        &[
            ("min.insync.replicas", "2"),
            ("remote.storage.enable", "true"),
            ("segment.bytes", "65536"),
            ("local.retention.bytes", "0"),
        ],
    )
    .await;
    let producer = common::producer(
        &c.bootstrap_all(),
        &[
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("message.timeout.ms", "60000"),
            // Batches well below segment.bytes, so segments roll and tier.
            ("batch.size", "16384"),
        ],
    );
    let payload = |i: usize| format!("{i:08}-{}", "x".repeat(200));
    let send = |range: std::ops::Range<usize>| {
        let producer = &producer;
        async move {
            let futures: Vec<_> = range
                .map(|i| {
                    let value = payload(i);
                    producer
                        .send_result(FutureRecord::<(), String>::to("history").payload(&value))
                        .map_err(|(e, _)| e)
                        .unwrap()
                })
                .collect();
            for f in futures {
                f.await.unwrap().expect("acknowledged");
            }
        }
    };
    send(0..3000).await;
    let first = c.wait_for("segments uploaded", Duration::from_secs(30), || {
        let b = tiered_bases(store.path());
        (b.len() >= 4).then_some(b)
    });
    let leader = partitions(&c, 0, "history").unwrap()[&0].0;
    c.kill9(c.index_of(leader));
    send(3000..6000).await;
    // The new leader continues after the records in the metadata: more segments,
    // and (once it cleaned up whatever the dead one left half done) each offset
    // range in the store once.
    let last_first = *first.last().unwrap();
    c.wait_for(
        "uploads continued without duplicates",
        Duration::from_secs(60),
        || {
            let b = tiered_bases(store.path());
            let mut unique = b.clone();
            unique.dedup();
            (unique.len() == b.len() && b.iter().filter(|x| **x > last_first).count() >= 4)
                .then_some(())
        },
    );
    // History from offset 0 reads back byte-exact, through a surviving broker.
    let survivor = (c.index_of(leader) + 1) % 3;
    let got = common::consume_all(
        &c.bootstrap(survivor),
        "history",
        1,
        Duration::from_secs(60),
    );
    assert_eq!(got.len(), 6000);
    for (i, g) in got.iter().enumerate() {
        assert_eq!(g.offset, i as i64);
        assert_eq!(
            g.value.as_deref(),
            Some(payload(i).as_bytes()),
            "record {i}"
        );
    }
    // The dead leader comes back as a follower of the local tail only.
    c.restart(c.index_of(leader));
    c.wait_for(
        "the old leader back in the ISR",
        Duration::from_secs(60),
        || {
            partitions(&c, survivor, "history")
                .filter(|p| p[&0].3.len() == 3)
                .map(|_| ())
        },
    );
}

/// Produces `value-<n>` records (idempotent, acks=all) until `stop`, returning the
/// numbers that were acknowledged, in send order.
async fn produce_until(
    bootstrap: String,
    topic: &'static str,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Vec<u64> {
    use rdkafka::producer::FutureRecord;
    let producer = common::producer(
        &bootstrap,
        &[
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("message.timeout.ms", "60000"),
        ],
    );
    let mut acked = Vec::new();
    let mut n = 0u64;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let mut pending = Vec::new();
        for _ in 0..100 {
            let value = n.to_string();
            let f = producer
                .send_result(FutureRecord::<(), String>::to(topic).payload(&value))
                .map_err(|(e, _)| e)
                .unwrap();
            pending.push((n, f));
            n += 1;
        }
        for (i, f) in pending {
            if let Ok(Ok(_)) = f.await {
                acked.push(i);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    acked
}

/// Sends one acks=all record straight to node `i` (no client-side re-routing).
fn raw_produce(c: &Cluster, i: usize, topic: &str) -> i16 {
    let mut raw = common::RawClient::connect(&c.bootstrap(i));
    let batch = common::idempotent::batch(-1, -1, -1, 1);
    common::idempotent::produce_to(&mut raw, topic, 0, batch).0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_leader_is_fenced_and_never_acknowledges_again() {
    let c = Cluster::start(3, &[]);
    create_with(&c, "split", 1, 3, &[("min.insync.replicas", "2")]).await;
    let old = c.wait_for("a leader", Duration::from_secs(10), || {
        partitions(&c, 0, "split").map(|p| p[&0].0)
    });
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let producing = tokio::spawn(produce_until(c.bootstrap_all(), "split", stop.clone()));
    tokio::time::sleep(Duration::from_secs(1)).await;

    let frozen = c.index_of(old);
    let other = (frozen + 1) % 3;
    c.signal(frozen, "STOP");
    let new = c.wait_for("a new leader", Duration::from_secs(20), || {
        partitions(&c, other, "split")
            .map(|p| p[&0].0)
            .filter(|l| *l != old && *l >= 0)
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    c.signal(frozen, "CONT");
    // The old leader wakes up: whatever it believes for a moment, an acks=all write
    // sent straight to it is never acknowledged.
    let answer = raw_produce(&c, frozen, "split");
    assert_ne!(
        answer, 0,
        "the fenced leader acknowledged an acks=all write"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acked = producing.await.unwrap();
    assert!(acked.len() > 100);

    // Every acknowledged record is in the final log exactly once, in order; the woken
    // broker truncated what it wrote alone and converged to the new leader's log.
    c.wait_for(
        "the old leader back in the ISR",
        Duration::from_secs(60),
        || {
            partitions(&c, other, "split")
                .filter(|p| p[&0].3.len() == 3)
                .map(|_| ())
        },
    );
    c.wait_for("identical segment files", Duration::from_secs(30), || {
        let a = segment_bytes(&c, 0, "split", 0);
        (a == segment_bytes(&c, 1, "split", 0) && a == segment_bytes(&c, 2, "split", 0))
            .then_some(())
    });
    let got = common::consume_all(
        &c.bootstrap(c.index_of(new)),
        "split",
        1,
        Duration::from_secs(60),
    );
    let values: Vec<u64> = got
        .iter()
        .filter_map(|g| String::from_utf8(g.value.clone()?).ok()?.parse().ok())
        .collect();
    let mut seen = std::collections::HashSet::new();
    for v in &values {
        assert!(seen.insert(*v), "record {v} appears twice");
    }
    for a in &acked {
        assert!(seen.contains(a), "acknowledged record {a} is missing");
    }
    let acked_order: Vec<u64> = values
        .iter()
        .copied()
        .filter(|v| acked.contains(v))
        .collect();
    assert_eq!(acked_order, acked, "acknowledged records keep their order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_under_acks_all_loses_nothing() {
    let mut c = Cluster::start(3, &[]);
    create_with(&c, "rolling", 3, 3, &[("min.insync.replicas", "2")]).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let producing = tokio::spawn(produce_until(c.bootstrap_all(), "rolling", stop.clone()));
    tokio::time::sleep(Duration::from_secs(1)).await;
    for i in 0..3 {
        let status = c.terminate(i);
        assert!(status.success(), "{status}");
        c.restart(i);
        let id = c.specs[i].id;
        c.wait_for("the ISR recovered", Duration::from_secs(60), || {
            partitions(&c, (i + 1) % 3, "rolling")
                .filter(|p| p.values().all(|(_, _, _, isr)| isr.contains(&id)))
                .map(|_| ())
        });
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acked = producing.await.unwrap();
    let sent = acked.last().copied().unwrap_or(0) + 1;
    assert_eq!(
        acked.len() as u64,
        sent,
        "zero delivery errors through the rolling restart"
    );
    let got = common::consume_all(&c.bootstrap_all(), "rolling", 3, Duration::from_secs(60));
    let mut values: Vec<u64> = got
        .iter()
        .filter_map(|g| String::from_utf8(g.value.clone()?).ok()?.parse().ok())
        .collect();
    values.sort_unstable();
    assert_eq!(values, acked, "every acknowledged record exactly once");
}

/// A raw consumer Fetch v12 (client metadata: `rack`) of partition 0 from offset 0 at
/// node `i`: (error code, preferred read replica, bytes of records).
fn rack_fetch(c: &Cluster, i: usize, topic: &str, rack: &str) -> (i16, i32, usize) {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::{
        ApiKey, BrokerId, FetchRequest, RequestKind, ResponseKind, TopicName,
    };
    use kafka_protocol::protocol::StrBytes;
    let mut raw = common::RawClient::connect(&c.bootstrap(i));
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(1 << 20)
        .with_session_epoch(-1)
        .with_rack_id(StrBytes::from_string(rack.to_string()))
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_current_leader_epoch(-1)
                .with_fetch_offset(0)
                .with_log_start_offset(-1)
                .with_partition_max_bytes(1 << 20)])]);
    match raw.call(ApiKey::Fetch, 12, RequestKind::Fetch(req)) {
        ResponseKind::Fetch(r) => {
            let p = &r.responses[0].partitions[0];
            (
                p.error_code,
                p.preferred_read_replica.0,
                p.records.as_ref().map_or(0, |b| b.len()),
            )
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_read_from_a_replica_in_their_rack() {
    use rdkafka::producer::FutureRecord;
    let c = Cluster::start(
        3,
        &["replica.selector.class=org.apache.kafka.common.replica.RackAwareReplicaSelector"],
    );
    create_with(&c, "nearby", 1, 3, &[]).await;
    let producer = common::producer(&c.bootstrap_all(), &[("acks", "all")]);
    for i in 0..200 {
        let v = format!("v{i}");
        producer
            .send(
                FutureRecord::<(), String>::to("nearby").payload(&v),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
    }
    let (leader, _, replicas, _) = partitions(&c, 0, "nearby").unwrap()[&0].clone();
    let follower = *replicas.iter().find(|r| **r != leader).unwrap();
    let rack = format!("az-{follower}");
    // The leader points a consumer from the follower's rack at that follower ...
    let (err, preferred, bytes) = rack_fetch(&c, c.index_of(leader), "nearby", &rack);
    assert_eq!((err, preferred, bytes), (0, follower, 0));
    // ... and sends one from its own rack nowhere else.
    let (err, preferred, bytes) =
        rack_fetch(&c, c.index_of(leader), "nearby", &format!("az-{leader}"));
    assert_eq!((err, preferred), (0, -1));
    assert!(bytes > 0);
    // The follower serves consumer fetches (up to its high watermark).
    let got = c.wait_for(
        "the follower serving reads",
        Duration::from_secs(10),
        || {
            let (err, _, bytes) = rack_fetch(&c, c.index_of(follower), "nearby", &rack);
            (err == 0 && bytes > 0).then_some(bytes)
        },
    );
    assert!(got > 0);
    // librdkafka with client.rack follows the preference and reads everything.
    let consumer = common::consumer(&c.bootstrap_all(), &[("client.rack", rack.as_str())]);
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset("nearby", 0, rdkafka::Offset::Beginning)
        .unwrap();
    rdkafka::consumer::Consumer::assign(&consumer, &tpl).unwrap();
    let mut n = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while n < 200 && Instant::now() < deadline {
        if let Some(Ok(_)) = consumer.poll(Duration::from_millis(200)) {
            n += 1;
        }
    }
    assert_eq!(n, 200);
}

/// AlterPartitionReassignments of partition 0 of `topic` to `replicas` through node
/// `i`: the partition's error code.
fn reassign(c: &Cluster, i: usize, topic: &str, replicas: &[i32]) -> i16 {
    reassign_v(c, i, topic, replicas, None)
}

/// As [`reassign`]; `Some(allow)` sends v1 with `allow_replication_factor_change`.
fn reassign_v(
    c: &Cluster,
    i: usize,
    topic: &str,
    replicas: &[i32],
    allow_rf_change: Option<bool>,
) -> i16 {
    use kafka_protocol::messages::alter_partition_reassignments_request::{
        ReassignablePartition, ReassignableTopic,
    };
    use kafka_protocol::messages::{
        AlterPartitionReassignmentsRequest, ApiKey, BrokerId, RequestKind, ResponseKind, TopicName,
    };
    let mut raw = common::RawClient::connect(&c.bootstrap(i));
    let req = AlterPartitionReassignmentsRequest::default()
        .with_timeout_ms(10_000)
        .with_allow_replication_factor_change(allow_rf_change.unwrap_or(true))
        .with_topics(vec![ReassignableTopic::default()
            .with_name(TopicName(kafka_protocol::protocol::StrBytes::from_string(
                topic.into(),
            )))
            .with_partitions(vec![ReassignablePartition::default()
                .with_partition_index(0)
                .with_replicas(Some(
                    replicas.iter().map(|b| BrokerId(*b)).collect(),
                ))])]);
    match raw.call(
        ApiKey::AlterPartitionReassignments,
        if allow_rf_change.is_some() { 1 } else { 0 },
        RequestKind::AlterPartitionReassignments(req),
    ) {
        ResponseKind::AlterPartitionReassignments(r) => {
            assert_eq!(r.error_code, 0);
            r.responses[0].partitions[0].error_code
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reassignment_moves_replicas_under_load_and_raises_the_replication_factor() {
    let c = Cluster::start(3, &[]);
    let admin = common::admin(&c.bootstrap_all());
    admin
        .create_topics(
            &[
                NewTopic::new("moving", 1, TopicReplication::Variable(&[&[1, 2]])),
                NewTopic::new("growing", 1, TopicReplication::Variable(&[&[1]])),
            ],
            &common::admin_opts(),
        )
        .await
        .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let producing = tokio::spawn(produce_until(c.bootstrap_all(), "moving", stop.clone()));
    tokio::time::sleep(Duration::from_secs(1)).await;

    // [1,2] -> [2,3] while producing: 3 catches up, then 1 leaves.
    assert_eq!(reassign(&c, 0, "moving", &[2, 3]), 0);
    c.wait_for("the reassignment done", Duration::from_secs(60), || {
        partitions(&c, 1, "moving")
            .filter(|p| p[&0].2 == vec![2, 3] && p[&0].3.len() == 2 && p[&0].0 != 1)
            .map(|_| ())
    });
    // Node 1 dropped its copy.
    c.wait_for(
        "the old replica's data removed",
        Duration::from_secs(20),
        || (!c.specs[0].data.join("moving-0").exists()).then_some(()),
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acked = producing.await.unwrap();
    assert_eq!(
        acked.len() as u64,
        acked.last().unwrap() + 1,
        "no delivery errors"
    );
    c.wait_for("identical replicas", Duration::from_secs(30), || {
        let a = segment_bytes(&c, 1, "moving", 0);
        (!a.is_empty() && a == segment_bytes(&c, 2, "moving", 0)).then_some(())
    });
    let got = common::consume_all(&c.bootstrap_all(), "moving", 1, Duration::from_secs(60));
    let got = values(&got);
    assert_eq!(got, acked, "everything acknowledged, once, in order");

    // Raising the replication factor: [1] -> [1,2,3]. KIP-860: refused when the
    // request (v1) does not allow a replication factor change.
    assert_eq!(
        reassign_v(&c, 0, "growing", &[1, 2, 3], Some(false)),
        38,
        "INVALID_REPLICATION_FACTOR"
    );
    assert_eq!(
        partitions(&c, 0, "growing").unwrap()[&0].2,
        vec![1],
        "nothing moved"
    );
    assert_eq!(reassign_v(&c, 0, "growing", &[1, 2, 3], Some(true)), 0);
    c.wait_for("three in-sync replicas", Duration::from_secs(60), || {
        partitions(&c, 2, "growing")
            .filter(|p| p[&0].2 == vec![1, 2, 3] && p[&0].3.len() == 3)
            .map(|_| ())
    });
    // Invalid targets are refused.
    assert_eq!(
        reassign(&c, 0, "growing", &[1, 1]),
        39,
        "INVALID_REPLICA_ASSIGNMENT"
    );
    assert_eq!(
        reassign(&c, 0, "growing", &[7]),
        39,
        "INVALID_REPLICA_ASSIGNMENT"
    );

    // A reassignment that cannot finish (its new replica is frozen) is listed, and
    // cancelling it restores the replicas it started from (Kafka's revert: the
    // replica list without the ones being added).
    c.signal(0, "STOP");
    assert_eq!(reassign(&c, 1, "moving", &[3, 1]), 0);
    let listed = list_reassignments(&c, 1);
    assert_eq!(
        listed,
        vec![("moving".to_string(), 0, vec![3, 1, 2], vec![1], vec![2])]
    );
    assert_eq!(cancel_reassignment(&c, 1, "moving"), 0);
    assert!(list_reassignments(&c, 1).is_empty());
    let (_, _, replicas, isr) = partitions(&c, 1, "moving").unwrap()[&0].clone();
    assert_eq!(replicas, vec![3, 2]);
    assert!(!isr.contains(&1));
    assert_eq!(
        cancel_reassignment(&c, 1, "moving"),
        85,
        "NO_REASSIGNMENT_IN_PROGRESS"
    );
    c.signal(0, "CONT");
}

/// A reassignment in progress: (topic, partition, replicas, adding, removing).
type Ongoing = (String, i32, Vec<i32>, Vec<i32>, Vec<i32>);

/// ListPartitionReassignments through node `i`: every reassignment in progress.
fn list_reassignments(c: &Cluster, i: usize) -> Vec<Ongoing> {
    use kafka_protocol::messages::{
        ApiKey, ListPartitionReassignmentsRequest, RequestKind, ResponseKind,
    };
    let mut raw = common::RawClient::connect(&c.bootstrap(i));
    let req = ListPartitionReassignmentsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(None);
    let ids = |v: &[kafka_protocol::messages::BrokerId]| v.iter().map(|b| b.0).collect::<Vec<_>>();
    match raw.call(
        ApiKey::ListPartitionReassignments,
        0,
        RequestKind::ListPartitionReassignments(req),
    ) {
        ResponseKind::ListPartitionReassignments(r) => r
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions.iter().map(|p| {
                    (
                        t.name.0.to_string(),
                        p.partition_index,
                        ids(&p.replicas),
                        ids(&p.adding_replicas),
                        ids(&p.removing_replicas),
                    )
                })
            })
            .collect(),
        other => panic!("unexpected {other:?}"),
    }
}

/// Cancels the reassignment of partition 0 of `topic` (null replicas) through node `i`.
fn cancel_reassignment(c: &Cluster, i: usize, topic: &str) -> i16 {
    use kafka_protocol::messages::alter_partition_reassignments_request::{
        ReassignablePartition, ReassignableTopic,
    };
    use kafka_protocol::messages::{
        AlterPartitionReassignmentsRequest, ApiKey, RequestKind, ResponseKind, TopicName,
    };
    let mut raw = common::RawClient::connect(&c.bootstrap(i));
    let req = AlterPartitionReassignmentsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![ReassignableTopic::default()
            .with_name(TopicName(kafka_protocol::protocol::StrBytes::from_string(
                topic.into(),
            )))
            .with_partitions(vec![ReassignablePartition::default()
                .with_partition_index(0)
                .with_replicas(None)])]);
    match raw.call(
        ApiKey::AlterPartitionReassignments,
        0,
        RequestKind::AlterPartitionReassignments(req),
    ) {
        ResponseKind::AlterPartitionReassignments(r) => r.responses[0].partitions[0].error_code,
        other => panic!("unexpected {other:?}"),
    }
}

/// ElectLeaders (UNCLEAN) for partition 0 of `topic` through node `i`.
fn elect_unclean(c: &Cluster, i: usize, topic: &str) -> i16 {
    use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
    use kafka_protocol::messages::{
        ApiKey, ElectLeadersRequest, RequestKind, ResponseKind, TopicName,
    };
    let mut raw = common::RawClient::connect(&c.bootstrap(i));
    let req = ElectLeadersRequest::default()
        .with_election_type(1)
        .with_topic_partitions(Some(vec![TopicPartitions::default()
            .with_topic(TopicName(kafka_protocol::protocol::StrBytes::from_string(
                topic.into(),
            )))
            .with_partitions(vec![0])]))
        .with_timeout_ms(10_000);
    match raw.call(ApiKey::ElectLeaders, 2, RequestKind::ElectLeaders(req)) {
        ResponseKind::ElectLeaders(r) => {
            r.replica_election_results[0].partition_result[0].error_code
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_isr_member_down_the_partition_waits_offline_for_one_to_return() {
    use rdkafka::producer::FutureRecord;
    // Five voters, so the quorum survives two dead brokers.
    let mut c = Cluster::start(5, &["replica.lag.time.max.ms=2000"]);
    let admin = common::admin(&c.bootstrap_all());
    admin
        .create_topics(
            &[
                NewTopic::new("careful", 1, TopicReplication::Variable(&[&[1, 2, 3]])),
                NewTopic::new("reckless", 1, TopicReplication::Variable(&[&[1, 2, 3]])),
                NewTopic::new("lenient", 1, TopicReplication::Variable(&[&[1, 2, 3]])),
            ],
            &common::admin_opts(),
        )
        .await
        .unwrap();
    // Node 3 falls out of sync.
    c.signal(2, "STOP");
    for topic in ["careful", "reckless", "lenient"] {
        c.wait_for("node 3 out of the ISR", Duration::from_secs(20), || {
            partitions(&c, 0, topic)
                .filter(|p| p[&0].3 == vec![1, 2])
                .map(|_| ())
        });
    }
    let producer = common::producer(&c.bootstrap(3), &[("acks", "all")]);
    for topic in ["careful", "reckless", "lenient"] {
        for i in 0..100 {
            let v = format!("v{i}");
            producer
                .send(
                    FutureRecord::<(), String>::to(topic).payload(&v),
                    Duration::from_secs(10),
                )
                .await
                .unwrap();
        }
    }
    // Every ISR member dies; the out-of-sync replica is alive.
    c.kill9(0);
    c.kill9(1);
    c.signal(2, "CONT");
    for topic in ["careful", "reckless", "lenient"] {
        c.wait_for("the partition offline", Duration::from_secs(20), || {
            partitions(&c, 3, topic)
                .filter(|p| p[&0].0 == -1)
                .map(|_| ())
        });
    }
    // Unclean election off: it stays offline although node 3 is up and unfenced.
    c.wait_for("node 3 live", Duration::from_secs(20), || {
        live_brokers(&c, 3).contains(&3).then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    let careful = partitions(&c, 3, "careful").unwrap();
    assert_eq!(careful[&0].0, -1, "never a leader from outside the ISR");

    // An explicit unclean election takes the out-of-sync replica (losing what it
    // missed, as Kafka warns).
    assert_eq!(elect_unclean(&c, 3, "reckless"), 0);
    let reckless = partitions(&c, 3, "reckless").unwrap();
    assert_eq!((reckless[&0].0, reckless[&0].3.clone()), (3, vec![3]));
    // So does turning unclean.leader.election.enable on for a topic.
    let alter =
        rdkafka::admin::AlterConfig::new(rdkafka::admin::ResourceSpecifier::Topic("lenient"))
            .set("unclean.leader.election.enable", "true");
    common::admin(&c.bootstrap(3))
        .alter_configs(&[alter], &common::admin_opts())
        .await
        .unwrap()
        .remove(0)
        .unwrap();
    c.wait_for("the unclean leader", Duration::from_secs(20), || {
        partitions(&c, 3, "lenient")
            .filter(|p| p[&0].0 == 3)
            .map(|_| ())
    });

    // The last ISR member (whichever of 1 and 2 was fenced second) returns: the
    // careful partition is back with nothing lost.
    let last = careful[&0].3.clone();
    assert_eq!(last.len(), 1, "the last ISR member is kept: {last:?}");
    assert!(last[0] == 1 || last[0] == 2);
    c.restart(c.index_of(last[0]));
    c.wait_for(
        "the ISR member leading again",
        Duration::from_secs(30),
        || {
            partitions(&c, 3, "careful")
                .filter(|p| p[&0].0 == last[0])
                .map(|_| ())
        },
    );
    let got = common::consume_all(&c.bootstrap(3), "careful", 1, Duration::from_secs(30));
    assert_eq!(
        values_of(&got),
        (0..100).map(|i| format!("v{i}")).collect::<Vec<_>>()
    );
}

fn values_of(got: &[common::Got]) -> Vec<String> {
    got.iter()
        .map(|g| String::from_utf8(g.value.clone().unwrap()).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_killed_under_load_catches_up_identically() {
    let mut c = Cluster::start(3, &[]);
    create_with(&c, "steady", 1, 3, &[("min.insync.replicas", "2")]).await;
    let (leader, _, replicas, _) = c.wait_for("a leader", Duration::from_secs(10), || {
        partitions(&c, 0, "steady").map(|p| p[&0].clone())
    });
    let follower = *replicas.iter().find(|r| **r != leader).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let producing = tokio::spawn(produce_until(c.bootstrap_all(), "steady", stop.clone()));
    tokio::time::sleep(Duration::from_secs(1)).await;
    c.kill9(c.index_of(follower));
    tokio::time::sleep(Duration::from_secs(1)).await;
    c.restart(c.index_of(follower));
    c.wait_for(
        "the follower back in the ISR",
        Duration::from_secs(60),
        || {
            partitions(&c, c.index_of(leader), "steady")
                .filter(|p| p[&0].3.contains(&follower))
                .map(|_| ())
        },
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acked = producing.await.unwrap();
    assert_eq!(
        acked.len() as u64,
        acked.last().unwrap() + 1,
        "no delivery errors"
    );
    c.wait_for("identical segment files", Duration::from_secs(30), || {
        let a = segment_bytes(&c, 0, "steady", 0);
        (a == segment_bytes(&c, 1, "steady", 0) && a == segment_bytes(&c, 2, "steady", 0))
            .then_some(())
    });
    let got = common::consume_all(&c.bootstrap_all(), "steady", 1, Duration::from_secs(60));
    assert_eq!(values(&got), acked);
}

/// The ids DescribeQuorum (through node `i`) reports as voters and as observers.
fn quorum_members(c: &Cluster, i: usize) -> (BTreeSet<i32>, BTreeSet<i32>) {
    let q = c.describe_quorum(i);
    let p = &q.topics[0].partitions[0];
    (
        p.current_voters.iter().map(|v| v.replica_id.0).collect(),
        p.observers.iter().map(|v| v.replica_id.0).collect(),
    )
}

/// Kafka's dedicated-controller layout: three controller-only voters (1-3) and three
/// broker-only nodes (4-6) that fetch the metadata as observers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedicated_controllers_serve_broker_only_nodes_through_a_controller_failover() {
    use common::cluster::Role;
    use rdkafka::producer::FutureRecord;
    let roles = [
        Role::Controller,
        Role::Controller,
        Role::Controller,
        Role::Broker,
        Role::Broker,
        Role::Broker,
    ];
    let mut c = Cluster::start_roles(&roles, &["metrics.listener=127.0.0.1:0"]);
    let b = 3; // the first broker-only node

    // Only the brokers are brokers; the quorum is the three controllers, and the
    // brokers fetch its metadata as observers.
    c.wait_for("three live brokers", Duration::from_secs(30), || {
        (live_brokers(&c, b) == BTreeSet::from([4, 5, 6])).then_some(())
    });
    let (voters, observers) = c.wait_for("the observers", Duration::from_secs(30), || {
        let (v, o) = quorum_members(&c, b);
        (o == BTreeSet::from([4, 5, 6])).then_some((v, o))
    });
    assert_eq!(voters, BTreeSet::from([1, 2, 3]), "observers {observers:?}");
    let (leader, epoch) = c.quorum_leader(b).expect("a quorum leader");
    assert!(
        (1..=3).contains(&leader),
        "a controller leads, not {leader}"
    );
    // Dedicated controllers serve /metrics too: the active one counts itself, so the
    // sum over all six nodes is one, and it sees the three brokers.
    let active_sum = |c: &Cluster| -> i64 {
        (0..6)
            .map(|i| {
                scrape_gauges(c, i)("kafka_controller_kafkacontroller_activecontrollercount")
                    .unwrap_or(0)
            })
            .sum()
    };
    c.wait_for(
        "one active controller on /metrics",
        Duration::from_secs(30),
        || {
            let g = scrape_gauges(&c, c.index_of(leader));
            (active_sum(&c) == 1
                && g("kafka_controller_kafkacontroller_activecontrollercount") == Some(1)
                && g("kafka_brokers") == Some(3))
            .then_some(())
        },
    );
    let md = c.metadata(b + 1);
    assert!(
        (4..=6).contains(&md.controller_id.0),
        "clients are given a live broker as controller, as KRaft brokers do: {}",
        md.controller_id.0
    );
    // No controller serves the Kafka API or holds partitions.
    for i in 0..3 {
        let addr: std::net::SocketAddr = format!("127.0.0.1:{}", c.specs[i].port).parse().unwrap();
        assert!(std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err());
    }

    create_with(&c, "observed", 3, 3, &[("min.insync.replicas", "2")]).await;
    let producer = common::producer(
        &c.bootstrap_all(),
        &[
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("message.timeout.ms", "60000"),
        ],
    );
    let send = |from: u64, to: u64| {
        let producer = producer.clone();
        async move {
            let mut pending = Vec::new();
            for i in from..to {
                let value = i.to_string();
                let key = (i % 3).to_string();
                pending.push(
                    producer
                        .send_result(FutureRecord::to("observed").payload(&value).key(&key))
                        .map_err(|(e, _)| e)
                        .expect("enqueue"),
                );
            }
            for f in pending {
                f.await.expect("delivery").expect("acknowledged");
            }
        }
    };
    send(0, 1000).await;
    let parts = partitions(&c, b, "observed").unwrap();
    for (leader, _, replicas, isr) in parts.values() {
        assert!((4..=6).contains(leader));
        assert_eq!(replicas.len(), 3);
        assert_eq!(isr.len(), 3);
    }
    for i in 0..3 {
        assert!(
            !c.specs[i].data.join("observed-0").exists(),
            "a controller holds no partition"
        );
    }

    // The active controller dies: another controller leads within 10 s; the brokers
    // follow it (creating a topic and producing still work).
    let started = Instant::now();
    c.kill9(c.index_of(leader));
    let survivor = b + 2;
    let (new_leader, new_epoch) = c.wait_for("a new controller", Duration::from_secs(10), || {
        c.quorum_leader(survivor).filter(|(l, _)| *l != leader)
    });
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!((1..=3).contains(&new_leader) && new_epoch > epoch);
    c.wait_for(
        "the new controller on /metrics",
        Duration::from_secs(30),
        || {
            let g = scrape_gauges(&c, c.index_of(new_leader));
            (active_sum(&c) == 1
                && g("kafka_controller_kafkacontroller_activecontrollercount") == Some(1))
            .then_some(())
        },
    );
    create_with(&c, "after-failover", 2, 3, &[]).await;
    for i in b..b + 3 {
        c.wait_for(
            "the new topic on every broker",
            Duration::from_secs(20),
            || partitions(&c, i, "after-failover").map(|_| ()),
        );
    }
    send(1000, 2000).await;

    // A broker-only node is killed: its partitions fail over; restarted, it fetches
    // the metadata anew, catches up and rejoins every ISR.
    let victim = parts[&0].0;
    let survivor = (b..b + 3).find(|i| c.specs[*i].id != victim).unwrap();
    c.kill9(c.index_of(victim));
    c.wait_for("the dead broker fenced", Duration::from_secs(20), || {
        let p = partitions(&c, survivor, "observed")?;
        p.values()
            .all(|(l, _, _, isr)| *l != victim && !isr.contains(&victim))
            .then_some(())
    });
    send(2000, 3000).await;
    c.restart(c.index_of(victim));
    c.wait_for("every ISR whole again", Duration::from_secs(60), || {
        let p = partitions(&c, survivor, "observed")?;
        p.values()
            .all(|(_, _, _, isr)| isr.len() == 3)
            .then_some(())
    });
    let got = common::consume_all(&c.bootstrap_all(), "observed", 3, Duration::from_secs(60));
    let mut got = values(&got);
    got.sort_unstable();
    assert_eq!(
        got,
        (0..3000).collect::<Vec<u64>>(),
        "every acknowledged record, once"
    );
    // The controller that died comes back as a voter of the same quorum.
    c.restart(c.index_of(leader));
    c.wait_for("three voters caught up", Duration::from_secs(30), || {
        let q = c.describe_quorum(b);
        let p = &q.topics[0].partitions[0];
        let ends: Vec<i64> = p.current_voters.iter().map(|v| v.log_end_offset).collect();
        (ends.len() == 3 && ends.iter().all(|e| *e > 0 && *e == ends[0])).then_some(())
    });
}

/// The smallest base offset of the local segment files of `topic`-0 on node `i`.
fn first_local_base(c: &Cluster, i: usize, topic: &str) -> Option<i64> {
    std::fs::read_dir(c.specs[i].data.join(format!("{topic}-0")))
        .ok()?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            name.strip_suffix(".log")?.parse::<i64>().ok()
        })
        .min()
}

/// KIP-405's remote log aux state: a follower that falls behind a tiered leader's
/// local log restarts after the tiered range with the producer state uploaded there,
/// so once it leads, a retry of a batch from the tiered range is still a duplicate
/// and a gap in sequences is still refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_restarted_after_the_tier_keeps_idempotent_producer_state() {
    use common::idempotent::{batch, init_producer_id, produce};
    use rdkafka::producer::FutureRecord;
    let store = tempfile::tempdir().unwrap();
    let url = format!("object_store.url=file://{}", store.path().display());
    let c = Cluster::start(
        3,
        &[
            "remote.log.storage.system.enable=true",
            &url,
            "remote.log.manager.task.interval.ms=100",
            "log.retention.check.interval.ms=100",
        ],
    );
    // Node 3 is the preferred leader; it is frozen so that another node leads.
    let admin = common::admin(&c.bootstrap(0));
    let topic = NewTopic::new("dedup", 1, TopicReplication::Variable(&[&[3, 1, 2]]))
        .set("remote.storage.enable", "true")
        .set("segment.bytes", "16384")
        .set("local.retention.bytes", "0")
        .set("min.insync.replicas", "1");
    admin
        .create_topics(&[topic], &common::admin_opts())
        .await
        .unwrap()
        .remove(0)
        .unwrap();
    c.wait_for("node 3 leads", Duration::from_secs(20), || {
        partitions(&c, 0, "dedup")
            .filter(|p| p[&0].0 == 3)
            .map(|_| ())
    });
    c.signal(2, "STOP");
    let leader = c.wait_for("another leader", Duration::from_secs(30), || {
        partitions(&c, 0, "dedup")
            .map(|p| p[&0].0)
            .filter(|l| *l != 3 && *l > 0)
    });
    let mut raw = common::RawClient::connect(&c.bootstrap(c.index_of(leader)));
    let pid = init_producer_id(&mut raw);
    let mut last = (0, 0);
    for k in 0..5 {
        let (code, base) = produce(&mut raw, "dedup", batch(pid, 0, k * 10, 10));
        assert_eq!(code, 0);
        last = (k * 10, base);
    }
    // Other data rolls the producer's batches into tiered segments, and local
    // retention then deletes them on the leader.
    // Batches well below segment.bytes, so segments roll and tier.
    let filler = common::producer(
        &c.bootstrap(c.index_of(leader)),
        &[("acks", "all"), ("batch.size", "8192")],
    );
    let value = "f".repeat(200);
    let pending: Vec<_> = (0..2000)
        .map(|_| {
            filler
                .send_result(FutureRecord::<(), String>::to("dedup").payload(&value))
                .map_err(|(e, _)| e)
                .unwrap()
        })
        .collect();
    for f in pending {
        f.await.unwrap().expect("filler acknowledged");
    }
    let last_end = last.1 + 10;
    c.wait_for(
        "the producer's batches tiered and gone from the leader's disk",
        Duration::from_secs(60),
        || {
            let tiered_past = tiered_bases(store.path()).iter().any(|b| *b >= last_end);
            let local_start = first_local_base(&c, c.index_of(leader), "dedup")?;
            (tiered_past && local_start > last_end).then_some(())
        },
    );
    c.signal(2, "CONT");
    c.wait_for(
        "node 3 restored the producer state and back in the ISR",
        Duration::from_secs(60),
        || {
            let isr = partitions(&c, 0, "dedup")?[&0].3.clone();
            (isr.contains(&3)
                && c.log(2)
                    .contains("producer state restored from the object store"))
            .then_some(())
        },
    );
    assert_eq!(elect_preferred(&c, 0, "dedup", 1), vec![0]);
    c.wait_for("node 3 leads again", Duration::from_secs(20), || {
        partitions(&c, 0, "dedup")
            .filter(|p| p[&0].0 == 3)
            .map(|_| ())
    });
    let mut raw = common::RawClient::connect(&c.bootstrap(2));
    // Node 3 applies its leadership right after the metadata names it.
    let retried = c.wait_for("node 3 to take produce", Duration::from_secs(20), || {
        let r = produce(&mut raw, "dedup", batch(pid, 0, last.0, 10));
        (r.0 != 6).then_some(r)
    });
    assert_eq!(
        retried,
        (0, last.1),
        "a retry of a batch from the tiered range is still a duplicate"
    );
    assert_eq!(
        produce(&mut raw, "dedup", batch(pid, 0, last.0 + 30, 10)).0,
        45,
        "OUT_OF_ORDER_SEQUENCE_NUMBER: the producer's sequence is known"
    );
    assert_eq!(
        produce(&mut raw, "dedup", batch(pid, 0, last.0 + 10, 10)).0,
        0
    );
}
