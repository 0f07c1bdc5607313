/*
 * Faults at the network's pace, through the tests' own TCP proxy
 * (proxy.c): partitions, resets, and a broker that blocks publishers.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "support.h"

TW_SUITE(network, 240);

static void nap(double s) {
  struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
  nanosleep(&ts, NULL);
}

/* A partition is no refused login: with exit_after_refused_logins = 2, a
 * broker that accepts TCP and never answers (the proxy's blackhole) keeps
 * the worker retrying, at warn level, for as long as it lasts; and it
 * consumes once the network is back. */
Test(network, a_partition_is_no_refused_login, .timeout = 90) {
  int port = tw_proxy_start(0);
  cr_assert_gt(port, 0, "no proxy port free in 5830..5849");
  tw_proxy_mode(TW_PROXY_BLACKHOLE, 0);
  const char *dir = tw_dir();
  char broker[300], text[1024], log[400];
  snprintf(broker, sizeof broker,
           "broker = { host = \"127.0.0.1\"; port = %d; heartbeat = 5; "
           "connect_timeout = 1.0; };\n",
           port);
  snprintf(text, sizeof text,
           "handlers = ( { name = \"h\"; queue = \"it.partition\";\n"
           "  plugin = \"" TEST_HANDLER_DIR
           "/record.so\";\n"
           "  settings = { log = \"%s/rec\"; }; } );\n",
           dir);
  snprintf(log, sizeof log, "%s/warren.log", dir);
  pid_t w =
      tw_warren_start_with(dir, broker, "exit_after_refused_logins = 2;", text);
  cr_assert_gt(w, 0);
  /* Past exit_after_refused_logins: three handshakes, each unanswered. */
  int status = 0, tries = 0;
  pid_t r = 0;
  double t0 = wr_now();
  for (int i = 0; i < 250 && r == 0 && tries < 3; i++) {
    nap(0.1);
    r = waitpid(w, &status, WNOHANG);
    tries = tw_occurrences(log, "broker unreachable");
  }
  nap(0.5); /* the third one logged: the worker must not exit on it */
  if (r == 0) r = waitpid(w, &status, WNOHANG);
  cr_assert_eq(r, 0, "the worker ended (status %d) during a partition",
               WIFEXITED(status) ? WEXITSTATUS(status) : -1);
  cr_log_info("%.1f s of partition: %d unreachable handshakes logged",
              wr_now() - t0, tries);
  cr_assert_geq(tries, 3, "the handshakes were tried and said unreachable");
  cr_assert_eq(tw_occurrences(log, "refused the login"), 0);
  cr_assert_eq(tw_occurrences(log, "error ["), 0,
               "a partition is a warning, not an operator's error");
  tw_proxy_mode(TW_PROXY_PASS, 0);
  cr_assert(tw_wait_text(log, "consuming 1 queue(s)", 30),
            "consuming once the network is back");
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
}

/* A record line "<what> <id> <ns> <pid> <attempt>" whose id matches fmt
 * (its job number k, 1..n, goes to *k) with the attempt in *a. */
static int run_line(const char *line, const char *fmt, int n, int *k,
                    unsigned *a) {
  int pid;
  long long ns;
  return sscanf(line, fmt, k, &ns, &pid, a) == 4 && *k >= 1 && *k <= n;
}

/* The runs of each failing job "x<k>f" (k = 1..n) in the record file,
 * and the highest attempt each saw. */
static void failing_runs(const char *rec, int *runs, unsigned *top, int n) {
  memset(runs, 0, sizeof(int) * (size_t)(n + 1));
  memset(top, 0, sizeof(unsigned) * (size_t)(n + 1));
  FILE *f = fopen(rec, "r");
  char line[512];
  int k;
  unsigned a;
  while (f && fgets(line, sizeof line, f))
    if (run_line(line, "fail x%df %lld %d %u", n, &k, &a)) {
      runs[k]++;
      if (a > top[k]) top[k] = a;
    }
  if (f) fclose(f);
}

/* Starts of slow jobs "s<k>" with an attempt above their runs so far:
 * an attempt lost without a run. (One below is a run that succeeded and
 * whose ack a reset lost: its outcome was recorded, so it costs no
 * attempt, and it runs again, at least once.) */
static int attempts_skipped(const char *rec, int n) {
  static unsigned seen[1024];
  memset(seen, 0, sizeof seen);
  int bad = 0, k;
  unsigned a;
  FILE *f = fopen(rec, "r");
  char line[512];
  while (f && fgets(line, sizeof line, f))
    if (run_line(line, "start s%d %lld %d %u", n < 1023 ? n : 1023, &k, &a) &&
        a > ++seen[k]) {
      cr_log_error("s%d started as attempt %u on its run %u", k, a, seen[k]);
      bad++;
    }
  if (f) fclose(f);
  return bad;
}

/* A quorum queue raises x-delivery-count for every prefetched job a lost
 * connection returns, started or not. Jobs that always fail, with
 * max_attempts = 4, queued behind slow ones (prefetch > concurrency):
 * however many resets hit them while they wait, each runs exactly 4
 * times before its dead letter says max-attempts. */
Test(network, connection_losses_cost_no_attempt_of_a_job_that_never_ran,
     .timeout = 180) {
  enum { NF = 20, NS = 40, RESETS = 5 };
  const char *q = "it.unstarted";
  cr_assert_eq(
      tw_own_queues(q, "it.unstarted.dlq", "it.unstarted.retry.300ms", NULL),
      0);
  int port = tw_proxy_start(0);
  cr_assert_gt(port, 0, "no proxy port free in 5830..5849");
  const char *dir = tw_dir();
  char broker[300], text[1024], log[400], rec[400];
  snprintf(broker, sizeof broker,
           "broker = { host = \"127.0.0.1\"; port = %d; heartbeat = 5; };\n",
           port);
  snprintf(text, sizeof text,
           "handlers = ( { name = \"h\"; queue = \"%s\";\n"
           "  queue_type = \"quorum\"; prefetch = 40; concurrency = 2;\n"
           "  retry = { max_attempts = 4; backoff = [0.3];\n"
           "            max_deliveries = 4; };\n"
           "  plugin = \"" TEST_HANDLER_DIR
           "/record.so\";\n"
           "  settings = { log = \"%s/rec\"; sleep_ms = 300;\n"
           "               fail_suffix = \"f\"; }; } );\n",
           q, dir);
  snprintf(log, sizeof log, "%s/warren.log", dir);
  snprintf(rec, sizeof rec, "%s/rec", dir);
  pid_t w = tw_warren_start_with(dir, broker, "", text);
  cr_assert_gt(w, 0);
  cr_assert(tw_wait_text(log, "consuming 1 queue(s)", 30));
  /* Slow jobs first (40 x 0.3 s on 2 workers: longer than the 5 resets),
   * the failing ones queued behind them: the resets return them
   * prefetched and never started, more often than max_deliveries (4),
   * which counts only returns that may have been runs. A reset while a
   * failing job's copy awaits its confirm would run it twice (at least
   * once), which is not what is tested here. */
  cr_assert_eq(tw_publish(q, NS, "s"), 0);
  for (int k = 1; k <= NF; k++) {
    char id[32];
    snprintf(id, sizeof id, "x%df", k);
    cr_assert_eq(tw_publish_raw(q, id, NULL), 0);
  }
  for (int r = 0; r < RESETS; r++) {
    /* Each on a connection that consumes again (not on the way back). */
    for (int i = 0; i < 100 && tw_occurrences(log, "consuming 1 queue(s)") <= r;
         i++)
      nap(0.05);
    nap(0.7);
    tw_proxy_reset();
  }
  int dead = 0;
  for (int i = 0; i < 600 && dead < NF; i++) {
    nap(0.1);
    dead = tw_occurrences(log, "dead-lettered");
  }
  cr_assert_eq(dead, NF, "every failing job was dead-lettered");
  /* And the slow ones, returned unstarted by most of the resets, all ran:
   * those returns count towards no bound. */
  static int done[NS + 1];
  cr_assert_eq(tw_wait_all(rec, "s", done, NS, 120), 0, "every slow job ran");
  cr_assert_eq(attempts_skipped(rec, NS), 0,
               "an attempt was lost without a run");
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
  cr_assert_geq(tw_occurrences(log, "broker connection lost"), RESETS,
                "the resets happened");
  static int runs[NF + 1];
  static unsigned top[NF + 1];
  failing_runs(rec, runs, top, NF);
  int wrong = 0;
  for (int k = 1; k <= NF; k++)
    if (runs[k] != 4 || top[k] != 4) {
      cr_log_error("x%df ran %d times, its last attempt %u", k, runs[k],
                   top[k]);
      wrong++;
    }
  cr_assert_eq(wrong, 0, "%d failing jobs did not run exactly 4 times", wrong);
  char dump[8192];
  for (int k = 0; k < NF; k++) {
    cr_assert_eq(tw_take_one("it.unstarted.dlq", dump, sizeof dump), 1);
    cr_assert(strstr(dump, "h.warren-dead-reason=max-attempts\n"), "%s", dump);
    cr_assert(strstr(dump, "h.warren-dead-attempts=4\n"), "%s", dump);
  }
  cr_assert_eq(tw_take_one("it.unstarted.dlq", dump, sizeof dump), 0,
               "nothing else was dead-lettered:\n%s", dump);
}

/* A port of this worktree's range (5836..5847) free a moment ago. */
static int range_port(void) {
  for (int p = 5836; p <= 5847; p++) {
    if (tw_http_get(p, "/") < 0) return p; /* nothing answers there */
  }
  return -1;
}

/* Messages in queue q (ready and unacknowledged), as the broker counts
 * them; -1 if unknown. */
static int messages(const char *q) {
  static char out[1 << 16];
  if (tw_ctl(out, sizeof out, "-q list_queues name messages") != 0) return -1;
  char want[200];
  snprintf(want, sizeof want, "\n%s\t", q);
  char *p = strstr(out, want);
  if (!p && !strncmp(out, want + 1, strlen(want) - 1)) p = out - 1;
  return p ? atoi(p + strlen(want)) : -1;
}

/* The watermark goes back to normal when the test process ends, however
 * it ends: a child waits for the pipe to close. */
static void restore_watermark_at_exit(void) {
  int fd[2];
  cr_assert_eq(pipe(fd), 0);
  pid_t kid = fork();
  if (kid == 0) {
    close(fd[1]);
    char c;
    while (read(fd[0], &c, 1) > 0) {
    }
    char out[512];
    tw_ctl(out, sizeof out, "set_vm_memory_high_watermark 0.4");
    _exit(0);
  }
  close(fd[0]); /* fd[1] stays open until this process ends */
}

/* A memory alarm blocks the connections that publish. Jobs that publish
 * nothing are still acked (they ride the consuming connection), readiness
 * and /metrics say the broker blocks, and once the alarm is over the
 * copies go out and nothing is lost. */
Test(network, a_resource_alarm_blocks_only_publishing_and_readiness_says_so,
     .timeout = 180) {
  enum { NA = 600, NB = 900, NF = 10 };
  const char *q = "it.alarm";
  cr_assert_eq(tw_own_queues(q, "it.alarm.dlq", "it.alarm.retry.200ms", NULL),
               0);
  restore_watermark_at_exit();
  int hport = range_port();
  cr_assert_gt(hport, 0);
  const char *dir = tw_dir();
  char text[1024], log[400], rec[400], body[8192], out[512];
  snprintf(text, sizeof text,
           "health = { port = %d; };\n"
           "handlers = ( { name = \"h\"; queue = \"%s\";\n"
           "  queue_type = \"classic\"; prefetch = 20; concurrency = 2;\n"
           "  retry = { max_attempts = 2; backoff = [0.2]; };\n"
           "  plugin = \"" TEST_HANDLER_DIR
           "/record.so\";\n"
           "  settings = { log = \"%s/rec\"; sleep_ms = 20;\n"
           "               fail_suffix = \"f\"; }; } );\n",
           hport, q, dir);
  snprintf(log, sizeof log, "%s/warren.log", dir);
  snprintf(rec, sizeof rec, "%s/rec", dir);
  pid_t w = tw_warren_start(dir, text);
  cr_assert_gt(w, 0);
  cr_assert(tw_wait_text(log, "consuming 1 queue(s)", 30));
  /* Publishers are blocked too during the alarm: everything goes first,
   * the failing jobs (whose copies are publishes) between two runs of
   * jobs that publish nothing, so they run once the alarm is on. */
  cr_assert_eq(tw_publish(q, NA, "a"), 0);
  for (int k = 1; k <= NF; k++) {
    char id[32];
    snprintf(id, sizeof id, "x%df", k);
    cr_assert_eq(tw_publish_raw(q, id, NULL), 0);
  }
  cr_assert_eq(tw_publish(q, NB, "b"), 0);
  cr_assert_eq(
      tw_ctl(out, sizeof out, "set_vm_memory_high_watermark 0.0000001"), 0,
      "%s", out);
  cr_assert(tw_wait_text(log, "the broker blocked publishing", 30),
            "connection.blocked reached the worker");
  long code = 0;
  for (int i = 0; i < 50; i++) {
    code = tw_http(hport, NULL, "/readyz", NULL, body, sizeof body);
    if (code == 503 && strstr(body, "broker blocked: ")) break;
    nap(0.1);
  }
  cr_assert_eq(code, 503, "%s", body);
  cr_assert(strstr(body, "broker blocked: "), "the reason is given: %s", body);
  static char metrics[1 << 18];
  cr_assert_eq(tw_http(hport, NULL, "/metrics", NULL, metrics, sizeof metrics),
               200);
  cr_assert(strstr(metrics, "\nwarren_broker_blocked 1\n"), "blocked gauge");
  cr_assert(strstr(metrics, "\nwarren_broker_blocked_total 1\n"));
  /* Acks go on while the alarm lasts. */
  int before = messages(q);
  nap(3.0);
  int after = messages(q);
  cr_log_info("during the alarm: %d messages, 3 s later %d", before, after);
  cr_assert(before > 0 && after >= 0 && after < before - 20,
            "jobs that publish nothing are acked during the alarm (%d -> %d)",
            before, after);
  cr_assert_eq(tw_ctl(out, sizeof out, "set_vm_memory_high_watermark 0.4"), 0,
               "%s", out);
  cr_assert(tw_wait_text(log, "the broker unblocked publishing", 30));
  static int done[NB + 1];
  cr_assert_eq(tw_wait_all(rec, "a", done, NA, 60), 0, "every job ran");
  cr_assert_eq(tw_wait_all(rec, "b", done, NB, 60), 0, "every job ran");
  for (int i = 0; i < 300 && tw_occurrences(log, "dead-lettered") < NF; i++)
    nap(0.1);
  cr_assert_eq(tw_occurrences(log, "dead-lettered"), NF,
               "every failing job ended in the DLQ");
  for (int i = 0; i < 100 && messages(q) != 0; i++) nap(0.1);
  cr_assert_eq(messages(q), 0, "nothing left unacked");
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
  cr_assert_eq(tw_queue_len("it.alarm.dlq"), NF, "nothing lost");
  cr_assert_eq(tw_http(hport, NULL, "/readyz", NULL, body, sizeof body), -1);
}

/* A reconnect over a slow network does not freeze the loop: with 400 ms
 * added to every read both ways (an 800 ms round trip), the set-up of
 * both connections, the declares of the work, retry and dead-letter
 * queues and the consumer takes many seconds, and meanwhile the loop goes
 * on: /healthz answers 200 with the loop's idle time under half the
 * watchdog's (the loop turns at least every second), the worker's jobs
 * finish, and it consumes once the set-up is done. */
Test(network, a_reconnect_over_400_ms_of_latency_never_stalls_the_loop,
     .timeout = 180) {
  const char *q = "it.latency";
  cr_assert_eq(tw_own_queues(q, "it.latency.dlq", NULL), 0);
  int port = tw_proxy_start(0);
  cr_assert_gt(port, 0, "no proxy port free in 5830..5849");
  int hport = range_port();
  cr_assert_gt(hport, 0);
  const char *dir = tw_dir();
  char broker[300], text[1024], log[400], rec[400], body[2048];
  snprintf(broker, sizeof broker,
           "broker = { host = \"127.0.0.1\"; port = %d; heartbeat = 30; };\n",
           port);
  snprintf(text, sizeof text,
           "health = { port = %d; };\n"
           "handlers = ( { name = \"h\"; queue = \"%s\";\n"
           "  plugin = \"" TEST_HANDLER_DIR
           "/record.so\";\n"
           "  settings = { log = \"%s/rec\"; }; } );\n",
           hport, q, dir);
  snprintf(log, sizeof log, "%s/warren.log", dir);
  snprintf(rec, sizeof rec, "%s/rec", dir);
  pid_t w = tw_warren_start_with(dir, broker, "", text);
  cr_assert_gt(w, 0);
  cr_assert(tw_wait_text(log, "consuming 1 queue(s)", 30));
  tw_proxy_mode(TW_PROXY_LATENCY, 400);
  tw_proxy_reset();
  cr_assert(tw_wait_text(log, "broker connection lost", 10));
  double t0 = wr_now(), worst = 0;
  int polls = 0, bad = 0;
  while (tw_occurrences(log, "consuming 1 queue(s)") < 2 &&
         wr_now() - t0 < 120) {
    double a = wr_now();
    long code = tw_http(hport, NULL, "/healthz", NULL, body, sizeof body);
    double took = wr_now() - a;
    const char *idle = strstr(body, "\"loop_idle_seconds\":");
    double idle_s = idle ? atof(idle + strlen("\"loop_idle_seconds\":")) : 99;
    if (code != 200 || idle_s >= 5.0) {
      cr_log_error("/healthz %ld after %.1f s: %s", code, a - t0, body);
      bad++;
    }
    if (idle_s > worst) worst = idle_s;
    if (took > worst) worst = took;
    polls++;
    nap(0.2);
  }
  double setup = wr_now() - t0;
  cr_log_info(
      "reconnect over 400 ms latency: %.1f s; %d probes, worst loop "
      "idle or answer %.2f s",
      setup, polls, worst);
  cr_assert_eq(tw_occurrences(log, "consuming 1 queue(s)"), 2,
               "it consumed again over the slow network");
  cr_assert_geq(setup, 3.0, "the set-up waited on the latency");
  cr_assert_eq(bad, 0, "%d probe(s) of %d saw the loop stalled", bad, polls);
  tw_proxy_mode(TW_PROXY_PASS, 0);
  cr_assert_eq(tw_publish(q, 20, "j"), 0);
  cr_assert_eq(tw_wait_count(rec, "end", "j", 20, 20, 30), 20);
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
}
