#!/usr/bin/env python3
"""A Warren producer in Python, written from docs/signing.md and
docs/delays.md alone.

Publishes signed jobs with pika (Debian: python3-pika) and the standard
library's hmac, hashlib and base64; nothing of Warren is imported.

  sign_producer.py --port N --queue Q --key-id ID --key-file F
                   [--count N] [--id PREFIX] [--exchange X]
                   [--routing-key K] [--content-type T]
                   [--delay SECONDS [--delay-prefix P]] [--print-vector]

Exchange "" and routing key Q by default; job i gets message id PREFIXi
and body {"n": i}. --delay sends them through the delay levels to queue Q
(the routing key, when given), signed with their not-before time as if
published straight to that queue: exchange "" and the queue's name,
whatever --exchange says. The key file is read as Warren reads one. --print-vector prints the signature of
the spec's test vector instead (the tests compare it with the spec).
"""
import argparse
import base64
import hashlib
import hmac
import math
import sys
import time


def canonical(key_id, time_ms, message_id, exchange, routing_key,
              content_type, body, nb=None):
    """The canonical string of docs/signing.md, as bytes."""
    fields = [
        ("key-id", key_id.encode()),
        ("time", str(time_ms).encode()),
    ] + ([("not-before", str(nb).encode())] if nb else []) + [
        ("message-id", message_id.encode()),
        ("exchange", exchange.encode()),
        ("routing-key", routing_key.encode()),
        ("content-type", content_type.encode()),
        ("body-sha256", hashlib.sha256(body).hexdigest().encode()),
    ]
    out = b"warren-signature-v1\n"
    for name, value in fields:
        out += name.encode() + b":" + str(len(value)).encode() + b":" + value
        out += b"\n"
    return out


def signature(key, key_id, time_ms, message_id, exchange, routing_key,
              content_type, body, nb=None):
    """The value of the warren-signature header."""
    c = canonical(key_id, time_ms, message_id, exchange, routing_key,
                  content_type, body, nb)
    mac = base64.b64encode(hmac.new(key, c, hashlib.sha256).digest())
    digest = hashlib.sha256(body).hexdigest()
    if nb:
        return "v1;key=%s;time=%d;nb=%d;body=%s;sig=%s" % (
            key_id, time_ms, nb, digest, mac.decode())
    return "v1;key=%s;time=%d;body=%s;sig=%s" % (key_id, time_ms, digest,
                                                 mac.decode())


def read_key_file(path):
    """docs/signing.md, "Keys and rotation": the file's bytes without every
    CR and LF at their end (nothing else trimmed); at most 1,026 bytes,
    32 to 1,024 once trimmed."""
    with open(path, "rb") as f:
        raw = f.read(1027)
    key = raw.rstrip(b"\r\n")
    if len(raw) > 1026 or not 32 <= len(key) <= 1024:
        raise SystemExit("%s: not a Warren key file (%d bytes, %d once "
                         "trimmed; keys are 32..1024 bytes)"
                         % (path, len(raw), len(key)))
    return key


def delayed_route(queue, delay_s, prefix):
    """docs/delays.md: the entry exchange and the routing key (the delay's
    28 bits, most significant first, then the queue)."""
    secs = math.ceil(delay_s)
    assert 1 <= secs <= 2**28 - 1 and "*" not in queue and "#" not in queue
    bits = ".".join("1" if secs >> n & 1 else "0" for n in range(27, -1, -1))
    return prefix + ".27", bits + "." + queue, secs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=5672)
    ap.add_argument("--queue")
    ap.add_argument("--exchange", default="")
    ap.add_argument("--routing-key")
    ap.add_argument("--content-type", default="application/json")
    ap.add_argument("--key-id")
    ap.add_argument("--key-file")
    ap.add_argument("--count", type=int, default=1)
    ap.add_argument("--id", default="py")
    ap.add_argument("--delay", type=float, default=0)
    ap.add_argument("--delay-prefix", default="warren.delay")
    ap.add_argument("--print-vector", action="store_true")
    a = ap.parse_args()
    if a.print_vector:
        print(signature(b"warren-test-vector-key-0123456789abcdef", "gw-2026",
                        1764072000000, "order-42", "jobs", "email.send",
                        "application/json", b'{"to":"ann@example.com"}'))
        return 0
    import pika  # only needed to publish

    key = read_key_file(a.key_file)
    rk = a.routing_key or a.queue
    conn = pika.BlockingConnection(
        pika.ConnectionParameters(host=a.host, port=a.port))
    ch = conn.channel()
    ch.confirm_delivery()
    for i in range(1, a.count + 1):
        mid = "%s%d" % (a.id, i)
        body = ('{"n": %d}' % i).encode()
        now = int(time.time() * 1000)
        headers = {}
        ex, key_out, nb = a.exchange, rk, None
        signed_ex = a.exchange
        if a.delay:
            # Signed as sent straight to the queue (exchange "", routing
            # key the queue), with its not-before; published to the levels.
            ex, key_out, secs = delayed_route(rk, a.delay, a.delay_prefix)
            nb = now + secs * 1000
            signed_ex = ""
            headers["warren-not-before"] = nb
        headers["warren-signature"] = signature(
            key, a.key_id, now, mid, signed_ex, rk, a.content_type, body, nb)
        ch.basic_publish(
            exchange=ex, routing_key=key_out, body=body, mandatory=True,
            properties=pika.BasicProperties(
                message_id=mid, content_type=a.content_type, delivery_mode=2,
                headers=headers))
    conn.close()
    print("published %d signed job(s)" % a.count)
    return 0


if __name__ == "__main__":
    sys.exit(main())
