//! VPC-style security groups (`security.groups.file`), checked on a peer's address
//! when a listener accepts a connection, before a byte is read.
//!
//! The file is JSON so that Terraform's `jsondecode(file(...))` reads the very same
//! rules the broker enforces:
//!
//! ```json
//! {
//!   "security_groups": {
//!     "clients": {
//!       "description": "application subnets",
//!       "ingress": [
//!         {"cidr": "10.0.1.0/24", "ports": "9092-9098", "description": "app tier"},
//!         {"source_group": "brokers", "ports": "9092"}
//!       ]
//!     },
//!     "brokers": {"members": ["10.0.0.0/24"], "ingress": [{"source_group": "brokers", "ports": "all"}]}
//!   },
//!   "listeners": {"CLIENT": ["clients"], "REPLICATION": ["brokers"]}
//! }
//! ```
//!
//! As in a VPC, rules only allow and everything else is denied: a connection to a
//! listener is admitted when some ingress rule of some group attached to that listener
//! allows the peer address (`cidr`, or `source_group`: that group's `members`) and the
//! listener's port (`ports`: `"all"`, one port as a number or string, or `"lo-hi"`).
//! This module owns the file's format, its validation and the check; the accept loop
//! and the reload live in [`super::listener`].

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;
use serde::Deserialize;

/// Why a security-groups file was refused.
#[derive(Debug, thiserror::Error)]
pub enum SecurityGroupsError {
    #[error("cannot read security.groups.file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("security.groups.file {path} is not valid: {reason}")]
    Invalid { path: String, reason: String },
}

/// The file as written (JSON); checked and turned into [`SecurityGroups`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFormat {
    #[serde(default)]
    security_groups: BTreeMap<String, GroupFormat>,
    #[serde(default)]
    listeners: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupFormat {
    #[serde(default)]
    #[allow(dead_code)] // documentation for people and Terraform
    description: Option<String>,
    #[serde(default)]
    members: Vec<String>,
    #[serde(default)]
    ingress: Vec<RuleFormat>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFormat {
    cidr: Option<String>,
    source_group: Option<String>,
    ports: Option<serde_json::Value>,
    #[serde(default)]
    description: Option<String>,
}

/// Where an ingress rule admits from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    Cidr(IpNet),
    /// The members of the named group.
    Group(String),
}

/// An inclusive port range; `all` is 0-65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ports {
    lo: u16,
    hi: u16,
}

#[derive(Debug, Clone)]
struct Rule {
    source: Source,
    ports: Ports,
    description: Option<String>,
    /// The rule as a person reads it, for logs and `security-groups check`.
    text: String,
}

#[derive(Debug, Clone, Default)]
struct Group {
    members: Vec<IpNet>,
    ingress: Vec<Rule>,
}

/// The validated rules of one file.
#[derive(Debug, Clone, Default)]
pub struct SecurityGroups {
    groups: BTreeMap<String, Group>,
    /// Listener name (upper case) → attached group names.
    listeners: BTreeMap<String, Vec<String>>,
}

/// The outcome of a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Admitted by `rule` of `group`.
    Admitted { group: String, rule: String },
    /// No rule of the groups attached to the listener admits the peer.
    Denied,
}

impl Verdict {
    pub fn admitted(&self) -> bool {
        matches!(self, Verdict::Admitted { .. })
    }
}

/// Parses `"all"`, a port (number or string) or `"lo-hi"`.
fn parse_ports(value: Option<&serde_json::Value>) -> Result<Ports, String> {
    let text = match value {
        None => return Err("a rule needs \"ports\" (\"all\", a port or \"lo-hi\")".into()),
        Some(serde_json::Value::Number(n)) => n.to_string(),
        Some(serde_json::Value::String(s)) => s.trim().to_string(),
        Some(other) => return Err(format!("ports {other} is neither a number nor a string")),
    };
    if text.eq_ignore_ascii_case("all") {
        return Ok(Ports { lo: 0, hi: 65535 });
    }
    let port = |s: &str| {
        s.trim()
            .parse::<u16>()
            .map_err(|_| format!("ports \"{text}\": '{}' is not a port (0-65535)", s.trim()))
    };
    let (lo, hi) = match text.split_once('-') {
        Some((lo, hi)) => (port(lo)?, port(hi)?),
        None => {
            let p = port(&text)?;
            (p, p)
        }
    };
    if lo > hi {
        return Err(format!("ports \"{text}\": the range is reversed"));
    }
    Ok(Ports { lo, hi })
}

/// A CIDR, or a bare address (a /32 or /128).
fn parse_net(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    if let Ok(net) = text.parse::<IpNet>() {
        // 10.0.1.7/24 means the network 10.0.1.0/24, as AWS reads it.
        return Ok(net.trunc());
    }
    text.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| format!("'{text}' is not a CIDR (10.0.0.0/16, ::/0) or an address"))
}

/// An IPv4 peer on a dual-stack socket arrives as ::ffff:a.b.c.d; rules name IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl SecurityGroups {
    /// Parses and validates a file's text; `listeners` are the broker's listener
    /// names (a file naming another listener is refused).
    pub fn parse(text: &str, listeners: &[String]) -> Result<SecurityGroups, String> {
        let file: FileFormat =
            serde_json::from_str(text).map_err(|e| format!("not the expected JSON: {e}"))?;
        let mut groups = BTreeMap::new();
        for (name, g) in &file.security_groups {
            let members = g
                .members
                .iter()
                .map(|m| parse_net(m).map_err(|e| format!("group \"{name}\" members: {e}")))
                .collect::<Result<Vec<_>, _>>()?;
            let mut ingress = Vec::new();
            for (i, r) in g.ingress.iter().enumerate() {
                let at = format!("group \"{name}\" ingress rule {}", i + 1);
                let source = match (&r.cidr, &r.source_group) {
                    (Some(c), None) => {
                        Source::Cidr(parse_net(c).map_err(|e| format!("{at}: {e}"))?)
                    }
                    (None, Some(s)) => {
                        if !file.security_groups.contains_key(s) {
                            return Err(format!(
                                "{at}: source_group \"{s}\" is not a group in this file"
                            ));
                        }
                        Source::Group(s.clone())
                    }
                    _ => {
                        return Err(format!(
                            "{at}: name exactly one of \"cidr\" and \"source_group\""
                        ))
                    }
                };
                let ports = parse_ports(r.ports.as_ref()).map_err(|e| format!("{at}: {e}"))?;
                let from = match &source {
                    Source::Cidr(net) => net.to_string(),
                    Source::Group(g) => format!("group {g}"),
                };
                let port_text = if ports == (Ports { lo: 0, hi: 65535 }) {
                    "all ports".to_string()
                } else if ports.lo == ports.hi {
                    format!("port {}", ports.lo)
                } else {
                    format!("ports {}-{}", ports.lo, ports.hi)
                };
                let mut text = format!("{at}: from {from}, {port_text}");
                if let Some(d) = &r.description {
                    text.push_str(&format!(" ({d})"));
                }
                ingress.push(Rule {
                    source,
                    ports,
                    description: r.description.clone(),
                    text,
                });
            }
            groups.insert(name.clone(), Group { members, ingress });
        }
        let known: Vec<String> = listeners.iter().map(|l| l.to_ascii_uppercase()).collect();
        let mut attached = BTreeMap::new();
        for (listener, names) in &file.listeners {
            let upper = listener.to_ascii_uppercase();
            if !known.contains(&upper) {
                return Err(format!(
                    "listener \"{listener}\" is not one of the broker's listeners {known:?}"
                ));
            }
            for g in names {
                if !groups.contains_key(g) {
                    return Err(format!(
                        "listener \"{listener}\": group \"{g}\" is not a group in this file"
                    ));
                }
            }
            attached.insert(upper, names.clone());
        }
        Ok(SecurityGroups {
            groups,
            listeners: attached,
        })
    }

    /// Reads and validates the file at `path`.
    pub fn load(path: &Path, listeners: &[String]) -> Result<SecurityGroups, SecurityGroupsError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| SecurityGroupsError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::parse(&text, listeners).map_err(|reason| SecurityGroupsError::Invalid {
            path: shown,
            reason,
        })
    }

    /// The groups attached to `listener`.
    pub fn attached(&self, listener: &str) -> Vec<String> {
        self.listeners
            .get(&listener.to_ascii_uppercase())
            .cloned()
            .unwrap_or_default()
    }

    /// Whether any group is attached to `listener`.
    pub fn guards(&self, listener: &str) -> bool {
        self.listeners
            .get(&listener.to_ascii_uppercase())
            .is_some_and(|g| !g.is_empty())
    }

    /// Whether a connection from `peer` to `listener` on `port` is admitted, and by
    /// which rule. A listener with no group attached admits nothing here; start-up
    /// decides which of those may run unguarded (loopback ones).
    pub fn check(&self, listener: &str, port: u16, peer: IpAddr) -> Verdict {
        let peer = canonical(peer);
        let Some(attached) = self.listeners.get(&listener.to_ascii_uppercase()) else {
            return Verdict::Denied;
        };
        for name in attached {
            let Some(group) = self.groups.get(name) else {
                continue;
            };
            for rule in &group.ingress {
                if port < rule.ports.lo || port > rule.ports.hi {
                    continue;
                }
                let from = match &rule.source {
                    Source::Cidr(net) => net.contains(&peer),
                    Source::Group(g) => self
                        .groups
                        .get(g)
                        .is_some_and(|g| g.members.iter().any(|m| m.contains(&peer))),
                };
                if from {
                    return Verdict::Admitted {
                        group: name.clone(),
                        rule: rule.text.clone(),
                    };
                }
            }
        }
        Verdict::Denied
    }

    /// Number of ingress rules in all groups (for the log).
    pub fn rule_count(&self) -> usize {
        self.groups.values().map(|g| g.ingress.len()).sum()
    }

    /// The description of every rule, to keep the field read (Terraform uses it too).
    pub fn descriptions(&self) -> impl Iterator<Item = &str> {
        self.groups
            .values()
            .flat_map(|g| g.ingress.iter().filter_map(|r| r.description.as_deref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"{
      "security_groups": {
        "clients": {
          "description": "application subnets",
          "ingress": [
            {"cidr": "10.0.1.0/24", "ports": "9092-9098", "description": "app tier"},
            {"source_group": "brokers", "ports": "9092"}
          ]
        },
        "brokers": {
          "members": ["10.0.0.0/24", "192.168.7.7"],
          "ingress": [{"source_group": "brokers", "ports": "all"}]
        },
        "unused": {"ingress": []}
      },
      "listeners": {"CLIENT": ["clients"], "replication": ["brokers"]}
    }"#;

    fn listeners() -> Vec<String> {
        vec!["CLIENT".into(), "REPLICATION".into(), "LOCAL".into()]
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn rules_admit_by_cidr_source_group_and_port() {
        let g = SecurityGroups::parse(EXAMPLE, &listeners()).unwrap();
        let v = g.check("CLIENT", 9092, ip("10.0.1.7"));
        assert!(v.admitted(), "{v:?}");
        assert!(
            matches!(&v, Verdict::Admitted { group, rule } if group == "clients" && rule.contains("10.0.1.0/24") && rule.contains("app tier")),
            "{v:?}"
        );
        assert!(g.check("CLIENT", 9098, ip("10.0.1.7")).admitted());
        assert_eq!(g.check("CLIENT", 9099, ip("10.0.1.7")), Verdict::Denied);
        assert_eq!(g.check("CLIENT", 9092, ip("10.0.2.7")), Verdict::Denied);
        // A broker reaches CLIENT on 9092 only, through the source-group rule.
        assert!(g.check("CLIENT", 9092, ip("10.0.0.5")).admitted());
        assert_eq!(g.check("CLIENT", 9093, ip("10.0.0.5")), Verdict::Denied);
        assert!(g.check("CLIENT", 9092, ip("192.168.7.7")).admitted());
        // Listener names match case-insensitively; all ports means all.
        assert!(g.check("Replication", 1, ip("10.0.0.9")).admitted());
        assert_eq!(
            g.check("REPLICATION", 9092, ip("10.0.1.7")),
            Verdict::Denied
        );
        // A listener with no group admits nothing here.
        assert!(!g.guards("LOCAL"));
        assert_eq!(g.check("LOCAL", 9092, ip("127.0.0.1")), Verdict::Denied);
        // IPv4 peers on a dual-stack socket.
        assert!(g.check("CLIENT", 9092, ip("::ffff:10.0.1.7")).admitted());
        assert_eq!(g.rule_count(), 3);
    }

    #[test]
    fn open_rules_and_ipv6() {
        let text = r#"{"security_groups": {"any": {"ingress": [
            {"cidr": "0.0.0.0/0", "ports": 9092},
            {"cidr": "::/0", "ports": "9092"},
            {"cidr": "10.1.2.3/8", "ports": "9094"}
        ]}}, "listeners": {"CLIENT": ["any"]}}"#;
        let g = SecurityGroups::parse(text, &listeners()).unwrap();
        assert!(g.check("CLIENT", 9092, ip("203.0.113.9")).admitted());
        assert!(g.check("CLIENT", 9092, ip("2001:db8::1")).admitted());
        assert_eq!(g.check("CLIENT", 9093, ip("2001:db8::1")), Verdict::Denied);
        // A CIDR with host bits set means its network.
        assert!(g.check("CLIENT", 9094, ip("10.200.0.1")).admitted());
    }

    #[test]
    fn shipped_files_parse() {
        let plain = SecurityGroups::parse(
            include_str!("../../localstack/security-groups.json"),
            &["PLAINTEXT".to_string()],
        )
        .unwrap();
        assert!(plain.check("PLAINTEXT", 9092, ip("172.18.0.1")).admitted());
        assert_eq!(
            plain.check("PLAINTEXT", 9092, ip("8.8.8.8")),
            Verdict::Denied
        );
        let cluster = SecurityGroups::parse(
            include_str!("../../localstack/security-groups.cluster.json"),
            &["INTERNAL".into(), "EXTERNAL".into(), "CONTROLLER".into()],
        )
        .unwrap();
        for l in ["INTERNAL", "EXTERNAL", "CONTROLLER"] {
            assert!(cluster.guards(l));
        }
        let msk = SecurityGroups::parse(
            include_str!("../../config/msk-like.security-groups.json"),
            &[
                "PLAINTEXT".into(),
                "REPLICATION".into(),
                "SSL".into(),
                "SASL_SSL".into(),
            ],
        )
        .unwrap();
        assert!(msk.check("SASL_SSL", 9096, ip("10.0.2.9")).admitted());
        assert!(msk.check("REPLICATION", 9093, ip("10.0.0.4")).admitted());
        assert_eq!(
            msk.check("REPLICATION", 9093, ip("10.0.2.9")),
            Verdict::Denied
        );
    }

    #[test]
    fn bad_files_name_the_problem() {
        let cases: &[(&str, &str)] = &[
            ("{", "JSON"),
            (
                r#"{"security_groups": {"a": {"ingress": [{"cidr": "10.0.0.0/33", "ports": 1}]}}}"#,
                "10.0.0.0/33",
            ),
            (
                r#"{"security_groups": {"a": {"ingress": [{"cidr": "10.0.0.0/8", "ports": "9-1"}]}}}"#,
                "reversed",
            ),
            (
                r#"{"security_groups": {"a": {"ingress": [{"cidr": "10.0.0.0/8", "ports": "70000"}]}}}"#,
                "70000",
            ),
            (
                r#"{"security_groups": {"a": {"ingress": [{"cidr": "10.0.0.0/8"}]}}}"#,
                "ports",
            ),
            (
                r#"{"security_groups": {"a": {"ingress": [{"source_group": "b", "ports": 1}]}}}"#,
                "\"b\"",
            ),
            (
                r#"{"security_groups": {"a": {"ingress": [{"cidr": "10.0.0.0/8", "source_group": "a", "ports": 1}]}}}"#,
                "exactly one",
            ),
            (
                r#"{"security_groups": {"a": {"members": ["nope"]}}}"#,
                "nope",
            ),
            (
                r#"{"security_groups": {"a": {}}, "listeners": {"OTHER": ["a"]}}"#,
                "OTHER",
            ),
            (
                r#"{"security_groups": {"a": {}}, "listeners": {"CLIENT": ["b"]}}"#,
                "\"b\"",
            ),
            (
                r#"{"security_groups": {"a": {"ingress": [{"cidrs": "10.0.0.0/8", "ports": 1}]}}}"#,
                "cidrs",
            ),
        ];
        for (text, needle) in cases {
            let err = SecurityGroups::parse(text, &listeners()).unwrap_err();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }
}
