//! loadgen over TLS against the real broker: a `ringmq` with a TLS
//! listener (and one that requires client certificates), certificates made
//! by rcgen when the test runs (no private key is committed), loadgen's
//! `pubsub` and `conn` scenarios with `--transport tls`.
//!
//! The broker binary is `RINGMQ_BIN`, else the `ringmq` built next to this
//! loadgen (`cargo test --workspace` and `tests/run-all.sh` build both);
//! a missing binary fails the test with the command that builds it.

mod common;

use std::path::PathBuf;

use common::{ca, leaf, loadgen, ok, ringmq, summary, u64_of};
use ringmq_tests::Broker;

/// Certificates and configs for one test, in a fresh directory.
struct Setup {
    dir: PathBuf,
}

impl Setup {
    fn new(test: &str) -> Setup {
        let dir = std::env::temp_dir().join(format!("loadgen-tls-{}-{test}", std::process::id()));
        ok(std::fs::create_dir_all(&dir));
        let server_ca = ca("loadgen test server CA");
        let client_ca = ca("loadgen test client CA");
        let other_ca = ca("some other CA");
        leaf(
            &dir,
            "server",
            &server_ca,
            "broker",
            &["localhost", "127.0.0.1"],
        );
        leaf(&dir, "client", &client_ca, "device-1", &[]);
        ok(std::fs::write(dir.join("ca.pem"), server_ca.cert.pem()));
        ok(std::fs::write(
            dir.join("client-ca.pem"),
            client_ca.cert.pem(),
        ));
        ok(std::fs::write(
            dir.join("other-ca.pem"),
            other_ca.cert.pem(),
        ));
        Setup { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// Starts the broker with one TLS listener; `mtls` requires client
    /// certificates signed by the client CA.
    fn broker(&self, mtls: bool) -> Broker {
        let client = if mtls {
            format!(
                "client_ca_file = {:?}\nrequire_client_cert = true\n",
                self.path("client-ca.pem")
            )
        } else {
            String::new()
        };
        let text = format!(
            "[[listener]]\nbind = \"127.0.0.1:0\"\n[listener.tls]\ncert_file = {:?}\nkey_file = {:?}\n{client}",
            self.path("server.pem"),
            self.path("server.key"),
        );
        let config = self.dir.join(if mtls { "mtls.toml" } else { "tls.toml" });
        ok(std::fs::write(&config, text));
        let config = config.display().to_string();
        Broker::start_with_args(&ringmq(), &["serve", "--config", &config, "--shards", "2"])
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("cannot remove {}: {e}", self.dir.display());
        }
    }
}

#[test]
fn pubsub_over_tls_delivers_everything() {
    let setup = Setup::new("pubsub");
    let broker = setup.broker(false);
    let port = broker.port().to_string();
    let ca = setup.path("ca.pem");
    let common = [
        "--port",
        &port,
        "--transport",
        "tls",
        "--cafile",
        &ca,
        "--server-name",
        "localhost",
        "--threads",
        "1",
        "--json",
        "--quiet",
    ];
    let mut args = vec!["pubsub"];
    args.extend_from_slice(&common);
    args.extend_from_slice(&[
        "--pubs",
        "2",
        "--subs",
        "3",
        "--rate",
        "200",
        "--warmup",
        "0.2",
        "--duration",
        "1",
    ]);
    let s = summary(&loadgen(&args));
    assert_eq!(s["transport"], "tls", "{s}");
    let received = u64_of(&s, "msgs_received_total");
    assert!(received > 0, "{s}");
    assert_eq!(Some(received), s["msgs_expected_total"].as_u64(), "{s}");
    assert_eq!(u64_of(&s, "lost"), 0, "{s}");
    assert_eq!(u64_of(&s, "errors"), 0, "{s}");
}

#[test]
fn conn_over_tls_reports_handshake_rate_and_latency() {
    let setup = Setup::new("conn");
    let broker = setup.broker(false);
    let port = broker.port().to_string();
    let ca = setup.path("ca.pem");
    // 127.0.0.1 is in the certificate's SANs: the default server name
    // (--host) verifies too.
    let out = loadgen(&[
        "conn",
        "--port",
        &port,
        "--transport",
        "tls",
        "--cafile",
        &ca,
        "--count",
        "60",
        "--rate",
        "300",
        "--duration",
        "0.2",
        "--threads",
        "2",
        "--json",
        "--quiet",
    ]);
    let s = summary(&out);
    assert_eq!(s["transport"], "tls", "{s}");
    assert_eq!(u64_of(&s, "conns_opened"), 60, "{s}");
    assert_eq!(u64_of(&s, "conns_failed"), 0, "{s}");
    assert_eq!(s["latency_kind"], "connect", "{s}");
    assert_eq!(u64_of(&s, "latency_samples"), 60, "{s}");
    assert!(s["conns_per_s"].as_f64().unwrap_or(0.0) > 0.0, "{s}");
    assert!(s["latency_us_p99"].as_f64().unwrap_or(0.0) > 0.0, "{s}");
}

#[test]
fn an_untrusted_certificate_fails_unless_insecure() {
    let setup = Setup::new("trust");
    let broker = setup.broker(false);
    let port = broker.port().to_string();
    let other = setup.path("other-ca.pem");
    let base = [
        "conn",
        "--port",
        &port,
        "--transport",
        "tls",
        "--count",
        "3",
        "--rate",
        "0",
        "--duration",
        "0",
        "--threads",
        "1",
        "--json",
        "--quiet",
    ];
    let mut args = base.to_vec();
    args.extend_from_slice(&["--cafile", &other]);
    let s = summary(&loadgen(&args));
    assert_eq!(u64_of(&s, "conns_opened"), 0, "{s}");
    assert_eq!(u64_of(&s, "conns_failed"), 3, "{s}");
    let sample = s["error_samples"][0].as_str().unwrap_or_default();
    assert!(sample.contains("certificate"), "{s}");

    // A name the certificate does not carry fails too.
    let ca = setup.path("ca.pem");
    let mut args = base.to_vec();
    args.extend_from_slice(&["--cafile", &ca, "--server-name", "elsewhere.example"]);
    let s = summary(&loadgen(&args));
    assert_eq!(u64_of(&s, "conns_failed"), 3, "{s}");

    let mut args = base.to_vec();
    args.push("--insecure");
    let s = summary(&loadgen(&args));
    assert_eq!(u64_of(&s, "conns_opened"), 3, "{s}");
    assert_eq!(u64_of(&s, "conns_failed"), 0, "{s}");
}

#[test]
fn mutual_tls_needs_the_client_certificate() {
    let setup = Setup::new("mtls");
    let broker = setup.broker(true);
    let port = broker.port().to_string();
    let ca = setup.path("ca.pem");
    let (cert, key) = (setup.path("client.pem"), setup.path("client.key"));
    let base = [
        "pub",
        "--port",
        &port,
        "--transport",
        "tls",
        "--cafile",
        &ca,
        "--server-name",
        "localhost",
        "--rate",
        "50",
        "--warmup",
        "0",
        "--duration",
        "0.3",
        "--threads",
        "1",
        "--json",
        "--quiet",
    ];
    let mut args = base.to_vec();
    args.extend_from_slice(&["--cert", &cert, "--key", &key]);
    let s = summary(&loadgen(&args));
    assert!(u64_of(&s, "msgs_sent_total") > 0, "{s}");

    let out = loadgen(&base);
    assert!(!out.status.success(), "connected without a certificate");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("connect"), "{stderr}");
}

#[test]
fn tls_options_without_tls_are_refused() {
    let out = loadgen(&["conn", "--cafile", "ca.pem", "--count", "1"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--cafile needs --transport tls"),
        "{stderr}"
    );
}
