//! What several subcommands take: the state directory, a secret given on
//! the command line, the gateway token from the environment.

use std::path::PathBuf;

use clawnode::StateDir;

use crate::Error;

/// The environment variable the gateway token comes from, as for the
/// official host.
pub const TOKEN_VAR: &str = "OPENCLAW_GATEWAY_TOKEN";

/// The gateway token from [`TOKEN_VAR`]; an empty one is none.
pub fn env_token() -> Option<String> {
    std::env::var(TOKEN_VAR).ok().filter(|t| !t.is_empty())
}

/// The state directory given, or the user's default one.
pub fn state_dir(given: Option<PathBuf>) -> Result<StateDir, Error> {
    match given {
        Some(d) => Ok(StateDir::new(d)),
        None => StateDir::default_location().map_err(Error::NoStateDir),
    }
}

/// A secret given on the command line: kept out of `Debug` output (clap's
/// derive needs `Debug`, and a stray `{:?}` must not print it).
#[derive(Clone)]
pub struct SecretArg(pub String);

impl From<String> for SecretArg {
    fn from(s: String) -> Self {
        SecretArg(s)
    }
}

impl std::fmt::Debug for SecretArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}
