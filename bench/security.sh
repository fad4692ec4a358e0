#!/usr/bin/env bash
# Security benchmarks, ringmq side by side with Mosquitto configured the same
# way: one TLS listener with the same certificate (ECDSA P-256, made here with
# the openssl CLI), a password file (`ringmq passwd` / `mosquitto_passwd`), the
# same ACL file, `allow_anonymous = true` (clients that send a user name must
# give its password; the handshake test connects anonymously), Mosquitto with
# `set_tcp_nodelay true`. Loopback only; each broker pinned to BROKER_CORE,
# loadgen to LOADGEN_CORE; every figure is the median of REPEATS short runs.
#
#   bench/security.sh [BROKER...]        BROKER: ringmq | mosquitto (default both)
#
# What it measures, per broker:
#   cpu    broker CPU per delivered QoS 0 message over TLS: 1 publisher ->
#          CPU_SUBS subscribers at CPU_RATE msg/s (bench/cpu-per-delivery.sh's
#          method: utime+stime from /proc/PID/stat over a window after the
#          warm-up, divided by the deliveries loadgen counted in it).
#   hs     TLS handshakes (+ CONNECT/CONNACK, no password) per second with the
#          broker on one core: `loadgen conn --transport tls --rate 0`; also
#          the broker's CPU per handshake and its core's utilisation (below
#          ~90 % the broker was not the limit: loadgen was).
#   auth   CONNECTs per second with password verification (ringmq: argon2id;
#          Mosquitto 2.0: PBKDF2-SHA512, its only hash) while an established
#          flow runs (AUTH_FLOW_S seconds; the CONNECT burst starts 1 s into
#          its measured window), and that flow's p99 over the window.
#   storm  the p99 of a running pub/sub flow (FLOW_SUBS subscribers,
#          FLOW_RATE msg/s) alone, and while STORM_RATE TLS handshakes per
#          second arrive (the storm's clients stay connected STORM_HOLD_S
#          after the last one opened, so that they all close after the
#          flow's window: closing them together is not a handshake storm);
#          also the flow's p99 for each second of its window.
# Env: BENCHES ("cpu hs auth storm"), REPEATS (3), PORT (18950), BROKER_CORE (1),
# LOADGEN_CORE (0), STORM_CORE (LOADGEN_CORE: where the clients other than
# the established flow run: storm, CONNECT burst, handshakes), CPU_RATE (1000), CPU_SUBS (50), CPU_WINDOW_S (5),
# HS_COUNT (2000), FLOW_RATE (1000), FLOW_SUBS (10), FLOW_S (6),
# STORM_RATE (300), STORM_HOLD_S (3), AUTH_COUNT (100), AUTH_FLOW_S (10), OUT (result lines, default /tmp/security-bench.txt),
# NICE (0; e.g. -20 as root on a machine busy with other jobs: brokers and
# loadgen then preempt those jobs, which a quiet machine gives for free;
# the brokers' own helper threads still lower themselves to nice 19; with
# Linux autogroups the script's session group gets the same nice),
# RT (unset; e.g. 10 as root, on a machine busy with other jobs: the
# brokers' event-loop threads, ringmq's shards and Mosquitto's one thread,
# and the established flow's loadgen run SCHED_FIFO at priority RT, and
# ringmq's helper threads (TLS, password, memory purge) and the other
# loadgen clients (storm, CONNECT burst, handshakes) at priority 1: other
# jobs then cannot delay them by a scheduler slice (several ms) the way
# they can even at nice -20, and among the bench's own threads the order
# stays the one a quiet machine gives: a waking event loop preempts the
# helpers at once, the flow preempts the storm client),
# PERF_STORM (unset; a path prefix: `perf record -T` of the broker during
# each storm round, to PREFIX.BROKER.ROUND),
# IO (unset: ringmq's default driver; e.g. native: `[runtime] io = "native"`,
# the native io_uring shard loop),
# PROFILE (release; debug for a quick check of the script itself).
# Needs: release builds (cargo build --release -p ringmq -p loadgen), mosquitto
# and mosquitto_passwd from ../shared/peers/install-peers.sh, openssl, python3.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
BENCHES="${BENCHES:-cpu hs auth storm}" REPEATS="${REPEATS:-3}" PORT="${PORT:-18950}"
BROKER_CORE="${BROKER_CORE:-1}" LOADGEN_CORE="${LOADGEN_CORE:-0}" STORM_CORE="${STORM_CORE:-$LOADGEN_CORE}"
CPU_RATE="${CPU_RATE:-1000}" CPU_SUBS="${CPU_SUBS:-50}" CPU_WINDOW_S="${CPU_WINDOW_S:-5}"
HS_COUNT="${HS_COUNT:-2000}" FLOW_RATE="${FLOW_RATE:-1000}" FLOW_SUBS="${FLOW_SUBS:-10}"
FLOW_S="${FLOW_S:-6}" STORM_RATE="${STORM_RATE:-300}" STORM_HOLD_S="${STORM_HOLD_S:-3}" RT="${RT:-}" AUTH_COUNT="${AUTH_COUNT:-100}" AUTH_FLOW_S="${AUTH_FLOW_S:-10}"
OUT="${OUT:-/tmp/security-bench.txt}" NICE="${NICE:-0}" IO="${IO:-}"
tdir="${CARGO_TARGET_DIR:-target}/${PROFILE:-release}"
MOSQUITTO="${MOSQUITTO:-$(command -v mosquitto || echo /usr/sbin/mosquitto)}"
brokers=("$@"); [[ ${#brokers[@]} -gt 0 ]] || brokers=(ringmq mosquitto)
hz=$(getconf CLK_TCK)
USER_NAME=bench PASSWORD='bench-pass-1'
for tool in "$tdir/ringmq" "$tdir/loadgen" openssl python3; do
  command -v "$tool" >/dev/null || { echo "security.sh: $tool not found" >&2; exit 1; }
done
if [[ " ${brokers[*]} " == *" mosquitto "* ]]; then
  [[ -x "$MOSQUITTO" ]] && command -v mosquitto_passwd >/dev/null \
    || { echo "security.sh: mosquitto not installed (../shared/peers/install-peers.sh)" >&2; exit 1; }
fi

# Linux autogroups (sched_autogroup_enabled): a nice value only ranks
# threads within their session's group, and each session's group gets an
# equal share of a core whatever its members' nice, so NICE alone would
# not let the brokers preempt other sessions' jobs. This script and its
# children are one session group: give the group the same nice.
if [[ $NICE -lt 0 && -w /proc/self/autogroup ]]; then
  echo "$NICE" > /proc/self/autogroup 2>/dev/null \
    || echo "security.sh: cannot set the autogroup's nice; other sessions' jobs keep an equal share" >&2
fi
work="$(mktemp -d /tmp/security-bench.XXXXXX)"
# Mosquitto started as root drops to its own user: it must read these files.
chmod 755 "$work"
broker_pid=""
cleanup() {
  if [[ -n "$broker_pid" ]]; then kill "$broker_pid" 2>/dev/null || true; wait "$broker_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
: > "$OUT"
say() { echo "$*" | tee -a "$OUT"; }

say "security bench $(date -u +%FT%TZ) (load average $(cut -d' ' -f1-3 /proc/loadavg), nice $NICE, SCHED_FIFO ${RT:-off}) on $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs)); broker core $BROKER_CORE, loadgen core $LOADGEN_CORE (storm clients: $STORM_CORE); shared machine: other jobs run meanwhile"
say "brokers: ringmq ($("$tdir/ringmq" --version 2>/dev/null | head -1), io ${IO:-default}), mosquitto ($("$MOSQUITTO" -h 2>&1 | head -1 | sed 's/^mosquitto //'))"

# --- one certificate, one password, one ACL for both brokers -----------------
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -keyout "$work/ca.key" -out "$work/ca.pem" -subj "/CN=security bench CA" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -keyout "$work/server.key" -out "$work/server.csr" -subj "/CN=localhost" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > "$work/ext.cnf"
openssl x509 -req -in "$work/server.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" \
  -CAcreateserial -days 2 -extfile "$work/ext.cnf" -out "$work/server.pem" 2>/dev/null
chmod 644 "$work/server.key"
cat > "$work/acl" <<ACL
# anonymous clients (the handshake test) may not publish or subscribe
user $USER_NAME
topic readwrite bench/#
ACL
ringmq_auth=yes
if ! "$tdir/ringmq" passwd -c -b "$work/ringmq.passwd" "$USER_NAME" "$PASSWORD" >/dev/null 2>&1; then
  ringmq_auth=no
  say "NOTE: this ringmq has no 'ringmq passwd' (password files not built in): its runs use the ACL and TLS only, and 'auth' is skipped for it"
fi
if command -v mosquitto_passwd >/dev/null; then
  mosquitto_passwd -c -b "$work/mosquitto.passwd" "$USER_NAME" "$PASSWORD"
  chmod 644 "$work/mosquitto.passwd"
fi
{
  echo "[runtime]"
  echo "shards = 1"
  [[ -n $IO ]] && echo "io = \"$IO\""
  echo "[auth]"
  echo "allow_anonymous = true"
  [[ $ringmq_auth == yes ]] && echo "password_file = \"$work/ringmq.passwd\""
  echo "acl_file = \"$work/acl\""
  echo "[[listener]]"
  echo "bind = \"127.0.0.1:$PORT\""
  echo "[listener.tls]"
  echo "cert_file = \"$work/server.pem\""
  echo "key_file = \"$work/server.key\""
} > "$work/ringmq.toml"
cat > "$work/mosquitto.conf" <<CONF
per_listener_settings false
allow_anonymous true
password_file $work/mosquitto.passwd
acl_file $work/acl
persistence false
set_tcp_nodelay true
max_queued_messages 100000
listener $PORT 127.0.0.1
certfile $work/server.pem
keyfile $work/server.key
log_dest stderr
log_type error
log_type warning
CONF

# realtime_loop_threads BROKER: SCHED_FIFO (priority RT) for the broker's
# event-loop threads, once they exist; helper threads keep their policy.
realtime_loop_threads() {
  sleep 0.3
  local t
  for t in /proc/"$broker_pid"/task/*; do
    case "$(cat "$t/comm" 2>/dev/null)" in
      ringmq-shard*|mosquitto) chrt -f -p "$RT" "${t##*/}" >/dev/null ;;
      ringmq-tls*|ringmq-auth*|ringmq-purge) chrt -f -p 1 "${t##*/}" >/dev/null ;;
    esac
  done
}
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
start_broker() {
  case "$1" in
    ringmq) nice -n "$NICE" taskset -c "$BROKER_CORE" "$tdir/ringmq" serve --config "$work/ringmq.toml" --log-level warn \
              >"$work/ringmq.log" 2>&1 & ;;
    mosquitto) nice -n "$NICE" taskset -c "$BROKER_CORE" "$MOSQUITTO" -c "$work/mosquitto.conf" >"$work/mosquitto.log" 2>&1 & ;;
  esac
  broker_pid=$!
  [[ -n $RT ]] && realtime_loop_threads "$1"
  local deadline=$(( $(date +%s) + 15 ))
  until port_open "$PORT"; do
    kill -0 "$broker_pid" 2>/dev/null || { echo "security.sh: $1 exited:" >&2; cat "$work/$1.log" >&2; exit 1; }
    [[ $(date +%s) -lt $deadline ]] || { echo "security.sh: $1 did not listen" >&2; exit 1; }
    sleep 0.1
  done
}
stop_broker() { kill "$broker_pid" 2>/dev/null || true; wait "$broker_pid" 2>/dev/null || true; broker_pid=""; sleep 0.5; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
LG=(nice -n "$NICE" taskset -c "$LOADGEN_CORE" "$tdir/loadgen")
# Clients other than the established flow: below the flow with RT.
LG_LOW=(${RT:+chrt -f 1} nice -n "$NICE" taskset -c "$STORM_CORE" "$tdir/loadgen")
TLS=(--port "$PORT" --transport tls --cafile "$work/ca.pem" --server-name localhost --threads 1 --json -q)
AUTH=(-u "$USER_NAME" -P "$PASSWORD")
# j FILE KEY: a field of loadgen's JSON line.
j() { python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).read().strip().splitlines()[-1]).get(sys.argv[2]))' "$1" "$2"; }
# per_second FILE: the flow's p99 for each second of its window.
per_second() { python3 -c 'import json,sys
j = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
print(" ".join(str(round(p.get("latency_us_p99") or 0)) for p in j.get("per_second", [])))' "$1"; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
flow() { # flow OUTFILE SECONDS: the established pub/sub flow (authenticated, TLS)
  ${RT:+chrt -f "$RT"} "${LG[@]}" pubsub "${TLS[@]}" "${AUTH[@]}" --pubs 1 --subs "$FLOW_SUBS" --rate "$FLOW_RATE" --qos 0 \
    --size 64 --warmup 1 --duration "$2" --drain 1 --topic "bench/flow/%i" --client-prefix "flow-$$" >"$1" 2>/dev/null
}


for b in "${brokers[@]}"; do
  # ---- CPU per delivered QoS 0 message over TLS ----
  if [[ " $BENCHES " == *" cpu "* ]]; then
    us_all=()
    for r in $(seq "$REPEATS"); do
      start_broker "$b"
      out="$work/cpu.json"
      "${LG[@]}" pubsub "${TLS[@]}" "${AUTH[@]}" --topology fanout --pubs 1 --subs "$CPU_SUBS" --qos 0 --size 64 \
        --rate "$CPU_RATE" --warmup 3 --duration "$CPU_WINDOW_S" --drain 1 --topic "bench/cpu/%i" >"$out" 2>/dev/null &
      lg=$!
      sleep 3.5
      t0=$(cpu_ticks "$broker_pid"); s0=$(date +%s.%N)
      sleep "$CPU_WINDOW_S"
      t1=$(cpu_ticks "$broker_pid"); s1=$(date +%s.%N)
      wait "$lg" || true
      stop_broker
      read -r us rate util p99 lost < <(python3 - "$out" "$t0" "$t1" "$s0" "$s1" "$hz" <<'PY'
import json, sys
j = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
t0, t1, s0, s1, hz = map(float, sys.argv[2:7])
rate = j.get("msgs_per_s_received") or 0
cpu_s = (t1 - t0) / hz
delivered = rate * (s1 - s0)
us = cpu_s * 1e6 / delivered if delivered else float("nan")
print(f"{us:.3f} {rate:.0f} {cpu_s / (s1 - s0) * 100:.0f} {j.get('latency_us_p99')} {j.get('lost', 0)}")
PY
)
      say "$b cpu run $r: ${us} µs CPU/delivery over TLS, ${rate} deliveries/s, broker core ${util}%, p99 ${p99} µs, lost ${lost}"
      us_all+=("$us")
    done
    say "$b cpu median: $(median "${us_all[@]}") µs broker CPU per delivered QoS 0 message over TLS"
  fi

  # ---- TLS handshakes per second, broker on one core ----
  if [[ " $BENCHES " == *" hs "* ]]; then
    rates=(); cpus=(); utils=()
    for r in $(seq "$REPEATS"); do
      start_broker "$b"
      out="$work/hs.json"
      t0=$(cpu_ticks "$broker_pid"); s0=$(date +%s.%N)
      "${LG_LOW[@]}" conn "${TLS[@]}" --count "$HS_COUNT" --rate 0 --concurrency 64 --duration 0 \
        --keep-alive 60 --client-prefix "hs-$$-$r" >"$out" 2>/dev/null || true
      t1=$(cpu_ticks "$broker_pid"); s1=$(date +%s.%N)
      stop_broker
      read -r cps opened failed p50 p99 cpu_us util < <(python3 - "$out" "$t0" "$t1" "$s0" "$s1" "$hz" <<'PY'
import json, sys
j = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
t0, t1, s0, s1, hz = map(float, sys.argv[2:7])
opened = j.get("conns_opened") or 0
cpu_s = (t1 - t0) / hz
# The window also holds the disconnects; the broker's CPU per handshake
# therefore includes accepting and closing each connection.
cpu_us = cpu_s * 1e6 / opened if opened else float("nan")
print(f"{j.get('conns_per_s', 0):.0f} {opened} {j.get('conns_failed')} {j.get('latency_us_p50')} {j.get('latency_us_p99')} {cpu_us:.0f} {cpu_s / (s1 - s0) * 100:.0f}")
PY
)
      say "$b hs run $r: ${cps} TLS handshakes+CONNECT/s (${opened} opened, ${failed} failed), connect p50 ${p50} µs p99 ${p99} µs, broker CPU ${cpu_us} µs per connection (incl. close), broker core ${util}% over the run"
      rates+=("$cps"); cpus+=("$cpu_us"); utils+=("$util")
    done
    say "$b hs median: $(median "${rates[@]}") handshakes/s measured, $(median "${cpus[@]}") µs broker CPU per handshake (=> $(python3 -c "print(round(1e6/$(median "${cpus[@]}")))") per core-second), broker core $(median "${utils[@]}")%"
  fi

  # ---- CONNECTs per second with password verification, established flow meanwhile ----
  if [[ " $BENCHES " == *" auth "* ]] && { [[ $b != ringmq ]] || [[ $ringmq_auth == yes ]]; }; then
    cps_all=(); p99_all=()
    for r in $(seq "$REPEATS"); do
      start_broker "$b"
      flow_out="$work/flow.json"; conn_out="$work/auth.json"
      flow "$flow_out" "$AUTH_FLOW_S" &
      fl=$!
      sleep 2
      t0=$(cpu_ticks "$broker_pid"); s0=$(date +%s.%N)
      "${LG_LOW[@]}" conn "${TLS[@]}" "${AUTH[@]}" --count "$AUTH_COUNT" --rate 0 --concurrency 32 --duration 0 \
        --client-prefix "auth-$$-$r" >"$conn_out" 2>/dev/null || true
      t1=$(cpu_ticks "$broker_pid"); s1=$(date +%s.%N)
      util=$(python3 -c "print(round(($t1 - $t0) / $hz / ($s1 - $s0) * 100))")
      wait "$fl" || true
      stop_broker
      cps=$(j "$conn_out" conns_per_s); failed=$(j "$conn_out" conns_failed); cp99=$(j "$conn_out" latency_us_p99)
      fp99=$(j "$flow_out" latency_us_p99); lost=$(j "$flow_out" lost)
      cps=$(python3 -c "print(round($cps))")
      say "$b auth run $r: ${cps} password CONNECTs/s over TLS (${failed} failed, connect p99 ${cp99} µs); established flow p99 ${fp99} µs meanwhile, lost ${lost}; broker core ${util}% during the CONNECTs"
      cps_all+=("$cps"); p99_all+=("$fp99")
    done
    say "$b auth median: $(median "${cps_all[@]}") password CONNECTs/s, flow p99 $(median "${p99_all[@]}") µs meanwhile"
  fi

  # ---- flow p99 without and with a TLS handshake storm ----
  if [[ " $BENCHES " == *" storm "* ]]; then
    base_all=(); storm_all=(); hs_all=()
    for r in $(seq "$REPEATS"); do
      start_broker "$b"
      flow "$work/base.json" "$FLOW_S"
      stop_broker
      start_broker "$b"
      if [[ -n ${PERF_STORM:-} ]]; then
        # Samples of the broker's threads (timestamps, no call graphs)
        # over the flow's window with the storm.
        perf record -q -F 2999 -T -p "$broker_pid" -o "$PERF_STORM.$b.$r" -- sleep $(( FLOW_S + 2 )) >/dev/null 2>&1 &
      fi
      flow "$work/storm.json" "$FLOW_S" &
      fl=$!
      sleep 1
      "${LG_LOW[@]}" conn "${TLS[@]}" --count $(( STORM_RATE * FLOW_S )) --rate "$STORM_RATE" --concurrency 64 \
        --duration "$STORM_HOLD_S" --client-prefix "storm-$$-$r" >"$work/storm-conn.json" 2>/dev/null || true
      wait "$fl" || true
      stop_broker
      base=$(j "$work/base.json" latency_us_p99); storm=$(j "$work/storm.json" latency_us_p99)
      hs=$(python3 -c "print(round($(j "$work/storm-conn.json" conns_per_s)))")
      say "$b storm run $r: flow p99 ${base} µs alone, ${storm} µs with ${hs} TLS handshakes/s arriving (lost $(j "$work/base.json" lost) / $(j "$work/storm.json" lost))"
      say "$b storm run $r: flow p99 per second (µs), alone: $(per_second "$work/base.json"); with the storm: $(per_second "$work/storm.json")"
      base_all+=("$base"); storm_all+=("$storm"); hs_all+=("$hs")
    done
    say "$b storm median: flow p99 $(median "${base_all[@]}") µs alone, $(median "${storm_all[@]}") µs with $(median "${hs_all[@]}") handshakes/s"
  fi
done
say "results in $OUT"
