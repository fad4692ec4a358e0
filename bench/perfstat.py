"""Reads the CSV that `perf stat -x,` writes (bench/cpu-per-delivery.sh and
bench/cpu-scenarios.sh with SYSCALLS=1): event name -> count."""


def counts(path):
    """Counts by event name; {} if the file is missing (perf not run)."""
    found = {}
    try:
        with open(path) as f:
            for row in f:
                fields = row.strip().split(",")
                if len(fields) > 2 and fields[0].isdigit():
                    found[fields[2]] = int(fields[0])
    except OSError:
        pass
    return found
