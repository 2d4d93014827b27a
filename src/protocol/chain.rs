//! Response encoding without copying record sets.
//!
//! `kafka-protocol` encodes a Fetch response's records with `put_slice`, which would
//! copy every fetched byte into one big response buffer. [`ChainBuf`] is a `BufMut`
//! that recognises the record sets it was given (by address and length) and, instead
//! of copying them, ends the current chunk and keeps a reference to the record bytes.
//! The response is then written as a list of chunks: small encoded pieces and the
//! record bytes exactly as they were read from the segment files.
//!
//! Larger record sets need not be read at all: [`FileRecords`] stands a range of a
//! segment file in for them (a placeholder of the right length, never read), and the
//! encoder turns that placeholder into a [`Chunk::File`], which the connection sends
//! with `sendfile` (or reads, under TLS). This is Kafka's zero-copy fetch.

use std::fs::File;
use std::ops::Range;
use std::sync::Arc;

use bytes::buf::UninitSlice;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::protocol::buf::ByteBufMut;

/// Record sets smaller than this are cheaper to copy than to splice.
const MIN_SPLICE: usize = 4096;

/// Placeholders are slices of this zeroed static (in .bss: it takes no memory until
/// read, and nothing reads it). Each starts at its own index, so none two share an
/// address.
static PLACEHOLDER: [u8; PLACEHOLDER_LEN] = [0; PLACEHOLDER_LEN];
const PLACEHOLDER_LEN: usize = (64 << 20) + (64 << 10);

/// Bytes of a file to send as they are.
#[derive(Debug, Clone)]
pub struct FileRange {
    pub file: Arc<File>,
    pub position: u64,
    pub length: usize,
}

/// One piece of an encoded response.
#[derive(Debug, Clone)]
pub enum Chunk {
    Bytes(Bytes),
    File(FileRange),
}

impl Chunk {
    pub fn len(&self) -> usize {
        match self {
            Chunk::Bytes(b) => b.len(),
            Chunk::File(f) => f.length,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The file ranges standing in for a response's record sets.
#[derive(Debug, Default)]
pub struct FileRecords {
    ranges: Vec<(usize, FileRange)>,
}

impl FileRecords {
    /// A placeholder of `range.length` bytes to put in the response where the records
    /// go, or `None` when the range is too large for one (then read it instead).
    pub fn placeholder(&mut self, range: FileRange) -> Option<Bytes> {
        let start = self.ranges.len();
        let slot = PLACEHOLDER.get(start..start.checked_add(range.length)?)?;
        self.ranges.push((slot.as_ptr() as usize, range));
        Some(Bytes::from_static(slot))
    }

    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    fn find(&self, src: &[u8]) -> Option<&FileRange> {
        let at = src.as_ptr() as usize;
        self.ranges
            .iter()
            .find(|(ptr, r)| *ptr == at && r.length == src.len())
            .map(|(_, r)| r)
    }
}

pub struct ChainBuf<'a> {
    done: Vec<Chunk>,
    done_len: usize,
    cur: BytesMut,
    splice: &'a [Bytes],
    files: &'a FileRecords,
    files_sent: usize,
}

impl<'a> ChainBuf<'a> {
    pub fn new(splice: &'a [Bytes], files: &'a FileRecords) -> Self {
        ChainBuf {
            done: Vec::new(),
            done_len: 0,
            cur: BytesMut::with_capacity(512),
            splice,
            files,
            files_sent: 0,
        }
    }

    /// How many placeholders were turned into file chunks: a placeholder not found
    /// would go out as zeros, so the caller checks this against `FileRecords::len`.
    pub fn files_sent(&self) -> usize {
        self.files_sent
    }

    fn end_chunk(&mut self) {
        if !self.cur.is_empty() {
            let head = self.cur.split().freeze();
            self.done_len += head.len();
            self.done.push(Chunk::Bytes(head));
        }
    }

    fn find_splice(&self, src: &[u8]) -> Option<&Bytes> {
        if src.len() < MIN_SPLICE {
            return None;
        }
        self.splice
            .iter()
            .find(|b| b.as_ptr() == src.as_ptr() && b.len() == src.len())
    }

    /// The encoded chunks, in order.
    pub fn into_chunks(mut self) -> Vec<Chunk> {
        if !self.cur.is_empty() {
            self.done.push(Chunk::Bytes(self.cur.freeze()));
        }
        self.done
    }

    pub fn len(&self) -> usize {
        self.done_len + self.cur.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

// SAFETY: every method delegates to the inner `BytesMut`, which upholds `BufMut`'s
// contract; `put_slice` only appends (by copy or by adding a finished chunk).
unsafe impl BufMut for ChainBuf<'_> {
    fn remaining_mut(&self) -> usize {
        self.cur.remaining_mut()
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        // SAFETY: forwarded unchanged; the caller initialised `cnt` bytes of `chunk_mut`.
        unsafe { self.cur.advance_mut(cnt) }
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        self.cur.chunk_mut()
    }

    fn put_slice(&mut self, src: &[u8]) {
        let chunk = if let Some(range) = self.files.find(src).cloned() {
            self.files_sent += 1;
            Chunk::File(range)
        } else if let Some(shared) = self.find_splice(src).cloned() {
            Chunk::Bytes(shared)
        } else {
            self.cur.extend_from_slice(src);
            return;
        };
        self.end_chunk();
        self.done_len += chunk.len();
        self.done.push(chunk);
    }
}

impl ByteBufMut for ChainBuf<'_> {
    fn offset(&self) -> usize {
        self.len()
    }

    // Message encoders never seek or fill gaps (only record-batch encoding does, and
    // it runs on a plain BytesMut); these stay within the current chunk.
    fn seek(&mut self, offset: usize) {
        let local = offset.saturating_sub(self.done_len);
        self.cur.resize(local, 0);
    }

    fn range(&mut self, r: Range<usize>) -> &mut [u8] {
        let start = r.start.saturating_sub(self.done_len).min(self.cur.len());
        let end = r
            .end
            .saturating_sub(self.done_len)
            .clamp(start, self.cur.len());
        &mut self.cur[start..end]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_registered_slices_are_spliced_small_ones_copied() {
        let big = Bytes::from(vec![7u8; 10_000]);
        let small = Bytes::from(vec![1u8; 10]);
        let splice = [big.clone(), small.clone()];
        let files = FileRecords::default();
        let mut buf = ChainBuf::new(&splice, &files);
        buf.put_u32(5);
        buf.put_slice(&big);
        buf.put_slice(&small);
        buf.put_slice(&vec![7u8; 10_000]); // same content, other address: copied
        assert_eq!(buf.len(), 4 + 10_000 + 10 + 10_000);
        let chunks = buf.into_chunks();
        assert_eq!(chunks.len(), 3);
        let chunks: Vec<Bytes> = chunks
            .into_iter()
            .map(|c| match c {
                Chunk::Bytes(b) => b,
                Chunk::File(_) => panic!("no file ranges here"),
            })
            .collect();
        assert_eq!(chunks[1].as_ptr(), big.as_ptr(), "record bytes not copied");
        let joined: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
        assert_eq!(joined.len(), 20_014);
        assert_eq!(&joined[..4], &5u32.to_be_bytes());
    }

    #[test]
    fn placeholders_become_file_chunks_whatever_their_size() {
        let file = Arc::new(tempfile::tempfile().unwrap());
        let mut files = FileRecords::default();
        let range = |position, length| FileRange {
            file: file.clone(),
            position,
            length,
        };
        let a = files.placeholder(range(0, 10)).unwrap();
        let b = files.placeholder(range(10, 10)).unwrap();
        assert_ne!(a.as_ptr(), b.as_ptr(), "two placeholders share an address");
        assert!(files.placeholder(range(0, PLACEHOLDER_LEN)).is_none());
        let mut buf = ChainBuf::new(&[], &files);
        buf.put_u8(1);
        buf.put_slice(&a);
        buf.put_slice(&b);
        buf.put_slice(&[0u8; 10]); // zeros, but not a placeholder: copied
        assert_eq!(buf.files_sent(), 2);
        let chunks = buf.into_chunks();
        let positions: Vec<Option<u64>> = chunks
            .iter()
            .map(|c| match c {
                Chunk::File(f) => Some(f.position),
                Chunk::Bytes(_) => None,
            })
            .collect();
        assert_eq!(positions, [None, Some(0), Some(10), None]);
        assert_eq!(chunks.iter().map(Chunk::len).sum::<usize>(), 31);
    }
}
