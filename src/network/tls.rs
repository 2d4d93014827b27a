//! TLS for SSL (and later SASL_SSL) listeners and for brokers talking to each other,
//! with rustls and Kafka's keys in PEM form (KIP-651).
//!
//! Keys, each also settable per listener as `listener.name.<listener>.<key>`:
//! `ssl.keystore.type=PEM` with `ssl.keystore.location` (a PEM file with the private
//! key and the certificate chain) or `ssl.keystore.key` + `ssl.keystore.certificate.chain`
//! inline; `ssl.truststore.type=PEM` with `ssl.truststore.location` or
//! `ssl.truststore.certificates`; `ssl.client.auth` (none, requested, required);
//! `ssl.enabled.protocols`; `ssl.cipher.suites`; `ssl.principal.mapping.rules`;
//! `ssl.key.password` for an encrypted (PKCS#8) private key.
//!
//! The keystore and truststore files are re-read every few seconds; a changed file
//! (rewritten or replaced by a rename) applies to new connections, and a file that
//! does not load is logged and what is in force stays.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::BrokerConfig;

/// How often the keystore file is checked for a new certificate.
const RELOAD_EVERY: Duration = Duration::from_secs(2);

/// A TLS setting that does not work, naming the key.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct TlsError {
    pub key: String,
    pub reason: String,
}

/// A listener's `ssl.*` settings (its `listener.name.<l>.` overrides applied).
struct Settings<'a> {
    config: &'a BrokerConfig,
    listener: String,
}

impl Settings<'_> {
    /// The effective key name and value of `key` for this listener.
    fn get(&self, key: &str) -> (String, String) {
        let prefixed = format!("listener.name.{}.{key}", self.listener.to_ascii_lowercase());
        match self.config.explicit_value(&prefixed) {
            Some(v) => (prefixed, v.to_string()),
            None => (key.to_string(), self.config.get(key).to_string()),
        }
    }

    fn error(&self, key: &str, reason: impl Into<String>) -> TlsError {
        TlsError {
            key: self.get(key).0,
            reason: reason.into(),
        }
    }
}

/// Where the server certificate comes from: a file (re-read on change) or inline,
/// with `ssl.key.password` when the key is encrypted.
#[derive(Clone)]
struct KeySource {
    place: KeyPlace,
    password: Option<String>,
}

#[derive(Clone)]
enum KeyPlace {
    File(PathBuf),
    Inline { key: String, chain: String },
}

impl KeySource {
    fn file(&self) -> Option<&PathBuf> {
        match &self.place {
            KeyPlace::File(path) => Some(path),
            KeyPlace::Inline { .. } => None,
        }
    }
}

const ENCRYPTED_KEY_BEGIN: &str = "-----BEGIN ENCRYPTED PRIVATE KEY-----";
const ENCRYPTED_KEY_END: &str = "-----END ENCRYPTED PRIVATE KEY-----";

/// The private key of a PEM keystore: a PKCS#8 `ENCRYPTED PRIVATE KEY` decrypted with
/// `password` (PBES2, as `openssl pkcs8 -topk8 -v2 aes-256-cbc` writes it, which is
/// what Kafka's PEM keystores take), or a plain key when no password is set.
fn private_key(key_pem: &[u8], password: Option<&str>) -> Result<PrivateKeyDer<'static>, String> {
    let text = String::from_utf8_lossy(key_pem);
    let encrypted = text.find(ENCRYPTED_KEY_BEGIN).and_then(|start| {
        let end = text[start..].find(ENCRYPTED_KEY_END)? + start + ENCRYPTED_KEY_END.len();
        Some(&text[start..end])
    });
    match (encrypted, password) {
        (Some(block), Some(password)) => {
            use pkcs8::der::Decode;
            let (_, document) = pkcs8::der::Document::from_pem(block)
                .map_err(|e| format!("bad ENCRYPTED PRIVATE KEY PEM: {e}"))?;
            let info = pkcs8::EncryptedPrivateKeyInfo::from_der(document.as_bytes())
                .map_err(|e| format!("bad ENCRYPTED PRIVATE KEY: {e}"))?;
            let secret = info.decrypt(password).map_err(|_| {
                "cannot decrypt the private key: wrong ssl.key.password, or an encryption scheme other than PBES2".to_string()
            })?;
            Ok(PrivateKeyDer::Pkcs8(secret.as_bytes().to_vec().into()))
        }
        (Some(_), None) => Err("the private key is encrypted: set ssl.key.password".into()),
        (None, Some(_)) => Err(
            "ssl.key.password is set but the private key is not an ENCRYPTED PRIVATE KEY".into(),
        ),
        (None, None) => PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|e| format!("no usable private key (BEGIN PRIVATE KEY): {e}")),
    }
}

/// Reads the certificate chain and the (decrypted) private key.
fn load_key_and_chain(
    source: &KeySource,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let (key_pem, chain_pem) = match &source.place {
        KeyPlace::File(path) => {
            let text =
                std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            (text.clone(), text)
        }
        KeyPlace::Inline { key, chain } => (key.as_bytes().to_vec(), chain.as_bytes().to_vec()),
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&chain_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("bad certificate PEM: {e}"))?;
    if chain.is_empty() {
        return Err("no certificate (BEGIN CERTIFICATE) found".into());
    }
    let key = private_key(&key_pem, source.password.as_deref())?;
    Ok((chain, key))
}

/// Reads the certificate chain and private key into a signing key for rustls.
fn load_certified_key(
    source: &KeySource,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, String> {
    let (chain, key) = load_key_and_chain(source)?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("unusable private key: {e}"))?;
    let certified = CertifiedKey::new(chain, signing);
    certified
        .keys_match()
        .map_err(|e| format!("the private key does not match the certificate: {e}"))?;
    Ok(certified)
}

/// Serves the current certificate; swapped when the keystore file changes.
struct ReloadingCert {
    current: ArcSwap<CertifiedKey>,
}

impl fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingCert").finish_non_exhaustive()
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// The trusted CAs: `ssl.truststore.location` or `ssl.truststore.certificates`.
fn load_roots(s: &Settings<'_>) -> Result<Option<RootCertStore>, TlsError> {
    let (_, location) = s.get("ssl.truststore.location");
    let (_, inline) = s.get("ssl.truststore.certificates");
    let pem = match (location.trim(), inline.trim()) {
        ("", "") => return Ok(None),
        (path, "") => std::fs::read(path).map_err(|e| {
            s.error(
                "ssl.truststore.location",
                format!("cannot read {path}: {e}"),
            )
        })?,
        ("", text) => text.as_bytes().to_vec(),
        _ => {
            return Err(s.error(
                "ssl.truststore.location",
                "set either it or ssl.truststore.certificates, not both",
            ))
        }
    };
    parse_roots(&pem)
        .map(Some)
        .map_err(|reason| s.error("ssl.truststore.location", reason))
}

/// The CA certificates of a PEM truststore.
fn parse_roots(pem: &[u8]) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| format!("bad PEM: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("unusable CA certificate: {e}"))?;
    }
    if roots.is_empty() {
        return Err("no CA certificate found".into());
    }
    Ok(roots)
}

/// How a listener checks client certificates (`ssl.client.auth`): kept so the
/// verifier can be rebuilt when the truststore file changes.
#[derive(Clone)]
struct ClientAuth {
    mode: String,
    truststore: Option<PathBuf>,
    versions: Vec<&'static rustls::SupportedProtocolVersion>,
}

impl ClientAuth {
    fn verifier(
        &self,
        roots: Option<RootCertStore>,
        provider: &Arc<CryptoProvider>,
    ) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, (&'static str, String)> {
        match (self.mode.as_str(), roots) {
            ("" | "none", _) => Ok(WebPkiClientVerifier::no_client_auth()),
            ("requested" | "required", None) => Err((
                "ssl.truststore.location",
                format!(
                    "ssl.client.auth={} needs the CAs that sign client certificates",
                    self.mode
                ),
            )),
            (mode, Some(roots)) if mode == "requested" || mode == "required" => {
                let builder =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
                let builder = if mode == "requested" {
                    builder.allow_unauthenticated()
                } else {
                    builder
                };
                builder
                    .build()
                    .map_err(|e| ("ssl.truststore.location", e.to_string()))
            }
            (other, _) => Err((
                "ssl.client.auth",
                format!("'{other}' is not none, requested or required"),
            )),
        }
    }

    fn server_config(
        &self,
        roots: Option<RootCertStore>,
        provider: &Arc<CryptoProvider>,
        cert: &Arc<ReloadingCert>,
    ) -> Result<ServerConfig, (&'static str, String)> {
        let verifier = self.verifier(roots, provider)?;
        Ok(ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&self.versions)
            .map_err(|e| ("ssl.enabled.protocols", e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(cert.clone()))
    }
}

fn check_pem_type(s: &Settings<'_>, key: &str) -> Result<(), TlsError> {
    let (_, t) = s.get(key);
    if !t.trim().is_empty() && !t.trim().eq_ignore_ascii_case("PEM") {
        return Err(s.error(key, format!("'{t}' is not supported: Strata reads PEM stores (KIP-651); convert JKS or PKCS12 with keytool/openssl")));
    }
    Ok(())
}

/// `ssl.enabled.protocols` as rustls versions.
fn versions(s: &Settings<'_>) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, TlsError> {
    let (_, raw) = s.get("ssl.enabled.protocols");
    let mut out = Vec::new();
    for p in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match p {
            "TLSv1.3" => out.push(&rustls::version::TLS13),
            "TLSv1.2" => out.push(&rustls::version::TLS12),
            other => {
                return Err(s.error(
                    "ssl.enabled.protocols",
                    format!("'{other}' is not offered (TLSv1.2 and TLSv1.3 are)"),
                ))
            }
        }
    }
    if out.is_empty() {
        return Err(s.error("ssl.enabled.protocols", "name TLSv1.3, TLSv1.2 or both"));
    }
    Ok(out)
}

/// The provider with `ssl.cipher.suites` applied (IANA names, as Kafka takes them;
/// empty = rustls's defaults).
fn provider_for(s: &Settings<'_>) -> Result<Arc<CryptoProvider>, TlsError> {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    let (_, raw) = s.get("ssl.cipher.suites");
    let wanted: Vec<&str> = raw
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    if wanted.is_empty() {
        return Ok(Arc::new(provider));
    }
    // rustls names TLS 1.3 suites TLS13_*, IANA TLS_*: compare without the prefix.
    let bare = |n: &str| {
        n.trim_start_matches("TLS13_")
            .trim_start_matches("TLS_")
            .to_string()
    };
    for w in &wanted {
        if !provider
            .cipher_suites
            .iter()
            .any(|c| bare(c.suite().as_str().unwrap_or("")) == bare(w))
        {
            return Err(s.error(
                "ssl.cipher.suites",
                format!("'{w}' is not a supported cipher suite"),
            ));
        }
    }
    provider.cipher_suites.retain(|c| {
        wanted
            .iter()
            .any(|w| bare(c.suite().as_str().unwrap_or("")) == bare(w))
    });
    Ok(Arc::new(provider))
}

/// A TLS listener's server side: the rustls configuration and the reloading
/// certificate behind it.
pub struct ServerTls {
    /// Swapped when the truststore file changes.
    config: ArcSwap<ServerConfig>,
    cert: Arc<ReloadingCert>,
    source: KeySource,
    provider: Arc<CryptoProvider>,
    client_auth: ClientAuth,
    listener: String,
    pub mapping: PrincipalMapper,
}

impl ServerTls {
    /// Builds the TLS side of `listener` from its `ssl.*` keys; an error names the key.
    pub fn for_listener(config: &BrokerConfig, listener: &str) -> Result<ServerTls, TlsError> {
        let s = Settings {
            config,
            listener: listener.to_string(),
        };
        check_pem_type(&s, "ssl.keystore.type")?;
        check_pem_type(&s, "ssl.truststore.type")?;
        let (password_key, password) = s.get("ssl.key.password");
        let password = (!password.is_empty()).then_some(password);
        let (_, location) = s.get("ssl.keystore.location");
        let (_, key) = s.get("ssl.keystore.key");
        let (_, chain) = s.get("ssl.keystore.certificate.chain");
        let (source, source_key) = match (location.trim(), key.trim(), chain.trim()) {
            ("", "", "") => {
                return Err(s.error(
                    "ssl.keystore.location",
                    format!("listener {listener} is SSL and needs a certificate: set ssl.keystore.location (or ssl.keystore.key and ssl.keystore.certificate.chain)"),
                ))
            }
            (path, "", "") => (KeyPlace::File(path.into()), "ssl.keystore.location"),
            ("", k, c) if !k.is_empty() && !c.is_empty() => (
                KeyPlace::Inline {
                    key: k.to_string(),
                    chain: c.to_string(),
                },
                "ssl.keystore.key",
            ),
            _ => {
                return Err(s.error(
                    "ssl.keystore.location",
                    "set either it, or both ssl.keystore.key and ssl.keystore.certificate.chain",
                ))
            }
        };
        let source = KeySource {
            place: source,
            password,
        };
        let provider = provider_for(&s)?;
        let certified = load_certified_key(&source, &provider).map_err(|reason| {
            // A wrong or missing password is the password key's fault.
            let key = if reason.contains("ssl.key.password") || reason.contains("decrypt") {
                password_key.as_str()
            } else {
                source_key
            };
            s.error(key, reason)
        })?;
        let cert = Arc::new(ReloadingCert {
            current: ArcSwap::from_pointee(certified),
        });
        let roots = load_roots(&s)?;
        let client_auth = ClientAuth {
            mode: s.get("ssl.client.auth").1.trim().to_string(),
            truststore: Some(s.get("ssl.truststore.location").1.trim())
                .filter(|p| !p.is_empty())
                .map(PathBuf::from),
            versions: versions(&s)?,
        };
        let server = client_auth
            .server_config(roots, &provider, &cert)
            .map_err(|(key, reason)| s.error(key, reason))?;
        let mapping = PrincipalMapper::parse(&s.get("ssl.principal.mapping.rules").1)
            .map_err(|reason| s.error("ssl.principal.mapping.rules", reason))?;
        Ok(ServerTls {
            config: ArcSwap::from_pointee(server),
            cert,
            source,
            provider,
            client_auth,
            listener: listener.to_string(),
            mapping,
        })
    }

    /// The acceptor for a new connection, with the configuration in force.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config.load_full())
    }

    /// Loads a changed truststore file: new connections' client certificates are
    /// checked against its CAs.
    fn reload_truststore(&self, path: &std::path::Path, pem: &[u8]) {
        let built = parse_roots(pem).and_then(|roots| {
            self.client_auth
                .server_config(Some(roots), &self.provider, &self.cert)
                .map_err(|(_, reason)| reason)
        });
        match built {
            Ok(server) => {
                self.config.store(Arc::new(server));
                info!(listener = %self.listener, path = %path.display(), "TLS truststore reloaded");
            }
            Err(e) => {
                warn!(listener = %self.listener, path = %path.display(), error = %e, "new TLS truststore not loaded; the one in force stays")
            }
        }
    }

    /// Re-reads the keystore and truststore files every few seconds until `stop`; a
    /// new certificate is served, and new CAs trusted, for new connections.
    pub async fn watch(self: Arc<Self>, stop: CancellationToken) {
        let keystore = self.source.file().cloned();
        let truststore = self.client_auth.truststore.clone();
        if keystore.is_none() && truststore.is_none() {
            return;
        }
        let read = |p: &Option<PathBuf>| p.as_ref().and_then(|p| std::fs::read(p).ok());
        let mut last = read(&keystore);
        let mut last_trust = read(&truststore);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(RELOAD_EVERY) => {}
                _ = stop.cancelled() => return,
            }
            let trust = read(&truststore);
            if let (Some(path), Some(pem)) = (&truststore, &trust) {
                if trust != last_trust {
                    self.reload_truststore(path, pem);
                    last_trust = trust;
                }
            }
            let Some(path) = &keystore else { continue };
            let now = std::fs::read(path).ok();
            if now.is_none() || now == last {
                continue;
            }
            match load_certified_key(&self.source, &self.provider) {
                Ok(certified) => {
                    self.cert.current.store(Arc::new(certified));
                    info!(listener = %self.listener, path = %path.display(), "TLS certificate reloaded");
                    last = now;
                }
                Err(e) => {
                    warn!(listener = %self.listener, path = %path.display(), error = %e, "new TLS certificate not loaded; the one in force stays");
                    last = now;
                }
            }
        }
    }
}

/// The client side for brokers reaching each other over a TLS inter-broker listener:
/// the listener's truststore (or the system's none: a truststore is required) and, for
/// mutual TLS, its keystore as the client certificate.
pub fn client_connector(
    config: &BrokerConfig,
    listener: &str,
) -> Result<tokio_rustls::TlsConnector, TlsError> {
    let s = Settings {
        config,
        listener: listener.to_string(),
    };
    let provider = provider_for(&s)?;
    let roots = load_roots(&s)?.ok_or_else(|| {
        s.error(
            "ssl.truststore.location",
            format!("brokers reach each other over {listener} (TLS) and need the CAs to trust"),
        )
    })?;
    let versions = versions(&s)?;
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| s.error("ssl.enabled.protocols", e.to_string()))?
        .with_root_certificates(roots);
    let (_, location) = s.get("ssl.keystore.location");
    let client = if location.trim().is_empty() {
        builder.with_no_client_auth()
    } else {
        let password = Some(s.get("ssl.key.password").1).filter(|p| !p.is_empty());
        let source = KeySource {
            place: KeyPlace::File(location.trim().into()),
            password,
        };
        let (chain, key) = load_key_and_chain(&source)
            .map_err(|reason| s.error("ssl.keystore.location", reason))?;
        builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| s.error("ssl.keystore.location", e.to_string()))?
    };
    Ok(tokio_rustls::TlsConnector::from(Arc::new(client)))
}

/// The name a TLS client connects to, for the server certificate check.
pub fn server_name(host: &str) -> Option<ServerName<'static>> {
    ServerName::try_from(host.to_string()).ok()
}

/// `ssl.principal.mapping.rules`: Kafka's rules turning a certificate's subject
/// (RFC 2253, e.g. `CN=alice,OU=eng,O=Example`) into a principal name.
#[derive(Debug, Clone)]
pub struct PrincipalMapper {
    rules: Vec<MappingRule>,
}

#[derive(Debug, Clone)]
enum MappingRule {
    Default,
    Rule {
        pattern: regex::Regex,
        replacement: String,
        case: Option<char>,
    },
}

impl PrincipalMapper {
    /// Parses `DEFAULT` and `RULE:pattern/replacement/[LU]`, comma separated (a
    /// pattern may itself hold commas and escaped slashes).
    pub fn parse(text: &str) -> Result<PrincipalMapper, String> {
        let mut rules = Vec::new();
        let mut rest = text.trim();
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix("DEFAULT") {
                rules.push(MappingRule::Default);
                rest = after.trim_start();
            } else if let Some(after) = rest.strip_prefix("RULE:") {
                let (pattern, after) = split_unescaped(after)
                    .ok_or_else(|| format!("rule '{rest}' has no '/' after its pattern"))?;
                let (replacement, after) = split_unescaped(after)
                    .ok_or_else(|| format!("rule '{rest}' has no '/' after its replacement"))?;
                let (case, after) = match after.chars().next() {
                    Some(c @ ('L' | 'U')) => (Some(c), &after[1..]),
                    _ => (None, after),
                };
                let pattern = regex::Regex::new(&format!("^(?:{pattern})$"))
                    .map_err(|e| format!("bad pattern '{pattern}': {e}"))?;
                rules.push(MappingRule::Rule {
                    pattern,
                    replacement: replacement.replace("\\/", "/"),
                    case,
                });
                rest = after.trim_start();
            } else {
                return Err(format!(
                    "'{rest}' is neither DEFAULT nor RULE:pattern/replacement/"
                ));
            }
            rest = match rest.strip_prefix(',') {
                Some(r) => r.trim_start(),
                None if rest.is_empty() => rest,
                None => return Err(format!("expected ',' before '{rest}'")),
            };
        }
        if rules.is_empty() {
            rules.push(MappingRule::Default);
        }
        Ok(PrincipalMapper { rules })
    }

    /// The principal name for `subject`: the first rule that matches; the subject
    /// itself when none does (as Kafka).
    pub fn map(&self, subject: &str) -> String {
        for rule in &self.rules {
            match rule {
                MappingRule::Default => return subject.to_string(),
                MappingRule::Rule {
                    pattern,
                    replacement,
                    case,
                } => {
                    if let Some(caps) = pattern.captures(subject) {
                        let mut out = String::new();
                        // Kafka's replacements name groups as $1, as regex does.
                        caps.expand(replacement, &mut out);
                        return match case {
                            Some('L') => out.to_lowercase(),
                            Some('U') => out.to_uppercase(),
                            _ => out,
                        };
                    }
                }
            }
        }
        subject.to_string()
    }
}

/// Splits at the first '/' not escaped by a backslash.
fn split_unescaped(s: &str) -> Option<(&str, &str)> {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'/' => return Some((&s[..i], &s[i + 1..])),
            _ => i += 1,
        }
    }
    None
}

/// The subject of a DER certificate in RFC 2253 form, most specific first
/// (`CN=alice,OU=eng,O=Example,C=US`), as Java's X500Principal.getName() gives it.
pub fn subject_of(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let mut parts = Vec::new();
    for rdn in parsed
        .subject()
        .iter()
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
    {
        let attrs: Vec<String> = rdn
            .iter()
            .map(|a| {
                let name = x509_parser::objects::oid2abbrev(
                    a.attr_type(),
                    x509_parser::objects::oid_registry(),
                )
                .map(str::to_string)
                .unwrap_or_else(|_| a.attr_type().to_id_string());
                let value = a.as_str().map(escape_rfc2253).unwrap_or_default();
                format!("{name}={value}")
            })
            .collect();
        parts.push(attrs.join("+"));
    }
    Some(parts.join(","))
}

fn escape_rfc2253(v: &str) -> String {
    let mut out = String::new();
    for (i, c) in v.chars().enumerate() {
        if matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
        {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principal_rules_map_like_kafka() {
        let m = PrincipalMapper::parse("DEFAULT").unwrap();
        assert_eq!(m.map("CN=alice,O=Example"), "CN=alice,O=Example");
        let m = PrincipalMapper::parse(
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/L, RULE:^CN=([^,]*),.*$/$1/, DEFAULT",
        )
        .unwrap();
        assert_eq!(
            m.map("CN=Kafka-Broker,OU=ServiceUsers,O=Example"),
            "kafka-broker"
        );
        assert_eq!(m.map("CN=bob,O=Example"), "bob");
        assert_eq!(m.map("O=NoCn"), "O=NoCn");
        let m = PrincipalMapper::parse("RULE:^CN=(.*)$/user\\/$1/U").unwrap();
        assert_eq!(m.map("CN=x"), "USER/X");
        assert!(PrincipalMapper::parse("RULE:^x").is_err());
        assert!(PrincipalMapper::parse("NOPE").is_err());
    }
}
