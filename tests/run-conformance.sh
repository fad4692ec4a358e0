#!/usr/bin/env bash
# Runs the shared black-box MQTT conformance checks (../shared/conformance.py,
# relative to the repository root) against a freshly started ringmq.
#
#   tests/run-conformance.sh [BINARY] [-- extra conformance.py args]
#
# BINARY defaults to $RINGMQ_BIN, else $CARGO_TARGET_DIR (default target)
# /release/ringmq if it exists, else .../debug/ringmq (build it first:
# cargo build -p ringmq).
# The broker runs with --shards 2 on a free port it picks itself
# (--listen 127.0.0.1:0); the port is read from its "listening" log line.
# Extra broker flags: RINGMQ_FLAGS="--io epoll". Bounded: the broker must
# listen within 20 s, the checks get CONFORMANCE_TIMEOUT_S (default 600) s,
# and the broker is stopped (SIGTERM, then SIGKILL after 10 s) on every exit
# path. Exit status: that of conformance.py (0 only if no check failed).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

bin="${RINGMQ_BIN:-}"
if [[ $# -gt 0 && "$1" != "--" ]]; then bin="$1"; shift; fi
if [[ $# -gt 0 && "$1" == "--" ]]; then shift; fi
if [[ -z "$bin" ]]; then
  tdir="${CARGO_TARGET_DIR:-target}"
  if [[ -x "$tdir/release/ringmq" ]]; then bin="$tdir/release/ringmq"; else bin="$tdir/debug/ringmq"; fi
fi
if [[ ! -x "$bin" ]]; then
  echo "run-conformance: no broker binary at $bin (cargo build -p ringmq first)" >&2
  exit 2
fi
script="$root/../shared/conformance.py"
if [[ ! -f "$script" ]]; then
  echo "run-conformance: $script not found (expected shared/ beside the repository)" >&2
  exit 2
fi

log="$(mktemp -t ringmq-conformance.XXXXXX.log)"
# shellcheck disable=SC2086
"$bin" serve --listen 127.0.0.1:0 --shards 2 ${RINGMQ_FLAGS:-} 2>"$log" &
pid=$!

stop() {
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}
trap stop EXIT

port=""
for _ in $(seq 1 200); do
  port="$(sed -n 's/.*listening addresses=[^ ,]*:\([0-9][0-9]*\).*/\1/p' "$log" | head -n 1)"
  [[ -n "$port" ]] && break
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "run-conformance: broker exited during start-up; its log:" >&2
    cat "$log" >&2
    exit 1
  fi
  sleep 0.1
done
if [[ -z "$port" ]]; then
  echo "run-conformance: broker did not listen within 20 s; its log:" >&2
  cat "$log" >&2
  exit 1
fi
echo "run-conformance: $bin listening on 127.0.0.1:$port (log: $log)"

status=0
timeout "${CONFORMANCE_TIMEOUT_S:-600}" python3 "$script" --host 127.0.0.1 --port "$port" "$@" || status=$?
stop
trap - EXIT
if ! grep -q "stopped" "$log"; then
  echo "run-conformance: broker did not report a clean stop; log tail:" >&2
  tail -n 20 "$log" >&2
fi
exit "$status"
