//! Invoke and request bookkeeping (docs/protocol.md §6).
//!
//! [`Invokes`] tracks the gateway's invokes from request to answer, the
//! acknowledgements of the answers sent, and the application's own requests
//! until their responses. It knows nothing of phases: the session machine
//! tells it which connection is admitted, as a [`Link`], on every call.

use alloc::borrow::{Cow, ToOwned};
use alloc::boxed::Box;
use alloc::collections::btree_map::Entry;
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::time::Duration;

use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::MAX_PROGRESS_CHUNK;
use crate::effect::{
    CancelReason, Effect, InvokeRequest, RequestError, RequestId, SendRefusal, SendRefused,
};
use crate::frame::{
    self, ErrorBody, EventParams, Field, Key::Scalar, ProgressParams, ResultParams,
};
use crate::input::{AttemptId, InvokeOutcome};
use crate::notification::{DropReason, InvokeRefusal, Notification};
use crate::options::NodeOptions;
use crate::outbox::Outbox;
use crate::recent::Recent;
use crate::time::Time;
use crate::timer::{Deadline, TimerReason};

/// The admitted connection: the only one answers and requests go out on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Link {
    /// Its attempt.
    pub attempt: AttemptId,
    /// hello-ok's `policy.maxPayload`: no frame sent may be larger.
    pub max_payload: usize,
}

/// What every call needs from the session around it.
pub(crate) struct Scope<'a> {
    /// The admitted connection, if any.
    pub live: Option<Link>,
    /// This node's device id, which every invoke answer carries.
    pub device_id: &'a str,
    /// Where effects go.
    pub out: &'a mut Outbox,
}

#[derive(Clone, Debug)]
struct Running {
    attempt: AttemptId,
    deadline: Time,
    idempotency_key: Option<String>,
    /// The `seq` of the next progress chunk sent.
    progress_seq: u64,
    /// The `seq` of the next input expected from the gateway; `None`
    /// once `u64::MAX` was taken (nothing can follow it).
    input_seq: Option<u64>,
}

/// The invokes running and the requests in flight.
#[derive(Clone, Debug)]
pub(crate) struct Invokes {
    /// Invokes handed to the application and not yet answered, by id. An
    /// invoke of a connection that ended stays until the application
    /// answers, so its id is never reused for a newer invoke's answer.
    running: BTreeMap<String, Running>,
    /// The idempotency keys of `running`, for a lookup, not a scan.
    running_keys: BTreeSet<String>,
    /// Ids and idempotency keys of invokes that finished: a repeat is
    /// refused, never run twice.
    finished_ids: Recent,
    finished_keys: Recent,
    /// How long and how many of them are remembered.
    remember_for: Duration,
    remember_max: usize,
    /// How many of `running` belong to the admitted connection: kept, not
    /// counted, so the busy check costs the same with 16 running as with 0.
    live_running: usize,
    /// Frame ids of sent `node.invoke.result` requests → invoke ids.
    acks: BTreeMap<String, String>,
    /// The application's requests awaiting a response, with deadlines.
    requests: BTreeMap<RequestId, Time>,
    /// The next frame id number, shared by requests (`r…`) and invoke
    /// answers (`ir…`).
    next_frame: u64,
}

impl Invokes {
    pub fn new(remember_for: Duration, remember_max: usize) -> Self {
        Invokes {
            running: BTreeMap::new(),
            running_keys: BTreeSet::new(),
            finished_ids: Recent::default(),
            finished_keys: Recent::default(),
            remember_for,
            remember_max,
            live_running: 0,
            acks: BTreeMap::new(),
            requests: BTreeMap::new(),
            next_frame: 1,
        }
    }

    /// Hashes what decides the bookkeeping's future (feature `sim`).
    #[cfg(feature = "sim")]
    pub fn fingerprint(&self, h: &mut impl core::hash::Hasher, now: Time, next_attempt: u64) {
        use core::hash::Hash as _;
        for (id, r) in &self.running {
            let rel = next_attempt.saturating_sub(r.attempt.0);
            (
                id,
                rel,
                r.deadline.saturating_since(now),
                &r.idempotency_key,
                r.progress_seq,
                r.input_seq,
            )
                .hash(h);
        }
        self.live_running.hash(h);
        self.acks.len().hash(h);
        for deadline in self.requests.values() {
            deadline.saturating_since(now).hash(h);
        }
        self.finished_ids.fingerprint(h, now);
        self.finished_keys.fingerprint(h, now);
    }

    /// Invokes running now, on any connection.
    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// Requests awaiting a response now.
    pub fn pending_requests(&self) -> usize {
        self.requests.len()
    }

    /// The earliest invoke or request deadline; invokes first on a tie.
    pub fn next_deadline(&self) -> Option<Deadline> {
        let at = |t: Option<Time>, reason| t.map(|at| Deadline { at, reason });
        Deadline::earliest(
            at(
                self.running.values().map(|i| i.deadline).min(),
                TimerReason::InvokeExpiry,
            ),
            at(
                self.requests.values().min().copied(),
                TimerReason::RequestExpiry,
            ),
        )
    }

    /// A new connection was admitted: none of its invokes is running yet.
    pub fn admitted(&mut self) {
        self.live_running = 0;
    }

    /// The connection of `attempt` ended: its requests fail, answers in
    /// flight are forgotten, and its invokes are cancelled (their ids stay
    /// held until the application answers).
    pub fn connection_ended(&mut self, attempt: AttemptId, out: &mut Outbox) {
        for (id, _) in core::mem::take(&mut self.requests) {
            out.push(Effect::Response {
                id,
                result: Err(RequestError::Disconnected),
            });
        }
        self.acks.clear();
        for (id, inv) in &self.running {
            if inv.attempt == attempt {
                out.push(Effect::CancelInvoke {
                    id: id.clone(),
                    reason: CancelReason::Disconnected,
                });
            }
        }
    }

    /// `node.invoke.request` on `attempt`: hands it to the application, or
    /// answers it in the application's stead (undeclared, busy, duplicate).
    pub fn on_request(
        &mut self,
        s: Scope<'_>,
        now: Time,
        attempt: AttemptId,
        request: [Field<'_>; 5],
        commands: Option<&BTreeSet<String>>,
        options: &NodeOptions,
    ) {
        let [id, command, params_json, timeout_ms, key] = request;
        let (Some(id), Some(command)) = (id.text(), command.text()) else {
            s.out.counters.invokes_refused += 1;
            return s.out.reject(
                attempt,
                "node.invoke.request without a string id and command".into(),
            );
        };
        let key = key.text();
        let max = options.limits.max_invoke_id;
        if id.len() > max || key.as_ref().is_some_and(|k| k.len() > max) {
            s.out.counters.invokes_refused += 1;
            return s.out.reject(
                attempt,
                format!("node.invoke.request with an id or idempotencyKey over {max} bytes"),
            );
        }
        // Read with one allocation of the right size: it is most of the
        // frame. A string that is not text (a lone surrogate) is refused,
        // never run without its params.
        let params_json = match params_json.raw() {
            // Not a string: as if absent.
            Some(raw) if raw.get().starts_with('"') => {
                frame::decode_string(raw).map(Some).ok_or(())
            }
            _ => Ok(None),
        };
        // One walk of the running invokes finds a duplicate and, when there
        // is none, the place the new one goes.
        let running = match self.running.entry(id.into_owned()) {
            Entry::Occupied(i) => {
                let refusal = if i.get().attempt == attempt {
                    (InvokeRefusal::Duplicate, "", String::new())
                } else {
                    // The id is still held by an invoke of a dead connection
                    // whose answer may yet come; it must never be sent as
                    // this one's.
                    (
                        InvokeRefusal::Busy,
                        "UNAVAILABLE",
                        format!(
                            "invoke {:?} from an earlier connection is still finishing",
                            i.key()
                        ),
                    )
                };
                let id = i.key().clone();
                return self.refuse(s, attempt, id, command.into_owned(), refusal);
            }
            Entry::Vacant(v) => v,
        };
        let live_running = if s.live.is_some() {
            self.live_running
        } else {
            0
        };
        let refusal = if self.finished_ids.contains(running.key(), now)
            || key.as_deref().is_some_and(|k| {
                self.finished_keys.contains(k, now) || self.running_keys.contains(k)
            }) {
            Some((
                InvokeRefusal::Repeated,
                "INVALID_REQUEST",
                format!(
                    "invoke {:?} was already handled; it is not run again",
                    running.key()
                ),
            ))
        } else if params_json.is_err() {
            Some((
                InvokeRefusal::Malformed,
                "INVALID_REQUEST",
                "paramsJSON is not valid text (a lone surrogate escape)".into(),
            ))
        } else if !commands.is_some_and(|c| c.contains(&*command)) {
            Some((
                InvokeRefusal::Undeclared,
                "INVALID_REQUEST",
                format!("command {command:?} is not declared by this node"),
            ))
        } else {
            (live_running >= options.max_concurrent_invokes).then(|| {
                (
                    InvokeRefusal::Busy,
                    "UNAVAILABLE",
                    format!("node busy: {live_running} invokes already running"),
                )
            })
        };
        if let Some(refusal) = refusal {
            let id = running.into_key();
            return self.refuse(s, attempt, id, command.into_owned(), refusal);
        }
        let params_json = params_json.ok().flatten();
        let t = &options.timeouts;
        let timeout = timeout_ms
            .uint()
            .map(Duration::from_millis)
            .unwrap_or(t.default_invoke)
            .min(t.max_invoke);
        let deadline = now.deadline_after(timeout);
        let id = running.key().clone();
        let command = command.into_owned();
        let key = key.map(Cow::into_owned);
        running.insert(Running {
            attempt,
            deadline,
            idempotency_key: key.clone(),
            progress_seq: 0,
            input_seq: Some(0),
        });
        if let Some(k) = &key {
            self.running_keys.insert(k.clone());
        }
        if s.live.is_some() {
            self.live_running += 1;
        }
        s.out.counters.invokes += 1;
        s.out.push(Effect::Invoke(InvokeRequest {
            attempt,
            id,
            command,
            params_json,
            deadline,
            idempotency_key: key,
        }));
    }

    /// Refuses invoke `id`: answered with an error unless it is a
    /// duplicate of one running on this connection, and reported.
    fn refuse(
        &mut self,
        s: Scope<'_>,
        attempt: AttemptId,
        id: String,
        command: String,
        (reason, code, message): (InvokeRefusal, &str, String),
    ) {
        s.out.counters.invokes_refused += 1;
        if reason != InvokeRefusal::Duplicate {
            self.send_error(s.live, s.device_id, s.out, attempt, &id, code, &message);
        }
        s.out.notify(Notification::InvokeRefused {
            id,
            command,
            reason,
        });
    }

    /// `node.invoke.cancel` on `attempt`: cancels the invoke if it is this
    /// connection's.
    pub fn on_cancel(
        &mut self,
        s: Scope<'_>,
        now: Time,
        attempt: AttemptId,
        payload: Option<&RawValue>,
    ) {
        let [invoke_id, id] = frame::payload_members(payload, &[Scalar("invokeId"), Scalar("id")]);
        let id = match invoke_id {
            Field::Absent => id,
            given => given,
        }
        .text();
        let Some(id) = id else {
            return s
                .out
                .reject(attempt, "node.invoke.cancel without invokeId".into());
        };
        if self.running.get(&*id).is_some_and(|i| i.attempt == attempt) {
            self.forget(s.live, now, &id);
            s.out.push(Effect::CancelInvoke {
                id: id.into_owned(),
                reason: CancelReason::Gateway,
            });
        }
    }

    /// Streamed output of a running invoke: sent in pieces of at most
    /// [`MAX_PROGRESS_CHUNK`] bytes, each with the next `seq`, only on the
    /// invoke's own admitted connection and only while it runs.
    pub fn on_progress(&mut self, s: Scope<'_>, id: String, chunk: &str) {
        let Some(inv) = self.running.get_mut(&id) else {
            return progress_dropped(s.out, id, DropReason::NotRunning);
        };
        let Some(link) = s.live.filter(|l| l.attempt == inv.attempt) else {
            return progress_dropped(s.out, id, DropReason::StaleAttempt);
        };
        let mut rest = chunk;
        loop {
            let mut cut = rest.len().min(MAX_PROGRESS_CHUNK);
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
            let (piece, tail) = rest.split_at(cut);
            let frame_id = format!("ip{}", self.next_frame);
            let text = frame::request(
                &frame_id,
                "node.invoke.progress",
                &ProgressParams {
                    invoke_id: &id,
                    node_id: s.device_id,
                    seq: inv.progress_seq,
                    chunk: piece,
                },
            );
            if text.len() > link.max_payload {
                return progress_dropped(s.out, id, DropReason::TooLarge);
            }
            self.next_frame += 1;
            inv.progress_seq += 1;
            s.out.counters.progress_chunks += 1;
            s.out.send(link.attempt, text);
            rest = tail;
            if rest.is_empty() {
                return;
            }
        }
    }

    /// `node.invoke.input` on `attempt`: handed to the application when it
    /// is for an invoke of this connection and not older than expected.
    pub fn on_input(&mut self, s: Scope<'_>, attempt: AttemptId, payload: Option<&RawValue>) {
        let [id, seq, input] = frame::payload_members(
            payload,
            &[Scalar("id"), Scalar("seq"), Scalar("payloadJSON")],
        );
        let (Some(seq), Some(id), Some(input)) = (seq.uint(), id.text(), input.text()) else {
            return s.out.reject(
                attempt,
                "node.invoke.input without a string id, a seq and a payloadJSON string".into(),
            );
        };
        if input.len() > MAX_PROGRESS_CHUNK {
            return s.out.reject(
                attempt,
                format!(
                    "node.invoke.input of {} bytes, over {MAX_PROGRESS_CHUNK}",
                    input.len()
                ),
            );
        }
        let Some(inv) = self
            .running
            .get_mut(&*id)
            .filter(|i| i.attempt == attempt && i.input_seq.is_some_and(|next| seq >= next))
        else {
            // Not this connection's running invoke, or a repeat: the
            // official host drops these too.
            return s.out.reject(
                attempt,
                format!("node.invoke.input for {id:?} seq {seq}: not running here or not new"),
            );
        };
        inv.input_seq = seq.checked_add(1);
        s.out.counters.invoke_inputs += 1;
        s.out.push(Effect::InvokeInput {
            id: id.into_owned(),
            seq,
            payload_json: input.into_owned(),
        });
    }

    /// The application's answer to an invoke.
    pub fn on_answer(&mut self, s: Scope<'_>, now: Time, id: String, outcome: InvokeOutcome) {
        let Some(inv) = self.forget(s.live, now, &id) else {
            return dropped(s.out, id, DropReason::NotRunning);
        };
        let Some(link) = s.live.filter(|l| l.attempt == inv.attempt) else {
            return dropped(s.out, id, DropReason::StaleAttempt);
        };
        let params = match &outcome {
            InvokeOutcome::Ok { payload_json } => ResultParams {
                id: &id,
                node_id: s.device_id,
                ok: true,
                payload_json: payload_json.as_deref(),
                error: None,
            },
            InvokeOutcome::Err { code, message } => ResultParams {
                id: &id,
                node_id: s.device_id,
                ok: false,
                payload_json: None,
                error: Some(ErrorBody { code, message }),
            },
        };
        let (ack, text) = self.encode_result(&params);
        if text.len() > link.max_payload {
            let msg = format!(
                "result of {} bytes exceeds the gateway's maxPayload of {}",
                text.len(),
                link.max_payload
            );
            let sent = self.send_error(
                s.live,
                s.device_id,
                s.out,
                inv.attempt,
                &id,
                "PAYLOAD_TOO_LARGE",
                &msg,
            );
            if sent {
                dropped(s.out, id, DropReason::TooLarge);
            }
            return;
        }
        s.out.counters.invoke_results += 1;
        self.commit(s.out, link.attempt, ack, id, text);
    }

    /// A response frame on `attempt`: the acknowledgement of an answer, or
    /// the response to one of the application's requests.
    pub fn on_response(
        &mut self,
        out: &mut Outbox,
        attempt: AttemptId,
        id: &str,
        ok: bool,
        payload: Option<&RawValue>,
        error: Option<&RawValue>,
    ) {
        if let Some(invoke) = self.acks.remove(id) {
            if !ok {
                out.counters.invokes_dropped += 1;
                out.notify(Notification::InvokeDropped {
                    id: invoke,
                    reason: DropReason::Rejected(Box::new(frame::gateway_error(error))),
                });
            }
        } else if self.is_progress_frame(id) {
            // A progress chunk's acknowledgement: nothing waits for it.
        } else if let Some(rid) = parse_request_frame_id(id)
            && self.requests.contains_key(&rid)
        {
            let result = if ok {
                match payload.map(frame::value).transpose() {
                    Ok(p) => Ok(p.unwrap_or(Value::Null)),
                    Err(e) => {
                        return out.reject(
                            attempt,
                            format!("response to {id:?} with an unreadable payload: {e}"),
                        );
                    }
                }
            } else {
                Err(RequestError::Gateway(Box::new(frame::gateway_error(error))))
            };
            self.requests.remove(&rid);
            out.push(Effect::Response { id: rid, result });
        } else {
            out.reject(attempt, format!("response to unknown request id {id:?}"));
        }
    }

    /// Answers every invoke whose deadline passed with `TIMEOUT` (on the
    /// admitted connection) and fails every request whose deadline passed.
    pub fn expire(&mut self, s: Scope<'_>, now: Time) {
        let expired: Vec<(String, AttemptId)> = self
            .running
            .iter()
            .filter(|(_, i)| i.deadline <= now)
            .map(|(id, i)| (id.clone(), i.attempt))
            .collect();
        for (id, attempt) in expired {
            self.forget(s.live, now, &id);
            if s.live.is_some_and(|l| l.attempt == attempt) {
                s.out.counters.invokes_refused += 1;
                self.send_error(
                    s.live,
                    s.device_id,
                    s.out,
                    attempt,
                    &id,
                    "TIMEOUT",
                    "the node did not answer before the invoke deadline",
                );
                s.out.push(Effect::CancelInvoke {
                    id,
                    reason: CancelReason::Deadline,
                });
            }
        }
        let expired: Vec<RequestId> = self
            .requests
            .iter()
            .filter(|(_, deadline)| **deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            self.requests.remove(&id);
            s.out.push(Effect::Response {
                id,
                result: Err(RequestError::Timeout),
            });
        }
    }

    /// Sends one of the application's requests on the admitted connection.
    pub fn send_request<P: Serialize + ?Sized>(
        &mut self,
        out: &mut Outbox,
        live: Option<Link>,
        method: &str,
        params: &P,
        deadline: Time,
    ) -> Result<RequestId, SendRefusal> {
        let Some(link) = live else {
            return Err(SendRefusal::NotConnected);
        };
        let id = RequestId(self.next_frame);
        let text = frame::request(&request_frame_id(id), method, params);
        if text.len() > link.max_payload {
            return Err(SendRefusal::TooLarge {
                size: text.len(),
                max: link.max_payload,
            });
        }
        self.next_frame += 1;
        self.requests.insert(id, deadline);
        out.send(link.attempt, text);
        Ok(id)
    }

    /// [`send_request`](Self::send_request) for `node.event`: `payload`
    /// goes as `payloadJSON` text.
    pub fn send_event(
        &mut self,
        out: &mut Outbox,
        live: Option<Link>,
        event: &str,
        payload: Option<&Value>,
        deadline: Time,
    ) -> Result<RequestId, SendRefusal> {
        let payload_json = payload.map(ToString::to_string);
        let params = EventParams {
            event,
            payload_json: payload_json.as_deref(),
        };
        self.send_request(out, live, "node.event", &params, deadline)
    }

    /// Removes a running invoke, keeping the admitted connection's count,
    /// and remembers its id and key so a repeat is refused.
    fn forget(&mut self, live: Option<Link>, now: Time, id: &str) -> Option<Running> {
        let inv = self.running.remove(id)?;
        if live.is_some_and(|l| l.attempt == inv.attempt) {
            self.live_running = self.live_running.saturating_sub(1);
        }
        let (keep, max) = (self.remember_for, self.remember_max);
        self.finished_ids.insert(id.to_owned(), now, keep, max);
        if let Some(k) = &inv.idempotency_key {
            self.running_keys.remove(k);
            self.finished_keys.insert(k.clone(), now, keep, max);
        }
        Some(inv)
    }

    /// Whether `id` is exactly the frame id of a progress chunk sent.
    fn is_progress_frame(&self, id: &str) -> bool {
        id.strip_prefix("ip")
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|n| n < self.next_frame && format!("ip{n}") == id)
    }

    fn encode_result(&self, params: &ResultParams<'_>) -> (String, String) {
        let ack = format!("ir{}", self.next_frame);
        let text = frame::request(&ack, "node.invoke.result", params);
        (ack, text)
    }

    fn commit(
        &mut self,
        out: &mut Outbox,
        attempt: AttemptId,
        ack: String,
        id: String,
        text: String,
    ) {
        self.next_frame += 1;
        self.acks.insert(ack, id);
        out.send(attempt, text);
    }

    /// Sends an error answer the core makes itself (refusal, timeout, too
    /// large). Even these must fit `policy.maxPayload`; one that does not is
    /// reported dropped instead. Returns whether it was sent.
    #[allow(clippy::too_many_arguments)]
    fn send_error(
        &mut self,
        live: Option<Link>,
        device_id: &str,
        out: &mut Outbox,
        attempt: AttemptId,
        invoke_id: &str,
        code: &str,
        message: &str,
    ) -> bool {
        let Some(link) = live.filter(|l| l.attempt == attempt) else {
            dropped(out, invoke_id.to_owned(), DropReason::StaleAttempt);
            return false;
        };
        let (ack, text) = self.encode_result(&ResultParams {
            id: invoke_id,
            node_id: device_id,
            ok: false,
            payload_json: None,
            error: Some(ErrorBody { code, message }),
        });
        if text.len() > link.max_payload {
            dropped(out, invoke_id.to_owned(), DropReason::TooLarge);
            return false;
        }
        self.commit(out, attempt, ack, invoke_id.to_owned(), text);
        true
    }
}

fn progress_dropped(out: &mut Outbox, id: String, reason: DropReason) {
    out.counters.progress_dropped += 1;
    out.notify(Notification::ProgressDropped { id, reason });
}

fn dropped(out: &mut Outbox, id: String, reason: DropReason) {
    out.counters.invokes_dropped += 1;
    out.notify(Notification::InvokeDropped { id, reason });
}

fn request_frame_id(id: RequestId) -> String {
    format!("r{}", id.0)
}

/// The request id whose frame id is exactly `id` (so `r+1` and `r01` are
/// not `r1`).
fn parse_request_frame_id(id: &str) -> Option<RequestId> {
    let rid = RequestId(id.strip_prefix('r')?.parse().ok()?);
    (request_frame_id(rid) == id).then_some(rid)
}

/// Hands the params back with the refusal, for
/// [`NodeState::send_request`](crate::NodeState::send_request).
pub(crate) fn refused(reason: SendRefusal, method: &str, params: Value) -> SendRefused {
    SendRefused {
        reason,
        method: method.to_owned(),
        params,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_frame_ids_match_exactly() {
        assert_eq!(parse_request_frame_id("r1"), Some(RequestId(1)));
        for other in ["r01", "r+1", "1", "ir1", "r"] {
            assert_eq!(parse_request_frame_id(other), None, "{other}");
        }
    }

    #[test]
    fn answers_serialise_the_official_shape() {
        let p = ResultParams {
            id: "i1",
            node_id: "dev",
            ok: false,
            payload_json: None,
            error: Some(ErrorBody {
                code: "TIMEOUT",
                message: "m",
            }),
        };
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"id":"i1","nodeId":"dev","ok":false,"error":{"code":"TIMEOUT","message":"m"}})
        );
    }
}
