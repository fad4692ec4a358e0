#!/usr/bin/env bash
# Recovery time of durable storage at scale (issue 13): SESSIONS persistent
# sessions and RETAINED retained messages, stored over MQTT by
# bench/storage_fill.py (the real broker, every record acknowledged), the
# broker stopped with SIGTERM (it writes its last batches and syncs) and
# started again REPEATS times on the same data directory. Per start:
#   ready_ms    from the start until GET /ready on the http listener answers
#               200 (every shard has loaded its records and accepts);
#   connack_ms  from the start until a CONNECT is answered;
#   read_ms / restore_ms  the broker's own log: the store's scan, and the
#               slowest shard's restore into its engine;
#   rss / hwm   the broker's VmRSS and VmHWM (peak) once ready.
# Then one start after `kill -9` of a broker that had just recovered (the
# store's journal replay, no clean shutdown).
# Mosquitto (persistence true) gets the same data and stops/starts in the
# same run (first CONNACK; its RSS), unless PEERS=0.
#
#   bench/recovery.sh
#
# Env: SESSIONS (100000), RETAINED (1000000), REPEATS (3), SHARDS (2),
# FSYNC (interval: the fill's and the restarts' fsync mode; a SIGTERM stop
# syncs in every mode, so what is read back is the same, and `always`
# makes each of the fill's 300,000 session round trips wait for an fsync), PORT (21583),
# HTTP_PORT (21584), NICE (0; e.g. -20 as root on a busy machine), PEERS
# (1), OUT (/tmp/recovery-bench.txt), PROFILE (release). Needs release
# builds (cargo build --release -p ringmq), python3, and for PEERS=1
# mosquitto (../shared/peers/install-peers.sh).
#
# The bench config raises limits.retained_messages_max (default 100,000 per
# broker) to 2,000,000, so that a million retained messages are kept.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
SESSIONS="${SESSIONS:-100000}" RETAINED="${RETAINED:-1000000}" REPEATS="${REPEATS:-3}"
SHARDS="${SHARDS:-2}" FSYNC="${FSYNC:-interval}" PORT="${PORT:-21583}" HTTP_PORT="${HTTP_PORT:-21584}"
NICE="${NICE:-0}" PEERS="${PEERS:-1}" OUT="${OUT:-/tmp/recovery-bench.txt}"
tdir="${CARGO_TARGET_DIR:-target}/${PROFILE:-release}"
MOSQUITTO="${MOSQUITTO:-$(command -v mosquitto || echo /usr/sbin/mosquitto)}"
tools=("$tdir/ringmq" python3)
[[ "$PEERS" == 1 ]] && tools+=("$MOSQUITTO")
for tool in "${tools[@]}"; do
  command -v "$tool" >/dev/null || { echo "recovery.sh: $tool not found" >&2; exit 1; }
done

work="$(mktemp -d /tmp/recovery-bench.XXXXXX)"
chmod 777 "$work"
broker_pid="" poller_pid=""
stop_broker() { # SIGTERM (or $1) and wait
  if [[ -n "$broker_pid" ]]; then
    kill "-${1:-TERM}" "$broker_pid" 2>/dev/null || true
    wait "$broker_pid" 2>/dev/null || true
    broker_pid=""
  fi
}
cleanup() {
  if [[ -n "$poller_pid" ]]; then kill "$poller_pid" 2>/dev/null || true; fi
  stop_broker KILL
  cp "$work/broker.log" "$OUT.broker.log" 2>/dev/null || true; rm -rf "$work"
}
trap cleanup EXIT
: > "$OUT"
say() { echo "$*" | tee -a "$OUT"; }
say "recovery bench $(date -u +%FT%TZ) on $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs)), load average $(cut -d' ' -f1-3 /proc/loadavg), nice $NICE; shared machine: other jobs run meanwhile"
say "data on $(df -h "$work" | awk 'NR==2 {print $1, $6}'); $SESSIONS sessions (one subscription each), $RETAINED retained messages (32-byte payloads), ringmq shards $SHARDS, fsync $FSYNC, retained_messages_max raised to 2000000"

cat > "$work/ringmq.toml" <<EOF
[[listener]]
bind = "127.0.0.1:$PORT"
[[listener]]
bind = "127.0.0.1:$HTTP_PORT"
protocol = "http"
[limits]
retained_messages_max = 2000000
retained_bytes_max = 1073741824
connections_max = 100000
[runtime]
shards = $SHARDS
log_connections = false
[storage]
storage = "disk"
data_dir = "$work/ringmq"
fsync = "$FSYNC"
EOF
{ echo "listener $PORT 127.0.0.1"; echo "allow_anonymous true"; echo "persistence true"
  echo "persistence_location $work/mosquitto/"; echo "max_queued_messages 1000000"
} > "$work/mosquitto.conf"

start() { # NAME
  case "$1" in
    ringmq) nice -n "$NICE" "$tdir/ringmq" serve -c "$work/ringmq.toml" --log-level info 2>"$work/broker.log" & ;;
    # mosquitto started as root runs as user mosquitto: its directory must
    # be writable to it, or it cannot save (and says so only in its log).
    mosquitto) mkdir -p "$work/mosquitto"; chmod 777 "$work/mosquitto"; nice -n "$NICE" "$MOSQUITTO" -c "$work/mosquitto.conf" 2>"$work/broker.log" & ;;
  esac
  broker_pid=$!
}

# bench/storage_ready.py, started before the broker (so Python's start-up
# is not counted), prints "ready_ms connack_ms" into $work/ready.
poll_ready() { # HTTP(0|1)
  rm -f "$work/t0" "$work/t0.up" "$work/ready"
  local http_port=0; [[ "$1" == 1 ]] && http_port="$HTTP_PORT"
  nice -n "$NICE" python3 bench/storage_ready.py "$PORT" "$http_port" "$work/t0" > "$work/ready" &
  poller_pid=$!
  while [[ ! -e "$work/t0.up" ]]; do sleep 0.05; done
}
# Starts NAME with the poller running and waits until it is ready; sets
# $ready and $connack (ms).
start_timed() { # NAME HTTP(0|1)
  poll_ready "$2"
  date +%s%N > "$work/t0.tmp"; mv "$work/t0.tmp" "$work/t0"
  start "$1"
  wait "$poller_pid"; poller_pid=""
  read -r ready connack < "$work/ready"
}

mem() { awk '/^VmRSS|^VmHWM/ {printf "%s %d MiB  ", $1, $2/1024}' "/proc/$broker_pid/status"; }
log_ms() { # the broker's read_ms and its slowest shard's restore_ms
  local read restore
  read="$(grep -o 'read_ms=[0-9]*' "$work/broker.log" | head -1 | cut -d= -f2)"
  restore="$(grep -o 'restore_ms=[0-9]*' "$work/broker.log" | cut -d= -f2 | sort -n | tail -1)"
  echo "read_ms ${read:--} restore_ms ${restore:--}"
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

names=(ringmq); [[ "$PEERS" == 1 ]] && names+=(mosquitto)
for name in "${names[@]}"; do
  http=0; [[ "$name" == ringmq ]] && http=1
  say ""
  start_timed "$name" "$http"
  say "$name fill: $(nice -n "$NICE" python3 bench/storage_fill.py "$PORT" "$SESSIONS" "$RETAINED")"
  t_stop="$(date +%s%N)"; stop_broker
  if [[ "$name" == mosquitto && ! -s "$work/mosquitto/mosquitto.db" ]]; then
    echo "recovery.sh: mosquitto saved nothing ($work/broker.log):" >&2; tail -3 "$work/broker.log" >&2; exit 1
  fi
  say "$name stop (SIGTERM, state written): $(( ($(date +%s%N) - t_stop) / 1000000 )) ms; data $(du -sh "$work/$name" | cut -f1)"
  readys=() connacks=()
  for i in $(seq "$REPEATS"); do
    start_timed "$name" "$http"
    sleep 1
    say "$name start $i: ready ${ready} ms, first CONNACK ${connack} ms; $(mem)$([[ "$name" == ringmq ]] && log_ms)"
    readys+=("$ready"); connacks+=("$connack")
    stop_broker
  done
  ready_median="-"; [[ "$http" == 1 ]] && ready_median="$(printf '%s\n' "${readys[@]}" | median)"
  say "$name median of $REPEATS: ready $ready_median ms, first CONNACK $(printf '%s\n' "${connacks[@]}" | median) ms"
  # After kill -9 (the broker had just recovered and written nothing since).
  start_timed "$name" "$http"
  nice -n "$NICE" python3 bench/storage_fill.py "$PORT" 1000 1000 --prefix after-kill >/dev/null
  stop_broker KILL
  start_timed "$name" "$http"
  sleep 1
  say "$name start after kill -9: ready ${ready} ms, first CONNACK ${connack} ms; $(mem)$([[ "$name" == ringmq ]] && log_ms)"
  stop_broker
done
say ""
say "broker log warnings/errors (last run): $(grep -ciE 'warn|error' "$work/broker.log" || true)"
