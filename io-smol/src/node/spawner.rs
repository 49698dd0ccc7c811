//! Where a node's tasks run: smol's global executor unless the embedder
//! hands it one of its own ([`NodeBuilder::executor`](super::NodeBuilder::executor)).

use std::future::Future;
use std::sync::Arc;

use smol::{Executor, Task};

/// The executor a node spawns its driver, socket and command tasks on.
#[derive(Clone, Default)]
pub(super) enum Spawner {
    /// `smol::spawn`.
    #[default]
    Global,
    /// An executor the embedder drives.
    On(Arc<Executor<'static>>),
}

impl Spawner {
    /// Spawns `future` on this executor.
    pub fn spawn<T: Send + 'static>(
        &self,
        future: impl Future<Output = T> + Send + 'static,
    ) -> Task<T> {
        match self {
            Spawner::Global => smol::spawn(future),
            Spawner::On(executor) => executor.spawn(future),
        }
    }
}
