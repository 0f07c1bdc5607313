#include "metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <warren/status.h>

#include "clock.h"
#include "field.h"
#include "utf8.h"

const double wr_metrics_bounds[WR_METRICS_BUCKETS] = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
    2.5,   5,      10,    30,   60,    120,  300, 600,  1800};

const char *const wr_metrics_reasons[WR_DEAD_N] = {
    "rejected",  "max-attempts", "crashed", "timeout",        "malformed",
    "too_large", "signature",    "revoked", "max-deliveries", "other"};

const char *wr_metrics_outcome(wr_outcome o) {
  /* A failure's word is its dead-letter reason's (retry.c). */
  return o == WR_OUT_ACKED    ? "acked"
         : o == WR_OUT_FAILED ? "failed"
                              : wr_retry_reason(o);
}

void wr_metrics_observe(wr_hist *h, double v) {
  if (!(v > 0)) v = 0;
  int b = 0;
  /* Linear from the smallest bound: most jobs are short. */
  while (b < WR_METRICS_BUCKETS && v > wr_metrics_bounds[b]) b++;
  h->n[b]++;
  h->count++;
  h->sum += v;
}

wr_dead_reason wr_metrics_reason(const char *reason) {
  for (int i = 0; reason && i < WR_DEAD_OTHER; i++)
    if (strcmp(reason, wr_metrics_reasons[i]) == 0) return (wr_dead_reason)i;
  return WR_DEAD_OTHER;
}

int wr_metrics_init(wr_metrics *m, size_t nh, const wr_job *slots,
                    size_t nslots) {
  memset(m, 0, sizeof *m);
  m->h = calloc(nh, sizeof *m->h);
  m->reason = calloc(nslots, 1);
  if (!m->h || !m->reason) {
    wr_metrics_free(m);
    return WARREN_NOMEM;
  }
  m->nh = nh;
  m->slots = slots;
  m->nslots = nslots;
  return WARREN_OK;
}

void wr_metrics_free(wr_metrics *m) {
  free(m->h);
  free(m->reason);
  m->h = NULL;
  m->reason = NULL;
}

int64_t wr_metrics_published_ms(const amqp_basic_properties_t *p,
                                int64_t now_ms) {
  int64_t v = 0;
  if (!wr_field_header_int(p, "timestamp_in_ms", &v) &&
      (p->_flags & AMQP_BASIC_TIMESTAMP_FLAG)) {
    /* Seconds; compared before multiplying, which could overflow. */
    if (p->timestamp > (uint64_t)(now_ms + WR_METRICS_PUB_AHEAD_MS) / 1000)
      return 0;
    v = (int64_t)p->timestamp * 1000;
  }
  /* A publisher's clock, or a made-up value: only a plausible one counts,
   * so one message cannot add decades to the sum. */
  if (v <= 0 || v < now_ms - WR_METRICS_PUB_MAX_AGE_MS ||
      v > now_ms + WR_METRICS_PUB_AHEAD_MS)
    return 0;
  return v;
}

static void settled(void *ctx, size_t h, const wr_job *job, wr_outcome o,
                    const char *err) {
  wr_handler_metrics *hm = &((wr_metrics *)ctx)->h[h];
  const amqp_basic_properties_t *p = &job->env.message.properties;
  /* Counted here rather than on receipt: one callback per job less. */
  if ((p->_flags & AMQP_BASIC_DELIVERY_MODE_FLAG) && p->delivery_mode == 2)
    hm->persistent++;
  else
    hm->transient++;
  if (o != WR_OUT_ACKED && err) {
    /* Valid UTF-8, cut between characters: it goes into JSON. */
    size_t n = wr_utf8_copy(hm->last_error, err, strlen(err),
                            sizeof hm->last_error - 1);
    hm->last_error[n] = '\0';
    hm->last_error_ms = wr_unix_ms();
  }
  /* Jobs refused at intake (malformed, too large, a signature, revoked
   * while waiting) never reached a handler: they have no duration. */
  double ran = wr_job_ran(job, wr_now());
  if (ran < 0) return;
  wr_metrics_observe(&hm->duration, ran);
  int64_t now = wr_unix_ms(), pub = wr_metrics_published_ms(p, now);
  if (pub > 0)
    wr_metrics_observe(&hm->pickup, ((double)(now - pub) / 1000.0) - ran);
}

static void republished(void *ctx, size_t h, const wr_job *job, int dead,
                        const char *reason) {
  wr_metrics *m = ctx;
  (void)h;
  size_t i = (size_t)(job - m->slots);
  if (dead && i < m->nslots) m->reason[i] = (uint8_t)wr_metrics_reason(reason);
}

static void confirmed(void *ctx, size_t h, const wr_job *job, int ok) {
  wr_metrics *m = ctx;
  size_t i = (size_t)(job - m->slots);
  if (ok && job->dead && i < m->nslots) m->h[h].dead[m->reason[i]]++;
}

const wr_job_events wr_metrics_events = {
    .settled = settled,
    .republished = republished,
    .confirmed = confirmed,
};
