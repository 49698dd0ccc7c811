//! The queue of effects waiting for the driver, and the running totals.
//!
//! Every part of the session machine reports through the one [`Outbox`], so
//! effects come out in the order they were decided and every frame sent or
//! rejected is counted in one place.

use alloc::collections::VecDeque;
use alloc::string::String;

use crate::effect::Effect;
use crate::input::AttemptId;
use crate::notification::Notification;
use crate::status::Counters;

#[derive(Clone, Debug, Default)]
pub(crate) struct Outbox {
    effects: VecDeque<Effect>,
    pub counters: Counters,
}

impl Outbox {
    pub fn push(&mut self, effect: Effect) {
        self.effects.push_back(effect);
    }

    /// The next effect. Once the queue is empty its buffer is released: an
    /// idle session holds none (a burst of effects allocates one anew).
    pub fn pop(&mut self) -> Option<Effect> {
        let effect = self.effects.pop_front();
        if effect.is_none() && self.effects.capacity() > 0 {
            self.effects = VecDeque::new();
        }
        effect
    }

    pub fn notify(&mut self, notification: Notification) {
        self.push(Effect::Notify(notification));
    }

    /// Queues a text frame for the socket of `attempt`.
    pub fn send(&mut self, attempt: AttemptId, text: String) {
        self.counters.frames_out += 1;
        self.push(Effect::SendFrame { attempt, text });
    }

    /// Reports a frame the session could not use; the connection stays.
    pub fn reject(&mut self, attempt: AttemptId, reason: String) {
        self.counters.frames_rejected += 1;
        self.notify(Notification::FrameRejected { attempt, reason });
    }
}
