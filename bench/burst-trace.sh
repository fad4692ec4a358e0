#!/usr/bin/env bash
# Where the time of one burst of issue 11's scenario (b) goes: one round of
# bench/cpu-scenarios.sh's (b) (1 publisher x 2,400 msg/s in bursts of 10,
# one message per write, -> 100 subscribers) against ringmq, with a
# system-wide `perf record` of loopback transmits, io_uring_enter,
# io_uring completions and context switches for SECONDS, then
# bench/burst_trace.py's breakdown per burst (the publisher's first to
# last write, the shard's first receive, the hold, the fan-out's 100
# sends) next to loadgen's latency.
#
#   bench/burst-trace.sh [SECONDS]      (default 2)
#
# Env: BIN (a directory with ringmq and loadgen; default
# $CARGO_TARGET_DIR/release), PORT (32190), RT (e.g. 10: SCHED_FIFO for the
# shard and loadgen, as cpu-scenarios.sh), KEEP (a path prefix: keep the
# perf script output there). Broker on core 1, loadgen on core 0. The
# tracing itself slows the sends (~20%): compare breakdowns, not absolute
# figures, with cpu-scenarios.sh. Needs perf with tracepoint access (root).
# Wrap in the machine's benchmark lock: flock /tmp/ringmq-bench.lock ...
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
secs="${1:-2}" port="${PORT:-32190}" rt="${RT:-}"
bin="${BIN:-${CARGO_TARGET_DIR:-$root/target}/release}"
work="$(mktemp -d /tmp/burst-trace.XXXXXX)"
bp=""
trap '[[ -z $bp ]] || kill "$bp" 2>/dev/null || true; rm -rf "$work"' EXIT
taskset -c 1 "$bin/ringmq" --listen "127.0.0.1:$port" --shards 1 --log-level warn >"$work/broker.log" 2>&1 &
bp=$!
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
if [[ -n $rt ]]; then
  for t in /proc/"$bp"/task/*; do
    case "$(cat "$t/comm")" in ringmq-shard*) chrt -f -p "$rt" "${t##*/}" ;; *) chrt -f -p 1 "${t##*/}" ;; esac
  done
fi
${rt:+chrt -f "$rt"} taskset -c 0 "$bin/loadgen" pubsub --port "$port" --topology fanout --pubs 1 --subs 100 \
  --qos 0 --rate 2400 --burst 10 --write-each --rx-thread --size 64 --threads 1 --warmup 3 \
  --duration $((secs + 2)) --drain 1 --json -q --topic "cpd/%i" >"$work/lg.json" 2>"$work/lg.err" &
lg=$!
sleep 4
echo "burst-trace $(date -u +%FT%TZ): load average $(cut -d' ' -f1-3 /proc/loadavg), SCHED_FIFO ${rt:-off}, $("$bin/ringmq" --version | head -1); shared machine"
perf record -q -a -e net:net_dev_xmit -e sched:sched_switch -e syscalls:sys_enter_io_uring_enter \
  -e syscalls:sys_exit_io_uring_enter -e io_uring:io_uring_complete -o "$work/perf.data" -- sleep "$secs" >/dev/null 2>&1
wait "$lg" || true
kill "$bp"; wait "$bp" || true; bp=""
perf script -i "$work/perf.data" -F comm,tid,cpu,time,event,trace >"$work/script" 2>/dev/null
python3 - "$work/lg.json" <<'PY'
import json, sys
j = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
print("loadgen: latency p50 %.0f p90 %.0f p99 %.0f µs, send lag p50 %.0f p99 %.0f µs, lost %s" % (
    j["latency_us_p50"], j["latency_us_p90"], j["latency_us_p99"],
    j["send_lag_us_p50"], j["send_lag_us_p99"], j.get("lost", 0)))
PY
python3 "$root/bench/burst_trace.py" "$work/script"
[[ -z ${KEEP:-} ]] || cp "$work/script" "$KEEP.script"
