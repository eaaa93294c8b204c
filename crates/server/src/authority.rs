//! A connection shim under the HTTP/2 server that repairs a malformed `:authority` pseudo-header.
//!
//! Go's clientv3 sends an invalid authority: 3.4 with a scheme'd endpoint sends `http://host:port`, 3.5.0
//! sends `#initially=[https://host:port]` (etcd-io/etcd#13192). Go's gRPC server accepts it; hyper's `h2`
//! resets the stream with `PROTOCOL_ERROR` (hyperium/h2#525). This module sits between the TCP stream and
//! the server and rewrites such header blocks before `h2` sees them.
//!
//! # What it does to the client->server bytes (the server->client side passes untouched)
//! - A connection that does not open with the HTTP/2 prior-knowledge preface (HTTP/1.1: the JSON gateway,
//!   `/health`, curl) passes through unchanged; the preface bytes are never held back.
//! - After the preface every frame (9-byte header: 24-bit length, type, flags, 31-bit stream id) passes
//!   byte for byte, except header blocks: a HEADERS frame plus its CONTINUATION frames up to END_HEADERS.
//!   Each block is decoded with an HPACK decoder that follows the client's dynamic table.
//! - A client keeps one authority for all streams of a connection (gRPC takes it from the channel), so the
//!   first header block decides. If its `:authority` is valid (what `h2` accepts), it passes unchanged and
//!   the rest of the connection passes without even frame parsing: decoding every block nearly doubled the
//!   server's CPU per put in cairn-bench (loona-hpack builds a Huffman table for every Huffman string). A
//!   later invalid authority on such a connection gets `h2`'s PROTOCOL_ERROR, as without the shim.
//! - Otherwise the authority is repaired (`http://h:p/x` -> `h:p`, `#initially=[https://h:p;...]` -> `h:p`,
//!   anything still invalid is dropped) and the block re-encoded as "literal without indexing, new name"
//!   (no Huffman, no dynamic table), split into HEADERS + CONTINUATION frames of at most
//!   [`MAX_FRAME_SIZE`] bytes, with the same stream id, END_STREAM and priority and without padding. From
//!   the first rewrite on, every later block is re-encoded so: the server's decoder no longer sees the
//!   client's dynamic-table insertions, and literals without indexing leave its table as it was.
//! - A block over [`MAX_HEADER_BLOCK`] bytes, an HPACK error or a malformed frame closes the connection.

use std::io;
use std::pin::Pin;
use std::str::FromStr;
use std::task::{Context, Poll};

use axum::http::uri::Authority;
use loona_hpack::Decoder;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The HTTP/2 client connection preface (RFC 9113 section 3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// The largest frame payload written: the default SETTINGS_MAX_FRAME_SIZE, which hyper's server keeps.
pub const MAX_FRAME_SIZE: usize = 16_384;
/// The largest header block (frames' payloads together) accepted before the connection is closed.
pub const MAX_HEADER_BLOCK: usize = 1 << 20;
/// The dynamic table size the server advertises (h2's default SETTINGS_HEADER_TABLE_SIZE).
const HEADER_TABLE_SIZE: usize = 4_096;

const FRAME_HEADERS: u8 = 0x1;
const FRAME_CONTINUATION: u8 = 0x9;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;

/// Why a connection is closed.
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    #[error("header block larger than {MAX_HEADER_BLOCK} bytes")]
    BlockTooLarge,
    #[error("malformed HEADERS frame: {0}")]
    Malformed(&'static str),
    #[error("frame of type {0} inside a header block")]
    Interleaved(u8),
    #[error("HPACK: {0}")]
    Hpack(loona_hpack::decoder::DecoderError),
}

/// Where the parser is in the client's byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Matching the preface; the number of bytes matched so far.
    Preface(usize),
    /// Not HTTP/2 prior knowledge, or the first authority was valid: every byte passes.
    Opaque,
    /// Collecting a frame header.
    Head,
    /// Passing the payload of a frame that is not part of a header block.
    Payload(usize),
    /// Collecting the payload of a HEADERS or CONTINUATION frame.
    BlockPayload { left: usize, frame_type: u8, flags: u8 },
}

/// Where processed bytes go: the read's own buffer, kept in place up to the first held byte, and after
/// that (once "diverted") an owned buffer that keeps the order.
struct Sink<'a> {
    kept: usize,
    diverted: bool,
    pending: &'a mut Vec<u8>,
}

impl Sink<'_> {
    fn pass(&mut self, bytes: &[u8]) {
        if self.diverted {
            self.pending.extend_from_slice(bytes);
        } else {
            self.kept += bytes.len();
        }
    }
}

/// The header block being collected.
#[derive(Debug, Default)]
struct Block {
    stream_id: u32,
    end_stream: bool,
    priority: Option<[u8; 5]>,
    /// The original frames, byte for byte, to pass when nothing needs rewriting.
    raw: Vec<u8>,
    /// The HPACK fragment (HEADERS without padding and priority, then the CONTINUATION payloads).
    fragment: Vec<u8>,
    /// The current frame's payload.
    payload: Vec<u8>,
}

/// The synchronous core: a parser over the client's bytes (tested without sockets).
pub struct Shim {
    phase: Phase,
    head: [u8; 9],
    head_len: usize,
    in_block: bool,
    block: Block,
    decoder: Decoder<'static>,
    rewritten: bool,
    /// The re-encoded block (reused between blocks).
    encoded: Vec<u8>,
}

impl std::fmt::Debug for Shim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shim").field("phase", &self.phase).field("rewritten", &self.rewritten).finish()
    }
}

impl Default for Shim {
    fn default() -> Self {
        Self::new()
    }
}

impl Shim {
    pub fn new() -> Self {
        let mut decoder = Decoder::new();
        decoder.set_max_allowed_table_size(HEADER_TABLE_SIZE);
        Self {
            phase: Phase::Preface(0),
            head: [0; 9],
            head_len: 0,
            in_block: false,
            block: Block::default(),
            decoder,
            rewritten: false,
            encoded: Vec::new(),
        }
    }

    /// Processes `input`, the bytes just read. Returns how many leading bytes of `input` stay in place;
    /// what follows them in the output stream is appended to `pending` (the caller sends it next).
    pub fn process(&mut self, input: &[u8], pending: &mut Vec<u8>) -> Result<usize, ShimError> {
        // Bytes held from an earlier read (a partial frame header or block) come before this input.
        let diverted = self.head_len > 0 || self.in_block;
        let mut sink = Sink { kept: 0, diverted, pending };
        let mut at = 0;
        while at < input.len() {
            let rest = &input[at..];
            match self.phase {
                Phase::Opaque => {
                    sink.pass(rest);
                    at = input.len();
                }
                Phase::Preface(matched) => {
                    let n = rest.len().min(PREFACE.len() - matched);
                    if rest[..n] == PREFACE[matched..matched + n] {
                        self.phase = if matched + n == PREFACE.len() {
                            Phase::Head
                        } else {
                            Phase::Preface(matched + n)
                        };
                        sink.pass(&rest[..n]);
                        at += n;
                    } else {
                        self.phase = Phase::Opaque;
                    }
                }
                Phase::Head => {
                    let started_here = self.head_len == 0;
                    let n = rest.len().min(9 - self.head_len);
                    self.head[self.head_len..self.head_len + n].copy_from_slice(&rest[..n]);
                    self.head_len += n;
                    at += n;
                    if self.head_len == 9 {
                        self.head_len = 0;
                        self.on_frame_header(&mut sink, started_here)?;
                    }
                }
                Phase::Payload(left) => {
                    let n = rest.len().min(left);
                    sink.pass(&rest[..n]);
                    at += n;
                    self.phase = if n == left { Phase::Head } else { Phase::Payload(left - n) };
                }
                Phase::BlockPayload { left, frame_type, flags } => {
                    let n = rest.len().min(left);
                    self.block.payload.extend_from_slice(&rest[..n]);
                    self.block.raw.extend_from_slice(&rest[..n]);
                    at += n;
                    if n == left {
                        self.phase = Phase::Head;
                        self.on_block_frame(frame_type, flags, &mut sink)?;
                    } else {
                        self.phase = Phase::BlockPayload { left: left - n, frame_type, flags };
                    }
                }
            }
        }
        Ok(sink.kept)
    }

    /// A complete frame header is in `self.head`; `started_here` says whether all of it came from the
    /// current input (so it may stay in place).
    fn on_frame_header(&mut self, sink: &mut Sink<'_>, started_here: bool) -> Result<(), ShimError> {
        let h = self.head;
        let len = usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
        let (frame_type, flags) = (h[3], h[4]);
        let stream_id = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
        let block_frame = frame_type == FRAME_HEADERS || (self.in_block && frame_type == FRAME_CONTINUATION);
        if self.in_block && frame_type != FRAME_CONTINUATION {
            return Err(ShimError::Interleaved(frame_type));
        }
        if !block_frame {
            if sink.diverted || !started_here {
                sink.diverted = true;
                sink.pending.extend_from_slice(&h);
            } else {
                sink.kept += 9;
            }
            self.phase = if len == 0 { Phase::Head } else { Phase::Payload(len) };
            return Ok(());
        }
        // From here on this read's bytes are held until the block is complete.
        sink.diverted = true;
        if frame_type == FRAME_HEADERS {
            self.in_block = true;
            self.block.stream_id = stream_id;
            self.block.end_stream = flags & FLAG_END_STREAM != 0;
            self.block.priority = None;
            self.block.raw.clear();
            self.block.fragment.clear();
        } else if stream_id != self.block.stream_id {
            return Err(ShimError::Malformed("CONTINUATION on another stream"));
        }
        if self.block.raw.len() + 9 + len > MAX_HEADER_BLOCK {
            return Err(ShimError::BlockTooLarge);
        }
        self.block.raw.extend_from_slice(&h);
        self.block.payload.clear();
        self.phase = Phase::BlockPayload { left: len, frame_type, flags };
        if len == 0 {
            self.phase = Phase::Head;
            self.on_block_frame(frame_type, flags, sink)?;
        }
        Ok(())
    }

    /// The payload of a HEADERS or CONTINUATION frame is in `self.block.payload`.
    fn on_block_frame(&mut self, frame_type: u8, flags: u8, sink: &mut Sink<'_>) -> Result<(), ShimError> {
        let payload = &self.block.payload;
        let mut data: &[u8] = payload;
        if frame_type == FRAME_HEADERS {
            if flags & FLAG_PADDED != 0 {
                let (&pad, rest) = data.split_first().ok_or(ShimError::Malformed("no pad length"))?;
                let keep = rest
                    .len()
                    .checked_sub(usize::from(pad))
                    .ok_or(ShimError::Malformed("padding too long"))?;
                data = &rest[..keep];
            }
            if flags & FLAG_PRIORITY != 0 {
                let (prio, rest) =
                    data.split_first_chunk::<5>().ok_or(ShimError::Malformed("short priority"))?;
                self.block.priority = Some(*prio);
                data = rest;
            }
        }
        self.block.fragment.extend_from_slice(data);
        if flags & FLAG_END_HEADERS == 0 {
            return Ok(());
        }
        self.in_block = false;
        self.finish_block(sink)
    }

    /// The whole block is collected: decode it, and pass it or its rewrite.
    fn finish_block(&mut self, sink: &mut Sink<'_>) -> Result<(), ShimError> {
        let encoded = &mut self.encoded;
        encoded.clear();
        let mut authority_ok = true;
        self.decoder
            .decode_with_cb(&self.block.fragment, |name, value| {
                if name.as_ref() == b":authority" {
                    match repair_authority(&value) {
                        Repair::Valid => encode_literal(encoded, &name, &value),
                        Repair::Replace(v) => {
                            authority_ok = false;
                            encode_literal(encoded, &name, v.as_bytes());
                        }
                        Repair::Drop => authority_ok = false,
                    }
                } else {
                    encode_literal(encoded, &name, &value);
                }
            })
            .map_err(ShimError::Hpack)?;
        if authority_ok && !self.rewritten {
            sink.pending.extend_from_slice(&self.block.raw);
            self.phase = Phase::Opaque;
            return Ok(());
        }
        if !self.rewritten {
            tracing::debug!("rewriting a malformed :authority; later header blocks are re-encoded");
        }
        self.rewritten = true;
        write_block(sink.pending, &self.block, &self.encoded);
        Ok(())
    }
}

/// Frames `fragment` as HEADERS + CONTINUATION frames of at most [`MAX_FRAME_SIZE`] payload bytes.
fn write_block(out: &mut Vec<u8>, block: &Block, fragment: &[u8]) {
    let prio_len = if block.priority.is_some() { 5 } else { 0 };
    let first = fragment.len().min(MAX_FRAME_SIZE - prio_len);
    let (head_part, mut rest) = fragment.split_at(first);
    let mut flags = if block.end_stream { FLAG_END_STREAM } else { 0 };
    if block.priority.is_some() {
        flags |= FLAG_PRIORITY;
    }
    if rest.is_empty() {
        flags |= FLAG_END_HEADERS;
    }
    write_frame_header(out, first + prio_len, FRAME_HEADERS, flags, block.stream_id);
    if let Some(prio) = &block.priority {
        out.extend_from_slice(prio);
    }
    out.extend_from_slice(head_part);
    while !rest.is_empty() {
        let n = rest.len().min(MAX_FRAME_SIZE);
        let (part, after) = rest.split_at(n);
        let flags = if after.is_empty() { FLAG_END_HEADERS } else { 0 };
        write_frame_header(out, n, FRAME_CONTINUATION, flags, block.stream_id);
        out.extend_from_slice(part);
        rest = after;
    }
}

fn write_frame_header(out: &mut Vec<u8>, len: usize, frame_type: u8, flags: u8, stream_id: u32) {
    // `len` is at most MAX_FRAME_SIZE, so it fits the 24-bit field.
    let len = len.to_be_bytes();
    let l = len.len();
    out.extend_from_slice(&[len[l - 3], len[l - 2], len[l - 1], frame_type, flags]);
    out.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
}

/// "Literal header field without indexing, new name" (RFC 7541 section 6.2.2), strings without Huffman.
fn encode_literal(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.push(0x00);
    for s in [name, value] {
        encode_length(out, s.len());
        out.extend_from_slice(s);
    }
}

/// An HPACK integer with a 7-bit prefix and the Huffman bit clear (RFC 7541 section 5.1).
fn encode_length(out: &mut Vec<u8>, mut n: usize) {
    if n < 0x7f {
        out.push(n as u8);
        return;
    }
    out.push(0x7f);
    n -= 0x7f;
    while n >= 0x80 {
        out.push((n % 0x80) as u8 | 0x80);
        n /= 0x80;
    }
    out.push(n as u8);
}

/// What to do with an `:authority` value.
#[derive(Debug, PartialEq, Eq)]
enum Repair<'a> {
    Valid,
    Replace(&'a str),
    Drop,
}

fn valid_authority(s: &str) -> bool {
    Authority::from_str(s).is_ok()
}

/// `h:p` stays; `http://h:p/...` and `#initially=[https://h:p;...]` become `h:p`; anything else is dropped.
fn repair_authority(value: &[u8]) -> Repair<'_> {
    let Ok(s) = std::str::from_utf8(value) else {
        return Repair::Drop;
    };
    if valid_authority(s) {
        return Repair::Valid;
    }
    let mut s = s.trim();
    if let Some(list) = s.strip_prefix("#initially=[") {
        let list = list.strip_suffix(']').unwrap_or(list);
        s = list.split(';').next().unwrap_or(list);
    }
    if let Some((_, after)) = s.split_once("://") {
        s = after;
    }
    let s = s.split(['/', '?', '#']).next().unwrap_or(s);
    if valid_authority(s) {
        Repair::Replace(s)
    } else {
        Repair::Drop
    }
}

/// A stream whose incoming bytes go through a [`Shim`]; writes pass untouched.
#[derive(Debug)]
pub struct AuthorityStream<S> {
    inner: S,
    shim: Shim,
    pending: Vec<u8>,
    sent: usize,
    failed: bool,
}

impl<S> AuthorityStream<S> {
    pub fn new(inner: S) -> Self {
        Self { inner, shim: Shim::new(), pending: Vec::new(), sent: 0, failed: false }
    }

    /// Copies what is pending into `buf`; true if anything was copied.
    fn drain_pending(&mut self, buf: &mut ReadBuf<'_>) -> bool {
        if self.sent == self.pending.len() {
            return false;
        }
        let n = buf.remaining().min(self.pending.len() - self.sent);
        buf.put_slice(&self.pending[self.sent..self.sent + n]);
        self.sent += n;
        if self.sent == self.pending.len() {
            self.pending.clear();
            self.sent = 0;
        }
        n > 0
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for AuthorityStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.failed {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "connection closed by the shim",
            )));
        }
        if this.drain_pending(buf) || buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        // Bounded: every turn either returns or consumed bytes that were all held (a partial block).
        loop {
            let start = buf.filled().len();
            match Pin::new(&mut this.inner).poll_read(cx, buf) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {}
            }
            let end = buf.filled().len();
            if end == start {
                return Poll::Ready(Ok(()));
            }
            match this.shim.process(&buf.filled()[start..end], &mut this.pending) {
                Ok(kept) => buf.set_filled(start + kept),
                Err(e) => {
                    tracing::debug!(error = %e, "closing a client connection");
                    this.failed = true;
                    buf.set_filled(start);
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e)));
                }
            }
            this.drain_pending(buf);
            if buf.filled().len() > start {
                return Poll::Ready(Ok(()));
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AuthorityStream<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
#[path = "authority_tests.rs"]
mod tests;
