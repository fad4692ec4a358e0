//! The text summary of a [`Summary`]: what a person reads at the end of a
//! run (the JSON line and the HTML report carry the same figures).

use crate::stats::Summary;

impl Summary {
    /// The human-readable summary.
    pub fn text(&self) -> String {
        let mut s = String::new();
        let topo = self
            .topology
            .as_deref()
            .map(|t| format!(" ({t})"))
            .unwrap_or_default();
        let version = match self.mqtt_version {
            3 => "MQTT 3.1",
            5 => "MQTT 5.0",
            _ => "MQTT 3.1.1",
        };
        s += &format!(
            "loadgen {}{} -> {} ({})  {}  threads {} ({})\n",
            self.scenario, topo, self.broker, self.transport, version, self.threads, self.driver
        );
        if let Some(requested) = self.conns_requested {
            let target = match self.conns_target_per_s {
                Some(t) if t > 0.0 => format!(" of {t:.0} targeted"),
                _ => " (unlimited rate)".into(),
            };
            let unit = if self.latency_kind == "churn_cycle" {
                "churn cycles/s: CONNECT, SUBSCRIBE, DISCONNECT"
            } else {
                "conn/s"
            };
            s += &format!(
                "  connections: requested {}  opened {}  failed {}  dropped while held {}  ({:.0} {unit}{target})\n",
                requested,
                self.conns_opened.unwrap_or(0),
                self.conns_failed.unwrap_or(0),
                self.conns_dropped.unwrap_or(0),
                self.conns_per_s.unwrap_or(0.0)
            );
        } else if self.scenario == "retained" {
            s += &format!(
                "  {} retained topics ({} B payloads) stored, then {} subscribers at QoS {} subscribed at once\n",
                self.msgs_sent_total, self.payload_bytes, self.subs, self.qos
            );
            s += &format!(
                "  received {:>12} msgs  {:>12.1} msg/s   ({} expected, {} missing) in {:.3} s\n",
                self.msgs_received_total,
                self.msgs_per_s_received,
                self.msgs_expected_total.unwrap_or(0),
                self.lost.unwrap_or(0),
                self.measured_s
            );
        } else if self.scenario == "sub" {
            s += &format!(
                "  {} subscribers, QoS {} subscriptions; measured {:.2} s after {:.2} s warm-up (by arrival time)\n",
                self.subs, self.qos, self.measured_s, self.warmup_s
            );
            s += &format!(
                "  received {:>12} msgs  {:>12.1} msg/s   ({} in total)\n",
                self.msgs_received, self.msgs_per_s_received, self.msgs_received_total
            );
        } else {
            let rate = if self.rate_msgs_per_s_per_pub > 0.0 {
                format!("{} msg/s per publisher", self.rate_msgs_per_s_per_pub)
            } else {
                "unlimited rate".to_string()
            };
            let who = match self.meta.parameters.get("responders") {
                Some(r) => format!(
                    "{} requesters -> {r} responders (MQTT 5 request/response)",
                    self.pubs
                ),
                None => format!("{} pub -> {} sub", self.pubs, self.subs),
            };
            let window = match self.meta.parameters.get("inflight") {
                Some(n) if self.qos > 0 => format!(" (inflight window {n})"),
                _ => String::new(),
            };
            s += &format!(
                "  QoS {}{window}  {} B payload  {who}  {}\n",
                self.qos, self.payload_bytes, rate
            );
            s += &format!(
                "  measured {:.2} s after {:.2} s warm-up\n",
                self.measured_s, self.warmup_s
            );
            s += &format!(
                "  sent     {:>12} msgs  {:>12.1} msg/s   ({} in total)\n",
                self.msgs_sent, self.msgs_per_s_sent, self.msgs_sent_total
            );
            if self.scenario != "pub" {
                let expected = self
                    .msgs_expected_total
                    .map(|e| format!(", {e} expected"))
                    .unwrap_or_default();
                s += &format!(
                    "  received {:>12} msgs  {:>12.1} msg/s   ({} in total{})\n",
                    self.msgs_received,
                    self.msgs_per_s_received,
                    self.msgs_received_total,
                    expected
                );
            }
        }
        if self.latency_samples > 0 {
            let what = match self.latency_kind.as_str() {
                "end_to_end" if self.rate_msgs_per_s_per_pub > 0.0 => {
                    "end-to-end, from the intended send time"
                }
                "end_to_end" => "end-to-end, from the send time",
                "publish_ack" => "PUBLISH to PUBACK/PUBCOMP",
                "round_trip" => "request to its reply, from the intended send time",
                "retained_all" => "per subscriber, SUBSCRIBE to its last retained message",
                "connect" => "TCP connect to CONNACK",
                "churn_cycle" => "TCP connect to the close after SUBSCRIBE, SUBACK, DISCONNECT",
                other => other,
            };
            let what = match self.receive_time.as_deref() {
                Some("kernel") => format!("{what} to the kernel's receive time"),
                _ => what.to_string(),
            };
            s += &format!(
                "  latency µs ({what}): p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  p99.99 {:.1}  max {:.1}  (n = {})\n",
                self.latency_us_p50,
                self.latency_us_p90,
                self.latency_us_p99,
                self.latency_us_p99_9,
                self.latency_us_p99_99,
                self.latency_us_max,
                self.latency_samples
            );
        }
        if let (Some(p50), Some(p99), Some(max)) = (
            self.send_lag_us_p50,
            self.send_lag_us_p99,
            self.send_lag_us_max,
        ) {
            s += &format!(
                "  send lag µs (loadgen's own lateness, part of the latency above): p50 {p50:.1}  p99 {p99:.1}  max {max:.1}\n"
            );
        }
        if self.msgs_received_total > 0 || self.msgs_sent_total > 0 {
            let per = |bytes: u64, msgs: u64| {
                if msgs > 0 {
                    format!(" ({:.1} B/msg)", bytes as f64 / msgs as f64)
                } else {
                    String::new()
                }
            };
            s += &format!(
                "  MQTT bytes: received {}{}  sent {}{}\n",
                self.mqtt_bytes_received_total,
                per(self.mqtt_bytes_received_total, self.msgs_received_total),
                self.mqtt_bytes_sent_total,
                per(self.mqtt_bytes_sent_total, self.msgs_sent_total)
            );
        }
        if self.conns_requested.is_some() {
            s += &format!("  errors {}", self.errors);
        } else {
            let lost = self.lost.map_or("n/a".to_string(), |l| l.to_string());
            s += &format!(
                "  lost {}  duplicated {}  reordered {}  errors {}",
                lost, self.duplicated, self.reordered, self.errors
            );
        }
        if self.qos > 0 && self.conns_requested.is_none() && self.scenario != "sub" {
            s += &format!("  acked {}  ack failures {}", self.acked, self.ack_failures);
        }
        if self.foreign > 0 {
            s += &format!("  non-loadgen payloads {}", self.foreign);
        }
        s.push('\n');
        for e in &self.error_samples {
            s += &format!("  error: {e}\n");
        }
        if let Some(line) = distribution(&self.per_subscriber_received) {
            s += &format!("  {line}\n");
        }

        if let Some(check) = &self.self_check {
            s += &check.text();
        }
        s
    }
}

/// `shared`: how evenly the group's consumers were served.
pub fn distribution(counts: &[u64]) -> Option<String> {
    let (Some(min), Some(max)) = (counts.iter().min(), counts.iter().max()) else {
        return None;
    };
    const SHOWN: usize = 16;
    let listed: Vec<String> = counts.iter().take(SHOWN).map(|c| c.to_string()).collect();
    let more = if counts.len() > SHOWN { ", ..." } else { "" };
    let spread = if *min > 0 {
        format!("{:.2}", *max as f64 / *min as f64)
    } else {
        "inf".into()
    };
    Some(format!(
        "shared group: {} consumers received min {min}, max {max} (max/min {spread}): {}{more}",
        counts.len(),
        listed.join(", ")
    ))
}

impl Summary {
    /// The figures particular to this run's scenario, one phrase each
    /// (the HTML report's "scenario figures"; the text has them too).
    pub fn scenario_figures(&self) -> Vec<String> {
        let mut v = Vec::new();
        let p = |q: f64| format!("{q:.1} µs");
        match self.latency_kind.as_str() {
            "connect" | "churn_cycle" => v.push(format!(
                "opened {} of {} at {:.0} conn/s (target {}), {} p50 {} p99 {}",
                self.conns_opened.unwrap_or(0),
                self.conns_requested.unwrap_or(0),
                self.conns_per_s.unwrap_or(0.0),
                match self.conns_target_per_s {
                    Some(t) if t > 0.0 => format!("{t:.0} conn/s"),
                    _ => "unlimited".into(),
                },
                if self.latency_kind == "churn_cycle" {
                    "connect-subscribe-disconnect cycle"
                } else {
                    "connect"
                },
                p(self.latency_us_p50),
                p(self.latency_us_p99)
            )),
            "round_trip" => v.push(format!(
                "{} replies to {} requests, round trip p50 {} p99 {}",
                self.msgs_received_total,
                self.msgs_sent_total,
                p(self.latency_us_p50),
                p(self.latency_us_p99)
            )),
            "retained_all" => v.push(format!(
                "{} subscribers each received {} retained messages: p50 {:.1} ms, max {:.1} ms after SUBSCRIBE; {} missing",
                self.subs,
                self.msgs_sent_total,
                self.latency_us_p50 / 1000.0,
                self.latency_us_max / 1000.0,
                self.lost.unwrap_or(0)
            )),
            _ => {}
        }
        v.extend(distribution(&self.per_subscriber_received));
        if self.msgs_received_total > 0 && self.mqtt_bytes_received_total > 0 {
            v.push(format!(
                "{:.1} MQTT bytes received per message",
                self.mqtt_bytes_received_total as f64 / self.msgs_received_total as f64
            ));
        }
        v
    }
}
