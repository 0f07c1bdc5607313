/*
 * Lifecycle events (docs/events.md) as a subscriber sees them: the test
 * binds its own queue to warren.events and checks the exact sequence and
 * fields of a job that is retried once and then succeeds, and of one that
 * is dead-lettered; `warren events` tails them with its filters; and the
 * dashboard consumer of docs/features.md and docs/events_dashboard.py keeps
 * each job's last state.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "clock.h"
#include "conn.h"
#include "support.h"

TW_SUITE(events, 120);

static char log_[300], rec[300];

/* A queue of the test's own, bound to warren.events with key. */
static void bind_queue(const char *q, const char *key) {
  amqp_connection_state_t c = tw_conn_confirming();
  cr_assert(c, "no connection to the test broker");
  amqp_exchange_declare(c, 1, amqp_cstring_bytes("warren.events"),
                        amqp_cstring_bytes("topic"), 0, 1, 0, 0,
                        amqp_empty_table);
  amqp_rpc_reply_t r1 = amqp_get_rpc_reply(c);
  amqp_queue_declare(c, 1, amqp_cstring_bytes(q), 0, 0, 0, 0, amqp_empty_table);
  amqp_rpc_reply_t r2 = amqp_get_rpc_reply(c);
  amqp_queue_purge(c, 1, amqp_cstring_bytes(q));
  amqp_queue_bind(c, 1, amqp_cstring_bytes(q),
                  amqp_cstring_bytes("warren.events"), amqp_cstring_bytes(key),
                  amqp_empty_table);
  amqp_rpc_reply_t r3 = amqp_get_rpc_reply(c);
  wr_conn_close(c);
  int ok = r1.reply_type == AMQP_RESPONSE_NORMAL &&
           r2.reply_type == AMQP_RESPONSE_NORMAL &&
           r3.reply_type == AMQP_RESPONSE_NORMAL;
  cr_assert(ok, "declaring and binding %s failed", q);
}

/* Every event in q's messages, in order, into one array; each message
 * must be a JSON array of 1.. events. Waits until `until` is the event
 * of one of them (NULL: until want events) or timeout_s. */
static cJSON *collect(const char *q, const char *until, int want,
                      double timeout_s) {
  cJSON *all = cJSON_CreateArray();
  amqp_connection_state_t c = tw_conn_confirming();
  cr_assert(c);
  double end = wr_now() + timeout_s;
  int done = 0;
  while (!done && wr_now() < end) {
    amqp_maybe_release_buffers(c);
    amqp_rpc_reply_t r = amqp_basic_get(c, 1, amqp_cstring_bytes(q), 1);
    if (r.reply_type != AMQP_RESPONSE_NORMAL ||
        r.reply.id != AMQP_BASIC_GET_OK_METHOD) {
      nanosleep(&(struct timespec){0, 50 * 1000 * 1000}, NULL);
      continue;
    }
    amqp_message_t m;
    cr_assert_eq(amqp_read_message(c, 1, &m, 0).reply_type,
                 AMQP_RESPONSE_NORMAL);
    const char *ct = m.properties._flags & AMQP_BASIC_CONTENT_TYPE_FLAG
                         ? (const char *)m.properties.content_type.bytes
                         : "";
    int json_type = !strncmp(ct, "application/json", 16);
    int transient = (m.properties._flags & AMQP_BASIC_DELIVERY_MODE_FLAG) &&
                    m.properties.delivery_mode == 1;
    cr_assert(json_type && transient,
              "an events message is application/json and transient");
    cJSON *a = cJSON_ParseWithLength(m.body.bytes, m.body.len);
    int n = cJSON_GetArraySize(a);
    cr_assert(cJSON_IsArray(a) && n >= 1,
              "a body is a JSON array of events: %.*s", (int)m.body.len,
              (const char *)m.body.bytes);
    while (cJSON_GetArraySize(a)) {
      cJSON *o = cJSON_DetachItemFromArray(a, 0);
      const cJSON *e = cJSON_GetObjectItem(o, "event");
      if (until && cJSON_IsString(e) && !strcmp(e->valuestring, until))
        done = 1;
      cJSON_AddItemToArray(all, o);
    }
    cJSON_Delete(a);
    amqp_destroy_message(&m);
    if (!until && cJSON_GetArraySize(all) >= want) done = 1;
  }
  wr_conn_close(c);
  return all;
}

static const char *s_of(const cJSON *o, const char *k) {
  const cJSON *v = cJSON_GetObjectItem(o, k);
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

static double n_of(const cJSON *o, const char *k) {
  const cJSON *v = cJSON_GetObjectItem(o, k);
  return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

/* The events of job id, as "event attempt" words, space-separated. */
static void sequence(const cJSON *all, const char *id, char *out, size_t len) {
  out[0] = '\0';
  const cJSON *o;
  cJSON_ArrayForEach(o, all) {
    const char *j = s_of(o, "job_id");
    if (!j || strcmp(j, id)) continue;
    size_t l = strlen(out);
    snprintf(out + l, len - l, "%s%s/%d", l ? " " : "", s_of(o, "event"),
             (int)n_of(o, "attempt"));
  }
}

/* The n-th event of job id named ev. */
static const cJSON *event_of(const cJSON *all, const char *id, const char *ev,
                             int nth) {
  const cJSON *o;
  cJSON_ArrayForEach(o, all) {
    const char *j = s_of(o, "job_id"), *e = s_of(o, "event");
    if (j && e && !strcmp(j, id) && !strcmp(e, ev) && nth-- == 0) return o;
  }
  return NULL;
}

/* What every job event carries. */
static void check_common(const cJSON *all, const char *id, pid_t w,
                         const char *queue) {
  char host[256];
  gethostname(host, sizeof host);
  double last = 0;
  const cJSON *o;
  cJSON_ArrayForEach(o, all) {
    const char *j = s_of(o, "job_id");
    if (!j || strcmp(j, id)) continue;
    const char *h = s_of(o, "hostname"), *hd = s_of(o, "handler"),
               *q = s_of(o, "queue");
    double pid = n_of(o, "pid"), t = n_of(o, "time");
    cr_assert(h && !strcmp(h, host), "hostname %s", h ? h : "(none)");
    cr_assert_eq((pid_t)pid, w, "pid");
    cr_assert(hd && !strcmp(hd, "h"), "handler");
    cr_assert(q && !strcmp(q, queue), "queue");
    double now = (double)time(NULL);
    cr_assert(t > now - 120 && t <= now + 1 && t >= last,
              "time %.3f: Unix seconds, in order", t);
    last = t;
    cr_assert_null(cJSON_GetObjectItem(o, "trace_id"), "not traced");
  }
}

/* Breaks when an event of a retried job is missing, doubled, out of
 * order or says the wrong thing: a dashboard would show a wrong state. */
Test(events, a_job_retried_once_then_succeeding_tells_its_exact_sequence) {
  bind_queue("it.ev.sub1", "h.job.*");
  setenv("WARREN_EVENTS_ENABLED", "true", 1);
  int hport = tw_free_port();
  char hp[16];
  snprintf(hp, sizeof hp, "%d", hport);
  setenv("WARREN_HEALTH_PORT", hp, 1);
  pid_t w = tw_start_record(
      "it.ev.retry",
      "retry = { max_attempts = 3; backoff = [0.2]; jitter = 0.0; };",
      "fail_below = 2;", log_, rec);
  cr_assert(w > 0);
  cr_assert_eq(tw_publish("it.ev.retry", 1, "flaky"), 0);
  cJSON *all = collect("it.ev.sub1", "job.succeeded", 0, 30);
  char seq[1024];
  sequence(all, "flaky1", seq, sizeof seq);
  cr_log_info("sequence: %s", seq);
  cr_assert_str_eq(seq,
                   "job.received/1 job.started/1 job.retried/1 "
                   "job.received/2 job.started/2 job.succeeded/2");
  check_common(all, "flaky1", w, "it.ev.retry");
  const cJSON *rt = event_of(all, "flaky1", "job.retried", 0);
  const char *out = s_of(rt, "outcome"), *err = s_of(rt, "error");
  double delay = n_of(rt, "delay"), dur = n_of(rt, "duration");
  cr_assert(out && !strcmp(out, "failed"), "retried: outcome %s", out);
  cr_assert(err && !strcmp(err, "handler returned retry"), "retried: error %s",
            err);
  cr_assert(delay > 0.199 && delay < 0.201, "retried: delay %g", delay);
  cr_assert(dur >= 0 && dur < 5, "retried: duration %g", dur);
  cr_assert_null(cJSON_GetObjectItem(rt, "reason"));
  const cJSON *ok = event_of(all, "flaky1", "job.succeeded", 0);
  out = s_of(ok, "outcome");
  dur = n_of(ok, "duration");
  cr_assert(out && !strcmp(out, "acked"), "succeeded: outcome %s", out);
  cr_assert(dur >= 0 && dur < 5, "succeeded: duration %g", dur);
  cr_assert_null(cJSON_GetObjectItem(ok, "error"));
  const cJSON *rc = event_of(all, "flaky1", "job.received", 0);
  cr_assert_null(cJSON_GetObjectItem(rc, "outcome"));
  cr_assert_null(cJSON_GetObjectItem(rc, "duration"));
  cJSON_Delete(all);
  /* Counted on /metrics and /api/health (snapshots every 0.5 s): the six
   * job events and worker.online at least, none dropped. */
  static char page[65536];
  long published = 0, full = -1, broker = -1;
  for (int i = 0; i < 40 && published < 7; i++) {
    nanosleep(&(struct timespec){0, 100 * 1000 * 1000}, NULL);
    if (tw_http(hport, NULL, "/metrics", NULL, page, sizeof page) != 200)
      continue;
#define AFTER(s) (strstr(page, s) ? strstr(page, s) + sizeof s - 1 : NULL)
    const char *p = AFTER("\nwarren_events_published_total ");
    const char *f = AFTER("{cause=\"queue_full\"} ");
    const char *b = AFTER("{cause=\"broker_unavailable\"} ");
    if (p) published = atol(p);
    if (f) full = atol(f);
    if (b) broker = atol(b);
  }
  cr_assert_geq(published, 7, "published %ld", published);
  cr_assert_eq(full, 0);
  cr_assert_eq(broker, 0);
  long st = tw_http(hport, NULL, "/api/health", NULL, page, sizeof page);
  cr_assert_eq(st, 200);
  cJSON *h = cJSON_Parse(page);
  const cJSON *ev = cJSON_GetObjectItem(h, "events");
  cr_assert(cJSON_IsTrue(cJSON_GetObjectItem(ev, "connected")), "%s", page);
  cJSON_Delete(h);
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
  tw_delete_queue("it.ev.sub1");
}

/* Breaks when the final failure or the dead letter is not told, is told
 * before the copy is safe, or comes in the wrong order. The retry is due
 * after 10 ms, so attempt 2 is received while attempt 1's end still
 * waits to be sent (flush_interval 0.1 s): its order must hold. */
Test(events, a_dead_lettered_job_tells_failed_then_dead_lettered) {
  bind_queue("it.ev.sub2", "#");
  setenv("WARREN_EVENTS_ENABLED", "true", 1);
  pid_t w = tw_start_record(
      "it.ev.dead",
      "retry = { max_attempts = 2; backoff = [0.01]; jitter = 0.0; };",
      "fail_on = \"doomed1\";", log_, rec);
  cr_assert(w > 0);
  cr_assert_eq(tw_publish("it.ev.dead", 1, "doomed"), 0);
  cJSON *all = collect("it.ev.sub2", "job.dead_lettered", 0, 30);
  char seq[1024];
  sequence(all, "doomed1", seq, sizeof seq);
  cr_log_info("sequence: %s", seq);
  cr_assert_str_eq(seq,
                   "job.received/1 job.started/1 job.retried/1 "
                   "job.received/2 job.started/2 job.failed/2 "
                   "job.dead_lettered/2");
  check_common(all, "doomed1", w, "it.ev.dead");
  const cJSON *f = event_of(all, "doomed1", "job.failed", 0);
  const char *out = s_of(f, "outcome"), *err = s_of(f, "error"),
             *why = s_of(f, "reason");
  cr_assert(out && !strcmp(out, "failed"), "failed: outcome %s", out);
  cr_assert(err && !strcmp(err, "fails on purpose (attempt 2)"),
            "failed: error %s", err);
  cr_assert(why && !strcmp(why, "max-attempts"), "failed: reason %s", why);
  const cJSON *d = event_of(all, "doomed1", "job.dead_lettered", 0);
  why = s_of(d, "reason");
  cr_assert(why && !strcmp(why, "max-attempts"), "dead_lettered: reason %s",
            why);
  /* The dead letter is in the DLQ when its event is out. */
  int in_dlq = tw_queue_len("it.ev.dead.dlq");
  cr_assert_eq(in_dlq, 1);
  /* worker.online came before, worker.offline comes at a clean stop. */
  const cJSON *first = cJSON_GetArrayItem(all, 0);
  const char *e0 = s_of(first, "event");
  cr_assert(e0 && !strcmp(e0, "worker.online"), "first event %s", e0);
  cJSON_Delete(all);
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
  all = collect("it.ev.sub2", "worker.offline", 0, 10);
  int n = cJSON_GetArraySize(all);
  const char *last = n ? s_of(cJSON_GetArrayItem(all, n - 1), "event") : NULL;
  cr_assert(last && !strcmp(last, "worker.offline"), "last event %s",
            last ? last : "(none)");
  cJSON_Delete(all);
  tw_delete_queue("it.ev.sub2");
}

/* Start `warren ARGS...` with stdout and stderr to files in the test's
 * folder; it dies with the test. */
static pid_t spawn(char *const argv[], const char *out, const char *err) {
  pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (!freopen(out, "w", stdout) || !freopen(err, "w", stderr)) _exit(127);
    execv(WARREN_BIN, argv);
    _exit(127);
  }
  return pid;
}

/* Breaks when a revoked job is not told as revoked, is told before its
 * dead letter is safe, or runs: `warren revoke` and the events together. */
Test(events, a_revoked_job_tells_received_revoked_dead_lettered) {
  bind_queue("it.ev.sub4", "h.job.*");
  setenv("WARREN_EVENTS_ENABLED", "true", 1);
  int hport = tw_free_port();
  char hp[16];
  snprintf(hp, sizeof hp, "%d", hport);
  setenv("WARREN_HEALTH_PORT", hp, 1);
  pid_t w = tw_start_record("it.ev.revoked", "", "", log_, rec);
  cr_assert(w > 0);
  char cmd[600], out[4096];
  snprintf(cmd, sizeof cmd, "revoke %s/warren.cfg gone1", tw_dir());
  int rc = tw_warren_cli(out, sizeof out, cmd);
  cr_assert_eq(rc, 0, "%s", out);
  cr_assert(tw_wait_text(log_, "revoke: 1 id(s)", 20), "not applied");
  cr_assert_eq(tw_publish("it.ev.revoked", 1, "gone"), 0);
  cJSON *all = collect("it.ev.sub4", "job.dead_lettered", 0, 30);
  char seq[1024];
  sequence(all, "gone1", seq, sizeof seq);
  cr_log_info("sequence: %s", seq);
  cr_assert_str_eq(seq, "job.received/1 job.revoked/1 job.dead_lettered/1");
  const cJSON *r = event_of(all, "gone1", "job.revoked", 0);
  const char *out_s = s_of(r, "outcome"), *why = s_of(r, "reason");
  cr_assert(out_s && !strcmp(out_s, "revoked"), "outcome %s", out_s);
  cr_assert(why && !strcmp(why, "revoked"), "reason %s", why);
  cJSON_Delete(all);
  cr_assert_not(tw_wait_text(rec, "start gone1", 0), "a revoked job ran");
  /* Counted as an outcome of its own on /metrics (snapshots: 0.5 s). */
  static char page[65536];
  const char *want = "warren_jobs_total{handler=\"h\",outcome=\"revoked\"} 1\n";
  int seen = 0;
  for (int i = 0; i < 40 && !seen; i++) {
    nanosleep(&(struct timespec){0, 100 * 1000 * 1000}, NULL);
    seen = tw_http(hport, NULL, "/metrics", NULL, page, sizeof page) == 200 &&
           strstr(page, want);
  }
  cr_assert(seen, "no %s in\n%s", want, page);
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
  tw_delete_queue("it.ev.sub4");
}

/* Breaks when `warren events` misses an event, lets another job's or
 * handler's through its filters, or does not stop cleanly on SIGINT. */
Test(events, warren_events_tails_one_job_and_stops_on_sigint) {
  setenv("WARREN_EVENTS_ENABLED", "true", 1);
  pid_t w = tw_start_record("it.ev.cli", "", "", log_, rec);
  cr_assert(w > 0);
  char cfg[400], out[400], err[400], json_out[400], json_err[400];
  snprintf(cfg, sizeof cfg, "%s/warren.cfg", tw_dir());
  snprintf(out, sizeof out, "%s/tail.out", tw_dir());
  snprintf(err, sizeof err, "%s/tail.err", tw_dir());
  snprintf(json_out, sizeof json_out, "%s/tail-json.out", tw_dir());
  snprintf(json_err, sizeof json_err, "%s/tail-json.err", tw_dir());
  char *human[] = {WARREN_BIN, "events", cfg, "--job", "cli2", NULL};
  char *json[] = {WARREN_BIN, "events", cfg, "--handler", "h", "--json", NULL};
  pid_t t1 = spawn(human, out, err), t2 = spawn(json, json_out, json_err);
  cr_assert(tw_wait_text(err, "events: listening", 10), "warren events ready");
  cr_assert(tw_wait_text(json_err, "events: listening", 10));
  cr_assert_eq(tw_publish("it.ev.cli", 3, "cli"), 0);
  cr_assert(tw_wait_text(json_out, "\"job_id\":\"cli3\"", 20));
  cr_assert(tw_wait_text(out, "job.succeeded", 20), "human line for cli2");
  kill(t1, SIGINT);
  kill(t2, SIGTERM);
  int rc1 = tw_warren_stop(t1, 0, 10), rc2 = tw_warren_stop(t2, 0, 10);
  cr_assert_eq(rc1, 0, "warren events exits 0 on SIGINT");
  cr_assert_eq(rc2, 0, "warren events exits 0 on SIGTERM");
  /* --job cli2: its three events, one line each, and nothing else. */
  FILE *f = fopen(out, "r");
  cr_assert(f);
  char line[1024], events[256] = "";
  int lines = 0;
  while (fgets(line, sizeof line, f)) {
    lines++;
    cr_assert(strstr(line, " h job.") && strstr(line, "job_id=cli2 "),
              "a line of job cli2 from handler h: %s", line);
    char ev[64];
    if (sscanf(strstr(line, " h ") + 3, "%63s", ev) == 1) {
      strcat(events, ev);
      strcat(events, " ");
    }
  }
  fclose(f);
  cr_assert_eq(lines, 3);
  cr_assert_str_eq(events, "job.received job.started job.succeeded ");
  /* --handler h --json: every job's events as JSON, no worker events. */
  f = fopen(json_out, "r");
  cr_assert(f);
  int n = 0, bad = 0;
  while (fgets(line, sizeof line, f)) {
    cJSON *o = cJSON_Parse(line);
    const char *e = s_of(o, "event");
    if (!e || strncmp(e, "job.", 4)) bad++;
    n++;
    cJSON_Delete(o);
  }
  fclose(f);
  cr_assert_eq(bad, 0, "only job events of handler h");
  cr_assert_eq(n, 9, "3 jobs x 3 events");
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
}

/* Breaks when the dashboard consumer of docs/features.md and
 * docs/events_dashboard.py no longer runs against real events (it keeps each
 * job's last event). */
Test(events, the_readme_dashboard_keeps_each_jobs_last_state) {
  const char *py = tw_python();
  setenv("WARREN_EVENTS_ENABLED", "true", 1);
  pid_t w = tw_start_record("it.ev.dash", "", "", log_, rec);
  cr_assert(w > 0);
  char out[400], err[400], port[16];
  snprintf(out, sizeof out, "%s/dash.out", tw_dir());
  snprintf(err, sizeof err, "%s/dash.err", tw_dir());
  snprintf(port, sizeof port, "%d", tw_port());
  pid_t d = fork();
  if (d == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (!freopen(out, "w", stdout) || !freopen(err, "w", stderr)) _exit(127);
    char url[100];
    snprintf(url, sizeof url, "amqp://guest:guest@127.0.0.1:%s/%%2F", port);
    setenv("AMQP_URL", url, 1);
    setenv("DASHBOARD_EXIT_AFTER", "dash3", 1);
    execlp(py, py, "-u", WARREN_SOURCE_DIR "/docs/events_dashboard.py",
           (char *)NULL);
    _exit(127);
  }
  cr_assert(tw_wait_text(out, "listening", 15), "the dashboard started");
  cr_assert_eq(tw_publish("it.ev.dash", 3, "dash"), 0);
  int rc = tw_warren_stop(d, 0, 30);
  cr_assert_eq(rc, 0, "the dashboard exits once dash3 succeeded");
  cr_assert(tw_wait_text(out, "dash1 job.succeeded", 1));
  cr_assert(tw_wait_text(out, "dash3 job.succeeded", 1));
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
}

/* Breaks when events that cannot be published hold up jobs, or are lost
 * without being counted: here the exchange exists with another type, so
 * the events connection is refused its declare and never opens. */
Test(events, jobs_run_while_events_cannot_be_sent_and_the_drops_are_counted) {
  amqp_connection_state_t c = tw_conn_confirming();
  cr_assert(c);
  amqp_exchange_declare(c, 1, amqp_cstring_bytes("it.ev.fanout"),
                        amqp_cstring_bytes("fanout"), 0, 0, 0, 0,
                        amqp_empty_table);
  int declared = amqp_get_rpc_reply(c).reply_type == AMQP_RESPONSE_NORMAL;
  wr_conn_close(c);
  cr_assert(declared);
  setenv("WARREN_EVENTS_ENABLED", "true", 1);
  setenv("WARREN_EVENTS_EXCHANGE", "it.ev.fanout", 1);
  int hport = tw_free_port();
  char hp[16];
  snprintf(hp, sizeof hp, "%d", hport);
  setenv("WARREN_HEALTH_PORT", hp, 1);
  pid_t w = tw_start_record("it.ev.nowhere", "", "", log_, rec);
  cr_assert(w > 0);
  cr_assert(tw_wait_text(log_, "events: cannot connect", 10),
            "the refused declare is logged");
  cr_assert_eq(tw_publish("it.ev.nowhere", 5, "nw"), 0);
  int done[6] = {0};
  int missing = tw_wait_all(rec, "nw", done, 5, 20);
  cr_assert_eq(missing, 0, "every job ran");
  static char page[65536];
  long published = -1, dropped = 0;
  for (int i = 0; i < 40 && dropped < 15; i++) {
    nanosleep(&(struct timespec){0, 100 * 1000 * 1000}, NULL);
    if (tw_http(hport, NULL, "/metrics", NULL, page, sizeof page) != 200)
      continue;
#define AFTER2(s) (strstr(page, s) ? strstr(page, s) + sizeof s - 1 : NULL)
    const char *p = AFTER2("\nwarren_events_published_total ");
    const char *b = AFTER2("{cause=\"broker_unavailable\"} ");
    if (p) published = atol(p);
    if (b) dropped = atol(b);
  }
  cr_assert_eq(published, 0);
  cr_assert_geq(dropped, 15, "5 jobs x 3 events dropped, counted: %ld",
                dropped);
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
}

/* A slot is reused job after job at prefetch 1: job.received is told
 * before Warren has read the job's trace context (docs/events.md), so it
 * carries no trace id, not the previous job's; job.started carries the
 * job's own. */
Test(events, job_received_never_carries_the_previous_jobs_trace_id) {
  bind_queue("it.ev.sub6", "h.job.*");
  setenv("WARREN_EVENTS_ENABLED", "true", 1);
  char ep[64];
  snprintf(ep, sizeof ep, "http://127.0.0.1:%d", tw_free_port()); /* none */
  setenv("OTEL_EXPORTER_OTLP_ENDPOINT", ep, 1);
  pid_t w = tw_start_record("it.ev.trace", "prefetch = 1; concurrency = 1;", "",
                            log_, rec);
  cr_assert(w > 0);
  cr_assert_eq(tw_publish("it.ev.trace", 3, "tr"), 0);
  cJSON *all = collect("it.ev.sub6", NULL, 9, 30);
  const char *ids[] = {"tr1", "tr2", "tr3"};
  for (int i = 0; i < 3; i++) {
    const cJSON *rc = event_of(all, ids[i], "job.received", 0);
    const cJSON *st = event_of(all, ids[i], "job.started", 0);
    cr_assert(rc && st, "%s: received and started", ids[i]);
    cr_assert_null(cJSON_GetObjectItem(rc, "trace_id"),
                   "%s: job.received carries trace id %s", ids[i],
                   s_of(rc, "trace_id"));
    cr_assert(s_of(st, "trace_id"), "%s: job.started has its trace id", ids[i]);
  }
  cJSON_Delete(all);
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
  tw_delete_queue("it.ev.sub6");
}
