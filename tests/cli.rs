//! `strata consumer-groups` against an in-process broker: the built binary lists groups
//! and describes a group's lag while its rdkafka consumer is active and after it left,
//! and fails clearly for a missing group or an unreachable broker.

mod common;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::*;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};

const TOPIC: &str = "cg-lag";
const GROUP: &str = "lagging";
const PER_PARTITION: i64 = 10;
const COMMITTED: [i64; 3] = [5, 7, 9];

/// Runs `strata consumer-groups <args>` off the async runtime (the broker keeps
/// serving on it meanwhile).
async fn strata(args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_strata"))
            .arg("consumer-groups")
            .args(&args)
            .output()
            .expect("run strata")
    })
    .await
    .unwrap()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The data rows of a `--describe` table for `TOPIC`, split into columns, by partition.
fn rows(stdout: &str) -> Vec<Vec<String>> {
    let mut rows: Vec<Vec<String>> = stdout
        .lines()
        .map(|l| l.split_whitespace().map(String::from).collect::<Vec<_>>())
        .filter(|cols| cols.len() >= 2 && cols[0] == GROUP && cols[1] == TOPIC)
        .collect();
    rows.sort_by_key(|cols| cols[2].parse::<i32>().unwrap());
    rows
}

fn assert_lag(stdout: &str, active: bool) {
    assert!(
        stdout.contains(
            "GROUP           TOPIC           PARTITION  CURRENT-OFFSET  LOG-END-OFFSET  LAG"
        ),
        "{stdout}"
    );
    let rows = rows(stdout);
    assert_eq!(rows.len(), 3, "{stdout}");
    for (p, cols) in rows.iter().enumerate() {
        assert_eq!(cols.len(), 9, "{stdout}");
        assert_eq!(cols[2], p.to_string());
        assert_eq!(
            cols[3],
            COMMITTED[p].to_string(),
            "CURRENT-OFFSET: {stdout}"
        );
        assert_eq!(
            cols[4],
            PER_PARTITION.to_string(),
            "LOG-END-OFFSET: {stdout}"
        );
        assert_eq!(
            cols[5],
            (PER_PARTITION - COMMITTED[p]).to_string(),
            "LAG: {stdout}"
        );
        if active {
            assert!(cols[6].starts_with("lag-client-"), "CONSUMER-ID: {stdout}");
            assert!(cols[7].starts_with('/'), "HOST: {stdout}");
            assert_eq!(cols[8], "lag-client", "CLIENT-ID: {stdout}");
        } else {
            assert_eq!(&cols[6..], ["-", "-", "-"], "{stdout}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_groups_describes_lag_lists_groups_and_reports_missing_ones() {
    let b = TestBroker::start_with(&["group.initial.rebalance.delay.ms=0"]).await;
    let bs = b.bootstrap.clone();
    create_topic(&bs, TOPIC, 3, &[]).await;
    let p = producer(&bs, &[]);
    let mut sends = Vec::new();
    for part in 0..3 {
        for i in 0..PER_PARTITION {
            let v = format!("v-{part}-{i}");
            sends.push(
                p.send_result(FutureRecord::<(), _>::to(TOPIC).payload(&v).partition(part))
                    .unwrap(),
            );
        }
    }
    for s in sends {
        s.await.unwrap().unwrap();
    }

    // A member of "lagging" that owns all three partitions and commits 5, 7, 9.
    let mut config: ClientConfig = client_config(&bs);
    config
        .set("group.id", GROUP)
        .set("client.id", "lag-client")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "200");
    let consumer: BaseConsumer = config.create().unwrap();
    consumer.subscribe(&[TOPIC]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while consumer.assignment().unwrap().count() < 3 {
        assert!(Instant::now() < deadline, "no assignment");
        let _ = consumer.poll(Duration::from_millis(100));
    }
    let mut tpl = TopicPartitionList::new();
    for (p, o) in COMMITTED.iter().enumerate() {
        tpl.add_partition_offset(TOPIC, p as i32, Offset::Offset(*o))
            .unwrap();
    }
    consumer.commit(&tpl, CommitMode::Sync).unwrap();

    let out = strata(&["--bootstrap-server", &bs, "--describe", "--group", GROUP]).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    assert!(!stderr.contains("no active members"), "{stderr}");
    assert_lag(&stdout, true);

    let out = strata(&[
        "--bootstrap-server",
        &bs,
        "--describe",
        "--group",
        GROUP,
        "--members",
    ])
    .await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("#PARTITIONS"), "{stdout}");
    let member = stdout.lines().find(|l| l.starts_with(GROUP)).unwrap();
    assert!(
        member.contains("lag-client") && member.ends_with(" 3"),
        "{stdout}"
    );

    let out = strata(&[
        "--bootstrap-server",
        &bs,
        "--describe",
        "--group",
        GROUP,
        "--state",
    ])
    .await;
    let (stdout, _) = text(&out);
    assert!(out.status.success());
    let state = stdout.lines().find(|l| l.starts_with(GROUP)).unwrap();
    let cols: Vec<&str> = state.split_whitespace().collect();
    assert_eq!(cols[1], bs, "{stdout}");
    assert_eq!(&cols[3..], ["range", "Stable", "1"], "{stdout}");

    // The consumer leaves: the group is Empty and keeps its offsets.
    drop(consumer);
    let deadline = Instant::now() + Duration::from_secs(20);
    let (stdout, stderr) = loop {
        let out = strata(&["--bootstrap-server", &bs, "--describe", "--group", GROUP]).await;
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{stderr}");
        if stderr.contains("Consumer group 'lagging' has no active members.") {
            break (stdout, stderr);
        }
        assert!(
            Instant::now() < deadline,
            "consumer never left: {stdout}{stderr}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_lag(&stdout, false);
    assert!(
        !stdout.contains("no active members"),
        "notice goes to stderr: {stderr}"
    );

    let out = strata(&["--bootstrap-server", &bs, "--list"]).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.lines().any(|l| l == GROUP), "{stdout}");

    let out = strata(&["--bootstrap-server", &bs, "--list", "--state"]).await;
    let (stdout, _) = text(&out);
    let line = stdout.lines().find(|l| l.starts_with(GROUP)).unwrap();
    assert_eq!(
        line.split_whitespace().collect::<Vec<_>>(),
        [GROUP, "Empty"]
    );

    let out = strata(&[
        "--bootstrap-server",
        &bs,
        "--describe",
        "--group",
        "no-such-group",
    ])
    .await;
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stderr.contains("Error: Consumer group 'no-such-group' does not exist."),
        "{stderr}"
    );

    // Asking for both: the existing group is still described, the exit code says one failed.
    let out = strata(&[
        "--bootstrap-server",
        &bs,
        "--describe",
        "--group",
        "no-such-group",
        "--group",
        GROUP,
    ])
    .await;
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("'no-such-group' does not exist"),
        "{stderr}"
    );
    assert_eq!(rows(&stdout).len(), 3, "{stdout}");

    let out = strata(&["--bootstrap-server", &bs, "--describe", "--all-groups"]).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_lag(&stdout, false);

    b.stop().await;
}

#[tokio::test]
async fn consumer_groups_fails_clearly_when_the_broker_is_unreachable() {
    let addr = format!("127.0.0.1:{}", free_port());
    let out = strata(&["--bootstrap-server", &addr, "--list", "--timeout", "2000"]).await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("Error: cannot connect to broker {addr}")),
        "{stderr}"
    );

    // --describe needs a group.
    let out = strata(&["--bootstrap-server", &addr, "--describe"]).await;
    assert_eq!(out.status.code(), Some(2));
}
