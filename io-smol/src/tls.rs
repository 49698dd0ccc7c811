//! TLS for any runtime: pinned, system-trust and trust-on-first-use
//! `rustls` client configs built from the core's [`TlsPolicy`], and the
//! classification of handshake failures into the core's [`SocketError`].
//!
//! [`TlsAttempt`] is the whole job for one connection: a driver on any
//! executor builds it, runs the handshake with its runtime's rustls
//! connector (futures-rustls, tokio-rustls), and reports the outcome back
//! to it. The smol driver does exactly that.
//!
//! The crypto provider is `ring`: it builds with a C compiler alone (no
//! cmake, no Go, no NASM), builds faster than `aws-lc-rs` on the two cores
//! this project has, and offers every algorithm a gateway certificate uses.

use std::sync::{Arc, Mutex, OnceLock};

use clawnode_core::{GatewayUrl, Pin, PinSet, SocketError, TlsPolicy};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{Resumption, WebPkiServerVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use sha2::{Digest as _, Sha256};

/// The SHA-256 pin of a DER certificate.
pub fn pin_of(der: &[u8]) -> Pin {
    Pin::from_sha256(Sha256::digest(der).into())
}

pub(crate) fn provider() -> Arc<CryptoProvider> {
    static P: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    P.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

fn roots() -> Arc<RootCertStore> {
    static R: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    R.get_or_init(|| {
        Arc::new(RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        })
    })
    .clone()
}

/// How the server's certificate is judged.
#[derive(Clone, Debug)]
pub(crate) enum Trust {
    /// Only certificates whose SHA-256 is in the set.
    Pinned(PinSet),
    /// Any certificate (TOFU's first use, `probe`): the handshake signature
    /// is still verified, so the peer holds the certificate's key.
    AnyCertificate,
    /// WebPKI with hostname checks.
    System,
}

/// What the verifier saw of the server's leaf certificate, recorded because
/// rustls reports a rejected certificate as an opaque error: its pin, and
/// the certificate itself only for a probe, which reports it. A connection
/// keeps its verifier as long as it lives, so a session keeps no copy of
/// the certificate.
#[derive(Clone, Debug)]
pub(crate) struct Observed(Arc<Mutex<Seen>>);

#[derive(Default, Debug)]
struct Seen {
    pin: Option<Pin>,
    keep_certificate: bool,
    certificate: Option<CertificateDer<'static>>,
}

impl Observed {
    /// Nothing seen yet; the certificate is to be kept when
    /// `keep_certificate`.
    fn new(keep_certificate: bool) -> Self {
        Observed(Arc::new(Mutex::new(Seen {
            keep_certificate,
            ..Seen::default()
        })))
    }

    /// The certificate, when kept.
    #[cfg(feature = "smol")]
    pub(crate) fn cert(&self) -> Option<CertificateDer<'static>> {
        self.0.lock().expect("not poisoned").certificate.clone()
    }

    pub(crate) fn pin(&self) -> Option<Pin> {
        self.0.lock().expect("not poisoned").pin
    }

    fn record(&self, cert: &CertificateDer<'_>) {
        let mut seen = self.0.lock().expect("not poisoned");
        seen.pin = Some(pin_of(cert));
        if seen.keep_certificate {
            seen.certificate = Some(cert.clone().into_owned());
        }
    }
}

#[derive(Debug)]
struct PinVerifier {
    pins: Option<PinSet>,
    observed: Observed,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // The pin stands in for CA, hostname and validity checks: the
        // gateway's certificate is self-signed, and a pin is an explicit
        // decision to trust exactly this certificate.
        self.observed.record(end_entity);
        match &self.pins {
            None => Ok(ServerCertVerified::assertion()),
            Some(pins) if pins.contains(&pin_of(end_entity)) => Ok(ServerCertVerified::assertion()),
            Some(_) => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Wraps the WebPKI verifier to record the presented certificate too.
#[derive(Debug)]
struct RecordingVerifier {
    inner: Arc<WebPkiServerVerifier>,
    observed: Observed,
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.observed.record(end_entity);
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A fresh client config for one connection, and the slot its verifier
/// records the server's certificate in.
///
/// Session resumption is disabled (and the config is never shared between
/// connections) so that the certificate is verified on every connection:
/// a resumed session skips certificate verification altogether.
fn client_config(
    trust: &Trust,
    keep_certificate: bool,
) -> Result<(Arc<ClientConfig>, Observed), String> {
    let provider = provider();
    let observed = Observed::new(keep_certificate);
    let verifier: Arc<dyn ServerCertVerifier> = match trust {
        Trust::Pinned(pins) => Arc::new(PinVerifier {
            pins: Some(pins.clone()),
            observed: observed.clone(),
            algorithms: provider.signature_verification_algorithms,
        }),
        Trust::AnyCertificate => Arc::new(PinVerifier {
            pins: None,
            observed: observed.clone(),
            algorithms: provider.signature_verification_algorithms,
        }),
        Trust::System => Arc::new(RecordingVerifier {
            inner: WebPkiServerVerifier::builder_with_provider(roots(), provider.clone())
                .build()
                .map_err(|e| format!("building the WebPKI verifier: {e}"))?,
            observed: observed.clone(),
        }),
    };
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS protocol versions: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.resumption = Resumption::disabled();
    config.enable_early_data = false;
    Ok((Arc::new(config), observed))
}

/// Where trust-on-first-use pins are kept, by the policy's store key.
/// [`StateDir`](crate::StateDir) is one; the calls are blocking file I/O
/// there, so an async driver makes them off its event loop.
pub trait PinStore {
    /// The pin learned for `key`, if any.
    fn load_pin(&self, key: &str) -> Result<Option<Pin>, PinStoreError>;
    /// Stores `pin` for `key` unless one is there already, and returns the
    /// pin that is stored now (another process may have been first).
    fn store_pin_once(&self, key: &str, pin: &Pin) -> Result<Pin, PinStoreError>;
}

/// Why a [`PinStore`] could not read or store a pin: the store's own
/// error ([`StoreError`](crate::StoreError) for a
/// [`StateDir`](crate::StateDir)).
pub type PinStoreError = Box<dyn std::error::Error + Send + Sync>;

impl PinStore for crate::StateDir {
    fn load_pin(&self, key: &str) -> Result<Option<Pin>, PinStoreError> {
        Ok(crate::StateDir::load_pin(self, key)?)
    }
    fn store_pin_once(&self, key: &str, pin: &Pin) -> Result<Pin, PinStoreError> {
        Ok(crate::StateDir::store_pin_once(self, key, pin)?)
    }
}

/// The TLS side of one connection attempt under a [`TlsPolicy`].
///
/// 1. [`prepare`](Self::prepare) it for the attempt's URL and policy (this
///    reads a trust-on-first-use pin from the store);
/// 2. open TCP ([`tcp_error`] words a failure), then run the handshake with
///    [`config`](Self::config) and [`server_name`](Self::server_name) in the
///    runtime's rustls connector;
/// 3. on failure, feed the core [`failed`](Self::failed)'s error: a pin
///    mismatch names the expected and observed pins, a refused certificate
///    is terminal `Tls`, anything else is a transient `Io`;
/// 4. on success, call [`established`](Self::established) before using the
///    stream: under trust on first use it stores the pin just learned.
///
/// The config is fresh for each attempt and has session resumption off, so
/// the certificate is verified on every connection: a resumed session would
/// skip verification altogether.
#[derive(Debug)]
pub struct TlsAttempt {
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
    trust: Trust,
    observed: Observed,
    /// The trust-on-first-use key this connection learns the pin for.
    learn: Option<String>,
    target: String,
}

impl TlsAttempt {
    /// The TLS side of a connection to `url` under `policy`; `None` for a
    /// plain `ws://` URL (the core only allows those on loopback).
    pub fn prepare(
        url: &GatewayUrl,
        policy: &TlsPolicy,
        pins: &dyn PinStore,
    ) -> Result<Option<Self>, SocketError> {
        if !url.is_secure() {
            return Ok(None);
        }
        let store_error = |e| SocketError::Tls(format!("trust-on-first-use pin store: {e}"));
        let (trust, learn) = match policy {
            TlsPolicy::Pinned(pins) => (Trust::Pinned(pins.clone()), None),
            TlsPolicy::SystemTrust => (Trust::System, None),
            TlsPolicy::TrustOnFirstUse { store_key } => {
                match pins.load_pin(store_key).map_err(store_error)? {
                    Some(pin) => (Trust::Pinned(PinSet::new([pin]).expect("one pin")), None),
                    None => (Trust::AnyCertificate, Some(store_key.clone())),
                }
            }
            other => {
                return Err(SocketError::Tls(format!(
                    "TLS policy {other:?} is not supported by this version"
                )));
            }
        };
        Self::with_trust(url, trust, learn).map(Some)
    }

    pub(crate) fn with_trust(
        url: &GatewayUrl,
        trust: Trust,
        learn: Option<String>,
    ) -> Result<Self, SocketError> {
        let server_name = ServerName::try_from(url.host().to_owned()).map_err(|e| {
            SocketError::Tls(format!(
                "{:?} is not a valid TLS server name: {e}",
                url.host()
            ))
        })?;
        // Only a probe reports the certificate; a first use learns its pin.
        let keep_certificate = matches!(trust, Trust::AnyCertificate) && learn.is_none();
        let (config, observed) =
            client_config(&trust, keep_certificate).map_err(SocketError::Tls)?;
        Ok(TlsAttempt {
            config,
            server_name,
            trust,
            observed,
            learn,
            target: format!("{}:{}", url.host(), url.port()),
        })
    }

    /// The client config for this one connection.
    pub fn config(&self) -> Arc<ClientConfig> {
        self.config.clone()
    }

    /// The name to verify (and send as SNI): the URL's host.
    pub fn server_name(&self) -> ServerName<'static> {
        self.server_name.clone()
    }

    /// The leaf certificate the server presented, once the handshake saw it.
    pub fn observed_pin(&self) -> Option<Pin> {
        self.observed.pin()
    }

    #[cfg(feature = "smol")]
    pub(crate) fn observed(&self) -> &Observed {
        &self.observed
    }

    /// What the core should hear about a failed handshake.
    pub fn failed(&self, error: &std::io::Error) -> SocketError {
        if let Trust::Pinned(pins) = &self.trust
            && let Some(seen) = self.observed.pin()
            && !pins.contains(&seen)
        {
            return SocketError::PinMismatch {
                expected: pins.iter().copied().collect(),
                observed: seen,
            };
        }
        match rustls_error(error) {
            Some(r) if is_terminal(r) => {
                SocketError::Tls(format!("TLS handshake with {}: {r}", self.target))
            }
            _ => SocketError::Io(format!("TLS handshake with {}: {error}", self.target)),
        }
    }

    /// Whether [`established`](Self::established) will store a pin (it does
    /// file I/O then).
    pub fn learns_pin(&self) -> bool {
        self.learn.is_some()
    }

    /// After a completed handshake: under trust on first use, stores the
    /// pin just seen and returns it. Fails with a pin mismatch when another
    /// process stored a different one first.
    pub fn established(&self, pins: &dyn PinStore) -> Result<Option<Pin>, SocketError> {
        let Some(key) = &self.learn else {
            return Ok(None);
        };
        let seen = self
            .observed
            .pin()
            .ok_or_else(|| SocketError::Tls("the server presented no certificate".into()))?;
        let kept = pins
            .store_pin_once(key, &seen)
            .map_err(|e| SocketError::Tls(format!("trust-on-first-use pin store: {e}")))?;
        if kept != seen {
            return Err(SocketError::PinMismatch {
                expected: vec![kept],
                observed: seen,
            });
        }
        tracing::warn!(key = %key, pin = %seen,
            "trust on first use: pinned the gateway's certificate; it is enforced from now on");
        Ok(Some(seen))
    }
}

/// What the core should hear when TCP to `url` could not be opened.
pub fn tcp_error(url: &GatewayUrl, error: &std::io::Error) -> SocketError {
    SocketError::Io(format!(
        "connecting to {}:{}: {error}",
        url.host(),
        url.port()
    ))
}

/// What the core should hear when the gateway answered the WebSocket
/// upgrade with HTTP `status` instead of 101, with its `Retry-After` header
/// if any. 503 and 429 are the gateway being busy (too many sockets
/// handshaking): `SocketError::Busy`, backed off without counting as a
/// failure, at least `Retry-After` seconds. Anything else is transient I/O.
pub fn upgrade_refused(url: &GatewayUrl, status: u16, retry_after: Option<&str>) -> SocketError {
    if matches!(status, 429 | 503) {
        let retry_after = retry_after
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(std::time::Duration::from_secs);
        return SocketError::Busy { retry_after };
    }
    SocketError::Io(format!("WebSocket upgrade at {url}: HTTP {status}"))
}

/// Whether a rustls error means "this certificate is not acceptable" —
/// terminal, since retrying will present the same certificate.
pub(crate) fn is_terminal(err: &rustls::Error) -> bool {
    matches!(
        err,
        rustls::Error::InvalidCertificate(_)
            | rustls::Error::NoCertificatesPresented
            | rustls::Error::UnsupportedNameType
            | rustls::Error::PeerIncompatible(_)
    )
}

/// The rustls error inside an I/O error from a TLS handshake, if any.
pub(crate) fn rustls_error(err: &std::io::Error) -> Option<&rustls::Error> {
    err.get_ref()?.downcast_ref::<rustls::Error>()
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    use super::*;

    /// Pins in memory.
    #[derive(Default)]
    struct Pins(RefCell<BTreeMap<String, Pin>>);

    impl PinStore for Pins {
        fn load_pin(&self, key: &str) -> Result<Option<Pin>, PinStoreError> {
            Ok(self.0.borrow().get(key).copied())
        }
        fn store_pin_once(&self, key: &str, pin: &Pin) -> Result<Pin, PinStoreError> {
            Ok(*self.0.borrow_mut().entry(key.into()).or_insert(*pin))
        }
    }

    fn url(s: &str) -> GatewayUrl {
        GatewayUrl::parse(s).unwrap()
    }

    fn tofu() -> TlsPolicy {
        TlsPolicy::TrustOnFirstUse {
            store_key: "gw".into(),
        }
    }

    fn pin(b: u8) -> Pin {
        Pin::from_sha256([b; 32])
    }

    fn io_error(e: rustls::Error) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidData, e)
    }

    #[test]
    fn plain_loopback_urls_need_no_tls() {
        let none = TlsAttempt::prepare(&url("ws://127.0.0.1:1"), &tofu(), &Pins::default());
        assert!(none.unwrap().is_none());
    }

    #[test]
    fn trust_on_first_use_learns_once_then_pins() {
        let store = Pins::default();
        let u = url("wss://gw.example:1");
        let first = TlsAttempt::prepare(&u, &tofu(), &store).unwrap().unwrap();
        assert!(first.learns_pin());
        assert_eq!(
            first.server_name(),
            ServerName::try_from("gw.example").unwrap()
        );
        // The handshake saw a certificate: it is stored and reported.
        first.observed.record(&CertificateDer::from(vec![1, 2, 3]));
        let seen = pin_of(&[1, 2, 3]);
        assert_eq!(first.established(&store).unwrap(), Some(seen));
        assert_eq!(store.load_pin("gw").unwrap(), Some(seen));
        // From now on the stored pin is enforced, and nothing more is learned.
        let next = TlsAttempt::prepare(&u, &tofu(), &store).unwrap().unwrap();
        assert!(!next.learns_pin());
        assert!(matches!(&next.trust, Trust::Pinned(p) if p.contains(&seen)));
        assert_eq!(next.established(&store).unwrap(), None);
    }

    #[test]
    fn the_state_directory_is_a_pin_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::StateDir::new(dir.path());
        let u = url("wss://gw.example:1");
        let first = TlsAttempt::prepare(&u, &tofu(), &store).unwrap().unwrap();
        assert!(first.learns_pin());
        PinStore::store_pin_once(&store, "gw", &pin(3)).unwrap();
        let next = TlsAttempt::prepare(&u, &tofu(), &store).unwrap().unwrap();
        assert!(!next.learns_pin(), "the stored pin is enforced");
        assert!(matches!(&next.trust, Trust::Pinned(p) if p.contains(&pin(3))));
    }

    #[test]
    fn a_pin_learned_first_by_another_process_wins() {
        let store = Pins::default();
        let u = url("wss://gw.example:1");
        let mine = TlsAttempt::prepare(&u, &tofu(), &store).unwrap().unwrap();
        store.store_pin_once("gw", &pin(7)).unwrap();
        mine.observed.record(&CertificateDer::from(vec![9]));
        assert_eq!(
            mine.established(&store).unwrap_err(),
            SocketError::PinMismatch {
                expected: vec![pin(7)],
                observed: pin_of(&[9]),
            }
        );
    }

    #[test]
    fn failed_handshakes_are_classified_for_the_core() {
        let u = url("wss://gw.example:1");
        let pinned = TlsPolicy::Pinned(PinSet::new([pin(1)]).unwrap());
        let tls = TlsAttempt::prepare(&u, &pinned, &Pins::default())
            .unwrap()
            .unwrap();
        // A refused certificate is terminal; anything else is transient.
        let bad = io_error(rustls::Error::InvalidCertificate(
            rustls::CertificateError::Expired,
        ));
        assert!(matches!(tls.failed(&bad), SocketError::Tls(m) if m.contains("gw.example:1")));
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(matches!(tls.failed(&reset), SocketError::Io(m) if m.contains("gw.example:1")));
        let decrypt = io_error(rustls::Error::DecryptError);
        assert!(
            matches!(tls.failed(&decrypt), SocketError::Io(_)),
            "not a certificate problem"
        );
        // Once another certificate was seen, it is a pin mismatch naming both.
        tls.observed.record(&CertificateDer::from(vec![4]));
        assert_eq!(
            tls.failed(&bad),
            SocketError::PinMismatch {
                expected: vec![pin(1)],
                observed: pin_of(&[4]),
            }
        );
        let tcp = tcp_error(&u, &reset);
        assert!(matches!(tcp, SocketError::Io(m) if m.starts_with("connecting to gw.example:1")));
    }

    #[test]
    fn only_certificate_problems_are_terminal() {
        use rustls::{CertificateError, Error, PeerIncompatible};
        assert!(is_terminal(&Error::InvalidCertificate(
            CertificateError::UnknownIssuer
        )));
        assert!(is_terminal(&Error::NoCertificatesPresented));
        assert!(is_terminal(&Error::UnsupportedNameType));
        assert!(is_terminal(&Error::PeerIncompatible(
            PeerIncompatible::NoCipherSuitesInCommon
        )));
        assert!(!is_terminal(&Error::DecryptError));
        assert!(!is_terminal(&Error::HandshakeNotComplete));
    }

    #[test]
    fn a_503_or_429_on_upgrade_is_busy_and_anything_else_io() {
        let url = GatewayUrl::parse("ws://127.0.0.1:1").unwrap();
        let busy = |retry_after: Option<u64>| SocketError::Busy {
            retry_after: retry_after.map(std::time::Duration::from_secs),
        };
        assert_eq!(upgrade_refused(&url, 503, Some(" 7 ")), busy(Some(7)));
        assert_eq!(upgrade_refused(&url, 429, None), busy(None));
        // An HTTP date (or garbage) is no number of seconds: no floor.
        assert_eq!(
            upgrade_refused(&url, 503, Some("Wed, 21 Oct 2026 07:28:00 GMT")),
            busy(None)
        );
        assert!(matches!(
            upgrade_refused(&url, 404, Some("5")),
            SocketError::Io(m) if m.contains("HTTP 404")
        ));
    }
}
