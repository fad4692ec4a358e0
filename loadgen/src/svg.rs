//! SVG and HTML pieces shared by the report's charts: the chart geometry,
//! the run colours, HTML escaping, and the linear over-time chart.

/// The viewBox width; the SVG itself spans the page width.
pub const CHART_WIDTH: f64 = 1400.0;
pub const CHART_HEIGHT: f64 = 560.0;
/// Height of the over-time charts (same width).
pub const TIME_CHART_HEIGHT: f64 = 360.0;
pub const MARGIN_LEFT: f64 = 80.0;
pub const MARGIN_RIGHT: f64 = 250.0;
pub const MARGIN_TOP: f64 = 30.0;
pub const MARGIN_BOTTOM: f64 = 60.0;
pub const PALETTE: [&str; 10] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];

pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// One line of an over-time chart: (second, value) points.
pub struct Line {
    pub run: usize,
    pub dashed: bool,
    pub points: Vec<(f64, f64)>,
}

/// A linear chart of values over the seconds of the measured window, one
/// or two lines per run (colours as in the percentile chart).
pub fn time_chart(
    class: &str,
    y_label: &str,
    names: &[(usize, &str)],
    lines: &[Line],
    legend: &str,
) -> String {
    let (mut x_max, mut y_max) = (1.0f64, 0.0f64);
    for l in lines {
        for &(x, y) in &l.points {
            x_max = x_max.max(x + 1.0);
            y_max = y_max.max(y);
        }
    }
    let y_max = nice_ceiling(y_max);
    let plot_w = CHART_WIDTH - MARGIN_LEFT - MARGIN_RIGHT;
    let plot_h = TIME_CHART_HEIGHT - MARGIN_TOP - MARGIN_BOTTOM;
    let px = |x: f64| MARGIN_LEFT + x / x_max * plot_w;
    let py = |y: f64| MARGIN_TOP + (1.0 - y / y_max) * plot_h;
    let mut s = String::new();
    s.push_str(&format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="chart {class}" width="100%" viewBox="0 0 {CHART_WIDTH} {TIME_CHART_HEIGHT}" font-family="sans-serif" font-size="12"><rect x="0" y="0" width="{CHART_WIDTH}" height="{TIME_CHART_HEIGHT}" fill="white"/>"#
    ));
    const Y_TICKS: u32 = 5;
    for t in 0..=Y_TICKS {
        let v = y_max * f64::from(t) / f64::from(Y_TICKS);
        let y = py(v);
        s.push_str(&format!(
            r##"<line x1="{MARGIN_LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            MARGIN_LEFT + plot_w,
            MARGIN_LEFT - 6.0,
            y + 4.0,
            short_number(v)
        ));
    }
    let x_step = (x_max / 10.0).ceil().max(1.0);
    let mut x = 0.0;
    while x <= x_max {
        s.push_str(&format!(
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{x}</text>"#,
            px(x),
            MARGIN_TOP + plot_h + 18.0
        ));
        x += x_step;
    }
    s.push_str(&format!(
        r##"<rect x="{MARGIN_LEFT}" y="{MARGIN_TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#888"/><text x="{:.1}" y="{:.1}" text-anchor="middle">seconds of the measured window</text><text transform="translate(16 {:.1}) rotate(-90)" text-anchor="middle">{}</text>"##,
        MARGIN_LEFT + plot_w / 2.0,
        TIME_CHART_HEIGHT - 12.0,
        MARGIN_TOP + plot_h / 2.0,
        escape(y_label)
    ));
    for l in lines {
        let color = PALETTE[l.run % PALETTE.len()];
        let dash = if l.dashed {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        // Each value holds for its whole second: a step line.
        let mut path = Vec::with_capacity(l.points.len() * 2);
        for &(x, y) in &l.points {
            path.push(format!("{:.1},{:.1}", px(x), py(y)));
            path.push(format!("{:.1},{:.1}", px(x + 1.0), py(y)));
        }
        if !path.is_empty() {
            s.push_str(&format!(
                r#"<polyline fill="none" stroke="{color}" stroke-width="2"{dash} points="{}"/>"#,
                path.join(" ")
            ));
        }
    }
    for (i, (color, name)) in names.iter().enumerate() {
        let color = PALETTE[color % PALETTE.len()];
        let ly = MARGIN_TOP + 10.0 + i as f64 * 20.0;
        let lx = MARGIN_LEFT + plot_w + 15.0;
        s.push_str(&format!(
            r#"<line x1="{lx:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{color}" stroke-width="3"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            lx + 24.0,
            lx + 30.0,
            ly + 4.0,
            escape(name)
        ));
    }
    s.push_str(&format!(
        r##"<text x="{:.1}" y="{:.1}" fill="#555">{}</text></svg>"##,
        MARGIN_LEFT + plot_w + 15.0,
        MARGIN_TOP + 30.0 + names.len() as f64 * 20.0,
        escape(legend)
    ));
    s
}

/// 1, 2 or 5 times a power of ten, at or above `v` (at least 1).
fn nice_ceiling(v: f64) -> f64 {
    if v <= 1.0 {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|c| *c >= v)
        .unwrap_or(10.0 * p)
}

fn short_number(v: f64) -> String {
    if v >= 1e6 {
        format!("{}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{}k", v / 1e3)
    } else {
        format!("{v}")
    }
}
