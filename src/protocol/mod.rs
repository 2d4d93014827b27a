//! Frames to typed requests and typed responses to frames, with explicit versions,
//! through the `kafka-protocol` crate (no hand-written codec).

pub mod versions;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, RequestHeader, RequestKind, ResponseHeader, ResponseKind,
};
use kafka_protocol::protocol::{Decodable, Encodable};

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

/// A decoded request.
#[derive(Debug)]
pub struct Request {
    pub api_key: ApiKey,
    pub version: i16,
    pub header: RequestHeader,
    pub body: RequestKind,
}

/// Decodes one frame (without its length prefix).
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
        api_key,
        version,
        header,
        body,
    })
}

/// Encodes a response with its length prefix and the header version its API and
/// version call for (ApiVersions always uses header v0).
pub fn encode_response(
    version: i16,
    correlation_id: i32,
    body: &ResponseKind,
) -> anyhow::Result<Bytes> {
    let header_version = body.header_version(version);
    let mut buf = BytesMut::with_capacity(256);
    buf.put_i32(0);
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut buf, header_version)?;
    body.encode(&mut buf, version)?;
    let len = (buf.len() - 4) as i32;
    buf[0..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf.freeze())
}

/// The KIP-511 answer to an ApiVersions request of a version we do not know: error
/// 35 (UNSUPPORTED_VERSION) with our own range, encoded as v0.
pub fn unsupported_api_versions_response(
    correlation_id: i32,
    api_keys: Vec<kafka_protocol::messages::api_versions_response::ApiVersion>,
) -> Bytes {
    let body = ApiVersionsResponse::default()
        .with_error_code(35)
        .with_api_keys(api_keys);
    encode_response(0, correlation_id, &ResponseKind::ApiVersions(body))
        .unwrap_or_else(|_| Bytes::new())
}

/// Reads the 4-byte length prefix of a frame.
pub fn frame_length(prefix: [u8; 4]) -> i32 {
    (&prefix[..]).get_i32()
}
