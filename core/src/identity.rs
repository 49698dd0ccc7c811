//! The device identity and the connect signature (docs/protocol.md §3).

use alloc::string::String;
use core::fmt;
use core::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signer as _, SigningKey};
use sha2::{Digest as _, Sha256};

/// An Ed25519 device key with the names the gateway knows it by.
///
/// The key is supplied by the caller (who keeps it forever: a new key is a
/// new device). `Debug` shows the device id only.
#[derive(Clone)]
pub struct DeviceIdentity {
    key: SigningKey,
    device_id: String,
    public_key: String,
}

impl DeviceIdentity {
    /// Derives the device id and the encoded public key from `key`.
    pub fn new(key: SigningKey) -> Self {
        let raw = key.verifying_key().to_bytes();
        let device_id = hex(&Sha256::digest(raw));
        let public_key = URL_SAFE_NO_PAD.encode(raw);
        DeviceIdentity {
            key,
            device_id,
            public_key,
        }
    }

    /// Lowercase hex SHA-256 of the raw public key.
    pub fn device_id(&self) -> &str {
        &self.device_id
    }

    /// base64url (no padding) of the raw 32-byte public key.
    pub fn public_key(&self) -> &str {
        &self.public_key
    }

    /// Signs `payload` and returns the base64url (no padding) signature.
    pub fn sign(&self, payload: &str) -> String {
        URL_SAFE_NO_PAD.encode(self.key.sign(payload.as_bytes()).to_bytes())
    }
}

impl fmt::Debug for DeviceIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceIdentity")
            .field("device_id", &self.device_id)
            .finish_non_exhaustive()
    }
}

/// The fields of the v3 device-auth string, in order.
pub struct SignatureFields<'a> {
    /// The device id.
    pub device_id: &'a str,
    /// `client.id`.
    pub client_id: &'a str,
    /// `client.mode`.
    pub client_mode: &'a str,
    /// `role`.
    pub role: &'a str,
    /// `scopes`, joined with `,`.
    pub scopes: &'a [&'a str],
    /// The challenge's `ts`.
    pub signed_at: i64,
    /// The token sent: `auth.token`, else `auth.deviceToken`, else
    /// `auth.bootstrapToken`, else empty.
    pub token: &'a str,
    /// The challenge's nonce.
    pub nonce: &'a str,
    /// `client.platform` (normalised here).
    pub platform: &'a str,
    /// `client.deviceFamily` (normalised here).
    pub device_family: &'a str,
}

impl SignatureFields<'_> {
    /// The exact `v3|…` string the gateway verifies.
    pub fn v3_payload(&self) -> String {
        let mut s = String::with_capacity(256);
        let _ = write!(
            s,
            "v3|{}|{}|{}|{}|",
            self.device_id, self.client_id, self.client_mode, self.role
        );
        for (i, scope) in self.scopes.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str(scope);
        }
        let _ = write!(
            s,
            "|{}|{}|{}|{}|{}",
            self.signed_at,
            self.token,
            self.nonce,
            normalize_field(self.platform),
            normalize_field(self.device_family)
        );
        s
    }
}

fn normalize_field(s: &str) -> String {
    s.trim().to_ascii_lowercase()
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signature, Verifier as _, VerifyingKey};

    #[test]
    fn the_v3_string_matches_the_protocol_example_shape() {
        let fields = SignatureFields {
            device_id: "9f",
            client_id: "node-host",
            client_mode: "node",
            role: "node",
            scopes: &[],
            signed_at: 1795523726214,
            token: "tok123",
            nonce: "f4d9",
            platform: " Linux ",
            device_family: "",
        };
        assert_eq!(
            fields.v3_payload(),
            "v3|9f|node-host|node|node||1795523726214|tok123|f4d9|linux|"
        );
    }

    #[test]
    fn scopes_are_joined_with_commas() {
        let fields = SignatureFields {
            device_id: "d",
            client_id: "c",
            client_mode: "m",
            role: "operator",
            scopes: &["a", "b", "c"],
            signed_at: 1,
            token: "",
            nonce: "n",
            platform: "p",
            device_family: "F",
        };
        assert_eq!(fields.v3_payload(), "v3|d|c|m|operator|a,b,c|1||n|p|f");
    }

    #[test]
    fn ids_and_signatures_verify() {
        let id = DeviceIdentity::new(SigningKey::from_bytes(&[7u8; 32]));
        assert_eq!(id.device_id().len(), 64);
        let raw = URL_SAFE_NO_PAD.decode(id.public_key()).unwrap();
        assert_eq!(hex(&Sha256::digest(&raw)), id.device_id());
        let vk = VerifyingKey::from_bytes(&raw.try_into().unwrap()).unwrap();
        let sig = URL_SAFE_NO_PAD.decode(id.sign("hello")).unwrap();
        vk.verify(b"hello", &Signature::from_slice(&sig).unwrap())
            .unwrap();
        assert!(!alloc::format!("{id:?}").contains("key"));
    }
}
