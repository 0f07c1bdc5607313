/* A delivery's admission (framework/intake.h), without a broker: the
 * verdicts of the built-in checks and of the chain, and how a redelivery
 * counts the runs an earlier connection could not record. */
#include <criterion/criterion.h>
#include <string.h>

#include "../config/cfg.h"
#include "intake.h"

static wr_handler_cfg hc_;
static wr_cfg cfg_;
static wr_intake in_;
static amqp_table_entry_t hdr_[2];

static void setup(void) {
  hc_ = (wr_handler_cfg){.name = "h", .queue = "q", .max_body = 10};
  hc_.retry.max_attempts = 5;
  hc_.retry.max_deliveries = 3;
  cfg_ = (wr_cfg){.handlers = &hc_, .n_handlers = 1};
  memset(&in_, 0, sizeof in_);
  in_.cfg = &cfg_;
  wr_intake_add(&in_, &wr_intake_headers, &in_);
  wr_intake_add(&in_, &wr_intake_size, &in_);
}

TestSuite(intake, .init = setup);

/* A delivery with body and, when key is set, one header. */
static wr_job job(const char *body, const char *key, amqp_field_value_t v) {
  wr_job j = {0};
  j.env.message.body = amqp_cstring_bytes(body);
  if (key) {
    hdr_[0] = (amqp_table_entry_t){amqp_cstring_bytes(key), v};
    j.env.message.properties._flags = AMQP_BASIC_HEADERS_FLAG;
    j.env.message.properties.headers = (amqp_table_t){1, hdr_};
  }
  return j;
}

static amqp_field_value_t i64(int64_t n) {
  return (amqp_field_value_t){AMQP_FIELD_KIND_I64, {.i64 = n}};
}

static amqp_field_value_t str(const char *s) {
  return (amqp_field_value_t){AMQP_FIELD_KIND_UTF8,
                              {.bytes = amqp_cstring_bytes(s)}};
}

Test(intake, a_job_with_usable_headers_is_admitted_with_its_attempt) {
  wr_job j = job("small", WR_H_ATTEMPT, i64(3));
  wr_outcome o = WR_OUT_ACKED;
  char why[256] = "";
  cr_assert_eq(wr_intake_decide(&in_, 0, &j, &o, why, sizeof why), 0, "%s",
               why);
  cr_assert_eq(j.meta.attempt, 3);
  cr_assert_eq(j.meta.recorded, 3);
}

Test(intake, an_unusable_attempt_is_malformed_before_any_other_check) {
  /* Too large as well: the first check in the chain decides. */
  wr_job j = job("far more than ten bytes", WR_H_ATTEMPT, str("x"));
  wr_outcome o = WR_OUT_ACKED;
  char why[256] = "";
  cr_assert_eq(wr_intake_decide(&in_, 0, &j, &o, why, sizeof why), 1);
  cr_assert_eq(o, WR_OUT_MALFORMED);
  cr_assert(strstr(why, WR_H_ATTEMPT), "%s", why);
}

Test(intake, a_body_over_max_body_is_too_large) {
  wr_job j = job("eleven byte", NULL, i64(0));
  wr_outcome o = WR_OUT_ACKED;
  char why[256] = "";
  cr_assert_eq(wr_intake_decide(&in_, 0, &j, &o, why, sizeof why), 1);
  cr_assert_eq(o, WR_OUT_TOO_LARGE);
  cr_assert(strstr(why, "11 bytes is over max_body 10"), "%s", why);
  j = job("ten bytes!", NULL, i64(0));
  cr_assert_eq(wr_intake_decide(&in_, 0, &j, &o, why, sizeof why), 0,
               "exactly max_body is admitted");
}

Test(intake, a_slot_keeps_no_meta_of_the_job_before) {
  wr_job j = job("a", WR_H_ATTEMPT, i64(4));
  wr_outcome o;
  char why[256];
  cr_assert_eq(wr_intake_decide(&in_, 0, &j, &o, why, sizeof why), 0);
  wr_job k = job("b", NULL, i64(0));
  k.meta = j.meta; /* what a reused slot would hold */
  cr_assert_eq(wr_intake_decide(&in_, 0, &k, &o, why, sizeof why), 0);
  cr_assert_eq(k.meta.attempt, 1, "a job without the header is attempt 1");
}

Test(intake, a_redelivery_counts_the_runs_its_connection_could_not_record) {
  wr_job j = job("a", WR_H_ATTEMPT, i64(2));
  wr_outcome o;
  char why[256];
  cr_assert_eq(wr_intake_decide(&in_, 0, &j, &o, why, sizeof why), 0);
  j.started = 1.0; /* it ran, then the connection was lost */
  wr_intake_unrecorded(&in_, &j);
  wr_job again = job("a", WR_H_ATTEMPT, i64(2));
  again.env.redelivered = 1;
  cr_assert_eq(wr_intake_decide(&in_, 0, &again, &o, why, sizeof why), 0);
  cr_assert_eq(again.meta.attempt, 3, "the lost run was an attempt");
  /* Returned unstarted: no attempt spent. */
  again.started = 0;
  wr_intake_unrecorded(&in_, &again);
  wr_job third = job("a", WR_H_ATTEMPT, i64(2));
  third.env.redelivered = 1;
  cr_assert_eq(wr_intake_decide(&in_, 0, &third, &o, why, sizeof why), 0);
  cr_assert_eq(third.meta.attempt, 3);
}

Test(intake, a_quorum_redelivery_past_max_deliveries_is_refused) {
  hc_.quorum = 1;
  wr_job j = job("a", "x-delivery-count", i64(3));
  j.env.redelivered = 1;
  wr_outcome o = WR_OUT_ACKED;
  char why[256] = "";
  cr_assert_eq(wr_intake_decide(&in_, 0, &j, &o, why, sizeof why), 1);
  cr_assert_eq(o, WR_OUT_DELIVERIES);
  cr_assert(strstr(why, "delivered 4 times"), "%s", why);
  /* The same count written by a publisher on a first delivery is not
   * the broker's, and counts nothing. */
  j = job("a", "x-delivery-count", i64(3));
  cr_assert_eq(wr_intake_decide(&in_, 0, &j, &o, why, sizeof why), 0);
  /* Nor on a classic queue, whose broker writes none. */
  hc_.quorum = 0;
  j = job("a", "x-delivery-count", i64(3));
  j.env.redelivered = 1;
  cr_assert_eq(wr_intake_decide(&in_, 0, &j, &o, why, sizeof why), 0, "%s",
               why);
  cr_assert_eq(j.meta.deliveries, 0);
}
