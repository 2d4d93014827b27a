//! The `strata` command: parses flags, loads the configuration, starts the broker and
//! stops it cleanly on SIGINT/SIGTERM. Subcommands run client tools instead
//! (`strata consumer-groups`, see `strata::cli`).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use strata::cli::consumer_groups::{self, Chunk, ConsumerGroupsArgs};
use strata::config::broker::{env_name, BROKER_KEYS};
use strata::config::spec::{no_effect_reason, KeySpec};
use strata::config::topic::TOPIC_KEYS;
use strata::config::BrokerConfig;

const AFTER_HELP: &str = "\
CONFIGURATION
  Broker keys use Kafka's broker config names (listeners, log.dirs, num.partitions,
  log.retention.ms, message.max.bytes, ...). Sources, later wins:
    1. built-in defaults: a single node on 127.0.0.1:9092 with data in ./data
    2. --config FILE: TOML; tables flatten into dotted keys, so
       [object_store] url = \"...\" is the key object_store.url
    3. STRATA_* environment variables: log.dirs is STRATA_LOG_DIRS
    4. --override key=value (repeatable), as kafka-server-start --override
  An unknown key in the file or in --override, or a bad value from any source, stops
  start-up with a message naming it.
  `strata --list-config` prints every broker and topic key with its default.

ENVIRONMENT
  A STRATA_* variable that names no key (STRATA_HOME, STRATA_VERSION, ...) is logged as
  a warning, with the closest key when it looks like a typo, and otherwise ignored.

LOGGING
  Logs go to stderr. RUST_LOG sets the filter (default: warn,strata=info: Strata's own
  INFO lines, warnings and errors from libraries), e.g. RUST_LOG=strata=debug or
  RUST_LOG=info for every library's INFO lines. Colour only when stdout and stderr are
  terminals and NO_COLOR is unset. logs.format=json writes one JSON object per line;
  logs.delivery.url=s3://bucket/prefix also ships the log as gzip'd JSON lines.";

/// Strata: a Kafka-compatible broker.
#[derive(Parser, Debug)]
#[command(
    name = "strata",
    version,
    about,
    after_help = AFTER_HELP
)]
struct Cli {
    /// Without a command, strata runs the broker.
    #[command(subcommand)]
    command: Option<Command>,
    /// TOML config file (see config/single-node.toml); also read by subcommands that
    /// need the broker's configuration (security-groups).
    #[arg(long, short = 'c', value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// Sets a config key, e.g. --override log.retention.ms=60000 (repeatable).
    #[arg(long = "override", value_name = "KEY=VALUE", global = true)]
    overrides: Vec<String>,
    /// Prints every broker and topic config key with its default and exits.
    #[arg(long)]
    list_config: bool,
    /// Validates the configuration, prints the effective values and exits.
    #[arg(long)]
    check_config: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Lists consumer groups and describes their offsets, lag, members and state, as
    /// kafka-consumer-groups.sh does (a client: works against any Kafka cluster).
    ConsumerGroups(ConsumerGroupsArgs),
    /// Shows the metadata quorum, the live brokers and every partition's leader,
    /// replicas and ISR, as kafka-metadata-quorum describe --status and
    /// kafka-topics --describe do.
    Cluster(strata::cli::cluster::ClusterArgs),
    /// Checks the security groups of the broker configured by --config / --override:
    /// `security-groups check --listener CLIENT --from 10.0.1.7`.
    SecurityGroups(strata::cli::security_groups::SecurityGroupsArgs),
    /// Formats the broker's directories as kafka-storage does: `storage format
    /// --add-scram 'SCRAM-SHA-512=[name=admin,password=admin-secret]'`.
    Storage(strata::cli::storage::StorageArgs),
}

/// Runs `strata consumer-groups`: prints what it returns (tables on stdout, notices
/// and errors on stderr, as Kafka's tool) and exits 1 if it failed or a group was
/// missing.
fn consumer_groups(args: &ConsumerGroupsArgs) -> anyhow::Result<()> {
    use std::io::Write;
    let outcome = match consumer_groups::run(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("Error: {e}");
            std::process::exit(1);
        }
    };
    let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr().lock());
    for chunk in &outcome.chunks {
        // A closed pipe (e.g. `| head`) is not an error worth reporting.
        let _ = match chunk {
            Chunk::Stdout(s) => out.write_all(s.as_bytes()).and_then(|_| out.flush()),
            Chunk::Stderr(s) => err.write_all(s.as_bytes()).and_then(|_| err.flush()),
        };
    }
    if !outcome.success {
        std::process::exit(1);
    }
    Ok(())
}

/// The `--list-config` label of a key that does not act: never (with why), or not yet.
fn effect_note(key: &KeySpec, not_yet: &str) -> String {
    match no_effect_reason(key.name) {
        Some(reason) => format!(" [no effect in Strata: {reason}]"),
        None if !key.enforced => not_yet.to_string(),
        None => String::new(),
    }
}

fn list_config() -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "# Broker keys (environment variable in brackets)")?;
    for k in BROKER_KEYS {
        let mut note = effect_note(k, " [accepted, not acted on yet]");
        if matches!(k.kind, strata::config::spec::Kind::Password) {
            // Never logged, null in DescribeConfigs.
            note.push_str(" [sensitive]");
        }
        writeln!(
            out,
            "{} = {:?}  [{}]\n    {}{}",
            k.name,
            k.default,
            env_name(k.name),
            k.doc,
            note
        )?;
    }
    writeln!(
        out,
        "\n# Topic keys (CreateTopics / AlterConfigs; broker synonyms in brackets)"
    )?;
    for t in TOPIC_KEYS {
        let note = effect_note(&t.spec, " [stored and shown, not acted on yet]");
        writeln!(
            out,
            "{} = {:?}  [{}]\n    {}{}",
            t.spec.name,
            t.spec.default,
            t.broker_synonyms.join(", "),
            t.spec.doc,
            note
        )?;
    }
    Ok(())
}

/// Large buffers (remote-read chunks, upload parts, fetch reads) come and go all the
/// time. glibc raises its mmap threshold after such buffers are freed and then serves
/// them from its heaps, which fragment: measured with the tiered benchmark, a 1 GiB
/// catch-up read held 670 MB of RSS with a 256 MiB cache. A fixed 4 MiB threshold keeps
/// every buffer that large in its own mapping, returned to the OS when freed.
///
/// Setting that threshold also freezes glibc's trim threshold at its 128 KiB default,
/// so a heap's top was handed back to the OS and faulted in again for nearly every
/// produce request (1 MiB frames): 32 MiB keeps that churn in memory. Measured with
/// `--cluster`: 18 % less broker CPU for the replication-factor-3 produce phase.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 32 << 20);
    }
}

/// Colour only for a person at a terminal: never into files, pipes or journals (where
/// escape codes are stored as garbage), and never when NO_COLOR is set (no-color.org).
/// Both streams must be terminals: `strata > broker.log 2>&1` and `strata | tee` alike
/// stay plain.
fn log_colour() -> bool {
    use std::io::IsTerminal;
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    !no_color && std::io::stderr().is_terminal() && std::io::stdout().is_terminal()
}

/// The broker configuration a tool subcommand reads (exit 2 naming the key if bad).
fn tool_config(cli: &Cli) -> BrokerConfig {
    match BrokerConfig::load(cli.config.as_deref(), std::env::vars(), &cli.overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("strata: configuration error: {e}");
            std::process::exit(2);
        }
    }
}

fn main() -> anyhow::Result<()> {
    tune_allocator();
    let cli = Cli::parse();
    match &cli.command {
        Some(Command::ConsumerGroups(args)) => return consumer_groups(args),
        Some(Command::Cluster(args)) => {
            match strata::cli::cluster::run(args) {
                Ok(text) => {
                    use std::io::Write;
                    let _ = std::io::stdout().lock().write_all(text.as_bytes());
                }
                Err(e) => {
                    eprintln!("Error: {e}");
                    std::process::exit(1);
                }
            }
            return Ok(());
        }
        Some(Command::Storage(args)) => {
            let strata::cli::storage::StorageCommand::Format(format) = &args.command;
            let config = tool_config(&cli);
            match strata::cli::storage::format(&config, format) {
                Ok(text) => {
                    print!("{text}");
                    return Ok(());
                }
                Err(e) => {
                    eprintln!("strata: {e}");
                    std::process::exit(1);
                }
            }
        }
        Some(Command::SecurityGroups(args)) => {
            let strata::cli::security_groups::SecurityGroupsCommand::Check(check) = &args.command;
            let config = tool_config(&cli);
            match strata::cli::security_groups::check(&config, check) {
                Ok((admitted, text)) => {
                    print!("{text}");
                    std::process::exit(if admitted { 0 } else { 1 });
                }
                Err(e) => {
                    eprintln!("strata: {e}");
                    std::process::exit(2);
                }
            }
        }
        None => {}
    }
    if cli.list_config {
        // A closed pipe (e.g. `| head`) is not an error worth reporting.
        let _ = list_config();
        return Ok(());
    }
    let load = || BrokerConfig::load(cli.config.as_deref(), std::env::vars(), &cli.overrides);
    // A first, silent load finds `logs.format` and `logs.delivery.url`, which shape the
    // log; the second load's warnings (unknown STRATA_* variables, keys without
    // effect) then go to that log.
    let silent = tracing::subscriber::NoSubscriber::default();
    if let Ok(first) = tracing::subscriber::with_default(silent, load) {
        strata::logs::init(&first, log_colour());
    }
    let config = match load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("strata: configuration error: {e}");
            std::process::exit(2);
        }
    };
    if cli.check_config {
        println!("{}", config.describe());
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(async move {
        // Signals are handled from the start: a broker still waiting for its quorum
        // stops on SIGTERM too.
        let token = tokio_util::sync::CancellationToken::new();
        {
            let token = token.clone();
            tokio::spawn(async move {
                let mut term =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                        .expect("SIGTERM handler");
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
                token.cancel();
            });
        }
        // With JSON logs, stderr stays one JSON object per line: the error line says it.
        let plain_stderr = config.get("logs.format") != "json";
        let broker = match strata::server::start_with(config, token.clone()).await {
            Ok(b) => b,
            Err(_) if token.is_cancelled() => {
                tracing::info!("stopped before start-up finished");
                return Ok(());
            }
            Err(e) => {
                // A clear one-line reason (with its causes), not a backtrace.
                tracing::error!("start-up failed: {e:#}");
                if plain_stderr {
                    eprintln!("strata: start-up failed: {e:#}");
                }
                std::process::exit(1);
            }
        };
        broker.wait().await;
        Ok(())
    })
}
