#!/usr/bin/env bash
# WebSocket against TCP (issue 12) and outbound topic aliases (issue 9,
# item 14), measured with loadgen, every configuration in the same run.
#
#   bench/ws-alias.sh ws      broker CPU per delivery and memory per idle connection,
#                             tcp and ws, ringmq and Mosquitto (its websockets listener)
#   bench/ws-alias.sh alias   ringmq, MQTT 5 subscribers, 60-byte topic: MQTT bytes per
#                             delivery and broker CPU per delivery, --topic-alias-max 0 / 32
#
# CPU per delivery: 1 publisher at RATE msg/s fanned out to SUBS subscribers
# (QoS 0, 64 B), broker pinned to BROKER_CORE, loadgen (one thread) to
# LOADGEN_CORE; broker utime+stime from /proc/PID/stat sampled after the
# warm-up and WINDOW_S later, divided by the deliveries loadgen counted over
# the same window. Memory: RSS with N idle connections held minus RSS
# before, divided by N. One line per run, then the median of REPEATS.
# Env: RATE (1000), SUBS (50), WINDOW_S (5), REPEATS (3), N (2000),
#      PORT (26100; ws on PORT+1), BROKER_CORE (1), LOADGEN_CORE (0).
# Needs target/release/{ringmq,loadgen} (cargo build --release -p ringmq -p loadgen)
# and Debian's mosquitto for the ws mode.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
mode="${1:-ws}"
RATE="${RATE:-1000}" SUBS="${SUBS:-50}" WINDOW_S="${WINDOW_S:-5}" REPEATS="${REPEATS:-3}"
N="${N:-2000}" PORT="${PORT:-26100}" BROKER_CORE="${BROKER_CORE:-1}" LOADGEN_CORE="${LOADGEN_CORE:-0}"
WS_PORT=$((PORT + 1))
tdir="${CARGO_TARGET_DIR:-target}/release"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
hz=$(getconf CLK_TCK)
ulimit -n "$(ulimit -Hn)"

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

# start_broker ringmq|mosquitto: a tcp listener on PORT, a ws one on WS_PORT.
start_broker() {
  case "$1" in
    ringmq)
      printf '[[listener]]\nbind = "127.0.0.1:%s"\n\n[[listener]]\nbind = "127.0.0.1:%s"\nprotocol = "ws"\npath = "/mqtt"\n' \
        "$PORT" "$WS_PORT" >"$work/ringmq.toml"
      taskset -c "$BROKER_CORE" "$tdir/ringmq" serve --config "$work/ringmq.toml" --shards 1 \
        --log-level warn >"$work/ringmq.log" 2>&1 &
      ;;
    mosquitto)
      # Nagle off, as ringmq; the plain listener is also what lets 2.0.11
      # start with a websockets listener at all.
      printf 'listener %s 127.0.0.1\nlistener %s 127.0.0.1\nprotocol websockets\nallow_anonymous true\nset_tcp_nodelay true\npersistence false\n' \
        "$PORT" "$WS_PORT" >"$work/mosquitto.conf"
      taskset -c "$BROKER_CORE" mosquitto -c "$work/mosquitto.conf" >"$work/mosquitto.log" 2>&1 &
      ;;
  esac
  pid=$!
  sleep 1
}

stop_broker() { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; sleep 0.5; }

# cpu_run BROKER TRANSPORT [loadgen options...]: prints "us_per_delivery rate bytes_per_msg lost"
cpu_run() {
  local broker=$1 transport=$2; shift 2
  local port=$PORT; [[ $transport == ws ]] && port=$WS_PORT
  start_broker "$broker"
  taskset -c "$LOADGEN_CORE" "$tdir/loadgen" pubsub --port "$port" --transport "$transport" \
    --pubs 1 --subs "$SUBS" --qos 0 --size 64 --rate "$RATE" --threads 1 --warmup 3 \
    --duration "$WINDOW_S" --drain 1 --json -q "$@" >"$work/run.json" 2>/dev/null &
  local lg=$!
  sleep 3.5
  local t0 s0 t1 s1
  t0=$(cpu_ticks "$pid"); s0=$(date +%s.%N)
  sleep "$WINDOW_S"
  t1=$(cpu_ticks "$pid"); s1=$(date +%s.%N)
  wait "$lg" || true
  stop_broker
  python3 - "$work/run.json" "$t0" "$t1" "$s0" "$s1" "$hz" <<'PY'
import json, sys
j = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
t0, t1, s0, s1, hz = map(float, sys.argv[2:7])
rate = j.get("msgs_per_s_received") or 0
delivered = rate * (s1 - s0)
us = (t1 - t0) / hz * 1e6 / delivered if delivered else float("nan")
per_msg = j["mqtt_bytes_received_total"] / max(j["msgs_received_total"], 1)
print(f"{us:.3f} {rate:.0f} {per_msg:.1f} {j.get('lost', 0)}")
PY
}

# mem_run BROKER TRANSPORT: prints bytes per idle connection
mem_run() {
  local broker=$1 transport=$2
  local port=$PORT; [[ $transport == ws ]] && port=$WS_PORT
  start_broker "$broker"
  local before held
  before=$(rss_kib "$pid")
  "$tdir/loadgen" conn --port "$port" --transport "$transport" --count "$N" --rate 2000 \
    --duration 4 --keep-alive 60 --threads 1 -q >"$work/conn.txt" 2>&1 &
  local lg=$!
  sleep $(( N / 2000 + 3 ))
  held=$(rss_kib "$pid")
  wait "$lg" || true
  stop_broker
  grep -q "opened $N " "$work/conn.txt" || { echo "not all $N opened:" >&2; cat "$work/conn.txt" >&2; }
  echo $(( (held - before) * 1024 / N ))
}

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

case "$mode" in
  ws)
    for b in ringmq mosquitto; do
      for tr in tcp ws; do
        cpus=()
        for r in $(seq "$REPEATS"); do
          read -r us rate per_msg lost <<<"$(cpu_run "$b" "$tr")"
          echo "$b $tr run $r: $us µs CPU/delivery, $rate deliveries/s, lost $lost"
          cpus+=("$us")
        done
        mems=()
        for r in $(seq "$REPEATS"); do
          m=$(mem_run "$b" "$tr"); echo "$b $tr run $r: $m bytes per idle connection"; mems+=("$m")
        done
        echo "$b $tr median: $(printf '%s\n' "${cpus[@]}" | median) µs CPU per delivery, $(printf '%s\n' "${mems[@]}" | median) bytes per idle connection"
      done
    done
    ;;
  alias)
    topic="plant-7/line-3/$(printf 'x%.0s' $(seq 33))/temperature"   # 60 bytes
    for max in 0 32; do
      cpus=()
      for r in $(seq "$REPEATS"); do
        read -r us rate per_msg lost <<<"$(cpu_run ringmq tcp --protocol-version 5 --topic "$topic" --topic-alias-max "$max")"
        echo "topic-alias-max $max run $r: $us µs CPU/delivery, $per_msg MQTT B per delivery, $rate deliveries/s, lost $lost"
        cpus+=("$us")
      done
      echo "topic-alias-max $max median: $(printf '%s\n' "${cpus[@]}" | median) µs CPU per delivery"
    done
    ;;
  *) echo "usage: $0 ws|alias" >&2; exit 2 ;;
esac
