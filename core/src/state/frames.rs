//! Frames on an attempt's socket (docs/protocol.md §2, §3): the challenge,
//! the signed connect, hello-ok or its refusal, and once admitted the
//! gateway's events and responses.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::{String, ToString};
use core::time::Duration;

use serde_json::Value;

use crate::config::SessionConfig;
use crate::conn::{Admitted, Conn};
use crate::effect::Effect;
use crate::frame::{self, GatewayError, Inbound, Key::Scalar, Payload};
use crate::handshake::{self, Challenge, HelloOk};
use crate::input::AttemptId;
use crate::invokes::Scope;
use crate::notification::{DisconnectReason, Notification};
use crate::payload::EventPayload;
use crate::policy::{self, AuthContext, Verdict};
use crate::time::{Time, millis};
use crate::{MAX_PROTOCOL, MIN_PROTOCOL, NODE_ROLE};

use super::next::Next;
use super::{NodeState, TokenRetry};

impl NodeState {
    pub(super) fn dispatch_frame(&mut self, now: Time, attempt: AttemptId, text: &str) {
        let parsed = match frame::parse_inbound(text) {
            Ok(f) => f,
            Err(e) => return self.out.reject(attempt, e.to_string()),
        };
        match &self.conn {
            Conn::AwaitChallenge { .. } => match parsed {
                Inbound::Event { event, payload, .. } if event == "connect.challenge" => {
                    match Challenge::read(payload.and_then(|p| p.raw())) {
                        Some(challenge) => self.send_connect(now, attempt, &challenge),
                        None => self.end_attempt(
                            now,
                            DisconnectReason::ProtocolViolation(
                                "connect.challenge without a string nonce and an integer ts".into(),
                            ),
                            Some((1002, "invalid connect challenge")),
                            Next::BACKOFF,
                        ),
                    }
                }
                other => self.out.reject(
                    attempt,
                    format!(
                        "unexpected frame before connect.challenge: {}",
                        describe(&other)
                    ),
                ),
            },
            Conn::AwaitHello { request_id, .. } => match parsed {
                Inbound::Response {
                    id,
                    ok,
                    payload,
                    error,
                } if id == *request_id => {
                    // hello-ok and refusals come once per attempt: read whole.
                    if ok {
                        let payload = payload.and_then(|p| frame::value(p).ok());
                        self.admit(now, attempt, payload.as_ref());
                    } else {
                        self.connect_refused(now, frame::gateway_error(error));
                    }
                }
                other => self.out.reject(
                    attempt,
                    format!("unexpected frame before hello-ok: {}", describe(&other)),
                ),
            },
            Conn::Admitted(_) => self.admitted_frame(now, attempt, parsed),
            _ => {}
        }
    }

    fn send_connect(&mut self, now: Time, attempt: AttemptId, challenge: &Challenge) {
        let Some(config) = &self.config else { return };
        let request_id = format!("connect-{}", attempt.0);
        let text = handshake::connect_frame(
            &self.identity,
            config,
            self.stored_token.as_ref(),
            self.token_retry.active,
            challenge,
            &request_id,
        );
        self.out.send(attempt, text);
        self.conn = Conn::AwaitHello {
            attempt,
            deadline: now.deadline_after(self.options.timeouts.hello),
            request_id,
        };
    }

    fn admit(&mut self, now: Time, attempt: AttemptId, payload: Option<&Value>) {
        let Some(hello) = HelloOk::read(payload) else {
            return self.end_attempt(
                now,
                DisconnectReason::ProtocolViolation("connect succeeded without hello-ok".into()),
                Some((1002, "expected hello-ok")),
                Next::BACKOFF,
            );
        };
        let protocol = hello.protocol.unwrap_or(u64::from(MAX_PROTOCOL));
        let Some(protocol) = u32::try_from(protocol)
            .ok()
            .filter(|p| (MIN_PROTOCOL..=MAX_PROTOCOL).contains(p))
        else {
            let (why, verdict) = policy::unsupported_protocol(protocol);
            let Verdict::Pause(reason, cause) = verdict else {
                unreachable!("an unsupported protocol always pauses")
            };
            return self.end_attempt(
                now,
                DisconnectReason::ProtocolViolation(why),
                Some((1002, "unsupported protocol")),
                Next::Pause(reason, cause),
            );
        };
        // Clamped, so that no gateway can turn the watchdog into a loop
        // (1 ms) or switch it off (1e12 ms).
        let t = &self.options.timeouts;
        let tick_ms = hello
            .tick_interval_ms
            .filter(|t| *t > 0)
            .unwrap_or(millis(t.default_tick_interval))
            .min(millis(t.max_tick_interval))
            .max(millis(t.min_tick_interval))
            .max(1);
        let max_payload = hello
            .max_payload
            .map(|m| usize::try_from(m).unwrap_or(usize::MAX))
            .unwrap_or(DEFAULT_MAX_PAYLOAD);
        let floor = self.options.limits.min_max_payload;
        if max_payload < floor {
            let why = format!(
                "hello-ok policy.maxPayload of {max_payload} bytes is below the {floor} bytes an invoke answer needs"
            );
            return self.end_attempt(
                now,
                DisconnectReason::ProtocolViolation(why),
                Some((1002, "maxPayload too small")),
                Next::BACKOFF,
            );
        }
        let conn_id = hello.conn_id.unwrap_or_default();
        let role = hello.role.unwrap_or_else(|| NODE_ROLE.into());

        self.restart_window = None;
        self.token_retry = TokenRetry::default();
        self.out.counters.admissions += 1;
        self.backoff.admitted();
        self.invokes.admitted();
        self.conn = Conn::Admitted(Box::new(Admitted {
            attempt,
            admitted_at: now,
            conn_id: conn_id.clone(),
            max_payload,
            tick_timeout: Duration::from_millis(tick_ms.saturating_mul(2)),
            last_tick: now,
            next_ping: now.deadline_after(self.options.timeouts.ping_interval),
            pong_due: None,
            last_seq: None,
            restart_expected: None,
        }));
        if let Some(token) = hello.device_token
            && self.stored_token.as_ref() != Some(&token)
        {
            self.stored_token = Some(token.clone());
            if let Some(config) = &self.config {
                self.out.push(Effect::StoreDeviceToken {
                    url: config.url().clone(),
                    role,
                    token,
                });
            }
        }
        self.out.notify(Notification::Connected {
            attempt,
            conn_id,
            protocol,
            tick_interval_ms: tick_ms,
            max_payload,
            server_version: hello.server_version,
        });
    }

    fn connect_refused(&mut self, now: Time, err: GatewayError) {
        let ctx = AuthContext {
            has_device_token: self.stored_token.is_some()
                || self
                    .config
                    .as_ref()
                    .is_some_and(|c| c.credentials.device_token.is_some()),
            trusted_endpoint: self
                .config
                .as_ref()
                .is_some_and(SessionConfig::is_trusted_endpoint),
            device_token_retry_left: !self.token_retry.used && !self.token_retry.active,
        };
        // A device token the gateway no longer accepts is forgotten, once
        // for these inputs: sending it again could only fail again
        // (docs/protocol.md §4, row 4a).
        if err.detail_code.as_deref() == Some("AUTH_DEVICE_TOKEN_MISMATCH")
            && self.stored_token.is_some()
            && !self.token_retry.forgot
        {
            self.stored_token = None;
            self.token_retry.forgot = true;
            if let Some(config) = &self.config {
                self.out.push(Effect::ForgetDeviceToken {
                    url: config.url().clone(),
                    role: NODE_ROLE.into(),
                });
            }
        }
        let next = match policy::classify(&err, ctx) {
            Verdict::RetryWithDeviceToken => {
                self.token_retry = TokenRetry {
                    used: true,
                    active: true,
                    ..self.token_retry
                };
                Next::After(self.options.timeouts.device_token_retry)
            }
            Verdict::Backoff { retry_after } => Next::Backoff { retry_after },
            Verdict::Slow => Next::Slow,
            Verdict::Busy { retry_after } => Next::Busy { retry_after },
            Verdict::Pause(reason, cause) => Next::Pause(reason, cause),
        };
        self.end_attempt(
            now,
            DisconnectReason::Rejected(Box::new(err)),
            Some((1000, "connect refused")),
            next,
        );
    }

    fn admitted_frame(&mut self, now: Time, attempt: AttemptId, frame: Inbound) {
        match frame {
            Inbound::Event {
                event,
                payload,
                seq,
            } => {
                if let Some(seq) = seq {
                    self.track_seq(seq);
                }
                match &*event {
                    "tick" => {
                        if let Conn::Admitted(a) = &mut self.conn {
                            a.last_tick = now;
                        }
                    }
                    "node.invoke.request" => {
                        let commands = self.config.as_ref().map(|c| &c.client.commands);
                        let scope = Scope {
                            live: self.conn.link(),
                            device_id: self.identity.device_id(),
                            out: &mut self.out,
                        };
                        self.invokes.on_request(
                            scope,
                            now,
                            attempt,
                            payload.map(Payload::invoke_request).unwrap_or_default(),
                            commands,
                            &self.options,
                        );
                    }
                    "node.invoke.input" => {
                        let (invokes, scope) = self.invokes();
                        invokes.on_input(scope, attempt, payload.and_then(|p| p.raw()));
                    }
                    "node.invoke.cancel" => {
                        let (invokes, scope) = self.invokes();
                        invokes.on_cancel(scope, now, attempt, payload.and_then(|p| p.raw()));
                    }
                    _ => {
                        // Handed on as the gateway wrote it (`EventPayload`).
                        let raw = payload.and_then(|p| p.raw());
                        if event == "shutdown" {
                            let [wait] =
                                frame::payload_members(raw, &[Scalar("restartExpectedMs")]);
                            let wait = Duration::from_millis(wait.uint().unwrap_or(0));
                            if let Conn::Admitted(a) = &mut self.conn {
                                a.restart_expected = Some(wait);
                            }
                        }
                        let payload = raw.map(EventPayload::from_raw);
                        self.out.notify(Notification::GatewayEvent {
                            event: event.into_owned(),
                            payload,
                            seq,
                        });
                    }
                }
            }
            Inbound::Response {
                id,
                ok,
                payload,
                error,
            } => self
                .invokes
                .on_response(&mut self.out, attempt, &id, ok, payload, error),
            Inbound::Request { method, .. } => self.out.reject(
                attempt,
                format!("unexpected request {method:?} from the gateway"),
            ),
        }
    }

    fn track_seq(&mut self, seq: u64) {
        let Conn::Admitted(a) = &mut self.conn else {
            return;
        };
        if let Some(last) = a.last_seq {
            if seq <= last {
                return;
            }
            if seq > last + 1 {
                self.out.notify(Notification::SeqGap {
                    expected: last + 1,
                    got: seq,
                });
            }
        }
        a.last_seq = Some(seq);
    }
}

/// The maximum frame size assumed when hello-ok gives none
/// (docs/protocol.md §2).
const DEFAULT_MAX_PAYLOAD: usize = 25 * 1024 * 1024;

fn describe(frame: &Inbound) -> String {
    match frame {
        Inbound::Event { event, .. } => format!("event {event:?}"),
        Inbound::Response { id, .. } => format!("response to {id:?}"),
        Inbound::Request { method, .. } => format!("request {method:?}"),
    }
}
