//! The driver: one task per session feeds a [`NodeState`] its inputs (the
//! application's commands, socket reports, finished invokes, timeouts) and
//! performs the effects the core asks for.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clawnode_core::{
    AttemptId, Deadline, Input, InvokeOutcome, NODE_ROLE, NodeState, Phase, RequestId, Secret,
    SessionConfig, SocketError, Status, Time, TimerReason,
};
use smol::channel::{self, Receiver, Sender};

use super::log_limit::PeerLogLimits;

mod effects;
mod invokes;
mod notify;

use crate::frame_limit::FrameLimit;
pub(super) use invokes::node_events;
use smol::future::FutureExt as _;

use super::admission::{Admission, Slot};
use super::error::RequestFailure;
use super::msg::{
    Control, Heard, Msg, Opened, Outgoing, Reply, SocketEvent, Subscribers, WRITE_QUEUE,
};
use super::socket::CLOSE_GRACE;
use crate::clock::Clock;
use crate::command::Registry;
use crate::event::Event;
use crate::runtime::{Runtime, Task};
use crate::store::StateDir;

/// How often a stream's pending `lagged` notice is offered again while its
/// reader has no room for it.
const LAGGED_RETRY: Duration = Duration::from_millis(100);

/// At most this many inputs are handled per wake before the session task
/// yields, so that one busy session cannot starve others on the executor.
const MAX_INPUTS_PER_WAKE: usize = 64;
/// How long a graceful stop waits for running invokes to answer.
const INVOKE_GRACE: Duration = Duration::from_secs(2);

/// Declares exactly the registered commands, whatever `config` held: a
/// command the node cannot run must not be offered to the gateway.
pub(super) fn with_commands(
    mut config: SessionConfig,
    commands: &BTreeSet<String>,
) -> SessionConfig {
    config.client.commands = commands.clone();
    config
}

/// What a session starts from.
pub(super) struct Start {
    pub node: NodeState,
    pub store: StateDir,
    pub device_id: String,
    pub handlers: Registry,
    pub commands: BTreeSet<String>,
    pub subscribers: Subscribers,
    /// The first config (its commands already those of `handlers`).
    pub config: SessionConfig,
    /// The device token stored for `config`'s gateway.
    pub token: Option<Secret>,
    /// Where the session's tasks run.
    pub runtime: Runtime,
    /// The handshake slots this session shares; `None`: those of the
    /// gateway it connects to ([`Admission::for_gateway`]).
    pub admission: Option<Admission>,
}

/// The running driver, as its handle sees it.
pub(super) struct Running {
    pub tx: Sender<Msg>,
    pub status: Arc<Mutex<Status>>,
    /// The clock the status's times count on.
    pub clock: Clock,
    pub task: Task<()>,
}

/// Spawns the driver task where `start.runtime` says.
pub(super) fn spawn(start: Start) -> Running {
    let (tx, rx) = channel::unbounded();
    let status = Arc::new(Mutex::new(Status::default()));
    let clock = Clock::new();
    let mut session = Session {
        node: start.node,
        clock,
        store: start.store,
        device_id: start.device_id,
        handlers: start.handlers,
        commands: start.commands,
        tx: tx.clone(),
        sockets: HashMap::new(),
        closing: Vec::new(),
        invokes: HashMap::new(),
        pending: HashMap::new(),
        subscribers: start.subscribers,
        lagging: AtomicBool::new(false),
        status: status.clone(),
        stop_requested: None,
        last_deadline: None,
        stalled: Vec::new(),
        log_limits: PeerLogLimits::default(),
        runtime: start.runtime.clone(),
        admission: start.admission,
    };
    session.start(start.config, start.token);
    let task = start.runtime.spawn(session.run(rx));
    Running {
        tx,
        status,
        clock,
        task,
    }
}

/// A socket attempt's pump task; `writer` once the socket is open.
struct SocketSlot {
    task: Task<()>,
    writer: Option<Sender<Outgoing>>,
    limit: Option<FrameLimit>,
    /// The handshake slot, from the socket's opening to hello-ok.
    handshake: Option<Slot>,
    /// Told each time a frame of this socket was handled: until admission
    /// the socket reads the next frame only then.
    handled: Option<Sender<()>>,
    /// When the socket last heard a ping or pong, taken on each wake-up.
    heard: Option<Heard>,
}

/// A command handler's task: dropping it cancels the invoke.
struct RunningInvoke {
    task: Task<()>,
    command: String,
    started: Instant,
    /// Where the gateway's `node.invoke.input` for it goes.
    input: channel::Sender<String>,
}

/// The driver task's state: the core, and what carries out its effects.
struct Session {
    node: NodeState,
    clock: Clock,
    store: StateDir,
    device_id: String,
    handlers: Registry,
    commands: BTreeSet<String>,
    tx: Sender<Msg>,
    sockets: HashMap<AttemptId, SocketSlot>,
    closing: Vec<Task<()>>,
    invokes: HashMap<String, RunningInvoke>,
    pending: HashMap<RequestId, Reply>,
    subscribers: Subscribers,
    /// Whether a stream missed events and its `lagged` notice still waits
    /// for room (set by [`Session::emit`]): only then does a wake look at
    /// the streams again.
    lagging: AtomicBool,
    status: Arc<Mutex<Status>>,
    /// When a graceful stop was asked for, and until when invokes may finish.
    stop_requested: Option<Instant>,
    /// The core's last deadline, logged (with its reason) when it changes.
    last_deadline: Option<Deadline>,
    /// Sockets whose write queue filled up: failed after the drain.
    stalled: Vec<AttemptId>,
    /// Rate limits of the logs a peer can trigger at will.
    log_limits: PeerLogLimits,
    runtime: Runtime,
    admission: Option<Admission>,
}

enum Wake {
    Msg(Msg),
    Timer,
}

impl Session {
    fn now(&self) -> Time {
        self.clock.now()
    }

    fn instant(&self, t: Time) -> Instant {
        self.clock.instant_of(t)
    }

    /// When to wake for `deadline`. A ping may go out up to a second late:
    /// its time is rounded up to a whole second of one grid shared by every
    /// session in the process, so that many idle sessions ping, and hear
    /// their pongs, in one wake-up instead of one each. Another deadline
    /// that falls in that second is handled with it, up to a second late.
    fn wake_at(&self, deadline: Deadline) -> Instant {
        let at = self.instant(deadline.at);
        if deadline.reason != TimerReason::Ping {
            return at;
        }
        let origin = Clock::process().instant_of(Time::ZERO);
        let since = at.saturating_duration_since(origin);
        let whole = since.as_secs() + u64::from(since.subsec_nanos() > 0);
        origin + Duration::from_secs(whole)
    }

    /// Hands `event` to every stream without waiting: a stream that is full
    /// loses it and is told so later (`Subscriber::offer`), so a reader that
    /// stalls can neither block the session nor make it hoard events.
    fn emit(&self, event: Event) {
        let mut subs = self.subscribers.lock().expect("not poisoned");
        // A copy for each stream but the last, which takes the event itself:
        // a gateway event's payload may be kilobytes.
        let last = subs.len().saturating_sub(1);
        let mut event = Some(event);
        let mut i = 0;
        let mut lagging = false;
        subs.retain_mut(|s| {
            let e = if i == last {
                event.take()
            } else {
                event.clone()
            };
            i += 1;
            let open = e.is_none_or(|e| s.offer(e));
            lagging |= open && s.lagging();
            open
        });
        self.lagging.store(lagging, Ordering::Relaxed);
    }

    /// Feeds the first config and stored token before the task starts, so
    /// that the task's state does not keep room for them.
    fn start(&mut self, config: SessionConfig, token: Option<Secret>) {
        let now = self.now();
        self.node.handle_input(now, Input::Config(config));
        self.node.handle_input(now, Input::StoredDeviceToken(token));
    }

    /// The session's task. Not an `async fn`: one of those keeps its
    /// arguments twice in its state (rust-lang/rust#62958), and `self` is
    /// 2.5 KiB; the block below holds it once.
    #[allow(clippy::manual_async_fn)]
    fn run(mut self, rx: Receiver<Msg>) -> impl Future<Output = ()> + Send {
        async move {
            let step = Box::pin(self.drain());
            step.await;
            let mut timer = self.runtime.sleep();
            loop {
                self.publish_status();
                if self.node.phase() == Phase::Stopped {
                    break;
                }
                let next = self.node.poll_deadline();
                if next != self.last_deadline {
                    if let Some(d) = next {
                        tracing::debug!(at_ms = d.at.as_millis(), reason = %d.reason, "next deadline");
                    }
                    self.last_deadline = next;
                }
                let deadline = [
                    next.map(|d| self.wake_at(d)),
                    self.stop_deadline(),
                    self.lagged_retry(),
                ]
                .into_iter()
                .flatten()
                .min();
                // Re-armed only when the deadline moves (`timers`).
                timer.set_at(deadline);
                // What happens on a wake-up is boxed below, so that an idle
                // session's task holds only this loop's state, not the largest
                // of everything it may await.
                let recv = async { rx.recv().await.map(Wake::Msg).unwrap_or(Wake::Timer) };
                let wake = recv
                    .or(async {
                        (&mut timer).await;
                        Wake::Timer
                    })
                    .await;
                self.take_heard();
                let mut handled = 0;
                if let Wake::Msg(m) = wake {
                    let step = Box::pin(self.handle(m));
                    step.await;
                    handled += 1;
                }
                while handled < MAX_INPUTS_PER_WAKE {
                    let Ok(m) = rx.try_recv() else { break };
                    let step = Box::pin(self.handle(m));
                    step.await;
                    handled += 1;
                }
                // Again: handling messages may have awaited, and a pong
                // stamped meanwhile must count before a deadline is judged.
                self.take_heard();
                let now = self.now();
                if self.node.poll_timeout().is_some_and(|t| t <= now) {
                    self.node.handle_timeout(now);
                    let step = Box::pin(self.drain());
                    step.await;
                }
                let step = Box::pin(self.maybe_stop());
                step.await;
                self.closing.retain(|t| !t.is_finished());
                if handled >= MAX_INPUTS_PER_WAKE {
                    smol::future::yield_now().await;
                }
            }
            let step = Box::pin(self.finish());
            step.await;
        }
    }

    /// Delivers the streams' pending `lagged` notices where there is room
    /// now; while one still waits, when to try again. A reader that fell
    /// behind and caught up hears what it missed even if no event follows.
    fn lagged_retry(&self) -> Option<Instant> {
        if !self.lagging.load(Ordering::Relaxed) {
            return None;
        }
        let mut subs = self.subscribers.lock().expect("not poisoned");
        subs.retain_mut(|s| s.flush_lagged());
        let lagging = subs.iter().any(|s| s.lagging());
        self.lagging.store(lagging, Ordering::Relaxed);
        lagging.then(|| Instant::now() + LAGGED_RETRY)
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
        all.or(self.runtime.sleep_for(CLOSE_GRACE)).await;
        self.publish_status();
        self.log_limits.flush();
        let mut subs = self.subscribers.lock().expect("not poisoned");
        // A last chance for a pending lagged notice: the stream ends here.
        for s in subs.iter_mut() {
            s.flush_lagged();
        }
        subs.clear();
        drop(subs);
        tracing::info!("session stopped");
    }

    fn publish_status(&self) {
        *self.status.lock().expect("not poisoned") = self.node.status();
    }

    async fn handle(&mut self, msg: Msg) {
        let now = self.now();
        match msg {
            Msg::Socket(attempt, ev) => {
                let read = matches!(ev, SocketEvent::Frame(_));
                self.socket_event(now, attempt, ev);
                if read {
                    // Its effects (a raised frame limit among them) first,
                    // then the socket may read on: one frame in flight per
                    // socket, so a flooding peer meets TCP backpressure,
                    // not a growing queue.
                    self.drain().await;
                    if let Some(handled) =
                        self.sockets.get(&attempt).and_then(|s| s.handled.as_ref())
                    {
                        let _ = handled.try_send(());
                    }
                }
            }
            Msg::InvokeDone { id, outcome } => {
                let outcome = *outcome;
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
            Msg::Control(cmd) => self.control(now, *cmd).await,
        }
        self.drain().await;
    }

    /// Tells the core of the pings and pongs its sockets heard since the
    /// last wake-up, each at the time it was heard: before anything else
    /// this wake-up brings, so that a deadline that fell due after a pong
    /// is judged with the pong known. A pong has no effect of its own.
    fn take_heard(&mut self) {
        for (&attempt, slot) in &self.sockets {
            if let Some(at) = slot.heard.as_ref().and_then(Heard::take) {
                let at = self.clock.time_of(at);
                self.node.handle_input(at, Input::Pong { attempt });
            }
        }
    }

    fn socket_event(&mut self, now: Time, attempt: AttemptId, ev: SocketEvent) {
        let input = match ev {
            SocketEvent::Queued => {
                tracing::debug!(attempt = attempt.0, "waiting for a handshake slot");
                Input::SocketQueued { attempt }
            }
            SocketEvent::Dialing => Input::SocketDialing { attempt },
            SocketEvent::Opened(opened) => {
                let Some(slot) = self.sockets.get_mut(&attempt) else {
                    // Closed while connecting: dropping the writer closes it
                    // (and the handshake slot is freed).
                    return;
                };
                let Opened {
                    writer,
                    limit,
                    handled,
                    heard,
                    slot: handshake,
                } = *opened;
                slot.writer = Some(writer);
                slot.limit = Some(limit);
                slot.handled = Some(handled);
                slot.heard = Some(heard);
                slot.handshake = Some(handshake);
                Input::SocketOpened { attempt }
            }
            SocketEvent::Frame(text) => return self.node.handle_frame(now, attempt, &text),
            SocketEvent::Closed { code, reason } => {
                self.sockets.remove(&attempt);
                Input::SocketClosed {
                    attempt,
                    code,
                    reason,
                }
            }
            SocketEvent::Failed(error) => {
                let error = *error;
                self.sockets.remove(&attempt);
                Input::SocketFailed { attempt, error }
            }
        };
        self.node.handle_input(now, input);
    }

    async fn control(&mut self, now: Time, cmd: Control) {
        match cmd {
            Control::Request {
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
            Control::Event {
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
            Control::Progress { id, chunk } => {
                // A stream is worth less than the connection: while the
                // socket's queue is half full, progress waits for nothing
                // and is dropped, so that it can never fill the queue and
                // fail the socket (results and events still fit).
                let backed_up = self
                    .sockets
                    .values()
                    .filter_map(|s| s.writer.as_ref())
                    .any(|w| w.len() >= WRITE_QUEUE / 2);
                if backed_up {
                    tracing::debug!(id, "progress dropped: the socket's queue is backed up");
                } else {
                    self.node
                        .handle_input(now, Input::InvokeProgress { id, chunk });
                }
            }
            Control::Reconfigure { config, reply } => {
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
                        crate::blocking::unblock(move || store.load_token(&url, &dev, NODE_ROLE))
                            .await;
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
            Control::Wake => self.node.handle_input(now, Input::Wake),
            Control::Stop => {
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
        loop {
            while let Some(effect) = self.node.poll_effect() {
                self.perform(effect).await;
            }
            let Some(attempt) = self.stalled.pop() else {
                return;
            };
            tracing::warn!(
                attempt = attempt.0,
                queued = WRITE_QUEUE,
                "the gateway is not reading; failing its socket"
            );
            let error = SocketError::Io(format!(
                "the gateway is not reading: {WRITE_QUEUE} frames queued"
            ));
            // Dropping the slot cancels its socket task: nothing more is
            // read from or written to a peer that stopped reading.
            self.sockets.remove(&attempt);
            let now = self.now();
            self.node
                .handle_input(now, Input::SocketFailed { attempt, error });
        }
    }
}
