//! `clawnode identity`, and the same answer to the gateway's SSH probe
//! when this binary is invoked as `openclaw`.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clawnode::policy::DeviceIdentity;

use crate::Error;
use crate::args::state_dir;

/// Print the device id and public key (creating the identity if missing).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// State directory [default: $XDG_STATE_HOME/clawnode or ~/.local/state/clawnode].
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// One JSON line, exactly as `openclaw node identity --json` prints
    /// it (what the gateway's SSH auto-approval probe reads); with no
    /// identity yet, an error and exit status 1, creating nothing.
    #[arg(long)]
    json: bool,
}

/// Invoked as `openclaw` (a link to this binary): the gateway's SSH
/// auto-approval probe runs `sh -lc 'openclaw node identity --json'` on the
/// node's host, and this answers it as the official host does. Nothing
/// else is served under that name. `None` under any other name.
pub fn as_openclaw_probe(
    mut argv: impl Iterator<Item = OsString>,
) -> Option<Result<ExitCode, Error>> {
    let argv0 = PathBuf::from(argv.next()?);
    if argv0.file_name()? != "openclaw" {
        return None;
    }
    let rest: Vec<_> = argv.collect();
    if rest == ["node", "identity", "--json"] {
        return Some(run(Args {
            state_dir: None,
            json: true,
        }));
    }
    Some(Err(Error::Usage(
        "this is clawnode under the name `openclaw`: it answers only `openclaw node identity --json` \
         (the gateway's SSH probe); run `clawnode --help`"
            .into(),
    )))
}

/// Prints the identity.
pub fn run(args: Args) -> Result<ExitCode, Error> {
    let store = state_dir(args.state_dir)?;
    let key = if args.json {
        // A probe reads the identity; it must not make one.
        store.load_identity()?.ok_or_else(|| {
            Error::Failed(format!(
                "no device identity in {} (start the node once with `clawnode run`)",
                store.path().display()
            ))
        })?
    } else {
        store.load_or_create_identity()?
    };
    let id = DeviceIdentity::new(key);
    if args.json {
        // Key order and compact form as the official host prints them.
        let text = |s: &str| serde_json::Value::from(s).to_string();
        println!(
            "{{\"deviceId\":{},\"publicKey\":{}}}",
            text(id.device_id()),
            text(id.public_key())
        );
    } else {
        println!("device_id: {}", id.device_id());
        println!("public_key: {}", id.public_key());
    }
    Ok(ExitCode::SUCCESS)
}
