//! Opening a gateway socket: TCP, TLS per the core's policy, WebSocket.

use std::pin::Pin as StdPin;
use std::task::{Context, Poll};

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::protocol::WebSocketConfig;
use clawnode_core::{GatewayUrl, Pin, PinSet, SocketError, TlsPolicy};
use futures_rustls::TlsConnector;
use rustls_pki_types::{CertificateDer, ServerName};
use smol::io::{AsyncRead, AsyncWrite};
use smol::net::TcpStream;

use crate::frame_limit::{FrameLimit, Limited};
use crate::store::StateDir;
use crate::tls::{self, Observed, Trust};

/// The byte stream under the WebSocket: plain TCP on loopback, TLS otherwise.
pub(crate) enum Io {
    Plain(TcpStream),
    Tls(Box<futures_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Io {
    fn poll_read(
        self: StdPin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => StdPin::new(s).poll_read(cx, buf),
            Io::Tls(s) => StdPin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: StdPin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => StdPin::new(s).poll_write(cx, buf),
            Io::Tls(s) => StdPin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: StdPin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => StdPin::new(s).poll_flush(cx),
            Io::Tls(s) => StdPin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_close(self: StdPin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => StdPin::new(s).poll_close(cx),
            Io::Tls(s) => StdPin::new(s.as_mut()).poll_close(cx),
        }
    }
}

pub(crate) type Ws = WebSocketStream<Limited<Io>>;

async fn tcp(url: &GatewayUrl) -> Result<TcpStream, SocketError> {
    let stream = TcpStream::connect((url.host(), url.port()))
        .await
        .map_err(|e| {
            SocketError::Io(format!("connecting to {}:{}: {e}", url.host(), url.port()))
        })?;
    // Frames are small and latency matters more than packet count.
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

fn server_name(url: &GatewayUrl) -> Result<ServerName<'static>, SocketError> {
    ServerName::try_from(url.host().to_owned()).map_err(|e| {
        SocketError::Tls(format!(
            "{:?} is not a valid TLS server name: {e}",
            url.host()
        ))
    })
}

/// A TLS handshake under `trust`; on failure, what the core should hear.
pub(crate) async fn tls_handshake(
    url: &GatewayUrl,
    trust: &Trust,
) -> Result<(futures_rustls::client::TlsStream<TcpStream>, Observed), SocketError> {
    let (config, observed) = tls::client_config(trust).map_err(SocketError::Tls)?;
    let name = server_name(url)?;
    let tcp = tcp(url).await?;
    match TlsConnector::from(config).connect(name, tcp).await {
        Ok(s) => Ok((s, observed)),
        Err(e) => {
            if let Trust::Pinned(pins) = trust
                && let Some(seen) = observed.pin()
                && !pins.contains(&seen)
            {
                return Err(SocketError::PinMismatch {
                    expected: pins.iter().copied().collect(),
                    observed: seen,
                });
            }
            match tls::rustls_error(&e) {
                Some(r) if tls::is_terminal(r) => Err(SocketError::Tls(format!(
                    "TLS handshake with {}:{}: {r}",
                    url.host(),
                    url.port()
                ))),
                _ => Err(SocketError::Io(format!(
                    "TLS handshake with {}:{}: {e}",
                    url.host(),
                    url.port()
                ))),
            }
        }
    }
}

/// Opens the byte stream for `url` under `policy`, learning a TOFU pin in
/// `store` when the policy asks for it.
pub(crate) async fn open_io(
    url: &GatewayUrl,
    policy: &TlsPolicy,
    store: &StateDir,
) -> Result<Io, SocketError> {
    if !url.is_secure() {
        return Ok(Io::Plain(tcp(url).await?));
    }
    let trust = match policy {
        TlsPolicy::Pinned(pins) => Trust::Pinned(pins.clone()),
        TlsPolicy::SystemTrust => Trust::System,
        TlsPolicy::TrustOnFirstUse { store_key } => {
            let (store, key) = (store.clone(), store_key.clone());
            let stored = smol::unblock(move || store.load_pin(&key))
                .await
                .map_err(|e| SocketError::Tls(format!("trust-on-first-use pin store: {e}")))?;
            match stored {
                Some(pin) => Trust::Pinned(PinSet::new([pin]).expect("one pin")),
                None => Trust::AnyCertificate,
            }
        }
        other => {
            return Err(SocketError::Tls(format!(
                "TLS policy {other:?} is not supported by this driver"
            )));
        }
    };
    let (stream, observed) = tls_handshake(url, &trust).await?;
    if let (TlsPolicy::TrustOnFirstUse { store_key }, Trust::AnyCertificate) = (policy, &trust) {
        let seen = observed
            .pin()
            .ok_or_else(|| SocketError::Tls("the server presented no certificate".into()))?;
        let (store2, key) = (store.clone(), store_key.clone());
        let kept: Pin = smol::unblock(move || store2.store_pin_once(&key, &seen))
            .await
            .map_err(|e| SocketError::Tls(format!("trust-on-first-use pin store: {e}")))?;
        if kept != seen {
            // Another process learned a different certificate first.
            return Err(SocketError::PinMismatch {
                expected: vec![kept],
                observed: seen,
            });
        }
        tracing::warn!(key = %store_key, pin = %seen,
            "trust on first use: pinned the gateway's certificate; it is enforced from now on");
    }
    Ok(Io::Tls(Box::new(stream)))
}

/// Opens the WebSocket of one attempt. Its inbound messages are held to
/// the returned limit: 64 KiB until the driver raises it to the gateway's
/// `policy.maxPayload` on admission (docs/protocol.md §2).
pub(crate) async fn open(
    url: &GatewayUrl,
    policy: &TlsPolicy,
    store: &StateDir,
) -> Result<(Ws, FrameLimit), SocketError> {
    let limit = FrameLimit::new();
    let io = Limited::new(open_io(url, policy, store).await?, limit.clone());
    // `Limited` enforces the handshake-dependent limit before a frame is
    // buffered; tungstenite's fixed limits only back it up.
    let config = WebSocketConfig::default()
        .max_message_size(Some(64 << 20))
        .max_frame_size(Some(64 << 20));
    let (ws, _response) =
        async_tungstenite::client_async_with_config(url.as_str(), io, Some(config))
            .await
            .map_err(|e| SocketError::Io(format!("WebSocket upgrade at {url}: {e}")))?;
    Ok((ws, limit))
}

/// What `probe` learned about a TLS server's certificate.
#[derive(Clone, Debug)]
pub struct ProbeReport {
    /// The normalised SHA-256 pin of the leaf certificate.
    pub pin: Pin,
    /// The leaf certificate's DER bytes.
    pub der: CertificateDer<'static>,
}

/// Connects to a `wss://` URL without credentials, accepting any
/// certificate (the handshake signature is still verified), and reports the
/// leaf certificate so that a person can pin it.
pub async fn probe(url: &GatewayUrl) -> Result<ProbeReport, SocketError> {
    if !url.is_secure() {
        return Err(SocketError::Tls(format!(
            "{url} is plain ws://: there is no certificate to probe; use wss://"
        )));
    }
    let (_stream, observed) = tls_handshake(url, &Trust::AnyCertificate).await?;
    let der = observed
        .cert()
        .ok_or_else(|| SocketError::Tls("the server presented no certificate".into()))?;
    Ok(ProbeReport {
        pin: tls::pin_of(&der),
        der,
    })
}
