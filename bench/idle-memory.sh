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
# "--io epoll"), CLOSE_WAIT_S (3: the "after" figure
# is taken this long after loadgen ended; the line also says how long the
# broker took to close every connection, sampled every 0.1 s, or that it
# had not yet), CPU_WINDOW_S (10), KEEP_ALIVE_S (60),
# RATE (connections per second, 5000), SETTLE_S (2: seconds between the
# last connection established and the held RSS and CPU window), RINGMQ_BIN / LOADGEN_BIN (other builds),
# SMAPS=1 (also print where the RSS lies: /proc/PID/smaps grouped by mapping,
# at each of the three points), TRAFFIC_S (0; N > 0: after that, a pub/sub
# run of N s, 4 publishers x 1,000 msg/s -> 4 subscribers, each message its
# own write, so every receive takes the next buffer of the native loop's
# ring and all of it becomes resident; RSS CLOSE_WAIT_S s after it ended),
# WARM=1 (take the idle figure after one connection came and went: the code
# and library pages the first connection touches are then counted in the
# start, not in what is "given back"; the plain figure is WARM=0),
# START_WAIT_S (0; N > 0: then wait N s more before taking the idle figure:
# 11 takes it after the broker's first $SYS publish (sys_interval_s 10),
# whose retained messages and load averages (libm's exp) are the idle
# broker's own steady state, not memory the connections kept).
# THREADS=1 (also print the broker's CPU ticks per thread over the
# window), SHARDS (ringmq's --shards, default 1), PER_PROC (connections per loadgen
# process; default: what one process may open, hard limit - 1024),
# TIME_WAIT_MAX_S (90: before starting a broker, wait up to this long for an
# earlier run's TIME_WAIT sockets on these ports to go).
# Needs target/release/{ringmq,loadgen}; mosquitto from ../shared/peers.
# The open-file limit: the soft limit is raised to the hard one (the hard
# one too where the process may, CAP_SYS_RESOURCE). Past what one process
# may open (hard limit - 1024), the connections are split over several
# loadgen processes, each to its own listener port (PORT, PORT+1, ...: one
# ephemeral port range per destination port, and ringmq listens on all of
# them), with client ids idle0-conn-<i>, idle1-conn-<i>, ...; the RSS per
# connection is over all of them. A broker that holds one descriptor per
# connection (mosquitto, ringmq-monoio, ringmq with
# RINGMQ_FLAGS="--io epoll") then cannot take N, and the script stops and
# says so; ringmq's native loop holds its connections as direct
# descriptors in each shard's ring (runtime.native_direct_fds, each table
# at most the open-file limit), so it needs SHARDS x (hard limit - 1024)
# >= N: e.g. N=100000 SHARDS=6 under a hard limit of 20,000.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
N="${N:-10000}" PORT="${PORT:-18950}" CLOSE_WAIT_S="${CLOSE_WAIT_S:-3}"
CPU_WINDOW_S="${CPU_WINDOW_S:-10}" KEEP_ALIVE_S="${KEEP_ALIVE_S:-60}" RATE="${RATE:-5000}"
SETTLE_S="${SETTLE_S:-2}"
# Logs of this run (the broker's, each loadgen's): a directory of its own,
# so runs of several people at once do not overwrite each other's.
work="$(mktemp -d /tmp/idle-memory.XXXXXX)"
echo "idle-memory: logs in $work"
tdir="${CARGO_TARGET_DIR:-target}/release"
loadgen="${LOADGEN_BIN:-$tdir/loadgen}"
brokers=("$@"); [[ ${#brokers[@]} -gt 0 ]] || brokers=(ringmq mosquitto)
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
huge_kib() { awk '/^AnonHugePages/ {print $2}' "/proc/$1/smaps_rollup" 2>/dev/null || echo 0; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# "tid name ticks" per thread, sorted by tid (THREADS=1).
threads() { for t in /proc/"$1"/task/*; do echo "${t##*/} $(tr -d ' ' <"$t/comm") $(awk '{print $14 + $15}' "$t/stat")"; done 2>/dev/null | sort; }
smaps() { [[ ${SMAPS:-0} == 1 ]] && python3 "$root/bench/smaps_summary.py" "$1" "$2" || true; }
SHARDS="${SHARDS:-1}"
fds=$(( N + 1024 ))
if [[ $(ulimit -Hn) != unlimited && $(ulimit -Hn) -lt $fds ]]; then
  ulimit -Hn "$fds" 2>/dev/null || true
fi
ulimit -n "$(ulimit -Hn)"
hard=$(ulimit -Hn); [[ $hard == unlimited ]] && hard=$(( fds * 2 ))
# Connections per loadgen process, and the processes (one port each).
per_proc=${PER_PROC:-$(( hard - 1024 ))}; [[ $per_proc -gt $N ]] && per_proc=$N
procs=$(( (N + per_proc - 1) / per_proc ))
connect_s=$(( N / RATE + 1 ))
listens=(); for ((i = 0; i < procs; i++)); do listens+=(--listen "127.0.0.1:$(( PORT + i ))"); done
for b in "${brokers[@]}"; do
  direct=0
  case "$b" in
    ringmq|ringmq-native) [[ " ${RINGMQ_FLAGS:-} " != *" --io epoll "* && " ${RINGMQ_FLAGS:-} " != *" --io uring "* ]] && direct=1 ;;
  esac
  if [[ $procs -gt 1 && $b != ringmq* ]]; then
    echo "idle-memory: $b: N=$N is split over $procs loadgen processes on ports $PORT-$(( PORT + procs - 1 )); only ringmq listens on several ports here (and $b would need $fds open files, the hard limit is $hard)" >&2
    continue
  fi
  if [[ $fds -gt $hard && $direct == 0 ]]; then
    echo "idle-memory: $b: N=$N needs $fds open files in one process; the hard limit is $hard and cannot be raised here (raising it needs CAP_SYS_RESOURCE): the largest N that fits is $(( hard - 1024 ))" >&2
    continue
  fi
  if [[ $direct == 1 && $(( SHARDS * (hard - 1024) )) -lt $N ]]; then
    echo "idle-memory: $b: N=$N needs SHARDS >= $(( (N + hard - 1025) / (hard - 1024) )) (each shard's table of direct descriptors is at most the open-file limit, $hard)" >&2
    continue
  fi
  # An earlier run's TIME_WAIT sockets on these ports (up to N of them,
  # 60 s on Linux) slowed the next ramp to a quarter of its rate, until one
  # loadgen process ended before the others had connected and the run was
  # NOT VALID: wait, at most TIME_WAIT_MAX_S, for fewer than 1,000.
  for _ in $(seq 1 "${TIME_WAIT_MAX_S:-90}"); do
    tw=$(ss -Htn state time-wait "( sport >= :$PORT and sport < :$(( PORT + procs )) ) or ( dport >= :$PORT and dport < :$(( PORT + procs )) )" | wc -l)
    [[ $tw -lt 1000 ]] && break
    sleep 1
  done
  case "$b" in
    ringmq) "${RINGMQ_BIN:-$tdir/ringmq}" "${listens[@]}" --shards "$SHARDS" --log-level warn ${RINGMQ_FLAGS:-} >"$work/ringmq.log" 2>&1 & pid=$!; sleep 1 ;;
    ringmq-native) "${RINGMQ_BIN:-$tdir/ringmq}" "${listens[@]}" --shards "$SHARDS" --log-level warn --io native ${RINGMQ_FLAGS:-} >"$work/ringmq.log" 2>&1 & pid=$!; sleep 1 ;;
    ringmq-monoio) "${RINGMQ_BIN:-$tdir/ringmq}" "${listens[@]}" --shards "$SHARDS" --log-level warn --io uring ${RINGMQ_FLAGS:-} >"$work/ringmq.log" 2>&1 & pid=$!; sleep 1 ;;
    *) pid=$("$root/../shared/peers/start-peer.sh" "$b" "$PORT") ;;
  esac
  if [[ ${WARM:-0} == 1 ]]; then
    "$loadgen" conn --port "$PORT" --count 1 --rate 10 --duration 1 -q >/dev/null 2>&1 || true
    sleep "$CLOSE_WAIT_S"
  fi
  [[ ${START_WAIT_S:-0} -gt 0 ]] && sleep "$START_WAIT_S"
  before=$(rss_kib "$pid")
  smaps "$pid" "$b idle"
  # Each process holds its connections for as long as the last one
  # needs to connect, plus the CPU window; with several processes, twice
  # the nominal connect time (on a loaded machine they connect at half the
  # rate or less). The held figure is still taken SETTLE_S after the last
  # connection is up.
  lgs=()
  for ((i = 0; i < procs; i++)); do
    count=$(( N - i * per_proc )); [[ $count -gt $per_proc ]] && count=$per_proc
    "$loadgen" conn --port "$(( PORT + i ))" --count "$count" --rate "$(( RATE / procs + 1 ))" \
      --duration $(( CPU_WINDOW_S + SETTLE_S + 2 + (procs > 1 ? 2 * connect_s + 10 : 0) )) --client-prefix "idle$i" \
      --keep-alive "$KEEP_ALIVE_S" -q >"$work/loadgen.$i.log" 2>&1 &
    lgs+=($!)
  done
  # Held: every connection established (counted by the kernel), then
  # SETTLE_S.
  for _ in $(seq 1 $(( connect_s * 10 + 600 ))); do
    up=$(ss -Htn state established "( sport >= :$PORT and sport < :$(( PORT + procs )) )" | wc -l)
    [[ $up -ge $N ]] && break
    sleep 0.2
  done
  if [[ $up -lt $N ]]; then
    echo "idle-memory: $b: NOT VALID: only $up of $N connections were established when the held figure was taken (see $work/loadgen.*.log)" >&2
  fi
  sleep "$SETTLE_S"
  held=$(rss_kib "$pid")
  smaps "$pid" "$b held"
  threads "$pid" >"$work/threads.0"
  t0=$(cpu_ticks "$pid"); sleep "$CPU_WINDOW_S"; t1=$(cpu_ticks "$pid")
  if [[ ${THREADS:-0} == 1 ]]; then
    threads "$pid" | join -a 1 - <(sort "$work/threads.0") |
      awk '{d = $3 - ($5 == "" ? 0 : $5); if (d > 0) t[$2] += d} END {for (n in t) printf "  thread %s: %d ticks\n", n, t[n]}' | sort -k3 -rn
  fi
  held_huge=$(huge_kib "$pid")
  for lg in "${lgs[@]}"; do wait "$lg" || true; done
  # The closes: the broker's side of a connection stays (CLOSE-WAIT,
  # LAST-ACK) until the broker closed it. Sampled every 0.1 s for at most
  # CLOSE_WAIT_S; the "after" figure is taken CLOSE_WAIT_S after loadgen
  # ended whatever it shows, and says when closes were still running.
  closing_from=$(date +%s%N); closes=""
  while :; do
    open=$(ss -Htn state connected exclude time-wait "( sport >= :$PORT and sport < :$(( PORT + procs )) )" | wc -l)
    waited_ms=$(( ($(date +%s%N) - closing_from) / 1000000 ))
    if [[ $open -eq 0 ]]; then closes="; the broker closed them all within ${waited_ms} ms"; break; fi
    if [[ $waited_ms -ge $(( CLOSE_WAIT_S * 1000 )) ]]; then
      closes="; NOTE: $open connections still open on the broker side ${CLOSE_WAIT_S} s after loadgen ended (the closes were still running: raise CLOSE_WAIT_S)"; break
    fi
    sleep 0.1
  done
  left_ms=$(( CLOSE_WAIT_S * 1000 - ($(date +%s%N) - closing_from) / 1000000 ))
  [[ $left_ms -gt 0 ]] && sleep "$(awk -v ms="$left_ms" 'BEGIN {printf "%.3f", ms / 1000}')"
  after=$(rss_kib "$pid")
  after_huge=$(huge_kib "$pid")
  smaps "$pid" "$b after"
  traffic=""
  if [[ ${TRAFFIC_S:-0} -gt 0 ]]; then
    "$loadgen" pubsub --port "$PORT" --pubs 4 --subs 4 --rate 1000 --size 64 --write-each \
      --warmup 1 --duration "$TRAFFIC_S" --drain 1 -q >"$work/loadgen-traffic.log" 2>&1 || true
    sleep "$CLOSE_WAIT_S"
    smaps "$pid" "$b after traffic"
    traffic=$(awk -v b="$before" -v t="$TRAFFIC_S" '/^VmRSS/ {printf "; after %s s of pub/sub traffic and its closes: %.1f MiB (%+.0f%% of idle)", t, $2/1024, ($2-b)*100/b}' "/proc/$pid/status")
  fi
  kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
  python3 -c "import sys,os; b,h,a,n,c,w,hh,ah=map(int,sys.argv[1:]); hz=os.sysconf('SC_CLK_TCK'); print(f'$b: RSS {b/1024:.1f} MiB idle, {h/1024:.1f} MiB with {n} connections: {(h-b)*1024/n:.0f} bytes per connection; CPU {c*100/hz/w:.2f}% of a core over {w} s held; {a/1024:.1f} MiB ${CLOSE_WAIT_S} s after they closed ({(a-b)*100/b:+.0f}% of idle); AnonHugePages {hh/1024:.1f} MiB held, {ah/1024:.1f} MiB after$closes$traffic')" \
    "$before" "$held" "$after" "$N" "$(( t1 - t0 ))" "$CPU_WINDOW_S" "$held_huge" "$after_huge"
  for ((i = 0; i < procs; i++)); do grep -hE "connected|fail" "$work/loadgen.$i.log" | tail -2 || true; done
  [[ $b == ringmq* ]] && { grep -E "WARN|ERROR" "$work/ringmq.log" | grep -v "connection log" | head -3 || true; }
  sleep 1
done
