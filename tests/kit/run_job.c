/*
 * run_job PLUGIN.so: load a handler built from the installed template
 * (handlers/template/handler.c) with Warren's own loader and run jobs
 * through it as the worker does, without a broker: in a worker process
 * (wr_pool, as tests/test_pool.c) and in-process (isolation = false).
 * Expects the template's answers: ack a job with a body, reject an empty
 * body and one above settings.max_body, with the job's id in the error.
 * Exit 0 when every answer is right. Driven by tests/kit/kit-test.
 */
#include <libconfig.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

#include <warren/status.h>

#include "headers.h"
#include "log.h"
#include "plugin.h"
#include "pool.h"
#include "worker.h"

static wr_job *done_job;
static int done_result;
static char done_err[WR_IPC_MAX_ERROR + 1];
static int failures, lost;

#define CHECK(cond, ...)                                       \
  do {                                                         \
    if (!(cond)) {                                             \
      fprintf(stderr, "run_job: %s:%d: ", __FILE__, __LINE__); \
      fprintf(stderr, __VA_ARGS__);                            \
      fputc('\n', stderr);                                     \
      failures++;                                              \
    }                                                          \
  } while (0)

static void on_done(void *ctx, wr_pool *p, wr_job *job, int result,
                    const char *err, size_t err_len) {
  (void)ctx, (void)p;
  done_job = job;
  done_result = result;
  snprintf(done_err, sizeof done_err, "%.*s", (int)err_len, err);
}

static void on_lost(void *ctx, wr_pool *p, wr_job *job, const char *why,
                    int timed_out) {
  (void)ctx, (void)p, (void)job, (void)timed_out;
  fprintf(stderr, "run_job: the worker died: %s\n", why);
  failures++;
  lost++;
}

static void on_unstarted(void *ctx, wr_pool *p, wr_job *job) {
  (void)ctx, (void)p, (void)job;
}

static const wr_pool_events ev = {on_done, on_lost, on_unstarted, NULL};

typedef struct expect {
  const char *id, *body;
  int result;
  const char *err; /* a part of the error text, or "" for none */
} expect;

static const expect jobs[] = {
    {"job-1", "hello", WARREN_ACK, ""},
    {"job-2", "", WARREN_REJECT, "job-2: empty body"},
    {"job-3", "0123456789", WARREN_REJECT, "job-3: body of 10 bytes exceeds"},
};
#define NJOBS (sizeof jobs / sizeof jobs[0])

static void job_init(wr_job *j, uint64_t id, const expect *e,
                     amqp_table_entry_t *tenant) {
  memset(j, 0, sizeof *j);
  j->id = id;
  j->meta.attempt = 1;
  j->env.routing_key = amqp_cstring_bytes("kit");
  amqp_basic_properties_t *pr = &j->env.message.properties;
  pr->_flags = AMQP_BASIC_MESSAGE_ID_FLAG | AMQP_BASIC_HEADERS_FLAG;
  pr->message_id = amqp_cstring_bytes(e->id);
  pr->headers = (amqp_table_t){1, tenant};
  j->env.message.body = amqp_cstring_bytes(e->body);
}

static void check(const expect *e, int result, const char *err) {
  CHECK(result == e->result, "%s: result %d, expected %d (%s)", e->id, result,
        e->result, err);
  if (e->err[0])
    CHECK(strstr(err, e->err), "%s: error '%s' lacks '%s'", e->id, err, e->err);
  else
    CHECK(err[0] == '\0', "%s: unexpected error '%s'", e->id, err);
}

/* Each job in a worker process, waiting up to 10 s for its result. */
static void in_worker(const wr_plugin *plug, const config_setting_t *s) {
  char err[512];
  wr_pool p;
  if (wr_pool_init(&p, "kit", plug->def, s, 1, 0.05, 1, &ev, NULL) !=
      WARREN_OK) {
    CHECK(0, "wr_pool_init failed");
    return;
  }
  int rc = wr_pool_start(&p, 10, err, sizeof err);
  CHECK(rc == WARREN_OK, "worker did not start: %s", err);
  amqp_table_entry_t tenant = {amqp_cstring_bytes("tenant"),
                               {AMQP_FIELD_KIND_UTF8, {0}}};
  tenant.value.value.bytes = amqp_cstring_bytes("acme");
  for (size_t i = 0; rc == WARREN_OK && i < NJOBS; i++) {
    wr_job job;
    job_init(&job, i + 1, &jobs[i], &tenant);
    done_job = NULL;
    wr_child *c = wr_pool_pick(&p);
    CHECK(c, "no idle worker");
    if (!c) break;
    wr_pool_dispatch(&p, c, &job);
    wr_pool_flush(&p);
    double until = wr_now() + 10;
    while (done_job != &job && !lost && wr_now() < until) {
      struct pollfd pf = {c->fd, POLLIN, 0};
      if (c->fd >= 0 && poll(&pf, 1, 10) > 0) wr_pool_readable(&p, c);
      wr_pool_collect(&p);
      int st;
      pid_t pid;
      while ((pid = waitpid(-1, &st, WNOHANG)) > 0) wr_pool_reap(&p, pid, st);
    }
    CHECK(done_job == &job, "%s: no result from the worker", jobs[i].id);
    if (done_job == &job) check(&jobs[i], done_result, done_err);
  }
  wr_pool_stop(&p, 5);
  wr_pool_free(&p);
}

/* The same jobs the way isolation = false runs them. */
static void in_process(const wr_plugin *plug, const config_setting_t *s) {
  void *state;
  int rc = wr_worker_init("kit", plug->def, s, &state);
  CHECK(rc == WARREN_OK, "init() returned %d", rc);
  if (rc != WARREN_OK) return;
  static struct warren_headers none;
  for (size_t i = 0; i < NJOBS; i++) {
    warren_message m = {.size = sizeof m,
                        .body = jobs[i].body,
                        .body_len = strlen(jobs[i].body),
                        .exchange = "",
                        .routing_key = "kit",
                        .message_id = jobs[i].id,
                        .correlation_id = "",
                        .content_type = "",
                        .headers = &none,
                        .attempt = 1};
    const char *err;
    size_t len;
    int32_t r = wr_worker_run("kit", plug->def, state, &m, &err, &len);
    char text[WR_IPC_MAX_ERROR + 1];
    snprintf(text, sizeof text, "%.*s", (int)len, err);
    check(&jobs[i], r, text);
  }
  if (plug->def->shutdown) plug->def->shutdown(state);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: run_job PLUGIN.so\n");
    return 2;
  }
  wr_log_init_from_env();
  wr_plugin plug;
  char err[1024];
  if (wr_plugin_load(argv[1], &plug, err, sizeof err) != WARREN_OK) {
    fprintf(stderr, "run_job: %s\n", err);
    return 1;
  }
  config_t lc;
  config_init(&lc);
  if (!config_read_string(&lc, "max_body = 8;")) {
    fprintf(stderr, "run_job: settings: %s\n", config_error_text(&lc));
    return 1;
  }
  in_worker(&plug, config_root_setting(&lc));
  in_process(&plug, config_root_setting(&lc));
  config_destroy(&lc);
  wr_plugin_unload(&plug);
  if (failures == 0)
    printf("run_job: %s: %zu jobs right, in a worker and in-process\n", argv[1],
           NJOBS);
  return failures ? 1 : 0;
}
