/*
 * The circuit breaker against the real broker. The record plugin's jobs
 * fail while a file exists (fail_while) and run slowly while another does
 * (slow_while), so a test makes the handler sick and heals it at run
 * time. What is checked: failures and a slow percentile open the breaker;
 * while it is open no job starts, the consumer is gone, the queue keeps
 * every job (the prefetched ones given back, no attempt spent), readiness
 * stays 200 and says so, /status/workers, /metrics and the events say
 * so; it stays open across a reconnect; after the cool-down at most
 * trial_jobs trials run, a failing one opens it again, passing ones close
 * it and the backlog drains with nothing lost.
 */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "conn.h"
#include "support.h"

#define RECORD TEST_HANDLER_DIR "/record.so"

TW_SUITE(breaker, 180);

static char log_[300], rec_[300], sick_[300], body_[65536];
static int port_;

static void sleep_s(double s) {
  struct timespec d = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
  nanosleep(&d, NULL);
}

static void touch(const char *path, int on) {
  if (on) {
    FILE *f = fopen(path, "w");
    cr_assert(f, "cannot create %s", path);
    fclose(f);
  } else {
    unlink(path);
  }
}

/* A worker with handler "h" on queue q (record plugin), its HTTP side and
 * lifecycle events on; `handler` goes into the handler's group,
 * `settings` into its settings. The file sick_ is the plugin's switch. */
static pid_t start(const char *q, const char *handler, const char *settings) {
  const char *dir = tw_dir();
  char text[4096];
  port_ = tw_free_port();
  snprintf(log_, sizeof log_, "%s/warren.log", dir);
  snprintf(rec_, sizeof rec_, "%s/rec", dir);
  snprintf(sick_, sizeof sick_, "%s/sick", dir);
  snprintf(text, sizeof text,
           "health = { port = %d; probe_interval = 1.0; snapshot_interval = "
           "0.1; check_interval = 1.0; };\n"
           "events = { enabled = true; };\n"
           "handlers = ( { name = \"h\"; queue = \"%s\"; plugin = \"" RECORD
           "\";\n  %s\n  settings = { log = \"%s\"; %s }; } );\n",
           port_, q, handler, rec_, settings);
  pid_t w = tw_warren_start(dir, text);
  cr_assert_gt(w, 0);
  cr_assert(tw_wait_text(log_, "consuming 1 queue(s)", 30), "worker started");
  return w;
}

/* GET path, expecting code; the body parsed (freed by the caller). */
static cJSON *get(const char *path, long code) {
  long got = tw_http(port_, NULL, path, NULL, body_, sizeof body_);
  cr_assert_eq(got, code, "GET %s: %ld, want %ld: %s", path, got, code, body_);
  cJSON *o = cJSON_Parse(body_);
  cr_assert(o, "GET %s: not JSON: %s", path, body_);
  return o;
}

/* /status/workers' handler h's breaker. */
static cJSON *status_breaker(void) {
  cJSON *o = get("/status/workers", 200);
  cJSON *h = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "handlers"), 0);
  cJSON *b = cJSON_DetachItemFromObject(h, "breaker");
  cJSON_Delete(o);
  cr_assert(cJSON_IsObject(b), "the handler has its breaker in the status");
  return b;
}

static const char *s_of(const cJSON *o, const char *k) {
  const cJSON *v = cJSON_GetObjectItem(o, k);
  return cJSON_IsString(v) ? v->valuestring : "";
}

static double n_of(const cJSON *o, const char *k) {
  const cJSON *v = cJSON_GetObjectItem(o, k);
  return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

/* Wait until the status shows the breaker in state (up to timeout_s). */
static int wait_state(const char *state, double timeout_s) {
  double end = wr_now() + timeout_s;
  do {
    cJSON *b = status_breaker();
    int ok = !strcmp(s_of(b, "state"), state);
    cJSON_Delete(b);
    if (ok) return 1;
    sleep_s(0.1);
  } while (wr_now() < end);
  return 0;
}

/* The value of a /metrics sample line that starts with `sample ` (-1:
 * none). */
static double metric(const char *sample) {
  cr_assert_eq(tw_http(port_, NULL, "/metrics", NULL, body_, sizeof body_),
               200);
  char want[300];
  snprintf(want, sizeof want, "\n%s ", sample);
  const char *p = strstr(body_, want);
  return p ? atof(p + strlen(want)) : -1;
}

/* Lines "what ..." in the record file. */
static int lines(const char *what) {
  FILE *f = fopen(rec_, "r");
  if (!f) return 0;
  char line[512];
  size_t n = strlen(what);
  int total = 0;
  while (fgets(line, sizeof line, f))
    total += !strncmp(line, what, n) && line[n] == ' ';
  fclose(f);
  return total;
}

/* Wait until the record file has want lines "what ...". */
static int wait_lines(const char *what, int want, double timeout_s) {
  double end = wr_now() + timeout_s;
  while (lines(what) < want && wr_now() < end) sleep_s(0.05);
  return lines(what);
}

/* A queue of the test's own, bound to warren.events with key. */
static void bind_events(const char *q, const char *key) {
  amqp_connection_state_t c = tw_conn_confirming();
  cr_assert(c, "no connection to the test broker");
  amqp_exchange_declare(c, 1, amqp_cstring_bytes("warren.events"),
                        amqp_cstring_bytes("topic"), 0, 1, 0, 0,
                        amqp_empty_table);
  amqp_rpc_reply_t r1 = amqp_get_rpc_reply(c);
  amqp_queue_declare(c, 1, amqp_cstring_bytes(q), 0, 1, 0, 0, amqp_empty_table);
  amqp_rpc_reply_t r2 = amqp_get_rpc_reply(c);
  amqp_queue_bind(c, 1, amqp_cstring_bytes(q),
                  amqp_cstring_bytes("warren.events"), amqp_cstring_bytes(key),
                  amqp_empty_table);
  amqp_rpc_reply_t r3 = amqp_get_rpc_reply(c);
  wr_conn_close(c);
  cr_assert(r1.reply_type == AMQP_RESPONSE_NORMAL &&
                r2.reply_type == AMQP_RESPONSE_NORMAL &&
                r3.reply_type == AMQP_RESPONSE_NORMAL,
            "declaring and binding %s failed", q);
}

/* Every event in q so far (each message a JSON array), in order. */
static cJSON *events_in(const char *q) {
  cJSON *all = cJSON_CreateArray();
  char dump[8192];
  while (tw_get(q, 1, dump, sizeof dump)) {
    const char *b = strstr(dump, "body=");
    cr_assert(b, "%s", dump);
    b += 5;
    const char *e = strchr(b, '\n');
    cJSON *a = cJSON_ParseWithLength(b, e ? (size_t)(e - b) : strlen(b));
    cr_assert(cJSON_IsArray(a), "an events body is an array: %s", b);
    while (cJSON_GetArraySize(a))
      cJSON_AddItemToArray(all, cJSON_DetachItemFromArray(a, 0));
    cJSON_Delete(a);
  }
  return all;
}

/* The jobs prefixN, N = 1..n, as the record file tells them: each must
 * have ended once with attempt 1 or failed; returns how many ended. */
static int ended_at_first_attempt(const char *prefix, int n) {
  int ended = 0;
  for (int i = 1; i <= n; i++) {
    char id[64], needle[80];
    snprintf(id, sizeof id, "%s%d", prefix, i);
    FILE *f = fopen(rec_, "r");
    cr_assert(f);
    char line[512];
    int ends = 0, fails = 0;
    while (fgets(line, sizeof line, f)) {
      char what[16], lid[64];
      long long ns;
      int pid;
      unsigned attempt;
      if (sscanf(line, "%15s %63s %lld %d %u", what, lid, &ns, &pid,
                 &attempt) != 5 ||
          strcmp(lid, id))
        continue;
      if (!strcmp(what, "end")) {
        ends++;
        cr_assert_eq(attempt, 1,
                     "%s ran at attempt %u: a job given back unstarted must "
                     "not lose an attempt",
                     id, attempt);
      }
      fails += !strcmp(what, "fail");
    }
    fclose(f);
    snprintf(needle, sizeof needle, "%s", id);
    cr_assert(ends + fails >= 1, "%s never ran", needle);
    cr_assert_leq(ends, 1, "%s ran to its end twice", id);
    ended += ends;
  }
  return ended;
}

Test(breaker, failures_open_it_and_trials_close_it_with_nothing_lost,
     .timeout = 180) {
  enum { P = 10, N = 20 };
  const char *q = "it.breaker.fail";
  cr_assert_eq(tw_own_queues(q, "it.breaker.fail.retry.60000ms",
                             "it.breaker.fail.dlq", "it.breaker.ev1", NULL),
               0);
  bind_events("it.breaker.ev1", "h.breaker.*");
  snprintf(sick_, sizeof sick_, "%s/sick", tw_dir());
  touch(sick_, 1);
  char settings[400];
  /* A sick job fails after 50 ms (as a call to a database that times
   * out), so jobs are still prefetched when the breaker opens. */
  snprintf(settings, sizeof settings,
           "fail_while = \"%s/sick\"; slow_while = \"%s/sick\"; "
           "slow_while_ms = 50;",
           tw_dir(), tw_dir());
  pid_t w = start(q,
                  "prefetch = 10; concurrency = 1;\n"
                  "  retry = { max_attempts = 10; backoff = [60.0]; };\n"
                  "  breaker = { failure_rate = 0.5; window = 10; min_jobs = "
                  "4; cool_down = 4.0; trial_jobs = 3; };",
                  settings);
  cJSON *ready = get("/readyz", 200);
  cr_assert(cJSON_GetArraySize(cJSON_GetObjectItem(ready, "breakers")) == 0,
            "no breaker open at start: %s", body_);
  cJSON_Delete(ready);
  cr_assert_eq(metric("warren_breaker_state{handler=\"h\"}"), 0);

  /* P jobs prefetched at once: 4 failures open the breaker, and the jobs
   * still waiting go back to the queue. */
  cr_assert_eq(tw_publish(q, P, "p"), 0);
  cr_assert(tw_wait_text(log_, "circuit breaker open: failure rate", 20),
            "4 failures of 4 did not open the breaker");
  cr_assert(wait_state("open", 5));
  sleep_s(0.5);
  int fails = lines("fail"), starts = lines("start");
  cr_assert_geq(fails, 4);
  cr_assert_lt(fails, P, "every prefetched job ran: none was given back");
  cr_assert_eq(starts, fails, "a job was running when it opened");

  /* While open: new jobs wait in the queue, none starts, no consumer. */
  cr_assert_eq(tw_publish(q, N, "j"), 0);
  sleep_s(2.0);
  cr_assert_eq(lines("start"), starts, "a job started while it was open");
  cr_assert_eq(tw_queue_len(q), N + P - fails,
               "the queue holds the new and the given-back jobs");
  char out[4096];
  cr_assert_eq(tw_ctl(out, sizeof out, "list_consumers -q queue_name"), 0);
  cr_assert_null(strstr(out, q), "the open breaker's consumer is gone:\n%s",
                 out);
  ready = get("/readyz", 200); /* ready: the breaker protects a downstream */
  cJSON *open = cJSON_GetArrayItem(cJSON_GetObjectItem(ready, "breakers"), 0);
  cr_assert_str_eq(s_of(open, "handler"), "h", "%s", body_);
  cr_assert_str_eq(s_of(open, "state"), "open", "%s", body_);
  cr_assert(strstr(s_of(open, "message"), "failure rate 1.00 >= 0.50"), "%s",
            body_);
  cJSON_Delete(ready);
  cJSON *b = status_breaker();
  cr_assert_str_eq(s_of(b, "reason"), "failure_rate");
  cr_assert_eq(n_of(b, "opened"), 1);
  cr_assert_eq(n_of(b, "jobs_given_back"), P - fails);
  cr_assert(cJSON_IsString(cJSON_GetObjectItem(b, "trials_at")));
  cJSON_Delete(b);
  cr_assert_eq(metric("warren_breaker_state{handler=\"h\"}"), 1);
  cr_assert_eq(metric("warren_breaker_opened_total{handler=\"h\"}"), 1);
  cr_assert_eq(metric("warren_breaker_jobs_given_back_total{handler=\"h\"}"),
               P - fails);
  cJSON_Delete(get("/healthz", 200));

  /* Healed: after the cool-down, 3 trials pass, it closes and the backlog
   * drains; the given-back jobs run at their first attempt. */
  touch(sick_, 0);
  cr_assert(tw_wait_text(log_, "circuit breaker half-open", 10));
  cr_assert(tw_wait_text(log_, "circuit breaker closed: 3 trial job(s)", 20));
  static int done[N + 1];
  cr_assert_eq(tw_wait_all(rec_, "j", done, N, 30), 0,
               "the backlog did not drain");
  cr_assert_eq(ended_at_first_attempt("j", N), N);
  cr_assert_eq(ended_at_first_attempt("p", P), P - fails,
               "each prefetched job either failed or ran to its end");
  cr_assert_eq(metric("warren_breaker_state{handler=\"h\"}"), 0);
  cr_assert(wait_state("closed", 5));
  b = status_breaker();
  cr_assert_str_eq(s_of(b, "reason"), "trials_passed");
  cJSON_Delete(b);

  /* The events: opened (why, measured against the bound), half_open,
   * closed. */
  sleep_s(0.5);
  cJSON *ev = events_in("it.breaker.ev1");
  cr_assert_eq(cJSON_GetArraySize(ev), 3, "three breaker events: %s",
               cJSON_PrintUnformatted(ev));
  const cJSON *e0 = cJSON_GetArrayItem(ev, 0);
  cr_assert_str_eq(s_of(e0, "event"), "breaker.opened");
  cr_assert_str_eq(s_of(e0, "handler"), "h");
  cr_assert_str_eq(s_of(e0, "queue"), q);
  cr_assert_str_eq(s_of(e0, "state"), "open");
  cr_assert_str_eq(s_of(e0, "reason"), "failure_rate");
  cr_assert_float_eq(n_of(e0, "value"), 1.0, 1e-9);
  cr_assert_float_eq(n_of(e0, "bound"), 0.5, 1e-9);
  cr_assert_str_eq(s_of(cJSON_GetArrayItem(ev, 1), "event"),
                   "breaker.half_open");
  cr_assert_str_eq(s_of(cJSON_GetArrayItem(ev, 2), "event"), "breaker.closed");
  cr_assert_str_eq(s_of(cJSON_GetArrayItem(ev, 2), "reason"), "trials_passed");
  cJSON_Delete(ev);
  /* The failed ones wait in their retry queue: none lost. */
  cr_assert_eq(tw_queue_len("it.breaker.fail.retry.60000ms"), fails);
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
}

Test(breaker, a_slow_percentile_opens_it_and_it_stays_open_across_a_reconnect,
     .timeout = 180) {
  enum { N = 12 };
  const char *q = "it.breaker.slow";
  cr_assert_eq(tw_own_queues(q, NULL), 0);
  char settings[400];
  snprintf(settings, sizeof settings,
           "slow_while = \"%s/sick\"; slow_while_ms = 300;", tw_dir());
  snprintf(sick_, sizeof sick_, "%s/sick", tw_dir());
  touch(sick_, 1);
  pid_t w = start(q,
                  "prefetch = 4; concurrency = 2;\n"
                  "  breaker = { failure_rate = 0.0; slow_ms = 150; "
                  "slow_percentile = 0.5; window = 4; min_jobs = 4; "
                  "cool_down = 120.0; };",
                  settings);
  cr_assert_eq(tw_publish(q, N, "s"), 0);
  cr_assert(tw_wait_text(log_, "circuit breaker open: p50 duration", 20),
            "slow jobs did not open the breaker");
  cr_assert(wait_state("open", 5));
  cJSON *b = status_breaker();
  cr_assert_str_eq(s_of(b, "reason"), "slow");
  cJSON_Delete(b);
  /* Jobs running when it opened finish; then nothing starts. */
  sleep_s(1.0);
  int starts = lines("start");
  cr_assert_eq(lines("end"), starts, "a job still runs");
  cr_assert_lt(starts, N);
  /* A reconnect keeps it open: no consumer, no job, and nothing delivered
   * to be given back (the new connection does not consume at all). */
  double given_back =
      metric("warren_breaker_jobs_given_back_total{handler=\"h\"}");
  char out[4096];
  cr_assert_eq(tw_ctl(out, sizeof out, "close_all_connections 'breaker test'"),
               0, "%s", out);
  for (int i = 0; i < 300 && tw_occurrences(log_, "consuming 1 queue(s)") < 2;
       i++)
    sleep_s(0.1);
  cr_assert_eq(tw_occurrences(log_, "consuming 1 queue(s)"), 2,
               "the worker did not reconnect");
  sleep_s(1.5);
  cr_assert_eq(lines("start"), starts, "a job started after the reconnect");
  cr_assert_eq(tw_ctl(out, sizeof out, "list_consumers -q queue_name"), 0);
  cr_assert_null(strstr(out, q), "consumed again while open:\n%s", out);
  cr_assert_eq(tw_queue_len(q), N - starts, "the queue keeps every job");
  cr_assert_eq(metric("warren_breaker_state{handler=\"h\"}"), 1);
  cr_assert_eq(metric("warren_breaker_jobs_given_back_total{handler=\"h\"}"),
               given_back, "jobs were delivered after the reconnect");
  cJSON_Delete(get("/readyz", 200));
  /* A stop while open is clean; the jobs stay queued. */
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
  cr_assert_eq(tw_queue_len(q), N - starts);
}

Test(breaker, a_failing_trial_opens_it_again_and_trials_are_bounded,
     .timeout = 180) {
  enum { N = 12 };
  const char *q = "it.breaker.trial";
  cr_assert_eq(tw_own_queues(q, "it.breaker.trial.retry.60000ms", NULL), 0);
  char settings[400];
  /* A sick job fails after 50 ms (as a call to a database that times
   * out), so jobs are still prefetched when the breaker opens. */
  snprintf(settings, sizeof settings,
           "fail_while = \"%s/sick\"; slow_while = \"%s/sick\"; "
           "slow_while_ms = 50;",
           tw_dir(), tw_dir());
  snprintf(sick_, sizeof sick_, "%s/sick", tw_dir());
  touch(sick_, 1);
  pid_t w = start(q,
                  "prefetch = 6; concurrency = 3;\n"
                  "  retry = { max_attempts = 10; backoff = [60.0]; };\n"
                  "  breaker = { window = 2; min_jobs = 2; cool_down = 2.0; "
                  "trial_jobs = 2; };",
                  settings);
  cr_assert_eq(tw_publish(q, N, "t"), 0);
  cr_assert(tw_wait_text(log_, "circuit breaker open: failure rate", 20));
  sleep_s(0.5);
  int starts = lines("start");
  /* Still sick: the trials fail and it opens again. */
  cr_assert(tw_wait_text(log_, "circuit breaker half-open", 10));
  cr_assert(tw_wait_text(log_, "circuit breaker open: a trial job failed", 10));
  sleep_s(0.5);
  int trials = lines("start") - starts;
  cr_assert(trials >= 1 && trials <= 2,
            "%d jobs ran while half-open; trial_jobs is 2", trials);
  cr_assert_eq(metric("warren_breaker_opened_total{handler=\"h\"}"), 2);
  /* Healed: it closes and every job ends or waits for its retry. */
  touch(sick_, 0);
  cr_assert(tw_wait_text(log_, "circuit breaker closed", 20));
  int fails = lines("fail");
  cr_assert_eq(wait_lines("end", N - fails, 30), N - fails,
               "the jobs that did not fail did not all end");
  cr_assert_eq(ended_at_first_attempt("t", N), N - fails);
  cr_assert_eq(tw_queue_len("it.breaker.trial.retry.60000ms"), fails);
  cr_assert_eq(tw_queue_len(q), 0);
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
}
