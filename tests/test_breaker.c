#include <criterion/criterion.h>
#include <string.h>

#include "breaker.h"

static wr_breaker_cfg cfg(void) {
  return (wr_breaker_cfg){.enabled = 1,
                          .failure_rate = 0.5,
                          .slow_ms = 0,
                          .slow_percentile = 0.9,
                          .window = 10,
                          .min_jobs = 4,
                          .cool_down = 30,
                          .trial_jobs = 3};
}

/* n attempts ending at time t, each started just before. */
static int feed(wr_breaker *b, double t, int n, int failed, double ms) {
  int changed = 0;
  for (int i = 0; i < n; i++)
    changed |= wr_breaker_record(b, t, t - 0.01, failed, ms);
  return changed;
}

Test(breaker, failures_open_it_only_once_min_jobs_are_in) {
  wr_breaker_cfg c = cfg();
  wr_breaker b;
  wr_breaker_init(&b, &c, 0);
  cr_assert_eq(feed(&b, 1, 3, 1, 5), 0, "3 failures < min_jobs 4: closed");
  cr_assert_eq(b.state, WR_BREAKER_CLOSED);
  cr_assert_eq(wr_breaker_record(&b, 2, 1.9, 1, 5), 1);
  cr_assert_eq(b.state, WR_BREAKER_OPEN);
  cr_assert_eq(b.why, WR_BREAKER_FAILURES);
  cr_assert_float_eq(b.value, 1.0, 1e-9);
  cr_assert_float_eq(b.bound, 0.5, 1e-9);
  cr_assert_eq(b.measured_over, 4);
  cr_assert_eq(b.opened, 1);
  char text[200];
  cr_assert_str_eq(wr_breaker_describe(&b, text, sizeof text),
                   "failure rate 1.00 >= 0.50 over the last 4 jobs");
}

Test(breaker, the_rate_is_over_the_window_and_old_attempts_leave_it) {
  wr_breaker_cfg c = cfg();
  wr_breaker b;
  wr_breaker_init(&b, &c, 0);
  /* 4 failures then 10 successes: the failures leave the window of 10. */
  feed(&b, 1, 1, 1, 5);
  feed(&b, 1, 3, 0, 5);
  cr_assert_eq(b.state, WR_BREAKER_CLOSED, "1 of 4: 0.25 < 0.5");
  feed(&b, 1, 10, 0, 5);
  cr_assert_eq(b.failures, 0, "the failure left the window");
  cr_assert_eq(b.n, 10);
  /* Now 4 failures among the last 10: 0.4, closed; the 5th: 0.5, open. */
  cr_assert_eq(feed(&b, 2, 4, 1, 5), 0);
  cr_assert_eq(feed(&b, 2, 1, 1, 5), 1);
  cr_assert_float_eq(b.value, 0.5, 1e-9);
  cr_assert_eq(b.measured_over, 10);
}

Test(breaker, a_slow_percentile_opens_it_and_a_few_slow_jobs_do_not) {
  wr_breaker_cfg c = cfg();
  c.failure_rate = 0;
  c.slow_ms = 100;
  c.slow_percentile = 0.9;
  wr_breaker b;
  wr_breaker_init(&b, &c, 0);
  /* p90 of 10 is the 9th smallest: one slow job in 10 keeps it under. */
  feed(&b, 1, 9, 0, 10);
  cr_assert_eq(feed(&b, 1, 1, 0, 500), 0, "p90 is 10 ms");
  cr_assert_eq(b.state, WR_BREAKER_CLOSED);
  /* The second slow one makes the 9th smallest slow. */
  cr_assert_eq(feed(&b, 1, 1, 0, 300), 1);
  cr_assert_eq(b.why, WR_BREAKER_SLOW);
  cr_assert_float_eq(b.value, 300, 1e-3, "the measured p90");
  cr_assert_float_eq(b.bound, 100, 1e-9);
  char text[200];
  cr_assert_str_eq(wr_breaker_describe(&b, text, sizeof text),
                   "p90 duration 300 ms > 100 ms over the last 10 jobs");
  /* Failures do not count with failure_rate 0. */
  wr_breaker_init(&b, &c, 0);
  cr_assert_eq(feed(&b, 1, 10, 1, 10), 0);
}

Test(breaker, cool_down_then_trials_close_it) {
  wr_breaker_cfg c = cfg();
  wr_breaker b;
  wr_breaker_init(&b, &c, 0);
  feed(&b, 10, 4, 1, 5);
  cr_assert_eq(b.state, WR_BREAKER_OPEN);
  cr_assert_float_eq(wr_breaker_due(&b), 40, 1e-9);
  cr_assert_eq(wr_breaker_tick(&b, 39.9), 0);
  /* Attempts that end while open say nothing. */
  cr_assert_eq(feed(&b, 20, 5, 0, 5), 0);
  cr_assert_eq(b.state, WR_BREAKER_OPEN);
  cr_assert_eq(wr_breaker_tick(&b, 40), 1);
  cr_assert_eq(b.state, WR_BREAKER_HALF_OPEN);
  cr_assert_eq(b.why, WR_BREAKER_COOLED);
  cr_assert_float_eq(wr_breaker_due(&b), 0, 1e-9);
  /* A job started before the trials began is no trial, failed or not. */
  cr_assert_eq(wr_breaker_record(&b, 41, 39, 1, 5), 0);
  cr_assert_eq(b.state, WR_BREAKER_HALF_OPEN);
  cr_assert_eq(wr_breaker_record(&b, 41, 40.5, 0, 5), 0);
  cr_assert_eq(wr_breaker_record(&b, 41, 40.5, 0, 5), 0);
  cr_assert_eq(wr_breaker_record(&b, 41, 40.5, 0, 5), 1, "3 trials passed");
  cr_assert_eq(b.state, WR_BREAKER_CLOSED);
  cr_assert_eq(b.why, WR_BREAKER_TRIALS_PASSED);
  cr_assert_eq(b.n, 0, "closed with an empty window");
  cr_assert_eq(b.opened, 1);
  cr_assert_eq(b.changes, 3);
}

Test(breaker, a_failed_or_slow_trial_opens_it_again) {
  wr_breaker_cfg c = cfg();
  c.slow_ms = 100;
  wr_breaker b;
  wr_breaker_init(&b, &c, 0);
  feed(&b, 1, 4, 1, 5);
  wr_breaker_tick(&b, 31);
  cr_assert_eq(wr_breaker_record(&b, 32, 31.5, 0, 5), 0);
  cr_assert_eq(wr_breaker_record(&b, 32, 31.5, 1, 5), 1);
  cr_assert_eq(b.state, WR_BREAKER_OPEN);
  cr_assert_eq(b.why, WR_BREAKER_TRIAL_FAILED);
  cr_assert_eq(b.opened, 2);
  cr_assert_float_eq(wr_breaker_due(&b), 62, 1e-9, "a new cool-down");
  wr_breaker_tick(&b, 62);
  cr_assert_eq(b.passed, 0, "trials start again from none");
  cr_assert_eq(wr_breaker_record(&b, 63, 62.5, 0, 150), 1);
  cr_assert_eq(b.why, WR_BREAKER_TRIAL_SLOW);
  char text[200];
  cr_assert_str_eq(wr_breaker_describe(&b, text, sizeof text),
                   "a trial job ran 150 ms > 100 ms");
}

Test(breaker, only_what_the_handler_ran_counts) {
  cr_assert_eq(wr_breaker_verdict(WR_OUT_ACKED), 0);
  cr_assert_eq(wr_breaker_verdict(WR_OUT_REJECTED), 0,
               "a rejection judges the job, not the handler's health");
  cr_assert_eq(wr_breaker_verdict(WR_OUT_FAILED), 1);
  cr_assert_eq(wr_breaker_verdict(WR_OUT_CRASHED), 1);
  cr_assert_eq(wr_breaker_verdict(WR_OUT_TIMEOUT), 1);
  cr_assert_eq(wr_breaker_verdict(WR_OUT_SIGNATURE), -1);
  cr_assert_eq(wr_breaker_verdict(WR_OUT_MALFORMED), -1);
  cr_assert_eq(wr_breaker_verdict(WR_OUT_TOO_LARGE), -1);
  cr_assert_eq(wr_breaker_verdict(WR_OUT_REVOKED), -1);
  cr_assert_eq(wr_breaker_verdict(WR_OUT_DELIVERIES), -1);
}

/* The observer: a job that never started (refused at intake) is not
 * recorded, whatever its outcome. */
Test(breaker, the_observer_records_only_jobs_that_ran) {
  wr_breaker_cfg c = cfg();
  c.min_jobs = 1;
  wr_breaker b;
  wr_breaker_init(&b, &c, 0);
  wr_breaker *one[] = {&b, NULL};
  wr_breakers bs = {one, 2};
  wr_job job;
  memset(&job, 0, sizeof job);
  wr_breaker_events.settled(&bs, 0, &job, WR_OUT_FAILED, "x");
  cr_assert_eq(b.n, 0);
  wr_breaker_events.settled(&bs, 1, &job, WR_OUT_FAILED, "x");
  job.started = 0.001;
  wr_breaker_events.settled(&bs, 0, &job, WR_OUT_SIGNATURE, "x");
  cr_assert_eq(b.n, 0);
  wr_breaker_events.settled(&bs, 0, &job, WR_OUT_CRASHED, "x");
  cr_assert_eq(b.state, WR_BREAKER_OPEN);
}

Test(breaker, names) {
  cr_assert_str_eq(wr_breaker_state_name(WR_BREAKER_HALF_OPEN), "half_open");
  cr_assert_str_eq(wr_breaker_why_name(WR_BREAKER_FAILURES), "failure_rate");
  cr_assert_str_eq(wr_breaker_why_name(WR_BREAKER_TRIALS_PASSED),
                   "trials_passed");
}
