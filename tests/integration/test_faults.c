/*
 * Faults while jobs flow: the broker refusing or returning Warren's copies,
 * and hostile input. Every job id is counted in and out.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "support.h"

#define N 1000

/* Every job of prefix with a `what` line in path? done[1..n] gets the
 * tallies. Waits up to timeout_s. */
static int all_seen(const char *path, const char *what, const char *prefix,
                    int *seen, double timeout_s) {
  for (double waited = 0; waited <= timeout_s; waited += 0.1) {
    memset(seen, 0, sizeof(int) * (N + 1));
    tw_count(path, what, prefix, seen, N);
    int missing = 0;
    for (int i = 1; i <= N; i++) missing += seen[i] == 0;
    if (!missing) return 1;
    nanosleep(&(struct timespec){0, 100 * 1000 * 1000}, NULL);
  }
  return 0;
}

/* The broker returns dead-letter copies (their queue was deleted) while
 * retry copies are confirmed around them, often several under one
 * confirm: each return must be tied to its own copy. */
Test(faults, dlq_deleted_under_load_loses_no_job, .timeout = 240) {
  char log[300], rec[300], out[4096];
  pid_t w = tw_start_record("dlqgone", "it.gone",
                            "prefetch = 100; concurrency = 2;\n"
                            "  retry = { max_attempts = 5; backoff = [0.3]; };",
                            "reject_prefix = \"rj\"; fail_below = 4;", log, rec);
  cr_assert_gt(w, 0, "worker did not start");
  /* Jobs that fail three times keep retry copies in flight throughout. */
  cr_assert_eq(tw_publish("it.gone", N, "rt"), 0);
  cr_assert_geq(tw_wait_count(rec, "fail", "rt", N, 100, 60), 100);
  cr_assert_eq(tw_ctl(out, sizeof out, "delete_queue it.gone.dlq"), 0, "%s", out);
  cr_assert_eq(tw_publish("it.gone", N, "rj"), 0);

  static int done[N + 1], dead[N + 1], queued[N + 1], rejected[N + 1];
  int missing = tw_wait_all(rec, "rt", done, N, 120);
  cr_assert_eq(missing, 0, "%d retried jobs never finished", missing);
  cr_assert(all_seen(rec, "reject", "rj", rejected, 120), "every rj ran");
  cr_assert(tw_wait_text(log, "the broker returned the", 10),
            "the broker returned copies (the fault really happened)");
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 60), 0);

  int dupes;
  tw_drain("it.gone.dlq", "rj", dead, N);
  tw_drain("it.gone", "rj", queued, N);
  missing = tw_missing(dead, queued, N, &dupes);
  cr_log_info("DLQ deleted under load: %d rejected jobs missing, %d duplicates",
              missing, dupes);
  cr_assert_eq(missing, 0, "every rejected job is in the new DLQ or back in its queue");
  cr_assert(tw_wait_text(log, "topology declared again", 1),
            "the deleted DLQ was declared again");
}
