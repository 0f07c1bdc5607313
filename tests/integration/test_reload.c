/*
 * Upgrading a handler without stopping the worker (docs/features.md
 * "Upgrading a handler"): a new plugin file renamed over the configured
 * path, then SIGHUP, against the real broker and under load. Every job
 * runs once, entirely under one version; later jobs run the new one; a
 * plugin that fails its check leaves the old one running.
 */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "support.h"

#define V1 TEST_HANDLER_DIR "/versioned_v1.so"
#define V2 TEST_HANDLER_DIR "/versioned_v2.so"
#define INIT_FAIL TEST_HANDLER_DIR "/init_fail.so"
#define BAD_ABI TEST_HANDLER_DIR "/bad_abi.so"

TW_SUITE(reload, 300);

#define JOBS 400

static int port_;
static char log_[300], rec_[300], plugin_[300];
static char body_[1 << 18];

/* Put a copy of `from` at the plugin's path the way docs/plugin-abi.md
 * says: write a new file, rename(2) it over the old one. */
static void deploy(const char *from) {
  char tmp[320], out[256];
  snprintf(tmp, sizeof tmp, "%s.new", plugin_);
  cr_assert_eq(tw_sh(out, sizeof out, "cp '%s' '%s'", from, tmp), 0);
  cr_assert_eq(rename(tmp, plugin_), 0);
}

static pid_t start(const char *q, const char *handler, int sleep_ms) {
  const char *dir = tw_dir();
  char text[4096];
  port_ = tw_free_port();
  snprintf(log_, sizeof log_, "%s/warren.log", dir);
  snprintf(rec_, sizeof rec_, "%s/rec", dir);
  snprintf(plugin_, sizeof plugin_, "%s/handler.so", dir);
  deploy(V1);
  snprintf(text, sizeof text,
           "health = { port = %d; snapshot_interval = 0.1; };\n"
           "handlers = ( { name = \"h\"; queue = \"%s\"; plugin = \"%s\";\n"
           "  %s\n  settings = { log = \"%s\"; sleep_ms = %d; }; } );\n",
           port_, q, plugin_, handler, rec_, sleep_ms);
  pid_t w = tw_warren_start(dir, text);
  cr_assert_gt(w, 0);
  cr_assert(tw_wait_text(log_, "consuming 1 queue(s)", 30), "worker started");
  return w;
}

/* /status/workers, parsed (freed by the caller). */
static cJSON *workers(void) {
  long code =
      tw_http(port_, NULL, "/status/workers", NULL, body_, sizeof body_);
  cr_assert_eq(code, 200, "GET /status/workers: %ld", code);
  cJSON *j = cJSON_Parse(body_);
  cr_assert(j, "not JSON: %s", body_);
  return j;
}

static cJSON *handler0(cJSON *j) {
  return cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "handlers"), 0);
}

static const char *text_of(cJSON *o, const char *k) {
  cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
  cr_assert(cJSON_IsString(v), "%s is not a string: %s", k, body_);
  return v->valuestring;
}

/* The version the handler's new jobs run, as /status/workers shows it. */
static void version_now(char *out, size_t len) {
  cJSON *j = workers();
  snprintf(out, len, "%s", text_of(handler0(j), "version"));
  cJSON_Delete(j);
}

/* Wait until the version shown is no longer `old` (the snapshot the HTTP
 * side serves is up to snapshot_interval old); the new one into out. */
static void version_after(const char *old, char *out, size_t len) {
  double until = wr_now() + 10;
  do {
    version_now(out, len);
    if (strcmp(out, old)) return;
    nanosleep(&(struct timespec){0, 50 * 1000 * 1000}, NULL);
  } while (wr_now() < until);
  cr_assert_fail("the version shown stayed %s", old);
}

/* Wait until every worker /status/workers lists runs `want`. */
static int workers_on(const char *want, double timeout_s) {
  double until = wr_now() + timeout_s;
  for (;;) {
    cJSON *j = workers();
    cJSON *w, *ws = cJSON_GetObjectItemCaseSensitive(handler0(j), "workers");
    int all = cJSON_GetArraySize(ws) > 0;
    cJSON_ArrayForEach(w, ws) {
      cJSON *pid = cJSON_GetObjectItemCaseSensitive(w, "pid");
      all &= cJSON_IsNumber(pid) && !strcmp(text_of(w, "version"), want);
    }
    cJSON_Delete(j);
    if (all) return 1;
    if (wr_now() > until) return 0;
    nanosleep(&(struct timespec){0, 50 * 1000 * 1000}, NULL);
  }
}

/* Every job j1..jN: its start and end lines, from one version and one
 * process; how many ran under v2, and the number of the last to start. */
typedef struct seen {
  char start_ver[JOBS + 1][8], end_ver[JOBS + 1][8];
  int start_pid[JOBS + 1], end_pid[JOBS + 1];
  int starts[JOBS + 1], ends[JOBS + 1];
  int order[JOBS], n; /* job numbers in the order they started */
} seen;

static void read_record(seen *s) {
  memset(s, 0, sizeof *s);
  FILE *f = fopen(rec_, "r");
  cr_assert(f, "no record file");
  char line[512], what[16], id[64], ver[8];
  int pid;
  while (fgets(line, sizeof line, f)) {
    if (sscanf(line, "%15s %63s %7s %d", what, id, ver, &pid) != 4) continue;
    if (id[0] != 'j') continue;
    int k = atoi(id + 1);
    if (k < 1 || k > JOBS) continue;
    if (!strcmp(what, "start")) {
      s->starts[k]++;
      snprintf(s->start_ver[k], 8, "%s", ver);
      s->start_pid[k] = pid;
      if (s->n < JOBS) s->order[s->n++] = k;
    } else if (!strcmp(what, "end")) {
      s->ends[k]++;
      snprintf(s->end_ver[k], 8, "%s", ver);
      s->end_pid[k] = pid;
    }
  }
  fclose(f);
}

/* The promise of the upgrade, checked on the record file: none lost, none
 * twice, none across two versions; the jobs after the switch ran v2. */
static void check_stream(void) {
  static seen s;
  read_record(&s);
  int v1 = 0, v2 = 0;
  for (int k = 1; k <= JOBS; k++) {
    cr_assert_eq(s.starts[k], 1, "job j%d started %d times", k, s.starts[k]);
    cr_assert_eq(s.ends[k], 1, "job j%d ended %d times", k, s.ends[k]);
    cr_assert_str_eq(s.start_ver[k], s.end_ver[k],
                     "job j%d started under %s and ended under %s", k,
                     s.start_ver[k], s.end_ver[k]);
    cr_assert_eq(s.start_pid[k], s.end_pid[k], "job j%d moved process", k);
    v1 += !strcmp(s.start_ver[k], "v1");
    v2 += !strcmp(s.start_ver[k], "v2");
  }
  cr_assert_eq(v1 + v2, JOBS);
  cr_assert_gt(v1, 0, "the reload came before any job ran");
  cr_assert_gt(v2, 0, "no job ran the new version");
  /* Once a job started under v2, only the few already given to an old
   * worker may start under v1 after it. */
  int first_v2 = -1, late_v1 = 0;
  for (int i = 0; i < s.n; i++) {
    int v = !strcmp(s.start_ver[s.order[i]], "v2");
    if (v && first_v2 < 0) first_v2 = i;
    if (!v && first_v2 >= 0) late_v1++;
  }
  cr_assert_leq(late_v1, 16, "%d jobs started under v1 after v2 began",
                late_v1);
  cr_assert_str_eq(s.start_ver[s.order[s.n - 1]], "v2",
                   "the last job ran the old version");
}

/* A swap in the middle of a stream: SIGHUP while jobs run in two worker
 * processes, four queued to each. */
static void swap_mid_stream(const char *q, const char *handler) {
  pid_t w = start(q, handler, 3);
  char before[32], after[32];
  version_now(before, sizeof before);
  cr_assert_eq(tw_publish(q, JOBS, "j"), 0);
  cr_assert_geq(tw_wait_count(rec_, "end", "j", JOBS, 100, 60), 100);
  deploy(V2);
  cr_assert_eq(kill(w, SIGHUP), 0);
  int done[JOBS + 1];
  cr_assert_eq(tw_wait_all(rec_, "j", done, JOBS, 120), 0, "jobs missing");
  cr_assert(tw_wait_text(log_, "reloaded, version ", 5), "no reload logged");
  version_after(before, after, sizeof after);
  check_stream();
  long code = tw_http(port_, NULL, "/metrics", NULL, body_, sizeof body_);
  cr_assert_eq(code, 200);
  cr_assert(strstr(body_, "warren_plugin_reloads_total{handler=\"h\"} 1\n"),
            "%s", body_);
  char info[128];
  snprintf(info, sizeof info,
           "warren_handler_info{handler=\"h\",version=\"%s\"} 1\n", after);
  cr_assert(strstr(body_, info), "no %s in %s", info, body_);
  cr_assert_eq(tw_wait_text(log_, "AddressSanitizer", 0), 0);
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
  /* Stopped by then: jobs held in retiring workers all went somewhere. */
  cr_assert_eq(tw_queue_len(q), 0);
}

Test(reload, a_plugin_swapped_mid_stream_loses_no_job_and_runs_none_twice) {
  swap_mid_stream("it.reload.swap", "concurrency = 2; prefetch = 8;");
}

Test(reload, every_worker_shows_the_new_version_in_status) {
  pid_t w = start("it.reload.status", "concurrency = 3; prefetch = 6;", 0);
  char before[32], after[32];
  version_now(before, sizeof before);
  cr_assert(workers_on(before, 10), "%s", body_);
  deploy(V2);
  kill(w, SIGHUP);
  cr_assert(tw_wait_text(log_, "reloaded, version ", 30), "no reload logged");
  version_after(before, after, sizeof after);
  cr_assert(workers_on(after, 20), "workers still on the old version: %s",
            body_);
  cr_assert_eq(tw_publish("it.reload.status", 20, "j"), 0);
  int done[21];
  cr_assert_eq(tw_wait_all(rec_, "j", done, 20, 30), 0);
  cr_assert_eq(tw_occurrences(rec_, " v2 "), 2 * 20 + 3 + 1,
               "20 jobs, 3 workers' and the probe's init under v2");
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
}

Test(reload, an_in_process_handler_switches_between_two_jobs) {
  swap_mid_stream("it.reload.inproc", "isolation = false; prefetch = 8;");
}

/* Also: the same file again is left alone, and a config change a reload
 * does not apply is logged. */
Test(reload, a_plugin_that_fails_its_check_leaves_the_old_one_running) {
  const char *q = "it.reload.refused";
  pid_t w = start(q, "concurrency = 2;", 0);
  char before[32], now[32];
  version_now(before, sizeof before);
  /* The same file again: nothing to do. */
  kill(w, SIGHUP);
  cr_assert(tw_wait_text(log_, "unchanged (version ", 10), "no 'unchanged'");
  /* Not a shared object. */
  char tmp[320];
  snprintf(tmp, sizeof tmp, "%s.new", plugin_);
  FILE *f = fopen(tmp, "w");
  cr_assert(f);
  fputs("not a plugin\n", f);
  fclose(f);
  cr_assert_eq(rename(tmp, plugin_), 0);
  kill(w, SIGHUP);
  cr_assert(tw_wait_text(log_, "cannot load", 10), "no reason logged");
  cr_assert(tw_wait_text(log_, "new plugin refused, version ", 0));
  /* Built for another ABI. */
  deploy(BAD_ABI);
  kill(w, SIGHUP);
  cr_assert(tw_wait_text(log_, "built for handler ABI", 10), "no ABI reason");
  /* Its init() fails. */
  deploy(INIT_FAIL);
  kill(w, SIGHUP);
  cr_assert(tw_wait_text(log_, "init() returned non-zero", 10),
            "no init reason");
  cr_assert_eq(tw_occurrences(log_, "new plugin refused, version "), 3);
  version_now(now, sizeof now);
  cr_assert_str_eq(before, now, "the version changed");
  cr_assert(workers_on(before, 5), "%s", body_);
  /* The old version still runs jobs. */
  cr_assert_eq(tw_publish(q, 20, "j"), 0);
  int done[21];
  cr_assert_eq(tw_wait_all(rec_, "j", done, 20, 30), 0);
  cr_assert_eq(tw_occurrences(rec_, " v1 "), 2 * 20 + 2, "jobs not under v1");
  /* The snapshot /metrics reads is up to snapshot_interval old, and the
   * 20 jobs may take less. */
  const char *three = "warren_plugin_reload_failures_total{handler=\"h\"} 3\n";
  double until = wr_now() + 5;
  do {
    cr_assert_eq(tw_http(port_, NULL, "/metrics", NULL, body_, sizeof body_),
                 200);
  } while (!strstr(body_, three) && wr_now() < until &&
           !nanosleep(&(struct timespec){0, 50 * 1000 * 1000}, NULL));
  cr_assert(strstr(body_, three), "%s", body_);
  cr_assert(strstr(body_, "warren_plugin_reloads_total{handler=\"h\"} 0\n"));
  /* A change a reload does not apply is said, not ignored. */
  cr_assert_eq(tw_occurrences(log_, "that needs a restart"), 0);
  char out[256];
  cr_assert_eq(tw_sh(out, sizeof out,
                     "sed -i 's/concurrency = 2;/concurrency = 3;/' "
                     "'%s/warren.cfg'",
                     tw_dir()),
               0);
  kill(w, SIGHUP);
  cr_assert(tw_wait_text(log_, "that needs a restart", 10),
            "a concurrency change passed in silence");
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
}
