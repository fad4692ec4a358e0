#!/usr/bin/env bash
# Flood: QoS 0 deliveries per second with no rate limit, broker on one core.
#
#   bench/flood.sh [BROKER...]        BROKER: ringmq | mosquitto (default both)
#
# PUBS unpaced publishers (`loadgen pubsub --rate 0`: each sends as fast as
# its connection takes bytes) -> SUBS subscribers, every subscriber on every
# publisher's topic (fan-out: PUBS x SUBS deliveries per round of publishes),
# QoS 0, 64-byte payloads. Broker pinned to BROKER_CORE with one shard,
# loadgen (one thread) on LOADGEN_CORE. A figure counts only with zero loss
# (loadgen checks every subscriber's sequence per publisher): a run with loss
# is reported as such and left out of the median. Also the broker's CPU per
# delivery and its core's utilisation over the measured window (below ~90 %
# the broker was not the limit: loadgen was; loadgen's self-check says so
# too). Rounds alternate between the brokers; medians of REPEATS.
#
# Env: PUBS (4), SUBS (4), SIZE (64), WINDOW_S (measured seconds, 5), REPEATS (3),
# PORT (18960), BROKER_CORE (1), LOADGEN_CORE (0), RT (unset; e.g. 10 as root:
# SCHED_FIFO for the broker's event loop and loadgen), RINGMQ_FLAGS (e.g.
# "--io epoll"), OUT (/tmp/flood-bench.txt), PROFILE (release; debug to check the script).
# Needs: release builds (cargo build --release -p ringmq -p loadgen), mosquitto
# (../shared/peers/install-peers.sh or Debian's package), python3.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
PUBS="${PUBS:-4}" SUBS="${SUBS:-4}" SIZE="${SIZE:-64}" WINDOW_S="${WINDOW_S:-5}" REPEATS="${REPEATS:-3}"
PORT="${PORT:-18960}" BROKER_CORE="${BROKER_CORE:-1}" LOADGEN_CORE="${LOADGEN_CORE:-0}" RT="${RT:-}"
OUT="${OUT:-/tmp/flood-bench.txt}"
tdir="${CARGO_TARGET_DIR:-target}/${PROFILE:-release}"
brokers=("$@"); [[ ${#brokers[@]} -gt 0 ]] || brokers=(ringmq mosquitto)
work="$(mktemp -d /tmp/flood-bench.XXXXXX)"
# shellcheck source=bench/one-core.sh
source "$root/bench/one-core.sh"
trap one_core_cleanup EXIT
one_core_setup
say "flood: $PUBS unpaced publishers -> $SUBS subscribers (fan-out), QoS 0, $SIZE B payloads, ${WINDOW_S} s measured after 2 s warm-up"

declare -A rates cpus
for r in $(seq "$REPEATS"); do
  for b in "${brokers[@]}"; do
    start_broker "$b"
    out="$work/flood.json"
    "${LG[@]}" pubsub --port "$PORT" --topology fanout --pubs "$PUBS" --subs "$SUBS" --qos 0 --size "$SIZE" \
      --rate 0 --warmup 2 --duration "$WINDOW_S" --drain 3 --json -q --client-prefix "flood-$$-$r" >"$out" 2>/dev/null &
    lg=$!
    # The window starts with loadgen's (connections, then 2 s warm-up).
    sleep 2.5
    t0=$(cpu_ticks "$broker_pid"); s0=$(date +%s.%N)
    sleep "$WINDOW_S"
    t1=$(cpu_ticks "$broker_pid"); s1=$(date +%s.%N)
    wait "$lg" || true
    stop_broker
    read -r rate lost sent us util bottleneck < <(python3 - "$out" "$t0" "$t1" "$s0" "$s1" "$hz" <<'PY'
import json, sys
j = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
t0, t1, s0, s1, hz = map(float, sys.argv[2:7])
rate = j.get("msgs_per_s_received") or 0
cpu_s = (t1 - t0) / hz
delivered = rate * (s1 - s0)
us = cpu_s * 1e6 / delivered if delivered else float("nan")
bottleneck = "yes" if (j.get("self_check") or {}).get("bottleneck") else "no"
print(f"{rate:.0f} {j.get('lost') or 0} {j.get('msgs_per_s_sent') or 0:.0f} {us:.3f} {cpu_s / (s1 - s0) * 100:.0f} {bottleneck}")
PY
)
    if [[ "$lost" == 0 ]]; then
      rates[$b]+="$rate "; cpus[$b]+="$us "
      say "$b flood run $r: $rate deliveries/s ($sent publishes/s), zero loss, broker ${us} µs CPU/delivery, broker core ${util}%, loadgen the bottleneck (its self-check): $bottleneck"
    else
      say "$b flood run $r: $rate deliveries/s ($sent publishes/s) with $lost LOST: not counted; broker core ${util}%, loadgen the bottleneck (its self-check): $bottleneck"
    fi
  done
done
for b in "${brokers[@]}"; do
  if [[ -n "${rates[$b]:-}" ]]; then
    # shellcheck disable=SC2086
    say "$b flood median: $(median ${rates[$b]}) deliveries/s with zero loss, $(median ${cpus[$b]}) µs broker CPU/delivery ($(wc -w <<<"${rates[$b]}") of $REPEATS runs without loss)"
  else
    say "$b flood median: no run without loss"
  fi
done
