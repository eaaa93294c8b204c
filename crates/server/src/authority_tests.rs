#![allow(clippy::unwrap_used)]

use std::pin::Pin;
use std::task::{Context, Poll};

use loona_hpack::{Decoder, Encoder};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

use super::*;

type Headers = Vec<(Vec<u8>, Vec<u8>)>;
type OpenBlock = (u32, bool, Option<[u8; 5]>, Vec<u8>);

fn frame(frame_type: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    write_frame_header(&mut out, payload.len(), frame_type, flags, stream);
    out.extend_from_slice(payload);
    out
}

fn headers(list: &[(&str, &str)]) -> Vec<(Vec<u8>, Vec<u8>)> {
    list.iter().map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec())).collect()
}

fn encode(encoder: &mut Encoder<'_>, list: &Headers) -> Vec<u8> {
    encoder.encode(list.iter().map(|(n, v)| (n.as_slice(), v.as_slice())))
}

/// Runs `input` through a shim `chunk` bytes at a time, as reads would deliver it.
fn run(input: &[u8], chunk: usize) -> Result<Vec<u8>, ShimError> {
    let mut shim = Shim::new();
    let mut out = Vec::new();
    let mut pending = Vec::new();
    for part in input.chunks(chunk) {
        let kept = shim.process(part, &mut pending)?;
        out.extend_from_slice(&part[..kept]);
        out.append(&mut pending);
    }
    Ok(out)
}

/// A frame as seen after the shim: type, flags, stream and, for header blocks, the decoded headers.
#[derive(Debug, PartialEq)]
enum Seen {
    Frame { frame_type: u8, flags: u8, stream: u32, payload: Vec<u8> },
    Block { stream: u32, end_stream: bool, priority: Option<[u8; 5]>, headers: Headers },
}

/// Parses the server's view of `bytes` (after the preface) with one fresh decoder for the connection.
fn parse(bytes: &[u8]) -> Vec<Seen> {
    assert_eq!(&bytes[..24], PREFACE);
    let mut at = 24;
    let mut decoder = Decoder::new();
    let mut seen = Vec::new();
    // stream, END_STREAM, priority, fragment
    let mut block: Option<OpenBlock> = None;
    while at < bytes.len() {
        let h = &bytes[at..at + 9];
        let len = usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
        let (frame_type, flags) = (h[3], h[4]);
        let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]);
        let mut payload = &bytes[at + 9..at + 9 + len];
        assert!(len <= MAX_FRAME_SIZE);
        at += 9 + len;
        match frame_type {
            FRAME_HEADERS => {
                assert!(block.is_none());
                if flags & FLAG_PADDED != 0 {
                    let pad = usize::from(payload[0]);
                    payload = &payload[1..payload.len() - pad];
                }
                let mut priority = None;
                if flags & FLAG_PRIORITY != 0 {
                    priority = Some(payload[..5].try_into().unwrap());
                    payload = &payload[5..];
                }
                block = Some((stream, flags & FLAG_END_STREAM != 0, priority, payload.to_vec()));
            }
            FRAME_CONTINUATION => block.as_mut().unwrap().3.extend_from_slice(payload),
            _ => {
                assert!(block.is_none());
                seen.push(Seen::Frame { frame_type, flags, stream, payload: payload.to_vec() });
                continue;
            }
        }
        if flags & FLAG_END_HEADERS != 0 {
            let (stream, end_stream, priority, fragment) = block.take().unwrap();
            let headers = decoder.decode(&fragment).unwrap();
            seen.push(Seen::Block { stream, end_stream, priority, headers });
        }
    }
    assert!(block.is_none());
    seen
}

fn request(authority: &str, path: &str) -> Headers {
    headers(&[
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", authority),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ])
}

/// A connection: preface, SETTINGS, then per request a HEADERS (indexing encoder) and a DATA frame.
fn connection(requests: &[Headers]) -> Vec<u8> {
    let mut encoder = Encoder::new();
    let mut bytes = PREFACE.to_vec();
    bytes.extend(frame(0x4, 0, 0, &[0, 4, 0, 0, 0xff, 0xff]));
    for (i, req) in requests.iter().enumerate() {
        let stream = 2 * i as u32 + 1;
        bytes.extend(frame(FRAME_HEADERS, FLAG_END_HEADERS, stream, &encode(&mut encoder, req)));
        bytes.extend(frame(0x0, FLAG_END_STREAM, stream, b"\0\0\0\0\x02ab"));
    }
    bytes
}

fn blocks(seen: &[Seen]) -> Vec<Headers> {
    seen.iter()
        .filter_map(|s| match s {
            Seen::Block { headers, .. } => Some(headers.clone()),
            Seen::Frame { .. } => None,
        })
        .collect()
}

#[test]
fn valid_authority_passes_byte_for_byte_at_any_read_boundary() {
    let input = connection(&[request("127.0.0.1:2379", "/a"), request("127.0.0.1:2379", "/b")]);
    for chunk in [1, 2, 5, 9, 10, 17, 24, 25, 4096] {
        assert_eq!(run(&input, chunk).unwrap(), input, "chunk {chunk}");
    }
}

#[test]
fn a_valid_first_authority_lets_the_rest_of_the_connection_pass() {
    let input = connection(&[request("127.0.0.1:2379", "/a"), request("http://127.0.0.1:2379", "/b")]);
    for chunk in [1, 4096] {
        assert_eq!(run(&input, chunk).unwrap(), input, "chunk {chunk}");
    }
}

#[test]
fn http1_passes_unchanged() {
    let input = b"POST /v3/kv/range HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n\r\n{}".to_vec();
    for chunk in [1, 3, 4096] {
        assert_eq!(run(&input, chunk).unwrap(), input);
    }
    // Almost the preface, then not: still untouched.
    let mut near = PREFACE[..20].to_vec();
    near.extend_from_slice(b"XXXX\x00\x00\x01\x01");
    assert_eq!(run(&near, 1).unwrap(), near);
}

#[test]
fn bad_authorities_are_repaired_and_later_indexed_blocks_still_decode() {
    let sent = vec![
        request("http://127.0.0.1:2379", "/etcdserverpb.Maintenance/Status"),
        request("http://127.0.0.1:2379", "/etcdserverpb.Maintenance/Status"),
        request("127.0.0.1:2379", "/etcdserverpb.KV/Put"),
        request("#initially=[https://10.0.0.1:2379;https://10.0.0.2:2379]", "/etcdserverpb.KV/Range"),
        request("not a host", "/etcdserverpb.KV/Range"),
        request("127.0.0.1:2379", "/etcdserverpb.KV/Put"),
    ];
    let input = connection(&sent);
    let mut want = sent.clone();
    want[0][3].1 = b"127.0.0.1:2379".to_vec();
    want[1][3].1 = b"127.0.0.1:2379".to_vec();
    want[3][3].1 = b"10.0.0.1:2379".to_vec();
    want[4].remove(3);
    for chunk in [1, 7, 4096] {
        let out = run(&input, chunk).unwrap();
        let seen = parse(&out);
        assert_eq!(blocks(&seen), want, "chunk {chunk}");
        let data = seen.iter().filter(|s| matches!(s, Seen::Frame { frame_type: 0, .. })).count();
        assert_eq!(data, sent.len());
    }
}

#[test]
fn padded_priority_and_continuation_frames() {
    let mut encoder = Encoder::new();
    let req = request("https://127.0.0.1:2379/x", "/p");
    let fragment = encode(&mut encoder, &req);
    let (a, b) = fragment.split_at(10);
    let (b, c) = b.split_at(5);
    let mut payload = vec![3];
    payload.extend_from_slice(&[0x80, 0, 0, 1, 15]);
    payload.extend_from_slice(a);
    payload.extend_from_slice(&[0, 0, 0]);
    let mut input = PREFACE.to_vec();
    input.extend(frame(FRAME_HEADERS, FLAG_PADDED | FLAG_PRIORITY | FLAG_END_STREAM, 5, &payload));
    input.extend(frame(FRAME_CONTINUATION, 0, 5, b));
    input.extend(frame(FRAME_CONTINUATION, FLAG_END_HEADERS, 5, c));
    input.extend(frame(0x6, 0, 0, &[1; 8]));
    let mut want = req.clone();
    want[3].1 = b"127.0.0.1:2379".to_vec();
    for chunk in [1, 3, 4096] {
        let seen = parse(&run(&input, chunk).unwrap());
        assert_eq!(
            seen,
            vec![
                Seen::Block {
                    stream: 5,
                    end_stream: true,
                    priority: Some([0x80, 0, 0, 1, 15]),
                    headers: want.clone()
                },
                Seen::Frame { frame_type: 0x6, flags: 0, stream: 0, payload: vec![1; 8] },
            ]
        );
    }
    // Valid authority: padded/priority/continuation frames pass byte for byte.
    let mut encoder = Encoder::new();
    let fragment = encode(&mut encoder, &request("h:1", "/p"));
    let (a, b) = fragment.split_at(4);
    let mut input = PREFACE.to_vec();
    input.extend(frame(FRAME_HEADERS, FLAG_PADDED, 1, &[[2].as_slice(), a, &[0, 0]].concat()));
    input.extend(frame(FRAME_CONTINUATION, FLAG_END_HEADERS, 1, b));
    assert_eq!(run(&input, 1).unwrap(), input);
}

#[test]
fn large_rewritten_blocks_are_split_into_frames() {
    let mut req = request("http://h:1", "/p");
    req.push((b"x-big".to_vec(), vec![b'v'; 40_000]));
    let input = connection(std::slice::from_ref(&req));
    let out = run(&input, 4096).unwrap();
    let mut want = req.clone();
    want[3].1 = b"h:1".to_vec();
    assert_eq!(blocks(&parse(&out)), vec![want]);
}

#[test]
fn limits_and_errors_close_the_connection() {
    // An HPACK index that does not exist.
    let mut input = PREFACE.to_vec();
    input.extend(frame(FRAME_HEADERS, FLAG_END_HEADERS, 1, &[0xff, 0x7f]));
    assert!(matches!(run(&input, 1), Err(ShimError::Hpack(_))));
    // A block that never ends grows past the limit.
    let mut input = PREFACE.to_vec();
    input.extend(frame(FRAME_HEADERS, 0, 1, &[0x82]));
    for _ in 0..70 {
        input.extend(frame(FRAME_CONTINUATION, 0, 1, &[0; MAX_FRAME_SIZE]));
    }
    assert!(matches!(run(&input, 100_000), Err(ShimError::BlockTooLarge)));
    // A DATA frame inside a header block; padding longer than the payload.
    let mut input = PREFACE.to_vec();
    input.extend(frame(FRAME_HEADERS, 0, 1, &[0x82]));
    input.extend(frame(0x0, 0, 1, b"x"));
    assert!(matches!(run(&input, 9), Err(ShimError::Interleaved(0))));
    let mut input = PREFACE.to_vec();
    input.extend(frame(FRAME_HEADERS, FLAG_PADDED | FLAG_END_HEADERS, 1, &[5, 0x82]));
    assert!(matches!(run(&input, 9), Err(ShimError::Malformed(_))));
}

#[test]
fn repair_rules() {
    assert_eq!(repair_authority(b"127.0.0.1:2379"), Repair::Valid);
    assert_eq!(repair_authority(b"localhost"), Repair::Valid);
    assert_eq!(repair_authority(b"http://127.0.0.1:2379"), Repair::Replace("127.0.0.1:2379"));
    assert_eq!(repair_authority(b"https://[::1]:2379/a/b"), Repair::Replace("[::1]:2379"));
    assert_eq!(repair_authority(b"#initially=[https://h:1]"), Repair::Replace("h:1"));
    assert_eq!(repair_authority(b"#initially=[http://a:1;http://b:2]"), Repair::Replace("a:1"));
    assert_eq!(repair_authority(b""), Repair::Drop);
    assert_eq!(repair_authority(b"a b"), Repair::Drop);
    assert_eq!(repair_authority(&[0xff]), Repair::Drop);
}

#[test]
fn lengths_use_hpack_integers() {
    for n in [0, 1, 126, 127, 128, 255, 16_383, 16_384, 1 << 20] {
        let mut out = Vec::new();
        encode_literal(&mut out, b"n", &vec![b'v'; n]);
        let got = Decoder::new().decode(&out).unwrap();
        assert_eq!(got, vec![(b"n".to_vec(), vec![b'v'; n])]);
    }
}

/// Yields its bytes `chunk` at a time, as a socket might.
struct Trickle {
    bytes: Vec<u8>,
    at: usize,
    chunk: usize,
}

impl AsyncRead for Trickle {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = self.chunk.min(buf.remaining()).min(self.bytes.len() - self.at);
        let at = self.at;
        buf.put_slice(&self.bytes[at..at + n]);
        self.at += n;
        Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn stream_delivers_the_rewritten_bytes_through_small_reads() {
    let sent = vec![request("http://127.0.0.1:2379", "/a"), request("127.0.0.1:2379", "/b")];
    let input = connection(&sent);
    let want = run(&input, 4096).unwrap();
    for (chunk, read_size) in [(1, 1), (3, 2), (4096, 7), (4096, 65_536)] {
        let mut stream = AuthorityStream::new(Trickle { bytes: input.clone(), at: 0, chunk });
        let mut out = Vec::new();
        let mut buf = vec![0; read_size];
        for _ in 0..input.len() * 4 {
            let n = stream.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        assert_eq!(out, want, "chunk {chunk} read {read_size}");
    }
}
