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

/// The value of the series `name{labels}` (labels as the exposition writes them).
fn series(text: &str, name: &str, labels: &str) -> Option<f64> {
    let prefix = if labels.is_empty() {
        format!("{name} ")
    } else {
        format!("{name}{{{labels}}} ")
    };
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|v| v.trim().parse().ok())
}

/// Scrapes until `ready` holds for the exposition, or fails after 30 s.
async fn scrape_until(b: &TestBroker, what: &str, ready: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = scrape(b);
        if ready(&text) {
            return text;
        }
        assert!(Instant::now() < deadline, "{what} never held:\n{text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_request_and_group_metrics_follow_a_real_clients_load() {
    use rdkafka::consumer::{CommitMode, Consumer};
    use rdkafka::producer::FutureRecord;
    use rdkafka::{Message, Offset, TopicPartitionList};

    let b = TestBroker::start_with(&["metrics.listener=127.0.0.1:0"]).await;
    common::create_topic(&b.bootstrap, "loaded", 1, &[]).await;
    const RECORDS: usize = 200;
    const VALUE: usize = 4096;
    let producer = common::producer(&b.bootstrap, &[("linger.ms", "5")]);
    let value = vec![b'x'; VALUE];
    let keys: Vec<String> = (0..RECORDS).map(|i| format!("k{i}")).collect();
    let sends: Vec<_> = keys
        .iter()
        .map(|key| {
            // Enqueued at once (not one by one), so they go in batches as usual.
            let record = FutureRecord::to("loaded").key(key).payload(&value);
            producer.send_result(record).expect("enqueued")
        })
        .collect();
    for s in sends {
        s.await.expect("delivered").expect("produced");
    }
    let topic = "topic=\"loaded\"";
    let text = scrape(&b);
    let bytes_in = series(
        &text,
        "kafka_server_brokertopicmetrics_bytesin_total",
        topic,
    )
    .unwrap();
    let log_size = series(
        &text,
        "kafka_log_log_size",
        "topic=\"loaded\",partition=\"0\"",
    )
    .unwrap();
    // Counted exactly: the batch bytes appended are the log's bytes.
    assert_eq!(bytes_in, log_size, "{text}");
    let produced = (RECORDS * VALUE) as f64;
    assert!(
        (bytes_in - produced).abs() / produced < 0.01,
        "bytes in {bytes_in} not within 1% of the {produced} bytes produced"
    );
    assert_eq!(
        series(
            &text,
            "kafka_server_brokertopicmetrics_messagesin_total",
            topic
        ),
        Some(RECORDS as f64)
    );
    let produce_requests = series(
        &text,
        "kafka_server_brokertopicmetrics_totalproducerequests_total",
        topic,
    )
    .unwrap();
    assert!(produce_requests >= 1.0);
    // The topic-less totals include this topic.
    assert!(
        series(&text, "kafka_server_brokertopicmetrics_bytesin_total", "").unwrap() >= bytes_in
    );
    assert!(
        series(
            &text,
            "kafka_network_requestmetrics_requests_total",
            "request=\"Produce\",version=\"9\""
        )
        .or_else(|| series(
            &text,
            "kafka_network_requestmetrics_requests_total",
            "request=\"Produce\",version=\"10\""
        ))
        .or_else(|| series(
            &text,
            "kafka_network_requestmetrics_requests_total",
            "request=\"Produce\",version=\"11\""
        ))
        .is_some_and(|n| n >= produce_requests),
        "{text}"
    );
    assert!(series(
        &text,
        "kafka_network_requestmetrics_totaltimems_count",
        "request=\"Produce\""
    )
    .is_some_and(|n| n >= produce_requests));
    let idle = series(
        &text,
        "kafka_server_kafkarequesthandlerpool_requesthandleravgidlepercent",
        "",
    )
    .unwrap();
    assert!((0.0..=1.0).contains(&idle), "{idle}");

    // A consumer in a group reads 50 records and commits there.
    let consumer = common::consumer(
        &b.bootstrap,
        &[
            ("group.id", "lagging"),
            ("enable.auto.commit", "false"),
            ("auto.offset.reset", "earliest"),
        ],
    );
    consumer.subscribe(&["loaded"]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = 0;
    while seen < 50 {
        assert!(Instant::now() < deadline, "consumed only {seen}");
        // (Errors here are end-of-partition notices.)
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            assert_eq!(m.offset(), seen as i64);
            seen += 1;
        }
    }
    let mut at = TopicPartitionList::new();
    at.add_partition_offset("loaded", 0, Offset::Offset(50))
        .unwrap();
    consumer.commit(&at, CommitMode::Sync).expect("committed");
    // What the admin API says: the committed offset and the high watermark.
    let committed = consumer
        .committed(Duration::from_secs(10))
        .unwrap()
        .find_partition("loaded", 0)
        .unwrap()
        .offset();
    let (_, high) = consumer
        .fetch_watermarks("loaded", 0, Duration::from_secs(10))
        .unwrap();
    assert_eq!((committed, high), (Offset::Offset(50), RECORDS as i64));
    let group = "consumergroup=\"lagging\"";
    let text = scrape_until(&b, "the group's lag", |t| {
        series(t, "kafka_consumergroup_members", group) == Some(1.0)
            && series(
                t,
                "kafka_consumergroup_lag",
                &format!("{group},{topic},partition=\"0\""),
            )
            .is_some()
    })
    .await;
    let lag = series(
        &text,
        "kafka_consumergroup_lag",
        &format!("{group},{topic},partition=\"0\""),
    )
    .unwrap();
    assert_eq!(lag, (high - 50) as f64, "{text}");
    assert_eq!(
        series(
            &text,
            "kafka_consumergroup_current_offset",
            &format!("{group},{topic},partition=\"0\"")
        ),
        Some(50.0)
    );
    for name in [
        "kafka_consumergroup_lag_sum",
        "kafka_consumergroup_sum_offset_lag",
        "kafka_consumergroup_max_offset_lag",
    ] {
        assert_eq!(
            series(&text, name, &format!("{group},{topic}")),
            Some(lag),
            "{name}"
        );
    }
    let age = series(
        &text,
        "kafka_consumergroup_max_time_lag_seconds",
        &format!("{group},{topic}"),
    )
    .unwrap();
    assert!((0.0..3600.0).contains(&age), "time lag {age}");
    let bytes_out = series(
        &text,
        "kafka_server_brokertopicmetrics_bytesout_total",
        topic,
    )
    .unwrap();
    assert!(bytes_out > 0.0, "{text}");
    assert!(series(
        &text,
        "kafka_network_requestmetrics_totaltimems_count",
        "request=\"FetchConsumer\""
    )
    .is_some_and(|n| n >= 1.0));
    // Kafka's phases of a request's time: the consumer's long polls, caught up, wait
    // on new data (remote time), and for each API the phases add up to the total.
    let text = scrape_until(&b, "a long-polled fetch's remote time", |t| {
        series(
            t,
            "kafka_network_requestmetrics_remotetimems_sum",
            "request=\"FetchConsumer\"",
        )
        .is_some_and(|ms| ms >= 1.0)
    })
    .await;
    for request in ["Produce", "FetchConsumer", "Metadata"] {
        let labels = format!("request=\"{request}\"");
        let sum = |phase: &str| {
            series(
                &text,
                &format!("kafka_network_requestmetrics_{phase}_sum"),
                &labels,
            )
            .unwrap_or_else(|| panic!("no {phase} for {request}:\n{text}"))
        };
        let total = sum("totaltimems");
        let parts = sum("requestqueuetimems")
            + sum("localtimems")
            + sum("remotetimems")
            + sum("responsesendtimems");
        let count = series(
            &text,
            "kafka_network_requestmetrics_totaltimems_count",
            &labels,
        )
        .unwrap();
        // Each phase is summed in whole microseconds.
        assert!(
            (total - parts).abs() <= count * 0.004 + 0.001,
            "{request}: total {total} ms, phases {parts} ms"
        );
        assert!(total > 0.0, "{request}");
    }
    drop(consumer);

    // acks=all on a topic under min.insync.replicas: the refusals count as failed.
    common::create_topic(&b.bootstrap, "refusing", 1, &[("min.insync.replicas", "2")]).await;
    let strict = common::producer(
        &b.bootstrap,
        &[
            ("acks", "all"),
            ("message.timeout.ms", "3000"),
            ("retries", "0"),
        ],
    );
    let refused = strict
        .send(
            FutureRecord::<(), str>::to("refusing").payload("v"),
            Duration::from_secs(10),
        )
        .await;
    assert!(refused.is_err(), "acks=all under min ISR must fail");
    let text = scrape(&b);
    assert!(
        series(
            &text,
            "kafka_server_brokertopicmetrics_failedproducerequests_total",
            "topic=\"refusing\""
        )
        .is_some_and(|n| n >= 1.0),
        "{text}"
    );

    // A deleted topic's series go.
    let admin = common::admin(&b.bootstrap);
    admin
        .delete_topics(&["loaded"], &common::admin_opts())
        .await
        .unwrap();
    scrape_until(&b, "the deleted topic's series to go", |t| {
        !t.lines()
            .any(|l| l.starts_with("kafka_server_brokertopicmetrics_") && l.contains(topic))
    })
    .await;
    // The totals keep what it counted.
    let text = scrape(&b);
    assert!(
        series(&text, "kafka_server_brokertopicmetrics_bytesin_total", "").unwrap() >= bytes_in
    );
    b.stop().await;
}
