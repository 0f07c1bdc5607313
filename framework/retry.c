#include "retry.h"

#include <stdio.h>
#include <string.h>

#include "field.h"

const char *wr_retry_reason(wr_outcome o) {
  switch (o) {
    case WR_OUT_REJECTED:
      return "rejected";
    case WR_OUT_CRASHED:
      return "crashed";
    case WR_OUT_TIMEOUT:
      return "timeout";
    case WR_OUT_MALFORMED:
      return "malformed";
    case WR_OUT_TOO_LARGE:
      return "too_large";
    case WR_OUT_SIGNATURE:
      return "signature";
    case WR_OUT_REVOKED:
      return "revoked";
    case WR_OUT_DELIVERIES:
      return "max-deliveries";
    default:
      return "max-attempts";
  }
}

int wr_retry_reason_known(const char *s) {
  static const wr_outcome all[] = {
      WR_OUT_REJECTED,  WR_OUT_CRASHED,    WR_OUT_TIMEOUT,
      WR_OUT_MALFORMED, WR_OUT_TOO_LARGE,  WR_OUT_SIGNATURE,
      WR_OUT_REVOKED,   WR_OUT_DELIVERIES, WR_OUT_FAILED /* max-attempts */};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++)
    if (!strcmp(s, wr_retry_reason(all[i]))) return 1;
  return 0;
}

static int key_is(const amqp_table_entry_t *e, const char *k) {
  size_t n = strlen(k);
  return e->key.len == n && memcmp(e->key.bytes, k, n) == 0;
}

int wr_retry_meta(const amqp_basic_properties_t *p, int broker_counts,
                  wr_job_meta *m, char *why, size_t whylen) {
  *m = (wr_job_meta){1, 0, 0, 1, 0, 0, 0};
  if (!(p->_flags & AMQP_BASIC_HEADERS_FLAG)) return 0;
  int64_t own = 1, redeliveries = 0;
  for (int i = 0; i < p->headers.num_entries; i++) {
    const amqp_table_entry_t *e = &p->headers.entries[i];
    int64_t n;
    int is_int = wr_field_int(&e->value, &n);
    const char *bad = NULL;
    if (key_is(e, WR_H_ATTEMPT)) {
      if (!is_int || n < 1 || n > WR_RETRY_MAX_COUNT)
        bad = WR_H_ATTEMPT;
      else
        own = n;
    } else if (key_is(e, WR_H_CRASHES)) {
      if (!is_int || n < 0 || n > WR_RETRY_MAX_COUNT)
        bad = WR_H_CRASHES;
      else
        m->crashes = (uint32_t)n;
    } else if (key_is(e, WR_H_FIRST_FAILURE)) {
      if (!is_int || n < 0)
        bad = WR_H_FIRST_FAILURE;
      else
        m->first_failure = n;
    } else if (key_is(e, "x-delivery-count") && broker_counts) {
      /* Quorum queues count returns to the queue: of a job that ran
       * (a supervisor that died or lost its connection mid-job) and of
       * one that only waited in a prefetch buffer alike, so it bounds
       * deliveries (max_deliveries), not attempts. Anywhere else a
       * publisher wrote it. */
      if (!is_int || n < 0 || n > WR_RETRY_MAX_COUNT)
        bad = "x-delivery-count";
      else
        redeliveries = n;
    }
    if (bad) {
      snprintf(why, whylen, "header %s is not a valid count", bad);
      return -1;
    }
  }
  m->attempt = m->recorded = (uint32_t)own;
  m->deliveries = (uint32_t)redeliveries;
  return 0;
}

void wr_retry_add_unrecorded(wr_job_meta *m, uint32_t runs) {
  if (runs > WR_RETRY_MAX_COUNT) runs = WR_RETRY_MAX_COUNT;
  /* Both are bounded above, so the sum cannot overflow. */
  uint32_t a = m->recorded + runs;
  m->unrecorded = runs;
  m->attempt = a > WR_RETRY_MAX_COUNT ? WR_RETRY_MAX_COUNT : a;
}

int wr_retry_over_deliveries(const wr_retry_cfg *p, const wr_job_meta *m) {
  /* Returns seen to be unstarted cost nothing; the rest may be runs that
   * took the supervisor down with them. */
  uint32_t w = m->waited < m->deliveries ? m->waited : m->deliveries;
  return p->max_deliveries > 0 &&
         m->deliveries - w >= (uint32_t)p->max_deliveries;
}

wr_decision wr_retry_decide(const wr_retry_cfg *p, const wr_job_meta *m,
                            wr_outcome o, double rnd) {
  wr_decision d = {0, NULL, 0, 0};
  if (o == WR_OUT_REJECTED || o == WR_OUT_MALFORMED || o == WR_OUT_TOO_LARGE ||
      o == WR_OUT_SIGNATURE || o == WR_OUT_REVOKED || o == WR_OUT_DELIVERIES ||
      (o == WR_OUT_CRASHED && m->crashes + 1 >= (uint32_t)p->max_crashes) ||
      m->attempt >= (uint32_t)p->max_attempts) {
    d.dead = 1;
    d.reason = wr_retry_reason(o);
    return d;
  }
  d.step = (int)m->attempt - 1;
  if (d.step >= p->n_backoff) d.step = p->n_backoff - 1;
  double base = p->backoff[d.step] * 1000.0;
  double ms = base * (1.0 + p->jitter * (2.0 * rnd - 1.0));
  d.delay_ms = ms < 1 ? 1 : (int64_t)ms;
  return d;
}

int64_t wr_retry_queue_ttl(const wr_retry_cfg *p, int step) {
  /* Twice the step: the largest jittered delay (jitter <= 1) always fits,
   * so a change of jitter never needs other queue arguments. The
   * per-message expiration decides the delay. */
  return (int64_t)(p->backoff[step] * 2000.0 + 0.5);
}

/* Warren's bookkeeping on a job; a copy gets fresh values of these. Other
 * headers, "warren-" ones of the application included, are kept. */
static const char *const own_headers[] = {
    WR_H_ATTEMPT,
    WR_H_CRASHES,
    WR_H_FIRST_FAILURE,
    WR_H_LAST_FAILURE,
    WR_H_LAST_ERROR,
    WR_H_REASON,
    WR_H_HANDLER,
    WR_H_ATTEMPTS,
    WR_H_HOST,
    WR_H_QUEUE,
    WR_H_COPY,
    WR_H_SIG_CHECK,
    /* The broker's count of returns belongs to the delivery, not the job:
     * copied onto a new message it would be counted again. */
    "x-delivery-count",
};

static int replaced(const amqp_table_entry_t *e, const amqp_table_entry_t *add,
                    size_t n_add) {
  for (size_t i = 0; i < sizeof own_headers / sizeof *own_headers; i++)
    if (key_is(e, own_headers[i])) return 1;
  for (size_t i = 0; i < n_add; i++)
    if (e->key.len == add[i].key.len &&
        memcmp(e->key.bytes, add[i].key.bytes, e->key.len) == 0)
      return 1;
  return 0;
}

amqp_table_t wr_retry_headers(const amqp_table_t *orig,
                              amqp_table_entry_t *store, size_t cap,
                              const amqp_table_entry_t *add, size_t n_add) {
  size_t n = 0;
  for (int i = 0; orig && i < orig->num_entries && n + n_add < cap; i++) {
    const amqp_table_entry_t *e = &orig->entries[i];
    if (!replaced(e, add, n_add)) store[n++] = *e;
  }
  for (size_t i = 0; i < n_add && n < cap; i++) store[n++] = add[i];
  return (amqp_table_t){(int)n, store};
}

amqp_table_entry_t wr_entry_int(const char *key, int64_t v) {
  amqp_table_entry_t e = {amqp_cstring_bytes(key),
                          {AMQP_FIELD_KIND_I64, {.i64 = v}}};
  return e;
}

amqp_table_entry_t wr_entry_str(const char *key, const char *v) {
  amqp_table_entry_t e = {
      amqp_cstring_bytes(key),
      {AMQP_FIELD_KIND_UTF8, {.bytes = amqp_cstring_bytes(v)}}};
  return e;
}
