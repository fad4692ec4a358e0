#!/usr/bin/env bash
# Broker memory per idle connection: RSS with N idle MQTT connections held
# (CONNECT done, keep-alive 60 s, nothing else) minus RSS before, divided by N;
# then RSS CLOSE_WAIT_S seconds after they all closed (memory given back).
#
#   bench/idle-memory.sh [BROKER...]     BROKER: ringmq | mosquitto   (default both)
# Env: N (connections, default 10000; the open-file limit bounds it), PORT (18950),
# RINGMQ_FLAGS (e.g. "--io epoll"), CLOSE_WAIT_S (3), RINGMQ_BIN (another build).
# Needs target/release/{ringmq,loadgen}; mosquitto from ../shared/peers.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
N="${N:-10000}" PORT="${PORT:-18950}" CLOSE_WAIT_S="${CLOSE_WAIT_S:-3}"
tdir="${CARGO_TARGET_DIR:-target}/release"
brokers=("$@"); [[ ${#brokers[@]} -gt 0 ]] || brokers=(ringmq mosquitto)
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
ulimit -n "$(ulimit -Hn)"
for b in "${brokers[@]}"; do
  case "$b" in
    ringmq) "${RINGMQ_BIN:-$tdir/ringmq}" --listen "127.0.0.1:$PORT" --shards 1 --log-level warn ${RINGMQ_FLAGS:-} >/tmp/idle-ringmq.log 2>&1 & pid=$!; sleep 1 ;;
    *) pid=$("$root/../shared/peers/start-peer.sh" "$b" "$PORT") ;;
  esac
  before=$(rss_kib "$pid")
  "$tdir/loadgen" conn --port "$PORT" --count "$N" --rate 5000 --duration 6 --keep-alive 60 -q >/tmp/idle-loadgen.log 2>&1 &
  lg=$!
  sleep $(( N / 5000 + 4 ))
  held=$(rss_kib "$pid")
  wait "$lg" || true
  sleep "$CLOSE_WAIT_S"
  after=$(rss_kib "$pid")
  kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
  python3 -c "import sys; b,h,a,n=map(int,sys.argv[1:]); print(f'$b: RSS {b/1024:.1f} MiB idle, {h/1024:.1f} MiB with {n} connections: {(h-b)*1024/n:.0f} bytes per connection; {a/1024:.1f} MiB ${CLOSE_WAIT_S} s after they closed ({(a-b)*100/b:+.0f}% of idle)')" "$before" "$held" "$after" "$N"
  grep -E "connected|fail" /tmp/idle-loadgen.log | tail -2 || true
  sleep 1
done
