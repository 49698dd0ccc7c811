//! `clawnode approvals`: what `system.run` may run on this host, edited by
//! its owner (docs/exec-host.md §3).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use clawnode_host::exec::approvals::{AllowEntry, Ask, Security};
use clawnode_host::exec::stored::{approvals_get, edit_local};

use crate::Error;
use crate::args::state_dir;

/// Show or change what `system.run` may run on this host (the exec
/// approvals document; with none, nothing runs).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// State directory [default: $XDG_STATE_HOME/clawnode or ~/.local/state/clawnode].
    #[arg(long, value_name = "DIR", global = true)]
    state_dir: Option<PathBuf>,
    #[command(subcommand)]
    action: Action,
}

#[derive(Subcommand, Debug)]
enum Action {
    /// Print the document (without its socket token) and its hash.
    Show,
    /// Set the policy: of one agent with --agent, else the defaults.
    Set {
        /// The agent id (`*` for every agent).
        #[arg(long, value_name = "ID")]
        agent: Option<String>,
        /// deny, allowlist or full.
        #[arg(long, value_parser = parse_policy::<Security>)]
        security: Option<Security>,
        /// off, on-miss or always.
        #[arg(long, value_parser = parse_policy::<Ask>)]
        ask: Option<Ask>,
        /// What runs when approval is needed and nobody answers: deny, allowlist or full.
        #[arg(long, value_parser = parse_policy::<Security>)]
        ask_fallback: Option<Security>,
    },
    /// Allow a program: a glob over its real path, or a bare name.
    Allow {
        /// The agent id [default: `*`, every agent].
        #[arg(long, value_name = "ID", default_value = "*")]
        agent: String,
        /// E.g. /usr/bin/uname or "~/bin/**".
        pattern: String,
    },
    /// Remove an allowlist entry.
    Disallow {
        /// The agent id [default: `*`, every agent].
        #[arg(long, value_name = "ID", default_value = "*")]
        agent: String,
        /// The pattern as it was added.
        pattern: String,
    },
}

/// A policy value by its wire name (`on-miss`, `allowlist`, ...).
fn parse_policy<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(s.to_owned())).map_err(|e| e.to_string())
}

/// Shows or edits the document, then prints it.
pub fn run(args: Args) -> Result<ExitCode, Error> {
    let store = state_dir(args.state_dir)?;
    let result = match args.action {
        Action::Show => approvals_get(&store, &serde_json::json!({})),
        Action::Set {
            agent,
            security,
            ask,
            ask_fallback,
        } => edit_local(&store, |f| {
            let fields = match agent {
                Some(a) => {
                    let e = f.agents.entry(a).or_default();
                    (&mut e.security, &mut e.ask, &mut e.ask_fallback)
                }
                None => (
                    &mut f.defaults.security,
                    &mut f.defaults.ask,
                    &mut f.defaults.ask_fallback,
                ),
            };
            *fields.0 = security.or(*fields.0);
            *fields.1 = ask.or(*fields.1);
            *fields.2 = ask_fallback.or(*fields.2);
        }),
        Action::Allow { agent, pattern } => edit_local(&store, |f| {
            let list = &mut f.agents.entry(agent).or_default().allowlist;
            if !list.iter().any(|e| e.pattern == pattern) {
                list.push(AllowEntry {
                    pattern,
                    ..AllowEntry::default()
                });
            }
        }),
        Action::Disallow { agent, pattern } => edit_local(&store, |f| {
            if let Some(a) = f.agents.get_mut(&agent) {
                a.allowlist.retain(|e| e.pattern != pattern);
            }
        }),
    };
    let v = result.map_err(|e| Error::Failed(e.to_string()))?;
    println!("{}", serde_json::to_string_pretty(&v).expect("JSON"));
    Ok(ExitCode::SUCCESS)
}
