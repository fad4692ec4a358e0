//! `loadgen report`: one self-contained HTML page (inline CSS and SVG, no
//! scripts, no external assets) from --json outputs: per workload a
//! latency-by-percentile chart on a log "nines" axis (runs overlaid) and
//! throughput and latency over time from the per-second series; per run a
//! metadata block (date, command, broker and its version, machine, MQTT
//! version, QoS, parameters, loss); then a summary table of every run.

use std::path::Path;

use crate::selfcheck::SelfCheck;
use crate::stats::Summary;
use crate::svg::{
    escape, time_chart, Line, CHART_HEIGHT, CHART_WIDTH, MARGIN_BOTTOM, MARGIN_LEFT, MARGIN_RIGHT,
    MARGIN_TOP, PALETTE,
};

/// Most nines on the x axis (99.99999 %).
const NINES_MAX: f64 = 7.0;

/// One run read from a JSON file.
pub struct Run {
    pub name: String,
    /// Its colour in every chart and its metadata block (the run's place
    /// among all runs of the page).
    pub color: usize,
    pub summary: Summary,
}

/// Reads every JSON line of every file.
pub fn load(paths: &[impl AsRef<Path>]) -> Result<Vec<Run>, String> {
    let mut runs = Vec::new();
    for path in paths {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.trim_start().starts_with('{'))
            .collect();
        if lines.is_empty() {
            return Err(format!(
                "{}: no JSON lines (write them with --json)",
                path.display()
            ));
        }
        for (n, line) in lines.iter().enumerate() {
            let summary: Summary = serde_json::from_str(line)
                .map_err(|e| format!("{} line {}: {e}", path.display(), n + 1))?;
            let mut name = summary.label.clone().unwrap_or_else(|| stem.clone());
            if summary.label.is_none() && lines.len() > 1 {
                name = format!("{name} #{}", n + 1);
            }
            let color = runs.len();
            runs.push(Run {
                name,
                color,
                summary,
            });
        }
    }
    Ok(runs)
}

/// x position in "nines": 0 at 0 %, 1 at 90 %, 2 at 99 %, ...
fn nines(percentile: f64) -> Option<f64> {
    let rest = 1.0 - percentile / 100.0;
    (rest > 0.0).then(|| (1.0 / rest).log10().min(NINES_MAX))
}

fn percentile_label(n: u32) -> String {
    match n {
        0 => "0%".into(),
        1 => "90%".into(),
        n => format!("99.{}%", "9".repeat(n as usize - 2)).replace("99.%", "99%"),
    }
}

fn latency_label(decade: i32) -> String {
    let us = 10f64.powi(decade);
    if us < 1.0 {
        format!("{} ns", (us * 1000.0).round())
    } else if us < 1000.0 {
        format!("{us} µs")
    } else if us < 1e6 {
        format!("{} ms", us / 1000.0)
    } else {
        format!("{} s", us / 1e6)
    }
}

/// The SVG chart (inline in the page).
pub fn chart(runs: &[Run]) -> String {
    let series: Vec<(usize, Vec<(f64, f64)>)> = runs
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let points = r
                .summary
                .latency_us_percentiles
                .iter()
                .filter(|(_, v)| *v > 0.0)
                .filter_map(|(p, v)| Some((nines(*p)?, v.log10())))
                .collect();
            (i, points)
        })
        .collect();
    let all = series.iter().flat_map(|(_, p)| p.iter());
    let (mut x_max, mut y_lo, mut y_hi) = (2.0f64, f64::MAX, f64::MIN);
    for &(x, y) in all {
        x_max = x_max.max(x.ceil());
        y_lo = y_lo.min(y);
        y_hi = y_hi.max(y);
    }
    if y_lo > y_hi {
        (y_lo, y_hi) = (0.0, 3.0);
    }
    let (y_lo, mut y_hi) = (y_lo.floor(), y_hi.ceil());
    if y_hi <= y_lo {
        y_hi = y_lo + 1.0;
    }
    let plot_w = CHART_WIDTH - MARGIN_LEFT - MARGIN_RIGHT;
    let plot_h = CHART_HEIGHT - MARGIN_TOP - MARGIN_BOTTOM;
    let px = |x: f64| MARGIN_LEFT + x / x_max * plot_w;
    let py = |y: f64| MARGIN_TOP + (y_hi - y) / (y_hi - y_lo) * plot_h;
    let mut s = String::new();
    s.push_str(&format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="chart latency-percentiles" width="100%" viewBox="0 0 {CHART_WIDTH} {CHART_HEIGHT}" font-family="sans-serif" font-size="12">"#
    ));
    s.push_str(&format!(
        r#"<rect x="0" y="0" width="{CHART_WIDTH}" height="{CHART_HEIGHT}" fill="white"/>"#
    ));
    for n in 0..=(x_max as u32) {
        let x = px(f64::from(n));
        s.push_str(&format!(
            r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            MARGIN_TOP,
            MARGIN_TOP + plot_h,
            MARGIN_TOP + plot_h + 18.0,
            percentile_label(n)
        ));
    }
    for d in (y_lo as i32)..=(y_hi as i32) {
        let y = py(f64::from(d));
        s.push_str(&format!(
            r##"<line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            MARGIN_LEFT,
            MARGIN_LEFT + plot_w,
            MARGIN_LEFT - 6.0,
            y + 4.0,
            latency_label(d)
        ));
    }
    s.push_str(&format!(
        r##"<rect x="{MARGIN_LEFT}" y="{MARGIN_TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#888"/>"##
    ));
    s.push_str(&format!(
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">percentile (log scale of nines)</text>"#,
        MARGIN_LEFT + plot_w / 2.0,
        CHART_HEIGHT - 12.0
    ));
    s.push_str(&format!(
        r#"<text transform="translate(16 {:.1}) rotate(-90)" text-anchor="middle">latency (log scale)</text>"#,
        MARGIN_TOP + plot_h / 2.0
    ));
    for (i, points) in &series {
        let color = runs.get(*i).map_or(0, |r| r.color);
        let color = PALETTE[color % PALETTE.len()];
        let path: Vec<String> = points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
            .collect();
        if !path.is_empty() {
            s.push_str(&format!(
                r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
                path.join(" ")
            ));
        }
        let ly = MARGIN_TOP + 10.0 + *i as f64 * 20.0;
        let lx = MARGIN_LEFT + plot_w + 15.0;
        let name = runs.get(*i).map(|r| escape(&r.name)).unwrap_or_default();
        s.push_str(&format!(
            r#"<line x1="{lx:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{color}" stroke-width="3"/><text x="{:.1}" y="{:.1}">{name}</text>"#,
            lx + 24.0,
            lx + 30.0,
            ly + 4.0
        ));
    }
    s.push_str("</svg>");
    s
}

fn mqtt_name(level: u8) -> &'static str {
    match level {
        3 => "3.1",
        4 => "3.1.1",
        5 => "5.0",
        _ => "?",
    }
}

fn names(runs: &[Run]) -> Vec<(usize, &str)> {
    runs.iter().map(|r| (r.color, r.name.as_str())).collect()
}

/// Messages received (or, for `pub`, sent) per second.
pub fn throughput_chart(runs: &[Run]) -> String {
    let lines: Vec<Line> = runs
        .iter()
        .map(|r| Line {
            run: r.color,
            dashed: false,
            points: r
                .summary
                .per_second
                .iter()
                .map(|p| {
                    let n = if r.summary.scenario == "pub" {
                        p.msgs_sent
                    } else {
                        p.msgs_received
                    };
                    (f64::from(p.second), n as f64)
                })
                .collect(),
        })
        .collect();
    time_chart(
        "throughput-over-time",
        "msg/s (received; sent for pub)",
        &names(runs),
        &lines,
        "",
    )
}

/// Latency p50 (solid) and p99 (dashed) per second.
pub fn latency_time_chart(runs: &[Run]) -> String {
    let mut lines = Vec::new();
    for r in runs {
        let pick = |f: fn(&crate::series::SecondPoint) -> Option<f64>| -> Vec<(f64, f64)> {
            r.summary
                .per_second
                .iter()
                .filter_map(|p| Some((f64::from(p.second), f(p)?)))
                .collect()
        };
        lines.push(Line {
            run: r.color,
            dashed: false,
            points: pick(|p| p.latency_us_p50),
        });
        lines.push(Line {
            run: r.color,
            dashed: true,
            points: pick(|p| p.latency_us_p99),
        });
    }
    time_chart(
        "latency-over-time",
        "latency µs",
        &names(runs),
        &lines,
        "solid p50, dashed p99",
    )
}

/// What one run was: when, how, against what, on what, and what it lost.
pub fn metadata(run: &Run) -> String {
    let m = &run.summary;
    let meta = &m.meta;
    let or_unknown = |v: &str| {
        if v.is_empty() {
            "unknown (older file)".to_string()
        } else {
            escape(v)
        }
    };
    let broker_version = match (&meta.broker_version, meta.date_utc.is_empty()) {
        (Some(v), _) => escape(v),
        (None, true) => "unknown (older file)".into(),
        (None, false) => "did not answer $SYS/broker/version".into(),
    };
    let machine = if meta.machine.cores == 0 {
        "unknown (older file)".to_string()
    } else {
        escape(&meta.machine.describe())
    };
    let params = if meta.parameters.is_empty() {
        format!(
            "QoS {}, {} B, {} pub, {} sub, rate {} msg/s per pub, warm-up {} s, duration {} s, {} threads",
            m.qos, m.payload_bytes, m.pubs, m.subs, m.rate_msgs_per_s_per_pub, m.warmup_s, m.duration_s, m.threads
        )
    } else {
        meta.parameters
            .iter()
            .map(|(k, v)| format!("{}={}", escape(k), escape(v)))
            .collect::<Vec<_>>()
            .join(" · ")
    };
    let color = PALETTE[run.color % PALETTE.len()];
    let mut s = String::new();
    s.push_str(&format!(
        "<div class=\"meta\" style=\"border-left-color:{color}\"><h3>{}</h3><dl>\
         <dt>date (UTC)</dt><dd>{}</dd>\
         <dt>command</dt><dd><code>{}</code></dd>\
         <dt>loadgen</dt><dd>{}</dd>\
         <dt>broker</dt><dd>{} ({}) — {}</dd>\
         <dt>machine</dt><dd>{}</dd>\
         <dt>MQTT</dt><dd>{} (protocol level {}), QoS {}</dd>\
         <dt>parameters</dt><dd>{}</dd>\
         <dt>loss</dt><dd>lost {} · duplicated {} · reordered {} · errors {}</dd>\
         <dt>scenario figures</dt><dd>{}</dd>\
         <dt>loadgen self-check</dt><dd>{}</dd>\
         </dl></div>",
        escape(&run.name),
        or_unknown(&meta.date_utc),
        or_unknown(&meta.command),
        or_unknown(&meta.loadgen_version),
        escape(&m.broker),
        escape(&m.transport),
        broker_version,
        machine,
        mqtt_name(m.mqtt_version),
        m.mqtt_version,
        m.qos,
        params,
        m.lost.map_or("n/a".into(), |l| l.to_string()),
        m.duplicated,
        m.reordered,
        m.errors,
        figures(m),
        self_check(m.self_check.as_ref()),
    ));
    s
}

/// The scenario's own figures, or a dash.
fn figures(m: &Summary) -> String {
    let f = m.scenario_figures();
    if f.is_empty() {
        return "—".into();
    }
    f.iter().map(|x| escape(x)).collect::<Vec<_>>().join(" · ")
}

/// The self-check as HTML: the verdict, the figures, the findings.
fn self_check(check: Option<&SelfCheck>) -> String {
    match check {
        None => "not recorded (older file)".into(),
        Some(c) if !c.bottleneck => format!("kept up ({})", escape(&c.figures())),
        Some(c) => {
            let findings: Vec<String> = c.findings.iter().map(|f| escape(f)).collect();
            format!(
                "<strong class=\"warn\">loadgen was the bottleneck</strong> ({}): {}",
                escape(&c.figures()),
                findings.join("; ")
            )
        }
    }
}

fn fmt_us(v: f64, samples: u64) -> String {
    if samples == 0 {
        "–".into()
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// The throughput / latency table.
pub fn table(runs: &[Run]) -> String {
    let mut s = String::from(
        "<table><thead><tr><th>run</th><th>scenario</th><th>broker</th><th>MQTT</th><th>QoS</th><th>size B</th>\
         <th>pubs</th><th>subs</th><th>sent msg/s</th><th>received msg/s</th><th>latency</th>\
         <th>p50 µs</th><th>p90 µs</th><th>p99 µs</th><th>p99.9 µs</th><th>p99.99 µs</th><th>max µs</th>\
         <th>lost</th><th>dup</th><th>reordered</th><th>errors</th></tr></thead><tbody>",
    );
    for r in runs {
        let m = &r.summary;
        let scenario = match (&m.topology, m.conns_requested) {
            (_, Some(n)) => format!("conn ×{n} ({:.0} conn/s)", m.conns_per_s.unwrap_or(0.0)),
            (Some(t), _) => format!("{} {t}", m.scenario),
            (None, _) => m.scenario.clone(),
        };
        let n = m.latency_samples;
        s.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{:.0}</td><td>{:.0}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&r.name),
            escape(&scenario),
            escape(&m.broker),
            mqtt_name(m.mqtt_version),
            m.qos,
            m.payload_bytes,
            m.pubs,
            m.subs,
            m.msgs_per_s_sent,
            m.msgs_per_s_received,
            escape(&m.latency_kind),
            fmt_us(m.latency_us_p50, n),
            fmt_us(m.latency_us_p90, n),
            fmt_us(m.latency_us_p99, n),
            fmt_us(m.latency_us_p99_9, n),
            fmt_us(m.latency_us_p99_99, n),
            fmt_us(m.latency_us_max, n),
            m.lost.map_or("n/a".into(), |l| l.to_string()),
            m.duplicated,
            m.reordered,
            m.errors
        ));
    }
    s.push_str("</tbody></table>");
    s
}

/// What a chart groups by: runs of the same workload, whatever the broker.
fn workload(s: &Summary) -> String {
    if let Some(n) = s.conns_requested {
        return format!("conn: {n} connections, protocol level {}", s.mqtt_version);
    }
    let rate = if s.rate_msgs_per_s_per_pub > 0.0 {
        format!("{} msg/s per publisher", s.rate_msgs_per_s_per_pub)
    } else {
        "unlimited rate".into()
    };
    let topology = s
        .topology
        .as_deref()
        .map(|t| format!(" {t}"))
        .unwrap_or_default();
    let clients = match s.scenario.as_str() {
        "pub" => format!("{} pub", s.pubs),
        "sub" => format!("{} sub", s.subs),
        _ => format!("{} pub → {} sub", s.pubs, s.subs),
    };
    format!(
        "{}{topology}: {clients}, QoS {}, {} B, {rate}, {} latency",
        s.scenario,
        s.qos,
        s.payload_bytes,
        s.latency_kind.replace('_', "-")
    )
}

/// The whole page: one chart per workload, then the table of every run.
pub fn page(title: &str, runs: &[Run]) -> String {
    let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
    for (i, r) in runs.iter().enumerate() {
        let key = workload(&r.summary);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, members)) => members.push(i),
            None => groups.push((key, vec![i])),
        }
    }
    let mut charts = String::new();
    for (key, members) in &groups {
        let group: Vec<Run> = members
            .iter()
            .filter_map(|&i| runs.get(i))
            .map(|r| Run {
                name: r.name.clone(),
                color: r.color,
                summary: r.summary.clone(),
            })
            .collect();
        charts.push_str(&format!(
            "<h2>{}</h2><h3>Latency by percentile</h3>{}",
            escape(key),
            chart(&group)
        ));
        if group.iter().any(|r| !r.summary.per_second.is_empty()) {
            charts.push_str(&format!(
                "<h3>Throughput over time</h3>{}<h3>Latency over time</h3>{}",
                throughput_chart(&group),
                latency_time_chart(&group)
            ));
        }
    }
    let mut runs_meta = String::new();
    for r in runs {
        runs_meta.push_str(&metadata(r));
    }
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\
         <style>body{{font-family:sans-serif;margin:24px;color:#222}}h2{{font-size:16px;margin-top:28px}}\
         table{{border-collapse:collapse;font-size:13px;margin-top:16px}}\
         th,td{{border:1px solid #ccc;padding:4px 8px;text-align:right}}\
         th{{background:#f3f3f3}}td:first-child,td:nth-child(2),td:nth-child(3){{text-align:left}}\
         p.note{{color:#555;font-size:13px;max-width:1000px}}strong.warn{{color:#b00}}\
         svg.chart{{display:block;width:100%;height:auto}}\
         div.meta{{border-left:6px solid #888;padding:4px 12px;margin:12px 0;font-size:13px}}\
         div.meta h3{{margin:4px 0}}dl{{display:grid;grid-template-columns:max-content minmax(0,1fr);gap:2px 12px;margin:0}}\
         dt{{color:#555}}dd{{margin:0;overflow-wrap:anywhere}}</style></head><body>\
         <h1>{title}</h1>\
         <p class=\"note\">Latency by percentile, one chart per workload and one line per run. \
         End-to-end latency is measured from the intended send time when publishers run at a \
         fixed rate (coordinated omission corrected); unpaced runs measure from the actual send \
         time and mostly show queueing. The maximum is in the table (it has no place on a nines \
         axis). Over-time charts show each second of the measured window.</p>\
         <h2>Runs</h2>{runs_meta}{charts}<h2>All runs</h2>{table}</body></html>\n",
        title = escape(title),
        table = table(runs)
    )
}

#[cfg(test)]
mod tests;
