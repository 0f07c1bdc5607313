/* The span exporter (otel/export.c) against a real HTTP collector run in
 * the test (libmicrohttpd), which decodes every request with the
 * generated protobuf-c code; and against the integration tests' receiver
 * (tests/otlp/receiver.js, protobufjs). Ports come from 5720..5739. */
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "export.h"
#include "opentelemetry/proto/collector/trace/v1/trace_service.pb-c.h"

typedef Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest
    req_t;
typedef Opentelemetry__Proto__Trace__V1__Span pb_span;
typedef Opentelemetry__Proto__Common__V1__KeyValue kv_t;

#define PORT_FIRST 5720
#define PORT_LAST 5739
#define MAX_REQS 4096

/* What the collector saw. */
static struct {
  struct MHD_Daemon *d;
  int port;
  pthread_mutex_t mu;
  int fail_first;      /* answer fail_code to this many requests first */
  int fail_code;       /* 503 unless set */
  int requests;        /* every POST, failed ones too */
  req_t *ok[MAX_REQS]; /* the ones answered 200 */
  size_t nok;
  size_t max_spans; /* most spans in one request */
  char content_type[128];
  char tenant[64];
} col = {.mu = PTHREAD_MUTEX_INITIALIZER};

typedef struct body {
  uint8_t *p;
  size_t len, cap;
} body;

static void completed(void *cls, struct MHD_Connection *c, void **ctx,
                      enum MHD_RequestTerminationCode why) {
  (void)cls, (void)c, (void)why;
  body *b = *ctx;
  if (b) free(b->p);
  free(b);
  *ctx = NULL;
}

static enum MHD_Result answer(void *cls, struct MHD_Connection *c,
                              const char *url, const char *method,
                              const char *version, const char *data,
                              size_t *size, void **ctx) {
  (void)cls, (void)version;
  if (!*ctx) {
    *ctx = calloc(1, sizeof(body));
    return *ctx ? MHD_YES : MHD_NO;
  }
  body *b = *ctx;
  if (*size) {
    if (b->len + *size > b->cap) {
      b->cap = (b->len + *size) * 2;
      b->p = realloc(b->p, b->cap);
      cr_assert(b->p);
    }
    memcpy(b->p + b->len, data, *size);
    b->len += *size;
    *size = 0;
    return MHD_YES;
  }
  unsigned code = 200;
  pthread_mutex_lock(&col.mu);
  col.requests++;
  const char *ct =
      MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type");
  const char *tn = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "x-tenant");
  snprintf(col.content_type, sizeof col.content_type, "%s", ct ? ct : "");
  snprintf(col.tenant, sizeof col.tenant, "%s", tn ? tn : "");
  if (strcmp(method, "POST") != 0 || strcmp(url, "/v1/traces") != 0) {
    code = 404;
  } else if (col.fail_first > 0) {
    col.fail_first--;
    code = (unsigned)(col.fail_code ? col.fail_code : 503);
  } else {
    req_t *r =
        opentelemetry__proto__collector__trace__v1__export_trace_service_request__unpack(
            NULL, b->len, b->p);
    if (!r || col.nok == MAX_REQS) {
      code = 400;
      if (r)
        opentelemetry__proto__collector__trace__v1__export_trace_service_request__free_unpacked(
            r, NULL);
    } else {
      col.ok[col.nok++] = r;
      size_t n = r->resource_spans[0]->scope_spans[0]->n_spans;
      if (n > col.max_spans) col.max_spans = n;
    }
  }
  pthread_mutex_unlock(&col.mu);
  /* An empty ExportTraceServiceResponse is zero bytes. */
  struct MHD_Response *resp =
      MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
  MHD_add_response_header(resp, "Content-Type", "application/x-protobuf");
  enum MHD_Result ret = MHD_queue_response(c, code, resp);
  MHD_destroy_response(resp);
  return ret;
}

static void collector_start(void) {
  for (int p = PORT_FIRST; p <= PORT_LAST && !col.d; p++) {
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)p)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    col.d = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD, (uint16_t)p, NULL, NULL, answer, NULL,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
        MHD_OPTION_NOTIFY_COMPLETED, completed, NULL, MHD_OPTION_END);
    col.port = p;
  }
  cr_assert(col.d, "no free port in %d..%d", PORT_FIRST, PORT_LAST);
}

static void collector_stop(void) {
  if (col.d) MHD_stop_daemon(col.d);
  col.d = NULL;
  for (size_t i = 0; i < col.nok; i++)
    opentelemetry__proto__collector__trace__v1__export_trace_service_request__free_unpacked(
        col.ok[i], NULL);
  col.nok = 0;
}

static wr_otel_cfg config(int port) {
  wr_otel_cfg c;
  memset(&c, 0, sizeof c);
  c.enabled = 1;
  snprintf(c.endpoint, sizeof c.endpoint, "http://127.0.0.1:%d/v1/traces",
           port);
  snprintf(c.service_name, sizeof c.service_name, "orders");
  c.resource[0] = (wr_otel_kv){"deployment.environment", "test"};
  c.n_resource = 1;
  c.max_queue = 2048;
  c.max_batch = 512;
  c.delay = 0.1;
  c.timeout = 5;
  c.retry_max = 30;
  return c;
}

static wr_exporter *start(const wr_otel_cfg *c) {
  char err[256];
  wr_exporter *e = wr_exporter_start(c, err, sizeof err);
  cr_assert(e, "%s", err);
  return e;
}

static double mono(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Wait up to secs for the exporter to have exported n spans. */
static wr_exporter_stats wait_exported(wr_exporter *e, uint64_t n,
                                       double secs) {
  wr_exporter_stats s;
  double until = mono() + secs;
  do {
    wr_exporter_stats_get(e, &s);
    if (s.exported >= n) break;
    usleep(10000);
  } while (mono() < until);
  return s;
}

static const kv_t *find(kv_t **kv, size_t n, const char *key) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(kv[i]->key, key) == 0) return kv[i];
  cr_assert_fail("no attribute %s", key);
  return NULL;
}

static size_t spans_received(void) {
  size_t n = 0;
  for (size_t i = 0; i < col.nok; i++)
    n += col.ok[i]->resource_spans[0]->scope_spans[0]->n_spans;
  return n;
}

static wr_span numbered(int i) {
  wr_span sp = {.name = "job", .kind = WR_SPAN_CONSUMER};
  sp.trace_id[0] = 1;
  sp.span_id[0] = (uint8_t)i;
  sp.span_id[1] = (uint8_t)(i >> 8);
  sp.start_ns = 1000 + (uint64_t)i;
  sp.end_ns = 2000 + (uint64_t)i;
  return sp;
}

TestSuite(exporter, .init = collector_start, .fini = collector_stop,
          .timeout = 60);

Test(exporter, a_span_arrives_with_every_field_and_the_resource) {
  wr_otel_cfg c = config(col.port);
  c.headers[0] = (wr_otel_kv){"x-tenant", "7"};
  c.n_headers = 1;
  wr_exporter *e = start(&c);

  char name[] = "orders process";
  wr_attr at[4] = {
      {.key = "messaging.system",
       .type = WR_ATTR_STRING,
       .str = "rabbitmq",
       .len = 8},
      {.key = "attempt", .type = WR_ATTR_INT, .i = -3},
      {.key = "ratio", .type = WR_ATTR_DOUBLE, .d = 0.125},
      {.key = "redelivered", .type = WR_ATTR_BOOL, .i = 1},
  };
  wr_attr evat = {.key = "delay_ms", .type = WR_ATTR_INT, .i = 250};
  wr_span_event ev = {"retry scheduled", 1500, &evat, 1};
  wr_span_link lk = {.tracestate = "a=b", .flags = 1};
  memset(lk.trace_id, 0x77, 16);
  memset(lk.span_id, 0x66, 8);
  wr_span sp = {.has_parent = 1,
                .tracestate = "k=v",
                .flags = 1,
                .name = name,
                .kind = WR_SPAN_CONSUMER,
                .start_ns = 1700000000000000001ull,
                .end_ns = 1700000000900000002ull,
                .attrs = at,
                .nattrs = 4,
                .events = &ev,
                .nevents = 1,
                .links = &lk,
                .nlinks = 1,
                .status = WR_STATUS_ERROR,
                .status_msg = "crashed"};
  for (int i = 0; i < 16; i++) sp.trace_id[i] = (uint8_t)(0xf0 - i);
  for (int i = 0; i < 8; i++) sp.span_id[i] = (uint8_t)(i + 1);
  for (int i = 0; i < 8; i++) sp.parent_span_id[i] = (uint8_t)(0x80 + i);
  cr_assert_eq(wr_exporter_submit(e, &sp), 0);
  /* Borrowed only during the call: the exporter has its copy. */
  memset(name, 'X', sizeof name - 1);
  memset(at, 0, sizeof at);

  wr_exporter_stats s = wait_exported(e, 1, 10);
  cr_assert_eq(s.exported, 1);
  wr_exporter_stop(e, 5);

  pthread_mutex_lock(&col.mu);
  cr_assert_eq(col.nok, 1);
  cr_assert_str_eq(col.content_type, "application/x-protobuf");
  cr_assert_str_eq(col.tenant, "7");
  Opentelemetry__Proto__Trace__V1__ResourceSpans *rs =
      col.ok[0]->resource_spans[0];
  kv_t **ra = rs->resource->attributes;
  size_t nra = rs->resource->n_attributes;
  cr_assert_str_eq(find(ra, nra, "service.name")->value->string_value,
                   "orders");
  cr_assert_str_eq(find(ra, nra, "deployment.environment")->value->string_value,
                   "test");
  cr_assert_eq(find(ra, nra, "process.pid")->value->int_value, getpid());
  cr_assert_str_eq(rs->scope_spans[0]->scope->name, "warren");
  cr_assert_eq(rs->scope_spans[0]->n_spans, 1);
  const pb_span *p = rs->scope_spans[0]->spans[0];
  cr_assert_eq(p->trace_id.len, 16);
  for (int i = 0; i < 16; i++) cr_assert_eq(p->trace_id.data[i], 0xf0 - i);
  cr_assert_eq(p->span_id.len, 8);
  for (int i = 0; i < 8; i++) cr_assert_eq(p->span_id.data[i], i + 1);
  cr_assert_eq(p->parent_span_id.len, 8);
  for (int i = 0; i < 8; i++) cr_assert_eq(p->parent_span_id.data[i], 0x80 + i);
  cr_assert_str_eq(p->trace_state, "k=v");
  cr_assert_str_eq(p->name, "orders process");
  cr_assert_eq(p->kind, WR_SPAN_CONSUMER);
  cr_assert_eq(p->start_time_unix_nano, 1700000000000000001ull);
  cr_assert_eq(p->end_time_unix_nano, 1700000000900000002ull);
  cr_assert_eq(p->n_attributes, 4);
  cr_assert_str_eq(
      find(p->attributes, 4, "messaging.system")->value->string_value,
      "rabbitmq");
  cr_assert_eq(find(p->attributes, 4, "attempt")->value->int_value, -3);
  cr_assert_float_eq(find(p->attributes, 4, "ratio")->value->double_value,
                     0.125, 1e-15);
  const kv_t *b = find(p->attributes, 4, "redelivered");
  cr_assert_eq(b->value->value_case,
               OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BOOL_VALUE);
  cr_assert(b->value->bool_value);
  cr_assert_eq(p->n_events, 1);
  cr_assert_str_eq(p->events[0]->name, "retry scheduled");
  cr_assert_eq(p->events[0]->time_unix_nano, 1500);
  cr_assert_eq(p->events[0]->attributes[0]->value->int_value, 250);
  cr_assert_eq(p->n_links, 1);
  cr_assert_eq(p->links[0]->trace_id.data[15], 0x77);
  cr_assert_eq(p->links[0]->span_id.data[7], 0x66);
  cr_assert_str_eq(p->links[0]->trace_state, "a=b");
  cr_assert_eq(p->status->code, WR_STATUS_ERROR);
  cr_assert_str_eq(p->status->message, "crashed");
  pthread_mutex_unlock(&col.mu);
}

Test(exporter, many_spans_go_in_several_batches_and_none_is_lost) {
  wr_otel_cfg c = config(col.port);
  c.max_batch = 50;
  wr_exporter *e = start(&c);
  enum { N = 1000 };
  for (int i = 0; i < N; i++) {
    wr_span sp = numbered(i);
    cr_assert_eq(wr_exporter_submit(e, &sp), 0);
    /* Spread over time, so that some batches go out half full. */
    if (i % 100 == 0) usleep(20000);
  }
  wr_exporter_stats s = wait_exported(e, N, 20);
  wr_exporter_stop(e, 5);
  cr_assert_eq(s.exported, N);
  cr_assert_eq(s.submitted, N);
  pthread_mutex_lock(&col.mu);
  cr_assert_eq(spans_received(), N);
  cr_assert_geq(col.nok, N / 50);
  cr_assert_leq(col.max_spans, 50);
  static uint8_t seen[N];
  for (size_t r = 0; r < col.nok; r++) {
    Opentelemetry__Proto__Trace__V1__ScopeSpans *ss =
        col.ok[r]->resource_spans[0]->scope_spans[0];
    for (size_t i = 0; i < ss->n_spans; i++) {
      const pb_span *p = ss->spans[i];
      int id = p->span_id.data[0] | p->span_id.data[1] << 8;
      cr_assert_lt(id, N);
      cr_assert_eq(p->start_time_unix_nano, 1000 + (uint64_t)id);
      seen[id]++;
    }
  }
  for (int i = 0; i < N; i++) cr_assert_eq(seen[i], 1, "span %d", i);
  pthread_mutex_unlock(&col.mu);
}

Test(exporter, a_collector_answering_503_is_retried_until_it_accepts) {
  pthread_mutex_lock(&col.mu);
  col.fail_first = 3;
  pthread_mutex_unlock(&col.mu);
  wr_otel_cfg c = config(col.port);
  wr_exporter *e = start(&c);
  for (int i = 0; i < 10; i++) {
    wr_span sp = numbered(i);
    cr_assert_eq(wr_exporter_submit(e, &sp), 0);
  }
  wr_exporter_stats s = wait_exported(e, 10, 20);
  wr_exporter_stop(e, 5);
  cr_assert_eq(s.exported, 10);
  cr_assert_eq(s.export_errors, 3);
  cr_assert_eq(s.dropped_failed, 0);
  pthread_mutex_lock(&col.mu);
  cr_assert_eq(col.requests, 4);
  cr_assert_eq(spans_received(), 10);
  pthread_mutex_unlock(&col.mu);
}

Test(exporter, a_request_refused_with_400_is_dropped_without_retry) {
  pthread_mutex_lock(&col.mu);
  col.fail_first = 1;
  col.fail_code = 400;
  pthread_mutex_unlock(&col.mu);
  wr_otel_cfg c = config(col.port);
  wr_exporter *e = start(&c);
  for (int i = 0; i < 5; i++) {
    wr_span sp = numbered(i);
    wr_exporter_submit(e, &sp);
  }
  wr_exporter_stats s;
  double until = mono() + 10;
  do {
    usleep(10000);
    wr_exporter_stats_get(e, &s);
  } while (s.dropped_failed < 5 && mono() < until);
  /* The next batch is sent as usual. */
  wr_span sp = numbered(5);
  wr_exporter_submit(e, &sp);
  s = wait_exported(e, 1, 10);
  wr_exporter_stop(e, 5);
  cr_assert_eq(s.dropped_failed, 5);
  cr_assert_eq(s.export_errors, 1);
  cr_assert_eq(s.exported, 1);
  pthread_mutex_lock(&col.mu);
  cr_assert_eq(col.requests, 2);
  pthread_mutex_unlock(&col.mu);
}

Test(exporter, stop_flushes_what_is_queued) {
  wr_otel_cfg c = config(col.port);
  c.delay = 3600; /* never by the timer */
  wr_exporter *e = start(&c);
  for (int i = 0; i < 7; i++) {
    wr_span sp = numbered(i);
    cr_assert_eq(wr_exporter_submit(e, &sp), 0);
  }
  wr_exporter_stats s;
  wr_exporter_stats_get(e, &s);
  cr_assert_eq(s.queued, 7);
  wr_exporter_stop(e, 5);
  pthread_mutex_lock(&col.mu);
  cr_assert_eq(spans_received(), 7);
  pthread_mutex_unlock(&col.mu);
}

Test(exporter, a_span_over_the_size_cap_is_dropped_and_counted) {
  wr_otel_cfg c = config(col.port);
  wr_exporter *e = start(&c);
  static char big[20000];
  memset(big, 'x', sizeof big);
  wr_attr at = {
      .key = "body", .type = WR_ATTR_STRING, .str = big, .len = sizeof big};
  wr_span sp = numbered(1);
  sp.attrs = &at;
  sp.nattrs = 1;
  cr_assert_eq(wr_exporter_submit(e, &sp), -1);
  wr_exporter_stats s;
  wr_exporter_stats_get(e, &s);
  cr_assert_eq(s.dropped_large, 1);
  cr_assert_eq(s.submitted, 0);
  wr_exporter_stop(e, 5);
}

/* A port in our range bound but not listening: connections are refused,
 * and no other test can take it meanwhile. */
static int refusing_port(int *fd) {
  for (int p = PORT_FIRST; p <= PORT_LAST; p++) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)p)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(s, (struct sockaddr *)&sa, sizeof sa) == 0) {
      *fd = s;
      return p;
    }
    close(s);
  }
  cr_assert_fail("no free port");
  return -1;
}

Test(exporter,
     with_the_collector_down_submit_never_blocks_and_the_queue_holds) {
  int fd;
  wr_otel_cfg c = config(refusing_port(&fd));
  c.max_queue = 100;
  c.max_batch = 10;
  c.retry_max = 2;
  c.delay = 0.05;
  wr_exporter *e = start(&c);
  /* Let the first batch fail, so the exporter is retrying. */
  for (int i = 0; i < 10; i++) {
    wr_span sp = numbered(i);
    wr_exporter_submit(e, &sp);
  }
  usleep(200000);
  enum { N = 10000 };
  double t0 = mono();
  int refused = 0;
  for (int i = 0; i < N; i++) {
    wr_span sp = numbered(i);
    refused += wr_exporter_submit(e, &sp) != 0;
  }
  double took = mono() - t0;
  /* A guard against blocking I/O in submit, not a performance goal. */
  cr_assert_lt(took, 0.2, "10000 submits took %.3f s", took);
  wr_exporter_stats s;
  wr_exporter_stats_get(e, &s);
  cr_assert_leq(s.queued, 100);
  cr_assert_geq(s.dropped_full, N - 100);
  cr_assert_eq((uint64_t)refused, s.dropped_full);
  cr_assert_eq(s.exported, 0);
  cr_assert_geq(s.export_errors, 1);
  double t1 = mono();
  wr_exporter_stop(e, 0.5);
  cr_assert_lt(mono() - t1, 3.0, "stop waited past its timeout");
  close(fd);
  /* Everything taken is accounted for. */
  cr_assert_eq(s.submitted + s.dropped_full, N + 10);
}

Test(exporter, after_the_retry_time_a_batch_is_dropped_and_the_next_goes_out) {
  pthread_mutex_lock(&col.mu);
  col.fail_first = 1000000;
  pthread_mutex_unlock(&col.mu);
  wr_otel_cfg c = config(col.port);
  c.retry_max = 1;
  wr_exporter *e = start(&c);
  for (int i = 0; i < 3; i++) {
    wr_span sp = numbered(i);
    wr_exporter_submit(e, &sp);
  }
  wr_exporter_stats s;
  double until = mono() + 10;
  do {
    usleep(10000);
    wr_exporter_stats_get(e, &s);
  } while (s.dropped_failed < 3 && mono() < until);
  cr_assert_eq(s.dropped_failed, 3);
  pthread_mutex_lock(&col.mu);
  col.fail_first = 0;
  pthread_mutex_unlock(&col.mu);
  wr_span sp = numbered(9);
  wr_exporter_submit(e, &sp);
  s = wait_exported(e, 1, 10);
  cr_assert_eq(s.exported, 1);
  wr_exporter_stop(e, 5);
}

/* ---- the receiver of the integration tests (tests/otlp/receiver.js) ---- */

#define RECEIVER WARREN_SOURCE_DIR "/tests/otlp/receiver.js"

static pid_t receiver_pid = -1;

/* Start the receiver on the first port of our range it can bind; returns
 * the port once it says it listens. */
static int receiver_start(const char *out) {
  for (int p = PORT_FIRST; p <= PORT_LAST; p++) {
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    char port[8];
    snprintf(port, sizeof port, "%d", p);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
      dup2(fds[1], 1);
      close(fds[0]);
      execlp("node", "node", RECEIVER, port, out, (char *)NULL);
      _exit(127);
    }
    close(fds[1]);
    char line[64] = "";
    size_t n = 0;
    struct pollfd pf = {.fd = fds[0], .events = POLLIN};
    /* Node starts in well under a second; ten under a sanitizer. */
    while (n < sizeof line - 1 && poll(&pf, 1, 10000) == 1) {
      ssize_t r = read(fds[0], line + n, sizeof line - 1 - n);
      if (r <= 0) break;
      n += (size_t)r;
      if (memchr(line, '\n', n)) break;
    }
    close(fds[0]);
    line[n] = '\0';
    char want[32];
    snprintf(want, sizeof want, "listening %d\n", p);
    if (strcmp(line, want) == 0) {
      receiver_pid = pid;
      return p;
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
  }
  cr_assert_fail("the receiver did not start on any port of %d..%d", PORT_FIRST,
                 PORT_LAST);
  return -1;
}

static void receiver_stop(void) {
  if (receiver_pid > 0) {
    kill(receiver_pid, SIGKILL);
    waitpid(receiver_pid, NULL, 0);
  }
  receiver_pid = -1;
}

static char *slurp(const char *file) {
  FILE *f = fopen(file, "r");
  if (!f) return NULL;
  static char buf[65536];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  return buf;
}

static const char *jstr(const cJSON *o, const char *k) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
  cr_assert(cJSON_IsString(v), "%s is not a string", k);
  return v->valuestring;
}

static double jnum(const cJSON *o, const char *k) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
  cr_assert(cJSON_IsNumber(v), "%s is not a number", k);
  return v->valuedouble;
}

TestSuite(receiver, .fini = receiver_stop, .timeout = 60);

Test(receiver, the_node_receiver_decodes_what_the_exporter_sends) {
  if (access(WARREN_SOURCE_DIR "/tests/otlp/node_modules/protobufjs", R_OK) !=
      0)
    cr_skip_test("tests/otlp/node_modules missing (scripts/setup installs it)");
  char out[] = "/tmp/warren-otlp-XXXXXX";
  int fd = mkstemp(out);
  cr_assert_geq(fd, 0);
  close(fd);
  int port = receiver_start(out);
  wr_otel_cfg c = config(port);
  wr_exporter *e = start(&c);
  wr_attr at[4] = {
      {.key = "s", .type = WR_ATTR_STRING, .str = "v\"1", .len = 3},
      {.key = "i", .type = WR_ATTR_INT, .i = -7},
      {.key = "d", .type = WR_ATTR_DOUBLE, .d = 1.5},
      {.key = "b", .type = WR_ATTR_BOOL, .i = 0},
  };
  wr_span_event ev = {"ev", 123, at, 1};
  wr_span_link lk = {.flags = 1};
  memset(lk.trace_id, 0xab, 16);
  memset(lk.span_id, 0xcd, 8);
  wr_span sp = {.has_parent = 1,
                .name = "orders process",
                .kind = WR_SPAN_CONSUMER,
                .start_ns = 1700000000000000001ull,
                .end_ns = 1700000000900000002ull,
                .attrs = at,
                .nattrs = 4,
                .events = &ev,
                .nevents = 1,
                .links = &lk,
                .nlinks = 1,
                .status = WR_STATUS_ERROR,
                .status_msg = "boom"};
  for (int i = 0; i < 16; i++) sp.trace_id[i] = (uint8_t)i;
  memset(sp.span_id, 0x12, 8);
  memset(sp.parent_span_id, 0x34, 8);
  cr_assert_eq(wr_exporter_submit(e, &sp), 0);
  wr_exporter_stats s = wait_exported(e, 1, 10);
  wr_exporter_stop(e, 5);
  cr_assert_eq(s.exported, 1);

  char *text = slurp(out);
  unlink(out);
  cr_assert(text && strchr(text, '\n'), "no line in the receiver's file");
  cJSON *j = cJSON_Parse(text);
  cr_assert(j, "not JSON: %s", text);
  cr_assert_str_eq(jstr(j, "traceId"), "000102030405060708090a0b0c0d0e0f");
  cr_assert_str_eq(jstr(j, "spanId"), "1212121212121212");
  cr_assert_str_eq(jstr(j, "parentSpanId"), "3434343434343434");
  cr_assert_str_eq(jstr(j, "name"), "orders process");
  cr_assert_eq(jnum(j, "kind"), 5);
  cr_assert_str_eq(jstr(j, "startTimeUnixNano"), "1700000000000000001");
  cr_assert_str_eq(jstr(j, "endTimeUnixNano"), "1700000000900000002");
  const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, "attributes");
  cr_assert_str_eq(jstr(a, "s"), "v\"1");
  cr_assert_eq(jnum(a, "i"), -7);
  cr_assert_eq(jnum(a, "d"), 1.5);
  cr_assert(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(a, "b")));
  const cJSON *evj =
      cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "events"), 0);
  cr_assert_str_eq(jstr(evj, "name"), "ev");
  cr_assert_str_eq(
      jstr(cJSON_GetObjectItemCaseSensitive(evj, "attributes"), "s"), "v\"1");
  const cJSON *lj =
      cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "links"), 0);
  cr_assert_str_eq(jstr(lj, "traceId"), "abababababababababababababababab");
  cr_assert_str_eq(jstr(lj, "spanId"), "cdcdcdcdcdcdcdcd");
  const cJSON *st = cJSON_GetObjectItemCaseSensitive(j, "status");
  cr_assert_eq(jnum(st, "code"), 2);
  cr_assert_str_eq(jstr(st, "message"), "boom");
  const cJSON *r = cJSON_GetObjectItemCaseSensitive(j, "resource");
  cr_assert_str_eq(jstr(r, "service.name"), "orders");
  cr_assert_eq(jnum(r, "process.pid"), getpid());
  cr_assert_str_eq(jstr(cJSON_GetObjectItemCaseSensitive(j, "scope"), "name"),
                   "warren");
  cJSON_Delete(j);
}
