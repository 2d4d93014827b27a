//! Broker and topic keys that used to be accepted without acting, against the broker
//! as a process with librdkafka clients: socket buffer sizes, segment preallocation,
//! delayed segment deletion, parallel recovery, and the one-line warning for keys that
//! can never act in Strata.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use rdkafka::producer::FutureRecord;

const T: Duration = Duration::from_secs(30);

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + T;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn files_ending(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.to_string_lossy().ends_with(suffix))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

async fn produce(bootstrap: &str, topic: &str, count: usize, size: usize) {
    let p = producer(bootstrap, &[("linger.ms", "0")]);
    let value = vec![b'x'; size];
    for _ in 0..count {
        p.send(FutureRecord::<(), _>::to(topic).payload(&value), T)
            .await
            .expect("produce");
    }
}

/// (rb, tb) from `ss -tm` for the broker's side of established connections on `port`.
fn server_socket_buffers(port: u16) -> Vec<(u64, u64)> {
    let out = Command::new("ss")
        .args([
            "-tmnH",
            "state",
            "established",
            &format!("( sport = :{port} )"),
        ])
        .output()
        .expect("ss (iproute2) must be installed");
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |mem: &str, name: &str| -> Option<u64> {
        mem.split([',', '(', ')'])
            .find_map(|f| f.strip_prefix(name).and_then(|v| v.parse().ok()))
    };
    text.lines()
        .filter_map(|l| l.split_whitespace().find(|w| w.starts_with("skmem:")))
        .filter_map(|mem| Some((field(mem, "rb")?, field(mem, "tb")?)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_buffer_sizes_apply_to_accepted_connections() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let broker = BrokerProcess::start(
        &dir.path().join("data"),
        port,
        &[
            "socket.receive.buffer.bytes=65536",
            "socket.send.buffer.bytes=131072",
        ],
    );
    create_topic(&broker.bootstrap(), "buffers", 1, &[]).await;
    let _client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    // Linux doubles SO_RCVBUF / SO_SNDBUF for its bookkeeping, and reports that.
    let mut seen = Vec::new();
    wait_until("the accepted connection in ss", || {
        seen = server_socket_buffers(port);
        !seen.is_empty()
    });
    assert!(
        seen.iter()
            .all(|&(rb, tb)| rb == 2 * 65536 && tb == 2 * 131072),
        "server sockets on {port}: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preallocate_reserves_the_segment_and_gives_back_the_rest_at_roll() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let broker = BrokerProcess::start(&data, free_port(), &[]);
    let segment_bytes = 1 << 20;
    create_topic(
        &broker.bootstrap(),
        "prealloc",
        1,
        &[
            ("preallocate", "true"),
            ("segment.bytes", &segment_bytes.to_string()),
        ],
    )
    .await;
    produce(&broker.bootstrap(), "prealloc", 1, 100).await;
    let first = data.join("prealloc-0").join(format!("{:020}.log", 0));
    let meta = std::fs::metadata(&first).unwrap();
    assert!(
        meta.len() < 1000,
        "the file length is the data: {}",
        meta.len()
    );
    assert!(
        meta.blocks() * 512 >= segment_bytes,
        "{} bytes reserved, {segment_bytes} expected",
        meta.blocks() * 512
    );
    // Fill past segment.bytes: the sealed segment keeps only what its data needs.
    produce(&broker.bootstrap(), "prealloc", 12, 100_000).await;
    wait_until("a roll", || {
        files_ending(&data.join("prealloc-0"), ".log").len() >= 2
    });
    let meta = std::fs::metadata(&first).unwrap();
    assert!(
        meta.blocks() * 512 <= meta.len() + 64 * 1024,
        "sealed segment still holds {} bytes for {} of data",
        meta.blocks() * 512,
        meta.len()
    );
    assert_eq!(consume_all(&broker.bootstrap(), "prealloc", 1, T).len(), 13);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_segments_wait_out_file_delete_delay_ms() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let broker = BrokerProcess::start(&data, free_port(), &["log.retention.check.interval.ms=100"]);
    let bootstrap = broker.bootstrap();
    let part = |t: &str| data.join(format!("{t}-0"));
    // Short delay: renamed `.deleted`, then removed.
    create_topic(
        &bootstrap,
        "delayed",
        1,
        &[
            ("segment.bytes", "2000"),
            ("retention.bytes", "4000"),
            ("file.delete.delay.ms", "1500"),
        ],
    )
    .await;
    produce(&bootstrap, "delayed", 40, 200).await;
    wait_until("renamed segment files", || {
        !files_ending(&part("delayed"), ".log.deleted").is_empty()
    });
    for suffix in [".index.deleted", ".timeindex.deleted"] {
        assert!(
            !files_ending(&part("delayed"), suffix).is_empty(),
            "no {suffix}"
        );
    }
    wait_until("the delay to pass and the files to go", || {
        files_ending(&part("delayed"), ".deleted").is_empty()
    });
    let got = consume_all(&bootstrap, "delayed", 1, T);
    assert!(
        !got.is_empty() && got[0].offset > 0,
        "retention moved the log start"
    );
    assert_eq!(got.last().unwrap().offset, 39);

    // Long delay: files still waiting at a crash are removed by the next start.
    create_topic(
        &bootstrap,
        "lingering",
        1,
        &[
            ("segment.bytes", "2000"),
            ("retention.bytes", "4000"),
            ("file.delete.delay.ms", "600000"),
        ],
    )
    .await;
    produce(&bootstrap, "lingering", 40, 200).await;
    wait_until("renamed segment files", || {
        !files_ending(&part("lingering"), ".log.deleted").is_empty()
    });
    let waiting = files_ending(&part("lingering"), ".deleted");
    broker.kill9();
    let broker = BrokerProcess::start(&data, free_port(), &[]);
    // (Retention may delete more at start if the first broker had not caught up; those
    // are new files with their own delay.)
    let after = files_ending(&part("lingering"), ".deleted");
    let left: Vec<_> = waiting.iter().filter(|f| after.contains(f)).collect();
    assert!(
        left.is_empty(),
        "leftover .deleted files after restart: {left:?}"
    );
    assert_eq!(
        consume_all(&broker.bootstrap(), "lingering", 1, T)
            .last()
            .unwrap()
            .offset,
        39
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_recovery_after_kill_9_and_keys_with_no_effect_warn_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let broker = BrokerProcess::start(&data, free_port(), &[]);
    create_topic(&broker.bootstrap(), "recover", 24, &[]).await;
    let p = producer(&broker.bootstrap(), &[("linger.ms", "0")]);
    for partition in 0..24 {
        for i in 0..5 {
            let value = format!("{partition}-{i}");
            p.send(
                FutureRecord::<(), _>::to("recover")
                    .partition(partition)
                    .payload(&value),
                T,
            )
            .await
            .unwrap();
        }
    }
    broker.kill9();
    let port = free_port();
    let broker = BrokerProcess::start(
        &data,
        port,
        &["num.recovery.threads.per.data.dir=4", "num.io.threads=16"],
    );
    let got = consume_all(&broker.bootstrap(), "recover", 24, T);
    assert_eq!(got.len(), 24 * 5, "every record after a parallel recovery");
    let log = std::fs::read_to_string(data.with_extension(format!("{port}.log"))).unwrap();
    let recovered: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("partition logs recovered"))
        .collect();
    assert_eq!(recovered.len(), 1, "{log}");
    assert!(recovered[0].contains("unclean shutdown"), "{log}");
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("num.io.threads"))
        .collect();
    assert_eq!(warnings.len(), 1, "one warning for num.io.threads:\n{log}");
    assert!(warnings[0].contains("no effect in Strata"), "{log}");
    broker.terminate();

    // --list-config labels it, with the reason.
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("--list-config")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let block: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("num.io.threads ="))
        .take(2)
        .collect();
    assert!(block[1].contains("[no effect in Strata:"), "{block:?}");
    for acting in [
        "socket.send.buffer.bytes =",
        "log.preallocate =",
        "num.recovery.threads.per.data.dir =",
        "metrics.listener =",
    ] {
        let block: Vec<&str> = text
            .lines()
            .skip_while(|l| !l.starts_with(acting))
            .take(2)
            .collect();
        assert!(!block[1].contains("not acted on yet"), "{block:?}");
    }
}
