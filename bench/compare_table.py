#!/usr/bin/env python3
"""Medians of compare.sh runs as a markdown table.

usage: compare_table.py results.tsv [median-runs.txt]
       compare_table.py --one run.json      (one-line summary of a run)

results.tsv columns: broker, scenario, repeat, json (loadgen --json output),
cpu_s (broker utime+stime during the run), rss_kib (largest broker VmRSS
sampled during the run), loadavg_1m (machine load when the run ended). Writes the table on stdout; with a second argument,
also writes there the JSON file of each (scenario, broker)'s median run by
p99 latency (for the HTML report).
"""
import json
import statistics
import sys
from collections import OrderedDict


NOTES = []


def load(path):
    rows = []
    with open(path) as f:
        for line in f:
            if line.startswith("#"):
                NOTES.append(line[1:].strip())
                continue
            if line.startswith("broker\t") or not line.strip():
                continue
            fields = line.rstrip("\n").split("\t")
            broker, scenario, repeat, js, cpu_s, rss = fields[:6]
            load = float(fields[6]) if len(fields) > 6 and fields[6] else None
            try:
                with open(js) as j:
                    summary = json.loads(j.read().strip().splitlines()[-1])
            except (OSError, ValueError, IndexError):
                summary = None
            rows.append((broker, scenario, int(repeat), js, float(cpu_s), int(rss or 0), summary, load))
    return rows


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v, digits=0):
    if v is None:
        return "–"
    return f"{v:,.{digits}f}"


def one(path):
    with open(path) as f:
        s = json.loads(f.read().strip().splitlines()[-1])
    return "{:.0f} msg/s received, p50 {:.0f} us, p99 {:.0f} us, lost {}, errors {}".format(
        s["msgs_per_s_received"], s["latency_us_p50"], s["latency_us_p99"], s.get("lost"), s["errors"]
    )


def main():
    if sys.argv[1] == "--one":
        print(one(sys.argv[2]))
        return
    rows = load(sys.argv[1])
    groups = OrderedDict()
    for r in rows:
        groups.setdefault((r[1], r[0]), []).append(r)
    out = [
        "| scenario | broker | runs | msgs/s received | p50 µs | p99 µs | p99.9 µs | CPU µs/msg | RSS MiB | lost | errors | loadgen send lag p99 µs |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    medians = []
    for (scenario, broker), runs in groups.items():
        ok = [r for r in runs if r[6] is not None]
        s = [r[6] for r in ok]
        cpu_per_msg = [r[4] * 1e6 / r[6]["msgs_received_total"] for r in ok if r[6]["msgs_received_total"] > 0]
        lost = [x.get("lost") or 0 for x in s]
        out.append(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |".format(
                scenario,
                broker,
                f"{len(ok)}/{len(runs)}",
                fmt(med([x["msgs_per_s_received"] for x in s])),
                fmt(med([x["latency_us_p50"] for x in s])),
                fmt(med([x["latency_us_p99"] for x in s])),
                fmt(med([x["latency_us_p99_9"] for x in s])),
                fmt(med(cpu_per_msg), 2),
                fmt(med([r[5] / 1024 for r in ok]), 1),
                max(lost) if lost else "–",
                sum(x["errors"] for x in s) if s else "–",
                fmt(med([x.get("send_lag_us_p99") for x in s])),
            )
        )
        if ok:
            by_p99 = sorted(ok, key=lambda r: r[6]["latency_us_p99"])
            medians.append(by_p99[len(by_p99) // 2][3])
    out.append("")
    out.extend(f"- {n}" for n in NOTES)
    loads = [r[7] for r in rows if r[7] is not None]
    if loads:
        out.append(f"- machine load (1-minute average) when runs ended: {min(loads):.2f} to {max(loads):.2f}")
    print("\n".join(out))
    if len(sys.argv) > 2:
        with open(sys.argv[2], "w") as f:
            f.write("\n".join(medians) + ("\n" if medians else ""))


if __name__ == "__main__":
    main()
