#!/usr/bin/env python3
"""A Warren producer in Python, written from docs/signing.md alone.

Publishes signed jobs with pika (Debian: python3-pika) and the standard
library's hmac, hashlib and base64; nothing of Warren is imported.

  sign_producer.py --port N --queue Q --key-id ID --key-file F
                   [--count N] [--id PREFIX] [--exchange X]
                   [--routing-key K] [--content-type T]
                   [--print-vector]

Exchange "" and routing key Q by default; job i gets message id PREFIXi
and body {"n": i}. --print-vector prints the signature of the spec's test
vector instead (the tests compare it with the spec).
"""
import argparse
import base64
import hashlib
import hmac
import sys
import time


def canonical(key_id, time_ms, message_id, exchange, routing_key,
              content_type, body):
    """The canonical string of docs/signing.md, as bytes."""
    fields = [
        ("key-id", key_id.encode()),
        ("time", str(time_ms).encode()),
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
              content_type, body):
    """The value of the warren-signature header."""
    c = canonical(key_id, time_ms, message_id, exchange, routing_key,
                  content_type, body)
    mac = base64.b64encode(hmac.new(key, c, hashlib.sha256).digest())
    digest = hashlib.sha256(body).hexdigest()
    return "v1;key=%s;time=%d;body=%s;sig=%s" % (key_id, time_ms, digest,
                                                 mac.decode())


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
    ap.add_argument("--print-vector", action="store_true")
    a = ap.parse_args()
    if a.print_vector:
        print(signature(b"warren-test-vector-key-0123456789abcdef", "gw-2026",
                        1764072000000, "order-42", "jobs", "email.send",
                        "application/json", b'{"to":"ann@example.com"}'))
        return 0
    import pika  # only needed to publish

    with open(a.key_file, "rb") as f:
        key = f.read().rstrip(b"\r\n")
    rk = a.routing_key or a.queue
    conn = pika.BlockingConnection(
        pika.ConnectionParameters(host=a.host, port=a.port))
    ch = conn.channel()
    ch.confirm_delivery()
    for i in range(1, a.count + 1):
        mid = "%s%d" % (a.id, i)
        body = ('{"n": %d}' % i).encode()
        now = int(time.time() * 1000)
        sig = signature(key, a.key_id, now, mid, a.exchange, rk,
                        a.content_type, body)
        ch.basic_publish(
            exchange=a.exchange, routing_key=rk, body=body, mandatory=True,
            properties=pika.BasicProperties(
                message_id=mid, content_type=a.content_type, delivery_mode=2,
                headers={"warren-signature": sig}))
    conn.close()
    print("published %d signed job(s)" % a.count)
    return 0


if __name__ == "__main__":
    sys.exit(main())
