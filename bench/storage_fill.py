#!/usr/bin/env python3
"""Fills a broker's store over MQTT 3.1.1 for the storage benchmarks
(bench/recovery.sh, bench/storage.sh recovery): SESSIONS persistent
sessions (clean session 0, client id <prefix>-<i>, one QoS 1 subscription
to sess/<i> each) and RETAINED retained messages (QoS 1, topic ret/<i>,
PAYLOAD bytes), every one acknowledged (CONNACK, SUBACK, PUBACK) before the
script exits. Sessions are created CONCURRENCY at a time; retained messages
are pipelined on PUBLISHERS connections with WINDOW unacknowledged each.

  storage_fill.py PORT SESSIONS RETAINED [--concurrency N] [--publishers N]
                  [--window N] [--payload BYTES] [--prefix ID]

Prints one line: sessions=... retained=... sessions_s=... retained_s=...
Exits non-zero if the broker refuses or drops anything.
"""
import argparse
import asyncio
import struct
import sys
import time


def string(b: bytes) -> bytes:
    return struct.pack(">H", len(b)) + b


def packet(first: int, body: bytes) -> bytes:
    n, out = len(body), bytearray([first])
    while True:
        b, n = n % 128, n // 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out) + body


def connect(client_id: bytes, clean: bool) -> bytes:
    flags = 0x02 if clean else 0x00
    return packet(0x10, string(b"MQTT") + bytes([4, flags, 0, 60]) + string(client_id))


async def read_packet(reader: asyncio.StreamReader):
    first = (await reader.readexactly(1))[0]
    n, mul = 0, 1
    while True:
        b = (await reader.readexactly(1))[0]
        n += (b & 127) * mul
        mul *= 128
        if not b & 128:
            break
    return first, await reader.readexactly(n)


async def open_conn(port: int, client_id: bytes, clean: bool):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(connect(client_id, clean))
    first, body = await read_packet(reader)
    if first != 0x20 or body[1:2] != b"\x00":
        raise RuntimeError(f"{client_id!r}: CONNACK {first:#x} {body.hex()}")
    return reader, writer


async def one_session(port: int, prefix: str, i: int):
    reader, writer = await open_conn(port, f"{prefix}-{i}".encode(), False)
    writer.write(packet(0x82, struct.pack(">H", 1) + string(b"sess/%d" % i) + bytes([1])))
    first, body = await read_packet(reader)
    if first != 0x90 or body[2:3] != b"\x01":
        raise RuntimeError(f"session {i}: SUBACK {first:#x} {body.hex()}")
    writer.write(bytes([0xE0, 0]))
    await writer.drain()
    writer.close()
    await writer.wait_closed()


async def sessions(port: int, count: int, concurrency: int, prefix: str):
    next_i = 0

    async def worker():
        nonlocal next_i
        while next_i < count:
            i = next_i
            next_i += 1
            await one_session(port, prefix, i)

    await asyncio.gather(*(worker() for _ in range(min(concurrency, max(count, 1)))))


async def retained_range(port: int, start: int, end: int, window: int, payload: bytes, n: int):
    reader, writer = await open_conn(port, b"storage-fill-ret-%d" % n, True)
    sent, acked, pending = start, start, {}
    while acked < end:
        batch = bytearray()
        while sent < end and sent - acked < window:
            pid = (sent - start) % 65000 + 1
            pending[pid] = sent
            batch += packet(0x33, string(b"ret/%d" % sent) + struct.pack(">H", pid) + payload)
            sent += 1
        if batch:
            writer.write(bytes(batch))
            await writer.drain()
        first, body = await read_packet(reader)
        if first >> 4 != 4:
            raise RuntimeError(f"retained: unexpected packet {first:#x}")
        pid = struct.unpack(">H", body[:2])[0]
        if pending.pop(pid, None) is None:
            raise RuntimeError(f"retained: PUBACK for unknown id {pid}")
        acked += 1
    writer.write(bytes([0xE0, 0]))
    await writer.drain()
    writer.close()


async def retained(port: int, count: int, publishers: int, window: int, payload: bytes):
    per = -(-count // publishers) if count else 0
    await asyncio.gather(
        *(
            retained_range(port, k * per, min(count, (k + 1) * per), window, payload, k)
            for k in range(publishers)
            if k * per < count
        )
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("sessions", type=int)
    ap.add_argument("retained", type=int)
    ap.add_argument("--concurrency", type=int, default=200)
    ap.add_argument("--publishers", type=int, default=4)
    ap.add_argument("--window", type=int, default=500)
    ap.add_argument("--payload", type=int, default=32)
    ap.add_argument("--prefix", default="rs")
    a = ap.parse_args()
    t0 = time.monotonic()
    asyncio.run(sessions(a.port, a.sessions, a.concurrency, a.prefix))
    t1 = time.monotonic()
    asyncio.run(retained(a.port, a.retained, a.publishers, min(a.window, 65000), b"x" * a.payload))
    t2 = time.monotonic()
    print(
        f"sessions={a.sessions} retained={a.retained} sessions_s={t1 - t0:.1f} "
        f"retained_s={t2 - t1:.1f}"
    )


if __name__ == "__main__":
    try:
        main()
    except (OSError, RuntimeError, asyncio.IncompleteReadError) as e:
        sys.exit(f"storage_fill.py: {e}")
