/* The span copy the exporter queues and the OTLP encoding of a batch
 * (otel/otlp.c), decoded again with the generated protobuf-c code. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "opentelemetry/proto/collector/trace/v1/trace_service.pb-c.h"
#include "otlp.h"

typedef Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest
    req_t;
typedef Opentelemetry__Proto__Common__V1__KeyValue kv_t;

static req_t *decode(const uint8_t *p, size_t len) {
  req_t *r =
      opentelemetry__proto__collector__trace__v1__export_trace_service_request__unpack(
          NULL, len, p);
  cr_assert(r, "the request does not decode");
  return r;
}

static void req_free(req_t *r) {
  opentelemetry__proto__collector__trace__v1__export_trace_service_request__free_unpacked(
      r, NULL);
}

static const kv_t *find(kv_t **kv, size_t n, const char *key) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(kv[i]->key, key) == 0) return kv[i];
  return NULL;
}

/* A span using every field, its strings on the stack: the copy must not
 * point back at them. */
static void fill(wr_span *sp, wr_attr *at, wr_span_event *ev, wr_attr *evat,
                 wr_span_link *lk) {
  memset(sp, 0, sizeof *sp);
  for (int i = 0; i < 16; i++) sp->trace_id[i] = (uint8_t)(i + 1);
  for (int i = 0; i < 8; i++) sp->span_id[i] = (uint8_t)(0xa0 + i);
  for (int i = 0; i < 8; i++) sp->parent_span_id[i] = (uint8_t)(0xb0 + i);
  sp->has_parent = 1;
  sp->tracestate = "k=v";
  sp->flags = 1;
  sp->name = "orders process";
  sp->kind = WR_SPAN_CONSUMER;
  sp->start_ns = 1700000000123456789ull;
  sp->end_ns = 1700000000223456789ull;
  at[0] = (wr_attr){.key = "s", .type = WR_ATTR_STRING, .str = "abcdef",
                    .len = 3};
  at[1] = (wr_attr){.key = "i", .type = WR_ATTR_INT, .i = -42};
  at[2] = (wr_attr){.key = "d", .type = WR_ATTR_DOUBLE, .d = 2.5};
  at[3] = (wr_attr){.key = "b", .type = WR_ATTR_BOOL, .i = 1};
  sp->attrs = at;
  sp->nattrs = 4;
  evat[0] = (wr_attr){.key = "attempt", .type = WR_ATTR_INT, .i = 2};
  ev[0] = (wr_span_event){"retry", 1700000000150000000ull, evat, 1};
  ev[1] = (wr_span_event){"empty", 1700000000160000000ull, NULL, 0};
  sp->events = ev;
  sp->nevents = 2;
  memset(lk, 0x11, sizeof *lk);
  lk->tracestate = NULL;
  lk->flags = 1;
  sp->links = lk;
  sp->nlinks = 1;
  sp->status = WR_STATUS_ERROR;
  sp->status_msg = "handler failed";
}

static void check_span(const Opentelemetry__Proto__Trace__V1__Span *p) {
  cr_assert_eq(p->trace_id.len, 16);
  cr_assert_eq(p->trace_id.data[15], 16);
  cr_assert_eq(p->span_id.len, 8);
  cr_assert_eq(p->span_id.data[0], 0xa0);
  cr_assert_eq(p->parent_span_id.len, 8);
  cr_assert_eq(p->parent_span_id.data[7], 0xb7);
  cr_assert_str_eq(p->trace_state, "k=v");
  cr_assert_eq(p->flags, 1);
  cr_assert_str_eq(p->name, "orders process");
  cr_assert_eq(p->kind, 5);
  cr_assert_eq(p->start_time_unix_nano, 1700000000123456789ull);
  cr_assert_eq(p->end_time_unix_nano, 1700000000223456789ull);
  cr_assert_eq(p->n_attributes, 4);
  const kv_t *k = find(p->attributes, p->n_attributes, "s");
  cr_assert(k);
  cr_assert_str_eq(k->value->string_value, "abc");
  k = find(p->attributes, p->n_attributes, "i");
  cr_assert(k && k->value->value_case ==
                     OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE);
  cr_assert_eq(k->value->int_value, -42);
  k = find(p->attributes, p->n_attributes, "d");
  cr_assert(k);
  cr_assert_float_eq(k->value->double_value, 2.5, 1e-12);
  k = find(p->attributes, p->n_attributes, "b");
  cr_assert(k && k->value->value_case ==
                     OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BOOL_VALUE);
  cr_assert(k->value->bool_value);
  cr_assert_eq(p->n_events, 2);
  cr_assert_str_eq(p->events[0]->name, "retry");
  cr_assert_eq(p->events[0]->time_unix_nano, 1700000000150000000ull);
  cr_assert_eq(p->events[0]->n_attributes, 1);
  cr_assert_eq(p->events[0]->attributes[0]->value->int_value, 2);
  cr_assert_eq(p->events[1]->n_attributes, 0);
  cr_assert_eq(p->n_links, 1);
  cr_assert_eq(p->links[0]->trace_id.data[0], 0x11);
  cr_assert_eq(p->links[0]->span_id.len, 8);
  cr_assert_eq(p->status->code, 2);
  cr_assert_str_eq(p->status->message, "handler failed");
}

Test(otlp, every_field_of_a_span_survives_encoding) {
  wr_span sp;
  wr_attr at[4], evat[1];
  wr_span_event ev[2];
  wr_span_link lk;
  fill(&sp, at, ev, evat, &lk);
  wr_otel_kv attrs[1] = {{"deployment.environment", "test"}};
  wr_otlp_resource res = {"orders", attrs, 1, 4242};
  const wr_span *list[1] = {&sp};
  size_t len;
  uint8_t *buf = wr_otlp_encode(&res, list, 1, &len);
  cr_assert(buf);
  req_t *r = decode(buf, len);
  cr_assert_eq(r->n_resource_spans, 1);
  Opentelemetry__Proto__Trace__V1__ResourceSpans *rs = r->resource_spans[0];
  kv_t **ra = rs->resource->attributes;
  size_t nra = rs->resource->n_attributes;
  cr_assert_str_eq(find(ra, nra, "service.name")->value->string_value,
                   "orders");
  cr_assert_str_eq(
      find(ra, nra, "deployment.environment")->value->string_value, "test");
  cr_assert_eq(find(ra, nra, "process.pid")->value->int_value, 4242);
  cr_assert_eq(rs->n_scope_spans, 1);
  cr_assert_str_eq(rs->scope_spans[0]->scope->name, "warren");
  cr_assert_str_eq(rs->scope_spans[0]->scope->version, WARREN_VERSION_TEST);
  cr_assert_eq(rs->scope_spans[0]->n_spans, 1);
  check_span(rs->scope_spans[0]->spans[0]);
  req_free(r);
  free(buf);
}

Test(otlp, a_copy_moved_as_bytes_is_the_same_span) {
  wr_span sp;
  wr_attr at[4], evat[1];
  wr_span_event ev[2];
  wr_span_link lk;
  fill(&sp, at, ev, evat, &lk);
  size_t sz = wr_otlp_flat_size(&sp);
  cr_assert_eq(sz % WR_OTLP_FLAT_ALIGN, 0);
  uint64_t *a = malloc(sz), *b = malloc(sz);
  memset(a, 0xee, sz);
  wr_otlp_flatten(a, &sp);
  memcpy(b, a, sz);
  /* The original's memory is gone: nothing may point back at it. */
  memset(a, 0xee, sz);
  memset(at, 0, sizeof at);
  memset(ev, 0, sizeof ev);
  wr_span *c = wr_otlp_unflatten(b);
  /* Within the copy, every pointer. */
  cr_assert((char *)c->name > (char *)b && (char *)c->name < (char *)b + sz);
  cr_assert((char *)c->attrs[0].str < (char *)b + sz);
  cr_assert_eq(c->attrs[0].len, 3);
  const wr_span *list[1] = {c};
  size_t len;
  uint8_t *buf = wr_otlp_encode(&(wr_otlp_resource){"x", NULL, 0, 0}, list, 1,
                                &len);
  cr_assert(buf);
  req_t *r = decode(buf, len);
  check_span(r->resource_spans[0]->scope_spans[0]->spans[0]);
  /* pid 0: no process.pid. */
  cr_assert_null(find(r->resource_spans[0]->resource->attributes,
                      r->resource_spans[0]->resource->n_attributes,
                      "process.pid"));
  req_free(r);
  free(buf);
  free(a);
  free(b);
}

Test(otlp, a_span_without_parent_events_or_links_has_empty_fields) {
  wr_span sp = {.name = "bare", .kind = WR_SPAN_INTERNAL, .start_ns = 1,
                .end_ns = 2};
  size_t sz = wr_otlp_flat_size(&sp);
  uint64_t *a = malloc(sz);
  wr_otlp_flatten(a, &sp);
  wr_span *c = wr_otlp_unflatten(a);
  cr_assert_null(c->attrs);
  cr_assert_null(c->tracestate);
  const wr_span *list[1] = {c};
  size_t len;
  uint8_t *buf = wr_otlp_encode(&(wr_otlp_resource){"x", NULL, 0, 1}, list, 1,
                                &len);
  req_t *r = decode(buf, len);
  const Opentelemetry__Proto__Trace__V1__Span *p =
      r->resource_spans[0]->scope_spans[0]->spans[0];
  cr_assert_eq(p->parent_span_id.len, 0);
  cr_assert_str_eq(p->trace_state, "");
  cr_assert_eq(p->n_events + p->n_links + p->n_attributes, 0);
  cr_assert_eq(p->status->code, 0);
  req_free(r);
  free(buf);
  free(a);
}

Test(otlp, invalid_utf8_is_replaced_so_a_collector_accepts_the_batch) {
  /* A message id from a publisher may be any bytes; Go's protobuf (the
   * Collector's) refuses a whole request with one bad string. */
  wr_attr at = {.key = "messaging.message.id", .type = WR_ATTR_STRING,
                .str = "a\xff\xc3\xa9\xe2\x82", .len = 6};
  wr_span sp = {.name = "n\xc0", .attrs = &at, .nattrs = 1};
  const wr_span *list[1] = {&sp};
  size_t len;
  uint8_t *buf = wr_otlp_encode(&(wr_otlp_resource){"x", NULL, 0, 0}, list, 1,
                                &len);
  req_t *r = decode(buf, len);
  const Opentelemetry__Proto__Trace__V1__Span *p =
      r->resource_spans[0]->scope_spans[0]->spans[0];
  cr_assert_str_eq(p->name, "n?");
  cr_assert_str_eq(p->attributes[0]->value->string_value, "a?\xc3\xa9??");
  req_free(r);
  free(buf);
}

Test(otlp, many_spans_are_all_in_one_request) {
  enum { N = 1000 };
  wr_span *sp = calloc(N, sizeof *sp);
  const wr_span **list = calloc(N, sizeof *list);
  for (int i = 0; i < N; i++) {
    sp[i].name = "s";
    sp[i].span_id[0] = (uint8_t)i;
    sp[i].span_id[1] = (uint8_t)(i >> 8);
    list[i] = &sp[i];
  }
  size_t len;
  uint8_t *buf = wr_otlp_encode(&(wr_otlp_resource){"x", NULL, 0, 0}, list, N,
                                &len);
  req_t *r = decode(buf, len);
  cr_assert_eq(r->resource_spans[0]->scope_spans[0]->n_spans, N);
  const Opentelemetry__Proto__Trace__V1__Span *last =
      r->resource_spans[0]->scope_spans[0]->spans[N - 1];
  cr_assert_eq(last->span_id.data[0] | (last->span_id.data[1] << 8), N - 1);
  req_free(r);
  free(buf);
  free(sp);
  free(list);
}
