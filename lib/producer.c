/* libwarren: the producer side (include/warren/producer.h). */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <warren/producer.h>
#include <warren/sign.h>

#include "conn.h"
#include "delay.h"
#include "field.h"
#include "keyring.h"
#include "sign.h"
#include "tracectx.h"

#define CH 1
#define MAX_HEADERS 64

/* The public length is the one tracectx.h parses and writes. */
_Static_assert(WARREN_TRACEPARENT_LEN == WR_TRACEPARENT_LEN,
               "producer.h and tracectx.h disagree on the traceparent length");

struct warren_producer {
  amqp_connection_state_t c;
  wr_confirms cf;
  wr_keyring *ring; /* the signing key; NULL: jobs are not signed */
  char key_id[WARREN_SIGN_MAX_KEY_ID + 1];
  char err[sizeof((wr_confirms *)0)->err]; /* warren_producer_error() */
  int replying; /* consuming amq.rabbitmq.reply-to on CH (results) */
};

/* An options field exists when the caller's struct is large enough. */
#define HAS(o, field) \
  ((o)->size >= offsetof(warren_producer_opts, field) + sizeof((o)->field))
#define PUB_HAS(o, field) \
  ((o)->size >= offsetof(warren_publish_opts, field) + sizeof((o)->field))

/* b's host, or with opts->nodes each node in a random order, until one
 * connects; err keeps the last failure. */
static int open_any(const warren_producer_opts *o, wr_conn_params *b,
                    amqp_connection_state_t *c, char *err, size_t errlen) {
  size_t n = o && HAS(o, n_nodes) && o->nodes ? o->n_nodes : 0;
  if (!n) return wr_conn_open(b, c, err, errlen);
  if (n > 64) {
    snprintf(err, errlen, "at most 64 nodes");
    return WARREN_INVALID;
  }
  char(*hosts)[256] = malloc(n * sizeof *hosts); /* producers may share no
                                                    static buffer */
  wr_conn_node nodes[64];
  if (!hosts) return WARREN_NOMEM;
  for (size_t k = 0; k < n; k++) {
    if (wr_conn_node_parse(o->nodes[k], b->port, hosts[k], sizeof hosts[k],
                           &nodes[k].port, err, errlen) != 0) {
      free(hosts);
      return WARREN_INVALID;
    }
    nodes[k].host = hosts[k];
  }
  wr_conn_params nb = *b;
  nb.nodes = nodes;
  nb.n_nodes = n;
  int rc = wr_conn_open_any(&nb, c, NULL, err, errlen);
  free(hosts);
  return rc;
}

int warren_producer_open(const warren_producer_opts *o, warren_producer **out) {
  wr_conn_params b = {.host = "127.0.0.1",
                      .port = 5672,
                      .vhost = "/",
                      .user = "guest",
                      .password = "guest",
                      .heartbeat = 30,
                      .connect_timeout = 5};
  if (o) {
    if (o->host) b.host = o->host;
    if (o->port) b.port = o->port;
    if (o->vhost) b.vhost = o->vhost;
    if (o->user) b.user = o->user;
    if (o->password) b.password = o->password;
    if (o->heartbeat) b.heartbeat = o->heartbeat;
  }
  if (o && HAS(o, sign_key_len)) {
    b.tls = (wr_tls_params){o->tls || o->ca_file || o->cert_file,
                            o->ca_file,
                            o->cert_file,
                            o->key_file,
                            !o->no_verify_peer,
                            !o->no_verify_hostname};
    if (b.tls.enabled && !o->port) b.port = 5671;
  }
  char err[512];
  warren_producer *p = calloc(1, sizeof *p);
  int rc = p ? WARREN_OK : WARREN_NOMEM;
  if (!p) snprintf(err, sizeof err, "out of memory");
  if (p && o && HAS(o, sign_key_len) && o->sign_key_id) {
    /* The key is checked before connecting: a bad one is a usage error. */
    p->ring = wr_keyring_new();
    if (!p->ring || wr_keyring_add(p->ring, o->sign_key_id, o->sign_key,
                                   o->sign_key_len, err, sizeof err) != 0)
      rc = p->ring ? WARREN_INVALID : WARREN_NOMEM;
    snprintf(p->key_id, sizeof p->key_id, "%s", o->sign_key_id);
  }
  if (rc == WARREN_OK) rc = open_any(o, &b, &p->c, err, sizeof err);
  if (rc == WARREN_OK) rc = wr_conn_channel(p->c, CH, 1, err, sizeof err);
  if (rc != WARREN_OK) {
    if (o && HAS(o, errlen) && o->errbuf && o->errlen)
      snprintf(o->errbuf, o->errlen, "%s", err);
    if (p && p->c) amqp_destroy_connection(p->c);
    if (p) wr_keyring_free(p->ring);
    free(p);
    return rc;
  }
  wr_confirms_init(&p->cf);
  *out = p;
  return WARREN_OK;
}

const char *warren_producer_error(const warren_producer *p) {
  return p ? p->err : "";
}

/* Keep the confirms' reason for warren_producer_error(). */
static int failed(warren_producer *p, int rc) {
  if (rc != WARREN_OK) snprintf(p->err, sizeof p->err, "%s", p->cf.err);
  return rc;
}

int warren_producer_flush(warren_producer *p, int timeout_ms) {
  return failed(p, wr_confirms_wait(p->c, &p->cf, timeout_ms));
}

/* The trace context a job carries. tp and ts point into the caller's
 * options or into own (a new traceparent); skip[i] marks the entries of
 * o->headers that are sent as the trace context instead of as they are. */
typedef struct trace_pick {
  const char *tp, *ts;
  char own[WR_TRACEPARENT_LEN + 1];
} trace_pick;

/* Take the trace context from the options or the headers, or make one.
 * Returns 0, or WARREN_INVALID with the reason in p->err. */
static int pick_trace(warren_producer *p, const warren_publish_opts *o,
                      unsigned char *skip, trace_pick *t) {
  t->tp = o && PUB_HAS(o, traceparent) ? o->traceparent : NULL;
  t->ts = o && PUB_HAS(o, tracestate) ? o->tracestate : NULL;
  int opt_tp = t->tp != NULL, opt_ts = t->ts != NULL;
  int hdr_tp = 0, hdr_ts = 0;
  for (size_t i = 0; o && i < o->n_headers; i++) {
    const char *name = o->headers[i].name;
    /* W3C names them in lower case; a header of another case is the same
     * header, and sending both would leave the consumer to guess. */
    int is_tp = !strcasecmp(name, "traceparent");
    if (!is_tp && strcasecmp(name, "tracestate")) continue;
    skip[i] = 1;
    int *seen = is_tp ? &hdr_tp : &hdr_ts;
    if ((is_tp ? opt_tp : opt_ts) || (*seen)++) {
      snprintf(p->err, sizeof p->err,
               "%s given twice (as an option or a header of any case)",
               is_tp ? "traceparent" : "tracestate");
      return WARREN_INVALID;
    }
    if (is_tp)
      t->tp = o->headers[i].value;
    else
      t->ts = o->headers[i].value;
  }
  if (t->ts && !*t->ts) t->ts = NULL; /* W3C: an empty one is not sent */
  wr_trace_ctx c;
  if (t->tp) {
    size_t len = strlen(t->tp);
    /* A later version may be longer; Warren carries and reports the
     * 55-character form, so it is refused rather than cut. */
    if (len > WR_TRACEPARENT_LEN || wr_trace_parse(t->tp, len, &c) != 0) {
      snprintf(p->err, sizeof p->err,
               "traceparent '%.64s' is not a valid W3C traceparent "
               "(00-<32 hex>-<16 hex>-<2 hex>, lower case, ids not zero)",
               t->tp);
      return WARREN_INVALID;
    }
  }
  if (t->ts && !wr_tracestate_valid(t->ts, strlen(t->ts))) {
    snprintf(p->err, sizeof p->err,
             "tracestate is not a valid W3C tracestate (at most 512 bytes, "
             "32 key=value members)");
    return WARREN_INVALID;
  }
  if (t->ts && !t->tp) {
    /* A tracestate belongs to its parent's context; on a new trace it
     * would describe a span that is not the job's parent. */
    snprintf(p->err, sizeof p->err, "tracestate given without a traceparent");
    return WARREN_INVALID;
  }
  if (!t->tp) {
    c = (wr_trace_ctx){.flags = WR_TRACE_SAMPLED, .valid = 1};
    wr_trace_new_trace_id(c.trace_id);
    wr_trace_new_span_id(c.span_id);
    wr_trace_format(&c, t->own);
    t->tp = t->own;
  }
  return WARREN_OK;
}

/* Where a delayed job goes first: the delay levels' entry, its routing
 * key the bits of its delay and its queue (delay.h). *nb gets its
 * not-before time; 0 and *nb = 0 when it is not delayed. */
static int pick_delay(warren_producer *p, const warren_publish_opts *o,
                      const char *exchange, const char *queue, int64_t *nb,
                      char *ex, char *rk) {
  *nb = 0;
  int64_t d = o && PUB_HAS(o, delay_ms) ? o->delay_ms : 0;
  int64_t at = o && PUB_HAS(o, not_before_ms) ? o->not_before_ms : 0;
  if (!d && !at) return WARREN_OK;
  if (d < 0 || at < 0 || (d && at)) {
    snprintf(p->err, sizeof p->err,
             "give delay_ms or not_before_ms, one of them, not negative");
    return WARREN_INVALID;
  }
  int64_t now = wr_sign_now_ms();
  int64_t when = d ? now + d : at, secs = wr_delay_seconds(when - now);
  if (!secs) return WARREN_OK; /* due already */
  const char *prefix = PUB_HAS(o, delay_prefix) && o->delay_prefix
                           ? o->delay_prefix
                           : WR_DELAY_PREFIX;
  if (secs > WR_DELAY_MAX_S) {
    snprintf(p->err, sizeof p->err,
             "a delay of %lld s is over the most, %lld s", (long long)secs,
             (long long)WR_DELAY_MAX_S);
    return WARREN_INVALID;
  }
  if ((exchange && *exchange) || !queue || !wr_delay_queue_ok(queue) ||
      strlen(prefix) > WR_DELAY_MAX_PREFIX) {
    snprintf(p->err, sizeof p->err,
             "a delayed job goes to a queue: the exchange must be the default "
             "one and the routing key a queue name without '*' or '#' of at "
             "most %d bytes",
             255 - WR_DELAY_BITS_LEN);
    return WARREN_INVALID;
  }
  wr_delay_routing_key(secs, queue, rk, 256);
  wr_delay_entry(prefix, ex, 128);
  *nb = when;
  return WARREN_OK;
}

int warren_producer_publish(warren_producer *p, const char *exchange,
                            const char *routing_key, const void *body,
                            size_t len, const warren_publish_opts *o) {
  int64_t nb;
  char dex[128], drk[256];
  int rc = pick_delay(p, o, exchange, routing_key, &nb, dex, drk);
  if (rc != WARREN_OK) return rc;
  int priority = o && PUB_HAS(o, priority) ? o->priority : 0;
  if (priority < 0 || priority > 255) {
    snprintf(p->err, sizeof p->err, "priority %d is not 0..255", priority);
    return WARREN_INVALID;
  }
  rc = wr_confirms_room(p->c, &p->cf, 30000);
  if (rc != WARREN_OK) return failed(p, rc);
  amqp_basic_properties_t pr = {0};
  pr._flags = AMQP_BASIC_DELIVERY_MODE_FLAG;
  pr.delivery_mode = (o && o->transient) ? 1 : 2;
  if (priority) {
    pr._flags |= AMQP_BASIC_PRIORITY_FLAG;
    pr.priority = (uint8_t)priority;
  }
  /* The caller's headers, then the trace context and the signature. */
  amqp_table_entry_t entries[MAX_HEADERS + 4];
  if (o && o->message_id) {
    pr._flags |= AMQP_BASIC_MESSAGE_ID_FLAG;
    pr.message_id = amqp_cstring_bytes(o->message_id);
  }
  if (o && o->correlation_id) {
    pr._flags |= AMQP_BASIC_CORRELATION_ID_FLAG;
    pr.correlation_id = amqp_cstring_bytes(o->correlation_id);
  }
  if (o && o->content_type) {
    pr._flags |= AMQP_BASIC_CONTENT_TYPE_FLAG;
    pr.content_type = amqp_cstring_bytes(o->content_type);
  }
  if (o && o->n_headers > MAX_HEADERS) {
    snprintf(p->err, sizeof p->err, "%zu headers: at most %d", o->n_headers,
             MAX_HEADERS);
    return WARREN_TOO_LARGE;
  }
  unsigned char skip[MAX_HEADERS] = {0};
  trace_pick t;
  rc = pick_trace(p, o, skip, &t);
  if (rc != WARREN_OK) return rc;
  size_t n = 0;
  for (size_t i = 0; o && i < o->n_headers; i++) {
    if (p->ring && !strcmp(o->headers[i].name, WARREN_SIGNATURE_HEADER)) {
      snprintf(p->err, sizeof p->err,
               "header %s is written by the producer's signing key",
               WARREN_SIGNATURE_HEADER);
      return WARREN_INVALID;
    }
    if (skip[i]) continue;
    entries[n].key = amqp_cstring_bytes(o->headers[i].name);
    entries[n].value.kind = AMQP_FIELD_KIND_UTF8;
    entries[n++].value.value.bytes = amqp_cstring_bytes(o->headers[i].value);
  }
  /* longstr, as other languages' clients write strings (docs/producing.md). */
  entries[n].key = amqp_cstring_bytes("traceparent");
  entries[n].value.kind = AMQP_FIELD_KIND_UTF8;
  entries[n++].value.value.bytes = amqp_cstring_bytes(t.tp);
  if (t.ts) {
    entries[n].key = amqp_cstring_bytes("tracestate");
    entries[n].value.kind = AMQP_FIELD_KIND_UTF8;
    entries[n++].value.value.bytes = amqp_cstring_bytes(t.ts);
  }
  if (nb) {
    entries[n].key = amqp_cstring_bytes(WR_DELAY_HEADER);
    entries[n].value.kind = AMQP_FIELD_KIND_I64;
    entries[n++].value.value.i64 = nb;
  }
  char sig[WARREN_SIGNATURE_MAX];
  if (p->ring) {
    wr_sign_job job = {
        {o && o->message_id ? o->message_id : "",
         o && o->message_id ? strlen(o->message_id) : 0},
        {exchange ? exchange : "", exchange ? strlen(exchange) : 0},
        {routing_key ? routing_key : "", routing_key ? strlen(routing_key) : 0},
        {o && o->content_type ? o->content_type : "",
         o && o->content_type ? strlen(o->content_type) : 0},
        {"", 0},
        {"", 0},
        {"", 0}};
    /* A delayed job is signed as sent straight to its queue, with its
     * not-before time (docs/signing.md). */
    if (wr_sign_make(p->ring, p->key_id, wr_sign_now_ms(), nb, &job, body, len,
                     sig) != 0) {
      snprintf(p->err, sizeof p->err,
               "cannot sign: a field is over 255 bytes or OpenSSL failed");
      return WARREN_INVALID;
    }
    entries[n].key = amqp_cstring_bytes(WARREN_SIGNATURE_HEADER);
    entries[n].value.kind = AMQP_FIELD_KIND_UTF8;
    entries[n++].value.value.bytes = amqp_cstring_bytes(sig);
  }
  pr._flags |= AMQP_BASIC_HEADERS_FLAG;
  pr.headers = (amqp_table_t){(int)n, entries};
  if (o && PUB_HAS(o, reply_to) && o->reply_to) {
    if (strlen(o->reply_to) > 255) {
      snprintf(p->err, sizeof p->err, "reply_to is over 255 bytes");
      return WARREN_INVALID;
    }
    pr._flags |= AMQP_BASIC_REPLY_TO_FLAG;
    pr.reply_to = amqp_cstring_bytes(o->reply_to);
  }
  amqp_bytes_t b = {len, (void *)body};
  if (nb) {
    exchange = dex;
    routing_key = drk;
  }
  rc = amqp_basic_publish(
      p->c, CH, amqp_cstring_bytes(exchange ? exchange : ""),
      amqp_cstring_bytes(routing_key ? routing_key : ""), 1, 0, &pr, b);
  if (rc != AMQP_STATUS_OK) {
    snprintf(p->err, sizeof p->err, "publish: %s", amqp_error_string2(rc));
    p->cf.broken = 1;
    return WARREN_BROKER_CLOSED;
  }
  wr_confirms_sent(&p->cf);
  if (o && PUB_HAS(o, traceparent_out) && o->traceparent_out)
    snprintf(o->traceparent_out, WR_TRACEPARENT_LEN + 1, "%s", t.tp);
  if (p->cf.refused) {
    snprintf(p->err, sizeof p->err, "%s", p->cf.err);
    return WARREN_BROKER_NACK;
  }
  return WARREN_OK;
}

/* ---- request-response (docs/results.md) --------------------------------- */

#define DIRECT_REPLY_TO "amq.rabbitmq.reply-to"

void warren_reply_free(warren_reply *r) {
  if (!r) return;
  uint32_t size = r->size;
  free(r->body);
  free(r->content_type);
  free(r->correlation_id);
  free(r->reason);
  free(r->error);
  memset(r, 0, sizeof *r);
  r->size = size;
}

static char *dup_bytes(amqp_bytes_t b) {
  char *s = malloc(b.len + 1);
  if (!s) return NULL;
  if (b.len) memcpy(s, b.bytes, b.len);
  s[b.len] = '\0';
  return s;
}

/* Fill out from the reply m. WARREN_OK or WARREN_NOMEM. */
static int take_reply(const amqp_message_t *m, warren_reply *out) {
  const amqp_basic_properties_t *pr = &m->properties;
  amqp_bytes_t none = amqp_empty_bytes;
  out->body = dup_bytes(m->body);
  out->body_len = m->body.len;
  out->content_type = dup_bytes(
      pr->_flags & AMQP_BASIC_CONTENT_TYPE_FLAG ? pr->content_type : none);
  out->correlation_id = dup_bytes(pr->correlation_id);
  amqp_bytes_t oc = wr_field_header_str(pr, "warren-outcome");
  out->outcome = oc.len == 3 && !memcmp(oc.bytes, "ack", 3) ? WARREN_OUTCOME_ACK
                 : oc.len == 13 && !memcmp(oc.bytes, "dead-lettered", 13)
                     ? WARREN_OUTCOME_DEAD_LETTERED
                     : WARREN_OUTCOME_UNKNOWN;
  out->reason = dup_bytes(wr_field_header_str(pr, "warren-dead-reason"));
  out->error = dup_bytes(wr_field_header_str(pr, "warren-last-error"));
  int64_t a = 0;
  wr_field_header_int(pr, "warren-dead-attempts", &a);
  out->attempts = a > 0 && a <= UINT32_MAX ? (uint32_t)a : 0;
  if (!out->body || !out->content_type || !out->correlation_id ||
      !out->reason || !out->error) {
    warren_reply_free(out);
    return WARREN_NOMEM;
  }
  return WARREN_OK;
}

/* Consume the direct reply-to pseudo-queue, no-ack, once per producer. */
static int reply_consumer(warren_producer *p) {
  if (p->replying) return WARREN_OK;
  amqp_basic_consume(p->c, CH, amqp_cstring_bytes(DIRECT_REPLY_TO),
                     amqp_empty_bytes, 0, 1, 0, amqp_empty_table);
  int rc =
      wr_conn_reply(p->c, amqp_get_rpc_reply(p->c),
                    "basic.consume " DIRECT_REPLY_TO, p->err, sizeof p->err);
  if (rc != WARREN_OK) {
    p->cf.broken = 1;
    return rc;
  }
  p->replying = 1;
  return WARREN_OK;
}

static double mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

int warren_producer_call(warren_producer *p, const char *exchange,
                         const char *routing_key, const void *body, size_t len,
                         const warren_publish_opts *o, int timeout_ms,
                         warren_reply *out) {
  if (!p || !out || out->size < sizeof *out || timeout_ms <= 0 ||
      (o && PUB_HAS(o, reply_to) && o->reply_to)) {
    if (p)
      snprintf(p->err, sizeof p->err,
               "warren_producer_call: a reply with its size set, a timeout "
               "over 0 and no reply_to of its own are needed");
    return WARREN_INVALID;
  }
  uint32_t size = out->size;
  memset(out, 0, sizeof *out);
  out->size = size;
  /* An earlier job's refusal must not pass for this one's. */
  int rc = warren_producer_flush(p, 30000);
  if (rc == WARREN_OK) rc = reply_consumer(p);
  if (rc != WARREN_OK) return rc;
  warren_publish_opts q = {0};
  if (o) memcpy(&q, o, o->size < sizeof q ? o->size : sizeof q);
  q.size = sizeof q;
  char cid[33];
  if (!q.correlation_id || !*q.correlation_id) {
    uint8_t r[16];
    wr_trace_new_trace_id(r);
    for (int i = 0; i < 16; i++) snprintf(cid + 2 * i, 3, "%02x", r[i]);
    q.correlation_id = cid;
  }
  q.reply_to = DIRECT_REPLY_TO;
  rc = warren_producer_publish(p, exchange, routing_key, body, len, &q);
  if (rc != WARREN_OK) return rc;
  size_t cid_len = strlen(q.correlation_id);
  double deadline = mono_ms() + timeout_ms;
  for (;;) {
    if (p->cf.refused) {
      p->cf.refused = 0;
      snprintf(p->err, sizeof p->err, "the job was not taken: %.270s",
               p->cf.err);
      return WARREN_BROKER_NACK;
    }
    double left = deadline - mono_ms();
    if (left <= 0) {
      snprintf(p->err, sizeof p->err,
               "no result for correlation id %s in %d ms", q.correlation_id,
               timeout_ms);
      return WARREN_NO_REPLY;
    }
    struct timeval tv = {(long)(left / 1000),
                         (long)((long long)left % 1000) * 1000 + 1};
    amqp_frame_t f;
    int r = amqp_simple_wait_frame_noblock(p->c, &f, &tv);
    if (r == AMQP_STATUS_TIMEOUT) continue;
    if (r != AMQP_STATUS_OK) {
      p->cf.broken = 1;
      snprintf(p->err, sizeof p->err, "waiting for a result: %s",
               amqp_error_string2(r));
      return WARREN_BROKER_CLOSED;
    }
    if (f.frame_type == AMQP_FRAME_METHOD && f.channel == CH &&
        f.payload.method.id == AMQP_BASIC_DELIVER_METHOD) {
      amqp_message_t m;
      if (amqp_read_message(p->c, CH, &m, 0).reply_type !=
          AMQP_RESPONSE_NORMAL) {
        p->cf.broken = 1;
        snprintf(p->err, sizeof p->err, "cannot read a result");
        return WARREN_BROKER_CLOSED;
      }
      const amqp_basic_properties_t *pr = &m.properties;
      int mine =
          (pr->_flags & AMQP_BASIC_CORRELATION_ID_FLAG) &&
          pr->correlation_id.len == cid_len &&
          memcmp(pr->correlation_id.bytes, q.correlation_id, cid_len) == 0;
      /* Another call's late result is dropped. */
      if (mine) rc = take_reply(&m, out);
      amqp_destroy_message(&m);
      if (mine) {
        if (rc != WARREN_OK) snprintf(p->err, sizeof p->err, "out of memory");
        return rc;
      }
      continue;
    }
    rc = wr_confirms_frame(p->c, &p->cf, &f);
    if (rc != WARREN_OK) {
      snprintf(p->err, sizeof p->err, "%s", p->cf.err);
      return rc;
    }
  }
}

int warren_producer_close(warren_producer *p) {
  if (!p) return WARREN_OK;
  int rc =
      p->cf.broken ? WARREN_BROKER_CLOSED : warren_producer_flush(p, 10000);
  if (p->cf.broken)
    amqp_destroy_connection(p->c);
  else
    wr_conn_close(p->c);
  wr_keyring_free(p->ring);
  free(p);
  return rc;
}
