//! Response encoding without copying record sets.
//!
//! `kafka-protocol` encodes a Fetch response's records with `put_slice`, which would
//! copy every fetched byte into one big response buffer. [`ChainBuf`] is a `BufMut`
//! that recognises the record sets it was given (by address and length) and, instead
//! of copying them, ends the current chunk and keeps a reference to the record bytes.
//! The response is then written as a list of chunks: small encoded pieces and the
//! record bytes exactly as they were read from the segment files.

use std::ops::Range;

use bytes::buf::UninitSlice;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::protocol::buf::ByteBufMut;

/// Record sets smaller than this are cheaper to copy than to splice.
const MIN_SPLICE: usize = 4096;

pub struct ChainBuf<'a> {
    done: Vec<Bytes>,
    done_len: usize,
    cur: BytesMut,
    splice: &'a [Bytes],
}

impl<'a> ChainBuf<'a> {
    pub fn new(splice: &'a [Bytes]) -> Self {
        ChainBuf {
            done: Vec::new(),
            done_len: 0,
            cur: BytesMut::with_capacity(512),
            splice,
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
    pub fn into_chunks(mut self) -> Vec<Bytes> {
        if !self.cur.is_empty() {
            self.done.push(self.cur.freeze());
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
        if let Some(shared) = self.find_splice(src).cloned() {
            if !self.cur.is_empty() {
                let head = self.cur.split().freeze();
                self.done_len += head.len();
                self.done.push(head);
            }
            self.done_len += shared.len();
            self.done.push(shared);
        } else {
            self.cur.extend_from_slice(src);
        }
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
        let mut buf = ChainBuf::new(&splice);
        buf.put_u32(5);
        buf.put_slice(&big);
        buf.put_slice(&small);
        buf.put_slice(&vec![7u8; 10_000]); // same content, other address: copied
        assert_eq!(buf.len(), 4 + 10_000 + 10 + 10_000);
        let chunks = buf.into_chunks();
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks[1].as_ptr(), big.as_ptr(), "record bytes not copied");
        let joined: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
        assert_eq!(joined.len(), 20_014);
        assert_eq!(&joined[..4], &5u32.to_be_bytes());
    }
}
