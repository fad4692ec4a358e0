//! In-memory handshakes between a rustls client and [`TlsSession`], with
//! certificates made by rcgen at test time.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::BytesMut;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};

use super::*;

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn ok<T, E: std::fmt::Debug>(r: Result<T, E>) -> T {
    r.unwrap_or_else(|e| panic!("{e:?}"))
}

fn ca(name: &str) -> Ca {
    let mut params = ok(CertificateParams::new(Vec::<String>::new()));
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let key = ok(KeyPair::generate());
    let cert = ok(params.self_signed(&key));
    Ca { cert, key }
}

/// A leaf signed by `ca`: (cert PEM, key PEM).
fn leaf(ca: &Ca, cn: &str, sans: &[&str]) -> (String, String) {
    let mut params = ok(CertificateParams::new(
        sans.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
    ));
    params.distinguished_name.push(DnType::CommonName, cn);
    let key = ok(KeyPair::generate());
    let cert = ok(params.signed_by(&key, &ca.cert, &ca.key));
    (cert.pem(), key.serialize_pem())
}

fn dir(test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ringmq-net-tls-{}-{test}", std::process::id()));
    ok(std::fs::create_dir_all(&d));
    d
}

fn write(d: &Path, name: &str, text: &str) -> PathBuf {
    let p = d.join(name);
    ok(std::fs::write(&p, text));
    p
}

struct Setup {
    server_ca: Ca,
    client_ca: Ca,
    settings: TlsSettings,
    dir: PathBuf,
}

fn setup(test: &str) -> Setup {
    let d = dir(test);
    let server_ca = ca("server ca");
    let client_ca = ca("client ca");
    let (cert, key) = leaf(&server_ca, "default", &["localhost"]);
    let (sni_cert, sni_key) = leaf(&server_ca, "other", &["other.example"]);
    let settings = TlsSettings {
        cert_file: write(&d, "server.pem", &cert),
        key_file: write(&d, "server.key", &key),
        client_ca_file: Some(write(&d, "client-ca.pem", &client_ca.cert.pem())),
        require_client_cert: false,
        versions: vec![TlsVersion::Tls12, TlsVersion::Tls13],
        sni: vec![SniCertificate {
            server_names: vec!["other.example".into()],
            cert_file: write(&d, "other.pem", &sni_cert),
            key_file: write(&d, "other.key", &sni_key),
        }],
        alpn: vec![ALPN_MQTT.to_vec()],
    };
    Setup {
        server_ca,
        client_ca,
        settings,
        dir: d,
    }
}

fn client_config(
    server_ca: &Ca,
    client: Option<(String, String)>,
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    ok(roots.add(server_ca.cert.der().clone()));
    let builder =
        ok(ClientConfig::builder_with_provider(config::provider())
            .with_protocol_versions(versions))
        .with_root_certificates(roots);
    let mut config = match client {
        Some((cert, key)) => {
            let chain = vec![ok(CertificateDer::from_pem_slice(cert.as_bytes()))];
            let key = ok(PrivateKeyDer::from_pem_slice(key.as_bytes()));
            ok(builder.with_client_auth_cert(chain, key))
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    Arc::new(config)
}

use rustls_pki_types::pem::PemObject;

/// Shuttles bytes until neither side has anything to send; returns the
/// plaintext the server received. Panics on a client error; a server
/// error is returned.
fn pump(client: &mut ClientConnection, server: &mut TlsSession) -> Result<BytesMut, TlsError> {
    let mut plain = BytesMut::new();
    for _ in 0..32 {
        let to_server = client_output(client);
        if !to_server.is_empty() {
            // Split into small reads, as a socket may deliver it.
            for chunk in to_server.chunks(100) {
                server.read(chunk, &mut plain)?;
            }
        }
        if !server_output_to_client(server, client) && to_server.is_empty() {
            break;
        }
    }
    Ok(plain)
}

fn connect(
    s: &Setup,
    loaded: &LoadedTls,
    name: &str,
    client: Option<(String, String)>,
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> (ClientConnection, TlsSession) {
    let config = client_config(&s.server_ca, client, versions, alpn);
    let name = ok(ServerName::try_from(name.to_string()));
    let client = ok(ClientConnection::new(config, name));
    let server = ok(TlsSession::new(loaded.config.clone()));
    (client, server)
}

#[test]
fn tls12_and_tls13_carry_bytes_both_ways() {
    let s = setup("versions");
    let loaded = ok(load(&s.settings));
    for (version, expected) in [
        (&rustls::version::TLS12, "tls=1.2"),
        (&rustls::version::TLS13, "tls=1.3"),
    ] {
        let (mut client, mut server) = connect(&s, &loaded, "localhost", None, &[version], &[]);
        ok(client.writer().write_all(b"\x10hello"));
        let got = ok(pump(&mut client, &mut server));
        assert_eq!(&got[..], b"\x10hello");
        assert!(!server.is_handshaking());
        assert!(
            server.describe().starts_with(expected),
            "{}",
            server.describe()
        );
        ok(server.encrypt(b"\x20\x02\x00\x00"));
        ok(pump(&mut client, &mut server));
        let mut back = [0u8; 4];
        ok(client.reader().read_exact(&mut back));
        assert_eq!(&back, b"\x20\x02\x00\x00");
    }
}

#[test]
fn alpn_mqtt_is_chosen_and_a_foreign_alpn_is_refused() {
    let s = setup("alpn");
    let loaded = ok(load(&s.settings));
    let all = [&rustls::version::TLS13, &rustls::version::TLS12];
    let (mut client, mut server) = connect(&s, &loaded, "localhost", None, &all, &[b"mqtt"]);
    ok(pump(&mut client, &mut server));
    assert_eq!(client.alpn_protocol(), Some(&b"mqtt"[..]));
    let (mut client, mut server) = connect(&s, &loaded, "localhost", None, &all, &[b"h2"]);
    let mut hello = Vec::new();
    ok(client.write_tls(&mut hello));
    let refused = server.read(&hello, &mut BytesMut::new());
    assert!(refused.is_err(), "h2-only client accepted");
}

/// A `wss://` listener accepts what browsers offer (`http/1.1`, next to
/// `h2` they cannot use for WebSocket) and still accepts `mqtt`.
#[test]
fn a_websocket_listener_accepts_the_browsers_http_1_1_alpn() {
    let mut s = setup("alpn-ws");
    s.settings.alpn = vec![ALPN_HTTP_1_1.to_vec(), ALPN_MQTT.to_vec()];
    let loaded = ok(load(&s.settings));
    let all = [&rustls::version::TLS13, &rustls::version::TLS12];
    for (offered, chosen) in [
        (&[&b"h2"[..], b"http/1.1"][..], &b"http/1.1"[..]),
        (&[&b"mqtt"[..]][..], &b"mqtt"[..]),
    ] {
        let (mut client, mut server) = connect(&s, &loaded, "localhost", None, &all, offered);
        ok(pump(&mut client, &mut server));
        assert_eq!(client.alpn_protocol(), Some(chosen));
    }
}

#[test]
fn sni_chooses_the_certificate() {
    let s = setup("sni");
    let loaded = ok(load(&s.settings));
    let all = [&rustls::version::TLS13];
    for (name, cn) in [("other.example", "other"), ("localhost", "default")] {
        let (mut client, mut server) = connect(&s, &loaded, name, None, &all, &[]);
        ok(pump(&mut client, &mut server));
        let Some(certs) = client.peer_certificates() else {
            panic!("no server certificate")
        };
        assert_eq!(
            identity::certificate_identity(certs[0].as_ref()).as_deref(),
            Some(cn)
        );
    }
}

#[test]
fn client_certificate_identity_and_required_refusal() {
    let mut s = setup("mtls");
    s.settings.require_client_cert = true;
    let loaded = ok(load(&s.settings));
    let all = [&rustls::version::TLS13, &rustls::version::TLS12];
    let alice = leaf(&s.client_ca, "alice", &[]);
    let (mut client, mut server) = connect(&s, &loaded, "localhost", Some(alice), &all, &[]);
    ok(client.writer().write_all(b"x"));
    assert_eq!(&ok(pump(&mut client, &mut server))[..], b"x");
    assert_eq!(server.peer_identity().as_deref(), Some("alice"));

    // No certificate: refused by the server.
    let (mut client, mut server) = connect(&s, &loaded, "localhost", None, &all, &[]);
    ok(client.writer().write_all(b"x"));
    assert!(pump(&mut client, &mut server).is_err());

    // A certificate from another CA: refused.
    let stranger = leaf(&ca("stranger ca"), "mallory", &[]);
    let (mut client, mut server) = connect(&s, &loaded, "localhost", Some(stranger), &all, &[]);
    ok(client.writer().write_all(b"x"));
    assert!(pump(&mut client, &mut server).is_err());
}

#[test]
fn bad_files_are_named() {
    let s = setup("bad");
    let mut settings = s.settings.clone();
    settings.key_file = write(&s.dir, "empty.key", "");
    let e = match load(&settings) {
        Ok(_) => panic!("empty key accepted"),
        Err(e) => e.to_string(),
    };
    assert!(
        e.contains("empty.key") && e.contains("no private key"),
        "{e}"
    );
    let mut settings = s.settings.clone();
    settings.cert_file = s.dir.join("missing.pem");
    let e = match load(&settings) {
        Ok(_) => panic!("missing file accepted"),
        Err(e) => e.to_string(),
    };
    assert!(
        e.contains("cannot read") && e.contains("missing.pem"),
        "{e}"
    );
    // A key that does not belong to the certificate.
    let mut settings = s.settings.clone();
    settings.key_file = settings.sni[0].key_file.clone();
    let e = match load(&settings) {
        Ok(_) => panic!("mismatched key accepted"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("does the key belong"), "{e}");
}

#[test]
fn changed_files_lists_what_differs() {
    let s = setup("changed");
    let first = ok(load(&s.settings));
    let same = ok(load(&s.settings));
    assert!(same.changed_files(&first).is_empty());
    let (cert, key) = leaf(&s.server_ca, "renewed", &["localhost"]);
    write(&s.dir, "server.pem", &cert);
    write(&s.dir, "server.key", &key);
    let renewed = ok(load(&s.settings));
    assert_eq!(
        renewed.changed_files(&first),
        vec![s.settings.cert_file.clone(), s.settings.key_file.clone()]
    );
}

/// For the driver tests: server settings (no client CA) and a client
/// configuration that trusts the server, both TLS versions.
pub(crate) fn server_and_client(test: &str) -> (TlsSettings, Arc<ClientConfig>) {
    server_and_client_versions(test, &[&rustls::version::TLS13, &rustls::version::TLS12])
}

/// [`server_and_client`] with a client that offers only `versions`.
pub(crate) fn server_and_client_versions(
    test: &str,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> (TlsSettings, Arc<ClientConfig>) {
    let mut s = setup(test);
    s.settings.client_ca_file = None;
    let client = client_config(&s.server_ca, None, versions, &[b"mqtt"]);
    (s.settings, client)
}

/// The helper threads run whole server handshakes (TLS 1.2 and 1.3, SNI,
/// ALPN, a required client certificate): each step goes to the pool with
/// its session and comes back with it, on another thread; a client without
/// a certificate is refused there. Nothing runs inline.
#[test]
fn handshake_steps_run_on_the_pool() {
    let mut s = setup("pool");
    s.settings.require_client_cert = true;
    let loaded = ok(load(&s.settings));
    let pool = ok(offload::HandshakePool::start(2, "test-tls"));
    let mut rt = ok(monoio::RuntimeBuilder::<monoio::LegacyDriver>::new().build());
    let here = std::thread::current().id();
    let cases = [
        (
            &rustls::version::TLS12,
            "tls=1.2",
            "localhost",
            "sni=localhost",
        ),
        (
            &rustls::version::TLS13,
            "tls=1.3",
            "other.example",
            "sni=other.example",
        ),
    ];
    for (version, tls, name, sni) in cases {
        let alice = leaf(&s.client_ca, "alice", &[]);
        let (mut client, server) = connect(&s, &loaded, name, Some(alice), &[version], &[b"mqtt"]);
        ok(client.writer().write_all(b"hello"));
        let (server, plain) = rt.block_on(pool_pump(&pool, &mut client, Box::new(server)));
        let server = ok(server);
        assert!(!server.is_handshaking() && !client.is_handshaking());
        let described = server.describe();
        assert!(described.contains(tls), "{described}");
        assert!(described.contains(sni), "{described}");
        assert!(described.contains("alpn=mqtt"), "{described}");
        assert_eq!(server.peer_identity().as_deref(), Some("alice"));
        assert_eq!(&plain[..], b"hello");
    }
    // Required client certificate missing: the pool's step fails.
    let (mut client, server) = connect(
        &s,
        &loaded,
        "localhost",
        None,
        &[&rustls::version::TLS13],
        &[],
    );
    ok(client.writer().write_all(b"x"));
    let (refused, _) = rt.block_on(pool_pump(&pool, &mut client, Box::new(server)));
    assert!(
        refused.is_err(),
        "handshake without the required certificate"
    );
    let counts = pool.stats().counts();
    assert!(counts.offloaded_steps >= 5, "{counts:?}");
    assert_eq!(counts.inline_steps, 0, "{counts:?}");
    assert_eq!(std::thread::current().id(), here);
}

/// Everything the client has to send.
fn client_output(client: &mut ClientConnection) -> Vec<u8> {
    let mut out = Vec::new();
    while client.wants_write() {
        ok(client.write_tls(&mut out));
    }
    out
}

/// Feeds what the server wrote to the client (panics on a client error);
/// returns whether there was anything.
fn server_output_to_client(server: &mut TlsSession, client: &mut ClientConnection) -> bool {
    let mut to_client = Vec::new();
    server.take_output(&mut to_client);
    let mut input = &to_client[..];
    while !input.is_empty() {
        if client.read_tls(&mut input).is_err() {
            break;
        }
        if let Err(e) = client.process_new_packets() {
            panic!("client: {e}");
        }
    }
    !to_client.is_empty()
}

/// [`pump`] with every server step on `pool` (and the plaintext the server
/// received).
async fn pool_pump(
    pool: &offload::HandshakePool,
    client: &mut ClientConnection,
    mut server: Box<TlsSession>,
) -> (Result<Box<TlsSession>, TlsError>, BytesMut) {
    let mut plain = BytesMut::new();
    for _ in 0..32 {
        let to_server = client_output(client);
        if !to_server.is_empty() {
            let submitted = pool.submit(server, BytesMut::from(&to_server[..]));
            let step = match submitted {
                Ok(pending) => pending.await,
                Err(_) => panic!("the pool refused a step"),
            };
            server = step.session;
            plain.unsplit(step.plain);
            if let Err(e) = step.result {
                return (Err(e), plain);
            }
        }
        if !server_output_to_client(&mut server, client) && to_server.is_empty() {
            break;
        }
    }
    (Ok(server), plain)
}
