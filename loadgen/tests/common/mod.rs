//! What loadgen's black-box tests share: the binaries, certificates made
//! by rcgen when a test runs (no private key is committed), running
//! loadgen and reading its JSON summary.
#![allow(dead_code)] // each test file uses its own part

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use ringmq_tests::binary;
use serde_json::Value;

pub const LOADGEN: &str = env!("CARGO_BIN_EXE_loadgen");

pub fn ok<T, E: std::fmt::Debug>(r: Result<T, E>) -> T {
    r.unwrap_or_else(|e| panic!("{e:?}"))
}

pub fn ringmq() -> PathBuf {
    let sibling = Path::new(LOADGEN).with_file_name("ringmq");
    let bin = binary(&sibling.display().to_string());
    assert!(
        bin.exists(),
        "{} not found: build it with `cargo build -p ringmq` (or set RINGMQ_BIN)",
        bin.display()
    );
    bin
}

pub struct Ca {
    pub cert: rcgen::Certificate,
    pub key: KeyPair,
}

pub fn ca(name: &str) -> Ca {
    let mut params = ok(CertificateParams::new(Vec::<String>::new()));
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let key = ok(KeyPair::generate());
    let cert = ok(params.self_signed(&key));
    Ca { cert, key }
}

/// Writes a certificate signed by `ca` and its key: `<name>.pem`, `<name>.key`.
pub fn leaf(dir: &Path, name: &str, ca: &Ca, cn: &str, sans: &[&str]) {
    let mut params = ok(CertificateParams::new(
        sans.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
    ));
    params.distinguished_name.push(DnType::CommonName, cn);
    let key = ok(KeyPair::generate());
    let cert = ok(params.signed_by(&key, &ca.cert, &ca.key));
    ok(std::fs::write(dir.join(format!("{name}.pem")), cert.pem()));
    ok(std::fs::write(
        dir.join(format!("{name}.key")),
        key.serialize_pem(),
    ));
}

pub fn loadgen(args: &[&str]) -> Output {
    ok(Command::new(LOADGEN).args(args).output())
}

/// The JSON summary of a successful run.
pub fn summary(out: &Output) -> Value {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}\n{stderr}", out.status);
    let stdout = String::from_utf8_lossy(&out.stdout);
    ok(serde_json::from_str(stdout.trim()))
}

pub fn u64_of(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("{key} in {v}"))
}

/// An external program the test needs, from PATH (or the sbin folders,
/// where Debian puts servers). Missing with CI=true fails the test
/// (`.ci/run` installs it); otherwise the test prints SKIPPED and gets
/// `None`.
pub fn program(name: &str, why: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let sbin = [PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")];
    let found = std::env::split_paths(&path)
        .chain(sbin)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file());
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{name} is missing (CI=true): {why}"
        );
        eprintln!("SKIPPED (not in CI): {name} is missing: {why}");
    }
    found
}
