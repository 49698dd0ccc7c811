//! The handshake on the wire (docs/protocol.md §3): reading
//! `connect.challenge`, writing the signed `connect` request, and reading
//! hello-ok.
//!
//! Outgoing params are borrowed `Serialize` structs, so a connect frame is
//! written in one pass without cloning the config; incoming payloads are read
//! once into typed values.

use alloc::borrow::ToOwned;
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::String;

use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::config::{Credentials, Secret, SessionConfig};
use crate::frame::{self, Key::Scalar};
use crate::identity::{DeviceIdentity, SignatureFields};
use crate::{CLIENT_ID, MAX_PROTOCOL, MIN_PROTOCOL, NODE_ROLE};

/// A `connect.challenge` payload: what the connect signature must cover.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Challenge {
    /// The gateway's nonce; never empty.
    pub nonce: String,
    /// The gateway's time in ms; signed as `signedAt`.
    pub ts: i64,
}

impl Challenge {
    /// Reads a challenge payload; `None` unless it has a non-empty string
    /// `nonce` and an integer `ts`.
    pub fn read(payload: Option<&RawValue>) -> Option<Challenge> {
        let [nonce, ts] = frame::members(payload?.get(), &[Scalar("nonce"), Scalar("ts")])?;
        let ts = ts.int()?;
        let nonce = nonce.text()?;
        (!nonce.is_empty()).then(|| Challenge {
            nonce: nonce.into_owned(),
            ts,
        })
    }
}

/// Which credentials go into `connect.auth`, and how they are chosen.
#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct Auth<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    password: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    device_token: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bootstrap_token: Option<&'a str>,
}

impl<'a> Auth<'a> {
    /// The configured shared credentials; a device token (stored, else
    /// configured) only without them, and a bootstrap token only with no
    /// device token at all. After a shared-token mismatch the one retry
    /// sends the device token alone (docs/protocol.md §3).
    fn select(creds: &'a Credentials, stored: Option<&'a Secret>, device_token_only: bool) -> Self {
        let device = stored.or(creds.device_token.as_ref()).map(Secret::expose);
        if device_token_only {
            return Auth {
                device_token: device,
                ..Auth::default()
            };
        }
        let token = creds.token.as_ref().map(Secret::expose);
        let password = creds.password.as_ref().map(Secret::expose);
        let shared = token.is_some() || password.is_some();
        Auth {
            token,
            password,
            device_token: device.filter(|_| !shared),
            bootstrap_token: creds
                .bootstrap_token
                .as_ref()
                .map(Secret::expose)
                .filter(|_| !shared && device.is_none()),
        }
    }

    fn is_empty(&self) -> bool {
        self.token.is_none()
            && self.password.is_none()
            && self.device_token.is_none()
            && self.bootstrap_token.is_none()
    }

    /// The token the v3 signature covers: the shared token, else the
    /// device token, else the bootstrap token, else none (the password is
    /// never signed).
    fn signed_token(&self) -> &'a str {
        self.token
            .or(self.device_token)
            .or(self.bootstrap_token)
            .unwrap_or("")
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ClientInfo<'a> {
    id: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    display_name: Option<&'a str>,
    version: &'a str,
    platform: &'a str,
    mode: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    device_family: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    instance_id: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DeviceProof<'a> {
    id: &'a str,
    public_key: &'a str,
    signature: &'a str,
    signed_at: i64,
    nonce: &'a str,
}

/// The `connect` params, borrowed from the config and the identity.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ConnectParams<'a> {
    min_protocol: u32,
    max_protocol: u32,
    client: ClientInfo<'a>,
    role: &'static str,
    scopes: [&'static str; 0],
    caps: &'a BTreeSet<String>,
    commands: &'a BTreeSet<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    permissions: &'a BTreeMap<String, bool>,
    #[serde(skip_serializing_if = "Auth::is_empty")]
    auth: Auth<'a>,
    device: DeviceProof<'a>,
}

/// The signed `connect` request frame answering `challenge`, with id
/// `request_id`.
pub(crate) fn connect_frame(
    identity: &DeviceIdentity,
    config: &SessionConfig,
    stored_token: Option<&Secret>,
    device_token_only: bool,
    challenge: &Challenge,
    request_id: &str,
) -> String {
    let client = &config.client;
    let auth = Auth::select(&config.credentials, stored_token, device_token_only);
    let signature = identity.sign(
        &SignatureFields {
            device_id: identity.device_id(),
            client_id: CLIENT_ID,
            client_mode: NODE_ROLE,
            role: NODE_ROLE,
            scopes: &[],
            signed_at: challenge.ts,
            token: auth.signed_token(),
            nonce: &challenge.nonce,
            platform: &client.platform,
            device_family: client.device_family.as_deref().unwrap_or(""),
        }
        .v3_payload(),
    );
    let params = ConnectParams {
        min_protocol: MIN_PROTOCOL,
        max_protocol: MAX_PROTOCOL,
        client: ClientInfo {
            id: CLIENT_ID,
            display_name: client.display_name.as_deref(),
            version: &client.version,
            platform: &client.platform,
            mode: NODE_ROLE,
            device_family: client.device_family.as_deref(),
            instance_id: client.instance_id.as_deref(),
        },
        role: NODE_ROLE,
        scopes: [],
        caps: &client.caps,
        commands: &client.commands,
        permissions: &client.permissions,
        auth,
        device: DeviceProof {
            id: identity.device_id(),
            public_key: identity.public_key(),
            signature: &signature,
            signed_at: challenge.ts,
            nonce: &challenge.nonce,
        },
    };
    frame::request(request_id, "connect", &params)
}

/// What the node reads from a hello-ok payload (docs/protocol.md §3). Fields
/// of the wrong type count as absent, as the gateway's own clients treat
/// them.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct HelloOk {
    /// `protocol`.
    pub protocol: Option<u64>,
    /// `policy.tickIntervalMs`.
    pub tick_interval_ms: Option<u64>,
    /// `policy.maxPayload`.
    pub max_payload: Option<u64>,
    /// `server.connId`.
    pub conn_id: Option<String>,
    /// `server.version`.
    pub server_version: Option<String>,
    /// `auth.deviceToken`: a device token the gateway issued.
    pub device_token: Option<Secret>,
    /// `auth.role`: the role the token is for.
    pub role: Option<String>,
}

impl HelloOk {
    /// Reads the payload of a successful connect response; `None` unless
    /// it is an object with `type: "hello-ok"`.
    pub fn read(payload: Option<&Value>) -> Option<HelloOk> {
        let hello =
            payload.filter(|p| p.get("type").and_then(Value::as_str) == Some("hello-ok"))?;
        let num = |path: &str| hello.pointer(path).and_then(Value::as_u64);
        let text = |path: &str| {
            hello
                .pointer(path)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        Some(HelloOk {
            protocol: num("/protocol"),
            tick_interval_ms: num("/policy/tickIntervalMs"),
            max_payload: num("/policy/maxPayload"),
            conn_id: text("/server/connId"),
            server_version: text("/server/version"),
            device_token: text("/auth/deviceToken").map(Secret::from),
            role: text("/auth/role"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::boxed::Box;
    use serde_json::json;

    fn raw(v: &Value) -> Box<RawValue> {
        serde_json::value::to_raw_value(v).unwrap()
    }

    fn creds(token: bool, password: bool, device: bool, bootstrap: bool) -> Credentials {
        let s = |on: bool, v: &str| on.then(|| Secret::from(v));
        Credentials {
            token: s(token, "T"),
            password: s(password, "P"),
            device_token: s(device, "D"),
            bootstrap_token: s(bootstrap, "B"),
        }
    }

    fn auth_json(c: &Credentials, stored: Option<&Secret>, only: bool) -> (Value, String) {
        let a = Auth::select(c, stored, only);
        let signed = a.signed_token().to_owned();
        (serde_json::to_value(&a).unwrap(), signed)
    }

    #[test]
    fn auth_sends_shared_credentials_else_a_device_token_else_a_bootstrap_token() {
        let stored = Secret::from("S");
        let (v, signed) = auth_json(&creds(true, true, true, true), Some(&stored), false);
        assert_eq!(
            (v, signed.as_str()),
            (json!({"token": "T", "password": "P"}), "T")
        );
        let (v, signed) = auth_json(&creds(false, true, true, true), None, false);
        assert_eq!((v, signed.as_str()), (json!({"password": "P"}), ""));
        let (v, signed) = auth_json(&creds(false, false, true, true), Some(&stored), false);
        assert_eq!((v, signed.as_str()), (json!({"deviceToken": "S"}), "S"));
        let (v, signed) = auth_json(&creds(false, false, true, true), None, false);
        assert_eq!((v, signed.as_str()), (json!({"deviceToken": "D"}), "D"));
        let (v, signed) = auth_json(&creds(false, false, false, true), None, false);
        assert_eq!((v, signed.as_str()), (json!({"bootstrapToken": "B"}), "B"));
        let (v, _) = auth_json(&creds(false, false, false, false), None, false);
        assert_eq!(v, json!({}));
    }

    #[test]
    fn the_device_token_retry_sends_the_device_token_alone() {
        let stored = Secret::from("S");
        let (v, signed) = auth_json(&creds(true, true, false, true), Some(&stored), true);
        assert_eq!((v, signed.as_str()), (json!({"deviceToken": "S"}), "S"));
    }

    #[test]
    fn a_challenge_needs_a_nonce_and_an_integer_ts() {
        let ok = json!({"nonce": "n", "ts": 5, "extra": true});
        assert_eq!(
            Challenge::read(Some(&raw(&ok))),
            Some(Challenge {
                nonce: "n".into(),
                ts: 5
            })
        );
        for bad in [
            json!({"nonce": "n"}),
            json!({"nonce": "", "ts": 5}),
            json!({"nonce": "n", "ts": 5.5}),
            json!({"nonce": 1, "ts": 5}),
        ] {
            assert_eq!(Challenge::read(Some(&raw(&bad))), None, "{bad}");
        }
        assert_eq!(Challenge::read(None), None);
    }

    #[test]
    fn hello_ok_is_read_leniently_but_must_say_hello_ok() {
        let p = json!({
            "type": "hello-ok", "protocol": 4,
            "policy": {"tickIntervalMs": "30000", "maxPayload": 1024},
            "server": {"connId": "c1", "version": 7},
            "auth": {"deviceToken": "DT", "role": "node"},
        });
        let h = HelloOk::read(Some(&p)).unwrap();
        assert_eq!(h.protocol, Some(4));
        assert_eq!(h.tick_interval_ms, None, "a string is not a number");
        assert_eq!(h.max_payload, Some(1024));
        assert_eq!(h.conn_id.as_deref(), Some("c1"));
        assert_eq!(h.server_version, None);
        assert_eq!(h.device_token, Some(Secret::from("DT")));
        assert_eq!(h.role.as_deref(), Some("node"));
        assert_eq!(HelloOk::read(Some(&json!({"type": "hello"}))), None);
        assert_eq!(HelloOk::read(None), None);
    }
}
