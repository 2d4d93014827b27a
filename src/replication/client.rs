//! A minimal Kafka-protocol client for broker-to-broker calls (follower Fetch and
//! OffsetForLeaderEpoch): one connection, one request at a time, every message
//! encoded and decoded by `kafka-protocol`. Fetched record sets stay slices of the
//! response frame (no copy) until they are appended.

use std::io;
use std::time::Duration;

use bytes::BytesMut;
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
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
        Ok(KafkaClient {
            stream,
            correlation: 0,
            client_id: StrBytes::from_string(client_id.to_string()),
        })
    }

    /// Sends one request and waits up to `timeout` for its response.
    pub async fn call(
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
