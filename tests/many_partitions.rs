//! Many partitions on one broker process under open-file limits (`prlimit`): open files
//! follow activity, not the partition count; the soft limit is raised to the hard one;
//! a restart after kill -9 always works; a topic is created whole or not at all.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

const T: Duration = Duration::from_secs(60);

/// Samples the broker's open descriptors every 20 ms until dropped; `peak` is the
/// largest count seen.
struct FdWatch {
    peak: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FdWatch {
    fn start(pid: u32) -> FdWatch {
        let peak = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (peak, stop) = (peak.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(d) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
                        peak.fetch_max(d.count(), Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        FdWatch {
            peak,
            stop,
            thread: Some(thread),
        }
    }

    fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }
}

impl Drop for FdWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// CreateTopics with time for thousands of partitions (a debug build on a busy disk).
async fn create_wide_topic(bootstrap: &str, name: &str, partitions: i32) {
    let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
        client_config(bootstrap)
            .set("socket.timeout.ms", "300000")
            .create()
            .unwrap();
    let opts = rdkafka::admin::AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(300)))
        .request_timeout(Some(Duration::from_secs(300)));
    let result = admin
        .create_topics(
            &[rdkafka::admin::NewTopic::new(
                name,
                partitions,
                rdkafka::admin::TopicReplication::Fixed(1),
            )],
            &opts,
        )
        .await
        .expect("create_topics");
    for r in result {
        r.expect("topic created");
    }
}

/// One record into each partition of `topic`, value = the partition number.
fn one_record_each(bootstrap: &str, topic: &str, partitions: i32) {
    let p: ThreadedProducer<DefaultProducerContext> = client_config(bootstrap)
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .unwrap();
    for i in 0..partitions {
        let value = i.to_string();
        loop {
            match p.send(BaseRecord::<(), _>::to(topic).partition(i).payload(&value)) {
                Ok(()) => break,
                Err((_, _)) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    }
    p.flush(T).expect("every record delivered");
}

/// Reads every partition of `topic` from the start; the values seen per partition.
fn read_back(bootstrap: &str, topic: &str, partitions: i32) -> Vec<Vec<String>> {
    let c: BaseConsumer = consumer(bootstrap, &[("fetch.wait.max.ms", "50")]);
    let mut tpl = TopicPartitionList::new();
    for i in 0..partitions {
        tpl.add_partition_offset(topic, i, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let mut got: Vec<Vec<String>> = vec![Vec::new(); partitions as usize];
    let mut count = 0;
    let deadline = Instant::now() + Duration::from_secs(180);
    while count < partitions as usize {
        assert!(
            Instant::now() < deadline,
            "read {count} of {partitions} records"
        );
        if let Some(m) = c.poll(Duration::from_millis(200)) {
            let m = match m {
                Ok(m) => m,
                Err(rdkafka::error::KafkaError::PartitionEOF(_)) => continue,
                Err(e) => panic!("fetch: {e}"),
            };
            got[m.partition() as usize]
                .push(String::from_utf8(m.payload().unwrap().to_vec()).unwrap());
            count += 1;
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_partitions_under_a_hard_limit_of_4096_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let limit = (4096, 4096);
    let broker = BrokerProcess::start_limited(&data, free_port(), &[], Some(limit));
    let watch = FdWatch::start(broker.child.id());
    let bootstrap = broker.bootstrap();
    let created = std::time::Instant::now();
    create_wide_topic(&bootstrap, "wide", 10_000).await;
    eprintln!("created 10,000 partitions in {:?}", created.elapsed());
    let b = bootstrap.clone();
    tokio::task::spawn_blocking(move || one_record_each(&b, "wide", 10_000))
        .await
        .unwrap();
    let b = bootstrap.clone();
    let got = tokio::task::spawn_blocking(move || read_back(&b, "wide", 10_000))
        .await
        .unwrap();
    assert!(got.iter().enumerate().all(|(i, v)| v == &[i.to_string()]));
    let peak = watch.peak();
    assert!(
        peak < 3 * 4096 / 4,
        "open files peaked at {peak} of 4096 with 10,000 partitions"
    );
    drop(watch);

    broker.kill9();
    let started = Instant::now();
    let broker = BrokerProcess::start_limited(&data, free_port(), &[], Some(limit));
    let restart = started.elapsed();
    let watch = FdWatch::start(broker.child.id());
    let bootstrap = broker.bootstrap();
    let b = bootstrap.clone();
    let got = tokio::task::spawn_blocking(move || read_back(&b, "wide", 10_000))
        .await
        .unwrap();
    assert!(
        got.iter().enumerate().all(|(i, v)| v == &[i.to_string()]),
        "every record is back after kill -9"
    );
    create_topic(&bootstrap, "after-restart", 3, &[]).await;
    let b = bootstrap.clone();
    tokio::task::spawn_blocking(move || one_record_each(&b, "after-restart", 3))
        .await
        .unwrap();
    let peak = watch.peak();
    assert!(
        peak < 3 * 4096 / 4,
        "open files peaked at {peak} after the restart"
    );
    let log = broker.log();
    assert!(log.contains("after=\"unclean shutdown\""), "{log}");
    eprintln!("restart after kill -9 with 10,000 partitions: {restart:?} until listening");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_soft_limit_is_raised_to_the_hard_limit_and_logged() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start_limited(
        &dir.path().join("data"),
        free_port(),
        &[],
        Some((1024, 8192)),
    );
    assert_eq!(broker.nofile_limit(), (8192, 8192));
    let log = broker.log();
    let line = log
        .lines()
        .find(|l| l.contains("open files limit"))
        .unwrap_or_else(|| panic!("no open-files line:\n{log}"));
    assert!(
        line.contains("soft=8192") && line.contains("raised_from=1024"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_partitions_under_a_hard_limit_of_400_are_whole_or_absent() {
    let dir = tempfile::tempdir().unwrap();
    let broker =
        BrokerProcess::start_limited(&dir.path().join("data"), free_port(), &[], Some((400, 400)));
    let bootstrap = broker.bootstrap();
    let admin = admin(&bootstrap);
    let created = admin
        .create_topics(
            &[rdkafka::admin::NewTopic::new(
                "thousand",
                1000,
                rdkafka::admin::TopicReplication::Fixed(1),
            )],
            &admin_opts(),
        )
        .await
        .unwrap();
    let metadata = {
        let c: BaseConsumer = consumer(&bootstrap, &[]);
        c.fetch_metadata(Some("thousand"), T).unwrap()
    };
    let topic = &metadata.topics()[0];
    match &created[0] {
        Ok(_) => {
            assert_eq!(topic.partitions().len(), 1000);
            let b = bootstrap.clone();
            tokio::task::spawn_blocking(move || one_record_each(&b, "thousand", 1000))
                .await
                .unwrap();
            let b = bootstrap.clone();
            let got = tokio::task::spawn_blocking(move || read_back(&b, "thousand", 1000))
                .await
                .unwrap();
            assert!(got.iter().all(|v| v.len() == 1));
        }
        Err(e) => {
            assert!(
                topic.partitions().is_empty(),
                "refused ({e:?}) but left in Metadata"
            );
        }
    }
    // Either way the broker still serves and accepts new connections.
    create_topic(&bootstrap, "small-after", 1, &[]).await;
    assert!(broker.open_files() < 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_whose_logs_cannot_all_be_made_is_not_created_and_a_retry_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let broker = BrokerProcess::start(&data, free_port(), &[]);
    let bootstrap = broker.bootstrap();
    // Partition 7's directory cannot be made: a plain file holds its name.
    let blocker = data.join("blocked-7");
    std::fs::write(&blocker, b"in the way").unwrap();
    let admin = admin(&bootstrap);
    let new_topic =
        || rdkafka::admin::NewTopic::new("blocked", 12, rdkafka::admin::TopicReplication::Fixed(1));
    let created = admin
        .create_topics(&[new_topic()], &admin_opts())
        .await
        .unwrap();
    let err = created[0].as_ref().expect_err("refused");
    assert_eq!(
        err.1,
        rdkafka::types::RDKafkaErrorCode::KafkaStorageError,
        "{err:?}"
    );
    let metadata = {
        let c: BaseConsumer = consumer(&bootstrap, &[("allow.auto.create.topics", "false")]);
        c.fetch_metadata(None, T).unwrap()
    };
    assert!(
        metadata.topics().iter().all(|t| t.name() != "blocked"),
        "a refused topic is not in Metadata"
    );
    assert!(
        (0..12).all(|p| p == 7 || !data.join(format!("blocked-{p}")).is_dir()),
        "no partition directory is left behind"
    );
    // With room again, the same request succeeds and every partition takes writes.
    std::fs::remove_file(&blocker).unwrap();
    let created = admin
        .create_topics(&[new_topic()], &admin_opts())
        .await
        .unwrap();
    created[0].as_ref().expect("created on retry");
    let b = bootstrap.clone();
    tokio::task::spawn_blocking(move || one_record_each(&b, "blocked", 12))
        .await
        .unwrap();
    let b = bootstrap.clone();
    let got = tokio::task::spawn_blocking(move || read_back(&b, "blocked", 12))
        .await
        .unwrap();
    assert!(got.iter().all(|v| v.len() == 1));
}

/// Out of descriptors anyway (client connections took them all): the append that
/// needed a file fails with KAFKA_STORAGE_ERROR naming the cause, nothing written is
/// lost, and once descriptors are free again the same partition takes writes and the
/// listener accepts new clients.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_descriptors_is_an_error_for_that_request_not_an_outage() {
    use common::idempotent::{batch, produce_to};
    let dir = tempfile::tempdir().unwrap();
    let limit = 100;
    let broker = BrokerProcess::start_limited(
        &dir.path().join("data"),
        free_port(),
        &[],
        Some((limit, limit)),
    );
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "edge", 2, &[]).await;
    let mut raw = RawClient::connect(&bootstrap);
    assert_eq!(produce_to(&mut raw, "edge", 0, batch(-1, -1, -1, 3)).0, 0);

    // Connections until every descriptor the process may have is taken.
    let mut flood = Vec::new();
    let deadline = Instant::now() + T;
    while broker.open_files_below(limit) < limit as usize {
        assert!(Instant::now() < deadline, "could not exhaust descriptors");
        for _ in 0..10 {
            if let Ok(s) = std::net::TcpStream::connect(("127.0.0.1", broker.port)) {
                flood.push(s);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Partition 1's segment file is not open: appending to it needs a descriptor.
    let (code, _, message) = produce_to(&mut raw, "edge", 1, batch(-1, -1, -1, 2));
    assert_eq!(code, 56, "KAFKA_STORAGE_ERROR: {message:?}");
    let message = message.unwrap_or_default();
    assert!(message.contains("too many open files"), "{message}");

    // Descriptors come back: the same partition takes writes, new clients connect, and
    // everything acknowledged is there.
    drop(flood);
    let deadline = Instant::now() + T;
    loop {
        let (code, base, _) = produce_to(&mut raw, "edge", 1, batch(-1, -1, -1, 2));
        if code == 0 {
            assert_eq!(base, 0);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "partition 1 never took writes again ({code})"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let got = consume_all(&bootstrap, "edge", 2, T);
    assert_eq!(got.iter().filter(|g| g.partition == 0).count(), 3);
    assert_eq!(got.iter().filter(|g| g.partition == 1).count(), 2);
}
