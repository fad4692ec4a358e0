#!/usr/bin/env python3
"""paho-mqtt (the Eclipse Python client) over TLS against a running broker.

For MQTT 3.1.1 and 5.0: connects with --cafile (and --username /
--password if given), subscribes, publishes at QoS 1 from a second client
and checks the message comes back; with a user name it then connects with a
wrong password and checks the CONNACK refuses it (3.1.1: return code 4;
5.0: reason code 0x86). Prints one line per check; exits 1 on the first
failure.

Run by shards/tests/paho.rs against the real ringmq binary:
    tls_auth.py --port P --cafile ca.pem [--username alice --password secret]
"""
import argparse
import queue
import ssl
import sys
import time

import paho.mqtt
import paho.mqtt.client as mqtt

TIMEOUT_S = 10.0


def fail(text):
    print(f"FAIL {text}", flush=True)
    sys.exit(1)


def make_client(args, client_id, protocol, password):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol)
    c.tls_set(ca_certs=args.cafile, cert_reqs=ssl.CERT_REQUIRED)
    c.tls_insecure_set(False)
    if args.username is not None:
        c.username_pw_set(args.username, password)
    events = queue.Queue()
    c.on_connect = lambda cl, ud, flags, rc, props: events.put(("connack", rc))
    c.on_subscribe = lambda cl, ud, mid, rcs, props: events.put(("suback", rcs))
    c.on_message = lambda cl, ud, msg: events.put(("message", msg))
    c.on_disconnect = lambda cl, ud, flags, rc, props: events.put(("disconnect", rc))
    return c, events


def expect(events, kind, what):
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            fail(f"{what}: no {kind} within {TIMEOUT_S} s")
        try:
            got, value = events.get(timeout=left)
        except queue.Empty:
            continue
        if got == kind:
            return value
        if got == "disconnect":
            fail(f"{what}: disconnected ({value}) while waiting for {kind}")


def connect(args, client_id, protocol, password):
    """Connects and returns (client, events, CONNACK reason code)."""
    c, events = make_client(args, client_id, protocol, password)
    # The certificate names the broker's host name, not the address.
    c.connect(args.host, args.port, keepalive=30)
    sock = c.socket()
    c.loop_start()
    rc = expect(events, "connack", f"{client_id} CONNECT")
    return c, events, rc, sock


def stop(c):
    c.disconnect()
    c.loop_stop()


def run(args, protocol, name):
    sub, sub_events, rc, sock = connect(args, f"paho-sub-{name}", protocol, args.password)
    if rc.is_failure:
        fail(f"{name}: subscriber refused: {rc} ({rc.value})")
    version = sock.version() if hasattr(sock, "version") else "?"
    print(f"ok {name}: connected over {version} as {args.username or 'anonymous'}", flush=True)
    topic = f"paho/tls/{name}"
    sub.subscribe(topic, qos=1)
    granted = expect(sub_events, "suback", f"{name} SUBSCRIBE")
    if any(g.is_failure for g in granted):
        fail(f"{name}: SUBACK refused: {granted}")
    pub, pub_events, rc, _ = connect(args, f"paho-pub-{name}", protocol, args.password)
    if rc.is_failure:
        fail(f"{name}: publisher refused: {rc}")
    payload = f"hello over TLS ({name})".encode()
    info = pub.publish(topic, payload, qos=1)
    info.wait_for_publish(timeout=TIMEOUT_S)
    if not info.is_published():
        fail(f"{name}: PUBACK not received")
    msg = expect(sub_events, "message", f"{name} delivery")
    if msg.topic != topic or msg.payload != payload or msg.qos != 1:
        fail(f"{name}: got {msg.topic} {msg.payload!r} QoS {msg.qos}")
    print(f"ok {name}: QoS 1 round trip on {topic}", flush=True)
    stop(pub)
    stop(sub)

    if args.username is None:
        return
    bad, _, rc, _ = connect(args, f"paho-bad-{name}", protocol, args.password + "-wrong")
    bad.loop_stop()
    # paho reports 3.1.1 return code 4 as reason code 0x86 as well.
    if rc.value != 0x86:
        fail(f"{name}: wrong password answered {rc} ({rc.value}), expected bad user name or password")
    print(f"ok {name}: wrong password refused: {rc}", flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="localhost")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cafile", required=True)
    p.add_argument("--username")
    p.add_argument("--password", default="")
    args = p.parse_args()
    print(f"paho-mqtt {paho.mqtt.__version__}", flush=True)
    run(args, mqtt.MQTTv311, "v311")
    run(args, mqtt.MQTTv5, "v5")
    print("all ok", flush=True)


if __name__ == "__main__":
    main()
