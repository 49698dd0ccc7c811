//! The exec host's documents in a node's state directory: the exec
//! approvals and the owner's ceiling (docs/exec-host.md §3, §11.4).

use clawnode::{StateDir, StoreError};

/// The largest exec approvals file read: the 1 MiB document a gateway may
/// send, stored pretty-printed, with room to spare.
pub const MAX_APPROVALS_FILE: u64 = 4 << 20;

/// The exec documents' names in the state directory.
const APPROVALS: &str = "exec-approvals.json";
const CEILING: &str = "exec-ceiling.json";

/// The exec host's documents in a node's state directory.
pub trait ExecDocuments {
    /// The exec approvals document's path.
    fn exec_approvals_path(&self) -> std::path::PathBuf;
    /// The exec approvals document, exactly as stored (its hash is over
    /// these bytes), or `None` when there is none. A file over 4 MiB is
    /// refused unread (as corrupt): what the node and a gateway store is
    /// far smaller.
    fn load_exec_approvals(&self) -> Result<Option<Vec<u8>>, StoreError>;
    /// Replaces the exec approvals document atomically, mode 0600.
    fn store_exec_approvals(&self, bytes: &[u8]) -> Result<(), StoreError>;
    /// Where the owner's exec ceiling is kept (see
    /// [`Ceiling`](super::approvals::Ceiling)).
    fn exec_ceiling_path(&self) -> std::path::PathBuf;
    /// The owner's exec ceiling as stored, if any (refused over 4 MiB, as
    /// the approvals).
    fn load_exec_ceiling(&self) -> Result<Option<Vec<u8>>, StoreError>;
    /// Replaces the owner's exec ceiling (`None` removes it).
    fn store_exec_ceiling(&self, bytes: Option<&[u8]>) -> Result<(), StoreError>;
}

impl ExecDocuments for StateDir {
    fn exec_approvals_path(&self) -> std::path::PathBuf {
        self.document_path(APPROVALS)
    }

    fn load_exec_approvals(&self) -> Result<Option<Vec<u8>>, StoreError> {
        self.load_document(APPROVALS, MAX_APPROVALS_FILE)
    }

    fn store_exec_approvals(&self, bytes: &[u8]) -> Result<(), StoreError> {
        self.store_document(APPROVALS, bytes)
    }

    fn exec_ceiling_path(&self) -> std::path::PathBuf {
        self.document_path(CEILING)
    }

    fn load_exec_ceiling(&self) -> Result<Option<Vec<u8>>, StoreError> {
        self.load_document(CEILING, MAX_APPROVALS_FILE)
    }

    fn store_exec_ceiling(&self, bytes: Option<&[u8]>) -> Result<(), StoreError> {
        match bytes {
            Some(b) => self.store_document(CEILING, b),
            None => self.remove_document(CEILING),
        }
    }
}
