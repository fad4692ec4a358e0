#!/usr/bin/env bash
# Broker CPU per delivered message and end-to-end p99 in issue 11's four
# scenarios, every broker in the same run (rounds alternate between brokers):
#
#   a  4 publishers x 15,000 msg/s, bursts of 4 (several messages per write)
#      -> 4 subscribers, QoS 0: 240k deliveries/s
#   b  1 publisher x 2,400 msg/s in bursts of 10, one message per write
#      (loadgen --write-each) -> 100 subscribers, QoS 0: 240k deliveries/s
#   c  the same fan-out evenly paced (one message every 417 µs, as
#      bench/cpu-per-delivery.sh): 240k deliveries/s
#   d  QoS 1: 4 publishers x 5,000 msg/s, inflight 64 each -> 4 subscribers
#      (QoS 1 subscriptions): 80k deliveries/s
#
#   bench/cpu-scenarios.sh [SCENARIO...]     SCENARIO: a b c d (default all)
#
# Env: BROKERS ("ringmq ringmq-uring flashmq mosquitto"; ringmq: the default
# backend (--io auto: the native io_uring loop where the kernel allows it),
# ringmq-uring / ringmq-epoll: the monoio backends, ringmq-native: --io
# native, ringmq-native:US: that with runtime.native_gather_us = US,
# ringmq-hold:US: the default backend with runtime.native_hold_us = US,
# ringmq-direct:N: the default backend with runtime.native_direct_fds = N
# (0: no direct descriptors); also rumqttd),
# REPEATS (3), WINDOW_S (8, measured seconds), WARMUP_S (3), PORT (32100: the
# first of the ports used, one per broker start),
# BROKER_CORE (1), LOADGEN_CORE (0), RT (unset; e.g. 10 as root: SCHED_FIFO
# at that priority for the brokers' event-loop threads and for loadgen: on a
# shared machine other jobs then run only in the gaps), SYSCALLS=1 (perf stat of the broker's system calls
# over the window), FLASHMQ (binary; default ~/.cache/mqtt-peers/bin/flashmq,
# built by bench/peers/flashmq.sh), FLASHMQ_NODELAY (1: tcp_nodelay true),
# RINGMQ_FLAGS (extra flags for both ringmq variants), OUT (a file the
# lines are appended to too), RX_THREAD (1: loadgen --rx-thread, the
# default; 0: subscribers on loadgen's one worker thread, as before
# 2026-11-30 15:10 UTC).
#
# Each run: the broker pinned to BROKER_CORE (ringmq --shards 1, FlashMQ
# thread_count 1, Mosquitto single-threaded), loadgen to LOADGEN_CORE: its
# publisher on one worker thread and, with RX_THREAD=1, every subscriber on
# a second thread (epoll, kernel receive timestamps: latency ends when the
# bytes reached the subscriber's socket, not when loadgen got to them; one
# SCHED_FIFO priority below the publisher, which preempts it). After the warm-up the broker's utime+stime
# (/proc/PID/stat) and its threads' voluntary context switches (sleeps:
# wake-ups) are sampled, and again WINDOW_S later; loadgen's received rate
# over its measured window times WINDOW_S gives the deliveries. Prints one
# line per run and a median per broker and scenario.
# Needs: $CARGO_TARGET_DIR/release/{ringmq,loadgen}
# (cargo build --release -p ringmq -p loadgen); mosquitto
# (../shared/peers/install-peers.sh); FlashMQ (bench/peers/flashmq.sh).
# Wrap in the machine's benchmark lock: flock /tmp/ringmq-bench.lock ...
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
REPEATS="${REPEATS:-3}" WINDOW_S="${WINDOW_S:-8}" WARMUP_S="${WARMUP_S:-3}" PORT="${PORT:-32100}"
BROKER_CORE="${BROKER_CORE:-1}" LOADGEN_CORE="${LOADGEN_CORE:-0}" RT="${RT:-}" RX_THREAD="${RX_THREAD:-1}"
BROKERS="${BROKERS:-ringmq ringmq-uring flashmq mosquitto}"
PEERS_DIR="${PEERS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mqtt-peers}"
FLASHMQ="${FLASHMQ:-$PEERS_DIR/bin/flashmq}" FLASHMQ_NODELAY="${FLASHMQ_NODELAY:-1}"
MOSQUITTO="${MOSQUITTO:-$(command -v mosquitto || echo /usr/sbin/mosquitto)}"
RUMQTTD="${RUMQTTD:-$PEERS_DIR/bin/rumqttd}"
OUT="${OUT:-/dev/null}"
tdir="${CARGO_TARGET_DIR:-target}/release"
scenarios=("$@"); [[ ${#scenarios[@]} -gt 0 ]] || scenarios=(a b c d)
hz=$(getconf CLK_TCK)
read -r -a brokers <<<"$BROKERS"

for tool in "$tdir/ringmq" "$tdir/loadgen" python3 taskset; do
  command -v "$tool" >/dev/null || { echo "cpu-scenarios.sh: $tool not found" >&2; exit 1; }
done
for b in "${brokers[@]}"; do
  case "$b" in
    ringmq|ringmq-uring|ringmq-epoll|ringmq-native|ringmq-native:[0-9]*|ringmq-hold:[0-9]*|ringmq-direct:[0-9]*) ;;
    flashmq) [[ -x "$FLASHMQ" ]] || { echo "cpu-scenarios.sh: no FlashMQ at $FLASHMQ (FLASHMQ_SRC=DIR bench/peers/flashmq.sh)" >&2; exit 1; } ;;
    mosquitto) [[ -x "$MOSQUITTO" ]] || { echo "cpu-scenarios.sh: mosquitto not installed (../shared/peers/install-peers.sh)" >&2; exit 1; } ;;
    rumqttd) [[ -x "$RUMQTTD" ]] || { echo "cpu-scenarios.sh: rumqttd not installed (../shared/peers/install-peers.sh)" >&2; exit 1; } ;;
    *) echo "cpu-scenarios.sh: unknown broker $b" >&2; exit 2 ;;
  esac
done

scenario_args() {
  case "$1" in
    a) echo "--pubs 4 --subs 4 --qos 0 --rate 15000 --burst 4" ;;
    b) echo "--pubs 1 --subs 100 --qos 0 --rate 2400 --burst 10 --write-each" ;;
    c) echo "--pubs 1 --subs 100 --qos 0 --rate 2400" ;;
    d) echo "--pubs 4 --subs 4 --qos 1 --inflight 64 --rate 5000" ;;
    *) echo "cpu-scenarios.sh: unknown scenario $1 (a b c d)" >&2; return 2 ;;
  esac
}

say() { echo "$*" | tee -a "$OUT"; }
# Configurations, logs and loadgen's output; removed at exit, with the
# broker of an interrupted run stopped.
work="$(mktemp -d /tmp/cpu-scenarios.XXXXXX)"
broker_pid=""
trap '[[ -z $broker_pid ]] || stop_broker; rm -rf "$work"' EXIT

# Peers' configuration files for a broker listening on port $1.
write_configs() {
  local port=$1
cat >"$work/mosquitto.conf" <<CONF
per_listener_settings false
allow_anonymous true
persistence false
set_tcp_nodelay true
max_queued_messages 100000
listener $port 127.0.0.1
log_dest stderr
log_type error
log_type warning
CONF
cat >"$work/flashmq.conf" <<CONF
thread_count 1
log_file $work/flashmq.log
log_level warning
allow_anonymous true
listen {
  protocol mqtt
  inet_protocol ip4
  inet4_bind_address 127.0.0.1
  port $port
  tcp_nodelay $nodelay
}
CONF
}
nodelay=false; [[ $FLASHMQ_NODELAY == 1 ]] && nodelay=true

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# realtime_loop_threads: SCHED_FIFO (priority RT) for the broker's event-loop
# threads; ringmq's helper threads get priority 1.
realtime_loop_threads() {
  local t
  for t in /proc/"$broker_pid"/task/*; do
    case "$1:$(cat "$t/comm" 2>/dev/null)" in
      ringmq*:ringmq-shard*) chrt -f -p "$RT" "${t##*/}" >/dev/null ;;
      ringmq*:*) chrt -f -p 1 "${t##*/}" >/dev/null ;;
      *) chrt -f -p "$RT" "${t##*/}" >/dev/null ;;
    esac
  done
}
# start_broker NAME: a fresh port for every start (PORT, PORT+1, ...), so
# that the previous broker's closing connections never stand in the way.
next_port=$PORT
start_broker() {
  # The ports are in the ephemeral range: another program's connection may
  # hold one; then the next port is tried.
  local try
  for try in 1 2 3 4 5; do
    start_broker_once "$1" && return 0
    [[ $? == 3 ]] || exit 1
  done
  echo "cpu-scenarios.sh: $1: no free port from $PORT on" >&2
  exit 1
}
start_broker_once() {
  local pin=(taskset -c "$BROKER_CORE")
  port=$next_port
  next_port=$((next_port + 1))
  [[ $1 != rumqttd ]] || next_port=$((next_port + 1))   # its v5 listener: port+1
  write_configs "$port"
  case "$1" in
    ringmq) "${pin[@]}" "$tdir/ringmq" --listen "127.0.0.1:$port" --shards 1 --log-level warn ${RINGMQ_FLAGS:-} >"$work/broker.log" 2>&1 & ;;
    ringmq-uring|ringmq-epoll) "${pin[@]}" "$tdir/ringmq" --listen "127.0.0.1:$port" --shards 1 --io "${1#ringmq-}" --log-level warn ${RINGMQ_FLAGS:-} >"$work/broker.log" 2>&1 & ;;
    ringmq-native) "${pin[@]}" "$tdir/ringmq" --listen "127.0.0.1:$port" --shards 1 --io native --log-level warn ${RINGMQ_FLAGS:-} >"$work/broker.log" 2>&1 & ;;
    ringmq-native:*)
      printf '[runtime]\nnative_gather_us = %s\n' "${1#*:}" >"$work/ringmq-gather.toml"
      "${pin[@]}" "$tdir/ringmq" --config "$work/ringmq-gather.toml" --listen "127.0.0.1:$port" --shards 1 --io native \
        --log-level warn ${RINGMQ_FLAGS:-} >"$work/broker.log" 2>&1 & ;;
    ringmq-hold:*)
      printf '[runtime]\nnative_hold_us = %s\n' "${1#*:}" >"$work/ringmq-hold.toml"
      "${pin[@]}" "$tdir/ringmq" --config "$work/ringmq-hold.toml" --listen "127.0.0.1:$port" --shards 1 \
        --log-level warn ${RINGMQ_FLAGS:-} >"$work/broker.log" 2>&1 & ;;
    ringmq-direct:*)
      printf '[runtime]\nnative_direct_fds = %s\n' "${1#*:}" >"$work/ringmq-direct.toml"
      "${pin[@]}" "$tdir/ringmq" --config "$work/ringmq-direct.toml" --listen "127.0.0.1:$port" --shards 1 \
        --log-level warn ${RINGMQ_FLAGS:-} >"$work/broker.log" 2>&1 & ;;
    flashmq) "${pin[@]}" "$FLASHMQ" --config-file "$work/flashmq.conf" >"$work/broker.log" 2>&1 & ;;
    mosquitto) "${pin[@]}" "$MOSQUITTO" -c "$work/mosquitto.conf" >"$work/broker.log" 2>&1 & ;;
    rumqttd) broker_pid="$(RUMQTTD="$RUMQTTD" RUN_DIR="$work" "${pin[@]}" bash "$root/../shared/peers/start-peer.sh" rumqttd "$port")" ;;
  esac
  [[ $1 == rumqttd ]] || broker_pid=$!
  local deadline=$(( $(date +%s) + 15 ))
  until port_open "$port"; do
    if ! kill -0 "$broker_pid" 2>/dev/null; then
      grep -qi "address already in use" "$work/broker.log" && { broker_pid=""; return 3; }
      echo "cpu-scenarios.sh: $1 exited:" >&2; cat "$work/broker.log" >&2; exit 1
    fi
    [[ $(date +%s) -lt $deadline ]] || { echo "cpu-scenarios.sh: $1 did not listen" >&2; exit 1; }
    sleep 0.1
  done
  [[ -z $RT ]] || realtime_loop_threads "$1"
}
stop_broker() {
  kill "$broker_pid" 2>/dev/null || true
  wait "$broker_pid" 2>/dev/null || true
  # rumqttd is not our child: wait until it is gone.
  while kill -0 "$broker_pid" 2>/dev/null; do sleep 0.1; done
  broker_pid=""
  sleep 0.5
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
sleeps() { cat /proc/"$1"/task/*/status 2>/dev/null | awk '/^voluntary_ctxt_switches/ {s += $2} END {print s + 0}'; }

say "cpu-scenarios $(date -u +%FT%TZ): load average $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs)), kernel $(uname -r); broker core $BROKER_CORE, loadgen core $LOADGEN_CORE, SCHED_FIFO ${RT:-off}; shared machine: other jobs may run meanwhile"
say "brokers: ${brokers[*]} ($("$tdir/ringmq" --version 2>/dev/null | head -1); FlashMQ $(cat "$PEERS_DIR/flashmq.version" 2>/dev/null || echo '?') tcp_nodelay $nodelay; $("$MOSQUITTO" -h 2>&1 | head -1))"
rx_flag=""; [[ $RX_THREAD == 1 ]] && rx_flag="--rx-thread"
for s in "${scenarios[@]}"; do
  args="$(scenario_args "$s") $rx_flag"
  say "scenario $s: loadgen pubsub --topology fanout $args --size 64 --threads 1 --warmup $WARMUP_S --duration $WINDOW_S"
  declare -A results=()
  for r in $(seq "$REPEATS"); do
    for b in "${brokers[@]}"; do
      start_broker "$b"
      out="$work/lg.json"
      # shellcheck disable=SC2086
      ${RT:+chrt -f "$RT"} taskset -c "$LOADGEN_CORE" "$tdir/loadgen" pubsub --port "$port" \
        --topology fanout $args --size 64 --threads 1 --warmup "$WARMUP_S" --duration "$WINDOW_S" \
        --drain 1 --json -q --topic "cpd/%i" >"$out" 2>"$work/lg.err" &
      lg=$!
      sleep "$WARMUP_S.5"        # connect + warm-up
      t0=$(cpu_ticks "$broker_pid"); w0=$(sleeps "$broker_pid"); s0=$(date +%s.%N)
      if [[ "${SYSCALLS:-0}" == 1 ]]; then
        perf stat -x, -e raw_syscalls:sys_enter -e syscalls:sys_enter_io_uring_enter -e syscalls:sys_enter_epoll_wait \
          -p "$broker_pid" -o "$out.perf" -- sleep "$WINDOW_S" >/dev/null 2>&1 || sleep "$WINDOW_S"
      else
        sleep "$WINDOW_S"
      fi
      t1=$(cpu_ticks "$broker_pid"); w1=$(sleeps "$broker_pid"); s1=$(date +%s.%N)
      wait "$lg" || true
      stop_broker
      line=$(PYTHONPATH="$root/bench" python3 - "$out" "$t0" "$t1" "$s0" "$s1" "$hz" "$w0" "$w1" <<'PY'
import json, sys
import perfstat
try:
    j = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
except (OSError, ValueError, IndexError):
    print("nan 0 0 - - - - - -")
    sys.exit(0)
t0, t1, s0, s1, hz, w0, w1 = map(float, sys.argv[2:9])
rate = j.get("msgs_per_s_received") or 0
delivered = rate * (s1 - s0)
cpu_s = (t1 - t0) / hz
us = cpu_s * 1e6 / delivered if delivered else float("nan")
per_wake = delivered / (w1 - w0) if w1 > w0 else float("inf")
sysc = "-"
counts = perfstat.counts(sys.argv[1] + ".perf")
if delivered and counts:
    sysc = f"{counts.get('raw_syscalls:sys_enter', 0) / delivered:.3f}"
p99 = j.get("latency_us_p99")
lag = f"{j.get('send_lag_us_p50')}/{j.get('send_lag_us_p99')}"
print(f"{us:.3f} {rate:.0f} {cpu_s / (s1 - s0) * 100:.0f} {j.get('latency_us_p50')} {p99} {j.get('lost', 0)} {per_wake:.1f} {sysc} {lag}")
PY
)
      read -r us rate util p50 p99 lost perwake sysc lag <<<"$line"
      note=""; [[ "$sysc" == "-" ]] || note=", ${sysc} syscalls/delivery"
      say "  $s $b run $r: ${us} µs CPU/delivery, ${rate} deliveries/s, broker core ${util}%, p50 ${p50} µs, p99 ${p99} µs, publisher send lag p50/p99 ${lag} µs, lost ${lost}, ${perwake} deliveries/wake-up${note}"
      results[$b]="${results[$b]:-} $us"
      rm -f "$out" "$out.perf"
    done
  done
  for b in "${brokers[@]}"; do
    # shellcheck disable=SC2086
    med=$(printf '%s\n' ${results[$b]} | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    say "$s $b median: $med µs CPU per delivery (runs:${results[$b]})"
  done
  unset results
done
