//! `docs/grafana-ringmq.json` is a valid dashboard whose queries use only
//! metrics that docs/operations.md documents (and that `/metrics` serves:
//! `shards/tests/http.rs` checks every served family is documented).

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| panic!("tests/ has a parent"))
}

fn read(rel: &str) -> String {
    let path = root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every `ringmq_...` name in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("ringmq_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

#[test]
fn dashboard_is_valid_json_with_documented_metrics() {
    let text = read("docs/grafana-ringmq.json");
    let dash: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("docs/grafana-ringmq.json: {e}"));
    assert!(dash["title"].is_string() && dash["uid"].is_string());
    assert!(dash["schemaVersion"].is_u64());
    let panels = dash["panels"]
        .as_array()
        .unwrap_or_else(|| panic!("no panels"));
    assert!(panels.len() >= 6, "{} panels", panels.len());
    let doc = read("docs/operations.md");
    let mut exprs = 0;
    for panel in panels {
        let title = panel["title"]
            .as_str()
            .unwrap_or_else(|| panic!("a panel without title"));
        assert!(panel["gridPos"]["w"].is_u64(), "{title}: gridPos");
        let targets = panel["targets"]
            .as_array()
            .unwrap_or_else(|| panic!("{title}: no targets"));
        for target in targets {
            let expr = target["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("{title}: a target without expr"));
            exprs += 1;
            let names = metric_names(expr);
            assert!(!names.is_empty(), "{title}: {expr} uses no ringmq metric");
            for name in names {
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .filter(|f| doc.contains(&format!("| `{f}` | histogram |")))
                    .unwrap_or(&name);
                assert!(
                    doc.contains(&format!("| `{family}` |")),
                    "{title}: {family} is not in the metrics reference of docs/operations.md"
                );
            }
        }
    }
    assert!(exprs >= 10, "{exprs} queries");
}

#[test]
fn names_are_found_in_expressions() {
    assert_eq!(
        metric_names("sum(rate(ringmq_a_total{x=\"1\"}[1m])) / ringmq_b"),
        ["ringmq_a_total", "ringmq_b"]
    );
}
