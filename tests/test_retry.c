#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>

#include "retry.h"
#include "runs.h"

static wr_retry_cfg policy(void) {
  wr_retry_cfg p = {
      .max_attempts = 4, .max_crashes = 2, .n_backoff = 2, .jitter = 0.1};
  p.backoff[0] = 1;
  p.backoff[1] = 10;
  return p;
}

Test(retry, backoff_steps_repeat_the_last_and_jitter_stays_in_bounds) {
  wr_retry_cfg p = policy();
  wr_job_meta m = {1, 0, 0, 1, 0, 0, 0};
  wr_decision d = wr_retry_decide(&p, &m, WR_OUT_FAILED, 0.5);
  cr_assert_not(d.dead);
  cr_assert_eq(d.step, 0);
  cr_assert_eq(d.delay_ms, 1000);
  m.attempt = 3;
  d = wr_retry_decide(&p, &m, WR_OUT_FAILED, 0.0);
  cr_assert_eq(d.step, 1, "past the list, the last step repeats");
  cr_assert_eq(d.delay_ms, 9000);
  d = wr_retry_decide(&p, &m, WR_OUT_FAILED, 0.999999);
  cr_assert(d.delay_ms >= 10999 && d.delay_ms <= 11000);
  cr_assert_leq(d.delay_ms, wr_retry_queue_ttl(&p, 1),
                "a message never outlives its retry queue's TTL");
}

Test(retry, what_ends_in_the_dead_letter_queue) {
  wr_retry_cfg p = policy();
  wr_job_meta m = {1, 0, 0, 1, 0, 0, 0};
  wr_decision d = wr_retry_decide(&p, &m, WR_OUT_REJECTED, 0.5);
  cr_assert(d.dead);
  cr_assert_str_eq(d.reason, "rejected");
  cr_assert_str_eq(wr_retry_decide(&p, &m, WR_OUT_MALFORMED, 0.5).reason,
                   "malformed");
  cr_assert_not(wr_retry_decide(&p, &m, WR_OUT_CRASHED, 0.5).dead);
  m.crashes = 1; /* the second crash in a row with max_crashes 2 */
  d = wr_retry_decide(&p, &m, WR_OUT_CRASHED, 0.5);
  cr_assert(d.dead);
  cr_assert_str_eq(d.reason, "crashed");
  m.crashes = 0;
  m.attempt = 4;
  cr_assert_str_eq(wr_retry_decide(&p, &m, WR_OUT_FAILED, 0.5).reason,
                   "max-attempts");
  cr_assert_str_eq(wr_retry_decide(&p, &m, WR_OUT_TIMEOUT, 0.5).reason,
                   "timeout");
  m.attempt = 3;
  cr_assert_not(wr_retry_decide(&p, &m, WR_OUT_TIMEOUT, 0.5).dead);
}

Test(retry, names_follow_one_pattern) {
  char b[128];
  cr_assert_str_eq(wr_name_retry_queue("mail", 1.5, b, sizeof b),
                   "mail.retry.1500ms");
  cr_assert_str_eq(wr_name_dlx("mail", b, sizeof b), "mail.dlx");
  cr_assert_str_eq(wr_name_dlq("mail", b, sizeof b), "mail.dlq");
}

Test(retry, meta_reads_own_headers_and_quorum_redeliveries) {
  amqp_table_entry_t e[] = {wr_entry_int(WR_H_ATTEMPT, 3),
                            wr_entry_int(WR_H_CRASHES, 1),
                            wr_entry_int(WR_H_FIRST_FAILURE, 1234),
                            wr_entry_int("x-delivery-count", 2)};
  amqp_basic_properties_t p = {._flags = AMQP_BASIC_HEADERS_FLAG,
                               .headers = {4, e}};
  wr_job_meta m;
  char why[128];
  cr_assert_eq(wr_retry_meta(&p, 1, &m, why, sizeof why), 0);
  cr_assert_eq(m.attempt, 3,
               "the broker's returns are no attempts: prefetched copies "
               "that never ran are returned too");
  cr_assert_eq(m.recorded, 3);
  cr_assert_eq(m.deliveries, 2, "they are counted as deliveries");
  wr_retry_add_unrecorded(&m, 1);
  cr_assert_eq(m.attempt, 4, "a run that started and was never recorded");
  cr_assert_eq(m.crashes, 1);
  cr_assert_eq(m.first_failure, 1234);
  cr_assert_eq(wr_retry_meta(&p, 0, &m, why, sizeof why), 0);
  cr_assert_eq(m.attempt, 3, "a count the broker did not write is ignored");
  p._flags = 0;
  cr_assert_eq(wr_retry_meta(&p, 1, &m, why, sizeof why), 0);
  cr_assert_eq(m.attempt, 1);
}

Test(retry, absurd_counts_are_malformed_and_never_overflow) {
  amqp_table_entry_t e[] = {wr_entry_int(WR_H_ATTEMPT, WR_RETRY_MAX_COUNT),
                            wr_entry_int("x-delivery-count", INT64_MAX)};
  amqp_basic_properties_t p = {._flags = AMQP_BASIC_HEADERS_FLAG,
                               .headers = {2, e}};
  wr_job_meta m;
  char why[128];
  cr_assert_eq(wr_retry_meta(&p, 1, &m, why, sizeof why), -1,
               "2^63-1 redeliveries is no count a broker wrote");
  cr_assert(strstr(why, "x-delivery-count"), "%s", why);
  cr_assert_eq(wr_retry_meta(&p, 0, &m, why, sizeof why), 0,
               "on a classic queue the header is the publisher's and ignored");
  cr_assert_eq(m.attempt, WR_RETRY_MAX_COUNT);
  e[1] = wr_entry_int("x-delivery-count", WR_RETRY_MAX_COUNT);
  cr_assert_eq(wr_retry_meta(&p, 1, &m, why, sizeof why), 0);
  wr_retry_add_unrecorded(&m, UINT32_MAX);
  cr_assert_eq(m.attempt, WR_RETRY_MAX_COUNT, "the sum saturates");
}

Test(retry, max_deliveries_bounds_a_copy_that_never_records_a_run) {
  wr_retry_cfg p = policy();
  p.max_deliveries = 16;
  wr_job_meta m = {1, 0, 0, 1, 0, 15, 0};
  cr_assert(!wr_retry_over_deliveries(&p, &m), "the 16th delivery runs");
  m.deliveries = 16;
  cr_assert(wr_retry_over_deliveries(&p, &m), "the 17th is dead-lettered");
  wr_decision d = wr_retry_decide(&p, &m, WR_OUT_DELIVERIES, 0.5);
  cr_assert(d.dead);
  cr_assert_str_eq(d.reason, "max-deliveries");
}

Test(retry, only_runs_noted_for_the_same_copy_are_taken_once) {
  static wr_runs r;
  amqp_basic_properties_t p = {._flags = AMQP_BASIC_MESSAGE_ID_FLAG,
                               .message_id = amqp_cstring_bytes("job1")};
  amqp_bytes_t body = amqp_cstring_bytes("b");
  uint64_t k = wr_runs_key(0, &p, body, 2);
  cr_assert_neq(k, wr_runs_key(0, &p, body, 3), "another copy");
  cr_assert_neq(k, wr_runs_key(1, &p, body, 2), "another handler");
  uint32_t w;
  wr_runs_note(&r, k, 1, 0);
  wr_runs_note(&r, k, 2, 5);
  cr_assert_eq(wr_runs_take(&r, wr_runs_key(0, &p, body, 3), &w), 0);
  cr_assert_eq(w, 0);
  cr_assert_eq(wr_runs_take(&r, k, &w), 2, "the latest note wins");
  cr_assert_eq(w, 5, "with its returns unstarted");
  cr_assert_eq(wr_runs_take(&r, k, &w), 0, "taken once");
  cr_assert_eq(w, 0);
  wr_runs_note(&r, k, 0, 3); /* only waited: kept all the same */
  cr_assert_eq(wr_runs_take(&r, k, &w), 0);
  cr_assert_eq(w, 3);
  p._flags = 0; /* no id: the body tells jobs apart */
  wr_runs_note(&r, wr_runs_key(0, &p, body, 1), 1, 0);
  cr_assert_eq(
      wr_runs_take(&r, wr_runs_key(0, &p, amqp_cstring_bytes("c"), 1), &w), 0);
  cr_assert_eq(wr_runs_take(&r, wr_runs_key(0, &p, body, 1), &w), 1);
  for (uint64_t i = 0; i < WR_RUNS_MAX + 10; i++)
    wr_runs_note(&r, i + 100, 1, 0);
  cr_assert_eq(wr_runs_take(&r, 100, &w), 0, "the oldest is forgotten first");
  cr_assert_eq(wr_runs_take(&r, 100 + WR_RUNS_MAX + 9, &w), 1);
}

/* max_deliveries counts the returns that may have been runs: those this
 * process saw unstarted are taken off. */
Test(retry, returns_seen_unstarted_do_not_count_towards_max_deliveries) {
  wr_retry_cfg p = {.max_attempts = 4, .max_deliveries = 16};
  wr_job_meta m = {.attempt = 1, .recorded = 1, .deliveries = 17};
  cr_assert(wr_retry_over_deliveries(&p, &m));
  m.waited = 17;
  cr_assert_not(wr_retry_over_deliveries(&p, &m), "all of them waited");
  m.waited = 1;
  cr_assert(wr_retry_over_deliveries(&p, &m), "16 may have been runs");
  m.waited = 2;
  cr_assert_not(wr_retry_over_deliveries(&p, &m));
  m.waited = 40; /* more than the broker counted: none left, not a wrap */
  cr_assert_not(wr_retry_over_deliveries(&p, &m));
}

Test(retry, unusable_own_header_makes_a_job_malformed) {
  amqp_table_entry_t e[] = {wr_entry_str(WR_H_ATTEMPT, "three")};
  amqp_basic_properties_t p = {._flags = AMQP_BASIC_HEADERS_FLAG,
                               .headers = {1, e}};
  wr_job_meta m;
  char why[128];
  cr_assert_eq(wr_retry_meta(&p, 0, &m, why, sizeof why), -1);
  cr_assert(strstr(why, "warren-attempt"), "%s", why);
  e[0] = wr_entry_int(WR_H_ATTEMPT, 0);
  cr_assert_eq(wr_retry_meta(&p, 0, &m, why, sizeof why), -1);
}

Test(retry, republished_headers_keep_the_users_and_replace_warrens) {
  amqp_table_entry_t orig_e[] = {wr_entry_str("tenant", "acme"),
                                 wr_entry_int(WR_H_ATTEMPT, 2),
                                 wr_entry_int("x-delivery-count", 4),
                                 wr_entry_str("traceparent", "00-abc")};
  amqp_table_t orig = {4, orig_e};
  amqp_table_entry_t add[] = {wr_entry_int(WR_H_ATTEMPT, 3)};
  amqp_table_entry_t store[8];
  amqp_table_t t = wr_retry_headers(&orig, store, 8, add, 1);
  cr_assert_eq(t.num_entries, 3);
  cr_assert_eq(memcmp(t.entries[0].key.bytes, "tenant", 6), 0);
  cr_assert_eq(memcmp(t.entries[1].key.bytes, "traceparent", 11), 0);
  cr_assert_eq(t.entries[2].value.value.i64, 3);
  t = wr_retry_headers(&orig, store, 2, add, 1);
  cr_assert_eq(t.num_entries, 2, "bounded by the store");
  cr_assert_eq(t.entries[1].value.value.i64, 3,
               "Warren's own entries always fit");
}

Test(retry,
     a_copy_keeps_application_headers_named_warren_and_drops_only_bookkeeping) {
  amqp_table_entry_t orig_e[] = {
      wr_entry_str("warren-tenant", "acme"),
      wr_entry_str(WR_H_REASON, "rejected"), wr_entry_int(WR_H_COPY, 17),
      wr_entry_int(WR_H_REPLAYS, 2), wr_entry_str(WR_H_LAST_ERROR, "old")};
  amqp_table_t orig = {5, orig_e};
  amqp_table_entry_t add[] = {wr_entry_str(WR_H_LAST_ERROR, "new"),
                              wr_entry_int(WR_H_COPY, 18)};
  amqp_table_entry_t store[7];
  amqp_table_t t = wr_retry_headers(&orig, store, 7, add, 2);
  cr_assert_eq(t.num_entries, 4, "tenant, replays, then the two added");
  cr_assert_eq(memcmp(t.entries[0].key.bytes, "warren-tenant", 13), 0,
               "an application header named warren-* is the application's");
  cr_assert_eq(
      memcmp(t.entries[1].key.bytes, WR_H_REPLAYS, strlen(WR_H_REPLAYS)), 0,
      "the replay count survives a retry");
  cr_assert_eq(t.entries[2].value.value.bytes.len, 3,
               "last error replaced once");
  cr_assert_eq(t.entries[3].value.value.i64, 18, "the copy's own sequence");
}

Test(retry, a_replay_replaces_the_replay_count) {
  amqp_table_entry_t orig_e[] = {wr_entry_int(WR_H_REPLAYS, 2),
                                 wr_entry_str("tenant", "acme")};
  amqp_table_t orig = {2, orig_e};
  amqp_table_entry_t add[] = {wr_entry_int(WR_H_REPLAYS, 3)};
  amqp_table_entry_t store[3];
  amqp_table_t t = wr_retry_headers(&orig, store, 3, add, 1);
  cr_assert_eq(t.num_entries, 2, "one replay count, not two");
  cr_assert_eq(t.entries[1].value.value.i64, 3);
}
