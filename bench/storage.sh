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
# PROFILE (release). Needs release builds (cargo build --release -p ringmq
# -p loadgen), mosquitto and mosquitto_sub (../shared/peers/install-peers.sh),
# python3.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
REPEATS="${REPEATS:-3}" DURATION="${DURATION:-10}" PUBS="${PUBS:-4}" INFLIGHT="${INFLIGHT:-16}"
SESSIONS="${SESSIONS:-10000}" RETAINED="${RETAINED:-100000}" PORT="${PORT:-21883}"
OUT="${OUT:-/tmp/storage-bench.txt}"
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
cleanup() { stop_pid "$sub_pid"; stop_pid "$broker_pid"; rm -rf "$work"; }
trap cleanup EXIT
: > "$OUT"
say() { echo "$*" | tee -a "$OUT"; }
say "storage bench $(date -u +%FT%TZ) on $(nproc) CPUs; shared machine: other jobs run meanwhile (load $(cut -d' ' -f1-3 /proc/loadavg))"
say "data on $(df -h "$work" | awk 'NR==2 {print $1, $6}')"

# Waits until the broker answers a CONNECT; prints the milliseconds it took since $1 (ns).
wait_ready() {
  python3 - "$PORT" "$1" <<'EOF'
import socket, sys, time
port, t0 = int(sys.argv[1]), int(sys.argv[2])
connect = bytes([0x10, 12, 0, 4]) + b"MQTT" + bytes([4, 2, 0, 60, 0, 0])
deadline = time.time() + 600
while time.time() < deadline:
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=1)
        s.settimeout(5); s.sendall(connect)
        if s.recv(4)[:1] == b"\x20":
            print((time.time_ns() - t0) // 1_000_000); sys.exit(0)
    except OSError:
        pass
    time.sleep(0.01)
sys.exit("broker not ready within 600 s")
EOF
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
      "$tdir/ringmq" -c "$work/ringmq.toml" -p "$PORT" --log-level warn 2>>"$work/broker.log" &
      ;;
    mosquitto-*)
      mkdir -p "$work/data"
      { echo "listener $PORT 127.0.0.1"; echo "allow_anonymous true"; echo "persistence true"
        echo "persistence_location $work/data/"; echo "max_queued_messages 1000000"
        echo "max_inflight_messages 64"
        if [[ "$name" == mosquitto-onchanges ]]; then echo "autosave_on_changes true"; echo "autosave_interval 1"; fi
      } > "$work/mosquitto.conf"
      "$MOSQUITTO" -c "$work/mosquitto.conf" 2>>"$work/broker.log" &
      ;;
  esac
  broker_pid=$!
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

if [[ " ${benches[*]} " == *" rate "* ]]; then
  say ""
  say "rate: QoS 1, $PUBS publishers, inflight $INFLIGHT, 64-byte payloads, ${DURATION} s, one persistent QoS 1 subscriber; median of $REPEATS"
  for name in ringmq-memory ringmq-always ringmq-interval mosquitto-default mosquitto-onchanges; do
    rates=() p99s=()
    for _ in $(seq "$REPEATS"); do
      rm -rf "$work/data"
      start "$name"; wait_ready "$(date +%s%N)" >/dev/null
      mosquitto_sub -h 127.0.0.1 -p "$PORT" -c -i bench-sub -q 1 -t 'loadgen/#' >/dev/null &
      sub_pid=$!; sleep 0.5
      json="$("$tdir/loadgen" pub --port "$PORT" --qos 1 --rate 0 --pubs "$PUBS" --inflight "$INFLIGHT" \
        --warmup 2 --duration "$DURATION" --drain 2 --json -q --label "$name" 2>/dev/null)"
      rates+=("$(jq -r '.acked / .measured_s' <<<"$json" 2>/dev/null || python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(d["acked"]/d["measured_s"])' "$json")")
      p99s+=("$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["latency_us_p99"])' "$json")")
      stop_pid "$sub_pid"; sub_pid=""; stop_pid "$broker_pid"; broker_pid=""
    done
    rate="$(printf '%s\n' "${rates[@]}" | median)" p99="$(printf '%s\n' "${p99s[@]}" | median)"
    say "$(printf '%-20s %10.0f acked msgs/s   PUBACK p99 %8.0f us   (runs: %s)' "$name" "$rate" "$p99" "${rates[*]}")"
  done
fi

if [[ " ${benches[*]} " == *" recovery "* ]]; then
  say ""
  say "recovery: $SESSIONS persistent sessions, $RETAINED retained messages; SIGTERM, restart, time until a CONNECT is answered; median of $REPEATS"
  for name in ringmq-always mosquitto-default; do
    rm -rf "$work/data"
    start "$name"; wait_ready "$(date +%s%N)" >/dev/null
    python3 - "$PORT" "$SESSIONS" "$RETAINED" <<'EOF'
import socket, struct, sys
port, sessions, retained = map(int, sys.argv[1:])
def s(b): return struct.pack(">H", len(b)) + b
def pkt(first, body):
    n, out = len(body), bytearray([first])
    while True:
        b, n = n % 128, n // 128
        out.append(b | (0x80 if n else 0))
        if not n: break
    return bytes(out) + body
def read(sock):
    hdr = sock.recv(1); n, mul = 0, 1
    while True:
        b = sock.recv(1)[0]; n += (b & 127) * mul; mul *= 128
        if not b & 128: break
    body = b""
    while len(body) < n: body += sock.recv(n - len(body))
    return hdr[0], body
for i in range(sessions):
    c = socket.create_connection(("127.0.0.1", port))
    c.sendall(pkt(0x10, s(b"MQTT") + bytes([4, 0, 0, 60]) + s(b"rs-%d" % i)))
    read(c)
    c.sendall(pkt(0x82, struct.pack(">H", 1) + s(b"sess/%d" % i) + bytes([1])))
    read(c)
    c.sendall(bytes([0xe0, 0])); c.close()
c = socket.create_connection(("127.0.0.1", port))
c.sendall(pkt(0x10, s(b"MQTT") + bytes([4, 2, 0, 60]) + s(b"retained-writer")))
read(c)
window, sent, acked, buf = 200, 0, 0, b""
while acked < retained:
    while sent < retained and sent - acked < window:
        pid = sent % 60000 + 1
        buf += pkt(0x33, s(b"ret/%d" % sent) + struct.pack(">H", pid) + b"x" * 32)
        sent += 1
    c.sendall(buf); buf = b""
    first, _ = read(c)
    if first >> 4 == 4: acked += 1
c.sendall(bytes([0xe0, 0])); c.close()
EOF
    stop_pid "$broker_pid"; broker_pid=""
    size="$(du -sh "$work/data" | cut -f1)"
    times=()
    for _ in $(seq "$REPEATS"); do
      t0="$(date +%s%N)"; start "$name"
      times+=("$(wait_ready "$t0")")
      stop_pid "$broker_pid"; broker_pid=""
    done
    say "$(printf '%-20s start to first CONNACK %8s ms  (runs: %s)  data %s' "$name" "$(printf '%s\n' "${times[@]}" | median)" "${times[*]}" "$size")"
  done
fi
say ""
say "broker log lines (warnings/errors): $(grep -ciE 'warn|error' "$work/broker.log" || true)"
