/*
 * Watching the worker from its own loop (a phase of it, loop.h), so the
 * HTTP side never touches the connection or the pools:
 *   - probes: one passive queue.declare per turn at most, round robin over
 *     every handler's work, retry and dead-letter queues, each queue once
 *     per health.probe_interval: queue depths and consumer counts, and the
 *     measured round trip to the broker, on a connection of its own
 *     (opened while the worker is connected, without heartbeats). The
 *     loop sends each declare and reads the answer when that socket is
 *     readable: it never waits for the broker but to connect (2 s at most);
 *   - the status snapshot (snapshot.h), at most every
 *     health.snapshot_interval and at once when readiness changes;
 *   - the self-check every health.check_interval: broker reachable, every
 *     consumer registered, no handler's workers crash-looping. A failure
 *     logs "Background worker health check failed: <reason>" and makes
 *     the worker not ready;
 *   - a queue-metrics log line per handler every health.queue_log_interval.
 * It also owns the metrics subscriber (metrics.h). It is driven by the
 * supervisor's loop phase, which tells it the worker's state at each turn
 * (wr_monitor_facts) and carries out what it asks: the self-check's
 * per-handler facts, a snapshot's runtime part, consuming a queue found
 * without its consumer. It never reads the supervisor. Loop thread only,
 * but for the snapshot store.
 */
#ifndef WR_MONITOR_H
#define WR_MONITOR_H

#include <stdint.h>

#include "conn.h"
#include "lifecycle.h"
#include "loop.h"
#include "metrics.h"
#include "snapshot.h"

struct wr_cfg;
struct wr_spans;
struct wr_live;
struct wr_events;
typedef struct wr_monitor wr_monitor;

/* What the monitor works with and does not own, lent by the supervisor
 * for the monitor's life. */
typedef struct wr_monitor_env {
  const struct wr_cfg *cfg; /* intervals, handlers, their queues */
  wr_loop *loop;            /* the probes' socket is watched there */
  wr_observers *obs;        /* the metrics subscribe there */
  const wr_job *slots;      /* the ledger's job slots (metrics.h) */
  size_t nslots;
  struct wr_spans *spans;   /* counters for the snapshot; NULL: off */
  struct wr_live *live;     /* NULL: off */
  struct wr_events *events; /* NULL: off */
} wr_monitor_env;

/* The worker now, told by the supervisor at each turn; not kept. */
typedef struct wr_monitor_facts {
  int connected; /* the session is up */
  uint64_t gen;  /* its connection's number (session.h) */
  int draining;
  int why;                    /* readiness: WR_READY or why not (health.h) */
  const wr_conn_params *node; /* the broker node the session uses */
  uint64_t breaker_changes;   /* every breaker's changes so far: a change
                                 is published at once */
} wr_monitor_facts;

/* One handler's part in the self-check. */
typedef struct wr_monitor_handler {
  unsigned long deaths; /* its workers' unplanned exits so far */
  int consumer_off;     /* its consumer is cancelled on purpose (an open
                           breaker): no consumer is no failure */
  int64_t consumed_ms;  /* unix ms its consumer last started again (by
                           its breaker); a probe before then says nothing */
} wr_monitor_handler;

/* Create it (the metrics subscribe to env->obs). */
int wr_monitor_create(const wr_monitor_env *env, wr_monitor **out);
void wr_monitor_destroy(wr_monitor *m);

/* The monitor's part of a loop turn: the probes' next step, the queue
 * log. Returns 1 when the self-check is to run now (wr_monitor_check). */
int wr_monitor_turn(wr_monitor *m, double now, const wr_monitor_facts *f);

/* The self-check, with each handler's facts (one per handler). */
void wr_monitor_check(wr_monitor *m, double now, const wr_monitor_facts *f,
                      const wr_monitor_handler *h);

/* A status snapshot when one is due (its interval is over, or readiness,
 * the self-check or a breaker changed), with the monitor's part filled:
 * times, the broker and its probes, each handler's settings, metrics and
 * queues, the exporters' counters. The caller fills the runtime part
 * (snapshot.h: blocked, stats, pending, workers, tenants, breaker,
 * in_flight) and gives it to wr_monitor_publish. NULL: none due (or out
 * of memory; the previous one stays). */
wr_snap *wr_monitor_snapshot(wr_monitor *m, double now,
                             const wr_monitor_facts *f);
void wr_monitor_publish(wr_monitor *m, wr_snap *n);

/* When the monitor is next due (loop.h's convention; 0: nothing). */
double wr_monitor_due(const wr_monitor *m, const wr_monitor_facts *f);

/* A probe found handler h's work queue without a consumer (1) or missing
 * (2) since the last call, or 0: the broker dropped the consumer without
 * a cancel (a queue deleted behind a partition, a node lost). Cleared by
 * the call; the supervisor decides whether to consume it again. */
int wr_monitor_take_missing(wr_monitor *m, size_t h);

/* The snapshots the HTTP side reads. */
wr_snap_store *wr_monitor_store(wr_monitor *m);

/* The last self-check failed (readiness reflects it). */
int wr_monitor_failing(const wr_monitor *m);

/* Workers of one handler that died unplanned this many times within
 * CRASH_WINDOW_S make it crash-looping. */
#define WR_MONITOR_CRASH_LOOP 5

#endif
