//! SSL listeners (rustls, PEM stores): librdkafka producing and consuming over TLS,
//! mutual TLS required and refused without a client certificate, a client trusting
//! another CA refused, a certificate rotated on disk served to new connections, and
//! a missing certificate stopping start-up by name. Certificates are made by the test
//! with the openssl command.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::TestBroker;
use rdkafka::producer::FutureRecord;

fn openssl(dir: &Path, args: &str) {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("cd {} && openssl {args}", dir.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA named `name` (`<name>.pem`, `<name>.key`).
fn make_ca(dir: &Path, name: &str) {
    openssl(dir, &format!("req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout {name}.key -out {name}.pem -days 2 -subj '/CN={name}'"));
}

/// A certificate for `subject` signed by `ca`, valid for 127.0.0.1 and localhost;
/// returns the keystore (key then certificate, as ssl.keystore.location takes it).
fn make_cert(dir: &Path, ca: &str, name: &str, subject: &str) -> PathBuf {
    openssl(dir, &format!("req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout {name}.key -out {name}.csr -subj '{subject}'"));
    std::fs::write(
        dir.join(format!("{name}.ext")),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    openssl(dir, &format!("x509 -req -in {name}.csr -CA {ca}.pem -CAkey {ca}.key -CAcreateserial -out {name}.pem -days 2 -extfile {name}.ext"));
    let keystore = dir.join(format!("{name}.keystore.pem"));
    let mut text = std::fs::read_to_string(dir.join(format!("{name}.key"))).unwrap();
    text.push_str(&std::fs::read_to_string(dir.join(format!("{name}.pem"))).unwrap());
    std::fs::write(&keystore, text).unwrap();
    keystore
}

fn ssl_client(bootstrap: &str, ca: &Path, client: Option<(&Path, &Path)>) -> rdkafka::ClientConfig {
    let mut c = common::client_config(bootstrap);
    c.set("security.protocol", "ssl")
        .set("ssl.ca.location", ca.display().to_string());
    if let Some((cert, key)) = client {
        c.set("ssl.certificate.location", cert.display().to_string())
            .set("ssl.key.location", key.display().to_string());
    }
    c
}

/// Produces one record; Ok when acknowledged.
async fn produce_one(
    config: &rdkafka::ClientConfig,
    topic: &str,
    value: &str,
) -> Result<(), String> {
    let mut config = config.clone();
    config.set("message.timeout.ms", "8000");
    let producer: rdkafka::producer::FutureProducer = config.create().unwrap();
    producer
        .send(
            FutureRecord::<(), str>::to(topic).payload(value),
            Duration::from_secs(8),
        )
        .await
        .map(|_| ())
        .map_err(|(e, _)| e.to_string())
}

/// Whether a produce attempt fails (bounded at 3 s: these are expected refusals).
async fn refused(config: &rdkafka::ClientConfig, topic: &str) -> bool {
    let mut config = config.clone();
    config.set("message.timeout.ms", "3000");
    let producer: rdkafka::producer::FutureProducer = config.create().unwrap();
    producer
        .send(
            FutureRecord::<(), str>::to(topic).payload("x"),
            Duration::from_secs(3),
        )
        .await
        .is_err()
}

fn ssl_overrides(keystore: &Path, extra: &[String]) -> Vec<String> {
    let mut o = vec![
        "listeners=SSL://127.0.0.1:0".to_string(),
        format!("ssl.keystore.location={}", keystore.display()),
    ];
    o.extend(extra.iter().cloned());
    o
}

async fn start(overrides: &[String]) -> TestBroker {
    let refs: Vec<&str> = overrides.iter().map(|s| s.as_str()).collect();
    TestBroker::start_with(&refs).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_produces_and_consumes_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    make_ca(dir.path(), "ca");
    make_ca(dir.path(), "other-ca");
    let keystore = make_cert(dir.path(), "ca", "broker", "/CN=broker-1/O=Strata");
    let b = start(&ssl_overrides(&keystore, &[])).await;
    let ca = dir.path().join("ca.pem");
    let config = ssl_client(&b.bootstrap, &ca, None);
    let producer: rdkafka::producer::FutureProducer = config.create().unwrap();
    for i in 0..10 {
        producer
            .send(
                FutureRecord::<(), str>::to("secure").payload(&format!("v{i}")),
                Duration::from_secs(10),
            )
            .await
            .expect("produced over TLS");
    }

    // Consume back over TLS.
    let mut consumer_config = config.clone();
    consumer_config
        .set("group.id", "tls-readers")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "true");
    let consumer: rdkafka::consumer::BaseConsumer = consumer_config.create().unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset("secure", 0, rdkafka::Offset::Beginning)
        .unwrap();
    rdkafka::consumer::Consumer::assign(&consumer, &tpl).unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                use rdkafka::Message;
                got.push(String::from_utf8(m.payload().unwrap().to_vec()).unwrap());
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => break,
            Some(Err(e)) => panic!("{e}"),
            None => {}
        }
    }
    assert_eq!(got, (0..10).map(|i| format!("v{i}")).collect::<Vec<_>>());
    drop(consumer);

    // A client that trusts another CA is refused.
    let other = ssl_client(&b.bootstrap, &dir.path().join("other-ca.pem"), None);
    assert!(refused(&other, "secure").await);
    // A plaintext client gets nowhere either.
    let plain = common::client_config(&b.bootstrap);
    assert!(refused(&plain, "secure").await);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_requires_a_client_certificate_from_the_trusted_ca() {
    let dir = tempfile::tempdir().unwrap();
    make_ca(dir.path(), "ca");
    make_ca(dir.path(), "rogue");
    let keystore = make_cert(dir.path(), "ca", "broker", "/CN=broker-1");
    make_cert(dir.path(), "ca", "alice", "/CN=alice/OU=eng/O=Example");
    make_cert(dir.path(), "rogue", "mallory", "/CN=mallory");
    let ca = dir.path().join("ca.pem");
    let b = start(&ssl_overrides(
        &keystore,
        &[
            "ssl.client.auth=required".into(),
            format!("ssl.truststore.location={}", ca.display()),
        ],
    ))
    .await;
    let p = |n: &str| dir.path().join(n);
    let alice = ssl_client(&b.bootstrap, &ca, Some((&p("alice.pem"), &p("alice.key"))));
    produce_one(&alice, "mtls", "hello")
        .await
        .expect("alice's certificate is trusted");
    let anonymous = ssl_client(&b.bootstrap, &ca, None);
    assert!(refused(&anonymous, "mtls").await, "no certificate");
    let mallory = ssl_client(
        &b.bootstrap,
        &ca,
        Some((&p("mallory.pem"), &p("mallory.key"))),
    );
    assert!(refused(&mallory, "mtls").await, "untrusted CA");
    b.stop().await;
}

/// The subject of the certificate a new connection to `addr` is served.
fn served_subject(addr: &str) -> String {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect {addr} </dev/null 2>/dev/null | openssl x509 -noout -subject"
        ))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_rotated_on_disk_is_served_to_new_connections() {
    let dir = tempfile::tempdir().unwrap();
    make_ca(dir.path(), "ca");
    let keystore = make_cert(dir.path(), "ca", "broker", "/CN=first");
    let b = start(&ssl_overrides(&keystore, &[])).await;
    assert!(served_subject(&b.bootstrap).contains("first"));
    // Replaced by a rename, as cert-manager and certbot do.
    let next = make_cert(dir.path(), "ca", "broker2", "/CN=second");
    std::fs::rename(&next, &keystore).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !served_subject(&b.bootstrap).contains("second") {
        assert!(
            Instant::now() < deadline,
            "the new certificate is not served within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ca = dir.path().join("ca.pem");
    produce_one(&ssl_client(&b.bootstrap, &ca, None), "rotated", "v")
        .await
        .expect("served with the new certificate");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ssl_listener_without_a_certificate_stops_start_up_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let overrides = vec![
        "listeners=SSL://127.0.0.1:0".to_string(),
        format!("log.dirs={}", dir.path().join("logs").display()),
    ];
    let config = strata::config::BrokerConfig::load(None, Vec::new(), &overrides).unwrap();
    let err = match strata::server::start(config).await {
        Ok(_) => panic!("started without a certificate"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("ssl.keystore.location"), "{err}");
    // Per listener: the listener.name.<l>. prefix names the key it read.
    let overrides = vec![
        "listeners=SSL://127.0.0.1:0".to_string(),
        format!("log.dirs={}", dir.path().join("logs").display()),
        "listener.name.ssl.ssl.keystore.location=/nonexistent.pem".to_string(),
    ];
    let config = strata::config::BrokerConfig::load(None, Vec::new(), &overrides).unwrap();
    let err = match strata::server::start(config).await {
        Ok(_) => panic!("started without a certificate"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("listener.name.ssl.ssl.keystore.location"),
        "{err}"
    );
}

/// Why a broker with `keystore` (and `password`) does not start.
async fn start_failure(dir: &Path, keystore: &Path, password: Option<&str>) -> String {
    let mut overrides = vec![
        "listeners=SSL://127.0.0.1:0".to_string(),
        format!("log.dirs={}", dir.join("refused").display()),
        format!("ssl.keystore.location={}", keystore.display()),
    ];
    if let Some(p) = password {
        overrides.push(format!("ssl.key.password={p}"));
    }
    let config = strata::config::BrokerConfig::load(None, Vec::new(), &overrides).unwrap();
    match strata::server::start(config).await {
        Ok(_) => panic!("started with password {password:?}"),
        Err(e) => format!("{e:#}"),
    }
}

/// A keystore whose private key is encrypted (PKCS#8, PBES2 with AES-256-CBC, as
/// `openssl pkcs8 -topk8 -v2 aes-256-cbc` writes it) is served with `ssl.key.password`;
/// without it, or with a wrong one, start-up stops naming the key (and not the
/// password).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_private_key_is_read_with_ssl_key_password() {
    let dir = tempfile::tempdir().unwrap();
    make_ca(dir.path(), "ca");
    make_cert(dir.path(), "ca", "broker", "/CN=broker-1");
    openssl(
        dir.path(),
        "pkcs8 -topk8 -v2 aes-256-cbc -in broker.key -out broker.enc.key -passout pass:k3y-Secret",
    );
    let keystore = dir.path().join("broker.enc.keystore.pem");
    let mut text = std::fs::read_to_string(dir.path().join("broker.enc.key")).unwrap();
    assert!(text.contains("BEGIN ENCRYPTED PRIVATE KEY"));
    text.push_str(&std::fs::read_to_string(dir.path().join("broker.pem")).unwrap());
    std::fs::write(&keystore, text).unwrap();

    let err = start_failure(dir.path(), &keystore, None).await;
    assert!(err.contains("ssl.key.password"), "{err}");
    let err = start_failure(dir.path(), &keystore, Some("Wr0ngPass")).await;
    assert!(err.contains("ssl.key.password"), "{err}");
    assert!(!err.contains("Wr0ngPass"), "{err}");

    let b = start(&ssl_overrides(
        &keystore,
        &["ssl.key.password=k3y-Secret".to_string()],
    ))
    .await;
    let config = ssl_client(&b.bootstrap, &dir.path().join("ca.pem"), None);
    produce_one(&config, "sealed", "v")
        .await
        .expect("served with the decrypted key");
    b.stop().await;
}

/// With mutual TLS, a truststore file that gains a CA is picked up without a restart:
/// a client whose certificate that CA signed is refused, then admitted within 10 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truststore_changed_on_disk_applies_to_new_connections() {
    let dir = tempfile::tempdir().unwrap();
    make_ca(dir.path(), "ca");
    make_ca(dir.path(), "partner");
    let keystore = make_cert(dir.path(), "ca", "broker", "/CN=broker-1");
    make_cert(dir.path(), "partner", "carol", "/CN=carol");
    let ca = dir.path().join("ca.pem");
    let truststore = dir.path().join("truststore.pem");
    std::fs::copy(&ca, &truststore).unwrap();
    let b = start(&ssl_overrides(
        &keystore,
        &[
            "ssl.client.auth=required".into(),
            format!("ssl.truststore.location={}", truststore.display()),
        ],
    ))
    .await;
    let p = |n: &str| dir.path().join(n);
    let carol = ssl_client(&b.bootstrap, &ca, Some((&p("carol.pem"), &p("carol.key"))));
    assert!(
        refused(&carol, "partners").await,
        "partner CA not trusted yet"
    );
    // Replaced by a rename, as configuration tools write files.
    let mut both = std::fs::read_to_string(&ca).unwrap();
    both.push_str(&std::fs::read_to_string(p("partner.pem")).unwrap());
    std::fs::write(p("truststore.new"), both).unwrap();
    std::fs::rename(p("truststore.new"), &truststore).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match produce_one(&carol, "partners", "hi").await {
            Ok(()) => break,
            Err(e) => assert!(Instant::now() < deadline, "carol still refused: {e}"),
        }
    }
    b.stop().await;
}

/// Three brokers whose inter-broker listener is SSL: followers fetch from leaders over
/// TLS (checking the leader's certificate against the truststore), acks=all
/// completes, and every replica is in sync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brokers_replicate_over_a_tls_inter_broker_listener() {
    use common::cluster::{Cluster, Role};
    let dir = tempfile::tempdir().unwrap();
    make_ca(dir.path(), "ca");
    let keystore = make_cert(dir.path(), "ca", "broker", "/CN=broker");
    let ca = dir.path().join("ca.pem");
    let overrides = [
        "listener.security.protocol.map=SSL:SSL,CONTROLLER:PLAINTEXT".to_string(),
        "inter.broker.listener.name=SSL".to_string(),
        format!("ssl.keystore.location={}", keystore.display()),
        format!("ssl.truststore.location={}", ca.display()),
    ];
    let refs: Vec<&str> = overrides.iter().map(|s| s.as_str()).collect();
    let c = Cluster::start_roles_with(&[Role::Combined; 3], "SSL", &refs);
    let config = ssl_client(&c.bootstrap_all(), &ca, None);
    let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
        config.create().unwrap();
    admin
        .create_topics(
            &[rdkafka::admin::NewTopic::new(
                "replicated",
                1,
                rdkafka::admin::TopicReplication::Fixed(3),
            )
            .set("min.insync.replicas", "3")],
            &common::admin_opts(),
        )
        .await
        .unwrap()
        .remove(0)
        .expect("created");
    let mut acks_all = config.clone();
    acks_all.set("acks", "all");
    // min.insync.replicas=3: acknowledged only once both followers fetched over TLS.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match produce_one(&acks_all, "replicated", "v").await {
            Ok(()) => break,
            Err(e) => assert!(Instant::now() < deadline, "acks=all never completed: {e}"),
        }
    }
}

/// Three brokers whose only client listener is SASL_SSL, as a secured Kafka cluster is
/// configured: followers log in to leaders with SCRAM-SHA-512 (the user made by
/// `storage format --add-scram`, the password from
/// `listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config`) over TLS, acks=all with
/// min.insync.replicas=3 completes, every replica stays in sync, and no log holds
/// the password. An authorizer is on, the brokers' user a super user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brokers_replicate_over_a_sasl_ssl_inter_broker_listener() {
    use common::cluster::{Cluster, Role};
    let dir = tempfile::tempdir().unwrap();
    make_ca(dir.path(), "ca");
    let keystore = make_cert(dir.path(), "ca", "broker", "/CN=broker");
    let ca = dir.path().join("ca.pem");
    let overrides = [
        "listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT".to_string(),
        "inter.broker.listener.name=SASL_SSL".to_string(),
        "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512".to_string(),
        r#"listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="broker" password="broker-pw-7f3a";"#.to_string(),
        format!("ssl.keystore.location={}", keystore.display()),
        format!("ssl.truststore.location={}", ca.display()),
        // Sessions end every 4 s: followers must log in again on their connections.
        "connections.max.reauth.ms=4000".to_string(),
        // With an authorizer, as a secured cluster runs: the brokers' user replicates
        // as a super user (CLUSTER_ACTION), the application's as one too for brevity.
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer"
            .to_string(),
        "super.users=User:broker;User:app".to_string(),
    ];
    let refs: Vec<&str> = overrides.iter().map(|s| s.as_str()).collect();
    let c = Cluster::start_formatted(
        &[Role::Combined; 3],
        "SASL_SSL",
        &refs,
        &[
            "SCRAM-SHA-512=[name=broker,password=broker-pw-7f3a]",
            "SCRAM-SHA-512=[name=app,password=app-pw]",
        ],
    );
    let mut config = ssl_client(&c.bootstrap_all(), &ca, None);
    config
        .set("security.protocol", "sasl_ssl")
        .set("sasl.mechanism", "SCRAM-SHA-512")
        .set("sasl.username", "app")
        .set("sasl.password", "app-pw");
    let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
        config.create().unwrap();
    admin
        .create_topics(
            &[rdkafka::admin::NewTopic::new(
                "replicated",
                3,
                rdkafka::admin::TopicReplication::Fixed(3),
            )
            .set("min.insync.replicas", "3")],
            &common::admin_opts(),
        )
        .await
        .unwrap()
        .remove(0)
        .expect("created");
    let mut acks_all = config.clone();
    acks_all.set("acks", "all");
    // min.insync.replicas=3: acknowledged only once both followers fetched, logged in.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match produce_one(&acks_all, "replicated", "v").await {
            Ok(()) => break,
            Err(e) => assert!(Instant::now() < deadline, "acks=all never completed: {e}"),
        }
    }
    // Past several session lifetimes, followers still fetch (they logged in again):
    // acks=all keeps completing.
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        produce_one(&acks_all, "replicated", "later")
            .await
            .expect("acks=all after re-authentication");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for i in 0..3 {
        let log = c.log(i);
        assert!(
            !log.contains("broker-pw-7f3a"),
            "node {} logged the password",
            i + 1
        );
        assert!(
            !log.contains("refused this broker's SASL login"),
            "node {}: {log}",
            i + 1
        );
        // Followers logged in again on their connections, before their sessions ended.
        assert!(
            !log.contains("expired without re-authentication"),
            "node {}: {log}",
            i + 1
        );
    }
}

/// The quorum over TLS: an SSL controller listener with mutual TLS. Three voters form
/// one cluster, a broker-only node fetches the metadata from them, an RF3 topic takes
/// acks=all writes through that node, a new controller is elected after a kill -9, and
/// a plaintext peer gets no answer from a controller port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quorum_runs_over_an_ssl_controller_listener_with_mutual_tls() {
    use common::cluster::{Cluster, Role};
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    make_ca(dir.path(), "ca");
    let keystore = make_cert(dir.path(), "ca", "broker", "/CN=broker");
    let ca = dir.path().join("ca.pem");
    let overrides = [
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:SSL".to_string(),
        format!("ssl.keystore.location={}", keystore.display()),
        format!("ssl.truststore.location={}", ca.display()),
        "listener.name.controller.ssl.client.auth=required".to_string(),
    ];
    let refs: Vec<&str> = overrides.iter().map(|s| s.as_str()).collect();
    let roles = [Role::Combined, Role::Combined, Role::Combined, Role::Broker];
    let mut c = Cluster::start_roles_with(&roles, "PLAINTEXT", &refs);
    let via_broker_only = c.bootstrap(3);
    common::admin(&via_broker_only)
        .create_topics(
            &[rdkafka::admin::NewTopic::new(
                "quorum-tls",
                1,
                rdkafka::admin::TopicReplication::Fixed(3),
            )
            .set("min.insync.replicas", "2")],
            &common::admin_opts(),
        )
        .await
        .unwrap()
        .remove(0)
        .expect("created");
    let mut acks_all = common::client_config(&via_broker_only);
    acks_all.set("acks", "all");
    let produce_until_ok = |config: rdkafka::ClientConfig| async move {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match produce_one(&config, "quorum-tls", "v").await {
                Ok(()) => return,
                Err(e) => assert!(Instant::now() < deadline, "acks=all never completed: {e}"),
            }
        }
    };
    produce_until_ok(acks_all.clone()).await;

    // A plaintext peer on a controller port: its bytes are no TLS handshake, so it is
    // closed without an answer.
    let mut plain =
        std::net::TcpStream::connect(("127.0.0.1", c.specs[0].controller_port)).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let probe = br#""Probe""#;
    plain
        .write_all(&(probe.len() as u32).to_be_bytes())
        .unwrap();
    plain.write_all(probe).unwrap();
    let mut buf = [0u8; 64];
    match plain.read(&mut buf) {
        Ok(0) | Err(_) => {}
        // A TLS alert is all it may get.
        Ok(n) => assert_eq!(buf[0], 0x15, "a plaintext peer got {n} bytes of non-alert"),
    }

    // Kill the active controller: the others elect a new one over TLS, and writes go on.
    let (leader, _) = c.wait_for("a quorum leader", Duration::from_secs(30), || {
        c.quorum_leader(0)
    });
    let killed = c.index_of(leader);
    c.kill9(killed);
    let asked = (0..3).find(|i| *i != killed).unwrap();
    let (new_leader, _) = c.wait_for("a new quorum leader", Duration::from_secs(30), || {
        c.quorum_leader(asked).filter(|(l, _)| *l != leader)
    });
    assert_ne!(new_leader, leader);
    produce_until_ok(acks_all).await;
}

/// SASL_SSL end to end with librdkafka, and hostile input on the secured listeners:
/// garbage instead of a TLS handshake, garbage inside TLS, a SASL frame claiming 2 GB.
/// Each closes only its own connection; the broker keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_ssl_works_and_hostile_input_closes_only_its_connection() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    make_ca(dir.path(), "ca");
    let keystore = make_cert(dir.path(), "ca", "broker", "/CN=broker-1");
    let ca = dir.path().join("ca.pem");
    let b = start(&[
        "listeners=PLAINTEXT://127.0.0.1:0,SSL://127.0.0.1:0,SASL_SSL://127.0.0.1:0".to_string(),
        format!("ssl.keystore.location={}", keystore.display()),
        "sasl.enabled.mechanisms=SCRAM-SHA-512".to_string(),
    ])
    .await;
    let addrs = b.running.as_ref().unwrap().addrs.clone();
    let (ssl, sasl_ssl) = (addrs[1].to_string(), addrs[2].to_string());
    // A user, created over the loopback PLAINTEXT listener.
    let mut admin = common::RawClient::connect(&b.bootstrap);
    let m = strata::scram::Mechanism::Sha512;
    let salt = b"fedcba9876543210";
    let req = kafka_protocol::messages::AlterUserScramCredentialsRequest::default().with_upsertions(vec![
        kafka_protocol::messages::alter_user_scram_credentials_request::ScramCredentialUpsertion::default()
            .with_name(kafka_protocol::protocol::StrBytes::from_static_str("erin"))
            .with_mechanism(m.code())
            .with_iterations(4096)
            .with_salt(salt.to_vec().into())
            .with_salted_password(m.salted_password(b"erin-pw", salt, 4096).into()),
    ]);
    match admin.call(
        kafka_protocol::messages::ApiKey::AlterUserScramCredentials,
        0,
        kafka_protocol::messages::RequestKind::AlterUserScramCredentials(req),
    ) {
        kafka_protocol::messages::ResponseKind::AlterUserScramCredentials(r) => {
            assert_eq!(r.results[0].error_code, 0)
        }
        other => panic!("unexpected {other:?}"),
    }
    let mut sasl_config = ssl_client(&sasl_ssl, &ca, None);
    sasl_config
        .set("security.protocol", "sasl_ssl")
        .set("sasl.mechanism", "SCRAM-SHA-512")
        .set("sasl.username", "erin")
        .set("sasl.password", "erin-pw");
    produce_one(&sasl_config, "secured", "over SASL_SSL")
        .await
        .expect("SCRAM over TLS");

    // Garbage instead of a ClientHello: closed.
    for addr in [&ssl, &sasl_ssl] {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let _ = s.write_all(&[0x16, 0x03, 0x01, 0xff, 0xff, 1, 2, 3, 4, 5, 6, 7, 8]);
        let _ = s.write_all(&vec![0xAB; 70_000]);
        let mut buf = [0u8; 1024];
        // The broker may answer with a TLS alert, then it closes.
        let mut total = 0;
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            total += n;
            assert!(total < 1024, "an alert at most");
        }
    }
    // Garbage inside TLS, and a SASL frame claiming 2 GB: closed, nothing allocated.
    for bytes in [vec![0xEE; 64], vec![0x7f, 0xff, 0xff, 0xff, 0, 17, 0, 1]] {
        let mut roots = rustls::RootCertStore::empty();
        use rustls::pki_types::pem::PemObject;
        for cert in rustls::pki_types::CertificateDer::pem_file_iter(&ca).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(&sasl_ssl).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let mut tls = connector.connect(name, tcp).await.expect("handshake");
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let _ = tls.write_all(&bytes).await;
        let _ = tls.flush().await;
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(15), tls.read(&mut buf))
            .await
            .expect("closed, not left hanging")
            .unwrap_or(0);
        assert_eq!(n, 0, "closed without an answer");
    }
    // Everyone else is still served.
    produce_one(&sasl_config, "secured", "still here")
        .await
        .expect("the broker keeps serving");
    produce_one(&ssl_client(&ssl, &ca, None), "secured", "and over SSL")
        .await
        .expect("the broker keeps serving SSL");
    b.stop().await;
}

/// Large record sets go out straight from the segment files: with `sendfile` on a
/// PLAINTEXT listener, read and encrypted on an SSL one. Both consumers read back every
/// byte of batches far above the size where that starts (64 KiB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_record_sets_are_served_from_the_file_over_plaintext_and_tls() {
    let dir = tempfile::tempdir().unwrap();
    make_ca(dir.path(), "ca");
    let keystore = make_cert(dir.path(), "ca", "broker", "/CN=broker-1");
    let ca = dir.path().join("ca.pem");
    let b = start(&[
        "listeners=PLAINTEXT://127.0.0.1:0,SSL://127.0.0.1:0".to_string(),
        format!("ssl.keystore.location={}", keystore.display()),
    ])
    .await;
    let ssl = b.running.as_ref().unwrap().addrs[1].to_string();
    common::create_topic(&b.bootstrap, "large", 2, &[]).await;
    // 60 records of 150 KiB, each its own batch (no compression), over two partitions.
    let payload = |i: usize| -> Vec<u8> {
        (0..150 * 1024)
            .map(|j| ((i * 31 + j * 7) % 251) as u8)
            .collect()
    };
    let producer = common::producer(
        &b.bootstrap,
        &[("linger.ms", "20"), ("message.max.bytes", "2000000")],
    );
    for i in 0..60 {
        let key = i.to_string();
        producer
            .send(
                FutureRecord::to("large")
                    .key(&key)
                    .partition((i % 2) as i32)
                    .payload(&payload(i)),
                Duration::from_secs(10),
            )
            .await
            .expect("produced");
    }
    let read_back = |config: rdkafka::ClientConfig| {
        let mut config = config;
        config
            .set("group.id", "large-readers")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .set("max.partition.fetch.bytes", "4194304")
            .set("fetch.max.bytes", "8388608");
        let consumer: rdkafka::consumer::BaseConsumer = config.create().unwrap();
        let mut tpl = rdkafka::TopicPartitionList::new();
        for p in 0..2 {
            tpl.add_partition_offset("large", p, rdkafka::Offset::Beginning)
                .unwrap();
        }
        rdkafka::consumer::Consumer::assign(&consumer, &tpl).unwrap();
        let mut got = std::collections::BTreeMap::new();
        let mut eof = std::collections::BTreeSet::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while eof.len() < 2 && Instant::now() < deadline {
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => {
                    use rdkafka::Message;
                    let i: usize = std::str::from_utf8(m.key().unwrap())
                        .unwrap()
                        .parse()
                        .unwrap();
                    assert!(
                        m.payload() == Some(&payload(i)[..]),
                        "record {i} came back different"
                    );
                    assert!(got.insert(i, m.offset()).is_none(), "record {i} twice");
                }
                Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                    eof.insert(p);
                }
                Some(Err(e)) => panic!("{e}"),
                None => {}
            }
        }
        got.len()
    };
    let plain = common::client_config(&b.bootstrap);
    assert_eq!(tokio::task::block_in_place(|| read_back(plain)), 60);
    let tls = ssl_client(&ssl, &ca, None);
    assert_eq!(tokio::task::block_in_place(|| read_back(tls)), 60);
    b.stop().await;
}
