//! Property tests of the exec policy decision and the child environment
//! filter: whatever the policy, the approval and the caller's environment,
//! the safety rules hold.

use std::collections::BTreeMap;

use clawnode_smol::exec::approvals::{Approval, Ask, Denied, Resolved, Security, decide};
use clawnode_smol::exec::child_env;
use proptest::prelude::*;

fn security() -> impl Strategy<Value = Security> {
    prop_oneof![
        Just(Security::Deny),
        Just(Security::Allowlist),
        Just(Security::Full)
    ]
}

fn ask() -> impl Strategy<Value = Ask> {
    prop_oneof![Just(Ask::Off), Just(Ask::OnMiss), Just(Ask::Always)]
}

fn approval() -> impl Strategy<Value = Approval> {
    prop_oneof![
        Just(Approval::None),
        Just(Approval::Approved),
        Just(Approval::AskFallback)
    ]
}

fn policy(security: Security, ask: Ask, ask_fallback: Security) -> Resolved {
    Resolved {
        security,
        ask,
        ask_fallback,
        auto_allow_skills: false,
        allowlist: Vec::new(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// The decision's safety rules, over every input.
    #[test]
    fn the_decision_never_runs_what_the_policy_forbids(
        sec in security(), a in ask(), fallback in security(),
        appr in approval(), covered in any::<bool>(),
    ) {
        let p = policy(sec, a, fallback);
        let d = decide(&p, appr, covered);
        // deny is never lifted, by an approval or a fallback.
        if sec == Security::Deny {
            prop_assert_eq!(&d, &Err(Denied::Disabled));
        }
        // With nobody to answer, the fallback caps what runs.
        if appr == Approval::AskFallback && fallback == Security::Deny {
            prop_assert_eq!(&d, &Err(Denied::Disabled));
        }
        // Without an approval, an allowlist miss or an `always` never runs.
        if appr == Approval::None {
            if sec == Security::Allowlist && !covered {
                prop_assert!(d.is_err());
            }
            if a == Ask::Always {
                prop_assert!(d.is_err());
            }
        }
        // What is allowed outright runs: full with ask off, or a covered
        // command under an allowlist that asks only on a miss.
        if appr == Approval::None && a == Ask::Off && sec == Security::Full {
            prop_assert_eq!(&d, &Ok(()));
        }
        if appr == Approval::None && a != Ask::Always && sec == Security::Allowlist && covered {
            prop_assert_eq!(&d, &Ok(()));
        }
        // An operator's approval runs anything the policy does not deny.
        if appr == Approval::Approved && sec != Security::Deny {
            prop_assert_eq!(&d, &Ok(()));
        }
        // More permissive never decides less: an approval and coverage
        // only ever turn a refusal into a run, never the reverse.
        if d.is_ok() {
            prop_assert_eq!(decide(&p, Approval::Approved, covered), Ok(()));
            prop_assert_eq!(decide(&p, appr, true).is_ok(), true);
        }
    }
}

/// Keys a caller might send, dangerous and benign, in any case.
fn key() -> impl Strategy<Value = String> {
    let named = prop_oneof![
        Just("LD_PRELOAD"),
        Just("LD_LIBRARY_PATH"),
        Just("LD_AUDIT"),
        Just("DYLD_INSERT_LIBRARIES"),
        Just("NODE_OPTIONS"),
        Just("BASH_ENV"),
        Just("ENV"),
        Just("PYTHONSTARTUP"),
        Just("PERL5OPT"),
        Just("PATH"),
        Just("HOME"),
        Just("LANG"),
        Just("LC_ALL"),
        Just("TERM"),
        Just("FOO"),
        Just("MY_SETTING"),
    ]
    .prop_map(str::to_owned);
    let cased = (named, any::<bool>()).prop_map(
        |(k, lower)| {
            if lower { k.to_ascii_lowercase() } else { k }
        },
    );
    prop_oneof![
        4 => cased,
        1 => "LD_[A-Z]{1,6}",
        1 => "DYLD_[A-Z]{1,6}",
        1 => "[A-Za-z_][A-Za-z0-9_]{0,10}",
        1 => "[ -~]{0,6}",
    ]
}

fn is_loader_or_startup(key: &str) -> bool {
    let k = key.to_ascii_uppercase();
    k.starts_with("LD_")
        || k.starts_with("DYLD_")
        || [
            "NODE_OPTIONS",
            "BASH_ENV",
            "ENV",
            "PYTHONSTARTUP",
            "PERL5OPT",
        ]
        .contains(&k.as_str())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Whatever the caller asks for and whatever the node's own
    /// environment holds, no loader or shell-startup variable reaches the
    /// child from the caller, PATH is never the caller's, and a refusal
    /// names every key it refused.
    #[test]
    fn no_loader_or_startup_override_reaches_a_child(
        requested in prop::collection::btree_map(key(), "[ -~]{0,12}", 0..6),
        host in prop::collection::btree_map(key(), "[ -~]{0,12}", 0..6),
        shell in any::<bool>(),
    ) {
        let inherited: Vec<(String, String)> = host.clone().into_iter().collect();
        match child_env(inherited, &requested, shell) {
            Ok(env) => {
                for (k, v) in &requested {
                    prop_assert!(!is_loader_or_startup(k), "{k} was accepted");
                    prop_assert!(!k.eq_ignore_ascii_case("PATH"), "PATH was accepted");
                    if let Some(got) = env.get(k) {
                        // The caller's value, blanked for a pager, or the
                        // node's own when a shell wrapper dropped it.
                        prop_assert!(got == v || got.is_empty() || host.get(k) == Some(got));
                    }
                }
                for k in env.keys() {
                    prop_assert!(!is_loader_or_startup(k), "{k} reached the child");
                }
                prop_assert!(env.get("PATH").is_some_and(|p| !p.is_empty()));
                prop_assert_eq!(env.get("OPENCLAW_CLI").map(String::as_str), Some("1"));
            }
            Err(rejected) => {
                let named: Vec<&String> =
                    rejected.blocked.iter().chain(&rejected.invalid).collect();
                prop_assert!(!named.is_empty());
                for k in &named {
                    prop_assert!(requested.contains_key(*k));
                }
                for k in requested.keys().filter(|k| is_loader_or_startup(k)) {
                    prop_assert!(named.contains(&k), "{k} not named");
                }
                let text = rejected.to_string();
                for k in named {
                    prop_assert!(text.contains(k.as_str()));
                }
            }
        }
    }
}

#[test]
fn an_empty_request_keeps_the_nodes_safe_environment() {
    let env = child_env(
        [
            ("PATH".to_owned(), "/usr/bin".to_owned()),
            ("LD_PRELOAD".to_owned(), "/x.so".to_owned()),
        ],
        &BTreeMap::new(),
        false,
    )
    .unwrap();
    assert_eq!(env.get("PATH").map(String::as_str), Some("/usr/bin"));
    assert!(!env.contains_key("LD_PRELOAD"));
}
