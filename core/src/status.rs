//! What the session reports about itself: [`Phase`], [`Counters`] and the
//! [`Status`] snapshot.

use alloc::string::String;

use crate::input::AttemptId;
use crate::notification::{DisconnectReason, PauseReason};
use crate::time::Time;

/// The session's phase, as reported by [`Status`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Phase {
    /// No config applied yet.
    Idle,
    /// Waiting before the next attempt.
    Waiting,
    /// A socket is being opened.
    Connecting,
    /// The socket is open; challenge and connect are under way.
    Handshaking,
    /// Admitted by the gateway.
    Connected,
    /// Stopped on a terminal failure until the config changes.
    Paused,
    /// Stopped by the application.
    Stopped,
}

/// Running totals since construction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Sockets asked for.
    pub attempts: u64,
    /// hello-oks received.
    pub admissions: u64,
    /// Attempts that ended (admitted or not).
    pub disconnects: u64,
    /// Frames received on current attempts.
    pub frames_in: u64,
    /// Frames sent.
    pub frames_out: u64,
    /// Frames from the gateway the session could not use.
    pub frames_rejected: u64,
    /// Invokes handed to the application.
    pub invokes: u64,
    /// Invoke results sent on behalf of the application.
    pub invoke_results: u64,
    /// Invokes the core answered itself (timeout, busy, undeclared).
    pub invokes_refused: u64,
    /// Invoke answers that could not be sent.
    pub invokes_dropped: u64,
    /// `node.invoke.progress` chunks sent.
    pub progress_chunks: u64,
    /// Progress the application gave for an invoke not running on the
    /// admitted connection, or too large for `policy.maxPayload`.
    pub progress_dropped: u64,
    /// `node.invoke.input` frames handed to the application.
    pub invoke_inputs: u64,
}

/// A snapshot of the session.
#[derive(Clone, Debug, PartialEq)]
pub struct Status {
    /// The phase.
    pub phase: Phase,
    /// The current attempt, if a socket is wanted.
    pub attempt: Option<AttemptId>,
    /// `server.connId` while connected.
    pub conn_id: Option<String>,
    /// The last reason an attempt ended.
    pub last_error: Option<DisconnectReason>,
    /// Why the session is paused.
    pub paused: Option<PauseReason>,
    /// When the next attempt starts, while waiting.
    pub next_retry: Option<Time>,
    /// Invokes running now.
    pub running_invokes: usize,
    /// Requests awaiting a response now.
    pub pending_requests: usize,
    /// Totals.
    pub counters: Counters,
}

impl Default for Status {
    /// The status of a session before anything was applied.
    fn default() -> Self {
        Status {
            phase: Phase::Idle,
            attempt: None,
            conn_id: None,
            last_error: None,
            paused: None,
            next_retry: None,
            running_invokes: 0,
            pending_requests: 0,
            counters: Counters::default(),
        }
    }
}
