//! Who may connect to a listener: the security groups in force, which listeners may
//! run without one (loopback-only ones), and the count of refused connections.
//!
//! Default deny: a listener with groups attached admits only what a rule allows, and a
//! listener bound beyond loopback must have a group (start-up refuses otherwise, and a
//! reloaded file that would leave one unguarded is refused too).
//!
//! The file is re-read every second and on SIGHUP ([`Admission::watch`]); a changed,
//! valid file replaces the rules at once and closes the open connections the new rules
//! no longer admit; an invalid one is logged and the rules in force stay.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::security_groups::{SecurityGroups, Verdict};
use crate::config::{BrokerConfig, Listener};

/// How often the file is re-read for changes.
const RELOAD_EVERY: Duration = Duration::from_secs(1);

fn read_file(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read security.groups.file {}: {e}", path.display()))
}

fn parse_file(path: &Path, text: &str, listeners: &[String]) -> Result<SecurityGroups, String> {
    SecurityGroups::parse(text, listeners).map_err(|reason| {
        format!(
            "security.groups.file {} is not valid: {reason}",
            path.display()
        )
    })
}

/// An open connection, so a reload can close it.
struct OpenConnection {
    listener: Arc<str>,
    local: SocketAddr,
    peer: SocketAddr,
    close: CancellationToken,
}

/// Deregisters a connection when its task ends.
pub struct ConnectionGuard {
    admission: Arc<Admission>,
    id: u64,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.admission.open.lock().remove(&self.id);
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabel {
    listener: String,
}

/// The admission state shared by every accept loop. Cheap to check: one atomic load.
pub struct Admission {
    rules: ArcSwap<SecurityGroups>,
    /// `security.groups.file`, if set.
    path: Option<PathBuf>,
    /// Every listener name, as configured.
    listeners: Vec<String>,
    /// The listeners as configured (for the default-deny check of a reloaded file).
    configured: Vec<Listener>,
    /// The file's text the rules in force came from.
    text: parking_lot::Mutex<String>,
    open: parking_lot::Mutex<HashMap<u64, OpenConnection>>,
    next_id: AtomicU64,
    /// Listeners bound to loopback only (upper case): admitted without a group.
    loopback: BTreeSet<String>,
    denied: Family<ListenerLabel, Counter>,
    /// Rate limit of the denial log: the second it last logged, and how many it
    /// kept quiet about since.
    last_logged_s: AtomicU64,
    quiet: AtomicU64,
}

impl Admission {
    /// Loads `security.groups.file` and checks that every listener bound beyond
    /// loopback has a group; the error names the listener and the key.
    pub fn from_config(config: &BrokerConfig) -> Result<Arc<Admission>, String> {
        let listeners: Vec<String> = config.listeners.iter().map(|l| l.name.clone()).collect();
        let path = match config.get("security.groups.file").trim() {
            "" => None,
            p => Some(PathBuf::from(p)),
        };
        let (rules, text) = match &path {
            Some(p) => {
                let text = read_file(p)?;
                (parse_file(p, &text, &listeners)?, text)
            }
            None => (SecurityGroups::default(), String::new()),
        };
        let loopback = config
            .listeners
            .iter()
            .filter(|l| l.is_loopback_only())
            .map(|l| l.name.to_ascii_uppercase())
            .collect();
        let admission = Admission {
            rules: ArcSwap::from_pointee(rules),
            path,
            listeners,
            configured: config.listeners.clone(),
            text: parking_lot::Mutex::new(text),
            open: parking_lot::Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            loopback,
            denied: Family::default(),
            last_logged_s: AtomicU64::new(0),
            quiet: AtomicU64::new(0),
        };
        admission.check_default_deny(&admission.rules.load())?;
        Ok(Arc::new(admission))
    }

    fn check_default_deny(&self, rules: &SecurityGroups) -> Result<(), String> {
        for l in &self.configured {
            if !rules.guards(&l.name) && !self.loopback.contains(&l.name.to_ascii_uppercase()) {
                return Err(format!(
                    "listener {} binds {} beyond loopback but no security group is attached to it in security.groups.file (default deny; a rule with cidr 0.0.0.0/0 opens it to everyone)",
                    l.name,
                    l.bind_addr()
                ));
            }
        }
        Ok(())
    }

    /// Registers `strata_security_group_denied_total{listener}`, with a zero series
    /// for each of `listeners` so a rate or an alert sees it before the first refusal.
    pub fn register(&self, registry: &mut Registry, listeners: &[String]) {
        for listener in listeners {
            drop(self.denied.get_or_create(&ListenerLabel {
                listener: listener.clone(),
            }));
        }
        registry.register(
            "strata_security_group_denied",
            "Connections refused at accept by the security groups, per listener",
            self.denied.clone(),
        );
    }

    /// The verdict for a connection from `peer` to `listener` on `port`, as the
    /// broker decides it (also what `strata security-groups check` prints).
    pub fn verdict(&self, listener: &str, port: u16, peer: std::net::IpAddr) -> Verdict {
        let rules = self.rules.load();
        if !rules.guards(listener) && self.loopback.contains(&listener.to_ascii_uppercase()) {
            return Verdict::Admitted {
                group: String::new(),
                rule: "loopback-only listener with no security group attached".into(),
            };
        }
        rules.check(listener, port, peer)
    }

    /// Checks an accepted connection; a refusal is counted and logged (at most one
    /// line per second, with the number kept quiet meanwhile).
    pub fn admit(&self, listener: &str, local: SocketAddr, peer: SocketAddr) -> bool {
        if self.verdict(listener, local.port(), peer.ip()).admitted() {
            return true;
        }
        self.denied
            .get_or_create(&ListenerLabel {
                listener: listener.to_string(),
            })
            .inc();
        let now_s = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if self.last_logged_s.swap(now_s, Ordering::Relaxed) != now_s {
            let quiet = self.quiet.swap(0, Ordering::Relaxed);
            warn!(listener, %peer, port = local.port(), also_denied_since_last_line = quiet, "connection refused by the security groups");
        } else {
            self.quiet.fetch_add(1, Ordering::Relaxed);
        }
        false
    }

    /// The groups attached to `listener` in the rules in force.
    pub fn attached(&self, listener: &str) -> Vec<String> {
        self.rules.load().attached(listener)
    }

    /// Registers an admitted connection; the returned token closes it when a reload
    /// no longer admits it (or `shutdown` is cancelled). Keep the guard for the
    /// connection's life.
    pub fn track(
        self: &Arc<Self>,
        listener: Arc<str>,
        local: SocketAddr,
        peer: SocketAddr,
        shutdown: &CancellationToken,
    ) -> (CancellationToken, ConnectionGuard) {
        let close = shutdown.child_token();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.open.lock().insert(
            id,
            OpenConnection {
                listener,
                local,
                peer,
                close: close.clone(),
            },
        );
        (
            close,
            ConnectionGuard {
                admission: self.clone(),
                id,
            },
        )
    }

    /// Re-reads the file; a changed, valid file replaces the rules and closes the
    /// connections they no longer admit. Returns whether the rules changed.
    pub fn reload(&self) -> Result<bool, String> {
        let Some(path) = &self.path else {
            return Ok(false);
        };
        let text = read_file(path)?;
        if *self.text.lock() == text {
            return Ok(false);
        }
        let rules = parse_file(path, &text, &self.listeners)?;
        self.check_default_deny(&rules)?;
        let count = rules.rule_count();
        self.rules.store(Arc::new(rules));
        *self.text.lock() = text;
        let mut closed = 0;
        for c in self.open.lock().values() {
            let admitted = self
                .verdict(&c.listener, c.local.port(), c.peer.ip())
                .admitted();
            if !admitted && !c.close.is_cancelled() {
                info!(listener = %c.listener, peer = %c.peer, "closing a connection the new security groups no longer admit");
                c.close.cancel();
                closed += 1;
            }
        }
        info!(path = %path.display(), rules = count, closed, "security groups reloaded");
        Ok(true)
    }

    /// Reloads every second and on SIGHUP until `stop`; an invalid file is logged
    /// (once per change) and the rules in force stay.
    pub async fn watch(self: Arc<Self>, stop: CancellationToken) {
        if self.path.is_none() {
            return;
        }
        let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        {
            Ok(s) => Some(s),
            Err(e) => {
                warn!(error = %e, "no SIGHUP handler; security groups reload on file changes only");
                None
            }
        };
        let mut last_error = String::new();
        loop {
            let hangup_received = async {
                match hangup.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(RELOAD_EVERY) => {}
                Some(()) = hangup_received => info!("SIGHUP: reloading the security groups"),
                _ = stop.cancelled() => return,
            }
            match self.reload() {
                Ok(_) => last_error.clear(),
                Err(e) => {
                    if e != last_error {
                        warn!(error = %e, "security groups not reloaded; the rules in force stay");
                        last_error = e;
                    }
                }
            }
        }
    }
}
