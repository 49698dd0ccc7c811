//! The application's side of a session: [`NodeBuilder`] configures and
//! spawns it, [`NodeHandle`] talks to the running driver.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::runtime::Task;
use clawnode_core::{DeviceIdentity, NODE_ROLE, NodeOptions, NodeState, SessionConfig, Status};
use ed25519_dalek::SigningKey;
use rand_core::{OsRng, RngCore as _};
use serde_json::Value;
use smol::channel::{self, Receiver, Sender};

use super::admission::Admission;
use super::background::Background;
use super::driver::{self, Start, with_commands};
use super::error::{RequestFailure, StartError};
use super::msg::{Control, Msg, Subscribers, subscribe, subscribe_with};
use crate::clock::Clock;
use crate::command::{CommandError, Emitter, Invocation, Registry};
use crate::event::Event;
use crate::runtime::Runtime;
use crate::store::StateDir;

/// A task started beside the session ([`NodeBuilder::background`]).
type BackgroundTask =
    Box<dyn FnOnce(Emitter, Runtime) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// Builds and spawns a session.
///
/// ```no_run
/// use clawnode::policy::{Credentials, Secret, SessionConfig, TlsPolicy};
/// use clawnode::{CommandError, NodeBuilder, StateDir};
/// use serde_json::json;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let pins = TlsPolicy::pinned(["sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"])?;
/// let config = SessionConfig::parse("wss://gateway.example:18789", pins)?
///     .with_credentials(Credentials { token: Some(Secret::new("T")), ..Default::default() });
/// let mut builder = NodeBuilder::new(config, StateDir::default_location()?)
///     .command("demo.add", |inv| async move {
///         let a = inv.params["a"].as_i64().ok_or(CommandError::new("INVALID_PARAMS", "a"))?;
///         let b = inv.params["b"].as_i64().ok_or(CommandError::new("INVALID_PARAMS", "b"))?;
///         Ok(json!({ "sum": a + b }))
///     });
/// let events = builder.events();
/// let node = builder.spawn()?;
/// smol::block_on(async {
///     while let Ok(event) = events.recv().await {
///         println!("{event}");
///     }
///     node.shutdown().await;
/// });
/// # Ok(()) }
/// ```
pub struct NodeBuilder {
    config: SessionConfig,
    store: StateDir,
    key: Option<SigningKey>,
    options: Option<NodeOptions>,
    handlers: Registry,
    subscribers: Subscribers,
    background: Vec<BackgroundTask>,
    ignore_stored_token: bool,
    /// Invoke slots added for commands that keep a slot count of their
    /// own (`system.run`), so they never take the others' slots.
    own_slots: usize,
    runtime: Runtime,
    admission: Option<Admission>,
}

impl fmt::Debug for NodeBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeBuilder")
            .field("config", &self.config)
            .field("store", &self.store)
            .field("commands", &self.handlers.names())
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
            handlers: Registry::default(),
            subscribers: Arc::default(),
            background: Vec::new(),
            ignore_stored_token: false,
            own_slots: 0,
            runtime: Runtime::default(),
            admission: None,
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
        self.handlers.insert(name, handler);
        self
    }

    /// The commands registered so far (the ones the node declares).
    pub fn command_names(&self) -> std::collections::BTreeSet<String> {
        self.handlers.names()
    }

    /// Keeps only the commands named in `names`: the node declares, and
    /// the gateway may invoke, nothing else.
    pub fn only_commands<S: AsRef<str>>(mut self, names: &[S]) -> Self {
        self.handlers
            .retain(|name| names.iter().any(|n| n.as_ref() == name));
        self
    }

    /// Refuses a `paramsJSON` longer than `bytes` for the registered
    /// command `name`, before it is parsed (a command that takes documents
    /// sets a bound of its own above the session's default).
    pub fn limit_params(mut self, name: &str, bytes: usize) -> Self {
        self.handlers.limit_params(name, bytes);
        self
    }

    /// Adds `slots` invoke slots to the session's, for a command that keeps
    /// a count of its own runs (`system.run`): however many of them run,
    /// the other commands keep the session's slots.
    pub fn reserve_invoke_slots(mut self, slots: usize) -> Self {
        self.own_slots += slots;
        self
    }

    /// The state directory this node keeps its identity and tokens in,
    /// for the commands that keep documents of their own beside them.
    pub fn state_dir(&self) -> &StateDir {
        &self.store
    }

    /// Runs `task` beside the session, on the node's runtime, from
    /// [`spawn`](Self::spawn): it gets the session's events, a sender of
    /// `node.event`s and the node's timer ([`Background`]), and should end
    /// when the event stream does (the session stopped). A node host
    /// reports what it observes this way, for example its load after each
    /// admission.
    pub fn background<F, Fut>(mut self, task: F) -> Self
    where
        F: FnOnce(Background) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let events = subscribe(&self.subscribers);
        self.background.push(Box::new(move |emitter, runtime| {
            Box::pin(task(Background::new(events, emitter, runtime)))
        }));
        self
    }

    /// Runs this node's tasks (driver, sockets, commands) on `executor`
    /// instead of smol's global one. The embedder drives it; many nodes on
    /// one executor run on one thread, for example with
    /// `futures_lite::future::block_on(executor.run(...))`, which leaves
    /// the I/O reactor to its own thread: an idle session then wakes those
    /// two threads and no other.
    pub fn executor(mut self, executor: Arc<smol::Executor<'static>>) -> Self {
        self.runtime = Runtime::executor(executor);
        self
    }

    /// Runs this node's tasks on the tokio runtime `runtime`, with its
    /// sockets and timers on tokio's reactor. The runtime needs its I/O and
    /// time drivers (`enable_all`). On a current-thread runtime one thread
    /// waits for I/O and runs every session, so a wake-up is never handed
    /// from one thread to another: `clawnode-swarm` runs its sessions this
    /// way. File I/O and commands run on threads of their own as on smol;
    /// nothing of async-io runs for the node. The runtime must outlive the
    /// node: awaiting [`NodeHandle::shutdown`] after it shut down panics.
    ///
    /// ```no_run
    /// use clawnode::policy::{Credentials, Secret, SessionConfig, TlsPolicy};
    /// use clawnode::{NodeBuilder, StateDir};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let runtime = tokio::runtime::Builder::new_current_thread()
    ///     .enable_all()
    ///     .build()?;
    /// let pins = TlsPolicy::pinned(["sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"])?;
    /// let config = SessionConfig::parse("wss://gateway.example:18789", pins)?
    ///     .with_credentials(Credentials { token: Some(Secret::new("T")), ..Default::default() });
    /// let mut builder = NodeBuilder::new(config, StateDir::default_location()?)
    ///     .tokio(runtime.handle().clone());
    /// let events = builder.events();
    /// let node = builder.spawn()?;
    /// runtime.block_on(async {
    ///     while let Ok(event) = events.recv().await {
    ///         println!("{event}");
    ///     }
    ///     node.shutdown().await;
    /// });
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "tokio")]
    pub fn tokio(mut self, runtime: tokio::runtime::Handle) -> Self {
        self.runtime = Runtime::Tokio(runtime);
        self
    }

    /// Shares `admission`'s handshake slots instead of those of the
    /// gateway's default [`Admission::for_gateway`] (16 at once per gateway
    /// and process): at most its limit of the nodes
    /// given it open a socket or wait for hello-ok at the same time, and
    /// the rest queue for a slot without their open deadline running.
    pub fn admission(mut self, admission: Admission) -> Self {
        self.admission = Some(admission);
        self
    }

    /// Starts without the device token stored for this gateway, so that a
    /// configured bootstrap token is sent instead (`clawnode run --pair`).
    /// The stored token stays on disk until the gateway issues a new one.
    pub fn ignore_stored_token(mut self) -> Self {
        self.ignore_stored_token = true;
        self
    }

    /// A stream of the session's events, from its very first one.
    ///
    /// The stream holds a bounded number of events (1024): the session
    /// never waits for its reader. If it is not read fast enough, newer
    /// events are dropped and an [`Event::Lagged`] with their count comes
    /// in their place once there is room. Drop it when no longer read.
    pub fn events(&mut self) -> Receiver<Event> {
        subscribe(&self.subscribers)
    }

    /// [`events`](Self::events) holding at most `capacity` events: a
    /// process that runs many sessions and reads promptly needs far fewer
    /// than 1024 per session.
    pub fn events_with_capacity(&mut self, capacity: usize) -> Receiver<Event> {
        subscribe_with(&self.subscribers, capacity.max(1))
    }

    /// Loads (or creates) the identity and the stored device token, and
    /// spawns the session where [`NodeBuilder::executor`] or
    /// `NodeBuilder::tokio` (feature `tokio`) said (smol's global executor if neither did).
    /// Temporary files left
    /// in the state directory by a killed process are removed first
    /// ([`StateDir::remove_stale_temp_files`]).
    pub fn spawn(self) -> Result<NodeHandle, StartError> {
        let key = match self.key {
            Some(k) => {
                // Loading the identity would have done it: a start is when
                // a killed writer's leftovers go.
                self.store.clean_up();
                k
            }
            None => self.store.load_or_create_identity()?,
        };
        let device_id = DeviceIdentity::new(key.clone()).device_id().to_owned();
        let mut options = self
            .options
            .unwrap_or_else(|| NodeOptions::with_seed(OsRng.next_u64()));
        options.max_concurrent_invokes += self.own_slots;
        let commands = self.handlers.names();
        let config = with_commands(self.config, &commands);
        let token = if self.ignore_stored_token {
            None
        } else {
            self.store
                .load_token(config.url().as_str(), &device_id, NODE_ROLE)?
        };
        let running = driver::spawn(Start {
            node: NodeState::new(key, options),
            store: self.store,
            device_id: device_id.clone(),
            handlers: self.handlers,
            commands,
            subscribers: self.subscribers.clone(),
            config,
            token,
            runtime: self.runtime.clone(),
            admission: self.admission,
        });
        for task in self.background {
            let emitter = driver::node_events(running.tx.clone());
            self.runtime
                .spawn(task(emitter, self.runtime.clone()))
                .detach();
        }
        Ok(NodeHandle {
            tx: running.tx,
            status: running.status,
            clock: running.clock,
            subscribers: self.subscribers,
            device_id,
            task: Some(running.task),
        })
    }
}

/// A snapshot of a running session ([`NodeHandle::status`]).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct NodeStatus {
    /// The core's snapshot. Its `Time`s count from the session's start;
    /// the fields below give the ones a person reads in readable form.
    pub session: Status,
    /// How long until the next attempt starts, while waiting.
    pub next_retry_in: Option<Duration>,
    /// When the next attempt starts, on the wall clock, while waiting.
    pub next_retry_at: Option<SystemTime>,
}

/// A running session. Dropping it stops the session gracefully in the
/// background; [`shutdown`](Self::shutdown) stops it and waits.
pub struct NodeHandle {
    tx: Sender<Msg>,
    status: Arc<Mutex<Status>>,
    clock: Clock,
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

    /// A snapshot of the session, as of its last wake, with its times as
    /// durations from now and wall-clock times.
    pub fn status(&self) -> NodeStatus {
        let session = self.status.lock().expect("not poisoned").clone();
        let next_retry_in = session.next_retry.map(|t| self.clock.until(t));
        NodeStatus {
            next_retry_in,
            next_retry_at: next_retry_in.map(|d| SystemTime::now() + d),
            session,
        }
    }

    /// A stream of the session's events from now on. It ends when the
    /// session stops. Bounded like [`NodeBuilder::events`]: a stream not
    /// read fast enough loses its newest events and gets an
    /// [`Event::Lagged`] with their count instead.
    pub fn events(&self) -> Receiver<Event> {
        subscribe(&self.subscribers)
    }

    async fn call(
        &self,
        cmd: Control,
        rx: Receiver<Result<Value, RequestFailure>>,
    ) -> Result<Value, RequestFailure> {
        self.tx
            .send(Msg::Control(Box::new(cmd)))
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
        let cmd = Control::Request {
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
        let cmd = Control::Event {
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
        let cmd = Control::Reconfigure {
            config: Box::new(config),
            reply,
        };
        if self.tx.send(Msg::Control(Box::new(cmd))).await.is_err() {
            return false;
        }
        rx.recv().await.unwrap_or(false)
    }

    /// Tells the session the network came back: a waiting retry starts now.
    pub fn wake(&self) {
        let _ = self.tx.try_send(Msg::Control(Box::new(Control::Wake)));
    }

    /// Stops gracefully: lets running invokes answer (briefly), closes the
    /// socket with 1000 after the frames already queued, and waits for the
    /// session task to end.
    pub async fn shutdown(mut self) {
        let _ = self.tx.send(Msg::Control(Box::new(Control::Stop))).await;
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
            let _ = self.tx.try_send(Msg::Control(Box::new(Control::Stop)));
            task.detach();
        }
    }
}
