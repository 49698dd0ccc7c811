//! Why a subcommand failed, and the exit status that says so: 2 for bad
//! usage or configuration (a supervisor must not retry it), 1 for any
//! other failure. `main` prints it and exits with its status.

use clawnode::{StartError, StoreError};

use crate::file_config::SettingsError;
use crate::sources::LoadError;

/// Exit status for bad usage or configuration.
pub const EXIT_USAGE: u8 = 2;

/// A subcommand's failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The arguments or the settings are wrong (exit status 2).
    #[error("{0}")]
    Usage(String),
    /// The settings could not become a session config (exit status 2).
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// The run's settings could not be loaded (exit status 2).
    #[error(transparent)]
    Load(#[from] LoadError),
    /// No state directory could be found (exit status 2).
    #[error(transparent)]
    NoStateDir(StoreError),
    /// The state directory could not be read or written (exit status 1).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The session could not start (exit status 1).
    #[error(transparent)]
    Start(#[from] StartError),
    /// Anything else that failed, said in full (exit status 1).
    #[error("{0}")]
    Failed(String),
}

impl Error {
    /// The process's exit status for this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) | Error::Settings(_) | Error::Load(_) | Error::NoStateDir(_) => {
                EXIT_USAGE
            }
            Error::Store(_) | Error::Start(_) | Error::Failed(_) => 1,
        }
    }
}
