/*
 * record: a test handler that leaves evidence. For each job it appends
 *   start <message_id> <monotonic ns> <pid>
 *   end <message_id> <monotonic ns> <pid>
 * to the file in settings.log (O_APPEND, one write per line, so lines from
 * several worker processes never interleave), sleeping settings.sleep_ms in
 * between. settings.crash_on: a message id whose job segfaults the worker;
 * fail_suffix / reject_suffix: ids ending in it return retry / reject;
 * reject_prefix: ids starting with it are rejected; sigpipe_on: a message
 * id whose job writes to a closed pipe; orphan_on: a message id whose job
 * forks a child that sleeps (holding the worker's socket; it logs
 * `orphan <id> <pid>`), then segfaults; leak_kb: every job leaks that much
 * memory (touched); exit_on: a message id whose job calls exit(3);
 * digest (bool): every attempt first appends
 *   body <message_id> <attempt> <body_len> <FNV-1a 64 of the body, hex>
 * scribble_on: a message id whose first two attempts write to its body
 * (which the ABI forbids).
 * trace (bool): every attempt appends
 *   trace <message_id> <attempt> <trace_id or -> <span_id or -> <traceparent>
 *     api=<msg->api is init's api> crashes=<n> id=<a message id is present>
 * and sets span attribute app.job = its message id and app.n = 42, and adds
 * an event app.step {k = "v"} (ABI 1.1).
 * followup_queue: a job whose id has no '/' publishes one follow-up to that
 * queue (default exchange, default message id, header app.kind=followup,
 * body "next <id>") and, if followup_unroutable is set, a second one with
 * that routing key on the default exchange (no such queue: it comes back);
 * followup_exchange: the follow-up goes through that exchange instead.
 * fail_while: a path; while that file exists, every job logs `fail` and
 * returns retry (a test flips it at run time). slow_while, slow_while_ms:
 * while that file exists, every job first sleeps slow_while_ms.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <warren/handler.h>

typedef struct rec {
  int fd;
  long sleep_ms;
  const char *crash_on, *hang_on, *fail_on, *reject_unless, *reject_prefix;
  const char *sigpipe_on, *orphan_on, *fail_suffix, *reject_suffix, *exit_on;
  const char *scribble_on, *followup_queue, *followup_unroutable;
  const char *followup_exchange;
  const char *fail_while, *slow_while;
  long slow_while_ms;
  int trace;
  long leak_kb;
  long fail_below;
  int digest;
  const warren_api *api;
} rec;

static int rec_init(const warren_api *api, const warren_settings *s,
                    void **state) {
  warren_value v;
  rec *r = calloc(1, sizeof *r);
  if (!r) return -1;
  if (api->setting_get(s, "log", &v) != 0 || v.type != WARREN_VALUE_STRING) {
    free(r);
    return -1;
  }
  r->fd = open(v.str, O_WRONLY | O_APPEND | O_CREAT, 0644);
  if (api->setting_get(s, "sleep_ms", &v) == 0 && v.type == WARREN_VALUE_INT)
    r->sleep_ms = (long)v.i;
  if (api->setting_get(s, "crash_on", &v) == 0) r->crash_on = v.str;
  if (api->setting_get(s, "hang_on", &v) == 0) r->hang_on = v.str;
  if (api->setting_get(s, "fail_on", &v) == 0) r->fail_on = v.str;
  if (api->setting_get(s, "reject_unless", &v) == 0) r->reject_unless = v.str;
  if (api->setting_get(s, "reject_prefix", &v) == 0) r->reject_prefix = v.str;
  if (api->setting_get(s, "sigpipe_on", &v) == 0) r->sigpipe_on = v.str;
  if (api->setting_get(s, "orphan_on", &v) == 0) r->orphan_on = v.str;
  if (api->setting_get(s, "exit_on", &v) == 0) r->exit_on = v.str;
  if (api->setting_get(s, "scribble_on", &v) == 0) r->scribble_on = v.str;
  if (api->setting_get(s, "leak_kb", &v) == 0) r->leak_kb = (long)v.i;
  if (api->setting_get(s, "fail_below", &v) == 0) r->fail_below = (long)v.i;
  if (api->setting_get(s, "digest", &v) == 0) r->digest = (int)v.i;
  if (api->setting_get(s, "fail_suffix", &v) == 0) r->fail_suffix = v.str;
  if (api->setting_get(s, "reject_suffix", &v) == 0) r->reject_suffix = v.str;
  if (api->setting_get(s, "trace", &v) == 0) r->trace = (int)v.i;
  if (api->setting_get(s, "followup_queue", &v) == 0) r->followup_queue = v.str;
  if (api->setting_get(s, "followup_exchange", &v) == 0)
    r->followup_exchange = v.str;
  if (api->setting_get(s, "followup_unroutable", &v) == 0)
    r->followup_unroutable = v.str;
  if (api->setting_get(s, "fail_while", &v) == 0) r->fail_while = v.str;
  if (api->setting_get(s, "slow_while", &v) == 0) r->slow_while = v.str;
  if (api->setting_get(s, "slow_while_ms", &v) == 0)
    r->slow_while_ms = (long)v.i;
  r->api = api;
  *state = r;
  return r->fd < 0 ? -1 : 0;
}

static void line(rec *r, const char *what, const char *id, unsigned attempt) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  char buf[512];
  int n = snprintf(buf, sizeof buf, "%s %s %lld %d %u\n", what, id,
                   (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec,
                   (int)getpid(), attempt);
  if (n > 0 && write(r->fd, buf, (size_t)n) != n) abort();
}

static int ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), k = suffix ? strlen(suffix) : 0;
  return suffix && n >= k && strcmp(s + n - k, suffix) == 0;
}

static void body_line(rec *r, const warren_message *m) {
  uint64_t h = 14695981039346656037ull;
  const unsigned char *b = m->body;
  for (size_t i = 0; i < m->body_len; i++) h = (h ^ b[i]) * 1099511628211ull;
  char buf[300];
  int n = snprintf(buf, sizeof buf, "body %s %u %zu %016llx\n", m->message_id,
                   m->attempt, m->body_len, (unsigned long long)h);
  if (n > 0 && write(r->fd, buf, (size_t)n) != n) abort();
}

/* ABI 1.1: the job's trace, its span, follow-ups. */
static void trace_calls(rec *r, const warren_message *m) {
  char buf[400];
  int n = snprintf(
      buf, sizeof buf, "trace %s %u %s %s %s api=%d crashes=%u id=%d\n",
      m->message_id, m->attempt, m->trace_id[0] ? m->trace_id : "-",
      m->span_id[0] ? m->span_id : "-",
      m->traceparent[0] ? m->traceparent : "-", m->api == r->api, m->crashes,
      (m->present & WARREN_MESSAGE_HAS_MESSAGE_ID) != 0);
  if (n > 0 && write(r->fd, buf, (size_t)n) != n) abort();
  warren_value v = {.type = WARREN_VALUE_STRING,
                    .str = m->message_id,
                    .len = strlen(m->message_id)};
  warren_value i = {.type = WARREN_VALUE_INT, .i = 42};
  if (r->api->span_set_attribute(m, "app.job", &v) != WARREN_OK ||
      r->api->span_set_attribute(m, "app.n", &i) != WARREN_OK)
    abort();
  warren_attribute ev[] = {
      {"k", {.type = WARREN_VALUE_STRING, .str = "v", .len = 1}}};
  if (r->api->span_add_event(m, "app.step", ev, 1) != WARREN_OK) abort();
}

static void followups(rec *r, const warren_message *m) {
  char body[300];
  int n = snprintf(body, sizeof body, "next %s", m->message_id);
  warren_attribute hd[] = {
      {"app.kind", {.type = WARREN_VALUE_STRING, .str = "followup", .len = 8}}};
  warren_publish p = {.size = sizeof p,
                      .routing_key = r->followup_queue,
                      .body = body,
                      .body_len = (size_t)n,
                      .headers = hd,
                      .n_headers = 1,
                      .exchange = r->followup_exchange};
  if (r->api->publish(m, &p) != WARREN_OK) abort();
  if (r->followup_unroutable) {
    p.routing_key = r->followup_unroutable;
    if (r->api->publish(m, &p) != WARREN_OK) abort();
  }
}

static warren_result rec_handle(void *state, const warren_message *m) {
  rec *r = state;
  if (r->digest) body_line(r, m);
  if (r->trace) trace_calls(r, m);
  if (r->followup_queue && !strchr(m->message_id, '/')) followups(r, m);
  line(r, "start", m->message_id, m->attempt);
  if (r->leak_kb > 0) {
    char *leak = malloc((size_t)r->leak_kb * 1024);
    if (leak) memset(leak, 1, (size_t)r->leak_kb * 1024); /* never freed */
  }
  if (r->crash_on && strcmp(r->crash_on, m->message_id) == 0) raise(SIGSEGV);
  if (r->scribble_on && strcmp(r->scribble_on, m->message_id) == 0 &&
      m->attempt < 3 && m->body_len)
    *(volatile char *)m->body ^= 1; /* casts away the ABI's const */
  if (r->exit_on && strcmp(r->exit_on, m->message_id) == 0) exit(3);
  if (r->orphan_on && strcmp(r->orphan_on, m->message_id) == 0) {
    pid_t kid = fork();
    if (kid == 0) {
      sleep(60);
      _exit(0);
    }
    char buf[64];
    int n =
        snprintf(buf, sizeof buf, "orphan %s %d\n", m->message_id, (int)kid);
    if (write(r->fd, buf, (size_t)n) != n) abort();
    raise(SIGSEGV);
  }
  while (r->hang_on && strcmp(r->hang_on, m->message_id) == 0) pause();
  struct stat sw;
  if (r->slow_while && stat(r->slow_while, &sw) == 0) {
    struct timespec d = {r->slow_while_ms / 1000,
                         (r->slow_while_ms % 1000) * 1000000L};
    nanosleep(&d, NULL);
  }
  if (r->fail_while && stat(r->fail_while, &sw) == 0) {
    r->api->set_error(m, "%s exists", r->fail_while);
    line(r, "fail", m->message_id, m->attempt);
    return WARREN_RETRY;
  }
  if (r->reject_prefix &&
      strncmp(m->message_id, r->reject_prefix, strlen(r->reject_prefix)) == 0) {
    line(r, "reject", m->message_id, m->attempt);
    return WARREN_REJECT;
  }
  if (r->sigpipe_on && strcmp(r->sigpipe_on, m->message_id) == 0) {
    int p[2];
    if (pipe(p) != 0) abort();
    close(p[0]);
    if (write(p[1], "x", 1) != -1) abort(); /* EPIPE, or SIGPIPE kills us */
    close(p[1]);
  }
  if (r->fail_on && strcmp(r->fail_on, m->message_id) == 0) {
    r->api->set_error(m, "fails on purpose (attempt %u)", m->attempt);
    line(r, "fail", m->message_id, m->attempt);
    return WARREN_RETRY;
  }
  if (ends_with(m->message_id, r->fail_suffix)) {
    line(r, "fail", m->message_id, m->attempt);
    return WARREN_RETRY;
  }
  if (ends_with(m->message_id, r->reject_suffix)) {
    line(r, "reject", m->message_id, m->attempt);
    return WARREN_REJECT;
  }
  if ((long)m->attempt < r->fail_below) {
    line(r, "fail", m->message_id, m->attempt);
    return WARREN_RETRY;
  }
  struct stat st;
  if (r->reject_unless && stat(r->reject_unless, &st) != 0) {
    r->api->set_error(m, "%s is missing", r->reject_unless);
    line(r, "reject", m->message_id, m->attempt);
    return WARREN_REJECT;
  }
  if (r->sleep_ms > 0) {
    struct timespec d = {r->sleep_ms / 1000, (r->sleep_ms % 1000) * 1000000L};
    nanosleep(&d, NULL);
  }
  line(r, "end", m->message_id, m->attempt);
  return WARREN_ACK;
}

static void rec_shutdown(void *state) {
  rec *r = state;
  close(r->fd);
  free(r);
}

WARREN_HANDLER_DEFINE("record", rec_init, rec_handle, rec_shutdown);
