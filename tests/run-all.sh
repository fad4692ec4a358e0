#!/usr/bin/env bash
# The whole test suite (the README's test command): unit, property, scenario
# and black-box tests of every crate, then the black-box MQTT conformance
# runner (../shared/conformance.py) against the real ringmq binary, and the
# wasm package's tests in headless Chromium (wasm/tests/run.sh).
#
# Laid out for a 2-core CI machine (docs/operations.md, "Time"):
# - every test binary is built once, with the workspace's feature set, and
#   every pass runs those binaries (tests/run-built.py): the default one,
#   and those in another setting (the engine's in-tab profile, the
#   black-box suite on epoll), where `cargo test -p ...` would resolve
#   features for one package and rebuild it and part of its dependencies;
# - the builds the last steps need (the otel and trace-hook features, the
#   wasm package) run ahead in the background at the lowest CPU priority
#   (nice 19), on the cores the test passes leave idle while they wait on
#   sockets; they only prepare: the last steps run the same cargo commands
#   as before, which then find their work done (or do it and report its
#   errors). Cargo holds its build lock only while it builds, so the
#   background build never waits for a test pass, and no pass calls cargo
#   meanwhile;
# - the three conformance runs run at once (each is mostly waiting).
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
work="$(mktemp -d -t ringmq-run-all.XXXXXX)"
prep=""
finish() {
  # The background builds are only preparation: stop them on any exit.
  if [[ -n "$prep" ]] && kill -0 "$prep" 2>/dev/null; then
    kill -TERM -- "-$prep" 2>/dev/null || true
    wait "$prep" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap finish EXIT
step() { printf '\n== run-all: %s (%s)\n' "$*" "$(date -u +%H:%M:%S)"; }

step "build every test binary (the workspace's features)"
cargo test --workspace --no-run --message-format=json-render-diagnostics >"$work/build.json"

# The broker binary the black-box tests run, kept aside (RINGMQ_BIN): the
# otel build below replaces target/debug/ringmq.
bin="$work/ringmq"
cp "$target/debug/ringmq" "$bin"

step "background, nice 19: the otel and trace-hook test builds, the wasm package's cargo builds"
# setsid: its own process group, so that finish() stops all of it.
setsid nice -n 19 bash -c '
  cargo test -p ringmq-engine --features trace-hook --lib --no-run
  cargo test -p ringmq --features otel --bins --test otel --no-run
  if rustup target list --installed 2>/dev/null | grep -q wasm32-unknown-unknown; then
    bash wasm/build.sh --cargo-only
  fi
' >"$work/prep.log" 2>&1 &
prep=$!

# What `cargo test --workspace` runs (its doc tests at the end), on the
# default backend (io = "auto": the native io_uring shard loop where the
# kernel accepts its setup; the black-box harness fails a test whose broker
# fell back to monoio without logging the kernel's refusal).
step "workspace tests"
RINGMQ_BIN="$bin" python3 tests/run-built.py "$work/build.json" --all

# The engine's scenario tests again (virtual time, engine/tests/sim) with the
# in-tab broker's configuration (`BrokerConfig::in_tab`, the wasm package's
# limits): the in-tab broker is the same engine with one shard and smaller
# bounds, and must pass the same scenarios.
step "engine tests, RINGMQ_SIM_PROFILE=in-tab"
RINGMQ_SIM_PROFILE=in-tab python3 tests/run-built.py "$work/build.json" engine

# The black-box tests again on the portable monoio fallback, epoll driver
# (kernels or sandboxes without io_uring, and the code path non-Linux
# systems use).
step "black-box tests, RINGMQ_TEST_IO=epoll"
RINGMQ_TEST_IO=epoll RINGMQ_BIN="$bin" python3 tests/run-built.py "$work/build.json" shards

# The conformance runner on the default backend and on both monoio
# fallbacks (io_uring, where the kernel refuses the native loop's features,
# and epoll), all three at once: each broker has its own port, each run
# mostly waits (its checks sleep and time out on purpose); their outputs
# are printed whole, one after the other.
step "conformance: default, --io uring, --io epoll (at once)"
backends=(default uring epoll)
conformance_pids=()
for io in "${backends[@]}"; do
  flags=""
  [[ "$io" == default ]] || flags="--io $io"
  RINGMQ_FLAGS="$flags" RINGMQ_BIN="$bin" bash tests/run-conformance.sh >"$work/conformance-$io.log" 2>&1 &
  conformance_pids+=($!)
done
conformance_failed=()
for i in "${!backends[@]}"; do
  io="${backends[$i]}"
  if ! wait "${conformance_pids[$i]}"; then conformance_failed+=("$io"); fi
  printf -- '-- conformance, %s:\n' "$io"
  cat "$work/conformance-$io.log"
done
if [[ ${#conformance_failed[@]} -gt 0 ]]; then
  echo "run-all: conformance failed on: ${conformance_failed[*]}" >&2
  exit 1
fi

step "waiting for the background builds"
if ! wait "$prep"; then
  echo "run-all: a background build failed (the steps below redo it and say why); its log:"
  cat "$work/prep.log"
fi
prep=""

# The browser package in headless Chromium: builds wasm/pkg, then the
# client and the in-tab broker, and the client against this ringmq over ws://.
step "wasm package in headless Chromium"
RINGMQ_BIN="$bin" bash wasm/tests/run.sh

# The OpenTelemetry build (feature `otel`, off by default): its unit tests
# (traceparent parsing, the shard tracer, the export queue) and the
# black-box test against a binary built with it and an OTLP/HTTP receiver
# inside the test (target/debug/ringmq is now that build). The engine's
# trace-hook feature's own tests run first.
step "otel and trace-hook features"
cargo test -p ringmq-engine --features trace-hook --lib
cargo test -p ringmq --features otel --bins --test otel

step "doc tests"
cargo test --workspace --doc
step "done"
