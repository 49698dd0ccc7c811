//! What the driver makes of the core's notifications: a log line (peer
//! text clipped, peer-driven warnings rate-limited), the event for the
//! application, and, on admission, the raised inbound frame limit.

use std::time::Instant;

use clawnode_core::{DisconnectReason, Notification};

use super::Session;
use crate::event;
use crate::node::log_limit::clip;

impl Session {
    pub(super) fn notify(&mut self, n: Notification) {
        match &n {
            Notification::Connected {
                attempt,
                conn_id,
                protocol,
                max_payload,
                ..
            } => {
                if let Some(socket) = self.sockets.get_mut(attempt) {
                    // Admitted: the gateway may now send up to its
                    // maxPayload, and the handshake slot goes to another.
                    if let Some(limit) = &socket.limit {
                        limit.raise(*max_payload);
                    }
                    socket.handshake = None;
                }
                tracing::info!(attempt = attempt.0, conn_id = %clip(conn_id), protocol, "connected");
            }
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
                    tracing::info!(attempt = attempt.0, %code, reason = %clip(&why), retry_in_ms, "disconnected");
                } else {
                    tracing::warn!(attempt = attempt.0, %code, reason = %clip(&why), retry_in_ms, "disconnected");
                }
            }
            Notification::Paused(p) => {
                tracing::error!(
                    code = %clip(p.code()),
                    hint = %clip(&p.hint),
                    "paused: not reconnecting until the configuration changes"
                );
            }
            Notification::SeqGap { expected, got } => {
                if self.log_limits.seq_gap.allow(Instant::now()) {
                    tracing::warn!(expected, got, "event sequence gap");
                }
            }
            Notification::GatewayEvent { event, seq, .. } => {
                tracing::debug!(event = %clip(event), seq, "gateway event");
            }
            Notification::InvokeDropped { id, reason } => {
                if self.log_limits.invoke_dropped.allow(Instant::now()) {
                    tracing::warn!(id = %clip(id), reason = %clip(&format!("{reason:?}")), "invoke answer not delivered");
                }
            }
            Notification::ProgressDropped { id, reason } => {
                if self.log_limits.invoke_dropped.allow(Instant::now()) {
                    tracing::warn!(id = %clip(id), reason = %clip(&format!("{reason:?}")), "invoke progress not sent");
                }
            }
            Notification::InvokeRefused {
                id,
                command,
                reason,
            } => {
                if self.log_limits.invoke_refused.allow(Instant::now()) {
                    tracing::warn!(id = %clip(id), command = %clip(command), ?reason, "invoke refused");
                }
            }
            Notification::FrameRejected { attempt, reason } => {
                if self.log_limits.frame_rejected.allow(Instant::now()) {
                    tracing::warn!(attempt = attempt.0, reason = %clip(reason), "frame rejected");
                }
            }
            other => tracing::debug!(notification = ?other, "notification"),
        }
        if let Some(e) = event::into_event(n) {
            self.emit(e);
        }
    }
}
