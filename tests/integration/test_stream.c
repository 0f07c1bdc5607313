/*
 * The live view on the health port (docs/monitoring.md#live-events): GET
 * /api/events read by a real HTTP client (libcurl) against a worker and
 * the real broker: the events of published jobs in the events exchange's
 * JSON, the filters and hostile queries, the admin token, a client that
 * never reads, the client limit; and the dashboard in headless Chromium.
 */
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cjson/cJSON.h>

#include "clock.h"
#include "conn.h"
#include "support.h"

#define RECORD TEST_HANDLER_DIR "/record.so"

TW_SUITE(stream, 240);

static int port_;
static char log_[300], rec_[300], rec2_[300];
static char body_[1 << 18];
static const char *settings_ = ""; /* the record handler's, for "h" */

/* A worker with handler "h" on queue q (and "g" on q2 when q2), its HTTP
 * side on a free port; health and events: extra settings of each group. */
static pid_t start(const char *q, const char *q2, const char *health,
                   const char *events) {
  const char *dir = tw_dir();
  char text[4096];
  port_ = tw_free_port();
  snprintf(log_, sizeof log_, "%s/warren.log", dir);
  snprintf(rec_, sizeof rec_, "%s/rec", dir);
  snprintf(rec2_, sizeof rec2_, "%s/rec2", dir);
  int n = snprintf(
      text, sizeof text,
      "health = { port = %d; probe_interval = 1.0; snapshot_interval = 0.1; "
      "%s };\nevents = { %s };\n"
      "handlers = ( { name = \"h\"; queue = \"%s\"; plugin = \"" RECORD
      "\"; prefetch = 100; settings = { log = \"%s\"; %s }; }",
      port_, health, events, q, rec_, settings_);
  if (q2)
    n += snprintf(text + n, sizeof text - (size_t)n,
                  ", { name = \"g\"; queue = \"%s\"; plugin = \"" RECORD
                  "\"; settings = { log = \"%s\"; }; }",
                  q2, rec2_);
  snprintf(text + n, sizeof text - (size_t)n, " );\n");
  pid_t w = tw_warren_start_worker(tw_dir(), "", text);
  cr_assert_gt(w, 0);
  cr_assert(tw_wait_text(
                log_, q2 ? "consuming 2 queue(s)" : "consuming 1 queue(s)", 30),
            "worker started");
  return w;
}

/* ---- a streaming client: libcurl in a thread of its own ---------------- */

typedef struct tstream {
  pthread_t th;
  pthread_mutex_t mu;
  char url[512], auth[256];
  char *buf;
  size_t len;
  long code;
  char type[128];
  atomic_int stop, done;
} tstream;

static size_t on_data(char *p, size_t sz, size_t n, void *u) {
  tstream *s = u;
  pthread_mutex_lock(&s->mu);
  size_t k = sz * n;
  if (s->len + k < (8u << 20)) {
    char *b = realloc(s->buf, s->len + k + 1);
    if (b) {
      memcpy(b + s->len, p, k);
      s->buf = b;
      s->len += k;
      b[s->len] = '\0';
    }
  }
  pthread_mutex_unlock(&s->mu);
  return k;
}

static int on_progress(void *u, curl_off_t a, curl_off_t b, curl_off_t c,
                       curl_off_t d) {
  (void)a, (void)b, (void)c, (void)d;
  return atomic_load(&((tstream *)u)->stop);
}

static void *stream_run(void *arg) {
  tstream *s = arg;
  CURL *c = curl_easy_init();
  struct curl_slist *h = s->auth[0] ? curl_slist_append(NULL, s->auth) : NULL;
  curl_easy_setopt(c, CURLOPT_URL, s->url);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, s);
  curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
  curl_easy_setopt(c, CURLOPT_XFERINFODATA, s);
  if (h) curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
  curl_easy_perform(c);
  long code = 0;
  char *type = NULL;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
  curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &type);
  pthread_mutex_lock(&s->mu);
  s->code = code;
  snprintf(s->type, sizeof s->type, "%s", type ? type : "");
  pthread_mutex_unlock(&s->mu);
  curl_slist_free_all(h);
  curl_easy_cleanup(c);
  atomic_store(&s->done, 1);
  return NULL;
}

static tstream *stream_open(const char *path, const char *auth) {
  tstream *s = calloc(1, sizeof *s);
  cr_assert(s);
  pthread_mutex_init(&s->mu, NULL);
  snprintf(s->url, sizeof s->url, "http://127.0.0.1:%d%s", port_, path);
  snprintf(s->auth, sizeof s->auth, "%s", auth ? auth : "");
  cr_assert_eq(pthread_create(&s->th, NULL, stream_run, s), 0);
  return s;
}

/* Whether the stream's text has needle, waiting up to timeout_s. */
static int stream_has(tstream *s, const char *needle, double timeout_s) {
  double until = wr_now() + timeout_s;
  for (;;) {
    pthread_mutex_lock(&s->mu);
    int found = s->buf && strstr(s->buf, needle);
    pthread_mutex_unlock(&s->mu);
    if (found) return 1;
    if (wr_now() > until || atomic_load(&s->done)) return 0;
    nanosleep(&(struct timespec){0, 20 * 1000 * 1000}, NULL);
  }
}

/* Every event of the stream so far ("data: {json}" lines), parsed. */
static cJSON *stream_events(tstream *s) {
  cJSON *all = cJSON_CreateArray();
  pthread_mutex_lock(&s->mu);
  for (const char *p = s->buf; p && (p = strstr(p, "data: "));) {
    p += 6;
    const char *e = strstr(p, "\n\n");
    if (!e) break;
    cJSON *o = cJSON_ParseWithLength(p, (size_t)(e - p));
    cr_assert(o, "an event is one JSON object: %.*s", (int)(e - p), p);
    cJSON_AddItemToArray(all, o);
    p = e;
  }
  pthread_mutex_unlock(&s->mu);
  return all;
}

static void stream_close(tstream *s) {
  atomic_store(&s->stop, 1);
  pthread_join(s->th, NULL);
  pthread_mutex_destroy(&s->mu);
  free(s->buf);
  free(s);
}

static const char *s_of(const cJSON *o, const char *k) {
  const cJSON *v = cJSON_GetObjectItem(o, k);
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Events of `what` (an event name; NULL: any) in all. */
static int count(const cJSON *all, const char *what, const char *handler) {
  int n = 0;
  const cJSON *o;
  cJSON_ArrayForEach(o, all) {
    if (what && (!s_of(o, "event") || strcmp(s_of(o, "event"), what))) continue;
    if (handler && (!s_of(o, "handler") || strcmp(s_of(o, "handler"), handler)))
      continue;
    n++;
  }
  return n;
}

/* The value of series in /metrics. */
static double metric(const char *series) {
  cr_assert_eq(tw_http(port_, NULL, "/metrics", NULL, body_, sizeof body_),
               200);
  char want[256];
  snprintf(want, sizeof want, "\n%s ", series);
  const char *p = strstr(body_, want);
  cr_assert(p, "no sample %s in /metrics", series);
  return atof(p + strlen(want));
}

static void wait_status(void) {
  double until = wr_now() + 10;
  while (tw_http(port_, NULL, "/status/workers", NULL, body_, sizeof body_) !=
         200) {
    cr_assert(wr_now() < until, "no status: %s", body_);
    nanosleep(&(struct timespec){0, 50 * 1000 * 1000}, NULL);
  }
}

/* ---- the events exchange, for the comparison --------------------------- */

static void bind_queue(const char *q, const char *key) {
  amqp_connection_state_t c = tw_conn_confirming();
  cr_assert(c);
  amqp_exchange_declare(c, 1, amqp_cstring_bytes("warren.events"),
                        amqp_cstring_bytes("topic"), 0, 1, 0, 0,
                        amqp_empty_table);
  amqp_queue_declare(c, 1, amqp_cstring_bytes(q), 0, 0, 0, 0, amqp_empty_table);
  amqp_queue_purge(c, 1, amqp_cstring_bytes(q));
  amqp_queue_bind(c, 1, amqp_cstring_bytes(q),
                  amqp_cstring_bytes("warren.events"), amqp_cstring_bytes(key),
                  amqp_empty_table);
  amqp_rpc_reply_t r = amqp_get_rpc_reply(c);
  wr_conn_close(c);
  cr_assert_eq(r.reply_type, AMQP_RESPONSE_NORMAL, "binding %s", q);
}

/* want events from q's messages (JSON arrays), in one array. */
static cJSON *from_exchange(const char *q, int want, double timeout_s) {
  cJSON *all = cJSON_CreateArray();
  amqp_connection_state_t c = tw_conn_confirming();
  cr_assert(c);
  double end = wr_now() + timeout_s;
  while (cJSON_GetArraySize(all) < want && wr_now() < end) {
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
    cJSON *a = cJSON_ParseWithLength(m.body.bytes, m.body.len);
    cr_assert(cJSON_IsArray(a));
    while (cJSON_GetArraySize(a))
      cJSON_AddItemToArray(all, cJSON_DetachItemFromArray(a, 0));
    cJSON_Delete(a);
    amqp_destroy_message(&m);
  }
  wr_conn_close(c);
  return all;
}

static void delete_queue_quiet(const char *q) {
  tw_delete_queue(q);
}

/* ---- the tests --------------------------------------------------------- */

/* With the events exchange on, the stream carries each job's events, and
 * each is the very object the exchange got (same fields, same values). */
Test(stream, a_stream_carries_each_jobs_events_as_the_exchange_has_them) {
  delete_queue_quiet("it.s.same.events");
  bind_queue("it.s.same.events", "h.job.*");
  pid_t w = start("it.s.same", NULL, "", "enabled = true;");
  wait_status();
  tstream *s = stream_open("/api/events", NULL);
  cr_assert(stream_has(s, "retry: 2000\n\n", 5), "the stream opens with retry");
  cr_assert_eq(tw_publish("it.s.same", 3, "same-"), 0);
  cr_assert(
      stream_has(s, "\"job_id\":\"same-2\",\"attempt\":1,\"duration\"", 20),
      "the third job's end is streamed");
  cJSON *st = stream_events(s);
  cr_assert_eq(count(st, "job.received", "h"), 3);
  cr_assert_eq(count(st, "job.started", "h"), 3);
  cr_assert_eq(count(st, "job.succeeded", "h"), 3);
  cr_assert_eq(cJSON_GetArraySize(st), 9, "job events only");
  pthread_mutex_lock(&s->mu);
  pthread_mutex_unlock(&s->mu);
  cJSON *ex = from_exchange("it.s.same.events", 9, 20);
  cr_assert_eq(cJSON_GetArraySize(ex), 9);
  const cJSON *a;
  cJSON_ArrayForEach(a, st) {
    const cJSON *b, *match = NULL;
    cJSON_ArrayForEach(b, ex) {
      if (!strcmp(s_of(a, "event"), s_of(b, "event")) &&
          !strcmp(s_of(a, "job_id"), s_of(b, "job_id")))
        match = b;
    }
    cr_assert(match, "%s of %s is on the exchange", s_of(a, "event"),
              s_of(a, "job_id"));
    cr_assert(cJSON_Compare(a, match, 1), "the same object: %s vs %s",
              cJSON_PrintUnformatted(a), cJSON_PrintUnformatted(match));
  }
  cJSON_Delete(st);
  cJSON_Delete(ex);
  stream_close(s);
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
  delete_queue_quiet("it.s.same.events");
}

/* With the events exchange off (the default), the stream works; ?handler
 * and ?job keep the events of one handler, of one job; hostile queries
 * get 400, POST 405. */
Test(stream, without_the_exchange_the_stream_filters_by_handler_and_job) {
  pid_t w = start("it.s.f1", "it.s.f2", "", "");
  wait_status();
  tstream *all = stream_open("/api/events", NULL);
  tstream *g = stream_open("/api/events?handler=g", NULL);
  tstream *one = stream_open("/api/events?job=f%C3%A9-1", NULL);
  cr_assert(stream_has(all, "retry:", 5) && stream_has(g, "retry:", 5) &&
            stream_has(one, "retry:", 5));
  /* Streams are counted in the snapshot; wait until all three are in. */
  double until = wr_now() + 5;
  while (metric("warren_event_streams") < 3 && wr_now() < until)
    nanosleep(&(struct timespec){0, 100 * 1000 * 1000}, NULL);
  cr_assert_eq(metric("warren_event_streams"), 3);
  cr_assert_eq(tw_publish("it.s.f1", 2, "fé-"), 0);
  cr_assert_eq(tw_publish("it.s.f2", 2, "x-"), 0);
  cr_assert(
      stream_has(all, "\"job_id\":\"x-1\",\"attempt\":1,\"duration\"", 20));
  cr_assert(
      stream_has(all, "\"job_id\":\"fé-1\",\"attempt\":1,\"duration\"", 20));
  cr_assert(stream_has(g, "\"job_id\":\"x-1\",\"attempt\":1,\"duration\"", 20));
  cr_assert(
      stream_has(one, "\"job_id\":\"fé-1\",\"attempt\":1,\"duration\"", 20));
  nanosleep(&(struct timespec){0, 300 * 1000 * 1000}, NULL);
  cJSON *ea = stream_events(all), *eg = stream_events(g),
        *eo = stream_events(one);
  cr_assert_eq(count(ea, NULL, "h"), 6);
  cr_assert_eq(count(ea, NULL, "g"), 6);
  cr_assert_eq(count(eg, NULL, "g"), 6);
  cr_assert_eq(cJSON_GetArraySize(eg), 6, "only g's events");
  cr_assert_eq(cJSON_GetArraySize(eo), 3, "only job fé-1's events");
  const cJSON *o;
  cJSON_ArrayForEach(o, eo) cr_assert_str_eq(s_of(o, "job_id"), "fé-1");
  cJSON_Delete(ea);
  cJSON_Delete(eg);
  cJSON_Delete(eo);
  stream_close(all);
  stream_close(g);
  stream_close(one);

  static const char *const bad[] = {"/api/events?handler=nope",
                                    "/api/events?handler=",
                                    "/api/events?job=",
                                    "/api/events?job=a%01b",
                                    "/api/events?job=%FF%FE",
                                    "/api/events?job=a&job=b",
                                    "/api/events?handler=h&handler=g",
                                    "/api/events?token=abc",
                                    NULL /* a job id of 129 bytes */};
  char longest[200];
  int at = snprintf(longest, sizeof longest, "/api/events?job=");
  memset(longest + at, 'a', 129);
  longest[at + 129] = '\0';
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    const char *path = bad[i] ? bad[i] : longest;
    cr_assert_eq(tw_http(port_, NULL, path, NULL, body_, sizeof body_), 400,
                 "%s: %s", path, body_);
    cJSON *j = cJSON_Parse(body_);
    cr_assert(cJSON_IsString(cJSON_GetObjectItem(j, "error")), "%s", body_);
    cJSON_Delete(j);
  }
  cr_assert_eq(tw_http(port_, "POST", "/api/events", NULL, body_, sizeof body_),
               405);
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
}

/* With an admin token, the stream needs it (the dashboard page does not:
 * it holds no data). */
Test(stream, the_admin_token_guards_the_stream) {
  char tok[400], health[512];
  snprintf(tok, sizeof tok, "%s/token", tw_dir());
  FILE *f = fopen(tok, "w");
  cr_assert(f);
  fputs("s3cret-Token\n", f);
  fclose(f);
  snprintf(health, sizeof health, "admin_token_file = \"%s\";", tok);
  pid_t w = start("it.s.token", NULL, health, "");
  wait_status();
  static const char *const wrong[] = {NULL, "Authorization: Bearer wrong",
                                      "Authorization: Bearer s3cret-Toke",
                                      "Authorization: Basic s3cret-Token"};
  for (size_t i = 0; i < sizeof wrong / sizeof *wrong; i++)
    cr_assert_eq(
        tw_http(port_, NULL, "/api/events", wrong[i], body_, sizeof body_), 401,
        "%s", wrong[i] ? wrong[i] : "no header");
  /* A token in the query is no token. */
  cr_assert_eq(tw_http(port_, NULL, "/api/events?token=s3cret-Token", NULL,
                       body_, sizeof body_),
               401);
  tstream *s = stream_open("/api/events", "Authorization: Bearer s3cret-Token");
  cr_assert(stream_has(s, "retry:", 5), "the token opens the stream");
  cr_assert_eq(tw_publish("it.s.token", 1, "tok-"), 0);
  cr_assert(stream_has(s, "\"event\":\"job.succeeded\"", 20));
  stream_close(s);
  cr_assert_eq(tw_http(port_, NULL, "/dashboard", NULL, body_, sizeof body_),
               200);
  cr_assert(strstr(body_, "<title>Warren</title>"));
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
}

/* A client that connects and never reads: its buffer fills, it is dropped
 * and counted, while every job runs, the other endpoints answer at once
 * and another stream gets every event; its connection is closed soon
 * after. */
Test(stream, a_client_that_never_reads_is_dropped_without_stalling_jobs) {
  enum { JOBS = 3000 };
  pid_t w = start("it.s.slow", NULL, "events_stream_buffer = 4096;", "");
  wait_status();
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  int small = 2048;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  struct sockaddr_in sa = {.sin_family = AF_INET,
                           .sin_port = htons((uint16_t)port_)};
  inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
  cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
  const char req[] = "GET /api/events HTTP/1.1\r\nHost: x\r\n\r\n";
  cr_assert_eq(send(fd, req, sizeof req - 1, MSG_NOSIGNAL),
               (ssize_t)(sizeof req - 1));
  tstream *good = stream_open("/api/events?job=slow-3000", NULL);
  cr_assert(stream_has(good, "retry:", 5));
  cr_assert_eq(tw_publish("it.s.slow", JOBS, "slow-"), 0);
  double worst = 0;
  int done;
  double until = wr_now() + 120;
  while ((done = tw_count(rec_, "end", "slow-", NULL, JOBS)) < JOBS &&
         wr_now() < until) {
    double t0 = wr_now();
    cr_assert_eq(
        tw_http(port_, NULL, "/status/workers", NULL, body_, sizeof body_),
        200);
    cr_assert_eq(tw_http_get(port_, "/healthz"), 200);
    if (wr_now() - t0 > worst) worst = wr_now() - t0;
    nanosleep(&(struct timespec){0, 100 * 1000 * 1000}, NULL);
  }
  cr_assert_eq(done, JOBS, "every job ran while the client read nothing");
  cr_assert_lt(worst, 1.0, "the other endpoints answered at once (%.3f s)",
               worst);
  cr_assert(
      stream_has(good, "\"job_id\":\"slow-3000\",\"attempt\":1,\"duration\"",
                 20),
      "the other stream got its job's end");
  until = wr_now() + 5;
  while (metric("warren_event_streams_dropped_total") < 1 && wr_now() < until)
    nanosleep(&(struct timespec){0, 100 * 1000 * 1000}, NULL);
  cr_assert_eq(metric("warren_event_streams_dropped_total"), 1,
               "the slow client was dropped, the other not");
  /* Its connection goes when it has taken nothing for 10 s. */
  until = wr_now() + 30;
  while (metric("warren_event_streams") > 1 && wr_now() < until)
    nanosleep(&(struct timespec){0, 200 * 1000 * 1000}, NULL);
  cr_assert_eq(metric("warren_event_streams"), 1, "its slot was freed");
  cr_log_info("slow stream dropped; slowest status answer %.3f s", worst);
  close(fd);
  stream_close(good);
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
}

/* Past health.events_stream_clients, a stream is refused with 503 (and
 * counted); when one ends, its slot is free again by the next keep-alive
 * comment (a suspended stream learns that its client left only when it
 * writes). */
Test(stream, more_streams_than_the_limit_are_refused_with_503) {
  pid_t w =
      start("it.s.limit", NULL,
            "events_stream_clients = 2; events_stream_keepalive = 1.0;", "");
  wait_status();
  tstream *a = stream_open("/api/events", NULL);
  tstream *b = stream_open("/api/events", NULL);
  cr_assert(stream_has(a, "retry:", 5) && stream_has(b, "retry:", 5));
  cr_assert_eq(tw_http(port_, NULL, "/api/events", NULL, body_, sizeof body_),
               503, "%s", body_);
  cr_assert(strstr(body_, "events_stream_clients"), "%s", body_);
  double until = wr_now() + 5;
  while (metric("warren_event_streams_refused_total") < 1 && wr_now() < until)
    nanosleep(&(struct timespec){0, 100 * 1000 * 1000}, NULL);
  cr_assert_eq(metric("warren_event_streams_refused_total"), 1);
  stream_close(a);
  tstream *c = NULL;
  until = wr_now() + 10;
  for (;;) { /* until the server saw the first one go */
    c = stream_open("/api/events", NULL);
    if (stream_has(c, "retry:", 2)) break;
    stream_close(c);
    cr_assert(wr_now() < until, "a freed slot is taken again");
  }
  stream_close(b);
  stream_close(c);
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
}

/* The dashboard in headless Chromium (tests/browser/dashboard.js, with
 * puppeteer-core): the page shows the worker, its queue, the dead letter
 * by reason and the live events of the jobs published while it is open,
 * read from its DOM. Fails when Chromium is missing. */
Test(stream, the_dashboard_shows_workers_queues_and_live_events_in_chromium,
     .timeout = 180) {
  tw_delete_queue("it.s.dash.dlq");
  settings_ = "reject_prefix = \"bad-\";";
  pid_t w = start("it.s.dash", NULL, "", "");
  settings_ = "";
  wait_status();
  char cmd[1024], line[4096];
  snprintf(cmd, sizeof cmd,
           "cd %s/tests/browser && timeout 150 node dashboard.js "
           "http://127.0.0.1:%d/dashboard it.s.dash 2>&1",
           WARREN_SOURCE_DIR, port_);
  FILE *p = popen(cmd, "r");
  cr_assert(p);
  int ready = 0, ok = 0;
  while (fgets(line, sizeof line, p)) {
    cr_log_info("browser: %s", line);
    if (!strncmp(line, "READY", 5) && !ready) {
      /* The page is open and its stream connected: now the jobs. */
      ready = 1;
      cr_assert_eq(tw_publish("it.s.dash", 3, "dash-"), 0);
      cr_assert_eq(tw_publish_raw("it.s.dash", "bad-1", NULL), 0);
    }
    if (!strncmp(line, "OK", 2)) ok = 1;
  }
  int st = pclose(p);
  cr_assert(ready, "the page opened in Chromium");
  cr_assert(ok && WIFEXITED(st) && WEXITSTATUS(st) == 0,
            "the page showed the worker, queue, dead letter and events");
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
  tw_delete_queue("it.s.dash.dlq");
}
