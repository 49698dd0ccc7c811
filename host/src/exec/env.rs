//! The environment of a command run for the gateway (docs/exec-host.md §4).
//!
//! The lists are the official node host's. Two choices are stricter:
//! `PYTHONSTARTUP` is stripped from the inherited environment too, not only
//! refused as an override; and `GIT_ALLOW_PROTOCOL` and
//! `GIT_PROTOCOL_FROM_USER` are dropped rather than rewritten. A `PATH`
//! override is refused, as the official host's code does (its docs say it
//! is ignored): the child always gets the node's own `PATH`.

use std::collections::BTreeMap;
use std::fmt;

/// Never passed on, inherited or requested: each can make a loader, an
/// interpreter, a compiler driver or a shell run code of the caller's
/// choosing.
#[rustfmt::skip]
pub const BLOCKED_EVERYWHERE: &[&str] = &[
    "NODE_OPTIONS", "NODE_PATH", "NODE_REDIRECT_WARNINGS", "NODE_REPL_EXTERNAL_MODULE",
    "NODE_REPL_HISTORY", "NODE_V8_COVERAGE", "PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP",
    "PERL5LIB", "PERL5OPT", "RUBYLIB", "RUBYOPT", "BASHOPTS", "BASH_ENV", "ENV", "KSH_ENV",
    "BROWSER", "GIT_ALLOW_PROTOCOL", "GIT_EDITOR", "GIT_EXTERNAL_DIFF", "GIT_DIR",
    "GIT_WORK_TREE", "GIT_COMMON_DIR", "GIT_EXEC_PATH", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_NAMESPACE", "GIT_PROTOCOL_FROM_USER",
    "GIT_SEQUENCE_EDITOR", "GIT_TEMPLATE_DIR", "GIT_SSL_NO_VERIFY", "GIT_SSL_CAINFO",
    "GIT_SSL_CAPATH", "CC", "CPP", "CXX", "CXXCPP", "CARGO_BUILD_RUSTC",
    "CARGO_BUILD_RUSTC_WRAPPER", "CARGO_BUILD_RUSTC_WORKSPACE_WRAPPER", "CARGO_BUILD_RUSTDOC",
    "RUSTC", "RUSTC_WRAPPER", "RUSTC_WORKSPACE_WRAPPER", "RUSTDOC", "CMAKE_C_COMPILER",
    "CMAKE_CXX_COMPILER", "SHELL", "SHELLOPTS", "PS4", "GCONV_PATH", "IFS", "SSLKEYLOGFILE",
    "JAVA_OPTS", "JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS", "JDK_JAVA_OPTIONS", "PYTHONBREAKPOINT",
    "DOTNET_STARTUP_HOOKS", "DOTNET_ADDITIONAL_DEPS", "FPATH", "GLIBC_TUNABLES", "MAVEN_OPTS",
    "MAKE", "MAKEFLAGS", "MFLAGS", "SBT_OPTS", "GRADLE_OPTS", "ANT_OPTS", "HGRCPATH", "HGEDITOR",
    "HGMERGE", "EXINIT", "VIMINIT", "MYVIMRC", "GVIMINIT", "LUA_INIT", "LUA_INIT_5_1",
    "LUA_INIT_5_2", "LUA_INIT_5_3", "LUA_INIT_5_4", "EMACSLOADPATH", "RUBYSHELL", "GIT_HOOK_PATH",
    "SVN_EDITOR", "SVN_SSH", "BZR_EDITOR", "BZR_SSH", "BZR_PLUGIN_PATH", "SUDO_ASKPASS",
    "JULIA_EDITOR", "CONFIG_SITE", "CONFIG_SHELL", "CMAKE_TOOLCHAIN_FILE", "CATALINA_OPTS",
    "CORECLR_PROFILER", "HELM_PLUGINS", "PACKER_PLUGIN_PATH", "VAGRANT_VAGRANTFILE", "ERL_AFLAGS",
    "ERL_FLAGS", "ERL_ZFLAGS", "ELIXIR_ERL_OPTIONS", "R_ENVIRON", "R_PROFILE", "R_ENVIRON_USER",
    "R_PROFILE_USER", "TCLLIBPATH", "HOSTALIASES",
];

/// Refused as overrides: where a program looks for configuration,
/// credentials, proxies, trust anchors or helpers to run.
#[rustfmt::skip]
pub const BLOCKED_OVERRIDE_ONLY: &[&str] = &[
    "PATH", "HOME", "GRADLE_USER_HOME", "ZDOTDIR", "GIT_SSH_COMMAND", "GIT_SSH",
    "GIT_PROXY_COMMAND", "GIT_ASKPASS", "SSH_ASKPASS", "LESSOPEN", "LESSCLOSE", "PAGER",
    "MANPAGER", "GIT_PAGER", "EDITOR", "VISUAL", "FCEDIT", "SUDO_EDITOR", "PROMPT_COMMAND",
    "HISTFILE", "PERL5DB", "PERL5DBCMD", "OPENSSL_CONF", "OPENSSL_ENGINES", "WGETRC", "CURL_HOME",
    "CLASSPATH", "CFLAGS", "CGO_CFLAGS", "CGO_LDFLAGS", "GOFLAGS", "CORECLR_PROFILER_PATH", "PHPRC",
    "PHP_INI_SCAN_DIR", "DENO_DIR", "BUN_CONFIG_REGISTRY", "YARN_RC_FILENAME", "HTTP_PROXY",
    "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "NODE_TLS_REJECT_UNAUTHORIZED", "NODE_EXTRA_CA_CERTS",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "DOCKER_HOST",
    "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "PIP_INDEX_URL", "PIP_PYPI_URL",
    "PIP_EXTRA_INDEX_URL", "PIP_CONFIG_FILE", "PIP_FIND_LINKS", "PIP_TRUSTED_HOST", "UV_INDEX",
    "UV_INDEX_URL", "UV_PYTHON", "UV_EXTRA_INDEX_URL", "UV_DEFAULT_INDEX", "DOCKER_CONTEXT",
    "LIBRARY_PATH", "LDFLAGS", "CPATH", "C_INCLUDE_PATH", "CPLUS_INCLUDE_PATH",
    "OBJC_INCLUDE_PATH", "GOPROXY", "GONOSUMCHECK", "GONOSUMDB", "GONOPROXY", "GOPRIVATE", "GOENV",
    "GOPATH", "PYTHONUSERBASE", "RUSTFLAGS", "RUSTUP_DIST_ROOT", "RUSTUP_DIST_SERVER",
    "RUSTUP_HOME", "RUSTUP_TOOLCHAIN", "RUSTUP_UPDATE_ROOT", "CARGO_HOME", "VIRTUAL_ENV",
    "LUA_PATH", "LUA_CPATH", "GEM_HOME", "GEM_PATH", "BUNDLE_GEMFILE", "COMPOSER_HOME",
    "CONDA_DEFAULT_ENV", "CONDA_PREFIX", "XDG_CACHE_HOME", "XDG_CONFIG_DIRS", "XDG_CONFIG_HOME",
    "XDG_DATA_DIRS", "XDG_DATA_HOME", "XDG_RUNTIME_DIR", "XDG_STATE_HOME", "AWS_CONFIG_FILE",
    "KUBECONFIG", "GOOGLE_APPLICATION_CREDENTIALS", "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE", "AZURE_AUTH_LOCATION", "HELM_HOME", "ANSIBLE_CONFIG",
    "ANSIBLE_LIBRARY", "ANSIBLE_CALLBACK_PLUGINS", "ANSIBLE_COLLECTIONS_PATH",
    "ANSIBLE_CONNECTION_PLUGINS", "ANSIBLE_FILTER_PLUGINS", "ANSIBLE_INVENTORY_PLUGINS",
    "ANSIBLE_LOOKUP_PLUGINS", "ANSIBLE_MODULE_UTILS", "ANSIBLE_REMOTE_TEMP", "ANSIBLE_ROLES_PATH",
    "ANSIBLE_STRATEGY_PLUGINS", "R_LIBS_USER", "TF_CLI_CONFIG_FILE", "TF_PLUGIN_CACHE_DIR",
    "AMQP_URL", "AWS_ACCESS_KEY_ID", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_SECRET_ACCESS_KEY", "AWS_SECURITY_TOKEN",
    "AWS_SESSION_TOKEN", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "DATABASE_URL", "GH_TOKEN",
    "GITHUB_TOKEN", "GITLAB_TOKEN", "MONGODB_URI", "NODE_AUTH_TOKEN", "NPM_TOKEN", "REDIS_URL",
    "SSH_AUTH_SOCK", "SYSTEMROOT", "WINDIR",
];

/// Of [`BLOCKED_OVERRIDE_ONLY`], those the node's own environment may still
/// pass on: the service's configuration, not the caller's.
#[rustfmt::skip]
pub const ALLOWED_INHERITED: &[&str] = &[
    "PATH", "ALL_PROXY", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE", "AZURE_AUTH_LOCATION", "CURL_CA_BUNDLE", "DOCKER_CERT_PATH",
    "DOCKER_CONTEXT", "DOCKER_HOST", "DOCKER_TLS_VERIFY", "GIT_PAGER",
    "GOOGLE_APPLICATION_CREDENTIALS", "GRADLE_USER_HOME", "HISTFILE", "HOME", "HTTPS_PROXY",
    "HTTP_PROXY", "KUBECONFIG", "MANPAGER", "NODE_EXTRA_CA_CERTS", "NODE_TLS_REJECT_UNAUTHORIZED",
    "NO_PROXY", "PAGER", "REQUESTS_CA_BUNDLE", "RUSTUP_DIST_ROOT", "RUSTUP_DIST_SERVER",
    "RUSTUP_HOME", "RUSTUP_TOOLCHAIN", "RUSTUP_UPDATE_ROOT", "SSH_AUTH_SOCK", "SSL_CERT_DIR",
    "SSL_CERT_FILE", "SYSTEMROOT", "WINDIR", "XDG_CACHE_HOME", "XDG_CONFIG_DIRS",
    "XDG_CONFIG_HOME", "XDG_DATA_DIRS", "XDG_DATA_HOME", "XDG_RUNTIME_DIR", "XDG_STATE_HOME",
    "ZDOTDIR",
];

/// Prefixes never passed on: dynamic loaders and exported shell functions.
const BLOCKED_PREFIXES: &[&str] = &["LD_", "DYLD_", "BASH_FUNC_"];

/// Prefixes refused as overrides.
const OVERRIDE_ONLY_PREFIXES: &[&str] =
    &["GIT_CONFIG_", "NPM_CONFIG_", "CARGO_REGISTRIES_", "TF_VAR_"];

/// What a shell wrapper (`sh -lc TEXT`) may still be given: terminal and
/// locale settings. Any other override is dropped for it, as the shell
/// text could use it in ways no allowlist foresaw.
#[rustfmt::skip]
const SHELL_WRAPPER_KEEPS: &[&str] = &[
    "TERM", "LANG", "LC_ALL", "LC_CTYPE", "LC_MESSAGES", "COLORTERM", "NO_COLOR", "FORCE_COLOR",
    "OPENCLAW_SUBAGENT_EXEC",
];

/// The `PATH` a child gets when the node has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Overrides a request asked for and may not have: the run is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvRejected {
    /// Keys on a blocked list, sorted.
    pub blocked: Vec<String>,
    /// Keys that are not portable variable names, sorted.
    pub invalid: Vec<String>,
}

impl fmt::Display for EnvRejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if !self.blocked.is_empty() {
            parts.push(format!(
                "blocked override keys: {}",
                self.blocked.join(", ")
            ));
        }
        if !self.invalid.is_empty() {
            parts.push(format!(
                "invalid non-portable override keys: {}",
                self.invalid.join(", ")
            ));
        }
        write!(
            f,
            "SYSTEM_RUN_DENIED: environment override rejected ({})",
            parts.join("; ")
        )
    }
}

impl std::error::Error for EnvRejected {}

fn listed(list: &[&str], key: &str) -> bool {
    list.iter().any(|k| k.eq_ignore_ascii_case(key))
}

fn prefixed(prefixes: &[&str], key: &str) -> bool {
    let upper = key.to_ascii_uppercase();
    prefixes.iter().any(|p| upper.starts_with(p))
}

/// Whether the node may pass its own `key` on to a child.
pub fn inherit_allowed(key: &str) -> bool {
    !listed(BLOCKED_EVERYWHERE, key)
        && !prefixed(BLOCKED_PREFIXES, key)
        && (!listed(BLOCKED_OVERRIDE_ONLY, key) || listed(ALLOWED_INHERITED, key))
}

fn portable(key: &str) -> bool {
    let mut chars = key.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Whether a caller may set `key` (to `value`).
fn override_allowed(key: &str, value: &str) -> bool {
    let upper = key.to_ascii_uppercase();
    if (upper == "PAGER" || upper == "GIT_PAGER") && (value.is_empty() || value == "cat") {
        return true;
    }
    let cargo_tool = upper.starts_with("CARGO_TARGET_")
        && (upper.ends_with("_LINKER") || upper.ends_with("_RUNNER"));
    !listed(BLOCKED_EVERYWHERE, key)
        && !listed(BLOCKED_OVERRIDE_ONLY, key)
        && !prefixed(BLOCKED_PREFIXES, key)
        && !prefixed(OVERRIDE_ONLY_PREFIXES, key)
        && !cargo_tool
}

/// The environment of a child: the node's own (`inherited`) as far as it
/// may be passed on, then the caller's `requested` overrides.
///
/// One dangerous or malformed override refuses the whole request, naming
/// every offending key. For a shell wrapper (`shell_wrapper`, e.g. the
/// gateway's `/bin/sh -lc TEXT`) the accepted overrides are then reduced to
/// terminal and locale settings. `PATH` is the node's, or [`DEFAULT_PATH`];
/// `OPENCLAW_CLI=1` marks the child as run by a node, as upstream does.
pub fn child_env(
    inherited: impl IntoIterator<Item = (String, String)>,
    requested: &BTreeMap<String, String>,
    shell_wrapper: bool,
) -> Result<BTreeMap<String, String>, EnvRejected> {
    let mut rejected = EnvRejected {
        blocked: Vec::new(),
        invalid: Vec::new(),
    };
    for (key, value) in requested {
        if !portable(key) {
            rejected.invalid.push(key.clone());
        } else if !override_allowed(key, value) {
            rejected.blocked.push(key.clone());
        }
    }
    if !rejected.blocked.is_empty() || !rejected.invalid.is_empty() {
        rejected.blocked.sort();
        rejected.invalid.sort();
        return Err(rejected);
    }
    let mut env: BTreeMap<String, String> = inherited
        .into_iter()
        .filter(|(k, _)| inherit_allowed(k))
        .collect();
    if env.get("PATH").is_none_or(|p| p.is_empty()) {
        env.insert("PATH".into(), DEFAULT_PATH.into());
    }
    for (key, value) in requested {
        let upper = key.to_ascii_uppercase();
        let pager = upper == "PAGER" || upper == "GIT_PAGER";
        if shell_wrapper && !pager && !listed(SHELL_WRAPPER_KEEPS, key) && !upper.starts_with("LC_")
        {
            continue;
        }
        let value = if pager { String::new() } else { value.clone() };
        env.insert(key.clone(), value);
    }
    env.insert("OPENCLAW_CLI".into(), "1".into());
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn node_env() -> Vec<(String, String)> {
        map(&[
            ("PATH", "/usr/bin:/bin"),
            ("HOME", "/home/n"),
            ("LANG", "C.UTF-8"),
            ("LD_PRELOAD", "/tmp/evil.so"),
            ("ld_library_path", "/tmp"),
            ("BASH_ENV", "/tmp/rc"),
            ("BASH_FUNC_ls%%", "() { evil; }"),
            ("NODE_OPTIONS", "--require /tmp/x.js"),
            ("PYTHONSTARTUP", "/tmp/s.py"),
            ("PERL5OPT", "-Mevil"),
            ("DYLD_INSERT_LIBRARIES", "/tmp/x.dylib"),
            ("OPENSSL_CONF", "/tmp/o.cnf"),
        ])
        .into_iter()
        .collect()
    }

    #[test]
    fn the_node_environment_loses_loaders_interpreter_hooks_and_shell_startup() {
        let env = child_env(node_env(), &BTreeMap::new(), false).unwrap();
        assert_eq!(
            env,
            map(&[
                ("HOME", "/home/n"),
                ("LANG", "C.UTF-8"),
                ("OPENCLAW_CLI", "1"),
                ("PATH", "/usr/bin:/bin"),
            ])
        );
    }

    #[test]
    fn a_dangerous_override_refuses_the_request_naming_every_key() {
        let requested = map(&[
            ("LD_PRELOAD", "/tmp/evil.so"),
            ("BASH_ENV", "/tmp/rc"),
            ("path", "/tmp"),
            ("GIT_CONFIG_COUNT", "1"),
            ("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER", "/tmp/ld"),
            ("1BAD", "x"),
            ("A-B", "x"),
            ("FOO", "fine"),
        ]);
        let err = child_env(node_env(), &requested, false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "SYSTEM_RUN_DENIED: environment override rejected (blocked override keys: \
             BASH_ENV, CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER, GIT_CONFIG_COUNT, \
             LD_PRELOAD, path; invalid non-portable override keys: 1BAD, A-B)"
        );
    }

    #[test]
    fn harmless_overrides_pass_and_a_shell_wrapper_keeps_only_terminal_and_locale() {
        let requested = map(&[
            ("FOO", "1"),
            ("TERM", "xterm"),
            ("LC_TIME", "C"),
            ("PAGER", "cat"),
        ]);
        let direct = child_env(node_env(), &requested, false).unwrap();
        assert_eq!(direct["FOO"], "1");
        // Only cargo's per-target linker and runner are tools; other names
        // ending so, or other cargo target keys, are plain values.
        let plain = map(&[
            ("TEST_RUNNER", "x"),
            ("MY_LINKER", "x"),
            ("CARGO_TARGET_DIR", "/tmp/t"),
        ]);
        assert!(child_env(node_env(), &plain, false).is_ok());
        assert_eq!(direct["PAGER"], "", "a pager of cat becomes none");
        let shell = child_env(node_env(), &requested, true).unwrap();
        assert!(!shell.contains_key("FOO"));
        assert_eq!(shell["TERM"], "xterm");
        assert_eq!(shell["LC_TIME"], "C");
    }

    #[test]
    fn a_node_without_path_gives_the_default() {
        let env = child_env(Vec::new(), &BTreeMap::new(), false).unwrap();
        assert_eq!(env["PATH"], DEFAULT_PATH);
    }

    #[test]
    fn every_listed_key_is_kept_from_children_whatever_its_case() {
        for key in BLOCKED_EVERYWHERE {
            assert!(!inherit_allowed(key), "{key}");
            assert!(!inherit_allowed(&key.to_ascii_lowercase()), "{key}");
            assert!(!override_allowed(key, "x"), "{key}");
        }
        for key in BLOCKED_OVERRIDE_ONLY {
            assert!(!override_allowed(key, "x"), "{key}");
            assert_eq!(
                inherit_allowed(key),
                listed(ALLOWED_INHERITED, key),
                "{key}"
            );
        }
    }
}
