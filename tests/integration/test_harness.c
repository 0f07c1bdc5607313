/*
 * Deliberate failures for tests/integration/harness_check, which runs
 * them with WARREN_IT_SELFTEST=1 and then checks that they finished fast
 * and left no process, stopped broker or unreported folder behind.
 * Skipped otherwise.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include "support.h"

TW_SUITE(harness, 60);

static char log_[300], rec[300], out[4096];

/* A worker with a job hanging in it, and the broker app stopped; its
 * queue must be gone afterwards (tw_own_queues). */
static void mess(void) {
  if (!getenv("WARREN_IT_SELFTEST")) cr_skip_test("only for harness_check");
  cr_assert_eq(
      tw_own_queues("it.harness", "it.harness.dlq", "it.harness.retry.1000ms",
                    "it.harness.retry.10000ms", "it.harness.retry.60000ms",
                    NULL),
      0);
  pid_t w = tw_start_record("it.harness", "queue_type = \"classic\";",
                            "hang_on = \"job1\";", log_, rec);
  cr_assert_gt(w, 0, "worker did not start");
  cr_assert_eq(tw_publish("it.harness", 1, "job"), 0);
  cr_assert(tw_wait_text(rec, "start job1", 30));
  cr_assert_eq(tw_broker_stop_app(out, sizeof out), 0, "%s", out);
}

Test(harness, fails_with_a_worker_running_and_the_broker_stopped) {
  mess();
  cr_assert_fail("deliberate failure");
}

Test(harness, hangs_with_a_worker_running_and_the_broker_stopped,
     .timeout = 3) {
  mess();
  for (;;) pause();
}
