//! Recompression of v2 record batches to a topic's `compression.type`, as Kafka's
//! `LogValidator` does on append.
//!
//! Owns the codecs (gzip through `flate2`, snappy through `snap` in the xerial framing
//! Kafka's Java client writes, lz4 frames through `lz4` as Kafka's
//! `Lz4BlockOutputStream` writes them, zstd through `zstd`) and the rewrite of a batch
//! around new record bytes. The records section of a batch (everything after the
//! 61-byte header) is decompressed as one stream and recompressed as one stream; the
//! records themselves are kept byte for byte, so offsets deltas, timestamps, keys,
//! values and headers cannot change. The batch header is copied: base offset, last
//! offset delta, base and max timestamp, producer id, epoch and base sequence stay as
//! the producer sent them (so idempotent retries still deduplicate), only the codec
//! bits of the attributes, the batch length and the CRC are rewritten.
//!
//! Decompression is bounded: a batch whose records would decompress past the limit
//! the caller gives is refused before more memory is taken (no zip bombs). Nothing here
//! panics on input. CPU-bound: callers run it off the async workers and outside the
//! partition lock. Imports only `config` and `log::batch`.

use std::io::{self, Read, Write};

use super::batch::{self, BatchError, BatchHeader, HEADER_SIZE, LOG_OVERHEAD};
use crate::config::TopicCompression;

/// A record-batch codec, as numbered in the attributes' low three bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Codec {
    pub fn from_id(id: i16) -> Option<Codec> {
        Some(match id {
            0 => Codec::None,
            1 => Codec::Gzip,
            2 => Codec::Snappy,
            3 => Codec::Lz4,
            4 => Codec::Zstd,
            _ => return None,
        })
    }

    pub fn id(self) -> i16 {
        match self {
            Codec::None => 0,
            Codec::Gzip => 1,
            Codec::Snappy => 2,
            Codec::Lz4 => 3,
            Codec::Zstd => 4,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Codec::None => "uncompressed",
            Codec::Gzip => "gzip",
            Codec::Snappy => "snappy",
            Codec::Lz4 => "lz4",
            Codec::Zstd => "zstd",
        }
    }
}

/// Why a batch could not be recompressed; mapped to Kafka codes in `error.rs`.
#[derive(Debug, thiserror::Error)]
pub enum CompressionError {
    #[error("{codec} records of the batch cannot be decompressed: {source}")]
    Decompress {
        codec: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("the batch's records decompress to more than {limit} bytes")]
    DecompressedTooLarge { limit: usize },
    #[error("the batch's decompressed records are malformed: {0}")]
    MalformedRecords(&'static str),
    #[error("compressing records with {codec} failed: {source}")]
    Compress {
        codec: &'static str,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Batch(#[from] BatchError),
}

/// The codec `header`'s batch must be stored with under `target`, or None when it is
/// kept as sent (`producer`, or already the topic's codec).
pub fn target_codec(target: TopicCompression, header: &BatchHeader) -> Option<Codec> {
    let codec = match target {
        TopicCompression::Producer => return None,
        TopicCompression::Uncompressed => Codec::None,
        TopicCompression::Gzip { .. } => Codec::Gzip,
        TopicCompression::Snappy => Codec::Snappy,
        TopicCompression::Lz4 { .. } => Codec::Lz4,
        TopicCompression::Zstd { .. } => Codec::Zstd,
    };
    (header.compression() != codec.id()).then_some(codec)
}

/// Whether any batch of a produce payload must be recompressed: a header check only.
pub fn needs_recompression(batches: &[(usize, BatchHeader)], target: TopicCompression) -> bool {
    batches
        .iter()
        .any(|(_, h)| target_codec(target, h).is_some())
}

/// The most bytes a batch's records may decompress to: for an uncompressed topic the
/// batch as stored must fit `max.message.bytes`, so more is refused at once; for a
/// compressed topic a generous multiple of it (real batches compress far less than
/// 64:1 on average), never below 64 MiB nor above 1 GiB.
pub fn decompressed_limit(target: TopicCompression, max_message_bytes: usize) -> usize {
    match target {
        TopicCompression::Uncompressed => max_message_bytes.saturating_sub(HEADER_SIZE),
        _ => max_message_bytes
            .saturating_mul(64)
            .clamp(64 << 20, 1 << 30),
    }
}

/// Rewrites every batch of a produce payload whose codec differs from `target`;
/// batches that match are copied as they are. `batches` are the validated batches of
/// `records` (from `batch::split_and_validate`). The result is a new payload for the
/// caller to validate again (sizes against `max.message.bytes`, CRCs).
pub fn recompress(
    records: &[u8],
    batches: &[(usize, BatchHeader)],
    target: TopicCompression,
    max_decompressed: usize,
) -> Result<Vec<u8>, CompressionError> {
    let mut out = Vec::with_capacity(records.len());
    for (pos, header) in batches {
        let bytes = &records[*pos..*pos + header.total_size()];
        match target_codec(target, header) {
            None => out.extend_from_slice(bytes),
            Some(codec) => {
                out.extend_from_slice(&recompress_batch(
                    bytes,
                    header,
                    codec,
                    target,
                    max_decompressed,
                )?);
            }
        }
    }
    Ok(out)
}

/// One batch (`batch` is exactly its bytes, `header` its parsed header) rewritten with
/// `codec` at `target`'s level.
pub fn recompress_batch(
    batch: &[u8],
    header: &BatchHeader,
    codec: Codec,
    target: TopicCompression,
    max_decompressed: usize,
) -> Result<Vec<u8>, CompressionError> {
    let source = Codec::from_id(header.compression())
        .ok_or(BatchError::Malformed("unknown compression codec"))?;
    let compressed = batch.get(HEADER_SIZE..).ok_or(BatchError::Truncated {
        needed: HEADER_SIZE,
        available: batch.len(),
    })?;
    let plain = decompress(source, compressed, max_decompressed)?;
    check_records(&plain, header.record_count)?;
    let records = compress(codec, target, &plain)?;
    let length = HEADER_SIZE - LOG_OVERHEAD + records.len();
    if length > i32::MAX as usize {
        return Err(BatchError::TooLarge {
            size: length + LOG_OVERHEAD,
            limit: i32::MAX as usize,
        }
        .into());
    }
    let mut out = Vec::with_capacity(HEADER_SIZE + records.len());
    out.extend_from_slice(&batch[..HEADER_SIZE]);
    out.extend_from_slice(&records);
    batch::set_compression(&mut out, codec.id());
    batch::set_batch_length(&mut out, length as i32);
    batch::update_crc(&mut out);
    Ok(out)
}

/// Walks the length prefixes of the decompressed records: exactly `count` records
/// that fill the section, as Kafka checks when it iterates a compressed batch.
fn check_records(records: &[u8], count: i32) -> Result<(), CompressionError> {
    let mut pos = 0usize;
    for _ in 0..count {
        let (len, used) = read_varint(&records[pos..])
            .ok_or(CompressionError::MalformedRecords("bad record length"))?;
        pos += used;
        if len < 0 || len as usize > records.len() - pos {
            return Err(CompressionError::MalformedRecords(
                "record length past the end of the batch",
            ));
        }
        pos += len as usize;
    }
    if pos != records.len() {
        return Err(CompressionError::MalformedRecords(
            "bytes left after the declared record count",
        ));
    }
    Ok(())
}

/// A zigzag varint (Kafka's record lengths) and the bytes it took.
fn read_varint(b: &[u8]) -> Option<(i64, usize)> {
    let mut raw: u64 = 0;
    for (i, byte) in b.iter().take(5).enumerate() {
        raw |= ((byte & 0x7f) as u64) << (7 * i);
        if byte & 0x80 == 0 {
            let value = ((raw >> 1) as i64) ^ -((raw & 1) as i64);
            return Some((value, i + 1));
        }
    }
    None
}

fn decompress(codec: Codec, input: &[u8], limit: usize) -> Result<Vec<u8>, CompressionError> {
    let err = |source: io::Error| CompressionError::Decompress {
        codec: codec.name(),
        source,
    };
    match codec {
        Codec::None => {
            if input.len() > limit {
                return Err(CompressionError::DecompressedTooLarge { limit });
            }
            Ok(input.to_vec())
        }
        // Several gzip members are one stream, as Java's GZIPInputStream reads them.
        Codec::Gzip => read_bounded(flate2::read::MultiGzDecoder::new(input), input, limit)
            .map_err(|e| e.or_codec(err)),
        Codec::Snappy => snappy_decompress(input, limit),
        Codec::Lz4 => {
            let mut decoder = lz4::Decoder::new(input).map_err(err)?;
            let out = read_bounded(&mut decoder, input, limit).map_err(|e| e.or_codec(err))?;
            // A frame cut short reads as a clean end; finish() tells the difference.
            decoder.finish().1.map_err(err)?;
            Ok(out)
        }
        Codec::Zstd => {
            let decoder = zstd::stream::read::Decoder::with_buffer(input).map_err(err)?;
            read_bounded(decoder, input, limit).map_err(|e| e.or_codec(err))
        }
    }
}

/// A read error, or the limit passed.
enum Bounded {
    Io(io::Error),
    TooLarge(usize),
}

impl Bounded {
    fn or_codec(self, err: impl Fn(io::Error) -> CompressionError) -> CompressionError {
        match self {
            Bounded::Io(e) => err(e),
            Bounded::TooLarge(limit) => CompressionError::DecompressedTooLarge { limit },
        }
    }
}

/// Reads `reader` to its end, refusing to hold more than `limit` bytes.
fn read_bounded(reader: impl Read, input: &[u8], limit: usize) -> Result<Vec<u8>, Bounded> {
    let mut out = Vec::with_capacity(input.len().saturating_mul(4).min(limit));
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(Bounded::Io)?;
    if out.len() > limit {
        return Err(Bounded::TooLarge(limit));
    }
    Ok(out)
}

/// snappy-java's stream header (magic, version 1, compatible version 1), which Kafka's
/// Java client, kafka-python and librdkafka all read.
const XERIAL_HEADER: &[u8; 16] = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";
const XERIAL_MAGIC_LEN: usize = 8;
/// snappy-java's default block size, which Kafka's producer uses.
const XERIAL_BLOCK: usize = 32 * 1024;

/// Xerial-framed snappy (as Java and kafka-python produce), or raw snappy without the
/// header (as librdkafka produces): both are read, as Kafka reads both.
fn snappy_decompress(input: &[u8], limit: usize) -> Result<Vec<u8>, CompressionError> {
    let err = |msg: String| CompressionError::Decompress {
        codec: "snappy",
        source: io::Error::new(io::ErrorKind::InvalidData, msg),
    };
    let mut out = Vec::new();
    let append = |block: &[u8], out: &mut Vec<u8>| -> Result<(), CompressionError> {
        let n = snap::raw::decompress_len(block).map_err(|e| err(e.to_string()))?;
        if n > limit - out.len() {
            return Err(CompressionError::DecompressedTooLarge { limit });
        }
        let start = out.len();
        out.resize(start + n, 0);
        let written = snap::raw::Decoder::new()
            .decompress(block, &mut out[start..])
            .map_err(|e| err(e.to_string()))?;
        out.truncate(start + written);
        Ok(())
    };
    if input.len() < XERIAL_HEADER.len()
        || input[..XERIAL_MAGIC_LEN] != XERIAL_HEADER[..XERIAL_MAGIC_LEN]
    {
        append(input, &mut out)?;
        return Ok(out);
    }
    let mut rest = &input[XERIAL_HEADER.len()..];
    while !rest.is_empty() {
        if rest.len() < 4 {
            return Err(err("truncated block length".into()));
        }
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        rest = &rest[4..];
        if len > rest.len() {
            return Err(err(format!(
                "block of {len} bytes with {} left",
                rest.len()
            )));
        }
        append(&rest[..len], &mut out)?;
        rest = &rest[len..];
    }
    Ok(out)
}

fn compress(
    codec: Codec,
    target: TopicCompression,
    plain: &[u8],
) -> Result<Vec<u8>, CompressionError> {
    let err = |source: io::Error| CompressionError::Compress {
        codec: codec.name(),
        source,
    };
    match codec {
        Codec::None => Ok(plain.to_vec()),
        Codec::Gzip => {
            let level = match target {
                TopicCompression::Gzip { level } => level,
                _ => TopicCompression::GZIP_DEFAULT_LEVEL,
            };
            let mut encoder = flate2::write::GzEncoder::new(
                Vec::with_capacity(plain.len() / 2),
                flate2::Compression::new(level),
            );
            encoder.write_all(plain).map_err(err)?;
            encoder.finish().map_err(err)
        }
        Codec::Snappy => {
            let mut out = Vec::with_capacity(XERIAL_HEADER.len() + plain.len() / 2);
            out.extend_from_slice(XERIAL_HEADER);
            let mut encoder = snap::raw::Encoder::new();
            let mut block = vec![0u8; snap::raw::max_compress_len(XERIAL_BLOCK)];
            for chunk in plain.chunks(XERIAL_BLOCK) {
                let n = encoder
                    .compress(chunk, &mut block)
                    .map_err(|e| err(io::Error::other(e)))?;
                out.extend_from_slice(&(n as u32).to_be_bytes());
                out.extend_from_slice(&block[..n]);
            }
            Ok(out)
        }
        Codec::Lz4 => {
            let level = match target {
                TopicCompression::Lz4 { level } => level,
                _ => 9,
            };
            // As Kafka's Lz4BlockOutputStream: independent 64 KiB blocks, no checksums
            // but the header's; the default level 9 uses the fast compressor (lz4
            // frame level 0), any other level the high-compression one.
            let mut encoder = lz4::EncoderBuilder::new()
                .level(if level == 9 { 0 } else { level })
                .block_size(lz4::BlockSize::Max64KB)
                .block_mode(lz4::BlockMode::Independent)
                .checksum(lz4::ContentChecksum::NoChecksum)
                .block_checksum(lz4::liblz4::BlockChecksum::NoBlockChecksum)
                .build(Vec::with_capacity(plain.len() / 2))
                .map_err(err)?;
            encoder.write_all(plain).map_err(err)?;
            let (out, result) = encoder.finish();
            result.map_err(err)?;
            Ok(out)
        }
        Codec::Zstd => {
            let level = match target {
                TopicCompression::Zstd { level } => level,
                _ => 3,
            };
            zstd::bulk::compress(plain, level).map_err(err)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch::tests::make_batch;

    const ALL: [TopicCompression; 5] = [
        TopicCompression::Uncompressed,
        TopicCompression::Gzip { level: 6 },
        TopicCompression::Snappy,
        TopicCompression::Lz4 { level: 9 },
        TopicCompression::Zstd { level: 3 },
    ];

    /// A producer-like batch: `count` records with keys, values and a header, then
    /// compressed with `codec`, idempotent fields and odd timestamps set.
    fn batch_with(codec: TopicCompression, count: i32) -> Vec<u8> {
        let mut records = Vec::new();
        for i in 0..count {
            let mut body = vec![0u8]; // attributes
            push_varint(&mut body, i as i64 * 7); // timestamp delta
            push_varint(&mut body, i as i64); // offset delta
            let key = format!("key-{i}");
            push_varint(&mut body, key.len() as i64);
            body.extend_from_slice(key.as_bytes());
            let value = format!("value {i} ").repeat(20);
            push_varint(&mut body, value.len() as i64);
            body.extend_from_slice(value.as_bytes());
            push_varint(&mut body, 1); // one header
            push_varint(&mut body, 1);
            body.extend_from_slice(b"h");
            push_varint(&mut body, 2);
            body.extend_from_slice(&(i as u16).to_be_bytes());
            push_varint(&mut records, body.len() as i64);
            records.extend_from_slice(&body);
        }
        let mut b = make_batch(count, 1_700_000_000_000, Some((42, 3, 17)));
        b.truncate(HEADER_SIZE);
        // Max timestamp as a producer computes it.
        b[35..43].copy_from_slice(&(1_700_000_000_000i64 + (count as i64 - 1) * 7).to_be_bytes());
        // Attributes other than the codec: the timestamp-type bit stays off here, but
        // set a bit the codec rewrite must not touch (bit 6, "has delete horizon").
        b[21..23].copy_from_slice(&0x40i16.to_be_bytes());
        b.extend_from_slice(&records);
        let length = (b.len() - LOG_OVERHEAD) as i32;
        batch::set_batch_length(&mut b, length);
        batch::update_crc(&mut b);
        let h = batch::validate(&b).unwrap();
        match target_codec(codec, &h) {
            None => b,
            Some(c) => recompress_batch(&b, &h, c, codec, 1 << 30).unwrap(),
        }
    }

    fn push_varint(out: &mut Vec<u8>, v: i64) {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        loop {
            if z < 0x80 {
                out.push(z as u8);
                return;
            }
            out.push((z as u8 & 0x7f) | 0x80);
            z >>= 7;
        }
    }

    fn records_of(b: &[u8]) -> Vec<u8> {
        let h = batch::validate(b).unwrap();
        decompress(
            Codec::from_id(h.compression()).unwrap(),
            &b[HEADER_SIZE..],
            1 << 30,
        )
        .unwrap()
    }

    #[test]
    fn every_codec_round_trips_to_every_other_keeping_the_header() {
        let original = batch_with(TopicCompression::Uncompressed, 50);
        let plain = records_of(&original);
        for from in ALL {
            let source = batch_with(from, 50);
            let sh = batch::validate(&source).unwrap();
            assert_eq!(records_of(&source), plain, "{from:?}");
            for to in ALL {
                let Some(codec) = target_codec(to, &sh) else {
                    assert_eq!(from, to);
                    continue;
                };
                let out = recompress_batch(&source, &sh, codec, to, 1 << 30).unwrap();
                let h = batch::validate(&out).expect("CRC and length valid");
                assert_eq!(h.compression(), codec.id(), "{from:?} -> {to:?}");
                assert_eq!(h.attributes & !0x07, sh.attributes & !0x07);
                assert_eq!(
                    (h.base_offset, h.last_offset_delta, h.record_count),
                    (sh.base_offset, sh.last_offset_delta, sh.record_count)
                );
                assert_eq!(
                    (h.base_timestamp, h.max_timestamp),
                    (sh.base_timestamp, sh.max_timestamp)
                );
                assert_eq!(
                    (h.producer_id, h.producer_epoch, h.base_sequence),
                    (42, 3, 17)
                );
                assert_eq!(h.partition_leader_epoch, sh.partition_leader_epoch);
                assert_eq!(records_of(&out), plain, "{from:?} -> {to:?}");
            }
        }
    }

    #[test]
    fn compressed_batches_are_smaller_and_levels_matter() {
        let plain = batch_with(TopicCompression::Uncompressed, 200);
        for to in &ALL[1..] {
            assert!(batch_with(*to, 200).len() < plain.len() / 2, "{to:?}");
        }
        let h = batch::validate(&plain).unwrap();
        let size = |level| {
            let t = TopicCompression::Zstd { level };
            recompress_batch(&plain, &h, Codec::Zstd, t, 1 << 30)
                .unwrap()
                .len()
        };
        assert!(size(19) < size(-50), "{} vs {}", size(19), size(-50));
    }

    #[test]
    fn matching_codecs_and_producer_are_left_alone() {
        let zstd = batch_with(TopicCompression::Zstd { level: 3 }, 3);
        let h = batch::validate(&zstd).unwrap();
        assert_eq!(target_codec(TopicCompression::Producer, &h), None);
        // A different level is not a reason to recompress (Kafka compares codecs only).
        assert_eq!(target_codec(TopicCompression::Zstd { level: 9 }, &h), None);
        let both = [zstd.clone(), batch_with(TopicCompression::Uncompressed, 2)].concat();
        let batches = batch::split_and_validate(&both, 1 << 20).unwrap();
        assert!(!needs_recompression(
            &batches[..1],
            TopicCompression::Zstd { level: 1 }
        ));
        assert!(needs_recompression(
            &batches,
            TopicCompression::Zstd { level: 1 }
        ));
        let out = recompress(
            &both,
            &batches,
            TopicCompression::Zstd { level: 1 },
            1 << 30,
        )
        .unwrap();
        let again = batch::split_and_validate(&out, 1 << 20).unwrap();
        assert_eq!(again.len(), 2);
        assert_eq!(
            &out[..zstd.len()],
            &zstd[..],
            "the zstd batch is copied as is"
        );
        assert_eq!(again[1].1.compression(), Codec::Zstd.id());
    }

    #[test]
    fn raw_snappy_from_librdkafka_is_read_and_xerial_is_written() {
        let plain = batch_with(TopicCompression::Uncompressed, 20);
        let records = &plain[HEADER_SIZE..];
        let raw = snap::raw::Encoder::new().compress_vec(records).unwrap();
        assert_eq!(snappy_decompress(&raw, 1 << 30).unwrap(), records);
        let xerial = batch_with(TopicCompression::Snappy, 20);
        assert_eq!(&xerial[HEADER_SIZE..HEADER_SIZE + 16], XERIAL_HEADER);
    }

    #[test]
    fn bombs_garbage_and_bad_record_counts_are_refused_without_panics() {
        // 64 MiB of zeros compress to a few KiB: refused at a 1 MiB limit.
        let zeros = vec![0u8; 64 << 20];
        let bomb = zstd::bulk::compress(&zeros, 3).unwrap();
        assert!(matches!(
            decompress(Codec::Zstd, &bomb, 1 << 20),
            Err(CompressionError::DecompressedTooLarge { .. })
        ));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(9));
        gz.write_all(&zeros).unwrap();
        let gz = gz.finish().unwrap();
        assert!(matches!(
            decompress(Codec::Gzip, &gz, 1 << 20),
            Err(CompressionError::DecompressedTooLarge { .. })
        ));
        let sn = compress(Codec::Snappy, TopicCompression::Snappy, &zeros).unwrap();
        assert!(matches!(
            decompress(Codec::Snappy, &sn, 1 << 20),
            Err(CompressionError::DecompressedTooLarge { .. })
        ));
        let raw = snap::raw::Encoder::new().compress_vec(&zeros).unwrap();
        assert!(matches!(
            decompress(Codec::Snappy, &raw, 1 << 20),
            Err(CompressionError::DecompressedTooLarge { .. })
        ));
        let l4 = compress(Codec::Lz4, TopicCompression::Lz4 { level: 1 }, &zeros).unwrap();
        assert!(matches!(
            decompress(Codec::Lz4, &l4, 1 << 20),
            Err(CompressionError::DecompressedTooLarge { .. })
        ));
        // Garbage and truncated streams in every codec.
        for codec in [Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd] {
            let good = compress(codec, TopicCompression::Producer, b"some records here").unwrap();
            for bad in [
                &b"\x00\x01garbage garbage garbage garbage"[..],
                &good[..good.len() - 3],
            ] {
                assert!(
                    decompress(codec, bad, 1 << 20).is_err(),
                    "{codec:?} {bad:?}"
                );
            }
        }
        // Records that do not add up to the declared count.
        let b = batch_with(TopicCompression::Uncompressed, 3);
        let mut h = batch::validate(&b).unwrap();
        h.record_count = 4;
        assert!(matches!(
            recompress_batch(
                &b,
                &h,
                Codec::Zstd,
                TopicCompression::Zstd { level: 3 },
                1 << 30
            ),
            Err(CompressionError::MalformedRecords(_))
        ));
        h.record_count = 2;
        assert!(matches!(
            recompress_batch(
                &b,
                &h,
                Codec::Zstd,
                TopicCompression::Zstd { level: 3 },
                1 << 30
            ),
            Err(CompressionError::MalformedRecords(_))
        ));
    }

    #[test]
    fn uncompressed_targets_cap_at_the_batch_limit() {
        assert_eq!(
            decompressed_limit(TopicCompression::Uncompressed, 1000),
            1000 - HEADER_SIZE
        );
        assert_eq!(decompressed_limit(TopicCompression::Snappy, 1000), 64 << 20);
        assert_eq!(
            decompressed_limit(TopicCompression::Snappy, usize::MAX),
            1 << 30
        );
    }
}
