/*
 * What a dead letter carries: the publisher's own headers, of every AMQP
 * type, into the DLQ and back out of a replay; and jobs whose Warren
 * headers are unusable go there as `malformed` without ever being run.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "support.h"

TW_SUITE(dead_letters, 120);

static char log_[300], rec[300];

#define STR(k, v)                    \
  {                                  \
    amqp_cstring_bytes(k), {         \
      AMQP_FIELD_KIND_UTF8, {        \
        .bytes = { sizeof v - 1, v } \
      }                              \
    }                                \
  }
#define VAL(k, kind, member, v) \
  {                             \
    amqp_cstring_bytes(k), {    \
      kind, {                   \
        .member = v             \
      }                         \
    }                           \
  }

/* Every lines of `want` must be a line of `got`. */
static void expect_lines(const char *want, const char *got, const char *where) {
  char line[1024];
  for (const char *p = want; *p;) {
    const char *nl = strchr(p, '\n');
    size_t n = nl ? (size_t)(nl - p + 1) : strlen(p);
    snprintf(line, sizeof line, "%.*s", (int)n, p);
    cr_assert(strstr(got, line), "%s lost header %s\n%s", where, line, got);
    p += n;
  }
}

/* Breaks when a dead letter or a replay drops or retypes a header the
 * publisher set (tenant ids and traceparent would vanish). */
Test(dead_letters, headers_of_every_type_survive_dead_letter_and_replay) {
  amqp_field_value_t arr[] = {{AMQP_FIELD_KIND_UTF8, {.bytes = {1, "a"}}},
                              {AMQP_FIELD_KIND_I32, {.i32 = -1}}};
  amqp_table_entry_t inner[] = {STR("k", "v"),
                                VAL("n", AMQP_FIELD_KIND_I64, i64, 7)};
  amqp_table_entry_t h[] = {
      STR("traceparent",
          "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
      STR("tenant", "acme"),
      VAL("bool", AMQP_FIELD_KIND_BOOLEAN, boolean, 1),
      VAL("i8", AMQP_FIELD_KIND_I8, i8, -5),
      VAL("u8", AMQP_FIELD_KIND_U8, u8, 200),
      VAL("i16", AMQP_FIELD_KIND_I16, i16, -30000),
      VAL("u16", AMQP_FIELD_KIND_U16, u16, 60000),
      VAL("i32", AMQP_FIELD_KIND_I32, i32, -2000000000),
      VAL("u32", AMQP_FIELD_KIND_U32, u32, 4000000000u),
      VAL("i64", AMQP_FIELD_KIND_I64, i64, -9000000000000LL),
      VAL("u64", AMQP_FIELD_KIND_U64, u64, 18000000000000000000ull),
      VAL("f32", AMQP_FIELD_KIND_F32, f32, 1.5f),
      VAL("f64", AMQP_FIELD_KIND_F64, f64, 2.25),
      VAL("decimal", AMQP_FIELD_KIND_DECIMAL, decimal,
          ((amqp_decimal_t){2, 12345})),
      VAL("timestamp", AMQP_FIELD_KIND_TIMESTAMP, u64, 1700000000),
      VAL("bytes", AMQP_FIELD_KIND_BYTES, bytes, ((amqp_bytes_t){4, "\0\1bz"})),
      {amqp_cstring_bytes("void"), {AMQP_FIELD_KIND_VOID, {.u64 = 0}}},
      VAL("array", AMQP_FIELD_KIND_ARRAY, array, ((amqp_array_t){2, arr})),
      VAL("table", AMQP_FIELD_KIND_TABLE, table, ((amqp_table_t){2, inner})),
  };
  amqp_table_t headers = {(int)(sizeof h / sizeof *h), h};
  static char want[4096], dump[8192], out[8192];
  tw_table_dump(&headers, want, sizeof want);

  char settings[400], args[600], cfg[400];
  cr_assert_eq(
      tw_own_queues("it.typed", "it.typed.dlq", "it.typed.retry.1000ms",
                    "it.typed.retry.10000ms", "it.typed.retry.60000ms", NULL),
      0);
  snprintf(settings, sizeof settings, "reject_unless = \"%s/never\";",
           tw_dir());
  pid_t w = tw_start_record("it.typed", "queue_type = \"classic\";", settings,
                            log_, rec);
  cr_assert_gt(w, 0, "worker did not start");
  cr_assert_eq(tw_publish_raw("it.typed", "job1", &headers), 0,
               "publish refused");
  cr_assert(tw_wait_text(log_, "job job1 dead-lettered", 30));
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);

  cr_assert_eq(tw_get("it.typed.dlq", 0, dump, sizeof dump), 1, "DLQ empty");
  cr_log_info("dead letter:\n%s", dump);
  expect_lines(want, dump, "the dead letter");
  cr_assert(strstr(dump, "h.warren-dead-reason=S:8:rejected\n"), "%s", dump);

  snprintf(cfg, sizeof cfg, "%s/warren.cfg", tw_dir());
  /* warren dlq show prints every type as what it is, bytes escaped. */
  snprintf(args, sizeof args, "dlq show %s h", cfg);
  cr_assert_eq(tw_warren_cli(out, sizeof out, args), 0, "%s", out);
  expect_lines(
      "header bool: true\n"
      "header u64: 18000000000000000000\n"
      "header f32: 1.5\n"
      "header f64: 2.25\n"
      "header decimal: 12345 (decimal, 2 places)\n"
      "header timestamp: 1700000000\n"
      "header bytes: \\x00\\x01bz\n"
      "header void: (void)\n"
      "header array: (array of 2)\n"
      "header table: (table of 2)\n",
      out, "warren dlq show");

  snprintf(args, sizeof args, "dlq replay %s h", cfg);
  cr_assert_eq(tw_warren_cli(out, sizeof out, args), 0, "%s", out);
  cr_assert(strstr(out, "replayed 1 message(s)"), "%s", out);
  cr_assert_eq(tw_get("it.typed", 1, dump, sizeof dump), 1,
               "replay reached no queue");
  cr_log_info("replayed:\n%s", dump);
  /* All but the traceparent: a replay starts a new trace (test_trace.c). */
  expect_lines(strchr(want, '\n') + 1, dump, "the replay");
  cr_assert(strstr(dump, "h.warren-replays=l:1\n"), "%s", dump);
  cr_assert_null(strstr(dump, "h.warren-dead-"), "Warren's headers go:\n%s",
                 dump);
  cr_assert_eq(tw_queue_len("it.typed.dlq"), 0);
}

/* Breaks when the header check is skipped (the handler runs the job) or
 * the job is dead-lettered under another reason than `malformed`. */
Test(dead_letters, malformed_attempt_never_reaches_the_handler) {
  amqp_table_entry_t word[] = {STR("warren-attempt", "three")};
  amqp_table_entry_t zero[] = {
      VAL("warren-attempt", AMQP_FIELD_KIND_I32, i32, 0)};
  /* The DLQ listing must show this run's two dead letters only. */
  cr_assert_eq(
      tw_own_queues("it.malformed", "it.malformed.dlq",
                    "it.malformed.retry.1000ms", "it.malformed.retry.10000ms",
                    "it.malformed.retry.60000ms", NULL),
      0);
  pid_t w = tw_start_record("it.malformed", "queue_type = \"classic\";", "",
                            log_, rec);
  cr_assert_gt(w, 0, "worker did not start");
  cr_assert_eq(tw_publish_raw("it.malformed", "bad1", &(amqp_table_t){1, word}),
               0);
  cr_assert_eq(tw_publish_raw("it.malformed", "bad2", &(amqp_table_t){1, zero}),
               0);
  cr_assert_eq(tw_publish("it.malformed", 1, "good"), 0);
  cr_assert_eq(tw_wait_count(rec, "end", "good", 1, 1, 30), 1);
  cr_assert(tw_wait_text(log_, "job bad1 dead-lettered", 30));
  cr_assert(tw_wait_text(log_, "job bad2 dead-lettered", 30));
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
  cr_assert_not(tw_wait_text(rec, " bad", 0),
                "a malformed job reached handle()");

  char out[8192], args[600];
  snprintf(args, sizeof args, "dlq list %s/warren.cfg h --reason malformed",
           tw_dir());
  cr_assert_eq(tw_warren_cli(out, sizeof out, args), 0, "%s", out);
  cr_assert(strstr(out, "2 of 2 message(s) in it.malformed.dlq shown"), "%s",
            out);
  cr_assert(strstr(out, "bad1") && strstr(out, "bad2"), "%s", out);
  cr_assert(strstr(out, "header warren-attempt is not a valid count"), "%s",
            out);
}

/* A dead letter waits for an operator: the job's own `expiration` is
 * dropped (docs/retries.md). Breaks when the dead letter keeps it: it
 * would vanish from the DLQ once the TTL passed. */
Test(dead_letters, a_dead_letter_drops_the_jobs_expiration_and_stays) {
  cr_assert_eq(
      tw_own_queues("it.ttl", "it.ttl.dlq", "it.ttl.retry.1000ms",
                    "it.ttl.retry.10000ms", "it.ttl.retry.60000ms", NULL),
      0);
  char settings[400], dump[8192];
  snprintf(settings, sizeof settings, "reject_unless = \"%s/never\";",
           tw_dir());
  pid_t w = tw_start_record("it.ttl", "queue_type = \"classic\";", settings,
                            log_, rec);
  cr_assert_gt(w, 0, "worker did not start");
  /* 2 s: time enough to reach the handler, and soon over. */
  cr_assert_eq(tw_publish_expiring("it.ttl", "job1", "2000"), 0);
  cr_assert(tw_wait_text(log_, "job job1 dead-lettered", 30));
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
  sleep(3); /* past the job's TTL, counted from the dead letter's arrival */
  cr_assert_eq(tw_queue_len("it.ttl.dlq"), 1, "the dead letter expired");
  cr_assert_eq(tw_get("it.ttl.dlq", 1, dump, sizeof dump), 1);
  cr_log_info("dead letter:\n%s", dump);
  cr_assert(strstr(dump, "id=job1\n"), "%s", dump);
  cr_assert_null(strstr(dump, "expiration="),
                 "the dead letter kept the job's TTL:\n%s", dump);
}
