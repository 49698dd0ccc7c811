//! Test servers: a scriptable fake gateway (for this crate's tests and,
//! behind the internal `__testutil` feature, those of the crates built on
//! it) and, for this crate's own tests, a rustls server with generated
//! certificates.

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::Message;
use clawnode_core::{Credentials, Secret, SessionConfig, TlsPolicy};
use serde_json::{Value, json};
use smol::Task;
use smol::channel::{Receiver, Sender};
use smol::net::{TcpListener, TcpStream};
use smol::stream::StreamExt as _;

use crate::Event;

#[cfg(test)]
pub(crate) use tls::*;

pub type GwSocket = WebSocketStream<TcpStream>;

/// A plain ws:// server handing every accepted WebSocket to the test.
pub struct FakeGateway {
    pub port: u16,
    pub conns: Receiver<GwSocket>,
    _task: Task<()>,
}

impl FakeGateway {
    pub fn start() -> FakeGateway {
        let listener = smol::block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx): (Sender<GwSocket>, _) = smol::channel::unbounded();
        let task = smol::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                if let Ok(ws) = async_tungstenite::accept_async(tcp).await {
                    let _ = tx.send(ws).await;
                }
            }
        });
        FakeGateway {
            port,
            conns: rx,
            _task: task,
        }
    }

    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    /// The next connection, within a few seconds.
    pub async fn accept(&self) -> GwSocket {
        within(self.conns.recv()).await.expect("a connection")
    }
}

pub async fn within<F: std::future::Future>(f: F) -> F::Output {
    use smol::future::FutureExt as _;
    f.or(async {
        smol::Timer::after(std::time::Duration::from_secs(5)).await;
        panic!("timed out");
    })
    .await
}

pub async fn send(ws: &mut GwSocket, v: Value) {
    ws.send(Message::text(v.to_string())).await.unwrap();
}

/// The next text frame as JSON; `None` when the socket closed (with the
/// close code in `closed`).
pub async fn recv(ws: &mut GwSocket) -> Result<Value, Option<u16>> {
    loop {
        match within(ws.next()).await {
            Some(Ok(Message::Text(t))) => return Ok(serde_json::from_str(t.as_str()).unwrap()),
            Some(Ok(Message::Close(f))) => return Err(f.map(|f| u16::from(f.code))),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return Err(None),
        }
    }
}

/// Plays the gateway's side of the handshake; returns the connect params.
pub async fn handshake(ws: &mut GwSocket, device_token: Option<&str>) -> Value {
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    send(
        ws,
        json!({"type":"event","event":"connect.challenge","payload":{"nonce":"n-1","ts":ts}}),
    )
    .await;
    let req = recv(ws).await.expect("connect request");
    assert_eq!(req["method"], "connect", "{req}");
    let mut auth = json!({"role": "node", "scopes": []});
    if let Some(t) = device_token {
        auth["deviceToken"] = json!(t);
    }
    send(
        ws,
        json!({"type":"res","id":req["id"],"ok":true,"payload":{
            "type":"hello-ok","protocol":4,
            "server":{"version":"test","connId":"c-1"},
            "features":{"methods":[],"events":[]},"snapshot":{},
            "auth": auth,
            "policy":{"maxPayload":26214400,"maxBufferedBytes":52428800,"tickIntervalMs":30000}
        }}),
    )
    .await;
    req["params"].clone()
}

/// Reads until the socket ends, answering the close handshake on the way;
/// returns the close code received.
pub async fn drain_until_closed(ws: &mut GwSocket) -> Option<u16> {
    let mut code = None;
    loop {
        match within(ws.next()).await {
            Some(Ok(Message::Close(f))) => code = f.map(|f| u16::from(f.code)),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return code,
        }
    }
}

/// A session config for the fake gateway at `url`, with a shared token.
pub fn node_config(url: &str) -> SessionConfig {
    SessionConfig::parse(url, TlsPolicy::SystemTrust)
        .unwrap()
        .with_credentials(Credentials {
            token: Some(Secret::new("shared-token")),
            ..Credentials::default()
        })
}

/// Accepts the node's connection, completes its handshake (no device
/// token) and waits for the node's `Connected`.
pub async fn accept_connected(gw: &FakeGateway, events: &Receiver<Event>) -> GwSocket {
    let mut ws = gw.accept().await;
    handshake(&mut ws, None).await;
    next_event(events, |e| matches!(e, Event::Connected { .. })).await;
    ws
}

/// The next event `pred` accepts, within a few seconds.
pub async fn next_event(events: &Receiver<Event>, pred: impl Fn(&Event) -> bool) -> Event {
    within(async {
        loop {
            let e = events.recv().await.expect("event stream open");
            if pred(&e) {
                return e;
            }
        }
    })
    .await
}

/// A tokio current-thread runtime with its I/O and time drivers, as a
/// node on tokio needs.
#[cfg(feature = "tokio")]
pub fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// A rustls server with generated certificates.
#[cfg(test)]
mod tls {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use clawnode_core::Pin;
    use rustls::ServerConfig;
    use rustls::server::{ClientHello, ResolvesServerCert};
    use rustls::sign::CertifiedKey;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    use smol::Task;
    use smol::io::AsyncWriteExt as _;
    use smol::net::TcpListener;

    use crate::tls::{pin_of, provider};

    pub(crate) struct TestCert {
        pub der: CertificateDer<'static>,
        pub key: PrivateKeyDer<'static>,
        pub pin: Pin,
    }

    pub(crate) fn cert() -> TestCert {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
            .expect("rcgen");
        let der = ck.cert.der().clone();
        TestCert {
            pin: pin_of(&der),
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der())),
            der,
        }
    }

    #[derive(Debug)]
    struct Fixed(Arc<CertifiedKey>);

    impl ResolvesServerCert for Fixed {
        fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
            Some(self.0.clone())
        }
    }

    /// A server config presenting `cert` signed with `key` — which need not be
    /// the certificate's key — and offering session resumption (tickets and a
    /// session cache), so that a client that allowed it would resume.
    pub(crate) fn server_config(
        cert: &CertificateDer<'static>,
        key: &PrivateKeyDer<'static>,
    ) -> Arc<ServerConfig> {
        let signer = rustls::crypto::ring::sign::any_supported_type(key).expect("key");
        let certified = CertifiedKey::new(vec![cert.clone()], signer);
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Fixed(Arc::new(certified))));
        config.ticketer = rustls::crypto::ring::Ticketer::new().unwrap();
        Arc::new(config)
    }

    pub(crate) struct TlsServer {
        pub port: u16,
        pub accepted: Arc<AtomicUsize>,
        pub resumed: Arc<AtomicUsize>,
        _task: Task<()>,
    }

    impl TlsServer {
        pub fn url(&self) -> String {
            format!("wss://127.0.0.1:{}", self.port)
        }
        pub fn accepted(&self) -> usize {
            self.accepted.load(Ordering::SeqCst)
        }
    }

    /// A TLS server that writes `hi` after the handshake and closes.
    pub(crate) fn tls_server(config: Arc<ServerConfig>) -> TlsServer {
        let listener = smol::block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let resumed = Arc::new(AtomicUsize::new(0));
        let (a, r) = (accepted.clone(), resumed.clone());
        let task = smol::spawn(async move {
            let acceptor = futures_rustls::TlsAcceptor::from(config);
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                a.fetch_add(1, Ordering::SeqCst);
                let acceptor = acceptor.clone();
                let r = r.clone();
                smol::spawn(async move {
                    if let Ok(mut tls) = acceptor.accept(tcp).await {
                        if tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed)
                        {
                            r.fetch_add(1, Ordering::SeqCst);
                        }
                        let _ = tls.write_all(b"hi").await;
                        let _ = tls.flush().await;
                        let _ = tls.close().await;
                    }
                })
                .detach();
            }
        });
        TlsServer {
            port,
            accepted,
            resumed,
            _task: task,
        }
    }
}
