/*
 * Every job a span (docs/tracing.md), checked at a real OTLP/HTTP receiver
 * (tests/otlp/receiver.js: protobufjs decoding the vendored .proto files,
 * no code shared with Warren's encoder) that writes each span it receives
 * as a JSON line.
 */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "support.h"

TW_SUITE(trace, 120);

#define TID "4bf92f3577b34da6a3ce929d0e0e4736"
#define PSID "00f067aa0ba902b7"
#define TP "00-" TID "-" PSID "-01"

static pid_t receiver_;
static const char *tracing_extra_ = ""; /* more of the tracing group */
static char spans_[400];

static void stop_receiver(void) {
  if (receiver_ > 0) {
    kill(receiver_, SIGTERM);
    waitpid(receiver_, NULL, 0);
  }
  receiver_ = 0;
}

/* The receiver on a free port, writing spans to <dir>/spans. */
static int start_receiver(void) {
  int port = tw_free_port();
  char out[400];
  snprintf(spans_, sizeof spans_, "%s/spans", tw_dir());
  snprintf(out, sizeof out, "%s/receiver.log", tw_dir());
  char p[16];
  snprintf(p, sizeof p, "%d", port);
  pid_t pid = fork();
  if (pid == 0) {
    int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    execlp("node", "node", WARREN_SOURCE_DIR "/tests/otlp/receiver.js", p,
           spans_, (char *)NULL);
    _exit(127);
  }
  receiver_ = pid;
  cr_assert(tw_wait_text(out, "listening", 20), "the OTLP receiver started");
  return port;
}

/* A worker with handler h (record plugin) on queue q, spans to the
 * receiver on port (0: a port where nothing listens). */
static pid_t start_worker(int port, const char *q, const char *extra,
                          const char *settings, const char *top, char *log,
                          char *rec) {
  const char *dir = tw_dir();
  snprintf(log, 300, "%s/warren.log", dir);
  snprintf(rec, 300, "%s/rec", dir);
  char text[4096];
  snprintf(text, sizeof text,
           "tracing = { endpoint = \"http://127.0.0.1:%d\"; delay = 0.05; "
           "service_name = \"warren-it\"; %s %s };\n%s\n"
           "handlers = ( { name = \"h\"; queue = \"%s\";\n"
           "  plugin = \"" TEST_HANDLER_DIR
           "/record.so\";\n"
           "  %s\n  settings = { log = \"%s\"; trace = true; %s }; } );\n",
           port ? port : tw_free_port(),
           port ? "" : "retry_max = 0.3; max_queue = 8; max_batch = 4;",
           tracing_extra_, top, q, extra, rec, settings);
  pid_t w = tw_warren_start(dir, text);
  cr_assert(tw_wait_text(log, "consuming 1 queue(s)", 30), "worker up");
  return w;
}

/* Every span received so far, as a cJSON array (caller frees). */
static cJSON *spans(void) {
  cJSON *all = cJSON_CreateArray();
  FILE *f = fopen(spans_, "r");
  char line[65536];
  while (f && fgets(line, sizeof line, f)) {
    cJSON *s = cJSON_Parse(line);
    if (s) cJSON_AddItemToArray(all, s);
  }
  if (f) fclose(f);
  return all;
}

static const char *str(const cJSON *o, const char *k) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
  return cJSON_IsString(v) ? v->valuestring : "";
}

static const cJSON *attr(const cJSON *span, const char *k) {
  return cJSON_GetObjectItemCaseSensitive(
      cJSON_GetObjectItemCaseSensitive(span, "attributes"), k);
}

static const char *attr_str(const cJSON *span, const char *k) {
  const cJSON *v = attr(span, k);
  return cJSON_IsString(v) ? v->valuestring : "(absent)";
}

static double attr_num(const cJSON *span, const char *k) {
  const cJSON *v = attr(span, k);
  return cJSON_IsNumber(v)   ? v->valuedouble
         : cJSON_IsString(v) ? atof(v->valuestring)
                             : -1;
}

/* The span whose message id attribute is id and name starts with name,
 * of attempt `attempt` (0: any), waiting up to 20 s. A copy, kept in
 * *kept (a cJSON array the test deletes). */
static const cJSON *wait_span(cJSON **kept, const char *name, const char *id,
                              int attempt) {
  if (!*kept) *kept = cJSON_CreateArray();
  double until = wr_now() + 20;
  do {
    cJSON *all = spans();
    const cJSON *s;
    cJSON_ArrayForEach(s, all) {
      if (strncmp(str(s, "name"), name, strlen(name)) != 0) continue;
      if (strcmp(attr_str(s, "messaging.message.id"), id) != 0) continue;
      if (attempt && attr_num(s, "warren.attempt") != attempt) continue;
      cJSON *copy = cJSON_Duplicate(s, 1);
      cJSON_AddItemToArray(*kept, copy);
      cJSON_Delete(all);
      return copy;
    }
    cJSON_Delete(all);
    nanosleep(&(struct timespec){0, 50 * 1000 * 1000}, NULL);
  } while (wr_now() < until);
  return NULL;
}

static int publish_tp(const char *q, const char *id, const char *tp,
                      const char *ts) {
  amqp_table_entry_t e[2];
  int n = 0;
  if (tp)
    e[n++] = (amqp_table_entry_t){
        amqp_cstring_bytes("traceparent"),
        {AMQP_FIELD_KIND_UTF8, {.bytes = amqp_cstring_bytes(tp)}}};
  if (ts)
    e[n++] = (amqp_table_entry_t){
        amqp_cstring_bytes("TraceState"), /* keys match in any case */
        {AMQP_FIELD_KIND_BYTES, {.bytes = amqp_cstring_bytes(ts)}}};
  amqp_table_t t = {n, e};
  return tw_publish_raw(q, id, &t);
}

/* Take the first dead letter of queue dlq into dump, waiting up to 20 s.
 * 1, or 0 when none came. */
static int wait_dead_letter(const char *dlq, char *dump, size_t len) {
  double until = wr_now() + 20;
  do {
    if (tw_take_one(dlq, dump, len)) return 1;
    nanosleep(&(struct timespec){0, 100 * 1000 * 1000}, NULL);
  } while (wr_now() < until);
  return 0;
}

static int is_hex(const char *s, size_t n) {
  if (strlen(s) != n || strspn(s, "0123456789abcdef") != n) return 0;
  return strspn(s, "0") != n;
}

Test(trace, a_known_traceparent_gives_a_consumer_span_in_that_trace) {
  int port = start_receiver();
  char log[300], rec[300];
  pid_t w = start_worker(port, "tr.known", "", "", "", log, rec);
  int rc = publish_tp("tr.known", "k1", TP, "rojo=00f067aa0ba902b7");
  cr_assert_eq(rc, 0);
  cJSON *all = NULL;
  const cJSON *s = wait_span(&all, "process", "k1", 1);
  cr_assert(s, "a span for k1 arrived");
  cr_assert_str_eq(str(s, "traceId"), TID);
  cr_assert_str_eq(str(s, "parentSpanId"), PSID);
  cr_assert(is_hex(str(s, "spanId"), 16));
  cr_assert_str_eq(str(s, "name"), "process (default)");
  cr_assert_eq(cJSON_GetObjectItem(s, "kind")->valueint, 5, "CONSUMER");
  cr_assert_str_eq(str(s, "traceState"), "rojo=00f067aa0ba902b7");
  cr_assert_str_eq(attr_str(s, "messaging.system"), "rabbitmq");
  cr_assert_str_eq(attr_str(s, "messaging.operation.type"), "process");
  cr_assert_str_eq(attr_str(s, "messaging.destination.name"), "");
  cr_assert_str_eq(attr_str(s, "messaging.rabbitmq.destination.routing_key"),
                   "tr.known");
  cr_assert_str_eq(attr_str(s, "warren.handler"), "h");
  cr_assert_str_eq(attr_str(s, "warren.queue"), "tr.known");
  cr_assert_str_eq(attr_str(s, "warren.outcome"), "ack");
  cr_assert_eq(attr_num(s, "messaging.message.body.size"), 2);
  cr_assert_gt(attr_num(s, "messaging.rabbitmq.message.delivery_tag"), 0);
  /* What the handler added (ABI 1.1). */
  cr_assert_str_eq(attr_str(s, "app.job"), "k1");
  cr_assert_eq(attr_num(s, "app.n"), 42);
  const cJSON *ev = cJSON_GetArrayItem(cJSON_GetObjectItem(s, "events"), 0);
  cr_assert(ev && !strcmp(str(ev, "name"), "app.step"), "the handler's event");
  cr_assert_eq(
      cJSON_GetObjectItem(cJSON_GetObjectItem(s, "status"), "code")->valueint,
      0, "unset: not an error");
  cr_assert_str_eq(str(cJSON_GetObjectItem(s, "resource"), "service.name"),
                   "warren-it");
  /* The handler saw the same ids and the traceparent naming its span. */
  char want[200];
  snprintf(want, sizeof want,
           "trace k1 1 %s %s 00-%s-%s-01 api=1 crashes=0 id=1", TID,
           str(s, "spanId"), TID, str(s, "spanId"));
  cr_assert(tw_wait_text(rec, want, 5), "handler saw: %s", want);
  cJSON_Delete(all);
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
  stop_receiver();
}

Test(trace, a_job_without_or_with_a_bad_context_gets_a_fresh_trace) {
  int port = start_receiver();
  int hp = tw_free_port();
  char top[100], log[300], rec[300];
  snprintf(top, sizeof top, "health = { port = %d; snapshot_interval = 0.1; };",
           hp);
  pid_t w = start_worker(port, "tr.fresh", "", "", top, log, rec);
  cr_assert_eq(publish_tp("tr.fresh", "n1", NULL, NULL), 0);
  cr_assert_eq(publish_tp("tr.fresh", "b1", "00-zz-broken-01", NULL), 0);
  cJSON *all = NULL;
  const cJSON *a = wait_span(&all, "process", "n1", 1);
  cr_assert(a);
  char t1[40];
  snprintf(t1, sizeof t1, "%s", str(a, "traceId"));
  cr_assert(is_hex(t1, 32), "a valid trace id: %s", t1);
  cr_assert_str_eq(str(a, "parentSpanId"), "", "a root");
  const cJSON *b = wait_span(&all, "process", "b1", 1);
  cr_assert(b);
  cr_assert(is_hex(str(b, "traceId"), 32));
  cr_assert_str_neq(str(b, "traceId"), t1, "each a trace of its own");
  cr_assert_str_eq(str(b, "parentSpanId"), "");
  cr_assert_str_eq(attr_str(b, "warren.outcome"), "ack", "the job ran");
  char body[16384];
  double until = wr_now() + 10;
  int seen = 0;
  while (!seen && wr_now() < until) {
    tw_http(hp, NULL, "/metrics", NULL, body, sizeof body);
    seen = strstr(body, "warren_trace_context_invalid_total 1") != NULL;
  }
  cr_assert(seen, "the bad traceparent is counted:\n%s", body);
  cJSON_Delete(all);
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
  stop_receiver();
}

Test(trace, a_retried_job_its_attempts_and_its_dead_letter_share_one_trace) {
  int port = start_receiver();
  char log[300], rec[300];
  pid_t w = start_worker(port, "tr.retry",
                         "retry = { max_attempts = 2; backoff = [0.2]; };",
                         "fail_on = \"r1\";", "", log, rec);
  cr_assert_eq(publish_tp("tr.retry", "r1", TP, NULL), 0);
  cJSON *all = NULL;
  const cJSON *a1 = wait_span(&all, "process", "r1", 1);
  const cJSON *rt = wait_span(&all, "retry tr.retry", "r1", 0);
  const cJSON *a2 = wait_span(&all, "process", "r1", 2);
  const cJSON *dl = wait_span(&all, "dead-letter tr.retry", "r1", 0);
  cr_assert(a1 && rt && a2 && dl, "attempt 1, retry, attempt 2, dead letter");
  const cJSON *chain[] = {a1, rt, a2, dl};
  for (int i = 0; i < 4; i++)
    cr_assert_str_eq(str(chain[i], "traceId"), TID, "span %d", i);
  cr_assert_str_eq(str(a1, "parentSpanId"), PSID);
  cr_assert_str_eq(str(rt, "parentSpanId"), str(a1, "spanId"));
  cr_assert_str_eq(str(a2, "parentSpanId"), str(rt, "spanId"));
  cr_assert_str_eq(str(dl, "parentSpanId"), str(a2, "spanId"));
  cr_assert_eq(cJSON_GetObjectItem(rt, "kind")->valueint, 4, "PRODUCER");
  cr_assert_str_eq(attr_str(a1, "warren.outcome"), "retry");
  cr_assert_str_eq(attr_str(a1, "error.type"), "retry");
  cr_assert_eq(
      cJSON_GetObjectItem(cJSON_GetObjectItem(a1, "status"), "code")->valueint,
      2, "ERROR");
  const cJSON *ex = cJSON_GetArrayItem(cJSON_GetObjectItem(a1, "events"), 1);
  cr_assert(ex && !strcmp(str(ex, "name"), "exception"));
  cr_assert(strstr(attr_str(ex, "exception.message"), "fails on purpose"),
            "the handler's set_error text");
  /* The dead letter carries the dead-letter span's context. */
  char dump[8192], want[120];
  cr_assert_eq(tw_take_one("tr.retry.dlq", dump, sizeof dump), 1);
  snprintf(want, sizeof want, "h.traceparent=00-%s-%s-01", TID,
           str(dl, "spanId"));
  cr_assert(strstr(dump, want), "%s in\n%s", want, dump);
  cJSON_Delete(all);
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
  stop_receiver();
}

Test(trace, a_crash_and_a_timeout_are_recorded_by_the_supervisor) {
  int port = start_receiver();
  char log[300], rec[300];
  pid_t w = start_worker(port, "tr.crash",
                         "timeout = 0.5; retry = { max_attempts = 1; };",
                         "crash_on = \"c1\"; hang_on = \"t1\";", "", log, rec);
  cr_assert_eq(publish_tp("tr.crash", "c1", TP, NULL), 0);
  cr_assert_eq(publish_tp("tr.crash", "t1", TP, NULL), 0);
  cJSON *all = NULL;
  const cJSON *c = wait_span(&all, "process", "c1", 1);
  const cJSON *t = wait_span(&all, "process", "t1", 1);
  cr_assert(c && t, "spans for the crashed and the timed-out job");
  cr_assert_str_eq(attr_str(c, "warren.outcome"), "crashed");
  cr_assert_str_eq(attr_str(t, "warren.outcome"), "timeout");
  cr_assert_str_eq(str(c, "parentSpanId"), PSID);
  cr_assert_eq(
      cJSON_GetObjectItem(cJSON_GetObjectItem(c, "status"), "code")->valueint,
      2, "ERROR");
  /* "worker killed by signal 11", or under ASan "worker exited with
   * status 1" */
  cr_assert(strstr(str(cJSON_GetObjectItem(c, "status"), "message"), "worker"),
            "why: %s", str(cJSON_GetObjectItem(c, "status"), "message"));
  cJSON_Delete(all);
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
  stop_receiver();
}

Test(trace, a_follow_up_job_is_a_child_in_the_same_trace) {
  int port = start_receiver();
  char log[300], rec[300];
  pid_t w = start_worker(port, "tr.follow", "",
                         "followup_queue = \"tr.follow\";", "", log, rec);
  cr_assert_eq(publish_tp("tr.follow", "f1", TP, NULL), 0);
  cJSON *all = NULL;
  const cJSON *p = wait_span(&all, "process", "f1", 1);
  const cJSON *c = wait_span(&all, "process", "f1/1", 1);
  cr_assert(p && c, "the job and its follow-up f1/1");
  cr_assert_str_eq(str(c, "traceId"), TID);
  cr_assert_str_eq(str(c, "parentSpanId"), str(p, "spanId"));
  cr_assert_str_eq(attr_str(p, "warren.outcome"), "ack");
  cJSON_Delete(all);
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
  cr_assert_eq(tw_queue_len("tr.follow"), 0, "both were acked");
  stop_receiver();
}

Test(trace, a_follow_up_that_comes_back_fails_its_job_and_is_sent_again) {
  int port = start_receiver();
  char log[300], rec[300];
  pid_t w = start_worker(
      port, "tr.unroutable", "retry = { max_attempts = 2; backoff = [0.2]; };",
      "followup_queue = \"tr.unroutable\"; followup_unroutable = \"nowhere\";",
      "", log, rec);
  cr_assert_eq(publish_tp("tr.unroutable", "u1", NULL, NULL), 0);
  char dump[8192];
  cr_assert(wait_dead_letter("tr.unroutable.dlq", dump, sizeof dump),
            "dead-lettered after its two attempts");
  cr_assert(strstr(dump, "follow-up job was returned unroutable"), "%s", dump);
  /* Each attempt sent its routable follow-up: at least once, here twice,
   * with the same message id. */
  cr_assert(tw_wait_text(rec, "start u1/1", 10));
  cr_assert(tw_wait_count(rec, "start", "u1/", 1, 2, 10),
            "u1/1 ran once per attempt");
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
  stop_receiver();
}

Test(trace, a_follow_up_to_a_missing_exchange_fails_its_job_not_the_channel) {
  int port = start_receiver();
  char log[300], rec[300];
  pid_t w = start_worker(port, "tr.noexchange",
                         "retry = { max_attempts = 2; backoff = [0.2]; };",
                         "followup_queue = \"tr.noexchange\"; "
                         "followup_exchange = \"tr.no.such.exchange\";",
                         "", log, rec);
  cr_assert_eq(publish_tp("tr.noexchange", "x1", NULL, NULL), 0);
  cr_assert_eq(tw_publish("tr.noexchange", 3, "plain"), 0);
  char dump[8192];
  cr_assert(wait_dead_letter("tr.noexchange.dlq", dump, sizeof dump),
            "dead-lettered after its two attempts");
  cr_assert(
      strstr(dump, "exchange 'tr.no.such.exchange', which does not exist"),
      "%s", dump);
  cr_assert(!tw_wait_text(log, "broker connection lost", 0.5),
            "the connection and its channels stayed up");
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
  stop_receiver();
}

Test(trace, link_mode_and_the_environment_over_the_file) {
  int port = start_receiver();
  char log[300], rec[300];
  /* OTEL_SERVICE_NAME wins over the file's service_name. */
  setenv("OTEL_SERVICE_NAME", "from-env", 1);
  pid_t w = start_worker(port, "tr.link", "", "", "", log, rec);
  unsetenv("OTEL_SERVICE_NAME");
  cr_assert_eq(publish_tp("tr.link", "l1", TP, NULL), 0);
  cJSON *all = NULL;
  const cJSON *s = wait_span(&all, "process", "l1", 1);
  cr_assert(s);
  cr_assert_str_eq(str(cJSON_GetObjectItem(s, "resource"), "service.name"),
                   "from-env");
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
  /* parent = "link": a trace of its own, linked to the producer's span. */
  tracing_extra_ = "parent = \"link\";";
  w = start_worker(port, "tr.link", "", "", "", log, rec);
  tracing_extra_ = "";
  cr_assert_eq(publish_tp("tr.link", "l2", TP, NULL), 0);
  const cJSON *l = wait_span(&all, "process", "l2", 1);
  cr_assert(l);
  cr_assert(is_hex(str(l, "traceId"), 32));
  cr_assert_str_neq(str(l, "traceId"), TID, "a trace of its own");
  cr_assert_str_eq(str(l, "parentSpanId"), "", "a root");
  const cJSON *lk = cJSON_GetArrayItem(cJSON_GetObjectItem(l, "links"), 0);
  cr_assert(lk, "with a link");
  cr_assert_str_eq(str(lk, "traceId"), TID);
  cr_assert_str_eq(str(lk, "spanId"), PSID);
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
  cJSON_Delete(all);
  stop_receiver();
}

Test(trace, an_in_process_handler_has_its_span_and_follow_ups) {
  int port = start_receiver();
  char log[300], rec[300];
  pid_t w = start_worker(port, "tr.inproc", "isolation = false;",
                         "followup_queue = \"tr.inproc\";", "", log, rec);
  cr_assert_eq(publish_tp("tr.inproc", "i1", TP, NULL), 0);
  cJSON *all = NULL;
  const cJSON *p = wait_span(&all, "process", "i1", 1);
  const cJSON *c = wait_span(&all, "process", "i1/1", 1);
  cr_assert(p && c, "the job and its follow-up, in process");
  cr_assert_str_eq(str(p, "parentSpanId"), PSID);
  cr_assert_str_eq(str(c, "parentSpanId"), str(p, "spanId"));
  cr_assert_str_eq(attr_str(p, "app.job"), "i1", "the handler's attribute");
  cJSON_Delete(all);
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
  stop_receiver();
}

Test(trace, a_collector_that_is_down_loses_no_job_and_drops_are_counted) {
  int hp = tw_free_port();
  char top[100], log[300], rec[300];
  snprintf(top, sizeof top, "health = { port = %d; snapshot_interval = 0.1; };",
           hp);
  pid_t w = start_worker(0, "tr.down", "concurrency = 2; prefetch = 20;", "",
                         top, log, rec);
  enum { N = 300 };
  cr_assert_eq(tw_publish("tr.down", N, "d"), 0);
  int done[N + 1] = {0};
  cr_assert_eq(tw_wait_all(rec, "d", done, N, 60), 0, "every job ran");
  char body[16384];
  double until = wr_now() + 10;
  long full = 0, failed = 0;
  while (wr_now() < until && !(full > 0 && failed > 0)) {
    tw_http(hp, NULL, "/metrics", NULL, body, sizeof body);
    const char *a =
        strstr(body, "warren_trace_spans_dropped_total{reason=\"queue_full\"}");
    const char *b = strstr(
        body, "warren_trace_spans_dropped_total{reason=\"export_failed\"}");
    full = a ? atol(strchr(a, '}') + 1) : 0;
    failed = b ? atol(strchr(b, '}') + 1) : 0;
  }
  cr_assert_gt(full, 0, "a full queue drops and counts:\n%s", body);
  cr_assert_gt(failed, 0, "spans given up after retries are counted");
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0,
               "stops despite the collector");
  cr_assert_eq(tw_queue_len("tr.down"), 0);
}
