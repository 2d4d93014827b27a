//! Topic and config administration through librdkafka's admin client, plus raw
//! requests for APIs it does not expose (IncrementalAlterConfigs, DeleteTopics by id,
//! DescribeTopicPartitions, DescribeCluster).

mod common;

use std::time::Duration;

use common::*;
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_topic_partitions_request::TopicRequest;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{
    ApiKey, DeleteTopicsRequest, DescribeClusterRequest, DescribeTopicPartitionsRequest,
    IncrementalAlterConfigsRequest, MetadataRequest, RequestKind, ResponseKind, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::{
    AlterConfig, ConfigSource, NewPartitions, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::consumer::Consumer;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::FutureRecord;

const T: Duration = Duration::from_secs(20);

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_describe_alter_and_delete_topics() {
    let b = TestBroker::start_with(&["log.retention.hours=48"]).await;
    let admin = admin(&b.bootstrap);
    let opts = admin_opts();

    // Create with configs; duplicates, bad names, bad configs and bad counts fail cleanly.
    let good = NewTopic::new("orders", 3, TopicReplication::Fixed(1))
        .set("retention.ms", "3600000")
        .set("cleanup.policy", "compact");
    let res = admin.create_topics(&[good], &opts).await.unwrap();
    assert!(res[0].is_ok(), "{res:?}");
    let res = admin
        .create_topics(
            &[
                NewTopic::new("orders", 1, TopicReplication::Fixed(1)),
                NewTopic::new("bad name!", 1, TopicReplication::Fixed(1)),
                NewTopic::new("badcfg", 1, TopicReplication::Fixed(1)).set("retention.ms", "soon"),
                NewTopic::new("unknowncfg", 1, TopicReplication::Fixed(1))
                    .set("no.such.config", "1"),
                NewTopic::new("zero", 0, TopicReplication::Fixed(1)),
                NewTopic::new("rf3", 1, TopicReplication::Fixed(3)),
                NewTopic::new("localbad", 1, TopicReplication::Fixed(1))
                    .set("retention.ms", "1000")
                    .set("local.retention.ms", "5000"),
            ],
            &opts,
        )
        .await
        .unwrap();
    let codes: Vec<_> = res
        .iter()
        .map(|r| r.as_ref().err().map(|(_, c)| *c))
        .collect();
    assert_eq!(
        codes,
        vec![
            Some(RDKafkaErrorCode::TopicAlreadyExists),
            Some(RDKafkaErrorCode::InvalidTopic),
            Some(RDKafkaErrorCode::InvalidConfig),
            Some(RDKafkaErrorCode::InvalidConfig),
            Some(RDKafkaErrorCode::InvalidPartitions),
            Some(RDKafkaErrorCode::InvalidReplicationFactor),
            Some(RDKafkaErrorCode::InvalidConfig),
        ]
    );
    // validate_only creates nothing.
    let res = admin
        .create_topics(
            &[NewTopic::new("dry", 2, TopicReplication::Fixed(1))],
            &admin_opts().validate_only(true),
        )
        .await
        .unwrap();
    assert!(res[0].is_ok());
    let md = admin.inner().fetch_metadata(None, T).unwrap();
    let names: Vec<&str> = md.topics().iter().map(|t| t.name()).collect();
    assert!(
        names.contains(&"orders") && !names.contains(&"dry") && !names.contains(&"badcfg"),
        "{names:?}"
    );
    let orders = md.topics().iter().find(|t| t.name() == "orders").unwrap();
    assert_eq!(orders.partitions().len(), 3);

    // DescribeConfigs: explicit topic values, broker-derived defaults with sources.
    let described = admin
        .describe_configs(&[ResourceSpecifier::Topic("orders")], &opts)
        .await
        .unwrap();
    let resource = described[0].as_ref().unwrap();
    let entries = resource.entry_map();
    assert_eq!(entries["retention.ms"].value.as_deref(), Some("3600000"));
    assert_eq!(entries["retention.ms"].source, ConfigSource::DynamicTopic);
    assert_eq!(entries["cleanup.policy"].value.as_deref(), Some("compact"));
    assert_eq!(
        entries["max.message.bytes"].value.as_deref(),
        Some("1048588")
    );
    assert!(entries["max.message.bytes"].is_default);
    assert_eq!(
        entries["segment.bytes"].value.as_deref(),
        Some("1073741824")
    );
    for key in [
        "min.insync.replicas",
        "message.timestamp.type",
        "compression.type",
        "remote.storage.enable",
        "local.retention.ms",
        "segment.ms",
    ] {
        assert!(entries.contains_key(key), "{key} described");
    }
    let described = admin
        .describe_configs(
            &[ResourceSpecifier::Topic("other-topic-created-later")],
            &opts,
        )
        .await
        .unwrap();
    // The rdkafka crate drops per-resource errors; the error code is checked with a raw request below.
    assert!(
        described[0].as_ref().map_or(true, |r| r.entries.is_empty()),
        "{described:?}"
    );
    let mut raw = RawClient::connect(&b.bootstrap);
    let ResponseKind::DescribeConfigs(d) = raw.call(
        ApiKey::DescribeConfigs,
        4,
        RequestKind::DescribeConfigs(kafka_protocol::messages::DescribeConfigsRequest::default().with_include_synonyms(true).with_resources(vec![
            kafka_protocol::messages::describe_configs_request::DescribeConfigsResource::default().with_resource_type(2).with_resource_name(s("nope")),
            kafka_protocol::messages::describe_configs_request::DescribeConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s("orders"))
                .with_configuration_keys(Some(vec![s("retention.ms")])),
        ])),
    ) else {
        panic!()
    };
    assert_eq!(d.results[0].error_code, 3, "UNKNOWN_TOPIC_OR_PARTITION");
    let retention = &d.results[1].configs;
    assert_eq!(retention.len(), 1, "only the requested key");
    let synonyms: Vec<(&str, i8)> = retention[0]
        .synonyms
        .iter()
        .map(|x| (x.name.as_str(), x.source))
        .collect();
    assert_eq!(
        synonyms,
        vec![("retention.ms", 1), ("log.retention.hours", 4)],
        "topic value, then the static broker synonym"
    );
    assert_eq!(retention[0].config_type, 5, "LONG");
    // A topic without its own retention.ms inherits the broker's log.retention.hours.
    admin
        .create_topics(
            &[NewTopic::new("plain", 1, TopicReplication::Fixed(1))],
            &opts,
        )
        .await
        .unwrap();
    let described = admin
        .describe_configs(&[ResourceSpecifier::Topic("plain")], &opts)
        .await
        .unwrap();
    let resource = described[0].as_ref().unwrap();
    let e = resource.get("retention.ms").unwrap();
    assert_eq!(e.value.as_deref(), Some("172800000"));
    assert_eq!(e.source, ConfigSource::StaticBroker);
    let described = admin
        .describe_configs(&[ResourceSpecifier::Broker(1)], &opts)
        .await
        .unwrap();
    let resource = described[0].as_ref().unwrap();
    assert_eq!(
        resource
            .get("log.retention.hours")
            .unwrap()
            .value
            .as_deref(),
        Some("48")
    );
    assert_eq!(
        resource.get("log.retention.hours").unwrap().source,
        ConfigSource::StaticBroker
    );
    assert_eq!(
        resource.get("num.partitions").unwrap().value.as_deref(),
        Some("1")
    );
    assert_eq!(
        resource.get("num.partitions").unwrap().source,
        ConfigSource::Default
    );

    // AlterConfigs replaces the topic's set; values are validated.
    let alter = AlterConfig::new(ResourceSpecifier::Topic("orders"))
        .set("retention.ms", "7200000")
        .set("max.message.bytes", "5000");
    let res = admin.alter_configs(&[alter], &opts).await.unwrap();
    assert!(res[0].is_ok(), "{res:?}");
    let described = admin
        .describe_configs(&[ResourceSpecifier::Topic("orders")], &opts)
        .await
        .unwrap();
    let resource = described[0].as_ref().unwrap();
    assert_eq!(
        resource.get("retention.ms").unwrap().value.as_deref(),
        Some("7200000")
    );
    assert_eq!(
        resource.get("max.message.bytes").unwrap().value.as_deref(),
        Some("5000")
    );
    assert_eq!(
        resource.get("cleanup.policy").unwrap().value.as_deref(),
        Some("delete"),
        "AlterConfigs replaced the whole set"
    );
    let bad = AlterConfig::new(ResourceSpecifier::Topic("orders")).set("segment.bytes", "-1");
    // The rdkafka crate drops per-resource errors here too: check the refusal's effect.
    admin.alter_configs(&[bad], &opts).await.unwrap();
    let described = admin
        .describe_configs(&[ResourceSpecifier::Topic("orders")], &opts)
        .await
        .unwrap();
    let resource = described[0].as_ref().unwrap();
    assert_eq!(
        resource.get("segment.bytes").unwrap().value.as_deref(),
        Some("1073741824"),
        "invalid value refused"
    );
    assert_eq!(
        resource.get("max.message.bytes").unwrap().value.as_deref(),
        Some("5000"),
        "refused change left the rest alone"
    );
    // The new max.message.bytes is enforced at once.
    let p = producer(&b.bootstrap, &[]);
    let err = p
        .send(
            FutureRecord::<(), _>::to("orders")
                .payload(&"q".repeat(8000))
                .partition(0),
            T,
        )
        .await;
    assert!(
        err.is_err(),
        "8000-byte record over the altered 5000-byte limit"
    );

    // CreatePartitions: increase only.
    let res = admin
        .create_partitions(&[NewPartitions::new("orders", 5)], &opts)
        .await
        .unwrap();
    assert!(res[0].is_ok(), "{res:?}");
    let res = admin
        .create_partitions(&[NewPartitions::new("orders", 2)], &opts)
        .await
        .unwrap();
    assert_eq!(
        res[0].as_ref().unwrap_err().1,
        RDKafkaErrorCode::InvalidPartitions
    );
    let md = admin.inner().fetch_metadata(Some("orders"), T).unwrap();
    assert_eq!(md.topics()[0].partitions().len(), 5);
    let p = producer(&b.bootstrap, &[]);
    p.send(
        FutureRecord::<(), _>::to("orders")
            .payload("p4")
            .partition(4),
        T,
    )
    .await
    .expect("new partition writable");

    // Everything survives a restart.
    let b = b.restart(&["log.retention.hours=48"]).await;
    let admin = common::admin(&b.bootstrap);
    let described = admin
        .describe_configs(&[ResourceSpecifier::Topic("orders")], &opts)
        .await
        .unwrap();
    assert_eq!(
        described[0]
            .as_ref()
            .unwrap()
            .get("retention.ms")
            .unwrap()
            .value
            .as_deref(),
        Some("7200000")
    );
    let md = admin.inner().fetch_metadata(Some("orders"), T).unwrap();
    assert_eq!(md.topics()[0].partitions().len(), 5);

    // DeleteTopics.
    let res = admin
        .delete_topics(&["orders", "never-existed"], &opts)
        .await
        .unwrap();
    assert!(res[0].is_ok());
    assert_eq!(
        res[1].as_ref().unwrap_err().1,
        RDKafkaErrorCode::UnknownTopicOrPartition
    );
    let md = admin.inner().fetch_metadata(None, T).unwrap();
    assert!(!md.topics().iter().any(|t| t.name() == "orders"));
    assert!(
        !b.log_dir().join("orders-0").exists(),
        "deleted topic's data is removed"
    );
    // The name can be reused, starting empty.
    create_topic(&b.bootstrap, "orders", 1, &[]).await;
    let c = consumer(&b.bootstrap, &[]);
    assert_eq!(c.fetch_watermarks("orders", 0, T).unwrap(), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_auto_creates_topics_only_when_allowed() {
    let b = TestBroker::start_with(&["num.partitions=4"]).await;
    let p = producer(&b.bootstrap, &[]);
    p.send(FutureRecord::<(), _>::to("auto-made").payload("x"), T)
        .await
        .expect("auto-created on first produce");
    let admin = admin(&b.bootstrap);
    let md = admin.inner().fetch_metadata(Some("auto-made"), T).unwrap();
    assert_eq!(
        md.topics()[0].partitions().len(),
        4,
        "num.partitions applies"
    );
    let b = b.restart(&["auto.create.topics.enable=false"]).await;
    let mut raw = RawClient::connect(&b.bootstrap);
    let ResponseKind::Metadata(md) = raw.call(
        ApiKey::Metadata,
        12,
        RequestKind::Metadata(
            MetadataRequest::default()
                .with_allow_auto_topic_creation(true)
                .with_topics(Some(vec![
                    kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                        .with_name(Some(TopicName(s("not-there")))),
                    kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                        .with_name(Some(TopicName(s("auto-made")))),
                ])),
        ),
    ) else {
        panic!()
    };
    assert_eq!(
        md.topics[0].error_code, 3,
        "UNKNOWN_TOPIC_OR_PARTITION without auto-creation"
    );
    assert_eq!(md.topics[1].error_code, 0);
    assert_ne!(
        md.topics[1].topic_id,
        uuid::Uuid::nil(),
        "topic ids in v10+"
    );
    assert_eq!(md.topics[1].topic_authorized_operations, i32::MIN);
    assert_eq!(md.brokers.len(), 1);
    assert!(md.cluster_id.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_alter_configs_and_topic_id_apis() {
    let b = TestBroker::start().await;
    create_topic(&b.bootstrap, "inc", 2, &[("retention.ms", "100000")]).await;
    let mut raw = RawClient::connect(&b.bootstrap);
    let alter = |ops: Vec<(&str, i8, Option<&str>)>| {
        RequestKind::IncrementalAlterConfigs(
            IncrementalAlterConfigsRequest::default().with_resources(vec![
                AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s("inc"))
                    .with_configs(
                        ops.into_iter()
                            .map(|(n, op, v)| {
                                AlterableConfig::default()
                                    .with_name(s(n))
                                    .with_config_operation(op)
                                    .with_value(v.map(s))
                            })
                            .collect(),
                    ),
            ]),
        )
    };
    let ResponseKind::IncrementalAlterConfigs(r) = raw.call(
        ApiKey::IncrementalAlterConfigs,
        1,
        alter(vec![
            ("segment.ms", 0, Some("60000")),
            ("cleanup.policy", 2, Some("compact")),
        ]),
    ) else {
        panic!()
    };
    assert_eq!(
        r.responses[0].error_code, 0,
        "{:?}",
        r.responses[0].error_message
    );
    let ResponseKind::IncrementalAlterConfigs(r) = raw.call(
        ApiKey::IncrementalAlterConfigs,
        1,
        alter(vec![("retention.ms", 1, None)]),
    ) else {
        panic!()
    };
    assert_eq!(r.responses[0].error_code, 0);
    let ResponseKind::IncrementalAlterConfigs(r) = raw.call(
        ApiKey::IncrementalAlterConfigs,
        1,
        alter(vec![("retention.ms", 2, Some("5"))]),
    ) else {
        panic!()
    };
    assert_eq!(
        r.responses[0].error_code, 40,
        "APPEND on a non-list config is INVALID_CONFIG"
    );
    let admin = admin(&b.bootstrap);
    let described = admin
        .describe_configs(&[ResourceSpecifier::Topic("inc")], &admin_opts())
        .await
        .unwrap();
    let resource = described[0].as_ref().unwrap();
    assert_eq!(
        resource.get("segment.ms").unwrap().value.as_deref(),
        Some("60000")
    );
    assert_eq!(
        resource.get("cleanup.policy").unwrap().value.as_deref(),
        Some("delete,compact")
    );
    assert_eq!(
        resource.get("retention.ms").unwrap().value.as_deref(),
        Some("604800000"),
        "deleted back to the default"
    );

    // DescribeTopicPartitions with a cursor.
    let ResponseKind::DescribeTopicPartitions(d) = raw.call(
        ApiKey::DescribeTopicPartitions,
        0,
        RequestKind::DescribeTopicPartitions(
            DescribeTopicPartitionsRequest::default()
                .with_topics(vec![TopicRequest::default().with_name(TopicName(s("inc")))])
                .with_response_partition_limit(1),
        ),
    ) else {
        panic!()
    };
    assert_eq!(d.topics[0].partitions.len(), 1);
    assert_eq!(d.next_cursor.as_ref().unwrap().partition_index, 1);
    let topic_id = d.topics[0].topic_id;

    let ResponseKind::DescribeCluster(c) = raw.call(
        ApiKey::DescribeCluster,
        1,
        RequestKind::DescribeCluster(DescribeClusterRequest::default()),
    ) else {
        panic!()
    };
    assert_eq!(c.error_code, 0);
    assert_eq!(c.brokers.len(), 1);
    assert_eq!(c.controller_id.0, 1);

    // DeleteTopics by id (v6).
    let ResponseKind::DeleteTopics(del) = raw.call(
        ApiKey::DeleteTopics,
        6,
        RequestKind::DeleteTopics(DeleteTopicsRequest::default().with_topics(vec![
            DeleteTopicState::default().with_name(None).with_topic_id(topic_id),
            DeleteTopicState::default().with_name(None).with_topic_id(uuid::Uuid::new_v4()),
        ])),
    ) else {
        panic!()
    };
    assert_eq!(del.responses[0].error_code, 0);
    assert_eq!(del.responses[0].name.as_ref().unwrap().0.as_str(), "inc");
    assert_eq!(del.responses[1].error_code, 100, "UNKNOWN_TOPIC_ID");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_listener_advertises_its_own_address() {
    let b = TestBroker::start_with(&[
        "listeners=PLAINTEXT://127.0.0.1:0,INTERNAL://127.0.0.1:0",
        "advertised.listeners=PLAINTEXT://127.0.0.1:0,INTERNAL://localhost:0",
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,INTERNAL:PLAINTEXT",
    ])
    .await;
    let addrs = b.running.as_ref().unwrap().addrs.clone();
    assert_eq!(addrs.len(), 2);
    for (addr, host) in [(addrs[0], "127.0.0.1"), (addrs[1], "localhost")] {
        let mut raw = RawClient::connect(&addr.to_string());
        let ResponseKind::Metadata(md) = raw.call(
            ApiKey::Metadata,
            12,
            RequestKind::Metadata(MetadataRequest::default().with_topics(None)),
        ) else {
            panic!()
        };
        assert_eq!(
            (md.brokers[0].host.as_str(), md.brokers[0].port),
            (host, addr.port() as i32),
            "listener on {addr}"
        );
        let ResponseKind::FindCoordinator(fc) = raw.call(
            ApiKey::FindCoordinator,
            4,
            RequestKind::FindCoordinator(
                kafka_protocol::messages::FindCoordinatorRequest::default()
                    .with_coordinator_keys(vec![s("g")]),
            ),
        ) else {
            panic!()
        };
        assert_eq!(
            (fc.coordinators[0].host.as_str(), fc.coordinators[0].port),
            (host, addr.port() as i32)
        );
    }
    // A client bootstrapped on the second listener works end to end through it.
    let internal = format!("localhost:{}", addrs[1].port());
    create_topic(&internal, "via-internal", 1, &[]).await;
    let p = producer(&internal, &[]);
    p.send(FutureRecord::<(), _>::to("via-internal").payload("x"), T)
        .await
        .expect("produce through INTERNAL");
    assert_eq!(consume_all(&internal, "via-internal", 1, T).len(), 1);
}

/// A secret config value is never returned: DescribeConfigs gives it as null and
/// sensitive, its synonyms null too (as Kafka), while an ordinary key keeps its value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_configs_never_returns_a_secret_or_its_synonym() {
    let b = TestBroker::start_with(&[
        r#"sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="u" password="jaas-pw-51c";"#,
    ])
    .await;
    let mut raw = RawClient::connect(&b.bootstrap);
    let ResponseKind::DescribeConfigs(d) = raw.call(
        ApiKey::DescribeConfigs,
        4,
        RequestKind::DescribeConfigs(
            kafka_protocol::messages::DescribeConfigsRequest::default()
                .with_include_synonyms(true)
                .with_resources(vec![
                    kafka_protocol::messages::describe_configs_request::DescribeConfigsResource::default()
                        .with_resource_type(4)
                        .with_resource_name(StrBytes::from_static_str("1"))
                        .with_configuration_keys(Some(vec![
                            StrBytes::from_static_str("sasl.jaas.config"),
                            StrBytes::from_static_str("num.partitions"),
                        ])),
                ]),
        ),
    ) else {
        panic!()
    };
    assert_eq!(d.results[0].error_code, 0);
    let configs = &d.results[0].configs;
    let secret = configs
        .iter()
        .find(|c| c.name.as_str() == "sasl.jaas.config")
        .expect("described");
    assert!(secret.is_sensitive);
    assert_eq!(secret.value, None);
    assert!(!secret.synonyms.is_empty(), "synonyms asked for");
    assert!(
        secret.synonyms.iter().all(|s| s.value.is_none()),
        "{secret:?}"
    );
    let plain = configs
        .iter()
        .find(|c| c.name.as_str() == "num.partitions")
        .expect("described");
    assert!(plain.synonyms.iter().all(|s| s.value.is_some()));
    assert!(!format!("{d:?}").contains("jaas-pw-51c"));
    b.stop().await;
}
