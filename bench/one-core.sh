# Shared by bench/flood.sh and bench/churn.sh (sourced, not run): one broker
# at a time on BROKER_CORE with one shard (ringmq --shards 1; Mosquitto is
# single-threaded), loadgen on LOADGEN_CORE, real-time priority where the
# caller asks (RT=PRIO, as root: the broker's event-loop thread and loadgen
# SCHED_FIFO, so that other jobs on a shared machine cannot delay them by a
# scheduler slice), the broker's CPU time read from /proc/PID/stat.
#
# The caller sets: PORT, BROKER_CORE, LOADGEN_CORE, RT, RINGMQ_FLAGS, tdir,
# work (a temporary directory), OUT (result lines), and defines nothing else.
# Mosquitto gets `set_tcp_nodelay true` (ringmq and loadgen use TCP_NODELAY),
# no persistence, and queue limits far above what a run holds.
MOSQUITTO="${MOSQUITTO:-$(command -v mosquitto || echo /usr/sbin/mosquitto)}"
hz=$(getconf CLK_TCK)
broker_pid=""

say() { echo "$*" | tee -a "$OUT"; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# j FILE KEY: a field of loadgen's JSON line.
j() { python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).read().strip().splitlines()[-1]).get(sys.argv[2]))' "$1" "$2"; }

# Checks the tools and the peer; prints the conditions line.
one_core_setup() {
  for tool in "$tdir/ringmq" "$tdir/loadgen" python3 taskset; do
    command -v "$tool" >/dev/null || { echo "$0: $tool not found (cargo build --release -p ringmq -p loadgen)" >&2; exit 1; }
  done
  if [[ " ${brokers[*]} " == *" mosquitto "* && ! -x "$MOSQUITTO" ]]; then
    echo "$0: mosquitto not installed (../shared/peers/install-peers.sh)" >&2; exit 1
  fi
  chmod 755 "$work"
  cat > "$work/mosquitto.conf" <<CONF
per_listener_settings false
allow_anonymous true
persistence false
set_tcp_nodelay true
max_queued_messages 1000000
max_connections -1
listener $PORT 127.0.0.1
log_dest stderr
log_type error
log_type warning
CONF
  : > "$OUT"
  say "$(basename "$0") $(date -u +%FT%TZ) (load average $(cut -d' ' -f1-3 /proc/loadavg), SCHED_FIFO ${RT:-off}) on $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs)), kernel $(uname -r); broker core $BROKER_CORE (one shard), loadgen core $LOADGEN_CORE; shared machine: other jobs run meanwhile"
  say "brokers: ringmq ($("$tdir/ringmq" --version 2>/dev/null | head -1), flags: ${RINGMQ_FLAGS:-none}), mosquitto ($("$MOSQUITTO" -h 2>&1 | head -1 | sed 's/^mosquitto //'))"
}

# realtime_loop_threads: SCHED_FIFO (priority RT) for the broker's event-loop
# threads once they exist; helper threads at priority 1.
realtime_loop_threads() {
  sleep 0.3
  local t
  for t in /proc/"$broker_pid"/task/*; do
    case "$(cat "$t/comm" 2>/dev/null)" in
      ringmq-shard*|mosquitto) chrt -f -p "$RT" "${t##*/}" >/dev/null ;;
      ringmq-*) chrt -f -p 1 "${t##*/}" >/dev/null ;;
    esac
  done
}

# start_broker ringmq|mosquitto
start_broker() {
  case "$1" in
    # shellcheck disable=SC2086
    ringmq) taskset -c "$BROKER_CORE" "$tdir/ringmq" serve --listen "127.0.0.1:$PORT" --shards 1 \
              --log-level warn ${RINGMQ_FLAGS:-} >"$work/ringmq.log" 2>&1 & ;;
    mosquitto) taskset -c "$BROKER_CORE" "$MOSQUITTO" -c "$work/mosquitto.conf" >"$work/mosquitto.log" 2>&1 & ;;
    *) echo "$0: unknown broker $1 (ringmq | mosquitto)" >&2; exit 2 ;;
  esac
  broker_pid=$!
  [[ -n ${RT:-} ]] && realtime_loop_threads
  local deadline=$(( $(date +%s) + 15 ))
  until port_open "$PORT"; do
    kill -0 "$broker_pid" 2>/dev/null || { echo "$0: $1 exited:" >&2; cat "$work/$1.log" >&2; exit 1; }
    [[ $(date +%s) -lt $deadline ]] || { echo "$0: $1 did not listen" >&2; exit 1; }
    sleep 0.1
  done
}
stop_broker() {
  if [[ -n "$broker_pid" ]]; then kill "$broker_pid" 2>/dev/null || true; wait "$broker_pid" 2>/dev/null || true; fi
  broker_pid=""
  sleep 0.5
}
one_core_cleanup() { stop_broker; rm -rf "$work"; }

# The load generator: one thread on LOADGEN_CORE, SCHED_FIFO with RT.
LG=(${RT:+chrt -f "$RT"} taskset -c "$LOADGEN_CORE" "$tdir/loadgen")
