//! The `strata` process as a new user starts it: an environment full of unrelated
//! `STRATA_*` variables, output into pipes (as systemd, docker and log shippers take
//! it), the default log level. Start-up must not fail, the output must hold no terminal
//! escape codes, and a clean start and stop must print only Strata's own lines.

mod common;

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::free_port;

/// Starts the binary with `env` added and RUST_LOG/NO_COLOR removed, stdout and
/// stderr piped; waits until it listens.
fn spawn(data: &std::path::Path, port: u16, env: &[(&str, &str)]) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
    cmd.arg("--override")
        .arg(format!("listeners=PLAINTEXT://127.0.0.1:{port}"))
        .arg("--override")
        .arg(format!("log.dirs={}", data.display()))
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn strata");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!("strata exited with {status} before listening:\n{err}");
        }
        assert!(Instant::now() < deadline, "strata did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

/// SIGTERM, then everything the process wrote to stdout and stderr.
fn stop(mut child: Child) -> (Vec<u8>, Vec<u8>) {
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let readers = (
        std::thread::spawn(move || {
            let mut b = Vec::new();
            out.read_to_end(&mut b).map(|_| b)
        }),
        std::thread::spawn(move || {
            let mut b = Vec::new();
            err.read_to_end(&mut b).map(|_| b)
        }),
    );
    Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "strata did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "strata exited with {status}");
    (
        readers.0.join().unwrap().unwrap(),
        readers.1.join().unwrap().unwrap(),
    )
}

/// (level, target) of each log line; continuation lines (the effective configuration)
/// have no level.
fn log_lines(text: &str) -> Vec<(&str, &str, &str)> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let (_ts, level, target) = (words.next()?, words.next()?, words.next()?);
            ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"]
                .contains(&level)
                .then(|| (level, target.trim_end_matches(':'), line))
        })
        .collect()
}

#[test]
fn unrelated_strata_variables_are_warned_about_and_output_is_plain_and_quiet() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let child = spawn(
        &data,
        port,
        &[
            ("STRATA_HOME", "/opt/strata"),
            ("STRATA_BIN", "/opt/strata/bin/strata"),
            ("STRATA_VERSION", "0.1.0"),
            ("STRATA_LOG_DIR_S", "/nowhere"),
            // A known key from the environment still acts.
            ("STRATA_NUM_PARTITIONS", "3"),
        ],
    );
    let (stdout, stderr) = stop(child);
    for (name, bytes) in [("stdout", &stdout), ("stderr", &stderr)] {
        assert!(
            !bytes.contains(&0x1b),
            "{name} holds terminal escape codes:\n{}",
            String::from_utf8_lossy(bytes)
        );
    }
    let text = String::from_utf8_lossy(&stderr);
    let lines = log_lines(&text);
    for var in ["STRATA_HOME", "STRATA_BIN", "STRATA_VERSION"] {
        assert!(
            lines
                .iter()
                .any(|(level, _, l)| *level == "WARN" && l.contains(var) && l.contains("ignored")),
            "no warning naming {var}:\n{text}"
        );
    }
    assert!(
        text.contains("did you mean STRATA_LOG_DIRS?"),
        "no suggestion for a near miss:\n{text}"
    );
    assert!(
        text.contains("* num.partitions = 3"),
        "STRATA_NUM_PARTITIONS did not act:\n{text}"
    );
    let foreign: Vec<_> = lines
        .iter()
        .filter(|(_, target, _)| !target.starts_with("strata"))
        .map(|(_, _, l)| *l)
        .collect();
    assert!(
        foreign.is_empty(),
        "a clean start and stop printed lines from dependencies:\n{}",
        foreign.join("\n")
    );
    for wanted in [
        "partition logs recovered",
        "broker ready",
        "stopping",
        "stopped",
    ] {
        assert!(
            lines
                .iter()
                .any(|(level, _, l)| *level == "INFO" && l.contains(wanted)),
            "no INFO line '{wanted}':\n{text}"
        );
    }

    // A known key with a bad value from the environment still stops start-up.
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("--check-config")
        .env("STRATA_NUM_PARTITIONS", "zero")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("num.partitions"), "{err}");
    assert!(!out.stderr.contains(&0x1b), "{err}");
}

#[test]
fn rust_log_brings_library_lines_back() {
    // Library internals are hidden by default, not lost: RUST_LOG=info shows them.
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let child = spawn(&dir.path().join("data"), port, &[("RUST_LOG", "info")]);
    let (_, stderr) = stop(child);
    let text = String::from_utf8_lossy(&stderr);
    assert!(
        log_lines(&text)
            .iter()
            .any(|(level, target, _)| *level == "INFO" && target.starts_with("openraft")),
        "RUST_LOG=info shows no openraft line:\n{text}"
    );
}

/// Runs `strata --check-config` (with one unknown STRATA_* variable, so it logs a
/// warning) under a pseudo-terminal through util-linux `script`; what it printed.
fn at_a_terminal(no_color: bool) -> Vec<u8> {
    let binary = env!("CARGO_BIN_EXE_strata");
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new("script");
    cmd.args(["-qec"])
        .arg(format!(
            "{binary} --check-config --override log.dirs={}",
            dir.path().join("d").display()
        ))
        .arg("/dev/null")
        .env("STRATA_NOT_A_KEY", "1")
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null());
    if no_color {
        cmd.env("NO_COLOR", "1");
    }
    let out = cmd.output().expect("script (util-linux) must be installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    out.stdout
}

#[test]
fn colour_only_at_a_terminal_and_never_under_no_color() {
    let coloured = at_a_terminal(false);
    let text = String::from_utf8_lossy(&coloured);
    assert!(text.contains("STRATA_NOT_A_KEY"), "{text}");
    assert!(coloured.contains(&0x1b), "a terminal gets colour:\n{text}");
    let plain = at_a_terminal(true);
    let text = String::from_utf8_lossy(&plain);
    assert!(text.contains("STRATA_NOT_A_KEY"), "{text}");
    assert!(!plain.contains(&0x1b), "NO_COLOR=1 at a terminal:\n{text}");
}
