"""Per-burst breakdown of a `perf script` of bench/burst-trace.sh.

A burst: the publisher's ten 139-byte loopback transmits (a gap of over
1 ms starts the next). For each: the publisher's first to last write
(spread), its first write to the shard's first receive completion
(wake), the shard's last receive of the burst to its fan-out's
io_uring_enter (hold: routing plus waiting), that enter (fan-out: the
100 sends run inline in it), and the first write to the 99th subscriber's
transmit (total: what loadgen's p99 sees, less the publisher's send lag
of its first message). Prints p10/p50/p90/p99/max of each, in µs.
"""
import re
import sys
from collections import Counter

PAT = re.compile(r"^\s*(\S.*?)\s+(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+(\S+):\s*(.*)$")
MSG = 73  # bytes of one of loadgen's 64-byte-payload PUBLISH packets


def main(path):
    events = []
    for line in open(path):
        m = PAT.match(line)
        if m:
            comm, _tid, _cpu, t, event, rest = m.groups()
            events.append((float(t) * 1e6, comm, event, rest))
    events.sort(key=lambda e: e[0])
    bursts, cur = [], None
    for t, comm, event, rest in events:
        publisher = comm.startswith("loadgen-") and comm != "loadgen-rx"
        if event == "net:net_dev_xmit" and publisher and "len=139" in rest:
            if cur is None or t - cur["w"][-1] > 1000:
                cur = {"w": [], "recv": [], "fan": None, "fanend": None, "f": []}
                bursts.append(cur)
            cur["w"].append(t)
            continue
        if cur is None or not comm.startswith("ringmq-shard"):
            continue
        if event == "io_uring:io_uring_complete" and re.search(r"user_data 0x[0-9a-f]*02,", rest):
            res = int(re.search(r"result (-?\d+)", rest).group(1))
            if 0 < res <= 10 * MSG and res % MSG == 0 and cur["fan"] is None:
                cur["recv"].append(t)
        elif event == "syscalls:sys_enter_io_uring_enter":
            n = int(re.search(r"to_submit: 0x([0-9a-f]+)", rest).group(1), 16)
            if n >= 64 and cur["fan"] is None:
                cur["fan"] = t
        elif event == "syscalls:sys_exit_io_uring_enter":
            if cur["fan"] is not None and cur["fanend"] is None:
                cur["fanend"] = t
        elif event == "net:net_dev_xmit" and int(re.search(r"len=(\d+)", rest).group(1)) > 300:
            cur["f"].append(t)
    rows = []
    for b in bursts[1:-1]:
        if len(b["w"]) != 10 or not b["recv"] or b["fan"] is None or b["fanend"] is None or len(b["f"]) < 100:
            continue
        w1 = b["w"][0]
        rows.append({
            "spread": b["w"][-1] - w1,
            "wake": b["recv"][0] - w1,
            "receives": len(b["recv"]),
            "hold": b["fan"] - b["recv"][-1],
            "fan-out": b["fanend"] - b["fan"],
            "total": b["f"][98] - w1,
        })
    if not rows:
        print("burst_trace: no complete burst found")
        return

    def q(xs, p):
        xs = sorted(xs)
        return xs[min(len(xs) - 1, int(p * len(xs)))]

    print(f"bursts: {len(rows)} (µs; receives: completions per burst)")
    for k in ["spread", "wake", "receives", "hold", "fan-out", "total"]:
        xs = [r[k] for r in rows]
        print(f"  {k:9s} p10 {q(xs, .1):6.0f} p50 {q(xs, .5):6.0f} p90 {q(xs, .9):6.0f} p99 {q(xs, .99):6.0f} max {max(xs):6.0f}")
    print("  receives per burst:", dict(sorted(Counter(r["receives"] for r in rows).items())))


if __name__ == "__main__":
    main(sys.argv[1])
