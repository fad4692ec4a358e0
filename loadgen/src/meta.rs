//! What makes a result self-describing: when it ran (UTC, RFC 3339), the
//! exact command line, loadgen's version, the machine (cores, CPU model,
//! kernel), the broker's `$SYS/broker/version` when it answered (asked by
//! the probe), and every scenario parameter. Carried in the summary
//! as `meta`.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// The run's description. Every field defaults, so JSON files from before
/// it was written still load.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Meta {
    /// When the run started, UTC, RFC 3339 (`2026-11-30T01:53:12Z`).
    #[serde(default)]
    pub date_utc: String,
    /// The command line, arguments shell-quoted where needed.
    #[serde(default)]
    pub command: String,
    #[serde(default)]
    pub loadgen_version: String,
    /// `$SYS/broker/version` as the broker sent it; absent when it did not
    /// answer within a second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker_version: Option<String>,
    #[serde(default)]
    pub machine: Machine,
    /// Every scenario parameter by option name (`inflight`, `retain`, ...).
    #[serde(default)]
    pub parameters: BTreeMap<String, String>,
}

/// The machine loadgen ran on.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Machine {
    #[serde(default)]
    pub cores: usize,
    #[serde(default)]
    pub cpu_model: String,
    #[serde(default)]
    pub kernel: String,
}

impl Machine {
    pub fn this() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        Machine {
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu_model: cpu_model(&cpuinfo).unwrap_or_default(),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_string())
                .unwrap_or_default(),
        }
    }

    /// `8 cores, AMD EPYC 7B13, Linux 6.1.0`.
    pub fn describe(&self) -> String {
        format!(
            "{} cores, {}, Linux {}",
            self.cores,
            if self.cpu_model.is_empty() {
                "CPU unknown"
            } else {
                &self.cpu_model
            },
            if self.kernel.is_empty() {
                "?"
            } else {
                &self.kernel
            }
        )
    }
}

/// The first `model name` (x86) or `Model` / `Hardware` (ARM) line.
fn cpu_model(cpuinfo: &str) -> Option<String> {
    ["model name", "Model", "Hardware", "cpu model"]
        .iter()
        .find_map(|key| {
            cpuinfo.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == *key && !v.trim().is_empty()).then(|| v.trim().to_string())
            })
        })
}

/// The command line as typed (arguments with spaces or quotes quoted).
pub fn command_line() -> String {
    std::env::args()
        .map(|a| {
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c))
            {
                a
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `secs` since the Unix epoch as RFC 3339 UTC (civil-from-days, Howard
/// Hinnant's algorithm).
pub fn rfc3339_utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

pub fn now_rfc3339() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    rfc3339_utc(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_utc(1_796_003_592), "2026-11-30T01:53:12Z");
    }

    #[test]
    fn cpu_model_from_x86_and_arm_cpuinfo() {
        let x86 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\n";
        assert_eq!(cpu_model(x86).as_deref(), Some("AMD EPYC 7B13"));
        let arm = "processor\t: 0\nBogoMIPS\t: 50.00\n\nModel\t: Raspberry Pi 4\n";
        assert_eq!(cpu_model(arm).as_deref(), Some("Raspberry Pi 4"));
        assert_eq!(cpu_model(""), None);
    }
}
