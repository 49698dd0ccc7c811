//! Commands a node serves: what a handler receives ([`Invocation`]), how it
//! fails ([`CommandError`]), and the registry of handlers by name.

use std::fmt;
use std::future::Future;
use std::pin::Pin as StdPin;
use std::sync::Arc;

use serde_json::Value;

/// Sends `node.event`s for a command (e.g. `exec.finished`) on the node's
/// connection. Events sent before the command answers go out before its
/// answer. Sending never blocks; an event the session cannot send (the
/// connection is gone) is dropped, as upstream drops it.
#[derive(Clone)]
pub struct Emitter(Arc<SendEvent>);

type SendEvent = dyn Fn(&str, Value) + Send + Sync;

impl Emitter {
    /// Events handed to `send`.
    pub fn new(send: impl Fn(&str, Value) + Send + Sync + 'static) -> Self {
        Emitter(Arc::new(send))
    }

    /// Events dropped (a command run outside a session, in tests).
    pub fn discard() -> Self {
        Emitter::new(|_, _| {})
    }

    /// Sends `event` with `payload`.
    pub fn send(&self, event: &str, payload: Value) {
        (self.0)(event, payload);
    }
}

impl fmt::Debug for Emitter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Emitter")
    }
}

/// A running invoke's output stream to the gateway
/// (`node.invoke.progress`): chunks go out in order, before the invoke's
/// answer, cut to the gateway's 16 KiB limit and numbered by the core.
/// Sending never blocks; once the invoke has answered or was cancelled,
/// chunks are dropped and reported by the session.
#[derive(Clone)]
pub struct Progress(Arc<SendProgress>);

type SendProgress = dyn Fn(String) + Send + Sync;

impl Progress {
    /// Chunks handed to `send`.
    pub fn new(send: impl Fn(String) + Send + Sync + 'static) -> Self {
        Progress(Arc::new(send))
    }

    /// Chunks dropped (a command run outside a session, in tests).
    pub fn discard() -> Self {
        Progress::new(|_| {})
    }

    /// Streams `chunk`; an empty chunk is a heartbeat.
    pub fn send(&self, chunk: impl Into<String>) {
        (self.0)(chunk.into());
    }
}

impl fmt::Debug for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Progress")
    }
}

/// How many `node.invoke.input` payloads (each at most 16 KiB) may wait
/// for a command to read them; one more aborts the invoke, as upstream
/// fails closed when its input buffer overflows.
pub const INPUT_QUEUE: usize = 64;

/// Input the gateway streams to a running invoke (`node.invoke.input`),
/// as JSON text, in order.
#[derive(Clone, Debug)]
pub struct InvokeInput(Option<async_channel::Receiver<String>>);

impl InvokeInput {
    /// A stream fed through `sender`, holding at most [`INPUT_QUEUE`].
    pub fn channel() -> (async_channel::Sender<String>, Self) {
        let (tx, rx) = async_channel::bounded(INPUT_QUEUE);
        (tx, InvokeInput(Some(rx)))
    }

    /// No input ever (a command run outside a session).
    pub fn none() -> Self {
        InvokeInput(None)
    }

    /// The next input; `None` once the invoke can get no more.
    pub async fn recv(&self) -> Option<String> {
        self.0.as_ref()?.recv().await.ok()
    }

    /// The next input if one is waiting.
    pub fn try_recv(&self) -> Option<String> {
        self.0.as_ref()?.try_recv().ok()
    }
}

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
    /// Where the command's `node.event`s go (its emitter).
    pub emitter: Emitter,
    /// The invoke's output stream (`node.invoke.progress`).
    pub progress: Progress,
    /// The invoke's input stream (`node.invoke.input`).
    pub input: InvokeInput,
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

#[cfg(feature = "smol")]
pub(crate) use registry::{Registry, run};

/// The registry of the smol driver's handlers.
#[cfg(feature = "smol")]
mod registry {
    use std::collections::{BTreeSet, HashMap};
    use std::future::Future;
    use std::sync::Arc;

    use clawnode_core::InvokeOutcome;
    use serde_json::Value;

    use super::{CommandError, CommandFuture, Emitter, Invocation, InvokeInput, Progress};

    /// A registered handler. Shared (`Arc`) because each invoke runs in its own
    /// task, which holds the handler while it runs.
    #[derive(Clone)]
    pub(crate) struct Handler {
        call: Arc<dyn Fn(Invocation) -> CommandFuture + Send + Sync>,
        /// The largest `paramsJSON` it takes, checked before it is parsed.
        max_params: Option<usize>,
    }

    /// The handlers by command name.
    #[derive(Default)]
    pub(crate) struct Registry {
        handlers: HashMap<String, Handler>,
    }

    impl Registry {
        /// Registers `handler` as `name`, replacing any handler of that name.
        pub(crate) fn insert<F, Fut>(&mut self, name: impl Into<String>, handler: F)
        where
            F: Fn(Invocation) -> Fut + Send + Sync + 'static,
            Fut: Future<Output = Result<Value, CommandError>> + Send + 'static,
        {
            let handler = Handler {
                call: Arc::new(move |inv| Box::pin(handler(inv))),
                max_params: None,
            };
            self.handlers.insert(name.into(), handler);
        }

        /// Refuses `paramsJSON` longer than `bytes` for `command`, before
        /// it is parsed.
        pub(crate) fn limit_params(&mut self, command: &str, bytes: usize) {
            if let Some(h) = self.handlers.get_mut(command) {
                h.max_params = Some(bytes);
            }
        }

        /// The handler of `command`.
        pub(crate) fn get(&self, command: &str) -> Option<Handler> {
            self.handlers.get(command).cloned()
        }

        /// Keeps only the handlers `keep` accepts.
        pub(crate) fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
            self.handlers.retain(|name, _| keep(name));
        }

        /// The registered names: the commands the node declares.
        pub(crate) fn names(&self) -> BTreeSet<String> {
            self.handlers.keys().cloned().collect()
        }
    }

    /// Runs one invoke to its outcome: parses `paramsJSON`, calls the handler
    /// and turns its result into the answer the core sends.
    pub(crate) async fn run(
        handler: Handler,
        id: String,
        command: String,
        params_json: Option<String>,
        idempotency_key: Option<String>,
        streams: (Emitter, Progress, InvokeInput),
    ) -> InvokeOutcome {
        let (events, progress, input) = streams;
        let params = match params_json.as_deref() {
            None => Ok(Value::Null),
            // The limit holds before parsing: a long document costs nothing.
            Some(p) if handler.max_params.is_some_and(|max| p.len() > max) => {
                Err(CommandError::new(
                    "INVALID_REQUEST",
                    format!(
                        "{command}: paramsJSON of {} bytes is over this command's limit of {} bytes",
                        p.len(),
                        handler.max_params.unwrap_or_default()
                    ),
                ))
            }
            Some(p) => serde_json::from_str::<Value>(p).map_err(|e| {
                CommandError::new("INVALID_PARAMS", format!("paramsJSON is not JSON: {e}"))
            }),
        };
        let result = match params {
            Ok(params) => {
                use smol::future::FutureExt as _;
                let name = command.clone();
                let call = (handler.call)(Invocation {
                    id,
                    command,
                    params,
                    idempotency_key,
                    emitter: events,
                    progress,
                    input,
                });
                // A handler that panics still gets its invoke answered: the
                // gateway never waits out the deadline on a slot it holds.
                match std::panic::AssertUnwindSafe(call).catch_unwind().await {
                    Ok(result) => result,
                    Err(_) => {
                        tracing::error!(command = name, "command handler panicked");
                        Err(CommandError::new("UNAVAILABLE", "node invocation failed"))
                    }
                }
            }
            Err(e) => Err(e),
        };
        let large = params_json.as_ref().is_some_and(|p| p.len() > LARGE);
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
        if large
            || matches!(&outcome, InvokeOutcome::Ok { payload_json: Some(p) } if p.len() > LARGE)
        {
            drop(params_json);
            release_freed_memory();
        }
        outcome
    }

    /// An invoke whose params or answer is over this many bytes has the
    /// memory it freed handed back to the system when it is done.
    const LARGE: usize = 256 << 10;

    /// Hands memory the allocator keeps after a large invoke back to the
    /// system: parsing and answering a 1 MiB document frees tens of MiB in
    /// small pieces, which glibc's allocator otherwise keeps in its arenas
    /// (docs/exec-host.md §11.4).
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    fn release_freed_memory() {
        // SAFETY: malloc_trim only returns free memory to the system; it
        // takes no pointer and is safe to call from any thread.
        unsafe {
            libc::malloc_trim(0);
        }
    }

    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    fn release_freed_memory() {}

    #[cfg(test)]
    mod tests {
        use super::*;

        fn answer(registry: &Registry, name: &str, params: Option<&str>) -> InvokeOutcome {
            let (_, input) = InvokeInput::channel();
            smol::block_on(run(
                registry.get(name).expect("registered"),
                "i1".into(),
                name.into(),
                params.map(str::to_owned),
                None,
                (Emitter::discard(), Progress::discard(), input),
            ))
        }

        #[test]
        fn a_panicking_handler_is_answered_and_a_long_params_refused_unparsed() {
            let mut registry = Registry::default();
            registry.insert("boom", |_inv: Invocation| async { panic!("boom") });
            registry.insert("echo", |inv: Invocation| async move { Ok(inv.params) });
            registry.limit_params("echo", 8);
            match answer(&registry, "boom", None) {
                InvokeOutcome::Err { code, .. } => assert_eq!(code, "UNAVAILABLE"),
                other => panic!("{other:?}"),
            }
            // Over the limit, even when not JSON: refused for its length.
            match answer(&registry, "echo", Some("{not json at all")) {
                InvokeOutcome::Err { code, message } => {
                    assert_eq!(code, "INVALID_REQUEST");
                    assert!(message.contains("limit of 8 bytes"), "{message}");
                }
                other => panic!("{other:?}"),
            }
            assert!(matches!(
                answer(&registry, "echo", Some("[1]")),
                InvokeOutcome::Ok { .. }
            ));
        }
    }
}
