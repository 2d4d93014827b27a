//! Who may connect to a listener: the security groups in force, which listeners may
//! run without one (loopback-only ones), and the count of refused connections.
//!
//! Default deny: a listener with groups attached admits only what a rule allows, and a
//! listener bound beyond loopback must have a group (start-up refuses otherwise, and a
//! reloaded file that would leave one unguarded is refused too).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tracing::warn;

use super::security_groups::{SecurityGroups, Verdict};
use crate::config::BrokerConfig;

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
        let rules = match &path {
            Some(p) => SecurityGroups::load(p, &listeners).map_err(|e| e.to_string())?,
            None => SecurityGroups::default(),
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
            loopback,
            denied: Family::default(),
            last_logged_s: AtomicU64::new(0),
            quiet: AtomicU64::new(0),
        };
        admission.check_default_deny(&admission.rules.load(), config)?;
        Ok(Arc::new(admission))
    }

    fn check_default_deny(
        &self,
        rules: &SecurityGroups,
        config: &BrokerConfig,
    ) -> Result<(), String> {
        for l in &config.listeners {
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

    /// Registers `strata_security_group_denied_total{listener}`.
    pub fn register(&self, registry: &mut Registry) {
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

    /// Listener names as configured.
    pub fn listeners(&self) -> &[String] {
        &self.listeners
    }

    /// `security.groups.file`, if set.
    pub fn path(&self) -> Option<&PathBuf> {
        self.path.as_ref()
    }
}
