/*
 * A handler's circuit breaker: whether it may take new jobs, decided from
 * how its recent attempts went. A pure module over plain data (tested in
 * tests/test_breaker.c); the supervisor carries out what it decides
 * (supervisor.c, "the circuit breaker"), so nothing here does I/O.
 *
 *   CLOSED     jobs flow. The last `window` attempts are kept (failed or
 *              not, and how long each ran); once `min_jobs` are in, the
 *              breaker opens when the share of failures reaches
 *              `failure_rate`, or when the `slow_percentile` of the
 *              durations passes `slow_ms`.
 *   OPEN       no new job starts; the supervisor cancels the consumer and
 *              gives the prefetched, unstarted jobs back. After
 *              `cool_down` seconds (wr_breaker_tick) it is
 *   HALF_OPEN  up to `trial_jobs` jobs at once are trials; it closes when
 *              `trial_jobs` trials in a row passed (succeeded, and not
 *              slower than slow_ms), and opens again at the first that
 *              did not.
 *
 * An attempt counts when its handler ran it: success is an ack or a
 * rejection (the handler judged the job, which is not its own health);
 * failure is a retry answer, a crash or a timeout. Jobs refused before
 * they ran (signature, malformed, too large, revoked) do not count.
 * Attempts that end while open, or (half-open) that started before the
 * trials began, do not count either. Every change of state empties the
 * window. Loop thread only.
 */
#ifndef WR_BREAKER_H
#define WR_BREAKER_H

#include <stddef.h>
#include <stdint.h>

#include "../config/cfg.h"
#include "lifecycle.h"
#include "retry.h"

typedef enum wr_breaker_state {
  WR_BREAKER_CLOSED = 0, /* the numbers of warren_breaker_state */
  WR_BREAKER_OPEN = 1,
  WR_BREAKER_HALF_OPEN = 2,
} wr_breaker_state;

/* Why the state last changed. */
typedef enum wr_breaker_why {
  WR_BREAKER_STARTED,       /* closed since the start */
  WR_BREAKER_FAILURES,      /* failure_rate reached */
  WR_BREAKER_SLOW,          /* the slow_percentile passed slow_ms */
  WR_BREAKER_TRIAL_FAILED,  /* a trial job failed */
  WR_BREAKER_TRIAL_SLOW,    /* a trial job ran longer than slow_ms */
  WR_BREAKER_COOLED,        /* cool_down is over: trials */
  WR_BREAKER_TRIALS_PASSED, /* trial_jobs trials in a row passed */
} wr_breaker_why;

typedef struct wr_breaker {
  const wr_breaker_cfg *cfg;
  wr_breaker_state state;
  wr_breaker_why why;
  double value;      /* what was measured: a share (0..1), or ms */
  double bound;      /* the bound it was held against */
  int measured_over; /* attempts the value was measured over */
  double since;      /* monotonic seconds of the last change */
  uint64_t opened;   /* times it opened, since the start */
  uint64_t changes;  /* changes of state, since the start */
  int passed;        /* half-open: trials passed in a row */
  uint64_t returned; /* prefetched jobs given back unstarted, in all */
  /* The window: the last cfg->window attempts, a ring. */
  int n, next;
  int failures; /* of the n */
  int slow;     /* of the n, over slow_ms */
  uint8_t failed[WR_CFG_MAX_BREAKER_WINDOW];
  float ms[WR_CFG_MAX_BREAKER_WINDOW];
} wr_breaker;

/* Closed, with an empty window, as of monotonic time now. */
void wr_breaker_init(wr_breaker *b, const wr_breaker_cfg *cfg, double now);

/* An attempt that ran for ms milliseconds, started at monotonic time
 * `started`, ended at now: failed or not. Returns 1 when the state
 * changed (state, why, value, bound and since tell how), else 0. */
int wr_breaker_record(wr_breaker *b, double now, double started, int failed,
                      double ms);

/* Open and cool_down over by now: half-open (returns 1). Else 0. */
int wr_breaker_tick(wr_breaker *b, double now);

/* When wr_breaker_tick next has work (monotonic), or 0: none. */
double wr_breaker_due(const wr_breaker *b);

/* The supervisor gave n prefetched, unstarted jobs back to the queue. */
static inline void wr_breaker_gave_back(wr_breaker *b, unsigned n) {
  b->returned += n;
}

/* Whether the outcome of an attempt that ran counts, and as a failure:
 * -1 it does not count, 0 success, 1 failure. */
int wr_breaker_verdict(wr_outcome o);

/* "closed", "open", "half_open". */
const char *wr_breaker_state_name(wr_breaker_state st);
/* The reason's word: "started", "failure_rate", "slow", "trial_failed",
 * "trial_slow", "cool_down", "trials_passed". */
const char *wr_breaker_why_name(wr_breaker_why why);
/* The last change in words ("failure rate 0.80 >= 0.50 over the last 10
 * jobs") into buf; returns buf. */
char *wr_breaker_describe(const wr_breaker *b, char *buf, size_t len);

/* b's state into a status snapshot's handler (snapshot.h), its times as
 * unix ms; now: monotonic seconds. */
struct wr_snap_handler;
void wr_breaker_status(const wr_breaker *b, struct wr_snap_handler *o,
                       double now);

/* The observer (lifecycle.h) that records each settled attempt in its
 * handler's breaker. ctx: a wr_breakers. */
typedef struct wr_breakers {
  wr_breaker **b; /* per handler; NULL: that handler has none */
  size_t n;
} wr_breakers;
extern const wr_job_events wr_breaker_events;

#endif
