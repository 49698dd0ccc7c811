//! Opening a gateway socket: TCP, TLS per the core's policy, WebSocket.

use std::pin::Pin as StdPin;
use std::task::{Context, Poll};

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::{self, protocol::WebSocketConfig};
use clawnode_core::{GatewayUrl, Pin, SocketError, TlsPolicy};
use futures_rustls::TlsConnector;
use rustls_pki_types::CertificateDer;
use smol::io::{AsyncRead, AsyncWrite};

use crate::frame_limit::{FrameLimit, Limited};
use crate::store::StateDir;
use crate::tls::{self, TlsAttempt, Trust};

/// Whose reactor a socket registers with: the task that reads it must run
/// where that reactor is driven.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Net {
    /// async-io's, which smol's executors use.
    AsyncIo,
    /// The current tokio runtime's.
    #[cfg(feature = "tokio")]
    Tokio,
}

/// A TCP connection on one of the reactors.
pub(crate) enum Tcp {
    AsyncIo(smol::net::TcpStream),
    #[cfg(feature = "tokio")]
    Tokio(async_tungstenite::tokio::TokioAdapter<tokio::net::TcpStream>),
}

/// The byte stream under the WebSocket: plain TCP on loopback, TLS otherwise.
pub(crate) enum Io {
    Plain(Tcp),
    Tls(Box<futures_rustls::client::TlsStream<Tcp>>),
}

/// Forwards the byte-stream traits to whichever stream a value holds.
macro_rules! forward_io {
    ($ty:ident { $($(#[$cfg:meta])* $arm:pat => $inner:expr),+ $(,)? }) => {
        impl AsyncRead for $ty {
            fn poll_read(
                self: StdPin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut [u8],
            ) -> Poll<std::io::Result<usize>> {
                match self.get_mut() {
                    $($(#[$cfg])* $arm => StdPin::new($inner).poll_read(cx, buf),)+
                }
            }
        }

        impl AsyncWrite for $ty {
            fn poll_write(
                self: StdPin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<std::io::Result<usize>> {
                match self.get_mut() {
                    $($(#[$cfg])* $arm => StdPin::new($inner).poll_write(cx, buf),)+
                }
            }

            fn poll_flush(self: StdPin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
                match self.get_mut() {
                    $($(#[$cfg])* $arm => StdPin::new($inner).poll_flush(cx),)+
                }
            }

            fn poll_close(self: StdPin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
                match self.get_mut() {
                    $($(#[$cfg])* $arm => StdPin::new($inner).poll_close(cx),)+
                }
            }
        }
    };
}

forward_io!(Tcp {
    Tcp::AsyncIo(s) => s,
    #[cfg(feature = "tokio")]
    Tcp::Tokio(s) => s,
});
forward_io!(Io { Io::Plain(s) => s, Io::Tls(s) => s.as_mut() });

pub(crate) type Ws = WebSocketStream<Limited<Io>>;

async fn tcp(url: &GatewayUrl, net: Net) -> Result<Tcp, SocketError> {
    let addr = (url.host(), url.port());
    let failed = |e: std::io::Error| tls::tcp_error(url, &e);
    // Frames are small and latency matters more than packet count.
    match net {
        Net::AsyncIo => {
            let stream = crate::runtime::smol::connect(addr).await.map_err(failed)?;
            let _ = stream.set_nodelay(true);
            Ok(Tcp::AsyncIo(stream))
        }
        #[cfg(feature = "tokio")]
        Net::Tokio => {
            let stream = crate::runtime::tokio::connect(addr).await.map_err(failed)?;
            let _ = stream.get_ref().set_nodelay(true);
            Ok(Tcp::Tokio(stream))
        }
    }
}

/// TCP, then the TLS handshake of `tls`; on failure, what the core should
/// hear.
pub(crate) async fn tls_handshake(
    url: &GatewayUrl,
    tls: &TlsAttempt,
    net: Net,
) -> Result<futures_rustls::client::TlsStream<Tcp>, SocketError> {
    let tcp = tcp(url, net).await?;
    TlsConnector::from(tls.config())
        .connect(tls.server_name(), tcp)
        .await
        .map_err(|e| tls.failed(&e))
}

/// Opens the byte stream for `url` under `policy` on `net`, learning a TOFU
/// pin in `store` when the policy asks for it. The store's file I/O runs on
/// the blocking pool.
pub(crate) async fn open_io(
    url: &GatewayUrl,
    policy: &TlsPolicy,
    store: &StateDir,
    net: Net,
) -> Result<Io, SocketError> {
    let (u, p, s) = (url.clone(), policy.clone(), store.clone());
    let prepared = if matches!(policy, TlsPolicy::TrustOnFirstUse { .. }) {
        crate::blocking::unblock(move || TlsAttempt::prepare(&u, &p, &s)).await?
    } else {
        TlsAttempt::prepare(&u, &p, &s)?
    };
    let Some(tls) = prepared else {
        return Ok(Io::Plain(tcp(url, net).await?));
    };
    let stream = tls_handshake(url, &tls, net).await?;
    if tls.learns_pin() {
        let store = store.clone();
        crate::blocking::unblock(move || tls.established(&store)).await?;
    }
    Ok(Io::Tls(Box::new(stream)))
}

/// The WebSocket read buffer of each session, in bytes.
const READ_BUFFER: usize = 1024;

/// Opens the WebSocket of one attempt. Its inbound messages are held to
/// the returned limit: 64 KiB until the driver raises it to the gateway's
/// `policy.maxPayload` on admission (docs/protocol.md §2).
pub(crate) async fn open(
    url: &GatewayUrl,
    policy: &TlsPolicy,
    store: &StateDir,
    net: Net,
) -> Result<(Ws, FrameLimit), SocketError> {
    let limit = FrameLimit::new();
    let io = Limited::new(open_io(url, policy, store, net).await?, limit.clone());
    // `Limited` enforces the handshake-dependent limit before a frame is
    // buffered; tungstenite's fixed limits only back it up.
    // Buffers sized for the protocol, not tungstenite's 128 KiB defaults:
    // an idle session reads ticks and pongs of a few hundred bytes, and a
    // larger frame grows the read buffer as it arrives. Writes go out as
    // they are made (the driver flushes each message anyway).
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_message_size(Some(64 << 20))
        .max_frame_size(Some(64 << 20));
    let (ws, _response) =
        async_tungstenite::client_async_with_config(url.as_str(), io, Some(config))
            .await
            .map_err(|e| upgrade_failure(url, &e))?;
    Ok((ws, limit))
}

/// What a failed WebSocket upgrade means to the core: an HTTP answer other
/// than 101 is classified by [`tls::upgrade_refused`] (503 is "busy").
fn upgrade_failure(url: &GatewayUrl, error: &tungstenite::Error) -> SocketError {
    match error {
        tungstenite::Error::Http(response) => tls::upgrade_refused(
            url,
            response.status().as_u16(),
            response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok()),
        ),
        _ => SocketError::Io(format!("WebSocket upgrade at {url}: {error}")),
    }
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
    let tls = TlsAttempt::with_trust(url, Trust::AnyCertificate, None)?;
    let _stream = tls_handshake(url, &tls, Net::AsyncIo).await?;
    let observed = tls.observed();
    let der = observed
        .cert()
        .ok_or_else(|| SocketError::Tls("the server presented no certificate".into()))?;
    Ok(ProbeReport {
        pin: tls::pin_of(&der),
        der,
    })
}
