/*
 * Priorities (docs/features.md, "Priorities"): a handler's max_priority
 * declares its work queue with x-max-priority, so a job published with a
 * higher priority (warren-publish --priority, libwarren's priority) runs
 * before a backlog; the priority stays on retry copies, dead letters,
 * delayed jobs and replays; a queue that exists without the configured
 * x-max-priority is reported, not used in arrival order.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <warren/producer.h>

#include "support.h"

TW_SUITE(prio, 120);

static char log_[300], rec[300];

static warren_producer *producer(void) {
  warren_producer_opts po = {.size = sizeof po, .port = tw_port()};
  warren_producer *p = NULL;
  int rc = warren_producer_open(&po, &p);
  cr_assert_eq(rc, 0, "producer: %s", warren_strerror(rc));
  return p;
}

/* How many jobs started before the one whose message id is `id`, in the
 * record file; -1 when it never started. */
static int started_before(const char *id) {
  FILE *f = fopen(rec, "r");
  if (!f) return -1;
  char line[512], what[16], got[256];
  int n = 0, at = -1;
  while (at < 0 && fgets(line, sizeof line, f))
    if (sscanf(line, "%15s %255s", what, got) == 2 && !strcmp(what, "start")) {
      if (!strcmp(got, id)) at = n;
      n++;
    }
  fclose(f);
  return at;
}

/* Breaks when the work queue is declared without x-max-priority or the
 * priority is not published: the job then waits behind the whole
 * backlog. Prefetch 1 keeps the backlog in the broker, where it can be
 * overtaken (a job already prefetched cannot). */
Test(prio, a_high_priority_job_overtakes_a_backlog) {
  enum { N = 30 };
  const char *q = "it.prio.line";
  cr_assert_eq(tw_own_queues(q, "it.prio.line.dlq", "it.prio.line.retry.1000ms",
                             "it.prio.line.retry.10000ms",
                             "it.prio.line.retry.60000ms", NULL),
               0);
  pid_t w = tw_start_record(
      q, "queue_type = \"classic\"; max_priority = 10; prefetch = 1;",
      "sleep_ms = 100;", log_, rec);
  cr_assert_gt(w, 0, "worker did not start");
  cr_assert(tw_wait_text(log_, "queue 'it.prio.line' with x-max-priority", 1),
            "the work queue was not declared with x-max-priority");
  cr_assert_eq(tw_publish(q, N, "low"), 0, "backlog not published");
  warren_producer *p = producer();
  warren_publish_opts o = {
      .size = sizeof o, .message_id = "high", .priority = 9};
  int rc = warren_producer_publish(p, "", q, "high", 4, &o);
  if (rc == 0) rc = warren_producer_flush(p, 10000);
  cr_assert_eq(rc, 0, "%s", warren_producer_error(p));
  warren_producer_close(p);

  static int done[N + 1];
  cr_assert_eq(tw_wait_all(rec, "low", done, N, 60), 0, "backlog not done");
  cr_assert(tw_wait_text(rec, "end high ", 10), "high never ran");
  int before = started_before("high");
  cr_log_info("the high-priority job started after %d of %d jobs", before, N);
  /* One job runs while it is published, and at most a couple more may
   * have been on their way; the rest of the backlog waits for it. */
  cr_assert_leq(before, 3,
                "the high-priority job started after %d of the %d jobs "
                "published before it",
                before, N);
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
}

/* Breaks when a retry copy, a dead letter, the delay levels or a replay
 * drop the priority property: a job that failed, or waited, would come
 * back as priority 0 and lose its place. Both jobs go through
 * warren-publish --priority; k-fail is retried once and dead-lettered
 * (max-attempts), k-reject is delayed, then rejected. */
Test(prio, priority_survives_retry_dead_letter_delay_and_replay) {
  const char *q = "it.prio.keep";
  cr_assert_eq(
      tw_own_queues(q, "it.prio.keep.dlq", "it.prio.keep.retry.200ms", NULL),
      0);
  pid_t w = tw_start_record(
      q,
      "queue_type = \"classic\"; max_priority = 10; delayed = true;\n"
      "  retry = { max_attempts = 2; backoff = [0.2]; jitter = 0.0; };",
      "fail_suffix = \"-fail\"; reject_suffix = \"-reject\";", log_, rec);
  cr_assert_gt(w, 0, "worker did not start");
  static char out[16384], dump[8192];
  char cfg[400];
  snprintf(cfg, sizeof cfg, "%s/warren.cfg", tw_dir());
  cr_assert_eq(
      tw_sh(out, sizeof out,
            "%s --port %d --routing-key %s --id k-fail --priority 7 2>&1",
            WARREN_PUBLISH_BIN, tw_port(), q),
      0, "%s", out);
  cr_assert_eq(tw_sh(out, sizeof out,
                     "%s --port %d --routing-key %s --id k-reject --priority 6 "
                     "--delay 1s 2>&1",
                     WARREN_PUBLISH_BIN, tw_port(), q),
               0, "%s", out);
  cr_assert(tw_wait_text(log_, "job k-fail dead-lettered", 30), "k-fail");
  cr_assert(tw_wait_text(log_, "job k-reject dead-lettered", 30), "k-reject");
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
  cr_assert_eq(tw_occurrences(rec, "fail k-fail "), 2,
               "k-fail ran twice: once as its retry copy");

  /* warren dlq show prints the property. */
  cr_assert_eq(tw_sh(out, sizeof out, "%s dlq show %s h 2>&1", WARREN_BIN, cfg),
               0, "%s", out);
  cr_log_info("dead letters:\n%s", out);
  cr_assert(strstr(out, "message_id: k-fail\npriority: 7\n"),
            "the dead letter of a retried job lost its priority:\n%s", out);
  cr_assert(strstr(out, "message_id: k-reject\npriority: 6\n"),
            "the dead letter of a delayed job lost its priority:\n%s", out);
  cr_assert(strstr(out, "header warren-dead-reason: max-attempts\n"), "%s",
            out);
  cr_assert(strstr(out, "header warren-not-before: "), "not delayed:\n%s", out);

  cr_assert_eq(
      tw_sh(out, sizeof out, "%s dlq replay %s h 2>&1", WARREN_BIN, cfg), 0,
      "%s", out);
  cr_assert(strstr(out, "replayed 2 message(s)"), "%s", out);
  int seen = 0;
  while (tw_get(q, 1, dump, sizeof dump) == 1) {
    cr_log_info("replayed:\n%s", dump);
    if (strstr(dump, "id=k-fail\n")) {
      cr_assert(strstr(dump, "priority=7\n"), "replay lost it:\n%s", dump);
      seen |= 1;
    } else if (strstr(dump, "id=k-reject\n")) {
      cr_assert(strstr(dump, "priority=6\n"), "replay lost it:\n%s", dump);
      seen |= 2;
    }
  }
  cr_assert_eq(seen, 3, "both jobs replayed to %s", q);
}

/* Breaks when a work queue that exists without the configured
 * x-max-priority is used as it is (its jobs would run in arrival order
 * without a word), or when the refusal does not say what to do. */
Test(prio, a_queue_declared_without_the_priority_is_reported) {
  const char *q = "it.prio.changed";
  cr_assert_eq(
      tw_own_queues(q, "it.prio.changed.dlq", "it.prio.changed.retry.1000ms",
                    "it.prio.changed.retry.10000ms",
                    "it.prio.changed.retry.60000ms", NULL),
      0);
  /* The queue as an earlier configuration without max_priority left it. */
  pid_t w = tw_start_record(q, "queue_type = \"classic\";", "", log_, rec);
  cr_assert_gt(w, 0, "worker did not start");
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
  char text[1024];
  snprintf(text, sizeof text,
           "handlers = ( { name = \"h\"; queue = \"%s\";\n"
           "  plugin = \"" TEST_HANDLER_DIR
           "/record.so\"; queue_type = \"classic\"; max_priority = 5;\n"
           "  settings = { log = \"%s\"; }; } );\n",
           q, rec);
  char log2[400];
  snprintf(log2, sizeof log2, "%s/warren.log", tw_dir());
  unlink(log2);
  w = tw_warren_start(tw_dir(), text);
  /* Whichever comes first: a worker that consumes has already failed. */
  for (int i = 0; i < 300 && !tw_occurrences(log2, "retrying in") &&
                  !tw_occurrences(log2, "consuming 1 queue(s)");
       i++)
    nanosleep(&(struct timespec){0, 100 * 1000 * 1000}, NULL);
  cr_assert_eq(tw_occurrences(log2, "consuming 1 queue(s)"), 0,
               "the worker consumed the queue without its priorities");
  cr_assert(tw_occurrences(log2, "retrying in"), "no connection failure");
  cr_assert(tw_wait_text(log2,
                         "queue 'it.prio.changed' (handler h): broker closed "
                         "the channel: 406 PRECONDITION_FAILED - inequivalent "
                         "arg 'x-max-priority'",
                         1),
            "the broker's words are not passed on");
  cr_assert(tw_wait_text(log2,
                         "max_priority = 5 needs the queue declared with "
                         "x-max-priority = 5, which cannot change on a queue "
                         "that exists: move its jobs and delete it, or use a "
                         "new queue name",
                         1),
            "the log does not say what to do");
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
}

/* Breaks when libwarren sends (or truncates to a byte) a priority the
 * AMQP octet cannot hold. */
Test(prio, libwarren_refuses_a_priority_outside_0_to_255) {
  const char *q = "it.prio.refused";
  cr_assert_eq(tw_own_queues(q, NULL), 0);
  cr_assert_eq(tw_declare_plain(q), 0);
  warren_producer *p = producer();
  static const int bad[] = {256, -1};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    warren_publish_opts o = {
        .size = sizeof o, .message_id = "x", .priority = bad[i]};
    int rc = warren_producer_publish(p, "", q, "x", 1, &o);
    cr_assert_eq(rc, WARREN_INVALID, "priority %d: %s", bad[i],
                 warren_strerror(rc));
    char want[64];
    snprintf(want, sizeof want, "priority %d is not 0..255", bad[i]);
    cr_assert_str_eq(warren_producer_error(p), want);
  }
  /* 255 is sent as it is. */
  warren_publish_opts o = {
      .size = sizeof o, .message_id = "top", .priority = 255};
  int rc = warren_producer_publish(p, "", q, "top", 3, &o);
  if (rc == 0) rc = warren_producer_flush(p, 10000);
  cr_assert_eq(rc, 0, "%s", warren_producer_error(p));
  warren_producer_close(p);
  char dump[4096];
  cr_assert_eq(tw_get(q, 1, dump, sizeof dump), 1);
  cr_assert(strstr(dump, "id=top\n"), "%s", dump);
  cr_assert(strstr(dump, "priority=255\n"), "%s", dump);
  cr_assert_eq(tw_get(q, 1, dump, sizeof dump), 0, "a refused job went out");
}
