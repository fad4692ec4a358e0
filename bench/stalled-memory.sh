#!/usr/bin/env bash
# Broker memory held by connections that send most of a packet and stall,
# and what is returned once they close.
#
# N connections (default 100) each send CONNECT (MQTT 3.1.1, keep-alive 0),
# then the first FRAME_BYTES - 1 bytes of a PUBLISH whose frame is
# FRAME_BYTES (default 1048576 = the default packet_size_max_bytes), and
# stall. RSS is read before, while they are held, and CLOSE_WAIT_S after
# they all closed. Bounded: the whole run takes about 10 s plus the waits.
#
#   bench/stalled-memory.sh           # needs target/release/ringmq
# Env: N, FRAME_BYTES, PORT (18951), HOLD_WAIT_S (3), CLOSE_WAIT_S (3),
# RINGMQ_FLAGS (e.g. "--io epoll"), RINGMQ_BIN (another build).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
N="${N:-100}" FRAME_BYTES="${FRAME_BYTES:-1048576}" PORT="${PORT:-18951}"
HOLD_WAIT_S="${HOLD_WAIT_S:-3}" CLOSE_WAIT_S="${CLOSE_WAIT_S:-3}"
bin="${RINGMQ_BIN:-${CARGO_TARGET_DIR:-target}/release/ringmq}"
ulimit -n "$(ulimit -Hn)"
"$bin" --listen "127.0.0.1:$PORT" --shards 1 --log-level warn ${RINGMQ_FLAGS:-} >/tmp/stalled-ringmq.log 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true' EXIT
sleep 1
timeout 120 python3 - "$pid" "$PORT" "$N" "$FRAME_BYTES" "$HOLD_WAIT_S" "$CLOSE_WAIT_S" <<'EOF'
import socket, struct, sys, time
pid, port, n, frame_bytes, hold_wait, close_wait = map(int, sys.argv[1:])

def rss_kib():
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1])

def varint(x):
    out = bytearray()
    while True:
        b = x % 128
        x //= 128
        out.append(b | (0x80 if x else 0))
        if not x:
            return bytes(out)

def connect(i):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    cid = f"stall-{i}".encode()
    body = b"\x00\x04MQTT\x04\x02\x00\x00" + struct.pack(">H", len(cid)) + cid
    s.sendall(b"\x10" + varint(len(body)) + body)
    ack = s.recv(4)
    assert ack == b"\x20\x02\x00\x00", ack
    return s

before = rss_kib()
socks = [connect(i) for i in range(n)]
connected = rss_kib()
# PUBLISH QoS 0 "s/t": the frame is exactly frame_bytes; send all but its last byte.
topic = b"\x00\x03s/t"
for k in range(1, 5):
    remaining = frame_bytes - 1 - k
    if len(varint(remaining)) == k:
        break
payload_len = remaining - len(topic)
frame = b"\x30" + varint(remaining) + topic + b"p" * payload_len
assert len(frame) == frame_bytes
for s in socks:
    s.sendall(frame[:-1])
time.sleep(hold_wait)
held = rss_kib()
for s in socks:
    s.close()
time.sleep(close_wait)
after = rss_kib()
mib = lambda k: k / 1024
print(f"N={n} frame_bytes={frame_bytes}: RSS before {mib(before):.1f} MiB, "
      f"{mib(connected):.1f} MiB connected, {mib(held):.1f} MiB holding partial packets "
      f"({(held - connected) * 1024 / n / 1e6:.2f} MB per connection), "
      f"{mib(after):.1f} MiB {close_wait} s after closing "
      f"({(after - before) * 100 / before:+.0f}% of before)")
EOF
