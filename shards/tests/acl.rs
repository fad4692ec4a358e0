//! Black-box tests of `ringmq acl add|remove|list|check` and of the broker
//! started with `[auth] acl_file`.

use std::path::PathBuf;
use std::time::Duration;

use ringmq_tests::{binary, run_to_exit};

const EXIT_LIMIT: Duration = Duration::from_secs(20);

fn bin() -> PathBuf {
    binary(env!("CARGO_BIN_EXE_ringmq"))
}

/// A fresh directory for one test.
fn temp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ringmq-acl-test-{}-{test}", std::process::id()));
    // Left over from an earlier run with the same pid: start clean.
    if dir.exists() {
        std::fs::remove_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    }
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    dir
}

fn acl(args: &[&str]) -> (Option<i32>, String, String) {
    let mut all = vec!["acl"];
    all.extend_from_slice(args);
    let (status, out, err) = run_to_exit(&bin(), &all, EXIT_LIMIT);
    (status.code(), out, err)
}

#[test]
fn add_list_check_remove() {
    let dir = temp_dir("edit");
    let file = dir.join("acl");
    let f = file.to_str().unwrap_or_default();

    let (code, out, err) = acl(&["add", f, "--user", "alice", "readwrite", "alice/#"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("added for user alice: topic readwrite alice/#"),
        "{out}"
    );
    let (code, _, err) = acl(&["add", f, "--user", "alice", "deny", "alice/secret/#"]);
    assert_eq!(code, Some(0), "{err}");
    let (code, _, err) = acl(&["add", f, "--pattern", "read", "devices/%c/#"]);
    assert_eq!(code, Some(0), "{err}");
    let (code, _, err) = acl(&["add", f, "read", "public/#"]);
    assert_eq!(code, Some(0), "{err}");
    let text = std::fs::read_to_string(&file).unwrap_or_default();
    assert_eq!(
        text,
        "topic read public/#\nuser alice\ntopic readwrite alice/#\ntopic deny alice/secret/#\npattern read devices/%c/#\n"
    );

    let (code, out, _) = acl(&["list", f]);
    assert_eq!(code, Some(0));
    assert_eq!(out.lines().count(), 4, "{out}");
    assert!(out.contains("    3  user alice"), "{out}");
    let (_, out, _) = acl(&["list", f, "--user", "alice"]);
    assert_eq!(out.lines().count(), 2, "{out}");
    let (_, out, _) = acl(&["list", f, "--anonymous"]);
    assert_eq!(
        out.trim_end(),
        format!("{:>5}  {:<24}  topic read public/#", 1, "anonymous clients")
    );

    // check: exit 0 allowed, 1 denied; the deciding rule and its line.
    let (code, out, _) = acl(&["check", f, "--user", "alice", "write", "alice/x"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.starts_with("allowed: write alice/x"), "{out}");
    assert!(out.contains("by line 3: topic readwrite alice/#"), "{out}");
    let (code, out, _) = acl(&["check", f, "--user", "alice", "read", "alice/secret/k"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("denied") && out.contains("by line 4: topic deny alice/secret/#"),
        "{out}"
    );
    let (code, out, _) = acl(&["check", f, "--client", "d1", "read", "devices/d1/t"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("by line 5: pattern read devices/%c/#"),
        "{out}"
    );
    let (code, out, _) = acl(&["check", f, "--user", "bob", "write", "public/x"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("no rule grants it"), "{out}");
    let (code, out, _) = acl(&["check", f, "--user", "alice", "subscribe", "#"]);
    assert_eq!(code, Some(1), "{out}");

    let (code, out, err) = acl(&["remove", f, "--user", "alice", "deny", "alice/secret/#"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("removed line 4"), "{out}");
    let (code, _, _) = acl(&["check", f, "--user", "alice", "read", "alice/secret/k"]);
    assert_eq!(code, Some(0));
    std::fs::remove_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn errors_are_clear() {
    let dir = temp_dir("errors");
    let file = dir.join("acl");
    let f = file.to_str().unwrap_or_default();
    std::fs::write(&file, "topic read a\nuser bob\ntopik write b\n")
        .unwrap_or_else(|e| panic!("{e}"));

    let (code, _, err) = acl(&["check", f, "read", "a"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains(&format!("ACL file {f}: line 3: unknown keyword `topik`")),
        "{err}"
    );
    let (code, _, err) = acl(&["add", f, "read", "x"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("the file is invalid, fix it first: line 3"),
        "{err}"
    );

    std::fs::write(&file, "topic read a\n").unwrap_or_else(|e| panic!("{e}"));
    let (code, _, err) = acl(&["add", f, "reed", "x"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("unknown access `reed`"), "{err}");
    let (code, _, err) = acl(&["add", f, "read", "x/#/y"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("rule refused: invalid topic filter `x/#/y`"),
        "{err}"
    );
    let (code, _, err) = acl(&["add", f, "read", "a"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("already there (line 1"), "{err}");
    let (code, _, err) = acl(&["remove", f, "--user", "zed", "read", "a"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("no rule `topic read a` for user zed"), "{err}");
    let (code, _, err) = acl(&["check", f, "publish", "a"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("unknown action `publish`"), "{err}");
    let (code, _, err) = acl(&["add", f, "--user", "a", "--pattern", "read", "a"]);
    assert_eq!(code, Some(2), "{err}");
    let missing = dir.join("missing");
    let (code, _, err) = acl(&["list", missing.to_str().unwrap_or_default()]);
    assert_eq!(code, Some(2));
    assert!(err.contains("cannot read ACL file"), "{err}");
    // A failed edit leaves the file as it was.
    assert_eq!(
        std::fs::read_to_string(&file).unwrap_or_default(),
        "topic read a\n"
    );
    std::fs::remove_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
}
