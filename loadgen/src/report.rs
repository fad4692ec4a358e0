//! `loadgen report`: one self-contained HTML page (inline CSS and SVG, no
//! scripts, no external assets) from --json outputs: a latency-by-percentile
//! chart on a log "nines" axis and a throughput table.

use std::fmt::Write as _;
use std::path::Path;

use crate::stats::Summary;

const CHART_WIDTH: f64 = 1000.0;
const CHART_HEIGHT: f64 = 520.0;
const MARGIN_LEFT: f64 = 80.0;
const MARGIN_RIGHT: f64 = 250.0;
const MARGIN_TOP: f64 = 30.0;
const MARGIN_BOTTOM: f64 = 60.0;
/// Most nines on the x axis (99.99999 %).
const NINES_MAX: f64 = 7.0;
const PALETTE: [&str; 10] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];

/// One run read from a JSON file.
pub struct Run {
    pub name: String,
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
            runs.push(Run { name, summary });
        }
    }
    Ok(runs)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
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
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{CHART_WIDTH}" height="{CHART_HEIGHT}" viewBox="0 0 {CHART_WIDTH} {CHART_HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(
        s,
        r#"<rect x="0" y="0" width="{CHART_WIDTH}" height="{CHART_HEIGHT}" fill="white"/>"#
    );
    for n in 0..=(x_max as u32) {
        let x = px(f64::from(n));
        let _ = write!(
            s,
            r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            MARGIN_TOP,
            MARGIN_TOP + plot_h,
            MARGIN_TOP + plot_h + 18.0,
            percentile_label(n)
        );
    }
    for d in (y_lo as i32)..=(y_hi as i32) {
        let y = py(f64::from(d));
        let _ = write!(
            s,
            r##"<line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            MARGIN_LEFT,
            MARGIN_LEFT + plot_w,
            MARGIN_LEFT - 6.0,
            y + 4.0,
            latency_label(d)
        );
    }
    let _ = write!(
        s,
        r##"<rect x="{MARGIN_LEFT}" y="{MARGIN_TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#888"/>"##
    );
    let _ = write!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">percentile (log scale of nines)</text>"#,
        MARGIN_LEFT + plot_w / 2.0,
        CHART_HEIGHT - 12.0
    );
    let _ = write!(
        s,
        r#"<text transform="translate(16 {:.1}) rotate(-90)" text-anchor="middle">latency (log scale)</text>"#,
        MARGIN_TOP + plot_h / 2.0
    );
    for (i, points) in &series {
        let color = PALETTE[i % PALETTE.len()];
        let path: Vec<String> = points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
            .collect();
        if !path.is_empty() {
            let _ = write!(
                s,
                r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
                path.join(" ")
            );
        }
        let ly = MARGIN_TOP + 10.0 + *i as f64 * 20.0;
        let lx = MARGIN_LEFT + plot_w + 15.0;
        let name = runs.get(*i).map(|r| escape(&r.name)).unwrap_or_default();
        let _ = write!(
            s,
            r#"<line x1="{lx:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{color}" stroke-width="3"/><text x="{:.1}" y="{:.1}">{name}</text>"#,
            lx + 24.0,
            lx + 30.0,
            ly + 4.0
        );
    }
    s.push_str("</svg>");
    s
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
        "<table><thead><tr><th>run</th><th>scenario</th><th>broker</th><th>QoS</th><th>size B</th>\
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
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{:.0}</td><td>{:.0}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&r.name),
            escape(&scenario),
            escape(&m.broker),
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
        );
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
                summary: r.summary.clone(),
            })
            .collect();
        let _ = write!(charts, "<h2>{}</h2>{}", escape(key), chart(&group));
    }
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\
         <style>body{{font-family:sans-serif;margin:24px;color:#222}}h2{{font-size:16px;margin-top:28px}}\
         table{{border-collapse:collapse;font-size:13px;margin-top:16px}}\
         th,td{{border:1px solid #ccc;padding:4px 8px;text-align:right}}\
         th{{background:#f3f3f3}}td:first-child,td:nth-child(2),td:nth-child(3){{text-align:left}}\
         p.note{{color:#555;font-size:13px;max-width:1000px}}</style></head><body>\
         <h1>{title}</h1>\
         <p class=\"note\">Latency by percentile, one chart per workload and one line per run. \
         End-to-end latency is measured from the intended send time when publishers run at a \
         fixed rate (coordinated omission corrected); unpaced runs measure from the actual send \
         time and mostly show queueing. The maximum is in the table (it has no place on a nines \
         axis).</p>{charts}<h2>All runs</h2>{table}</body></html>\n",
        title = escape(title),
        table = table(runs)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nines_axis() {
        assert_eq!(nines(0.0), Some(0.0));
        assert!((nines(90.0).unwrap_or(0.0) - 1.0).abs() < 1e-9);
        assert!((nines(99.9).unwrap_or(0.0) - 3.0).abs() < 1e-9);
        assert_eq!(nines(100.0), None);
        assert_eq!(percentile_label(0), "0%");
        assert_eq!(percentile_label(1), "90%");
        assert_eq!(percentile_label(2), "99%");
        assert_eq!(percentile_label(4), "99.99%");
        assert_eq!(latency_label(0), "1 µs");
        assert_eq!(latency_label(3), "1 ms");
    }

    #[test]
    fn page_is_self_contained() {
        let summary = Summary {
            scenario: "pubsub".into(),
            label: Some("a <b>".into()),
            latency_samples: 3,
            latency_us_percentiles: vec![(0.0, 10.0), (90.0, 20.0), (99.0, 40.0), (100.0, 50.0)],
            ..Summary::default()
        };
        let runs = vec![Run {
            name: "a <b>".into(),
            summary,
        }];
        let html = page("t", &runs);
        assert!(html.contains("<svg"));
        assert!(html.contains("<polyline"));
        assert!(html.contains("a &lt;b&gt;"));
        assert!(
            !html.contains("http://") || html.matches("http://").count() == 1,
            "only the SVG namespace"
        );
        assert!(!html.contains("<script"));
    }
}
