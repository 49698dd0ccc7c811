//! An OpenClaw node on tokio: a complete driver of `clawnode-core` that
//! takes its certificate pinning, state directory and event lines from the
//! runtime-neutral layer of `clawnode-smol` (`default-features = false`:
//! no smol, no clap, no toml in its tree).
//!
//! ```text
//! OPENCLAW_GATEWAY_TOKEN=... cargo run -p clawnode-smol --example tokio_node -- \
//!     --url wss://gateway:18789 --tls-fingerprint sha256:... \
//!     --state-dir ./state --display-name my-node
//! ```
//!
//! It serves `system.which`, prints one `--events json` line per event and
//! stops on Ctrl-C, closing with 1000. Nothing the core asks is left out:
//! each `Effect` is performed, and each socket reports back to the loop,
//! tagged with its attempt.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clawnode_core::{
    AttemptId, ClientOptions, Clock, Credentials, DeviceIdentity, Effect, GatewayUrl, Input,
    InvokeOutcome, NODE_ROLE, NodeOptions, NodeState, Secret, SessionConfig, SocketError,
    TlsPolicy,
};
use clawnode_smol::{Event, PinStore, SYSTEM_WHICH, StateDir, TlsAttempt, system_which, tcp_error};
use futures_util::{SinkExt as _, StreamExt as _};
use rand_core::{OsRng, RngCore as _};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};

/// How long a closing socket waits for the gateway's close reply.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// What a socket task tells the loop.
enum FromSocket {
    Opened,
    Frame(String),
    Pong,
    Closed(Option<u16>, String),
    Failed(SocketError),
}

/// What reaches the loop: a socket's report, or a command's answer.
enum Wake {
    Socket(AttemptId, FromSocket),
    Answer(String, InvokeOutcome),
}

/// What the loop asks of a socket task.
enum ToSocket {
    Text(String),
    Ping,
    Close(u16, String),
}

struct Args {
    url: String,
    pins: Vec<String>,
    state_dir: String,
    display_name: Option<String>,
}

fn args() -> Result<Args, String> {
    let (mut url, mut pins, mut state_dir, mut display_name) = (None, Vec::new(), None, None);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => url = Some(value()?),
            "--tls-fingerprint" => pins.push(value()?),
            "--state-dir" => state_dir = Some(value()?),
            "--display-name" => display_name = Some(value()?),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Args {
        url: url.ok_or("--url is required")?,
        pins,
        state_dir: state_dir.ok_or("--state-dir is required")?,
        display_name,
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = args()?;
    let store = StateDir::new(&args.state_dir);
    let key = store.load_or_create_identity()?;
    let device_id = DeviceIdentity::new(key.clone()).device_id().to_owned();
    let tls = if args.pins.is_empty() {
        TlsPolicy::SystemTrust
    } else {
        TlsPolicy::pinned(&args.pins)?
    };
    let token = std::env::var("OPENCLAW_GATEWAY_TOKEN")
        .ok()
        .map(Secret::new);
    let config = SessionConfig::parse(&args.url, tls)?
        .with_credentials(Credentials {
            token,
            ..Credentials::default()
        })
        .with_client(ClientOptions {
            display_name: args.display_name,
            commands: [SYSTEM_WHICH.to_owned()].into(),
            ..ClientOptions::default()
        });
    let stored = store.load_token(config.url().as_str(), &device_id, NODE_ROLE)?;

    let mut node = NodeState::new(key, NodeOptions::with_seed(OsRng.next_u64()));
    let clock = Clock::new();
    node.handle_input(clock.now(), Input::Config(config));
    node.handle_input(clock.now(), Input::StoredDeviceToken(stored));

    let (wake_tx, mut wake_rx) = unbounded_channel();
    let mut sockets: HashMap<AttemptId, Socket> = HashMap::new();
    let mut closing = Vec::new();
    let mut invokes = HashMap::new();
    let mut stopping = false;
    loop {
        while let Some(effect) = node.poll_effect() {
            match effect {
                Effect::OpenSocket { attempt, url, tls } => {
                    let (tx, rx) = unbounded_channel();
                    let task = tokio::spawn(socket(
                        attempt,
                        url,
                        tls,
                        store.clone(),
                        wake_tx.clone(),
                        rx,
                    ));
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
                    let wake = wake_tx.clone();
                    let id = req.id.clone();
                    let params = req.params_json.unwrap_or_default();
                    invokes.insert(
                        id.clone(),
                        tokio::task::spawn_blocking(move || {
                            let params = serde_json::from_str(&params).unwrap_or_default();
                            let outcome = match system_which(&params) {
                                Ok(v) => InvokeOutcome::Ok {
                                    payload_json: Some(v.to_string()),
                                },
                                Err(e) => InvokeOutcome::Err {
                                    code: e.code,
                                    message: e.message,
                                },
                            };
                            let _ = wake.send(Wake::Answer(req.id, outcome));
                        }),
                    );
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
            Some(wake) = wake_rx.recv() => {
                let now = clock.now();
                match wake {
                    Wake::Socket(attempt, report) => {
                        let input = match report {
                            FromSocket::Opened => {
                                if let Some(s) = sockets.get_mut(&attempt) {
                                    s.open = true;
                                }
                                Input::SocketOpened { attempt }
                            }
                            FromSocket::Frame(text) => Input::Frame { attempt, text },
                            FromSocket::Pong => Input::Pong { attempt },
                            FromSocket::Closed(code, reason) => {
                                sockets.remove(&attempt);
                                Input::SocketClosed { attempt, code, reason }
                            }
                            FromSocket::Failed(error) => {
                                sockets.remove(&attempt);
                                Input::SocketFailed { attempt, error }
                            }
                        };
                        node.handle_input(now, input);
                    }
                    Wake::Answer(id, outcome) => {
                        invokes.remove(&id);
                        node.handle_input(now, Input::InvokeResult { id, outcome });
                    }
                }
            }
            () = sleep => node.handle_timeout(clock.now()),
            _ = tokio::signal::ctrl_c(), if !stopping => {
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
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
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
        .map_err(|e| SocketError::Io(format!("WebSocket upgrade at {url}: {e}")))?;
    Ok(ws)
}

/// Opens one attempt's socket and pumps it until it ends, reporting every
/// event to the loop tagged with `attempt`.
async fn socket(
    attempt: AttemptId,
    url: GatewayUrl,
    policy: TlsPolicy,
    store: StateDir,
    wake: UnboundedSender<Wake>,
    mut rx: UnboundedReceiver<ToSocket>,
) {
    let report = |r| {
        let _ = wake.send(Wake::Socket(attempt, r));
    };
    let ws = match open(&url, &policy, &store).await {
        Ok(ws) => ws,
        Err(e) => return report(FromSocket::Failed(e)),
    };
    report(FromSocket::Opened);
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
                Some(Ok(Message::Text(text))) => report(FromSocket::Frame(text.as_str().to_owned())),
                Some(Ok(Message::Pong(_))) => report(FromSocket::Pong),
                Some(Ok(Message::Close(frame))) => {
                    let (code, reason) = frame.map_or((None, String::new()), |f| (Some(u16::from(f.code)), f.reason.as_str().to_owned()));
                    return report(FromSocket::Closed(code, reason));
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return report(FromSocket::Failed(SocketError::Io(e.to_string()))),
                None => return report(FromSocket::Closed(None, String::new())),
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
                    return report(FromSocket::Failed(SocketError::Io(e.to_string())));
                }
            }
            () = grace => return,
        }
    }
}
