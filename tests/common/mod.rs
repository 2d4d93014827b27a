//! Shared test harness: real brokers (in-process on 127.0.0.1:0, or as a `strata`
//! process for crash tests), rdkafka clients, and a raw kafka-protocol client for
//! requests no high-level client can shape (duplicates, garbage, odd versions).
#![allow(dead_code)]

pub mod cluster;
pub mod idempotent;
pub mod s3;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::FutureProducer;
use rdkafka::{Offset, TopicPartitionList};
use strata::config::BrokerConfig;
use strata::server::{start, RunningBroker};
use tempfile::TempDir;

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// A broker running inside the test process, with its own data directory.
pub struct TestBroker {
    pub running: Option<RunningBroker>,
    pub dir: TempDir,
    pub bootstrap: String,
}

impl TestBroker {
    pub async fn start() -> TestBroker {
        Self::start_with(&[]).await
    }

    pub async fn start_with(overrides: &[&str]) -> TestBroker {
        init_tracing();
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(dir, overrides).await
    }

    pub async fn start_in(dir: TempDir, overrides: &[&str]) -> TestBroker {
        let mut all = vec![
            "listeners=PLAINTEXT://127.0.0.1:0".to_string(),
            format!("log.dirs={}", dir.path().join("logs").display()),
        ];
        all.extend(overrides.iter().map(|s| s.to_string()));
        let config = BrokerConfig::load(None, Vec::new(), &all).expect("test config");
        let running = start(config).await.expect("broker start");
        let bootstrap = running.bootstrap();
        TestBroker {
            running: Some(running),
            dir,
            bootstrap,
        }
    }

    /// Stops cleanly and starts again on the same data (a new port).
    pub async fn restart(mut self, overrides: &[&str]) -> TestBroker {
        self.running.take().unwrap().shutdown().await;
        Self::start_in(self.dir, overrides).await
    }

    pub async fn stop(mut self) -> TempDir {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
        self.dir
    }

    pub fn log_dir(&self) -> PathBuf {
        self.dir.path().join("logs")
    }
}

pub fn client_config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .set("socket.timeout.ms", "10000")
        .set("message.timeout.ms", "20000");
    c
}

pub fn producer(bootstrap: &str, extra: &[(&str, &str)]) -> FutureProducer {
    let mut c = client_config(bootstrap);
    c.set("linger.ms", "5");
    for (k, v) in extra {
        c.set(*k, *v);
    }
    c.create().expect("producer")
}

pub fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    client_config(bootstrap).create().expect("admin client")
}

pub fn admin_opts() -> AdminOptions {
    AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)))
}

pub async fn create_topic(bootstrap: &str, name: &str, partitions: i32, configs: &[(&str, &str)]) {
    let admin = admin(bootstrap);
    let mut t = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for (k, v) in configs {
        t = t.set(k, v);
    }
    let res = admin
        .create_topics(&[t], &admin_opts())
        .await
        .expect("create_topics");
    for r in res {
        r.expect("topic created");
    }
}

/// A consumer with no group: partitions are assigned by hand.
pub fn consumer(bootstrap: &str, extra: &[(&str, &str)]) -> BaseConsumer {
    let mut c = client_config(bootstrap);
    c.set("group.id", "strata-test-unused")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest");
    for (k, v) in extra {
        c.set(*k, *v);
    }
    c.create().expect("consumer")
}

/// An owned copy of what a test checks in a consumed record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Got {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub timestamp: Option<i64>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

fn own(m: &BorrowedMessage<'_>) -> Got {
    use rdkafka::message::Headers;
    let headers = m
        .headers()
        .map(|h| {
            h.iter()
                .map(|x| (x.key.to_string(), x.value.map(|v| v.to_vec())))
                .collect()
        })
        .unwrap_or_default();
    Got {
        partition: m.partition(),
        offset: m.offset(),
        key: m.key().map(|k| k.to_vec()),
        value: m.payload().map(|v| v.to_vec()),
        timestamp: m.timestamp().to_millis(),
        headers,
    }
}

/// Reads every record of `topic`'s partitions from the beginning until each reports
/// end-of-partition (or the deadline passes).
pub fn consume_all(bootstrap: &str, topic: &str, partitions: i32, timeout: Duration) -> Vec<Got> {
    let consumer = consumer(bootstrap, &[]);
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let mut eof = std::collections::HashSet::new();
    let deadline = Instant::now() + timeout;
    while eof.len() < partitions as usize && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => out.push(own(&m)),
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                eof.insert(p);
            }
            Some(Err(e)) => panic!("consume error: {e}"),
            None => {}
        }
    }
    assert_eq!(
        eof.len(),
        partitions as usize,
        "not every partition reached its end in {timeout:?}"
    );
    out
}

/// A blocking raw Kafka client speaking kafka-protocol frames.
pub struct RawClient {
    pub stream: TcpStream,
    correlation: i32,
}

impl RawClient {
    pub fn connect(addr: &str) -> RawClient {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        RawClient {
            stream,
            correlation: 0,
        }
    }

    pub fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Encodes and sends a request; returns its correlation id.
    pub fn send(&mut self, api: ApiKey, version: i16, body: &RequestKind) -> i32 {
        self.correlation += 1;
        let header = RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str("raw-test")));
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        header
            .encode(&mut buf, api.request_header_version(version))
            .unwrap();
        body.encode(&mut buf, version).unwrap();
        let len = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        self.stream.write_all(&buf).unwrap();
        self.correlation
    }

    /// Reads one response frame: (correlation id, body bytes after the header).
    pub fn read_frame(&mut self) -> std::io::Result<Bytes> {
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len)?;
        let mut frame = vec![0u8; i32::from_be_bytes(len) as usize];
        self.stream.read_exact(&mut frame)?;
        Ok(Bytes::from(frame))
    }

    pub fn call(&mut self, api: ApiKey, version: i16, body: RequestKind) -> ResponseKind {
        let correlation = self.send(api, version, &body);
        let mut frame = self.read_frame().expect("response");
        let header_version = response_header_version(api, version);
        let header = ResponseHeader::decode(&mut frame, header_version).unwrap();
        assert_eq!(header.correlation_id, correlation);
        ResponseKind::decode(api, &mut frame, version).expect("decode response")
    }

    /// True once the server has closed the connection.
    pub fn is_closed(&mut self) -> bool {
        self.stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut b = [0u8; 1];
        matches!(self.stream.read(&mut b), Ok(0) | Err(_))
    }
}

pub fn response_header_version(api: ApiKey, version: i16) -> i16 {
    if api == ApiKey::ApiVersions {
        return 0;
    }
    // Flexible request header v2 pairs with response header v1.
    if api.request_header_version(version) >= 2 {
        1
    } else {
        0
    }
}

pub fn read_i32(b: &mut Bytes) -> i32 {
    b.get_i32()
}

/// Runs the `strata` binary as a process (for crash tests).
pub struct BrokerProcess {
    pub child: Child,
    pub port: u16,
    pub data: PathBuf,
}

/// A port no other test of this process was given, below the kernel's ephemeral range
/// (32768-60999), so neither a parallel test's `free_port` nor a client's outgoing
/// connection can take it between this check and the broker's bind (or between a
/// node's kill and its restart on the same port).
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    // Each test binary starts at its own place in the range.
    let _ = NEXT.compare_exchange(
        u32::MAX,
        (std::process::id() * 997) % SPAN,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    loop {
        let port = (LOW + NEXT.fetch_add(1, Ordering::Relaxed) % SPAN) as u16;
        let free = ["127.0.0.1", "0.0.0.0"]
            .iter()
            .all(|host| std::net::TcpListener::bind((*host, port)).is_ok());
        if free {
            return port;
        }
    }
}

impl BrokerProcess {
    pub fn start(data: &Path, port: u16, extra: &[&str]) -> BrokerProcess {
        Self::start_limited(data, port, extra, None)
    }

    /// Starts the broker with RLIMIT_NOFILE set to (soft, hard) for the process, as
    /// `prlimit --nofile=soft:hard` would.
    pub fn start_limited(
        data: &Path,
        port: u16,
        extra: &[&str],
        nofile: Option<(u64, u64)>,
    ) -> BrokerProcess {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
        if let Some((soft, hard)) = nofile {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe; nothing else runs in the child
            // between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: soft,
                        rlim_max: hard,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        cmd.arg("--override")
            .arg(format!("listeners=PLAINTEXT://127.0.0.1:{port}"))
            .arg("--override")
            .arg(format!("log.dirs={}", data.display()));
        for e in extra {
            cmd.arg("--override").arg(e);
        }
        let log = std::fs::File::create(data.with_extension(format!("{port}.log"))).unwrap();
        let child = cmd
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn strata");
        let deadline = Instant::now() + Duration::from_secs(120);
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(
                Instant::now() < deadline,
                "strata did not start listening on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        BrokerProcess {
            child,
            port,
            data: data.to_path_buf(),
        }
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Descriptors the process holds open now.
    pub fn open_files(&self) -> usize {
        self.open_files_below(u64::MAX)
    }

    /// Descriptors open with a number below `limit` (RLIMIT_NOFILE bounds the numbers a
    /// process may open; one inherited from outside can sit above it).
    pub fn open_files_below(&self, limit: u64) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter_map(|e| e.file_name().to_str()?.parse::<u64>().ok())
                    .filter(|fd| *fd < limit)
                    .count()
            })
            .unwrap_or(0)
    }

    /// (soft, hard) open-files limit of the process, from /proc.
    pub fn nofile_limit(&self) -> (u64, u64) {
        let limits = std::fs::read_to_string(format!("/proc/{}/limits", self.child.id())).unwrap();
        let line = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .unwrap();
        let nums: Vec<u64> = line
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        (nums[0], nums[1])
    }

    /// What the broker wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data.with_extension(format!("{}.log", self.port)))
            .unwrap_or_default()
    }

    pub fn kill9(mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }

    pub fn terminate(mut self) {
        unsafe_sigterm(self.child.id());
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        panic!("strata did not stop on SIGTERM");
    }
}

fn unsafe_sigterm(pid: u32) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
