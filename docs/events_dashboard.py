#!/usr/bin/env python3
"""A dashboard's view of Warren's jobs from its lifecycle events
(docs/events.md): the last state of every job, kept in memory.

    AMQP_URL=amqp://guest:guest@localhost:5672/%2F python3 events_dashboard.py

Prints "JOB_ID EVENT" each time a job's state changes. The events are
the only source: Warren keeps no second store of job states.
DASHBOARD_EXIT_AFTER=ID exits once job ID has finished (for tests).
"""
import json
import os
import sys

import pika

FINAL = {"job.succeeded", "job.dead_lettered", "job.revoked"}

url = os.environ.get("AMQP_URL", "amqp://guest:guest@localhost:5672/%2F")
exit_after = os.environ.get("DASHBOARD_EXIT_AFTER")
jobs = {}  # job_id -> the last event (a dict)

conn = pika.BlockingConnection(pika.URLParameters(url))
ch = conn.channel()
ch.exchange_declare("warren.events", "topic", durable=True)
# A queue of its own: exclusive, gone when the dashboard stops.
q = ch.queue_declare("", exclusive=True).method.queue
ch.queue_bind(q, "warren.events", "*.job.*")  # every handler's job events


def on_message(ch, method, props, body):
    for ev in json.loads(body):  # a body is always a JSON array of events
        job = ev["job_id"]
        if job is None:
            continue
        last = jobs.get(job)
        # One worker sends a job's events in order; a retry may run on
        # another worker, so an older event never replaces a newer one.
        if last is None or ev["time"] >= last["time"]:
            jobs[job] = ev
            print(job, ev["event"], flush=True)
        if job == exit_after and ev["event"] in FINAL:
            ch.stop_consuming()


ch.basic_consume(q, on_message, auto_ack=True)
print("listening", flush=True)
ch.start_consuming()
conn.close()
sys.exit(0)
