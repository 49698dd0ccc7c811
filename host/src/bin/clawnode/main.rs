//! `clawnode`: a headless OpenClaw node host. One module per subcommand,
//! each with its arguments and its `run`; `main` owns the exit status.

mod approvals;
mod args;
mod error;
mod file_config;
mod identity;
mod printer;
mod probe;
mod run;
mod service;
mod sources;
mod unit;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub(crate) use error::Error;

#[derive(Parser, Debug)]
#[command(name = "clawnode", version, about = "A headless OpenClaw node host")]
struct Cli {
    #[command(subcommand)]
    command: Subcommands,
}

#[derive(Subcommand, Debug)]
enum Subcommands {
    /// Connect to a gateway and serve its invokes until stopped.
    Run(run::Args),
    /// Print the device id and public key (creating the identity if missing).
    Identity(identity::Args),
    /// Show or change what `system.run` may run on this host (the exec
    /// approvals document; with none, nothing runs).
    Approvals(approvals::Args),
    /// Install, remove or inspect the systemd unit that keeps `clawnode
    /// run` up (needs a systemd host).
    Service(service::Args),
    /// Print a TLS gateway's certificate pin, subject and validity.
    Probe(probe::Args),
}

fn main() -> ExitCode {
    let result = identity::as_openclaw_probe(std::env::args_os()).unwrap_or_else(|| {
        let cli = Cli::parse();
        init_tracing();
        match cli.command {
            Subcommands::Run(args) => run::run(args),
            Subcommands::Identity(args) => identity::run(args),
            Subcommands::Approvals(args) => approvals::run(args),
            Subcommands::Service(args) => service::run(args),
            Subcommands::Probe(args) => probe::run(args),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("clawnode: error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Logs to stderr, filtered by `CLAWNODE_LOG` (or `RUST_LOG`); `info` by
/// default and when the filter does not parse.
fn init_tracing() {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::prelude::*;
    let spec = std::env::var("CLAWNODE_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_default();
    let filter = spec
        .parse::<Targets>()
        .ok()
        .filter(|_| !spec.is_empty())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO));
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(false)
                .with_filter(filter),
        )
        .init();
}
