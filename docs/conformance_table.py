#!/usr/bin/env python3
"""Generate docs/conformance.md: which MQTT normative statements the engine tests check.

Reads docs/conformance_statements.tsv (id, version, side, summary: every numbered
statement of MQTT 5.0 and MQTT 3.1.1) and scans engine/tests/*.rs for #[test]
functions whose doc comment (the /// block above the attributes) cites ids like
[MQTT-3.1.2-4]. A citation counts for a version when

  * it is prefixed with the version: "5.0 [MQTT-...]", "v5 [MQTT-...]",
    "3.1.1 [MQTT-...]" or "v3.1.1 [MQTT-...]"; or else
  * the file is version-specific (conformance_v5.rs -> 5.0,
    conformance_v311.rs -> 3.1.1); or else
  * the test body uses only one protocol version (V5 or V3).

Bare citations in tests that run both versions are ambiguous (3.1.1 and 5.0
reuse numbers with different meanings): they are listed, not counted.
Citations in KNOWN_WRONG (the id does not say what the test checks) are listed
and not counted. #[ignore]d tests do not count: they are shown as open bugs.

usage: python3 docs/conformance_table.py [--check]
  --check: exit 1 if docs/conformance.md is not what this script generates.
"""
import collections
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TSV = os.path.join(ROOT, "docs", "conformance_statements.tsv")
TESTS = os.path.join(ROOT, "engine", "tests")
OUT = os.path.join(ROOT, "docs", "conformance.md")

FILE_VERSION = {"conformance_v5.rs": "5.0", "conformance_v311.rs": "3.1.1"}
PREFIX_VERSION = {"5.0": "5.0", "v5": "5.0", "3.1.1": "3.1.1", "v3.1.1": "3.1.1"}

# (file, test, version, id) -> why the citation is not counted: the id does
# not say what the test checks (audited by hand). Remove an entry once the
# test's doc comment is corrected. Empty: the broker_session.rs and
# broker_publish.rs citations were corrected.
KNOWN_WRONG = {}

CITE = re.compile(r"(?:\b(5\.0|v5|3\.1\.1|v3\.1\.1)\s+)?\[(MQTT-[0-9][0-9.\-]*[0-9?])\]")
FN = re.compile(r"^\s*(?:pub\s+)?(?:async\s+)?fn\s+([A-Za-z0-9_]+)")


def load_statements():
    rows = []
    with open(TSV, encoding="utf-8") as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            sid, version, side, summary = line.rstrip("\n").split("\t")
            rows.append((sid, version, side, summary))
    return rows


def normalise(sid):
    # The 3.1.1 text prints two ids oddly: [MQTT-3.1.2.7] and [MQTT-3-8.3-4].
    fixes = {"MQTT-3.1.2.7": "MQTT-3.1.2-7", "MQTT-3-8.3-4": "MQTT-3.8.3-4"}
    return fixes.get(sid, sid)


def tests_in(path):
    """Yield (name, doc lines, body, ignored) for each #[test] fn in a file."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    i = 0
    while i < len(lines):
        m = FN.match(lines[i])
        if not m:
            i += 1
            continue
        # Walk up over attributes, then collect the /// block.
        j = i - 1
        attrs = []
        while j >= 0 and lines[j].strip().startswith("#["):
            attrs.append(lines[j].strip())
            j -= 1
        doc = []
        while j >= 0 and lines[j].strip().startswith("///"):
            doc.insert(0, lines[j].strip()[3:])
            j -= 1
        is_test = any(a.startswith("#[test") for a in attrs)
        ignored = any(a.startswith("#[ignore") for a in attrs)
        # Body: up to the next line that closes at column 0.
        k = i + 1
        while k < len(lines) and lines[k] != "}":
            k += 1
        body = "\n".join(lines[i:k + 1])
        if is_test:
            yield m.group(1), doc, body, ignored
        i = k + 1


def body_version(body):
    v5 = re.search(r"\bV5\b", body) is not None
    v3 = re.search(r"\bV3(_1_1)?\b", body) is not None or "both()" in body
    if "both()" in body:
        v5 = True
    if v5 and not v3:
        return "5.0"
    if v3 and not v5:
        return "3.1.1"
    return None


def scan():
    covered = collections.defaultdict(list)    # (version, id) -> ["file::test"]
    bugs = collections.defaultdict(list)       # (version, id) -> ["file::test"]
    ambiguous = []                             # (file::test, id)
    wrong = []                                 # (file::test, version, id, why)
    unknown = []                               # (file::test, version, id)
    known = {(s[1], s[0]) for s in load_statements()}
    for name in sorted(os.listdir(TESTS)):
        if not name.endswith(".rs"):
            continue
        for test, doc, body, ignored in tests_in(os.path.join(TESTS, name)):
            where = f"{name[:-3]}::{test}"
            for prefix, sid in CITE.findall(" ".join(doc)):
                if "?" in sid:
                    continue
                sid = normalise(sid)
                version = PREFIX_VERSION.get(prefix) or FILE_VERSION.get(name) or body_version(body)
                if version is None:
                    ambiguous.append((where, sid))
                    continue
                key = (name, test, version, sid)
                if key in KNOWN_WRONG:
                    wrong.append((where, version, sid, KNOWN_WRONG[key]))
                    continue
                if (version, sid) not in known:
                    unknown.append((where, version, sid))
                    continue
                (bugs if ignored else covered)[(version, sid)].append(where)
    return covered, bugs, ambiguous, wrong, unknown


INTRO = """# MQTT conformance of the engine

Generated by `python3 docs/conformance_table.py` from
`docs/conformance_statements.tsv` and the doc comments of `engine/tests/*.rs`;
do not edit by hand (CI can run the script with `--check`).

## How the tests are organised

The broker is a sans-IO state machine, so its conformance tests drive it
through a deterministic simulator (`engine/tests/sim/mod.rs`: shards, clients,
a virtual clock, raw bytes in and decoded packets out) instead of sockets.

- `engine/tests/conformance_v5.rs` and `engine/tests/conformance_v311.rs`: one
  or more tests per server-side normative statement of MQTT 5.0 and MQTT 3.1.1.
  Both also carry a small `Raw` harness that keeps the exact bytes the broker
  writes, for rules about the wire form (flags, packet identifiers, property
  lengths, packet sizes).
- `engine/tests/broker_session.rs`, `engine/tests/broker_publish.rs`: broker
  scenarios (sessions, will, keep-alive, QoS flows, retained messages, v5
  features, cross-shard routing).
- `engine/tests/codec_*.rs`: the codec alone (round trips, malformed input).

Each test's doc comment cites the ids of the statements it checks, one id per
statement that an assert in that test checks, e.g.
`/// [MQTT-3.1.2-4] [MQTT-3.2.2-2]: Clean Start 1 discards ...`. MQTT 3.1.1 and
5.0 reuse numbers with different meanings, so a citation is read as a 5.0 id in
`conformance_v5.rs`, as a 3.1.1 id in `conformance_v311.rs`, and elsewhere as
the id of the one protocol version the test uses; in a test that runs both
versions write the version before the id (`5.0 [MQTT-3.1.2-4]`,
`3.1.1 [MQTT-3.1.2-6]`), otherwise the citation is listed under "Ambiguous
citations" and not counted. A test marked `#[ignore = "BUG: ..."]` would
document a known broker bug: it is not counted, and its statements show as
"BUG" until it passes.

Run them with:

    cargo test -p ringmq-engine                      # everything
    cargo test -p ringmq-engine --test conformance_v5
    cargo test -p ringmq-engine --test conformance_v311

The same rules are also checked black-box against the real binary in CI:
`python3 ../shared/conformance.py --port PORT` (raw sockets, hand-encoded
packets; `--only v4|v5`, `-k SUBSTR`) runs against a started `ringmq serve`.

## Scope

Statements come from the OASIS standards: MQTT Version 5.0 (7 March 2019) and
MQTT Version 3.1.1 (29 October 2014, the Appendix B list). "Server-side" means
the statement binds the server, or binds both ends (the server as sender or
receiver, or the server must refuse the violation); statements that bind only
the client are listed at the end and not counted. The summaries are
paraphrases: the standard's text is normative. Some statements are
conditional on features ringmq has (it supports QoS 2, retained messages,
wildcards), or belong to other crates (WebSocket in `net/`, transport in
`shards/`): they stay "not yet" here rather than being claimed.
"""


def render():
    statements = load_statements()
    covered, bugs, ambiguous, wrong, unknown = scan()
    out = [INTRO]
    totals = []
    for version, title in (("5.0", "MQTT 5.0"), ("3.1.1", "MQTT 3.1.1")):
        rows = [s for s in statements if s[1] == version and s[2] in ("server", "both")]
        n_cov = sum(1 for s in rows if (version, s[0]) in covered)
        totals.append((title, n_cov, len(rows)))
        out.append(f"## {title}: server-side statements\n")
        out.append(f"{n_cov} of {len(rows)} server-side statements covered.\n")
        out.append("| statement | requires | covered by |")
        out.append("|---|---|---|")
        for sid, _, side, summary in rows:
            cells = []
            if (version, sid) in covered:
                cells.append(", ".join(f"`{w}`" for w in covered[(version, sid)]))
            if (version, sid) in bugs:
                cells.append("BUG: " + ", ".join(f"`{w}` (ignored)" for w in bugs[(version, sid)]))
            cell = "; ".join(cells) if cells else "not yet"
            label = f"{version} [{sid}]"
            out.append(f"| {label} | {summary} | {cell} |")
        out.append("")
    out.append("## Total\n")
    all_cov = sum(t[1] for t in totals)
    all_n = sum(t[2] for t in totals)
    for title, n_cov, n in totals:
        out.append(f"- {title}: {n_cov} of {n} server-side statements covered.")
    out.append(f"- **{all_cov} of {all_n} server-side statements covered** (both versions).\n")
    open_bugs = sorted({w for ws in bugs.values() for w in ws})
    if open_bugs:
        out.append("## Known bugs (ignored tests)\n")
        out.append("\n".join(f"- `{w}`" for w in open_bugs))
        out.append("")
    out.append("## Citations not counted\n")
    out.append("Wrong ids (the statement is not what the test checks):\n")
    out.append("\n".join(f"- `{w}`: {v} [{sid}]: {why}" for w, v, sid, why in wrong) or "None.")
    out.append("")
    out.append("Ambiguous (bare id in a test that runs both versions; prefix it with 5.0 or 3.1.1):\n")
    out.append("\n".join(f"- `{w}`: [{sid}]" for w, sid in ambiguous) or "None.")
    out.append("")
    out.append("Ids that do not exist in that version:\n")
    out.append("\n".join(f"- `{w}`: {v} [{sid}]" for w, v, sid in unknown) or "None.")
    out.append("")
    out.append("## Client-only statements (not counted)\n")
    for version in ("5.0", "3.1.1"):
        client = [s for s in statements if s[1] == version and s[2] == "client"]
        out.append(f"- {version}: " + ", ".join(f"[{s[0]}]" for s in client))
    out.append("")
    return "\n".join(out)


def main():
    text = render()
    if "--check" in sys.argv:
        current = open(OUT, encoding="utf-8").read() if os.path.exists(OUT) else ""
        if current != text:
            print("docs/conformance.md is out of date: run python3 docs/conformance_table.py", file=sys.stderr)
            sys.exit(1)
        return
    with open(OUT, "w", encoding="utf-8") as f:
        f.write(text)
    last = [l for l in text.split("\n") if l.startswith("- **")]
    print(last[0] if last else "written")


if __name__ == "__main__":
    main()
