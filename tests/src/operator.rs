//! One persistent operator connection to a gateway, for the tests' bulk
//! calls: the real gateway answers each request as it answers the operator
//! CLI's, without a Node.js process started for every call (about 2 to 4 s
//! each on the CI machine). The CLI stays where the CLI itself is what a
//! test checks.
//!
//! The operator proves a device identity of its own, signed over the
//! gateway's challenge as the CLI signs it, with the CLI's default scopes;
//! the gateway pairs it silently, as it pairs the CLI, over loopback.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use clawnode::policy::{DeviceIdentity, GatewayUrl, TlsPolicy};
use clawnode::{StateDir, TlsAttempt};
use ed25519_dalek::SigningKey;
use serde_json::{Value, json};
use tungstenite::{Message, WebSocket};

/// The CLI's default operator scopes.
const SCOPES: &[&str] = &[
    "operator.admin",
    "operator.read",
    "operator.write",
    "operator.approvals",
    "operator.questions",
    "operator.pairing",
    "operator.talk.secrets",
];

/// How long a read waits before the caller's deadline is checked again.
const READ_SLICE: Duration = Duration::from_millis(200);

/// A plain or TLS stream to the gateway.
enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// An operator session: requests answered one at a time, in order.
pub struct Operator {
    ws: WebSocket<Stream>,
    next_id: u64,
}

/// A gateway's error answer, or a transport failure.
#[derive(Debug, Clone)]
pub struct CallError {
    /// The error object the gateway answered with (`{code, message, ...}`),
    /// or `{"message": ...}` for a transport failure.
    pub error: Value,
    /// Whether the connection failed (rather than the gateway answering
    /// with an error).
    pub transport: bool,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.error)
    }
}

fn failure(message: impl std::fmt::Display) -> CallError {
    CallError {
        error: json!({ "message": message.to_string() }),
        transport: true,
    }
}

impl Operator {
    /// Connects to `url` (pinned to `pin` for `wss://`) with the shared
    /// `token`, and completes the operator handshake.
    pub fn connect(url: &str, pin: Option<&str>, token: &str) -> Result<Operator, CallError> {
        let gateway = GatewayUrl::parse(url).map_err(failure)?;
        let tcp = TcpStream::connect((gateway.host(), gateway.port())).map_err(failure)?;
        tcp.set_nodelay(true).map_err(failure)?;
        let stream = match pin {
            Some(pin) if gateway.is_secure() => {
                let pins = TlsPolicy::pinned([pin]).map_err(failure)?;
                // Pinned: the store of trust-on-first-use pins is not read.
                let state = StateDir::new(std::env::temp_dir().join("clawnode-operator-unused"));
                let tls = TlsAttempt::prepare(&gateway, &pins, &state)
                    .map_err(|e| failure(format!("{e:?}")))?
                    .ok_or_else(|| failure("a wss:// URL has a TLS side"))?;
                let conn = rustls::ClientConnection::new(tls.config(), tls.server_name())
                    .map_err(failure)?;
                Stream::Tls(Box::new(rustls::StreamOwned::new(conn, tcp)))
            }
            _ => Stream::Plain(tcp),
        };
        let (ws, _) = tungstenite::client(url, stream).map_err(failure)?;
        let mut operator = Operator { ws, next_id: 0 };
        operator.set_read_timeout(Some(READ_SLICE))?;
        operator.handshake(token)?;
        Ok(operator)
    }

    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> Result<(), CallError> {
        match self.ws.get_mut() {
            Stream::Plain(s) => s.set_read_timeout(timeout),
            Stream::Tls(s) => s.sock.set_read_timeout(timeout),
        }
        .map_err(failure)
    }

    /// Answers the challenge with a signed operator `connect`.
    fn handshake(&mut self, token: &str) -> Result<(), CallError> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let challenge = loop {
            let frame = self.read(deadline)?;
            if frame["event"] == "connect.challenge" {
                break frame["payload"].clone();
            }
        };
        let nonce = challenge["nonce"].as_str().unwrap_or_default().to_owned();
        let ts = challenge["ts"].as_i64().unwrap_or_default();
        let mut seed = [0u8; 32];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut seed))
            .map_err(failure)?;
        let identity = DeviceIdentity::new(SigningKey::from_bytes(&seed));
        // The v3 device-auth string (docs/protocol.md §3): device, client
        // id and mode, role, scopes, signed-at, token, nonce, platform,
        // device family.
        let signature = identity.sign(&format!(
            "v3|{}|cli|cli|operator|{}|{ts}|{token}|{nonce}|linux|",
            identity.device_id(),
            SCOPES.join(",")
        ));
        let params = json!({
            "minProtocol": 4,
            "maxProtocol": 4,
            "client": {"id": "cli", "version": "clawnode-tests", "platform": "linux", "mode": "cli"},
            "role": "operator",
            "scopes": SCOPES,
            "caps": [],
            "auth": {"token": token},
            "device": {
                "id": identity.device_id(),
                "publicKey": identity.public_key(),
                "signature": signature,
                "signedAt": ts,
                "nonce": nonce,
            },
        });
        self.request("connect", params, deadline).map(drop)
    }

    /// Reads the next text frame as JSON, by `deadline`.
    fn read(&mut self, deadline: Instant) -> Result<Value, CallError> {
        loop {
            if Instant::now() >= deadline {
                return Err(failure("timed out waiting for the gateway"));
            }
            match self.ws.read() {
                Ok(Message::Text(t)) => {
                    return serde_json::from_str(t.as_str()).map_err(failure);
                }
                Ok(Message::Close(f)) => return Err(failure(format!("closed: {f:?}"))),
                Ok(_) => {}
                Err(tungstenite::Error::Io(e)) if crate::sys::read_timed_out(&e) => {}
                Err(e) => return Err(failure(e)),
            }
        }
    }

    /// Sends a request and waits for its answer (events in between are
    /// skipped): the payload, or the gateway's error.
    fn request(
        &mut self,
        method: &str,
        params: Value,
        deadline: Instant,
    ) -> Result<Value, CallError> {
        self.next_id += 1;
        let id = format!("op-{}", self.next_id);
        let frame = json!({"type": "req", "id": id, "method": method, "params": params});
        self.ws
            .send(Message::text(frame.to_string()))
            .map_err(failure)?;
        loop {
            let frame = self.read(deadline)?;
            if frame["type"] != "res" || frame["id"] != id.as_str() {
                continue;
            }
            return if frame["ok"] == true {
                Ok(frame["payload"].clone())
            } else {
                Err(CallError {
                    error: frame["error"].clone(),
                    transport: false,
                })
            };
        }
    }

    /// Calls `method` with `params`, waiting at most `timeout`.
    pub fn call(
        &mut self,
        method: &str,
        params: &Value,
        timeout: Duration,
    ) -> Result<Value, CallError> {
        self.request(method, params.clone(), Instant::now() + timeout)
    }
}
