//! Builds and wires the broker: log dirs, metadata quorum, replicas, listeners and
//! background tasks; and shuts them down in order. Tests start brokers in-process
//! through [`start`] on 127.0.0.1:0.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpSocket;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::admin::Admin;
use crate::api::Broker;
use crate::config::BrokerConfig;
use crate::coordinator::group::store::OFFSETS_TOPIC;
use crate::coordinator::{GroupCoordinator, ProducerIdPool};
use crate::log::manager::METADATA_DIR_PREFIX;
use crate::log::LogManager;
use crate::metadata::{
    AlterPartition, BrokerEndpoint, BrokerHeartbeat, BrokerImage, ControllerReply,
    ControllerRequest, ControllerSettings, MetadataQuorum, MetadataRecord, QuorumOptions,
};
use crate::network::admission::Admission;
use crate::network::listener::{accept_loop, ListenerContext};
use crate::replication::ReplicaManager;
use crate::tiered::cache::ChunkCache;
use crate::tiered::manager::ManagerSettings;
use crate::tiered::{RemoteLogManager, RemoteReader, RemoteStore, TieredMetrics};

/// A running broker.
pub struct RunningBroker {
    /// Bound address of each listener, in `listeners` order.
    pub addrs: Vec<SocketAddr>,
    /// Bound address of the `/metrics` endpoint, if `metrics.listener` is set.
    pub metrics_addr: Option<SocketAddr>,
    /// The Kafka API side; `None` on a controller-only node.
    pub broker: Option<Arc<Broker>>,
    shutdown: CancellationToken,
    done: JoinHandle<()>,
}

impl RunningBroker {
    /// `host:port` of the first listener, for clients' `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        self.addrs
            .first()
            .map(|a| a.to_string())
            .unwrap_or_default()
    }

    /// Stops accepting, closes connections, closes logs cleanly, stops the quorum.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        let _ = self.done.await;
    }

    /// Resolves when the broker has stopped (after `shutdown` or a fatal error).
    pub async fn wait(self) {
        let _ = self.done.await;
    }

    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }
}

/// This broker's registration and heartbeats to the active controller.
#[derive(Clone)]
struct Heartbeats {
    quorum: MetadataQuorum,
    node_id: i32,
    /// The broker epoch of the current registration.
    epoch: Arc<std::sync::atomic::AtomicI64>,
    me: BrokerImage,
    /// Set when the controlled shutdown begins: from then on every heartbeat asks
    /// to shut down, so a periodic one can never unfence the broker again.
    stopping: Arc<std::sync::atomic::AtomicBool>,
}

impl Heartbeats {
    /// One heartbeat; registers again when the controller no longer knows this
    /// registration. Returns the reply.
    async fn beat(&self, want_shutdown: bool) -> anyhow::Result<ControllerReply> {
        use std::sync::atomic::Ordering;
        let reply = self
            .quorum
            .call_controller(ControllerRequest::Heartbeat(BrokerHeartbeat {
                node_id: self.node_id,
                epoch: self.epoch.load(Ordering::Relaxed),
                want_shutdown,
            }))
            .await?;
        if let ControllerReply::Heartbeat { stale: true, .. } = reply {
            warn!(
                node_id = self.node_id,
                "the controller does not know this broker's registration; registering again"
            );
            if let ControllerReply::Registered { epoch } = self
                .quorum
                .call_controller(ControllerRequest::RegisterBroker(self.me.clone()))
                .await?
            {
                self.epoch.store(epoch, Ordering::Relaxed);
            }
        }
        Ok(reply)
    }

    /// Heartbeats every `interval` until `stop`.
    async fn run(self, interval: Duration, stop: CancellationToken) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.cancelled() => return,
            }
            let beat = tokio::select! {
                beat = self.beat(self.stopping.load(std::sync::atomic::Ordering::Relaxed)) => beat,
                _ = stop.cancelled() => return,
            };
            if let Err(e) = beat {
                warn!(error = %e, "heartbeat to the controller failed");
            }
        }
    }

    /// Kafka's controlled shutdown: the controller moves every leadership and ISR
    /// membership of this broker to others before it stops serving.
    /// Gives up after `budget` (the session timeout: by then the controller would
    /// have fenced this broker anyway, e.g. when the whole quorum stops at once).
    async fn controlled_shutdown(&self, budget: Duration) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let deadline = tokio::time::Instant::now() + budget;
        while tokio::time::Instant::now() < deadline {
            let beat = tokio::time::timeout_at(deadline, self.beat(true)).await;
            let Ok(beat) = beat else { break };
            match beat {
                Ok(ControllerReply::Heartbeat {
                    shutdown_ready: true,
                    ..
                }) => {
                    info!("controlled shutdown done: leaderships moved away");
                    return;
                }
                Ok(_) => {}
                Err(e) => warn!(error = %e, "controlled shutdown request failed"),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        warn!(
            budget_ms = budget.as_millis() as u64,
            "controlled shutdown did not finish (no controller?); stopping anyway"
        );
    }
}

/// `meta.properties` in the log dirs, as Kafka writes it: which cluster and node the
/// data belongs to. A node whose metadata directory was wiped but whose log dirs name a
/// cluster rejoins it rather than forming a new one; a log dir of another cluster
/// stops start-up.
struct MetaProperties {
    cluster_id: Option<String>,
    node_id: Option<i32>,
    dirs: Vec<std::path::PathBuf>,
}

impl MetaProperties {
    const FILE: &'static str = "meta.properties";

    fn read(dirs: &[std::path::PathBuf]) -> anyhow::Result<MetaProperties> {
        let mut out = MetaProperties {
            cluster_id: None,
            node_id: None,
            dirs: dirs.to_vec(),
        };
        for dir in dirs {
            let path = dir.join(Self::FILE);
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            for line in text.lines() {
                match line.split_once('=') {
                    Some(("cluster.id", v)) => {
                        let v = v.trim().to_string();
                        if out.cluster_id.as_ref().is_some_and(|c| *c != v) {
                            anyhow::bail!(
                                "log dirs belong to different clusters ({} in {})",
                                v,
                                path.display()
                            );
                        }
                        out.cluster_id = Some(v);
                    }
                    Some(("node.id", v)) => out.node_id = v.trim().parse().ok(),
                    _ => {}
                }
            }
        }
        Ok(out)
    }

    /// Refuses data of another cluster or node; records this one's ids otherwise.
    fn check_and_write(&self, config: &BrokerConfig, cluster_id: &str) -> anyhow::Result<()> {
        if let Some(theirs) = &self.cluster_id {
            if theirs != cluster_id {
                anyhow::bail!(
                    "log.dirs hold data of cluster {theirs}, but the metadata quorum is cluster {cluster_id}; refusing to mix them"
                );
            }
        }
        if let Some(node) = self.node_id {
            if node != config.node_id {
                anyhow::bail!(
                    "log.dirs hold data of node.id {node}, but this broker is node.id {}",
                    config.node_id
                );
            }
        }
        if self.cluster_id.is_none() || self.node_id.is_none() {
            let text = format!(
                "#\n# Written by Strata; do not edit.\nversion=1\ncluster.id={cluster_id}\nnode.id={}\n",
                config.node_id
            );
            for dir in &self.dirs {
                let path = dir.join(Self::FILE);
                std::fs::write(&path, &text)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
        }
        Ok(())
    }
}

/// Runs blocking `work` every `interval` on the blocking pool until shutdown (a pass
/// that runs late is not made up: retention and flush passes catch up by themselves).
fn every(
    tracker: &TaskTracker,
    interval: Duration,
    shutdown: &CancellationToken,
    work: impl Fn() + Send + Sync + 'static,
) {
    let work = Arc::new(work);
    let shutdown = shutdown.clone();
    tracker.spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let work = work.clone();
                    let _ = tokio::task::spawn_blocking(move || work()).await;
                }
                _ = shutdown.cancelled() => break,
            }
        }
    });
}

/// Topic names by id, to tell which topics a metadata change deleted.
fn topic_names_by_id(image: &crate::metadata::ClusterImage) -> BTreeMap<uuid::Uuid, String> {
    image
        .topics
        .values()
        .map(|t| (t.id, t.name.clone()))
        .collect()
}

fn num(config: &BrokerConfig, key: &str) -> i64 {
    config.get(key).trim().parse().unwrap_or(0)
}

/// The parts of tiered storage that outlive start-up.
struct Tiering {
    store: RemoteStore,
    metrics: Arc<TieredMetrics>,
}

/// Builds the object store (and checks it answers), the chunk cache and the remote
/// reader; registers the tiering metrics.
async fn start_tiering(
    config: &Arc<BrokerConfig>,
    replicas: &Arc<ReplicaManager>,
    registry: &crate::metrics::SharedRegistry,
) -> anyhow::Result<Tiering> {
    let store = RemoteStore::from_config(config)?;
    store.probe().await?;
    info!(url = %store.url, "object store ready for tiered storage");
    let metrics = Arc::new(TieredMetrics::default());
    metrics.register(&mut registry.lock());
    let chunk_bytes = num(config, "remote.log.reader.chunk.bytes") as usize;
    let cache_dir = match config.get("remote.log.cache.dir").trim() {
        "" => config
            .log_dirs
            .first()
            .cloned()
            .unwrap_or_else(|| "./data".into())
            .join("remote-cache"),
        dir => dir.into(),
    };
    let cache = ChunkCache::open(
        &cache_dir,
        num(config, "remote.log.cache.memory.bytes") as usize,
        num(config, "remote.log.cache.disk.bytes") as usize,
        chunk_bytes,
        metrics.clone(),
    )
    .await
    .with_context(|| format!("opening the remote read cache in {}", cache_dir.display()))?;
    replicas.set_remote_reader(RemoteReader::new(
        store.clone(),
        cache,
        chunk_bytes as u64,
        num(config, "remote.log.reader.prefetch.chunks") as u32,
        num(config, "remote.log.reader.threads") as usize,
        metrics.clone(),
    ));
    Ok(Tiering { store, metrics })
}

/// Starts a broker and returns once it is serving on every listener.
/// Pending-connection queue per listener (Kafka leaves it to the OS default; 1024 is
/// what Linux caps `somaxconn` at by default on older kernels).
const LISTEN_BACKLOG: u32 = 1024;

/// Binds (without listening) to the first address `addr` resolves to that accepts a
/// bind, as `TcpListener::bind` would.
async fn bind_socket(addr: &str) -> std::io::Result<TcpSocket> {
    let mut last = None;
    for a in tokio::net::lookup_host(addr).await? {
        let socket = if a.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        match socket.bind(a) {
            Ok(()) => return Ok(socket),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "resolves to no address")
    }))
}

/// `socket.send.buffer.bytes` / `socket.receive.buffer.bytes` (SO_SNDBUF / SO_RCVBUF;
/// -1 keeps the OS default), set on the listening socket before `listen()`: Linux gives
/// every accepted connection the listener's buffer sizes, and a receive buffer set
/// before the handshake also sizes the TCP window scale, as Kafka does.
fn set_socket_buffers(socket: &TcpSocket, config: &BrokerConfig) -> anyhow::Result<()> {
    let send = num(config, "socket.send.buffer.bytes");
    if send >= 0 {
        socket
            .set_send_buffer_size(send.min(u32::MAX as i64) as u32)
            .context("setting socket.send.buffer.bytes")?;
    }
    let receive = num(config, "socket.receive.buffer.bytes");
    if receive >= 0 {
        socket
            .set_recv_buffer_size(receive.min(u32::MAX as i64) as u32)
            .context("setting socket.receive.buffer.bytes")?;
    }
    Ok(())
}

/// Opens this node's member of the metadata quorum (a voter, or an observer on a
/// broker-only node), waiting for the quorum as long as it takes or until `shutdown`.
async fn open_quorum(
    config: &BrokerConfig,
    metadata_dir: &std::path::Path,
    listener: Option<tokio::net::TcpListener>,
    meta_properties: &MetaProperties,
    shutdown: &CancellationToken,
    admission: Arc<Admission>,
) -> anyhow::Result<MetadataQuorum> {
    let fresh_metadata = !metadata_dir.exists();
    let controller_name = config.controller_listener.clone().unwrap_or_default();
    MetadataQuorum::open_member(
        metadata_dir,
        QuorumOptions {
            node_id: config.node_id as u64,
            voters: config
                .voters
                .iter()
                .map(|(id, v)| (*id as u64, v.addr()))
                .collect(),
            listener,
            controller: ControllerSettings {
                session_timeout: Duration::from_millis(
                    num(config, "broker.session.timeout.ms") as u64
                ),
                rebalance: (config.get("auto.leader.rebalance.enable") == "true").then(|| {
                    (
                        Duration::from_secs(
                            num(config, "leader.imbalance.check.interval.seconds").max(1) as u64,
                        ),
                        num(config, "leader.imbalance.per.broker.percentage"),
                    )
                }),
                unclean_default: config
                    .get("unclean.leader.election.enable")
                    .eq_ignore_ascii_case("true"),
            },
            joined_before: fresh_metadata && meta_properties.cluster_id.is_some(),
            cancel: shutdown.clone(),
            admit: Some({
                let listener: Arc<str> = Arc::from(controller_name.as_str());
                let stop = shutdown.clone();
                Arc::new(move |local, peer| {
                    admission.admit(&listener, local, peer).then(|| {
                        let (close, guard) = admission.track(listener.clone(), local, peer, &stop);
                        crate::metadata::Admitted {
                            close,
                            guard: Box::new(guard),
                        }
                    })
                })
            }),
            tls: controller_tls(config, &controller_name, shutdown)?,
        },
    )
    .await
    .with_context(|| format!("opening the metadata quorum in {}", metadata_dir.display()))
}

/// TLS for the quorum when the controller listener is SSL: the server side (with its
/// certificate reloaded as on any TLS listener) on a node that binds the listener, the
/// client side (its truststore, and its keystore for mutual TLS) on every node.
fn controller_tls(
    config: &BrokerConfig,
    listener: &str,
    shutdown: &CancellationToken,
) -> anyhow::Result<crate::metadata::RpcTls> {
    if config.controller_security_protocol != "SSL" || config.voters.is_empty() {
        return Ok(Default::default());
    }
    let named = |e: crate::network::tls::TlsError| anyhow::anyhow!("listener {listener}: {e}");
    let acceptor = if config.listeners.iter().any(|l| l.name == listener) {
        let server = Arc::new(
            crate::network::tls::ServerTls::for_listener(config, listener).map_err(named)?,
        );
        tokio::spawn(server.clone().watch(shutdown.clone()));
        Some(Arc::new(move || server.acceptor()) as Arc<dyn Fn() -> _ + Send + Sync>)
    } else {
        None
    };
    Ok(crate::metadata::RpcTls {
        acceptor,
        connector: Some(crate::network::tls::client_connector(config, listener).map_err(named)?),
    })
}

/// Gives a new cluster its id (the one in `meta.properties` if the data has one), and
/// checks and records this node's `meta.properties`.
async fn ensure_cluster_id(
    quorum: &MetadataQuorum,
    config: &BrokerConfig,
    meta_properties: &MetaProperties,
) -> anyhow::Result<()> {
    if quorum.view().current().cluster_id.is_empty() {
        quorum
            .propose(MetadataRecord::InitCluster {
                cluster_id: meta_properties
                    .cluster_id
                    .clone()
                    .unwrap_or_else(crate::cli::storage::new_cluster_id),
            })
            .await?;
    }
    let cluster_id = quorum.view().current().cluster_id.clone();
    meta_properties.check_and_write(config, &cluster_id)?;
    apply_bootstrap(quorum, config).await
}

/// Applies the records `strata storage format` left (the first SCRAM users) once,
/// skipping a credential the quorum already has, then marks the file applied.
async fn apply_bootstrap(quorum: &MetadataQuorum, config: &BrokerConfig) -> anyhow::Result<()> {
    let Some((path, records)) = crate::cli::storage::take_bootstrap(config) else {
        return Ok(());
    };
    let image = quorum.view().current();
    let mut applied = 0;
    for record in records {
        if let MetadataRecord::SetScramCredential {
            user, mechanism, ..
        } = &record
        {
            if image
                .scram
                .get(user)
                .is_some_and(|m| m.contains_key(mechanism))
            {
                continue;
            }
        }
        quorum.propose(record).await?;
        applied += 1;
    }
    std::fs::rename(&path, path.with_extension("json.applied"))
        .with_context(|| format!("marking {} applied", path.display()))?;
    info!(applied, "applied the records of strata storage format");
    Ok(())
}

/// A controller-only node (`process.roles=controller`): a voter of the metadata quorum,
/// the active controller while it leads; no client listeners, no partitions.
async fn start_controller(
    config: Arc<BrokerConfig>,
    shutdown: CancellationToken,
) -> anyhow::Result<RunningBroker> {
    let metadata_dir = config
        .metadata_log_dir
        .join(format!("{METADATA_DIR_PREFIX}-0"));
    std::fs::create_dir_all(&config.metadata_log_dir).with_context(|| {
        format!(
            "creating metadata.log.dir {}",
            config.metadata_log_dir.display()
        )
    })?;
    let mut listener = None;
    for l in &config.listeners {
        let socket = bind_socket(&l.bind_addr()).await.with_context(|| {
            format!(
                "binding controller listener {} on {}",
                l.name,
                l.bind_addr()
            )
        })?;
        listener = Some(
            socket
                .listen(LISTEN_BACKLOG)
                .with_context(|| format!("listening on controller listener {}", l.name))?,
        );
    }
    let meta_properties = MetaProperties::read(std::slice::from_ref(&config.metadata_log_dir))?;
    let admission = Admission::from_config(&config).map_err(anyhow::Error::msg)?;
    let quorum = open_quorum(
        &config,
        &metadata_dir,
        listener,
        &meta_properties,
        &shutdown,
        admission,
    )
    .await?;
    ensure_cluster_id(&quorum, &config, &meta_properties).await?;
    // A dedicated controller serves the controller's gauges (the active one's
    // ActiveControllerCount is what "no active controller" alerts sum) and delivers
    // its log like any node.
    let registry = crate::metrics::new_registry();
    registry
        .lock()
        .register_collector(Box::new(crate::metadata::metrics::ControllerCollector {
            node_id: config.node_id,
            is_broker: false,
            quorum: quorum.clone(),
        }));
    let delivery = start_log_delivery(&config, &quorum, &registry)?;
    let metrics_listener = bind_metrics(&config).await?;
    let metrics_addr = metrics_listener.as_ref().and_then(|l| l.local_addr().ok());
    let stop_metrics = CancellationToken::new();
    let metrics_task = metrics_listener.map(|listener| {
        tokio::spawn(crate::metrics::serve(
            listener,
            registry,
            stop_metrics.clone(),
        ))
    });
    info!(
        node_id = config.node_id,
        cluster_id = %quorum.view().current().cluster_id,
        "controller ready"
    );
    let done = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            info!("stopping");
            stop_metrics.cancel();
            if let Some(task) = metrics_task {
                let _ = task.await;
            }
            if let Err(e) = quorum.shutdown().await {
                warn!(error = %e, "metadata quorum shutdown");
            }
            info!("stopped");
            finish_log_delivery(delivery).await;
        })
    };
    Ok(RunningBroker {
        addrs: Vec::new(),
        metrics_addr,
        broker: None,
        shutdown,
        done,
    })
}

/// The metrics endpoint of `metrics.listener`, bound now so a bad address stops
/// start-up; None when it is off.
async fn bind_metrics(config: &BrokerConfig) -> anyhow::Result<Option<tokio::net::TcpListener>> {
    match config.get("metrics.listener").trim() {
        "" => Ok(None),
        addr => {
            Ok(Some(crate::metrics::bind(addr).await.with_context(
                || format!("binding metrics.listener {addr}"),
            )?))
        }
    }
}

/// The node's own log to `logs.delivery.url` (when set and logging was set up by
/// `main`), its counters registered; the cluster id names its path.
fn start_log_delivery(
    config: &BrokerConfig,
    quorum: &MetadataQuorum,
    registry: &crate::metrics::SharedRegistry,
) -> anyhow::Result<Option<crate::logs::delivery::Delivery>> {
    let Some(queue) = crate::logs::delivery_queue() else {
        return Ok(None);
    };
    let cluster_id = quorum.view().current().cluster_id.clone();
    Ok(
        crate::logs::delivery::start(queue, config, &cluster_id)?.map(|(delivery, collector)| {
            registry.lock().register_collector(Box::new(collector));
            delivery
        }),
    )
}

/// Writes the last lines (the shutdown's) out, if the store answers within 10 s.
async fn finish_log_delivery(delivery: Option<crate::logs::delivery::Delivery>) {
    let Some(delivery) = delivery else { return };
    if tokio::time::timeout(Duration::from_secs(10), delivery.finish())
        .await
        .is_err()
    {
        warn!("log delivery did not finish within 10 s");
    }
}

/// How often the ends of partitions led elsewhere are asked for the group lag.
const GROUP_LAG_REFRESH: Duration = Duration::from_secs(5);

pub async fn start(config: BrokerConfig) -> anyhow::Result<RunningBroker> {
    start_with(config, CancellationToken::new()).await
}

/// Like [`start`], with the token that asks the broker to stop: cancelling it during
/// start-up (SIGTERM while the quorum is still unreachable) ends the wait.
pub async fn start_with(
    config: BrokerConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<RunningBroker> {
    let config = Arc::new(config);
    // Background tasks and listeners stop on `stop`, which the shutdown sequence
    // cancels only after leaderships have moved away (controlled shutdown).
    let stop = CancellationToken::new();
    info!(
        "effective configuration (* = set explicitly):\n{}",
        config.describe()
    );
    if !config.roles.broker {
        return start_controller(config, shutdown).await;
    }
    // Security groups first: a bad file or an unguarded listener stops start-up.
    let admission = Admission::from_config(&config).map_err(anyhow::Error::msg)?;
    // TLS of SSL listeners: a missing or bad certificate stops start-up naming the key.
    let mut tls_by_listener = std::collections::HashMap::new();
    let mut sasl_by_listener = std::collections::HashMap::new();
    let sasl_metrics = crate::network::sasl::SaslMetrics::default();
    for l in config.client_listeners() {
        if l.security_protocol.starts_with("SASL_") {
            let sasl = crate::network::sasl::SaslSettings::for_listener(
                &config,
                &l.name,
                sasl_metrics.clone(),
            )
            .map_err(|e| anyhow::anyhow!("listener {}: {e}", l.name))?;
            sasl_by_listener.insert(l.name.clone(), Arc::new(sasl));
        }
        if l.security_protocol == "SSL" || l.security_protocol == "SASL_SSL" {
            let tls = crate::network::tls::ServerTls::for_listener(&config, &l.name)
                .map_err(|e| anyhow::anyhow!("listener {}: {e}", l.name))?;
            tls_by_listener.insert(l.name.clone(), Arc::new(tls));
        }
    }
    let open_files = match crate::log::files::raise_open_files_limit() {
        Ok(limit) => Some(limit),
        Err(e) => {
            warn!(error = %e, "could not read or raise the open-files limit");
            None
        }
    };
    let pool_capacity = match num(&config, "strata.log.open.files.max") {
        n if n > 0 => n as usize,
        _ => crate::log::files::default_pool_capacity(open_files.map_or(1024, |l| l.soft)),
    };
    crate::log::files::pool().set_capacity(pool_capacity);
    let logs = LogManager::open(&config.log_dirs).context("opening log.dirs")?;
    let metadata_dir = config
        .metadata_log_dir
        .join(format!("{METADATA_DIR_PREFIX}-0"));

    // Bind first so port 0 resolves before we advertise anything, but listen only once
    // the logs are recovered: a client that connects must find a broker ready to serve.
    // The controller listener listens at once: the other voters need it to form the
    // quorum this broker waits for.
    let mut bound = Vec::new();
    let mut controller_listener = None;
    for l in &config.listeners {
        let socket = bind_socket(&l.bind_addr()).await.with_context(|| {
            format!(
                "binding listener {} on {} (key 'listeners')",
                l.name,
                l.bind_addr()
            )
        })?;
        if Some(&l.name) == config.controller_listener.as_ref() {
            controller_listener = Some(
                socket
                    .listen(LISTEN_BACKLOG)
                    .with_context(|| format!("listening on controller listener {}", l.name))?,
            );
            continue;
        }
        set_socket_buffers(&socket, &config)?;
        bound.push((l.name.clone(), socket));
    }
    let meta_properties = MetaProperties::read(&config.log_dirs)?;
    let quorum = open_quorum(
        &config,
        &metadata_dir,
        controller_listener,
        &meta_properties,
        &shutdown,
        admission.clone(),
    )
    .await?;

    let addrs: Vec<SocketAddr> = bound
        .iter()
        .map(|(_, s)| s.local_addr())
        .collect::<Result<_, _>>()?;
    // Each listener's advertised address; port 0 means "the port it was bound to".
    let endpoints: Vec<BrokerEndpoint> = config
        .client_listeners()
        .zip(&addrs)
        .map(|(l, bound)| {
            let advertised = config
                .advertised_listeners
                .iter()
                .find(|a| a.name == l.name)
                .unwrap_or(l);
            let port = if advertised.port == 0 {
                bound.port()
            } else {
                advertised.port
            };
            let host = if advertised.host.is_empty()
                || advertised.host == "0.0.0.0"
                || advertised.host == "::"
            {
                "127.0.0.1".to_string()
            } else {
                advertised.host.clone()
            };
            BrokerEndpoint {
                listener: l.name.clone(),
                host,
                port: port as i32,
            }
        })
        .collect();

    ensure_cluster_id(&quorum, &config, &meta_properties).await?;
    let me = BrokerImage {
        node_id: config.node_id,
        host: endpoints[0].host.clone(),
        port: endpoints[0].port,
        rack: config.rack.clone(),
        endpoints: endpoints.clone(),
        incarnation: uuid::Uuid::new_v4(),
        epoch: 0,
        fenced: true,
        shutting_down: false,
    };
    let broker_epoch = match quorum
        .call_controller(ControllerRequest::RegisterBroker(me.clone()))
        .await?
    {
        ControllerReply::Registered { epoch } => epoch,
        other => anyhow::bail!("the controller refused the registration: {other:?}"),
    };
    info!(
        node_id = config.node_id,
        broker_epoch, "registered with the controller"
    );

    let clean_start = logs.clean_start();
    let replicas = Arc::new(ReplicaManager::new(config.clone(), logs));
    // Followers reach leaders over the inter-broker listener: with TLS when it is SSL
    // or SASL_SSL, logged in when it is SASL_PLAINTEXT or SASL_SSL.
    let inter_broker = config
        .listeners
        .iter()
        .find(|l| l.name == config.inter_broker_listener)
        .filter(|_| config.is_cluster());
    let inter_broker_tls = match inter_broker {
        Some(l) if l.security_protocol.ends_with("SSL") => Some(
            crate::network::tls::client_connector(&config, &l.name)
                .map_err(|e| anyhow::anyhow!("inter-broker listener {}: {e}", l.name))?,
        ),
        _ => None,
    };
    let inter_broker_sasl = match inter_broker {
        Some(l) if l.security_protocol.starts_with("SASL_") => Some(
            crate::network::sasl::inter_broker_login(&config, &l.name)
                .map_err(|e| anyhow::anyhow!(e))?,
        ),
        _ => None,
    };
    replicas.start_fetchers(stop.child_token(), inter_broker_tls, inter_broker_sasl);
    let image = quorum.view().current();
    info!(cluster_id = %image.cluster_id, node_id = config.node_id, topics = image.topics.len(), "metadata loaded");
    let recovery_started = std::time::Instant::now();
    replicas
        .reconcile(&image)
        .context("opening partition logs")?;
    replicas.remove_orphans(&image);
    let partitions = replicas.all().len();
    info!(
        partitions,
        after = if clean_start {
            "clean shutdown"
        } else {
            "unclean shutdown"
        },
        elapsed_ms = recovery_started.elapsed().as_millis() as u64,
        "partition logs recovered"
    );
    if let Some(limit) = open_files {
        // What the broker needs: the segment-file pool plus a reserve for connections
        // and everything else, whatever the number of partitions.
        let needs = pool_capacity as u64 + crate::log::files::RESERVED_DESCRIPTORS;
        info!(
            soft = limit.soft,
            hard = limit.hard,
            raised_from = limit.was,
            segment_file_pool = pool_capacity,
            needs,
            partitions,
            "open files limit"
        );
        if limit.soft < needs {
            warn!(
                soft = limit.soft,
                needs,
                "the open-files limit is below what strata.log.open.files.max needs; raise LimitNOFILE (systemd) or ulimit -n, or lower strata.log.open.files.max"
            );
        }
    }

    // Logs are open: ask to be unfenced, so this broker can lead again.
    let heartbeats = Heartbeats {
        quorum: quorum.clone(),
        node_id: config.node_id,
        epoch: Arc::new(std::sync::atomic::AtomicI64::new(broker_epoch)),
        me,
        stopping: Arc::new(std::sync::atomic::AtomicBool::new(false)),
    };
    heartbeats.beat(false).await?;
    replicas
        .reconcile(&quorum.view().current())
        .context("applying leaderships after unfencing")?;

    let admin = Admin {
        config: config.clone(),
        quorum: quorum.clone(),
        replicas: replicas.clone(),
    };
    // The internal offsets topic: a single node makes it at start; a cluster on first
    // use (FindCoordinator), once enough brokers registered, as Kafka does.
    if !config.is_cluster() {
        admin
            .ensure_offsets_topic()
            .await
            .map_err(|e| anyhow::anyhow!("creating {OFFSETS_TOPIC}: {e}"))?;
    }
    let groups = Arc::new(GroupCoordinator::new(
        &config,
        replicas.clone(),
        quorum.view(),
    ));
    // Load the groups of the offsets partitions led here before serving.
    for load in groups.sync_leadership() {
        let _ = load.await;
    }
    groups.forget_missing_topics().await;

    // Metrics endpoint: bound now so a bad address stops start-up.
    let registry = crate::metrics::new_registry();
    let listener_names = |sasl: bool| -> Vec<String> {
        config
            .listeners
            .iter()
            .filter(|l| !sasl || l.security_protocol.starts_with("SASL_"))
            .map(|l| l.name.clone())
            .collect()
    };
    admission.register(&mut registry.lock(), &listener_names(false));
    sasl_metrics.register(&mut registry.lock(), &listener_names(true));
    registry.lock().register_collector(Box::new(
        crate::replication::metrics::ReplicationCollector {
            replicas: replicas.clone(),
            quorum: quorum.clone(),
        },
    ));
    registry
        .lock()
        .register_collector(Box::new(crate::metadata::metrics::ControllerCollector {
            node_id: config.node_id,
            is_broker: true,
            quorum: quorum.clone(),
        }));
    registry
        .lock()
        .register_collector(Box::new(crate::metrics::topic::BrokerTopicCollector(
            replicas.topic_stats().clone(),
        )));
    let remote_ends = Arc::new(crate::coordinator::group::metrics::RemoteEnds::default());
    registry.lock().register_collector(Box::new(
        crate::coordinator::group::metrics::GroupCollector {
            groups: groups.clone(),
            replicas: replicas.clone(),
            remote_ends: remote_ends.clone(),
        },
    ));
    let request_metrics = Arc::new(crate::metrics::request::RequestMetrics::default());
    registry
        .lock()
        .register_collector(Box::new(crate::metrics::request::RequestCollector {
            requests: request_metrics.clone(),
            idle: crate::metrics::request::WorkerIdle::new(tokio::runtime::Handle::current()),
        }));
    let delivery = start_log_delivery(&config, &quorum, &registry)?;
    let metrics_listener = bind_metrics(&config).await?;
    let metrics_addr = metrics_listener.as_ref().and_then(|l| l.local_addr().ok());
    let tiering = if config.remote_storage_system_enable {
        let tiering = start_tiering(&config, &replicas, &registry).await?;
        replicas
            .restore_producer_snapshots(&quorum.view().current())
            .await;
        Some(tiering)
    } else {
        None
    };

    let broker = Arc::new(Broker {
        config: config.clone(),
        replicas: replicas.clone(),
        admin,
        producer_ids: ProducerIdPool::default(),
        groups: groups.clone(),
        authorizer: crate::api::authorize::Authorizer::from_config(&config),
        request_metrics,
    });

    let tracker = TaskTracker::new();
    // The group lag of partitions with no replica here needs their leaders' ends.
    tracker.spawn(crate::coordinator::group::metrics::refresh_remote_ends(
        groups.clone(),
        replicas.clone(),
        quorum.view(),
        remote_ends,
        GROUP_LAG_REFRESH,
        stop.clone(),
    ));
    // Leaders ask the controller for ISR changes (AlterPartition) and use them only
    // once committed; the ISR shrink check runs every replica.lag.time.max.ms / 2.
    if let Some(mut changes) = replicas.take_isr_changes() {
        let quorum = quorum.clone();
        let stop = stop.clone();
        let heartbeats = heartbeats.clone();
        tracker.spawn(async move {
            loop {
                let change = tokio::select! {
                    c = changes.recv() => match c { Some(c) => c, None => break },
                    _ = stop.cancelled() => break,
                };
                let request = ControllerRequest::AlterPartition(AlterPartition {
                    node_id: heartbeats.node_id,
                    broker_epoch: heartbeats.epoch.load(std::sync::atomic::Ordering::Relaxed),
                    topic_id: change.topic_id,
                    partition: change.partition,
                    leader_epoch: change.leader_epoch,
                    partition_epoch: change.partition_epoch,
                    isr: change.isr.clone(),
                });
                // Without a controller quorum this never answers: stopping must not
                // wait for it.
                let reply = tokio::select! {
                    r = quorum.call_controller(request) => r,
                    _ = stop.cancelled() => break,
                };
                match reply {
                    Ok(ControllerReply::AlterPartition(Ok(done))) => {
                        info!(topic = %change.topic, partition = change.partition, isr = ?done.isr, "ISR change committed")
                    }
                    Ok(other) => {
                        warn!(topic = %change.topic, partition = change.partition, reply = ?other, "ISR change refused")
                    }
                    Err(e) => {
                        warn!(topic = %change.topic, partition = change.partition, error = %e, "ISR change failed")
                    }
                }
            }
        });
    }
    // Followers restarted after a tiered range take the producer state uploaded with
    // the segment that ends there (KIP-405's remote log aux state), so a retried
    // batch is still recognised as a duplicate if this replica becomes leader.
    if let Some(mut restarts) = replicas.take_tier_restarts() {
        let replicas = replicas.clone();
        let view = quorum.view();
        let stop = stop.clone();
        tracker.spawn(async move {
            loop {
                let (partition, offset) = tokio::select! {
                    r = restarts.recv() => match r { Some(r) => r, None => break },
                    _ = stop.cancelled() => break,
                };
                replicas
                    .restore_producer_snapshot(&partition, offset, &view.current())
                    .await;
            }
        });
    }
    {
        let replicas = replicas.clone();
        let interval =
            Duration::from_millis((num(&config, "replica.lag.time.max.ms") / 2).max(10) as u64);
        every(&tracker, interval, &stop, move || replicas.shrink_isrs());
    }
    {
        let heartbeats = heartbeats.clone();
        let stop = stop.clone();
        let interval =
            Duration::from_millis(num(&config, "broker.heartbeat.interval.ms").max(1) as u64);
        tracker.spawn(async move { heartbeats.run(interval, stop).await });
    }
    // Keep replicas in step with committed metadata, and drop committed offsets of
    // topics that were deleted.
    {
        let mut view = quorum.view();
        let replicas = replicas.clone();
        let groups = groups.clone();
        let stop = stop.clone();
        tracker.spawn(async move {
            let mut known = topic_names_by_id(&view.current());
            loop {
                tokio::select! {
                    changed = view.changed() => {
                        if changed.is_err() { break; }
                        let image = view.current();
                        if let Err(e) = replicas.reconcile(&image) {
                            error!(error = %e, "applying a metadata change to local replicas failed");
                        }
                        // Coordinators move with their offsets partitions.
                        drop(groups.sync_leadership());
                        let now = topic_names_by_id(&image);
                        let gone: std::collections::BTreeSet<String> = known
                            .iter()
                            .filter(|(id, _)| !now.contains_key(*id))
                            .map(|(_, name)| name.clone())
                            .collect();
                        known = now;
                        tokio::select! {
                            _ = groups.forget_topics(&gone) => {}
                            _ = stop.cancelled() => break,
                        }
                    }
                    _ = stop.cancelled() => break,
                }
            }
        });
    }
    // Group coordinator timers: sessions and join deadlines, offset expiry.
    {
        let groups = groups.clone();
        let stop = stop.clone();
        let expiry_every = Duration::from_millis(
            config
                .get("offsets.retention.check.interval.ms")
                .parse()
                .unwrap_or(600_000u64)
                .max(1),
        );
        tracker.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last_expiry = tokio::time::Instant::now();
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        let work = async {
                            groups.tick().await;
                            if last_expiry.elapsed() >= expiry_every {
                                last_expiry = tokio::time::Instant::now();
                                groups.expire_offsets().await;
                            }
                        };
                        // Writes to __consumer_offsets may wait for replicas that are
                        // gone: stopping does not wait for them.
                        tokio::select! {
                            _ = work => {}
                            _ = stop.cancelled() => break,
                        }
                    }
                    _ = stop.cancelled() => break,
                }
            }
        });
    }
    // Retention.
    {
        let replicas = replicas.clone();
        let interval = Duration::from_millis(config.log_retention_check_interval_ms.max(1));
        every(&tracker, interval, &stop, move || {
            replicas.apply_retention()
        });
    }
    // Flush scheduler (`log.flush.scheduler.interval.ms`; Kafka's default, Long.MAX,
    // leaves flushing to the OS and to appends).
    let flush_every = num(&config, "log.flush.scheduler.interval.ms");
    if flush_every > 0 && flush_every < i64::MAX {
        let replicas = replicas.clone();
        let interval = Duration::from_millis(flush_every as u64);
        every(&tracker, interval, &stop, move || replicas.flush_due_logs());
    }
    if let Some(listener) = metrics_listener {
        tracker.spawn(crate::metrics::serve(
            listener,
            registry.clone(),
            stop.clone(),
        ));
    }
    if let Some(tiering) = &tiering {
        let manager = Arc::new(RemoteLogManager::new(
            tiering.store.clone(),
            quorum.clone(),
            replicas.clone(),
            tiering.metrics.clone(),
            ManagerSettings {
                node_id: config.node_id,
                copiers: num(&config, "remote.log.manager.copier.thread.pool.size") as usize,
                backoff_ms: num(&config, "remote.log.manager.task.retry.backoff.ms") as u64,
                backoff_max_ms: num(&config, "remote.log.manager.task.retry.backoff.max.ms") as u64,
                jitter: config
                    .get("remote.log.manager.task.retry.jitter")
                    .parse()
                    .unwrap_or(0.2),
            },
        ));
        let interval = Duration::from_millis(
            num(&config, "remote.log.manager.task.interval.ms").max(1) as u64,
        );
        let stop = stop.clone();
        tracker.spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.cancelled() => break,
                }
                // A pass is not cut short by shutdown: every step is recorded in the
                // quorum first, so stopping between passes is always clean.
                tokio::select! {
                    _ = manager.run_once() => {}
                    _ = stop.cancelled() => break,
                }
            }
        });
    }
    tracker.spawn(admission.clone().watch(stop.clone()));
    for tls in tls_by_listener.values() {
        tracker.spawn(tls.clone().watch(stop.clone()));
    }
    let connections = TaskTracker::new();
    for (name, socket) in bound {
        let listener = socket
            .listen(LISTEN_BACKLOG)
            .with_context(|| format!("listening on listener {name}"))?;
        let tls = tls_by_listener.get(&name).cloned();
        let sasl = sasl_by_listener.get(&name).cloned();
        tracker.spawn(accept_loop(
            listener,
            ListenerContext {
                name,
                broker: broker.clone(),
                max_frame: config.socket_request_max_bytes,
                admission: admission.clone(),
                tls,
                sasl,
            },
            stop.clone(),
            connections.clone(),
        ));
    }
    tracker.close();

    let done = {
        let stop = stop.clone();
        let replicas = replicas.clone();
        let shutdown = shutdown.clone();
        let controlled = config.is_cluster() && config.get("controlled.shutdown.enable") == "true";
        let session_timeout =
            Duration::from_millis(num(&config, "broker.session.timeout.ms").max(1) as u64);
        tokio::spawn(async move {
            shutdown.cancelled().await;
            info!("stopping");
            if controlled {
                heartbeats.controlled_shutdown(session_timeout).await;
                if let Err(e) = replicas.reconcile(&heartbeats.quorum.view().current()) {
                    warn!(error = %e, "applying the controlled shutdown to local replicas");
                }
            }
            stop.cancel();
            // Every task ends on `stop`; a bounded wait keeps a stuck one (say, a
            // call with no quorum to answer it) from holding the process forever.
            if tokio::time::timeout(Duration::from_secs(10), tracker.wait())
                .await
                .is_err()
            {
                warn!("background tasks did not stop within 10 s; stopping anyway");
            }
            connections.close();
            if tokio::time::timeout(Duration::from_secs(10), connections.wait())
                .await
                .is_err()
            {
                warn!("connections did not close within 10 s");
            }
            let r = replicas.clone();
            let _ = tokio::task::spawn_blocking(move || r.shutdown()).await;
            if let Some(reader) = replicas.remote_reader() {
                reader.cache().close().await;
            }
            if let Err(e) = quorum.shutdown().await {
                warn!(error = %e, "metadata quorum shutdown");
            }
            info!("stopped");
            finish_log_delivery(delivery).await;
        })
    };
    info!(addrs = ?addrs, node_id = config.node_id, "broker ready");
    Ok(RunningBroker {
        addrs,
        metrics_addr,
        broker: Some(broker),
        shutdown,
        done,
    })
}
