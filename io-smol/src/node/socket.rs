//! The socket pump: one task per attempt opens the socket, then forwards
//! frames between it and the driver until either side ends it.

use std::time::Duration;

use async_tungstenite::tungstenite::protocol::CloseFrame;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::{Message, Utf8Bytes};
use async_tungstenite::{WebSocketReceiver, WebSocketSender};
use clawnode_core::{AttemptId, GatewayUrl, SocketError, TlsPolicy};
use smol::channel::{self, Receiver, Sender};
use smol::future::FutureExt as _;
use smol::stream::StreamExt as _;

use super::admission::Admission;
use super::msg::{Heard, Msg, Opened, Outgoing, SocketEvent};
use crate::frame_limit::Limited;
use crate::runtime::Runtime;
use crate::store::StateDir;
use crate::transport::{self, Io};

/// How long a closing socket may take to finish the close handshake.
pub(super) const CLOSE_GRACE: Duration = Duration::from_secs(3);

/// After this many frames read in a row without waiting, the reader
/// yields, so that a peer flooding pings (or binary frames, which are
/// skipped) cannot hold the executor's thread: a smol reactor, unlike
/// tokio's, sets no budget.
const READ_STREAK: u32 = 16;

/// Opens the socket of one attempt and pumps it until it ends, reporting
/// everything to the session tagged with `attempt`, except the gateway's
/// pings and pongs, which it stamps on the [`Heard`] it hands over with the
/// open socket.
pub(super) async fn socket_task(
    attempt: AttemptId,
    url: GatewayUrl,
    tls: TlsPolicy,
    store: StateDir,
    admission: Admission,
    runtime: Runtime,
    tx: Sender<Msg>,
) {
    let report = Report { attempt, tx };
    // A handshake slot first (admission pacing): the core hears when the
    // attempt waits for one, so that the wait is not an open timeout.
    let slot = match admission.try_enter() {
        Some(slot) => slot,
        None => {
            report.send(SocketEvent::Queued).await;
            let slot = admission.enter().await;
            report.send(SocketEvent::Dialing).await;
            slot
        }
    };
    // Boxed, and given what only opening needs: the handshake's state is
    // large, and it and those inputs are done with once the socket is open.
    let net = runtime.net();
    let opening = Box::pin(async move { transport::open(&url, &tls, &store, net).await });
    let (ws, limit) = match opening.await {
        Ok(opened) => opened,
        Err(e) => return report.send(SocketEvent::Failed(Box::new(e))).await,
    };
    // Unbounded as a channel, which allocates only while frames wait; the
    // driver bounds it to `WRITE_QUEUE` frames.
    let (out_tx, out_rx) = channel::unbounded();
    let (handled_tx, handled_rx) = channel::bounded(1);
    let heard = Heard::default();
    report
        .send(SocketEvent::Opened(Box::new(Opened {
            writer: out_tx,
            limit,
            handled: handled_tx,
            heard: heard.clone(),
            slot,
        })))
        .await;
    let (sender, receiver) = ws.split();
    read(receiver, &report, handled_rx, heard, &runtime)
        .or(write(sender, &report, out_rx, &runtime))
        .await;
}

/// Reports an attempt's socket events to the session.
struct Report {
    attempt: AttemptId,
    tx: Sender<Msg>,
}

impl Report {
    async fn send(&self, ev: SocketEvent) {
        let _ = self.tx.send(Msg::Socket(self.attempt, ev)).await;
    }
}

/// Reads frames until the socket ends: text to the session, one at a time;
/// pings and pongs stamped on `heard`; a close answered.
async fn read(
    mut receiver: WebSocketReceiver<Limited<Io>>,
    report: &Report,
    handled: Receiver<()>,
    heard: Heard,
    runtime: &Runtime,
) {
    // The last text frame, held until the next read has begun. A frame
    // shares the read buffer's allocation, which tungstenite never
    // shrinks: while the frame is alive, the read's first reservation
    // cannot reuse that allocation and takes a small one, and the large
    // one goes when the frame does. So a 14 KiB hello-ok does not stay
    // as every session's read buffer (bytes' `BytesMut::reserve`).
    let mut last: Option<Utf8Bytes> = None;
    let mut streak = 0;
    loop {
        let next = receiver.next();
        let mut next = std::pin::pin!(next);
        let first = smol::future::poll_once(&mut next).await;
        drop(last.take());
        streak = if first.is_some() { streak + 1 } else { 0 };
        if streak >= READ_STREAK {
            streak = 0;
            smol::future::yield_now().await;
        }
        let read = match first {
            Some(read) => read,
            None => next.await,
        };
        match read {
            Some(Ok(Message::Text(t))) => {
                last = Some(t.clone());
                report.send(SocketEvent::Frame(t)).await;
                // One frame at a time: a flood meets TCP backpressure,
                // and the frame after hello-ok meets the raised limit,
                // not the handshake's (see `frame_limit`).
                if handled.recv().await.is_err() {
                    // The driver ended the attempt: let the writer send
                    // its close frame.
                    std::future::pending::<()>().await;
                }
            }
            Some(Ok(Message::Close(frame))) => {
                let (code, reason) = match frame {
                    Some(f) => (Some(u16::from(f.code)), f.reason.as_str().to_owned()),
                    None => (None, String::new()),
                };
                report.send(SocketEvent::Closed { code, reason }).await;
                // tungstenite queues the close reply and writes it on
                // the next read: read on until the peer hangs up, so the
                // gateway sees its close answered (RFC 6455 §5.5.1), not
                // an abnormal 1006.
                let drain = async { while let Some(Ok(_)) = receiver.next().await {} };
                drain.or(runtime.sleep_for(CLOSE_GRACE)).await;
                return;
            }
            // The gateway's own pings prove it alive as its pongs do, so
            // a gateway that pings often is rarely pinged back
            // (docs/protocol.md §5). tungstenite answers them itself.
            Some(Ok(Message::Pong(_) | Message::Ping(_))) => {
                heard.mark();
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                let e = SocketError::Io(format!("WebSocket: {e}"));
                report.send(SocketEvent::Failed(Box::new(e))).await;
                return;
            }
            None => {
                report
                    .send(SocketEvent::Closed {
                        code: None,
                        reason: "connection ended".into(),
                    })
                    .await;
                return;
            }
        }
    }
}

/// Writes what the session queues until it closes the socket, then sends
/// the close frame and gives the peer [`CLOSE_GRACE`] to answer it.
async fn write(
    mut sender: WebSocketSender<Limited<Io>>,
    report: &Report,
    out: Receiver<Outgoing>,
    runtime: &Runtime,
) {
    let mut close = (1000, String::from("node stopping"));
    while let Ok(out) = out.recv().await {
        let msg = match out {
            Outgoing::Text(t) => Message::text(t),
            Outgoing::Ping => Message::Ping(Default::default()),
            Outgoing::Close(code, reason) => {
                close = (code, reason);
                break;
            }
        };
        if let Err(e) = sender.send(msg).await {
            let e = SocketError::Io(format!("WebSocket send: {e}"));
            report.send(SocketEvent::Failed(Box::new(e))).await;
            return;
        }
    }
    let frame = CloseFrame {
        code: CloseCode::from(close.0),
        reason: close.1.into(),
    };
    let _ = sender.close(Some(frame)).await;
    // Give the peer a moment to answer the close; the reader ends
    // this task as soon as it does.
    runtime.sleep_for(CLOSE_GRACE).await;
}
