//! The session driver: one task per session drives a [`NodeState`].

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::future::Future;
use std::pin::Pin as StdPin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::Message;
use async_tungstenite::tungstenite::protocol::CloseFrame;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use clawnode_core::{
    AttemptId, CancelReason, DeviceIdentity, DisconnectReason, Effect, GatewayError, Input,
    InvokeOutcome, InvokeRequest, NODE_ROLE, NodeOptions, NodeState, Notification, Phase,
    RequestError, RequestId, SendRefused, SessionConfig, SocketError, Status, Time,
};
use ed25519_dalek::SigningKey;
use rand_core::{OsRng, RngCore as _};
use serde_json::Value;
use smol::channel::{self, Receiver, Sender};
use smol::future::FutureExt as _;
use smol::stream::StreamExt as _;
use smol::{Task, Timer};

use crate::event::{self, Event};
use crate::store::{StateDir, StoreError};
use crate::transport;

/// At most this many inputs are handled per wake before the session task
/// yields, so that one busy session cannot starve others on the executor.
const MAX_INPUTS_PER_WAKE: usize = 64;
/// How long a closing socket may take to finish the close handshake.
const CLOSE_GRACE: Duration = Duration::from_secs(3);
/// How long a graceful stop waits for running invokes to answer.
const INVOKE_GRACE: Duration = Duration::from_secs(2);

/// An invoke handed to a command handler.
#[derive(Clone, Debug)]
pub struct Invocation {
    /// The gateway's invoke id.
    pub id: String,
    /// The command.
    pub command: String,
    /// The parameters (`paramsJSON` parsed), `Null` when none were given.
    pub params: Value,
    /// The gateway's idempotency key, when given.
    pub idempotency_key: Option<String>,
}

/// A command's failure, sent to the gateway as `{code, message}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandError {
    /// A short machine-readable code, e.g. `INVALID_PARAMS`.
    pub code: String,
    /// A message for a person.
    pub message: String,
}

impl CommandError {
    /// A command error.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        CommandError {
            code: code.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for CommandError {}

/// The future a command handler returns.
pub type CommandFuture = StdPin<Box<dyn Future<Output = Result<Value, CommandError>> + Send>>;
type Handler = Arc<dyn Fn(Invocation) -> CommandFuture + Send + Sync>;

/// Why a [`NodeHandle::request`] or [`NodeHandle::send_event`] failed.
#[derive(Debug, thiserror::Error)]
pub enum RequestFailure {
    /// The core refused to send it (not connected, or too large).
    #[error("{0}")]
    Refused(SendRefused),
    /// The gateway answered with an error.
    #[error("the gateway answered {}: {}", .0.code, .0.message)]
    Gateway(GatewayError),
    /// No response before the deadline.
    #[error("no response from the gateway in time")]
    Timeout,
    /// The connection ended before the response.
    #[error("the connection ended before the gateway answered")]
    Disconnected,
    /// The session has stopped.
    #[error("the session has stopped")]
    SessionEnded,
}

impl From<RequestError> for RequestFailure {
    fn from(e: RequestError) -> Self {
        match e {
            RequestError::Gateway(g) => RequestFailure::Gateway(g),
            RequestError::Timeout => RequestFailure::Timeout,
            RequestError::Disconnected => RequestFailure::Disconnected,
        }
    }
}

/// Why a session could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The state directory could not be used.
    #[error(transparent)]
    Store(#[from] StoreError),
}

type Reply = Sender<Result<Value, RequestFailure>>;

enum Command {
    Request {
        method: String,
        params: Value,
        timeout: Option<Duration>,
        reply: Reply,
    },
    Event {
        event: String,
        payload: Option<Value>,
        reply: Reply,
    },
    Reconfigure {
        config: Box<SessionConfig>,
        reply: Sender<bool>,
    },
    Wake,
    Stop,
}

enum Outgoing {
    Text(String),
    Ping,
    Close(u16, String),
}

enum SocketEvent {
    Opened(Sender<Outgoing>),
    Frame(String),
    Closed { code: Option<u16>, reason: String },
    Failed(SocketError),
}

enum Msg {
    Socket(AttemptId, SocketEvent),
    InvokeDone { id: String, outcome: InvokeOutcome },
    Command(Command),
}

type Subscribers = Arc<Mutex<Vec<Sender<Event>>>>;

fn subscribe(subs: &Subscribers) -> Receiver<Event> {
    let (tx, rx) = channel::unbounded();
    subs.lock().expect("not poisoned").push(tx);
    rx
}

/// Builds and spawns a session.
///
/// ```no_run
/// use clawnode_core::{SessionConfig, TlsPolicy};
/// use clawnode_smol::{NodeBuilder, StateDir};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let config = SessionConfig::parse("ws://127.0.0.1:18789", TlsPolicy::SystemTrust)?;
/// let mut builder = NodeBuilder::new(config, StateDir::default_location()?)
///     .command("demo.echo", |inv| async move { Ok(inv.params) });
/// let events = builder.events();
/// let node = builder.spawn()?;
/// smol::block_on(async {
///     while let Ok(event) = events.recv().await {
///         println!("{event}");
///     }
/// });
/// # drop(node);
/// # Ok(()) }
/// ```
pub struct NodeBuilder {
    config: SessionConfig,
    store: StateDir,
    key: Option<SigningKey>,
    options: Option<NodeOptions>,
    handlers: HashMap<String, Handler>,
    subscribers: Subscribers,
}

impl fmt::Debug for NodeBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeBuilder")
            .field("config", &self.config)
            .field("store", &self.store)
            .field("commands", &self.handlers.keys().collect::<BTreeSet<_>>())
            .finish_non_exhaustive()
    }
}

impl NodeBuilder {
    /// A session for `config`, keeping its identity, device tokens and TOFU
    /// pins in `store`. The declared commands are exactly the registered
    /// handlers: whatever `config.client.commands` holds is replaced.
    pub fn new(config: SessionConfig, store: StateDir) -> Self {
        NodeBuilder {
            config,
            store,
            key: None,
            options: None,
            handlers: HashMap::new(),
            subscribers: Arc::default(),
        }
    }

    /// Uses `key` as the device key instead of the state directory's.
    pub fn signing_key(mut self, key: SigningKey) -> Self {
        self.key = Some(key);
        self
    }

    /// Core options (timeouts, backoff, seed). By default: the core's
    /// defaults with a random seed.
    pub fn options(mut self, options: NodeOptions) -> Self {
        self.options = Some(options);
        self
    }

    /// Registers (and declares) a command. The handler runs in its own task,
    /// off the receive loop; it is dropped when the invoke is cancelled or
    /// its deadline passes.
    pub fn command<F, Fut>(mut self, name: impl Into<String>, handler: F) -> Self
    where
        F: Fn(Invocation) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, CommandError>> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |inv| Box::pin(handler(inv)));
        self.handlers.insert(name.into(), handler);
        self
    }

    /// Registers the built-in `system.which`.
    pub fn with_system_which(self) -> Self {
        self.command(crate::which::SYSTEM_WHICH, crate::which::handler)
    }

    /// A stream of the session's events, from its very first one.
    pub fn events(&mut self) -> Receiver<Event> {
        subscribe(&self.subscribers)
    }

    /// Loads (or creates) the identity and the stored device token, and
    /// spawns the session on smol's global executor.
    pub fn spawn(self) -> Result<NodeHandle, StartError> {
        let key = match self.key {
            Some(k) => k,
            None => self.store.load_or_create_identity()?,
        };
        let device_id = DeviceIdentity::new(key.clone()).device_id().to_owned();
        let options = self
            .options
            .unwrap_or_else(|| NodeOptions::with_seed(OsRng.next_u64()));
        let commands: BTreeSet<String> = self.handlers.keys().cloned().collect();
        let config = with_commands(self.config, &commands);
        let token = self
            .store
            .load_token(config.url().as_str(), &device_id, NODE_ROLE)?;
        let (tx, rx) = channel::unbounded();
        let status = Arc::new(Mutex::new(Status::default()));
        let session = Session {
            node: NodeState::new(key, options),
            start: Instant::now(),
            store: self.store,
            device_id: device_id.clone(),
            handlers: Arc::new(self.handlers),
            commands,
            tx: tx.clone(),
            sockets: HashMap::new(),
            closing: Vec::new(),
            invokes: HashMap::new(),
            pending: HashMap::new(),
            subscribers: self.subscribers.clone(),
            status: status.clone(),
            stop_requested: None,
        };
        let task = smol::spawn(session.run(rx, config, token));
        Ok(NodeHandle {
            tx,
            status,
            subscribers: self.subscribers,
            device_id,
            task: Some(task),
        })
    }
}

fn with_commands(mut config: SessionConfig, commands: &BTreeSet<String>) -> SessionConfig {
    config.client.commands = commands.clone();
    config
}

/// A running session. Dropping it stops the session gracefully in the
/// background; [`shutdown`](Self::shutdown) stops it and waits.
pub struct NodeHandle {
    tx: Sender<Msg>,
    status: Arc<Mutex<Status>>,
    subscribers: Subscribers,
    device_id: String,
    task: Option<Task<()>>,
}

impl fmt::Debug for NodeHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeHandle")
            .field("device_id", &self.device_id)
            .finish_non_exhaustive()
    }
}

impl NodeHandle {
    /// The device id (lowercase hex SHA-256 of the public key).
    pub fn device_id(&self) -> &str {
        &self.device_id
    }

    /// A snapshot of the session, as of its last wake. Its times (e.g.
    /// `next_retry`) are milliseconds since the session was spawned.
    pub fn status(&self) -> Status {
        self.status.lock().expect("not poisoned").clone()
    }

    /// A stream of the session's events from now on. It ends when the
    /// session stops. Drop it when no longer read: it is unbounded.
    pub fn events(&self) -> Receiver<Event> {
        subscribe(&self.subscribers)
    }

    async fn call(
        &self,
        cmd: Command,
        rx: Receiver<Result<Value, RequestFailure>>,
    ) -> Result<Value, RequestFailure> {
        self.tx
            .send(Msg::Command(cmd))
            .await
            .map_err(|_| RequestFailure::SessionEnded)?;
        rx.recv().await.unwrap_or(Err(RequestFailure::SessionEnded))
    }

    /// Sends a request to the gateway and waits for its response. Refused
    /// while the node is not connected: requests are never queued across
    /// connections.
    pub async fn request(
        &self,
        method: &str,
        params: Value,
        timeout: Option<Duration>,
    ) -> Result<Value, RequestFailure> {
        let (reply, rx) = channel::bounded(1);
        let cmd = Command::Request {
            method: method.to_owned(),
            params,
            timeout,
            reply,
        };
        self.call(cmd, rx).await
    }

    /// Sends a node event (`node.event`) and waits for the gateway's answer.
    pub async fn send_event(
        &self,
        event: &str,
        payload: Option<Value>,
    ) -> Result<Value, RequestFailure> {
        let (reply, rx) = channel::bounded(1);
        let cmd = Command::Event {
            event: event.to_owned(),
            payload,
            reply,
        };
        self.call(cmd, rx).await
    }

    /// Applies a new config; returns whether it differed from the one in
    /// force. An equal config does nothing at all; a changed one causes
    /// exactly one reconnect (decided by the core). The declared commands
    /// stay those of the registered handlers.
    pub async fn reconfigure(&self, config: SessionConfig) -> bool {
        let (reply, rx) = channel::bounded(1);
        let cmd = Command::Reconfigure {
            config: Box::new(config),
            reply,
        };
        if self.tx.send(Msg::Command(cmd)).await.is_err() {
            return false;
        }
        rx.recv().await.unwrap_or(false)
    }

    /// Tells the session the network came back: a waiting retry starts now.
    pub fn wake(&self) {
        let _ = self.tx.try_send(Msg::Command(Command::Wake));
    }

    /// Stops gracefully: lets running invokes answer (briefly), closes the
    /// socket with 1000 after the frames already queued, and waits for the
    /// session task to end.
    pub async fn shutdown(mut self) {
        let _ = self.tx.send(Msg::Command(Command::Stop)).await;
        if let Some(task) = self.task.take() {
            task.await;
        }
    }

    /// Waits until the session ends (after a stop).
    pub async fn finished(&mut self) {
        if let Some(task) = self.task.take() {
            task.await;
        }
    }
}

impl Drop for NodeHandle {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            let _ = self.tx.try_send(Msg::Command(Command::Stop));
            task.detach();
        }
    }
}

struct SocketSlot {
    task: Task<()>,
    writer: Option<Sender<Outgoing>>,
}

struct RunningInvoke {
    task: Task<()>,
    command: String,
    started: Instant,
}

struct Session {
    node: NodeState,
    start: Instant,
    store: StateDir,
    device_id: String,
    handlers: Arc<HashMap<String, Handler>>,
    commands: BTreeSet<String>,
    tx: Sender<Msg>,
    sockets: HashMap<AttemptId, SocketSlot>,
    closing: Vec<Task<()>>,
    invokes: HashMap<String, RunningInvoke>,
    pending: HashMap<RequestId, Reply>,
    subscribers: Subscribers,
    status: Arc<Mutex<Status>>,
    /// When a graceful stop was asked for, and until when invokes may finish.
    stop_requested: Option<Instant>,
}

enum Wake {
    Msg(Msg),
    Timer,
}

impl Session {
    fn now(&self) -> Time {
        Time::from_millis(u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX))
    }

    fn instant(&self, t: Time) -> Instant {
        self.start + Duration::from_millis(t.as_millis())
    }

    fn emit(&self, event: Event) {
        let mut subs = self.subscribers.lock().expect("not poisoned");
        subs.retain(|s| s.try_send(event.clone()).is_ok());
    }

    async fn run(
        mut self,
        rx: Receiver<Msg>,
        config: SessionConfig,
        token: Option<clawnode_core::Secret>,
    ) {
        let now = self.now();
        self.node.handle_input(now, Input::Config(config));
        self.node.handle_input(now, Input::StoredDeviceToken(token));
        self.drain().await;
        loop {
            self.publish_status();
            if self.node.phase() == Phase::Stopped {
                break;
            }
            let deadline = [
                self.node.poll_timeout().map(|t| self.instant(t)),
                self.stop_deadline(),
            ]
            .into_iter()
            .flatten()
            .min();
            let recv = async { rx.recv().await.map(Wake::Msg).unwrap_or(Wake::Timer) };
            let wake = match deadline {
                Some(at) => {
                    recv.or(async {
                        Timer::at(at).await;
                        Wake::Timer
                    })
                    .await
                }
                None => recv.await,
            };
            let mut handled = 0;
            if let Wake::Msg(m) = wake {
                self.handle(m).await;
                handled += 1;
            }
            while handled < MAX_INPUTS_PER_WAKE {
                let Ok(m) = rx.try_recv() else { break };
                self.handle(m).await;
                handled += 1;
            }
            let now = self.now();
            if self.node.poll_timeout().is_some_and(|t| t <= now) {
                self.node.handle_timeout(now);
                self.drain().await;
            }
            self.maybe_stop().await;
            self.closing.retain(|t| !t.is_finished());
            if handled >= MAX_INPUTS_PER_WAKE {
                smol::future::yield_now().await;
            }
        }
        self.finish().await;
    }

    fn stop_deadline(&self) -> Option<Instant> {
        self.stop_requested.map(|t| t + INVOKE_GRACE)
    }

    /// Feeds `Stop` once no invoke is running or the grace period is over.
    async fn maybe_stop(&mut self) {
        let Some(asked) = self.stop_requested else {
            return;
        };
        if self.node.phase() == Phase::Stopped {
            return;
        }
        if self.invokes.is_empty() || asked.elapsed() >= INVOKE_GRACE {
            let now = self.now();
            self.node.handle_input(now, Input::Stop);
            self.drain().await;
        }
    }

    async fn finish(mut self) {
        for (_, inv) in self.invokes.drain() {
            drop(inv.task);
        }
        for (_, reply) in self.pending.drain() {
            let _ = reply.try_send(Err(RequestFailure::SessionEnded));
        }
        for (_, slot) in self.sockets.drain() {
            if let Some(w) = slot.writer {
                let _ = w.try_send(Outgoing::Close(1000, "node stopping".into()));
                self.closing.push(slot.task);
            }
        }
        let closing = std::mem::take(&mut self.closing);
        let all = async {
            for t in closing {
                t.await;
            }
        };
        all.or(async {
            Timer::after(CLOSE_GRACE).await;
        })
        .await;
        self.publish_status();
        self.subscribers.lock().expect("not poisoned").clear();
        tracing::info!("session stopped");
    }

    fn publish_status(&self) {
        *self.status.lock().expect("not poisoned") = self.node.status();
    }

    async fn handle(&mut self, msg: Msg) {
        let now = self.now();
        match msg {
            Msg::Socket(attempt, ev) => self.socket_event(now, attempt, ev),
            Msg::InvokeDone { id, outcome } => {
                let Some(inv) = self.invokes.remove(&id) else {
                    return;
                };
                let ok = matches!(outcome, InvokeOutcome::Ok { .. });
                let ms = u64::try_from(inv.started.elapsed().as_millis()).unwrap_or(u64::MAX);
                if let InvokeOutcome::Err { code, message } = &outcome {
                    tracing::info!(
                        id,
                        command = inv.command,
                        code,
                        message,
                        ms,
                        "invoke failed"
                    );
                } else {
                    tracing::info!(id, command = inv.command, ms, "invoke done");
                }
                self.emit(Event::Invoke {
                    id: id.clone(),
                    command: inv.command,
                    ok,
                    ms,
                });
                self.node
                    .handle_input(now, Input::InvokeResult { id, outcome });
            }
            Msg::Command(cmd) => self.command(now, cmd).await,
        }
        self.drain().await;
    }

    fn socket_event(&mut self, now: Time, attempt: AttemptId, ev: SocketEvent) {
        let input = match ev {
            SocketEvent::Opened(writer) => {
                let Some(slot) = self.sockets.get_mut(&attempt) else {
                    // Closed while connecting: dropping the writer closes it.
                    return;
                };
                slot.writer = Some(writer);
                Input::SocketOpened { attempt }
            }
            SocketEvent::Frame(text) => Input::Frame { attempt, text },
            SocketEvent::Closed { code, reason } => {
                self.sockets.remove(&attempt);
                Input::SocketClosed {
                    attempt,
                    code,
                    reason,
                }
            }
            SocketEvent::Failed(error) => {
                self.sockets.remove(&attempt);
                Input::SocketFailed { attempt, error }
            }
        };
        self.node.handle_input(now, input);
    }

    async fn command(&mut self, now: Time, cmd: Command) {
        match cmd {
            Command::Request {
                method,
                params,
                timeout,
                reply,
            } => match self.node.send_request(now, &method, params, timeout) {
                Ok(id) => {
                    self.pending.insert(id, reply);
                }
                Err(refused) => {
                    let _ = reply.try_send(Err(RequestFailure::Refused(refused)));
                }
            },
            Command::Event {
                event,
                payload,
                reply,
            } => match self.node.send_event(now, &event, payload) {
                Ok(id) => {
                    self.pending.insert(id, reply);
                }
                Err(refused) => {
                    let _ = reply.try_send(Err(RequestFailure::Refused(refused)));
                }
            },
            Command::Reconfigure { config, reply } => {
                let config = with_commands(*config, &self.commands);
                let old_url = self.node.config().map(|c| c.url().clone());
                let changed = self.node.config() != Some(&config);
                let url_changed = old_url.as_ref() != Some(config.url());
                let url = config.url().as_str().to_owned();
                self.node.handle_input(now, Input::Config(config));
                if url_changed {
                    // The core forgets the old gateway's token on a URL
                    // change; hand it this gateway's, if one is stored.
                    let (store, dev) = (self.store.clone(), self.device_id.clone());
                    let token =
                        smol::unblock(move || store.load_token(&url, &dev, NODE_ROLE)).await;
                    let token = token.unwrap_or_else(|e| {
                        tracing::warn!(error = %e, "could not read the stored device token");
                        None
                    });
                    self.node
                        .handle_input(self.now(), Input::StoredDeviceToken(token));
                }
                tracing::info!(changed, "configuration applied");
                self.emit(Event::Config { changed });
                let _ = reply.try_send(changed);
            }
            Command::Wake => self.node.handle_input(now, Input::Wake),
            Command::Stop => {
                if self.stop_requested.is_none() {
                    tracing::info!(running_invokes = self.invokes.len(), "stopping");
                    self.stop_requested = Some(Instant::now());
                }
                self.maybe_stop().await;
            }
        }
    }

    /// Performs every pending effect.
    async fn drain(&mut self) {
        while let Some(effect) = self.node.poll_effect() {
            self.perform(effect).await;
        }
    }

    async fn perform(&mut self, effect: Effect) {
        match effect {
            Effect::OpenSocket { attempt, url, tls } => {
                tracing::info!(attempt = attempt.0, %url, "connecting");
                self.emit(Event::Connecting {
                    attempt: attempt.0,
                    url: url.to_string(),
                });
                let task = smol::spawn(socket_task(
                    attempt,
                    url,
                    tls,
                    self.store.clone(),
                    self.tx.clone(),
                ));
                self.sockets
                    .insert(attempt, SocketSlot { task, writer: None });
            }
            Effect::SendFrame { attempt, text } => self.write(attempt, Outgoing::Text(text)),
            Effect::SendPing { attempt } => self.write(attempt, Outgoing::Ping),
            Effect::CloseSocket {
                attempt,
                code,
                reason,
            } => {
                if let Some(slot) = self.sockets.remove(&attempt) {
                    match slot.writer {
                        Some(w) => {
                            let _ = w.try_send(Outgoing::Close(code, reason));
                            self.closing.push(slot.task);
                        }
                        // Still connecting: dropping the task abandons it.
                        None => drop(slot.task),
                    }
                }
            }
            Effect::Invoke(req) => self.start_invoke(req),
            Effect::CancelInvoke { id, reason } => {
                if let Some(inv) = self.invokes.remove(&id) {
                    drop(inv.task);
                    let ms = u64::try_from(inv.started.elapsed().as_millis()).unwrap_or(u64::MAX);
                    let why = match reason {
                        CancelReason::Gateway => "cancelled by the gateway",
                        CancelReason::Deadline => "deadline passed",
                        CancelReason::Disconnected => "connection ended",
                    };
                    tracing::warn!(id, command = inv.command, ms, why, "invoke cancelled");
                    self.emit(Event::Invoke {
                        id,
                        command: inv.command,
                        ok: false,
                        ms,
                    });
                }
            }
            Effect::StoreDeviceToken { url, role, token } => {
                let (store, dev) = (self.store.clone(), self.device_id.clone());
                let url_text = url.as_str().to_owned();
                let role2 = role.clone();
                match smol::unblock(move || store.store_token(&url_text, &dev, &role2, &token))
                    .await
                {
                    Ok(()) => {
                        tracing::info!(%url, role, "stored the device token the gateway issued")
                    }
                    Err(e) => {
                        tracing::error!(%url, role, error = %e, "could not store the device token")
                    }
                }
            }
            Effect::Response { id, result } => {
                if let Some(reply) = self.pending.remove(&id) {
                    let _ = reply.try_send(result.map_err(RequestFailure::from));
                }
            }
            Effect::Notify(n) => self.notify(&n),
        }
    }

    fn write(&self, attempt: AttemptId, out: Outgoing) {
        if let Some(w) = self.sockets.get(&attempt).and_then(|s| s.writer.as_ref()) {
            let _ = w.try_send(out);
        }
    }

    fn start_invoke(&mut self, req: InvokeRequest) {
        let InvokeRequest {
            id,
            command,
            params_json,
            idempotency_key,
            ..
        } = req;
        let Some(handler) = self.handlers.get(&command).cloned() else {
            // Unreachable while declared commands are the handlers; answer
            // rather than leave the gateway waiting.
            let outcome = InvokeOutcome::Err {
                code: "UNAVAILABLE".into(),
                message: format!("no handler for {command:?}"),
            };
            let _ = self.tx.try_send(Msg::InvokeDone { id, outcome });
            return;
        };
        tracing::info!(id, command, "invoke");
        let tx = self.tx.clone();
        let inv_id = id.clone();
        let name = command.clone();
        let task = smol::spawn(async move {
            let params = match params_json.as_deref().map(serde_json::from_str::<Value>) {
                None => Ok(Value::Null),
                Some(Ok(v)) => Ok(v),
                Some(Err(e)) => Err(CommandError::new(
                    "INVALID_PARAMS",
                    format!("paramsJSON is not JSON: {e}"),
                )),
            };
            let result = match params {
                Ok(params) => {
                    handler(Invocation {
                        id: inv_id.clone(),
                        command: name,
                        params,
                        idempotency_key,
                    })
                    .await
                }
                Err(e) => Err(e),
            };
            let outcome = match result {
                Ok(Value::Null) => InvokeOutcome::Ok { payload_json: None },
                Ok(v) => InvokeOutcome::Ok {
                    payload_json: Some(v.to_string()),
                },
                Err(e) => InvokeOutcome::Err {
                    code: e.code,
                    message: e.message,
                },
            };
            let _ = tx
                .send(Msg::InvokeDone {
                    id: inv_id,
                    outcome,
                })
                .await;
        });
        self.invokes.insert(
            id,
            RunningInvoke {
                task,
                command,
                started: Instant::now(),
            },
        );
    }

    fn notify(&self, n: &Notification) {
        match n {
            Notification::Connected {
                attempt,
                conn_id,
                protocol,
                ..
            } => tracing::info!(attempt = attempt.0, conn_id, protocol, "connected"),
            Notification::Disconnected {
                attempt,
                reason,
                retry_in,
                ..
            } => {
                let (code, why) = event::disconnect_code(reason);
                let retry_in_ms =
                    retry_in.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
                if matches!(
                    reason,
                    DisconnectReason::Stopped | DisconnectReason::ConfigChanged
                ) {
                    tracing::info!(attempt = attempt.0, %code, reason = why, retry_in_ms, "disconnected");
                } else {
                    tracing::warn!(attempt = attempt.0, %code, reason = why, retry_in_ms, "disconnected");
                }
            }
            Notification::Paused(p) => {
                tracing::error!(
                    code = p.code(),
                    hint = p.hint,
                    "paused: not reconnecting until the configuration changes"
                );
            }
            Notification::SeqGap { expected, got } => {
                tracing::warn!(expected, got, "event sequence gap");
            }
            Notification::GatewayEvent { event, seq, .. } => {
                tracing::debug!(event, seq, "gateway event");
            }
            Notification::InvokeDropped { id, reason } => {
                tracing::warn!(id, ?reason, "invoke answer not delivered");
            }
            Notification::InvokeRefused {
                id,
                command,
                reason,
            } => {
                tracing::warn!(id, command, ?reason, "invoke refused");
            }
            Notification::FrameRejected { attempt, reason } => {
                tracing::warn!(attempt = attempt.0, reason, "frame rejected");
            }
        }
        if let Some(e) = event::from_notification(n) {
            self.emit(e);
        }
    }
}

/// Opens the socket of one attempt and pumps it until it ends, reporting
/// everything to the session tagged with `attempt`.
async fn socket_task(
    attempt: AttemptId,
    url: clawnode_core::GatewayUrl,
    tls: clawnode_core::TlsPolicy,
    store: StateDir,
    tx: Sender<Msg>,
) {
    let report = |ev| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(Msg::Socket(attempt, ev)).await;
        }
    };
    let ws = match transport::open(&url, &tls, &store).await {
        Ok(ws) => ws,
        Err(e) => return report(SocketEvent::Failed(e)).await,
    };
    let (out_tx, out_rx) = channel::unbounded();
    report(SocketEvent::Opened(out_tx)).await;
    let (mut sender, mut receiver) = ws.split();

    let reader = async {
        loop {
            match receiver.next().await {
                Some(Ok(Message::Text(t))) => {
                    report(SocketEvent::Frame(t.as_str().to_owned())).await
                }
                Some(Ok(Message::Close(frame))) => {
                    let (code, reason) = match frame {
                        Some(f) => (Some(u16::from(f.code)), f.reason.as_str().to_owned()),
                        None => (None, String::new()),
                    };
                    report(SocketEvent::Closed { code, reason }).await;
                    // tungstenite queues the close reply and writes it on
                    // the next read: read on until the peer hangs up, so the
                    // gateway sees its close answered (RFC 6455 §5.5.1), not
                    // an abnormal 1006.
                    let drain = async { while let Some(Ok(_)) = receiver.next().await {} };
                    drain
                        .or(async {
                            Timer::after(CLOSE_GRACE).await;
                        })
                        .await;
                    return;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    report(SocketEvent::Failed(SocketError::Io(format!(
                        "WebSocket: {e}"
                    ))))
                    .await;
                    return;
                }
                None => {
                    report(SocketEvent::Closed {
                        code: None,
                        reason: "connection ended".into(),
                    })
                    .await;
                    return;
                }
            }
        }
    };
    let writer = async {
        let mut close = (1000, String::from("node stopping"));
        while let Ok(out) = out_rx.recv().await {
            let msg = match out {
                Outgoing::Text(t) => Message::text(t),
                Outgoing::Ping => Message::Ping(Default::default()),
                Outgoing::Close(code, reason) => {
                    close = (code, reason);
                    break;
                }
            };
            if let Err(e) = sender.send(msg).await {
                report(SocketEvent::Failed(SocketError::Io(format!(
                    "WebSocket send: {e}"
                ))))
                .await;
                return;
            }
        }
        let frame = CloseFrame {
            code: CloseCode::from(close.0),
            reason: close.1.into(),
        };
        let _ = sender.close(Some(frame)).await;
        // Give the peer a moment to answer the close; the reader ends
        // this task as soon as it does.
        Timer::after(CLOSE_GRACE).await;
    };
    reader.or(writer).await;
}
