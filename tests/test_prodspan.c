/* The PRODUCER span of a publish or a replay: its ids are the message's
 * traceparent, its name and attributes follow the messaging conventions. */
#include <criterion/criterion.h>
#include <string.h>

#include "prodspan.h"

#define TP "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

static const wr_attr *attr(const wr_span *s, const char *key) {
  for (size_t i = 0; i < s->nattrs; i++)
    if (!strcmp(s->attrs[i].key, key)) return &s->attrs[i];
  return NULL;
}

static void expect_str(const wr_span *s, const char *key, const char *v) {
  const wr_attr *a = attr(s, key);
  cr_assert_not_null(a, "no attribute %s", key);
  cr_assert_eq(a->type, WR_ATTR_STRING, "%s", key);
  cr_assert_eq(a->len, strlen(v), "%s", key);
  cr_assert_eq(memcmp(a->str, v, a->len), 0, "%s: %.*s", key, (int)a->len,
               a->str);
}

/* Breaks when the span's ids differ from the job's traceparent: the
 * consumer's span would then point at a parent nobody exported. */
Test(prodspan, the_span_is_the_context_the_job_carries) {
  wr_prodspan ps;
  cr_assert_eq(wr_prodspan_init(&ps, "publish", "jobs", TP, "jobs", "email",
                                "id-1", 42, 10, 20),
               0);
  wr_trace_ctx c;
  cr_assert_eq(wr_trace_parse(TP, strlen(TP), &c), 0);
  cr_assert_eq(memcmp(ps.span.trace_id, c.trace_id, 16), 0);
  cr_assert_eq(memcmp(ps.span.span_id, c.span_id, 8), 0);
  cr_assert_eq(ps.span.flags, WR_TRACE_SAMPLED);
  cr_assert_not(ps.span.has_parent);
  cr_assert_eq(ps.span.kind, WR_SPAN_PRODUCER);
  cr_assert_eq(ps.span.start_ns, 10);
  cr_assert_eq(ps.span.end_ns, 20);
  cr_assert_str_eq(ps.span.name, "publish jobs");
  cr_assert_eq(ps.span.nlinks, 0);
}

Test(prodspan, attributes_follow_the_messaging_conventions) {
  wr_prodspan ps;
  cr_assert_eq(wr_prodspan_init(&ps, "publish", "jobs", TP, "jobs", "email",
                                "id-1", 42, 10, 20),
               0);
  expect_str(&ps.span, "messaging.system", "rabbitmq");
  expect_str(&ps.span, "messaging.operation.type", "send");
  expect_str(&ps.span, "messaging.operation.name", "publish");
  expect_str(&ps.span, "messaging.destination.name", "jobs");
  expect_str(&ps.span, "messaging.rabbitmq.destination.routing_key", "email");
  expect_str(&ps.span, "messaging.message.id", "id-1");
  const wr_attr *size = attr(&ps.span, "messaging.message.body.size");
  cr_assert_not_null(size);
  cr_assert_eq(size->type, WR_ATTR_INT);
  cr_assert_eq(size->i, 42);
}

/* Breaks when the default exchange gets an empty span name, or a
 * missing message id an empty attribute. */
Test(prodspan, the_default_exchange_is_named_and_an_absent_id_left_out) {
  wr_prodspan ps;
  cr_assert_eq(wr_prodspan_init(&ps, "publish", "", TP, "", "q", NULL, 0, 1, 2),
               0);
  cr_assert_str_eq(ps.span.name, "publish (default)");
  expect_str(&ps.span, "messaging.destination.name", "");
  cr_assert_null(attr(&ps.span, "messaging.message.id"));
}

Test(prodspan, a_replay_links_the_dead_letters_context_and_counts) {
  wr_prodspan ps;
  cr_assert_eq(
      wr_prodspan_init(&ps, "replay", "work", TP, "", "work", "id", 3, 1, 2),
      0);
  cr_assert_str_eq(ps.span.name, "replay work");
  wr_trace_ctx old;
  const char *otp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";
  cr_assert_eq(wr_trace_parse(otp, strlen(otp), &old), 0);
  cr_assert_eq(wr_prodspan_link(&ps, &old, "k=v"), 0);
  cr_assert_eq(ps.span.nlinks, 1);
  cr_assert_eq(memcmp(ps.span.links[0].trace_id, old.trace_id, 16), 0);
  cr_assert_eq(memcmp(ps.span.links[0].span_id, old.span_id, 8), 0);
  cr_assert_eq(ps.span.links[0].flags, 0);
  cr_assert_str_eq(ps.span.links[0].tracestate, "k=v");
  cr_assert_eq(wr_prodspan_add_str(&ps, "warren.dlq.queue", "work.dlq"), 0);
  cr_assert_eq(wr_prodspan_add_int(&ps, "warren.replays", 2), 0);
  expect_str(&ps.span, "warren.dlq.queue", "work.dlq");
  cr_assert_eq(attr(&ps.span, "warren.replays")->i, 2);
}

/* Breaks when an invalid context is linked or the attribute table
 * overflows its storage. */
Test(prodspan, bad_input_is_refused_not_written) {
  wr_prodspan ps;
  cr_assert_eq(
      wr_prodspan_init(&ps, "publish", "x", "garbage", "x", "k", NULL, 0, 1, 2),
      -1);
  cr_assert_eq(
      wr_prodspan_init(&ps, "publish", "x", TP, "x", "k", NULL, 0, 1, 2), 0);
  wr_trace_ctx none = {0};
  cr_assert_eq(wr_prodspan_link(&ps, &none, NULL), -1);
  cr_assert_eq(ps.span.nlinks, 0);
  int added = 0;
  while (wr_prodspan_add_int(&ps, "n", 1) == 0) added++;
  cr_assert_eq(ps.span.nattrs, WR_PRODSPAN_MAX_ATTRS, "added %d", added);
}
