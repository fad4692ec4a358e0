#!/usr/bin/env bash
# Flood: QoS 0 deliveries per second with no rate limit, broker on one core.
#
#   bench/flood.sh [BROKER...]        BROKER: ringmq | mosquitto (default both)
#
# PUBS publishers -> SUBS subscribers, every subscriber on every publisher's
# topic (fan-out: PUBS x SUBS deliveries per round of publishes), QoS 0,
# 64-byte payloads, broker pinned to BROKER_CORE with one shard, loadgen (one
# thread) on LOADGEN_CORE. Per broker and round:
#   1. unpaced: `loadgen pubsub --rate 0` (each publisher sends as fast as
#      its connection takes bytes): the deliveries/s and the loss when
#      publishers outrun the subscribers (QoS 0 may then be dropped; both
#      brokers drop rather than stop reading publishers);
#   2. zero loss: the highest paced rate at which every subscriber got
#      every message (loadgen checks each subscriber's sequence per
#      publisher), found by bisection between 0 and 1.25x the unpaced
#      run's deliveries (STEPS runs of WINDOW_S seconds). That is the flood
#      figure: deliveries/s with zero loss to subscribers that keep up.
# Also the broker's CPU per delivery and its core's utilisation in the
# best zero-loss run (below ~90 % the broker was not the limit: loadgen
# was; loadgen's self-check says so too). Rounds alternate between the
# brokers; medians of REPEATS.
#
# Env: PUBS (4), SUBS (4), SIZE (64), WINDOW_S (measured seconds per run, 3), STEPS (5), REPEATS (3),
# PORT (18960), BROKER_CORE (1), LOADGEN_CORE (0), RT (unset; e.g. 10 as root:
# SCHED_FIFO for the broker's event loop and loadgen), RINGMQ_FLAGS (e.g.
# "--io epoll"), OUT (/tmp/flood-bench.txt), PROFILE (release; debug to check the script).
# Needs: release builds (cargo build --release -p ringmq -p loadgen), mosquitto
# (../shared/peers/install-peers.sh or Debian's package), python3.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
PUBS="${PUBS:-4}" SUBS="${SUBS:-4}" SIZE="${SIZE:-64}" WINDOW_S="${WINDOW_S:-3}" STEPS="${STEPS:-5}" REPEATS="${REPEATS:-3}"
PORT="${PORT:-18960}" BROKER_CORE="${BROKER_CORE:-1}" LOADGEN_CORE="${LOADGEN_CORE:-0}" RT="${RT:-}"
OUT="${OUT:-/tmp/flood-bench.txt}"
tdir="${CARGO_TARGET_DIR:-target}/${PROFILE:-release}"
brokers=("$@"); [[ ${#brokers[@]} -gt 0 ]] || brokers=(ringmq mosquitto)
work="$(mktemp -d /tmp/flood-bench.XXXXXX)"
# shellcheck source=bench/one-core.sh
source "$root/bench/one-core.sh"
trap one_core_cleanup EXIT
one_core_setup
say "flood: $PUBS publishers -> $SUBS subscribers (fan-out), QoS 0, $SIZE B payloads; unpaced, then the highest zero-loss rate by bisection ($STEPS runs); ${WINDOW_S} s measured after 1 s warm-up"

# run_once BROKER RATE: one run at RATE msg/s per publisher (0 = unpaced);
# sets: rate (deliveries/s), lost, sent (publishes/s), us (broker CPU per
# delivery), util (broker core %), limited (loadgen's self-check).
run_once() {
  start_broker "$1"
  local out="$work/flood.json"
  "${LG[@]}" pubsub --port "$PORT" --topology fanout --pubs "$PUBS" --subs "$SUBS" --qos 0 --size "$SIZE" \
    --rate "$2" --warmup 1 --duration "$WINDOW_S" --drain 2 --json -q --client-prefix "flood-$$" >"$out" 2>/dev/null &
  local lg=$!
  # The window starts with loadgen's (connections, then 1 s warm-up).
  sleep 1.4
  local t0 s0 t1 s1
  t0=$(cpu_ticks "$broker_pid"); s0=$(date +%s.%N)
  sleep "$WINDOW_S"
  t1=$(cpu_ticks "$broker_pid"); s1=$(date +%s.%N)
  wait "$lg" || true
  stop_broker
  read -r rate lost sent us util limited < <(python3 - "$out" "$t0" "$t1" "$s0" "$s1" "$hz" <<'PY'
import json, sys
try:
    j = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
except (IndexError, ValueError):
    j = {"lost": -1}
t0, t1, s0, s1, hz = map(float, sys.argv[2:7])
rate = j.get("msgs_per_s_received") or 0
cpu_s = (t1 - t0) / hz
delivered = rate * (s1 - s0)
us = cpu_s * 1e6 / delivered if delivered else float("nan")
limited = "yes" if (j.get("self_check") or {}).get("bottleneck") else "no"
lost = j.get("lost")
print(f"{rate:.0f} {-1 if lost is None else lost} {j.get('msgs_per_s_sent') or 0:.0f} {us:.3f} {cpu_s / (s1 - s0) * 100:.0f} {limited}")
PY
)
}

declare -A rates cpus
for r in $(seq "$REPEATS"); do
  for b in "${brokers[@]}"; do
    run_once "$b" 0
    say "$b round $r unpaced: $rate deliveries/s ($sent publishes/s), lost $lost, broker core ${util}%, loadgen the bottleneck: $limited"
    # Bisection on the rate per publisher: lo had zero loss, hi had loss.
    # No zero-loss rate beats what the unpaced run delivered by much.
    lo=0 hi=$(( rate * 5 / (4 * PUBS * SUBS) + 1 )) best="" best_us="" best_line=""
    for _ in $(seq "$STEPS"); do
      try=$(( (lo + hi) / 2 ))
      [[ $try -gt 0 ]] || break
      run_once "$b" "$try"
      if [[ "$lost" == 0 ]]; then
        lo=$try best=$rate best_us=$us
        best_line="$try msg/s per publisher: $rate deliveries/s, zero loss, broker ${us} µs CPU/delivery, broker core ${util}%, loadgen the bottleneck: $limited"
      else
        hi=$try
      fi
    done
    if [[ -n "$best" ]]; then
      rates[$b]+="$best "; cpus[$b]+="$best_us "
      say "$b round $r zero loss: $best_line (no zero-loss run above $hi msg/s per publisher)"
    else
      say "$b round $r zero loss: none found below $hi msg/s per publisher"
    fi
  done
done
for b in "${brokers[@]}"; do
  if [[ -n "${rates[$b]:-}" ]]; then
    # shellcheck disable=SC2086
    say "$b flood median: $(median ${rates[$b]}) deliveries/s with zero loss, $(median ${cpus[$b]}) µs broker CPU/delivery ($(wc -w <<<"${rates[$b]}") of $REPEATS rounds)"
  else
    say "$b flood median: no zero-loss run"
  fi
done
