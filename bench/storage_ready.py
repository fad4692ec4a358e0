#!/usr/bin/env python3
"""Times a broker's start for the storage benchmarks (bench/recovery.sh,
bench/storage.sh recovery). Started *before* the broker, so that Python's
own start-up is not counted: creates T0_FILE.up once it runs, waits for
T0_FILE to hold the broker's start time (ns since the epoch, written just
before the broker is started), then polls every 2 ms and prints
"READY_MS CONNACK_MS": until GET /ready on 127.0.0.1:HTTP_PORT answers 200
(READY_MS is "-" when HTTP_PORT is 0), then until a CONNECT (3.1.1, clean
session) on 127.0.0.1:PORT is answered with a CONNACK.

  storage_ready.py PORT HTTP_PORT T0_FILE
"""
import socket
import sys
import time

LIMIT_S = 1200


def main():
    port, http_port, t0_file = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    open(t0_file + ".up", "w").close()
    deadline = time.time() + LIMIT_S
    while True:
        try:
            t0 = int(open(t0_file).read())
            break
        except (OSError, ValueError):
            if time.time() > deadline:
                sys.exit("storage_ready.py: no start time")
            time.sleep(0.001)

    def ms():
        return (time.time_ns() - t0) // 1_000_000

    ready = "-"
    while http_port and time.time() < deadline:
        try:
            s = socket.create_connection(("127.0.0.1", http_port), timeout=1)
            s.settimeout(5)
            s.sendall(b"GET /ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            if s.recv(16).startswith(b"HTTP/1.1 200"):
                ready = ms()
                break
        except OSError:
            pass
        time.sleep(0.002)
    connect = bytes([0x10, 12, 0, 4]) + b"MQTT" + bytes([4, 2, 0, 60, 0, 0])
    while time.time() < deadline:
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=1)
            s.settimeout(5)
            s.sendall(connect)
            if s.recv(4)[:1] == b"\x20":
                print(ready, ms())
                return
        except OSError:
            pass
        time.sleep(0.002)
    sys.exit(f"storage_ready.py: broker not ready within {LIMIT_S} s")


if __name__ == "__main__":
    main()
