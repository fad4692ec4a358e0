//! paho-mqtt (the Eclipse Python client) over TLS against the real
//! binary: `tests/paho/tls_auth.py` connects with `--cafile` and a user from
//! a password file made by `ringmq passwd`, does a QoS 1 publish/subscribe
//! round trip, and checks that a wrong password is refused (3.1.1 return
//! code 4, 5.0 reason code 0x86), for MQTT 3.1.1 and 5.0. Certificates are
//! made by rcgen when the test runs (no private key is committed).
//!
//! `.ci/run` installs paho-mqtt (pip); with CI=true its absence fails the
//! test, elsewhere it is skipped with a message.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use ringmq_tests::{binary, run_to_exit, Broker};

/// How long the script may run (it bounds each wait to 10 s itself).
const SCRIPT_LIMIT: Duration = Duration::from_secs(60);
const EXIT_LIMIT: Duration = Duration::from_secs(20);

fn bin() -> PathBuf {
    binary(env!("CARGO_BIN_EXE_ringmq"))
}

fn ok<T, E: std::fmt::Debug>(r: Result<T, E>) -> T {
    r.unwrap_or_else(|e| panic!("{e:?}"))
}

fn paho_installed() -> bool {
    Command::new("python3")
        .args(["-c", "import paho.mqtt.client"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A CA and a server certificate for localhost / 127.0.0.1 in `dir`.
fn certificates(dir: &Path) {
    let mut params = ok(CertificateParams::new(Vec::<String>::new()));
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "paho test CA");
    let ca_key = ok(KeyPair::generate());
    let ca = ok(params.self_signed(&ca_key));
    let mut params = ok(CertificateParams::new(vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
    ]));
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let key = ok(KeyPair::generate());
    let cert = ok(params.signed_by(&key, &ca, &ca_key));
    ok(std::fs::write(dir.join("ca.pem"), ca.pem()));
    ok(std::fs::write(dir.join("server.pem"), cert.pem()));
    ok(std::fs::write(dir.join("server.key"), key.serialize_pem()));
}

#[test]
fn paho_over_tls_with_a_password() {
    if !paho_installed() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "paho-mqtt is not installed; .ci/run must install it (pip install paho-mqtt)"
        );
        eprintln!("SKIPPED (not in CI): paho-mqtt not installed (pip install paho-mqtt)");
        return;
    }
    let dir = std::env::temp_dir().join(format!("ringmq-paho-{}", std::process::id()));
    ok(std::fs::create_dir_all(&dir));
    certificates(&dir);
    let passwd = dir.join("passwd").display().to_string();
    let (status, _, stderr) = run_to_exit(
        &bin(),
        &["passwd", "-c", "-b", &passwd, "alice", "s3cret pass"],
        EXIT_LIMIT,
    );
    assert!(status.success(), "ringmq passwd: {stderr}");
    let path = |name: &str| dir.join(name).display().to_string();
    let config = format!(
        "[auth]\nallow_anonymous = false\npassword_file = {passwd:?}\n\n\
         [[listener]]\nbind = \"127.0.0.1:0\"\n[listener.tls]\ncert_file = {:?}\nkey_file = {:?}\n",
        path("server.pem"),
        path("server.key"),
    );
    let config_file = dir.join("ringmq.toml");
    ok(std::fs::write(&config_file, config));
    let config_file = config_file.display().to_string();
    let broker = Broker::start_with_args(&bin(), &["serve", "--config", &config_file]);
    let port = broker.port().to_string();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/paho/tls_auth.py");
    let (status, stdout, stderr) = run_to_exit(
        &PathBuf::from("python3"),
        &[
            &script.display().to_string(),
            "--port",
            &port,
            "--cafile",
            &path("ca.pem"),
            "--username",
            "alice",
            "--password",
            "s3cret pass",
        ],
        SCRIPT_LIMIT,
    );
    assert!(
        status.success(),
        "paho script failed:\n{stdout}\n{stderr}\nbroker log:\n{}",
        broker.log()
    );
    for line in [
        "ok v311: connected over TLSv1.3 as alice",
        "ok v311: QoS 1 round trip",
        "ok v311: wrong password refused",
        "ok v5: QoS 1 round trip",
        "ok v5: wrong password refused",
        "all ok",
    ] {
        assert!(stdout.contains(line), "{line:?} missing:\n{stdout}");
    }
    if let Err(e) = std::fs::remove_dir_all(&dir) {
        eprintln!("cannot remove {}: {e}", dir.display());
    }
}
