//! Strata end-to-end benchmark: a real `strata` process driven by librdkafka clients.
//!
//! Run (spawns the release broker binary on a free 127.0.0.1 port with a temp data dir):
//!
//! ```text
//! cargo bench --bench strata-bench                       # defaults: 1 GiB, 10k/s, 10 s
//! cargo bench --bench strata-bench -- --produce-mb 64 --seconds 3
//! cargo bench --bench strata-bench -- --broker 127.0.0.1:9092   # an already running broker
//! cargo bench --bench strata-bench -- --compression --produce-mb 256
//! cargo bench --bench strata-bench -- --cluster                  # three nodes, ~1 min
//! cargo bench --bench strata-bench -- --security-groups          # check cost, 1,000 rules
//! cargo bench --bench strata-bench -- --security --produce-mb 512 # SASL_SSL vs PLAINTEXT
//! ```
//!
//! `--security` starts one broker with a PLAINTEXT and a SASL_SSL listener (TLS with a
//! certificate made by `openssl`, SCRAM-SHA-512 with a user made by `strata storage
//! format`) and runs phase 1's produce throughput and then a verified consume of every
//! record, first over PLAINTEXT, then over SASL_SSL, each into its own topic (deleted
//! after its phase, so both phases start with the same free memory); reported:
//! MiB/s per phase and protocol, and SASL_SSL's throughput as a share of PLAINTEXT's,
//! from the round (of `--rounds`, the protocols' order alternating) with the median
//! produce share.
//! `--pin` puts the broker on CPU 1 and the clients on CPU 0.
//!
//! `--security` and `--cluster` first fill the page cache, as on a broker that has run
//! for a while, because writing into never-touched free memory costs several times more
//! on this VM and would skew the comparison (see `PageCacheFill`); `--cold-page-cache`
//! skips that.
//!
//! `--compression` runs a separate pair of phases instead, on compressible JSON-like
//! records (`--record-bytes` each, first 8 bytes the record index): (a) an
//! uncompressed producer into a topic with `compression.type=zstd` (the broker
//! recompresses every batch), then (b) a zstd producer (librdkafka's default level)
//! into a `compression.type=producer` topic (stored as sent). Each produces
//! `--produce-mb` MiB of records and reads them back verified; reported per phase:
//! broker CPU-seconds per GiB produced, MiB/s, and the bytes of the topic on disk.
//!
//! `--cluster` starts three combined broker+controller nodes instead (one quorum of three
//! voters, each node its own process, ports and data dir; broker.heartbeat.interval.ms
//! 500 and broker.session.timeout.ms 3000, as the integration tests use) and runs, with
//! acks=all throughout:
//! (C1) phase 1's produce throughput (`--produce-mb`, same records and producer) into a
//! topic with replication factor 3 and min.insync.replicas=2, then into one with
//! replication factor 1 (each after a `sync`, so neither pays for the other's writeback),
//! and their ratio, in `--rounds` rounds (3) on fresh topics, reporting the round with
//! the median ratio; (C2) phase 2's fixed-rate latency into RF3 and RF1 topics, at
//! `--rate` 5,000 msgs/s by default in this mode; (C3) failover: an idempotent producer
//! (message.timeout.ms 60000) sends `--rate` msgs/s for `--seconds` to a one-partition
//! RF3 topic (min.insync.replicas=2); a third of the way in, the partition's leader (from
//! Metadata) gets kill -9. Reported: the time from the kill to the acknowledgement of the
//! first record sent after it, whether the killed node was also the active controller
//! (then a new one is elected first), when the controller fenced the killed broker (from
//! its log), delivery latency over the phase, and a read-back from the surviving nodes
//! that fails the bench unless every acknowledged record is there (plus duplicates and
//! unacknowledged records found). The killed node is then restarted (time until it is
//! back in the ISR) and all three stop together on SIGTERM (one by one, the last would
//! find no controller quorum for its controlled shutdown). Broker CPU and RSS are sums
//! over the three processes (over the two not killed for the failover row).
//!
//! Phases, each on its own topic with 6 partitions (replication 1):
//!
//! 1. Produce throughput: `--produce-mb` MiB (default 1024) of `--record-bytes` (1 KiB)
//!    incompressible records, acks=all, no compression, linger.ms=5, ~1 MB batches,
//!    partitions round-robin. Reports MiB/s and msgs/s from first send to last delivery.
//! 2. Produce latency at a fixed rate: `--rate` msgs/s (10,000) for `--seconds` (10),
//!    acks=all, linger.ms=`--linger-ms` (1). Latency = delivery callback time - send time;
//!    p50/p99/p99.9/max.
//! 3. Consume from the beginning: one consumer assigned all partitions of phase 1's topic
//!    reads until end-of-partition on every partition (fetch.max.bytes 50 MiB,
//!    max.partition.fetch.bytes 10 MiB). Fails unless every produced record is read once.
//! 4. End-to-end latency: a consumer tails a fresh topic (fetch.wait.max.ms 10) while a
//!    producer sends `--e2e-rate` msgs/s (5,000) for `--e2e-seconds` (= `--seconds`).
//!    Each payload carries its send time (ns since a shared `Instant`) in its first 8 bytes;
//!    latency = receive time - send time.
//!
//! For every phase the broker's CPU seconds (utime+stime delta from /proc/PID/stat),
//! CPU seconds per 100 MiB moved, peak RSS (VmRSS sampled every 100 ms, max over the
//! phase), RSS at the phase end and VmHWM (lifetime peak) are reported, plus the bench
//! process's own CPU (client and broker share this machine's cores). With `--broker`
//! the broker's CPU/RSS are n/a. A table is printed, then one JSON line with all figures.
//! "MB" here is MiB (2^20 bytes), so `--produce-mb 1024` is 1 GiB = 1,048,576 records.

use std::collections::HashSet;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde_json::{json, Value};

const MIB: f64 = 1024.0 * 1024.0;

#[derive(Parser, Debug)]
#[command(
    name = "strata-bench",
    about = "Produce/consume throughput and latency of a strata broker"
)]
struct Args {
    /// MiB produced in phase 1 and read back in phase 3.
    #[arg(long, default_value_t = 1024)]
    produce_mb: u64,
    /// Record payload size in bytes (at least 16).
    #[arg(long, default_value_t = 1024)]
    record_bytes: usize,
    /// Partitions of every bench topic (from `--partitions N`; 6 by default).
    #[arg(skip = 6)]
    partitions: i32,
    /// `--partitions N`: partitions of every bench topic (default 6). `--partitions`
    /// with no value: partitions mode (create/metadata/produce/restart at
    /// `--partition-counts` partitions).
    #[arg(long = "partitions", value_name = "N", num_args = 0..=1)]
    partitions_flag: Option<Option<i32>>,
    /// Partitions mode: the partition counts, one fresh broker each.
    #[arg(long, value_delimiter = ',', default_values_t = [1000, 10_000, 50_000])]
    partition_counts: Vec<i32>,
    /// Partitions mode: partitions written to at once in the produce-latency phase.
    #[arg(long, default_value_t = 1000)]
    active_partitions: i32,
    /// Phase 2's messages per second (from `--rate`; 10,000 by default, 5,000 with
    /// `--cluster`).
    #[arg(skip = 10_000u64)]
    rate: u64,
    /// `--rate N`: phase 2's messages per second (default 10,000; 5,000 with `--cluster`,
    /// also the rate of its failover phase).
    #[arg(long = "rate", value_name = "N")]
    rate_flag: Option<u64>,
    /// Phase 2 duration in seconds (and phase 4's unless --e2e-seconds is given).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Phase 4: messages per second.
    #[arg(long, default_value_t = 5_000)]
    e2e_rate: u64,
    /// Phase 4 duration in seconds (default: --seconds).
    #[arg(long)]
    e2e_seconds: Option<u64>,
    /// linger.ms of the producers in phases 2 and 4.
    #[arg(long, default_value_t = 1)]
    linger_ms: u64,
    /// Benchmarks an already running broker at HOST:PORT instead of spawning one.
    #[arg(long)]
    broker: Option<String>,
    /// Tiered mode: produce `--produce-mb`, read it locally, let it tier to S3 and drop
    /// the local copies, then read it from the object store cold and warm.
    #[arg(long)]
    tiered: bool,
    /// Tiered mode: an S3 endpoint with the bucket `strata` (default: start moto with
    /// localstack/run-local.sh --s3-only on a free port).
    #[arg(long)]
    s3_endpoint: Option<String>,
    /// Tiered mode: segment.bytes of the bench topic, in MiB.
    #[arg(long, default_value_t = 64)]
    segment_mb: u64,
    /// Compression mode: broker CPU per GiB produced into a zstd topic from an
    /// uncompressed producer, against a zstd producer into a `producer` topic.
    #[arg(long)]
    compression: bool,
    /// Security-groups mode: the cost of one accept-time check against a file of
    /// 1,000 ingress rules (no broker is started).
    #[arg(long)]
    security_groups: bool,
    /// Security mode: produce and consume throughput over SASL_SSL beside PLAINTEXT.
    #[arg(long)]
    security: bool,
    /// Security mode: pin the broker to CPU 1 and the clients to CPU 0 (`taskset`), so
    /// the broker's own cost shows apart from the clients' encryption.
    #[arg(long)]
    pin: bool,
    /// Compression mode: `compression.zstd.level` of the zstd topic.
    #[arg(long, default_value_t = 3)]
    zstd_level: i32,
    /// Cluster mode: three broker+controller nodes; produce throughput and latency at
    /// replication factor 3 against 1, and a kill -9 of a partition leader under load.
    #[arg(long)]
    cluster: bool,
    /// Cluster and security modes: skip filling the page cache first (see
    /// `PageCacheFill`), so the phases write into free memory never touched before.
    #[arg(long)]
    cold_page_cache: bool,
    /// Cluster mode: rounds of phase C1 (RF3 then RF1 in each, on fresh topics, deleted
    /// after the last round); security mode: rounds of both protocols (the order
    /// alternating). The round with the median ratio is reported, as this machine's
    /// speed drifts between runs.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Extra broker config for the spawned broker(s), KEY=VALUE (repeatable).
    #[arg(long = "set")]
    set: Vec<String>,
    /// Passed by `cargo bench` to harness=false targets; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

// ---------------------------------------------------------------------------------------
// /proc readings

/// A field of /proc/meminfo, in bytes.
fn meminfo_bytes(key: &str) -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb: u64 = info
        .lines()
        .find(|l| l.starts_with(key) && l[key.len()..].starts_with(':'))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// Puts the machine's page cache in the state of a broker that has been running for a
/// while: (almost) full, so new writes recycle pages evicted from it.
///
/// Why: on this VM a page of guest memory that the host has reclaimed (all free memory
/// after boot or after it was freed, by balloon free-page reporting) costs about six
/// times as much to write the first time: `dd` of 2 GiB runs at ~0.85 GB/s into free
/// memory and at 4-6 GB/s into a full page cache. A replication-factor-3 phase writes
/// three copies of every byte, so with free memory it pays that first-touch cost three
/// times, a cost no long-running broker (nor Kafka) sees. The fill reads a sparse
/// file (no disk space used) of MemFree minus `KEEP_FREE` into the page cache and keeps
/// it there as clean, inactive pages until dropped.
struct PageCacheFill {
    _dir: tempfile::TempDir,
}

/// The fill for the cluster and security modes, unless `--cold-page-cache`.
fn page_cache_fill(args: &Args) -> Result<Option<PageCacheFill>> {
    if args.cold_page_cache {
        return Ok(None);
    }
    PageCacheFill::new()
}

impl PageCacheFill {
    /// Memory left free, for the processes' own allocations (a first phase would
    /// otherwise write into what is left free, never touched).
    const KEEP_FREE: u64 = 1 << 30;

    fn new() -> Result<Option<Self>> {
        let free = meminfo_bytes("MemFree").unwrap_or(0);
        let Some(fill) = free.checked_sub(Self::KEEP_FREE).filter(|f| *f >= 1 << 30) else {
            println!("page cache: already full ({} MiB free)", free >> 20);
            return Ok(None);
        };
        let dir = tempfile::Builder::new()
            .prefix("strata-bench-fill-")
            .tempdir()?;
        let path = dir.path().join("sparse");
        let file = std::fs::File::create(&path)?;
        file.set_len(fill)?;
        let started = Instant::now();
        std::io::copy(&mut std::fs::File::open(&path)?, &mut std::io::sink())?;
        println!(
            "page cache: filled {} MiB in {:.1} s (MemFree {} MiB now; --cold-page-cache skips this)",
            fill >> 20,
            started.elapsed().as_secs_f64(),
            meminfo_bytes("MemFree").unwrap_or(0) >> 20
        );
        Ok(Some(PageCacheFill { _dir: dir }))
    }
}

fn clk_tck() -> f64 {
    static TCK: OnceLock<f64> = OnceLock::new();
    *TCK.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|t| *t > 0.0)
            .unwrap_or(100.0)
    })
}

/// utime + stime of a process in clock ticks (`pid` "self" for this process).
fn cpu_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the ")" closing the command name start at field 3 (state);
    // utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// A `kB` line of /proc/PID/status (VmRSS, VmHWM), in kB.
fn status_kb(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(key) && l[key.len()..].starts_with(':'))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn dir_bytes(p: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Samples the broker's VmRSS every 100 ms and keeps the maximum since the last reset.
struct RssSampler {
    max_kb: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    handle: Option<thread::JoinHandle<()>>,
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let max_kb = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let handle = {
            let (max_kb, stop) = (max_kb.clone(), stop.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(kb) = status_kb(pid, "VmRSS") {
                        max_kb.fetch_max(kb, Ordering::Relaxed);
                    }
                    thread::sleep(Duration::from_millis(100));
                }
            })
        };
        RssSampler {
            max_kb,
            stop,
            handle: Some(handle),
        }
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

// ---------------------------------------------------------------------------------------
// The broker process

/// The `strata` binary cargo built for this bench, without the bench's environment's
/// STRATA_* variables (they are broker config keys).
fn strata_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("STRATA_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

struct Broker {
    bootstrap: String,
    /// The `/metrics` address when the broker was given `metrics.listener`.
    metrics: Option<String>,
    child: Option<Child>,
    sampler: Option<RssSampler>,
    dir: Option<tempfile::TempDir>,
}

impl Broker {
    fn spawn(extra: &[String]) -> Result<Broker> {
        let dir = tempfile::Builder::new().prefix("strata-bench-").tempdir()?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        Broker::start(extra, dir, port, &SpawnOpts::default())
    }

    /// Starts the broker on `port` with its data in `dir` (an existing data dir when
    /// restarting); its stderr is appended to `dir/broker.stderr`.
    fn start(
        extra: &[String],
        dir: tempfile::TempDir,
        port: u16,
        opts: &SpawnOpts,
    ) -> Result<Broker> {
        let bootstrap = format!("127.0.0.1:{port}");
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.path().join("broker.stderr"))?;
        let mut cmd = strata_command();
        cmd.arg("--override")
            .arg(format!("listeners=PLAINTEXT://{bootstrap}"))
            .arg("--override")
            .arg(format!("log.dirs={}", dir.path().join("data").display()))
            .env("RUST_LOG", opts.rust_log)
            .args(
                extra
                    .iter()
                    .flat_map(|e| ["--override".to_string(), e.clone()]),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        if let Some(nofile) = opts.nofile {
            use std::os::unix::process::CommandExt;
            let lim = libc::rlimit {
                rlim_cur: nofile as libc::rlim_t,
                rlim_max: nofile as libc::rlim_t,
            };
            // SAFETY: only the async-signal-safe setrlimit runs between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = cmd.spawn().context("spawning strata")?;
        let pid = child.id();
        let mut broker = Broker {
            bootstrap,
            metrics: extra
                .iter()
                .find_map(|e| e.strip_prefix("metrics.listener="))
                .map(str::to_string),
            child: Some(child),
            sampler: None,
            dir: Some(dir),
        };
        let deadline = Instant::now() + opts.listen_timeout;
        loop {
            if TcpStream::connect(&broker.bootstrap).is_ok() {
                break;
            }
            if let Some(st) = broker.child.as_mut().unwrap().try_wait()? {
                bail!(
                    "strata exited at start-up ({st}); stderr:\n{}",
                    broker.stderr_text()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "strata did not listen on {} in {:?}; stderr:\n{}",
                    broker.bootstrap,
                    opts.listen_timeout,
                    broker.stderr_text()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
        broker.sampler = Some(RssSampler::start(pid));
        Ok(broker)
    }

    fn external(bootstrap: String) -> Broker {
        Broker {
            bootstrap,
            metrics: None,
            child: None,
            sampler: None,
            dir: None,
        }
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    fn stderr_text(&self) -> String {
        self.dir
            .as_ref()
            .and_then(|d| std::fs::read_to_string(d.path().join("broker.stderr")).ok())
            .unwrap_or_default()
    }

    fn data_bytes(&self) -> Option<u64> {
        self.dir.as_ref().map(|d| dir_bytes(&d.path().join("data")))
    }

    /// Bytes of a topic's partition directories (not the remote cache's sparse files).
    fn topic_bytes(&self, topic: &str) -> u64 {
        let Some(d) = &self.dir else { return 0 };
        let prefix = format!("{topic}-");
        std::fs::read_dir(d.path().join("data"))
            .map(|rd| {
                rd.flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                    .map(|e| dir_bytes(&e.path()))
                    .sum()
            })
            .unwrap_or(0)
    }

    /// SIGTERM, then waits up to 30 s (SIGKILL after). Returns (exit status, seconds).
    fn stop(&mut self) -> Option<(String, f64)> {
        self.sampler.take();
        let mut child = self.child.take()?;
        let t = Instant::now();
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        loop {
            match child.try_wait() {
                Ok(Some(st)) => return Some((st.to_string(), t.elapsed().as_secs_f64())),
                Ok(None) if t.elapsed() < Duration::from_secs(30) => {
                    thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = child.kill();
                    let st = child.wait().map(|s| s.to_string()).unwrap_or_default();
                    return Some((
                        format!("no exit 30 s after SIGTERM, killed ({st})"),
                        t.elapsed().as_secs_f64(),
                    ));
                }
            }
        }
    }
}

/// How `Broker::start` runs the broker.
struct SpawnOpts {
    rust_log: &'static str,
    /// RLIMIT_NOFILE (soft = hard) of the broker process.
    nofile: Option<u64>,
    listen_timeout: Duration,
}

impl Default for SpawnOpts {
    fn default() -> SpawnOpts {
        SpawnOpts {
            rust_log: "warn",
            nofile: None,
            listen_timeout: Duration::from_secs(30),
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Resource use of one phase.
struct Usage {
    wall_s: f64,
    broker_cpu_s: Option<f64>,
    client_cpu_s: Option<f64>,
    rss_peak_mb: Option<f64>,
    rss_end_mb: Option<f64>,
    hwm_mb: Option<f64>,
}

/// Measures a phase: the broker processes' CPU and memory (summed when there are several,
/// as in the cluster mode) and this process's CPU.
struct Meter {
    /// The broker processes, each with its RSS sampler's maximum when it has one.
    procs: Vec<(u32, Option<Arc<AtomicU64>>)>,
    cpu0: Option<u64>,
    self_cpu0: Option<u64>,
    t0: Instant,
}

/// The sum of all values; None when there are none or one is missing (a process gone).
fn total(values: impl IntoIterator<Item = Option<u64>>) -> Option<u64> {
    let mut sum = None;
    for v in values {
        sum = Some(sum.unwrap_or(0) + v?);
    }
    sum
}

impl Meter {
    fn begin(broker: &Broker) -> Meter {
        let max_kb = broker.sampler.as_ref().map(|s| s.max_kb.clone());
        Meter::begin_procs(broker.pid().map(|p| (p, max_kb)).into_iter().collect())
    }

    fn begin_procs(procs: Vec<(u32, Option<Arc<AtomicU64>>)>) -> Meter {
        for (pid, max_kb) in &procs {
            if let Some(m) = max_kb {
                m.store(status_kb(*pid, "VmRSS").unwrap_or(0), Ordering::Relaxed);
            }
        }
        Meter {
            cpu0: total(procs.iter().map(|(p, _)| cpu_ticks(&p.to_string()))),
            procs,
            self_cpu0: cpu_ticks("self"),
            t0: Instant::now(),
        }
    }

    fn end(self) -> Usage {
        let wall_s = self.t0.elapsed().as_secs_f64();
        let tck = clk_tck();
        let secs = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / tck),
            _ => None,
        };
        let mb = |kb: Option<u64>| kb.map(|k| k as f64 / 1024.0);
        let kb = |key: &str| total(self.procs.iter().map(|(p, _)| status_kb(*p, key)));
        // Each process's sampled peak, at least its RSS now (the sampler can miss the end).
        let rss_peak_kb = total(self.procs.iter().map(|(p, m)| {
            let sampled = m.as_ref()?.load(Ordering::Relaxed);
            Some(sampled.max(status_kb(*p, "VmRSS").unwrap_or(0)))
        }));
        Usage {
            wall_s,
            broker_cpu_s: secs(
                self.cpu0,
                total(self.procs.iter().map(|(p, _)| cpu_ticks(&p.to_string()))),
            ),
            client_cpu_s: secs(self.self_cpu0, cpu_ticks("self")),
            rss_peak_mb: mb(rss_peak_kb),
            rss_end_mb: mb(kb("VmRSS")),
            hwm_mb: mb(kb("VmHWM")),
        }
    }
}

/// What the shared phases run against: one broker, or the cluster mode's three nodes.
trait Target {
    /// `bootstrap.servers` for the clients.
    fn bootstrap(&self) -> &str;
    /// Starts measuring the broker process(es).
    fn meter(&self) -> Meter;
}

impl Target for Broker {
    fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    fn meter(&self) -> Meter {
        Meter::begin(self)
    }
}

// ---------------------------------------------------------------------------------------
// Clients

/// Shared start of the bench: send times are nanoseconds since this instant.
fn t0() -> Instant {
    static T0: OnceLock<Instant> = OnceLock::new();
    *T0.get_or_init(Instant::now)
}

fn now_ns() -> u64 {
    t0().elapsed().as_nanos() as u64
}

static CLIENT_ERRORS: AtomicU64 = AtomicU64::new(0);

/// Client context: prints librdkafka errors/warnings, counts deliveries and, when asked,
/// records delivery latency (the delivery opaque is the send time in ns since `t0`).
#[derive(Default)]
struct Ctx {
    ok: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
    latencies: Option<Mutex<Vec<u64>>>,
    /// The cluster mode's failover phase: acknowledgements around the kill.
    failover: Option<Arc<FailoverLog>>,
}

/// What the failover phase's producer saw acknowledged.
struct FailoverLog {
    /// `now_ns` just before the leader was killed; u64::MAX until then.
    kill_ns: AtomicU64,
    /// `now_ns` of the first acknowledgement of a record sent after the kill; u64::MAX
    /// until there is one.
    first_ack_after_kill_ns: AtomicU64,
    /// Record indices (the first 8 payload bytes) of every acknowledged record.
    acked: Mutex<Vec<u64>>,
}

impl FailoverLog {
    fn new(capacity: usize) -> FailoverLog {
        FailoverLog {
            kill_ns: AtomicU64::new(u64::MAX),
            first_ack_after_kill_ns: AtomicU64::new(u64::MAX),
            acked: Mutex::new(Vec::with_capacity(capacity)),
        }
    }
}

/// Locks a mutex of plain records, which stay usable even if a holder panicked.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Ctx {
    fn with_latencies(capacity: usize) -> Ctx {
        Ctx {
            latencies: Some(Mutex::new(Vec::with_capacity(capacity))),
            ..Ctx::default()
        }
    }
}

impl ClientContext for Ctx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, msg: &str) {
        if matches!(
            level,
            RDKafkaLogLevel::Emerg
                | RDKafkaLogLevel::Alert
                | RDKafkaLogLevel::Critical
                | RDKafkaLogLevel::Error
                | RDKafkaLogLevel::Warning
        ) {
            eprintln!("[librdkafka {level:?}] {fac}: {msg}");
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // End-of-partition also arrives here as a "global error": it is expected.
        if matches!(
            error,
            KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)
        ) {
            return;
        }
        if CLIENT_ERRORS.fetch_add(1, Ordering::Relaxed) < 20 {
            eprintln!("[client error] {error}: {reason}");
        }
    }
}

impl ProducerContext for Ctx {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, sent_ns: usize) {
        match result {
            Ok(m) => {
                let now = now_ns();
                if let Some(l) = &self.latencies {
                    let lat = now.saturating_sub(sent_ns as u64);
                    l.lock().unwrap().push(lat);
                }
                if let Some(f) = &self.failover {
                    // The kill time is stored by the sending thread before any record sent
                    // after it, so such a record always compares above it here.
                    if sent_ns as u64 > f.kill_ns.load(Ordering::SeqCst) {
                        f.first_ack_after_kill_ns.fetch_min(now, Ordering::SeqCst);
                    }
                    if let Some(idx) = m.payload().and_then(|v| v.first_chunk::<8>()) {
                        lock(&f.acked).push(u64::from_le_bytes(*idx));
                    }
                }
                self.ok.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                let mut first = self.first_error.lock().unwrap();
                if first.is_none() {
                    *first = Some(e.to_string());
                }
            }
        }
    }
}

impl ConsumerContext for Ctx {}

/// Security settings every client of the current phase gets (`--security` mode).
static CLIENT_SECURITY: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

fn client_config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .set("socket.timeout.ms", "30000");
    for (k, v) in lock(&CLIENT_SECURITY).iter() {
        c.set(k, v);
    }
    c
}

fn producer(bootstrap: &str, ctx: Ctx, extra: &[(&str, &str)]) -> Result<ThreadedProducer<Ctx>> {
    let mut c = client_config(bootstrap);
    c.set("acks", "all")
        .set("compression.type", "none")
        .set("message.timeout.ms", "120000");
    for (k, v) in extra {
        c.set(*k, *v);
    }
    Ok(c.create_with_context(ctx)?)
}

fn consumer(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    extra: &[(&str, &str)],
) -> Result<BaseConsumer<Ctx>> {
    let mut c = client_config(bootstrap);
    c.set("group.id", "strata-bench-unused")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest");
    for (k, v) in extra {
        c.set(*k, *v);
    }
    let consumer: BaseConsumer<Ctx> = c.create_with_context(Ctx::default())?;
    // Learn the partition leaders first: assigned partitions with no known leader start
    // on librdkafka's 500 ms offset-query retry timer, which would count as broker time.
    consumer.fetch_metadata(Some(topic), Duration::from_secs(30))?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    Ok(consumer)
}

fn create_topic(
    rt: &tokio::runtime::Runtime,
    bootstrap: &str,
    name: &str,
    partitions: i32,
) -> Result<()> {
    create_topic_with(rt, bootstrap, name, partitions, &[])
}

fn create_topic_with(
    rt: &tokio::runtime::Runtime,
    bootstrap: &str,
    name: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) -> Result<()> {
    create_topic_rf(rt, bootstrap, name, partitions, 1, configs)
}

fn create_topic_rf(
    rt: &tokio::runtime::Runtime,
    bootstrap: &str,
    name: &str,
    partitions: i32,
    replication: i32,
    configs: &[(&str, &str)],
) -> Result<()> {
    let admin: AdminClient<Ctx> = client_config(bootstrap).create_with_context(Ctx::default())?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(replication));
    for (k, v) in configs {
        topic = topic.set(k, v);
    }
    let results = rt.block_on(admin.create_topics([&topic], &opts))?;
    for r in results {
        r.map_err(|(t, e)| anyhow!("creating topic {t}: {e}"))?;
    }
    Ok(())
}

/// Sends one record, waiting while the local queue is full.
fn send(
    p: &ThreadedProducer<Ctx>,
    topic: &str,
    partition: i32,
    payload: &[u8],
    opaque: usize,
) -> Result<()> {
    let mut record = BaseRecord::<(), [u8], usize>::with_opaque_to(topic, opaque)
        .payload(payload)
        .partition(partition);
    loop {
        match p.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                thread::sleep(Duration::from_millis(1));
            }
            Err((e, _)) => bail!("send: {e}"),
        }
    }
}

fn check_delivered(ctx: &Ctx, expected: u64, what: &str) -> Result<()> {
    let ok = ctx.ok.load(Ordering::Relaxed);
    let failed = ctx.failed.load(Ordering::Relaxed);
    if ok != expected || failed != 0 {
        bail!(
            "{what}: {ok} of {expected} records delivered, {failed} failed (first error: {})",
            ctx.first_error.lock().unwrap().as_deref().unwrap_or("none")
        );
    }
    Ok(())
}

/// Incompressible filler (xorshift64*), generated once.
fn random_payload(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ now_ns();
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

// ---------------------------------------------------------------------------------------
// Phases

#[derive(Clone, Copy)]
struct Lat {
    p50: f64,
    p99: f64,
    p999: f64,
    max: f64,
}

/// Latencies in ns to milliseconds percentiles (nearest rank).
fn percentiles(mut v: Vec<u64>) -> Option<Lat> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    let at = |q: f64| {
        let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
        v[rank - 1] as f64 / 1e6
    };
    Some(Lat {
        p50: at(0.50),
        p99: at(0.99),
        p999: at(0.999),
        max: *v.last().unwrap() as f64 / 1e6,
    })
}

struct PhaseResult {
    name: &'static str,
    records: u64,
    bytes: u64,
    secs: f64,
    lat: Option<Lat>,
    usage: Usage,
    extra: Value,
}

impl PhaseResult {
    fn mb_s(&self) -> f64 {
        self.bytes as f64 / MIB / self.secs
    }
    fn msgs_s(&self) -> f64 {
        self.records as f64 / self.secs
    }
    fn cpu_per_100mb(&self) -> Option<f64> {
        let hundreds = self.bytes as f64 / (100.0 * MIB);
        self.usage
            .broker_cpu_s
            .filter(|_| hundreds > 0.0)
            .map(|c| c / hundreds)
    }
    fn json(&self) -> Value {
        let r3 = |x: f64| (x * 1000.0).round() / 1000.0;
        let o3 = |x: Option<f64>| x.map(r3);
        let mut v = json!({
            "records": self.records,
            "bytes": self.bytes,
            "seconds": r3(self.secs),
            "mb_per_s": r3(self.mb_s()),
            "msgs_per_s": self.msgs_s().round(),
            "wall_s": r3(self.usage.wall_s),
            "broker_cpu_s": o3(self.usage.broker_cpu_s),
            "broker_cpu_s_per_100mb": o3(self.cpu_per_100mb()),
            "broker_rss_peak_mb": o3(self.usage.rss_peak_mb),
            "broker_rss_end_mb": o3(self.usage.rss_end_mb),
            "broker_vmhwm_mb": o3(self.usage.hwm_mb),
            "client_cpu_s": o3(self.usage.client_cpu_s),
        });
        if let Some(l) = self.lat {
            v["latency_ms"] =
                json!({"p50": r3(l.p50), "p99": r3(l.p99), "p999": r3(l.p999), "max": r3(l.max)});
        }
        if let (Value::Object(m), Value::Object(e)) = (&mut v, &self.extra) {
            m.extend(e.clone());
        }
        v
    }
}

fn produce_throughput(
    b: &impl Target,
    topic: &str,
    args: &Args,
    records: u64,
) -> Result<PhaseResult> {
    let p = producer(
        b.bootstrap(),
        Ctx::default(),
        &[
            ("linger.ms", "5"),
            ("batch.size", "1000000"),
            ("batch.num.messages", "100000"),
            ("queue.buffering.max.kbytes", "1048576"),
            ("queue.buffering.max.messages", "500000"),
        ],
    )?;
    let mut payload = random_payload(args.record_bytes);
    let meter = b.meter();
    let t = Instant::now();
    for i in 0..records {
        // A distinct record index in the first 8 bytes; phase 3 checks every index once.
        payload[..8].copy_from_slice(&i.to_le_bytes());
        let part = (i % args.partitions as u64) as i32;
        send(&p, topic, part, &payload, 0)?;
    }
    p.flush(Duration::from_secs(300))?;
    let secs = t.elapsed().as_secs_f64();
    let usage = meter.end();
    check_delivered(p.context(), records, "produce throughput")?;
    Ok(PhaseResult {
        name: "1 produce throughput",
        records,
        bytes: records * args.record_bytes as u64,
        secs,
        lat: None,
        usage,
        extra: json!({}),
    })
}

/// First 8 payload bytes of the warm-up records, which latency measurements skip.
const WARM_UP: u64 = u64::MAX;

/// Sends one record to each partition and waits for them: connections and metadata are
/// then in place, so the first measured records do not pay for them. Resets the counts.
fn warm_up(
    p: &ThreadedProducer<Ctx>,
    topic: &str,
    partitions: i32,
    record_bytes: usize,
) -> Result<()> {
    let mut payload = random_payload(record_bytes);
    payload[..8].copy_from_slice(&WARM_UP.to_le_bytes());
    for part in 0..partitions {
        send(p, topic, part, &payload, now_ns() as usize)?;
    }
    p.flush(Duration::from_secs(60))?;
    let ctx = p.context();
    check_delivered(ctx, partitions as u64, "warm-up")?;
    ctx.ok.store(0, Ordering::Relaxed);
    if let Some(l) = &ctx.latencies {
        l.lock().unwrap().clear();
    }
    if let Some(f) = &ctx.failover {
        lock(&f.acked).clear();
    }
    Ok(())
}

/// Sleeps until record `i` of a `rate` msgs/s schedule that began at `start` is due.
fn pace(start: Instant, i: u64, rate: u64) {
    let due = start + Duration::from_nanos((i as u128 * 1_000_000_000 / rate as u128) as u64);
    let now = Instant::now();
    if due > now {
        thread::sleep(due - now);
    }
}

/// Sends `rate` msgs/s for `seconds`, each payload starting with its send time (ns since
/// `t0`). Returns the records sent and the seconds it took.
fn paced_send(
    p: &ThreadedProducer<Ctx>,
    topic: &str,
    partitions: i32,
    payload: &mut [u8],
    rate: u64,
    seconds: u64,
) -> Result<(u64, f64)> {
    let total = rate * seconds;
    let start = Instant::now();
    for i in 0..total {
        pace(start, i, rate);
        let sent = now_ns();
        payload[..8].copy_from_slice(&sent.to_le_bytes());
        send(
            p,
            topic,
            (i % partitions as u64) as i32,
            payload,
            sent as usize,
        )?;
    }
    Ok((total, start.elapsed().as_secs_f64()))
}

fn produce_latency(b: &impl Target, topic: &str, args: &Args) -> Result<PhaseResult> {
    let linger = args.linger_ms.to_string();
    let total = args.rate * args.seconds;
    let p = producer(
        b.bootstrap(),
        Ctx::with_latencies(total as usize),
        &[("linger.ms", &linger)],
    )?;
    warm_up(&p, topic, args.partitions, args.record_bytes)?;
    let mut payload = random_payload(args.record_bytes);
    let meter = b.meter();
    let (sent, secs) = paced_send(
        &p,
        topic,
        args.partitions,
        &mut payload,
        args.rate,
        args.seconds,
    )?;
    p.flush(Duration::from_secs(120))?;
    let usage = meter.end();
    check_delivered(p.context(), sent, "produce latency")?;
    let lat = percentiles(std::mem::take(
        &mut *p.context().latencies.as_ref().unwrap().lock().unwrap(),
    ));
    Ok(PhaseResult {
        name: "2 produce latency",
        records: sent,
        bytes: sent * args.record_bytes as u64,
        secs,
        lat,
        usage,
        extra: json!({"target_rate": args.rate, "linger_ms": args.linger_ms}),
    })
}

fn consume_all(
    b: &impl Target,
    topic: &str,
    args: &Args,
    expected: u64,
    name: &'static str,
) -> Result<PhaseResult> {
    let mut seen = vec![false; expected as usize];
    let meter = b.meter();
    let t = Instant::now();
    let c = consumer(
        b.bootstrap(),
        topic,
        args.partitions,
        &[
            ("fetch.max.bytes", "52428800"),
            ("max.partition.fetch.bytes", "10485760"),
            ("receive.message.max.bytes", "104857600"),
            ("queued.max.messages.kbytes", "262144"),
            // EOF needs an empty fetch at the end, which the broker holds for this long.
            ("fetch.wait.max.ms", "100"),
        ],
    )?;
    let assigned_ms = t.elapsed().as_secs_f64() * 1000.0;
    let (mut records, mut bytes, mut dups, mut bad) = (0u64, 0u64, 0u64, 0u64);
    let mut eof = HashSet::new();
    let mut first_record: Option<f64> = None;
    let mut last_record = 0.0;
    let deadline = Instant::now() + Duration::from_secs(120 + args.produce_mb);
    while eof.len() < args.partitions as usize {
        if Instant::now() > deadline {
            bail!("consume: only {}/{} partitions reached their end; {records} of {expected} records read", eof.len(), args.partitions);
        }
        match c.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                let v = m.payload().unwrap_or_default();
                first_record.get_or_insert_with(|| t.elapsed().as_secs_f64() * 1000.0);
                records += 1;
                bytes += v.len() as u64;
                last_record = t.elapsed().as_secs_f64() * 1000.0;
                let idx = v
                    .get(..8)
                    .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
                    .filter(|i| *i < expected);
                match idx {
                    Some(i) if seen[i as usize] => dups += 1,
                    Some(i) => seen[i as usize] = true,
                    None => bad += 1,
                }
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                eof.insert(p);
            }
            Some(Err(e)) => bail!("consume error: {e}"),
            None => {}
        }
    }
    let to_eof = t.elapsed().as_secs_f64();
    let usage = meter.end();
    // Throughput is measured to the last record: end-of-partition is only reported after
    // an empty fetch at the high watermark, a long poll of up to fetch.wait.max.ms.
    let secs = (last_record / 1000.0).max(1e-3);
    let missing = seen.iter().filter(|s| !**s).count();
    if records != expected || dups != 0 || bad != 0 || missing != 0 {
        bail!("consume verification FAILED: read {records} records, produced {expected}; {dups} duplicates, {missing} missing, {bad} unrecognised");
    }
    Ok(PhaseResult {
        name,
        records,
        bytes,
        secs,
        lat: None,
        usage,
        extra: json!({
            "verified": true,
            "assigned_ms": assigned_ms.round(),
            "first_record_ms": first_record.map(|x| x.round()),
            "last_record_ms": last_record.round(),
            "seconds_to_eof": (to_eof * 1000.0).round() / 1000.0,
        }),
    })
}

fn end_to_end(b: &Broker, topic: &str, args: &Args) -> Result<PhaseResult> {
    let seconds = args.e2e_seconds.unwrap_or(args.seconds);
    let total = args.e2e_rate * seconds;
    let linger = args.linger_ms.to_string();
    let p = producer(&b.bootstrap, Ctx::default(), &[("linger.ms", &linger)])?;
    warm_up(&p, topic, args.partitions, args.record_bytes)?;
    let c = consumer(
        &b.bootstrap,
        topic,
        args.partitions,
        &[("fetch.wait.max.ms", "10"), ("fetch.min.bytes", "1")],
    )?;
    // Read past the warm-up records to end-of-partition: the tail consumer is then fetching.
    let mut eof = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while eof.len() < args.partitions as usize {
        if Instant::now() > deadline {
            bail!("e2e: tail consumer not ready in 30 s");
        }
        match c.poll(Duration::from_millis(200)) {
            Some(Err(KafkaError::PartitionEOF(p))) => {
                eof.insert(p);
            }
            Some(Err(e)) => bail!("e2e consumer: {e}"),
            Some(Ok(m)) if m.payload().and_then(|v| v.get(..8)) == Some(&WARM_UP.to_le_bytes()) => {
            }
            Some(Ok(_)) => bail!("e2e: fresh topic holds an unexpected record"),
            None => {}
        }
    }
    let done = Arc::new(AtomicBool::new(false));
    let tail = {
        let done = done.clone();
        thread::spawn(move || -> Result<Vec<u64>> {
            let mut lats = Vec::with_capacity(total as usize);
            let mut grace: Option<Instant> = None;
            while (lats.len() as u64) < total {
                if done.load(Ordering::Relaxed) {
                    let g = *grace.get_or_insert_with(|| Instant::now() + Duration::from_secs(30));
                    if Instant::now() > g {
                        break;
                    }
                }
                match c.poll(Duration::from_millis(100)) {
                    Some(Ok(m)) => {
                        let recv = now_ns();
                        let v = m.payload().unwrap_or_default();
                        let sent = u64::from_le_bytes(v[..8].try_into()?);
                        lats.push(recv.saturating_sub(sent));
                    }
                    Some(Err(KafkaError::PartitionEOF(_))) | None => {}
                    Some(Err(e)) => bail!("e2e consumer: {e}"),
                }
            }
            Ok(lats)
        })
    };
    let mut payload = random_payload(args.record_bytes);
    let meter = Meter::begin(b);
    let sent = paced_send(
        &p,
        topic,
        args.partitions,
        &mut payload,
        args.e2e_rate,
        seconds,
    );
    let flushed = p.flush(Duration::from_secs(120));
    done.store(true, Ordering::Relaxed);
    let lats = tail
        .join()
        .map_err(|_| anyhow!("tail consumer panicked"))??;
    let usage = meter.end();
    let (sent, secs) = sent?;
    flushed?;
    check_delivered(p.context(), sent, "end-to-end produce")?;
    if lats.len() as u64 != sent {
        bail!("e2e: received {} of {sent} records", lats.len());
    }
    Ok(PhaseResult {
        name: "4 end-to-end",
        records: sent,
        bytes: sent * args.record_bytes as u64,
        secs,
        lat: percentiles(lats),
        usage,
        extra: json!({"target_rate": args.e2e_rate, "linger_ms": args.linger_ms, "fetch_wait_max_ms": 10}),
    })
}

// ---------------------------------------------------------------------------------------
// Output

fn print_table(rows: &[PhaseResult]) {
    let f = |x: Option<f64>, prec: usize| match x {
        Some(v) => format!("{v:.prec$}"),
        None => "n/a".to_string(),
    };
    let lat = |r: &PhaseResult, g: fn(&Lat) -> f64| match &r.lat {
        Some(l) => format!("{:.2}", g(l)),
        None => "-".to_string(),
    };
    println!();
    println!(
        "{:<22} {:>8} {:>9} {:>8} {:>8} {:>8} {:>8} {:>9} {:>10} {:>9} {:>8} {:>8} {:>9}",
        "phase",
        "MiB/s",
        "msgs/s",
        "p50 ms",
        "p99 ms",
        "p999 ms",
        "max ms",
        "brk CPU s",
        "CPU s/100M",
        "RSS pk MB",
        "RSS end",
        "VmHWM",
        "client s"
    );
    println!(
        "{}",
        "-".repeat(22 + 8 + 9 + 8 * 4 + 9 + 10 + 9 + 8 + 8 + 9 + 12)
    );
    for r in rows {
        println!(
            "{:<22} {:>8.1} {:>9.0} {:>8} {:>8} {:>8} {:>8} {:>9} {:>10} {:>9} {:>8} {:>8} {:>9}",
            r.name,
            r.mb_s(),
            r.msgs_s(),
            lat(r, |l| l.p50),
            lat(r, |l| l.p99),
            lat(r, |l| l.p999),
            lat(r, |l| l.max),
            f(r.usage.broker_cpu_s, 2),
            f(r.cpu_per_100mb(), 3),
            f(r.usage.rss_peak_mb, 1),
            f(r.usage.rss_end_mb, 1),
            f(r.usage.hwm_mb, 1),
            f(r.usage.client_cpu_s, 2),
        );
    }
}

fn run(args: &Args, broker: &mut Broker, rt: &tokio::runtime::Runtime) -> Result<Value> {
    let tag = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis()
    );
    let topics = ["tput", "lat", "e2e"].map(|t| format!("bench-{t}-{tag}"));
    for t in &topics {
        create_topic(rt, &broker.bootstrap, t, args.partitions)?;
    }
    let records = args.produce_mb * 1024 * 1024 / args.record_bytes as u64;
    let mut rows = Vec::new();

    println!(
        "phase 1: producing {records} x {} B to {} ...",
        args.record_bytes, topics[0]
    );
    rows.push(produce_throughput(broker, &topics[0], args, records)?);
    let data_bytes = broker.data_bytes();
    println!(
        "  {:.1} MiB/s in {:.1} s; data dir {}",
        rows[0].mb_s(),
        rows[0].secs,
        data_bytes.map_or("n/a".into(), |b| format!("{:.1} MiB", b as f64 / MIB))
    );

    println!(
        "phase 2: {} msgs/s for {} s (acks=all, linger.ms={}) ...",
        args.rate, args.seconds, args.linger_ms
    );
    rows.push(produce_latency(broker, &topics[1], args)?);

    println!("phase 3: consuming {} from the beginning ...", topics[0]);
    rows.push(consume_all(
        broker,
        &topics[0],
        args,
        records,
        "3 consume from start",
    )?);
    println!(
        "  {:.1} MiB/s: assigned at {:.0} ms, first record at {:.0} ms, last at {:.0} ms, EOF on all partitions at {:.0} ms; all {records} records verified",
        rows[2].mb_s(),
        rows[2].extra["assigned_ms"].as_f64().unwrap_or(0.0),
        rows[2].extra["first_record_ms"].as_f64().unwrap_or(0.0),
        rows[2].extra["last_record_ms"].as_f64().unwrap_or(0.0),
        rows[2].extra["seconds_to_eof"].as_f64().unwrap_or(0.0) * 1000.0,
    );

    println!(
        "phase 4: end-to-end, {} msgs/s for {} s ...",
        args.e2e_rate,
        args.e2e_seconds.unwrap_or(args.seconds)
    );
    rows.push(end_to_end(broker, &topics[2], args)?);

    // Broker CPU while idle: a busy loop or a leak of work shows up here.
    let idle = broker.pid().map(|_| {
        let m = Meter::begin(broker);
        thread::sleep(Duration::from_secs(2));
        m.end()
    });
    let idle_cpu = idle.and_then(|u| u.broker_cpu_s);
    let stopped = broker.stop();
    print_table(&rows);

    let stderr = broker.stderr_text();
    let lines: Vec<&str> = stderr.lines().collect();
    let count = |lvl: &str| lines.iter().filter(|l| l.contains(lvl)).count();
    let (warns, errors) = (count("WARN"), count("ERROR"));
    println!();
    println!(
        "broker idle CPU over 2 s after the phases: {}",
        idle_cpu.map_or("n/a".into(), |c| format!("{c:.2} s"))
    );
    if let Some((status, secs)) = &stopped {
        println!("broker stop (SIGTERM): {status} after {secs:.2} s");
        println!(
            "broker stderr: {} lines, {warns} WARN, {errors} ERROR",
            lines.len()
        );
        for l in lines.iter().rev().take(20).rev() {
            println!("  | {l}");
        }
    }
    let client_errors = CLIENT_ERRORS.load(Ordering::Relaxed);
    if client_errors > 0 {
        println!("librdkafka client errors: {client_errors}");
    }

    let mut phases = serde_json::Map::new();
    for (key, r) in [
        "produce_throughput",
        "produce_latency",
        "consume",
        "end_to_end",
    ]
    .iter()
    .zip(&rows)
    {
        phases.insert(key.to_string(), r.json());
    }
    Ok(json!({
        "bench": "strata-bench",
        "broker": if broker.dir.is_some() { "spawned" } else { "external" },
        "record_bytes": args.record_bytes,
        "partitions": args.partitions,
        "produce_mb": args.produce_mb,
        "clk_tck": clk_tck(),
        "data_dir_bytes_after_phase1": data_bytes,
        "broker_idle_cpu_s_2s": idle_cpu,
        "broker_stop": stopped.as_ref().map(|(s, t)| json!({"status": s, "seconds": t})),
        "broker_stderr_lines": stopped.as_ref().map(|_| lines.len()),
        "broker_stderr_warn": stopped.as_ref().map(|_| warns),
        "broker_stderr_error": stopped.as_ref().map(|_| errors),
        "client_errors": client_errors,
        "phases": phases,
    }))
}

fn main() -> Result<()> {
    // `cargo bench` passes `--bench`. `cargo test --all-targets` also runs bench targets
    // (even with `test = false`), with no arguments or libtest's (`--nocapture`, `--list`,
    // ...): a 1 GiB run there would stall the test suite, so without `--bench` the bench
    // runs only when given flags it understands.
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let parsed = Args::try_parse();
    let mut args = match parsed {
        Ok(a) if a.bench || !raw.is_empty() => a,
        Err(e) if raw.iter().any(|a| a == "--bench") => e.exit(),
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelp => e.exit(),
        _ => {
            if !raw.iter().any(|a| a == "--list") {
                println!(
                    "strata-bench: skipped (run by `cargo test`?); use `cargo bench --bench strata-bench [-- FLAGS]`"
                );
            }
            return Ok(());
        }
    };
    let partitions_mode = matches!(args.partitions_flag, Some(None));
    args.partitions = args.partitions_flag.flatten().unwrap_or(6);
    // The cluster mode measures latency at a rate that leaves the three processes and
    // the client room on a small machine, and fails over at the same rate.
    args.rate = args
        .rate_flag
        .unwrap_or(if args.cluster { 5_000 } else { 10_000 });
    if args.record_bytes < 16 || args.partitions < 1 || args.rate == 0 || args.e2e_rate == 0 {
        bail!("--record-bytes must be >= 16, --partitions >= 1, rates > 0");
    }
    if args.security_groups {
        println!("{}", security_group_check_cost());
        return Ok(());
    }
    if args.security {
        t0();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let fill = page_cache_fill(&args)?;
        let mut v = run_security(&args, &rt)?;
        v["page_cache"] = json!(if fill.is_some() { "filled" } else { "as found" });
        drop(fill);
        println!();
        println!("{v}");
        return Ok(());
    }
    t0();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    if args.cluster {
        if partitions_mode || args.broker.is_some() || args.tiered || args.compression {
            bail!("--cluster starts its own three nodes; it cannot be combined with --partitions (mode), --broker, --tiered or --compression");
        }
        let fill = page_cache_fill(&args)?;
        let mut v = run_cluster(&args, &rt)?;
        v["page_cache"] = json!(if fill.is_some() { "filled" } else { "as found" });
        drop(fill);
        println!();
        println!("{v}");
        return Ok(());
    }
    if partitions_mode {
        let v = run_partitions(&args, &rt)?;
        println!();
        println!("{v}");
        return Ok(());
    }
    let mut moto = None;
    let mut extra = Vec::new();
    if args.tiered {
        let endpoint = match &args.s3_endpoint {
            Some(e) => e.clone(),
            None => {
                let (child, endpoint) = start_moto()?;
                moto = Some(child);
                endpoint
            }
        };
        extra = tiered_overrides(&endpoint);
    }
    extra.extend(args.set.iter().cloned());
    let mut broker = match &args.broker {
        Some(addr) => Broker::external(addr.clone()),
        None => Broker::spawn(&extra)?,
    };
    println!(
        "strata-bench: broker {} ({}), data {}",
        broker.bootstrap,
        broker
            .pid()
            .map_or("external".into(), |p| format!("pid {p}")),
        broker
            .dir
            .as_ref()
            .map_or(PathBuf::from("n/a"), |d| d.path().join("data"))
            .display()
    );
    let result = if args.tiered {
        run_tiered(&args, &mut broker, &rt)
    } else if args.compression {
        run_compression(&args, &mut broker, &rt)
    } else {
        run(&args, &mut broker, &rt)
    };
    if let Some(mut m) = moto {
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{}", m.id())])
            .status();
        let _ = m.wait();
    }
    match result {
        Ok(v) => {
            println!();
            println!("{v}");
            Ok(())
        }
        Err(e) => {
            broker.stop();
            let stderr = broker.stderr_text();
            if !stderr.is_empty() {
                eprintln!("broker stderr (last 40 lines):");
                for l in stderr
                    .lines()
                    .rev()
                    .take(40)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                {
                    eprintln!("  | {l}");
                }
            }
            Err(e)
        }
    }
}

// ---------------------------------------------------------------------------------------
// Tiered mode

/// Starts moto through the users' no-docker script; returns it and its endpoint.
fn start_moto() -> Result<(Child, String)> {
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let log = std::env::temp_dir().join(format!("strata-bench-moto-{port}.log"));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("localstack/run-local.sh");
    let child = {
        use std::os::unix::process::CommandExt;
        Command::new(script)
            .args(["--s3-only", "--port", &port.to_string()])
            .stdout(std::fs::File::create(&log)?)
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .context("starting localstack/run-local.sh")?
    };
    let deadline = Instant::now() + Duration::from_secs(180);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("ready")
    {
        if Instant::now() > deadline {
            bail!("moto did not start: {}", std::fs::read_to_string(&log)?);
        }
        thread::sleep(Duration::from_millis(200));
    }
    Ok((child, format!("http://127.0.0.1:{port}")))
}

fn tiered_overrides(endpoint: &str) -> Vec<String> {
    let metrics_port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(9644);
    vec![
        "object_store.url=s3://strata/bench".into(),
        format!("object_store.endpoint={endpoint}"),
        "object_store.allow_http=true".into(),
        "object_store.region=us-east-1".into(),
        "object_store.access_key_id=test".into(),
        "object_store.secret_access_key=test".into(),
        "remote.log.manager.task.interval.ms=500".into(),
        "log.retention.check.interval.ms=500".into(),
        format!("metrics.listener=127.0.0.1:{metrics_port}"),
    ]
}

/// The broker's /metrics text (the port is in its overrides).
fn scrape(metrics_addr: &str) -> Result<String> {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(metrics_addr)?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// Sum of a metric's samples whose line contains `filter`.
fn metric(text: &str, name: &str, filter: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#') && l.split([' ', '{']).next() == Some(name))
        .filter(|l| l.contains(filter))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn alter_topic(
    rt: &tokio::runtime::Runtime,
    bootstrap: &str,
    topic: &str,
    configs: &[(&str, &str)],
) -> Result<()> {
    use rdkafka::admin::{AlterConfig, ResourceSpecifier};
    let admin: AdminClient<Ctx> = client_config(bootstrap).create_with_context(Ctx::default())?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let mut alter = AlterConfig::new(ResourceSpecifier::Topic(topic));
    for (k, v) in configs {
        alter = alter.set(k, v);
    }
    for r in rt.block_on(admin.alter_configs([&alter], &opts))? {
        r.map_err(|(t, e)| anyhow!("altering {t:?}: {e}"))?;
    }
    Ok(())
}

/// Demand chunk lookups by where they were answered so far: (memory, disk, joined a
/// load in flight such as a prefetch, object store).
fn cache_counts(text: &str) -> [f64; 4] {
    let m = |tier: &str| {
        metric(
            text,
            "strata_remote_cache_lookups_total",
            &format!("tier=\"{tier}\""),
        )
    };
    [m("memory"), m("disk"), m("in_flight"), m("object_store")]
}

fn run_tiered(args: &Args, broker: &mut Broker, rt: &tokio::runtime::Runtime) -> Result<Value> {
    let metrics = tiered_metrics_addr(broker)?;
    let topic = format!("bench-tiered-{}", std::process::id());
    let segment = (args.segment_mb * 1024 * 1024).to_string();
    let base = [
        ("remote.storage.enable", "true"),
        ("segment.bytes", segment.as_str()),
    ];
    create_topic_with(rt, &broker.bootstrap, &topic, args.partitions, &base)?;
    let records = args.produce_mb * 1024 * 1024 / args.record_bytes as u64;
    let mut rows = Vec::new();
    println!(
        "tiered phase 1: producing {records} x {} B to {topic} ...",
        args.record_bytes
    );
    rows.push(produce_throughput(broker, &topic, args, records)?);
    // Roll every active segment (segment.ms=1 plus one more record each) so the whole
    // produced history is in sealed segments that can tier.
    let mut configs = base.to_vec();
    configs.push(("segment.ms", "1"));
    alter_topic(rt, &broker.bootstrap, &topic, &configs)?;
    thread::sleep(Duration::from_millis(20));
    let p = producer(&broker.bootstrap, Ctx::default(), &[])?;
    let mut payload = random_payload(args.record_bytes);
    for part in 0..args.partitions {
        payload[..8].copy_from_slice(&(records + part as u64).to_le_bytes());
        send(&p, &topic, part, &payload, 0)?;
    }
    p.flush(Duration::from_secs(30))?;
    let expected = records + args.partitions as u64;
    alter_topic(rt, &broker.bootstrap, &topic, &base)?;

    println!("tiered phase 2: reading everything from local disk ...");
    rows.push(consume_all(
        broker,
        &topic,
        args,
        expected,
        "T2 local read",
    )?);

    println!("tiered phase 3: waiting for uploads, then dropping local copies ...");
    let t = Instant::now();
    let produced_bytes = records * args.record_bytes as u64;
    loop {
        let text = scrape(&metrics)?;
        let uploaded = metric(&text, "strata_remote_bytes_uploaded_total", "");
        let lag = metric(&text, "strata_remote_upload_lag_segments", "");
        if uploaded >= produced_bytes as f64 && lag == 0.0 {
            println!(
                "  {:.0} MiB uploaded in {:.1} s after the read",
                uploaded / MIB,
                t.elapsed().as_secs_f64()
            );
            break;
        }
        if t.elapsed() > Duration::from_secs(600) {
            bail!("uploads did not finish: {uploaded} bytes, lag {lag}");
        }
        thread::sleep(Duration::from_millis(500));
    }
    let mut trimmed = base.to_vec();
    trimmed.push(("local.retention.bytes", "0"));
    alter_topic(rt, &broker.bootstrap, &topic, &trimmed)?;
    let t = Instant::now();
    // Only the fresh active segments (one record each) may stay.
    let left = args.partitions as u64 * (1 << 20);
    while broker.topic_bytes(&topic) > left {
        if t.elapsed() > Duration::from_secs(300) {
            bail!("local copies were not deleted");
        }
        thread::sleep(Duration::from_millis(200));
    }
    println!(
        "  local data of the topic now {:.1} MiB",
        broker.topic_bytes(&topic) as f64 / MIB
    );

    let mut ratios = Vec::new();
    for (name, label) in [
        ("T4 remote read, cold cache", "cold"),
        ("T5 remote read, warm cache", "warm"),
    ] {
        println!("tiered phase: {name} ...");
        let before = cache_counts(&scrape(&metrics)?);
        rows.push(consume_all(broker, &topic, args, expected, name)?);
        let after = cache_counts(&scrape(&metrics)?);
        let [mem, disk, in_flight, miss] = [0, 1, 2, 3].map(|i| after[i] - before[i]);
        let total = (mem + disk + in_flight + miss).max(1.0);
        println!(
            "  {:.1} MiB/s; demand chunk lookups: {mem} memory, {disk} disk, {in_flight} joined a prefetch in flight, {miss} object store (hit ratio {:.1}%, {:.1}% with prefetch joins)",
            rows.last().map(|r| r.mb_s()).unwrap_or(0.0),
            100.0 * (mem + disk) / total,
            100.0 * (mem + disk + in_flight) / total
        );
        ratios.push(json!({
            "read": label,
            "memory_hits": mem,
            "disk_hits": disk,
            "prefetch_joins": in_flight,
            "misses": miss,
            "hit_ratio": (mem + disk) / total,
        }));
    }
    let stopped = broker.stop();
    print_table(&rows);
    if let Some((status, secs)) = &stopped {
        println!("broker stop (SIGTERM): {status} after {secs:.2} s");
    }
    let local = rows[1].mb_s();
    let cold = rows[2].mb_s();
    println!(
        "cold remote read / local read = {:.2}; warm / local = {:.2}",
        cold / local,
        rows[3].mb_s() / local
    );
    let mut phases = serde_json::Map::new();
    for (key, r) in ["produce", "local_read", "remote_cold", "remote_warm"]
        .iter()
        .zip(&rows)
    {
        phases.insert(key.to_string(), r.json());
    }
    Ok(json!({
        "bench": "strata-bench --tiered",
        "record_bytes": args.record_bytes,
        "partitions": args.partitions,
        "produce_mb": args.produce_mb,
        "segment_mb": args.segment_mb,
        "cache": ratios,
        "phases": phases,
    }))
}

/// The metrics listener the spawned broker was given.
fn tiered_metrics_addr(broker: &Broker) -> Result<String> {
    broker
        .metrics
        .clone()
        .ok_or_else(|| anyhow!("tiered mode needs a spawned broker with metrics.listener"))
}

// ---------------------------------------------------------------------------------------
// Compression mode

/// `count` distinct compressible payloads of `len` bytes: JSON-like events from a small
/// vocabulary with random ids and amounts, roughly how application events compress.
fn compressible_payloads(count: usize, len: usize) -> Vec<Vec<u8>> {
    const WORDS: &[&str] = &[
        "click",
        "view",
        "purchase",
        "refund",
        "checkout",
        "search",
        "login",
        "logout",
        "mobile",
        "desktop",
        "tablet",
        "eu-west-1",
        "us-east-1",
        "premium",
        "free",
        "trial",
        "cart",
        "wishlist",
        "recommended",
        "campaign",
        "newsletter",
        "organic",
    ];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ now_ns();
    let mut next = move || {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    (0..count)
        .map(|_| {
            // The first 8 bytes are overwritten with the record index.
            let mut out = b"########".to_vec();
            while out.len() < len {
                let r = next();
                let event = format!(
                    "{{\"user\":\"user-{}\",\"event\":\"{}\",\"device\":\"{}\",\"amount\":{}.{:02},\"tags\":[\"{}\",\"{}\"],\"ts\":{}}},",
                    r % 100_000,
                    WORDS[(r >> 17) as usize % WORDS.len()],
                    WORDS[(r >> 23) as usize % WORDS.len()],
                    (r >> 29) % 1000,
                    (r >> 39) % 100,
                    WORDS[(r >> 46) as usize % WORDS.len()],
                    WORDS[(r >> 52) as usize % WORDS.len()],
                    1_700_000_000_000u64 + (r >> 20) % 1_000_000_000,
                );
                out.extend_from_slice(event.as_bytes());
            }
            out.truncate(len);
            out
        })
        .collect()
}

/// Produces `records` compressible records with a producer using `codec`.
fn produce_compressible(
    b: &Broker,
    topic: &str,
    args: &Args,
    records: u64,
    codec: &str,
    payloads: &mut [Vec<u8>],
    name: &'static str,
) -> Result<PhaseResult> {
    let p = producer(
        &b.bootstrap,
        Ctx::default(),
        &[
            ("compression.type", codec),
            ("linger.ms", "5"),
            ("batch.size", "1000000"),
            ("batch.num.messages", "100000"),
            ("queue.buffering.max.kbytes", "1048576"),
            ("queue.buffering.max.messages", "500000"),
        ],
    )?;
    let meter = Meter::begin(b);
    let t = Instant::now();
    for i in 0..records {
        let payload = &mut payloads[i as usize % payloads.len()];
        payload[..8].copy_from_slice(&i.to_le_bytes());
        let part = (i % args.partitions as u64) as i32;
        send(&p, topic, part, payload, 0)?;
    }
    p.flush(Duration::from_secs(600))?;
    let secs = t.elapsed().as_secs_f64();
    let usage = meter.end();
    check_delivered(p.context(), records, name)?;
    Ok(PhaseResult {
        name,
        records,
        bytes: records * args.record_bytes as u64,
        secs,
        lat: None,
        usage,
        extra: json!({ "producer_compression": codec }),
    })
}

/// Time per accept-time check with 1,000 ingress rules (10 groups of 100 CIDRs on one
/// listener): a denied peer (every rule tried) and one admitted by the last rule.
fn security_group_check_cost() -> Value {
    use strata::network::security_groups::SecurityGroups;
    let mut groups = serde_json::Map::new();
    for g in 0..10 {
        let rules: Vec<Value> = (0..100)
            .map(|r| json!({"cidr": format!("10.{g}.{r}.0/24"), "ports": "9092-9098"}))
            .collect();
        groups.insert(format!("g{g}"), json!({"ingress": rules}));
    }
    let names: Vec<String> = (0..10).map(|g| format!("g{g}")).collect();
    let text = json!({"security_groups": groups, "listeners": {"CLIENT": names}}).to_string();
    let parse_start = Instant::now();
    let sg = SecurityGroups::parse(&text, &["CLIENT".to_string()]).expect("valid rules");
    let parse_ms = parse_start.elapsed().as_secs_f64() * 1e3;
    assert_eq!(sg.rule_count(), 1000);
    let r3 = |x: f64| (x * 1000.0).round() / 1000.0;
    let time = |ip: &str, admitted: bool| {
        let peer: std::net::IpAddr = ip.parse().unwrap();
        let n = 200_000u32;
        let t = Instant::now();
        for _ in 0..n {
            assert_eq!(
                std::hint::black_box(&sg)
                    .check("CLIENT", 9092, peer)
                    .admitted(),
                admitted
            );
        }
        t.elapsed().as_nanos() as f64 / n as f64
    };
    json!({
        "security_groups": {
            "rules": 1000,
            "parse_ms": r3(parse_ms),
            "denied_check_ns": r3(time("192.168.1.1", false)),
            "last_rule_admits_check_ns": r3(time("10.9.99.7", true)),
        }
    })
}

fn run_compression(
    args: &Args,
    broker: &mut Broker,
    rt: &tokio::runtime::Runtime,
) -> Result<Value> {
    if broker.pid().is_none() {
        bail!("--compression needs a spawned broker (its CPU and data dir are measured)");
    }
    let tag = std::process::id();
    let records = args.produce_mb * 1024 * 1024 / args.record_bytes as u64;
    let mut payloads = compressible_payloads(4096, args.record_bytes);
    let level = args.zstd_level.to_string();
    let cases = [
        (
            "a zstd topic",
            format!("bench-zstd-topic-{tag}"),
            vec![
                ("compression.type", "zstd"),
                ("compression.zstd.level", level.as_str()),
            ],
            "none",
        ),
        (
            "b producer topic",
            format!("bench-producer-topic-{tag}"),
            vec![("compression.type", "producer")],
            "zstd",
        ),
    ];
    let mut out = serde_json::Map::new();
    let mut rows = Vec::new();
    let mut summary = Vec::new();
    for (name, topic, configs, codec) in &cases {
        create_topic_with(rt, &broker.bootstrap, topic, args.partitions, configs)?;
        println!(
            "compression phase ({name}): {records} x {} B, producer compression {codec}, topic {configs:?} ...",
            args.record_bytes
        );
        let produced =
            produce_compressible(broker, topic, args, records, codec, &mut payloads, name)?;
        let disk = broker.topic_bytes(topic);
        let gib = produced.bytes as f64 / (1024.0 * MIB);
        let cpu_per_gib = produced.usage.broker_cpu_s.map(|c| c / gib);
        println!(
            "  {:.1} MiB/s; broker CPU {:.2} s = {:.2} s per GiB produced; on disk {:.1} MiB ({:.2}x smaller)",
            produced.mb_s(),
            produced.usage.broker_cpu_s.unwrap_or(f64::NAN),
            cpu_per_gib.unwrap_or(f64::NAN),
            disk as f64 / MIB,
            produced.bytes as f64 / disk.max(1) as f64,
        );
        let read = consume_all(broker, topic, args, records, "  read back")?;
        summary.push((*name, cpu_per_gib, disk, produced.bytes));
        let mut v = produced.json();
        v["broker_cpu_s_per_gib"] = json!(cpu_per_gib.map(|c| (c * 1000.0).round() / 1000.0));
        v["bytes_on_disk"] = json!(disk);
        v["topic_configs"] = json!(configs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>());
        v["read_back"] = read.json();
        out.insert(name.replace(' ', "_"), v);
        rows.push(produced);
        rows.push(read);
    }
    let stopped = broker.stop();
    print_table(&rows);
    println!();
    for (name, cpu, disk, bytes) in &summary {
        println!(
            "{name:<18} broker CPU-seconds per GiB produced: {:>6.2}   bytes on disk: {disk} ({:.1} MiB of {:.1} MiB produced)",
            cpu.unwrap_or(f64::NAN),
            *disk as f64 / MIB,
            *bytes as f64 / MIB,
        );
    }
    let stderr = broker.stderr_text();
    let warns = stderr.lines().filter(|l| l.contains("WARN")).count();
    let errors = stderr.lines().filter(|l| l.contains("ERROR")).count();
    println!("broker stderr: {warns} WARN, {errors} ERROR");
    Ok(json!({
        "bench": "strata-bench --compression",
        "record_bytes": args.record_bytes,
        "partitions": args.partitions,
        "produce_mb": args.produce_mb,
        "zstd_level": args.zstd_level,
        "broker_stop": stopped.as_ref().map(|(s, t)| json!({"status": s, "seconds": t})),
        "broker_stderr_warn": warns,
        "broker_stderr_error": errors,
        "phases": out,
    }))
}

// ---------------------------------------------------------------------------------------
// Partitions mode

/// Entries of /proc/PID/fd: the process's open files (sockets included).
fn fd_count(pid: u32) -> Option<u64> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()
        .map(|rd| rd.count() as u64)
}

/// Counts the broker's open files every 20 ms and keeps the maximum since the last take.
struct FdSampler {
    max: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    handle: Option<thread::JoinHandle<()>>,
}

impl FdSampler {
    fn start(pid: u32) -> FdSampler {
        let max = Arc::new(AtomicU64::new(fd_count(pid).unwrap_or(0)));
        let stop = Arc::new(AtomicBool::new(false));
        let handle = {
            let (max, stop) = (max.clone(), stop.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(n) = fd_count(pid) {
                        max.fetch_max(n, Ordering::Relaxed);
                    }
                    thread::sleep(Duration::from_millis(20));
                }
            })
        };
        FdSampler {
            max,
            stop,
            handle: Some(handle),
        }
    }

    /// The maximum since the last take; the next maximum starts from `now`.
    fn take(&self, now: u64) -> u64 {
        self.max.swap(now, Ordering::Relaxed).max(now)
    }
}

impl Drop for FdSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// RLIMIT_NOFILE for the broker: 65536, or the bench's hard limit when lower.
fn broker_nofile() -> (u64, u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given.
    let hard = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        lim.rlim_max
    } else {
        65536
    };
    (65536.min(hard), hard)
}

/// What a raw Metadata v1 request for all topics returned.
struct RawMetadata {
    secs: f64,
    bytes: usize,
    /// Partitions of all topics (internal ones included).
    total: u64,
    /// Partitions of the bench topic.
    partitions: u64,
    /// Partitions of the bench topic with no error and a leader.
    led: u64,
    /// The active controller's node id (-1 when there is none).
    controller: i32,
}

/// One Metadata v1 request for all topics (null topic array) on a fresh connection:
/// the time from sending it to the last response byte, and the partitions it lists.
fn raw_metadata(bootstrap: &str, topic: &str, timeout: Duration) -> Result<RawMetadata> {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(bootstrap)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_nodelay(true)?;
    let client = b"strata-bench";
    let mut req = Vec::new();
    req.extend_from_slice(&3i16.to_be_bytes()); // Metadata
    req.extend_from_slice(&1i16.to_be_bytes()); // v1
    req.extend_from_slice(&7i32.to_be_bytes()); // correlation id
    req.extend_from_slice(&(client.len() as i16).to_be_bytes());
    req.extend_from_slice(client);
    req.extend_from_slice(&(-1i32).to_be_bytes()); // all topics
    let mut framed = (req.len() as i32).to_be_bytes().to_vec();
    framed.extend_from_slice(&req);
    let t = Instant::now();
    s.write_all(&framed)?;
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let mut body = vec![0u8; i32::from_be_bytes(len).max(0) as usize];
    s.read_exact(&mut body)?;
    let secs = t.elapsed().as_secs_f64();
    // Response v1: correlation id, brokers [id, host, port, rack], controller id,
    // topics [error, name, internal, partitions [error, index, leader, replicas, isr]].
    let mut pos = 0usize;
    let mut take = |n: usize| -> Result<&[u8]> {
        let b = body
            .get(pos..pos + n)
            .ok_or_else(|| anyhow!("short Metadata response"))?;
        pos += n;
        Ok(b)
    };
    fn i16_(b: &[u8]) -> i16 {
        i16::from_be_bytes([b[0], b[1]])
    }
    fn i32_(b: &[u8]) -> i32 {
        i32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }
    take(4)?;
    for _ in 0..i32_(take(4)?).max(0) {
        take(4)?;
        let host = i16_(take(2)?).max(0) as usize;
        take(host)?;
        take(4)?;
        let rack = i16_(take(2)?).max(0) as usize;
        take(rack)?;
    }
    let controller = i32_(take(4)?);
    let (mut total, mut partitions, mut led) = (0u64, 0u64, 0u64);
    for _ in 0..i32_(take(4)?).max(0) {
        take(2)?;
        let name = i16_(take(2)?).max(0) as usize;
        let ours = take(name)? == topic.as_bytes();
        take(1)?;
        for _ in 0..i32_(take(4)?).max(0) {
            let err = i16_(take(2)?);
            take(4)?;
            let leader = i32_(take(4)?);
            for _ in 0..2 {
                let n = i32_(take(4)?).max(0) as usize;
                take(4 * n)?;
            }
            total += 1;
            if ours {
                partitions += 1;
                if err == 0 && leader >= 0 {
                    led += 1;
                }
            }
        }
    }
    Ok(RawMetadata {
        secs,
        bytes: body.len() + 4,
        total,
        partitions,
        led,
        controller,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The `key=value` field of a broker log line.
fn log_field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

fn run_partitions(args: &Args, rt: &tokio::runtime::Runtime) -> Result<Value> {
    if args.broker.is_some() {
        bail!("--partitions (mode) spawns its own brokers; it cannot use --broker");
    }
    let (nofile, hard) = broker_nofile();
    println!(
        "strata-bench --partitions: counts {:?}; broker RLIMIT_NOFILE soft=hard={nofile} (bench hard limit {hard}{})",
        args.partition_counts,
        if nofile < 65536 { ", below 65536" } else { "" }
    );
    let mut cases = Vec::new();
    for &n in &args.partition_counts {
        println!();
        println!("=== {n} partitions ===");
        let t = Instant::now();
        let case = match partitions_case(args, rt, n, nofile) {
            Ok(v) => v,
            Err(e) => {
                println!("  FAILED: {e:#}");
                json!({"partitions": n, "error": format!("{e:#}")})
            }
        };
        let wall = t.elapsed().as_secs_f64();
        println!("  ({n} partitions took {wall:.0} s)");
        let mut case = case;
        case["case_wall_s"] = json!((wall * 10.0).round() / 10.0);
        cases.push(case);
    }

    println!();
    let g = |c: &Value, k: &str, prec: usize| match c.pointer(k).and_then(Value::as_f64) {
        Some(v) => format!("{v:.prec$}"),
        None => "-".to_string(),
    };
    println!(
        "{:>7} {:>9} {:>8} {:>8} {:>9} {:>9} {:>9} {:>10} {:>9} {:>7} {:>7} {:>9} {:>9} {:>9}",
        "parts",
        "create s",
        "fd peak",
        "fd idle",
        "RSS pk MB",
        "RSS idle",
        "meta ms",
        "meta bytes",
        "rdk meta",
        "p50 ms",
        "p99 ms",
        "listen s",
        "ready s",
        "recov ms"
    );
    println!("{}", "-".repeat(132));
    for c in &cases {
        println!(
            "{:>7} {:>9} {:>8} {:>8} {:>9} {:>9} {:>9} {:>10} {:>9} {:>7} {:>7} {:>9} {:>9} {:>9}",
            c["partitions"].as_i64().unwrap_or(0),
            g(c, "/create_s", 2),
            g(c, "/open_files/peak", 0),
            g(c, "/open_files/idle", 0),
            g(c, "/rss_mb/peak", 1),
            g(c, "/rss_mb/idle", 1),
            g(c, "/metadata/raw_v1_median_ms", 1),
            g(c, "/metadata/response_bytes", 0),
            g(c, "/metadata/rdkafka_median_ms", 1),
            g(c, "/produce/latency_ms/p50", 2),
            g(c, "/produce/latency_ms/p99", 2),
            g(c, "/restart/listen_s", 2),
            g(c, "/restart/ready_s", 2),
            g(c, "/restart/recovered_elapsed_ms", 0),
        );
    }
    println!("(fd = open files of the broker; meta ms = raw Metadata v1 all topics, median of 5; rdk meta = rdkafka fetch_metadata(None) on a fresh client incl. connect, median of 5 ms; p50/p99 = delivery latency at acks=all over {} active partitions; listen/ready = s from restart after kill -9 to accepting a connection / Metadata listing every partition with a leader; recov ms = the broker's \"partition logs recovered\" elapsed_ms)", args.active_partitions);
    Ok(json!({
        "bench": "strata-bench --partitions",
        "record_bytes": args.record_bytes,
        "rate": args.rate,
        "seconds": args.seconds,
        "active_partitions": args.active_partitions,
        "broker_nofile": nofile,
        "bench_nofile_hard": hard,
        "cases": cases,
    }))
}

fn partitions_case(
    args: &Args,
    rt: &tokio::runtime::Runtime,
    n: i32,
    nofile: u64,
) -> Result<Value> {
    let r1 = |x: f64| (x * 10.0).round() / 10.0;
    let r3 = |x: f64| (x * 1000.0).round() / 1000.0;
    let opts = SpawnOpts {
        rust_log: "warn,strata=info",
        nofile: Some(nofile),
        listen_timeout: Duration::from_secs(600),
    };
    let dir = tempfile::Builder::new().prefix("strata-bench-").tempdir()?;
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut broker = Broker::start(&args.set, dir, port, &opts)?;
    let pid = broker.pid().unwrap();
    let fds = FdSampler::start(pid);
    let fd_start = fd_count(pid).unwrap_or(0);
    let topic = format!("bench-parts-{n}");

    // 1. CreateTopics of N partitions.
    let meter = Meter::begin(&broker);
    let mut c = client_config(&broker.bootstrap);
    // librdkafka's maximum (300 s); the admin request and operation timeouts are 600 s.
    c.set("socket.timeout.ms", "300000");
    let admin: AdminClient<Ctx> = c.create_with_context(Ctx::default())?;
    let aopts = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(600)))
        .request_timeout(Some(Duration::from_secs(600)));
    let new = NewTopic::new(&topic, n, TopicReplication::Fixed(1));
    let t = Instant::now();
    for r in rt.block_on(admin.create_topics([&new], &aopts))? {
        r.map_err(|(t, e)| anyhow!("creating topic {t} with {n} partitions: {e}"))?;
    }
    let create_s = t.elapsed().as_secs_f64();
    drop(admin);
    let create = meter.end();
    let fd_peak_create = fds.take(fd_count(pid).unwrap_or(0));
    println!(
        "  create: {create_s:.2} s; open files peak {fd_peak_create}, RSS peak {:.1} MB, broker CPU {:.2} s",
        create.rss_peak_mb.unwrap_or(f64::NAN),
        create.broker_cpu_s.unwrap_or(f64::NAN)
    );

    // 3. Metadata for all topics: raw v1 and through rdkafka, median of 5 each.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let m = raw_metadata(&broker.bootstrap, &topic, Duration::from_secs(120))?;
        if m.led == n as u64 {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "Metadata lists {} partitions, {} with a leader, 120 s after creating {n}",
                m.partitions,
                m.led
            );
        }
        thread::sleep(Duration::from_millis(100));
    }
    let mut raw = Vec::new();
    let (mut bytes, mut listed_total) = (0, 0);
    for _ in 0..5 {
        let m = raw_metadata(&broker.bootstrap, &topic, Duration::from_secs(120))?;
        (bytes, listed_total) = (m.bytes, m.total);
        raw.push(m.secs * 1000.0);
    }
    let mut rdk = Vec::new();
    for _ in 0..5 {
        let mut c = client_config(&broker.bootstrap);
        c.set("socket.timeout.ms", "120000");
        let consumer: BaseConsumer<Ctx> = c.create_with_context(Ctx::default())?;
        let t = Instant::now();
        let md = consumer.fetch_metadata(None, Duration::from_secs(120))?;
        rdk.push(t.elapsed().as_secs_f64() * 1000.0);
        let listed: usize = md
            .topics()
            .iter()
            .filter(|t| t.name() == topic)
            .map(|t| t.partitions().len())
            .sum();
        if listed != n as usize {
            bail!("rdkafka Metadata listed {listed} partitions, expected {n}");
        }
    }
    let (raw_ms, rdk_ms) = (median(raw.clone()), median(rdk.clone()));
    println!(
        "  metadata (all topics, {listed_total} partitions with internal topics): raw v1 {raw_ms:.1} ms median ({bytes} bytes), rdkafka fresh client {rdk_ms:.1} ms median"
    );

    // 4. One record to every partition, then paced produce to the first 1,000.
    let active = n.min(args.active_partitions);
    let total = args.rate * args.seconds;
    let p = producer(
        &broker.bootstrap,
        Ctx::with_latencies(total as usize),
        &[
            ("linger.ms", "5"),
            ("socket.timeout.ms", "120000"),
            ("queue.buffering.max.messages", "1000000"),
        ],
    )?;
    let mut payload = random_payload(args.record_bytes);
    payload[..8].copy_from_slice(&WARM_UP.to_le_bytes());
    let t = Instant::now();
    for part in 0..n {
        send(&p, &topic, part, &payload, now_ns() as usize)?;
    }
    p.flush(Duration::from_secs(300))?;
    let fill_s = t.elapsed().as_secs_f64();
    check_delivered(p.context(), n as u64, "one record per partition")?;
    p.context().ok.store(0, Ordering::Relaxed);
    p.context()
        .latencies
        .as_ref()
        .unwrap()
        .lock()
        .unwrap()
        .clear();
    println!("  one record to each of {n} partitions: {fill_s:.2} s");
    let meter = Meter::begin(&broker);
    let (sent, secs) = paced_send(&p, &topic, active, &mut payload, args.rate, args.seconds)?;
    p.flush(Duration::from_secs(300))?;
    let produce = meter.end();
    check_delivered(p.context(), sent, "produce")?;
    let lat = percentiles(std::mem::take(
        &mut *p.context().latencies.as_ref().unwrap().lock().unwrap(),
    ))
    .ok_or_else(|| anyhow!("no latencies"))?;
    drop(p);
    println!(
        "  produce {sent} x {} B over {active} partitions at {}/s: p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms; broker CPU {:.2} s",
        args.record_bytes,
        args.rate,
        lat.p50,
        lat.p99,
        lat.p999,
        lat.max,
        produce.broker_cpu_s.unwrap_or(f64::NAN)
    );

    // 2. Open files and RSS: peak over the life so far, and idle again.
    thread::sleep(Duration::from_secs(3));
    let fd_idle = fd_count(pid).unwrap_or(0);
    let fd_peak = fds.take(fd_idle).max(fd_peak_create);
    // VmHWM: the kernel's peak RSS over the process's life (the sampler can miss spikes).
    let rss_peak = status_kb(pid, "VmHWM").map(|k| k as f64 / 1024.0);
    let rss_idle = status_kb(pid, "VmRSS").map(|k| k as f64 / 1024.0);
    println!(
        "  open files: {fd_start} at start, peak {fd_peak}, {fd_idle} idle; RSS peak {:.1} MB, {:.1} MB idle",
        rss_peak.unwrap_or(f64::NAN),
        rss_idle.unwrap_or(f64::NAN)
    );
    drop(fds);

    // 5. kill -9, restart on the same data dir.
    broker.sampler.take();
    let mut child = broker.child.take().unwrap();
    let _ = child.kill();
    child.wait()?;
    let dir = broker.dir.take().unwrap();
    drop(broker);
    let t = Instant::now();
    let mut broker = Broker::start(&args.set, dir, port, &opts)?;
    let listen_s = t.elapsed().as_secs_f64();
    let pid = broker.pid().unwrap();
    let fds = FdSampler::start(pid);
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut last = (0, 0);
    loop {
        match raw_metadata(&broker.bootstrap, &topic, Duration::from_secs(120)) {
            Ok(m) if m.led == n as u64 => break,
            Ok(m) => last = (m.partitions, m.led),
            Err(_) => {}
        }
        if Instant::now() > deadline {
            bail!(
                "after the restart, Metadata lists {} partitions, {} with a leader (of {n}) after 600 s",
                last.0,
                last.1
            );
        }
        thread::sleep(Duration::from_millis(20));
    }
    let ready_s = t.elapsed().as_secs_f64();
    let stderr = broker.stderr_text();
    let recovered: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("partition logs recovered"))
        .collect();
    let rec_line = recovered.last().copied().unwrap_or("");
    let rec_ms = log_field(rec_line, "elapsed_ms").and_then(|v| v.parse::<f64>().ok());
    let rec_parts = log_field(rec_line, "partitions").and_then(|v| v.parse::<u64>().ok());
    let limit_line = stderr
        .lines()
        .rfind(|l| l.contains("open files limit"))
        .unwrap_or("")
        .to_string();
    thread::sleep(Duration::from_secs(2));
    let fd_restart_idle = fd_count(pid).unwrap_or(0);
    let fd_restart_peak = fds.take(fd_restart_idle);
    drop(fds);
    let rss_restart = status_kb(pid, "VmRSS").map(|k| k as f64 / 1024.0);
    let hwm_restart = status_kb(pid, "VmHWM").map(|k| k as f64 / 1024.0);
    println!(
        "  restart after kill -9: listening after {listen_s:.2} s, Metadata with all {n} partitions after {ready_s:.2} s; log: {}",
        rec_line.trim()
    );
    println!(
        "  after restart: open files peak {fd_restart_peak}, {fd_restart_idle} idle; RSS {:.1} MB (VmHWM {:.1} MB)",
        rss_restart.unwrap_or(f64::NAN),
        hwm_restart.unwrap_or(f64::NAN)
    );
    if !limit_line.is_empty() {
        println!("  broker: {}", limit_line.trim());
    }
    let stopped = broker.stop();
    let warns = stderr.lines().filter(|l| l.contains("WARN")).count();
    let errors = stderr.lines().filter(|l| l.contains("ERROR")).count();
    if warns + errors > 0 {
        println!("  broker stderr: {warns} WARN, {errors} ERROR; first ones:");
        for l in stderr
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .take(5)
        {
            println!("  | {l}");
        }
    }
    Ok(json!({
        "partitions": n,
        "create_s": r3(create_s),
        "create_broker_cpu_s": create.broker_cpu_s.map(r3),
        "open_files": {
            "start": fd_start,
            "peak_create": fd_peak_create,
            "peak": fd_peak,
            "idle": fd_idle,
            "restart_peak": fd_restart_peak,
            "restart_idle": fd_restart_idle,
        },
        "rss_mb": {
            "peak_create": create.rss_peak_mb.map(r1),
            "peak": rss_peak.map(r1),
            "peak_produce": produce.rss_peak_mb.map(r1),
            "idle": rss_idle.map(r1),
            "after_restart": rss_restart.map(r1),
            "vmhwm_after_restart": hwm_restart.map(r1),
        },
        "metadata": {
            "raw_v1_median_ms": r3(raw_ms),
            "raw_v1_ms": raw.iter().map(|x| r3(*x)).collect::<Vec<_>>(),
            "response_bytes": bytes,
            "partitions_listed_all_topics": listed_total,
            "rdkafka_median_ms": r3(rdk_ms),
            "rdkafka_ms": rdk.iter().map(|x| r3(*x)).collect::<Vec<_>>(),
        },
        "produce": {
            "fill_one_per_partition_s": r3(fill_s),
            "active_partitions": active,
            "records": sent,
            "seconds": r3(secs),
            "target_rate": args.rate,
            "linger_ms": 5,
            "latency_ms": {"p50": r3(lat.p50), "p99": r3(lat.p99), "p999": r3(lat.p999), "max": r3(lat.max)},
            "broker_cpu_s": produce.broker_cpu_s.map(r3),
        },
        "restart": {
            "listen_s": r3(listen_s),
            "ready_s": r3(ready_s),
            "recovered_elapsed_ms": rec_ms,
            "recovered_partitions": rec_parts,
            "recovered_line": rec_line.trim(),
        },
        "broker_open_files_line": limit_line.trim(),
        "broker_stop": stopped.as_ref().map(|(s, t)| json!({"status": s, "seconds": r3(*t)})),
        "broker_stderr_warn": warns,
        "broker_stderr_error": errors,
    }))
}

// ---------------------------------------------------------------------------------------
// Cluster mode

/// One node of the cluster mode: a combined broker+controller `strata` process.
struct Node {
    id: i32,
    port: u16,
    controller_port: u16,
    child: Option<Child>,
    sampler: Option<RssSampler>,
}

/// Three nodes on 127.0.0.1 started as tests/common/cluster.rs starts them, each with its
/// own ports, data dir (`node-N`) and stderr file (`node-N.stderr`) under one temp dir.
struct Cluster {
    nodes: Vec<Node>,
    /// Every node's client address, for `bootstrap.servers`.
    bootstrap: String,
    /// Overrides every node gets (`--set`).
    extra: Vec<String>,
    dir: tempfile::TempDir,
}

impl Cluster {
    fn start(n: usize, extra: &[String]) -> Result<Cluster> {
        let dir = tempfile::Builder::new()
            .prefix("strata-bench-cluster-")
            .tempdir()?;
        // Hold every probe socket until all ports are picked: two nodes must not draw the
        // same free port.
        let probes = (0..2 * n)
            .map(|_| TcpListener::bind("127.0.0.1:0"))
            .collect::<std::io::Result<Vec<_>>>()?;
        let ports = probes
            .iter()
            .map(|l| Ok(l.local_addr()?.port()))
            .collect::<Result<Vec<u16>>>()?;
        drop(probes);
        let nodes: Vec<Node> = (0..n)
            .map(|i| Node {
                id: i as i32 + 1,
                port: ports[2 * i],
                controller_port: ports[2 * i + 1],
                child: None,
                sampler: None,
            })
            .collect();
        let bootstrap = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Cluster {
            nodes,
            bootstrap,
            extra: extra.to_vec(),
            dir,
        };
        // A node listens only once a majority of the voters answers: start all, then wait.
        for i in 0..n {
            cluster.spawn(i)?;
        }
        for i in 0..n {
            cluster.wait_listening(i)?;
        }
        cluster.wait_registered()?;
        Ok(cluster)
    }

    fn addr(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.nodes[i].port)
    }

    /// `bootstrap.servers` without node `i` (a killed node only adds connection errors).
    fn bootstrap_except(&self, i: usize) -> String {
        (0..self.nodes.len())
            .filter(|j| *j != i)
            .map(|j| self.addr(j))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn index_of(&self, node_id: i32) -> Result<usize> {
        self.nodes
            .iter()
            .position(|n| n.id == node_id)
            .ok_or_else(|| anyhow!("Metadata names node {node_id}, not one of ours"))
    }

    fn stderr_path(&self, i: usize) -> PathBuf {
        self.dir
            .path()
            .join(format!("node-{}.stderr", self.nodes[i].id))
    }

    fn stderr_text(&self, i: usize) -> String {
        std::fs::read_to_string(self.stderr_path(i)).unwrap_or_default()
    }

    /// Starts node `i` without waiting for it.
    fn spawn(&mut self, i: usize) -> Result<()> {
        let voters = self
            .nodes
            .iter()
            .map(|n| format!("{}@127.0.0.1:{}", n.id, n.controller_port))
            .collect::<Vec<_>>()
            .join(",");
        let node = &self.nodes[i];
        let mut overrides = vec![
            format!("node.id={}", node.id),
            format!(
                "listeners=PLAINTEXT://127.0.0.1:{},CONTROLLER://127.0.0.1:{}",
                node.port, node.controller_port
            ),
            "controller.listener.names=CONTROLLER".to_string(),
            format!("controller.quorum.voters={voters}"),
            format!(
                "log.dirs={}",
                self.dir.path().join(format!("node-{}", node.id)).display()
            ),
            // A dead broker is fenced (and its partitions get new leaders) after the
            // session timeout: Kafka's 9 s would dominate the failover figure. These are
            // the integration tests' settings.
            "broker.heartbeat.interval.ms=500".to_string(),
            "broker.session.timeout.ms=3000".to_string(),
        ];
        overrides.extend(self.extra.iter().cloned());
        // Appended: a restarted node's log continues the file.
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.stderr_path(i))?;
        let mut cmd = strata_command();
        for o in overrides {
            cmd.arg("--override").arg(o);
        }
        // strata=info: the controller's fencing and elections show in the logs.
        let child = cmd
            .env("RUST_LOG", "warn,strata=info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("spawning strata node {}", node.id))?;
        let node = &mut self.nodes[i];
        // A restarted node's old sampler watched the killed process.
        node.sampler = None;
        node.child = Some(child);
        Ok(())
    }

    /// Waits until node `i` accepts connections on its client port.
    fn wait_listening(&mut self, i: usize) -> Result<()> {
        let addr = self.addr(i);
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(&addr).is_err() {
            let node = &mut self.nodes[i];
            let id = node.id;
            let child = node
                .child
                .as_mut()
                .ok_or_else(|| anyhow!("node {id} is not running"))?;
            if let Some(st) = child.try_wait()? {
                node.child = None;
                bail!(
                    "node {id} exited at start-up ({st}); stderr:\n{}",
                    tail(&self.stderr_text(i), 40)
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "node {id} did not listen on {addr} in 60 s; stderr:\n{}",
                    tail(&self.stderr_text(i), 40)
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
        let node = &mut self.nodes[i];
        node.sampler = node.child.as_ref().map(|c| RssSampler::start(c.id()));
        Ok(())
    }

    /// Waits until Metadata lists every node: a broker listens before its registration
    /// is committed, and replication factor 3 needs all three registered.
    fn wait_registered(&self) -> Result<()> {
        let client: BaseConsumer<Ctx> =
            client_config(&self.bootstrap).create_with_context(Ctx::default())?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let listed = client
                .fetch_metadata(None, Duration::from_secs(10))
                .map(|md| md.brokers().len())
                .unwrap_or(0);
            if listed == self.nodes.len() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "Metadata lists {listed} of {} brokers 60 s after start-up",
                    self.nodes.len()
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILL to node `i`, reaped at once.
    fn kill9(&mut self, i: usize) -> Result<()> {
        if let Some(mut child) = self.nodes[i].child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Measures the running nodes except `skip`, summed.
    fn meter_except(&self, skip: Option<usize>) -> Meter {
        Meter::begin_procs(
            self.nodes
                .iter()
                .enumerate()
                .filter(|(i, _)| Some(*i) != skip)
                .filter_map(|(_, n)| {
                    let pid = n.child.as_ref()?.id();
                    Some((pid, n.sampler.as_ref().map(|s| s.max_kb.clone())))
                })
                .collect(),
        )
    }

    /// SIGTERM to every running node at once, then waits up to 60 s for each (SIGKILL
    /// after). At once, because each does a controlled shutdown through the controller
    /// quorum: one after the other, the last node would find no quorum and wait out its
    /// 30 s controlled-shutdown timeout. Returns (node id, exit status, seconds) per node.
    fn stop_all(&mut self) -> Vec<(i32, String, f64)> {
        for node in &mut self.nodes {
            node.sampler = None;
        }
        let t = Instant::now();
        for node in &self.nodes {
            if let Some(c) = &node.child {
                let _ = Command::new("kill")
                    .args(["-TERM", &c.id().to_string()])
                    .status();
            }
        }
        let mut stopped = Vec::new();
        while self.nodes.iter().any(|n| n.child.is_some()) {
            let late = t.elapsed() > Duration::from_secs(60);
            for node in &mut self.nodes {
                let Some(child) = node.child.as_mut() else {
                    continue;
                };
                let status = match child.try_wait() {
                    Ok(Some(st)) => st.to_string(),
                    Ok(None) if !late => continue,
                    _ => {
                        let _ = child.kill();
                        let st = child.wait().map(|s| s.to_string()).unwrap_or_default();
                        format!("no exit 60 s after SIGTERM, killed ({st})")
                    }
                };
                node.child = None;
                stopped.push((node.id, status, t.elapsed().as_secs_f64()));
            }
            thread::sleep(Duration::from_millis(20));
        }
        stopped.sort_by_key(|(id, _, _)| *id);
        stopped
    }
}

impl Target for Cluster {
    fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    fn meter(&self) -> Meter {
        self.meter_except(None)
    }
}

impl Drop for Cluster {
    /// Only an error leaves nodes running (`stop_all` ends a run): kill them.
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut c) = node.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// Seconds since the Unix epoch of a log line's leading UTC timestamp, as tracing writes
/// it (`2026-01-31T15:29:58.500087Z`).
fn log_time(line: &str) -> Option<f64> {
    let ts = line.split_whitespace().next()?.strip_suffix('Z')?;
    let (date, time) = ts.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|x| x.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.splitn(3, ':');
    let h = t.next()?.parse::<i64>().ok()?;
    let min = t.next()?.parse::<i64>().ok()?;
    let sec = t.next()?.parse::<f64>().ok()?;
    // Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
    // days_from_civil): years start in March so the leap day comes last.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + h * 3_600 + min * 60) as f64 + sec)
}

/// The last `lines` lines of `text`.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Waits until every node's Metadata gives each partition of `topic` a leader, so a
/// phase does not start on a node that has not yet applied the topic.
fn wait_leaders(cluster: &Cluster, topic: &str, partitions: i32) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    for i in 0..cluster.nodes.len() {
        let addr = cluster.addr(i);
        loop {
            match raw_metadata(&addr, topic, Duration::from_secs(10)) {
                Ok(m) if m.led == partitions as u64 => break,
                _ if Instant::now() > deadline => {
                    bail!(
                        "{topic}: not every partition has a leader in {addr}'s Metadata after 30 s"
                    )
                }
                _ => thread::sleep(Duration::from_millis(50)),
            }
        }
    }
    Ok(())
}

/// (leader, ISR) of partition 0 of `topic`, as Metadata through `bootstrap` says.
fn leader_and_isr(bootstrap: &str, topic: &str) -> Result<(i32, Vec<i32>)> {
    let client: BaseConsumer<Ctx> = client_config(bootstrap).create_with_context(Ctx::default())?;
    let md = client.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let p = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .and_then(|t| t.partitions().iter().find(|p| p.id() == 0))
        .ok_or_else(|| anyhow!("Metadata does not list {topic}-0"))?;
    Ok((p.leader(), p.isr().to_vec()))
}

fn run_cluster(args: &Args, rt: &tokio::runtime::Runtime) -> Result<Value> {
    // Deleted C1 topics' files go at once.
    let mut extra = vec!["log.segment.delete.delay.ms=0".to_string()];
    extra.extend(args.set.iter().cloned());
    let mut cluster = Cluster::start(3, &extra)?;
    println!(
        "strata-bench --cluster: 3 broker+controller nodes at {} (pids {}), data {}",
        cluster.bootstrap,
        cluster
            .nodes
            .iter()
            .filter_map(|n| n.child.as_ref().map(|c| c.id().to_string()))
            .collect::<Vec<_>>()
            .join(", "),
        cluster.dir.path().display()
    );
    let result = cluster_phases(args, rt, &mut cluster);
    if result.is_err() {
        for i in 0..cluster.nodes.len() {
            eprintln!(
                "node {} stderr (last 20 lines):\n{}",
                cluster.nodes[i].id,
                tail(&cluster.stderr_text(i), 20)
            );
        }
    }
    // On an error, dropping the cluster kills the nodes still running.
    result
}

fn cluster_phases(
    args: &Args,
    rt: &tokio::runtime::Runtime,
    cluster: &mut Cluster,
) -> Result<Value> {
    let r3 = |x: f64| (x * 1000.0).round() / 1000.0;
    let tag = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis()
    );
    let min_isr = [("min.insync.replicas", "2")];
    let [lat3, lat1, fail] = ["lat-rf3", "lat-rf1", "failover"].map(|t| format!("bench-{t}-{tag}"));
    for (topic, partitions, rf, configs) in [
        (&lat3, args.partitions, 3, &min_isr[..]),
        (&lat1, args.partitions, 1, &[][..]),
        (&fail, 1, 3, &min_isr[..]),
    ] {
        create_topic_rf(rt, &cluster.bootstrap, topic, partitions, rf, configs)?;
        wait_leaders(cluster, topic, partitions)?;
    }
    let records = args.produce_mb * 1024 * 1024 / args.record_bytes as u64;
    let mut rounds = Vec::new();
    for round in 1..=args.rounds.max(1) {
        let mut pair = Vec::new();
        for (rf, name, what, configs) in [
            (
                3,
                "C1 produce RF3",
                "RF3, min.insync.replicas=2",
                &min_isr[..],
            ),
            (1, "C1 produce RF1", "RF1", &[][..]),
        ] {
            let topic = format!("bench-tput-rf{rf}-{round}-{tag}");
            create_topic_rf(rt, &cluster.bootstrap, &topic, args.partitions, rf, configs)?;
            wait_leaders(cluster, &topic, args.partitions)?;
            // Write back dirty pages first: the RF3 phase leaves three copies of its data
            // in the page cache, whose writeback would otherwise slow the phase after it.
            Command::new("sync").status().context("running sync")?;
            println!(
                "cluster phase 1 ({what}), round {round} of {}: producing {records} x {} B to {topic} ...",
                args.rounds.max(1),
                args.record_bytes
            );
            let r = produce_throughput(&*cluster, &topic, args, records)?;
            println!("  {:.1} MiB/s in {:.1} s", r.mb_s(), r.secs);
            pair.push((topic, PhaseResult { name, ..r }));
        }
        let ratio = pair[0].1.mb_s() / pair[1].1.mb_s();
        println!("  round {round}: RF3/RF1 {ratio:.2}");
        rounds.push((ratio, pair));
    }
    let c1_rounds: Vec<Value> = rounds
        .iter()
        .map(|(ratio, pair)| {
            json!({
                "rf3_mb_per_s": r3(pair[0].1.mb_s()),
                "rf1_mb_per_s": r3(pair[1].1.mb_s()),
                "rf3_broker_cpu_s": pair[0].1.usage.broker_cpu_s,
                "rf1_broker_cpu_s": pair[1].1.usage.broker_cpu_s,
                "ratio": r3(*ratio),
            })
        })
        .collect();
    // Deleted only now: freeing their page cache between rounds would hand the next
    // round free memory again (see `PageCacheFill`).
    for (_, pair) in &rounds {
        for (topic, _) in pair {
            delete_topic(rt, &cluster.bootstrap, topic)?;
        }
    }
    rounds.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (_, median) = rounds.swap_remove(rounds.len() / 2);
    let mut rows: Vec<PhaseResult> = median.into_iter().map(|(_, r)| r).collect();
    let ratio = rows[0].mb_s() / rows[1].mb_s();

    for (topic, name, what) in [
        (&lat3, "C2 latency RF3", "RF3"),
        (&lat1, "C2 latency RF1", "RF1"),
    ] {
        println!(
            "cluster phase 2 ({what}): {} msgs/s for {} s (acks=all, linger.ms={}) ...",
            args.rate, args.seconds, args.linger_ms
        );
        let r = produce_latency(&*cluster, topic, args)?;
        if let Some(l) = r.lat {
            println!(
                "  p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
                l.p50, l.p99, l.p999, l.max
            );
        }
        rows.push(PhaseResult { name, ..r });
    }

    println!(
        "cluster phase 3 (failover): {} msgs/s for {} s to {fail} (RF3, one partition, idempotent, acks=all), kill -9 of its leader a third of the way in ...",
        args.rate, args.seconds
    );
    let errors_before = CLIENT_ERRORS.load(Ordering::Relaxed);
    let mut r = failover(cluster, &fail, args)?;
    let failover_client_errors = CLIENT_ERRORS.load(Ordering::Relaxed) - errors_before;
    r.extra["client_errors"] = json!(failover_client_errors);
    rows.push(r);
    let f = &rows[4].extra;

    let stopped = cluster.stop_all();
    print_table(&rows);
    println!("(broker CPU and RSS: sums over the three nodes; for the failover row, the two that were not killed)");
    println!();
    println!(
        "produce throughput RF3/RF1: {ratio:.2}, the median of {} rounds ({:.1} MiB/s, {:.0} msgs/s with replication factor 3 and min.insync.replicas=2; {:.1} MiB/s, {:.0} msgs/s with 1)",
        c1_rounds.len(),
        rows[0].mb_s(),
        rows[0].msgs_s(),
        rows[1].mb_s(),
        rows[1].msgs_s()
    );
    let p99 = |r: &PhaseResult| r.lat.map_or(f64::NAN, |l| l.p99);
    println!(
        "latency at {} msgs/s, p99: {:.2} ms RF3, {:.2} ms RF1",
        args.rate,
        p99(&rows[2]),
        p99(&rows[3])
    );
    println!(
        "failover: killed node {} (leader of {fail}-0{}) {:.2} s into the phase; the first record sent after the kill was acknowledged {:.3} s after it; new leader node {}, ISR {}",
        f["killed_node"],
        if f["killed_was_controller"] == json!(true) {
            ", and the active controller"
        } else {
            ""
        },
        f["killed_after_s"].as_f64().unwrap_or(f64::NAN),
        f["failover_s"].as_f64().unwrap_or(f64::NAN),
        f["new_leader"],
        f["isr_after"],
    );
    println!(
        "  the controller (node {}) fenced the killed broker {} after the kill (broker.session.timeout.ms=3000)",
        f["fenced_by"],
        f["fenced_after_s"]
            .as_f64()
            .map_or("- (no \"broker fenced\" log line found)".to_string(), |s| format!("{s:.3} s")),
    );
    println!(
        "  {} records sent, {} acknowledged, {} failed (first error: {}); librdkafka errors during the phase: {failover_client_errors}",
        f["records_sent"],
        f["acked"],
        f["failed"],
        f["first_error"].as_str().unwrap_or("none"),
    );
    println!(
        "  read back {} records: all {} acknowledged present, {} duplicates, {} unacknowledged",
        f["read_back"]["records"],
        f["acked"],
        f["read_back"]["duplicates"],
        f["read_back"]["unacknowledged_present"],
    );
    println!(
        "  node {} restarted: listening after {:.2} s, back in the ISR after {}",
        f["killed_node"],
        f["restart"]["listen_s"].as_f64().unwrap_or(f64::NAN),
        f["restart"]["isr_rejoin_s"]
            .as_f64()
            .map_or("- (not within 60 s)".to_string(), |s| format!("{s:.2} s")),
    );
    println!(
        "nodes stopped (SIGTERM to all at once): {}",
        stopped
            .iter()
            .map(|(id, st, s)| format!("node {id} {st} after {s:.2} s"))
            .collect::<Vec<_>>()
            .join("; ")
    );
    let mut node_logs = Vec::new();
    for (i, node) in cluster.nodes.iter().enumerate() {
        let stderr = cluster.stderr_text(i);
        let problems: Vec<&str> = stderr
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .collect();
        let errors = problems.iter().filter(|l| l.contains("ERROR")).count();
        let warns = problems.len() - errors;
        // openraft reports every failed RPC to a voter that is down (not yet started, or
        // killed): expected here, so only the others are listed.
        let (raft, own): (Vec<&str>, Vec<&str>) =
            problems.iter().partition(|l| l.contains(" openraft::"));
        println!(
            "node {} stderr: {warns} WARN, {errors} ERROR ({} from openraft)",
            node.id,
            raft.len()
        );
        for l in own.iter().take(5) {
            println!("  | {l}");
        }
        node_logs
            .push(json!({"node": node.id, "warn": warns, "error": errors, "openraft": raft.len()}));
    }
    let client_errors = CLIENT_ERRORS.load(Ordering::Relaxed);
    if client_errors > 0 {
        println!("librdkafka client errors: {client_errors}");
    }

    let mut phases = serde_json::Map::new();
    for (key, r) in [
        "produce_rf3",
        "produce_rf1",
        "latency_rf3",
        "latency_rf1",
        "failover",
    ]
    .iter()
    .zip(&rows)
    {
        phases.insert(key.to_string(), r.json());
    }
    Ok(json!({
        "bench": "strata-bench --cluster",
        "nodes": cluster.nodes.len(),
        "record_bytes": args.record_bytes,
        "partitions": args.partitions,
        "produce_mb": args.produce_mb,
        "rate": args.rate,
        "seconds": args.seconds,
        "linger_ms": args.linger_ms,
        "rf3_min_insync_replicas": 2,
        "produce_rf3_over_rf1": r3(ratio),
        "c1_rounds": c1_rounds,
        "clk_tck": clk_tck(),
        "node_stop": stopped
            .iter()
            .map(|(id, st, s)| json!({"node": id, "status": st, "seconds": r3(*s)}))
            .collect::<Vec<_>>(),
        "node_stderr": node_logs,
        "client_errors": client_errors,
        "phases": phases,
    }))
}

/// Produces at `--rate` for `--seconds` to a one-partition RF3 topic, kill -9s its leader
/// a third of the way in, and measures the time from the kill to the first
/// acknowledgement of a record sent after it. Then checks that a consumer reads back
/// every acknowledged record, and restarts the killed node.
fn failover(cluster: &mut Cluster, topic: &str, args: &Args) -> Result<PhaseResult> {
    let r3 = |x: f64| (x * 1000.0).round() / 1000.0;
    let total = args.rate * args.seconds;
    let kill_at = total / 3;
    if kill_at == 0 {
        bail!("failover: --rate x --seconds gives {total} records, too few to kill a leader in between");
    }
    let log = Arc::new(FailoverLog::new(total as usize));
    let ctx = Ctx {
        failover: Some(log.clone()),
        ..Ctx::with_latencies(total as usize)
    };
    let linger = args.linger_ms.to_string();
    // Idempotent: retries through the failover neither duplicate nor reorder records.
    // message.timeout.ms bounds how long a record may wait for a new leader.
    let p = producer(
        &cluster.bootstrap,
        ctx,
        &[
            ("enable.idempotence", "true"),
            ("message.timeout.ms", "60000"),
            ("linger.ms", &linger),
        ],
    )?;
    warm_up(&p, topic, 1, args.record_bytes)?;
    let md = p
        .client()
        .fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let leader = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .and_then(|t| t.partitions().iter().find(|p| p.id() == 0))
        .map(|p| p.leader())
        .filter(|l| *l >= 0)
        .ok_or_else(|| anyhow!("failover: Metadata gives {topic}-0 no leader"))?;
    let victim = cluster.index_of(leader)?;
    let survivors = cluster.bootstrap_except(victim);
    // A leader that is also the active controller takes longer to replace: the quorum
    // elects a new controller first, whose broker session timer then starts afresh.
    let controller =
        raw_metadata(&cluster.addr(victim), topic, Duration::from_secs(10))?.controller;

    // The killed node's CPU cannot be read after the kill: measure the other two.
    let meter = cluster.meter_except(Some(victim));
    let mut payload = random_payload(args.record_bytes);
    let start = Instant::now();
    let (mut killed_after, mut kill_unix) = (0.0, 0.0);
    for i in 0..total {
        if i == kill_at {
            log.kill_ns.store(now_ns(), Ordering::SeqCst);
            killed_after = start.elapsed().as_secs_f64();
            // Wall clock, to place the controller's log lines relative to the kill.
            kill_unix = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_secs_f64();
            cluster.kill9(victim)?;
        }
        pace(start, i, args.rate);
        // The record index, for the read-back check; the opaque carries the send time.
        payload[..8].copy_from_slice(&i.to_le_bytes());
        send(&p, topic, 0, &payload, now_ns() as usize)?;
    }
    let secs = start.elapsed().as_secs_f64();
    // Every record is acknowledged or failed within message.timeout.ms (60 s).
    p.flush(Duration::from_secs(90))?;
    let usage = meter.end();
    let (ok, failed) = (
        p.context().ok.load(Ordering::Relaxed),
        p.context().failed.load(Ordering::Relaxed),
    );
    let first_error = lock(&p.context().first_error).clone();
    let kill_ns = log.kill_ns.load(Ordering::SeqCst);
    let first_ack = log.first_ack_after_kill_ns.load(Ordering::SeqCst);
    if first_ack == u64::MAX {
        bail!(
            "failover: no record sent after the kill of node {leader} was acknowledged ({ok} acknowledged, {failed} failed; first error: {})",
            first_error.as_deref().unwrap_or("none")
        );
    }
    let failover_s = (first_ack - kill_ns) as f64 / 1e9;
    let lat = p
        .context()
        .latencies
        .as_ref()
        .and_then(|l| percentiles(std::mem::take(&mut *lock(l))));
    drop(p);
    let acked = std::mem::take(&mut *lock(&log.acked));
    let (new_leader, isr_after) = leader_and_isr(&survivors, topic)?;
    // Server side of the failover: when the (possibly new) active controller fenced the
    // killed broker, which is when its partitions got new leaders.
    let fenced = (0..cluster.nodes.len())
        .filter(|i| *i != victim)
        .flat_map(|i| {
            let id = cluster.nodes[i].id;
            cluster
                .stderr_text(i)
                .lines()
                .filter(|l| l.contains("broker fenced"))
                .filter(|l| log_field(l, "node_id") == Some(leader.to_string().as_str()))
                .filter_map(|l| log_time(l).map(|t| (t - kill_unix, id)))
                .filter(|(after, _)| *after >= 0.0)
                .collect::<Vec<_>>()
        })
        .min_by(|a, b| a.0.total_cmp(&b.0));

    // Read everything back from the survivors and look for every acknowledged record.
    let c = consumer(&survivors, topic, 1, &[("fetch.wait.max.ms", "100")])?;
    let mut seen = vec![0u32; total as usize];
    let (mut read, mut unrecognised) = (0u64, 0u64);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if Instant::now() > deadline {
            bail!("failover read-back: no end of partition after 60 s ({read} records read)");
        }
        match c.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                let idx = m
                    .payload()
                    .and_then(|v| v.first_chunk::<8>())
                    .map(|b| u64::from_le_bytes(*b));
                match idx {
                    Some(WARM_UP) => {}
                    Some(i) if i < total => {
                        read += 1;
                        seen[i as usize] += 1;
                    }
                    _ => unrecognised += 1,
                }
            }
            Some(Err(KafkaError::PartitionEOF(_))) => break,
            Some(Err(e)) => bail!("failover read-back: {e}"),
            None => {}
        }
    }
    drop(c);
    let missing: Vec<u64> = acked
        .iter()
        .copied()
        .filter(|i| seen.get(*i as usize).is_none_or(|n| *n == 0))
        .collect();
    let duplicates: u64 = seen.iter().map(|n| n.saturating_sub(1) as u64).sum();
    let mut is_acked = vec![false; total as usize];
    for i in &acked {
        if let Some(a) = is_acked.get_mut(*i as usize) {
            *a = true;
        }
    }
    let unacked_present = seen
        .iter()
        .zip(&is_acked)
        .filter(|(n, a)| **n > 0 && !**a)
        .count();
    if !missing.is_empty() || unrecognised > 0 {
        bail!(
            "failover read-back FAILED: {} of {} acknowledged records missing (first: {:?}); {read} records read, {unrecognised} unrecognised",
            missing.len(),
            acked.len(),
            &missing[..missing.len().min(10)]
        );
    }

    // Bring the killed node back: it catches up and rejoins the ISR, and the cluster
    // stops with its quorum whole.
    let t = Instant::now();
    cluster.spawn(victim)?;
    cluster.wait_listening(victim)?;
    let listen_s = t.elapsed().as_secs_f64();
    let mut rejoin_s = None;
    while t.elapsed() < Duration::from_secs(60) {
        if let Ok((_, isr)) = leader_and_isr(&cluster.bootstrap, topic) {
            if isr.contains(&leader) {
                rejoin_s = Some(t.elapsed().as_secs_f64());
                break;
            }
        }
        thread::sleep(Duration::from_millis(100));
    }

    Ok(PhaseResult {
        name: "C3 failover RF3",
        records: total,
        bytes: total * args.record_bytes as u64,
        secs,
        lat,
        usage,
        extra: json!({
            "target_rate": args.rate,
            "linger_ms": args.linger_ms,
            "killed_node": leader,
            "controller_before": controller,
            "killed_was_controller": controller == leader,
            "killed_after_s": r3(killed_after),
            "failover_s": r3(failover_s),
            "fenced_after_s": fenced.map(|(s, _)| r3(s)),
            "fenced_by": fenced.map(|(_, id)| id),
            "new_leader": new_leader,
            "isr_after": isr_after,
            "records_sent": total,
            "sent_before_kill": kill_at,
            "acked": ok,
            "failed": failed,
            "first_error": first_error,
            "read_back": {
                "records": read,
                "acknowledged_missing": 0,
                "duplicates": duplicates,
                "unacknowledged_present": unacked_present,
                "verified": true,
            },
            "restart": {
                "listen_s": r3(listen_s),
                "isr_rejoin_s": rejoin_s.map(r3),
            },
            "broker_cpu_of": "the two nodes not killed",
        }),
    })
}

// ---------------------------------------------------------------------------------------
// Security mode

/// One listener of the security-mode broker, as a bench target.
struct Listener<'a> {
    broker: &'a Broker,
    bootstrap: String,
}

impl Target for Listener<'_> {
    fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    fn meter(&self) -> Meter {
        Meter::begin(self.broker)
    }
}

fn openssl(dir: &Path, args: &str) -> Result<()> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("cd {} && openssl {args}", dir.display()))
        .output()?;
    if !out.status.success() {
        bail!("openssl {args}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// A CA and a broker certificate for 127.0.0.1 signed by it: (CA file, keystore file).
fn bench_certificates(dir: &Path) -> Result<(PathBuf, PathBuf)> {
    openssl(dir, "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem -days 2 -subj '/CN=bench-ca'")?;
    openssl(dir, "req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout broker.key -out broker.csr -subj '/CN=broker'")?;
    std::fs::write(
        dir.join("broker.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )?;
    openssl(dir, "x509 -req -in broker.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out broker.pem -days 2 -extfile broker.ext")?;
    let keystore = dir.join("broker.keystore.pem");
    let mut text = std::fs::read_to_string(dir.join("broker.key"))?;
    text.push_str(&std::fs::read_to_string(dir.join("broker.pem"))?);
    std::fs::write(&keystore, text)?;
    Ok((dir.join("ca.pem"), keystore))
}

fn delete_topic(rt: &tokio::runtime::Runtime, bootstrap: &str, name: &str) -> Result<()> {
    let admin: AdminClient<Ctx> = client_config(bootstrap).create_with_context(Ctx::default())?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for r in rt.block_on(admin.delete_topics(&[name], &opts))? {
        r.map_err(|(t, e)| anyhow::anyhow!("deleting {t}: {e}"))?;
    }
    Ok(())
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn run_security(args: &Args, rt: &tokio::runtime::Runtime) -> Result<Value> {
    let dir = tempfile::Builder::new().prefix("strata-bench-").tempdir()?;
    let (ca, keystore) = bench_certificates(dir.path())?;
    let data = dir.path().join("data");
    let format = strata_command()
        .args(["storage", "format", "--override"])
        .arg(format!("log.dirs={}", data.display()))
        .args([
            "--add-scram",
            "SCRAM-SHA-512=[name=bench,password=bench-secret]",
        ])
        .output()?;
    if !format.status.success() {
        bail!(
            "storage format: {}",
            String::from_utf8_lossy(&format.stderr)
        );
    }
    let free = || -> Result<u16> { Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port()) };
    let (plain_port, secure_port) = (free()?, free()?);
    let extra = vec![
        format!("listeners=PLAINTEXT://127.0.0.1:{plain_port},SASL_SSL://127.0.0.1:{secure_port}"),
        "sasl.enabled.mechanisms=SCRAM-SHA-512".to_string(),
        // A deleted topic's files go at once (see the phase loop).
        "log.segment.delete.delay.ms=0".to_string(),
        "ssl.keystore.type=PEM".to_string(),
        format!("ssl.keystore.location={}", keystore.display()),
    ];
    let broker = Broker::start(&extra, dir, plain_port, &SpawnOpts::default())?;
    if args.pin {
        // Every thread of each process; threads made later inherit the mask.
        for (cpu, pid) in [("1", broker.pid().unwrap_or(0)), ("0", std::process::id())] {
            let ok = Command::new("taskset")
                .args(["-a", "-p", "-c", cpu, &pid.to_string()])
                .stdout(Stdio::null())
                .status()?
                .success();
            if !ok {
                bail!("taskset could not pin pid {pid} to CPU {cpu}");
            }
        }
    }
    println!(
        "strata-bench: broker pid {}, PLAINTEXT 127.0.0.1:{plain_port}, SASL_SSL 127.0.0.1:{secure_port}",
        broker.pid().unwrap_or(0)
    );
    let records = args.produce_mb * 1024 * 1024 / args.record_bytes as u64;
    let secure_settings = vec![
        ("security.protocol", "SASL_SSL".to_string()),
        ("sasl.mechanisms", "SCRAM-SHA-512".to_string()),
        ("sasl.username", "bench".to_string()),
        ("sasl.password", "bench-secret".to_string()),
        ("ssl.ca.location", ca.display().to_string()),
    ];
    let plain = ("PLAINTEXT", plain_port, Vec::new());
    let secure = ("SASL_SSL", secure_port, secure_settings);
    // Rounds of both protocols, the order alternating (the machine drifts, and the
    // phase run second would otherwise always meet a warmer or more tired machine);
    // the round with the median produce share is reported.
    let mut rounds: Vec<(f64, Vec<PhaseResult>)> = Vec::new();
    for round in 1..=args.rounds.max(1) {
        let order = if round % 2 == 1 {
            [&plain, &secure]
        } else {
            [&secure, &plain]
        };
        let mut rows: Vec<PhaseResult> = Vec::new();
        for (protocol, port, settings) in order {
            let (produced, consumed) =
                security_phase(rt, args, &broker, protocol, *port, settings, records)?;
            rows.push(produced);
            rows.push(consumed);
        }
        // Rows as PLAINTEXT produce, consume, then SASL_SSL produce, consume.
        if rows[0].name.ends_with("SASL_SSL") {
            rows.rotate_left(2);
        }
        let share = 100.0 * rows[2].mb_s() / rows[0].mb_s();
        println!("round {round}: SASL_SSL produce at {share:.1} % of PLAINTEXT's");
        rounds.push((share, rows));
    }
    lock(&CLIENT_SECURITY).clear();
    let round_json: Vec<Value> = rounds
        .iter()
        .map(|(share, rows)| {
            json!({
                "produce_share_percent": round1(*share),
                "consume_share_percent": round1(100.0 * rows[3].mb_s() / rows[1].mb_s()),
                "PLAINTEXT": {"produce_mib_s": round1(rows[0].mb_s()), "consume_mib_s": round1(rows[1].mb_s())},
                "SASL_SSL": {"produce_mib_s": round1(rows[2].mb_s()), "consume_mib_s": round1(rows[3].mb_s())},
            })
        })
        .collect();
    let all_shares: Vec<f64> = rounds.iter().map(|(s, _)| round1(*s)).collect();
    rounds.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (_, rows) = rounds.swap_remove(rounds.len() / 2);
    let share = |i: usize| round1(100.0 * rows[i + 2].mb_s() / rows[i].mb_s());
    let (produce_share, consume_share) = (share(0), share(1));
    let mut summary = serde_json::Map::new();
    for (protocol, i) in [("PLAINTEXT", 0), ("SASL_SSL", 2)] {
        summary.insert(
            protocol.to_string(),
            json!({"produce_mib_s": round1(rows[i].mb_s()), "consume_mib_s": round1(rows[i + 1].mb_s())}),
        );
    }
    println!();
    print_table(&rows);
    println!(
        "SASL_SSL throughput as a share of PLAINTEXT (the round with the median produce share of {}: {all_shares:?}): produce {produce_share} %, consume {consume_share} %",
        all_shares.len()
    );
    let mut broker = broker;
    broker.stop();
    Ok(json!({
        "mode": "security",
        "pinned": args.pin,
        "records": records,
        "record_bytes": args.record_bytes,
        "throughput": summary,
        "sasl_ssl_share_of_plaintext_percent": {"produce": produce_share, "consume": consume_share},
        "rounds": round_json,
    }))
}

/// One protocol's phases of the security mode: produce `records` into a fresh topic over
/// the listener on `port`, read them back verified, then delete the topic and wait for
/// its files to go (so the next phase starts from the same free memory).
fn security_phase(
    rt: &tokio::runtime::Runtime,
    args: &Args,
    broker: &Broker,
    protocol: &'static str,
    port: u16,
    settings: &[(&str, String)],
    records: u64,
) -> Result<(PhaseResult, PhaseResult)> {
    let topic = format!(
        "bench-{}-{}",
        protocol.to_ascii_lowercase(),
        std::process::id()
    );
    create_topic(rt, &broker.bootstrap, &topic, args.partitions)?;
    *lock(&CLIENT_SECURITY) = settings
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let target = Listener {
        broker,
        bootstrap: format!("127.0.0.1:{port}"),
    };
    println!(
        "{protocol}: producing {records} x {} B ...",
        args.record_bytes
    );
    let mut produced = produce_throughput(&target, &topic, args, records)?;
    // Each phase starts without the other's dirty pages to write back.
    Command::new("sync").status().context("running sync")?;
    println!("  {:.1} MiB/s", produced.mb_s());
    println!("{protocol}: consuming them back ...");
    let mut consumed = consume_all(&target, &topic, args, records, "consume")?;
    println!("  {:.1} MiB/s", consumed.mb_s());
    // This topic's files (and their page cache) go before the next phase; otherwise
    // it writes while the kernel reclaims this one's pages, and pays for it.
    *lock(&CLIENT_SECURITY) = Vec::new();
    delete_topic(rt, &broker.bootstrap, &topic)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while broker.topic_bytes(&topic) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let secure = protocol == "SASL_SSL";
    produced.name = if secure {
        "produce SASL_SSL"
    } else {
        "produce PLAINTEXT"
    };
    consumed.name = if secure {
        "consume SASL_SSL"
    } else {
        "consume PLAINTEXT"
    };
    Ok((produced, consumed))
}
