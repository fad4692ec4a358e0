#!/usr/bin/env bash
# Broker memory per idle connection, idle CPU, and memory given back:
# RSS before, with N idle MQTT connections held (CONNECT done, keep-alive
# KEEP_ALIVE_S, nothing else), and CLOSE_WAIT_S seconds after they all
# closed; the broker's CPU over CPU_WINDOW_S seconds while they are held.
#
#   bench/idle-memory.sh [BROKER...]     BROKER: ringmq | ringmq-native | ringmq-monoio | mosquitto
#                                        (default ringmq mosquitto; ringmq runs the default
#                                        `--io auto`, ringmq-native `--io native` (the
#                                        io_uring shard loop), ringmq-monoio `--io uring`)
# Env: N (connections, default 10000; up to 100,000 and more: above ~28,000
# loadgen spreads them over source addresses 127.0.0.2, .3, ..., past the
# ephemeral-port range of one address), PORT (18950), RINGMQ_FLAGS (e.g.
# "--io epoll"), CLOSE_WAIT_S (3), CPU_WINDOW_S (10), KEEP_ALIVE_S (60),
# RATE (connections per second, 5000), RINGMQ_BIN / LOADGEN_BIN (other builds),
# SMAPS=1 (also print where the RSS lies: /proc/PID/smaps grouped by mapping,
# at each of the three points), TRAFFIC_S (0; N > 0: after that, a pub/sub
# run of N s, 4 publishers x 1,000 msg/s -> 4 subscribers, each message its
# own write, so every receive takes the next buffer of the native loop's
# ring and all of it becomes resident; RSS CLOSE_WAIT_S s after it ended),
# WARM=1 (take the idle figure after one connection came and went: the code
# and library pages the first connection touches are then counted in the
# start, not in what is "given back"; the plain figure is WARM=0).
# Needs target/release/{ringmq,loadgen}; mosquitto from ../shared/peers.
# The open-file limit is raised to fit N (N + 1024 for the broker and for
# loadgen each): the soft limit to the hard one, the hard one too where the
# process may (CAP_SYS_RESOURCE); otherwise the script stops and says the
# largest N that fits.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
N="${N:-10000}" PORT="${PORT:-18950}" CLOSE_WAIT_S="${CLOSE_WAIT_S:-3}"
CPU_WINDOW_S="${CPU_WINDOW_S:-10}" KEEP_ALIVE_S="${KEEP_ALIVE_S:-60}" RATE="${RATE:-5000}"
tdir="${CARGO_TARGET_DIR:-target}/release"
loadgen="${LOADGEN_BIN:-$tdir/loadgen}"
brokers=("$@"); [[ ${#brokers[@]} -gt 0 ]] || brokers=(ringmq mosquitto)
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
huge_kib() { awk '/^AnonHugePages/ {print $2}' "/proc/$1/smaps_rollup" 2>/dev/null || echo 0; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
smaps() { [[ ${SMAPS:-0} == 1 ]] && python3 "$root/bench/smaps_summary.py" "$1" "$2" || true; }
fds=$(( N + 1024 ))
if [[ $(ulimit -Hn) != unlimited && $(ulimit -Hn) -lt $fds ]]; then
  ulimit -Hn "$fds" 2>/dev/null || {
    echo "idle-memory: N=$N needs $fds open files in the broker and in loadgen each; the hard limit is $(ulimit -Hn) and cannot be raised here (raising it needs CAP_SYS_RESOURCE): the largest N that fits is $(( $(ulimit -Hn) - 1024 ))" >&2
    exit 2
  }
fi
ulimit -n "$(ulimit -Hn)"
connect_s=$(( N / RATE + 1 ))
for b in "${brokers[@]}"; do
  case "$b" in
    ringmq) "${RINGMQ_BIN:-$tdir/ringmq}" --listen "127.0.0.1:$PORT" --shards 1 --log-level warn ${RINGMQ_FLAGS:-} >/tmp/idle-ringmq.log 2>&1 & pid=$!; sleep 1 ;;
    ringmq-native) "${RINGMQ_BIN:-$tdir/ringmq}" --listen "127.0.0.1:$PORT" --shards 1 --log-level warn --io native ${RINGMQ_FLAGS:-} >/tmp/idle-ringmq.log 2>&1 & pid=$!; sleep 1 ;;
    ringmq-monoio) "${RINGMQ_BIN:-$tdir/ringmq}" --listen "127.0.0.1:$PORT" --shards 1 --log-level warn --io uring ${RINGMQ_FLAGS:-} >/tmp/idle-ringmq.log 2>&1 & pid=$!; sleep 1 ;;
    *) pid=$("$root/../shared/peers/start-peer.sh" "$b" "$PORT") ;;
  esac
  if [[ ${WARM:-0} == 1 ]]; then
    "$loadgen" conn --port "$PORT" --count 1 --rate 10 --duration 1 -q >/dev/null 2>&1 || true
    sleep "$CLOSE_WAIT_S"
  fi
  before=$(rss_kib "$pid")
  smaps "$pid" "$b idle"
  "$loadgen" conn --port "$PORT" --count "$N" --rate "$RATE" --duration $(( CPU_WINDOW_S + 4 )) \
    --keep-alive "$KEEP_ALIVE_S" -q >/tmp/idle-loadgen.log 2>&1 &
  lg=$!
  # Held: every connection established (counted by the kernel), then 2 s.
  for _ in $(seq 1 $(( connect_s * 10 + 600 ))); do
    up=$(ss -Htn state established "( sport = :$PORT )" | wc -l)
    [[ $up -ge $N ]] && break
    sleep 0.2
  done
  sleep 2
  held=$(rss_kib "$pid")
  smaps "$pid" "$b held"
  t0=$(cpu_ticks "$pid"); sleep "$CPU_WINDOW_S"; t1=$(cpu_ticks "$pid")
  held_huge=$(huge_kib "$pid")
  wait "$lg" || true
  sleep "$CLOSE_WAIT_S"
  after=$(rss_kib "$pid")
  after_huge=$(huge_kib "$pid")
  smaps "$pid" "$b after"
  traffic=""
  if [[ ${TRAFFIC_S:-0} -gt 0 ]]; then
    "$loadgen" pubsub --port "$PORT" --pubs 4 --subs 4 --rate 1000 --size 64 --write-each \
      --warmup 1 --duration "$TRAFFIC_S" --drain 1 -q >/tmp/idle-loadgen-traffic.log 2>&1 || true
    sleep "$CLOSE_WAIT_S"
    smaps "$pid" "$b after traffic"
    traffic=$(awk -v b="$before" -v t="$TRAFFIC_S" '/^VmRSS/ {printf "; after %s s of pub/sub traffic and its closes: %.1f MiB (%+.0f%% of idle)", t, $2/1024, ($2-b)*100/b}' "/proc/$pid/status")
  fi
  kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
  python3 -c "import sys,os; b,h,a,n,c,w,hh,ah=map(int,sys.argv[1:]); hz=os.sysconf('SC_CLK_TCK'); print(f'$b: RSS {b/1024:.1f} MiB idle, {h/1024:.1f} MiB with {n} connections: {(h-b)*1024/n:.0f} bytes per connection; CPU {c*100/hz/w:.2f}% of a core over {w} s held; {a/1024:.1f} MiB ${CLOSE_WAIT_S} s after they closed ({(a-b)*100/b:+.0f}% of idle); AnonHugePages {hh/1024:.1f} MiB held, {ah/1024:.1f} MiB after$traffic')" \
    "$before" "$held" "$after" "$N" "$(( t1 - t0 ))" "$CPU_WINDOW_S" "$held_huge" "$after_huge"
  grep -E "connected|fail" /tmp/idle-loadgen.log | tail -2 || true
  sleep 1
done
