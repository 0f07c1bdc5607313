/*
 * The trace context a job carries (docs/producing.md): libwarren and
 * warren-publish give every job a W3C traceparent, a fresh one or exactly
 * the one they were given, and refuse an invalid one; `warren dlq replay`
 * starts a new trace for the message it sends back.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <warren/producer.h>
#include <warren/status.h>

#include "support.h"
#include "tracectx.h"

TW_SUITE(producer_trace, 120);

#define TP "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
#define TS "vendor=abc,other=x1"

/* The string header key of a tw_get dump ("h.key=S:len:value"), or "". */
static const char *header(const char *dump, const char *key) {
  static char v[1024];
  char pat[128];
  snprintf(pat, sizeof pat, "\nh.%s=S:", key);
  const char *p = strstr(dump, pat);
  v[0] = '\0';
  if (p && (p = strchr(p + strlen(pat), ':')))
    snprintf(v, sizeof v, "%.*s", (int)strcspn(p + 1, "\n"), p + 1);
  return v;
}

static int valid_tp(const char *s) {
  wr_trace_ctx c;
  return strlen(s) == WR_TRACEPARENT_LEN &&
         wr_trace_parse(s, strlen(s), &c) == 0;
}

/* Publish one job to queue through libwarren; 0 or the status. The
 * producer's error text goes to why. */
static int publish(const char *queue, const warren_publish_opts *o, char *why,
                   size_t len) {
  warren_producer_opts po = {.size = sizeof po, .port = tw_port()};
  warren_producer *p;
  int rc = warren_producer_open(&po, &p);
  if (rc) return rc;
  rc = warren_producer_publish(p, "", queue, "b", 1, o);
  snprintf(why, len, "%s", warren_producer_error(p));
  if (rc == 0) rc = warren_producer_flush(p, 30000);
  int rc2 = warren_producer_close(p);
  return rc ? rc : rc2;
}

/* Breaks when a job leaves libwarren without a traceparent, with one
 * that does not parse, unsampled, or with the same ids as the last job
 * (every job would then sit in one trace). */
Test(producer_trace, a_job_without_a_traceparent_gets_a_fresh_valid_one) {
  const char *q = "it.trace.fresh";
  tw_delete_queue(q);
  cr_assert_eq(tw_declare_plain(q), 0);
  char out1[WARREN_TRACEPARENT_LEN + 1], out2[WARREN_TRACEPARENT_LEN + 1];
  char why[512], dump[4096], first[64];
  warren_publish_opts o = {
      .size = sizeof o, .message_id = "j1", .traceparent_out = out1};
  cr_assert_eq(publish(q, &o, why, sizeof why), 0, "%s", why);
  o.message_id = "j2";
  o.traceparent_out = out2;
  cr_assert_eq(publish(q, &o, why, sizeof why), 0, "%s", why);

  cr_assert_eq(tw_get(q, 1, dump, sizeof dump), 1);
  snprintf(first, sizeof first, "%s", header(dump, "traceparent"));
  cr_assert(valid_tp(first), "no valid traceparent:\n%s", dump);
  cr_assert_str_eq(first, out1, "traceparent_out is what the job carries");
  cr_assert_str_eq(first + 53, "01", "a new trace is sampled: %s", first);
  cr_assert_null(strstr(dump, "h.tracestate="), "%s", dump);
  cr_assert_eq(tw_get(q, 1, dump, sizeof dump), 1);
  const char *second = header(dump, "traceparent");
  cr_assert(valid_tp(second), "%s", dump);
  cr_assert_str_eq(second, out2);
  cr_assert_neq(strncmp(first + 3, second + 3, 32), 0,
                "two jobs share a trace id: %s %s", first, second);
  cr_assert_neq(strncmp(first + 36, second + 36, 16), 0,
                "two jobs share a span id: %s %s", first, second);
  tw_delete_queue(q);
}

/* Breaks when a given context is replaced, altered, sent twice (as the
 * option and as a header of another case) or its tracestate is lost. */
Test(producer_trace, a_given_traceparent_and_tracestate_arrive_exactly) {
  const char *q = "it.trace.given";
  tw_delete_queue(q);
  cr_assert_eq(tw_declare_plain(q), 0);
  char out[WARREN_TRACEPARENT_LEN + 1], why[512], dump[4096];
  warren_publish_opts o = {.size = sizeof o,
                           .message_id = "j1",
                           .traceparent = TP,
                           .tracestate = TS,
                           .traceparent_out = out};
  cr_assert_eq(publish(q, &o, why, sizeof why), 0, "%s", why);
  cr_assert_str_eq(out, TP);
  cr_assert_eq(tw_get(q, 1, dump, sizeof dump), 1);
  cr_assert_str_eq(header(dump, "traceparent"), TP, "%s", dump);
  cr_assert_str_eq(header(dump, "tracestate"), TS, "%s", dump);

  /* The same context as headers in another case: sent once, lower case. */
  warren_header_kv h[] = {
      {"TraceParent", TP}, {"tenant", "acme"}, {"TRACESTATE", TS}};
  warren_publish_opts oh = {
      .size = sizeof oh, .message_id = "j2", .headers = h, .n_headers = 3};
  cr_assert_eq(publish(q, &oh, why, sizeof why), 0, "%s", why);
  cr_assert_eq(tw_get(q, 1, dump, sizeof dump), 1);
  cr_assert_str_eq(header(dump, "traceparent"), TP, "%s", dump);
  cr_assert_str_eq(header(dump, "tracestate"), TS, "%s", dump);
  cr_assert_str_eq(header(dump, "tenant"), "acme", "%s", dump);
  cr_assert_null(strstr(dump, "h.TraceParent="), "%s", dump);
  cr_assert_null(strstr(dump, "h.TRACESTATE="), "%s", dump);
  tw_delete_queue(q);
}

/* Breaks when the producer sends a context a consumer cannot parse, or
 * one it was given twice, instead of refusing it with a reason. */
Test(producer_trace, an_invalid_traceparent_is_refused_by_the_producer) {
  const char *q = "it.trace.invalid";
  tw_delete_queue(q);
  cr_assert_eq(tw_declare_plain(q), 0);
  char why[512], out[WARREN_TRACEPARENT_LEN + 1] = "untouched";
  const char *bad[] = {
      "00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01", /* upper */
      "00-00000000000000000000000000000000-b7ad6b7169203331-01", /* zero */
      "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",    /* short */
      "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", /* ff */
      "garbage"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    warren_publish_opts o = {
        .size = sizeof o, .traceparent = bad[i], .traceparent_out = out};
    cr_assert_eq(publish(q, &o, why, sizeof why), WARREN_INVALID, "%s", bad[i]);
    cr_assert(strstr(why, "not a valid W3C traceparent"), "%s", why);
    cr_assert_str_eq(out, "untouched");
  }
  warren_header_kv h[] = {{"traceparent", TP}};
  warren_publish_opts both = {
      .size = sizeof both, .traceparent = TP, .headers = h, .n_headers = 1};
  cr_assert_eq(publish(q, &both, why, sizeof why), WARREN_INVALID);
  cr_assert(strstr(why, "traceparent given twice"), "%s", why);
  warren_publish_opts ts = {
      .size = sizeof ts, .traceparent = TP, .tracestate = "=bad"};
  cr_assert_eq(publish(q, &ts, why, sizeof why), WARREN_INVALID);
  cr_assert(strstr(why, "not a valid W3C tracestate"), "%s", why);
  warren_publish_opts alone = {.size = sizeof alone, .tracestate = TS};
  cr_assert_eq(publish(q, &alone, why, sizeof why), WARREN_INVALID);
  cr_assert(strstr(why, "without a traceparent"), "%s", why);
  cr_assert_eq(tw_queue_len(q), 0, "a refused job was published");
  tw_delete_queue(q);
}
/* Run a shell command; stdout only into out. */
static int sh(const char *cmd, char *out, size_t len) {
  FILE *p = popen(cmd, "r");
  if (!p) return -1;
  size_t n = fread(out, 1, len - 1, p);
  out[n] = '\0';
  int st = pclose(p);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Breaks when --traceparent is not what each job carries, when
 * --print-trace lines do not match the jobs or share stdout with anything
 * else (the closing summary goes to stderr), or when the trace lines are
 * printed without being asked for. */
Test(producer_trace, warren_publish_passes_traceparent_and_prints_each_jobs) {
  const char *q = "it.trace.cli";
  tw_delete_queue(q);
  cr_assert_eq(tw_declare_plain(q), 0);
  char cmd[1024], out[4096], dump[4096], line[128];
  snprintf(cmd, sizeof cmd,
           "timeout 60 %s --port %d --routing-key %s --count 2 --id g "
           "--traceparent %s --tracestate %s --print-trace",
           WARREN_PUBLISH_BIN, tw_port(), q, TP, TS);
  cr_assert_eq(sh(cmd, out, sizeof out), 0, "%s", out);
  for (int i = 1; i <= 2; i++) {
    snprintf(line, sizeof line, "g%d %s\n", i, TP);
    cr_assert(strstr(out, line), "no line '%s' in:\n%s", line, out);
    cr_assert_eq(tw_get(q, 1, dump, sizeof dump), 1);
    cr_assert_str_eq(header(dump, "traceparent"), TP, "%s", dump);
    cr_assert_str_eq(header(dump, "tracestate"), TS, "%s", dump);
  }
  char only[256];
  snprintf(only, sizeof only, "g1 %s\ng2 %s\n", TP, TP);
  cr_assert_str_eq(out, only, "stdout holds more than the trace lines");

  /* Without one: each job its own new trace, printed as it was sent. */
  snprintf(cmd, sizeof cmd,
           "timeout 60 %s --port %d --routing-key %s --count 2 --id f "
           "--print-trace",
           WARREN_PUBLISH_BIN, tw_port(), q);
  cr_assert_eq(sh(cmd, out, sizeof out), 0, "%s", out);
  for (int i = 1; i <= 2; i++) {
    cr_assert_eq(tw_get(q, 1, dump, sizeof dump), 1);
    const char *tp = header(dump, "traceparent");
    cr_assert(valid_tp(tp), "%s", dump);
    snprintf(line, sizeof line, "f%d %s\n", i, tp);
    cr_assert(strstr(out, line), "no line '%s' in:\n%s", line, out);
  }

  snprintf(cmd, sizeof cmd, "timeout 60 %s --port %d --routing-key %s --id n",
           WARREN_PUBLISH_BIN, tw_port(), q);
  cr_assert_eq(sh(cmd, out, sizeof out), 0, "%s", out);
  cr_assert_null(strstr(out, "00-"), "trace printed unasked:\n%s", out);
  cr_assert_eq(tw_get(q, 1, dump, sizeof dump), 1);
  snprintf(cmd, sizeof cmd,
           "timeout 60 %s --port %d --routing-key %s --traceparent bad 2>&1",
           WARREN_PUBLISH_BIN, tw_port(), q);
  cr_assert_eq(sh(cmd, out, sizeof out), 1, "%s", out);
  cr_assert(strstr(out, "not a valid W3C traceparent"), "%s", out);
  snprintf(cmd, sizeof cmd,
           "timeout 60 %s --port %d --routing-key %s --tracestate a=b 2>&1",
           WARREN_PUBLISH_BIN, tw_port(), q);
  cr_assert_eq(sh(cmd, out, sizeof out), 2, "%s", out);
  cr_assert_eq(tw_queue_len(q), 0, "a refused job was published");
  tw_delete_queue(q);
}

/* A stand-in OTLP/HTTP collector on 127.0.0.1:port: it appends each
 * request body to path and answers 200. It ends by itself within a
 * minute, should the test die before stopping it. */
static pid_t collector_start(int port, const char *path) {
  char cmd[1024];
  snprintf(cmd, sizeof cmd,
           "import http.server, sys\n"
           "class H(http.server.BaseHTTPRequestHandler):\n"
           "  def do_POST(s):\n"
           "    b = s.rfile.read(int(s.headers['Content-Length']))\n"
           "    open('%s', 'ab').write(b)\n"
           "    s.send_response(200)\n"
           "    s.send_header('Content-Length', '0')\n"
           "    s.end_headers()\n"
           "  def log_message(s, *a): pass\n"
           "http.server.HTTPServer(('127.0.0.1', %d), H).serve_forever()\n",
           path, port);
  pid_t pid = fork();
  if (pid == 0) {
    execlp("timeout", "timeout", "60", "python3", "-c", cmd, (char *)NULL);
    _exit(127);
  }
  /* Up once it accepts a connection. */
  char probe[128];
  snprintf(probe, sizeof probe,
           "for i in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/%d) "
           "2>/dev/null && exit 0; sleep 0.1; done; exit 1",
           port);
  char out[64];
  snprintf(cmd, sizeof cmd, "bash -c '%s'", probe);
  if (sh(cmd, out, sizeof out) != 0) {
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    return -1;
  }
  return pid;
}

static size_t slurp(const char *path, char *buf, size_t len) {
  FILE *f = fopen(path, "rb");
  if (!f) return 0;
  size_t n = fread(buf, 1, len, f);
  fclose(f);
  return n;
}

/* Raw bytes of n hex digits. */
static void unhex(const char *s, unsigned char *out, size_t n) {
  for (size_t i = 0; i < n; i++) sscanf(s + 2 * i, "%2hhx", &out[i]);
}

/* Breaks when warren-publish exports no span for a job, or one whose ids
 * are not the job's traceparent (the consumer's parent would be missing
 * in Jaeger), or without the messaging attributes. */
Test(producer_trace, warren_publish_exports_a_producer_span_per_job) {
  const char *q = "it.trace.span";
  int port = tw_port() + 4; /* within this node's range of ports */
  tw_delete_queue(q);
  cr_assert_eq(tw_declare_plain(q), 0);
  char spans[400], cmd[1400], out[4096];
  snprintf(spans, sizeof spans, "%s/spans", tw_dir());
  unlink(spans);
  pid_t col = collector_start(port, spans);
  cr_assert_gt(col, 0, "the stand-in collector did not start");
  snprintf(cmd, sizeof cmd,
           "OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:%d "
           "OTEL_BSP_SCHEDULE_DELAY=100 timeout 60 %s --port %d "
           "--routing-key %s --count 2 --id s --body 12345 --print-trace",
           port, WARREN_PUBLISH_BIN, tw_port(), q);
  int rc = sh(cmd, out, sizeof out);
  kill(col, SIGTERM);
  waitpid(col, NULL, 0);
  cr_assert_eq(rc, 0, "%s", out);
  static char body[65536];
  size_t n = slurp(spans, body, sizeof body);
  cr_assert_gt(n, 0, "no span reached the collector");
  const char *names[] = {"publish (default)",
                         "messaging.system",
                         "rabbitmq",
                         "messaging.operation.type",
                         "send",
                         "messaging.destination.name",
                         "messaging.rabbitmq.destination.routing_key",
                         "it.trace.span",
                         "messaging.message.id",
                         "s1",
                         "s2",
                         "messaging.message.body.size",
                         "warren-publish"};
  for (size_t i = 0; i < sizeof names / sizeof *names; i++)
    cr_assert_not_null(memmem(body, n, names[i], strlen(names[i])),
                       "no '%s' in the export", names[i]);
  int jobs = 0;
  for (const char *l = out; (l = strstr(l, " 00-")); l += 1 + 55) {
    const char *tp = l + 1; /* "message_id traceparent" lines */
    unsigned char trace_id[16], span_id[8];
    unhex(tp + 3, trace_id, 16);
    unhex(tp + 36, span_id, 8);
    cr_assert_not_null(memmem(body, n, trace_id, 16), "trace of %.55s", tp);
    cr_assert_not_null(memmem(body, n, span_id, 8), "span of %.55s", tp);
    jobs++;
  }
  cr_assert_eq(jobs, 2, "%s", out);
  tw_delete_queue(q);
}

#define STR(k, v)                    \
  {                                  \
    amqp_cstring_bytes(k), {         \
      AMQP_FIELD_KIND_UTF8, {        \
        .bytes = { sizeof v - 1, v } \
      }                              \
    }                                \
  }

/* A dead letter in q.dlq carrying TP and TS under the header names a
 * publisher might use (not lower case); cfg gets the worker's config. */
static void dead_letter(const char *q, char *cfg, size_t len) {
  char log_[300], rec[300], settings[400], dump[8192];
  snprintf(settings, sizeof settings, "reject_unless = \"%s/never\";",
           tw_dir());
  pid_t w =
      tw_start_record(q, "queue_type = \"classic\";", settings, log_, rec);
  cr_assert_gt(w, 0, "worker did not start");
  amqp_table_entry_t h[] = {STR("TraceParent", TP), STR("Tracestate", TS),
                            STR("tenant", "acme")};
  amqp_table_t headers = {3, h};
  cr_assert_eq(tw_publish_raw(q, "job1", &headers), 0);
  cr_assert(tw_wait_text(log_, "job job1 dead-lettered", 30));
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
  char dlq[200];
  snprintf(dlq, sizeof dlq, "%s.dlq", q);
  cr_assert_eq(tw_get(dlq, 0, dump, sizeof dump), 1);
  cr_assert_str_eq(header(dump, "TraceParent"), TP, "the dead letter:\n%s",
                   dump);
  snprintf(cfg, len, "%s/warren.cfg", tw_dir());
}

/* Breaks when a replay keeps the dead letter's traceparent (the replay's
 * runs would join a trace that ended long ago) or its tracestate, sends
 * the old one beside the new, or one that does not parse. */
Test(producer_trace, dlq_replay_starts_a_new_trace) {
  char cfg[400], args[600], out[8192], dump[8192];
  dead_letter("it.trace.replay", cfg, sizeof cfg);
  snprintf(args, sizeof args, "dlq replay %s h", cfg);
  cr_assert_eq(tw_warren_cli(out, sizeof out, args), 0, "%s", out);
  cr_assert(strstr(out, "replayed 1 message(s)"), "%s", out);
  cr_assert_eq(tw_get("it.trace.replay", 1, dump, sizeof dump), 1);
  cr_log_info("replayed:\n%s", dump);
  const char *tp = header(dump, "traceparent");
  cr_assert(valid_tp(tp), "%s", dump);
  cr_assert_neq(strncmp(tp + 3, TP + 3, 32), 0, "same trace id: %s", tp);
  cr_assert_neq(strncmp(tp + 36, TP + 36, 16), 0, "same span id: %s", tp);
  cr_assert_null(
      strcasestr(strstr(dump, "h.traceparent=") + 1, "h.traceparent"),
      "the old one kept:\n%s", dump);
  cr_assert_null(strcasestr(dump, "h.tracestate="), "old tracestate kept:\n%s",
                 dump);
  cr_assert_str_eq(header(dump, "tenant"), "acme", "%s", dump);
  cr_assert(strstr(dump, "h.warren-replays=l:1\n"), "%s", dump);
}

/* Breaks when a traced replay exports no span, or one without the link to
 * the dead letter's context (the way from the new trace to the failed
 * runs) or without its replay attributes. */
Test(producer_trace, dlq_replay_exports_a_span_linked_to_the_dead_letter) {
  char cfg[400], args[600], out[8192], dump[8192], spans[400], env[64];
  dead_letter("it.trace.rspan", cfg, sizeof cfg);
  int port = tw_port() + 4;
  snprintf(spans, sizeof spans, "%s/spans", tw_dir());
  unlink(spans);
  pid_t col = collector_start(port, spans);
  cr_assert_gt(col, 0, "the stand-in collector did not start");
  snprintf(env, sizeof env, "http://127.0.0.1:%d", port);
  setenv("OTEL_EXPORTER_OTLP_ENDPOINT", env, 1);
  setenv("OTEL_BSP_SCHEDULE_DELAY", "100", 1);
  snprintf(args, sizeof args, "dlq replay %s h", cfg);
  int rc = tw_warren_cli(out, sizeof out, args);
  kill(col, SIGTERM);
  waitpid(col, NULL, 0);
  cr_assert_eq(rc, 0, "%s", out);
  cr_assert_eq(tw_get("it.trace.rspan", 1, dump, sizeof dump), 1);
  const char *tp = header(dump, "traceparent");
  cr_assert(valid_tp(tp), "%s", dump);
  static char body[65536];
  size_t n = slurp(spans, body, sizeof body);
  cr_assert_gt(n, 0, "no span reached the collector");
  const char *names[] = {"replay it.trace.rspan",
                         "messaging.operation.type",
                         "messaging.rabbitmq.destination.routing_key",
                         "warren.dlq.queue",
                         "it.trace.rspan.dlq",
                         "warren.replays",
                         "job1",
                         TS};
  for (size_t i = 0; i < sizeof names / sizeof *names; i++)
    cr_assert_not_null(memmem(body, n, names[i], strlen(names[i])),
                       "no '%s' in the export", names[i]);
  unsigned char id[16];
  unhex(tp + 36, id, 8);
  cr_assert_not_null(memmem(body, n, id, 8), "no span with the job's id");
  unhex(TP + 3, id, 16);
  cr_assert_not_null(memmem(body, n, id, 16), "no link to the old trace");
  unhex(TP + 36, id, 8);
  cr_assert_not_null(memmem(body, n, id, 8), "no link to the old span");
}
