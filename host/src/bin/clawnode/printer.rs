//! Events printed on stdout, as text or `--events json` lines, from a
//! thread of their own so that a stalled reader never holds the node.

use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::ValueEnum;
use clawnode::Event;

/// How events are printed: one readable line per event, or one JSON
/// object per line (io-smol/README.md, `--events json`). The variants
/// carry no doc comments, which clap would print in `--help`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum EventFormat {
    Text,
    Json,
}

/// How many lines may wait for stdout. Past that, events are dropped and
/// counted (see [`Printer::print`]).
const STDOUT_QUEUE: usize = 1024;

/// Prints events on stdout from a thread of its own.
///
/// A write to stdout blocks as long as the reader does not read (a pipe
/// nobody drains, a terminal paused with Ctrl-S). Were it written on the
/// task that also waits for signals, SIGTERM would wait for the reader, and
/// events would pile up meanwhile. So the signal task only formats a line
/// and hands it over without waiting; the writer thread is the only one that
/// ever blocks on stdout, and the process exits without it when it must.
///
/// Overflow policy, as for the session's event streams: when the queue is
/// full the newest event is dropped and counted, and one `lagged` line with
/// the count takes the place of the dropped ones. Until that line is
/// queued every later event is dropped too, so it lands exactly where the
/// hole is: queued by [`print`](Self::print) ahead of the next event that
/// finds room, or written by the writer thread itself as soon as it has
/// caught up (the queue is empty), whichever comes first.
pub struct Printer {
    format: EventFormat,
    tx: Option<mpsc::SyncSender<String>>,
    /// Events dropped and not yet reported in a `lagged` line; taken (with
    /// `swap`) by whichever of the two threads reports them.
    dropped: Arc<AtomicU64>,
    /// Signalled by the writer thread when it has written everything.
    done: mpsc::Receiver<()>,
}

impl Printer {
    /// Starts the writer thread.
    pub fn start(format: EventFormat) -> Printer {
        let (tx, rx) = mpsc::sync_channel::<String>(STDOUT_QUEUE);
        let (done_tx, done) = mpsc::channel();
        let dropped = Arc::new(AtomicU64::new(0));
        let pending = dropped.clone();
        let spawned = std::thread::Builder::new()
            .name("stdout".into())
            .spawn(move || {
                let mut out = std::io::stdout().lock();
                loop {
                    let text = match rx.try_recv() {
                        Ok(text) => text,
                        Err(empty_or_closed) => {
                            // Caught up: the hole, if any, is right here.
                            let n = pending.swap(0, Ordering::SeqCst);
                            if n > 0 {
                                line(format, &Event::Lagged { dropped: n })
                            } else if empty_or_closed == mpsc::TryRecvError::Disconnected {
                                break;
                            } else {
                                match rx.recv() {
                                    Ok(text) => text,
                                    Err(_) => continue,
                                }
                            }
                        }
                    };
                    // A reader that went away (EPIPE) ends the printing,
                    // not the node.
                    if writeln!(out, "{text}").and_then(|()| out.flush()).is_err() {
                        return;
                    }
                }
                let _ = done_tx.send(());
            });
        // Without the thread there is nowhere to print: the node runs on.
        let tx = spawned.is_ok().then_some(tx);
        Printer {
            format,
            tx,
            dropped,
            done,
        }
    }

    /// Queues `event`'s line without ever waiting (see [`Printer`] for what
    /// happens when the queue is full). A `lagged` event from the session
    /// (this loop itself fell behind) adds to the count.
    pub fn print(&mut self, event: &Event) {
        let Some(tx) = &self.tx else { return };
        let (mut pending, event) = match event {
            Event::Lagged { dropped } => (*dropped, None),
            e => (0, Some(e)),
        };
        pending += self.dropped.swap(0, Ordering::SeqCst);
        if pending > 0 {
            let lagged = Event::Lagged { dropped: pending };
            match tx.try_send(line(self.format, &lagged)) {
                Ok(()) => {}
                Err(mpsc::TrySendError::Full(_)) => {
                    let n = pending + u64::from(event.is_some());
                    self.dropped.fetch_add(n, Ordering::SeqCst);
                    return;
                }
                Err(mpsc::TrySendError::Disconnected(_)) => return,
            }
        }
        if let Some(e) = event
            && let Err(mpsc::TrySendError::Full(_)) = tx.try_send(line(self.format, e))
        {
            self.dropped.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Lets the writer thread write what is queued, for at most `budget`:
    /// a stalled stdout must not hold the exit.
    pub fn finish(mut self, budget: Duration) {
        if let Some(tx) = self.tx.take() {
            // Closing the queue lets the thread end once it is written.
            drop(tx);
            let _ = self.done.recv_timeout(budget);
        }
    }
}

/// Unix milliseconds now.
pub fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// One line of `event` in `format`, stamped now.
fn line(format: EventFormat, event: &Event) -> String {
    let ts = wall_ms();
    match format {
        EventFormat::Json => event.to_json_line(ts),
        EventFormat::Text => event.to_string(),
    }
}
