//! An OpenClaw node on tokio: a complete driver of `clawnode-core` that
//! takes its certificate pinning, state directory and event lines from the
//! runtime-neutral layer of `clawnode` (`default-features = false`:
//! no smol, no clap, no toml in its tree).
//!
//! ```text
//! OPENCLAW_GATEWAY_TOKEN=... cargo run -p clawnode --example tokio_node -- \
//!     --url wss://gateway:18789 --tls-fingerprint sha256:... \
//!     --state-dir ./state --display-name my-node
//! ```
//!
//! It serves `system.which` (a plain search of `PATH`; the node host's
//! own is `clawnode-host`'s), prints one `--events json` line per event and
//! stops on Ctrl-C, closing with 1000. Every `Effect` is performed; sockets
//! and commands report back to the loop as inputs.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clawnode::{Clock, Event, PinStore, StateDir, TlsAttempt, tcp_error, upgrade_refused};
use clawnode_core::{
    AttemptId, ClientOptions, Credentials, DeviceIdentity, Effect, GatewayUrl, Input,
    InvokeOutcome, NODE_ROLE, NodeOptions, NodeState, Secret, SessionConfig, SocketError,
    TlsPolicy,
};
use futures_util::{SinkExt as _, StreamExt as _};
use rand_core::{OsRng, RngCore as _};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};

/// How long a closing socket waits for the gateway's close reply.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// What the loop asks of a socket task.
enum ToSocket {
    Text(String),
    Ping,
    Close(u16, String),
}

/// `--url`, `--tls-fingerprint` (repeatable), `--state-dir`, `--display-name`.
fn flags() -> Result<HashMap<String, Vec<String>>, String> {
    let (mut flags, mut it) = (HashMap::<_, Vec<_>>::new(), std::env::args().skip(1));
    while let Some(flag) = it.next() {
        if ![
            "--url",
            "--tls-fingerprint",
            "--state-dir",
            "--display-name",
        ]
        .contains(&&*flag)
        {
            return Err(format!("unknown argument {flag:?}"));
        }
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        flags.entry(flag).or_default().push(value);
    }
    Ok(flags)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let flags = flags()?;
    let one = |f: &str| flags.get(f).and_then(|v| v.last()).cloned();
    let (url, pins) = (
        one("--url").ok_or("--url is required")?,
        &flags.get("--tls-fingerprint"),
    );
    let store = StateDir::new(one("--state-dir").ok_or("--state-dir is required")?);
    let key = store.load_or_create_identity()?;
    let device_id = DeviceIdentity::new(key.clone()).device_id().to_owned();
    let tls = match pins {
        Some(pins) => TlsPolicy::pinned(pins.iter())?,
        None => TlsPolicy::SystemTrust,
    };
    let token = std::env::var("OPENCLAW_GATEWAY_TOKEN")
        .ok()
        .map(Secret::new);
    let config = SessionConfig::parse(&url, tls)?
        .with_credentials(Credentials {
            token,
            ..Credentials::default()
        })
        .with_client(ClientOptions {
            display_name: one("--display-name"),
            commands: [SYSTEM_WHICH.to_owned()].into(),
            ..ClientOptions::default()
        });
    let stored = store.load_token(config.url().as_str(), &device_id, NODE_ROLE)?;

    let mut node = NodeState::new(key, NodeOptions::with_seed(OsRng.next_u64()));
    let clock = Clock::new();
    node.handle_input(clock.now(), Input::Config(config));
    node.handle_input(clock.now(), Input::StoredDeviceToken(stored));

    // Sockets and commands report back as the inputs they are.
    let (inputs, mut inputs_rx) = unbounded_channel();
    let mut sockets: HashMap<AttemptId, Socket> = HashMap::new();
    let mut closing = Vec::new();
    let mut invokes = HashMap::new();
    // Listening from the start: a Ctrl-C between two waits is not lost.
    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
    let mut stopping = false;
    loop {
        while let Some(effect) = node.poll_effect() {
            match effect {
                Effect::OpenSocket { attempt, url, tls } => {
                    let (tx, rx) = unbounded_channel();
                    let task =
                        tokio::spawn(socket(attempt, url, tls, store.clone(), inputs.clone(), rx));
                    sockets.insert(
                        attempt,
                        Socket {
                            tx,
                            task,
                            open: false,
                        },
                    );
                }
                Effect::SendFrame { attempt, text } => {
                    send(&sockets, attempt, ToSocket::Text(text))
                }
                Effect::SendPing { attempt } => send(&sockets, attempt, ToSocket::Ping),
                Effect::CloseSocket {
                    attempt,
                    code,
                    reason,
                } => {
                    if let Some(s) = sockets.remove(&attempt) {
                        if s.open {
                            // The task sends the close and reads on for the reply.
                            let _ = s.tx.send(ToSocket::Close(code, reason));
                            closing.push(s.task);
                        } else {
                            s.task.abort();
                        }
                    }
                }
                Effect::Invoke(req) => {
                    let (id, inputs) = (req.id.clone(), inputs.clone());
                    let task = tokio::task::spawn_blocking(move || {
                        let outcome = which(req.params_json.as_deref());
                        let _ = inputs.send(Input::InvokeResult {
                            id: req.id,
                            outcome,
                        });
                    });
                    invokes.insert(id, task);
                }
                Effect::CancelInvoke { id, .. } => {
                    if let Some(task) = invokes.remove(&id) {
                        task.abort();
                    }
                }
                Effect::StoreDeviceToken { url, role, token } => {
                    if let Err(e) = store.store_token(url.as_str(), &device_id, &role, &token) {
                        eprintln!("tokio_node: could not store the device token: {e}");
                    }
                }
                Effect::ForgetDeviceToken { url, role } => {
                    if let Err(e) = store.forget_token(url.as_str(), &device_id, &role) {
                        eprintln!("tokio_node: could not forget the device token: {e}");
                    }
                }
                // Its only command (system.which) reads no streamed input.
                Effect::InvokeInput { .. } => {}
                // This node sends no requests of its own.
                Effect::Response { .. } => {}
                Effect::Notify(n) => {
                    if let Some(event) = Event::from_notification(&n) {
                        println!("{}", event.to_json_line(wall_ms()));
                    }
                }
            }
        }
        if stopping && sockets.is_empty() {
            for task in closing {
                let _ = task.await;
            }
            return Ok(());
        }
        closing.retain(|t| !t.is_finished());
        let deadline = node.poll_timeout().map(|t| clock.instant_of(t));
        let sleep = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            Some(input) = inputs_rx.recv() => {
                match &input {
                    Input::SocketOpened { attempt } => {
                        if let Some(s) = sockets.get_mut(attempt) {
                            s.open = true;
                        }
                    }
                    Input::SocketClosed { attempt, .. } | Input::SocketFailed { attempt, .. } => {
                        sockets.remove(attempt);
                    }
                    Input::InvokeResult { id, .. } => {
                        invokes.remove(id);
                    }
                    _ => {}
                }
                node.handle_input(clock.now(), input);
            }
            () = sleep => node.handle_timeout(clock.now()),
            _ = &mut ctrl_c, if !stopping => {
                stopping = true;
                node.handle_input(clock.now(), Input::Stop);
            }
        }
    }
}

/// A socket task, and whether it reported its socket open.
struct Socket {
    tx: UnboundedSender<ToSocket>,
    task: tokio::task::JoinHandle<()>,
    open: bool,
}

fn send(sockets: &HashMap<AttemptId, Socket>, attempt: AttemptId, msg: ToSocket) {
    // A socket already gone drops the write: its end reaches the core anyway.
    if let Some(s) = sockets.get(&attempt) {
        let _ = s.tx.send(msg);
    }
}

fn wall_ms() -> u64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH);
    u64::try_from(since.unwrap_or_default().as_millis()).unwrap_or(u64::MAX)
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// TCP, TLS through the neutral layer's `TlsAttempt`, then the WebSocket.
async fn open(
    url: &GatewayUrl,
    policy: &TlsPolicy,
    store: &StateDir,
) -> Result<tokio_tungstenite::WebSocketStream<Box<dyn Io>>, SocketError> {
    let (u, p, s) = (url.clone(), policy.clone(), store.clone());
    let tls = tokio::task::spawn_blocking(move || TlsAttempt::prepare(&u, &p, &s as &dyn PinStore))
        .await
        .map_err(|e| SocketError::Io(e.to_string()))??;
    let tcp = TcpStream::connect((url.host(), url.port()))
        .await
        .map_err(|e| tcp_error(url, &e))?;
    let io: Box<dyn Io> = match tls {
        None => Box::new(tcp),
        Some(tls) => {
            let stream = tokio_rustls::TlsConnector::from(tls.config())
                .connect(tls.server_name(), tcp)
                .await
                .map_err(|e| tls.failed(&e))?;
            if tls.learns_pin() {
                let store = store.clone();
                tokio::task::spawn_blocking(move || tls.established(&store))
                    .await
                    .map_err(|e| SocketError::Io(e.to_string()))??;
            }
            Box::new(stream)
        }
    };
    // The gateway's default `maxPayload` is 25 MiB; refuse anything larger.
    let limits = WebSocketConfig::default().max_message_size(Some(25 << 20));
    let (ws, _) = tokio_tungstenite::client_async_with_config(url.as_str(), io, Some(limits))
        .await
        .map_err(|e| match e {
            tokio_tungstenite::tungstenite::Error::Http(r) => upgrade_refused(
                url,
                r.status().as_u16(),
                r.headers().get("retry-after").and_then(|v| v.to_str().ok()),
            ),
            e => SocketError::Io(format!("WebSocket upgrade at {url}: {e}")),
        })?;
    Ok(ws)
}

/// Opens one attempt's socket and pumps it until it ends, reporting every
/// event to the loop as an input tagged with `attempt`.
async fn socket(
    attempt: AttemptId,
    url: GatewayUrl,
    policy: TlsPolicy,
    store: StateDir,
    inputs: UnboundedSender<Input>,
    mut rx: UnboundedReceiver<ToSocket>,
) {
    let report = |input| {
        let _ = inputs.send(input);
    };
    let failed = |error| Input::SocketFailed { attempt, error };
    let closed = |code, reason| Input::SocketClosed {
        attempt,
        code,
        reason,
    };
    let ws = match open(&url, &policy, &store).await {
        Ok(ws) => ws,
        Err(e) => return report(failed(e)),
    };
    report(Input::SocketOpened { attempt });
    let (mut sink, mut stream) = ws.split();
    let mut closing: Option<tokio::time::Instant> = None;
    loop {
        let grace = async {
            match closing {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            msg = stream.next() => match msg {
                Some(Ok(Message::Text(text))) => report(Input::Frame { attempt, text: text.as_str().to_owned() }),
                Some(Ok(Message::Pong(_))) => report(Input::Pong { attempt }),
                Some(Ok(Message::Close(Some(f)))) => return report(closed(Some(f.code.into()), f.reason.as_str().to_owned())),
                Some(Ok(Message::Close(None))) | None => return report(closed(None, String::new())),
                Some(Ok(_)) => {}
                Some(Err(e)) => return report(failed(SocketError::Io(e.to_string()))),
            },
            out = rx.recv(), if closing.is_none() => {
                let msg = match out {
                    Some(ToSocket::Text(t)) => Message::text(t),
                    Some(ToSocket::Ping) => Message::Ping(Vec::new().into()),
                    Some(ToSocket::Close(code, reason)) => {
                        closing = Some(tokio::time::Instant::now() + CLOSE_GRACE);
                        Message::Close(Some(CloseFrame { code: code.into(), reason: reason.into() }))
                    }
                    None => return,
                };
                if let Err(e) = sink.send(msg).await {
                    return report(failed(SocketError::Io(e.to_string())));
                }
            }
            () = grace => return,
        }
    }
}

/// The one command this node serves.
const SYSTEM_WHICH: &str = "system.which";

/// `system.which`, answered as the core expects: `{"bins":[NAME...]}` gets
/// `{"bins":{NAME:PATH}}` for the names found on `PATH`.
fn which(params_json: Option<&str>) -> InvokeOutcome {
    let params: serde_json::Value = params_json
        .and_then(|p| serde_json::from_str(p).ok())
        .unwrap_or_default();
    let Some(bins) = params.get("bins").and_then(|b| b.as_array()) else {
        return InvokeOutcome::Err {
            code: "INVALID_PARAMS".into(),
            message: "system.which expects {\"bins\": [NAME, ...]}".into(),
        };
    };
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut found = serde_json::Map::new();
    for name in bins.iter().filter_map(|b| b.as_str()) {
        let hit = std::env::split_paths(&path)
            .filter(|dir| dir.is_absolute())
            .map(|dir| dir.join(name))
            .find(|p| !name.contains('/') && p.is_file());
        if let Some(p) = hit {
            found.insert(name.into(), p.to_string_lossy().into());
        }
    }
    InvokeOutcome::Ok {
        payload_json: Some(serde_json::json!({ "bins": found }).to_string()),
    }
}
