#!/usr/bin/env bash
# Connection churn: CONNECT, SUBSCRIBE, DISCONNECT cycles per second, broker
# on one core.
#
#   bench/churn.sh [BROKER...]        BROKER: ringmq | mosquitto (default both)
#
# `loadgen conn --churn --rate 0`: COUNT connections, at most CONCURRENCY
# cycles in progress, each one TCP connect, CONNECT (clean session, MQTT
# 3.1.1), CONNACK, SUBSCRIBE to a topic of its own (QoS 0), SUBACK,
# DISCONNECT, close; the rate is whole cycles per second over the run. The
# client closes first, so TIME_WAIT stays on loadgen's side, which moves to
# 127.0.0.2, ... past one source address's ephemeral ports. Broker pinned to
# BROKER_CORE with one shard, loadgen (one thread) on LOADGEN_CORE; also the
# broker's CPU per cycle and its core's utilisation over the run (below
# ~90 % the broker was not the limit: loadgen was). A run with failed
# cycles is reported and left out of the median. Rounds alternate between
# the brokers; medians of REPEATS.
#
# Env: COUNT (20000), CONCURRENCY (64), REPEATS (3), PORT (18970), BROKER_CORE (1),
# LOADGEN_CORE (0), RT (unset; e.g. 10 as root: SCHED_FIFO for the broker's
# event loop and loadgen), RINGMQ_FLAGS (e.g. "--io epoll"), OUT (/tmp/churn-bench.txt),
# PROFILE (release; debug to check the script).
# Needs: release builds (cargo build --release -p ringmq -p loadgen), mosquitto
# (../shared/peers/install-peers.sh or Debian's package), python3.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
COUNT="${COUNT:-20000}" CONCURRENCY="${CONCURRENCY:-64}" REPEATS="${REPEATS:-3}"
PORT="${PORT:-18970}" BROKER_CORE="${BROKER_CORE:-1}" LOADGEN_CORE="${LOADGEN_CORE:-0}" RT="${RT:-}"
OUT="${OUT:-/tmp/churn-bench.txt}"
tdir="${CARGO_TARGET_DIR:-target}/${PROFILE:-release}"
brokers=("$@"); [[ ${#brokers[@]} -gt 0 ]] || brokers=(ringmq mosquitto)
work="$(mktemp -d /tmp/churn-bench.XXXXXX)"
# shellcheck source=bench/one-core.sh
source "$root/bench/one-core.sh"
trap one_core_cleanup EXIT
one_core_setup
say "churn: $COUNT cycles (CONNECT, SUBSCRIBE, DISCONNECT), $CONCURRENCY in progress at once, no rate limit"

declare -A rates cpus
for r in $(seq "$REPEATS"); do
  for b in "${brokers[@]}"; do
    start_broker "$b"
    out="$work/churn.json"
    t0=$(cpu_ticks "$broker_pid"); s0=$(date +%s.%N)
    "${LG[@]}" conn --churn --port "$PORT" --count "$COUNT" --rate 0 --concurrency "$CONCURRENCY" \
      --json -q --client-prefix "churn-$$-$r" >"$out" 2>/dev/null || true
    t1=$(cpu_ticks "$broker_pid"); s1=$(date +%s.%N)
    stop_broker
    read -r cps done failed p50 p99 us util < <(python3 - "$out" "$t0" "$t1" "$s0" "$s1" "$hz" <<'PY'
import json, sys
j = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
t0, t1, s0, s1, hz = map(float, sys.argv[2:7])
done = j.get("conns_opened") or 0
cpu_s = (t1 - t0) / hz
us = cpu_s * 1e6 / done if done else float("nan")
print(f"{j.get('conns_per_s') or 0:.0f} {done} {j.get('conns_failed') or 0} {j.get('latency_us_p50')} {j.get('latency_us_p99')} {us:.1f} {cpu_s / (s1 - s0) * 100:.0f}")
PY
)
    line="$b churn run $r: $cps cycles/s ($done done, $failed failed), cycle p50 $p50 µs p99 $p99 µs, broker ${us} µs CPU/cycle, broker core ${util}% over the run"
    if [[ "$failed" == 0 && "$done" == "$COUNT" ]]; then
      rates[$b]+="$cps "; cpus[$b]+="$us "
      say "$line"
    else
      say "$line: not counted"
    fi
  done
done
for b in "${brokers[@]}"; do
  if [[ -n "${rates[$b]:-}" ]]; then
    # shellcheck disable=SC2086
    say "$b churn median: $(median ${rates[$b]}) cycles/s, $(median ${cpus[$b]}) µs broker CPU/cycle ($(wc -w <<<"${rates[$b]}") of $REPEATS runs without failures)"
  else
    say "$b churn median: no run without failures"
  fi
done
