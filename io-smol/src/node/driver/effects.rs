//! The effects the core asks for, performed: sockets opened, written and
//! closed, invokes started, fed and cancelled, device tokens stored and
//! forgotten, answers handed back.

use clawnode_core::{
    AttemptId, CancelReason, Effect, GatewayUrl, InvokeOutcome, Secret, TlsPolicy,
};
use smol::channel;

use super::{Session, SocketSlot};
use crate::command;
use crate::event::Event;
use crate::node::admission::Admission;
use crate::node::error::RequestFailure;
use crate::node::msg::{Msg, Outgoing, WRITE_QUEUE};
use crate::node::socket::socket_task;

impl Session {
    /// Performs `effect`.
    pub(super) async fn perform(&mut self, effect: Effect) {
        match effect {
            Effect::OpenSocket { attempt, url, tls } => self.open_socket(attempt, url, tls),
            Effect::SendFrame { attempt, text } => self.write(attempt, Outgoing::Text(text)),
            Effect::SendPing { attempt } => self.write(attempt, Outgoing::Ping),
            Effect::CloseSocket {
                attempt,
                code,
                reason,
            } => self.close_socket(attempt, code, reason),
            Effect::Invoke(req) => self.start_invoke(req),
            Effect::InvokeInput {
                id,
                seq,
                payload_json,
            } => self.invoke_input(id, seq, payload_json),
            Effect::CancelInvoke { id, reason } => self.cancel_invoke(id, reason),
            Effect::StoreDeviceToken { url, role, token } => {
                self.store_token(url, role, token).await;
            }
            Effect::ForgetDeviceToken { url, role } => self.forget_token(url, role).await,
            Effect::Response { id, result } => {
                if let Some(reply) = self.pending.remove(&id) {
                    let _ = reply.try_send(result.map_err(RequestFailure::from));
                }
            }
            Effect::Notify(n) => self.notify(n),
        }
    }

    /// Starts the socket task of `attempt`, behind a handshake slot of the
    /// session's admission.
    fn open_socket(&mut self, attempt: AttemptId, url: GatewayUrl, tls: TlsPolicy) {
        tracing::info!(attempt = attempt.0, %url, "connecting");
        self.emit(Event::Connecting {
            attempt: attempt.0,
            url: url.to_string(),
        });
        let admission = match &self.admission {
            Some(a) => a.clone(),
            None => Admission::for_gateway(&url),
        };
        let task = self.runtime.spawn(socket_task(
            attempt,
            url,
            tls,
            self.store.clone(),
            admission,
            self.runtime.clone(),
            self.tx.clone(),
        ));
        self.sockets.insert(
            attempt,
            SocketSlot {
                task,
                writer: None,
                limit: None,
                handshake: None,
                handled: None,
                heard: None,
            },
        );
    }

    /// Closes the socket of `attempt` after the frames already queued; one
    /// still connecting is abandoned.
    fn close_socket(&mut self, attempt: AttemptId, code: u16, reason: String) {
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

    /// Hands a `node.invoke.input` to its running invoke.
    fn invoke_input(&mut self, id: String, seq: u64, payload_json: String) {
        let Some(inv) = self.invokes.get_mut(&id) else {
            return;
        };
        if let Err(channel::TrySendError::Full(_)) = inv.input.try_send(payload_json) {
            // The command does not read its input fast enough (or at
            // all): fail closed, as upstream does past 64 KiB. The
            // handler is dropped; the answer says why.
            tracing::warn!(id, seq, "invoke input overflowed; the invoke is aborted");
            drop(std::mem::replace(
                &mut inv.task,
                self.runtime.spawn(async {}),
            ));
            // Later input goes nowhere (and aborts nothing twice).
            inv.input = channel::bounded(1).0;
            let outcome = InvokeOutcome::Err {
                code: "UNAVAILABLE".into(),
                message: format!(
                    "more than {} inputs waited unread; the invoke was aborted",
                    command::INPUT_QUEUE
                ),
            };
            let _ = self.tx.try_send(Msg::InvokeDone {
                id,
                outcome: Box::new(outcome),
            });
        }
    }

    /// Drops a cancelled invoke's handler and reports it.
    fn cancel_invoke(&mut self, id: String, reason: CancelReason) {
        if let Some(inv) = self.invokes.remove(&id) {
            drop(inv.task);
            let ms = u64::try_from(inv.started.elapsed().as_millis()).unwrap_or(u64::MAX);
            let why = match reason {
                CancelReason::Gateway => "cancelled by the gateway",
                CancelReason::Deadline => "deadline passed",
                CancelReason::Disconnected => "connection ended",
                _ => "cancelled",
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

    /// Stores the device token the gateway issued, off the executor.
    async fn store_token(&self, url: GatewayUrl, role: String, token: Secret) {
        let (store, dev) = (self.store.clone(), self.device_id.clone());
        let url_text = url.as_str().to_owned();
        let role2 = role.clone();
        match crate::blocking::unblock(move || store.store_token(&url_text, &dev, &role2, &token))
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

    /// Forgets the device token the gateway rejected, off the executor.
    async fn forget_token(&self, url: GatewayUrl, role: String) {
        let (store, dev) = (self.store.clone(), self.device_id.clone());
        let url_text = url.as_str().to_owned();
        let role2 = role.clone();
        match crate::blocking::unblock(move || store.forget_token(&url_text, &dev, &role2)).await {
            Ok(_) => tracing::warn!(
                %url,
                role,
                "the gateway rejected the stored device token; forgot it"
            ),
            Err(e) => {
                tracing::error!(%url, role, error = %e, "could not forget the device token")
            }
        }
    }

    /// Queues `out` for the socket of `attempt`. The queue is bounded to
    /// [`WRITE_QUEUE`] frames here (its channel is not, so that an idle
    /// socket holds no preallocated slots): a gateway that stops reading
    /// fills it, and its socket is then failed (the core backs off) instead
    /// of the queue growing.
    pub(super) fn write(&mut self, attempt: AttemptId, out: Outgoing) {
        let Some(slot) = self.sockets.get_mut(&attempt) else {
            return;
        };
        if let Some(w) = &slot.writer
            && (w.len() >= WRITE_QUEUE || w.try_send(out).is_err())
            && !w.is_closed()
        {
            slot.writer = None;
            self.stalled.push(attempt);
        }
    }
}
