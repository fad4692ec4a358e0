#!/usr/bin/env bash
# Compare brokers side by side with loadgen: mosquitto, rumqttd (v4 listener)
# and ringmq (when shards/ builds a working binary), each pinned to one core,
# loadgen pinned to another. Every scenario runs REPEATS times per broker;
# medians go to a markdown table, every run to one HTML report.
#
#   bench/compare.sh                 # defaults: ~6-8 minutes once built
#   REPEATS=1 DURATION=3 bench/compare.sh     # quick look
#   BROKERS="mosquitto ringmq" SCENARIOS="fanout" bench/compare.sh
#
# Env (all optional):
#   REPEATS=3  DURATION=5 (s measured)  WARMUP=2 (s)  DRAIN=2 (s)
#   BROKERS="mosquitto rumqttd ringmq"  SCENARIOS="fanout pairs fanin pairs-max"
#   BROKER_CPU=1  LOADGEN_CPU=0  BASE_PORT=19000
#   MOSQUITTO_NODELAY=1   (set_tcp_nodelay true; 0 = mosquitto's default, Nagle on)
#   BENCH_NICE=-10  (niceness of brokers and loadgen, so that other work on a
#                    shared machine preempts them less; ignored if not allowed)
#   OUT=bench/results/<timestamp>   SKIP_INSTALL=1   SKIP_BUILD=1   CROSS_CHECK=1
#   RX_THREAD=1  (loadgen --rx-thread: subscribers on a second loadgen thread,
#                 latency to the kernel's receive time, as bench/cpu-scenarios.sh;
#                 0 = every client on loadgen's one thread, as before 2026-11-30)
# Output in $OUT: results.md (table), report.html, runs/*.json, results.tsv, logs.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
# The shared peers directory sits beside the repository (../shared/peers from
# the repo root on CI machines, /work/shared/peers here).
PEERS="${PEERS:-$(cd "$HERE/../../shared/peers" 2>/dev/null && pwd || true)}"
REPEATS="${REPEATS:-3}"
DURATION="${DURATION:-5}"
WARMUP="${WARMUP:-2}"
DRAIN="${DRAIN:-2}"
RX_THREAD="${RX_THREAD:-1}"
RX_FLAG=""; [ "$RX_THREAD" = 1 ] && RX_FLAG="--rx-thread"
BROKERS="${BROKERS:-mosquitto rumqttd ringmq}"
SCENARIOS="${SCENARIOS:-fanout pairs fanin pairs-max}"
BROKER_CPU="${BROKER_CPU:-1}"
LOADGEN_CPU="${LOADGEN_CPU:-0}"
BASE_PORT="${BASE_PORT:-19000}"
MOSQUITTO_NODELAY="${MOSQUITTO_NODELAY:-1}"
CROSS_CHECK="${CROSS_CHECK:-1}"
OUT="${OUT:-$ROOT/bench/results/$(date +%Y%m%d-%H%M%S)}"
PEERS_DIR="${PEERS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mqtt-peers}"
CLK_TCK="$(getconf CLK_TCK)"
BENCH_NICE="${BENCH_NICE:--10}"
if nice -n "$BENCH_NICE" true 2>/dev/null; then PRIO=(nice -n "$BENCH_NICE"); else PRIO=(); BENCH_NICE=0; fi

mkdir -p "$OUT/runs" "$OUT/logs"
log() { echo "compare: $*" >&2; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# ---- scenarios: name -> loadgen pubsub arguments ---------------------------
# Fixed rates (latency is measured from the intended send time, so these are
# latency-at-load numbers). pairs-max is unpaced and closed-loop: QoS 1 with
# 64 messages in flight per publisher, so the broker's acks set the pace; its
# msgs/s is the throughput, its latency mostly time spent queued in the window.
scenario_args() {
  case "$1" in
    fanout)    echo "--topology fanout --pubs 1 --subs 100 --qos 0 --size 64 --rate 500 --topic bench/fanout/%i" ;;
    pairs)     echo "--topology pairs --pubs 50 --subs 50 --qos 1 --size 64 --rate 100 --topic bench/pairs/%i" ;;
    fanin)     echo "--topology fanin --pubs 50 --subs 1 --qos 0 --size 64 --rate 200 --topic bench/fanin/%i" ;;
    pairs-max) echo "--topology pairs --pubs 4 --subs 4 --qos 1 --inflight 64 --size 64 --rate 0 --topic bench/max/%i" ;;
    *) log "unknown scenario '$1'"; return 1 ;;
  esac
}

# ---- 1. peers ----------------------------------------------------------------
if [ "${SKIP_INSTALL:-0}" != 1 ]; then
  if [ -n "$PEERS" ] && [ -f "$PEERS/install-peers.sh" ]; then
    log "installing peers ($PEERS/install-peers.sh; rumqttd via cargo install can take minutes)"
    SKIP_AEDES=1 SKIP_PIP=1 nice bash "$PEERS/install-peers.sh" > "$OUT/logs/install-peers.log" 2>&1 \
      || log "install-peers.sh failed (see $OUT/logs/install-peers.log); using what is installed"
  else
    log "no shared peers directory found (PEERS=$PEERS); using what is installed"
  fi
fi
MOSQUITTO_BIN="$(command -v mosquitto || echo /usr/sbin/mosquitto)"
RUMQTTD_BIN="${RUMQTTD:-$PEERS_DIR/bin/rumqttd}"
[ -x "$RUMQTTD_BIN" ] || RUMQTTD_BIN="$(command -v rumqttd || true)"

# ---- 2. build ----------------------------------------------------------------
cd "$ROOT"
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  log "building loadgen (release)"
  cargo build --release -p loadgen > "$OUT/logs/build-loadgen.log" 2>&1 \
    || { log "loadgen does not build; see $OUT/logs/build-loadgen.log"; exit 1; }
  if [[ " $BROKERS " == *" ringmq "* ]]; then
    log "building ringmq (release)"
    cargo build --release -p ringmq > "$OUT/logs/build-ringmq.log" 2>&1 \
      || log "ringmq does not build (see $OUT/logs/build-ringmq.log)"
  fi
fi
LOADGEN="$ROOT/target/release/loadgen"
RINGMQ="$ROOT/target/release/ringmq"
[ -x "$LOADGEN" ] || { log "no $LOADGEN"; exit 1; }

# ---- broker start / stop -----------------------------------------------------
# Prints the pid. The broker (and its threads) run on BROKER_CPU only.
start_broker() {
  local name="$1" port="$2" pid
  case "$name" in
    mosquitto)
      local conf="$OUT/logs/mosquitto-$port.conf"
      {
        echo "per_listener_settings false"
        echo "allow_anonymous true"
        echo "persistence false"
        [ "$MOSQUITTO_NODELAY" = 1 ] && echo "set_tcp_nodelay true"
        echo "max_queued_messages 10000"
        echo "listener $port 127.0.0.1"
        echo "log_dest stderr"
        echo "log_type error"
        echo "log_type warning"
      } > "$conf"
      "${PRIO[@]}" taskset -c "$BROKER_CPU" "$MOSQUITTO_BIN" -c "$conf" > "$OUT/logs/mosquitto-$port.log" 2>&1 &
      pid=$!
      ;;
    rumqttd)
      [ -x "$RUMQTTD_BIN" ] || { log "rumqttd not installed"; return 1; }
      # start-peer.sh writes the harness's rumqttd config (v4 listener on PORT,
      # v5 on PORT+1) and starts it; taskset's affinity is inherited.
      pid="$(RUMQTTD="$RUMQTTD_BIN" RUN_DIR="$OUT/logs" "${PRIO[@]}" taskset -c "$BROKER_CPU" bash "$PEERS/start-peer.sh" rumqttd "$port")" || return 1
      ;;
    ringmq)
      "${PRIO[@]}" taskset -c "$BROKER_CPU" "$RINGMQ" --listen "127.0.0.1:$port" --shards 1 > "$OUT/logs/ringmq-$port.log" 2>&1 &
      pid=$!
      ;;
  esac
  local deadline=$((SECONDS + 10))
  until port_open "$port"; do
    if ! kill -0 "$pid" 2>/dev/null; then log "$name exited at start-up:"; tail -5 "$OUT/logs/$name-$port.log" >&2 || true; return 1; fi
    if [ "$SECONDS" -ge "$deadline" ]; then log "$name did not open port $port"; kill "$pid" 2>/dev/null || true; return 1; fi
    sleep 0.1
  done
  echo "$pid"
}

stop_broker() {
  local pid="$1"
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
}

# utime + stime of a process (all its threads), in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

# ---- 3. is there a working ringmq? -------------------------------------------
AVAILABLE=""
for b in $BROKERS; do
  case "$b" in
    ringmq)
      if [ ! -x "$RINGMQ" ]; then log "skipping ringmq: no binary at $RINGMQ (shards/ does not build one yet)"; continue; fi
      probe_port=$((BASE_PORT + 999))
      if pid="$(start_broker ringmq "$probe_port" 2>/dev/null)"; then
        stop_broker "$pid"; AVAILABLE="$AVAILABLE ringmq"
      else
        log "skipping ringmq: '$RINGMQ --listen 127.0.0.1:$probe_port --shards 1' did not open the port (see $OUT/logs/ringmq-$probe_port.log)"
      fi
      ;;
    rumqttd)
      if [ -x "$RUMQTTD_BIN" ] && [ -n "$PEERS" ]; then AVAILABLE="$AVAILABLE rumqttd"; else log "skipping rumqttd: not installed"; fi ;;
    mosquitto)
      if [ -x "$MOSQUITTO_BIN" ]; then AVAILABLE="$AVAILABLE mosquitto"; else log "skipping mosquitto: not installed"; fi ;;
    *) log "unknown broker '$b'" ;;
  esac
done
[ -n "$AVAILABLE" ] || { log "no broker to test"; exit 1; }

# ---- 4. runs ---------------------------------------------------------------
{
  echo "# compare.sh $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "# machine: $(nproc) CPUs, $(awk -F: '/model name/ {print $2; exit}' /proc/cpuinfo | sed 's/^ *//'), kernel $(uname -r)"
  echo "# broker cpu $BROKER_CPU, loadgen cpu $LOADGEN_CPU, nice $BENCH_NICE, repeats $REPEATS, warmup $WARMUP s, duration $DURATION s"
  printf 'broker\tscenario\trepeat\tjson\tcpu_s\trss_kib\tloadavg_1m\n'
} > "$OUT/results.tsv"

port=$BASE_PORT
crosschecked=0
for broker in $AVAILABLE; do
  for scenario in $SCENARIOS; do
    args="$(scenario_args "$scenario")"
    port=$((port + 2))
    if ! bpid="$(start_broker "$broker" "$port")"; then log "$broker failed to start; skipping $scenario"; continue; fi
    for r in $(seq "$REPEATS"); do
      json="$OUT/runs/$broker-$scenario-$r.json"
      # Broker RSS, sampled every 0.2 s; the largest value is kept.
      ( max=0; while kill -0 "$bpid" 2>/dev/null; do v=$(rss_kib "$bpid"); [ "${v:-0}" -gt "$max" ] && max=$v && echo "$max" > "$OUT/logs/rss-$broker-$scenario-$r"; sleep 0.2; done ) &
      sampler=$!
      counter=""
      if [ "$CROSS_CHECK" = 1 ] && [ "$crosschecked" = 0 ] && [ "$broker" = mosquitto ] && [ "$scenario" = fanout ] && command -v mosquitto_sub >/dev/null; then
        # An independent subscriber on the same topic: one line per message
        # (-W: it leaves by itself at the latest after that many seconds).
        "${PRIO[@]}" taskset -c "$LOADGEN_CPU" mosquitto_sub -p "$port" -t 'bench/fanout/0' -F '%t' \
          -W $((WARMUP + DURATION + DRAIN + 30)) > "$OUT/logs/crosscheck.txt" 2>/dev/null &
        counter=$!
        sleep 0.5
      fi
      before=$(cpu_ticks "$bpid")
      # shellcheck disable=SC2086
      if ! "${PRIO[@]}" taskset -c "$LOADGEN_CPU" "$LOADGEN" pubsub --port "$port" $args $RX_FLAG \
          --warmup "$WARMUP" --duration "$DURATION" --drain "$DRAIN" \
          --client-prefix "cmp-$broker-$scenario-$r" --label "$broker" --json -q \
          > "$json" 2> "$OUT/logs/loadgen-$broker-$scenario-$r.log"; then
        log "loadgen failed on $broker/$scenario (see $OUT/logs/loadgen-$broker-$scenario-$r.log)"
        rm -f "$json"
      fi
      after=$(cpu_ticks "$bpid")
      kill "$sampler" 2>/dev/null || true; wait "$sampler" 2>/dev/null || true
      if [ -n "$counter" ]; then
        sleep 1; kill "$counter" 2>/dev/null || true; wait "$counter" 2>/dev/null || true
        crosschecked=1
        independent=$(wc -l < "$OUT/logs/crosscheck.txt")
        python3 - "$json" "$independent" > "$OUT/crosscheck.md" <<'PY' || true
import json, sys
s = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
independent = int(sys.argv[2])
per_sub = s["msgs_received_total"] / max(1, s["subs"])
print(f"Cross-check (mosquitto, fanout, run 1): loadgen published {s['msgs_sent_total']} messages; "
      f"its {s['subs']} subscribers received {s['msgs_received_total']} ({per_sub:.1f} each, "
      f"lost {s.get('lost')}, duplicated {s['duplicated']}); an independent `mosquitto_sub -t bench/fanout/0` "
      f"counted {independent}. " + ("MATCH" if independent == s['msgs_sent_total'] == per_sub else "MISMATCH"))
PY
        cat "$OUT/crosscheck.md" >&2
      fi
      cpu_s=$(awk -v t=$((after - before)) -v hz="$CLK_TCK" 'BEGIN { printf "%.3f", t / hz }')
      rss=$(cat "$OUT/logs/rss-$broker-$scenario-$r" 2>/dev/null || echo 0)
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$broker" "$scenario" "$r" "$json" "$cpu_s" "$rss" "$(cut -d' ' -f1 /proc/loadavg)" >> "$OUT/results.tsv"
      [ -s "$json" ] && log "$broker $scenario #$r: $(python3 "$HERE/compare_table.py" --one "$json"), broker cpu $cpu_s s, load $(cut -d' ' -f1 /proc/loadavg)"
    done
    stop_broker "$bpid"
  done
done

# ---- 5. table and report -------------------------------------------------------
python3 "$HERE/compare_table.py" "$OUT/results.tsv" "$OUT/median-runs.txt" > "$OUT/results.md"
if [ -f "$OUT/crosscheck.md" ]; then { echo; cat "$OUT/crosscheck.md"; } >> "$OUT/results.md"; fi
# The report charts each broker's median run (by p99) per scenario.
mapfile -t medians < "$OUT/median-runs.txt"
if [ ${#medians[@]} -gt 0 ]; then
  "$LOADGEN" report "${medians[@]}" -o "$OUT/report.html" --title "Brokers side by side (loadgen, median runs)" 2>/dev/null
fi
cat "$OUT/results.md"
log "results in $OUT (results.md, report.html)"
