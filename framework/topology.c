#include "topology.h"

#include <stdio.h>
#include <string.h>

#include <warren/status.h>

#include "conn.h"
#include "delay.h"
#include "log.h"
#include "retry.h"

static void close_ok(amqp_connection_state_t c, amqp_channel_t ch) {
  amqp_channel_close_ok_t ok = {0};
  amqp_send_method(c, ch, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
}

/* On a channel-level error the broker has closed ch: acknowledge it so the
 * number can be opened again. */
static int checked(amqp_connection_state_t c, amqp_channel_t ch,
                   const char *what, char *err, size_t errlen) {
  amqp_rpc_reply_t r = amqp_get_rpc_reply(c);
  int rc = wr_conn_reply(c, r, what, err, errlen);
  if (rc != WARREN_OK && r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION &&
      r.reply.id == AMQP_CHANNEL_CLOSE_METHOD)
    close_ok(c, ch);
  return rc;
}

/* Queue arguments, built up per queue; bounded. */
typedef struct qargs {
  amqp_table_entry_t e[12];
  int n;
} qargs;

static void arg_str(qargs *a, const char *k, const char *v) {
  a->e[a->n++] = wr_entry_str(k, v);
}

static void arg_int(qargs *a, const char *k, int64_t v) {
  a->e[a->n++] = wr_entry_int(k, v);
}

/* Quorum queues get at-least-once dead-lettering (it needs
 * reject-publish overflow), so what they dead-letter is not lost. */
/* A quorum queue's delivery limit counts redeliveries of one message:
 * requeues after a lost connection or a refused copy. Warren's attempts
 * are new messages (retry copies), so the limit never sees them; it is
 * set well above anything a connection can cause, because RabbitMQ 4.0+
 * defaults it to 20 and then dead-letters (or drops) the message behind
 * the retry policy's back. -1 (no limit) is refused by RabbitMQ 3.x. */
#define WR_DELIVERY_LIMIT 1000

static void type_args(qargs *a, const wr_handler_cfg *h) {
  if (!h->quorum) return;
  arg_str(a, "x-queue-type", "quorum");
  arg_str(a, "x-dead-letter-strategy", "at-least-once");
  arg_str(a, "x-overflow", "reject-publish");
}

/* The work and retry queues' delivery limit (the DLQ has its own). */
static void limit_arg(qargs *a, const wr_handler_cfg *h) {
  if (!h->quorum) return;
  long limit = 2L * (h->retry.max_attempts + h->retry.max_crashes);
  /* Warren dead-letters a copy at max_deliveries itself, with its story;
   * the broker's limit stays out of its way. */
  if (limit < 2L * h->retry.max_deliveries)
    limit = 2L * h->retry.max_deliveries;
  arg_int(a, "x-delivery-limit",
          limit > WR_DELIVERY_LIMIT ? limit : WR_DELIVERY_LIMIT);
}

/* A work queue that exists is declared again with the arguments Warren
 * would give it, so that the broker compares them: a queue's
 * x-max-priority is fixed when it is created, and a work queue without
 * the configured one would run jobs in arrival order without a word. A
 * mismatch fails the connection attempt with the broker's words (406
 * PRECONDITION_FAILED - inequivalent arg ...) and what to do. */
static int verify_queue(amqp_connection_state_t c, amqp_channel_t ch,
                        const wr_handler_cfg *h, const char *what,
                        amqp_bytes_t q, const qargs *a, char *err,
                        size_t errlen) {
  amqp_queue_declare(c, ch, q, 0, h->durable, 0, 0,
                     (amqp_table_t){a->n, (amqp_table_entry_t *)a->e});
  int rc = checked(c, ch, what, err, errlen);
  amqp_rpc_reply_t r = amqp_get_rpc_reply(c);
  if (rc != WARREN_OK && r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION &&
      r.reply.id == AMQP_CHANNEL_CLOSE_METHOD &&
      ((amqp_channel_close_t *)r.reply.decoded)->reply_code ==
          AMQP_PRECONDITION_FAILED) {
    size_t n = strlen(err);
    snprintf(err + n, errlen - n,
             "; max_priority = %d needs the queue declared with "
             "x-max-priority = %d, which cannot change on a queue that "
             "exists: move its jobs and delete it, or use a new queue name",
             h->max_priority, h->max_priority);
  }
  return rc;
}

/* Passive first, so a queue an operator declared is used as it is
 * (arguments cannot change on redeclare); declared with `a` otherwise.
 * With verify, a queue that exists must have `a` (verify_queue). */
static int ensure_queue(amqp_connection_state_t c, amqp_channel_t ch,
                        const wr_handler_cfg *h, const char *name,
                        const qargs *a, int verify, char *err, size_t errlen) {
  char what[300];
  amqp_bytes_t q = amqp_cstring_bytes(name);
  snprintf(what, sizeof what, "queue '%s' (handler %s)", name, h->name);
  amqp_queue_declare(c, ch, q, 1, 0, 0, 0, amqp_empty_table);
  if (checked(c, ch, what, err, errlen) == WARREN_OK) {
    if (verify) return verify_queue(c, ch, h, what, q, a, err, errlen);
    wr_debug("%s exists; using it as declared", what);
    return WARREN_OK;
  }
  amqp_rpc_reply_t r = amqp_get_rpc_reply(c);
  if (r.reply_type != AMQP_RESPONSE_SERVER_EXCEPTION ||
      r.reply.id != AMQP_CHANNEL_CLOSE_METHOD ||
      ((amqp_channel_close_t *)r.reply.decoded)->reply_code != AMQP_NOT_FOUND)
    return WARREN_BROKER_CLOSED;
  if (!h->declare) {
    snprintf(err, errlen, "%s does not exist and declare = false", what);
    return WARREN_BROKER_CLOSED;
  }
  int rc = wr_conn_channel(c, ch, 0, err, errlen);
  if (rc != WARREN_OK) return rc;
  amqp_queue_declare(c, ch, q, 0, h->durable, 0, 0,
                     (amqp_table_t){a->n, (amqp_table_entry_t *)a->e});
  if ((rc = checked(c, ch, what, err, errlen)) != WARREN_OK) return rc;
  wr_info("declared %s %s queue '%s'%s", h->durable ? "durable" : "transient",
          h->quorum ? "quorum" : "classic", name,
          verify ? " with x-max-priority" : "");
  return WARREN_OK;
}

static int bind(amqp_connection_state_t c, amqp_channel_t ch, const char *queue,
                const char *exchange, const char *key, char *err,
                size_t errlen) {
  char what[1024];
  amqp_queue_bind(c, ch, amqp_cstring_bytes(queue),
                  amqp_cstring_bytes(exchange), amqp_cstring_bytes(key),
                  amqp_empty_table);
  snprintf(what, sizeof what, "bind queue '%s' to exchange '%s' key '%s'",
           queue, exchange, key);
  return checked(c, ch, what, err, errlen);
}

/* The work queue, its retry queues, and its dead-letter exchange and
 * queue (names: retry.h). */
static int declare_handler(amqp_connection_state_t c, amqp_channel_t ch,
                           const wr_handler_cfg *h, const char *prefix,
                           char *err, size_t errlen) {
  char dlx[300], dlq[300], name[300];
  wr_name_dlx(h->queue, dlx, sizeof dlx);
  wr_name_dlq(h->queue, dlq, sizeof dlq);
  /* declare = false: the exchange must exist (passive), or the first
   * dead letter would close the publishing channel. */
  amqp_exchange_declare(c, ch, amqp_cstring_bytes(dlx),
                        amqp_cstring_bytes("fanout"), !h->declare, 1, 0, 0,
                        amqp_empty_table);
  char what[400];
  snprintf(what, sizeof what, "%s exchange '%s' (handler %s)",
           h->declare ? "declare" : "dead-letter", dlx, h->name);
  int rc = checked(c, ch, what, err, errlen);
  qargs work = {.n = 0};
  type_args(&work, h);
  limit_arg(&work, h);
  arg_str(&work, "x-dead-letter-exchange", dlx);
  /* Only the work queue orders by priority: a retry copy waits its delay
   * whatever its priority, and keeps the property for its way back. */
  if (h->max_priority) arg_int(&work, "x-max-priority", h->max_priority);
  if (rc == WARREN_OK)
    rc = ensure_queue(c, ch, h, h->queue, &work, h->max_priority != 0, err,
                      errlen);
  qargs dead = {.n = 0};
  type_args(&dead, h);
  /* Browsing the DLQ (warren dlq list) returns messages to it, which a
   * quorum queue counts as deliveries; RabbitMQ 4 drops a message after 20
   * by default. Dead letters must wait for an operator however often they
   * are looked at. */
  if (h->quorum) arg_int(&dead, "x-delivery-limit", 1000000000);
  if (rc == WARREN_OK) rc = ensure_queue(c, ch, h, dlq, &dead, 0, err, errlen);
  if (rc == WARREN_OK && h->declare)
    rc = bind(c, ch, dlq, dlx, "", err, errlen);
  for (int i = 0; rc == WARREN_OK && i < h->retry.n_backoff; i++) {
    qargs rq = {.n = 0};
    type_args(&rq, h);
    limit_arg(&rq, h);
    arg_int(&rq, "x-message-ttl", wr_retry_queue_ttl(&h->retry, i));
    arg_str(&rq, "x-dead-letter-exchange", "");
    arg_str(&rq, "x-dead-letter-routing-key", h->queue);
    wr_name_retry_queue(h->queue, h->retry.backoff[i], name, sizeof name);
    rc = ensure_queue(c, ch, h, name, &rq, 0, err, errlen);
  }
  for (size_t i = 0; rc == WARREN_OK && h->declare && i < h->n_bindings; i++)
    rc = bind(c, ch, h->queue, h->bindings[i].exchange,
              h->bindings[i].routing_key, err, errlen);
  if (rc == WARREN_OK && h->declare && h->delayed) {
    char key[300];
    wr_delay_binding(h->queue, key, sizeof key);
    rc = bind(c, ch, h->queue, wr_delay_deliver(prefix, name, sizeof name), key,
              err, errlen);
  }
  return rc;
}

static int declare_exchange(amqp_connection_state_t c, amqp_channel_t ch,
                            const char *name, const char *type, const qargs *a,
                            char *err, size_t errlen) {
  char what[300];
  snprintf(what, sizeof what, "declare %s exchange '%s'", type, name);
  amqp_exchange_declare(c, ch, amqp_cstring_bytes(name),
                        amqp_cstring_bytes(type), 0, 1, 0, 0,
                        (amqp_table_t){a->n, (amqp_table_entry_t *)a->e});
  return checked(c, ch, what, err, errlen);
}

/* A cascade queue, declared as configured: one of another type or TTL
 * fails with the broker's words (PRECONDITION_FAILED), named. */
static int declare_delay_queue(amqp_connection_state_t c, amqp_channel_t ch,
                               const char *name, int quorum, const qargs *a,
                               char *err, size_t errlen) {
  char what[400];
  snprintf(what, sizeof what,
           "declare delay queue '%s' (%s; delete it to change delays)", name,
           quorum ? "quorum" : "classic");
  amqp_queue_declare(c, ch, amqp_cstring_bytes(name), 0, 1, 0, 0,
                     (amqp_table_t){a->n, (amqp_table_entry_t *)a->e});
  return checked(c, ch, what, err, errlen);
}

/* The bits' binding key of level n: one word per higher level, the bit,
 * then the rest. */
static void level_key(int n, char bit, char *buf) {
  char *o = buf;
  for (int k = WR_DELAY_LEVELS - 1; k > n; k--) {
    *o++ = '*';
    *o++ = '.';
  }
  *o++ = bit;
  memcpy(o, ".#", 3);
}

/* The delay cascade (delay.h), declared when a handler takes delayed
 * jobs. Every name depends on delays.prefix only, so Warren processes
 * with the same prefix share one cascade. */
static int declare_delays(amqp_connection_state_t c, amqp_channel_t ch,
                          const wr_delays_cfg *d, char *err, size_t errlen) {
  char un[300], dl[300], name[300], next[300];
  wr_delay_unrouted(d->prefix, un, sizeof un);
  wr_delay_deliver(d->prefix, dl, sizeof dl);
  qargs none = {.n = 0}, q = {.n = 0};
  if (d->quorum) {
    arg_str(&q, "x-queue-type", "quorum");
    /* Like a DLQ: looked at, not consumed; never dropped for it. */
    arg_int(&q, "x-delivery-limit", 1000000000);
  }
  int rc = declare_exchange(c, ch, un, "fanout", &none, err, errlen);
  if (rc == WARREN_OK)
    rc = declare_delay_queue(c, ch, un, d->quorum, &q, err, errlen);
  if (rc == WARREN_OK) rc = bind(c, ch, un, un, "", err, errlen);
  /* A job due for a queue that is not bound (deleted, or no handler
   * takes delayed jobs from it) goes to the unrouted queue, not nowhere. */
  qargs ae = {.n = 0};
  arg_str(&ae, "alternate-exchange", un);
  if (rc == WARREN_OK)
    rc = declare_exchange(c, ch, dl, "topic", &ae, err, errlen);
  /* The levels' 112 declares and binds go out without waiting for each
   * reply (nowait), in one write: one round trip for the cascade instead
   * of one each, which a slow network multiplies. The broker handles a
   * channel's methods in order and closes it at the first that fails (its
   * words name the queue or exchange); the passive declare after them
   * gets that close as its reply. */
  int sent = AMQP_STATUS_OK;
  for (int n = 0;
       rc == WARREN_OK && sent == AMQP_STATUS_OK && n < WR_DELAY_LEVELS; n++) {
    wr_delay_level(d->prefix, n, name, sizeof name);
    if (n)
      wr_delay_level(d->prefix, n - 1, next, sizeof next);
    else
      snprintf(next, sizeof next, "%s", dl);
    qargs lq = {.n = 0};
    if (d->quorum) {
      /* At-least-once dead-lettering (it needs reject-publish): a hop
       * between levels is not lost if a node fails mid-way. */
      type_args(&lq, &(wr_handler_cfg){.quorum = 1});
      arg_int(&lq, "x-delivery-limit", 1000000000);
    }
    arg_int(&lq, "x-message-ttl", (INT64_C(1) << n) * 1000);
    arg_str(&lq, "x-dead-letter-exchange", next);
    amqp_bytes_t lname = amqp_cstring_bytes(name);
    amqp_exchange_declare_t xd = {.exchange = lname,
                                  .type = amqp_cstring_bytes("topic"),
                                  .durable = 1,
                                  .nowait = 1};
    amqp_queue_declare_t qd = {
        .queue = lname,
        .durable = 1,
        .nowait = 1,
        .arguments = (amqp_table_t){lq.n, (amqp_table_entry_t *)lq.e}};
    char k1[80], k0[80];
    level_key(n, '1', k1);
    level_key(n, '0', k0);
    amqp_queue_bind_t qb = {.queue = lname,
                            .exchange = lname,
                            .routing_key = amqp_cstring_bytes(k1),
                            .nowait = 1};
    amqp_exchange_bind_t xb = {.destination = amqp_cstring_bytes(next),
                               .source = lname,
                               .routing_key = amqp_cstring_bytes(k0),
                               .nowait = 1};
    sent = amqp_send_method(c, ch, AMQP_EXCHANGE_DECLARE_METHOD, &xd);
    if (sent == AMQP_STATUS_OK)
      sent = amqp_send_method(c, ch, AMQP_QUEUE_DECLARE_METHOD, &qd);
    if (sent == AMQP_STATUS_OK)
      sent = amqp_send_method(c, ch, AMQP_QUEUE_BIND_METHOD, &qb);
    if (sent == AMQP_STATUS_OK)
      sent = amqp_send_method(c, ch, AMQP_EXCHANGE_BIND_METHOD, &xb);
  }
  if (rc == WARREN_OK && sent != AMQP_STATUS_OK) {
    snprintf(err, errlen, "declare delay levels: %s", amqp_error_string2(sent));
    rc = WARREN_BROKER_CLOSED;
  }
  if (rc == WARREN_OK) {
    char what[400];
    snprintf(what, sizeof what,
             "declare delay levels %s.0 to %s.%d (%s; delete them to change "
             "delays)",
             d->prefix, d->prefix, WR_DELAY_LEVELS - 1,
             d->quorum ? "quorum" : "classic");
    amqp_queue_declare(c, ch, amqp_cstring_bytes(name), 1, 0, 0, 0,
                       amqp_empty_table);
    rc = checked(c, ch, what, err, errlen);
  }
  if (rc == WARREN_OK)
    wr_debug("delay levels %s.0 to %s.%d declared (%s queues)", d->prefix,
             d->prefix, WR_DELAY_LEVELS - 1, d->quorum ? "quorum" : "classic");
  return rc;
}

int wr_topology_declare(amqp_connection_state_t c, const wr_cfg *cfg,
                        amqp_channel_t ch, char *err, size_t errlen) {
  int rc = wr_conn_channel(c, ch, 0, err, errlen);
  for (size_t i = 0; rc == WARREN_OK && i < cfg->n_exchanges; i++) {
    const wr_exchange_cfg *x = &cfg->exchanges[i];
    char what[300];
    snprintf(what, sizeof what, "declare %s exchange '%s'", x->type, x->name);
    amqp_exchange_declare(c, ch, amqp_cstring_bytes(x->name),
                          amqp_cstring_bytes(x->type), 0, x->durable, 0, 0,
                          amqp_empty_table);
    rc = checked(c, ch, what, err, errlen);
  }
  if (rc == WARREN_OK && cfg->delays.used)
    rc = declare_delays(c, ch, &cfg->delays, err, errlen);
  for (size_t i = 0; rc == WARREN_OK && i < cfg->n_handlers; i++)
    rc = declare_handler(c, ch, &cfg->handlers[i], cfg->delays.prefix, err,
                         errlen);
  return rc;
}

int wr_topology_exchange_exists(amqp_connection_state_t c, amqp_channel_t ch,
                                const char *name, char *err, size_t errlen) {
  int rc = wr_conn_channel(c, ch, 0, err, errlen);
  if (rc != WARREN_OK) return rc;
  char what[300];
  snprintf(what, sizeof what, "exchange '%s'", name);
  amqp_exchange_declare(c, ch, amqp_cstring_bytes(name),
                        amqp_cstring_bytes("direct"), 1, 0, 0, 0,
                        amqp_empty_table);
  rc = checked(c, ch, what, err, errlen);
  if (rc == WARREN_OK) {
    amqp_channel_close(c, ch, AMQP_REPLY_SUCCESS);
    return 1;
  }
  amqp_rpc_reply_t r = amqp_get_rpc_reply(c);
  if (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION &&
      r.reply.id == AMQP_CHANNEL_CLOSE_METHOD &&
      ((amqp_channel_close_t *)r.reply.decoded)->reply_code == AMQP_NOT_FOUND)
    return 0; /* checked() acknowledged the close */
  return rc;
}

int wr_topology_queue_ready(amqp_connection_state_t c, amqp_channel_t ch,
                            const char *name, uint32_t *ready, char *err,
                            size_t errlen) {
  int rc = wr_conn_channel(c, ch, 0, err, errlen);
  if (rc != WARREN_OK) return rc;
  char what[300];
  snprintf(what, sizeof what, "queue '%s'", name);
  amqp_queue_declare_ok_t *ok = amqp_queue_declare(
      c, ch, amqp_cstring_bytes(name), 1, 0, 0, 0, amqp_empty_table);
  rc = checked(c, ch, what, err, errlen);
  if (rc != WARREN_OK) return rc;
  *ready = ok ? ok->message_count : 0;
  amqp_channel_close(c, ch, AMQP_REPLY_SUCCESS);
  return WARREN_OK;
}

int wr_topology_resume(amqp_connection_state_t c, amqp_channel_t ch,
                       const wr_handler_cfg *h, const char *tag, char *err,
                       size_t errlen) {
  char what[300];
  amqp_basic_consume(c, ch, amqp_cstring_bytes(h->queue),
                     amqp_cstring_bytes(tag), 0, 0, 0, amqp_empty_table);
  snprintf(what, sizeof what, "consume queue '%s' again (handler %s)", h->queue,
           h->name);
  return checked(c, ch, what, err, errlen);
}

int wr_topology_qos(amqp_connection_state_t c, amqp_channel_t ch,
                    const wr_handler_cfg *h, int prefetch, char *err,
                    size_t errlen) {
  char what[300];
  /* global=false: RabbitMQ applies the limit per consumer, and each
   * handler has exactly one consumer on its own channel. */
  amqp_basic_qos(c, ch, 0, (uint16_t)prefetch, 0);
  snprintf(what, sizeof what, "basic.qos prefetch %d (handler %s)", prefetch,
           h->name);
  return checked(c, ch, what, err, errlen);
}

int wr_topology_consume(amqp_connection_state_t c, amqp_channel_t ch,
                        const wr_handler_cfg *h, int prefetch, const char *tag,
                        char *err, size_t errlen) {
  char what[300];
  int rc = wr_conn_channel(c, ch, 0, err, errlen);
  if (rc != WARREN_OK || !prefetch) return rc;
  if ((rc = wr_topology_qos(c, ch, h, prefetch, err, errlen)) != WARREN_OK)
    return rc;
  amqp_basic_consume(c, ch, amqp_cstring_bytes(h->queue),
                     amqp_cstring_bytes(tag), 0, 0, 0, amqp_empty_table);
  snprintf(what, sizeof what, "consume queue '%s' (handler %s)", h->queue,
           h->name);
  return checked(c, ch, what, err, errlen);
}
