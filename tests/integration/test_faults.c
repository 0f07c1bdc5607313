/*
 * Faults while jobs flow: the broker refusing or returning Warren's copies,
 * and hostile input. Every job id is counted in and out.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <amqp.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <stdint.h>
#include <stdlib.h>
#include <errno.h>

#include <warren/status.h>

#include "clock.h"
#include "conn.h"
#include "retry.h"
#include "support.h"

#define N 1000

TW_SUITE(faults, 240);

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
  pid_t w =
      tw_start_record("it.gone",
                      "prefetch = 100; concurrency = 2;\n"
                      "  retry = { max_attempts = 5; backoff = [0.3]; };",
                      "reject_prefix = \"rj\"; fail_below = 4;", log, rec);
  cr_assert_gt(w, 0, "worker did not start");
  /* Jobs that fail three times keep retry copies in flight throughout. */
  cr_assert_eq(tw_publish("it.gone", N, "rt"), 0);
  cr_assert_geq(tw_wait_count(rec, "fail", "rt", N, 100, 60), 100);
  cr_assert_eq(tw_ctl(out, sizeof out, "delete_queue it.gone.dlq"), 0, "%s",
               out);
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
  cr_assert_eq(missing, 0,
               "every rejected job is in the new DLQ or back in its queue");
  cr_assert(tw_wait_text(log, "topology declared again", 1),
            "the deleted DLQ was declared again");
}

/* Publish persistent jobs with message ids ids[0..nids) and bodies of
 * `size` bytes (0: "body"), each with the `n` headers h, to queue, in one
 * go and confirmed. 0 on success. */
static int publish_many(const char *queue, const char *const *ids, int nids,
                        size_t size, const amqp_table_entry_t *h, int n) {
  amqp_connection_state_t c = tw_conn_confirming();
  if (!c) return -1;
  int rc = WARREN_OK;
  amqp_basic_properties_t p = {0};
  p._flags = AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_MESSAGE_ID_FLAG |
             (n ? AMQP_BASIC_HEADERS_FLAG : 0);
  p.delivery_mode = 2;
  p.headers = (amqp_table_t){n, (amqp_table_entry_t *)h};
  wr_confirms cf;
  wr_confirms_init(&cf);
  amqp_bytes_t body = amqp_cstring_bytes("body");
  if (size) {
    body.len = size;
    body.bytes = calloc(1, size);
    if (!body.bytes) rc = WARREN_NOMEM;
  }
  for (int i = 0; i < nids && rc == WARREN_OK; i++) {
    p.message_id = amqp_cstring_bytes(ids[i]);
    rc = amqp_basic_publish(c, 1, amqp_cstring_bytes(""),
                            amqp_cstring_bytes(queue), 1, 0, &p,
                            body) == AMQP_STATUS_OK
             ? WARREN_OK
             : WARREN_BROKER_CLOSED;
    if (rc == WARREN_OK) wr_confirms_sent(&cf);
  }
  if (rc == WARREN_OK) rc = wr_confirms_wait(c, &cf, 10000);
  if (size) free(body.bytes);
  wr_conn_close(c);
  return rc;
}

static int publish_with(const char *queue, const char *id,
                        const amqp_table_entry_t *h, int n) {
  return publish_many(queue, &id, 1, 0, h, n);
}

Test(faults, a_publisher_written_delivery_count_is_ignored_not_overflowed,
     .timeout = 120) {
  char log[300], rec[300];
  pid_t w =
      tw_start_record("it.dcount", "queue_type = \"classic\";", "", log, rec);
  cr_assert_gt(w, 0, "worker did not start");
  amqp_table_entry_t h[] = {wr_entry_int("x-delivery-count", INT64_MAX)};
  cr_assert_eq(publish_with("it.dcount", "huge1", h, 1), 0);
  cr_assert_eq(tw_wait_count(rec, "end", "huge", 1, 1, 30), 1,
               "the job ran (no overflow, no hot loop)");
  cr_assert(tw_wait_text(rec, "end huge1 ", 1));
  char line[512] = "";
  FILE *f = fopen(rec, "r");
  while (f && fgets(line, sizeof line, f) && strncmp(line, "end ", 4) != 0) {
  }
  if (f) fclose(f);
  unsigned attempt = 0;
  long long ns;
  int pid;
  cr_assert_eq(sscanf(line, "end huge1 %lld %d %u", &ns, &pid, &attempt), 3,
               "%s", line);
  cr_assert_eq(attempt, 1,
               "a classic queue's x-delivery-count is the publisher's");
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
}

Test(faults, a_handler_writing_to_a_closed_pipe_is_not_a_crash,
     .timeout = 120) {
  char log[300], rec[300];
  pid_t w =
      tw_start_record("it.sigpipe", "", "sigpipe_on = \"pipe1\";", log, rec);
  cr_assert_gt(w, 0, "worker did not start");
  cr_assert_eq(tw_publish("it.sigpipe", 1, "pipe"), 0);
  cr_assert_eq(tw_wait_count(rec, "end", "pipe", 1, 1, 30), 1,
               "EPIPE, not a SIGPIPE death");
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
  cr_assert(!tw_wait_text(log, "killed by signal", 0.1));
}

Test(faults, a_forced_stop_requeues_the_running_job_without_a_copy,
     .timeout = 120) {
  char log[300], rec[300];
  pid_t w = tw_start_record("it.forced", "retry = { backoff = [0.2]; };",
                            "hang_on = \"stuck1\";", log, rec);
  cr_assert_gt(w, 0, "worker did not start");
  cr_assert_eq(tw_publish("it.forced", 1, "stuck"), 0);
  cr_assert_eq(tw_wait_count(rec, "start", "stuck", 1, 1, 30), 1);
  kill(w, SIGTERM);
  cr_assert(tw_wait_text(log, "stopping: cancelling consumers", 10));
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0, "the second signal stops it");
  int queued[2] = {0}, retried[2] = {0}, dead[2] = {0};
  tw_drain("it.forced.retry.200ms", "stuck", retried, 1);
  tw_drain("it.forced.dlq", "stuck", dead, 1);
  tw_drain("it.forced", "stuck", queued, 1);
  cr_assert_eq(queued[1], 1, "back in its queue");
  cr_assert_eq(retried[1] + dead[1], 0,
               "and nowhere else: a stop is not a crash");
}

Test(faults, hostile_ids_cannot_forge_log_lines_or_drive_the_terminal,
     .timeout = 120) {
  char log[300], rec[300], out[65536];
  pid_t w =
      tw_start_record("it.inject", "", "reject_prefix = \"evil\";", log, rec);
  cr_assert_gt(w, 0, "worker did not start");
  cr_assert_eq(
      publish_with("it.inject", "evil\nFAKE error line\x1b[2J", NULL, 0), 0);
  cr_assert(tw_wait_text(log, "dead-lettered", 30));
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
  cr_assert(tw_wait_text(log, "evil\\x0aFAKE error line\\x1b[2J", 0.1),
            "the id is escaped in the log");
  cr_assert(!tw_wait_text(log, "\x1b", 0.1), "no raw escape character");
  char args[400];
  /* The worker's config sits beside its log. */
  snprintf(args, sizeof args, "dlq list %.*s/warren.cfg h",
           (int)(strlen(log) - strlen("/warren.log")), log);
  cr_assert_eq(tw_warren_cli(out, sizeof out, args), 0, "%s", out);
  cr_assert(strstr(out, "evil\\x0aFAKE"), "%s", out);
  cr_assert(!strchr(out, '\x1b'), "no raw escape character in dlq list");
}

/* A job larger than the worker's socket buffer, queued behind one that
 * never ends: the supervisor must keep turning (signals, health), not
 * block writing it. */
Test(faults, a_big_job_behind_a_busy_worker_never_blocks_the_loop,
     .timeout = 120) {
  char log[300], rec[300];
  pid_t w = tw_start_record("it.bigbehind", "prefetch = 10;",
                            "hang_on = \"job1\";", log, rec);
  cr_assert_gt(w, 0, "worker did not start");
  const char *ids[] = {"job1", "job2"}; /* job2: the big one */
  cr_assert_eq(publish_many("it.bigbehind", ids, 2, 4 << 20, NULL, 0), 0);
  cr_assert_eq(tw_wait_count(rec, "start", "job", 2, 1, 30), 1);
  nanosleep(&(struct timespec){0, 300 * 1000 * 1000}, NULL);
  kill(w, SIGTERM);
  cr_assert(tw_wait_text(log, "stopping: cancelling consumers", 5),
            "the loop took the signal while a write to the busy worker waits");
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
  int queued[3] = {0};
  tw_drain("it.bigbehind", "job", queued, 2);
  cr_assert(queued[1] == 1 && queued[2] == 1, "both back in the queue");
}

/* A worker that dies while a process it forked still holds its socket:
 * the supervisor must neither wait for that process nor let it live on. */
Test(faults, a_crashing_worker_with_an_orphan_freezes_nothing, .timeout = 120) {
  char log[300], rec[300];
  pid_t w = tw_start_record("it.orphan",
                            "concurrency = 2; retry = { max_crashes = 1; };",
                            "orphan_on = \"job1\";", log, rec);
  cr_assert_gt(w, 0, "worker did not start");
  cr_assert_eq(tw_publish("it.orphan", 20, "job"), 0);
  int done[21];
  cr_assert_eq(tw_wait_all(rec, "job", done, 20, 15), 1,
               "the 19 others finish while the orphan sleeps on");
  cr_assert(tw_wait_text(log, "dead-lettered", 15), "the crash was handled");
  char line[512] = "";
  int kid = 0;
  FILE *f = fopen(rec, "r");
  while (f && fgets(line, sizeof line, f))
    if (sscanf(line, "orphan job1 %d", &kid) == 1) break;
  if (f) fclose(f);
  cr_assert_gt(kid, 0, "the handler forked");
  int gone = 0;
  for (int i = 0; i < 100 && !gone; i++) {
    gone = kill(kid, 0) != 0 && errno == ESRCH;
    if (!gone) nanosleep(&(struct timespec){0, 50 * 1000 * 1000}, NULL);
  }
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
  cr_assert(gone, "the worker's orphan %d died with it", kid);
}

/* The broker takes a header with an empty key; rabbitmq-c refuses to
 * decode it. That one message must be dead-lettered, the connection and
 * every other job untouched. */
Test(faults,
     an_undecodable_header_dead_letters_one_job_and_keeps_the_connection,
     .timeout = 120) {
  char log[300], rec[300];
  static char out[1 << 20]; /* every queue of the suite is listed */
  tw_ctl(out, sizeof out, "delete_queue it.emptykey"); /* a past run's */
  tw_ctl(out, sizeof out, "delete_queue it.emptykey.dlq");
  pid_t w = tw_start_record("it.emptykey", "", "", log, rec);
  cr_assert_gt(w, 0, "worker did not start");
  amqp_table_entry_t h[] = {wr_entry_str("", "empty key")};
  cr_assert_eq(publish_with("it.emptykey", "bad1", h, 1), 0);
  cr_assert_eq(tw_publish("it.emptykey", 5, "job"), 0);
  int done[6];
  cr_assert_eq(tw_wait_all(rec, "job", done, 5, 30), 0, "the others run");
  cr_assert(!tw_wait_text(rec, "start bad1", 0.1), "the bad one never ran");
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
  cr_assert(!tw_wait_text(log, "connection lost", 0.1), "no reconnect");
  /* Counted by the broker: no AMQP client library here can read it. */
  int found = 0;
  for (int i = 0; i < 50 && !found; i++) {
    tw_ctl(out, sizeof out, "list_queues -q name messages");
    found = strstr(out, "it.emptykey.dlq\t1\n") != NULL;
    if (!found) nanosleep(&(struct timespec){0, 100 * 1000 * 1000}, NULL);
  }
  cr_assert(found, "dead-lettered, intact: %s", out);
}

/* 100 clients trickling one byte every 3 s must not keep liveness from
 * answering (an orchestrator would restart a healthy worker). */
Test(faults, slow_clients_do_not_starve_the_probes, .timeout = 120) {
  const char *dir = tw_dir();
  int port = tw_free_port();
  char text[1024];
  snprintf(text, sizeof text,
           "health = { port = %d; };\n"
           "handlers = ( { name = \"h\"; queue = \"it.slowhttp\";\n"
           "  plugin = \"" TEST_HANDLER_DIR
           "/record.so\";\n"
           "  settings = { log = \"%s/rec\"; }; } );\n",
           port, dir);
  pid_t w = tw_warren_start(dir, text);
  cr_assert_gt(w, 0);
  char log[300];
  snprintf(log, sizeof log, "%s/warren.log", dir);
  cr_assert(tw_wait_text(log, "health endpoints", 30));
  enum { SLOW = 100 };
  int fd[SLOW];
  struct sockaddr_in sa = {.sin_family = AF_INET,
                           .sin_port = htons((uint16_t)port)};
  inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
  for (int i = 0; i < SLOW; i++) {
    fd[i] = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_eq(connect(fd[i], (struct sockaddr *)&sa, sizeof sa), 0);
    cr_assert_eq(write(fd[i], "G", 1), 1);
  }
  int answered = 0, asked = 0;
  for (int round = 0; round < 3; round++) {
    for (int k = 0; k < 6; k++, asked++) {
      answered += tw_http_get(port, "/healthz") == 200;
      nanosleep(&(struct timespec){0, 500 * 1000 * 1000}, NULL);
    }
    for (int i = 0; i < SLOW; i++) {
      /* One more byte each 3 s; the server may have dropped it already. */
      ssize_t r = send(fd[i], "E", 1, MSG_NOSIGNAL);
      (void)r;
    }
  }
  for (int i = 0; i < SLOW; i++) close(fd[i]);
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
  cr_log_info("with %d trickling clients: %d of %d probes answered", SLOW,
              answered, asked);
  cr_assert_eq(answered, asked, "every probe answered");
}

/* Distinct worker pids among the "end" lines of rec, and the most jobs
 * one of them ran. */
static int pids_of(const char *rec, int *most) {
  int pid[256], count[256], n = 0;
  *most = 0;
  FILE *f = fopen(rec, "r");
  char line[512], what[16], id[128];
  long long ns;
  int p;
  unsigned a;
  while (f && fgets(line, sizeof line, f))
    if (sscanf(line, "%15s %127s %lld %d %u", what, id, &ns, &p, &a) == 5 &&
        !strcmp(what, "end")) {
      int k = 0;
      while (k < n && pid[k] != p) k++;
      if (k == n && n < 256) pid[n] = p, count[n++] = 0;
      if (k < n && ++count[k] > *most) *most = count[k];
    }
  if (f) fclose(f);
  return n;
}

Test(faults, workers_are_recycled_after_max_jobs, .timeout = 120) {
  char log[300], rec[300];
  pid_t w =
      tw_start_record("it.recycle", "max_jobs_per_worker = 3;", "", log, rec);
  cr_assert_gt(w, 0, "worker did not start");
  cr_assert_eq(tw_publish("it.recycle", 10, "job"), 0);
  int done[11], most;
  cr_assert_eq(tw_wait_all(rec, "job", done, 10, 30), 0);
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
  cr_assert_geq(pids_of(rec, &most), 4, "10 jobs, 3 per worker");
  cr_assert_leq(most, 3);
  cr_assert(!tw_wait_text(log, "while running a job", 0.1),
            "recycling is no crash");
}

Test(faults, workers_are_recycled_past_max_worker_rss, .timeout = 120) {
  char log[300], rec[300];
  int done[11], most;
  pid_t w = tw_start_record("it.recyclerss", "max_worker_rss = 100;",
                            "leak_kb = 40000;", log, rec);
  cr_assert_gt(w, 0, "worker did not start");
  cr_assert_eq(tw_publish("it.recyclerss", 6, "job"), 0);
  cr_assert_eq(tw_wait_all(rec, "job", done, 6, 60), 0);
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
  cr_assert(tw_wait_text(log, "its memory passed max_worker_rss", 0.1));
  cr_assert_geq(pids_of(rec, &most), 2, "a worker past 100 MiB was replaced");
  /* Checked after each job: past 100 MiB after its third, a worker may
   * still run the one it had already taken. */
  cr_assert_leq(most, 4, "no worker grew far past the limit");
}

/* Every header survives into the dead letter, however many; the handler
 * sees the first 1,024 and the operator is told once. */
Test(faults, a_dead_letter_keeps_all_of_1100_headers, .timeout = 120) {
  char log[300], rec[300];
  pid_t w =
      tw_start_record("it.manyhdr", "", "reject_prefix = \"many\";", log, rec);
  cr_assert_gt(w, 0, "worker did not start");
  enum { NH = 1100 };
  static amqp_table_entry_t h[NH];
  static char keys[NH][16];
  for (int i = 0; i < NH; i++) {
    snprintf(keys[i], sizeof keys[i], "k%d", i);
    h[i] = wr_entry_int(keys[i], i);
  }
  cr_assert_eq(publish_with("it.manyhdr", "many1", h, NH), 0);
  cr_assert(tw_wait_text(log, "dead-lettered", 30));
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
  cr_assert(tw_wait_text(
      log, "a job has 1100 headers: the handler sees the first 1024", 0.1));
  static char dump[256 * 1024];
  cr_assert_eq(tw_take_one("it.manyhdr.dlq", dump, sizeof dump), 1);
  int kept = 0;
  for (const char *p = dump; (p = strstr(p, "\nh.k")); p++) kept++;
  cr_assert_eq(kept, NH, "all %d application headers kept, got %d", NH, kept);
  cr_assert(strstr(dump, "h.k1099=1099\n"), "the last one too");
}

/* A 1 MiB job runs through a worker; one byte more is dead-lettered as
 * too_large before any worker sees it. */
Test(faults, max_body_dead_letters_a_larger_job_before_any_worker,
     .timeout = 120) {
  char log[300], rec[300];
  pid_t w = tw_start_record("it.maxbody", "max_body = 1048576;", "", log, rec);
  cr_assert_gt(w, 0, "worker did not start");
  const char *fits = "job1", *big = "job2";
  cr_assert_eq(publish_many("it.maxbody", &fits, 1, 1048576, NULL, 0), 0);
  cr_assert_eq(publish_many("it.maxbody", &big, 1, 1048577, NULL, 0), 0);
  cr_assert_eq(tw_wait_count(rec, "end", "job", 2, 1, 30), 1,
               "the 1 MiB job ran");
  cr_assert(tw_wait_text(log, "dead-lettered", 30));
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
  cr_assert(!tw_wait_text(rec, "start job2", 0.1),
            "the larger one never reached a worker");
  static char dump[8 << 20];
  cr_assert_eq(tw_take_one("it.maxbody.dlq", dump, sizeof dump), 1);
  cr_assert(strstr(dump, "id=job2\n"), "%.200s", dump);
  cr_assert(strstr(dump, "h.warren-dead-reason=too_large\n"));
  cr_assert(strstr(
      dump,
      "h.warren-last-error=body of 1048577 bytes is over max_body 1048576\n"));
}

/* SIGHUP (nothing to reload without signing), SIGUSR1 and SIGUSR2 are
 * logged and ignored: no drain, no death;
 * a handler's exit(3) while running a job is a crash, not "init() failed". */
Test(faults, stray_signals_and_a_handlers_exit_are_reported_as_they_are,
     .timeout = 120) {
  char log[300], rec[300];
  pid_t w = tw_start_record("it.signals",
                            "retry = { backoff = [0.1]; max_crashes = 1; };",
                            "exit_on = \"bye1\";", log, rec);
  cr_assert_gt(w, 0, "worker did not start");
  cr_assert_eq(kill(w, SIGHUP), 0);
  cr_assert_eq(kill(w, SIGUSR1), 0);
  cr_assert_eq(kill(w, SIGUSR2), 0);
  cr_assert(tw_wait_text(log, "signal 12", 10), "each is logged");
  cr_assert_eq(tw_publish("it.signals", 3, "job"), 0);
  int done[4];
  cr_assert_eq(tw_wait_all(rec, "job", done, 3, 30), 0, "still consuming");
  cr_assert(!tw_wait_text(log, "stopping", 0.1), "no drain was started");
  cr_assert_eq(tw_publish("it.signals", 1, "bye"), 0);
  cr_assert(tw_wait_text(log, "exited with status 3 while running a job", 30));
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0,
               "a clean stop after all that");
  cr_assert(!tw_wait_text(log, "init() failed", 0.1));
}

/* A refused login is an operator's error: said at error level each time,
 * and with worker.exit_after_refused_logins the worker gives up with
 * status 3 instead of waiting forever. */
Test(faults, a_refused_login_gives_up_when_asked, .timeout = 60) {
  char cfg[400], out[16384], args[500];
  snprintf(cfg, sizeof cfg, "%s/refused.cfg", tw_dir());
  FILE *f = fopen(cfg, "w");
  cr_assert(f);
  fprintf(f,
          "broker = { port = %d; user = \"guest\"; password = \"wrong\"; };\n"
          "worker = { reconnect_min = 0.1; reconnect_max = 0.2;\n"
          "           exit_after_refused_logins = 3; };\n"
          "handlers = ( { name = \"h\"; queue = \"it.refusedlogin\";\n"
          "  plugin = \"" TEST_HANDLER_DIR
          "/record.so\";\n"
          "  settings = { log = \"%s/rec\"; }; } );\n",
          tw_port(), tw_dir());
  fclose(f);
  /* Three refused logins take under a second; a worker that never gives
   * up is stopped by timeout (status 124) well before the test's own. */
  snprintf(args, sizeof args, "timeout 20 %s %s", WARREN_BIN, cfg);
  int rc = tw_sh(out, sizeof out, "%s 2>&1", args);
  cr_assert_eq(rc, 3, "exit status %d:\n%s", rc, out);
  cr_assert(strstr(out, "error [") && strstr(out, "ACCESS_REFUSED"), "%s", out);
  cr_assert(strstr(out, "giving up: the broker refused the login 3 time(s)"),
            "%s", out);
}

/* Wait until queue q holds no message, ready or unacknowledged (the
 * broker's own count, asked with rabbitmqctl); the last answer in out. */
static int settled(const char *q, char *out, size_t len, double timeout_s) {
  char want[200];
  snprintf(want, sizeof want, "\n%s\t0\t0\n", q);
  double until = wr_now() + timeout_s;
  do {
    out[0] = '\n';
    tw_ctl(out + 1, len - 1,
           "-q list_queues name messages_ready messages_unacknowledged");
    if (strstr(out, want)) return 1;
    sleep(1);
  } while (wr_now() < until);
  return 0;
}

/* The broker numbers a channel's confirms from 1 on every connection.
 * Breaks when Warren's publish sequence is not reset on a reconnect: the
 * retry and dead-letter copies made on the new connection would wait for
 * confirms that never come, and the failed job's original would stay
 * unacknowledged for ever. */
Test(faults, copies_made_after_a_reconnect_are_confirmed_on_the_new_connection,
     .timeout = 150) {
  char log[300], rec[300], out[4096];
  const char *q = "it.reconnect";
  cr_assert_eq(
      tw_own_queues(q, "it.reconnect.dlq", "it.reconnect.retry.100ms", NULL),
      0);
  pid_t w = tw_start_record(q,
                            "queue_type = \"classic\";\n"
                            "  retry = { max_attempts = 2; backoff = [0.1]; };",
                            "fail_suffix = \"f\";", log, rec);
  cr_assert_gt(w, 0, "worker did not start");
  /* Two copies confirmed on the first connection: a retry, a dead letter. */
  cr_assert_eq(tw_publish_raw(q, "before-f", NULL), 0);
  cr_assert(tw_wait_text(log, "job before-f dead-lettered", 30));
  cr_assert(settled(q, out, sizeof out, 30),
            "before-f's copies were confirmed on the first connection:%s", out);

  cr_assert_eq(
      tw_ctl(out, sizeof out, "close_all_connections 'a forced reconnect'"), 0,
      "%s", out);
  for (int i = 0; i < 300 && tw_occurrences(log, "consuming 1 queue(s)") < 2;
       i++)
    usleep(100 * 1000);
  cr_assert_eq(tw_occurrences(log, "consuming 1 queue(s)"), 2,
               "the worker came back on a new connection");

  /* Its retry and dead-letter copies go out on the new connection. */
  cr_assert_eq(tw_publish_raw(q, "after-f", NULL), 0);
  cr_assert(tw_wait_text(log, "job after-f attempt 1 failed", 30));
  cr_assert(tw_wait_text(log, "job after-f dead-lettered", 30));
  cr_assert(settled(q, out, sizeof out, 20),
            "after-f's copies were confirmed and its originals acked:%s", out);
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0, "clean stop");
  cr_assert_eq(tw_queue_len("it.reconnect.dlq"), 2,
               "one dead letter made on each connection");
  cr_assert_eq(tw_queue_len("it.reconnect.retry.100ms"), 0);
}
