#!/usr/bin/env python3
"""Runs test binaries that cargo already built, again, in another setting
(the environment: RINGMQ_TEST_IO=epoll, RINGMQ_SIM_PROFILE=in-tab), without
building anything.

    python3 tests/run-built.py BUILD_JSON (--all | DIR [DIR ...]) [-- TEST_ARGS ...]

BUILD_JSON is what `cargo test --workspace --no-run --message-format=json`
printed (tests/run-all.sh keeps it). For each package directory DIR
(`engine`, `shards`, ...; --all: every package BUILD_JSON lists, by
directory name), every test executable of that package runs in
turn: its library's and binaries' unit tests and its tests/*.rs, i.e. what
`cargo test -p PACKAGE --tests` runs, in the package's directory and with
CARGO_MANIFEST_DIR set, as cargo runs them. TEST_ARGS go to each binary
(a name filter, `--nocapture`).

Why not `cargo test -p PACKAGE --tests`: cargo resolves features for the
packages named on its command line, so one package alone gets other
feature sets than the whole workspace and cargo rebuilds it and some of its
dependencies (minutes on a 2-core machine), and the binaries run would not
be the ones the first pass tested.

Every binary runs even after a failure; exit status 1 if any failed (they
are listed at the end), 2 if BUILD_JSON lists no test binary for a DIR.
"""

import json
import os
import subprocess
import sys
import time


def executables(build_json, root):
    """(package dir, source path, executable) of every test binary, in
    cargo's build order, without repeats."""
    seen, out = set(), []
    with open(build_json, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line.startswith("{"):
                continue
            msg = json.loads(line)
            if msg.get("reason") != "compiler-artifact":
                continue
            exe = msg.get("executable")
            if not exe or not msg.get("profile", {}).get("test"):
                continue
            if exe in seen:
                continue
            seen.add(exe)
            pkg_dir = os.path.dirname(msg["manifest_path"])
            src = os.path.relpath(msg["target"]["src_path"], pkg_dir)
            out.append((os.path.relpath(pkg_dir, root), pkg_dir, src, exe))
    # Cargo's order: unit tests (src/), then tests/*.rs by name.
    out.sort(key=lambda b: (b[0], not b[2].startswith("src/"), b[2]))
    return out


def main(argv):
    if "--" in argv:
        split = argv.index("--")
        argv, test_args = argv[:split], argv[split + 1:]
    else:
        test_args = []
    if len(argv) < 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    build_json, dirs = argv[0], [d.rstrip("/") for d in argv[1:]]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    bins = executables(build_json, root)
    if dirs == ["--all"]:
        dirs = sorted({b[0] for b in bins})
    failed = []
    for d in dirs:
        mine = [b for b in bins if b[0] == d]
        if not mine:
            print(f"run-built: {build_json} lists no test binary of {d}/", file=sys.stderr)
            return 2
        for _, pkg_dir, src, exe in mine:
            print(f"     Running {src} ({exe})", flush=True)
            env = dict(os.environ, CARGO_MANIFEST_DIR=pkg_dir)
            t0 = time.monotonic()
            rc = subprocess.call([exe, *test_args], cwd=pkg_dir, env=env)
            if rc != 0:
                failed.append(f"{d}/{src} (exit {rc}, {time.monotonic() - t0:.0f} s)")
    if failed:
        print("run-built: failed: " + ", ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
