//! The client side of TLS: a rustls `ClientConfig` from PEM files
//! ([`ClientTlsSettings`] -> [`client_config`]), for loadgen and the client
//! crate. Sessions are [`super::TlsSession::client`]; the driver treats
//! them as it treats the broker's.
//!
//! Trust: `cafile` if given, else the system bundle
//! ([`SYSTEM_CA_BUNDLE`]); `insecure` skips the certificate and name checks
//! (self-signed benchmark setups) but still verifies the handshake
//! signatures, so the work per handshake is the same as a verified one
//! minus the chain check. Resumption is off: every connection does a full
//! handshake, which is what a handshake benchmark measures.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::config::{parse_certificates, provider, TlsConfigError};

/// The Debian / Ubuntu CA bundle, used when no `cafile` is given.
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Largest PEM file read (certificates, keys), in bytes.
const PEM_FILE_MAX_BYTES: u64 = 1024 * 1024;

/// How a client connects over TLS.
#[derive(Clone, Debug, Default)]
pub struct ClientTlsSettings {
    /// PEM file of the CAs that may sign the server's certificate.
    pub cafile: Option<PathBuf>,
    /// Client certificate chain and key (PEM) for mutual TLS.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Accept any server certificate (signatures are still checked).
    pub insecure: bool,
    /// ALPN protocols offered (e.g. `mqtt`).
    pub alpn: Vec<Vec<u8>>,
}

fn err(text: impl Into<String>) -> TlsConfigError {
    TlsConfigError(text.into())
}

fn read_pem(path: &Path) -> Result<Vec<u8>, TlsConfigError> {
    use std::io::Read;
    let file = std::fs::File::open(path)
        .map_err(|e| err(format!("cannot read {}: {e}", path.display())))?;
    let mut data = Vec::new();
    file.take(PEM_FILE_MAX_BYTES + 1)
        .read_to_end(&mut data)
        .map_err(|e| err(format!("cannot read {}: {e}", path.display())))?;
    if data.len() as u64 > PEM_FILE_MAX_BYTES {
        return Err(err(format!(
            "{} is larger than {PEM_FILE_MAX_BYTES} bytes; not a PEM file?",
            path.display()
        )));
    }
    Ok(data)
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    parse_certificates(&read_pem(path)?, path)
}

/// A client config for `settings` (ring provider, TLS 1.2 and 1.3).
pub fn client_config(settings: &ClientTlsSettings) -> Result<Arc<ClientConfig>, TlsConfigError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| err(format!("TLS versions: {e}")))?;
    let builder = if settings.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate { provider }))
    } else {
        let path = settings
            .cafile
            .clone()
            .unwrap_or_else(|| PathBuf::from(SYSTEM_CA_BUNDLE));
        let mut roots = RootCertStore::empty();
        for cert in certificates(&path)? {
            roots
                .add(cert)
                .map_err(|e| err(format!("{}: {e}", path.display())))?;
        }
        builder.with_root_certificates(roots)
    };
    let mut config = match (&settings.cert_file, &settings.key_file) {
        (Some(cert_file), Some(key_file)) => {
            let chain = certificates(cert_file)?;
            let key = PrivateKeyDer::from_pem_slice(&read_pem(key_file)?).map_err(|e| {
                err(format!(
                    "{}: no private key found (expected PKCS#8, PKCS#1 or SEC1 PEM): {e}",
                    key_file.display()
                ))
            })?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                err(format!(
                    "{} and {}: {e}",
                    cert_file.display(),
                    key_file.display()
                ))
            })?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(err(
                "a client certificate needs both a certificate and a key file",
            ))
        }
    };
    config.alpn_protocols = settings.alpn.clone();
    config.resumption = Resumption::disabled();
    Ok(Arc::new(config))
}

/// The name to check the server's certificate against (a DNS name or an
/// IP address).
pub fn server_name(name: &str) -> Result<ServerName<'static>, TlsConfigError> {
    ServerName::try_from(name.to_string()).map_err(|e| err(format!("server name {name:?}: {e}")))
}

/// `insecure`: accepts any certificate, verifies handshake signatures.
#[derive(Debug)]
struct AnyCertificate {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
