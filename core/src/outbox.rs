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
    /// The oldest waiting effect. Most inputs produce one effect at most,
    /// so it waits here, without an allocation.
    first: Option<Effect>,
    /// The effects behind it, in order.
    rest: VecDeque<Effect>,
    pub counters: Counters,
}

impl Outbox {
    pub fn push(&mut self, effect: Effect) {
        if self.first.is_none() && self.rest.is_empty() {
            self.first = Some(effect);
        } else {
            self.rest.push_back(effect);
        }
    }

    /// The next effect. Once the queue is empty its buffer is released: an
    /// idle session holds none (a burst of effects allocates one anew).
    pub fn pop(&mut self) -> Option<Effect> {
        if let Some(effect) = self.first.take() {
            return Some(effect);
        }
        let effect = self.rest.pop_front();
        if effect.is_none() && self.rest.capacity() > 0 {
            self.rest = VecDeque::new();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ping(n: u64) -> Effect {
        Effect::SendPing {
            attempt: AttemptId(n),
        }
    }

    #[test]
    fn effects_come_out_in_order_however_they_interleave() {
        let mut out = Outbox::default();
        out.push(ping(1));
        out.push(ping(2));
        assert_eq!(out.pop(), Some(ping(1)));
        out.push(ping(3));
        assert_eq!(out.pop(), Some(ping(2)));
        assert_eq!(out.pop(), Some(ping(3)));
        assert_eq!(out.pop(), None);
        assert_eq!(out.rest.capacity(), 0, "the burst's buffer is released");
        out.push(ping(4));
        assert_eq!(out.rest.capacity(), 0, "one effect needs no buffer");
        assert_eq!(out.pop(), Some(ping(4)));
        assert_eq!(out.pop(), None);
    }
}
