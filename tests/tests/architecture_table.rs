//! docs/architecture.md's "concern -> file" tables match the code: every
//! source file of the engine and of the runtime crates (net, client,
//! shards, loadgen, wasm) has a row, and every file a row names exists. A new
//! file without a row, or a row left behind by a move, fails here.

use std::path::{Path, PathBuf};

/// Crates whose every source file must have a row.
const COVERED: [&str; 7] = [
    "chunked/src",
    "engine/src",
    "net/src",
    "client/src",
    "shards/src",
    "loadgen/src",
    "wasm/src",
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| panic!("tests/ has a parent"))
}

/// `.rs` files under `dir` (relative to the repository root), except crate
/// roots (`lib.rs`, `main.rs`: the crate's own docs list its modules) and
/// unit-test files (`tests.rs`).
fn sources(dir: &str, out: &mut Vec<String>) {
    let path = root().join(dir);
    let entries = std::fs::read_dir(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    for entry in entries {
        let entry = entry.unwrap_or_else(|e| panic!("{e}"));
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel = format!("{dir}/{name}");
        if entry.path().is_dir() {
            sources(&rel, out);
        } else if name.ends_with(".rs")
            && !["lib.rs", "main.rs", "tests.rs"].contains(&name.as_str())
        {
            out.push(rel);
        }
    }
}

/// Every `` `path/to/file.rs` `` in a table row of the document.
fn cited_in_tables(doc: &str) -> Vec<String> {
    let mut cited = Vec::new();
    for line in doc.lines().filter(|l| l.starts_with('|')) {
        for (i, part) in line.split('`').enumerate() {
            if i % 2 == 1 && part.ends_with(".rs") && part.contains("/src/") {
                cited.push(part.to_string());
            }
        }
    }
    cited
}

#[test]
fn every_runtime_source_file_has_a_row_and_every_row_a_file() {
    let doc_path = root().join("docs/architecture.md");
    let doc = std::fs::read_to_string(&doc_path)
        .unwrap_or_else(|e| panic!("{}: {e}", doc_path.display()));
    let cited = cited_in_tables(&doc);
    assert!(
        cited.len() > 20,
        "no concern -> file table found: {cited:?}"
    );
    let mut files = Vec::new();
    for dir in COVERED {
        sources(dir, &mut files);
    }
    let missing: Vec<&String> = files.iter().filter(|f| !cited.contains(f)).collect();
    assert!(
        missing.is_empty(),
        "source files without a row in docs/architecture.md: {missing:?}"
    );
    let stale: Vec<&String> = cited.iter().filter(|f| !root().join(f).is_file()).collect();
    assert!(
        stale.is_empty(),
        "docs/architecture.md names files that do not exist: {stale:?}"
    );
}
