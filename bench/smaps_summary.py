#!/usr/bin/env python3
"""Where a process's RSS lies: /proc/PID/smaps grouped by mapping kind.

    bench/smaps_summary.py PID [LABEL]

Groups: the executable's code and data (file-backed), other files (shared
libraries), the heap, thread stacks, and anonymous mappings by size:
mappings of exactly 4 MiB ("4mib-maps": the native loop's provided-buffer
ring, one per shard with the default 256 x 16 KiB buffers, and mimalloc's
large pages of 84-512 KiB blocks, which the broker maps from the OS:
`ringmq_net::alloc::large_blocks_from_os`), mimalloc's arenas (mappings of
32 MiB and more) and the rest ("anon": among them mimalloc's blocks over
512 KiB, each mapped for itself). Prints one line, KiB per group (groups under 64 KiB
left out). Used by bench/idle-memory.sh with SMAPS=1.
"""
import re
import sys

pid = sys.argv[1]
label = sys.argv[2] if len(sys.argv) > 2 else pid
groups = {}
current = None
with open(f"/proc/{pid}/smaps") as smaps:
    for line in smaps:
        head = re.match(r"^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \d+\s*(.*)$", line)
        if head:
            size = int(head.group(2), 16) - int(head.group(1), 16)
            perms, name = head.group(3), head.group(4).strip()
            if name.startswith("/"):
                kind = "code" if "x" in perms else "file"
                current = f"{kind}:{name.rsplit('/', 1)[-1]}"
            elif name:
                current = name.strip("[]").split(":")[0]
            elif size == 4 << 20:
                current = "4mib-maps"
            elif size >= 32 << 20:
                current = "arena"
            else:
                current = "anon"
        elif line.startswith("Rss:") and current:
            groups[current] = groups.get(current, 0) + int(line.split()[1])
total = sum(groups.values())
shown = sorted(((v, k) for k, v in groups.items() if v >= 64), reverse=True)
print(f"  smaps {label}: {total} KiB = " + ", ".join(f"{k} {v}" for v, k in shown))
