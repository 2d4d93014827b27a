//! Kafka v2 record-batch headers: parse, validate and patch in place.
//!
//! The broker never decodes records on the hot path. It reads the fixed 61-byte batch
//! header, checks sizes and the CRC (which covers attributes through the end of the
//! batch), and patches only the base offset and partition leader epoch — fields the
//! CRC does not cover — plus, for LogAppendTime topics, the max timestamp and the
//! timestamp-type bit, after which the CRC is recomputed.

/// Size of the v2 batch header.
pub const HEADER_SIZE: usize = 61;
/// Bytes before `batch_length` ends: base offset (8) + batch length (4).
pub const LOG_OVERHEAD: usize = 12;

const BATCH_LENGTH_OFFSET: usize = 8;
const LEADER_EPOCH_OFFSET: usize = 12;
const MAGIC_OFFSET: usize = 16;
const CRC_OFFSET: usize = 17;
const ATTRIBUTES_OFFSET: usize = 21;
const LAST_OFFSET_DELTA_OFFSET: usize = 23;
const BASE_TIMESTAMP_OFFSET: usize = 27;
const MAX_TIMESTAMP_OFFSET: usize = 35;
const PRODUCER_ID_OFFSET: usize = 43;
const PRODUCER_EPOCH_OFFSET: usize = 51;
const BASE_SEQUENCE_OFFSET: usize = 53;
const RECORD_COUNT_OFFSET: usize = 57;

const TIMESTAMP_TYPE_BIT: i16 = 0x08;
const TRANSACTIONAL_BIT: i16 = 0x10;
const CONTROL_BIT: i16 = 0x20;
const COMPRESSION_MASK: i16 = 0x07;

/// Why a batch was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("record batch truncated: {available} bytes where {needed} are needed")]
    Truncated { needed: usize, available: usize },
    #[error("record batch magic {0} is not supported (only v2)")]
    UnsupportedMagic(i8),
    #[error("record batch CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    #[error("record batch is malformed: {0}")]
    Malformed(&'static str),
    #[error("record batch of {size} bytes exceeds the limit of {limit}")]
    TooLarge { size: usize, limit: usize },
}

fn i16_at(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn i64_at(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

/// The fields of a v2 batch header the broker uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// Bytes after the length field.
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

impl BatchHeader {
    /// Reads the length prefix only: total bytes of the batch starting at `b`, if known.
    pub fn total_size_of(b: &[u8]) -> Option<usize> {
        if b.len() < LOG_OVERHEAD {
            return None;
        }
        let len = i32_at(b, BATCH_LENGTH_OFFSET);
        if len < 0 {
            return None;
        }
        Some(LOG_OVERHEAD + len as usize)
    }

    /// Parses a header; checks only that the header itself is present and sane.
    pub fn parse(b: &[u8]) -> Result<BatchHeader, BatchError> {
        if b.len() < LOG_OVERHEAD {
            return Err(BatchError::Truncated {
                needed: LOG_OVERHEAD,
                available: b.len(),
            });
        }
        let batch_length = i32_at(b, BATCH_LENGTH_OFFSET);
        if batch_length < (HEADER_SIZE - LOG_OVERHEAD) as i32 {
            return Err(BatchError::Malformed("batch length smaller than a header"));
        }
        if b.len() < HEADER_SIZE {
            return Err(BatchError::Truncated {
                needed: HEADER_SIZE,
                available: b.len(),
            });
        }
        let magic = b[MAGIC_OFFSET] as i8;
        if magic != 2 {
            return Err(BatchError::UnsupportedMagic(magic));
        }
        Ok(BatchHeader {
            base_offset: i64_at(b, 0),
            batch_length,
            partition_leader_epoch: i32_at(b, LEADER_EPOCH_OFFSET),
            magic,
            crc: i32_at(b, CRC_OFFSET) as u32,
            attributes: i16_at(b, ATTRIBUTES_OFFSET),
            last_offset_delta: i32_at(b, LAST_OFFSET_DELTA_OFFSET),
            base_timestamp: i64_at(b, BASE_TIMESTAMP_OFFSET),
            max_timestamp: i64_at(b, MAX_TIMESTAMP_OFFSET),
            producer_id: i64_at(b, PRODUCER_ID_OFFSET),
            producer_epoch: i16_at(b, PRODUCER_EPOCH_OFFSET),
            base_sequence: i32_at(b, BASE_SEQUENCE_OFFSET),
            record_count: i32_at(b, RECORD_COUNT_OFFSET),
        })
    }

    pub fn total_size(&self) -> usize {
        LOG_OVERHEAD + self.batch_length as usize
    }
    pub fn last_offset(&self) -> i64 {
        self.base_offset + self.last_offset_delta as i64
    }
    pub fn next_offset(&self) -> i64 {
        self.last_offset() + 1
    }
    pub fn compression(&self) -> i16 {
        self.attributes & COMPRESSION_MASK
    }
    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }
    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & TIMESTAMP_TYPE_BIT != 0
    }
    pub fn has_producer_id(&self) -> bool {
        self.producer_id >= 0
    }
    /// The last sequence number in the batch (sequences wrap at i32::MAX).
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence < 0 {
            return -1;
        }
        let last = self.base_sequence as i64 + self.last_offset_delta as i64;
        if last > i32::MAX as i64 {
            (last - i32::MAX as i64 - 1) as i32
        } else {
            last as i32
        }
    }
}

/// The CRC-32C of a whole batch as stored in its header.
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[ATTRIBUTES_OFFSET..])
}

/// Fully validates one batch (`batch` is exactly one batch): header, length, CRC,
/// offsets. Returns its header.
pub fn validate(batch: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(batch)?;
    if header.total_size() != batch.len() {
        return Err(BatchError::Malformed(
            "batch length does not match its bytes",
        ));
    }
    if header.record_count < 0 || header.last_offset_delta < 0 {
        return Err(BatchError::Malformed(
            "negative record count or offset delta",
        ));
    }
    if header.record_count == 0 {
        return Err(BatchError::Malformed("batch has no records"));
    }
    if header.record_count as i64 != header.last_offset_delta as i64 + 1 {
        return Err(BatchError::Malformed(
            "record count does not match last offset delta",
        ));
    }
    if header.compression() > 4 {
        return Err(BatchError::Malformed("unknown compression codec"));
    }
    let computed = compute_crc(batch);
    if computed != header.crc {
        return Err(BatchError::CrcMismatch {
            stored: header.crc,
            computed,
        });
    }
    Ok(header)
}

/// Splits a produce payload into batches, validating each. `limit` is the topic's
/// `max.message.bytes`, applied per batch as Kafka does.
pub fn split_and_validate(
    records: &[u8],
    limit: usize,
) -> Result<Vec<(usize, BatchHeader)>, BatchError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < records.len() {
        let rest = &records[pos..];
        let size = BatchHeader::total_size_of(rest).ok_or(BatchError::Truncated {
            needed: LOG_OVERHEAD,
            available: rest.len(),
        })?;
        if size > limit {
            return Err(BatchError::TooLarge { size, limit });
        }
        if size > rest.len() {
            return Err(BatchError::Truncated {
                needed: size,
                available: rest.len(),
            });
        }
        let header = validate(&rest[..size])?;
        out.push((pos, header));
        pos += size;
    }
    if out.is_empty() {
        return Err(BatchError::Malformed("no record batch in the request"));
    }
    Ok(out)
}

/// Sets the base offset and the partition leader epoch (both outside the CRC).
pub fn patch_offset_and_epoch(batch: &mut [u8], base_offset: i64, leader_epoch: i32) {
    batch[0..8].copy_from_slice(&base_offset.to_be_bytes());
    batch[LEADER_EPOCH_OFFSET..LEADER_EPOCH_OFFSET + 4]
        .copy_from_slice(&leader_epoch.to_be_bytes());
}

/// Stamps LogAppendTime: sets the timestamp-type bit and max timestamp, recomputes CRC.
pub fn patch_log_append_time(batch: &mut [u8], now_ms: i64) {
    let attrs = i16_at(batch, ATTRIBUTES_OFFSET) | TIMESTAMP_TYPE_BIT;
    batch[ATTRIBUTES_OFFSET..ATTRIBUTES_OFFSET + 2].copy_from_slice(&attrs.to_be_bytes());
    batch[MAX_TIMESTAMP_OFFSET..MAX_TIMESTAMP_OFFSET + 8].copy_from_slice(&now_ms.to_be_bytes());
    let crc = compute_crc(batch);
    batch[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
}

/// LogAppendTime on a detached header: `rest` is the batch after its header, needed
/// only to recompute the CRC.
pub fn patch_log_append_time_header(header: &mut [u8; HEADER_SIZE], rest: &[u8], now_ms: i64) {
    let attrs = i16_at(header, ATTRIBUTES_OFFSET) | TIMESTAMP_TYPE_BIT;
    header[ATTRIBUTES_OFFSET..ATTRIBUTES_OFFSET + 2].copy_from_slice(&attrs.to_be_bytes());
    header[MAX_TIMESTAMP_OFFSET..MAX_TIMESTAMP_OFFSET + 8].copy_from_slice(&now_ms.to_be_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&header[ATTRIBUTES_OFFSET..]), rest);
    header[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Sets the codec bits of the attributes (the CRC must be recomputed after).
pub fn set_compression(batch: &mut [u8], codec: i16) {
    let attrs = (i16_at(batch, ATTRIBUTES_OFFSET) & !COMPRESSION_MASK) | (codec & COMPRESSION_MASK);
    batch[ATTRIBUTES_OFFSET..ATTRIBUTES_OFFSET + 2].copy_from_slice(&attrs.to_be_bytes());
}

/// Sets the batch length (bytes after the length field).
pub fn set_batch_length(batch: &mut [u8], length: i32) {
    batch[BATCH_LENGTH_OFFSET..BATCH_LENGTH_OFFSET + 4].copy_from_slice(&length.to_be_bytes());
}

/// Recomputes and stores the CRC of a whole batch.
pub fn update_crc(batch: &mut [u8]) {
    let crc = compute_crc(batch);
    batch[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Walks whole batches in `buf` (as read from a segment) and returns the length of
/// the longest prefix made of complete batches, and how many there are.
pub fn complete_prefix(buf: &[u8]) -> (usize, usize) {
    let mut pos = 0;
    let mut count = 0;
    while let Some(size) = BatchHeader::total_size_of(&buf[pos..]) {
        if size < HEADER_SIZE || pos + size > buf.len() {
            break;
        }
        pos += size;
        count += 1;
    }
    (pos, count)
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// A minimal valid uncompressed batch with `count` empty records, for tests.
    pub fn make_batch(count: i32, timestamp: i64, producer: Option<(i64, i16, i32)>) -> Vec<u8> {
        let mut records = Vec::new();
        for i in 0..count {
            // record: length, attrs, tsDelta, offsetDelta, keyLen(-1), valueLen(0), headers(0) as varints
            let body = [0u8, 0, (i as u8) << 1, 1, 0, 0];
            records.push((body.len() as u8) << 1);
            records.extend_from_slice(&body);
        }
        let (pid, epoch, seq) = producer.unwrap_or((-1, -1, -1));
        let mut b = Vec::new();
        b.extend_from_slice(&0i64.to_be_bytes());
        b.extend_from_slice(&((HEADER_SIZE - LOG_OVERHEAD + records.len()) as i32).to_be_bytes());
        b.extend_from_slice(&(-1i32).to_be_bytes());
        b.push(2);
        b.extend_from_slice(&0u32.to_be_bytes());
        b.extend_from_slice(&0i16.to_be_bytes());
        b.extend_from_slice(&(count - 1).to_be_bytes());
        b.extend_from_slice(&timestamp.to_be_bytes());
        b.extend_from_slice(&timestamp.to_be_bytes());
        b.extend_from_slice(&pid.to_be_bytes());
        b.extend_from_slice(&epoch.to_be_bytes());
        b.extend_from_slice(&seq.to_be_bytes());
        b.extend_from_slice(&count.to_be_bytes());
        b.extend_from_slice(&records);
        let crc = compute_crc(&b);
        b[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
        b
    }

    #[test]
    fn valid_batch_round_trips_and_patches() {
        let mut b = make_batch(3, 1000, None);
        let h = validate(&b).unwrap();
        assert_eq!(h.record_count, 3);
        patch_offset_and_epoch(&mut b, 42, 7);
        let h = validate(&b).unwrap();
        assert_eq!(
            (h.base_offset, h.last_offset(), h.partition_leader_epoch),
            (42, 44, 7)
        );
        patch_log_append_time(&mut b, 5000);
        let h = validate(&b).unwrap();
        assert!(h.is_log_append_time());
        assert_eq!(h.max_timestamp, 5000);
    }

    #[test]
    fn corrupt_and_truncated_batches_are_refused() {
        let mut b = make_batch(1, 1, None);
        let last = b.len() - 1;
        b[last] ^= 0xff;
        assert!(matches!(validate(&b), Err(BatchError::CrcMismatch { .. })));
        let b = make_batch(1, 1, None);
        assert!(split_and_validate(&b[..b.len() - 1], 1 << 20).is_err());
        assert!(matches!(
            split_and_validate(&b, 10),
            Err(BatchError::TooLarge { .. })
        ));
        assert!(split_and_validate(&[0xff; 7], 1 << 20).is_err());
    }

    #[test]
    fn sequences_wrap() {
        let b = make_batch(3, 1, Some((1, 0, i32::MAX - 1)));
        assert_eq!(BatchHeader::parse(&b).unwrap().last_sequence(), 0);
    }
}
