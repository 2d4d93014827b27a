//! `/metrics` under the names Kafka dashboards query: the replica manager's and the
//! controller's gauges (Strimzi JMX exporter names), computed at each scrape.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::TestBroker;

fn scrape(b: &TestBroker) -> String {
    let addr = b.running.as_ref().and_then(|r| r.metrics_addr).unwrap();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// The value of an unlabelled gauge, or None when it is not exported.
fn gauge(text: &str, name: &str) -> Option<i64> {
    text.lines()
        .find(|l| l.split(' ').next() == Some(name))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_manager_and_controller_gauges_count_partitions() {
    let b = TestBroker::start_with(&["metrics.listener=127.0.0.1:0"]).await;
    let before = scrape(&b);
    assert!(
        before.contains("# TYPE kafka_server_replicamanager_partitioncount gauge"),
        "{before}"
    );
    assert_eq!(
        gauge(
            &before,
            "kafka_controller_kafkacontroller_activecontrollercount"
        ),
        Some(1),
        "a single node is the active controller"
    );
    let partitions_before = gauge(&before, "kafka_server_replicamanager_partitioncount").unwrap();
    common::create_topic(&b.bootstrap, "gauged", 3, &[]).await;
    // min.insync.replicas above the replica count: each partition is under min ISR.
    common::create_topic(&b.bootstrap, "short", 2, &[("min.insync.replicas", "2")]).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let text = loop {
        let text = scrape(&b);
        if gauge(&text, "kafka_server_replicamanager_partitioncount") == Some(partitions_before + 5)
        {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "partition count never rose by 5:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let count = |name| gauge(&text, name).unwrap_or_else(|| panic!("{name} missing"));
    assert_eq!(
        count("kafka_server_replicamanager_leadercount"),
        partitions_before + 5
    );
    assert_eq!(
        count("kafka_server_replicamanager_underreplicatedpartitions"),
        0
    );
    assert_eq!(
        count("kafka_server_replicamanager_underminisrpartitioncount"),
        2
    );
    assert_eq!(count("kafka_server_replicamanager_offlinereplicacount"), 0);
    assert_eq!(
        count("kafka_controller_kafkacontroller_offlinepartitionscount"),
        0
    );
    assert!(count("kafka_controller_kafkacontroller_globaltopiccount") >= 2);
    assert_eq!(
        count("kafka_controller_kafkacontroller_globalpartitioncount"),
        partitions_before + 5
    );

    // Per partition: kafka-exporter's offsets and the log size, by topic and partition.
    let producer = common::producer(&b.bootstrap, &[]);
    for i in 0..10 {
        producer
            .send(
                rdkafka::producer::FutureRecord::<(), str>::to("gauged")
                    .partition(1)
                    .payload(&format!("v{i}")),
                Duration::from_secs(10),
            )
            .await
            .expect("produced");
    }
    let labelled = |text: &str, name: &str, partition: i32| -> Option<i64> {
        let prefix = format!("{name}{{topic=\"gauged\",partition=\"{partition}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|v| v.trim().parse().ok())
    };
    let text = scrape(&b);
    assert_eq!(
        labelled(&text, "kafka_topic_partition_current_offset", 1),
        Some(10),
        "{text}"
    );
    assert_eq!(
        labelled(&text, "kafka_topic_partition_current_offset", 0),
        Some(0)
    );
    assert_eq!(
        labelled(&text, "kafka_topic_partition_oldest_offset", 1),
        Some(0)
    );
    assert!(labelled(&text, "kafka_log_log_size", 1).unwrap() > 0);
    assert_eq!(labelled(&text, "kafka_log_log_size", 0), Some(0));
    b.stop().await;
}
