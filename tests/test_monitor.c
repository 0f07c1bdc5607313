/* The monitor's decisions (framework/monitor.h), without a broker: what
 * the self-check concludes from the facts it is told, and when a status
 * snapshot is due. */
#include <criterion/criterion.h>
#include <string.h>

#include "../config/cfg.h"
#include "clock.h"
#include "monitor.h"
#include "report.h"

static wr_handler_cfg handler_;
static wr_cfg cfg_;
static wr_loop *loop_;
static wr_observers obs_;
static wr_job slots_[4];
static wr_conn_params node_;
static wr_monitor *m_;

static void setup(void) {
  handler_ = (wr_handler_cfg){.name = "h",
                              .queue = "q",
                              .concurrency = 2,
                              .prefetch = 2,
                              .isolated = 1};
  cfg_ = (wr_cfg){.handlers = &handler_,
                  .n_handlers = 1,
                  .snapshot_interval = 1,
                  .probe_interval = 5,
                  .check_interval = 10,
                  .queue_log_interval = 0};
  cfg_.broker.vhost = "/";
  memset(&obs_, 0, sizeof obs_);
  node_ = (wr_conn_params){.host = "127.0.0.1", .port = 1};
  cr_assert_eq(wr_loop_create(&loop_), 0);
  wr_monitor_env env = {&cfg_, loop_, &obs_, slots_, 4, NULL, NULL, NULL};
  cr_assert_eq(wr_monitor_create(&env, &m_), 0);
}

static void teardown(void) {
  wr_monitor_destroy(m_);
  wr_loop_destroy(loop_);
}

TestSuite(monitor, .init = setup, .fini = teardown);

/* Facts of a worker that is not connected (the probes never run). */
static wr_monitor_facts facts(int connected, int why) {
  return (wr_monitor_facts){connected, 1, 0, why, &node_, 0};
}

Test(monitor, an_unreachable_broker_fails_the_check_and_passes_once_back) {
  double now = wr_now();
  wr_monitor_handler hf = {0};
  wr_monitor_facts f = facts(0, WR_NR_BROKER);
  cr_assert_not(wr_monitor_turn(m_, now, &f), "not due before its interval");
  wr_monitor_check(m_, now + 11, &f, &hf);
  cr_assert(wr_monitor_failing(m_));
  /* A failing check is looked at again every turn, so readiness comes
   * back as soon as the cause is gone. */
  cr_assert(wr_monitor_turn(m_, now + 12, &f));
  f = facts(1, WR_READY);
  f.node = &node_;
  wr_monitor_check(m_, now + 12, &f, &hf);
  cr_assert_not(wr_monitor_failing(m_));
}

Test(monitor, five_unplanned_exits_within_a_minute_are_a_crash_loop) {
  double now = wr_now();
  wr_monitor_facts f = facts(1, WR_READY);
  wr_monitor_handler hf = {.deaths = 0};
  wr_monitor_check(m_, now + 11, &f, &hf);
  cr_assert_not(wr_monitor_failing(m_));
  hf.deaths = 4;
  wr_monitor_check(m_, now + 22, &f, &hf);
  cr_assert_not(wr_monitor_failing(m_), "4 exits are not a crash loop");
  hf.deaths = 5;
  wr_monitor_check(m_, now + 33, &f, &hf);
  cr_assert(wr_monitor_failing(m_), "5 exits within 60 s are");
  /* Once the exits are over a minute old, it passes again. */
  wr_monitor_check(m_, now + 100, &f, &hf);
  cr_assert_not(wr_monitor_failing(m_));
}

Test(monitor, an_in_process_handler_has_no_crash_loop) {
  handler_.isolated = 0;
  double now = wr_now();
  wr_monitor_facts f = facts(1, WR_READY);
  wr_monitor_handler hf = {.deaths = 50};
  wr_monitor_check(m_, now + 11, &f, &hf);
  wr_monitor_check(m_, now + 22, &f, &hf);
  cr_assert_not(wr_monitor_failing(m_));
}

Test(monitor, a_snapshot_is_due_by_its_interval_or_at_once_on_a_change) {
  double now = wr_now();
  wr_monitor_facts f = facts(1, WR_READY);
  wr_snap *n = wr_monitor_snapshot(m_, now, &f);
  cr_assert_not_null(n, "the first one is due at once");
  cr_assert(n->ready && n->connected && n->h[0].running);
  cr_assert_str_eq(n->h[0].name, "h");
  cr_assert_eq(n->h[0].work.messages, -1, "nothing probed yet");
  cr_assert_eq(n->nh, 1);
  wr_monitor_publish(m_, n);
  cr_assert_null(wr_monitor_snapshot(m_, now + 0.5, &f), "not due yet");
  f.why = WR_NR_BLOCKED; /* readiness changed: published at once */
  n = wr_monitor_snapshot(m_, now + 0.5, &f);
  cr_assert_not_null(n);
  cr_assert_eq(n->not_ready, WR_NR_BLOCKED);
  cr_assert_not(n->ready);
  wr_monitor_publish(m_, n);
  f.breaker_changes = 1; /* a breaker changed: at once too */
  n = wr_monitor_snapshot(m_, now + 0.6, &f);
  cr_assert_not_null(n);
  wr_monitor_publish(m_, n);
  cr_assert_null(wr_monitor_snapshot(m_, now + 0.7, &f));
  n = wr_monitor_snapshot(m_, now + 1.7, &f);
  cr_assert_not_null(n, "its interval is over");
  wr_monitor_publish(m_, n);
  wr_snap *got = wr_snap_acquire(wr_monitor_store(m_));
  cr_assert_eq(got, n, "the store serves the last one published");
  wr_snap_release(wr_monitor_store(m_), got);
}

Test(monitor, a_failing_check_is_published_at_once) {
  double now = wr_now();
  wr_monitor_facts f = facts(1, WR_READY);
  wr_monitor_handler hf = {0};
  wr_monitor_publish(m_, wr_monitor_snapshot(m_, now, &f));
  f.connected = 0;
  wr_monitor_check(m_, now + 11, &f, &hf);
  wr_snap *n = wr_monitor_snapshot(m_, now + 0.1, &f);
  cr_assert_not_null(n);
  cr_assert_not(n->check_ok);
  cr_assert(strstr(n->check_why, "unreachable"), "%s", n->check_why);
  wr_monitor_publish(m_, n);
}
