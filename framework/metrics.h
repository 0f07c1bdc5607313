/*
 * What the counters of stats.c do not hold, gathered as a subscriber of
 * the job's lifecycle (lifecycle.h): job durations and pickup latencies
 * (histograms), dead letters by reason, the share of persistent
 * deliveries, and each handler's last error. Updated only on the loop
 * thread; the HTTP side reads copies of it in a snapshot (snapshot.h).
 */
#ifndef WR_METRICS_H
#define WR_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "lifecycle.h"

/* Upper bounds in seconds, from 1 ms jobs to half-hour ones; one more
 * bucket (+Inf) follows them. */
#define WR_METRICS_BUCKETS 19
extern const double wr_metrics_bounds[WR_METRICS_BUCKETS];

typedef struct wr_hist {
  unsigned long n[WR_METRICS_BUCKETS + 1]; /* per bucket, not cumulative */
  unsigned long count;
  double sum; /* seconds */
} wr_hist;

/* Count v (seconds; negative counts as 0). */
void wr_metrics_observe(wr_hist *h, double v);

/* Dead-letter reasons as settle.c writes them (retry.c); a reason Warren
 * does not know yet is counted as "other". */
typedef enum wr_dead_reason {
  WR_DEAD_REJECTED,
  WR_DEAD_MAX_ATTEMPTS,
  WR_DEAD_CRASHED,
  WR_DEAD_TIMEOUT,
  WR_DEAD_MALFORMED,
  WR_DEAD_TOO_LARGE,
  WR_DEAD_SIGNATURE,
  WR_DEAD_REVOKED,
  WR_DEAD_MAX_DELIVERIES,
  WR_DEAD_OTHER,
  WR_DEAD_N
} wr_dead_reason;
extern const char *const wr_metrics_reasons[WR_DEAD_N];
wr_dead_reason wr_metrics_reason(const char *reason);

/* The outcome's label: acked, failed (the handler said retry), rejected,
 * crashed, timeout, malformed, too_large, signature, revoked. */
const char *wr_metrics_outcome(wr_outcome o);
#define WR_METRICS_OUTCOMES (WR_OUT_REVOKED + 1) /* every wr_outcome */

#define WR_METRICS_ERROR_MAX 256

typedef struct wr_handler_metrics {
  wr_hist duration;              /* handler start to result */
  wr_hist pickup;                /* publish timestamp to handler start */
  unsigned long dead[WR_DEAD_N]; /* dead letters the broker confirmed */
  unsigned long persistent;      /* settled jobs with delivery_mode 2 */
  unsigned long transient;       /* settled jobs without */
  char last_error[WR_METRICS_ERROR_MAX]; /* "" until one happens */
  int64_t last_error_ms;                 /* unix ms of it */
} wr_handler_metrics;

typedef struct wr_metrics {
  wr_handler_metrics *h; /* one per handler */
  size_t nh;
  const wr_job *slots; /* the supervisor's job slots, to index ... */
  uint8_t *reason;     /* ... the reason of each dead letter in flight */
  size_t nslots;
} wr_metrics;

/* slots: the supervisor's nslots job slots (a job is identified by its
 * slot while its copy awaits the broker's confirm). */
int wr_metrics_init(wr_metrics *m, size_t nh, const wr_job *slots,
                    size_t nslots);
void wr_metrics_free(wr_metrics *m);

/* When the producer said it published the job, as unix ms: the header
 * of RabbitMQ's message_timestamp plugin (timestamp_in_ms, ms), else the
 * AMQP timestamp property (seconds). 0 when it did not say, or when the
 * time is implausible: more than WR_METRICS_PUB_MAX_AGE_MS before now_ms
 * or more than WR_METRICS_PUB_AHEAD_MS after it (docs/monitoring.md,
 * "Metrics"). */
#define WR_METRICS_PUB_MAX_AGE_MS (7 * 86400 * 1000LL) /* 7 days */
#define WR_METRICS_PUB_AHEAD_MS (5 * 60 * 1000LL)      /* clock skew */
int64_t wr_metrics_published_ms(const amqp_basic_properties_t *p,
                                int64_t now_ms);

/* Subscribe with ctx = the wr_metrics. */
extern const wr_job_events wr_metrics_events;

#endif
