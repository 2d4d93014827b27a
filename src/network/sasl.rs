//! SASL on SASL_PLAINTEXT and SASL_SSL listeners: SaslHandshake (17) and
//! SaslAuthenticate (36) with SCRAM-SHA-256, SCRAM-SHA-512 and PLAIN, credentials from
//! the metadata quorum, KIP-368 re-authentication, and Kafka's brake on failed
//! attempts.
//!
//! A connection on such a listener may send only ApiVersions and the SASL requests
//! until it has authenticated; anything else closes it. A failed authentication is
//! answered with SASL_AUTHENTICATION_FAILED after `connection.failed.authentication.delay.ms`,
//! logged with the peer address, counted, and the connection is closed. With
//! `connections.max.reauth.ms` set, the session lifetime is returned to the client,
//! which re-authenticates on the same connection before it ends; a connection whose
//! session ended without that is closed at its next request.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::{
    ApiKey, RequestKind, ResponseKind, SaslAuthenticateResponse, SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tracing::{info, warn};

use crate::api::Broker;
use crate::config::BrokerConfig;
use crate::error::code;
use crate::protocol::Request;
use crate::replication::client::SaslLogin;
use crate::scram::{Mechanism, ScramError, ServerExchange, Step};

/// Mechanisms Strata offers.
const KNOWN: &[&str] = &["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabel {
    listener: String,
}

/// `kafka_server_socket_server_metrics_failed_authentication_total{listener}`.
#[derive(Clone, Default)]
pub struct SaslMetrics {
    failed: Family<ListenerLabel, Counter>,
}

impl SaslMetrics {
    /// Registers the counter, with a zero series for each SASL listener in `listeners`.
    pub fn register(&self, registry: &mut Registry, listeners: &[String]) {
        for listener in listeners {
            drop(self.failed.get_or_create(&ListenerLabel {
                listener: listener.clone(),
            }));
        }
        registry.register(
            "kafka_server_socket_server_metrics_failed_authentication",
            "Connections that failed SASL authentication, per listener",
            self.failed.clone(),
        );
    }
}

/// The SASL mechanisms `listener` offers, and the key that says so (its
/// `listener.name.<l>.sasl.enabled.mechanisms`, or the global `sasl.enabled.mechanisms`).
pub fn enabled_mechanisms(config: &BrokerConfig, listener: &str) -> (String, Vec<String>) {
    let prefixed = format!(
        "listener.name.{}.sasl.enabled.mechanisms",
        listener.to_ascii_lowercase()
    );
    let (key, raw) = match config.explicit_value(&prefixed) {
        Some(v) => (prefixed, v.to_string()),
        None => (
            "sasl.enabled.mechanisms".to_string(),
            config.get("sasl.enabled.mechanisms").to_string(),
        ),
    };
    let mechanisms = raw
        .split(',')
        .map(|m| m.trim().to_ascii_uppercase())
        .filter(|m| !m.is_empty())
        .collect();
    (key, mechanisms)
}

/// How this broker logs in to the others over the SASL inter-broker `listener`:
/// `sasl.mechanism.inter.broker.protocol` (one the listener offers) and the username
/// and password of `listener.name.<l>.<mechanism>.sasl.jaas.config`, as Kafka takes
/// them. Errors name the key, never a value.
pub fn inter_broker_login(config: &BrokerConfig, listener: &str) -> Result<SaslLogin, String> {
    let mechanism = config
        .get("sasl.mechanism.inter.broker.protocol")
        .trim()
        .to_ascii_uppercase();
    if !KNOWN.contains(&mechanism.as_str()) {
        return Err(format!(
            "sasl.mechanism.inter.broker.protocol: {mechanism} is not offered; brokers log in to each other over the SASL listener {listener} with one of {}",
            KNOWN.join(", ")
        ));
    }
    let (key, offered) = enabled_mechanisms(config, listener);
    if !offered.contains(&mechanism) {
        return Err(format!(
            "sasl.mechanism.inter.broker.protocol: {mechanism} is not in {key} of the inter-broker listener {listener}"
        ));
    }
    let jaas_key = format!(
        "listener.name.{}.{}.sasl.jaas.config",
        listener.to_ascii_lowercase(),
        mechanism.to_ascii_lowercase()
    );
    let Some(text) = config.explicit_value(&jaas_key) else {
        return Err(format!(
            "{jaas_key}: needed for brokers to log in to each other over the SASL listener {listener} (a {} line with username and password)",
            if mechanism == "PLAIN" { "PlainLoginModule" } else { "ScramLoginModule" }
        ));
    };
    let module = crate::config::jaas::parse(text).map_err(|e| format!("{jaas_key}: {e}"))?;
    let expected = if mechanism == "PLAIN" {
        "org.apache.kafka.common.security.plain.PlainLoginModule"
    } else {
        "org.apache.kafka.common.security.scram.ScramLoginModule"
    };
    if module.class != expected {
        return Err(format!(
            "{jaas_key}: {mechanism} logs in with {expected}, not {}",
            module.class
        ));
    }
    let option = |name: &str| {
        module
            .options
            .get(name)
            .filter(|v| !v.is_empty())
            .cloned()
            .ok_or_else(|| format!("{jaas_key}: the login module has no {name}"))
    };
    Ok(SaslLogin {
        mechanism,
        username: option("username")?,
        password: option("password")?,
    })
}

/// A SASL listener's settings.
pub struct SaslSettings {
    pub listener: String,
    /// `sasl.enabled.mechanisms` (per listener as `listener.name.<l>.sasl.enabled.mechanisms`).
    pub mechanisms: Vec<String>,
    /// `connections.max.reauth.ms` (0: sessions do not end).
    pub reauth: Option<Duration>,
    /// `connection.failed.authentication.delay.ms`.
    pub failed_delay: Duration,
    /// `sasl.server.max.receive.size`: the largest frame accepted before the
    /// connection has authenticated (a stranger cannot make the broker allocate more).
    pub max_receive: usize,
    pub metrics: SaslMetrics,
}

impl SaslSettings {
    /// The settings of `listener`; an unknown mechanism is an error naming the key.
    pub fn for_listener(
        config: &BrokerConfig,
        listener: &str,
        metrics: SaslMetrics,
    ) -> Result<SaslSettings, String> {
        let (key, mechanisms) = enabled_mechanisms(config, listener);
        if mechanisms.is_empty() {
            return Err(format!(
                "{key}: listener {listener} is SASL and needs a mechanism ({})",
                KNOWN.join(", ")
            ));
        }
        if let Some(bad) = mechanisms.iter().find(|m| !KNOWN.contains(&m.as_str())) {
            return Err(format!(
                "{key}: '{bad}' is not offered (Strata offers {})",
                KNOWN.join(", ")
            ));
        }
        let reauth = match config.num("connections.max.reauth.ms") {
            ms if ms > 0 => Some(Duration::from_millis(ms as u64)),
            _ => None,
        };
        Ok(SaslSettings {
            listener: listener.to_string(),
            mechanisms,
            reauth,
            failed_delay: Duration::from_millis(
                config
                    .num("connection.failed.authentication.delay.ms")
                    .max(0) as u64,
            ),
            max_receive: config.num("sasl.server.max.receive.size").max(1) as usize,
            metrics,
        })
    }
}

enum Exchange {
    Plain,
    Scram(ServerExchange),
}

/// One connection's authentication state.
pub struct SaslSession {
    settings: Arc<SaslSettings>,
    peer: SocketAddr,
    /// The mechanism chosen by the last SaslHandshake, and its exchange.
    exchange: Option<(String, Exchange)>,
    /// `User:<name>` once authenticated.
    principal: Option<std::sync::Arc<str>>,
    /// When the session ends (KIP-368).
    expires: Option<Instant>,
}

/// What to do with a request on a SASL listener.
pub enum Intercept {
    /// Serve it as usual.
    Pass,
    /// Answer with this response (a SASL request) and go on.
    Reply(ResponseKind),
    /// Answer with this response after the failed-authentication delay, then close.
    Fail(ResponseKind, Duration),
    /// Close the connection without an answer.
    Close(&'static str),
}

impl SaslSession {
    pub fn new(settings: Arc<SaslSettings>, peer: SocketAddr) -> SaslSession {
        SaslSession {
            settings,
            peer,
            exchange: None,
            principal: None,
            expires: None,
        }
    }

    /// The authenticated principal, if any.
    pub fn principal(&self) -> Option<&std::sync::Arc<str>> {
        self.principal.as_ref()
    }

    pub fn intercept(&mut self, broker: &Broker, request: &Request) -> Intercept {
        match &request.body {
            RequestKind::SaslHandshake(r) => self.handshake(r.mechanism.as_str()),
            RequestKind::SaslAuthenticate(r) => self.authenticate(broker, &r.auth_bytes),
            _ if request.api_key == ApiKey::ApiVersions => Intercept::Pass,
            _ => match (&self.principal, self.expires) {
                (None, _) => Intercept::Close("a request before SASL authentication"),
                (Some(_), Some(t)) if Instant::now() >= t => {
                    Intercept::Close("the SASL session expired without re-authentication")
                }
                _ => Intercept::Pass,
            },
        }
    }

    fn handshake(&mut self, mechanism: &str) -> Intercept {
        let offered: Vec<StrBytes> = self
            .settings
            .mechanisms
            .iter()
            .map(|m| StrBytes::from_string(m.clone()))
            .collect();
        let response = SaslHandshakeResponse::default().with_mechanisms(offered);
        if !self.settings.mechanisms.iter().any(|m| m == mechanism) {
            self.exchange = None;
            return Intercept::Reply(ResponseKind::SaslHandshake(
                response.with_error_code(code::UNSUPPORTED_SASL_MECHANISM),
            ));
        }
        let exchange = match Mechanism::from_name(mechanism) {
            Some(m) => Exchange::Scram(ServerExchange::new(m)),
            None => Exchange::Plain,
        };
        self.exchange = Some((mechanism.to_string(), exchange));
        Intercept::Reply(ResponseKind::SaslHandshake(response))
    }

    fn authenticate(&mut self, broker: &Broker, bytes: &[u8]) -> Intercept {
        let Some((mechanism, exchange)) = self.exchange.as_mut() else {
            return Intercept::Reply(ResponseKind::SaslAuthenticate(
                SaslAuthenticateResponse::default()
                    .with_error_code(code::ILLEGAL_SASL_STATE)
                    .with_error_message(Some(StrBytes::from_static_str(
                        "SaslAuthenticate before SaslHandshake",
                    ))),
            ));
        };
        let mechanism = mechanism.clone();
        // Who tried, for the log of a failure.
        let user_hint = match exchange {
            Exchange::Scram(scram) => scram
                .user()
                .map(str::to_string)
                .or_else(|| exchange_user(bytes)),
            Exchange::Plain => bytes
                .split(|b| *b == 0)
                .nth(1)
                .map(|u| String::from_utf8_lossy(u).chars().take(64).collect()),
        };
        let image = broker.admin.image();
        let lookup = |user: &str, m: Mechanism| {
            image
                .scram
                .get(user)
                .and_then(|creds| creds.get(m.name()))
                .cloned()
        };
        let outcome: Result<Option<(String, Vec<u8>)>, ScramError> = match exchange {
            Exchange::Plain => plain(bytes, &image).map(|user| Some((user, Vec::new()))),
            Exchange::Scram(scram) => match scram.step(bytes, lookup) {
                Ok(Step::Continue(challenge)) => {
                    return Intercept::Reply(ResponseKind::SaslAuthenticate(
                        SaslAuthenticateResponse::default().with_auth_bytes(challenge.into()),
                    ))
                }
                Ok(Step::Done { user, server_final }) => Ok(Some((user, server_final))),
                Err(e) => Err(e),
            },
        };
        self.exchange = None;
        match outcome {
            Ok(Some((user, last))) => {
                let principal = format!("User:{user}");
                if let Some(before) = &self.principal {
                    if **before != *principal {
                        // KIP-368: re-authentication keeps the principal.
                        return self.failed(
                            &mechanism,
                            Some(&user),
                            "re-authenticated as another principal",
                        );
                    }
                }
                info!(listener = %self.settings.listener, peer = %self.peer, %principal, mechanism, "SASL authenticated");
                self.principal = Some(principal.into());
                self.expires = self.settings.reauth.map(|d| Instant::now() + d);
                let lifetime = self.settings.reauth.map_or(0, |d| d.as_millis() as i64);
                Intercept::Reply(ResponseKind::SaslAuthenticate(
                    SaslAuthenticateResponse::default()
                        .with_auth_bytes(last.into())
                        .with_session_lifetime_ms(lifetime),
                ))
            }
            Ok(None) => self.failed(&mechanism, None, "no user"),
            Err(e) => self.failed(&mechanism, user_hint.as_deref(), &e.to_string()),
        }
    }

    fn failed(&mut self, mechanism: &str, user: Option<&str>, why: &str) -> Intercept {
        self.settings
            .metrics
            .failed
            .get_or_create(&ListenerLabel {
                listener: self.settings.listener.clone(),
            })
            .inc();
        warn!(listener = %self.settings.listener, peer = %self.peer, user = user.unwrap_or("?"), mechanism, reason = why, "SASL authentication failed");
        Intercept::Fail(
            ResponseKind::SaslAuthenticate(
                SaslAuthenticateResponse::default()
                    .with_error_code(code::SASL_AUTHENTICATION_FAILED)
                    .with_error_message(Some(StrBytes::from_string(format!(
                        "Authentication failed during authentication due to invalid credentials with SASL mechanism {mechanism}"
                    )))),
            ),
            self.settings.failed_delay,
        )
    }
}

/// The user named in a SCRAM client-first message, for the log.
fn exchange_user(bytes: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(bytes).ok()?;
    text.split(',')
        .find_map(|p| p.strip_prefix("n="))
        .map(|u| u.chars().take(64).collect())
}

/// PLAIN (RFC 4616): `authzid NUL user NUL password`, checked against the user's
/// stored SCRAM credential (SCRAM-SHA-512 first).
fn plain(bytes: &[u8], image: &crate::metadata::ClusterImage) -> Result<String, ScramError> {
    let mut parts = bytes.split(|b| *b == 0);
    let (Some(authzid), Some(user), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ScramError::Malformed(
            "PLAIN needs authzid, user and password",
        ));
    };
    let user = std::str::from_utf8(user).map_err(|_| ScramError::Malformed("not UTF-8"))?;
    let password = std::str::from_utf8(password).map_err(|_| ScramError::Malformed("not UTF-8"))?;
    if !authzid.is_empty() && authzid != user.as_bytes() {
        return Err(ScramError::BadCredentials);
    }
    let creds = image.scram.get(user).ok_or(ScramError::BadCredentials)?;
    for m in [Mechanism::Sha512, Mechanism::Sha256] {
        if let Some(c) = creds.get(m.name()) {
            if m.password_matches(password, c) {
                return Ok(user.to_string());
            }
            return Err(ScramError::BadCredentials);
        }
    }
    Err(ScramError::BadCredentials)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &[&str]) -> BrokerConfig {
        let mut settings = vec![
            "listeners=SASL_SSL://127.0.0.1:9096".to_string(),
            "sasl.enabled.mechanisms=SCRAM-SHA-512,PLAIN".to_string(),
        ];
        settings.extend(extra.iter().map(|s| s.to_string()));
        BrokerConfig::load(None, Vec::new(), &settings).unwrap()
    }

    const SCRAM_JAAS: &str = r#"listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="broker" password="pw-9c1d";"#;

    #[test]
    fn the_inter_broker_login_comes_from_kafkas_keys() {
        let c = config(&[
            "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512",
            SCRAM_JAAS,
        ]);
        let login = inter_broker_login(&c, "SASL_SSL").unwrap();
        assert_eq!(
            (
                login.mechanism.as_str(),
                login.username.as_str(),
                login.password.as_str()
            ),
            ("SCRAM-SHA-512", "broker", "pw-9c1d")
        );
        assert!(!format!("{login:?}").contains("pw-9c1d"));
        let plain = config(&[
            "sasl.mechanism.inter.broker.protocol=PLAIN",
            r#"listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="b" password="p" user_b="p";"#,
        ]);
        assert_eq!(
            inter_broker_login(&plain, "SASL_SSL").unwrap().username,
            "b"
        );
    }

    #[test]
    fn a_missing_or_wrong_login_names_the_key_and_never_the_password() {
        for (extra, key) in [
            // Kafka's default, GSSAPI, is not offered.
            (vec![SCRAM_JAAS], "sasl.mechanism.inter.broker.protocol"),
            // Not enabled on the listener.
            (
                vec![
                    "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-256",
                    SCRAM_JAAS,
                ],
                "sasl.mechanism.inter.broker.protocol",
            ),
            // No login line for the mechanism.
            (
                vec!["sasl.mechanism.inter.broker.protocol=PLAIN", SCRAM_JAAS],
                "listener.name.sasl_ssl.plain.sasl.jaas.config",
            ),
            // The SCRAM module for PLAIN.
            (
                vec![
                    "sasl.mechanism.inter.broker.protocol=PLAIN",
                    r#"listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="b" password="pw-9c1d";"#,
                ],
                "listener.name.sasl_ssl.plain.sasl.jaas.config",
            ),
            // No password.
            (
                vec![
                    "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512",
                    r#"listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="pw-9c1d";"#,
                ],
                "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config",
            ),
        ] {
            let err = inter_broker_login(&config(&extra), "SASL_SSL").unwrap_err();
            assert!(err.starts_with(key), "{err}");
            assert!(!err.contains("pw-9c1d"), "{err}");
        }
    }
}
