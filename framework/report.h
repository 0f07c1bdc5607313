/*
 * The JSON bodies of the status endpoints (health.h), built with cJSON
 * from one snapshot (snapshot.h). Each returns a malloc'd NUL-terminated
 * string the caller frees, or NULL when out of memory. docs/monitoring.md shows
 * a sample of each; keep them in step.
 */
#ifndef WR_REPORT_H
#define WR_REPORT_H

#include "snapshot.h"

/* /readyz, /api/health/ready: {"status", "ready", "reason"}; why is a
 * WR_NR_* code (health.h) or WR_READY; s may be NULL. */
char *wr_report_ready(int why, const wr_snap *s);
/* /healthz. */
char *wr_report_alive(int alive, double idle_s);
/* /api/health: broker, round trip, durability, readiness. */
char *wr_report_health(const wr_snap *s);
/* /status/workers: per handler, with its workers. */
char *wr_report_workers(const wr_snap *s);
/* /api/v1/tasks/queues. */
char *wr_report_queues(const wr_snap *s);
/* /api/admin/workers/status: the full status in an envelope. */
char *wr_report_admin(const wr_snap *s);
/* {"error": what}, for 401, 404, 405 and 503 without a snapshot. */
char *wr_report_error(const char *what);

/* Why the worker is not ready (health.h's wr_health_state.why). */
enum {
  WR_READY = 0,
  WR_NR_BROKER,   /* broker unreachable */
  WR_NR_DRAINING, /* stopping */
  WR_NR_COPIES,   /* retry or dead-letter copies refused */
  WR_NR_CHECK,    /* the self-check failed (snapshot's check_why) */
  WR_NR_BLOCKED,  /* a resource alarm blocks publishing (blocked_why) */
};
/* The reason's words, for a code of the enum above. */
const char *wr_report_reason(int why);

#endif
