#include "prodspan.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static void add(wr_prodspan *ps, wr_attr a) {
  ps->attrs[ps->span.nattrs++] = a;
}

static wr_attr str(const char *key, const char *v) {
  return (wr_attr){
      .key = key, .type = WR_ATTR_STRING, .str = v, .len = strlen(v)};
}

int wr_prodspan_init(wr_prodspan *ps, const char *operation,
                     const char *name_dest, const char *traceparent,
                     const char *exchange, const char *routing_key,
                     const char *message_id, size_t body_size,
                     uint64_t start_ns, uint64_t end_ns) {
  wr_trace_ctx c;
  if (!traceparent || wr_trace_parse(traceparent, strlen(traceparent), &c) != 0)
    return -1;
  memset(ps, 0, sizeof *ps);
  memcpy(ps->span.trace_id, c.trace_id, sizeof c.trace_id);
  memcpy(ps->span.span_id, c.span_id, sizeof c.span_id);
  ps->span.flags = c.flags;
  /* The convention's span name: operation and destination; the default
   * exchange has no name to show. */
  snprintf(ps->name, sizeof ps->name, "%s %s", operation,
           name_dest && *name_dest ? name_dest : "(default)");
  ps->span.name = ps->name;
  ps->span.kind = WR_SPAN_PRODUCER;
  ps->span.start_ns = start_ns;
  ps->span.end_ns = end_ns;
  ps->span.attrs = ps->attrs;
  add(ps, str("messaging.system", "rabbitmq"));
  add(ps, str("messaging.operation.type", "send"));
  add(ps, str("messaging.operation.name", operation));
  add(ps, str("messaging.destination.name", exchange ? exchange : ""));
  add(ps, str("messaging.rabbitmq.destination.routing_key",
              routing_key ? routing_key : ""));
  if (message_id) add(ps, str("messaging.message.id", message_id));
  add(ps, (wr_attr){.key = "messaging.message.body.size",
                    .type = WR_ATTR_INT,
                    .i = (int64_t)body_size});
  return 0;
}

int wr_prodspan_add_str(wr_prodspan *ps, const char *key, const char *v) {
  if (ps->span.nattrs >= WR_PRODSPAN_MAX_ATTRS) return -1;
  add(ps, str(key, v));
  return 0;
}

int wr_prodspan_add_int(wr_prodspan *ps, const char *key, int64_t v) {
  if (ps->span.nattrs >= WR_PRODSPAN_MAX_ATTRS) return -1;
  add(ps, (wr_attr){.key = key, .type = WR_ATTR_INT, .i = v});
  return 0;
}

int wr_prodspan_link(wr_prodspan *ps, const wr_trace_ctx *ctx,
                     const char *tracestate) {
  if (!ctx->valid) return -1;
  memcpy(ps->link.trace_id, ctx->trace_id, sizeof ctx->trace_id);
  memcpy(ps->link.span_id, ctx->span_id, sizeof ctx->span_id);
  ps->link.flags = ctx->flags;
  ps->link.tracestate = tracestate;
  ps->span.links = &ps->link;
  ps->span.nlinks = 1;
  return 0;
}

uint64_t wr_prodspan_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
