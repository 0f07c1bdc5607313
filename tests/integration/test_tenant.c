/*
 * Per-tenant concurrency (docs/features.md, "Per-tenant concurrency"):
 * a handler's tenant_header names the header that carries a job's tenant
 * and tenant_concurrency the most jobs of one tenant that run at once in
 * this Warren process. A tenant over its limit is held while the others'
 * jobs run, including jobs that were behind a prefetch window full of the
 * busy tenant's (the consumer is renewed); held jobs lose no attempt and
 * nothing is lost when Warren stops, loses its connection or a held job
 * is revoked.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <warren/producer.h>

#include "support.h"

TW_SUITE(tenant, 180);

static char log_[300], rec[300];

/* Start a worker with the record plugin on q, with health endpoints on
 * port (0: none); extra goes into the handler's group. */
static pid_t start(const char *q, int port, const char *extra,
                   const char *settings) {
  const char *dir = tw_dir();
  snprintf(log_, sizeof log_, "%s/warren.log", dir);
  snprintf(rec, sizeof rec, "%s/rec", dir);
  char text[4096];
  snprintf(text, sizeof text,
           "health = { port = %d; snapshot_interval = 0.05; };\n"
           "handlers = ( { name = \"h\"; queue = \"%s\";\n"
           "  plugin = \"" TEST_HANDLER_DIR
           "/record.so\";\n"
           "  %s\n  settings = { log = \"%s\"; %s }; } );\n",
           port, q, extra, rec, settings);
  pid_t w = tw_warren_start(dir, text);
  cr_assert_gt(w, 0, "worker did not start");
  cr_assert(tw_wait_text(log_, "consuming 1 queue(s)", 30),
            "worker does not consume");
  return w;
}

/* Publish ids prefix1..prefixN with header tenant = t (NULL: none). */
static void publish(const char *q, const char *prefix, int n, const char *t) {
  warren_producer_opts po = {.size = sizeof po, .port = tw_port()};
  warren_producer *p = NULL;
  int rc = warren_producer_open(&po, &p);
  cr_assert_eq(rc, 0, "producer: %s", warren_strerror(rc));
  warren_header_kv kv = {"tenant", t};
  for (int i = 1; i <= n; i++) {
    char id[64];
    snprintf(id, sizeof id, "%s%d", prefix, i);
    warren_publish_opts o = {.size = sizeof o,
                             .message_id = id,
                             .headers = t ? &kv : NULL,
                             .n_headers = t ? 1 : 0};
    rc = warren_producer_publish(p, "", q, id, strlen(id), &o);
    cr_assert_eq(rc, 0, "%s", warren_producer_error(p));
  }
  rc = warren_producer_flush(p, 20000);
  cr_assert_eq(rc, 0, "%s", warren_producer_error(p));
  warren_producer_close(p);
}

/* The record file's start and end lines of jobs whose id starts with
 * prefix: at most how many ran at once; *first_start gets the time (ns)
 * of the k-th start (1-based) of them, when k > 0. */
static int most_at_once(const char *prefix, int k, long long *kth_start) {
  FILE *f = fopen(rec, "r");
  cr_assert_not_null(f);
  char line[512], what[16], id[256];
  long long ns;
  int pid, now = 0, most = 0, starts = 0;
  size_t pl = strlen(prefix);
  /* Lines are appended in the order they happen (one write each, clock
   * read just before): sorting is not needed within a few microseconds,
   * and a start is always written before its end. */
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "%15s %255s %lld %d", what, id, &ns, &pid) == 4 &&
        strncmp(id, prefix, pl) == 0 && id[pl] >= '0' && id[pl] <= '9') {
      if (!strcmp(what, "start")) {
        if (++now > most) most = now;
        if (++starts == k && kth_start) *kth_start = ns;
      } else if (!strcmp(what, "end")) {
        now--;
      }
    }
  fclose(f);
  return most;
}

/* The time (ns) of the last start of jobs with prefix, 0 when none. */
static long long last_start(const char *prefix) {
  FILE *f = fopen(rec, "r");
  cr_assert_not_null(f);
  char line[512], what[16], id[256];
  long long ns, last = 0;
  int pid;
  size_t pl = strlen(prefix);
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "%15s %255s %lld %d", what, id, &ns, &pid) == 4 &&
        !strcmp(what, "start") && strncmp(id, prefix, pl) == 0 &&
        id[pl] >= '0' && id[pl] <= '9')
      last = ns;
  fclose(f);
  return last;
}

/* Every job prefix1..prefixN ended exactly once. */
static void each_ended_once(const char *prefix, int n, double timeout_s) {
  int *done = calloc((size_t)n + 1, sizeof *done);
  cr_assert_eq(tw_wait_all(rec, prefix, done, n, timeout_s), 0,
               "jobs %s* are missing", prefix);
  /* A duplicate would come late: give it a moment. */
  nanosleep(&(struct timespec){0, 300 * 1000 * 1000}, NULL);
  tw_wait_all(rec, prefix, done, n, 1);
  for (int i = 1; i <= n; i++)
    cr_assert_eq(done[i], 1, "job %s%d ended %d times", prefix, i, done[i]);
  free(done);
}

/* Breaks when the limit is not applied per tenant (more than one job of
 * tenant a runs at once), when a held job blocks the jobs behind it (b
 * would start after a's), when the window stays full of a's jobs (b's,
 * published behind 40 of a's with prefetch 6, would wait for about 34
 * of them), when jobs without the header are not one limited tenant, or
 * when a job is lost or run twice. */
Test(tenant, one_tenant_runs_at_most_its_limit_while_another_starts_at_once) {
  const char *q = "it.tenant.mix";
  cr_assert_eq(
      tw_own_queues(q, "it.tenant.mix.dlq", "it.tenant.mix.retry.1000ms",
                    "it.tenant.mix.retry.10000ms",
                    "it.tenant.mix.retry.60000ms", NULL),
      0);
  int port = tw_free_port();
  pid_t w = start(q, port,
                  "concurrency = 3; prefetch = 6; tenant_header = \"tenant\"; "
                  "tenant_concurrency = 1;",
                  "sleep_ms = 50;");
  publish(q, "a", 40, "acme");
  publish(q, "b", 5, "bolt");
  publish(q, "n", 4, NULL);
  each_ended_once("b", 5, 60);
  each_ended_once("n", 4, 60);
  each_ended_once("a", 40, 60);
  cr_assert_eq(most_at_once("a", 0, NULL), 1,
               "more than one job of tenant a ran at once");
  cr_assert_eq(most_at_once("n", 0, NULL), 1,
               "jobs without a tenant are one tenant: one at a time");
  cr_assert_eq(most_at_once("b", 0, NULL), 1, "b's jobs, one at a time");
  long long a10 = 0;
  most_at_once("a", 10, &a10);
  long long b_last = last_start("b");
  cr_log_info("b's last job started %.3f s before a's tenth",
              (double)(a10 - b_last) / 1e9);
  cr_assert_lt(b_last, a10,
               "b's jobs waited behind a's: the last started after a's tenth");
  /* What the status and metrics say of it. */
  char body[65536];
  cr_assert_eq(tw_http(port, NULL, "/metrics", NULL, body, sizeof body), 200);
  cr_assert(strstr(body, "warren_tenant_held_jobs{handler=\"h\"} 0\n"), "%s",
            body);
  cr_assert(strstr(body, "warren_tenant_held_total{handler=\"h\"} "));
  cr_assert_null(strstr(body, "warren_tenant_held_total{handler=\"h\"} 0\n"),
                 "nothing was held");
  cr_assert_null(
      strstr(body, "warren_tenant_window_renewals_total{handler=\"h\"} 0\n"),
      "the window was never renewed");
  cr_assert(strstr(body, "warren_tenant_untagged_total{handler=\"h\"} 4\n"),
            "%s", body);
  cr_assert_eq(tw_http(port, NULL, "/status/workers", NULL, body, sizeof body),
               200);
  cr_assert(strstr(body, "\"tenants\":{\"limit\":1,"), "%s", body);
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
}

/* Wait until path has not grown for quiet_s (at most timeout_s). */
static void quiet(const char *path, double quiet_s, double timeout_s) {
  struct stat st;
  off_t last = -1;
  double still = 0;
  for (double t = 0; t < timeout_s && still < quiet_s; t += 0.1) {
    off_t now = stat(path, &st) == 0 ? st.st_size : 0;
    still = now == last ? still + 0.1 : 0;
    last = now;
    nanosleep(&(struct timespec){0, 100 * 1000 * 1000}, NULL);
  }
}

/* How many "body" lines (digest = true: one per attempt) name an attempt
 * other than 1. */
static int later_attempts(void) {
  FILE *f = fopen(rec, "r");
  cr_assert_not_null(f);
  char line[512], id[256];
  int attempt, n = 0;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "body %255s %d", id, &attempt) == 2 && attempt != 1) n++;
  fclose(f);
  return n;
}

/* Breaks when held jobs are not given back when Warren stops (they would
 * be lost, or wait for the channel to close only by luck), when a held
 * job's redelivery costs it an attempt, or when one that ran is run
 * again. */
Test(tenant, held_jobs_go_back_on_stop_and_run_once_on_their_first_attempt) {
  const char *q = "it.tenant.stop";
  cr_assert_eq(
      tw_own_queues(q, "it.tenant.stop.dlq", "it.tenant.stop.retry.1000ms",
                    "it.tenant.stop.retry.10000ms",
                    "it.tenant.stop.retry.60000ms", NULL),
      0);
  const char *extra =
      "concurrency = 2; prefetch = 4; tenant_header = \"tenant\"; "
      "tenant_concurrency = 1;";
  pid_t w = start(q, 0, extra, "sleep_ms = 100; digest = true;");
  publish(q, "s", 20, "acme");
  cr_assert(tw_wait_count(rec, "end", "s", 20, 2, 30), "nothing ran");
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
  int ran = tw_count(rec, "end", "s", NULL, 20);
  cr_log_info("%d of 20 ran before the stop", ran);
  cr_assert_lt(ran, 20, "every job ran before the stop: nothing was held");
  w = start(q, 0, extra, "sleep_ms = 10; digest = true;");
  cr_assert(tw_wait_count(rec, "end", "s", 20, 20, 60), "jobs are missing");
  quiet(rec, 2.0, 30); /* a retry copy would come 1 s later */
  each_ended_once("s", 20, 1);
  cr_assert_eq(later_attempts(), 0, "a held job lost an attempt");
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
}

/* Breaks when the held jobs of a lost connection are not forgotten (a
 * delivery tag of the old connection would be acked on the new one: the
 * broker closes the channel) or are lost. */
Test(tenant, held_jobs_survive_a_lost_connection) {
  const char *q = "it.tenant.lost";
  cr_assert_eq(
      tw_own_queues(q, "it.tenant.lost.dlq", "it.tenant.lost.retry.1000ms",
                    "it.tenant.lost.retry.10000ms",
                    "it.tenant.lost.retry.60000ms", NULL),
      0);
  pid_t w = start(q, 0,
                  "concurrency = 2; prefetch = 4; tenant_header = \"tenant\"; "
                  "tenant_concurrency = 1;",
                  "sleep_ms = 50; digest = true;");
  publish(q, "l", 30, "acme");
  cr_assert(tw_wait_count(rec, "end", "l", 30, 3, 30), "nothing ran");
  char out[4096];
  cr_assert_eq(tw_ctl(out, sizeof out, "close_all_connections 'tenant test'"),
               0, "%s", out);
  for (int i = 0; i < 300 && tw_occurrences(log_, "consuming 1 queue(s)") < 2;
       i++)
    nanosleep(&(struct timespec){0, 100 * 1000 * 1000}, NULL);
  cr_assert_geq(tw_occurrences(log_, "consuming 1 queue(s)"), 2,
                "the worker did not connect again");
  int *done = calloc(31, sizeof *done);
  cr_assert_eq(tw_wait_all(rec, "l", done, 30, 60), 0, "jobs were lost");
  quiet(rec, 1.0, 30); /* the jobs that run again come last */
  tw_wait_all(rec, "l", done, 30, 1);
  int twice = 0;
  for (int i = 1; i <= 30; i++) twice += done[i] - 1;
  free(done);
  /* Only what ran or had finished unacked when the connection went runs
   * again: at most the workers' and the window's jobs, not the held ones. */
  cr_log_info("%d job(s) ran again after the lost connection", twice);
  cr_assert_leq(twice, 6,
                "%d jobs ran twice: held jobs of the lost "
                "connection ran as well as their redelivery",
                twice);
  cr_assert_eq(most_at_once("l", 0, NULL), 1);
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
}

/* Breaks when a revoke misses the jobs held for their tenant: the job
 * would run. */
Test(tenant, a_held_job_is_revoked_before_it_runs) {
  const char *q = "it.tenant.rv";
  cr_assert_eq(tw_own_queues(q, "it.tenant.rv.dlq", "it.tenant.rv.retry.1000ms",
                             "it.tenant.rv.retry.10000ms",
                             "it.tenant.rv.retry.60000ms", NULL),
               0);
  pid_t w = start(q, 0,
                  "concurrency = 2; prefetch = 10; tenant_header = \"tenant\"; "
                  "tenant_concurrency = 1;",
                  "sleep_ms = 300;");
  publish(q, "r", 8, "acme");
  cr_assert(tw_wait_text(rec, "start r1 ", 30), "r1 never started");
  char out[4096], cmd[600];
  snprintf(cmd, sizeof cmd, "revoke %s/warren.cfg r7", tw_dir());
  cr_assert_eq(tw_warren_cli(out, sizeof out, cmd), 0, "%s", out);
  cr_assert(tw_wait_text(log_, "job r7 revoked while held for its tenant", 10),
            "r7 was not revoked where it was held");
  for (int i = 1; i <= 8; i++)
    if (i != 7) {
      char what[32];
      snprintf(what, sizeof what, "end r%d ", i);
      cr_assert(tw_wait_text(rec, what, 30), "r%d never ended", i);
    }
  cr_assert_eq(tw_occurrences(rec, "start r7 "), 0, "the revoked job ran");
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
}

/* Breaks when an open circuit breaker gives back the jobs waiting for a
 * worker but keeps those held for their tenant: they would stay unacked
 * through the cool-down (out of the queue, from every other process) and
 * run when it half-opens, beside its trials. */
Test(tenant, an_open_breaker_gives_back_the_jobs_held_for_their_tenant) {
  enum { N = 10 };
  const char *q = "it.tenant.brk";
  cr_assert_eq(tw_own_queues(q, "it.tenant.brk.dlq",
                             "it.tenant.brk.retry.60000ms", NULL),
               0);
  char sick[400], settings[1000];
  snprintf(sick, sizeof sick, "%s/sick", tw_dir());
  FILE *f = fopen(sick, "w");
  cr_assert_not_null(f);
  fclose(f);
  /* Each job fails after 50 ms, one at a time (tenant_concurrency 1):
   * the others are held when 4 failures open the breaker. */
  snprintf(settings, sizeof settings,
           "fail_while = \"%s\"; slow_while = \"%s\"; slow_while_ms = 50;",
           sick, sick);
  pid_t w = start(q, 0,
                  "concurrency = 2; prefetch = 10; tenant_header = \"tenant\"; "
                  "tenant_concurrency = 1;\n"
                  "  retry = { max_attempts = 10; backoff = [60.0]; };\n"
                  "  breaker = { failure_rate = 0.5; window = 4; min_jobs = 4; "
                  "cool_down = 60.0; };",
                  settings);
  publish(q, "k", N, "acme");
  cr_assert(tw_wait_text(log_, "circuit breaker open", 20),
            "the breaker did not open");
  nanosleep(&(struct timespec){0, 500 * 1000 * 1000}, NULL);
  int fails = tw_count(rec, "fail", "k", NULL, N);
  int ready = tw_queue_len(q);
  cr_log_info("%d job(s) failed, %d back in the queue", fails, ready);
  cr_assert_eq(ready + fails, N,
               "%d failed and %d are back in the queue: the rest are kept "
               "unacked",
               fails, ready);
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
}
