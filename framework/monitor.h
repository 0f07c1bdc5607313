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
 * It also owns the metrics subscriber (metrics.h). Loop thread only, but
 * for the snapshot store.
 */
#ifndef WR_MONITOR_H
#define WR_MONITOR_H

#include "metrics.h"
#include "snapshot.h"

struct wr_sup;
typedef struct wr_monitor wr_monitor;

/* Create it for s (after its handlers are set up), subscribe the metrics
 * and add its phase to s's loop. */
int wr_monitor_create(struct wr_sup *s, wr_monitor **out);
void wr_monitor_destroy(wr_monitor *m);

/* The snapshots the HTTP side reads. */
wr_snap_store *wr_monitor_store(wr_monitor *m);

/* The last self-check failed (readiness reflects it). */
int wr_monitor_failing(const wr_monitor *m);

/* Workers of one handler that died unplanned this many times within
 * CRASH_WINDOW_S make it crash-looping. */
#define WR_MONITOR_CRASH_LOOP 5

#endif
