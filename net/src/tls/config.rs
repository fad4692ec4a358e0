//! Building a listener's rustls `ServerConfig` from PEM files: certificate
//! chain and key, extra certificates chosen by SNI, an optional client CA
//! (mTLS), the allowed TLS versions and ALPN `mqtt`.
//!
//! Files are read here, on the thread that calls [`load`] (the main thread
//! at start-up and on reload), never on a shard. The raw file contents are
//! kept in [`LoadedTls::files`] so a reload can tell what changed.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig, SupportedProtocolVersion};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The ALPN protocol name offered (OASIS registered `mqtt`).
pub const ALPN_MQTT: &[u8] = b"mqtt";
/// ALPN protocol id of HTTP/1.1, which browsers offer for `wss://`.
pub const ALPN_HTTP_1_1: &[u8] = b"http/1.1";

/// Largest PEM file read, in bytes (a chain of a few certificates is a
/// few KiB; this only stops a wrong path such as a disk image).
pub const PEM_FILE_MAX_BYTES: u64 = 1 << 20;

/// A TLS protocol version a listener accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

impl TlsVersion {
    fn rustls(self) -> &'static SupportedProtocolVersion {
        match self {
            TlsVersion::Tls12 => &rustls::version::TLS12,
            TlsVersion::Tls13 => &rustls::version::TLS13,
        }
    }
}

impl fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsVersion::Tls12 => "1.2",
            TlsVersion::Tls13 => "1.3",
        })
    }
}

/// An extra certificate, served to clients that ask for one of
/// `server_names` by SNI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SniCertificate {
    pub server_names: Vec<String>,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// Where a TLS listener's files are and what it requires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSettings {
    /// PEM: the server certificate first, then intermediates.
    pub cert_file: PathBuf,
    /// PEM: the private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// PEM: CA certificates that client certificates must chain to.
    pub client_ca_file: Option<PathBuf>,
    /// Refuse clients without a valid certificate (needs `client_ca_file`).
    pub require_client_cert: bool,
    /// Accepted versions (not empty).
    pub versions: Vec<TlsVersion>,
    /// Certificates chosen by SNI; the default one above serves any other
    /// name and clients that send none.
    pub sni: Vec<SniCertificate>,
    /// ALPN protocols accepted, in the server's order of preference
    /// (`[ALPN_MQTT]` for MQTT listeners; WebSocket listeners add
    /// `ALPN_HTTP_1_1`).
    pub alpn: Vec<Vec<u8>>,
}

/// A built configuration and the file contents it came from.
#[derive(Clone)]
pub struct LoadedTls {
    pub config: Arc<ServerConfig>,
    /// `(path, contents)` of every file read, in a fixed order.
    pub files: Vec<(PathBuf, Vec<u8>)>,
}

impl LoadedTls {
    /// The files whose contents differ from `old` (for the reload log).
    pub fn changed_files(&self, old: &LoadedTls) -> Vec<PathBuf> {
        self.files
            .iter()
            .filter(|(path, data)| !old.files.iter().any(|(p, d)| p == path && d == data))
            .map(|(path, _)| path.clone())
            .collect()
    }
}

impl fmt::Debug for LoadedTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedTls")
            .field(
                "files",
                &self.files.iter().map(|(p, _)| p).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// Why a TLS configuration could not be built; names the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfigError(pub String);

impl fmt::Display for TlsConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsConfigError {}

fn err(text: impl Into<String>) -> TlsConfigError {
    TlsConfigError(text.into())
}

/// The crypto provider: `ring` (builds with a C compiler; no OpenSSL, no
/// cmake).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_file(path: &Path, files: &mut Vec<(PathBuf, Vec<u8>)>) -> Result<Vec<u8>, TlsConfigError> {
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
    files.push((path.to_path_buf(), data.clone()));
    Ok(data)
}

fn certificates(
    path: &Path,
    files: &mut Vec<(PathBuf, Vec<u8>)>,
) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let data = read_file(path, files)?;
    parse_certificates(&data, path)
}

/// The certificates of a PEM file's contents (`path` names it in errors);
/// at least one.
pub(super) fn parse_certificates(
    data: &[u8],
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let certs = CertificateDer::pem_slice_iter(data)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            err(format!(
                "{}: not a PEM certificate file: {e}",
                path.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(err(format!(
            "{}: no certificate found (expected -----BEGIN CERTIFICATE-----)",
            path.display()
        )));
    }
    Ok(certs)
}

fn certified_key(
    cert_file: &Path,
    key_file: &Path,
    provider: &CryptoProvider,
    files: &mut Vec<(PathBuf, Vec<u8>)>,
) -> Result<Arc<CertifiedKey>, TlsConfigError> {
    let chain = certificates(cert_file, files)?;
    let data = read_file(key_file, files)?;
    let key = PrivateKeyDer::from_pem_slice(&data).map_err(|e| {
        err(format!(
            "{}: no private key found (expected PKCS#8, PKCS#1 or SEC1 PEM): {e}",
            key_file.display()
        ))
    })?;
    let key = CertifiedKey::from_der(chain, key, provider).map_err(|e| {
        err(format!(
            "{} and {}: {e} (does the key belong to the certificate?)",
            cert_file.display(),
            key_file.display()
        ))
    })?;
    Ok(Arc::new(key))
}

/// Chooses the certificate by the client's SNI name; the default one for
/// no name or an unknown one.
#[derive(Debug)]
struct SniResolver {
    default: Arc<CertifiedKey>,
    by_name: HashMap<String, Arc<CertifiedKey>>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let chosen = hello
            .server_name()
            .and_then(|name| self.by_name.get(&name.to_ascii_lowercase()));
        Some(chosen.unwrap_or(&self.default).clone())
    }
}

/// Reads the files and builds the configuration.
pub fn load(settings: &TlsSettings) -> Result<LoadedTls, TlsConfigError> {
    let provider = provider();
    let mut files = Vec::new();
    let default = certified_key(
        &settings.cert_file,
        &settings.key_file,
        &provider,
        &mut files,
    )?;
    let mut by_name = HashMap::new();
    for extra in &settings.sni {
        let key = certified_key(&extra.cert_file, &extra.key_file, &provider, &mut files)?;
        for name in &extra.server_names {
            by_name.insert(name.to_ascii_lowercase(), key.clone());
        }
    }
    let verifier = match &settings.client_ca_file {
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates(path, &mut files)? {
                roots.add(cert).map_err(|e| {
                    err(format!(
                        "{}: not a usable CA certificate: {e}",
                        path.display()
                    ))
                })?;
            }
            let builder =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            let builder = if settings.require_client_cert {
                builder
            } else {
                builder.allow_unauthenticated()
            };
            Some(
                builder
                    .build()
                    .map_err(|e| err(format!("{}: {e}", path.display())))?,
            )
        }
        None if settings.require_client_cert => {
            return Err(err("require_client_cert = true needs client_ca_file"));
        }
        None => None,
    };
    if settings.versions.is_empty() {
        return Err(err("no TLS version allowed"));
    }
    let versions: Vec<_> = settings.versions.iter().map(|v| v.rustls()).collect();
    let builder = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .map_err(|e| err(format!("TLS versions: {e}")))?;
    let builder = match verifier {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(Arc::new(SniResolver { default, by_name }));
    // A client that offers ALPN must offer one of the listener's protocols
    // (RFC 7301 section 3.2: no overlap is a no_application_protocol alert);
    // one that offers no ALPN at all is accepted (most MQTT clients do not
    // send it).
    config.alpn_protocols = settings.alpn.clone();
    Ok(LoadedTls {
        config: Arc::new(config),
        files,
    })
}
