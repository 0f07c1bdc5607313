#include "spans.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <warren/status.h>

#include "cfg.h"
#include "clock.h"
#include "export.h"
#include "extras.h"
#include "log.h"

struct wr_spans {
  wr_otel_cfg oc;
  wr_exporter *exp;
  const wr_cfg *cfg;
  double mono_offset_ns; /* Unix ns minus monotonic ns */
  uint64_t invalid_context, sampled, not_sampled;
};

/* ---- contexts ------------------------------------------------------------ */

/* Header `name` (any case) of t as bytes, when a string or byte array. */
static int header_bytes(const amqp_table_t *t, const char *name,
                        amqp_bytes_t *out) {
  size_t n = strlen(name);
  for (int i = 0; t && i < t->num_entries; i++) {
    const amqp_table_entry_t *e = &t->entries[i];
    if (e->key.len != n || strncasecmp(e->key.bytes, name, n) != 0) continue;
    if (e->value.kind != AMQP_FIELD_KIND_UTF8 &&
        e->value.kind != AMQP_FIELD_KIND_BYTES)
      return -1; /* present, but not a string: invalid */
    *out = e->value.value.bytes;
    return 1;
  }
  return 0;
}

static const amqp_table_t *headers_of(const wr_job *job) {
  const amqp_basic_properties_t *p = &job->env.message.properties;
  return (p->_flags & AMQP_BASIC_HEADERS_FLAG) ? &p->headers : NULL;
}

static int sampled_root(const wr_otel_cfg *oc, const uint8_t id[16]) {
  switch (oc->sampler) {
    case WR_SAMPLER_ALWAYS_OFF:
    case WR_SAMPLER_PARENT_ALWAYS_OFF:
      return 0;
    case WR_SAMPLER_RATIO:
    case WR_SAMPLER_PARENT_RATIO:
      return wr_trace_ratio_sampled(id, oc->ratio);
    default:
      return 1;
  }
}

static int parent_based(wr_sampler s) {
  return s == WR_SAMPLER_PARENT_ALWAYS_ON ||
         s == WR_SAMPLER_PARENT_ALWAYS_OFF || s == WR_SAMPLER_PARENT_RATIO;
}

static int trace_check(void *ctx, size_t handler, wr_job *job, wr_outcome *o,
                       char *why, size_t whylen) {
  wr_spans *sp = ctx;
  (void)handler, (void)o, (void)why, (void)whylen;
  wr_job_trace *t = &job->trace;
  memset(t, 0, sizeof *t);
  const amqp_table_t *hd = headers_of(job);
  amqp_bytes_t v;
  wr_trace_ctx parent = {0};
  int got = header_bytes(hd, "traceparent", &v);
  if (got == 1 && wr_trace_parse(v.bytes, v.len, &parent) != 0) got = -1;
  if (got < 0) sp->invalid_context++;
  if (got == 1 && header_bytes(hd, "tracestate", &v) == 1) {
    if (wr_tracestate_valid(v.bytes, v.len))
      t->tracestate = v;
    else
      sp->invalid_context++; /* not passed on */
  }
  t->on = 1;
  wr_trace_new_span_id(t->span_id);
  int sampled;
  if (parent.valid && !sp->oc.link_parent) {
    memcpy(t->trace_id, parent.trace_id, 16);
    memcpy(t->parent_id, parent.span_id, 8);
    t->has_parent = 1;
    /* The parent-based samplers follow the producer's decision; their
     * variants differ only for roots. */
    sampled = parent_based(sp->oc.sampler)
                  ? (parent.flags & WR_TRACE_SAMPLED) != 0
                  : sampled_root(&sp->oc, t->trace_id);
  } else {
    /* A new trace; with `parent = "link"` linked to the producer's. */
    wr_trace_new_trace_id(t->trace_id);
    if (parent.valid) {
      memcpy(t->link_trace, parent.trace_id, 16);
      memcpy(t->parent_id, parent.span_id, 8);
      t->linked = 1;
      t->link_flags = parent.flags;
      t->tracestate = amqp_empty_bytes; /* the producer's, not this trace's */
    }
    sampled = sampled_root(&sp->oc, t->trace_id);
  }
  t->flags = sampled ? WR_TRACE_SAMPLED : 0;
  if (sampled)
    sp->sampled++;
  else
    sp->not_sampled++;
  /* Before a worker takes it: a job refused here has no start. */
  job->started = 0;
  return 0;
}

const wr_intake_check wr_intake_trace = {"trace", trace_check};

int wr_spans_copy_context(wr_job *job, char tp[WR_TRACEPARENT_LEN + 1]) {
  if (!job->trace.on) return -1;
  wr_trace_new_span_id(job->trace.copy_id);
  wr_trace_ctx c = {.flags = job->trace.flags, .valid = 1};
  memcpy(c.trace_id, job->trace.trace_id, 16);
  memcpy(c.span_id, job->trace.copy_id, 8);
  wr_trace_format(&c, tp);
  return 0;
}

int wr_spans_followup_context(const wr_job *job,
                              char tp[WR_TRACEPARENT_LEN + 1],
                              amqp_bytes_t *ts) {
  wr_trace_ctx c = {0};
  if (job->trace.on) {
    c = (wr_trace_ctx){.flags = job->trace.flags, .valid = 1};
    memcpy(c.trace_id, job->trace.trace_id, 16);
    memcpy(c.span_id, job->trace.span_id, 8);
    *ts = job->trace.tracestate; /* checked at intake */
  } else {
    /* Not traced: the job's own context, when valid, passed on as it is. */
    const amqp_table_t *hd = headers_of(job);
    amqp_bytes_t v;
    if (header_bytes(hd, "traceparent", &v) != 1 ||
        wr_trace_parse(v.bytes, v.len, &c) != 0)
      return -1;
    *ts = header_bytes(hd, "tracestate", &v) == 1 &&
                  wr_tracestate_valid(v.bytes, v.len)
              ? v
              : amqp_empty_bytes;
  }
  wr_trace_format(&c, tp);
  return 0;
}

/* ---- spans --------------------------------------------------------------- */

#define MAX_ATTRS (24 + WR_EXTRAS_MAX_ATTRS)

typedef struct attrs {
  wr_attr a[MAX_ATTRS];
  size_t n;
} attrs;

static void add_str(attrs *as, const char *k, const void *s, size_t len) {
  if (as->n < MAX_ATTRS)
    as->a[as->n++] =
        (wr_attr){.key = k, .type = WR_ATTR_STRING, .str = s, .len = len};
}

static void add_cstr(attrs *as, const char *k, const char *s) {
  add_str(as, k, s, strlen(s));
}

static void add_int(attrs *as, const char *k, int64_t i) {
  if (as->n < MAX_ATTRS)
    as->a[as->n++] = (wr_attr){.key = k, .type = WR_ATTR_INT, .i = i};
}

static void add_prop(attrs *as, const char *k, int has, amqp_bytes_t b) {
  if (has && b.len) add_str(as, k, b.bytes, b.len);
}

static const char *outcome_name(wr_outcome o) {
  switch (o) {
    case WR_OUT_ACKED:
      return "ack";
    case WR_OUT_FAILED:
      return "retry";
    case WR_OUT_REJECTED:
      return "reject";
    default:
      return wr_retry_reason(o); /* crashed, timeout, signature, ... */
  }
}

static uint64_t unix_ns(const wr_spans *sp, double mono_s) {
  return (uint64_t)(mono_s * 1e9 + sp->mono_offset_ns);
}

static void span_name(char *buf, size_t len, const char *op, amqp_bytes_t ex) {
  if (ex.len)
    snprintf(buf, len, "%s %.*s", op, (int)ex.len, (const char *)ex.bytes);
  else
    snprintf(buf, len, "%s (default)", op);
}

/* The messaging attributes every span of a job has. */
static void common_attrs(const wr_spans *sp, attrs *as, const wr_job *job,
                         const char *op_type, const char *op_name) {
  add_cstr(as, "messaging.system", "rabbitmq");
  add_cstr(as, "messaging.operation.type", op_type);
  add_cstr(as, "messaging.operation.name", op_name);
  add_cstr(as, "server.address", sp->cfg->broker.host);
  add_int(as, "server.port", sp->cfg->broker.port);
  const wr_handler_cfg *hc = &sp->cfg->handlers[job->handler];
  add_cstr(as, "warren.handler", hc->name);
  add_cstr(as, "warren.queue", hc->queue);
  const amqp_basic_properties_t *p = &job->env.message.properties;
  add_prop(as, "messaging.message.id", p->_flags & AMQP_BASIC_MESSAGE_ID_FLAG,
           p->message_id);
  add_prop(as, "messaging.message.conversation_id",
           p->_flags & AMQP_BASIC_CORRELATION_ID_FLAG, p->correlation_id);
}

static void submit(wr_spans *sp, wr_span *s) {
  wr_exporter_submit(sp->exp, s); /* a drop is counted by the exporter */
}

static void settled(void *ctx, size_t h, const wr_job *job, wr_outcome o,
                    const char *err) {
  wr_spans *sp = ctx;
  (void)h;
  const wr_job_trace *t = &job->trace;
  if (!t->on || !(t->flags & WR_TRACE_SAMPLED)) return;
  attrs as = {.n = 0};
  common_attrs(sp, &as, job, "process", "process");
  add_str(&as, "messaging.destination.name", job->env.exchange.bytes,
          job->env.exchange.len);
  if (job->env.routing_key.len)
    add_str(&as, "messaging.rabbitmq.destination.routing_key",
            job->env.routing_key.bytes, job->env.routing_key.len);
  add_int(&as, "messaging.rabbitmq.message.delivery_tag",
          (int64_t)job->env.delivery_tag);
  add_int(&as, "messaging.message.body.size",
          (int64_t)job->env.message.body.len);
  add_int(&as, "warren.attempt", job->meta.attempt);
  const char *out = outcome_name(o);
  add_cstr(&as, "warren.outcome", out);
  if (o != WR_OUT_ACKED) add_cstr(&as, "error.type", out);
  const wr_extras *x = job->extras;
  size_t own = as.n;
  for (size_t i = 0; x && i < x->nattrs && as.n < MAX_ATTRS; i++) {
    /* Warren's own attributes stay Warren's. */
    size_t k = 0;
    while (k < own && strcmp(as.a[k].key, x->attrs[i].key) != 0) k++;
    if (k == own) as.a[as.n++] = x->attrs[i];
  }
  wr_span_event ev[WR_EXTRAS_MAX_EVENTS + 1];
  size_t nev = 0;
  for (size_t i = 0; x && i < x->nevents; i++) ev[nev++] = x->events[i];
  uint64_t end = (uint64_t)wr_unix_ns();
  wr_attr exc[2];
  if (o != WR_OUT_ACKED && err) {
    exc[0] = (wr_attr){.key = "exception.type",
                       .type = WR_ATTR_STRING,
                       .str = out,
                       .len = strlen(out)};
    exc[1] = (wr_attr){.key = "exception.message",
                       .type = WR_ATTR_STRING,
                       .str = err,
                       .len = strlen(err)};
    ev[nev++] = (wr_span_event){"exception", end, exc, 2};
  }
  char name[300];
  span_name(name, sizeof name, "process", job->env.exchange);
  char tsbuf[WR_TRACESTATE_MAX + 1]; /* span.h wants it NUL-terminated */
  if (t->tracestate.len) memcpy(tsbuf, t->tracestate.bytes, t->tracestate.len);
  tsbuf[t->tracestate.len] = '\0';
  wr_span_link link = {.flags = t->link_flags};
  if (t->linked) {
    memcpy(link.trace_id, t->link_trace, 16);
    memcpy(link.span_id, t->parent_id, 8);
  }
  wr_span s = {.has_parent = t->has_parent,
               .tracestate = tsbuf,
               .flags = t->flags,
               .name = name,
               .kind = WR_SPAN_CONSUMER,
               .start_ns = job->started ? unix_ns(sp, job->started) : end,
               .end_ns = end,
               .attrs = as.a,
               .nattrs = as.n,
               .events = ev,
               .nevents = nev,
               .links = t->linked ? &link : NULL,
               .nlinks = t->linked ? 1 : 0,
               .status = o == WR_OUT_ACKED ? WR_STATUS_UNSET : WR_STATUS_ERROR,
               .status_msg = o == WR_OUT_ACKED ? NULL : err};
  memcpy(s.trace_id, t->trace_id, 16);
  memcpy(s.span_id, t->span_id, 8);
  memcpy(s.parent_span_id, t->parent_id, 8);
  submit(sp, &s);
}

/* The copy's PRODUCER span: a child of the attempt that failed, the
 * parent of the next attempt (or of the dead letter's replay link). */
static void republished(void *ctx, size_t h, const wr_job *job, int dead,
                        const char *reason) {
  wr_spans *sp = ctx;
  const wr_job_trace *t = &job->trace;
  if (!t->on || !(t->flags & WR_TRACE_SAMPLED)) return;
  const wr_handler_cfg *hc = &sp->cfg->handlers[h];
  attrs as = {.n = 0};
  common_attrs(sp, &as, job, "send", dead ? "dead-letter" : "retry");
  char dest[300] = ""; /* retry queues are reached through the default one */
  if (dead) wr_name_dlx(hc->queue, dest, sizeof dest);
  add_cstr(&as, "messaging.destination.name", dest);
  add_int(&as, "warren.attempt", job->meta.attempt);
  add_cstr(&as, "warren.copy", dead ? "dead-letter" : "retry");
  if (dead && reason) add_cstr(&as, "warren.dead_reason", reason);
  char name[340];
  snprintf(name, sizeof name, "%s %s", dead ? "dead-letter" : "retry",
           hc->queue);
  uint64_t now = (uint64_t)wr_unix_ns();
  wr_span s = {.has_parent = 1,
               .flags = t->flags,
               .name = name,
               .kind = WR_SPAN_PRODUCER,
               .start_ns = now,
               .end_ns = now,
               .attrs = as.a,
               .nattrs = as.n};
  memcpy(s.trace_id, t->trace_id, 16);
  memcpy(s.span_id, t->copy_id, 8);
  memcpy(s.parent_span_id, t->span_id, 8);
  submit(sp, &s);
}

const wr_job_events wr_spans_events = {
    .settled = settled,
    .republished = republished,
};

/* ---- life ---------------------------------------------------------------- */

int wr_spans_create(const wr_otel_cfg *oc, const wr_cfg *cfg, wr_spans **out,
                    char *err, size_t errlen) {
  wr_spans *sp = calloc(1, sizeof *sp);
  if (!sp) return WARREN_NOMEM;
  sp->oc = *oc;
  sp->cfg = cfg;
  sp->mono_offset_ns = (double)wr_unix_ns() - wr_now() * 1e9;
  sp->exp = wr_exporter_start(oc, err, errlen);
  if (!sp->exp) {
    free(sp);
    return WARREN_IO;
  }
  *out = sp;
  return WARREN_OK;
}

void wr_spans_destroy(wr_spans *sp, double flush_s) {
  if (!sp) return;
  wr_exporter_stop(sp->exp, flush_s);
  free(sp);
}

void wr_spans_counters_get(wr_spans *sp, wr_spans_counters *out) {
  wr_exporter_stats st;
  wr_exporter_stats_get(sp->exp, &st);
  *out = (wr_spans_counters){
      sp->invalid_context, sp->sampled,       sp->not_sampled,  st.exported,
      st.dropped_full,     st.dropped_failed, st.export_errors, st.queued};
}
