//! The invariant checker itself: it must flag what it promises to flag, so
//! a green simulation or fuzz run means something.

use core::time::Duration;

use clawnode_core::sim::{Invariants, loopback_config};
use clawnode_core::{
    AttemptId, DisconnectReason, Effect, Input, NodeOptions, Notification, SocketError, Time,
};

const T: Time = Time::ZERO;
const A1: AttemptId = AttemptId(1);

fn checker() -> Invariants {
    let mut inv = Invariants::new(&NodeOptions::with_seed(1));
    inv.observe_input(T, &Input::Config(loopback_config()));
    inv
}

fn open(inv: &mut Invariants, a: AttemptId) {
    inv.observe_effect(
        T,
        &Effect::OpenSocket {
            attempt: a,
            url: loopback_config().url().clone(),
            tls: loopback_config().tls().clone(),
        },
    )
    .unwrap();
}

fn frame(a: AttemptId, method: &str) -> Effect {
    Effect::SendFrame {
        attempt: a,
        text: format!(r#"{{"type":"req","id":"x-{method}","method":"{method}","params":{{}}}}"#),
    }
}

fn rule(r: Result<(), clawnode_core::sim::Violation>) -> &'static str {
    r.expect_err("a violation").rule
}

#[test]
fn flags_a_second_open_attempt() {
    let mut inv = checker();
    open(&mut inv, A1);
    let e = Effect::OpenSocket {
        attempt: AttemptId(2),
        url: loopback_config().url().clone(),
        tls: loopback_config().tls().clone(),
    };
    assert_eq!(rule(inv.observe_effect(T, &e)), "at-most-one-open-attempt");
}

#[test]
fn flags_a_frame_before_the_socket_opened() {
    let mut inv = checker();
    open(&mut inv, A1);
    assert_eq!(
        rule(inv.observe_effect(T, &frame(A1, "connect"))),
        "no-frame-unless-socket-open"
    );
}

#[test]
fn flags_a_first_frame_that_is_not_connect_and_anything_before_hello_ok() {
    let mut inv = checker();
    open(&mut inv, A1);
    inv.observe_input(T, &Input::SocketOpened { attempt: A1 });
    assert_eq!(
        rule(inv.observe_effect(T, &frame(A1, "node.event"))),
        "connect-is-the-first-frame"
    );
    inv.observe_effect(T, &frame(A1, "connect")).unwrap();
    assert_eq!(
        rule(inv.observe_effect(T, &frame(A1, "node.event"))),
        "nothing-before-hello-ok"
    );
}

#[test]
fn flags_connected_without_hello_ok_and_twice() {
    let mut inv = checker();
    open(&mut inv, A1);
    inv.observe_input(T, &Input::SocketOpened { attempt: A1 });
    inv.observe_effect(T, &frame(A1, "connect")).unwrap();
    let connected = Effect::Notify(Notification::Connected {
        attempt: A1,
        conn_id: "c".into(),
        protocol: 4,
        tick_interval_ms: 30_000,
        max_payload: 1 << 20,
        server_version: None,
    });
    assert_eq!(
        rule(inv.observe_effect(T, &connected)),
        "connected-only-after-hello-ok"
    );
    let hello = r#"{"type":"res","id":"x-connect","ok":true,"payload":{"type":"hello-ok"}}"#;
    inv.observe_input(
        T,
        &Input::Frame {
            attempt: A1,
            text: hello.into(),
        },
    );
    inv.observe_effect(T, &connected).unwrap();
    assert_eq!(
        rule(inv.observe_effect(T, &connected)),
        "connected-once-per-admission"
    );
}

#[test]
fn flags_a_leaked_socket_and_an_out_of_bounds_backoff() {
    let mut inv = checker();
    open(&mut inv, A1);
    let gone = |retry: Duration| {
        Effect::Notify(Notification::Disconnected {
            attempt: A1,
            was_connected: false,
            reason: DisconnectReason::OpenTimeout,
            retry_in: Some(retry),
        })
    };
    assert_eq!(
        rule(inv.observe_effect(T, &gone(Duration::from_millis(700)))),
        "no-leaked-sockets"
    );
    inv.observe_input(
        T,
        &Input::SocketFailed {
            attempt: A1,
            error: SocketError::Io("refused".into()),
        },
    );
    // The first failure's delay lies in 0.5–1 s.
    assert_eq!(
        rule(inv.observe_effect(T, &gone(Duration::from_millis(100)))),
        "backoff-within-bounds"
    );
}

#[test]
fn flags_a_stale_input_that_changes_something_through_the_wrapper() {
    // The wrapper compares status and effects around a stale input; with a
    // correct core that is always fine.
    let options = NodeOptions::with_seed(1);
    let mut inv = Invariants::new(&options);
    let mut node = clawnode_core::NodeState::new(clawnode_core::sim::test_key(1), options);
    inv.input(&mut node, T, Input::Config(loopback_config()))
        .unwrap();
    for a in [AttemptId(0), AttemptId(2), AttemptId(99)] {
        let effects = inv
            .input(&mut node, T, Input::SocketOpened { attempt: a })
            .unwrap();
        assert!(effects.is_empty());
    }
    assert!(
        inv.timeout(&mut node, T + Duration::from_secs(3600))
            .is_ok()
    );
}

#[test]
fn flags_an_invoke_id_handed_to_the_application_twice() {
    let mut inv = checker();
    open(&mut inv, A1);
    inv.observe_input(T, &Input::SocketOpened { attempt: A1 });
    inv.observe_effect(T, &frame(A1, "connect")).unwrap();
    let hello = r#"{"type":"res","id":"x-connect","ok":true,"payload":{"type":"hello-ok"}}"#;
    let request = r#"{"type":"event","event":"node.invoke.request","payload":{"id":"i1","nodeId":"n","command":"echo"}}"#;
    for text in [hello, request, request] {
        inv.observe_input(
            T,
            &Input::Frame {
                attempt: A1,
                text: text.into(),
            },
        );
    }
    let invoke = Effect::Invoke(clawnode_core::InvokeRequest {
        attempt: A1,
        id: "i1".into(),
        command: "echo".into(),
        params_json: None,
        deadline: T + Duration::from_secs(30),
        idempotency_key: None,
    });
    inv.observe_effect(T, &invoke).unwrap();
    let later = T + Duration::from_secs(5);
    assert_eq!(rule(inv.observe_effect(later, &invoke)), "invoke-runs-once");
}
