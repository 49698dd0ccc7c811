//! TLS and driver tests against local servers (no real gateway needed).

use std::time::Duration;

use clawnode_core::{GatewayUrl, PinSet, Secret, SessionConfig, SocketError, TlsPolicy};
use serde_json::json;
use smol::io::AsyncReadExt as _;

use crate::__testutil::*;
use crate::store::StateDir;
use crate::tls::{TlsAttempt, Trust};
use crate::transport::{Io, Net, open_io, tls_handshake};
use crate::{Event, NodeBuilder};

fn url(s: &str) -> GatewayUrl {
    GatewayUrl::parse(s).unwrap()
}

fn pinned(pins: &[&str]) -> TlsPolicy {
    TlsPolicy::pinned(pins).unwrap()
}

/// A TLS server presenting `c`'s certificate, signed with its own key.
fn serve(c: &TestCert) -> TlsServer {
    tls_server(server_config(&c.der, &c.key))
}

/// Opens a connection to `server` under a policy pinning `pin`, with its
/// state in `dir`.
async fn open_pinned(
    server: &TlsServer,
    pin: &str,
    dir: &tempfile::TempDir,
) -> Result<Io, SocketError> {
    open_io(
        &url(&server.url()),
        &pinned(&[pin]),
        &StateDir::new(dir.path()),
        Net::AsyncIo,
    )
    .await
}

async fn read_hi(io: &mut (impl smol::io::AsyncRead + Unpin)) {
    let mut buf = Vec::new();
    io.read_to_end(&mut buf).await.unwrap_or_default();
    assert_eq!(buf, b"hi");
}

#[test]
fn pin_match_connects() {
    let c = cert();
    let server = serve(&c);
    let dir = tempfile::tempdir().unwrap();
    smol::block_on(async {
        let mut io = open_pinned(&server, &c.pin.to_string(), &dir)
            .await
            .expect("pinned certificate accepted");
        read_hi(&mut io).await;
    });
}

#[test]
fn pin_mismatch_reports_expected_and_observed() {
    let (a, b) = (cert(), cert());
    let server = serve(&a);
    let dir = tempfile::tempdir().unwrap();
    smol::block_on(async {
        let err = open_pinned(&server, &b.pin.to_string(), &dir)
            .await
            .err()
            .expect("mismatch refused");
        assert_eq!(
            err,
            SocketError::PinMismatch {
                expected: vec![b.pin],
                observed: a.pin
            }
        );
    });
}

#[test]
fn pins_in_every_usual_spelling_are_accepted() {
    let c = cert();
    let server = serve(&c);
    let dir = tempfile::tempdir().unwrap();
    let hex = c.pin.to_string();
    let colons: Vec<String> = hex
        .to_uppercase()
        .as_bytes()
        .chunks(2)
        .map(|p| String::from_utf8(p.to_vec()).unwrap())
        .collect();
    for text in [
        format!("sha256:{hex}"),
        format!("SHA-256:{}", colons.join(":")),
        hex.to_uppercase(),
        colons.join(":"),
    ] {
        smol::block_on(async {
            open_pinned(&server, &text, &dir)
                .await
                .unwrap_or_else(|e| panic!("{text}: {e:?}"));
        });
    }
}

#[test]
fn garbage_pins_are_rejected_before_connecting() {
    for bad in ["zz", "sha256:abcd", "", &"a".repeat(65)] {
        let err = TlsPolicy::pinned([bad]).unwrap_err();
        assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
    }
}

#[test]
fn the_pinned_certificate_with_another_key_fails() {
    let (a, other) = (cert(), cert());
    // Presents a's certificate but signs the handshake with another key.
    let server = tls_server(server_config(&a.der, &other.key));
    let dir = tempfile::tempdir().unwrap();
    smol::block_on(async {
        let err = open_pinned(&server, &a.pin.to_string(), &dir)
            .await
            .err()
            .expect("a certificate without its key must not be accepted");
        assert!(matches!(err, SocketError::Tls(_)), "{err:?}");
    });
}

#[test]
fn resumption_cannot_skip_the_pin_check() {
    let (a, b) = (cert(), cert());
    let server = serve(&a);
    let target = url(&server.url());
    smol::block_on(async {
        // Control: a client that allows resumption does resume against
        // this server, so the server offers what the test needs.
        let mut default = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(std::sync::Arc::new(AcceptAll))
            .with_no_client_auth();
        default.resumption = rustls::client::Resumption::in_memory_sessions(8);
        let default = std::sync::Arc::new(default);
        for _ in 0..2 {
            let tcp = smol::net::TcpStream::connect(("127.0.0.1", server.port))
                .await
                .unwrap();
            let mut s = futures_rustls::TlsConnector::from(default.clone())
                .connect("localhost".try_into().unwrap(), tcp)
                .await
                .unwrap();
            read_hi(&mut s).await;
        }
        assert_eq!(server.resumed.load(std::sync::atomic::Ordering::SeqCst), 1);

        // Ours: every connection is a full handshake that sees the certificate.
        let pinned = |p| {
            TlsAttempt::with_trust(&target, Trust::Pinned(PinSet::new([p]).unwrap()), None).unwrap()
        };
        for _ in 0..3 {
            let tls = pinned(a.pin);
            let mut s = tls_handshake(&target, &tls, Net::AsyncIo).await.unwrap();
            assert_eq!(tls.observed_pin(), Some(a.pin));
            assert_eq!(
                s.get_ref().1.handshake_kind(),
                Some(rustls::HandshakeKind::Full)
            );
            read_hi(&mut s).await;
        }
        assert_eq!(server.resumed.load(std::sync::atomic::Ordering::SeqCst), 1);
        // And a pin that no longer matches is refused on the next connection.
        assert!(matches!(
            tls_handshake(&target, &pinned(b.pin), Net::AsyncIo)
                .await
                .err(),
            Some(SocketError::PinMismatch { .. })
        ));
    });
}

#[derive(Debug)]
struct AcceptAll;

impl rustls::client::danger::ServerCertVerifier for AcceptAll {
    fn verify_server_cert(
        &self,
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &[rustls_pki_types::CertificateDer<'_>],
        _: &rustls_pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        crate::tls::provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[test]
fn a_self_signed_server_fails_under_system_trust() {
    let c = cert();
    let server = serve(&c);
    let dir = tempfile::tempdir().unwrap();
    smol::block_on(async {
        let target = url(&format!("wss://localhost:{}", server.port));
        let err = open_io(
            &target,
            &TlsPolicy::SystemTrust,
            &StateDir::new(dir.path()),
            Net::AsyncIo,
        )
        .await
        .err()
        .expect("self-signed refused");
        assert!(
            matches!(&err, SocketError::Tls(m) if m.contains("certificate")),
            "{err:?}"
        );
    });
}

#[test]
fn tofu_stores_once_then_enforces() {
    let (a, b) = (cert(), cert());
    let server_a = serve(&a);
    let server_b = serve(&b);
    let dir = tempfile::tempdir().unwrap();
    let store = StateDir::new(dir.path());
    let policy = TlsPolicy::TrustOnFirstUse {
        store_key: "gateway:1".into(),
    };
    smol::block_on(async {
        assert_eq!(store.load_pin("gateway:1").unwrap(), None);
        let mut io = open_io(&url(&server_a.url()), &policy, &store, Net::AsyncIo)
            .await
            .unwrap();
        read_hi(&mut io).await;
        assert_eq!(store.load_pin("gateway:1").unwrap(), Some(a.pin));
        open_io(&url(&server_a.url()), &policy, &store, Net::AsyncIo)
            .await
            .unwrap();
        // The same key now presenting another certificate: refused, and
        // the stored pin is not replaced.
        let err = open_io(&url(&server_b.url()), &policy, &store, Net::AsyncIo)
            .await
            .err()
            .unwrap();
        assert_eq!(
            err,
            SocketError::PinMismatch {
                expected: vec![a.pin],
                observed: b.pin
            }
        );
        assert_eq!(store.load_pin("gateway:1").unwrap(), Some(a.pin));
    });
}

#[test]
fn probe_reports_the_leaf_pin() {
    let c = cert();
    let server = serve(&c);
    smol::block_on(async {
        let report = crate::probe(&url(&server.url())).await.unwrap();
        assert_eq!(report.pin, c.pin);
        assert_eq!(report.der, c.der);
    });
}

// ---- the driver --------------------------------------------------------

/// `system.which` reduced to what these tests of the driver need: a
/// command that answers from the file system. The node host's own is
/// tested in `clawnode-host`.
trait WithWhich {
    fn with_system_which(self) -> Self;
}

impl WithWhich for NodeBuilder {
    fn with_system_which(self) -> Self {
        self.command("system.which", |inv| async move {
            let path = std::env::var_os("PATH").unwrap_or_default();
            let mut bins = serde_json::Map::new();
            for name in inv.params["bins"].as_array().into_iter().flatten() {
                let Some(name) = name.as_str() else { continue };
                if let Some(found) = std::env::split_paths(&path)
                    .map(|dir| dir.join(name))
                    .find(|p| p.is_file())
                {
                    bins.insert(name.into(), json!(found.to_string_lossy()));
                }
            }
            Ok(json!({ "bins": bins }))
        })
    }
}

#[test]
fn the_driver_connects_serves_system_which_and_stops_with_1000() {
    connects_serves_system_which_and_stops(|b| b);
}

/// The same session on a tokio current-thread runtime of its own thread,
/// sockets and timers on tokio's reactor: after the first connection the
/// gateway drops it, and the backoff's sleep and the reconnect run on
/// tokio too.
#[cfg(feature = "tokio")]
#[test]
fn the_driver_runs_on_a_tokio_current_thread_runtime() {
    let runtime = crate::__testutil::current_thread_runtime();
    let handle = runtime.handle().clone();
    let (stop, stopped) = smol::channel::bounded::<()>(1);
    let thread = std::thread::spawn(move || {
        runtime.block_on(async move {
            let _ = stopped.recv().await;
        })
    });
    connects_serves_system_which_and_stops(|b| b.tokio(handle));
    drop(stop);
    thread.join().unwrap();
}

fn connects_serves_system_which_and_stops(on: impl FnOnce(NodeBuilder) -> NodeBuilder) {
    let gw = FakeGateway::start();
    let dir = tempfile::tempdir().unwrap();
    let store = StateDir::new(dir.path());
    let mut builder =
        on(NodeBuilder::new(node_config(&gw.url()), store.clone()).with_system_which());
    let events = builder.events();
    let node = builder.spawn().unwrap();
    smol::block_on(async {
        // A first connection the gateway drops: the node backs off and
        // comes back on its own.
        let first = accept_connected(&gw, &events).await;
        drop(first);
        next_event(&events, |e| matches!(e, Event::Disconnected { .. })).await;
        let mut ws = gw.accept().await;
        let params = handshake(&mut ws, Some("dev-token-1")).await;
        assert_eq!(params["commands"], json!(["system.which"]));
        assert_eq!(params["auth"]["token"], "shared-token");
        assert_eq!(params["device"]["id"], node.device_id());
        assert!(matches!(
            next_event(&events, |e| matches!(e, Event::Connected { .. })).await,
            Event::Connected { attempt: 2, conn_id, protocol: 4, .. } if conn_id == "c-1"
        ));

        send(
            &mut ws,
            json!({"type":"event","event":"node.invoke.request","payload":{
                "id":"inv-1","nodeId":node.device_id(),"command":"system.which",
                "paramsJSON":"{\"bins\":[\"sh\",\"no-such-bin-xyz\"]}","timeoutMs":5000}}),
        )
        .await;
        let result = recv(&mut ws).await.unwrap();
        assert_eq!(result["method"], "node.invoke.result", "{result}");
        let p = &result["params"];
        assert_eq!(p["id"], "inv-1");
        assert_eq!(p["ok"], true, "{p}");
        let payload: serde_json::Value =
            serde_json::from_str(p["payloadJSON"].as_str().unwrap()).unwrap();
        assert!(payload["bins"]["sh"].as_str().unwrap().ends_with("/sh"));
        assert!(payload["bins"].get("no-such-bin-xyz").is_none());
        send(
            &mut ws,
            json!({"type":"res","id":result["id"],"ok":true,"payload":{}}),
        )
        .await;
        assert!(matches!(
            next_event(&events, |e| matches!(e, Event::Invoke { .. })).await,
            Event::Invoke { ok: true, ref command, .. } if command == "system.which"
        ));

        // The issued device token was stored for (url, device, role).
        let url = GatewayUrl::parse(&gw.url()).unwrap();
        let stored = store
            .load_token(url.as_str(), node.device_id(), "node")
            .unwrap();
        assert_eq!(stored, Some(Secret::new("dev-token-1")));

        assert_eq!(node.status().session.phase, clawnode_core::Phase::Connected);
        let (_, code) =
            smol::future::zip(within(node.shutdown()), drain_until_closed(&mut ws)).await;
        assert_eq!(code, Some(1000));
    });
}

/// The gateway's pings and its pongs to ours reach the core without a
/// message each (the socket stamps them, the session takes the stamp when
/// it wakes): a gateway that answers stays connected, one that pings often
/// is not pinged back, and one that goes silent is closed with 4000.
#[test]
fn heard_pings_and_pongs_keep_the_session_and_silence_ends_it() {
    use async_tungstenite::tungstenite::Message;
    use clawnode_core::NodeOptions;
    use smol::future::FutureExt as _;
    use smol::stream::StreamExt as _;
    use std::time::Instant;

    /// Reads for `d`, answering the node's pings (tungstenite does, on
    /// read) and sending one of ours every `ping_every`; the node's pings.
    async fn serve(ws: &mut GwSocket, d: Duration, ping_every: Option<Duration>) -> usize {
        let end = Instant::now() + d;
        let mut pings = 0;
        let mut next_ping = Instant::now();
        while Instant::now() < end {
            if let Some(every) = ping_every
                && Instant::now() >= next_ping
            {
                ws.send(Message::Ping(Default::default())).await.unwrap();
                next_ping += every;
            }
            let wake = next_ping.min(end);
            let read = async { Some(ws.next().await) };
            let timeout = async {
                smol::Timer::at(wake).await;
                None
            };
            match read.or(timeout).await {
                Some(Some(Ok(Message::Ping(_)))) => pings += 1,
                Some(Some(Ok(Message::Close(_)) | Err(_)) | None) => panic!("the node left"),
                _ => {}
            }
        }
        pings
    }

    let gw = FakeGateway::start();
    let dir = tempfile::tempdir().unwrap();
    let mut options = NodeOptions::with_seed(1);
    options.timeouts.ping_interval = Duration::from_millis(300);
    options.timeouts.pong = Some(Duration::from_millis(300));
    let mut builder =
        NodeBuilder::new(node_config(&gw.url()), StateDir::new(dir.path())).options(options);
    let events = builder.events();
    let _node = builder.spawn().unwrap();
    smol::block_on(async {
        let mut ws = accept_connected(&gw, &events).await;
        // Quiet but answering: the node pings on its whole-second grid and
        // takes the pongs as proof of life.
        let answered = serve(&mut ws, Duration::from_millis(3500), None).await;
        assert!(answered >= 2, "{answered} pings in 3.5 s");
        // Pinging every 100 ms: proof enough, the node does not ping.
        let while_pinged = serve(
            &mut ws,
            Duration::from_millis(2500),
            Some(Duration::from_millis(100)),
        )
        .await;
        assert!(while_pinged <= 1, "{while_pinged} pings while pinged");
        while let Ok(e) = events.try_recv() {
            assert!(!matches!(e, Event::Disconnected { .. }), "{e:?}");
        }
        // Silent: not even read, so the node's next ping goes unanswered.
        let silent = Instant::now();
        let closed = next_event(&events, |e| matches!(e, Event::Disconnected { .. })).await;
        assert!(
            matches!(&closed, Event::Disconnected { code: crate::DisconnectCode::Close(4000), reason, .. } if reason == "pong timeout"),
            "{closed:?}"
        );
        assert!(
            silent.elapsed() < Duration::from_millis(2500),
            "{:?}",
            silent.elapsed()
        );
        drop(ws);
    });
}

/// A peer that floods pings cannot hold the executor: the socket reads
/// them without waking the session for each, and yields now and then, so
/// an invoke sent in the middle of the flood is answered during it.
#[test]
fn a_ping_flood_does_not_hold_the_executor() {
    use async_tungstenite::tungstenite::Message;
    use smol::stream::StreamExt as _;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Instant;

    let gw = FakeGateway::start();
    let dir = tempfile::tempdir().unwrap();
    let mut builder =
        NodeBuilder::new(node_config(&gw.url()), StateDir::new(dir.path())).with_system_which();
    let events = builder.events();
    let node = builder.spawn().unwrap();
    let ws = smol::block_on(accept_connected(&gw, &events));
    let (mut sink, mut stream) = ws.split();
    let flooding = std::sync::Arc::new(AtomicBool::new(true));
    let still = flooding.clone();
    // The flood runs on a thread of its own, not on the node's executor.
    let flood = std::thread::spawn(move || {
        smol::block_on(async {
            let mut sent = 0u64;
            while still.load(Ordering::Relaxed) {
                sink.send(Message::Ping(Default::default())).await.unwrap();
                sent += 1;
                if sent == 2000 {
                    sink.send(Message::text(
                        json!({"type":"event","event":"node.invoke.request","payload":{
                            "id":"inv-f","nodeId":"n","command":"system.which",
                            "paramsJSON":"{\"bins\":[\"sh\"]}","timeoutMs":5000}})
                        .to_string(),
                    ))
                    .await
                    .unwrap();
                }
            }
            sent
        })
    });
    let started = Instant::now();
    let answer = smol::block_on(within(async {
        loop {
            match stream.next().await {
                Some(Ok(Message::Text(t))) => {
                    let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
                    if v["method"] == "node.invoke.result" {
                        return v;
                    }
                }
                Some(Ok(_)) => {}
                other => panic!("the node left: {other:?}"),
            }
        }
    }));
    let took = started.elapsed();
    flooding.store(false, Ordering::Relaxed);
    let sent = flood.join().unwrap();
    assert_eq!(answer["params"]["id"], "inv-f", "{answer}");
    assert_eq!(answer["params"]["ok"], true, "{answer}");
    assert!(sent > 2000, "{sent} pings sent");
    println!(
        "MEASURE ping_flood answered_after_ms={} pings={sent}",
        took.as_millis()
    );
    assert_eq!(node.status().session.phase, clawnode_core::Phase::Connected);
}

#[test]
fn requests_and_events_round_trip_and_are_refused_while_disconnected() {
    let gw = FakeGateway::start();
    let dir = tempfile::tempdir().unwrap();
    let mut builder = NodeBuilder::new(node_config(&gw.url()), StateDir::new(dir.path()));
    let events = builder.events();
    let node = builder.spawn().unwrap();
    smol::block_on(async {
        let refused = node.send_event("early", None).await;
        assert!(
            matches!(refused, Err(crate::RequestFailure::Refused(_))),
            "{refused:?}"
        );
        let mut ws = accept_connected(&gw, &events).await;
        let gateway = async {
            let req = recv(&mut ws).await.unwrap();
            assert_eq!(req["method"], "node.event");
            assert_eq!(req["params"]["event"], "hello");
            assert_eq!(req["params"]["payloadJSON"], "{\"n\":1}");
            send(
                &mut ws,
                json!({"type":"res","id":req["id"],"ok":true,"payload":{"acked":true}}),
            )
            .await;
            let req = recv(&mut ws).await.unwrap();
            send(
                &mut ws,
                json!({"type":"res","id":req["id"],"ok":false,
                "error":{"code":"FORBIDDEN","message":"no"}}),
            )
            .await;
        };
        let client = async {
            let ok = node
                .send_event("hello", Some(json!({"n": 1})))
                .await
                .unwrap();
            assert_eq!(ok, json!({"acked": true}));
            let err = node
                .request("node.describe", json!({}), Some(Duration::from_secs(5)))
                .await;
            assert!(
                matches!(err, Err(crate::RequestFailure::Gateway(ref g)) if g.code == "FORBIDDEN"),
                "{err:?}"
            );
        };
        smol::future::zip(gateway, client).await;
        smol::future::zip(node.shutdown(), drain_until_closed(&mut ws)).await;
    });
}

#[test]
fn an_equal_config_does_nothing_and_a_change_reconnects_once() {
    let gw = FakeGateway::start();
    let dir = tempfile::tempdir().unwrap();
    let config = node_config(&gw.url());
    let mut builder =
        NodeBuilder::new(config.clone(), StateDir::new(dir.path())).with_system_which();
    let events = builder.events();
    let node = builder.spawn().unwrap();
    smol::block_on(async {
        let mut ws = accept_connected(&gw, &events).await;
        for _ in 0..3 {
            assert!(!node.reconfigure(config.clone()).await);
        }
        assert!(node.reconfigure(config.clone().with_session_id("2")).await);
        assert_eq!(drain_until_closed(&mut ws).await, Some(1000));
        let mut ws2 = gw.accept().await;
        handshake(&mut ws2, None).await;
        next_event(&events, |e| {
            matches!(e, Event::Connected { attempt: 2, .. })
        })
        .await;
        // Exactly one new connection.
        smol::Timer::after(Duration::from_millis(200)).await;
        assert!(gw.conns.try_recv().is_err());
        let changes: Vec<bool> = std::iter::from_fn(|| events.try_recv().ok())
            .filter_map(|e| match e {
                Event::Config { changed } => Some(changed),
                _ => None,
            })
            .collect();
        assert!(changes.is_empty() || changes == [true], "{changes:?}");
        smol::future::zip(node.shutdown(), drain_until_closed(&mut ws2)).await;
    });
}

#[test]
fn a_pin_mismatch_pauses_the_session_without_looping() {
    let (a, b) = (cert(), cert());
    let server = serve(&a);
    let dir = tempfile::tempdir().unwrap();
    let config = SessionConfig::parse(&server.url(), pinned(&[&b.pin.to_string()])).unwrap();
    let mut builder = NodeBuilder::new(config, StateDir::new(dir.path()));
    let events = builder.events();
    let node = builder.spawn().unwrap();
    smol::block_on(async {
        let paused = next_event(&events, |e| matches!(e, Event::Paused { .. })).await;
        let Event::Paused {
            code,
            expected,
            observed,
            ..
        } = paused
        else {
            unreachable!()
        };
        assert_eq!(code, "TLS_PIN_MISMATCH");
        assert_eq!(expected, vec![b.pin]);
        assert_eq!(observed, Some(a.pin));
        smol::Timer::after(Duration::from_millis(300)).await;
        assert_eq!(server.accepted(), 1, "no reconnect loop on a mismatch");
        assert_eq!(node.status().session.phase, clawnode_core::Phase::Paused);
        let json = crate::Event::Paused {
            code: "TLS_PIN_MISMATCH".into(),
            reason: String::new(),
            hint: String::new(),
            expected: vec![b.pin],
            observed: Some(a.pin),
        }
        .to_json(1);
        assert_eq!(json["observed"], a.pin.to_string());
        node.shutdown().await;
    });
}

#[test]
fn a_slow_invoke_does_not_block_the_session_and_is_cancelled_at_its_deadline() {
    let gw = FakeGateway::start();
    let dir = tempfile::tempdir().unwrap();
    let mut builder = NodeBuilder::new(node_config(&gw.url()), StateDir::new(dir.path()))
        .command("test.sleep", |_inv| async {
            smol::Timer::after(Duration::from_secs(60)).await;
            Ok(json!(null))
        })
        .command("test.echo", |inv| async move { Ok(inv.params) });
    let events = builder.events();
    let node = builder.spawn().unwrap();
    smol::block_on(async {
        let mut ws = accept_connected(&gw, &events).await;
        let invoke = |id: &str, cmd: &str, timeout: u64| {
            json!({"type":"event","event":"node.invoke.request","payload":{
                "id":id,"nodeId":node.device_id(),"command":cmd,
                "paramsJSON":"{\"x\":1}","timeoutMs":timeout}})
        };
        send(&mut ws, invoke("slow", "test.sleep", 400)).await;
        send(&mut ws, invoke("fast", "test.echo", 5000)).await;
        let first = recv(&mut ws).await.unwrap();
        assert_eq!(first["params"]["id"], "fast", "{first}");
        assert_eq!(first["params"]["payloadJSON"], "{\"x\":1}");
        let second = recv(&mut ws).await.unwrap();
        assert_eq!(second["params"]["id"], "slow");
        assert_eq!(second["params"]["ok"], false);
        assert_eq!(second["params"]["error"]["code"], "TIMEOUT");
        smol::future::zip(node.shutdown(), drain_until_closed(&mut ws)).await;
    });
}

#[test]
fn a_command_streams_progress_and_reads_input_before_its_answer() {
    let gw = FakeGateway::start();
    let dir = tempfile::tempdir().unwrap();
    let mut builder = NodeBuilder::new(node_config(&gw.url()), StateDir::new(dir.path())).command(
        "test.duplex",
        |inv| async move {
            inv.progress.send("ready");
            let mut got = Vec::new();
            while got.len() < 2 {
                let Some(line) = inv.input.recv().await else {
                    break;
                };
                inv.progress.send(format!("echo {line}"));
                got.push(line);
            }
            Ok(json!({"inputs": got}))
        },
    );
    let events = builder.events();
    let node = builder.spawn().unwrap();
    smol::block_on(async {
        let mut ws = accept_connected(&gw, &events).await;
        let id = node.device_id().to_owned();
        send(
            &mut ws,
            json!({"type":"event","event":"node.invoke.request","payload":{
                "id":"d1","nodeId":id,"command":"test.duplex","timeoutMs":5000}}),
        )
        .await;
        let mut frames = Vec::new();
        let mut answered = false;
        let mut sent_input = false;
        while !answered {
            let f = recv(&mut ws).await.expect("a frame");
            if f["method"] == "node.invoke.progress" {
                send(
                    &mut ws,
                    json!({"type":"res","id":f["id"],"ok":true,"payload":{"ok":true}}),
                )
                .await;
                if !sent_input {
                    sent_input = true;
                    for (seq, text) in [(0, "\"a\""), (1, "\"b\"")] {
                        send(
                            &mut ws,
                            json!({"type":"event","event":"node.invoke.input","payload":{
                                "id":"d1","nodeId":id,"seq":seq,"payloadJSON":text}}),
                        )
                        .await;
                    }
                }
            }
            answered = f["method"] == "node.invoke.result";
            frames.push(f);
        }
        let progress: Vec<(u64, String)> = frames
            .iter()
            .filter(|f| f["method"] == "node.invoke.progress")
            .map(|f| {
                (
                    f["params"]["seq"].as_u64().unwrap(),
                    f["params"]["chunk"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(
            progress,
            [
                (0, "ready".to_owned()),
                (1, "echo \"a\"".to_owned()),
                (2, "echo \"b\"".to_owned())
            ]
        );
        let result = frames.last().unwrap();
        assert_eq!(result["params"]["ok"], true, "{result}");
        assert_eq!(
            result["params"]["payloadJSON"],
            r#"{"inputs":["\"a\"","\"b\""]}"#
        );
        smol::future::zip(node.shutdown(), drain_until_closed(&mut ws)).await;
    });
}

#[test]
fn a_close_from_the_gateway_is_answered_not_dropped() {
    use async_tungstenite::tungstenite::protocol::CloseFrame;
    use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    let gw = FakeGateway::start();
    let dir = tempfile::tempdir().unwrap();
    let builder = NodeBuilder::new(node_config(&gw.url()), StateDir::new(dir.path()));
    let node = builder.spawn().unwrap();
    smol::block_on(async {
        let mut ws = gw.accept().await;
        handshake(&mut ws, None).await;
        ws.close(Some(CloseFrame {
            code: CloseCode::from(1012),
            reason: "service restart".into(),
        }))
        .await
        .unwrap();
        // RFC 6455 §5.5.1: the node echoes the close before the TCP
        // connection ends, so the gateway does not log an abnormal 1006.
        assert_eq!(drain_until_closed(&mut ws).await, Some(1012));
    });
    smol::block_on(within(node.shutdown()));
}

/// An event stream nobody reads holds a bounded number of events while the
/// session keeps serving the gateway, and tells its reader how many it
/// missed once it reads again.
#[test]
fn an_unread_event_stream_stays_bounded_and_reports_what_it_missed() {
    const FLOOD: u64 = 3000;
    let gw = FakeGateway::start();
    let dir = tempfile::tempdir().unwrap();
    let mut builder = NodeBuilder::new(node_config(&gw.url()), StateDir::new(dir.path()));
    let events = builder.events();
    let node = builder.spawn().unwrap();
    smol::block_on(async {
        let mut ws = accept_connected(&gw, &events).await;
        // The gateway answers a request only after flooding the node: the
        // session handles one socket's frames in order, so once the answer
        // is in, every event of the flood has been offered to the stream.
        let gateway = async {
            let req = recv(&mut ws).await.unwrap();
            for i in 0..FLOOD {
                send(
                    &mut ws,
                    json!({"type":"event","event":"flood","payload":{"i":i}}),
                )
                .await;
            }
            send(
                &mut ws,
                json!({"type":"res","id":req["id"],"ok":true,"payload":{}}),
            )
            .await;
        };
        let client = async {
            node.request("barrier", json!({}), Some(Duration::from_secs(30)))
                .await
                .unwrap()
        };
        within(smol::future::zip(gateway, client)).await;
        let buffer = crate::node::EVENT_BUFFER;
        assert_eq!(events.len(), buffer, "the stream is full, not larger");
        let kept: Vec<u64> = std::iter::from_fn(|| events.try_recv().ok())
            .map(|e| match e {
                Event::Broadcast { payload, .. } => {
                    payload.unwrap().to_value().unwrap()["i"].as_u64().unwrap()
                }
                other => panic!("{other:?}"),
            })
            .collect();
        let expected: Vec<u64> = (0..buffer as u64).collect();
        assert_eq!(kept, expected, "the oldest are kept, in order");
        // Room again, and no event follows: the count of the missed comes
        // on its own, and the next event after it.
        assert_eq!(
            within(events.recv()).await.unwrap(),
            Event::Lagged {
                dropped: FLOOD - buffer as u64
            }
        );
        send(&mut ws, json!({"type":"event","event":"after"})).await;
        assert!(matches!(
            within(events.recv()).await.unwrap(),
            Event::Broadcast { ref event, .. } if event == "after"
        ));
        smol::future::zip(within(node.shutdown()), drain_until_closed(&mut ws)).await;
    });
}

/// Five nodes sharing two handshake slots: two sockets at a time, the
/// rest queued without their (short) open deadline running, each slot
/// handed on at hello-ok.
#[test]
fn nodes_sharing_an_admission_handshake_two_at_a_time() {
    let gw = FakeGateway::start();
    let admission = crate::Admission::new(2);
    let dirs: Vec<_> = (0..5).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut options = clawnode_core::NodeOptions::with_seed(3);
    options.timeouts.open = Duration::from_millis(300);
    let mut streams = Vec::new();
    let nodes: Vec<_> = dirs
        .iter()
        .map(|d| {
            let mut b = NodeBuilder::new(node_config(&gw.url()), StateDir::new(d.path()))
                .options(options.clone())
                .admission(admission.clone());
            streams.push(b.events());
            b.spawn().unwrap()
        })
        .collect();
    let open = smol::block_on(async {
        let mut admitted = 0;
        let mut open = Vec::new();
        while admitted < 5 {
            let mut a = gw.accept().await;
            // Held well past the queued sessions' open deadline.
            smol::Timer::after(Duration::from_millis(700)).await;
            assert!(admission.handshaking() <= 2, "{admission:?}");
            let mut b = if admitted < 4 {
                Some(gw.accept().await)
            } else {
                None
            };
            if !gw.conns.is_empty() {
                for (i, events) in streams.iter().enumerate() {
                    for e in std::iter::from_fn(|| events.try_recv().ok()) {
                        eprintln!("{i}: {e}");
                    }
                }
                panic!("a third socket while two handshake");
            }
            handshake(&mut a, None).await;
            if let Some(b) = &mut b {
                handshake(b, None).await;
            }
            admitted += 1 + usize::from(b.is_some());
            open.push(a);
            open.extend(b);
        }
        for events in &streams {
            next_event(events, |e| matches!(e, Event::Connected { .. })).await;
        }
        open
    });
    assert_eq!(admission.peak(), 2);
    assert_eq!(
        admission.handshaking(),
        0,
        "slots are given back at hello-ok"
    );
    for events in &streams {
        assert!(
            !std::iter::from_fn(|| events.try_recv().ok())
                .any(|e| matches!(e, Event::Disconnected { .. })),
            "a queued session timed out"
        );
    }
    // Each socket answers its close while the nodes stop.
    let draining: Vec<_> = open
        .into_iter()
        .map(|mut ws| smol::spawn(async move { drain_until_closed(&mut ws).await }))
        .collect();
    for node in nodes {
        smol::block_on(node.shutdown());
    }
    for d in draining {
        assert_eq!(smol::block_on(d), Some(1000));
    }
}

/// A 503 on upgrade is the gateway being busy: reported as such, retried
/// after its `Retry-After`, then admitted.
#[test]
fn a_503_on_upgrade_is_busy_and_waits_for_retry_after() {
    use smol::io::AsyncWriteExt as _;
    let listener = smol::block_on(smol::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, conns) = smol::channel::unbounded();
    let _server = smol::spawn(async move {
        let mut n = 0;
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                return;
            };
            n += 1;
            if n == 1 {
                let mut buf = [0u8; 2048];
                let _ = tcp.read(&mut buf).await;
                let _ = tcp
                    .write_all(
                        b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 2\r\nContent-Length: 0\r\n\r\n",
                    )
                    .await;
                continue;
            }
            if let Ok(ws) = async_tungstenite::accept_async(tcp).await {
                let _ = tx.send(ws).await;
            }
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let url = format!("ws://127.0.0.1:{port}");
    let mut builder = NodeBuilder::new(node_config(&url), StateDir::new(dir.path()));
    let events = builder.events();
    let node = builder.spawn().unwrap();
    smol::block_on(async {
        let e = next_event(&events, |e| matches!(e, Event::Disconnected { .. })).await;
        let Event::Disconnected {
            code, retry_in_ms, ..
        } = e
        else {
            unreachable!()
        };
        assert_eq!(code.to_string(), "GATEWAY_BUSY");
        assert_eq!(
            retry_in_ms,
            Some(2000),
            "Retry-After over the first backoff"
        );
        let started = std::time::Instant::now();
        let mut ws = within(conns.recv()).await.unwrap();
        assert!(started.elapsed() >= Duration::from_millis(1500));
        handshake(&mut ws, None).await;
        next_event(&events, |e| matches!(e, Event::Connected { .. })).await;
        node.shutdown().await;
    });
}
