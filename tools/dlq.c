#include "dlq.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <warren/status.h>

#include "args.h"
#include "conn.h"
#include "delay.h"
#include "export.h"
#include "field.h"
#include "log.h"
#include "otelcfg.h"
#include "prodspan.h"
#include "retry.h"
#include "sigcheck.h"
#include "tracectx.h"
#include "toolcfg.h"

#define CH 1

typedef struct dlq_opts {
  const char *cmd;
  long count;         /* at most this many (replay, purge); 0: all */
  const char *reason; /* only this warren-dead-reason */
  const char *id;     /* only this message id */
  int unrouted;       /* the delay levels' unrouted queue, not a DLQ */
  const char *to;     /* replay --unrouted: this queue, the operator's */
} dlq_opts;

/* An integer header, 0 when absent. */
static int64_t header_int(const amqp_basic_properties_t *p, const char *key) {
  int64_t v = 0;
  wr_field_header_int(p, key, &v);
  return v;
}

static int bytes_eq(amqp_bytes_t b, const char *s) {
  return b.len == strlen(s) && memcmp(b.bytes, s, b.len) == 0;
}

/* A header's unix ms; "?" outside years 1970..9999 (the header came
 * with the message: gmtime fails on absurd years). */
static void fmt_time(int64_t ms, char *buf, size_t len) {
  time_t t = (time_t)(ms / 1000);
  struct tm tm;
  if (ms < 0 || ms >= 253402300800000LL || !gmtime_r(&t, &tm) ||
      !strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm))
    snprintf(buf, len, "?");
}

/* Outside text, escaped for the terminal (log.h), in a rotating buffer so
 * one printf can take several. */
static const char *esc(amqp_bytes_t b) {
  static char buf[4][4 * 1024 + 1];
  static int k;
  char *d = buf[k++ % 4];
  wr_escape(d, sizeof buf[0], b.bytes, b.len);
  return d;
}

static void print_summary(long n, const amqp_message_t *m) {
  const amqp_basic_properties_t *p = &m->properties;
  amqp_bytes_t id = (p->_flags & AMQP_BASIC_MESSAGE_ID_FLAG)
                        ? p->message_id
                        : (amqp_bytes_t){1, "-"};
  char when[32];
  fmt_time(header_int(p, WR_H_LAST_FAILURE), when, sizeof when);
  printf("%-4ld %-24s %-12s %8lld  %s  %s\n", n, esc(id),
         esc(wr_field_header_str(p, WR_H_REASON)),
         (long long)header_int(p, WR_H_ATTEMPTS), when,
         esc(wr_field_header_str(p, WR_H_LAST_ERROR)));
}

/* A header value as text; nested tables and arrays are only named. */
static void print_value(const amqp_field_value_t *v) {
  if (v->kind == AMQP_FIELD_KIND_U64) { /* may not fit an int64_t */
    printf("%llu", (unsigned long long)v->value.u64);
    return;
  }
  int64_t i;
  if (wr_field_int(v, &i)) {
    printf("%lld", (long long)i);
    return;
  }
  switch (v->kind) {
    case AMQP_FIELD_KIND_UTF8:
    case AMQP_FIELD_KIND_BYTES:
      printf("%s", esc(v->value.bytes));
      break;
    case AMQP_FIELD_KIND_BOOLEAN:
      printf("%s", v->value.boolean ? "true" : "false");
      break;
    case AMQP_FIELD_KIND_F32:
      printf("%g", (double)v->value.f32);
      break;
    case AMQP_FIELD_KIND_F64:
      printf("%g", v->value.f64);
      break;
    case AMQP_FIELD_KIND_DECIMAL:
      printf("%u (decimal, %u places)", v->value.decimal.value,
             (unsigned)v->value.decimal.decimals);
      break;
    case AMQP_FIELD_KIND_TIMESTAMP:
      printf("%llu (timestamp)", (unsigned long long)v->value.u64);
      break;
    case AMQP_FIELD_KIND_VOID:
      printf("(void)");
      break;
    case AMQP_FIELD_KIND_TABLE:
      printf("(table of %d)", v->value.table.num_entries);
      break;
    case AMQP_FIELD_KIND_ARRAY:
      printf("(array of %d)", v->value.array.num_entries);
      break;
    default:
      printf("(type '%c')", (char)v->kind);
      break;
  }
}

static void print_full(long n, const amqp_message_t *m) {
  const amqp_basic_properties_t *p = &m->properties;
  printf("== message %ld\n", n);
  if (p->_flags & AMQP_BASIC_MESSAGE_ID_FLAG)
    printf("message_id: %s\n", esc(p->message_id));
  if (p->_flags & AMQP_BASIC_CORRELATION_ID_FLAG)
    printf("correlation_id: %s\n", esc(p->correlation_id));
  if (p->_flags & AMQP_BASIC_CONTENT_TYPE_FLAG)
    printf("content_type: %s\n", esc(p->content_type));
  if (p->_flags & AMQP_BASIC_PRIORITY_FLAG)
    printf("priority: %u\n", (unsigned)p->priority);
  for (int i = 0;
       (p->_flags & AMQP_BASIC_HEADERS_FLAG) && i < p->headers.num_entries;
       i++) {
    const amqp_table_entry_t *e = &p->headers.entries[i];
    printf("header %s: ", esc(e->key));
    print_value(&e->value);
    printf("\n");
  }
  /* The body may be anything: escaped in pieces, so its length is not
   * bounded by a buffer. */
  printf("body (%zu bytes):\n", m->body.len);
  for (size_t o = 0; o < m->body.len; o += 1024) {
    size_t k = m->body.len - o < 1024 ? m->body.len - o : 1024;
    printf("%s", esc((amqp_bytes_t){k, (char *)m->body.bytes + o}));
  }
  printf("\n");
}

/* A trace context header: W3C names them in lower case, but a publisher
 * may not have; any case is the same header. */
static int is_trace_key(amqp_bytes_t k) {
  return (k.len == 11 && !strncasecmp(k.bytes, "traceparent", 11)) ||
         (k.len == 10 && !strncasecmp(k.bytes, "tracestate", 10));
}

/* The dead letter's own trace context and tracestate (NUL-terminated, ""
 * when absent or not valid), for the replay span's link. */
static void old_trace(const amqp_basic_properties_t *p, wr_trace_ctx *ctx,
                      char ts[WR_TRACESTATE_MAX + 1]) {
  *ctx = (wr_trace_ctx){0};
  ts[0] = '\0';
  for (int i = 0;
       (p->_flags & AMQP_BASIC_HEADERS_FLAG) && i < p->headers.num_entries;
       i++) {
    const amqp_table_entry_t *e = &p->headers.entries[i];
    if (!is_trace_key(e->key) || (e->value.kind != AMQP_FIELD_KIND_UTF8 &&
                                  e->value.kind != AMQP_FIELD_KIND_BYTES))
      continue;
    amqp_bytes_t v = e->value.value.bytes;
    if (e->key.len == 11)
      wr_trace_parse(v.bytes, v.len, ctx);
    else if (v.len <= WR_TRACESTATE_MAX && wr_tracestate_valid(v.bytes, v.len))
      snprintf(ts, WR_TRACESTATE_MAX + 1, "%.*s", (int)v.len,
               (const char *)v.bytes);
  }
}

/* The PRODUCER span of one replay, linked to the dead letter's own
 * context: the replay starts a new trace, and the link leads from it to
 * the runs that failed. */
static void replay_span(wr_exporter *e, const char *tp, const char *dlq,
                        const char *to, const amqp_message_t *m,
                        int64_t replays, uint64_t start_ns, int rc) {
  const amqp_basic_properties_t *p = &m->properties;
  char mid[256], ts[WR_TRACESTATE_MAX + 1];
  snprintf(mid, sizeof mid, "%.*s", (int)p->message_id.len,
           (const char *)p->message_id.bytes);
  wr_prodspan ps;
  if (wr_prodspan_init(&ps, "replay", to, tp, "", to,
                       (p->_flags & AMQP_BASIC_MESSAGE_ID_FLAG) ? mid : NULL,
                       m->body.len, start_ns, wr_prodspan_now_ns()) != 0)
    return;
  wr_trace_ctx old;
  old_trace(p, &old, ts);
  wr_prodspan_link(&ps, &old, ts);
  wr_prodspan_add_str(&ps, "warren.dlq.queue", dlq);
  wr_prodspan_add_int(&ps, "warren.replays", replays);
  if (rc != WARREN_OK) {
    ps.span.status = WR_STATUS_ERROR;
    ps.span.status_msg = warren_strerror(rc);
  }
  wr_exporter_submit(e, &ps.span);
}

int64_t wr_dlq_next_replays(int64_t replays) {
  /* The header came with the message: any value, saturated. */
  if (replays < 0) return 1;
  return replays == INT64_MAX ? INT64_MAX : replays + 1;
}

/* Back to the work queue, as it was first published: Warren's own headers
 * go (attempts start again), warren-replays counts the replays. The copy
 * starts a new trace: its runs are not the dead letter's, whose trace may
 * have ended long ago (docs/tools.md); the old tracestate, which described
 * the old parent, goes with it. */
static int replay_one(amqp_connection_state_t c, wr_confirms *cf,
                      const wr_cfg *cfg, const wr_handler_cfg *h,
                      const char *to, const char *dlq, wr_exporter *tracer,
                      const amqp_message_t *m, long *unsigned_n) {
  uint64_t start_ns = wr_prodspan_now_ns();
  amqp_basic_properties_t pr = m->properties;
  const amqp_table_t *orig =
      (pr._flags & AMQP_BASIC_HEADERS_FLAG) ? &m->properties.headers : NULL;
  wr_trace_ctx ctx = {.flags = WR_TRACE_SAMPLED, .valid = 1};
  wr_trace_new_trace_id(ctx.trace_id);
  wr_trace_new_span_id(ctx.span_id);
  char tp[WR_TRACEPARENT_LEN + 1];
  wr_trace_format(&ctx, tp);
  int64_t replays =
      wr_dlq_next_replays(header_int(&m->properties, WR_H_REPLAYS));
  amqp_table_entry_t add[3];
  size_t n = 0;
  add[n++] = wr_entry_int(WR_H_REPLAYS, replays);
  add[n++] = wr_entry_str("traceparent", tp);
  /* A job Warren verified comes back countersigned for now, so it runs
   * however long it waited (docs/signing.md). */
  char csig[WARREN_SIGNATURE_MAX];
  if (h && wr_sigcheck_recountersign(cfg, h, m, csig) == 0)
    add[n++] = wr_entry_str(WR_SIGN_COUNTER_HEADER, csig);
  else if (cfg->signing.keyring)
    ++*unsigned_n;
  /* Every other header of the dead letter is kept, however many; the old
   * trace context goes in any case of its name. */
  size_t cap = (orig ? (size_t)orig->num_entries : 0) + n;
  amqp_table_entry_t *store = malloc(2 * cap * sizeof *store);
  if (!store) return WARREN_NOMEM;
  amqp_table_entry_t *kept = store + cap;
  amqp_table_t rest = {0, kept};
  for (int i = 0; orig && i < orig->num_entries; i++)
    if (!is_trace_key(orig->entries[i].key))
      kept[rest.num_entries++] = orig->entries[i];
  pr.headers = wr_retry_headers(&rest, store, cap, add, n);
  pr._flags |= AMQP_BASIC_HEADERS_FLAG;
  int rc = amqp_basic_publish(c, CH, amqp_cstring_bytes(""),
                              amqp_cstring_bytes(to), 1, 0, &pr, m->body);
  free(store);
  if (rc != AMQP_STATUS_OK) {
    fprintf(stderr, "dlq: publish: %s\n", amqp_error_string2(rc));
    return WARREN_BROKER_CLOSED;
  }
  wr_confirms_sent(cf);
  rc = wr_confirms_wait(c, cf, 30000);
  if (rc != WARREN_OK)
    fprintf(stderr, "dlq: replay not confirmed: %s\n", cf->err);
  if (tracer) replay_span(tracer, tp, dlq, to, m, replays, start_ns, rc);
  return rc;
}

/* The span exporter for replays when oc enables tracing, else NULL.
 * Tracing is an extra: when it cannot start, replays go on without. */
static wr_exporter *replay_tracer(const wr_otel_cfg *oc) {
  if (!oc->enabled) return NULL;
  char err[512];
  wr_exporter *e = wr_exporter_start(oc, err, sizeof err);
  if (!e) fprintf(stderr, "dlq: tracing off: %s\n", err);
  return e;
}

/* A delayed job no queue took (docs/delays.md), with the queue it was
 * for (to); its reason is where it is. */
static void print_unrouted(long n, const amqp_message_t *m, const char *to) {
  const amqp_basic_properties_t *p = &m->properties;
  amqp_bytes_t id = (p->_flags & AMQP_BASIC_MESSAGE_ID_FLAG)
                        ? p->message_id
                        : (amqp_bytes_t){1, "-"};
  char when[32];
  fmt_time(header_int(p, WR_DELAY_HEADER), when, sizeof when);
  printf("%-4ld %-24s %-12s %8s  %s  due for queue %s, which nothing bound\n",
         n, esc(id), "unrouted", "-", when,
         esc((amqp_bytes_t){strlen(to), (void *)to}));
}

/* The handler whose work queue is q, or NULL. */
static const wr_handler_cfg *handler_of(const wr_cfg *cfg, const char *q) {
  for (size_t k = 0; k < cfg->n_handlers; k++)
    if (!strcmp(cfg->handlers[k].queue, q)) return &cfg->handlers[k];
  return NULL;
}

/* Where replay --unrouted sends a job by itself: the queue its routing
 * key names, only when that is the work queue of a handler with
 * delayed = true in the config. The routing key is the publisher's word
 * (anyone may publish to the levels): trusted no further than the
 * config, it cannot send a job to another application's queue, a DLQ or
 * a handler that takes no delayed jobs. 1 with the queue in to; 0 with
 * why not in why, and to the queue named (or ""). */
static int unrouted_dest(const wr_cfg *cfg, const char *path, amqp_bytes_t rk,
                         char *to, size_t tolen, char *why, size_t whylen) {
  const char *dest;
  size_t dl;
  to[0] = '\0';
  if (!wr_delay_split(rk.bytes, rk.len, &dest, &dl)) {
    snprintf(why, whylen,
             "its routing key %s is not a delayed job's (28 bits, then a "
             "queue)",
             esc(rk));
    return 0;
  }
  snprintf(to, tolen, "%.*s", (int)dl, dest);
  const wr_handler_cfg *h = handler_of(cfg, to);
  if (h && h->delayed) return 1;
  if (h)
    snprintf(why, whylen,
             "queue %s is handler %s's, which does not take delayed jobs "
             "(no delayed = true in %s)",
             esc((amqp_bytes_t){strlen(to), to}), h->name, path);
  else
    snprintf(why, whylen,
             "queue %s is not the queue of a handler with delayed = true "
             "in %s",
             esc((amqp_bytes_t){strlen(to), to}), path);
  return 0;
}

static int run(const wr_cfg *cfg, const char *path, const wr_handler_cfg *h,
               const dlq_opts *o, wr_exporter *tracer, long *kept) {
  char err[512], dlq[300];
  if (o->unrouted)
    wr_delay_unrouted(cfg->delays.prefix, dlq, sizeof dlq);
  else
    wr_name_dlq(h->queue, dlq, sizeof dlq);
  amqp_connection_state_t c;
  int rc = wr_conn_open_any(&cfg->broker, &c, NULL, err, sizeof err);
  if (rc != WARREN_OK) {
    fprintf(stderr, "dlq: %s\n", err);
    return rc;
  }
  rc = wr_conn_channel(c, CH, 1, err, sizeof err);
  amqp_queue_declare_ok_t *q = NULL;
  if (rc == WARREN_OK) {
    q = amqp_queue_declare(c, CH, amqp_cstring_bytes(dlq), 1, 0, 0, 0,
                           amqp_empty_table);
    char what[400];
    snprintf(what, sizeof what, "dead-letter queue '%s'", dlq);
    rc = wr_conn_reply(c, amqp_get_rpc_reply(c), what, err, sizeof err);
  }
  if (rc != WARREN_OK) {
    fprintf(stderr, "dlq: %s\n", err);
    amqp_destroy_connection(c);
    return rc;
  }
  wr_confirms cf;
  wr_confirms_init(&cf);
  long total = (long)q->message_count, matched = 0, done = 0, plain = 0;
  int filtered = o->reason || o->id;
  if (!strcmp(o->cmd, "purge") && !filtered && !o->count) {
    amqp_queue_purge_ok_t *p = amqp_queue_purge(c, CH, amqp_cstring_bytes(dlq));
    rc =
        wr_conn_reply(c, amqp_get_rpc_reply(c), "queue.purge", err, sizeof err);
    if (rc == WARREN_OK)
      printf("purged %u message(s) from %s\n", p->message_count, dlq);
    else
      fprintf(stderr, "dlq: %s\n", err);
    wr_conn_close(c);
    return rc;
  }
  if (!strcmp(o->cmd, "list"))
    printf("%-4s %-24s %-12s %8s  %-20s  %s\n", "#", "message id", "reason",
           "attempts", "last failure (UTC)", "last error");
  /* Messages are taken unacked, so the walk sees each once; what is not
   * replayed or purged goes back when the channel closes. */
  for (long n = 1; n <= total && rc == WARREN_OK; n++) {
    amqp_maybe_release_buffers(c);
    amqp_rpc_reply_t r = amqp_basic_get(c, CH, amqp_cstring_bytes(dlq), 0);
    if (r.reply_type != AMQP_RESPONSE_NORMAL ||
        r.reply.id != AMQP_BASIC_GET_OK_METHOD)
      break;
    const amqp_basic_get_ok_t *ok = r.reply.decoded;
    uint64_t tag = ok->delivery_tag;
    /* Where it goes back to: the work queue; for a delayed job that no
     * queue took, the queue the operator named, or the delayed handler's
     * queue its routing key names (else nowhere: why says why). */
    char to[256], why[1024];
    int allowed = 1;
    if (!o->unrouted)
      snprintf(to, sizeof to, "%s", h->queue);
    else if (o->to)
      snprintf(to, sizeof to, "%s", o->to);
    else
      allowed = unrouted_dest(cfg, path, ok->routing_key, to, sizeof to, why,
                              sizeof why);
    amqp_message_t m;
    if (amqp_read_message(c, CH, &m, 0).reply_type != AMQP_RESPONSE_NORMAL) {
      rc = WARREN_BROKER_CLOSED;
      break;
    }
    const amqp_basic_properties_t *p = &m.properties;
    int match = (!o->reason ||
                 bytes_eq(wr_field_header_str(p, WR_H_REASON), o->reason)) &&
                (!o->id || ((p->_flags & AMQP_BASIC_MESSAGE_ID_FLAG) &&
                            bytes_eq(p->message_id, o->id)));
    if (match && (!o->count || matched < o->count)) {
      matched++;
      if (!strcmp(o->cmd, "list")) {
        if (o->unrouted)
          print_unrouted(n, &m, to);
        else
          print_summary(n, &m);
      } else if (!strcmp(o->cmd, "show")) {
        print_full(n, &m);
      } else {
        if (!strcmp(o->cmd, "replay") && !allowed) {
          amqp_bytes_t id = (p->_flags & AMQP_BASIC_MESSAGE_ID_FLAG)
                                ? p->message_id
                                : (amqp_bytes_t){1, "-"};
          fprintf(stderr,
                  "dlq: message %ld (id %s) kept in %s: %s; replay it with "
                  "--to QUEUE to send it to a queue of your choice\n",
                  n, esc(id), dlq, why);
          ++*kept;
          amqp_destroy_message(&m);
          continue;
        }
        if (!strcmp(o->cmd, "replay"))
          rc = replay_one(c, &cf, cfg, o->unrouted ? handler_of(cfg, to) : h,
                          to, dlq, tracer, &m, &plain);
        /* Removed from the DLQ only once its copy is confirmed. */
        if (rc == WARREN_OK && amqp_basic_ack(c, CH, tag, 0) == AMQP_STATUS_OK)
          done++;
      }
    }
    amqp_destroy_message(&m);
  }
  if (!strcmp(o->cmd, "replay")) {
    printf("replayed %ld message(s) from %s to %s%s\n", done, dlq,
           o->to         ? "queue "
           : o->unrouted ? "the queues they were for"
                         : "queue ",
           o->to         ? o->to
           : o->unrouted ? ""
                         : h->queue);
    if (*kept)
      printf(
          "kept %ld message(s) in %s: the queue their routing key names is "
          "not a delayed handler's (above)\n",
          *kept, dlq);
    if (plain)
      printf(
          "%ld of them had no valid countersignature: they are verified as "
          "their producer signed them\n",
          plain);
  } else if (!strcmp(o->cmd, "purge"))
    printf("purged %ld message(s) from %s\n", done, dlq);
  else
    printf("%ld of %ld message(s) in %s shown\n", matched, total, dlq);
  wr_conn_close(c);
  return rc;
}

static void dlq_usage(FILE *f) {
  fprintf(
      f,
      "usage: warren dlq list|show|replay|purge CONFIG_FILE HANDLER "
      "[OPTION]...\n"
      "       warren dlq list|show|replay|purge CONFIG_FILE --unrouted "
      "[OPTION]...\n"
      "       warren dlq replay CONFIG_FILE --unrouted --to QUEUE "
      "[OPTION]...\n"
      "  list    one line per dead letter: id, reason, attempts, last error\n"
      "  show    every header and the body\n"
      "  replay  republish to the work queue with attempts reset and a new\n"
      "          trace (a span linked to the old one when OTEL_* is set)\n"
      "          (confirmed by the broker, then removed from the DLQ)\n"
      "  purge   delete (all, or those matching)\n"
      "Which messages:\n"
      "  --count N             at most N, 1..1000000000 (default all)\n"
      "  --reason REASON       only those whose warren-dead-reason is REASON\n"
      "  --id MESSAGE_ID       only that message id\n"
      "  --unrouted            instead of a handler's DLQ: delayed jobs that\n"
      "                        came due for a queue nothing bound\n"
      "                        (<delays.prefix>.unrouted); replay sends each\n"
      "                        to the queue it was for when that is the queue\n"
      "                        of a handler with delayed = true in\n"
      "                        CONFIG_FILE, and keeps the others\n"
      "  --to QUEUE            with replay --unrouted: send the selected jobs\n"
      "                        to QUEUE instead, whatever their routing key\n"
      "                        names\n");
  wr_args_conn_help(f, "CONFIG_FILE's broker section");
  fprintf(f,
          "Other:\n"
          "  -h, --help            this text\n"
          "  --version             the version and the handler ABI version\n"
          "Exit status: 0 done, 1 broker trouble (a replay not confirmed\n"
          "included) or a job kept by replay --unrouted, 2 usage or\n"
          "configuration error.\n");
}

int wr_dlq_main(int argc, char **argv) {
  enum {
    OPT_COUNT = WR_ARGS_OPT_NEXT,
    OPT_REASON,
    OPT_ID,
    OPT_UNROUTED,
    OPT_TO,
    OPT_VERSION,
  };
  static const struct option longopts[] = {
      {"count", required_argument, NULL, OPT_COUNT},
      {"reason", required_argument, NULL, OPT_REASON},
      {"id", required_argument, NULL, OPT_ID},
      {"unrouted", no_argument, NULL, OPT_UNROUTED},
      {"to", required_argument, NULL, OPT_TO},
      {"help", no_argument, NULL, 'h'},
      {"version", no_argument, NULL, OPT_VERSION},
      WR_ARGS_CONN_LONGOPTS,
      {NULL, 0, NULL, 0}};
  static const char prog[] = "warren dlq";
  dlq_opts o = {0};
  wr_args_conn conn = {0};
  char err[8192];
  int c;
  /* 0, not 1: getopt_long starts afresh, also when called twice. */
  optind = 0;
  opterr = 0; /* refused options are reported below, in one format */
  while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
    int taken = wr_args_conn_opt(&conn, c, optarg, err, sizeof err);
    if (taken < 0) return wr_args_refuse(prog, err);
    if (taken) continue;
    switch (c) {
      case OPT_COUNT:
        if (wr_args_long("--count", optarg, 1, 1000000000, &o.count, err,
                         sizeof err))
          return wr_args_refuse(prog, err);
        break;
      case OPT_REASON:
        if (!wr_retry_reason_known(optarg)) {
          snprintf(
              err, sizeof err,
              "--reason: '%.64s' is no reason Warren writes (max-attempts, "
              "rejected, crashed, timeout, malformed, too_large, "
              "signature, revoked, max-deliveries)",
              optarg);
          return wr_args_refuse(prog, err);
        }
        o.reason = optarg;
        break;
      case OPT_ID:
        o.id = optarg;
        break;
      case OPT_UNROUTED:
        o.unrouted = 1;
        break;
      case OPT_TO:
        o.to = optarg;
        break;
      case 'h':
        dlq_usage(stdout);
        return 0;
      case OPT_VERSION:
        wr_args_print_warren_version();
        return 0;
      default:
        wr_args_getopt_error(c, argv, err, sizeof err);
        return wr_args_refuse(prog, err);
    }
  }
  /* The operands, wherever the options were: SUBCOMMAND CONFIG_FILE
   * HANDLER. */
  if (optind >= argc) return wr_args_refuse(prog, "a subcommand is missing");
  o.cmd = argv[optind++];
  if (strcmp(o.cmd, "list") && strcmp(o.cmd, "show") &&
      strcmp(o.cmd, "replay") && strcmp(o.cmd, "purge")) {
    snprintf(err, sizeof err,
             "the subcommand is list, show, replay or purge (got '%s')", o.cmd);
    return wr_args_refuse(prog, err);
  }
  if (o.to && (!o.unrouted || strcmp(o.cmd, "replay")))
    return wr_args_refuse(prog, "--to is for replay --unrouted");
  if (o.to && (!o.to[0] || strlen(o.to) > 255)) {
    snprintf(err, sizeof err, "--to takes a queue name of 1..255 bytes");
    return wr_args_refuse(prog, err);
  }
  if (argc - optind != 2 - o.unrouted) {
    snprintf(err, sizeof err, "%s takes CONFIG_FILE and %s (got %d)", o.cmd,
             o.unrouted ? "no HANDLER with --unrouted" : "HANDLER",
             argc - optind);
    return wr_args_refuse(prog, err);
  }
  const char *path = argv[optind],
             *handler = o.unrouted ? NULL : argv[optind + 1];
  wr_cfg *cfg;
  /* The password read here is kept until the connection is made. */
  static wr_args_store store;
  int bad = wr_toolcfg_load(prog, path, &conn, &store, &cfg);
  if (bad) return bad;
  const wr_handler_cfg *h = NULL;
  for (size_t k = 0; handler && k < cfg->n_handlers; k++)
    if (!strcmp(cfg->handlers[k].name, handler)) h = &cfg->handlers[k];
  int rc = 2;
  if (!h && !o.unrouted)
    fprintf(stderr, "%s: no handler named '%s'\n", path, handler);
  else {
    /* The config's `tracing` group with the OTEL_* variables over it, as
     * the worker reads them (cfg.c). */
    wr_exporter *tracer =
        !strcmp(o.cmd, "replay") ? replay_tracer(&cfg->tracing) : NULL;
    long kept = 0;
    rc = run(cfg, path, h, &o, tracer, &kept) == WARREN_OK && !kept ? 0 : 1;
    /* Spans not sent by then are counted and logged by the exporter. */
    wr_exporter_stop(tracer, 5);
  }
  wr_cfg_free(cfg);
  memset(store.password, 0, sizeof store.password);
  return rc;
}
