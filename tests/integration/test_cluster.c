/*
 * The worker on a three-node RabbitMQ cluster (the `cluster` fixture:
 * scripts/broker cluster-start, ports tw_cluster_port(0..2)), each worker
 * given all three in broker.nodes. A node killed or stopped under load,
 * several workers sharing a queue, a consumer the broker cancels. Every
 * job id is counted in (published) and out (handled or still queued):
 * none may be missing; duplicates and failover times are reported.
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "support.h"

#define RECORD TEST_HANDLER_DIR "/record.so"

TW_CLUSTER_SUITE(cluster, 300);

static char broker[400], text[4096];

/* broker.nodes listing the three nodes. */
static const char *nodes_section(void) {
  snprintf(broker, sizeof broker,
           "broker = { nodes = [\"127.0.0.1:%d\", \"127.0.0.1:%d\", "
           "\"127.0.0.1:%d\"]; heartbeat = 5; };\n",
           tw_cluster_port(0), tw_cluster_port(1), tw_cluster_port(2));
  return broker;
}

/* A worker in dir with one record handler on queue (each job sleeping
 * sleep_ms, two at a time), a health port and all three nodes; its log
 * is dir/warren.log, its records dir/rec. */
static pid_t start_worker(const char *dir, const char *queue, int health,
                          int sleep_ms) {
  snprintf(text, sizeof text,
           "health = { port = %d; };\n"
           "handlers = ( { name = \"h\"; queue = \"%s\";\n"
           "  plugin = \"" RECORD
           "\"; prefetch = 50; concurrency = 2;\n"
           "  settings = { log = \"%s/rec\"; sleep_ms = %d; }; } );\n",
           health, queue, dir, sleep_ms);
  return tw_warren_start_broker(dir, nodes_section(), text);
}

/* The port of the node the worker logged "connected to" last, and how
 * many such lines there are (into *count); -1 if none. */
static int connected_port(const char *log, int *count) {
  FILE *f = fopen(log, "r");
  char line[2048];
  int port = -1, n = 0;
  while (f && fgets(line, sizeof line, f)) {
    const char *p = strstr(line, "connected to 127.0.0.1:");
    if (!p) continue;
    port = atoi(p + strlen("connected to 127.0.0.1:"));
    n++;
  }
  if (f) fclose(f);
  if (count) *count = n;
  return port;
}

/* A node that is neither a nor b. */
static int other_node(int a, int b) {
  for (int i = 0; i < 3; i++)
    if (tw_cluster_port(i) != a && tw_cluster_port(i) != b)
      return tw_cluster_port(i);
  return -1;
}

static void pause_ms(long ms) {
  nanosleep(&(struct timespec){ms / 1000, (ms % 1000) * 1000000L}, NULL);
}

/* After a node went away at t0: watch /readyz and the log until the
 * worker logs a "connected to" beyond the `before`-th, then until it is
 * ready again. Returns the seconds from t0 to that line (-1: none in
 * 60 s); *saw_503 says whether /readyz said 503 in between. */
static double watch_failover(const char *log, int health, int before, double t0,
                             int *saw_503) {
  double failover = -1;
  *saw_503 = 0;
  while (wr_now() < t0 + 60) {
    long code = tw_http_get(health, "/readyz");
    if (code == 503) *saw_503 = 1;
    int n;
    connected_port(log, &n);
    if (n > before) {
      failover = wr_now() - t0;
      break;
    }
    pause_ms(5);
  }
  return failover;
}

/* The longest pause between two jobs' ends in a record file, in
 * seconds: how long the stream stood still. */
static double longest_pause(const char *rec) {
  FILE *f = fopen(rec, "r");
  char line[512], what[16], id[128];
  long long t, last = -1, gap = 0;
  int pid;
  while (f && fgets(line, sizeof line, f)) {
    if (sscanf(line, "%15s %127s %lld %d", what, id, &t, &pid) != 4 ||
        strcmp(what, "end") != 0)
      continue;
    if (last >= 0 && t - last > gap) gap = t - last;
    if (t > last) last = t;
  }
  if (f) fclose(f);
  return (double)gap / 1e9;
}

static int wait_ready(int health, double timeout_s) {
  double until = wr_now() + timeout_s;
  while (tw_http_get(health, "/readyz") != 200)
    if (wr_now() > until)
      return 0;
    else
      pause_ms(50);
  return 1;
}

/* 10,000 jobs at 2 ms each, two at a time: a stream of some 10 s (the
 * broker and the worker share two cores), long enough for a node to go
 * in the middle of it. */
enum { JOBS = 10000, HEAD = 1500, JOB_MS = 2 };

Test(cluster, killing_the_connected_node_loses_nothing, .timeout = 300) {
  const char *dir = tw_dir(), *q = "it.cluster.kill";
  char log[300], rec[300], out[4096];
  snprintf(log, sizeof log, "%s/warren.log", dir);
  snprintf(rec, sizeof rec, "%s/rec", dir);
  int health = tw_free_port();
  pid_t w = start_worker(dir, q, health, JOB_MS);
  cr_assert(tw_wait_text(log, "consuming 1 queue(s)", 60),
            "worker did not start");
  int before, node = connected_port(log, &before);
  cr_assert_gt(node, 0, "no \"connected to\" line in %s", log);
  int leader = tw_cluster_leader(q);
  /* Publish through another node, one that stays up. */
  tw_use_port(other_node(node, -1));
  cr_assert_eq(tw_publish(q, JOBS, "job"), 0);
  cr_assert_geq(tw_wait_count(rec, "end", "job", JOBS, HEAD, 120), HEAD);
  cr_assert_eq(tw_http_get(health, "/readyz"), 200);

  /* kill -9 from here, so that the watch starts at once. */
  cr_assert_eq(tw_cluster_node("pid", node, out, sizeof out), 0, "%s", out);
  pid_t beam = (pid_t)atoi(out);
  tw_cluster_node_down();
  int during = tw_count(rec, "end", "job", NULL, JOBS);
  double t0 = wr_now();
  cr_assert_eq(kill(beam, SIGKILL), 0);
  int saw_503;
  double failover = watch_failover(log, health, before, t0, &saw_503);
  cr_assert_geq(failover, 0, "no new \"connected to\" within 60 s");
  int now_on = connected_port(log, NULL);
  cr_assert(wait_ready(health, 60), "/readyz never 200 after the failover");
  double ready = wr_now() - t0;

  static int done[JOBS + 1], queued[JOBS + 1];
  int missing = tw_wait_all(rec, "job", done, JOBS, 180);
  cr_assert_eq(tw_cluster_node("revive", node, out, sizeof out), 0, "%s", out);
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 60), 0, "clean exit after SIGTERM");
  int nq = tw_drain(q, "job", queued, JOBS);
  int dupes;
  missing = tw_missing(done, queued, JOBS, &dupes);
  cr_log_info(
      "kill -9 of node %d (queue leader %d) after %d of %d jobs: "
      "failover to %d in %.2f s, ready again after %.2f s, longest pause "
      "%.2f s; %d lost, %d duplicates, %d left queued",
      node, leader, during, JOBS, now_on, failover, ready, longest_pause(rec),
      missing, dupes, nq);
  cr_assert_lt(during, JOBS, "the kill must land mid-stream");
  cr_assert_neq(now_on, node, "the worker must move to another node");
  cr_assert(saw_503, "/readyz must say 503 while the worker has no node");
  cr_assert_eq(missing, 0, "%d job(s) lost", missing);
  cr_assert_eq(nq, 0, "every job handled by the one worker");
  /* What runs twice is what was delivered and not yet acked on the lost
   * connection: at most the prefetch (50) plus acks in flight. */
  cr_assert_leq(dupes, 200, "%d duplicates", dupes);
}

/* Runs scripts/broker stop-app in a child, so that the caller can watch
 * the worker meanwhile. */
static pid_t stop_app_async(int port) {
  tw_cluster_node_down();
  pid_t p = fork();
  if (p == 0) {
    char out[4096];
    _exit(tw_cluster_node("stop-app", port, out, sizeof out) == 0 ? 0 : 1);
  }
  return p;
}

Test(cluster, stopping_the_queue_leader_node_loses_nothing, .timeout = 300) {
  const char *dir = tw_dir(), *q = "it.cluster.leader";
  char log[300], rec[300], out[4096];
  snprintf(log, sizeof log, "%s/warren.log", dir);
  snprintf(rec, sizeof rec, "%s/rec", dir);
  int health = tw_free_port();
  pid_t w = start_worker(dir, q, health, JOB_MS);
  cr_assert(tw_wait_text(log, "consuming 1 queue(s)", 60),
            "worker did not start");
  int before, node = connected_port(log, &before);
  int leader = tw_cluster_leader(q);
  cr_assert_gt(leader, 0, "no leader for %s", q);
  tw_use_port(other_node(leader, -1));
  cr_assert_eq(tw_publish(q, JOBS, "job"), 0);
  cr_assert_geq(tw_wait_count(rec, "end", "job", JOBS, HEAD, 120), HEAD);

  int during = tw_count(rec, "end", "job", NULL, JOBS);
  double t0 = wr_now();
  pid_t stopper = stop_app_async(leader);
  int saw_503 = 0;
  double failover = -1, resumed = -1;
  if (node == leader) {
    /* The worker's own node goes: it must move. */
    failover = watch_failover(log, health, before, t0, &saw_503);
    cr_assert_geq(failover, 0, "no new \"connected to\" within 60 s");
  }
  int st;
  cr_assert_eq(waitpid(stopper, &st, 0), stopper);
  cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "stop_app failed");
  double stopped = wr_now() - t0;
  /* Jobs flow again: a new leader on a node that is up. */
  int at_stop = tw_count(rec, "end", "job", NULL, JOBS);
  cr_assert_lt(at_stop + 100, JOBS, "the stream must outlast the stop");
  int more = tw_wait_count(rec, "end", "job", JOBS, at_stop + 100, 120);
  resumed = wr_now() - t0;
  int new_leader = tw_cluster_leader(q);
  cr_assert(wait_ready(health, 60), "/readyz never 200 again");
  int after;
  connected_port(log, &after);

  static int done[JOBS + 1], queued[JOBS + 1];
  int missing = tw_wait_all(rec, "job", done, JOBS, 180);
  cr_assert_eq(tw_cluster_node("start-app", leader, out, sizeof out), 0, "%s",
               out);
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 60), 0, "clean exit after SIGTERM");
  int nq = tw_drain(q, "job", queued, JOBS);
  int dupes;
  missing = tw_missing(done, queued, JOBS, &dupes);
  char how[64] = "the worker kept its connection";
  if (node == leader) snprintf(how, sizeof how, "failover in %.2f s", failover);
  cr_log_info(
      "stop_app of leader node %d (worker on %d) after %d of %d jobs "
      "(stop_app took %.2f s): %s, 100 more jobs done %.2f s after the "
      "stop, longest pause %.2f s, new leader %d; %d lost, %d duplicates, "
      "%d left queued",
      leader, node, during, JOBS, stopped, how, resumed, longest_pause(rec),
      new_leader, missing, dupes, nq);
  cr_assert_lt(during, JOBS, "the stop must land mid-stream");
  cr_assert_geq(more, at_stop + 100, "jobs stopped after the leader went");
  cr_assert(new_leader > 0 && new_leader != leader, "leader still %d",
            new_leader);
  if (node == leader)
    cr_assert(saw_503, "/readyz must say 503 while the worker has no node");
  else
    cr_assert_eq(after, before,
                 "a worker on another node keeps its connection");
  cr_assert_eq(missing, 0, "%d job(s) lost", missing);
  cr_assert_eq(nq, 0);
  cr_assert_leq(dupes, 200, "%d duplicates", dupes);
}

/* 5 ms each: 3,000 jobs take a few seconds, so the stop lands mid-way. */
enum { SPLIT = 3000, SPLIT_MS = 5 };

Test(cluster, two_and_three_workers_split_the_jobs, .timeout = 300) {
  const char *dir = tw_dir(), *q = "it.cluster.split";
  char sub[3][300], log[1024], rec[3][1024];
  pid_t w[3];
  for (int i = 0; i < 3; i++) {
    snprintf(sub[i], sizeof sub[i], "%s/w%d", dir, i);
    snprintf(rec[i], sizeof rec[i], "%s/rec", sub[i]);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "mkdir -p %s", sub[i]);
    cr_assert_eq(system(cmd), 0);
  }
  /* Two workers. */
  for (int i = 0; i < 2; i++) {
    w[i] = start_worker(sub[i], q, tw_free_port(), SPLIT_MS);
    snprintf(log, sizeof log, "%s/warren.log", sub[i]);
    cr_assert(tw_wait_text(log, "consuming 1 queue(s)", 60),
              "worker %d did not start", i);
  }
  cr_assert_eq(tw_publish(q, SPLIT, "two"), 0);
  static int done[3][SPLIT + 1], queued[SPLIT + 1];
  int per[3] = {0}, dupes = 0, missing = SPLIT;
  double until = wr_now() + 120;
  while (missing && wr_now() < until) {
    memset(done, 0, sizeof done);
    for (int i = 0; i < 2; i++)
      per[i] = tw_count(rec[i], "end", "two", done[i], SPLIT);
    missing = tw_missing(done[0], done[1], SPLIT, &dupes);
    pause_ms(50);
  }
  cr_log_info("2 workers, %d jobs: %d and %d handled, %d lost, %d duplicates",
              SPLIT, per[0], per[1], missing, dupes);
  cr_assert_eq(missing, 0, "%d job(s) lost", missing);
  cr_assert_eq(dupes, 0, "without faults each job runs once");
  cr_assert(per[0] > 0 && per[1] > 0, "each worker handled some");

  /* A third; then one of the three stops (SIGTERM) mid-stream. */
  w[2] = start_worker(sub[2], q, tw_free_port(), SPLIT_MS);
  snprintf(log, sizeof log, "%s/warren.log", sub[2]);
  cr_assert(tw_wait_text(log, "consuming 1 queue(s)", 60),
            "worker 2 did not start");
  cr_assert_eq(tw_publish(q, SPLIT, "three"), 0);
  int at = 0;
  until = wr_now() + 120;
  while (at < SPLIT / 5 && wr_now() < until) {
    at = 0;
    for (int i = 0; i < 3; i++)
      at += tw_count(rec[i], "end", "three", NULL, SPLIT);
    pause_ms(5);
  }
  int stopped = tw_warren_stop(w[1], SIGTERM, 60);
  missing = SPLIT;
  until = wr_now() + 120;
  while (missing && wr_now() < until) {
    memset(done, 0, sizeof done);
    for (int i = 0; i < 3; i++)
      per[i] = tw_count(rec[i], "end", "three", done[i], SPLIT);
    for (int k = 1; k <= SPLIT; k++) done[0][k] += done[2][k];
    missing = tw_missing(done[0], done[1], SPLIT, &dupes);
    pause_ms(50);
  }
  int ends[3] = {0};
  for (int i = 0; i < 3; i++)
    ends[i] = tw_count(rec[i], "end", "three", NULL, SPLIT);
  int nq = tw_drain(q, "three", queued, SPLIT);
  cr_assert_eq(tw_warren_stop(w[0], SIGTERM, 60), 0);
  cr_assert_eq(tw_warren_stop(w[2], SIGTERM, 60), 0);
  cr_log_info(
      "3 workers, %d jobs, worker 1 stopped after %d: %d, %d (stopped, exit "
      "%d) and %d handled, %d lost, %d duplicates, %d left queued",
      SPLIT, at, ends[0], ends[1], stopped, ends[2], missing, dupes, nq);
  cr_assert_eq(stopped, 0, "the stopped worker drains and exits 0");
  cr_assert_lt(at, SPLIT, "the stop must land mid-stream");
  cr_assert_eq(missing, 0, "%d job(s) lost", missing);
  cr_assert_eq(dupes, 0, "a drained stop acks every finished job");
  cr_assert_eq(nq, 0);
  cr_assert(ends[0] > 0 && ends[1] > 0 && ends[2] > 0,
            "each worker handled some");
}

Test(cluster, a_cancelled_consumer_comes_back, .timeout = 180) {
  const char *dir = tw_dir(), *q = "it.cluster.cancel";
  char log[300], rec[300], out[4096], args[200];
  snprintf(log, sizeof log, "%s/warren.log", dir);
  snprintf(rec, sizeof rec, "%s/rec", dir);
  int health = tw_free_port();
  pid_t w = start_worker(dir, q, health, 0);
  cr_assert(tw_wait_text(log, "consuming 1 queue(s)", 60),
            "worker did not start");
  int before, node = connected_port(log, &before);
  tw_use_port(node);
  cr_assert_eq(tw_publish(q, 10, "a"), 0);
  static int done[11];
  cr_assert_eq(tw_wait_all(rec, "a", done, 10, 30), 0);

  /* Deleted from another node: the broker cancels the consumer. */
  double t0 = wr_now();
  int from = other_node(node, -1);
  snprintf(args, sizeof args, "-q delete_queue %s", q);
  cr_assert_eq(tw_cluster_ctl(from, out, sizeof out, args), 0, "%s", out);
  /* The worker declares and consumes again on its own. */
  double back = -1;
  while (wr_now() < t0 + 30) {
    snprintf(args, sizeof args, "-q list_consumers queue_name");
    if (tw_cluster_ctl(node, out, sizeof out, args) == 0 && strstr(out, q)) {
      back = wr_now() - t0;
      break;
    }
    pause_ms(100);
  }
  cr_assert_geq(
      back, 0,
      "no consumer on %s 30 s after its deletion (worker on %d, "
      "deleted through %d; the worker %s the cancel)",
      q, node, from,
      tw_wait_text(log, "cancelled the consumer", 0) ? "logged" : "never saw");
  cr_assert_eq(tw_publish(q, 10, "b"), 0);
  cr_assert_eq(tw_wait_all(rec, "b", done, 10, 30), 0,
               "jobs published after the re-consume run");
  int after;
  connected_port(log, &after);
  long ready = tw_http_get(health, "/readyz");
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
  cr_log_info(
      "queue deleted through node %d under the consumer on node %d: "
      "consuming again after %.2f s, %d connection(s) before, %d after",
      from, node, back, before, after);
  cr_assert_eq(after, before, "the connection must stay");
  cr_assert(!tw_wait_text(log, "connection lost", 0), "the connection dropped");
  cr_assert(tw_wait_text(log, "cancelled the consumer", 0),
            "the cancel is logged");
  cr_assert_eq(ready, 200);
}
