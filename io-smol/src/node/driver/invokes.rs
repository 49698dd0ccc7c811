//! Invokes the core hands over: each command's handler in a task of its
//! own, its events and output queued to the driver in order with its
//! answer.

use std::time::Instant;

use clawnode_core::{InvokeOutcome, InvokeRequest};
use smol::channel::{self, Sender};

use super::{RunningInvoke, Session};
use crate::command;
use crate::node::msg::{Control, Msg};

impl Session {
    pub(super) fn start_invoke(&mut self, req: InvokeRequest) {
        let InvokeRequest {
            id,
            command,
            params_json,
            idempotency_key,
            ..
        } = req;
        let Some(handler) = self.handlers.get(&command) else {
            // Unreachable while declared commands are the handlers; answer
            // rather than leave the gateway waiting.
            let outcome = InvokeOutcome::Err {
                code: "UNAVAILABLE".into(),
                message: format!("no handler for {command:?}"),
            };
            let _ = self.tx.try_send(Msg::InvokeDone {
                id,
                outcome: Box::new(outcome),
            });
            return;
        };
        tracing::info!(id, command, "invoke");
        let tx = self.tx.clone();
        let inv_id = id.clone();
        let name = command.clone();
        let events = node_events(self.tx.clone());
        let progress = invoke_progress(self.tx.clone(), id.clone());
        let (input_tx, input) = command::InvokeInput::channel();
        let task = self.runtime.spawn(async move {
            let outcome = command::run(
                handler,
                inv_id.clone(),
                name,
                params_json,
                idempotency_key,
                (events, progress, input),
            )
            .await;
            let _ = tx
                .send(Msg::InvokeDone {
                    id: inv_id,
                    outcome: Box::new(outcome),
                })
                .await;
        });
        self.invokes.insert(
            id,
            RunningInvoke {
                task,
                command,
                started: Instant::now(),
                input: input_tx,
            },
        );
    }
}

/// A command's output stream, queued to the driver in order with its
/// events and before its answer; the driver drops chunks while the socket
/// is backed up.
fn invoke_progress(tx: Sender<Msg>, id: String) -> command::Progress {
    command::Progress::new(move |chunk| {
        if tx
            .try_send(Msg::Control(Box::new(Control::Progress {
                id: id.clone(),
                chunk,
            })))
            .is_err()
        {
            tracing::debug!(id, "progress chunk dropped: the session is far behind");
        }
    })
}

/// A command's `node.event`s, queued to the driver like the application's:
/// in order with the command's answer, which is queued after them.
pub(in crate::node) fn node_events(tx: Sender<Msg>) -> command::Emitter {
    command::Emitter::new(move |event, payload| {
        // Nobody waits for the gateway's acknowledgement.
        let (reply, _) = channel::bounded(1);
        let _ = tx.try_send(Msg::Control(Box::new(Control::Event {
            event: event.to_owned(),
            payload: Some(payload),
            reply,
        })));
    })
}
