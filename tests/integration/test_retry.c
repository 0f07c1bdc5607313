/*
 * Retries, dead letters, crash isolation and timeouts against a real
 * broker. Job ids are counted in and out: handled, dead-lettered or still
 * queued; none may be missing, and duplicates are reported.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "support.h"

#define RECORD TEST_HANDLER_DIR "/record.so"

static char log_[300], rec[300];

TW_SUITE(retry, 120);

static pid_t start(const char *q, const char *extra, const char *settings) {
  pid_t w = tw_start_record(q, extra, settings, log_, rec);
  cr_assert_gt(w, 0, "worker did not start");
  return w;
}

/* Start times (ns) and attempt numbers of each run of job id, in order;
 * returns how many runs. */
static unsigned att[8];
static int attempts_of(const char *id, long long *t, int max) {
  FILE *f = fopen(rec, "r");
  char line[512], what[16], got[128];
  long long ns;
  int pid, n = 0;
  unsigned attempt;
  while (f && fgets(line, sizeof line, f) && n < max)
    if (sscanf(line, "%15s %127s %lld %d %u", what, got, &ns, &pid, &attempt) ==
            5 &&
        !strcmp(what, "start") && !strcmp(got, id)) {
      att[n] = attempt;
      t[n++] = ns;
    }
  if (f) fclose(f);
  return n;
}

Test(retry, fails_twice_then_succeeds_with_the_configured_delays,
     .timeout = 120) {
  cr_assert_eq(
      tw_own_queues("it.delays", "it.delays.dlq", "it.delays.retry.500ms",
                    "it.delays.retry.1000ms", NULL),
      0);
  pid_t w = start(
      "it.delays",
      "retry = { max_attempts = 5; backoff = [0.5, 1.0]; jitter = 0.0; };",
      "fail_below = 3;");
  cr_assert_eq(tw_publish("it.delays", 1, "flaky"), 0);
  cr_assert_eq(tw_wait_count(rec, "end", "flaky", 1, 1, 30), 1);
  sleep(2); /* a fourth run would show up here */
  long long t[8];
  int n = attempts_of("flaky1", t, 8);
  cr_assert_eq(n, 3, "ran %d times, want exactly 3", n);
  cr_assert(att[0] == 1 && att[1] == 2 && att[2] == 3, "attempts %u %u %u",
            att[0], att[1], att[2]);
  double d1 = (double)(t[1] - t[0]) / 1e9, d2 = (double)(t[2] - t[1]) / 1e9;
  cr_log_info("retry delays: %.3f s (want 0.5), %.3f s (want 1.0)", d1, d2);
  cr_assert(d1 >= 0.45 && d1 <= 0.9, "first delay %.3f s", d1);
  cr_assert(d2 >= 0.95 && d2 <= 1.4, "second delay %.3f s", d2);
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
  char dump[4096];
  cr_assert_eq(tw_take_one("it.delays.dlq", dump, sizeof dump), 0,
               "DLQ stays empty");
}

Test(retry, exhausted_job_lands_in_dlq_with_its_story, .timeout = 120) {
  cr_assert_eq(tw_own_queues("it.exhausted", "it.exhausted.dlq",
                             "it.exhausted.retry.100ms", NULL),
               0);
  pid_t w =
      start("it.exhausted", "retry = { max_attempts = 3; backoff = [0.1]; };",
            "fail_on = \"doomed1\";");
  cr_assert_eq(tw_publish("it.exhausted", 1, "doomed"), 0);
  cr_assert(tw_wait_text(log_, "dead-lettered", 30));
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
  long long t[8];
  cr_assert_eq(attempts_of("doomed1", t, 8), 3);
  char dump[8192], host[256], want[512];
  cr_assert_eq(tw_take_one("it.exhausted.dlq", dump, sizeof dump), 1,
               "nothing in the DLQ");
  gethostname(host, sizeof host);
  cr_log_info("dead letter:\n%s", dump);
  cr_assert(strstr(dump, "id=doomed1\nbody=doomed1\n"), "body and id kept:\n%s",
            dump);
  cr_assert(strstr(dump, "h.warren-dead-reason=max-attempts\n"), "%s", dump);
  cr_assert(strstr(dump, "h.warren-dead-handler=h\n"), "%s", dump);
  cr_assert(strstr(dump, "h.warren-dead-attempts=3\n"), "%s", dump);
  cr_assert(strstr(dump, "h.warren-dead-queue=it.exhausted\n"), "%s", dump);
  cr_assert(strstr(dump, "h.warren-last-error=fails on purpose (attempt 3)\n"),
            "%s", dump);
  snprintf(want, sizeof want, "h.warren-dead-host=%s\n", host);
  cr_assert(strstr(dump, want), "%s", dump);
  long long first = 0, last = 0;
  const char *p = strstr(dump, "h.warren-first-failure=");
  const char *q = strstr(dump, "h.warren-last-failure=");
  cr_assert(p && q, "%s", dump);
  sscanf(p, "h.warren-first-failure=%lld", &first);
  sscanf(q, "h.warren-last-failure=%lld", &last);
  long long now = (long long)time(NULL) * 1000;
  cr_assert(first > now - 60000 && first < last && last <= now + 1000,
            "first %lld last %lld now %lld", first, last, now);
}

enum { BATCH = 1000 };

Test(retry, segfaulting_job_is_dead_lettered_while_others_complete,
     .timeout = 300) {
  cr_assert_eq(
      tw_own_queues("it.segv", "it.segv.dlq", "it.segv.retry.100ms", NULL), 0);
  pid_t w = start(
      "it.segv",
      "prefetch = 50; concurrency = 2;\n"
      "  retry = { max_attempts = 10; max_crashes = 3; backoff = [0.1]; };",
      "crash_on = \"job500\"; sleep_ms = 1;");
  cr_assert_eq(tw_publish("it.segv", BATCH, "job"), 0);
  static int done[BATCH + 1], dead[BATCH + 1], queued[BATCH + 1],
      started[BATCH + 1];
  cr_assert_geq(tw_wait_count(rec, "end", "job", BATCH, BATCH - 1, 120),
                BATCH - 1);
  cr_assert(tw_wait_text(log_, "dead-lettered", 30));
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
  tw_count(rec, "end", "job", done, BATCH);
  tw_count(rec, "start", "job", started, BATCH);
  int nd = tw_drain("it.segv.dlq", "job", dead, BATCH);
  tw_drain("it.segv", "job", queued, BATCH);
  for (int i = 1; i <= BATCH; i++) done[i] += queued[i];
  int dupes, missing = tw_missing(done, dead, BATCH, &dupes);
  cr_log_info(
      "segfault: 999 others done, job500 started %d times, %d dead-lettered, "
      "%d missing, %d duplicates",
      started[500], nd, missing, dupes);
  cr_assert_eq(nd, 1);
  cr_assert_eq(dead[500], 1, "job500 is the one dead-lettered");
  cr_assert_eq(started[500], 3, "max_crashes = 3 runs");
  cr_assert_eq(done[500], 0);
  cr_assert_eq(missing, 0);
  cr_assert_eq(dupes, 0);
  cr_assert(tw_wait_text(
      log_, "job job500 dead-lettered to it.segv.dlx after attempt 3: crashed",
      1));
}

Test(retry, hanging_job_times_out, .timeout = 120) {
  cr_assert_eq(
      tw_own_queues("it.hang", "it.hang.dlq", "it.hang.retry.200ms", NULL), 0);
  pid_t w = start("it.hang",
                  "concurrency = 2; timeout = 1.0;\n"
                  "  retry = { max_attempts = 2; backoff = [0.2]; };",
                  "hang_on = \"job1\";");
  cr_assert_eq(tw_publish("it.hang", 20, "job"), 0);
  cr_assert_eq(tw_wait_count(rec, "end", "job", 20, 19, 30), 19);
  cr_assert(tw_wait_text(log_, "dead-lettered", 30));
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
  long long t[8];
  int n = attempts_of("job1", t, 8);
  char dump[8192];
  cr_assert_eq(tw_take_one("it.hang.dlq", dump, sizeof dump), 1);
  cr_log_info("hung job: %d runs, %.2f s apart", n,
              (double)(t[1] - t[0]) / 1e9);
  cr_assert_eq(n, 2);
  cr_assert_geq((double)(t[1] - t[0]) / 1e9, 1.1,
                "timeout 1 s + backoff 0.2 s");
  cr_assert(strstr(dump, "h.warren-dead-reason=timeout\n"), "%s", dump);
  cr_assert(strstr(dump, "h.warren-last-error=job ran past the 1.0 s timeout"),
            "%s", dump);
}

Test(retry, kill_9_of_a_worker_mid_batch_loses_nothing, .timeout = 300) {
  cr_assert_eq(
      tw_own_queues("it.kill9", "it.kill9.dlq", "it.kill9.retry.100ms", NULL),
      0);
  pid_t w = start("it.kill9",
                  "prefetch = 50; concurrency = 2;\n"
                  "  retry = { backoff = [0.1]; };",
                  "sleep_ms = 2;");
  cr_assert_eq(tw_publish("it.kill9", BATCH, "job"), 0);
  cr_assert_geq(tw_wait_count(rec, "end", "job", BATCH, 200, 60), 200);
  pid_t victim = tw_child_of(w);
  cr_assert_gt(victim, 0);
  cr_assert_eq(kill(victim, SIGKILL), 0);
  int before = tw_count(rec, "end", "job", NULL, BATCH);
  static int done[BATCH + 1], dead[BATCH + 1], queued[BATCH + 1];
  int dupes, missing = tw_wait_all(rec, "job", done, BATCH, 120);
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
  tw_drain("it.kill9.dlq", "job", dead, BATCH);
  tw_drain("it.kill9", "job", queued, BATCH);
  for (int i = 1; i <= BATCH; i++) done[i] += queued[i];
  missing = tw_missing(done, dead, BATCH, &dupes);
  cr_log_info("kill -9 of worker %d after %d jobs: %d missing, %d duplicates",
              (int)victim, before, missing, dupes);
  cr_assert_lt(before, BATCH, "the kill must land mid-batch");
  cr_assert_eq(missing, 0);
  cr_assert(tw_wait_text(log_, "killed by signal 9", 1));
}

Test(retry, dlq_replay_brings_a_job_back_and_it_runs, .timeout = 120) {
  char flag[300], settings[400];
  snprintf(flag, sizeof flag, "%s/flag", tw_dir());
  snprintf(settings, sizeof settings, "reject_unless = \"%s\";", flag);
  /* The DLQ listing must show this run's two dead letters only. */
  cr_assert_eq(
      tw_own_queues("it.replay", "it.replay.dlq", "it.replay.retry.1000ms",
                    "it.replay.retry.10000ms", "it.replay.retry.60000ms", NULL),
      0);
  pid_t w = start("it.replay", "", settings);
  cr_assert_eq(tw_publish("it.replay", 2, "job"), 0);
  cr_assert_eq(tw_wait_count(rec, "reject", "job", 2, 2, 30), 2);
  cr_assert(tw_wait_text(log_, "job job2 dead-lettered", 30));
  char out[8192], args[600], cfg[300];
  /* the worker's config file sits beside rec */
  snprintf(cfg, sizeof cfg, "%.*s/warren.cfg", (int)(strrchr(rec, '/') - rec),
           rec);
  snprintf(args, sizeof args, "dlq list %s h", cfg);
  cr_assert_eq(tw_warren_cli(out, sizeof out, args), 0, "%s", out);
  cr_assert(
      strstr(out, "job1") && strstr(out, "job2") && strstr(out, "rejected"),
      "%s", out);
  cr_assert(strstr(out, "2 of 2 message(s) in it.replay.dlq shown"), "%s", out);

  FILE *f = fopen(flag, "w");
  fclose(f);
  snprintf(args, sizeof args, "dlq replay %s h --id job2", cfg);
  cr_assert_eq(tw_warren_cli(out, sizeof out, args), 0, "%s", out);
  cr_assert(strstr(out, "replayed 1 message(s)"), "%s", out);
  cr_assert_eq(tw_wait_count(rec, "end", "job", 2, 1, 30), 1);
  long long t[8];
  cr_assert_eq(attempts_of("job2", t, 8), 2);
  cr_assert_eq(att[1], 1, "a replayed job starts again at attempt 1 (got %u)",
               att[1]);
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
  static int ended[3];
  tw_count(rec, "end", "job", ended, 2);
  cr_assert_eq(ended[2], 1);
  cr_assert_eq(ended[1], 0, "job1 was not replayed");
  snprintf(args, sizeof args, "dlq purge %s h --reason rejected", cfg);
  cr_assert_eq(tw_warren_cli(out, sizeof out, args), 0, "%s", out);
  cr_assert(strstr(out, "purged 1 message(s)"), "%s", out);
}
