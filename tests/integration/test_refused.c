/*
 * Copies the broker refuses. A failed job travels on as a copy (to a
 * retry queue or the DLQ, or back to the work queue by `warren dlq
 * replay`); the original may go only once the broker confirmed the copy.
 * Here the broker nacks the copy (a queue at x-max-length 0 with
 * reject-publish) or returns it (its queue deleted or unbound), and every
 * job must still be somewhere: in the queue it came from or, once the
 * worker declared its topology again (a deleted retry queue or an unbound
 * DLQ is restored), where its copy went. The worker requeues a refused
 * job after a backoff, so each test stops it before counting.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <warren/producer.h>

#include "pool.h"
#include "support.h"

TW_SUITE(refused, 120);

enum { N = 3 };
static char log_[300], rec[300];

/* Queue q, its DLQ and its retry queue belong to the test (a refusing
 * work queue or a dead letter left by an earlier run must not count). */
static void own(const char *q) {
  char dlq[200], retry[200];
  snprintf(dlq, sizeof dlq, "%s.dlq", q);
  snprintf(retry, sizeof retry, "%s.retry.100ms", q);
  cr_assert_eq(tw_own_queues(q, dlq, retry, NULL), 0);
}

/* Classic queues: a quorum queue would count each requeue as an attempt
 * (x-delivery-count) and soon dead-letter the job, which is right but not
 * what these tests look at. */
static pid_t start(const char *q, const char *settings) {
  pid_t w =
      tw_start_record(q,
                      "queue_type = \"classic\";\n"
                      "  retry = { max_attempts = 1000; backoff = [0.1]; };",
                      settings, log_, rec);
  cr_assert_gt(w, 0, "worker did not start");
  return w;
}

/* Wait until every job job1..jobN has a `what` line in the record. */
static void wait_each(const char *what, double timeout_s) {
  for (int i = 1; i <= N; i++) {
    char id[16];
    snprintf(id, sizeof id, "%s job%d ", what, i);
    cr_assert(tw_wait_text(rec, id, timeout_s), "job%d never ran to '%s'", i,
              what);
  }
}

/* Stop the worker, then every job must be exactly once in q or in the
 * queues its copies go to (`copies`, and `more` when not NULL). */
static void expect_all_in(pid_t w, const char *q, const char *copies,
                          const char *more) {
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0, "clean stop");
  static int seen[N + 1];
  memset(seen, 0, sizeof seen);
  int n = tw_drain(q, "job", seen, N) + tw_drain(copies, "job", seen, N);
  if (more) n += tw_drain(more, "job", seen, N);
  for (int i = 1; i <= N; i++)
    cr_assert_eq(seen[i], 1, "job%d is in %s/%s/%s %d time(s), want 1", i, q,
                 copies, more ? more : "-", seen[i]);
  cr_assert_eq(n, N);
}

/* Breaks when the original is acked on publish instead of on the copy's
 * confirm, or when a nack counts as a confirm. */
Test(refused, nacked_dead_letter_leaves_the_original_queued) {
  own("it.nackdl");
  cr_assert_eq(tw_declare_refusing("it.nackdl.dlq"), 0);
  char settings[400];
  snprintf(settings, sizeof settings, "reject_unless = \"%s/never\";",
           tw_dir());
  pid_t w = start("it.nackdl", settings);
  cr_assert_eq(tw_publish("it.nackdl", N, "job"), 0);
  wait_each("reject", 30);
  cr_assert(tw_wait_text(log_, "refused the dead-letter copy", 30));
  expect_all_in(w, "it.nackdl", "it.nackdl.dlq", NULL);
}

/* Breaks like the one above, for a retry copy. */
Test(refused, nacked_retry_copy_leaves_the_original_queued) {
  own("it.nackretry");
  cr_assert_eq(tw_declare_refusing("it.nackretry.retry.100ms"), 0);
  pid_t w = start("it.nackretry", "fail_below = 1000;");
  cr_assert_eq(tw_publish("it.nackretry", N, "job"), 0);
  wait_each("fail", 30);
  cr_assert(tw_wait_text(log_, "refused the retry copy", 30));
  expect_all_in(w, "it.nackretry", "it.nackretry.retry.100ms", NULL);
  cr_assert_eq(tw_queue_len("it.nackretry.dlq"), 0);
}

/* Breaks when a basic.return is ignored: the unroutable dead letter then
 * counts as confirmed and the original is acked. */
Test(refused, returned_dead_letter_leaves_the_original_queued) {
  char settings[400];
  snprintf(settings, sizeof settings, "reject_unless = \"%s/never\";",
           tw_dir());
  own("it.retdl");
  pid_t w = start("it.retdl", settings);
  cr_assert_eq(tw_unbind("it.retdl.dlq", "it.retdl.dlx", ""), 0);
  cr_assert_eq(tw_publish("it.retdl", N, "job"), 0);
  wait_each("reject", 30);
  cr_assert(tw_wait_text(log_, "returned the dead-letter copy", 30));
  cr_assert(tw_wait_text(log_, "topology declared again", 30));
  expect_all_in(w, "it.retdl", "it.retdl.dlq", NULL);
}

/* Breaks like the one above, for a retry copy whose queue is gone. */
Test(refused, returned_retry_copy_leaves_the_original_queued) {
  own("it.retretry");
  pid_t w = start("it.retretry", "fail_below = 1000;");
  cr_assert_eq(tw_delete_queue("it.retretry.retry.100ms"), 0);
  cr_assert_eq(tw_publish("it.retretry", N, "job"), 0);
  wait_each("fail", 30);
  cr_assert(tw_wait_text(log_, "returned the retry copy", 30));
  cr_assert(tw_wait_text(log_, "topology declared again", 30));
  expect_all_in(w, "it.retretry", "it.retretry.retry.100ms", "it.retretry.dlq");
}

/* Dead-letter job1 of queue q, stop the worker; returns the config path. */
static const char *one_dead_letter(const char *q) {
  static char cfg[400];
  char settings[400];
  snprintf(settings, sizeof settings, "reject_unless = \"%s/never\";",
           tw_dir());
  own(q);
  pid_t w = start(q, settings);
  cr_assert_eq(tw_publish(q, 1, "job"), 0);
  cr_assert(tw_wait_text(log_, "job job1 dead-lettered", 30));
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
  snprintf(cfg, sizeof cfg, "%s/warren.cfg", tw_dir());
  return cfg;
}

/* The replay must fail loudly and leave the dead letter where it is. */
static void expect_replay_kept(const char *cfg, const char *q,
                               const char *dlq) {
  char out[8192], args[600], dump[4096];
  snprintf(args, sizeof args, "dlq replay %s h", cfg);
  int rc = tw_warren_cli(out, sizeof out, args);
  cr_log_info("replay: exit %d\n%s", rc, out);
  cr_assert_neq(rc, 0, "a refused replay exits non-zero:\n%s", out);
  cr_assert(strstr(out, "replayed 0 message(s)"), "%s", out);
  cr_assert_eq(tw_queue_len(dlq), 1, "the dead letter stays");
  cr_assert_eq(tw_get(dlq, 1, dump, sizeof dump), 1);
  cr_assert(strstr(dump, "id=job1\n"), "%s", dump);
  cr_assert_leq(tw_queue_len(q), 0, "nothing reached the work queue");
}

/* Breaks when replay ignores a nack and removes the message anyway. */
Test(refused, replay_refused_by_the_work_queue_keeps_the_dead_letter) {
  const char *cfg = one_dead_letter("it.nackreplay");
  cr_assert_eq(tw_delete_queue("it.nackreplay"), 0);
  cr_assert_eq(tw_declare_refusing("it.nackreplay"), 0);
  expect_replay_kept(cfg, "it.nackreplay", "it.nackreplay.dlq");
}

/* Breaks when replay ignores a basic.return (no work queue to route to). */
Test(refused, replay_returned_by_the_broker_keeps_the_dead_letter) {
  const char *cfg = one_dead_letter("it.retreplay");
  cr_assert_eq(tw_delete_queue("it.retreplay"), 0);
  expect_replay_kept(cfg, "it.retreplay", "it.retreplay.dlq");
}

/* Copies that are confirmed and copies that are returned, in flight at
 * once: jobs ...r are rejected (their dead letters are routed), jobs ...f
 * fail and their retry queue is gone, so their retry copies come back
 * (until the worker declares the queue again) and the originals are
 * requeued; on a quorum queue each requeue counts as an attempt. Every job
 * must end in the DLQ, or be on its way (work or retry queue). Breaks when a
 * basic.return is charged to the wrong copy (one multiple-ack confirming a
 * routed and a returned copy). */
Test(refused, returned_and_confirmed_copies_together_lose_nothing) {
  enum { M = 300 };
  own("it.mixed");
  pid_t w =
      tw_start_record("it.mixed",
                      "prefetch = 50; concurrency = 2;\n"
                      "  retry = { max_attempts = 3; backoff = [0.1]; };",
                      "fail_suffix = \"f\"; reject_suffix = \"r\";", log_, rec);
  cr_assert_gt(w, 0, "worker did not start");
  cr_assert_eq(tw_delete_queue("it.mixed.retry.100ms"), 0);
  /* job1f..jobMf fail, job(M+1)r..job(2M)r are rejected, interleaved. */
  warren_producer_opts o = {.size = sizeof o, .port = tw_port()};
  warren_producer *p;
  cr_assert_eq(warren_producer_open(&o, &p), 0);
  for (int i = 1; i <= M; i++)
    for (int k = 0; k < 2; k++) {
      char id[16];
      snprintf(id, sizeof id, k ? "job%dr" : "job%df", k ? M + i : i);
      warren_publish_opts po = {.size = sizeof po, .message_id = id};
      cr_assert_eq(
          warren_producer_publish(p, "", "it.mixed", id, strlen(id), &po), 0);
    }
  cr_assert_eq(warren_producer_close(p), 0);
  double until = wr_now() + 60;
  while (tw_queue_len("it.mixed.dlq") < 2 * M && wr_now() < until)
    usleep(50 * 1000);
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0, "clean stop");
  static int dead[2 * M + 1], queued[2 * M + 1];
  int nd = tw_drain("it.mixed.dlq", "job", dead, 2 * M);
  /* The retry queue is declared again after the first return. */
  int nq = tw_drain("it.mixed", "job", queued, 2 * M) +
           tw_drain("it.mixed.retry.100ms", "job", queued, 2 * M);
  int dupes, lost = tw_missing(dead, queued, 2 * M, &dupes), flost = 0;
  char ids[512] = "";
  for (int i = 1; i <= 2 * M; i++)
    if (!dead[i] && !queued[i]) {
      flost += i <= M;
      size_t o = strlen(ids);
      if (o < sizeof ids - 16)
        snprintf(ids + o, sizeof ids - o, " job%d%c", i, i <= M ? 'f' : 'r');
    }
  cr_log_info(
      "mixed copies: %d dead letters, %d still queued, %d lost (%d of them "
      "failing jobs), %d duplicates",
      nd, nq, lost, flost, dupes);
  cr_assert(tw_wait_text(log_, "the broker returned the", 0),
            "no copy was returned");
  cr_assert_eq(lost, 0,
               "%d job(s) lost, %d of them with a returned retry copy:%s", lost,
               flost, ids);
}
