#include "intake.h"

#include <stdio.h>

#include "../config/cfg.h"

int wr_intake_add(wr_intake *in, const wr_intake_check *c, void *ctx) {
  if (in->n == WR_INTAKE_MAX) return -1;
  in->chain[in->n].c = c;
  in->chain[in->n++].ctx = ctx;
  return 0;
}

static int check_headers(void *ctx, size_t handler, wr_job *job, wr_outcome *o,
                         char *why, size_t whylen) {
  wr_intake *in = ctx;
  const wr_handler_cfg *hc = &in->cfg->handlers[handler];
  /* Only a quorum queue's redelivery carries a count the broker wrote. */
  int broker_counts = hc->quorum && job->env.redelivered;
  if (wr_retry_meta(&job->env.message.properties, broker_counts, &job->meta,
                    why, whylen) != 0) {
    *o = WR_OUT_MALFORMED;
    return 1;
  }
  if (!job->env.redelivered) return 0;
  /* Only runs that started count as attempts: the broker redelivers the
   * prefetched jobs of a lost connection too, which never ran. */
  uint32_t waited = 0;
  uint32_t ran =
      wr_runs_take(&in->runs,
                   wr_runs_key(handler, &job->env.message.properties,
                               job->env.message.body, job->meta.recorded),
                   &waited);
  if (ran) wr_retry_add_unrecorded(&job->meta, ran);
  job->meta.waited = waited;
  if (!wr_retry_over_deliveries(&hc->retry, &job->meta)) return 0;
  *o = WR_OUT_DELIVERIES;
  snprintf(why, whylen,
           "delivered %u times with no outcome recorded (x-delivery-count "
           "%u, %u of them seen unstarted, max_deliveries %d): does it kill "
           "the supervisor?",
           job->meta.deliveries + 1, job->meta.deliveries, job->meta.waited,
           hc->retry.max_deliveries);
  return 1;
}

const wr_intake_check wr_intake_headers = {"headers", check_headers};

void wr_intake_unrecorded(wr_intake *in, const wr_job *job) {
  int ran = job->started > 0;
  wr_runs_note(&in->runs,
               wr_runs_key(job->handler, &job->env.message.properties,
                           job->env.message.body, job->meta.recorded),
               job->meta.unrecorded + (uint32_t)ran,
               job->meta.waited + (uint32_t)!ran);
}

static int check_size(void *ctx, size_t handler, wr_job *job, wr_outcome *o,
                      char *why, size_t whylen) {
  const wr_intake *in = ctx;
  size_t max = in->cfg->handlers[handler].max_body;
  if (!max || job->env.message.body.len <= max) return 0;
  *o = WR_OUT_TOO_LARGE;
  snprintf(why, whylen, "body of %zu bytes is over max_body %zu",
           job->env.message.body.len, max);
  return 1;
}

const wr_intake_check wr_intake_size = {"size", check_size};

int wr_intake_decide(const wr_intake *in, size_t handler, wr_job *job,
                     wr_outcome *o, char *why, size_t whylen) {
  job->meta = (wr_job_meta){1, 0, 0, 1, 0, 0, 0};
  for (size_t i = 0; i < in->n; i++)
    if (in->chain[i].c->check(in->chain[i].ctx, handler, job, o, why, whylen))
      return 1;
  return 0;
}
