//! `clawnode probe`: a TLS gateway's certificate pin, subject and
//! validity, for `--tls-fingerprint`.

use std::process::ExitCode;

use clawnode::policy::GatewayUrl;

use crate::Error;

/// Print a TLS gateway's certificate pin, subject and validity.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The gateway, wss://HOST:PORT.
    #[arg(long, value_name = "URL")]
    url: String,
}

/// Connects, reads the certificate, prints it.
pub fn run(args: Args) -> Result<ExitCode, Error> {
    let url_text = &args.url;
    let url = match GatewayUrl::parse(url_text) {
        Ok(u) if u.is_secure() => u,
        Ok(_) => {
            return Err(Error::Usage(format!(
                "probe needs a wss:// URL, not {url_text:?}"
            )));
        }
        Err(e) => return Err(Error::Usage(e.to_string())),
    };
    let report = smol::block_on(clawnode::probe(&url))
        .map_err(|e| Error::Failed(format!("probing {url}: {e:?}")))?;
    println!("pin: sha256:{}", report.pin);
    use x509_cert::der::Decode as _;
    match x509_cert::Certificate::from_der(&report.der) {
        Ok(cert) => {
            let tbs = &cert.tbs_certificate;
            println!("subject: {}", tbs.subject);
            println!("issuer: {}", tbs.issuer);
            println!("not_before: {}", tbs.validity.not_before);
            println!("not_after: {}", tbs.validity.not_after);
        }
        Err(e) => eprintln!("clawnode: warning: could not decode the certificate: {e}"),
    }
    println!("use: --tls-fingerprint sha256:{}", report.pin);
    Ok(ExitCode::SUCCESS)
}
