//! A minimal Kafka-protocol client for broker-to-broker calls (follower Fetch and
//! OffsetForLeaderEpoch, ListOffsets): one connection, one request at a time, every
//! message encoded and decoded by `kafka-protocol`, logged in with SASL (SCRAM or
//! PLAIN, re-authenticating before the session ends, KIP-368) when the inter-broker
//! listener asks for it. Fetched record sets stay slices of the response frame (no
//! copy) until they are appended.

use std::io;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind, SaslAuthenticateRequest,
    SaslHandshakeRequest,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// A connection to the leader: TCP, or TLS over it.
trait Connection: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Connection for T {}

/// Largest response frame accepted from a leader.
const MAX_RESPONSE: usize = 256 << 20;

pub struct KafkaClient {
    stream: Box<dyn Connection>,
    correlation: i32,
    client_id: StrBytes,
    /// The login, and when to log in again (the session's end, less a margin).
    sasl: Option<(SaslLogin, Option<Instant>)>,
    /// An exchange failed part way (a response unread, a login half done): the
    /// stream is out of step and every later call fails at once.
    broken: bool,
}

/// How this broker logs in to the others over a SASL inter-broker listener
/// (`sasl.mechanism.inter.broker.protocol` and the listener's `sasl.jaas.config`).
#[derive(Clone)]
pub struct SaslLogin {
    /// `SCRAM-SHA-256`, `SCRAM-SHA-512` or `PLAIN`.
    pub mechanism: String,
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for SaslLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaslLogin")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// SaslHandshake and SaslAuthenticate versions sent (v1: the exchange in
/// SaslAuthenticate frames; v2: flexible, with the session lifetime).
const SASL_HANDSHAKE_VERSION: i16 = 1;
const SASL_AUTHENTICATE_VERSION: i16 = 2;

fn refused(what: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, what.to_string())
}

fn invalid(what: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

impl KafkaClient {
    /// Connects to `addr` (`host:port`), over TLS when `tls` is given (the leader's
    /// certificate must name `host`).
    pub async fn connect(
        addr: &str,
        client_id: &str,
        timeout: Duration,
        tls: Option<&tokio_rustls::TlsConnector>,
        sasl: Option<&SaslLogin>,
    ) -> io::Result<Self> {
        let timed_out = || io::Error::new(io::ErrorKind::TimedOut, format!("connecting to {addr}"));
        let tcp = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| timed_out())??;
        tcp.set_nodelay(true)?;
        let stream: Box<dyn Connection> = match tls {
            None => Box::new(tcp),
            Some(connector) => {
                let host = addr
                    .rsplit_once(':')
                    .map_or(addr, |(h, _)| h)
                    .trim_start_matches('[')
                    .trim_end_matches(']');
                let name = rustls::pki_types::ServerName::try_from(host.to_string())
                    .map_err(|e| invalid(format!("'{host}' is not a TLS server name: {e}")))?;
                let tls = tokio::time::timeout(timeout, connector.connect(name, tcp))
                    .await
                    .map_err(|_| timed_out())??;
                Box::new(tls)
            }
        };
        let mut client = KafkaClient {
            stream,
            correlation: 0,
            client_id: StrBytes::from_string(client_id.to_string()),
            sasl: None,
            broken: false,
        };
        if let Some(login) = sasl {
            let renew = client.authenticate(login, timeout).await?;
            client.sasl = Some((login.clone(), renew));
        }
        Ok(client)
    }

    /// Logs in with `login` (SaslHandshake, then SaslAuthenticate rounds); returns
    /// when to log in again if the broker bounds the session.
    async fn authenticate(
        &mut self,
        login: &SaslLogin,
        timeout: Duration,
    ) -> io::Result<Option<Instant>> {
        let handshake = SaslHandshakeRequest::default()
            .with_mechanism(StrBytes::from_string(login.mechanism.clone()));
        let ResponseKind::SaslHandshake(r) = self
            .send(
                ApiKey::SaslHandshake,
                SASL_HANDSHAKE_VERSION,
                &RequestKind::SaslHandshake(handshake),
                timeout,
            )
            .await?
        else {
            return Err(invalid("not a SaslHandshake response"));
        };
        if r.error_code != 0 {
            return Err(refused(format!(
                "the broker does not offer SASL mechanism {} (error {}; it offers {:?})",
                login.mechanism, r.error_code, r.mechanisms
            )));
        }
        let lifetime_ms = match crate::scram::Mechanism::from_name(&login.mechanism) {
            None if login.mechanism == "PLAIN" => {
                let plain = format!("\0{}\0{}", login.username, login.password);
                self.sasl_round(plain.into_bytes(), timeout).await?.1
            }
            None => {
                return Err(refused(format!(
                    "SASL mechanism {} is not one a broker logs in with",
                    login.mechanism
                )))
            }
            Some(mechanism) => {
                let (mut exchange, first) = crate::scram::ClientExchange::start(
                    mechanism,
                    &login.username,
                    &login.password,
                );
                let (challenge, _) = self.sasl_round(first, timeout).await?;
                let last = exchange.client_final(&challenge).map_err(refused)?;
                let (server_final, lifetime_ms) = self.sasl_round(last, timeout).await?;
                exchange
                    .check_server_final(&server_final)
                    .map_err(|_| refused("the broker's SCRAM signature is wrong"))?;
                lifetime_ms
            }
        };
        // Again well before the end, as Kafka's clients do (at 85-95 % of it).
        // (A lifetime too long to add is no deadline: the session does not end.)
        let renew_in = Duration::from_millis(lifetime_ms.max(0) as u64).mul_f64(0.85);
        Ok((lifetime_ms > 0)
            .then(|| Instant::now().checked_add(renew_in))
            .flatten())
    }

    /// One SaslAuthenticate round: the broker's answer and the session lifetime.
    async fn sasl_round(&mut self, bytes: Vec<u8>, timeout: Duration) -> io::Result<(Bytes, i64)> {
        let request = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(bytes));
        let ResponseKind::SaslAuthenticate(r) = self
            .send(
                ApiKey::SaslAuthenticate,
                SASL_AUTHENTICATE_VERSION,
                &RequestKind::SaslAuthenticate(request),
                timeout,
            )
            .await?
        else {
            return Err(invalid("not a SaslAuthenticate response"));
        };
        if r.error_code != 0 {
            return Err(refused(format!(
                "SASL authentication failed (error {}): {}",
                r.error_code,
                r.error_message.as_deref().unwrap_or("")
            )));
        }
        Ok((r.auth_bytes, r.session_lifetime_ms))
    }

    /// Sends one request and waits up to `timeout` for its response, logging in again
    /// first when the SASL session is about to end.
    pub async fn call(
        &mut self,
        api: ApiKey,
        version: i16,
        body: &RequestKind,
        timeout: Duration,
    ) -> io::Result<ResponseKind> {
        if self.broken {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "an earlier exchange on this connection failed",
            ));
        }
        let result = async {
            if let Some((login, Some(at))) = &self.sasl {
                if Instant::now() >= *at {
                    let login = login.clone();
                    let renew = self.authenticate(&login, timeout).await?;
                    self.sasl = Some((login, renew));
                }
            }
            self.send(api, version, body, timeout).await
        }
        .await;
        self.broken = result.is_err();
        result
    }

    /// One request and its response, as they are.
    async fn send(
        &mut self,
        api: ApiKey,
        version: i16,
        body: &RequestKind,
        timeout: Duration,
    ) -> io::Result<ResponseKind> {
        self.correlation = self.correlation.wrapping_add(1);
        let correlation = self.correlation;
        let header = RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation)
            .with_client_id(Some(self.client_id.clone()));
        let mut buf = BytesMut::with_capacity(256);
        buf.extend_from_slice(&[0; 4]);
        header
            .encode(&mut buf, api.request_header_version(version))
            .map_err(invalid)?;
        body.encode(&mut buf, version).map_err(invalid)?;
        let len = (buf.len() - 4) as u32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        let stream = &mut self.stream;
        let frame = tokio::time::timeout(timeout, async {
            stream.write_all(&buf).await?;
            let len = stream.read_u32().await? as usize;
            if len > MAX_RESPONSE {
                return Err(invalid(format!("response of {len} bytes is too large")));
            }
            crate::protocol::read_frame_body(stream, len).await
        })
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no response in time"))??;
        let mut frame = frame;
        let header = ResponseHeader::decode(&mut frame, api.response_header_version(version))
            .map_err(invalid)?;
        if header.correlation_id != correlation {
            return Err(invalid(format!(
                "response for correlation id {} while waiting for {correlation}",
                header.correlation_id
            )));
        }
        ResponseKind::decode(api, &mut frame, version).map_err(invalid)
    }
}
