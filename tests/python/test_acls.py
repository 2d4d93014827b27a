"""ACLs with the Python clients against a strata process running Kafka's
StandardAuthorizer name: SCRAM users on a SASL_PLAINTEXT listener; ACLs created,
described and deleted with confluent-kafka's and kafka-python's admin clients over a
loopback PLAINTEXT listener whose (anonymous) principal is a super user.

Shown: a user without WRITE gets TOPIC_AUTHORIZATION_FAILED and produces once granted
it; a consumer whose group lacks READ gets GROUP_AUTHORIZATION_FAILED; PREFIXED ACLs;
DENY over ALLOW; Metadata lists only the topics a user may describe; ACLs survive a
restart; a user without ALTER on the cluster may not create ACLs."""

from confluent_kafka import Consumer, KafkaError, Producer
from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation,
                                   AclPermissionType, AdminClient, NewTopic,
                                   ResourcePatternType, ResourceType,
                                   ScramCredentialInfo, ScramMechanism,
                                   UserScramCredentialUpsertion)

from conftest import free_port, unique_topic, wait_until


def acl_broker(broker_factory, extra=None):
    b = broker_factory(start=False)
    b.sasl_port = free_port()
    b.overrides.update({
        "listeners": f"PLAINTEXT://127.0.0.1:{b.port},SASL_PLAINTEXT://127.0.0.1:{b.sasl_port}",
        "sasl.enabled.mechanisms": "SCRAM-SHA-512",
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": "User:ANONYMOUS;User:admin",
    })
    b.overrides.update(extra or {})
    b.start()
    b.sasl = f"127.0.0.1:{b.sasl_port}"
    return b


def admin_of(b):
    return AdminClient({"bootstrap.servers": b.bootstrap})


def add_users(admin, *users):
    upserts = [UserScramCredentialUpsertion(
        u, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096), f"{u}-secret".encode())
        for u in users]
    for fut in admin.alter_user_scram_credentials(upserts).values():
        fut.result(timeout=30)


def create_topics(admin, *names):
    for fut in admin.create_topics([NewTopic(n, 1, 1) for n in names]).values():
        fut.result(timeout=30)


def grant(admin, *bindings):
    for fut in admin.create_acls(list(bindings)).values():
        fut.result(timeout=30)


def acl(resource, name, user, op, permission=AclPermissionType.ALLOW,
        pattern=ResourcePatternType.LITERAL):
    return AclBinding(resource, name, pattern, f"User:{user}", "*", op, permission)


def auth(user):
    return {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": user, "sasl.password": f"{user}-secret"}


def produce_error(b, user, topic, timeout_s=10):
    """Produces one record as `user`: None when acknowledged, else the KafkaError."""
    outcome = []
    p = Producer({"bootstrap.servers": b.sasl, "message.timeout.ms": timeout_s * 1000,
                  **auth(user)})
    p.produce(topic, value=b"v", on_delivery=lambda err, msg: outcome.append(err))
    p.flush(timeout_s + 5)
    assert outcome, "no delivery report"
    return outcome[0]


def test_write_is_granted_by_create_acls_and_groups_need_read(broker_factory):
    b = acl_broker(broker_factory)
    admin = admin_of(b)
    add_users(admin, "alice")
    topic = unique_topic("acl")
    create_topics(admin, topic)

    err = produce_error(b, "alice", topic, timeout_s=5)
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err

    grant(admin, acl(ResourceType.TOPIC, topic, "alice", AclOperation.WRITE))
    assert produce_error(b, "alice", topic) is None

    described = admin.describe_acls(AclBindingFilter(
        ResourceType.ANY, None, ResourcePatternType.ANY, "User:alice", None,
        AclOperation.ANY, AclPermissionType.ANY)).result(timeout=30)
    assert [(d.name, d.operation, d.permission_type) for d in described] == [
        (topic, AclOperation.WRITE, AclPermissionType.ALLOW)]

    # READ on the topic but not on the group: the group refuses.
    grant(admin, acl(ResourceType.TOPIC, topic, "alice", AclOperation.READ))
    group = unique_topic("g")
    c = Consumer({"bootstrap.servers": b.sasl, "group.id": group,
                  "auto.offset.reset": "earliest", **auth("alice")})
    try:
        c.subscribe([topic])
        errors = []

        def group_refused():
            m = c.poll(0.5)
            if m is not None and m.error():
                errors.append(m.error().code())
            return KafkaError.GROUP_AUTHORIZATION_FAILED in errors
        wait_until(group_refused, message="GROUP_AUTHORIZATION_FAILED")
    finally:
        c.close()

    grant(admin, acl(ResourceType.GROUP, group, "alice", AclOperation.READ))
    c = Consumer({"bootstrap.servers": b.sasl, "group.id": group,
                  "auto.offset.reset": "earliest", **auth("alice")})
    try:
        c.subscribe([topic])

        def got_record():
            m = c.poll(0.5)
            return m is not None and not m.error() and m.value() == b"v"
        wait_until(got_record, message="alice consumes once her group may READ")
        c.commit(asynchronous=False)
    finally:
        c.close()


def test_prefixed_acls_and_deny_over_allow(broker_factory):
    b = acl_broker(broker_factory)
    admin = admin_of(b)
    add_users(admin, "bob")
    base = unique_topic("pay")
    allowed, denied, other = f"{base}-eu", f"{base}-us", unique_topic("other")
    create_topics(admin, allowed, denied, other)
    grant(admin,
          acl(ResourceType.TOPIC, base, "bob", AclOperation.WRITE,
              pattern=ResourcePatternType.PREFIXED),
          acl(ResourceType.TOPIC, denied, "bob", AclOperation.WRITE,
              permission=AclPermissionType.DENY))
    assert produce_error(b, "bob", allowed) is None
    err = produce_error(b, "bob", denied, timeout_s=5)
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err
    err = produce_error(b, "bob", other, timeout_s=5)
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err

    # A MATCH filter finds every ACL that applies to one topic: the prefix and the DENY.
    matching = admin.describe_acls(AclBindingFilter(
        ResourceType.TOPIC, denied, ResourcePatternType.MATCH, None, None,
        AclOperation.ANY, AclPermissionType.ANY)).result(timeout=30)
    assert sorted((m.name, m.resource_pattern_type) for m in matching) == sorted([
        (base, ResourcePatternType.PREFIXED), (denied, ResourcePatternType.LITERAL)])

    # Deleting the DENY lets bob write there through the prefix.
    deleted = admin.delete_acls([AclBindingFilter(
        ResourceType.TOPIC, denied, ResourcePatternType.LITERAL, "User:bob", "*",
        AclOperation.WRITE, AclPermissionType.DENY)])
    results = [f.result(timeout=30) for f in deleted.values()]
    assert [len(r) for r in results] == [1]
    assert produce_error(b, "bob", denied) is None


def test_metadata_lists_only_described_topics(broker_factory):
    b = acl_broker(broker_factory)
    admin = admin_of(b)
    add_users(admin, "carol")
    visible, hidden = unique_topic("seen"), unique_topic("hidden")
    create_topics(admin, visible, hidden)
    grant(admin, acl(ResourceType.TOPIC, visible, "carol", AclOperation.DESCRIBE))
    carol = AdminClient({"bootstrap.servers": b.sasl, **auth("carol")})
    topics = carol.list_topics(timeout=30).topics
    assert visible in topics and hidden not in topics, sorted(topics)
    # Asked for by name, the hidden topic is an authorization error, not "unknown".
    named = carol.list_topics(topic=hidden, timeout=30).topics[hidden]
    assert named.error is not None
    assert named.error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    # Asked for, the operations she may do on it: DESCRIBE only.
    from confluent_kafka import TopicCollection
    described = carol.describe_topics(TopicCollection([visible]),
                                      include_authorized_operations=True)
    ops = described[visible].result(timeout=30).authorized_operations
    assert ops == [AclOperation.DESCRIBE], ops
    # Nor may carol manage ACLs.
    refused = carol.create_acls([acl(ResourceType.TOPIC, hidden, "carol", AclOperation.ALL)])
    for fut in refused.values():
        try:
            fut.result(timeout=30)
            raise AssertionError("carol created an ACL")
        except Exception as e:  # noqa: BLE001 - the admin client raises KafkaException
            assert e.args[0].code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED, e


def test_acls_survive_a_restart(broker_factory):
    b = acl_broker(broker_factory)
    admin = admin_of(b)
    add_users(admin, "dave")
    topic = unique_topic("keep")
    create_topics(admin, topic)
    grant(admin, acl(ResourceType.TOPIC, topic, "dave", AclOperation.WRITE))
    assert produce_error(b, "dave", topic) is None
    assert b.stop() == 0
    b.start()
    assert produce_error(b, "dave", topic) is None
    other = unique_topic("nokeep")
    create_topics(admin_of(b), other)
    err = produce_error(b, "dave", other, timeout_s=5)
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err


def test_kafka_python_admin_and_producer(broker_factory):
    from kafka import KafkaProducer
    from kafka.admin import ACL, ACLFilter, ACLOperation, ACLPermissionType, \
        ACLResourcePatternType, KafkaAdminClient, ResourcePattern, ResourcePatternFilter
    from kafka.admin import ResourceType as KResourceType
    from kafka.errors import TopicAuthorizationFailedError

    b = acl_broker(broker_factory)
    add_users(admin_of(b), "erin")
    topic = unique_topic("kp")
    create_topics(admin_of(b), topic)
    kadmin = KafkaAdminClient(bootstrap_servers=b.bootstrap, request_timeout_ms=15000)
    sasl = {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_plain_username": "erin", "sasl_plain_password": "erin-secret"}
    try:
        p = KafkaProducer(bootstrap_servers=b.sasl, max_block_ms=5000, **sasl)
        try:
            try:
                p.send(topic, b"x").get(timeout=20)
                raise AssertionError("erin wrote without WRITE")
            except TopicAuthorizationFailedError:
                pass
        finally:
            p.close(timeout=5)

        created = kadmin.create_acls([ACL(
            "User:erin", "*", ACLOperation.WRITE, ACLPermissionType.ALLOW,
            ResourcePattern(KResourceType.TOPIC, topic, ACLResourcePatternType.LITERAL))])
        assert not created["failed"], created
        acls, error = kadmin.describe_acls(ACLFilter(
            "User:erin", None, ACLOperation.ANY, ACLPermissionType.ANY,
            ResourcePatternFilter(KResourceType.ANY, None, ACLResourcePatternType.ANY)))
        assert error.errno == 0 and len(acls) == 1 and acls[0].operation == ACLOperation.WRITE

        def wrote():
            p = KafkaProducer(bootstrap_servers=b.sasl, max_block_ms=5000, **sasl)
            try:
                p.send(topic, b"y").get(timeout=20)
                return True
            finally:
                p.close(timeout=5)
        wait_until(wrote, message="erin writes once granted")
    finally:
        kadmin.close()
