#!/usr/bin/env bash
# Broker CPU time per delivered QoS 0 message at a fixed delivery rate, in the
# steady state (connection set-up and warm-up excluded): the headline target
# of the project (0.6 µs at 240k deliveries/s, broker on one core).
#
#   bench/cpu-per-delivery.sh [BROKER...]      BROKER: ringmq | mosquitto | rumqttd
#
# Env: RATE (publishes/s, default 2400), SUBS (default 100) -> RATE*SUBS
# deliveries/s; WINDOW_S (measured seconds, default 10); REPEATS (default 3);
# PORT (default 18900); BROKER_CORE (1) / LOADGEN_CORE (0); RINGMQ_FLAGS (e.g. "--io epoll",
# "--io native"); SYSCALLS=1 also counts the broker's system calls over the window
# (perf stat: raw_syscalls:sys_enter, syscalls:sys_enter_io_uring_enter) per delivery,
# and the io_uring requests submitted (io_uring:io_uring_submit_req: a send each on the
# native loop, so the sends per delivery a hold saves). LOADGEN_ARGS: extra loadgen
# pubsub arguments (e.g. "--burst 10 --write-each" for issue 11's scenario b's input).
# TRANSPORT=tls|wss (ringmq only; default tcp): the broker gets one TLS (or wss)
# listener with a self-signed ECDSA P-256 certificate openssl makes in a temporary
# directory, and loadgen connects with --transport tls|wss --insecure (every
# connection does a full handshake; the window starts after the warm-up).
# RX_THREAD (1, TCP only: loadgen --rx-thread, its subscribers on a second
# thread with kernel receive timestamps, as bench/cpu-scenarios.sh; 0: every
# subscriber on loadgen's one worker thread, as before 2026-11-30 19:00 UTC).
# Each run: broker pinned to BROKER_CORE, loadgen (its publisher on one
# worker thread) to LOADGEN_CORE; broker utime+stime from /proc/PID/stat is sampled after the
# warm-up and again WINDOW_S later; loadgen's received count over the same
# window (its JSON) divides it. Prints one line per run and the median.
# Needs: target/release/{ringmq,loadgen} (cargo build --release -p ringmq -p loadgen),
# peers from ../shared/peers/install-peers.sh for mosquitto / rumqttd.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
RATE="${RATE:-2400}" SUBS="${SUBS:-100}" WINDOW_S="${WINDOW_S:-10}" REPEATS="${REPEATS:-3}"
PORT="${PORT:-18900}" BROKER_CORE="${BROKER_CORE:-1}" LOADGEN_CORE="${LOADGEN_CORE:-0}" RX_THREAD="${RX_THREAD:-1}"
PEERS="$root/../shared/peers"
tdir="${CARGO_TARGET_DIR:-target}/release"
brokers=("$@"); [[ ${#brokers[@]} -gt 0 ]] || brokers=(ringmq mosquitto)
hz=$(getconf CLK_TCK)

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# The broker's log: a file of its own per run (printed), so runs of
# several people at once do not overwrite each other's.
broker_log="$(mktemp /tmp/cpd-ringmq.XXXXXX.log)"
echo "cpu-per-delivery: broker log $broker_log"
TRANSPORT="${TRANSPORT:-tcp}"
listen_args=(--listen "127.0.0.1:$PORT")
if [[ "$TRANSPORT" != tcp ]]; then
  case "$TRANSPORT" in tls) proto=mqtt ;; wss) proto=ws ;; *) echo "TRANSPORT: tcp, tls or wss" >&2; exit 2 ;; esac
  tlsdir=$(mktemp -d -t cpd-tls.XXXXXX)
  trap 'rm -rf "$tlsdir"' EXIT
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost \
    -keyout "$tlsdir/key.pem" -out "$tlsdir/cert.pem" >/dev/null 2>&1
  printf '[[listener]]\nbind = "127.0.0.1:%s"\nprotocol = "%s"\n[listener.tls]\ncert_file = "%s"\nkey_file = "%s"\n' \
    "$PORT" "$proto" "$tlsdir/cert.pem" "$tlsdir/key.pem" >"$tlsdir/ringmq.toml"
  listen_args=(--config "$tlsdir/ringmq.toml")
fi
loadgen_transport=(--transport "$TRANSPORT")
[[ "$TRANSPORT" == tcp ]] || loadgen_transport+=(--insecure)
# --rx-thread reads TCP only.
[[ "$TRANSPORT" != tcp || "$RX_THREAD" != 1 ]] || loadgen_transport+=(--rx-thread)

start_broker() {
  case "$1" in
    ringmq) taskset -c "$BROKER_CORE" "$tdir/ringmq" "${listen_args[@]}" --shards 1 --log-level warn ${RINGMQ_FLAGS:-} >"$broker_log" 2>&1 &
            echo $! ; sleep 1 ;;
    *) [[ "$TRANSPORT" == tcp ]] || { echo "TRANSPORT=$TRANSPORT: ringmq only" >&2; exit 2; }
       local pid; pid=$("$PEERS/start-peer.sh" "$1" "$PORT"); taskset -pc "$BROKER_CORE" "$pid" >/dev/null; echo "$pid" ;;
  esac
}

for b in "${brokers[@]}"; do
  results=()
  for r in $(seq "$REPEATS"); do
    pid=$(start_broker "$b")
    out=$(mktemp)
    taskset -c "$LOADGEN_CORE" "$tdir/loadgen" pubsub --port "$PORT" "${loadgen_transport[@]}" --topology fanout --pubs 1 --subs "$SUBS" \
      --qos 0 --size 64 --rate "$RATE" --threads 1 --warmup 3 --duration "$WINDOW_S" --drain 1 --json -q \
      --topic "cpd/%i" ${LOADGEN_ARGS:-} >"$out" 2>/dev/null &
    lg=$!
    sleep 3.5                              # connect + warm-up
    t0=$(cpu_ticks "$pid"); s0=$(date +%s.%N)
    if [[ "${SYSCALLS:-0}" == 1 ]]; then
      perf stat -x, -e raw_syscalls:sys_enter -e syscalls:sys_enter_io_uring_enter -e io_uring:io_uring_submit_req \
        -p "$pid" -o "$out.perf" -- sleep "$WINDOW_S" >/dev/null 2>&1 || sleep "$WINDOW_S"
    else
      sleep "$WINDOW_S"
    fi
    t1=$(cpu_ticks "$pid"); s1=$(date +%s.%N)
    wait "$lg" || true
    kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
    line=$(PYTHONPATH="$root/bench" python3 - "$out" "$t0" "$t1" "$s0" "$s1" "$hz" <<'PY'
import json, sys
import perfstat
j = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
t0, t1, s0, s1, hz = map(float, sys.argv[2:7])
rate = j.get("msgs_per_s_received") or 0
delivered = rate * (s1 - s0)
cpu_s = (t1 - t0) / hz
us = cpu_s * 1e6 / delivered if delivered else float("nan")
sys_note = ""
counts = perfstat.counts(sys.argv[1] + ".perf")
if delivered and counts:
    total = counts.get("raw_syscalls:sys_enter", 0)
    enters = counts.get("syscalls:sys_enter_io_uring_enter", 0)
    submits = counts.get("io_uring:io_uring_submit_req", 0)
    sys_note = f",_{total / delivered:.3f}_syscalls/delivery_({enters / delivered:.3f}_io_uring_enter),_{submits / delivered:.3f}_io_uring_requests/delivery"
print(f"{us:.3f} {rate:.0f} {cpu_s / (s1 - s0) * 100:.0f} {j.get('latency_us_p50')} {j.get('latency_us_p99')} {j.get('lost', 0)} {sys_note or '-'}")
PY
)
    read -r us rate util p50 p99 lost sysc <<<"$line"
    [[ "$sysc" == "-" ]] && sysc="" || sysc="${sysc//_/ }"
    echo "$b run $r: ${us} µs CPU/delivery, ${rate} deliveries/s, broker core ${util}%, p50 ${p50} µs, p99 ${p99} µs, lost ${lost}${sysc}"
    results+=("$us")
    rm -f "$out" "$out.perf"
    sleep 1
  done
  med=$(printf '%s\n' "${results[@]}" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  echo "$b median: $med µs CPU per delivered message"
done
