//! TLS: pinned, system-trust and trust-on-first-use client configs.
//!
//! The crypto provider is `ring`: it builds with a C compiler alone (no
//! cmake, no Go, no NASM), builds faster than `aws-lc-rs` on the two cores
//! this project has, and offers every algorithm a gateway certificate uses.

use std::sync::{Arc, Mutex, OnceLock};

use clawnode_core::{Pin, PinSet};
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

/// The leaf certificate the server presented, recorded by the verifier
/// because rustls reports a rejected certificate as an opaque error.
#[derive(Clone, Default, Debug)]
pub(crate) struct Observed(Arc<Mutex<Option<CertificateDer<'static>>>>);

impl Observed {
    pub(crate) fn cert(&self) -> Option<CertificateDer<'static>> {
        self.0.lock().expect("not poisoned").clone()
    }

    pub(crate) fn pin(&self) -> Option<Pin> {
        self.cert().map(|c| pin_of(&c))
    }

    fn record(&self, cert: &CertificateDer<'_>) {
        *self.0.lock().expect("not poisoned") = Some(cert.clone().into_owned());
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
pub(crate) fn client_config(trust: &Trust) -> Result<(Arc<ClientConfig>, Observed), String> {
    let provider = provider();
    let observed = Observed::default();
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
