#include "breaker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "snapshot.h"

static void forget(wr_breaker *b) {
  b->n = b->next = b->failures = b->slow = 0;
  b->passed = 0;
}

void wr_breaker_init(wr_breaker *b, const wr_breaker_cfg *cfg, double now) {
  memset(b, 0, sizeof *b);
  b->cfg = cfg;
  b->state = WR_BREAKER_CLOSED;
  b->why = WR_BREAKER_STARTED;
  b->since = now;
}

static int is_slow(const wr_breaker *b, double ms) {
  return b->cfg->slow_ms > 0 && ms > b->cfg->slow_ms;
}

static int change(wr_breaker *b, wr_breaker_state to, wr_breaker_why why,
                  double value, double bound, int over, double now) {
  if (to == WR_BREAKER_OPEN) b->opened++;
  b->changes++;
  b->state = to;
  b->why = why;
  b->value = value;
  b->bound = bound;
  b->measured_over = over;
  b->since = now;
  forget(b);
  return 1;
}

static int by_ms(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return (x > y) - (x < y);
}

/* The nearest rank of percentile p among n values: ceil(p * n), 1..n
 * (the epsilon keeps 0.9 * 10 at 9, not 10). */
static int rank(double p, int n) {
  double x = p * n - 1e-9;
  int k = (int)x;
  if (k < x) k++;
  return k < 1 ? 1 : k > n ? n : k;
}

/* The nearest-rank percentile p of the window's durations: the value at
 * rank ceil(p * n) in ascending order. Only when the breaker opens. */
static double percentile(const wr_breaker *b, double p) {
  float v[WR_CFG_MAX_BREAKER_WINDOW];
  memcpy(v, b->ms, (size_t)b->n * sizeof *v);
  qsort(v, (size_t)b->n, sizeof *v, by_ms);
  return v[rank(p, b->n) - 1];
}

/* Whether the percentile p of the window passes slow_ms, from the count
 * of slow durations alone: the value at rank k is over the bound exactly
 * when the n - k + 1 largest are. */
static int percentile_slow(const wr_breaker *b) {
  return b->slow >= b->n - rank(b->cfg->slow_percentile, b->n) + 1;
}

static int closed_record(wr_breaker *b, double now, int failed, double ms) {
  const wr_breaker_cfg *c = b->cfg;
  if (b->n == c->window) { /* the oldest leaves */
    b->failures -= b->failed[b->next];
    b->slow -= is_slow(b, b->ms[b->next]);
  } else {
    b->n++;
  }
  b->failed[b->next] = (uint8_t)(failed != 0);
  b->ms[b->next] = (float)ms;
  b->failures += failed != 0;
  b->slow += is_slow(b, ms);
  b->next = (b->next + 1) % c->window;
  if (b->n < c->min_jobs) return 0;
  double rate = (double)b->failures / b->n;
  if (c->failure_rate > 0 && rate >= c->failure_rate)
    return change(b, WR_BREAKER_OPEN, WR_BREAKER_FAILURES, rate,
                  c->failure_rate, b->n, now);
  if (c->slow_ms > 0 && percentile_slow(b))
    return change(b, WR_BREAKER_OPEN, WR_BREAKER_SLOW,
                  percentile(b, c->slow_percentile), c->slow_ms, b->n, now);
  return 0;
}

int wr_breaker_record(wr_breaker *b, double now, double started, int failed,
                      double ms) {
  switch (b->state) {
    case WR_BREAKER_CLOSED:
      return closed_record(b, now, failed, ms);
    case WR_BREAKER_OPEN:
      return 0; /* started before it opened: says nothing new */
    case WR_BREAKER_HALF_OPEN:
      if (started < b->since) return 0; /* not a trial */
      if (failed)
        return change(b, WR_BREAKER_OPEN, WR_BREAKER_TRIAL_FAILED, 1, 0, 1,
                      now);
      if (is_slow(b, ms))
        return change(b, WR_BREAKER_OPEN, WR_BREAKER_TRIAL_SLOW, ms,
                      b->cfg->slow_ms, 1, now);
      if (++b->passed < b->cfg->trial_jobs) return 0;
      return change(b, WR_BREAKER_CLOSED, WR_BREAKER_TRIALS_PASSED,
                    b->cfg->trial_jobs, b->cfg->trial_jobs, b->cfg->trial_jobs,
                    now);
  }
  return 0;
}

int wr_breaker_tick(wr_breaker *b, double now) {
  if (b->state != WR_BREAKER_OPEN || now < wr_breaker_due(b)) return 0;
  return change(b, WR_BREAKER_HALF_OPEN, WR_BREAKER_COOLED, b->cfg->cool_down,
                b->cfg->cool_down, 0, now);
}

double wr_breaker_due(const wr_breaker *b) {
  return b->state == WR_BREAKER_OPEN ? b->since + b->cfg->cool_down : 0;
}

int wr_breaker_verdict(wr_outcome o) {
  switch (o) {
    case WR_OUT_ACKED:
    case WR_OUT_REJECTED:
      return 0;
    case WR_OUT_FAILED:
    case WR_OUT_CRASHED:
    case WR_OUT_TIMEOUT:
      return 1;
    default:
      return -1;
  }
}

const char *wr_breaker_state_name(wr_breaker_state st) {
  switch (st) {
    case WR_BREAKER_CLOSED:
      return "closed";
    case WR_BREAKER_OPEN:
      return "open";
    case WR_BREAKER_HALF_OPEN:
      return "half_open";
  }
  return "unknown";
}

const char *wr_breaker_why_name(wr_breaker_why why) {
  static const char *const names[] = {
      "started",    "failure_rate", "slow",         "trial_failed",
      "trial_slow", "cool_down",    "trials_passed"};
  return (unsigned)why < sizeof names / sizeof *names ? names[why] : "unknown";
}

char *wr_breaker_describe(const wr_breaker *b, char *buf, size_t len) {
  const wr_breaker_cfg *c = b->cfg;
  switch (b->why) {
    case WR_BREAKER_STARTED:
      snprintf(buf, len, "closed since the start");
      break;
    case WR_BREAKER_FAILURES:
      snprintf(buf, len, "failure rate %.2f >= %.2f over the last %d jobs",
               b->value, b->bound, b->measured_over);
      break;
    case WR_BREAKER_SLOW:
      snprintf(buf, len, "p%g duration %.0f ms > %.0f ms over the last %d jobs",
               c->slow_percentile * 100, b->value, b->bound, b->measured_over);
      break;
    case WR_BREAKER_TRIAL_FAILED:
      snprintf(buf, len, "a trial job failed");
      break;
    case WR_BREAKER_TRIAL_SLOW:
      snprintf(buf, len, "a trial job ran %.0f ms > %.0f ms", b->value,
               b->bound);
      break;
    case WR_BREAKER_COOLED:
      snprintf(buf, len, "cool-down of %g s over: up to %d trial job(s)",
               c->cool_down, c->trial_jobs);
      break;
    case WR_BREAKER_TRIALS_PASSED:
      snprintf(buf, len, "%d trial job(s) in a row passed", c->trial_jobs);
      break;
  }
  return buf;
}

/* ---- the observer -------------------------------------------------------- */

static void on_settled(void *ctx, size_t h, const wr_job *job, wr_outcome o,
                       const char *err) {
  const wr_breakers *bs = ctx;
  (void)err;
  wr_breaker *b = h < bs->n ? bs->b[h] : NULL;
  int v = wr_breaker_verdict(o);
  if (!b || v < 0 || !(job->started > 0)) return;
  double now = wr_now();
  wr_breaker_record(b, now, job->started, v, (now - job->started) * 1000);
}

const wr_job_events wr_breaker_events = {.settled = on_settled};

void wr_breaker_status(const wr_breaker *b, wr_snap_handler *o, double now) {
  int64_t unix_now = wr_unix_ms();
  o->breaker.on = 1;
  o->breaker.state = b->state;
  o->breaker.reason = wr_breaker_why_name(b->why);
  wr_breaker_describe(b, o->breaker.message, sizeof o->breaker.message);
  o->breaker.since_ms = unix_now - (int64_t)((now - b->since) * 1000);
  if (b->state == WR_BREAKER_OPEN)
    o->breaker.trials_at_ms =
        unix_now + (int64_t)((wr_breaker_due(b) - now) * 1000);
  o->breaker.opened = b->opened;
  o->breaker.returned = b->returned;
  o->breaker.trials_passed = b->passed;
  o->breaker.trial_jobs = b->cfg->trial_jobs;
}
