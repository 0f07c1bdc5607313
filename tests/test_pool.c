/* Worker processes without a broker: results, crash isolation, restart. */
#include <criterion/criterion.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <warren/status.h>

#include "plugin.h"
#include "pool.h"

static wr_job *done_job, *lost_job;
static int done_result;
static char lost_why[128];

static void on_done(void *ctx, wr_pool *p, wr_job *job, int result,
                    const char *err, size_t err_len) {
  (void)ctx, (void)p, (void)err, (void)err_len;
  done_job = job;
  done_result = result;
}

static void on_lost(void *ctx, wr_pool *p, wr_job *job, const char *why,
                    int timed_out) {
  (void)ctx, (void)p, (void)timed_out;
  lost_job = job;
  snprintf(lost_why, sizeof lost_why, "%s", why);
}

static wr_job *unstarted[4];
static int n_unstarted;

static void on_unstarted(void *ctx, wr_pool *p, wr_job *job) {
  (void)ctx, (void)p;
  unstarted[n_unstarted++] = job;
}

static wr_job *started_job;
static int n_started;
static void on_started(void *ctx, wr_pool *p, wr_job *job) {
  (void)ctx, (void)p;
  started_job = job;
  n_started++;
}

static const wr_pool_events ev = {on_done, on_lost, on_unstarted, on_started};
static config_t lc;
static wr_plugin plug;
static char logpath[] = "/tmp/warren-pool-XXXXXX";

static config_setting_t *settings_with(const char *extra) {
  int fd = mkstemp(logpath);
  close(fd);
  char text[256];
  snprintf(text, sizeof text, "log = \"%s\"; crash_on = \"boom\"; %s", logpath,
           extra);
  config_init(&lc);
  cr_assert(config_read_string(&lc, text));
  return config_root_setting(&lc);
}

static config_setting_t *settings(void) {
  return settings_with("");
}

static void job_init(wr_job *j, uint64_t id, const char *mid) {
  memset(j, 0, sizeof *j);
  j->id = id;
  j->meta.attempt = 1;
  j->env.routing_key = amqp_cstring_bytes("rk");
  j->env.message.properties._flags = AMQP_BASIC_MESSAGE_ID_FLAG;
  j->env.message.properties.message_id = amqp_cstring_bytes(mid);
  j->env.message.body = amqp_cstring_bytes("payload");
}

/* Serve the pool until cond or 10 s: results via the socket, deaths via
 * waitpid, restarts via tick. */
#define SERVE(p, cond)                                                     \
  do {                                                                     \
    double until_ = wr_now() + 10;                                         \
    while (!(cond) && wr_now() < until_) {                                 \
      for (int i_ = 0; i_ < (p)->n; i_++) {                                \
        wr_child *c_ = &(p)->children[i_];                                 \
        struct pollfd pf_ = {c_->fd, POLLIN, 0};                           \
        if (c_->fd >= 0 && poll(&pf_, 1, 10) > 0) wr_pool_readable(p, c_); \
        wr_pool_collect(p);                                                \
      }                                                                    \
      int st_;                                                             \
      pid_t pid_;                                                          \
      while ((pid_ = waitpid(-1, &st_, WNOHANG)) > 0)                      \
        wr_pool_reap(p, pid_, st_);                                        \
      wr_pool_tick(p, wr_now());                                           \
    }                                                                      \
    cr_assert(cond, "timed out waiting for " #cond);                       \
  } while (0)

Test(pool, runs_jobs_and_isolates_a_crash) {
  char err[512];
  cr_assert_eq(
      wr_plugin_load(TEST_HANDLER_DIR "/record.so", &plug, err, sizeof err),
      WARREN_OK, "%s", err);
  wr_pool p;
  cr_assert_eq(
      wr_pool_init(&p, "rec", plug.def, settings(), 2, 0.05, 1, &ev, NULL),
      WARREN_OK);
  cr_assert_eq(wr_pool_start(&p, 10, err, sizeof err), WARREN_OK, "%s", err);
  cr_assert_eq(p.idle, 2);

  wr_job ok, boom;
  job_init(&ok, 1, "fine");
  job_init(&boom, 2, "boom");
  wr_child *c = wr_pool_pick(&p);
  cr_assert_eq(wr_pool_dispatch(&p, c, &ok), WARREN_OK);
  wr_pool_flush(&p);
  cr_assert_eq(p.busy, 1);
  cr_assert_eq(wr_pool_running(c), &ok,
               "the pool knows which job the worker runs");
  cr_assert_eq(started_job, &ok, "observers hear which job a worker took");
  SERVE(&p, done_job == &ok);
  cr_assert_eq(done_result, WARREN_ACK);
  cr_assert_eq(p.idle, 2);

  c = wr_pool_pick(&p);
  pid_t victim = c->pid;
  cr_assert_eq(wr_pool_dispatch(&p, c, &boom), WARREN_OK);
  wr_pool_flush(&p);
  SERVE(&p, lost_job == &boom);
#if defined(__SANITIZE_ADDRESS__)
  /* ASan catches the SEGV, reports it and exits 1 instead. */
  cr_assert(strstr(lost_why, "exited with status 1"), "%s", lost_why);
#else
  cr_assert(strstr(lost_why, "signal 11"), "%s", lost_why);
#endif
  cr_assert_eq(p.busy, 0);
  /* The other worker was untouched, and the dead one comes back. */
  SERVE(&p, p.idle == 2);
  cr_assert_neq(c->pid, victim);
  cr_assert_eq(p.restarts, 1);

  done_job = NULL;
  c = wr_pool_pick(&p);
  job_init(&ok, 3, "again");
  cr_assert_eq(wr_pool_dispatch(&p, c, &ok), WARREN_OK);
  wr_pool_flush(&p);
  SERVE(&p, done_job == &ok);
  wr_pool_stop(&p, 5);
  cr_assert_eq(p.idle, 0);
  wr_pool_free(&p);
  wr_plugin_unload(&plug);
  config_destroy(&lc);
  unlink(logpath);
}

Test(pool, queued_jobs_behind_a_crash_come_back_unstarted) {
  char err[512];
  cr_assert_eq(
      wr_plugin_load(TEST_HANDLER_DIR "/record.so", &plug, err, sizeof err),
      WARREN_OK, "%s", err);
  wr_pool p;
  wr_pool_init(&p, "rec", plug.def, settings(), 1, 0.05, 1, &ev, NULL);
  p.depth = 4;
  cr_assert_eq(wr_pool_start(&p, 10, err, sizeof err), WARREN_OK, "%s", err);
  wr_job a, boom, b, c2;
  job_init(&a, 1, "a");
  job_init(&boom, 2, "boom");
  job_init(&b, 3, "b");
  job_init(&c2, 4, "c");
  wr_job *all[] = {&a, &boom, &b, &c2};
  for (int i = 0; i < 4; i++) {
    wr_child *c = wr_pool_pick(&p);
    cr_assert_not_null(c, "a worker takes up to depth jobs");
    cr_assert_eq(wr_pool_dispatch(&p, c, all[i]), WARREN_OK);
  }
  cr_assert_null(wr_pool_pick(&p), "depth 4 is full");
  wr_pool_flush(&p);
  done_job = lost_job = NULL;
  n_unstarted = 0;
  SERVE(&p, lost_job == &boom && n_unstarted == 2);
  cr_assert_eq(done_job, &a, "the job before the crash finished");
  cr_assert_eq(unstarted[0], &c2, "handed back last first");
  cr_assert_eq(unstarted[1], &b);
  wr_pool_stop(&p, 5);
  wr_pool_free(&p);
  wr_plugin_unload(&plug);
  config_destroy(&lc);
  unlink(logpath);
}

Test(pool, death_seen_before_results_still_blames_the_right_job) {
  char err[512];
  cr_assert_eq(
      wr_plugin_load(TEST_HANDLER_DIR "/record.so", &plug, err, sizeof err),
      WARREN_OK, "%s", err);
  wr_pool p;
  wr_pool_init(&p, "rec", plug.def, settings(), 1, 0.05, 1, &ev, NULL);
  p.depth = 2;
  cr_assert_eq(wr_pool_start(&p, 10, err, sizeof err), WARREN_OK, "%s", err);
  wr_job a, boom;
  job_init(&a, 1, "a");
  job_init(&boom, 2, "boom");
  wr_child *c = wr_pool_pick(&p);
  cr_assert_eq(wr_pool_dispatch(&p, c, &a), WARREN_OK);
  cr_assert_eq(wr_pool_dispatch(&p, c, &boom), WARREN_OK);
  wr_pool_flush(&p);
  /* Reap the death before collecting a's result, as the loop does when
   * SIGCHLD and the result arrive in the same poll round. */
  int st;
  pid_t pid = waitpid(c->pid, &st, 0);
  done_job = lost_job = NULL;
  cr_assert(wr_pool_reap(&p, pid, st));
  cr_assert_eq(done_job, &a, "a finished before the crash");
  cr_assert_eq(lost_job, &boom, "the crash is boom's");
  wr_pool_stop(&p, 5);
  wr_pool_free(&p);
  wr_plugin_unload(&plug);
  config_destroy(&lc);
  unlink(logpath);
}

Test(pool, a_stop_skips_the_jobs_queued_behind_the_running_one) {
  char err[512];
  cr_assert_eq(
      wr_plugin_load(TEST_HANDLER_DIR "/record.so", &plug, err, sizeof err),
      WARREN_OK, "%s", err);
  wr_pool p;
  wr_pool_init(&p, "rec", plug.def, settings_with("sleep_ms = 300;"), 1, 0.05,
               1, &ev, NULL);
  p.depth = 3;
  cr_assert_eq(wr_pool_start(&p, 10, err, sizeof err), WARREN_OK, "%s", err);
  wr_job a, b, c3;
  job_init(&a, 1, "a");
  job_init(&b, 2, "b");
  job_init(&c3, 3, "c");
  wr_job *all[] = {&a, &b, &c3};
  for (int i = 0; i < 3; i++) wr_pool_dispatch(&p, wr_pool_pick(&p), all[i]);
  wr_pool_flush(&p);
  usleep(100 * 1000); /* a is running */
  wr_pool_drain(&p);
  done_job = NULL;
  n_unstarted = 0;
  SERVE(&p, done_job == &a && n_unstarted == 2);
  cr_assert_eq(unstarted[0], &b);
  cr_assert_eq(unstarted[1], &c3);
  cr_assert_eq(p.busy, 0);
  wr_pool_stop(&p, 5);
  wr_pool_free(&p);
  wr_plugin_unload(&plug);
  config_destroy(&lc);
  unlink(logpath);
}

Test(pool, init_failure_is_reported_at_start) {
  char err[512];
  cr_assert_eq(
      wr_plugin_load(TEST_HANDLER_DIR "/init_fail.so", &plug, err, sizeof err),
      WARREN_OK, "%s", err);
  wr_pool p;
  wr_pool_init(&p, "bad", plug.def, NULL, 1, 0.05, 1, &ev, NULL);
  cr_assert_eq(wr_pool_start(&p, 10, err, sizeof err), WARREN_PLUGIN_INIT);
  cr_assert(strstr(err, "handler bad: worker"), "%s", err);
  cr_assert(strstr(err, "init() returned non-zero"), "%s", err);
  wr_pool_stop(&p, 1);
  wr_pool_free(&p);
  wr_plugin_unload(&plug);
}
