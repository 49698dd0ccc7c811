//! The host's commands registered on a [`NodeBuilder`] through the
//! adapter's generic API: a command, its params bound, its own invoke
//! slots, a task beside the session.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use clawnode::{Background, CommandError, Event, NodeBuilder, on_own_thread};

use crate::exec::Cancel;
use crate::exec::stored::{
    EXEC_APPROVALS_GET, EXEC_APPROVALS_SET, MAX_SET_PARAMS, approvals_get, approvals_set,
};
use crate::exec::system_run::{
    ExecHost, MAX_RUNS, SYSTEM_RUN, SYSTEM_RUN_PREPARE, prepare, system_run,
};
use crate::host_stats::{HOST_STATS, HOST_STATS_EVERY, sample};
use crate::which;

/// The node host's commands, added to a [`NodeBuilder`].
pub trait HostCommands: Sized {
    /// Registers `system.which`.
    fn with_system_which(self) -> Self;

    /// Registers `system.run.prepare` and `system.run`. What they may run
    /// is set by the exec approvals document in the state directory
    /// ([`with_exec_approvals`](Self::with_exec_approvals) serves it to the
    /// gateway); with none, nothing runs. Runs happen on threads of their
    /// own, and a cancelled invoke kills its run's process tree.
    fn with_system_run(self) -> Self;

    /// Registers `system.execApprovals.get` and `.set`, over this node's
    /// state directory. The document they serve decides what `system.run`
    /// may run; with none, nothing runs.
    fn with_exec_approvals(self) -> Self;

    /// Reports `node.host.stats` (CPUs, load, memory, disk) right after
    /// each admission and every 60 s while connected, as the official host
    /// does.
    fn with_host_stats(self) -> Self;
}

impl HostCommands for NodeBuilder {
    fn with_system_which(self) -> Self {
        self.command(which::SYSTEM_WHICH, which::handler)
    }

    fn with_system_run(self) -> Self {
        /// One of the `MAX_RUNS` run slots, given back when the run ends.
        struct Slot(Arc<AtomicUsize>);
        impl Drop for Slot {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::AcqRel);
            }
        }
        /// Cancels a run when its invoke's task is dropped (a gateway
        /// cancel, a deadline, the session's end).
        struct CancelOnDrop(Cancel);
        impl Drop for CancelOnDrop {
            fn drop(&mut self) {
                self.0.cancel();
            }
        }
        let node_cwd = || std::env::current_dir().unwrap_or_else(|_| "/".into());
        // Prepare and run share one host: an approval counts only for a
        // plan this node prepared.
        let host = Arc::new(ExecHost::new(self.state_dir().clone()));
        let (a, b) = (host.clone(), host);
        // Runs have slots of their own: however many run, every other
        // command keeps the session's slots (docs/exec-host.md §11.5).
        let runs = Arc::new(AtomicUsize::new(0));
        self.reserve_invoke_slots(MAX_RUNS)
            .command(SYSTEM_RUN_PREPARE, move |inv| {
                let host = a.clone();
                on_own_thread(move || prepare(&host, &inv.params, &node_cwd()))
            })
            .command(SYSTEM_RUN, move |inv| {
                let host = b.clone();
                let runs = runs.clone();
                async move {
                    if runs.fetch_add(1, Ordering::AcqRel) >= MAX_RUNS {
                        runs.fetch_sub(1, Ordering::AcqRel);
                        return Err(CommandError::new(
                            "UNAVAILABLE",
                            format!("node busy: {MAX_RUNS} runs already running"),
                        ));
                    }
                    let _slot = Slot(runs);
                    let cancel = Cancel::new();
                    let _guard = CancelOnDrop(cancel.clone());
                    on_own_thread(move || {
                        system_run(
                            &host,
                            &inv.params,
                            &node_cwd(),
                            &cancel,
                            &inv.emitter,
                            &inv.progress,
                        )
                    })
                    .await
                }
            })
    }

    fn with_exec_approvals(self) -> Self {
        let (a, b) = (self.state_dir().clone(), self.state_dir().clone());
        self.command(EXEC_APPROVALS_GET, move |inv| {
            let store = a.clone();
            on_own_thread(move || approvals_get(&store, &inv.params))
        })
        .command(EXEC_APPROVALS_SET, move |inv| {
            let store = b.clone();
            on_own_thread(move || approvals_set(&store, &inv.params))
        })
        .limit_params(EXEC_APPROVALS_SET, MAX_SET_PARAMS)
    }

    fn with_host_stats(self) -> Self {
        self.background(publish_host_stats)
    }
}

/// Sends `node.host.stats` after each `connected` and then every 60 s
/// until the next `disconnected`; ends with the session's event stream.
async fn publish_host_stats(session: Background) {
    let home = std::env::var_os("HOME").map_or_else(|| "/".into(), std::path::PathBuf::from);
    let send = || session.emitter.send(HOST_STATS, sample(&home));
    let events = &session.events;
    // When the next report is due, while connected.
    let mut due: Option<Instant> = None;
    loop {
        let next = async { events.recv().await.ok().map(Some) };
        let tick = async {
            match due {
                Some(at) => {
                    session.sleep_until(at).await;
                    Some(None)
                }
                None => std::future::pending().await,
            }
        };
        match smol::future::FutureExt::or(next, tick).await {
            None => return,
            Some(Some(Event::Connected { .. })) | Some(None) => {
                send();
                due = Some(Instant::now() + HOST_STATS_EVERY);
            }
            Some(Some(Event::Disconnected { .. })) => due = None,
            Some(Some(_)) => {}
        }
    }
}
