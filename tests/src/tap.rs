//! A transparent loopback TCP relay between a node and a gateway.

use std::io::{Read as _, Write as _};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One WebSocket message seen on a tapped connection.
#[derive(Clone, Debug)]
pub struct TapFrame {
    /// The connection's number (0 for the first accepted).
    pub conn: usize,
    /// Sent by the client (the node), else by the gateway.
    pub from_client: bool,
    /// The WebSocket opcode (1 text, 2 binary, 8 close, 9 ping, 10 pong).
    pub opcode: u8,
    /// The payload (text frames: the message; close: code and reason).
    pub payload: Vec<u8>,
    /// When it was seen.
    pub at: Instant,
}

impl TapFrame {
    /// The payload as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }

    /// For a close frame, its code.
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode == 8 && self.payload.len() >= 2)
            .then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

struct Conn {
    id: usize,
    client: TcpStream,
    upstream: TcpStream,
}

#[derive(Default)]
struct Inner {
    accepted: AtomicUsize,
    refused: AtomicBool,
    hold: AtomicBool,
    stop: AtomicBool,
    conns: Mutex<Vec<Conn>>,
    frames: Mutex<Vec<TapFrame>>,
    errors: Mutex<Vec<String>>,
}

/// A TCP relay on `127.0.0.1:<port>` forwarding every connection to the
/// gateway's port, byte for byte (TLS passes through untouched, so pins
/// still see the gateway's certificate).
///
/// It counts connection attempts (TCP accepts, so even attempts that die in
/// the TLS handshake are seen), decodes the WebSocket frames of plain
/// `ws://` connections in both directions (see [`Tap::frames`]), and can
/// cut every live connection ([`Tap::sever`]), refuse new ones
/// ([`Tap::set_refusing`]) or hold what the node sends ([`Tap::set_hold`]).
pub struct Tap {
    inner: Arc<Inner>,
    port: u16,
}

impl Tap {
    /// Starts a relay to `127.0.0.1:upstream_port`; `decode` turns on
    /// WebSocket frame decoding (plain `ws://` only).
    pub fn start(upstream_port: u16, decode: bool) -> Tap {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind tap");
        let port = listener.local_addr().expect("tap addr").port();
        let upstream: SocketAddr = ([127, 0, 0, 1], upstream_port).into();
        let inner: Arc<Inner> = Arc::default();
        let acc = inner.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if acc.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = stream else { continue };
                let id = acc.accepted.fetch_add(1, Ordering::SeqCst);
                if acc.refused.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let _ = client.set_nodelay(true);
                let up = match TcpStream::connect_timeout(&upstream, Duration::from_secs(5)) {
                    Ok(up) => up,
                    Err(e) => {
                        acc.errors
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(format!("conn {id}: upstream connect: {e}"));
                        let _ = client.shutdown(Shutdown::Both);
                        continue;
                    }
                };
                let _ = up.set_nodelay(true);
                let clones = (
                    client.try_clone(),
                    up.try_clone(),
                    client.try_clone(),
                    up.try_clone(),
                );
                let (Ok(c2), Ok(u2), Ok(c3), Ok(u3)) = clones else {
                    continue;
                };
                acc.conns
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(Conn {
                        id,
                        client: c3,
                        upstream: u3,
                    });
                let a = acc.clone();
                std::thread::spawn(move || pump(a, id, true, client, u2, decode));
                let b = acc.clone();
                std::thread::spawn(move || pump(b, id, false, up, c2, decode));
            }
        });
        Tap { inner, port }
    }

    /// The relay's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `ws://127.0.0.1:<port>` (or `wss://` when `tls`).
    pub fn url(&self, tls: bool) -> String {
        let scheme = if tls { "wss" } else { "ws" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// How many TCP connections were accepted so far (attempts).
    pub fn connections(&self) -> usize {
        self.inner.accepted.load(Ordering::SeqCst)
    }

    /// Closes every live connection (both sides), as a network failure would.
    pub fn sever(&self) {
        let conns =
            std::mem::take(&mut *self.inner.conns.lock().unwrap_or_else(|e| e.into_inner()));
        for c in conns {
            let _ = c.client.shutdown(Shutdown::Both);
            let _ = c.upstream.shutdown(Shutdown::Both);
        }
    }

    /// While on, new connections are accepted (and counted) and closed at once.
    pub fn set_refusing(&self, on: bool) {
        self.inner.refused.store(on, Ordering::SeqCst);
    }

    /// While on, bytes from the node are read but not forwarded (they are
    /// dropped for good if the connection is severed meanwhile).
    pub fn set_hold(&self, on: bool) {
        self.inner.hold.store(on, Ordering::SeqCst);
    }

    /// Every WebSocket message decoded so far (in arrival order).
    pub fn frames(&self) -> Vec<TapFrame> {
        self.inner
            .frames
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The text messages the node sent, with their connection numbers.
    pub fn client_texts(&self) -> Vec<(usize, String)> {
        self.frames()
            .into_iter()
            .filter(|f| f.from_client && f.opcode == 1)
            .map(|f| (f.conn, f.text()))
            .collect()
    }

    /// Decoding problems (e.g. compressed frames) and relay errors.
    pub fn errors(&self) -> Vec<String> {
        self.inner
            .errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The ids of connections still open.
    pub fn live(&self) -> Vec<usize> {
        self.inner
            .conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|c| c.id)
            .collect()
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        self.sever();
    }
}

fn pump(
    inner: Arc<Inner>,
    id: usize,
    from_client: bool,
    mut src: TcpStream,
    mut dst: TcpStream,
    decode: bool,
) {
    let mut parser = Parser::new(id, from_client);
    let mut held: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if decode {
            parser.feed(&buf[..n], &inner);
        }
        if from_client && inner.hold.load(Ordering::SeqCst) {
            held.extend_from_slice(&buf[..n]);
            continue;
        }
        if !held.is_empty() {
            if dst.write_all(&held).is_err() {
                break;
            }
            held.clear();
        }
        if dst.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = dst.shutdown(Shutdown::Write);
    let _ = src.shutdown(Shutdown::Read);
    if from_client {
        inner
            .conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|c| c.id != id);
    }
}

/// Decodes one direction of a WebSocket connection: the HTTP upgrade head,
/// then frames (masked from the client), reassembling fragmented messages.
struct Parser {
    conn: usize,
    from_client: bool,
    in_head: bool,
    buf: Vec<u8>,
    message: Vec<u8>,
    message_opcode: u8,
    broken: bool,
}

impl Parser {
    fn new(conn: usize, from_client: bool) -> Self {
        Parser {
            conn,
            from_client,
            in_head: true,
            buf: Vec::new(),
            message: Vec::new(),
            message_opcode: 0,
            broken: false,
        }
    }

    fn feed(&mut self, data: &[u8], inner: &Inner) {
        if self.broken {
            return;
        }
        self.buf.extend_from_slice(data);
        if self.in_head {
            let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                if self.buf.len() > 64 * 1024 {
                    self.broken = true;
                }
                return;
            };
            self.buf.drain(..end + 4);
            self.in_head = false;
        }
        while let Some((frame_len, fin, rsv, opcode, payload)) = self.next_frame() {
            self.buf.drain(..frame_len);
            if rsv != 0 {
                inner
                    .errors
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(format!(
                        "conn {}: frame with RSV bits {rsv:#x} (compressed?)",
                        self.conn
                    ));
            }
            let push = |opcode: u8, payload: Vec<u8>| {
                inner
                    .frames
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(TapFrame {
                        conn: self.conn,
                        from_client: self.from_client,
                        opcode,
                        payload,
                        at: Instant::now(),
                    });
            };
            match opcode {
                0 => {
                    self.message.extend_from_slice(&payload);
                    if fin {
                        push(self.message_opcode, std::mem::take(&mut self.message));
                    }
                }
                1 | 2 if !fin => {
                    self.message_opcode = opcode;
                    self.message = payload;
                }
                _ => push(opcode, payload),
            }
        }
    }

    /// `(total length, fin, rsv bits, opcode, unmasked payload)` of the
    /// frame at the start of the buffer, once it is complete.
    fn next_frame(&self) -> Option<(usize, bool, u8, u8, Vec<u8>)> {
        let b = &self.buf;
        if b.len() < 2 {
            return None;
        }
        let fin = b[0] & 0x80 != 0;
        let rsv = b[0] & 0x70;
        let opcode = b[0] & 0x0f;
        let masked = b[1] & 0x80 != 0;
        let mut len = u64::from(b[1] & 0x7f);
        let mut pos = 2;
        if len == 126 {
            if b.len() < 4 {
                return None;
            }
            len = u64::from(u16::from_be_bytes([b[2], b[3]]));
            pos = 4;
        } else if len == 127 {
            if b.len() < 10 {
                return None;
            }
            len = u64::from_be_bytes(b[2..10].try_into().ok()?);
            pos = 10;
        }
        let mask = if masked {
            if b.len() < pos + 4 {
                return None;
            }
            let m = [b[pos], b[pos + 1], b[pos + 2], b[pos + 3]];
            pos += 4;
            Some(m)
        } else {
            None
        };
        let len = usize::try_from(len).ok()?;
        if b.len() < pos + len {
            return None;
        }
        let mut payload = b[pos..pos + len].to_vec();
        if let Some(m) = mask {
            for (i, byte) in payload.iter_mut().enumerate() {
                *byte ^= m[i % 4];
            }
        }
        Some((pos + len, fin, rsv, opcode, payload))
    }
}
