#!/usr/bin/env bash
# Durable storage, ringmq side by side with Mosquitto in the same run
# (issue 13). Loopback only; every figure is the median of REPEATS runs.
#
#   bench/storage.sh [rate] [recovery]          (default: both)
#
# rate      QoS 1 acknowledged publishes per second and PUBACK p99:
#           `loadgen pub --qos 1 --rate 0 --pubs PUBS --inflight INFLIGHT`
#           for DURATION s, while one persistent subscriber (mosquitto_sub
#           -c -q 1, clean session 0) to `loadgen/#` is connected, so every
#           publish is queued for a stored session and then acknowledged by
#           it (append + delete in the store). Configurations:
#             ringmq-memory        storage = "memory"
#             ringmq-always        storage = "disk", fsync = "always"
#             ringmq-interval      storage = "disk", fsync = "interval" (1000 ms)
#             mosquitto-default    persistence true (autosave_interval 1800 s)
#             mosquitto-onchanges  persistence true, autosave_on_changes true,
#                                  autosave_interval 1 (a save after every change)
# recovery  SESSIONS persistent sessions (one subscription each) and
#           RETAINED retained messages, created over MQTT, the broker stopped
#           with SIGTERM (both write their state) and started again: the
#           time from the start until a CONNECT is answered, and the data
#           directory's size.
# Env: REPEATS (3), DURATION (10), PUBS (4), INFLIGHT (16), SESSIONS (10000),
# RETAINED (100000), PORT (21883), OUT (/tmp/storage-bench.txt),
# PROFILE (release), NICE (0; e.g. -20 as root on a machine busy with other
# jobs: brokers, loadgen and the subscriber run at that priority).
# The sessions and retained messages of `recovery` are stored by
# bench/storage_fill.py (each acknowledged); bench/recovery.sh does the same
# at 100,000 sessions and 1,000,000 retained messages. Needs release builds (cargo build --release -p ringmq
# -p loadgen), mosquitto and mosquitto_sub (../shared/peers/install-peers.sh),
# python3.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
REPEATS="${REPEATS:-3}" DURATION="${DURATION:-10}" PUBS="${PUBS:-4}" INFLIGHT="${INFLIGHT:-16}"
SESSIONS="${SESSIONS:-10000}" RETAINED="${RETAINED:-100000}" PORT="${PORT:-21883}"
OUT="${OUT:-/tmp/storage-bench.txt}" NICE="${NICE:-0}"
tdir="${CARGO_TARGET_DIR:-target}/${PROFILE:-release}"
MOSQUITTO="${MOSQUITTO:-$(command -v mosquitto || echo /usr/sbin/mosquitto)}"
benches=("$@"); [[ ${#benches[@]} -gt 0 ]] || benches=(rate recovery)
for tool in "$tdir/ringmq" "$tdir/loadgen" "$MOSQUITTO" mosquitto_sub python3; do
  command -v "$tool" >/dev/null || { echo "storage.sh: $tool not found" >&2; exit 1; }
done

work="$(mktemp -d /tmp/storage-bench.XXXXXX)"
chmod 777 "$work"
broker_pid="" sub_pid=""
stop_pid() { if [[ -n "$1" ]]; then kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; fi; }
cleanup() {
  stop_pid "$sub_pid"; stop_pid "$broker_pid"
  cp "$work/broker.log" "$OUT.broker.log" 2>/dev/null || true; rm -rf "$work"
}
trap cleanup EXIT
: > "$OUT"
say() { echo "$*" | tee -a "$OUT"; }
say "storage bench $(date -u +%FT%TZ) on $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs)), nice $NICE; shared machine: other jobs run meanwhile (load $(cut -d' ' -f1-3 /proc/loadavg))"
say "data on $(df -h "$work" | awk 'NR==2 {print $1, $6}')"

# Starts NAME and waits until it answers a CONNECT (bench/storage_ready.py,
# started before the broker so that Python's start-up is not counted); sets
# started_ms to the milliseconds since the start.
timed_start() { # NAME
  rm -f "$work/t0" "$work/t0.up" "$work/ready"
  nice -n "$NICE" python3 bench/storage_ready.py "$PORT" 0 "$work/t0" > "$work/ready" &
  local poller=$!
  while [[ ! -e "$work/t0.up" ]]; do sleep 0.05; done
  date +%s%N > "$work/t0.tmp"; mv "$work/t0.tmp" "$work/t0"
  start "$1"
  wait "$poller"
  started_ms="$(cut -d' ' -f2 "$work/ready")"
}

start() { # start CONFIG-NAME
  local name="$1"
  case "$name" in
    ringmq-*)
      local mode="${name#ringmq-}" storage=disk fsync=always
      [[ "$mode" == memory ]] && storage=memory
      [[ "$mode" == interval ]] && fsync=interval
      printf '[storage]\nstorage = "%s"\ndata_dir = "%s/data"\nfsync = "%s"\n' \
        "$storage" "$work" "$fsync" > "$work/ringmq.toml"
      nice -n "$NICE" "$tdir/ringmq" -c "$work/ringmq.toml" -p "$PORT" --log-level warn 2>>"$work/broker.log" &
      ;;
    mosquitto-*)
      # Run as root, mosquitto drops to user mosquitto: the directory must
      # be writable to it, or it cannot save (and says so only in its log).
      mkdir -p "$work/data"; chmod 777 "$work/data"
      { echo "listener $PORT 127.0.0.1"; echo "allow_anonymous true"; echo "persistence true"
        echo "persistence_location $work/data/"; echo "max_queued_messages 1000000"
        echo "max_inflight_messages 64"
        if [[ "$name" == mosquitto-onchanges ]]; then echo "autosave_on_changes true"; echo "autosave_interval 1"; fi
      } > "$work/mosquitto.conf"
      nice -n "$NICE" "$MOSQUITTO" -c "$work/mosquitto.conf" 2>>"$work/broker.log" &
      ;;
  esac
  broker_pid=$!
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

if [[ " ${benches[*]} " == *" rate "* ]]; then
  say ""
  say "rate: QoS 1, $PUBS publishers, inflight $INFLIGHT, 64-byte payloads, ${DURATION} s, one persistent QoS 1 subscriber; median of $REPEATS"
  declare -A rate_of p99_of
  for name in ringmq-memory ringmq-always ringmq-interval mosquitto-default mosquitto-onchanges; do
    rates=() p99s=()
    for _ in $(seq "$REPEATS"); do
      rm -rf "$work/data"
      timed_start "$name"
      nice -n "$NICE" mosquitto_sub -h 127.0.0.1 -p "$PORT" -c -i bench-sub -q 1 -t 'loadgen/#' >/dev/null &
      sub_pid=$!; sleep 0.5
      json="$(nice -n "$NICE" "$tdir/loadgen" pub --port "$PORT" --qos 1 --rate 0 --pubs "$PUBS" --inflight "$INFLIGHT" \
        --warmup 2 --duration "$DURATION" --drain 2 --json -q --label "$name" 2>/dev/null)"
      rates+=("$(jq -r '.acked / .measured_s' <<<"$json" 2>/dev/null || python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(d["acked"]/d["measured_s"])' "$json")")
      p99s+=("$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["latency_us_p99"])' "$json")")
      stop_pid "$sub_pid"; sub_pid=""; stop_pid "$broker_pid"; broker_pid=""
    done
    rate="$(printf '%s\n' "${rates[@]}" | median)" p99="$(printf '%s\n' "${p99s[@]}" | median)"
    say "$(printf '%-20s %10.0f acked msgs/s   PUBACK p99 %8.0f us   (runs: %s; p99 runs: %s)' "$name" "$rate" "$p99" "${rates[*]}" "${p99s[*]}")"
    rate_of[$name]="$rate" p99_of[$name]="$p99"
  done
  for name in ringmq-memory ringmq-always ringmq-interval; do
    for peer in mosquitto-default mosquitto-onchanges; do
      say "$(python3 -c 'import sys; n,p,r,rp,q,qp=sys.argv[1:]; print(f"{n} / {p}: rate x{float(r)/float(rp):.2f}, p99 x{float(q)/float(qp):.2f}")' \
        "$name" "$peer" "${rate_of[$name]}" "${rate_of[$peer]}" "${p99_of[$name]}" "${p99_of[$peer]}")"
    done
  done
fi

if [[ " ${benches[*]} " == *" recovery "* ]]; then
  say ""
  say "recovery: $SESSIONS persistent sessions, $RETAINED retained messages; SIGTERM, restart, time until a CONNECT is answered; median of $REPEATS"
  for name in ringmq-always mosquitto-default; do
    rm -rf "$work/data"
    timed_start "$name"
    say "$name fill: $(nice -n "$NICE" python3 bench/storage_fill.py "$PORT" "$SESSIONS" "$RETAINED")"
    stop_pid "$broker_pid"; broker_pid=""
    if [[ "$name" == mosquitto-* && ! -s "$work/data/mosquitto.db" ]]; then
      echo "storage.sh: mosquitto saved nothing:" >&2; tail -3 "$work/broker.log" >&2; exit 1
    fi
    size="$(du -sh "$work/data" | cut -f1)"
    times=()
    for _ in $(seq "$REPEATS"); do
      timed_start "$name"; times+=("$started_ms")
      stop_pid "$broker_pid"; broker_pid=""
    done
    say "$(printf '%-20s start to first CONNACK %8s ms  (runs: %s)  data %s' "$name" "$(printf '%s\n' "${times[@]}" | median)" "${times[*]}" "$size")"
  done
fi
say ""
say "broker log lines (warnings/errors): $(grep -ciE 'warn|error' "$work/broker.log" || true)"
