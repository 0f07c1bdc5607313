#include "settle.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <warren/status.h>

#include "../config/cfg.h"
#include "clock.h"
#include "extras.h"
#include "log.h"
#include "replyto.h"
#include "spans.h"
#include "topology.h"
#include "tracectx.h"

static amqp_bytes_t msg_id(const wr_job *job) {
  const amqp_basic_properties_t *p = &job->env.message.properties;
  amqp_bytes_t none = {0, ""};
  return (p->_flags & AMQP_BASIC_MESSAGE_ID_FLAG) ? p->message_id : none;
}

/* Handler h's index, as the observers and the ledger know it. */
static size_t idx(const wr_settle *st, const wr_settle_handler *h) {
  return (size_t)(h - st->h);
}

static void finish(wr_settle *st, wr_settle_handler *h, wr_job *job,
                   wr_outcome o, const char *err);

void wr_settle_expect(wr_job *job, uint64_t first, size_t n) {
  job->confirm_first = first;
  job->confirm_seq = first + n - 1;
  memset(job->confirm_bits, 0, sizeof job->confirm_bits);
  for (size_t k = 0; k < n; k++) job->confirm_bits[k / 64] |= 1ull << (k % 64);
  job->returned = job->nacked = 0;
}

/* Give a job's slot back (its envelope is freed). */
static void release(wr_settle *st, wr_job *job) {
  wr_ledger_move(st->env.ledger, job, WR_JOB_FREE);
}

/* The job waits, CONFIRMING, for the n publishes from first on. */
static void await_confirms(wr_settle *st, wr_job *job, uint64_t first,
                           size_t n) {
  wr_settle_expect(job, first, n);
  wr_ledger_move(st->env.ledger, job, WR_JOB_CONFIRMING);
}

/* The job's attempt is over: it is being settled (ledger.h). */
static void settling(wr_settle *st, wr_job *job) {
  if (job->state != WR_JOB_SETTLING)
    wr_ledger_move(st->env.ledger, job, WR_JOB_SETTLING);
}

/* The job's reply_to, NUL-terminated into rt; 0 when it has none. */
static int reply_to_of(const wr_job *job, char rt[256]) {
  const amqp_basic_properties_t *p = &job->env.message.properties;
  if (!(p->_flags & AMQP_BASIC_REPLY_TO_FLAG) || !p->reply_to.len) return 0;
  snprintf(rt, 256, "%.*s", (int)p->reply_to.len,
           (const char *)p->reply_to.bytes);
  return rt[0] != '\0';
}

/* As reply_to_of, without the copy: it is asked on every ack. */
int wr_settle_wants_reply(const wr_job *job) {
  const amqp_basic_properties_t *p = &job->env.message.properties;
  return (p->_flags & AMQP_BASIC_REPLY_TO_FLAG) && p->reply_to.len &&
         ((const char *)p->reply_to.bytes)[0] != '\0';
}

/* RabbitMQ's direct reply-to: the pseudo-queue and its per-caller names. */
static int direct_reply_to(const char *rt) {
  return wr_replyto_is_direct(rt, strlen(rt));
}

/* A result of handler h's job that was not delivered: counted, and said
 * once at warn level (a caller that gave up is no fault of the worker),
 * then at debug. what ends with the cause. */
static void reply_lost(wr_settle *st, size_t h, const wr_job *job,
                       const char *what) {
  WR_NOTIFY(st->env.obs, replied, h, job, 0);
  wr_log(st->warned_reply ? WARREN_LOG_DEBUG : WARREN_LOG_WARN,
         "handler %s: %s%s", st->h[h].cfg->name, what,
         st->warned_reply ? "" : " (said once; counted)");
  st->warned_reply = 1;
}

/* Only a job that reached its handler is answered: one refused at
 * intake (malformed, too large, its signature, revoked while waiting) or
 * for its body's digest gets no result of any kind, so a publisher
 * without the key cannot make Warren publish for it (docs/signing.md,
 * "Threat model"). */
static int answerable(const wr_job *job, wr_outcome o) {
  return job->started > 0 && o != WR_OUT_SIGNATURE;
}

/* Whether job's result may go to its reply_to, which is then in rt: a
 * named queue only when the handler's reply_queues lists it; a direct
 * reply-to name only when it is shaped as the broker makes them
 * (replyto.h), as the broker may close the connection on another. A
 * result not sent is said once and counted as lost. */
static int reply_sendable(wr_settle *st, wr_settle_handler *h, wr_job *job,
                          char rt[256]) {
  if (!reply_to_of(job, rt)) return 0;
  const amqp_bytes_t *b = &job->env.message.properties.reply_to;
  const char *why;
  if (!wr_replyto_is_direct(b->bytes, b->len)) {
    /* reply_to is not signed: a named queue is only one the operator
     * listed, never another handler's work queue or a DLQ. */
    for (size_t i = 0; i < h->cfg->n_reply_queues; i++)
      if (strlen(h->cfg->reply_queues[i]) == b->len &&
          !memcmp(h->cfg->reply_queues[i], b->bytes, b->len))
        return 1;
    why = "is not in the handler's reply_queues";
  } else if (wr_replyto_ok(b->bytes, b->len) && strlen(rt) == b->len) {
    return 1;
  } else {
    why =
        "is no direct reply-to name the broker gave (it could close "
        "the connection)";
  }
  char what[400];
  snprintf(what, sizeof what, "reply_to '%s' %s: no result sent", rt, why);
  reply_lost(st, idx(st, h), job, what);
  return 0;
}

/*
 * Publish job's result (outcome "ack") or error result to its reply_to,
 * through the default exchange, correlated as docs/results.md says.
 * A named reply queue (ch 0) is published mandatory on the confirm
 * channel and carries its confirm sequence (WR_H_COPY), so a return
 * tells a missing queue, which is counted and never fails the job
 * (wr_settle_published); returns that sequence (also in
 * job->reply_seq), or 0 when the connection was lost. A result to direct
 * reply-to goes on the handler's channel ch after the job's ack (see
 * answer_late), neither mandatory (the broker hands it to its caller
 * without routing it to a queue, so it would always come back) nor
 * confirmed; returns 1, or 0 when the connection was lost. rt: the job's
 * reply_to (reply_sendable).
 */
static uint64_t publish_result(wr_settle *st, wr_job *job, const char *rt,
                               const char *outcome,
                               const amqp_table_entry_t *more, size_t nmore,
                               const char *content_type, amqp_bytes_t body,
                               amqp_channel_t ch) {
  amqp_table_entry_t e[12];
  size_t n = 0;
  if (!ch)
    e[n++] =
        wr_entry_int(WR_H_COPY, (int64_t)wr_session_next_seq(st->env.session));
  e[n++] = wr_entry_str(WR_H_OUTCOME, outcome);
  for (size_t i = 0; i < nmore && n < 9; i++) e[n++] = more[i];
  char tp[WR_TRACEPARENT_LEN + 1];
  amqp_bytes_t ts;
  if (wr_spans_followup_context(job, tp, &ts) == 0)
    e[n++] = wr_entry_str("traceparent", tp);
  const amqp_basic_properties_t *jp = &job->env.message.properties;
  amqp_basic_properties_t pr = {0};
  pr._flags = AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_HEADERS_FLAG;
  pr.delivery_mode = 2;
  /* The caller matches by correlation id; a job without one is answered
   * under its message id (as Celery's task id answers its result). */
  if (jp->_flags & AMQP_BASIC_CORRELATION_ID_FLAG) {
    pr._flags |= AMQP_BASIC_CORRELATION_ID_FLAG;
    pr.correlation_id = jp->correlation_id;
  } else if (jp->_flags & AMQP_BASIC_MESSAGE_ID_FLAG) {
    pr._flags |= AMQP_BASIC_CORRELATION_ID_FLAG;
    pr.correlation_id = jp->message_id;
  }
  if (jp->_flags & AMQP_BASIC_MESSAGE_ID_FLAG) {
    pr._flags |= AMQP_BASIC_MESSAGE_ID_FLAG;
    pr.message_id = jp->message_id;
  }
  if (content_type && *content_type) {
    pr._flags |= AMQP_BASIC_CONTENT_TYPE_FLAG;
    pr.content_type = amqp_cstring_bytes(content_type);
  }
  pr.headers = (amqp_table_t){(int)n, e};
  if (ch) return wr_session_send(st->env.session, ch, "", rt, &pr, body) == 0;
  uint64_t got = wr_session_publish_ex(st->env.session, "", rt, &pr, body, 1);
  job->reply_seq = got;
  job->no_reply = 0;
  return got;
}

/* The error result of a job that is dead-lettered: JSON (results.md),
 * malloc'd; NULL when out of memory (its headers still say it all). */
static char *error_result(const wr_settle_handler *h, const wr_job *job,
                          const char *reason, const char *err) {
  amqp_bytes_t id = msg_id(job);
  char idbuf[300];
  snprintf(idbuf, sizeof idbuf, "%.*s", (int)id.len, (const char *)id.bytes);
  cJSON *o = cJSON_CreateObject();
  char *text = NULL;
  if (o) {
    cJSON_AddStringToObject(o, "outcome", WR_OUTCOME_DEAD);
    cJSON_AddStringToObject(o, "reason", reason);
    cJSON_AddStringToObject(o, "error", err ? err : "");
    cJSON_AddNumberToObject(o, "attempts", (double)job->meta.attempt);
    if (id.len)
      cJSON_AddStringToObject(o, "message_id", idbuf);
    else
      cJSON_AddNullToObject(o, "message_id");
    cJSON_AddStringToObject(o, "handler", h->cfg->name);
    cJSON_AddStringToObject(o, "queue", h->cfg->queue);
    char *t = cJSON_PrintUnformatted(o);
    text = t ? strdup(t) : NULL;
    cJSON_free(t);
    cJSON_Delete(o);
  }
  return text;
}

/* Publish that error result with its facts in headers, as on the dead
 * letter: as publish_result. */
static uint64_t publish_error_result(wr_settle *st, wr_job *job, const char *rt,
                                     const char *reason, const char *err,
                                     const char *text, amqp_channel_t ch) {
  amqp_table_entry_t more[3] = {wr_entry_str(WR_H_REASON, reason),
                                wr_entry_str(WR_H_LAST_ERROR, err ? err : ""),
                                wr_entry_int(WR_H_ATTEMPTS, job->meta.attempt)};
  return publish_result(st, job, rt, WR_OUTCOME_DEAD, more, 3,
                        "application/json",
                        text ? amqp_cstring_bytes(text) : amqp_empty_bytes, ch);
}

/*
 * A result to RabbitMQ's direct reply-to goes after the job's ack, on the
 * handler's channel: the broker handles a channel's frames in order, so
 * the ack is done before the result is looked at. A name the broker
 * cannot decode closes the whole connection (541 on 3.10); the job is
 * acked by then and runs once, whatever the name (docs/results.md). Not
 * confirmed: counted as delivered once sent.
 */
static void answer_late(wr_settle *st, wr_settle_handler *h, wr_job *job) {
  char rt[256];
  if (!st->env.session->conn || !reply_to_of(job, rt)) return;
  uint64_t ok;
  if (job->reply_late == 2) {
    ok = publish_error_result(st, job, rt, job->late_reason, job->late_err,
                              job->late_body, h->ch);
  } else {
    const wr_extras *x = job->extras;
    int has = x && x->has_result;
    amqp_bytes_t body = has ? (amqp_bytes_t){x->result_len, (void *)x->result}
                            : amqp_empty_bytes;
    ok = publish_result(st, job, rt, WR_OUTCOME_ACK, NULL, 0,
                        has ? x->result_type.s : NULL, body, h->ch);
  }
  if (ok) WR_NOTIFY(st->env.obs, replied, idx(st, h), job, 1);
}

/*
 * Publish the copy that carries a failed job on: to its retry queue, or
 * to its dead-letter exchange with the reason. The original waits on
 * `confirming` until the broker answers for the copy.
 */
static void republish(wr_settle *st, wr_settle_handler *h, wr_job *job,
                      wr_outcome o, const char *err) {
  const wr_handler_cfg *hc = h->cfg;
  wr_decision d = wr_retry_decide(&hc->retry, &job->meta, o, wr_rand01());
  int64_t now = wr_unix_ms();
  uint32_t crashes = o == WR_OUT_CRASHED ? job->meta.crashes + 1 : 0;
  uint64_t seq = wr_session_next_seq(st->env.session);
  amqp_table_entry_t add[16];
  size_t n = 0;
  add[n++] = wr_entry_int(WR_H_COPY, (int64_t)seq);
  add[n++] =
      wr_entry_int(WR_H_FIRST_FAILURE,
                   job->meta.first_failure ? job->meta.first_failure : now);
  add[n++] = wr_entry_int(WR_H_LAST_FAILURE, now);
  add[n++] = wr_entry_str(WR_H_LAST_ERROR, err);
  add[n++] = wr_entry_int(WR_H_CRASHES, crashes);
  /* Warren's own copy of a verified job carries its countersignature,
   * valid around when the copy is due back (sigcheck.h). */
  char csig[WARREN_SIGNATURE_MAX];
  if (wr_sigcheck_countersign(
          st->env.sig, idx(st, h), job, d.dead ? now : now + d.delay_ms,
          d.dead ? 0 : (int64_t)job->meta.attempt + 1, crashes, csig) == 0)
    add[n++] = wr_entry_str(WR_SIGN_COUNTER_HEADER, csig);
  if (o == WR_OUT_SIGNATURE)
    add[n++] = wr_entry_str(WR_H_SIG_CHECK, wr_sign_check_name(job->sig_check));
  /* The copy continues the trace from this attempt (spans.h). */
  char tp[WR_TRACEPARENT_LEN + 1];
  if (wr_spans_copy_context(job, tp) == 0)
    add[n++] = wr_entry_str("traceparent", tp);
  amqp_basic_properties_t pr = job->env.message.properties;
  char exchange[300], rk[300], expiration[32];
  if (d.dead) {
    add[n++] = wr_entry_str(WR_H_REASON, d.reason);
    add[n++] = wr_entry_str(WR_H_HANDLER, hc->name);
    add[n++] = wr_entry_int(WR_H_ATTEMPTS, job->meta.attempt);
    add[n++] = wr_entry_str(WR_H_HOST, st->env.host);
    add[n++] = wr_entry_str(WR_H_QUEUE, hc->queue);
    /* A dead letter waits for an operator: it must not expire. */
    pr._flags &= ~AMQP_BASIC_EXPIRATION_FLAG;
    wr_name_dlx(hc->queue, exchange, sizeof exchange);
    snprintf(rk, sizeof rk, "%.*s", (int)job->env.routing_key.len,
             (const char *)job->env.routing_key.bytes);
  } else {
    add[n++] = wr_entry_int(WR_H_ATTEMPT, (int64_t)job->meta.attempt + 1);
    snprintf(expiration, sizeof expiration, "%lld", (long long)d.delay_ms);
    pr._flags |= AMQP_BASIC_EXPIRATION_FLAG;
    pr.expiration = amqp_cstring_bytes(expiration);
    exchange[0] = '\0';
    wr_name_retry_queue(hc->queue, hc->retry.backoff[d.step], rk, sizeof rk);
  }
  const amqp_table_t *orig = (pr._flags & AMQP_BASIC_HEADERS_FLAG)
                                 ? &job->env.message.properties.headers
                                 : NULL;
  /* Every original header is kept, however many there are. */
  size_t cap = (orig ? (size_t)orig->num_entries : 0) + n;
  amqp_table_entry_t *store = malloc(cap * sizeof *store);
  if (!store) {
    wr_error(
        "handler %s: out of memory for a copy's headers; the job goes "
        "back to the queue",
        hc->name);
    wr_session_nack(st->env.session, h->ch, job->env.delivery_tag, 1);
    release(st, job);
    return;
  }
  pr.headers = wr_retry_headers(orig, store, cap, add, n);
  pr._flags |= AMQP_BASIC_HEADERS_FLAG;
  uint64_t got = wr_session_publish(st->env.session, exchange, rk, &pr,
                                    job->env.message.body);
  free(store);
  job->reply_seq = 0;
  /* A caller waiting on reply_to hears of the final failure only: to a
   * named queue with the dead letter, both confirmed before the ack; to
   * direct reply-to after the ack (answer_late). */
  size_t nconfirms = 1;
  char rt[256];
  if (got && d.dead && answerable(job, o) && reply_sendable(st, h, job, rt)) {
    char *text = error_result(h, job, d.reason, err);
    if (direct_reply_to(rt)) {
      job->reply_late = 2;
      job->late_body = text;
      job->late_err = strdup(err ? err : "");
      job->late_reason = d.reason;
    } else {
      if (!publish_error_result(st, job, rt, d.reason, err, text, 0)) got = 0;
      free(text);
      nconfirms = 2;
    }
  }
  if (!got) { /* connection lost: the broker redelivers the original */
    release(st, job);
    return;
  }
  amqp_bytes_t id = msg_id(job);
  if (d.dead)
    wr_warn(
        "handler %s: job %.*s dead-lettered to %s after attempt %u: %s (%s)",
        hc->name, (int)id.len, (const char *)id.bytes, exchange,
        job->meta.attempt, d.reason, err);
  else
    wr_info("handler %s: job %.*s attempt %u failed (%s); retry in %.1f s",
            hc->name, (int)id.len, (const char *)id.bytes, job->meta.attempt,
            err, (double)d.delay_ms / 1000.0);
  job->dead = (uint8_t)d.dead;
  job->retry_delay_ms = d.dead ? 0 : d.delay_ms;
  job->followups = 0;
  await_confirms(st, job, got, nconfirms);
  WR_NOTIFY(st->env.obs, republished, idx(st, h), job, d.dead,
            d.dead ? d.reason : NULL);
}

static amqp_field_value_t field_of(const wr_attr *a) {
  amqp_field_value_t v = {0};
  switch (a->type) {
    case WR_ATTR_STRING:
      v.kind = AMQP_FIELD_KIND_UTF8;
      v.value.bytes = (amqp_bytes_t){a->len, (void *)a->str};
      break;
    case WR_ATTR_INT:
      v.kind = AMQP_FIELD_KIND_I64;
      v.value.i64 = a->i;
      break;
    case WR_ATTR_DOUBLE:
      v.kind = AMQP_FIELD_KIND_F64;
      v.value.f64 = a->d;
      break;
    default:
      v.kind = AMQP_FIELD_KIND_BOOLEAN;
      v.value.boolean = a->i != 0;
  }
  return v;
}

static amqp_bytes_t bytes_of(wr_str s) {
  return (amqp_bytes_t){s.len, (void *)s.s};
}

/* Publish follow-up f of job. Returns its confirm sequence, or 0 when the
 * connection was lost. */
static uint64_t publish_followup(wr_settle *st, const wr_job *job,
                                 const wr_followup *f) {
  amqp_table_entry_t e[WR_EXTRAS_MAX_HEADERS + 5];
  size_t n = 0;
  for (size_t i = 0; i < f->nheaders; i++)
    e[n++] = (amqp_table_entry_t){amqp_cstring_bytes(f->headers[i].key),
                                  field_of(&f->headers[i])};
  /* Which publish it is, for a return (conn.h), as on copies. */
  e[n++] =
      wr_entry_int(WR_H_COPY, (int64_t)wr_session_next_seq(st->env.session));
  char tp[WR_TRACEPARENT_LEN + 1];
  amqp_bytes_t ts;
  if (wr_spans_followup_context(job, tp, &ts) == 0) {
    e[n++] = wr_entry_str("traceparent", tp);
    if (ts.len)
      e[n++] = (amqp_table_entry_t){amqp_cstring_bytes("tracestate"),
                                    {AMQP_FIELD_KIND_UTF8, {.bytes = ts}}};
  }
  amqp_basic_properties_t pr = {0};
  pr._flags = AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_HEADERS_FLAG;
  pr.delivery_mode = f->transient ? 1 : 2;
  if (f->content_type.len) {
    pr._flags |= AMQP_BASIC_CONTENT_TYPE_FLAG;
    pr.content_type = bytes_of(f->content_type);
  }
  if (f->message_id.len) {
    pr._flags |= AMQP_BASIC_MESSAGE_ID_FLAG;
    pr.message_id = bytes_of(f->message_id);
  }
  if (f->correlation_id.len) {
    pr._flags |= AMQP_BASIC_CORRELATION_ID_FLAG;
    pr.correlation_id = bytes_of(f->correlation_id);
  }
  /* Signed as its producer, with Warren's own key, only when the job
   * that made it was verified: Warren lends its key to no job it did not
   * verify, so an unsigned job run by a lax handler cannot start work on
   * a strict one (docs/signing.md, "Threat model"). */
  char sig[WARREN_SIGNATURE_MAX];
  if (st->env.sig->ring && st->env.sig->counter_key[0] && job->signed_ok) {
    wr_sign_job sj = {{f->message_id.s, f->message_id.len},
                      {f->exchange.s, f->exchange.len},
                      {f->routing_key.s, f->routing_key.len},
                      {f->content_type.s, f->content_type.len},
                      {"", 0},
                      {"", 0},
                      {"", 0}};
    if (wr_sign_make(st->env.sig->ring, st->env.sig->counter_key,
                     wr_sign_now_ms(), 0, &sj, f->body, f->body_len, sig) == 0)
      e[n++] = wr_entry_str(WARREN_SIGNATURE_HEADER, sig);
  }
  pr.headers = (amqp_table_t){(int)n, e};
  return wr_session_publish(st->env.session, f->exchange.s, f->routing_key.s,
                            &pr, (amqp_bytes_t){f->body_len, (void *)f->body});
}

/* Whether exchange name (a follow-up's) exists: 1, 0, or -1 when the
 * connection failed asking. The default exchange always does. */
static int exchange_ok(wr_settle *st, const wr_str *name) {
  if (!name->len) return 1;
  unsigned n = st->nknown < WR_SETTLE_KNOWN ? st->nknown : WR_SETTLE_KNOWN;
  for (unsigned i = 0; i < n; i++)
    if (strcmp(st->known[i], name->s) == 0) return 1;
  char err[512];
  int rc = wr_topology_exchange_exists(
      st->env.session->conn, st->env.declare_ch, name->s, err, sizeof err);
  if (rc == 1)
    snprintf(st->known[st->nknown++ % WR_SETTLE_KNOWN], sizeof st->known[0],
             "%s", name->s);
  if (rc < 0) {
    wr_session_lost(st->env.session, err, 0);
    return -1;
  }
  return rc;
}

static void followups(wr_settle *st, wr_settle_handler *h, wr_job *job) {
  settling(st, job);
  /* A delivery of a closed connection comes again: its follow-ups and
   * result are sent by that run, not twice. */
  if (job->gen != st->env.session->gen || !st->env.session->conn) {
    finish(st, h, job, WR_OUT_ACKED, NULL);
    return;
  }
  const wr_extras *x = job->extras;
  size_t nf = x ? x->nfollow : 0;
  uint64_t first = 0;
  for (size_t i = 0; i < nf; i++) {
    int ok = exchange_ok(st, &x->follow[i].exchange);
    if (ok < 0) { /* connection lost: the broker redelivers the job */
      WR_NOTIFY(st->env.obs, dropped, idx(st, h), 1);
      release(st, job);
      return;
    }
    if (!ok) {
      char err[400];
      snprintf(err, sizeof err,
               "a follow-up job names exchange '%s', which does not exist",
               x->follow[i].exchange.s);
      finish(st, h, job, WR_OUT_FAILED, err);
      return;
    }
  }
  for (size_t i = 0; i < nf; i++) {
    uint64_t seq = publish_followup(st, job, &x->follow[i]);
    if (!seq) { /* connection lost: the broker redelivers the job */
      WR_NOTIFY(st->env.obs, dropped, idx(st, h), 1);
      release(st, job);
      return;
    }
    if (!first) first = seq;
  }
  /* The result goes last, so a caller that has it can find the job's
   * follow-ups published already. No result set: an empty one, so the
   * caller hears that the job is done. */
  size_t n = nf;
  job->reply_seq = 0;
  char rt[256];
  int answer = reply_sendable(st, h, job, rt);
  if (answer && direct_reply_to(rt)) {
    job->reply_late = 1; /* after the ack (answer_late) */
  } else if (answer) {
    int has = x && x->has_result;
    amqp_bytes_t body = has ? (amqp_bytes_t){x->result_len, (void *)x->result}
                            : amqp_empty_bytes;
    uint64_t seq = publish_result(st, job, rt, WR_OUTCOME_ACK, NULL, 0,
                                  has ? x->result_type.s : NULL, body, 0);
    if (!seq) {
      WR_NOTIFY(st->env.obs, dropped, idx(st, h), 1);
      release(st, job);
      return;
    }
    if (!first) first = seq;
    n++;
  }
  if (!n) { /* nothing awaits a confirm: acked now (and answered then) */
    finish(st, h, job, WR_OUT_ACKED, NULL);
    return;
  }
  job->dead = 0;
  job->followups = 1;
  await_confirms(st, job, first, n);
}

/* Handler h's waiting acks go now (acks.h: none above its lowest open
 * tag is covered by a multiple ack). */
static void flush(wr_settle *st, wr_settle_handler *h) {
  wr_session *ses = st->env.session;
  if (!h->acks.n || !ses->conn) return;
  wr_ack_plan p = wr_acks_take(
      &h->acks, wr_ledger_lowest_open(st->env.ledger, idx(st, h), ses->gen));
  if (p.upto && wr_session_ack(ses, h->ch, p.upto, 1) != 0) return;
  for (size_t i = 0; i < p.n_single; i++)
    if (wr_session_ack(ses, h->ch, p.single[i], 0) != 0) return;
}

static void finish(wr_settle *st, wr_settle_handler *h, wr_job *job,
                   wr_outcome o, const char *err) {
  settling(st, job);
  WR_NOTIFY(st->env.obs, settled, idx(st, h), job, o, err);
  if (job->gen != st->env.session->gen || !st->env.session->conn) {
    WR_NOTIFY(st->env.obs, dropped, idx(st, h), 1);
    wr_debug(
        "handler %s: result for a delivery of a closed connection; the "
        "broker redelivers it",
        h->cfg->name);
    release(st, job);
    return;
  }
  if (o != WR_OUT_ACKED) {
    republish(st, h, job, o, err);
    return;
  }
  /* Acks are coalesced (acks.h): sent when a batch is due, after at most
   * a millisecond, or as soon as the loop has nothing else to do. */
  int due = wr_acks_add(&h->acks, job->env.delivery_tag,
                        h->acks.n ? h->acks.since : wr_now());
  if (job->reply_late) { /* the ack goes now, then the answer */
    flush(st, h);
    answer_late(st, h, job);
    release(st, job);
    return;
  }
  release(st, job);
  if (due) flush(st, h);
}

/* The job's result went out with its publishes: count it; one the broker
 * refused (no_reply 2, cover()) is said once and counted as lost. */
static void reply_settled(wr_settle *st, wr_job *job) {
  if (!job->reply_seq) return;
  if (job->no_reply == 2)
    reply_lost(st, job->handler, job,
               "the broker refused the error result of a dead-lettered job "
               "(its reply queue is full?); dropped");
  else if (!job->no_reply) {
    WR_NOTIFY(st->env.obs, replied, job->handler, job, 1);
  }
}

static void copy_confirmed(wr_settle *st, wr_job *job) {
  wr_settle_handler *h = &st->h[job->handler];
  reply_settled(st, job);
  if (job->followups) { /* all of them: the job is done */
    finish(st, h, job, WR_OUT_ACKED, NULL);
    return;
  }
  WR_NOTIFY(st->env.obs, confirmed, idx(st, h), job, 1);
  if (h->refusing) {
    h->refusing = 0;
    wr_backoff_reset(&h->refusal);
    wr_info("handler %s: retry and dead-letter copies go through again",
            h->cfg->name);
  }
  /* The copy went through: ack the original (then answer, answer_late). */
  wr_session_ack(st->env.session, h->ch, job->env.delivery_tag, 0);
  if (job->reply_late) answer_late(st, h, job);
  release(st, job);
}

/* The copy of `job` was refused or came back: its original stays unacked
 * and is requeued after a backoff, while the topology is declared again
 * (an operator may have deleted a retry queue or unbound the DLQ). */
static void copy_refused(wr_settle *st, wr_job *job) {
  wr_settle_handler *h = &st->h[job->handler];
  if (job->followups) {
    /* The handler's work is not complete: the job fails this attempt
     * and its retry sends the follow-ups again (handler.h). */
    char err[128];
    /* A result never comes back as returned (wr_settle_published). */
    snprintf(err, sizeof err, "%s was %s by the broker",
             job->returned || !job->reply_seq
                 ? "a follow-up job"
                 : "a follow-up job or the job's result",
             job->returned ? "returned unroutable" : "refused");
    job->followups = 0;
    finish(st, h, job, WR_OUT_FAILED, err);
    return;
  }
  reply_settled(st, job);
  WR_NOTIFY(st->env.obs, confirmed, idx(st, h), job, 0);
  double delay = wr_backoff_fail(&h->refusal, wr_rand01());
  amqp_bytes_t id = msg_id(job);
  /* Once per episode at error level: a hot loop must not flood the log. */
  wr_log(h->refusing ? WARREN_LOG_DEBUG : WARREN_LOG_ERROR,
         "handler %s: the broker %s the %s copy of job %.*s (tag %llu); the "
         "original goes back to queue %s in %.1f s and the topology is "
         "declared again",
         h->cfg->name, job->returned ? "returned" : "refused",
         job->dead ? "dead-letter" : "retry", (int)id.len,
         (const char *)id.bytes, (unsigned long long)job->env.delivery_tag,
         h->cfg->queue, delay);
  h->refusing = 1;
  job->due = wr_now() + delay;
  wr_ledger_move(st->env.ledger, job, WR_JOB_PARKED);
  if (!st->redeclare_at) st->redeclare_at = wr_now();
}

int wr_settle_cover(wr_job *j, const wr_pub_event *ev) {
  uint64_t lo = ev->multiple ? j->confirm_first : ev->tag, hi = ev->tag;
  if (lo < j->confirm_first) lo = j->confirm_first;
  if (hi > j->confirm_seq) hi = j->confirm_seq;
  int any = 0;
  for (uint64_t q = lo; q <= hi && lo <= hi; q++) {
    uint64_t k = q - j->confirm_first, bit = 1ull << (k % 64);
    int hit = (j->confirm_bits[k / 64] & bit) != 0;
    /* The error result of a dead letter is best effort: its refusal
     * alone (a full reply queue) must not send the job round again
     * (results.md). */
    if (hit && q == j->reply_seq && j->dead && ev->kind != WR_PUB_ACK) {
      j->no_reply = 2;
      hit = 0;
    }
    any |= hit;
    j->confirm_bits[k / 64] &= ~bit;
  }
  return any;
}

int wr_settle_awaited(const wr_job *j) {
  uint64_t any = 0;
  for (size_t i = 0; i < sizeof j->confirm_bits / sizeof *j->confirm_bits; i++)
    any |= j->confirm_bits[i];
  return any != 0;
}

void wr_settle_published(wr_settle *st, const wr_pub_event *ev) {
  const wr_jobq *q = wr_ledger_line(st->env.ledger, WR_JOB_CONFIRMING, 0);
  if (ev->kind == WR_PUB_RETURN) {
    wr_job *j = q->head;
    while (j && ev->copy >= 0 &&
           (j->confirm_first > (uint64_t)ev->copy ||
            j->confirm_seq < (uint64_t)ev->copy))
      j = j->next;
    if (!j || ev->copy < 0) {
      /* Not a copy of ours: nothing is tied to it. */
      wr_error(
          "a message came back unroutable that is no copy awaiting its "
          "confirm: %s",
          ev->why);
      return;
    }
    if (j->reply_seq && (uint64_t)ev->copy == j->reply_seq) {
      /* The caller's reply queue is gone (it timed out, its exclusive
       * queue died): the job's work is done all the same. */
      j->no_reply = 1;
      char what[400];
      snprintf(what, sizeof what,
               "the result of a job came back: its reply queue does not "
               "exist (%s); dropped",
               ev->why);
      reply_lost(st, j->handler, j, what);
      return;
    }
    j->returned = 1;
    wr_debug("handler %s: a %s came back unroutable: %s",
             st->h[j->handler].cfg->name,
             j->followups ? "follow-up"
             : j->dead    ? "dead-letter copy"
                          : "retry copy",
             ev->why);
    return;
  }
  /* Take the confirmed ones off the line first (SETTLING is on none, so
   * a local line may hold them): acking them may lose the connection,
   * which forgets what still waits. */
  wr_jobq done = {0};
  wr_job *j = q->head;
  while (j) {
    wr_job *next = j->next;
    if (wr_settle_cover(j, ev) && ev->kind != WR_PUB_ACK) j->nacked = 1;
    if (!wr_settle_awaited(j)) {
      wr_ledger_move(st->env.ledger, j, WR_JOB_SETTLING);
      wr_jobq_push(&done, j);
    }
    j = next;
  }
  while ((j = wr_jobq_pop(&done))) {
    if (!st->env.session->conn)
      release(st, j);
    else if (!j->nacked && !j->returned)
      copy_confirmed(st, j);
    else
      copy_refused(st, j);
  }
}

int wr_settle_redeclare(wr_settle *st, char *err, size_t errlen) {
  wr_session *ses = st->env.session;
  int rc = wr_topology_declare(ses->conn, st->env.cfg, st->env.declare_ch, err,
                               errlen);
  if (rc == WARREN_OK)
    amqp_channel_close(ses->conn, st->env.declare_ch, AMQP_REPLY_SUCCESS);
  else if (rc == WARREN_BROKER_TIMEOUT)
    wr_session_lost(ses, err, 0);
  return rc;
}

static void redeclare(wr_settle *st) {
  char err[512];
  int rc = wr_settle_redeclare(st, err, sizeof err);
  if (rc == WARREN_OK) {
    wr_info("topology declared again");
    st->redeclare_at = 0;
    return;
  }
  if (rc == WARREN_BROKER_TIMEOUT) return; /* the connection is lost */
  /* A connection the broker closed is noticed at the next read. */
  wr_error("declaring the topology again failed: %s", err);
  st->redeclare_at = wr_now() + WR_REFUSAL_MAX_S;
}

double wr_settle_tick(wr_settle *st, double now, int draining) {
  wr_session *ses = st->env.session;
  if (st->redeclare_at && now >= st->redeclare_at && ses->conn) redeclare(st);
  double next = st->redeclare_at;
  /* Without a connection nothing is parked: wr_settle_forget ran. */
  wr_job *j = wr_ledger_line(st->env.ledger, WR_JOB_PARKED, 0)->head;
  while (j && ses->conn) {
    wr_job *after = j->next;
    if (j->due > now && !draining) {
      if (!next || j->due < next) next = j->due;
    } else {
      wr_settle_handler *h = &st->h[j->handler];
      uint64_t tag = j->env.delivery_tag;
      wr_intake_unrecorded(st->env.intake, j); /* it ran; its copy was
                                                  refused */
      release(st, j);
      wr_session_nack(ses, h->ch, tag, 1);
    }
    j = after;
  }
  /* A nack above lost the connection: what was kept belongs to it. */
  if (!ses->conn) wr_settle_forget(st);
  return next;
}

int wr_settle_idle(const wr_settle *st) {
  return !wr_ledger_line(st->env.ledger, WR_JOB_CONFIRMING, 0)->n &&
         !wr_ledger_line(st->env.ledger, WR_JOB_PARKED, 0)->n;
}

void wr_settle_forget(wr_settle *st) {
  for (size_t i = 0; i < st->nh; i++) {
    size_t n = wr_acks_forget(&st->h[i].acks);
    if (n) WR_NOTIFY(st->env.obs, dropped, i, n);
  }
  wr_job *j;
  while ((j = wr_ledger_line(st->env.ledger, WR_JOB_CONFIRMING, 0)->head))
    release(st, j);
  while ((j = wr_ledger_line(st->env.ledger, WR_JOB_PARKED, 0)->head))
    release(st, j);
  st->redeclare_at = 0;
  st->nknown = 0; /* an exchange may be gone after a reconnect */
}

void wr_settle_finish(wr_settle *st, size_t h, wr_job *job, wr_outcome o,
                      const char *err) {
  finish(st, &st->h[h], job, o, err);
}

void wr_settle_followups(wr_settle *st, size_t h, wr_job *job) {
  followups(st, &st->h[h], job);
}

void wr_settle_flush(wr_settle *st, size_t h) {
  flush(st, &st->h[h]);
}

void wr_settle_flush_overdue(wr_settle *st, double now, double delay) {
  for (size_t i = 0; i < st->nh; i++)
    if (wr_acks_overdue(&st->h[i].acks, now, delay)) flush(st, &st->h[i]);
}

int wr_settle_unacked(const wr_settle *st, size_t h) {
  return st->h[h].acks.n != 0;
}

int wr_settle_refusing(const wr_settle *st) {
  for (size_t i = 0; i < st->nh; i++)
    if (st->h[i].refusing) return 1;
  return 0;
}

int wr_settle_init(wr_settle *st, const wr_settle_env *env) {
  *st = (wr_settle){.env = *env};
  size_t nh = env->cfg->n_handlers;
  st->h = calloc(nh ? nh : 1, sizeof *st->h);
  if (!st->h) return WARREN_NOMEM;
  st->nh = nh;
  for (size_t i = 0; i < nh; i++) {
    wr_settle_handler *h = &st->h[i];
    const wr_handler_cfg *hc = &env->cfg->handlers[i];
    h->cfg = hc;
    h->ch = (amqp_channel_t)(i + 1);
    wr_backoff_init(&h->refusal, WR_REFUSAL_MIN_S, WR_REFUSAL_MAX_S, 0.2);
    /* prefetch 1 acks at once; larger prefetch acks in runs of half of
     * it, so the broker always has room to send the next ones. */
    size_t batch = (size_t)(hc->prefetch / 2 > 1 ? hc->prefetch / 2 : 1);
    if (wr_acks_init(&h->acks, wr_cfg_held_most(hc), batch) != WARREN_OK) {
      wr_settle_free(st);
      return WARREN_NOMEM;
    }
  }
  return WARREN_OK;
}

void wr_settle_free(wr_settle *st) {
  for (size_t i = 0; st->h && i < st->nh; i++) wr_acks_free(&st->h[i].acks);
  free(st->h);
  st->h = NULL;
  st->nh = 0;
}
