#include "intake.h"

#include <stdio.h>

#include "log.h"
#include "sup_private.h"

int wr_intake_add(wr_intake *in, const wr_intake_check *c, void *ctx) {
  if (in->n == WR_INTAKE_MAX) return -1;
  in->chain[in->n].c = c;
  in->chain[in->n++].ctx = ctx;
  return 0;
}

static int check_headers(void *ctx, size_t handler, wr_job *job, wr_outcome *o,
                         char *why, size_t whylen) {
  const wr_sup *s = ctx;
  /* Only a quorum queue's redelivery carries a count the broker wrote. */
  const wr_handler_cfg *hc = s->h[handler].cfg;
  int broker_counts = hc->quorum && job->env.redelivered;
  if (wr_retry_meta(&job->env.message.properties, broker_counts, &job->meta,
                    why, whylen) != 0) {
    *o = WR_OUT_MALFORMED;
    return 1;
  }
  if (!job->env.redelivered) return 0;
  /* Only runs that started count as attempts: the broker redelivers the
   * prefetched jobs of a lost connection too, which never ran. */
  wr_runs *r = &((wr_sup *)ctx)->intake.runs;
  uint32_t ran =
      wr_runs_take(r, wr_runs_key(handler, &job->env.message.properties,
                                  job->env.message.body, job->meta.recorded));
  if (ran) wr_retry_add_unrecorded(&job->meta, ran);
  if (!wr_retry_over_deliveries(&hc->retry, &job->meta)) return 0;
  *o = WR_OUT_DELIVERIES;
  snprintf(why, whylen,
           "delivered %u times with no outcome recorded (x-delivery-count "
           "%u, max_deliveries %d): does it kill the supervisor?",
           job->meta.deliveries + 1, job->meta.deliveries,
           hc->retry.max_deliveries);
  return 1;
}

void wr_intake_unrecorded(wr_sup *s, const wr_job *job) {
  if (!(job->started > 0)) return;
  wr_runs_note(&s->intake.runs,
               wr_runs_key(job->handler, &job->env.message.properties,
                           job->env.message.body, job->meta.recorded),
               job->meta.unrecorded + 1);
}

void wr_intake_lost(wr_sup *s) {
  uint64_t lost = s->session.gen - 1;
  for (size_t i = 0; i < s->nh; i++) {
    const wr_pool *p = &s->h[i].pool;
    for (int k = 0; s->h[i].cfg->isolated && k < p->n; k++) {
      wr_pool_worker w;
      wr_pool_worker_info(p, k, &w);
      if (w.job && w.job->gen == lost) wr_intake_unrecorded(s, w.job);
    }
  }
  for (const wr_job *j = s->settle.confirming.head; j; j = j->next)
    if (j->gen == lost) wr_intake_unrecorded(s, j);
  for (const wr_job *j = s->settle.parked.head; j; j = j->next)
    if (j->gen == lost) wr_intake_unrecorded(s, j);
}

const wr_intake_check wr_intake_headers = {"headers", check_headers};

static int check_size(void *ctx, size_t handler, wr_job *job, wr_outcome *o,
                      char *why, size_t whylen) {
  const wr_sup *s = ctx;
  size_t max = s->h[handler].cfg->max_body;
  if (!max || job->env.message.body.len <= max) return 0;
  *o = WR_OUT_TOO_LARGE;
  snprintf(why, whylen, "body of %zu bytes is over max_body %zu",
           job->env.message.body.len, max);
  return 1;
}

const wr_intake_check wr_intake_size = {"size", check_size};

void wr_intake_delivery(wr_sup *s, wr_job *job) {
  amqp_channel_t ch = job->env.channel;
  if (ch < 1 || ch > s->nh) {
    wr_error("delivery on unexpected channel %u; requeued", ch);
    uint64_t tag = job->env.delivery_tag;
    wr_sup_release(s, job);
    wr_session_nack(&s->session, ch, tag, 1);
    return;
  }
  wr_handler_rt *h = &s->h[ch - 1];
  job->id = ++s->next_id;
  job->handler = (uint16_t)(ch - 1);
  job->confirm_seq = 0;
  job->meta = (wr_job_meta){1, 0, 0, 1, 0, 0};
  job->revoked = 0;
  WR_NOTIFY(&s->obs, received, h->index, job);
  for (size_t i = 0; i < s->intake.n; i++) {
    wr_outcome o;
    char why[160];
    if (s->intake.chain[i].c->check(s->intake.chain[i].ctx, h->index, job, &o,
                                    why, sizeof why)) {
      wr_settle_finish(s, h, job, o, why);
      return;
    }
  }
  wr_jobq_push(&h->pending, job);
}
