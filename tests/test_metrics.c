/* Histograms, dead-letter reasons, the Prometheus page and the snapshot
 * store (framework/metrics.c, prom.c, snapshot.c). */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "metrics.h"
#include "prom.h"
#include "report.h"
#include "snapshot.h"

Test(metrics, a_value_lands_in_the_first_bucket_whose_bound_it_does_not_pass) {
  wr_hist h = {0};
  wr_metrics_observe(&h, 0.001); /* le="0.001" includes its bound */
  wr_metrics_observe(&h, 0.0011);
  wr_metrics_observe(&h, -3);   /* clock skew: counted as 0 */
  wr_metrics_observe(&h, 7200); /* past every bound: +Inf */
  cr_assert_eq(h.n[0], 2);
  cr_assert_eq(h.n[1], 1);
  cr_assert_eq(h.n[WR_METRICS_BUCKETS], 1);
  cr_assert_eq(h.count, 4);
  cr_assert_float_eq(h.sum, 0.001 + 0.0011 + 7200, 1e-9);
}

Test(metrics, reasons_map_to_their_counter_and_unknown_ones_to_other) {
  cr_assert_eq(wr_metrics_reason("signature"), WR_DEAD_SIGNATURE);
  cr_assert_eq(wr_metrics_reason("max-attempts"), WR_DEAD_MAX_ATTEMPTS);
  cr_assert_eq(wr_metrics_reason("too_large"), WR_DEAD_TOO_LARGE);
  cr_assert_eq(wr_metrics_reason("something new"), WR_DEAD_OTHER);
  cr_assert_eq(wr_metrics_reason(NULL), WR_DEAD_OTHER);
}

static wr_snap *one_handler(const char *name) {
  int workers[1] = {1};
  wr_snap *s = wr_snap_alloc(1, workers);
  cr_assert(s);
  s->h[0].name = name;
  s->h[0].queue = "q";
  s->h[0].concurrency = 2;
  s->h[0].work = (wr_snap_queue){10, 1, 1};
  s->h[0].dlq = (wr_snap_queue){-1, -1, 0};
  s->h[0].retrying = -1;
  s->rtt_ms = -1;
  return s;
}

Test(metrics, histograms_are_cumulative_and_labels_escaped) {
  wr_snap *s = one_handler("a\"b\\c\nd");
  wr_metrics_observe(&s->h[0].m.duration, 0.002);
  wr_metrics_observe(&s->h[0].m.duration, 0.2);
  size_t len;
  char *p = wr_prom_render(s, &len);
  cr_assert(p);
  cr_assert_eq(strlen(p), len);
  const char *l = "handler=\"a\\\"b\\\\c\\nd\"";
  char want[256];
  snprintf(want, sizeof want,
           "warren_job_duration_seconds_bucket{%s,le=\"0.0025\"} 1\n", l);
  cr_assert(strstr(p, want), "%s", want);
  snprintf(want, sizeof want,
           "warren_job_duration_seconds_bucket{%s,le=\"0.25\"} 2\n", l);
  cr_assert(strstr(p, want), "%s", want);
  snprintf(want, sizeof want,
           "warren_job_duration_seconds_bucket{%s,le=\"+Inf\"} 2\n", l);
  cr_assert(strstr(p, want), "%s", want);
  snprintf(want, sizeof want, "warren_queue_messages_ready_per_worker{%s} 5\n",
           l);
  cr_assert(strstr(p, want), "%s", want);
  /* Not probed yet: left out, not 0. */
  cr_assert(!strstr(p, "warren_dead_letter_queue_messages{"));
  cr_assert(!strstr(p, "warren_broker_rtt_seconds "));
  free(p);
  free(s);
}

Test(metrics, a_snapshot_lives_while_a_reader_holds_it) {
  wr_snap_store st;
  wr_snap_store_init(&st);
  cr_assert_null(wr_snap_acquire(&st));
  wr_snap *a = one_handler("a");
  wr_snap_publish(&st, a);
  wr_snap *held = wr_snap_acquire(&st);
  cr_assert_eq(held, a);
  wr_snap_publish(&st, one_handler("b")); /* a is still held */
  cr_assert_str_eq(held->h[0].name, "a");
  wr_snap_release(&st, held); /* freed here (ASan and valgrind check) */
  wr_snap *b = wr_snap_acquire(&st);
  cr_assert_str_eq(b->h[0].name, "b");
  wr_snap_release(&st, b);
  wr_snap_store_free(&st);
}

/* A job that started `ran` seconds ago (< 0: never taken by a worker),
 * published at pub_ms (unix ms) by the header of RabbitMQ's
 * message_timestamp plugin, or 0. */
static void settle_one(wr_metrics *m, wr_job *job, double ran, int64_t pub_ms,
                       wr_outcome o) {
  static amqp_table_entry_t e;
  memset(job, 0, sizeof *job);
  job->started = ran < 0 ? 0 : wr_now() - ran;
  if (pub_ms) {
    e.key = amqp_cstring_bytes("timestamp_in_ms");
    e.value.kind = AMQP_FIELD_KIND_I64;
    e.value.value.i64 = pub_ms;
    job->env.message.properties._flags = AMQP_BASIC_HEADERS_FLAG;
    job->env.message.properties.headers = (amqp_table_t){1, &e};
  }
  wr_metrics_events.settled(m, 0, job, o, o == WR_OUT_ACKED ? NULL : "boom");
}

Test(metrics, duration_and_pickup_come_from_the_start_and_the_publish_time) {
  wr_metrics m;
  wr_job slots[2] = {0};
  cr_assert_eq(wr_metrics_init(&m, 1, slots, 2), 0);
  /* Published 3 s ago, started after 2.5 s, ran 0.5 s. */
  settle_one(&m, &slots[0], 0.5, wr_unix_ms() - 3000, WR_OUT_ACKED);
  const wr_handler_metrics *h = &m.h[0];
  cr_assert_eq(h->duration.count, 1);
  cr_assert_float_eq(h->duration.sum, 0.5, 0.05);
  cr_assert_eq(h->pickup.count, 1);
  cr_assert_float_eq(h->pickup.sum, 2.5, 0.05);
  cr_assert_str_eq(h->last_error, "", "an ack is no error");
  /* No publish time: no pickup; a failure's text is the last error. */
  settle_one(&m, &slots[1], 0.01, 0, WR_OUT_FAILED);
  cr_assert_eq(h->pickup.count, 1);
  cr_assert_eq(h->duration.count, 2);
  cr_assert_str_eq(h->last_error, "boom");
  cr_assert_gt(h->last_error_ms, 0);
  /* Never reached a handler: no duration, whatever the outcome. */
  settle_one(&m, &slots[1], -1, 0, WR_OUT_MALFORMED);
  settle_one(&m, &slots[1], -1, wr_unix_ms() - 3000, WR_OUT_SIGNATURE);
  settle_one(&m, &slots[1], -1, 0, WR_OUT_REVOKED);
  cr_assert_eq(h->duration.count, 2);
  cr_assert_eq(h->pickup.count, 1);
  wr_metrics_free(&m);
}

Test(metrics, a_dead_letter_counts_under_its_reason_once_confirmed) {
  wr_metrics m;
  wr_job slots[3] = {0};
  cr_assert_eq(wr_metrics_init(&m, 1, slots, 3), 0);
  slots[2].dead = 1;
  wr_metrics_events.republished(&m, 0, &slots[2], 1, "signature");
  cr_assert_eq(m.h[0].dead[WR_DEAD_SIGNATURE], 0, "not before the confirm");
  wr_metrics_events.confirmed(&m, 0, &slots[2], 1);
  cr_assert_eq(m.h[0].dead[WR_DEAD_SIGNATURE], 1);
  wr_metrics_events.republished(&m, 0, &slots[1], 1, "rejected");
  slots[1].dead = 1;
  wr_metrics_events.confirmed(&m, 0, &slots[1], 0); /* refused */
  cr_assert_eq(m.h[0].dead[WR_DEAD_REJECTED], 0);
  wr_metrics_free(&m);
}

/* A header table of one integer entry. */
static amqp_basic_properties_t with_header(amqp_table_entry_t *e,
                                           const char *key, int64_t v) {
  *e = (amqp_table_entry_t){amqp_cstring_bytes(key),
                            {.kind = AMQP_FIELD_KIND_I64, .value.i64 = v}};
  amqp_basic_properties_t p = {._flags = AMQP_BASIC_HEADERS_FLAG};
  p.headers = (amqp_table_t){1, e};
  return p;
}

/* A publisher's timestamp decides the pickup latency only when it is
 * plausible (docs/monitoring.md, "Metrics"): at most 7 days old and
 * at most 5 minutes ahead. Anything else would overflow (2^62 s) or add
 * decades to the sum. */
Test(metrics, implausible_publish_timestamps_are_ignored) {
  const int64_t now = 1760000000000; /* 2025-10 */
  amqp_basic_properties_t p = {._flags = AMQP_BASIC_TIMESTAMP_FLAG};
  p.timestamp = (uint64_t)1 << 62;
  cr_assert_eq(wr_metrics_published_ms(&p, now), 0);
  p.timestamp = UINT64_MAX;
  cr_assert_eq(wr_metrics_published_ms(&p, now), 0);
  p.timestamp = 1;
  cr_assert_eq(wr_metrics_published_ms(&p, now), 0, "1970");
  p.timestamp = (uint64_t)(now / 1000) - 60;
  cr_assert_eq(wr_metrics_published_ms(&p, now), now - 60000);
  p.timestamp = (uint64_t)(now / 1000) + 3600;
  cr_assert_eq(wr_metrics_published_ms(&p, now), 0, "an hour ahead");
  amqp_table_entry_t e;
  p = with_header(&e, "timestamp_in_ms", 1);
  cr_assert_eq(wr_metrics_published_ms(&p, now), 0, "57 years ago");
  p = with_header(&e, "timestamp_in_ms", INT64_MAX);
  cr_assert_eq(wr_metrics_published_ms(&p, now), 0);
  p = with_header(&e, "timestamp_in_ms", INT64_MIN);
  cr_assert_eq(wr_metrics_published_ms(&p, now), 0);
  p = with_header(&e, "timestamp_in_ms", now - 1500);
  cr_assert_eq(wr_metrics_published_ms(&p, now), now - 1500);
  p = with_header(&e, "timestamp_in_ms", now - 6 * 86400000LL);
  cr_assert_eq(wr_metrics_published_ms(&p, now), now - 6 * 86400000LL);
  p = with_header(&e, "timestamp_in_ms", now - 8 * 86400000LL);
  cr_assert_eq(wr_metrics_published_ms(&p, now), 0, "8 days old");
}

/* Whether s is valid UTF-8 (no overlong forms, surrogates or > U+10FFFF). */
static int valid_utf8(const char *str) {
  const unsigned char *s = (const unsigned char *)str;
  while (*s) {
    unsigned c = *s, len, v, min;
    if (c < 0x80) {
      s++;
      continue;
    }
    if (c >= 0xC2 && c <= 0xDF)
      len = 2, min = 0x80;
    else if (c >= 0xE0 && c <= 0xEF)
      len = 3, min = 0x800;
    else if (c >= 0xF0 && c <= 0xF4)
      len = 4, min = 0x10000;
    else
      return 0;
    v = c & (0x3Fu >> (len - 1));
    for (unsigned i = 1; i < len; i++) {
      if ((s[i] & 0xC0) != 0x80) return 0;
      v = (v << 6) | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    s += len;
  }
  return 1;
}

/* A job id and an error are the publisher's and the handler's bytes:
 * /status/workers (and every JSON route) shows them as valid UTF-8, an
 * invalid byte replaced, valid characters kept. */
Test(metrics, status_json_is_valid_utf8_whatever_the_ids_and_errors) {
  int workers[1] = {1};
  wr_snap *s = wr_snap_alloc(1, workers);
  cr_assert(s);
  s->h[0].name = "h\xc3";
  s->h[0].queue = "q\xff";
  s->h[0].nworkers = 1;
  s->h[0].w[0].state = "busy";
  s->h[0].w[0].running = 1;
  snprintf(s->h[0].w[0].job, sizeof s->h[0].w[0].job, "%s",
           "\xff"
           "caf\xc3\xa9"
           "\xed\xa0\x80"
           "\xc3");
  s->h[0].m.last_error_ms = 1;
  snprintf(s->h[0].m.last_error, sizeof s->h[0].m.last_error, "%s",
           "bad \xe2\x82");
  s->rtt_ms = -1;
  snprintf(s->node, sizeof s->node, "rabbit@\xfe");
  char *j = wr_report_workers(s);
  cr_assert(j);
  cr_assert(valid_utf8(j), "%s", j);
  cr_assert(strstr(j, "caf\xc3\xa9"), "valid characters are kept: %s", j);
  free(j);
  char *h = wr_report_health(s);
  cr_assert(valid_utf8(h), "%s", h);
  free(h);
  free(s);
}

/* A handler's error is kept whole up to WR_METRICS_ERROR_MAX - 1 bytes,
 * cut between characters, never inside one. */
Test(metrics, a_long_error_is_cut_between_characters) {
  wr_metrics m;
  cr_assert_eq(wr_metrics_init(&m, 1, NULL, 0), 0);
  char err[WR_METRICS_ERROR_MAX * 2 + 1]; /* 256 "é", 255 bytes kept */
  for (size_t i = 0; i + 2 < sizeof err; i += 2) memcpy(err + i, "\xc3\xa9", 2);
  err[sizeof err - 1] = '\0';
  static wr_job job; /* zeroed: no properties */
  wr_metrics_events.settled(&m, 0, &job, WR_OUT_MALFORMED, err);
  size_t n = strlen(m.h[0].last_error);
  cr_assert(valid_utf8(m.h[0].last_error), "cut inside a character");
  cr_assert_geq(n, WR_METRICS_ERROR_MAX - 2);
  cr_assert_eq(memcmp(m.h[0].last_error, err, n), 0);
  wr_metrics_free(&m);
}
