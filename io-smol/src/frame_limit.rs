//! The inbound frame-size limit, enforced on the byte stream before a
//! frame is buffered (docs/protocol.md §2).
//!
//! The gateway caps frames at 64 KiB until hello-ok and at its
//! `policy.maxPayload` after it; a node must hold the gateway to the same
//! rule, or an unauthenticated peer can make it buffer a 64 MiB message.
//! tungstenite's own limits are fixed when the socket is made and cannot
//! follow the handshake, so [`Limited`] reads the WebSocket framing as the
//! bytes pass and fails the read as soon as a message's announced length
//! exceeds the current [`FrameLimit`]: the payload is never read.
//!
//! Until the limit is raised, reads stop at frame boundaries and the socket
//! task hands the driver one frame at a time, so the frame after hello-ok
//! is judged by the raised limit, never by the handshake's.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use smol::io::{AsyncRead, AsyncWrite};

/// The largest frame the gateway may send before hello-ok.
pub(crate) const PRE_HANDSHAKE: usize = 64 * 1024;

/// The current limit on an inbound message's size, shared between the
/// socket (which enforces it) and the driver (which raises it to
/// `policy.maxPayload` on admission).
#[derive(Clone, Debug)]
pub(crate) struct FrameLimit(Arc<Shared>);

#[derive(Debug)]
struct Shared {
    max: AtomicUsize,
    raised: AtomicBool,
}

impl FrameLimit {
    /// A limit of [`PRE_HANDSHAKE`].
    pub fn new() -> Self {
        FrameLimit(Arc::new(Shared {
            max: AtomicUsize::new(PRE_HANDSHAKE),
            raised: AtomicBool::new(false),
        }))
    }

    /// Raises the limit to `policy.maxPayload` on admission.
    pub fn raise(&self, max: usize) {
        self.0.max.store(max, Ordering::Relaxed);
        self.0.raised.store(true, Ordering::Release);
    }

    /// Whether the session was admitted and the limit raised.
    pub fn is_raised(&self) -> bool {
        self.0.raised.load(Ordering::Acquire)
    }

    fn get(&self) -> usize {
        self.0.max.load(Ordering::Relaxed)
    }
}

/// Where the parser is in the inbound byte stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// In the HTTP upgrade response: `line` bytes (CR aside) seen on the
    /// current line. An empty line ends it, with CRLF or bare LF line ends,
    /// as tungstenite's HTTP parser accepts both.
    Http { line: usize },
    /// Collecting a frame header (at most 14 bytes).
    Header,
    /// Passing `left` payload bytes of the current frame.
    Payload { left: u64 },
}

/// The framing parser: feeds on the bytes read, in order.
#[derive(Debug)]
struct Framing {
    state: State,
    header: [u8; 14],
    have: usize,
    /// Payload bytes of the current (possibly fragmented) data message.
    message: u64,
}

impl Framing {
    fn new() -> Self {
        Framing {
            state: State::Http { line: 0 },
            header: [0; 14],
            have: 0,
            message: 0,
        }
    }

    /// Consumes `bytes`; an error names the message that broke `limit`.
    fn feed(&mut self, mut bytes: &[u8], limit: usize) -> Result<(), String> {
        while !bytes.is_empty() {
            match self.state {
                State::Http { line } => {
                    let b = bytes[0];
                    bytes = &bytes[1..];
                    self.state = match b {
                        b'\n' if line == 0 => State::Header,
                        b'\n' => State::Http { line: 0 },
                        b'\r' => State::Http { line },
                        _ => State::Http { line: line + 1 },
                    };
                }
                State::Header => {
                    let take = (self.needed() - self.have).min(bytes.len());
                    self.header[self.have..self.have + take].copy_from_slice(&bytes[..take]);
                    self.have += take;
                    bytes = &bytes[take..];
                    if self.have == self.needed() {
                        self.frame_complete(limit)?;
                    }
                }
                State::Payload { left } => {
                    let take = left.min(bytes.len() as u64);
                    bytes = &bytes[take as usize..];
                    self.state = if take == left {
                        State::Header
                    } else {
                        State::Payload { left: left - take }
                    };
                }
            }
        }
        Ok(())
    }

    /// The most bytes a read may take without passing the end of the
    /// current frame's header or payload.
    fn to_boundary(&self) -> usize {
        match self.state {
            // The upgrade response is read whole: tungstenite refuses a
            // handshake read in many small pieces. Bytes past it are parsed
            // as frames all the same, and before the node's connect only
            // the challenge can follow.
            State::Http { .. } => usize::MAX,
            State::Header => self.needed() - self.have,
            State::Payload { left } => usize::try_from(left).unwrap_or(usize::MAX),
        }
    }

    /// Header bytes needed, as far as the header read so far tells.
    fn needed(&self) -> usize {
        if self.have < 2 {
            return 2;
        }
        let ext = match self.header[1] & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let mask = if self.header[1] & 0x80 != 0 { 4 } else { 0 };
        2 + ext + mask
    }

    fn frame_complete(&mut self, limit: usize) -> Result<(), String> {
        let fin = self.header[0] & 0x80 != 0;
        let opcode = self.header[0] & 0x0f;
        let len = match self.header[1] & 0x7f {
            126 => u64::from(u16::from_be_bytes([self.header[2], self.header[3]])),
            127 => u64::from_be_bytes(self.header[2..10].try_into().expect("8 bytes")),
            n => u64::from(n),
        };
        self.have = 0;
        // Control frames (close, ping, pong) are at most 125 bytes by the
        // protocol; tungstenite refuses longer ones itself.
        if opcode < 8 {
            self.message = self.message.saturating_add(len);
            if self.message > limit as u64 {
                return Err(format!(
                    "the gateway sent a message of at least {} bytes, over the {limit}-byte limit",
                    self.message
                ));
            }
            if fin {
                self.message = 0;
            }
        }
        self.state = if len == 0 {
            State::Header
        } else {
            State::Payload { left: len }
        };
        Ok(())
    }
}

/// A byte stream whose inbound WebSocket messages are held to a
/// [`FrameLimit`].
#[derive(Debug)]
pub(crate) struct Limited<S> {
    inner: S,
    framing: Framing,
    limit: FrameLimit,
}

impl<S> Limited<S> {
    /// Wraps `inner`, whose first inbound bytes are the HTTP upgrade
    /// response.
    pub fn new(inner: S, limit: FrameLimit) -> Self {
        Limited {
            inner,
            framing: Framing::new(),
            limit,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Limited<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let upto = if this.limit.is_raised() {
            buf.len()
        } else {
            buf.len().min(this.framing.to_boundary())
        };
        let buf = &mut buf[..upto];
        let n = match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(n)) => n,
            other => return other,
        };
        let limit = this.limit.get();
        match this.framing.feed(&buf[..n], limit) {
            Ok(()) => Poll::Ready(Ok(n)),
            Err(why) => Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, why))),
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Limited<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server frame header (unmasked) for a payload of `len` bytes.
    fn header(fin: bool, opcode: u8, len: u64) -> Vec<u8> {
        let mut h = vec![(u8::from(fin) << 7) | opcode];
        match len {
            0..=125 => h.push(len as u8),
            126..=0xffff => {
                h.push(126);
                h.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                h.push(127);
                h.extend_from_slice(&len.to_be_bytes());
            }
        }
        h
    }

    fn stream(frames: &[(bool, u8, usize)]) -> Vec<u8> {
        let mut out = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n".to_vec();
        for &(fin, op, len) in frames {
            out.extend(header(fin, op, len as u64));
            out.extend(std::iter::repeat_n(b'x', len));
        }
        out
    }

    /// Feeds `bytes` in chunks of `chunk`, as reads would deliver them.
    fn feed(bytes: &[u8], chunk: usize, limit: usize) -> Result<(), String> {
        let mut f = Framing::new();
        bytes.chunks(chunk).try_for_each(|c| f.feed(c, limit))
    }

    #[test]
    fn frames_within_the_limit_pass_in_any_chunking() {
        let bytes = stream(&[
            (true, 1, 100),
            (true, 9, 0),
            (true, 1, 70_000),
            (true, 2, 5),
        ]);
        for chunk in [1, 2, 3, 7, 64, 4096, bytes.len()] {
            assert_eq!(feed(&bytes, chunk, 80_000), Ok(()), "chunk {chunk}");
        }
    }

    #[test]
    fn an_oversized_message_fails_at_its_header() {
        let bytes = stream(&[(true, 1, 10), (true, 1, 70_000)]);
        let err = feed(&bytes, 3, PRE_HANDSHAKE).unwrap_err();
        assert_eq!(
            err,
            "the gateway sent a message of at least 70000 bytes, over the 65536-byte limit"
        );
        // Only the header of the big frame was needed to refuse it.
        let upto = bytes.len() - 70_000;
        assert!(feed(&bytes[..upto], 5, PRE_HANDSHAKE).is_err());
    }

    #[test]
    fn fragments_count_towards_one_message_and_control_frames_do_not() {
        let parts = stream(&[(false, 1, 40_000), (true, 9, 4), (true, 0, 40_000)]);
        assert!(feed(&parts, 1000, PRE_HANDSHAKE).is_err());
        let next = stream(&[(false, 1, 30_000), (true, 0, 30_000), (true, 1, 60_000)]);
        assert_eq!(feed(&next, 1000, PRE_HANDSHAKE), Ok(()));
    }

    #[test]
    fn a_64_bit_length_is_refused_without_reading_it() {
        let mut bytes = stream(&[]);
        bytes.extend(header(true, 2, 1 << 40));
        assert!(feed(&bytes, 2, 25 << 20).is_err());
    }

    #[test]
    fn until_raised_reads_stop_at_frame_boundaries() {
        use smol::io::AsyncReadExt as _;
        let bytes = stream(&[(true, 1, 10), (true, 1, 100_000)]);
        let limit = FrameLimit::new();
        let mut r = Limited::new(smol::io::Cursor::new(bytes.clone()), limit.clone());
        let head = bytes.len() - 100_000 - 10 - (2 + 10);
        smol::block_on(async {
            let mut buf = vec![0; 1 << 20];
            // The upgrade response alone (as tungstenite reads it), then no
            // read passes the end of the first frame.
            let mut got = r.read(&mut buf[..head]).await.unwrap();
            while got < head + 2 + 10 {
                got += r.read(&mut buf).await.unwrap();
            }
            assert_eq!(got, head + 2 + 10, "stopped at the first frame's end");
            // Raised in time, the next frame is judged by the new limit.
            limit.raise(1 << 20);
            let mut rest = 0;
            loop {
                match r.read(&mut buf).await.unwrap() {
                    0 => break,
                    n => rest += n,
                }
            }
            assert_eq!(rest, 10 + 100_000);
        });
    }

    #[test]
    fn http_headers_split_across_reads_are_found() {
        let bytes = stream(&[(true, 1, 3)]);
        assert_eq!(feed(&bytes, 1, 10), Ok(()));
        for end in [
            &b"\r\n\r\n"[..],
            b"\n\n",
            b"\r\n\n",
            b"\n\r\n",
            b"\r\r\n\r\n",
        ] {
            let mut odd = b"HTTP/1.1 101 OK\r\nX: y".to_vec();
            odd.extend_from_slice(end);
            odd.extend(header(true, 1, 11));
            assert!(
                feed(&odd, 2, 10).is_err(),
                "the frame after {end:?} is parsed"
            );
        }
    }
}
