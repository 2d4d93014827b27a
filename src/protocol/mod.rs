//! Frames to typed requests and typed responses to frames, with explicit versions,
//! through the `kafka-protocol` crate (no hand-written codec).

pub mod chain;
pub mod list_offsets;

pub use chain::{Chunk, FileRange, FileRecords};
pub mod versions;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, RequestHeader, RequestKind, ResponseHeader, ResponseKind,
};
use kafka_protocol::protocol::{Decodable, Encodable};
use std::sync::Arc;

/// Why a frame could not be turned into a request. Each closes the connection,
/// except `UnsupportedApiVersions`, which is answered (KIP-511).
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {0} bytes is too short for a request header")]
    TooShort(usize),
    #[error("unknown API key {0}")]
    UnknownApiKey(i16),
    #[error("{api:?} version {version} is not supported")]
    UnsupportedVersion { api: ApiKey, version: i16 },
    #[error("ApiVersions version {version} is not supported")]
    UnsupportedApiVersions { version: i16, correlation_id: i32 },
    #[error("cannot decode {api:?} v{version}: {reason}")]
    Decode {
        api: ApiKey,
        version: i16,
        reason: String,
    },
}

/// Kafka's principal for a client that did not authenticate.
pub const ANONYMOUS: &str = "User:ANONYMOUS";

/// `ANONYMOUS`, shared.
pub fn anonymous() -> Arc<str> {
    static SHARED: std::sync::LazyLock<Arc<str>> =
        std::sync::LazyLock::new(|| Arc::from(ANONYMOUS));
    SHARED.clone()
}

/// A decoded request.
#[derive(Debug)]
pub struct Request {
    /// The client's address as DescribeGroups reports it (`/host`), set by the connection.
    pub client_host: String,
    /// The listener the request arrived on (for listener-specific addresses).
    pub listener: String,
    /// Who sent it (`User:alice`, `User:CN=...`, `User:ANONYMOUS`), set by the
    /// connection from its TLS certificate or SASL session.
    pub principal: Arc<str>,
    pub api_key: ApiKey,
    pub version: i16,
    pub header: RequestHeader,
    pub body: RequestKind,
}

/// Decodes one frame (without its length prefix).
/// Reads the `len` bytes of a frame's body into a buffer that is never zeroed first
/// (a produce frame of a megabyte would otherwise be written twice).
pub async fn read_frame_body<R>(reader: &mut R, len: usize) -> std::io::Result<Bytes>
where
    R: tokio::io::AsyncRead + Unpin + ?Sized,
{
    use tokio::io::AsyncReadExt;
    let mut frame = BytesMut::with_capacity(len);
    while frame.len() < len {
        let want = len - frame.len();
        if reader.read_buf(&mut (&mut frame).limit(want)).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(frame.freeze())
}

pub fn decode_request(mut frame: Bytes) -> Result<Request, FrameError> {
    if frame.len() < 8 {
        return Err(FrameError::TooShort(frame.len()));
    }
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let api_key = ApiKey::try_from(raw_key).map_err(|_| FrameError::UnknownApiKey(raw_key))?;
    if !versions::is_supported(api_key, version) {
        if api_key == ApiKey::ApiVersions {
            return Err(FrameError::UnsupportedApiVersions {
                version,
                correlation_id,
            });
        }
        return Err(FrameError::UnsupportedVersion {
            api: api_key,
            version,
        });
    }
    let decode_err = |reason: String| FrameError::Decode {
        api: api_key,
        version,
        reason,
    };
    let header_version = api_key.request_header_version(version);
    let header =
        RequestHeader::decode(&mut frame, header_version).map_err(|e| decode_err(e.to_string()))?;
    let body =
        RequestKind::decode(api_key, &mut frame, version).map_err(|e| decode_err(e.to_string()))?;
    Ok(Request {
        client_host: String::new(),
        listener: String::new(),
        principal: anonymous(),
        api_key,
        version,
        header,
        body,
    })
}

/// Encodes a response as chunks to write in order: the length prefix, the header and
/// body, with the record sets in `splice` (Fetch) referenced instead of copied, and
/// the placeholders of `files` replaced by their file ranges.
/// ApiVersions always uses header v0; other APIs the header version of `version`.
pub fn encode_response(
    version: i16,
    correlation_id: i32,
    body: &ResponseKind,
    splice: &[Bytes],
    files: &FileRecords,
) -> anyhow::Result<Vec<Chunk>> {
    let header_version = body.header_version(version);
    let mut buf = chain::ChainBuf::new(splice, files);
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut buf, header_version)?;
    match body {
        // Only Fetch carries record sets worth splicing; it is encoded through the
        // generic encoder so `ChainBuf` sees each record set.
        ResponseKind::Fetch(fetch) => fetch.encode(&mut buf, version)?,
        other => {
            let mut plain = BytesMut::with_capacity(256);
            other.encode(&mut plain, version)?;
            buf.put_slice(&plain);
        }
    }
    if buf.files_sent() != files.len() {
        // Never send a placeholder's zeros as records.
        anyhow::bail!(
            "{} of {} file ranges found in the encoded response",
            buf.files_sent(),
            files.len()
        );
    }
    let len = i32::try_from(buf.len())
        .map_err(|_| anyhow::anyhow!("response of {} bytes is too large", buf.len()))?;
    let mut chunks = Vec::with_capacity(4);
    chunks.push(Chunk::Bytes(Bytes::copy_from_slice(&len.to_be_bytes())));
    chunks.extend(buf.into_chunks());
    Ok(chunks)
}

/// The record sets of a Fetch response, which `encode_response` can splice.
pub fn record_sets(body: &ResponseKind) -> Vec<Bytes> {
    match body {
        ResponseKind::Fetch(f) => f
            .responses
            .iter()
            .flat_map(|t| t.partitions.iter().filter_map(|p| p.records.clone()))
            .collect(),
        _ => Vec::new(),
    }
}

/// The KIP-511 answer to an ApiVersions request of a version we do not know: error
/// 35 (UNSUPPORTED_VERSION) with our own range, encoded as v0.
pub fn unsupported_api_versions_response(
    correlation_id: i32,
    api_keys: Vec<kafka_protocol::messages::api_versions_response::ApiVersion>,
) -> Vec<Chunk> {
    let body = ApiVersionsResponse::default()
        .with_error_code(35)
        .with_api_keys(api_keys);
    encode_response(
        0,
        correlation_id,
        &ResponseKind::ApiVersions(body),
        &[],
        &FileRecords::default(),
    )
    .unwrap_or_default()
}
