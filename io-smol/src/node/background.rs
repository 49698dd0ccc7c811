//! What a task started beside a session ([`NodeBuilder::background`](crate::NodeBuilder::background))
//! gets: the session's events, a sender of `node.event`s, and the node's
//! own timer, so that it runs wholly on the node's runtime.

use std::fmt;
use std::time::Instant;

use smol::channel::Receiver;

use crate::command::Emitter;
use crate::event::Event;
use crate::runtime::Runtime;

/// The session as a background task sees it.
pub struct Background {
    /// The session's events, from its very first one (bounded as
    /// [`NodeBuilder::events`](crate::NodeBuilder::events)); the stream
    /// ends when the session stops, and so should the task.
    pub events: Receiver<Event>,
    /// Sends `node.event`s on the session's connection.
    pub emitter: Emitter,
    runtime: Runtime,
}

impl fmt::Debug for Background {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Background").finish_non_exhaustive()
    }
}

impl Background {
    pub(super) fn new(events: Receiver<Event>, emitter: Emitter, runtime: Runtime) -> Self {
        Background {
            events,
            emitter,
            runtime,
        }
    }

    /// Ends at `at`, on the node's runtime (tokio's timer wheel on tokio,
    /// async-io's timer on smol).
    pub async fn sleep_until(&self, at: Instant) {
        self.runtime.sleep_until(at).await;
    }
}
