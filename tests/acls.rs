//! ACLs across a real three-broker cluster: ACLs created through one broker are
//! enforced by every broker (they live in the metadata quorum), survive a restart of
//! the whole cluster, and are gone everywhere once deleted. Replication keeps working
//! under the authorizer (followers need CLUSTER_ACTION, which no ACL restricts here).
//!
//! The clients are anonymous (PLAINTEXT) and `allow.everyone.if.no.acl.found=true`, so
//! what a DENY ACL removes is exactly what the test observes.

mod common;

use std::time::Duration;

use common::cluster::Cluster;
use common::RawClient;
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::{
    ApiKey, CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest, MetadataRequest,
    RequestKind, ResponseKind, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::{NewTopic, TopicReplication};

const AUTHORIZER: &str =
    "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer";
const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
// Wire codes: resource TOPIC, pattern LITERAL/ANY, operation WRITE/DESCRIBE/ANY,
// permission DENY/ANY.
const TOPIC: i8 = 2;
const LITERAL: i8 = 3;
const ANY: i8 = 1;
const WRITE: i8 = 4;
const DESCRIBE: i8 = 8;
const DENY: i8 = 2;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn deny(topic: &str, operation: i8) -> AclCreation {
    AclCreation::default()
        .with_resource_type(TOPIC)
        .with_resource_name(s(topic))
        .with_resource_pattern_type(LITERAL)
        .with_principal(s("User:ANONYMOUS"))
        .with_host(s("*"))
        .with_operation(operation)
        .with_permission_type(DENY)
}

fn call(c: &Cluster, i: usize, api: ApiKey, version: i16, body: RequestKind) -> ResponseKind {
    RawClient::connect(&c.bootstrap(i)).call(api, version, body)
}

/// The error Metadata gives `topic` asked for by name through node `i`, and whether
/// it is listed among all topics.
fn visibility(c: &Cluster, i: usize, topic: &str) -> (i16, bool) {
    let named = MetadataRequest::default().with_topics(Some(vec![
        kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
            .with_name(Some(TopicName(s(topic)))),
    ]));
    let ResponseKind::Metadata(md) = call(c, i, ApiKey::Metadata, 12, RequestKind::Metadata(named))
    else {
        panic!()
    };
    let listed = c
        .metadata(i)
        .topics
        .iter()
        .any(|t| t.name.as_ref().map(|n| n.0.as_str()) == Some(topic));
    (md.topics[0].error_code, listed)
}

/// The answer to an acks=all produce of one record sent straight to node `i`.
fn produce_code(c: &Cluster, i: usize, topic: &str) -> i16 {
    let mut raw = RawClient::connect(&c.bootstrap(i));
    common::idempotent::produce_to(&mut raw, topic, 0, common::idempotent::batch(-1, -1, -1, 1)).0
}

/// The node leading partition 0 of `topic`, as node 0 sees it.
fn leader(c: &Cluster, topic: &str) -> Option<usize> {
    let md = c.metadata(0);
    let t = md
        .topics
        .iter()
        .find(|t| t.name.as_ref().map(|n| n.0.as_str()) == Some(topic))?;
    let l = t.partitions.first()?.leader_id.0;
    (l > 0 && t.partitions[0].isr_nodes.len() == 3).then(|| c.index_of(l))
}

fn describe_all(c: &Cluster, i: usize) -> usize {
    let req = DescribeAclsRequest::default()
        .with_resource_name_filter(None)
        .with_principal_filter(None)
        .with_host_filter(None)
        .with_resource_type_filter(ANY)
        .with_pattern_type_filter(ANY)
        .with_operation(ANY)
        .with_permission_type(ANY);
    let ResponseKind::DescribeAcls(r) = call(
        c,
        i,
        ApiKey::DescribeAcls,
        3,
        RequestKind::DescribeAcls(req),
    ) else {
        panic!()
    };
    assert_eq!(r.error_code, 0, "{r:?}");
    r.resources.iter().map(|res| res.acls.len()).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acls_hold_on_every_broker_and_survive_a_cluster_restart() {
    common::init_tracing();
    let mut c = Cluster::start(3, &[AUTHORIZER, "allow.everyone.if.no.acl.found=true"]);
    let admin = common::admin(&c.bootstrap_all());
    for name in ["guarded", "secret", "open"] {
        let created = admin
            .create_topics(
                &[NewTopic::new(name, 1, TopicReplication::Fixed(3))],
                &common::admin_opts(),
            )
            .await
            .unwrap();
        assert!(created[0].is_ok(), "{created:?}");
    }
    for topic in ["guarded", "open"] {
        let l = c.wait_for("a leader with a full ISR", Duration::from_secs(30), || {
            leader(&c, topic)
        });
        // acks=all needs the followers' fetches, which need CLUSTER_ACTION.
        assert_eq!(produce_code(&c, l, topic), 0, "{topic}");
    }

    // Two DENY ACLs, created through node 1.
    let ResponseKind::CreateAcls(created) = call(
        &c,
        0,
        ApiKey::CreateAcls,
        3,
        RequestKind::CreateAcls(
            CreateAclsRequest::default()
                .with_creations(vec![deny("guarded", WRITE), deny("secret", DESCRIBE)]),
        ),
    ) else {
        panic!()
    };
    assert!(
        created.results.iter().all(|r| r.error_code == 0),
        "{created:?}"
    );

    let enforced_everywhere = |c: &Cluster| {
        for i in 0..3 {
            c.wait_for(
                &format!("node {} to enforce the ACLs", i + 1),
                Duration::from_secs(30),
                || {
                    let write = produce_code(c, i, "guarded");
                    let (named, listed) = visibility(c, i, "secret");
                    (write == TOPIC_AUTHORIZATION_FAILED
                        && named == TOPIC_AUTHORIZATION_FAILED
                        && !listed)
                        .then_some(())
                },
            );
            // A topic no ACL names stays open (allow.everyone.if.no.acl.found).
            assert_eq!(visibility(c, i, "open"), (0, true));
            assert_eq!(describe_all(c, i), 2);
        }
    };
    enforced_everywhere(&c);

    // The whole cluster stops and starts again: the ACLs are in the metadata log.
    for i in 0..3 {
        c.terminate(i);
    }
    for i in 0..3 {
        c.spawn(i);
    }
    for i in 0..3 {
        c.wait_listening(i);
    }
    enforced_everywhere(&c);
    let l = c.wait_for("a leader of open", Duration::from_secs(30), || {
        leader(&c, "open")
    });
    c.wait_for(
        "acks=all on open after the restart",
        Duration::from_secs(30),
        || (produce_code(&c, l, "open") == 0).then_some(()),
    );

    // Deleted through node 3, they are gone on every node.
    let filter = DeleteAclsFilter::default()
        .with_resource_name_filter(None)
        .with_host_filter(None)
        .with_resource_type_filter(TOPIC)
        .with_pattern_type_filter(ANY)
        .with_principal_filter(Some(s("User:ANONYMOUS")))
        .with_operation(ANY)
        .with_permission_type(ANY);
    let ResponseKind::DeleteAcls(deleted) = call(
        &c,
        2,
        ApiKey::DeleteAcls,
        3,
        RequestKind::DeleteAcls(DeleteAclsRequest::default().with_filters(vec![filter])),
    ) else {
        panic!()
    };
    assert_eq!(deleted.filter_results.len(), 1);
    assert_eq!(deleted.filter_results[0].error_code, 0);
    assert_eq!(deleted.filter_results[0].matching_acls.len(), 2);
    for i in 0..3 {
        c.wait_for("the ACLs gone", Duration::from_secs(30), || {
            (produce_code(&c, i, "guarded") != TOPIC_AUTHORIZATION_FAILED
                && visibility(&c, i, "secret") == (0, true))
                .then_some(())
        });
        assert_eq!(describe_all(&c, i), 0);
    }
    let l = c.wait_for("a leader of guarded", Duration::from_secs(30), || {
        leader(&c, "guarded")
    });
    assert_eq!(produce_code(&c, l, "guarded"), 0);
}
