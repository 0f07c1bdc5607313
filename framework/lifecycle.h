/*
 * The job's lifecycle as others may watch it, in the style of
 * wr_pool_events: a const table of callbacks that the supervisor calls at
 * each step. Counters (stats.c) are the first subscriber; the status
 * snapshot, spans and structured log fields subscribe the same way, so a
 * feature is a new table, not a new branch in the hot path.
 *
 * Every callback runs on the loop thread, synchronously, and must not
 * block. `job` is valid only during the call. Any member may be NULL.
 * Subscribe in wr_sup_create before the handlers start: the pool is told
 * then whether anyone listens for `started` (supervisor.c).
 */
#ifndef WR_LIFECYCLE_H
#define WR_LIFECYCLE_H

#include <stddef.h>

#include "job.h"
#include "retry.h"

typedef struct wr_job_events {
  /* basic.deliver arrived for handler h. */
  void (*received)(void *ctx, size_t h, const wr_job *job);
  /* A worker (or the in-process handler) took it. */
  void (*started)(void *ctx, size_t h, const wr_job *job);
  /* This attempt is over: WR_OUT_ACKED, or how it failed. err is the
   * handler's or Warren's text (NULL when acked). */
  void (*settled)(void *ctx, size_t h, const wr_job *job, wr_outcome o,
                  const char *err);
  /* A copy was published to a retry queue (dead = 0) or to the
   * dead-letter exchange with `reason`. */
  void (*republished)(void *ctx, size_t h, const wr_job *job, int dead,
                      const char *reason);
  /* The broker confirmed (ok) or refused/returned (!ok) that copy. */
  void (*confirmed)(void *ctx, size_t h, const wr_job *job, int ok);
  /* n finished jobs could not be acked: their connection closed, so the
   * broker delivers them again. */
  void (*dropped)(void *ctx, size_t h, size_t n);
  /* The job's result (or error result) to its reply_to went out with the
   * job's settling: confirmed (delivered = 1), or it came back because
   * the named reply queue does not exist (delivered = 0; results.md). */
  void (*replied)(void *ctx, size_t h, const wr_job *job, int delivered);
} wr_job_events;

#define WR_MAX_OBSERVERS 8

typedef struct wr_observers {
  struct {
    const wr_job_events *ev;
    void *ctx;
  } o[WR_MAX_OBSERVERS];
  size_t n;
} wr_observers;

/* Subscribe; returns 0, or -1 when the table is full. */
static inline int wr_observe(wr_observers *obs, const wr_job_events *ev,
                             void *ctx) {
  if (obs->n == WR_MAX_OBSERVERS) return -1;
  obs->o[obs->n].ev = ev;
  obs->o[obs->n++].ctx = ctx;
  return 0;
}

/* WR_NOTIFY(obs, settled, h, job, o, err) calls every subscriber's
 * `settled` that is set. */
#define WR_NOTIFY(obs, event, ...)                                   \
  do {                                                               \
    for (size_t wr_i_ = 0; wr_i_ < (obs)->n; wr_i_++)                \
      if ((obs)->o[wr_i_].ev->event)                                 \
        (obs)->o[wr_i_].ev->event((obs)->o[wr_i_].ctx, __VA_ARGS__); \
  } while (0)

#endif
