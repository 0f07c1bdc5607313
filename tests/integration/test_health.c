/*
 * Status, metrics and probes over HTTP, with a real client (libcurl)
 * against a running worker and the real broker: the shape of every
 * endpoint, counts against the jobs published, readiness through a broker
 * outage, the admin token, promtool on /metrics, abusive clients, the
 * self-check, and JSON log lines.
 */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include "clock.h"
#include "support.h"

#define RECORD TEST_HANDLER_DIR "/record.so"

TW_SUITE(health, 240);

static int port_;
static char log_[300], rec_[300];
static char body_[1 << 18];

/* Until every queue of the handler was probed once (the status shows
 * null before). */
static void wait_probed(void) {
  double until = wr_now() + 20;
  for (;;) {
    long code =
        tw_http(port_, NULL, "/api/v1/tasks/queues", NULL, body_, sizeof body_);
    cJSON *j = code == 200 ? cJSON_Parse(body_) : NULL;
    cJSON *q =
        j ? cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "queues"), 0)
          : NULL;
    int ok =
        q && cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(q, "queued")) &&
        cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(q, "retrying")) &&
        cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(q, "dead_lettered"));
    cJSON_Delete(j);
    if (ok) return;
    cr_assert(wr_now() < until, "queues never probed: %s", body_);
    nanosleep(&(struct timespec){0, 100 * 1000 * 1000}, NULL);
  }
}

/* A worker with one handler "h" on queue q, its HTTP side on a free port
 * with quick probes and snapshots. */
static pid_t start(const char *q, const char *worker, const char *health,
                   const char *handler, const char *settings) {
  const char *dir = tw_dir();
  char text[4096];
  port_ = tw_free_port();
  snprintf(log_, sizeof log_, "%s/warren.log", dir);
  snprintf(rec_, sizeof rec_, "%s/rec", dir);
  snprintf(text, sizeof text,
           "health = { port = %d; probe_interval = 1.0; snapshot_interval = "
           "0.1; %s };\n"
           "handlers = ( { name = \"h\"; queue = \"%s\"; plugin = \"" RECORD
           "\";\n  %s\n  settings = { log = \"%s\"; %s }; } );\n",
           port_, health, q, handler, rec_, settings);
  pid_t w = tw_warren_start_worker(dir, worker, text);
  cr_assert_gt(w, 0);
  cr_assert(tw_wait_text(log_, "consuming 1 queue(s)", 30), "worker started");
  return w;
}

/* GET path, expecting code; the body parsed (freed by the caller). */
static cJSON *get(const char *path, long code) {
  long got = tw_http(port_, NULL, path, NULL, body_, sizeof body_);
  cr_assert_eq(got, code, "GET %s: %ld, want %ld: %s", path, got, code, body_);
  cJSON *j = cJSON_Parse(body_);
  cr_assert(j, "GET %s: not JSON: %s", path, body_);
  return j;
}

/* The member at a dotted path ("handlers.0.counts.acked"), or NULL. */
static cJSON *at(cJSON *j, const char *path) {
  char p[256], *save = NULL;
  snprintf(p, sizeof p, "%s", path);
  for (char *k = strtok_r(p, ".", &save); j && k;
       k = strtok_r(NULL, ".", &save))
    j = cJSON_IsArray(j) ? cJSON_GetArrayItem(j, atoi(k))
                         : cJSON_GetObjectItemCaseSensitive(j, k);
  return j;
}

static double num(cJSON *j, const char *path) {
  cJSON *v = at(j, path);
  cr_assert(cJSON_IsNumber(v), "%s is not a number", path);
  return v->valuedouble;
}

static const char *str(cJSON *j, const char *path) {
  cJSON *v = at(j, path);
  cr_assert(cJSON_IsString(v), "%s is not a string", path);
  return v->valuestring;
}

static int is_true(cJSON *j, const char *path) {
  cJSON *v = at(j, path);
  cr_assert(cJSON_IsBool(v), "%s is not a boolean", path);
  return cJSON_IsTrue(v);
}

/* Poll GET path until the number at key is want; the last body. */
static cJSON *wait_num(const char *path, const char *key, double want,
                       double timeout_s) {
  double until = wr_now() + timeout_s;
  for (;;) {
    cJSON *j = get(path, 200);
    cJSON *v = at(j, key);
    if ((cJSON_IsNumber(v) && v->valuedouble == want) || wr_now() > until)
      return j;
    cJSON_Delete(j);
    nanosleep(&(struct timespec){0, 100 * 1000 * 1000}, NULL);
  }
}

/* The value of the sample `series` (name{labels}) in a /metrics page. */
static double sample(const char *page, const char *series) {
  char want[512];
  snprintf(want, sizeof want, "\n%s ", series);
  const char *p = strstr(page, want);
  cr_assert(p, "no sample %s", series);
  return atof(p + strlen(want));
}

Test(health, every_endpoint_answers_with_its_documented_shape) {
  tw_delete_queue("it.h.shape"); /* a failed run's hanging job */
  pid_t w = start("it.h.shape", "", "queue_log_interval = 1.0;",
                  "prefetch = 4; concurrency = 2;", "hang_on = \"hang1\";");
  cr_assert_eq(tw_publish("it.h.shape", 3, "ok"), 0);
  cJSON *j = wait_num("/status/workers", "handlers.0.counts.acked", 3, 30);
  cJSON_Delete(j);
  wait_probed();
  /* The probe of the work queue after the jobs were taken. */
  j = wait_num("/status/workers", "task_queue.depth", 0, 30);
  cr_assert(is_true(j, "running"));
  cr_assert(is_true(j, "scheduler.running"));
  cr_assert_eq(num(j, "task_queue.depth"), 0);
  cr_assert_str_eq(str(j, "handlers.0.name"), "h");
  cr_assert(is_true(j, "handlers.0.running"));
  cr_assert_str_eq(str(j, "handlers.0.queue"), "it.h.shape");
  cr_assert_eq(num(j, "handlers.0.prefetch"), 4);
  cr_assert_eq(num(j, "handlers.0.concurrency"), 2);
  cr_assert_eq(num(j, "handlers.0.in_flight"), 0);
  cr_assert_eq(num(j, "handlers.0.counts.delivered"), 3);
  static const char *const counts[] = {
      "retried", "failed",    "rejected",           "dead_lettered.total",
      "crashed", "timed_out", "signature_rejected", "dead_lettered.signature"};
  char key[128];
  for (size_t i = 0; i < sizeof counts / sizeof *counts; i++) {
    snprintf(key, sizeof key, "handlers.0.counts.%s", counts[i]);
    cr_assert_eq(num(j, key), 0, "%s", key);
  }
  cr_assert_eq(num(j, "handlers.0.queue_depth"), 0);
  cr_assert_eq(num(j, "handlers.0.consumers"), 1);
  cr_assert(cJSON_IsNull(at(j, "handlers.0.last_error")));
  cr_assert_eq(num(j, "handlers.0.workers_alive"), 2);
  cr_assert_eq(cJSON_GetArraySize(at(j, "handlers.0.workers")), 2);
  cr_assert_gt(num(j, "handlers.0.workers.0.pid"), 0);
  cr_assert_str_eq(str(j, "handlers.0.workers.0.state"), "idle");
  cr_assert(cJSON_IsNull(at(j, "handlers.0.workers.0.job_id")));
  cr_assert_geq(num(j, "handlers.0.workers.0.uptime_seconds"), 0);
  cr_assert_eq(num(j, "handlers.0.workers.0.restarts"), 0);
  cJSON_Delete(j);

  j = get("/healthz", 200);
  cr_assert_str_eq(str(j, "status"), "ok");
  cJSON_Delete(j);
  static const char *const ready[] = {"/readyz", "/api/health/ready"};
  for (int i = 0; i < 2; i++) {
    j = get(ready[i], 200);
    cr_assert_str_eq(str(j, "status"), "ready");
    cr_assert(is_true(j, "ready"));
    cr_assert(cJSON_IsNull(at(j, "reason")));
    cJSON_Delete(j);
  }

  j = get("/api/health", 200);
  cr_assert_str_eq(str(j, "status"), "ok");
  cr_assert(is_true(j, "broker.connected"));
  cr_assert_str_eq(str(j, "broker.product"), "RabbitMQ");
  cr_assert_gt(strlen(str(j, "broker.version")), 0);
  cr_assert_gt(strlen(str(j, "broker.node")), 0);
  cr_assert_gt(num(j, "broker.latency_ms"), 0, "a measured round trip");
  cr_assert_str_eq(str(j, "durability.queues.0.name"), "it.h.shape");
  cr_assert_str_eq(str(j, "durability.queues.0.type"), "quorum");
  cr_assert(is_true(j, "durability.queues.0.durable"));
  cr_assert(is_true(j, "durability.queues.0.persistent_delivery"));
  cJSON_Delete(j);

  j = get("/api/v1/tasks/queues", 200);
  cJSON *q = at(j, "queues.0");
  static const char *const order[] = {"name", "queued", "started", "finished",
                                      "failed"};
  cJSON *k = q ? q->child : NULL;
  for (int i = 0; i < 5; i++, k = k ? k->next : NULL)
    cr_assert(k && strcmp(k->string, order[i]) == 0, "key %d is %s", i,
              order[i]);
  cr_assert_str_eq(str(j, "queues.0.name"), "it.h.shape");
  cr_assert_eq(num(j, "queues.0.finished"), 3);
  cr_assert_eq(num(j, "queues.0.retrying"), 0);
  cr_assert_eq(num(j, "queues.0.dead_lettered"), 0);
  cJSON_Delete(j);

  /* No token file configured: no admin route at all. */
  cr_assert_eq(tw_http(port_, NULL, "/api/admin/workers/status", NULL, body_,
                       sizeof body_),
               404);
  cr_assert_eq(tw_http(port_, NULL, "/metrics", NULL, body_, sizeof body_),
               200);
  cr_assert(strstr(body_, "# TYPE warren_jobs_total counter\n"));
  cr_assert_eq(tw_http(port_, NULL, "/nope", NULL, body_, sizeof body_), 404);
  cr_assert_eq(
      tw_http(port_, "POST", "/status/workers", NULL, body_, sizeof body_),
      405);
  cr_assert_eq(tw_http(port_, "DELETE", "/metrics", NULL, body_, sizeof body_),
               405);
  cr_assert(tw_wait_text(log_, "queue metrics: handler h queue it.h.shape", 10),
            "the periodic queue-metrics line");

  /* A job that never ends: its worker, its id and its age are shown. */
  cr_assert_eq(tw_publish_raw("it.h.shape", "hang1", NULL), 0);
  j = wait_num("/status/workers", "handlers.0.running_jobs", 1, 30);
  cr_assert_eq(num(j, "handlers.0.in_flight"), 1);
  int busy = -1;
  for (int i = 0; i < 2; i++)
    if (strcmp(str(j, i ? "handlers.0.workers.1.state"
                        : "handlers.0.workers.0.state"),
               "busy") == 0)
      busy = i;
  cr_assert_geq(busy, 0, "a busy worker");
  snprintf(key, sizeof key, "handlers.0.workers.%d.job_id", busy);
  cr_assert_str_eq(str(j, key), "hang1");
  snprintf(key, sizeof key, "handlers.0.workers.%d.job_age_seconds", busy);
  cr_assert_geq(num(j, key), 0);
  cJSON_Delete(j);
  cr_assert_eq(tw_http(port_, NULL, "/metrics", NULL, body_, sizeof body_),
               200);
  cr_assert_eq(sample(body_, "warren_jobs_in_flight{handler=\"h\"}"), 1);
  cr_assert_eq(sample(body_, "warren_jobs_running{handler=\"h\"}"), 1);
  tw_warren_stop(w, SIGKILL, 10);
  tw_delete_queue("it.h.shape");
}

Test(health, counts_match_the_jobs_published_on_every_endpoint) {
  tw_delete_queue("it.h.counts.dlq"); /* a failed run's dead letters */
  pid_t w = start("it.h.counts", "", "",
                  "prefetch = 10; concurrency = 2;\n"
                  "  retry = { max_attempts = 2; backoff = [0.1]; };",
                  "fail_suffix = \"-f\"; reject_suffix = \"-r\"; "
                  "crash_on = \"crash1\";");
  cr_assert_eq(tw_publish("it.h.counts", 5, "ok"), 0);
  static const char *const odd[] = {"a-f", "b-f", "c-r", "crash1"};
  for (int i = 0; i < 4; i++)
    cr_assert_eq(tw_publish_raw("it.h.counts", odd[i], NULL), 0);
  /* 5 acked; two fail twice (max-attempts), one rejected, one crashes
   * twice (crashed): 4 dead letters, 3 retry copies, 12 deliveries. */
  cJSON *j = wait_num("/status/workers",
                      "handlers.0.counts.dead_lettered.total", 4, 60);
  cJSON_Delete(j);
  wait_probed();
  j = wait_num("/api/v1/tasks/queues", "queues.0.dead_lettered", 4, 30);
  cr_assert_eq(num(j, "queues.0.finished"), 5);
  cr_assert_eq(num(j, "queues.0.failed"), 4);
  cr_assert_eq(num(j, "queues.0.queued"), 0);
  cr_assert_eq(num(j, "queues.0.started"), 0);
  cr_assert_eq(num(j, "queues.0.retrying"), 0);
  cJSON_Delete(j);

  j = get("/status/workers", 200);
  static const struct {
    const char *key;
    double want;
  } want[] = {{"delivered", 12},
              {"acked", 5},
              {"failed", 4},
              {"retried", 3},
              {"rejected", 1},
              {"crashed", 2},
              {"timed_out", 0},
              {"dead_lettered.total", 4},
              {"dead_lettered.max-attempts", 2},
              {"dead_lettered.rejected", 1},
              {"dead_lettered.crashed", 1},
              {"signature_rejected", 0}};
  char key[128];
  for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
    snprintf(key, sizeof key, "handlers.0.counts.%s", want[i].key);
    cr_assert_eq(num(j, key), want[i].want, "%s = %g, want %g", key,
                 num(j, key), want[i].want);
  }
  cr_assert_eq(num(j, "handlers.0.dead_letter_queue_depth"), 4);
  /* The crash or a retry, whichever settled last (under ASan a segfault
   * is an exit with status 1). */
  cr_assert_gt(strlen(str(j, "handlers.0.last_error.message")), 0);
  cr_assert(cJSON_IsString(at(j, "handlers.0.last_error.at")));
  cr_assert_eq(num(j, "handlers.0.restarts"), 2, "the crashed worker twice");
  cJSON_Delete(j);

  cr_assert_eq(tw_http(port_, NULL, "/metrics", NULL, body_, sizeof body_),
               200);
  static const struct {
    const char *series;
    double want;
  } m[] = {
      {"warren_jobs_delivered_total{handler=\"h\"}", 12},
      {"warren_jobs_total{handler=\"h\",outcome=\"acked\"}", 5},
      {"warren_jobs_total{handler=\"h\",outcome=\"failed\"}", 4},
      {"warren_jobs_total{handler=\"h\",outcome=\"rejected\"}", 1},
      {"warren_jobs_total{handler=\"h\",outcome=\"crashed\"}", 2},
      {"warren_retries_total{handler=\"h\"}", 3},
      {"warren_dead_letters_total{handler=\"h\",reason=\"max-attempts\"}", 2},
      {"warren_dead_letters_total{handler=\"h\",reason=\"rejected\"}", 1},
      {"warren_dead_letters_total{handler=\"h\",reason=\"crashed\"}", 1},
      {"warren_dead_letter_queue_messages{handler=\"h\"}", 4},
      {"warren_jobs_in_flight{handler=\"h\"}", 0},
      {"warren_worker_restarts_total{handler=\"h\"}", 2},
      {"warren_job_duration_seconds_count{handler=\"h\"}", 12}};
  for (size_t i = 0; i < sizeof m / sizeof *m; i++)
    cr_assert_eq(sample(body_, m[i].series), m[i].want, "%s = %g, want %g",
                 m[i].series, sample(body_, m[i].series), m[i].want);
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
  tw_delete_queue("it.h.counts.dlq");
}

/* Poll path until it answers code; the last status. */
static long wait_code(const char *path, long code, double timeout_s) {
  double until = wr_now() + timeout_s;
  long got;
  while ((got = tw_http(port_, NULL, path, NULL, body_, sizeof body_)) !=
             code &&
         wr_now() < until)
    nanosleep(&(struct timespec){0, 100 * 1000 * 1000}, NULL);
  return got;
}

Test(health, readiness_goes_503_while_the_broker_is_down_and_back) {
  char out[4096];
  pid_t w = start("it.h.ready", "", "", "", "");
  cr_assert_eq(wait_code("/api/health", 200, 10), 200);
  cr_assert_eq(tw_broker_stop_app(out, sizeof out), 0, "%s", out);
  cr_assert(tw_wait_text(log_, "broker connection lost", 30));
  static const char *const ready[] = {"/readyz", "/api/health/ready"};
  for (int i = 0; i < 2; i++) {
    cr_assert_eq(wait_code(ready[i], 503, 10), 503);
    cJSON *j = cJSON_Parse(body_);
    cr_assert(j, "JSON: %s", body_);
    cr_assert(!is_true(j, "ready"));
    cr_assert_str_eq(str(j, "reason"), "broker unreachable");
    cJSON_Delete(j);
  }
  cr_assert_eq(wait_code("/api/health", 503, 10), 503);
  cJSON *j = cJSON_Parse(body_);
  cr_assert(j && !is_true(j, "broker.connected"), "%s", body_);
  cr_assert_str_eq(str(j, "reason"), "broker unreachable");
  cJSON_Delete(j);
  cr_assert_eq(tw_http(port_, NULL, "/healthz", NULL, body_, sizeof body_), 200,
               "alive without a broker");
  cr_assert_eq(tw_http(port_, NULL, "/metrics", NULL, body_, sizeof body_),
               200);
  cr_assert_eq(sample(body_, "warren_broker_connected"), 0);
  cr_assert_eq(sample(body_, "warren_ready"), 0);
  cr_assert_eq(tw_broker_start_app(out, sizeof out), 0, "%s", out);
  cr_assert_eq(wait_code("/readyz", 200, 60), 200, "ready after the reconnect");
  cr_assert_eq(wait_code("/api/health/ready", 200, 10), 200);
  cr_assert_eq(wait_code("/api/health", 200, 10), 200);
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
}

Test(health, the_admin_route_refuses_a_missing_or_wrong_token) {
  char tok[400];
  snprintf(tok, sizeof tok, "%s/token", tw_dir());
  FILE *f = fopen(tok, "w");
  cr_assert(f);
  fputs("s3cret-Token\n", f);
  fclose(f);
  char health[512];
  snprintf(health, sizeof health, "admin_token_file = \"%s\";", tok);
  pid_t w = start("it.h.admin", "", health, "", "");
  const char *path = "/api/admin/workers/status";
  static const char *const wrong[] = {NULL,
                                      "Authorization: Bearer wrong",
                                      "Authorization: Bearer s3cret-Toke",
                                      "Authorization: Bearer s3cret-Token2",
                                      "Authorization: Basic s3cret-Token",
                                      "Authorization: Bearer s3cret-token"};
  for (size_t i = 0; i < sizeof wrong / sizeof *wrong; i++)
    cr_assert_eq(tw_http(port_, NULL, path, wrong[i], body_, sizeof body_), 401,
                 "%s", wrong[i] ? wrong[i] : "no header");
  const char *good = "Authorization: Bearer s3cret-Token";
  cr_assert_eq(tw_http(port_, "POST", path, good, body_, sizeof body_), 405);
  /* RFC 9110: the scheme is case-insensitive (once a 401). */
  long lower = tw_http(port_, NULL, path, "Authorization: bearer s3cret-Token",
                       body_, sizeof body_);
  cr_assert(lower == 200 || (lower == 503 && strstr(body_, "no status yet")),
            "lower-case scheme: %ld %s", lower, body_);
  double until = wr_now() + 10;
  cJSON *j = NULL, *q = NULL;
  do { /* until the work queue was probed ("it.h.admin" has dots) */
    cJSON_Delete(j);
    j = q = NULL;
    long st = tw_http(port_, NULL, path, good, body_, sizeof body_);
    /* The first status snapshot comes up to snapshot_interval after the
     * start: until then every status route says so with a 503. */
    if (st == 503 && strstr(body_, "no status yet")) {
      nanosleep(&(struct timespec){0, 50 * 1000 * 1000}, NULL);
      continue;
    }
    cr_assert_eq(st, 200, "%s", body_);
    j = cJSON_Parse(body_);
    cr_assert(j, "%s", body_);
    q = cJSON_GetObjectItemCaseSensitive(
        at(j, "data.executionWorker.metrics.queueDepths"), "it.h.admin");
  } while (!cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(q, "waiting")) &&
           wr_now() < until);
  cr_assert(is_true(j, "success"));
  cr_assert(cJSON_IsString(at(j, "data.timestamp")));
  cr_assert(is_true(j, "data.executionWorker.started"));
  cr_assert_str_eq(str(j, "data.executionWorker.queueDriver"), "rabbitmq");
  cr_assert(q, "queueDepths of the queue: %s", body_);
  static const char *const keys[] = {"waiting", "active", "total"};
  for (int i = 0; i < 3; i++)
    cr_assert(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(q, keys[i])),
              "%s", keys[i]);
  cr_assert(is_true(j, "data.broker.connected"));
  cr_assert_str_eq(str(j, "data.status.handlers.0.name"), "h");
  cJSON_Delete(j);
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
}

Test(health, metrics_pass_promtool) {
  tw_delete_queue("it.h.prom.dlq");
  pid_t w = start("it.h.prom", "", "", "retry = { max_attempts = 1; };",
                  "reject_suffix = \"-r\";");
  cr_assert_eq(tw_publish("it.h.prom", 20, "ok"), 0);
  cr_assert_eq(tw_publish_raw("it.h.prom", "x-r", NULL), 0);
  /* Published "1.5 s ago" by the clock of RabbitMQ's message_timestamp
   * plugin: its pickup latency is at least that. */
  amqp_table_entry_t ts = {amqp_cstring_bytes("timestamp_in_ms"),
                           {AMQP_FIELD_KIND_I64, {.i64 = 0}}};
  ts.value.value.i64 = wr_unix_ms() - 1500;
  amqp_table_t hdr = {1, &ts};
  cr_assert_eq(tw_publish_raw("it.h.prom", "stamped", &hdr), 0);
  cJSON_Delete(wait_num("/status/workers",
                        "handlers.0.counts.dead_lettered.total", 1, 30));
  cJSON_Delete(wait_num("/status/workers", "handlers.0.counts.acked", 21, 30));
  cr_assert_eq(tw_http(port_, NULL, "/metrics", NULL, body_, sizeof body_),
               200);
  char path[400], cmd[600], out[8192];
  snprintf(path, sizeof path, "%s/metrics.txt", tw_dir());
  FILE *f = fopen(path, "w");
  cr_assert(f);
  fputs(body_, f);
  fclose(f);
  snprintf(cmd, sizeof cmd, "promtool check metrics < %s 2>&1", path);
  FILE *p = popen(cmd, "r");
  cr_assert(p);
  size_t n = fread(out, 1, sizeof out - 1, p);
  out[n] = '\0';
  int st = pclose(p);
  cr_assert_eq(st, 0, "promtool check metrics (installed by scripts/setup): %s",
               out);
  cr_assert_eq(n, 0, "no lint findings: %s", out);
  /* Buckets are cumulative: never decreasing, and these no-op jobs are
   * all within the last finite bound. */
  double prev = 0, last = 0;
  int buckets = 0;
  for (const char *p = body_;
       (p = strstr(p, "\nwarren_job_duration_seconds_bucket{handler=\"h\""));
       p++, buckets++) {
    last = atof(strchr(p, '}') + 1);
    cr_assert_geq(last, prev, "bucket %d decreases", buckets);
    prev = last;
  }
  cr_assert_eq(buckets, 20, "19 bounds and +Inf");
  cr_assert_eq(
      sample(body_,
             "warren_job_duration_seconds_bucket{handler=\"h\",le=\"1800\"}"),
      22);
  /* A histogram's +Inf bucket is its count. */
  cr_assert_eq(
      sample(body_,
             "warren_job_duration_seconds_bucket{handler=\"h\",le=\"+Inf\"}"),
      sample(body_, "warren_job_duration_seconds_count{handler=\"h\"}"));
  cr_assert_eq(
      sample(body_, "warren_job_duration_seconds_count{handler=\"h\"}"), 22);
  cr_assert_eq(
      sample(body_, "warren_job_pickup_latency_seconds_count{handler=\"h\"}"),
      1, "only the stamped job has a pickup latency");
  cr_assert_geq(
      sample(body_, "warren_job_pickup_latency_seconds_sum{handler=\"h\"}"),
      1.5);
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
  tw_delete_queue("it.h.prom.dlq");
}

/* Descriptors the process holds. */
static int open_fds(pid_t pid) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
  DIR *d = opendir(path);
  int n = 0;
  for (struct dirent *e; d && (e = readdir(d));) n += e->d_name[0] != '.';
  if (d) closedir(d);
  return n;
}

/* The HTTP side's connection limit for process pid: a quarter of its
 * descriptors, at most 1,000 (health.c). */
static int http_limit(pid_t pid) {
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/%d/limits", (int)pid);
  FILE *f = fopen(path, "r");
  long soft = -1;
  while (f && fgets(line, sizeof line, f))
    if (strncmp(line, "Max open files", 14) == 0)
      soft = atol(line + 14 + strspn(line + 14, " "));
  if (f) fclose(f);
  return soft < 0 || soft / 4 > 1000 ? 1000 : (int)(soft / 4);
}

/* More clients than the connection limit, connecting and trickling a
 * request byte by byte (never finishing it), while 2,000 jobs flow: every
 * job is handled while they hang on, and the worker holds no more
 * descriptors than its connection limit allows. */
Test(health, slow_and_many_clients_do_not_stall_jobs, .timeout = 240) {
  enum { MAX_SLOW = 1100, JOBS = 2000 };
  pid_t w = start("it.h.slowloris", "", "", "prefetch = 100;", "");
  int before = open_fds(w), limit = http_limit(w);
  int SLOW = limit + 100;
  struct rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_cur < (rlim_t)SLOW + 64 && rl.rlim_max >= (rlim_t)SLOW + 64) {
    rl.rlim_cur = (rlim_t)SLOW + 64;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  cr_assert_leq(SLOW, MAX_SLOW);
  struct sockaddr_in sa = {.sin_family = AF_INET,
                           .sin_port = htons((uint16_t)port_)};
  inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
  static int fd[MAX_SLOW];
  for (int i = 0; i < SLOW; i++) {
    fd[i] = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd[i], 0);
    if (connect(fd[i], (struct sockaddr *)&sa, sizeof sa) == 0)
      send(fd[i], "GET /status/workers HTTP/1.1\r\nX-Slow: ", 38, MSG_NOSIGNAL);
  }
  cr_assert_eq(tw_publish("it.h.slowloris", JOBS, "job"), 0);
  int done = 0, peak = 0;
  /* The clients hang on for 6 s at least, however soon the jobs are done,
   * so the HTTP side has time to take every one it would. */
  double until = wr_now() + 180, least = wr_now() + 6;
  while (((done = tw_count(rec_, "end", "job", NULL, JOBS)) < JOBS ||
          wr_now() < least) &&
         wr_now() < until) {
    /* One more byte each, within the server's idle timeout. */
    for (int i = 0; i < SLOW; i++) {
      ssize_t r = send(fd[i], "a", 1, MSG_NOSIGNAL);
      (void)r;
    }
    int n = open_fds(w);
    if (n > peak) peak = n;
    nanosleep(&(struct timespec){0, 500 * 1000 * 1000}, NULL);
  }
  for (int i = 0; i < SLOW; i++) close(fd[i]);
  cr_log_info(
      "%d of %d jobs done while %d clients trickled; worker fds %d "
      "before, peak %d (connection limit %d)",
      done, JOBS, SLOW, before, peak, limit);
  cr_assert_eq(done, JOBS, "every job handled while the clients hung on");
  cr_assert_leq(peak, before + limit + 8, "descriptors bounded: peak %d", peak);
  cr_assert_eq(wait_code("/healthz", 200, 10), 200, "probes answer after");
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
}

/* A handler whose every job kills its worker: the self-check logs the
 * line alert rules grep for and readiness turns 503 with its reason. */
Test(health, a_crash_loop_fails_the_self_check_and_readiness) {
  pid_t w = start("it.h.loop", "restart_max = 0.2;", "check_interval = 1.0;",
                  "retry = { max_attempts = 50; max_crashes = 50; "
                  "backoff = [0.1]; };",
                  "crash_on = \"boom\";");
  cr_assert_eq(wait_code("/readyz", 200, 10), 200);
  for (int i = 0; i < 3; i++)
    cr_assert_eq(tw_publish_raw("it.h.loop", "boom", NULL), 0);
  cr_assert(tw_wait_text(log_,
                         "Background worker health check failed: handler h: "
                         "workers crash-looping",
                         60),
            "the alert line");
  cr_assert_eq(wait_code("/readyz", 503, 10), 503);
  cJSON *j = cJSON_Parse(body_);
  cr_assert(j, "%s", body_);
  cr_assert(strstr(str(j, "reason"),
                   "health check failed: handler h: "
                   "workers crash-looping"),
            "%s", body_);
  cJSON_Delete(j);
  tw_warren_stop(w, SIGKILL, 10);
  tw_delete_queue("it.h.loop");
}

/* A worker whose dead-letter copies the broker refuses is not ready (its
 * failed jobs cannot be carried on), and says why. */
Test(health, readiness_goes_503_while_copies_are_refused) {
  cr_assert_eq(tw_own_queues("it.h.refuse", "it.h.refuse.dlq", NULL), 0);
  cr_assert_eq(tw_declare_refusing("it.h.refuse.dlq"), 0);
  char settings[400];
  snprintf(settings, sizeof settings, "reject_unless = \"%s/never\";",
           tw_dir());
  pid_t w = start("it.h.refuse", "", "",
                  "queue_type = \"classic\"; retry = { max_attempts = 1; };",
                  settings);
  cr_assert_eq(wait_code("/readyz", 200, 10), 200);
  cr_assert_eq(tw_publish_raw("it.h.refuse", "job", NULL), 0);
  cr_assert(tw_wait_text(log_, "refused the dead-letter copy", 30));
  cr_assert_eq(wait_code("/readyz", 503, 10), 503, "%s", body_);
  cJSON *j = cJSON_Parse(body_);
  cr_assert(j, "%s", body_);
  cr_assert(strstr(str(j, "reason"),
                   "retry or dead-letter copies refused by the broker"),
            "%s", body_);
  cJSON_Delete(j);
  tw_warren_stop(w, SIGKILL, 10);
}

/* Liveness: a loop that has not turned for 10 s (health.c's STALL_MS;
 * here an in-process handler that sleeps 11 s blocks it) answers 503 on
 * /healthz, so an orchestrator restarts a stuck worker, and 200 again
 * once it turns. */
Test(health, a_stalled_loop_fails_liveness_and_recovers, .timeout = 90) {
  pid_t w =
      start("it.h.stall", "", "", "isolation = false;", "sleep_ms = 11000;");
  cr_assert_eq(wait_code("/healthz", 200, 10), 200);
  cr_assert_eq(tw_publish_raw("it.h.stall", "slow", NULL), 0);
  cr_assert_eq(wait_code("/healthz", 503, 20), 503, "%s", body_);
  cJSON *j = cJSON_Parse(body_);
  cr_assert(j, "%s", body_);
  cr_assert_str_eq(str(j, "status"), "event loop stalled");
  cr_assert_geq(num(j, "loop_idle_seconds"), 10, "%s", body_);
  cJSON_Delete(j);
  cr_assert_eq(wait_code("/healthz", 200, 20), 200, "alive again: %s", body_);
  tw_warren_stop(w, SIGTERM, 10);
  tw_delete_queue("it.h.stall");
}

/* log_format = "json": every line parses, and a message id with a
 * newline, quotes and an escape sequence stays inside its field. */
Test(health, json_log_lines_parse_and_a_hostile_id_stays_in_its_field) {
  const char *evil = "evil\n{\"level\":\"error\",\"msg\":\"forged\"}\x1b[2J-r";
  pid_t w = start("it.h.jsonlog", "log_format = \"json\";", "",
                  "retry = { max_attempts = 1; };", "reject_suffix = \"-r\";");
  cr_assert_eq(tw_publish_raw("it.h.jsonlog", evil, NULL), 0);
  cr_assert(tw_wait_text(log_, "\"outcome\":\"rejected\"", 30));
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
  FILE *f = fopen(log_, "r");
  cr_assert(f);
  char line[8192];
  int lines = 0, found = 0;
  while (fgets(line, sizeof line, f)) {
    lines++;
    cJSON *j = cJSON_Parse(line);
    cr_assert(j, "line %d is not JSON: %s", lines, line);
    cr_assert(cJSON_IsString(at(j, "ts")) && cJSON_IsString(at(j, "level")) &&
                  cJSON_IsNumber(at(j, "pid")) && cJSON_IsString(at(j, "msg")),
              "%s", line);
    cr_assert_str_neq(str(j, "msg"), "forged", "a forged line: %s", line);
    cJSON *id = at(j, "message_id");
    if (id) {
      cr_assert_str_eq(str(j, "message_id"),
                       "evil\\x0a{\"level\":\"error\",\"msg\":\"forged\"}"
                       "\\x1b[2J-r");
      cr_assert_str_eq(str(j, "handler"), "h");
      cr_assert_str_eq(str(j, "outcome"), "rejected");
      cr_assert_eq(num(j, "attempt"), 1);
      cr_assert_geq(num(j, "duration_ms"), 0);
      found++;
    }
    cJSON_Delete(j);
  }
  fclose(f);
  cr_assert_eq(found, 1, "one line about the job (of %d)", lines);
  tw_delete_queue("it.h.jsonlog.dlq");
}

/* A client that sends a request byte every 0.7 s never trips an idle
 * timeout. More of them than the HTTP side has connections (its limit
 * scaled down to 64 with the worker's descriptor limit), each reconnecting
 * when it is closed, as an attacker would: /healthz answers all along. */
Test(health, probes_answer_while_slow_clients_hold_the_connections,
     .timeout = 120) {
  enum { SLOW = 150 };
  struct rlimit rl, low;
  getrlimit(RLIMIT_NOFILE, &rl);
  low = rl;
  low.rlim_cur = 256; /* a quarter: 64 connections (health.c) */
  cr_assert_eq(setrlimit(RLIMIT_NOFILE, &low), 0);
  pid_t w = start("it.h.trickle", "", "", "", "");
  cr_assert_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
  int limit = http_limit(w);
  /* Under valgrind (WARREN_WRAPPER) /proc shows valgrind's own limit, not
   * the one it gives the worker: the set-up is checked without it. */
  const char *wrap = getenv("WARREN_WRAPPER");
  if (!wrap || !*wrap) cr_assert_eq(limit, 64);
  struct sockaddr_in sa = {.sin_family = AF_INET,
                           .sin_port = htons((uint16_t)port_)};
  inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
  static int fd[SLOW];
  for (int i = 0; i < SLOW; i++) fd[i] = -1;
  int probes = 0, answered = 0, reconnects = 0;
  double until = wr_now() + 15;
  while (wr_now() < until) {
    for (int i = 0; i < SLOW; i++) {
      if (fd[i] >= 0 && send(fd[i], "a", 1, MSG_NOSIGNAL) == 1) continue;
      if (fd[i] >= 0) {
        close(fd[i]);
        reconnects++;
      }
      fd[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
      cr_assert_geq(fd[i], 0);
      connect(fd[i], (struct sockaddr *)&sa, sizeof sa);
      send(fd[i], "GET /status/workers HTTP/1.1\r\nX-Slow: ", 38, MSG_NOSIGNAL);
    }
    /* The probes, between rounds of bytes (tw_http waits up to 3 s). */
    double next = wr_now() + 0.7;
    while (wr_now() < next) {
      probes++;
      answered +=
          tw_http(port_, NULL, "/healthz", NULL, body_, sizeof body_) == 200;
      nanosleep(&(struct timespec){0, 100 * 1000 * 1000}, NULL);
    }
  }
  for (int i = 0; i < SLOW; i++)
    if (fd[i] >= 0) close(fd[i]);
  cr_log_info(
      "%d of %d probes answered while %d slow clients trickled "
      "(%d reconnects; connection limit %d)",
      answered, probes, SLOW, reconnects, limit);
  cr_assert_eq(answered, probes, "/healthz answered %d of %d probes", answered,
               probes);
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
}
