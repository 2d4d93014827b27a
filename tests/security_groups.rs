//! Security groups at accept (`security.groups.file`): a listener admits only the peers
//! its groups allow, refuses others before answering a byte and counts them; a
//! listener bound beyond loopback without a group, or a bad file, stops start-up.
//! (Traffic from other hosts through network namespaces comes with the reload work.)

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::{RawClient, TestBroker};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, RequestKind, ResponseKind};
use strata::config::BrokerConfig;

fn groups_file(dir: &std::path::Path, cidr: &str) -> String {
    let path = dir.join(format!("groups-{}.json", cidr.replace('/', "_")));
    std::fs::write(
        &path,
        format!(
            r#"{{"security_groups": {{"g": {{"ingress": [{{"cidr": "{cidr}", "ports": "all"}}]}}}},
                "listeners": {{"PLAINTEXT": ["g"]}}}}"#
        ),
    )
    .unwrap();
    path.display().to_string()
}

fn scrape(b: &TestBroker) -> String {
    let addr = b.running.as_ref().and_then(|r| r.metrics_addr).unwrap();
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: strata\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).unwrap();
    out
}

fn denied(b: &TestBroker) -> f64 {
    scrape(b)
        .lines()
        .find(|l| l.starts_with("strata_security_group_denied_total{listener=\"PLAINTEXT\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_no_rule_admits_is_closed_before_a_byte_and_counted() {
    let files = tempfile::tempdir().unwrap();
    // 127.0.0.1 is not in 10.99.0.0/16: refused.
    let file = groups_file(files.path(), "10.99.0.0/16");
    let b = TestBroker::start_with(&[
        &format!("security.groups.file={file}"),
        "metrics.listener=127.0.0.1:0",
    ])
    .await;
    assert_eq!(denied(&b), 0.0);
    for _ in 0..3 {
        let mut s = std::net::TcpStream::connect(&b.bootstrap).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        // An ApiVersions request gets no answer: the connection is closed at once.
        let _ = s.write_all(&[0, 0, 0, 10, 0, 18, 0, 0, 0, 0, 0, 1, 0, 0]);
        let mut buf = [0u8; 16];
        let n = s.read(&mut buf).unwrap_or(0);
        assert_eq!(n, 0, "a refused peer reads nothing");
    }
    assert_eq!(denied(&b), 3.0);
    b.stop().await;

    // The same broker with a rule for 127.0.0.1/32 serves it.
    let file = groups_file(files.path(), "127.0.0.1/32");
    let b = TestBroker::start_with(&[
        &format!("security.groups.file={file}"),
        "metrics.listener=127.0.0.1:0",
    ])
    .await;
    let mut raw = RawClient::connect(&b.bootstrap);
    match raw.call(
        ApiKey::ApiVersions,
        3,
        RequestKind::ApiVersions(ApiVersionsRequest::default()),
    ) {
        ResponseKind::ApiVersions(r) => assert_eq!(r.error_code, 0),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(denied(&b), 0.0);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unguarded_listener_beyond_loopback_or_a_bad_file_stops_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let logs = format!("log.dirs={}", dir.path().join("logs").display());
    let start = |overrides: Vec<String>| async move {
        let config = BrokerConfig::load(None, Vec::new(), &overrides).expect("config");
        match strata::server::start(config).await {
            Ok(r) => {
                r.shutdown().await;
                None
            }
            Err(e) => Some(format!("{e:#}")),
        }
    };
    let err = start(vec![logs.clone(), "listeners=PLAINTEXT://0.0.0.0:0".into()])
        .await
        .expect("refused");
    assert!(
        err.contains("PLAINTEXT") && err.contains("security.groups.file"),
        "{err}"
    );
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"security_groups": {"g": {"ingress": [{"cidr": "10.0.0.0/40", "ports": 1}]}}}"#,
    )
    .unwrap();
    let err = start(vec![
        logs.clone(),
        "listeners=PLAINTEXT://127.0.0.1:0".into(),
        format!("security.groups.file={}", bad.display()),
    ])
    .await
    .expect("refused");
    assert!(
        err.contains("10.0.0.0/40") && err.contains("bad.json"),
        "{err}"
    );
    // An explicit 0.0.0.0/0 rule opens a listener bound to every address.
    let open = groups_file(dir.path(), "0.0.0.0/0");
    assert_eq!(
        start(vec![
            logs,
            "listeners=PLAINTEXT://0.0.0.0:0".into(),
            format!("security.groups.file={open}"),
        ])
        .await,
        None
    );
}

/// Two network namespaces, each joined to this host by a veth pair: "other hosts"
/// with their own addresses. Removed on drop.
struct TwoHosts {
    names: [String; 2],
    /// The host-side address of each link (what a client there connects to).
    host: [String; 2],
    /// The namespace-side (peer) address of each link.
    peer: [String; 2],
}

/// The controller listener is guarded too: a connection to it that reloaded rules no
/// longer admit is closed, as client connections are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_connection_the_new_rules_refuse_is_closed() {
    let files = tempfile::tempdir().unwrap();
    let file = files.path().join("groups.json");
    let groups = |cidr: &str| {
        format!(
            r#"{{"security_groups": {{"ctl": {{"ingress": [{{"cidr": "{cidr}", "ports": "all"}}]}}}},
                "listeners": {{"CONTROLLER": ["ctl"]}}}}"#
        )
    };
    std::fs::write(&file, groups("127.0.0.1/32")).unwrap();
    let port = common::free_port();
    let b = TestBroker::start_with(&[
        &format!("security.groups.file={}", file.display()),
        "node.id=1",
        &format!("controller.quorum.voters=1@127.0.0.1:{port}"),
        &format!("listeners=PLAINTEXT://127.0.0.1:0,CONTROLLER://127.0.0.1:{port}"),
        "controller.listener.names=CONTROLLER",
    ])
    .await;
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let open = |conn: &mut std::net::TcpStream| {
        let mut buf = [0u8; 8];
        match conn.read(&mut buf) {
            Ok(0) => false,
            Ok(_) => true,
            Err(e) => matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        }
    };
    assert!(open(&mut conn), "admitted while 127.0.0.1/32 is allowed");
    let tmp = files.path().join("groups.tmp");
    std::fs::write(&tmp, groups("10.77.0.0/16")).unwrap();
    std::fs::rename(&tmp, &file).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while open(&mut conn) {
        assert!(
            std::time::Instant::now() < deadline,
            "the controller connection stayed open after the reload"
        );
    }
    b.stop().await;
}

fn sh(cmd: &str) -> std::process::Output {
    std::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .unwrap()
}

fn sh_ok(cmd: &str) {
    let out = sh(cmd);
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TwoHosts {
    fn create() -> TwoHosts {
        let id = std::process::id() % 10_000;
        // A private test range of its own per process: 10.(200+id%50).{1,2}.0/24.
        let net = 200 + id % 50;
        let hosts = TwoHosts {
            names: [format!("sga{id}"), format!("sgb{id}")],
            host: [format!("10.{net}.1.1"), format!("10.{net}.2.1")],
            peer: [format!("10.{net}.1.2"), format!("10.{net}.2.2")],
        };
        for i in 0..2 {
            let ns = &hosts.names[i];
            let (outer, inner) = (format!("{ns}h"), format!("{ns}n"));
            let _ = sh(&format!(
                "ip netns del {ns} 2>/dev/null; ip link del {outer} 2>/dev/null"
            ));
            sh_ok(&format!("ip netns add {ns}"));
            sh_ok(&format!("ip link add {outer} type veth peer name {inner}"));
            sh_ok(&format!("ip link set {inner} netns {ns}"));
            sh_ok(&format!("ip addr add {}/24 dev {outer}", hosts.host[i]));
            sh_ok(&format!("ip link set {outer} up"));
            sh_ok(&format!(
                "ip -n {ns} addr add {}/24 dev {inner}",
                hosts.peer[i]
            ));
            sh_ok(&format!("ip -n {ns} link set {inner} up"));
            sh_ok(&format!("ip -n {ns} link set lo up"));
            // Everything else (the other link's host address) through this link.
            sh_ok(&format!(
                "ip -n {ns} route add default via {}",
                hosts.host[i]
            ));
        }
        hosts
    }

    /// Runs `cmd` inside namespace `i`.
    fn run(&self, i: usize, cmd: &str) -> std::process::Output {
        sh(&format!("ip netns exec {} {cmd}", self.names[i]))
    }

    fn spawn(&self, i: usize, cmd: &str) -> std::process::Child {
        std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("exec ip netns exec {} {cmd}", self.names[i]))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }
}

impl Drop for TwoHosts {
    fn drop(&mut self) {
        for ns in &self.names {
            let _ = sh(&format!("ip netns del {ns}; ip link del {ns}h 2>/dev/null"));
        }
    }
}

/// Python run in a namespace: connects, sends ApiVersions and prints how many bytes
/// came back (0: closed unanswered); with `hold`, then waits for the broker to close
/// the connection and prints "closed".
fn probe_script(addr: &str, hold: bool) -> String {
    let (host, port) = addr.rsplit_once(':').unwrap();
    format!(
        r#"python3 -c 'import socket,sys,time
s=socket.create_connection(("{host}",{port}),timeout=10)
s.sendall(bytes([0,0,0,10,0,18,0,0,0,0,0,1,0,0]))
try:
    n=len(s.recv(4096))
except OSError:
    n=0
print(n,flush=True)
if {hold}:
    s.settimeout(60)
    try:
        while s.recv(4096): pass
    except OSError: pass
    print("closed",flush=True)'"#,
        hold = if hold { "True" } else { "False" }
    )
}

fn groups_json(admit: &[&str]) -> String {
    let rules: Vec<String> = admit
        .iter()
        .map(|c| format!(r#"{{"cidr": "{c}", "ports": "all"}}"#))
        .collect();
    format!(
        r#"{{"security_groups": {{"clients": {{"ingress": [{}]}}}}, "listeners": {{"PLAINTEXT": ["clients"]}}}}"#,
        rules.join(", ")
    )
}

/// Replaces the file by a rename, as editors and configuration tools do.
fn replace_file(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn check_cli(config: &[String], listener: &str, from: &str) -> (i32, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_strata"));
    cmd.args([
        "security-groups",
        "check",
        "--listener",
        listener,
        "--from",
        from,
    ]);
    for o in config {
        cmd.arg("--override").arg(o);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
    )
}

fn scrape_at(addr: &str) -> String {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: strata\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).unwrap();
    out
}

fn denied_at(addr: &str) -> f64 {
    scrape_at(addr)
        .lines()
        .find(|l| l.starts_with("strata_security_group_denied_total{listener=\"PLAINTEXT\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

fn wait_until(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + within;
    while !f() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn security_groups_admit_and_refuse_other_hosts_and_reload_live() {
    let hosts = TwoHosts::create();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let file = dir.path().join("groups.json");
    // Host A's subnet only.
    let net = |ip: &str| format!("{}.0/24", ip.rsplit_once('.').unwrap().0);
    let subnet_a = net(&hosts.peer[0]);
    let subnet_b = net(&hosts.peer[1]);
    std::fs::write(&file, groups_json(&[&subnet_a])).unwrap();
    let port = common::free_port();
    let metrics = format!("127.0.0.1:{}", common::free_port());
    let config = vec![
        format!("listeners=PLAINTEXT://0.0.0.0:{port}"),
        format!("advertised.listeners=PLAINTEXT://{}:{port}", hosts.host[0]),
        format!("security.groups.file={}", file.display()),
        format!("metrics.listener={metrics}"),
        "auto.create.topics.enable=true".to_string(),
    ];
    let extra: Vec<&str> = config.iter().map(|s| s.as_str()).collect();
    let broker = common::BrokerProcess::start(&data, port, &extra);
    let addr_a = format!("{}:{port}", hosts.host[0]);
    let addr_b = format!("{}:{port}", hosts.host[1]);

    // Host A produces and consumes.
    let out = hosts.run(
        0,
        &format!("sh -c 'printf \"one\\ntwo\\n\" | kcat -b {addr_a} -P -t sg -p 0 && kcat -b {addr_a} -C -t sg -p 0 -o beginning -e -q'"),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text.lines().collect::<Vec<_>>(), ["one", "two"]);

    // Host B is refused before a byte is answered, and counted.
    let before = denied_at(&metrics);
    let out = hosts.run(1, &probe_script(&addr_b, false));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "0",
        "{:?}",
        out
    );
    wait_until("the denial counted", Duration::from_secs(5), || {
        denied_at(&metrics) > before
    });
    let (code, text) = check_cli(&config, "PLAINTEXT", &hosts.peer[1]);
    assert_eq!(code, 1, "{text}");
    assert!(text.starts_with("DENIED"), "{text}");
    let (code, text) = check_cli(&config, "PLAINTEXT", &hosts.peer[0]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.starts_with("ADMITTED") && text.contains(&subnet_a),
        "{text}"
    );

    // A holds a connection open; then the file is replaced: B added, A removed.
    let mut held = hosts.spawn(0, &probe_script(&addr_a, true));
    let mut first = String::new();
    {
        use std::io::BufRead;
        let mut lines = std::io::BufReader::new(held.stdout.as_mut().unwrap());
        lines.read_line(&mut first).unwrap();
    }
    assert_ne!(first.trim(), "0", "A is answered while admitted");
    replace_file(&file, &groups_json(&[&subnet_b]));
    wait_until("host B admitted within 5 s", Duration::from_secs(5), || {
        let out = hosts.run(1, &format!("kcat -b {addr_b} -L -m 5"));
        out.status.success()
    });
    wait_until(
        "A's open connection closed",
        Duration::from_secs(10),
        || matches!(held.try_wait(), Ok(Some(_))),
    );
    let out = held.wait_with_output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("closed"));
    let out = hosts.run(0, &probe_script(&addr_a, false));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0");
    let (code, _) = check_cli(&config, "PLAINTEXT", &hosts.peer[1]);
    assert_eq!(code, 0);

    // An invalid file keeps the rules in force.
    std::fs::write(&file, "{ not json").unwrap();
    let log = data.with_extension(format!("{port}.log"));
    wait_until("the invalid file logged", Duration::from_secs(10), || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("security groups not reloaded"))
    });
    let out = hosts.run(1, &format!("kcat -b {addr_b} -L -m 5"));
    assert!(out.status.success(), "the old rules stay");
    drop(broker);
}
