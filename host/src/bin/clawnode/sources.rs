//! Where `clawnode run`'s settings come from (the environment, the config
//! file, the command line, a setup code), merged again on every SIGHUP.

use std::path::PathBuf;

use clawnode::policy::{ClientOptions, SessionConfig};
use clawnode::setup_code::SetupCode;
use clawnode::{StateDir, StoreError};
use clawnode_host::exec::ExecDocuments as _;

use crate::file_config::{Settings, SettingsError};

/// Why the settings could not be loaded (at start: exit status 2; on
/// SIGHUP: logged, and the config in force stays).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The settings are wrong.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// The paired gateway could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The config file's `[exec]` policy could not be stored.
    #[error("cannot store the [exec] policy: {0}")]
    ExecPolicy(String),
    /// The config file's `[exec]` ceiling could not be stored.
    #[error("cannot store the [exec] ceiling: {0}")]
    ExecCeiling(StoreError),
}

/// This machine's host name, the default display name.
pub fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// Everything that makes up the run's settings, re-evaluated on SIGHUP.
pub struct Sources {
    pub file: Option<PathBuf>,
    pub cli: Settings,
    pub env_token: Option<String>,
    pub client: ClientOptions,
    /// The setup code of `--pair`/`--pair-if-needed`, decoded once (its
    /// expiry is checked at start, not at every reload).
    pub pairing: Option<SetupCode>,
}

impl Sources {
    /// The session config, after writing the file's `[exec]` policy (if
    /// any, and if it changes anything) into `store`.
    pub fn load(&self, store: &StateDir) -> Result<SessionConfig, LoadError> {
        let env = Settings {
            token: self.env_token.clone(),
            ..Settings::default()
        };
        let file = match &self.file {
            Some(path) => Settings::from_file(path)?,
            None => Settings::default(),
        };
        let mut settings = env.overlaid_with(file).overlaid_with(self.cli.clone());
        if let Some(code) = &self.pairing {
            // Pairing authenticates with the code's bootstrap token alone.
            settings.token = None;
            settings.password = None;
            // Explicit values win; the code's pin goes with the code's URL.
            let url = settings
                .url
                .get_or_insert_with(|| code.url.as_str().to_owned());
            let same_url =
                clawnode::policy::GatewayUrl::parse(url).ok().as_ref() == Some(&code.url);
            let pins = settings.tls_fingerprints.get_or_insert_with(Vec::new);
            if pins.is_empty()
                && same_url
                && let Some(fp) = &code.tls_fingerprint
            {
                pins.push(format!("sha256:{fp}"));
            }
        } else if settings.url.is_none()
            && let Some(paired) = store.load_paired_gateway()?
        {
            settings.url = Some(paired.url);
            let pins = settings.tls_fingerprints.get_or_insert_with(Vec::new);
            if pins.is_empty() {
                *pins = paired.tls_fingerprints;
            }
        }
        let mut config = settings.session_config(self.client.clone())?;
        if let Some(code) = &self.pairing {
            let mut creds = config.credentials.clone();
            creds.bootstrap_token = Some(code.bootstrap_token.clone());
            config = config.with_credentials(creds);
        }
        if let Some(exec) = &settings.exec {
            let changed = clawnode_host::exec::stored::merge_local(store, |f| exec.apply(f))
                .map_err(|e| LoadError::ExecPolicy(e.message))?;
            if changed {
                tracing::info!("exec policy from the config file stored");
            }
        }
        // The file's [exec] values are also a ceiling a gateway cannot widen
        // (docs/exec-host.md §11.4); without them, there is none.
        let ceiling = match (&settings.exec, &self.file) {
            (Some(exec), Some(path)) => Some(exec.ceiling(path)).filter(|c| !c.is_empty()),
            _ => None,
        };
        let bytes = ceiling.map(|c| serde_json::to_vec_pretty(&c).expect("serialises"));
        store
            .store_exec_ceiling(bytes.as_deref())
            .map_err(LoadError::ExecCeiling)?;
        Ok(config)
    }
}
