/*
 * Configuration from the environment (docs/config.md, "Environment"): a
 * broker URL with an encoded password and a vhost of its own, reaching a
 * real broker; per-handler variables over the file.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "support.h"

TW_SUITE(envcfg, 120);

Test(envcfg, a_url_with_an_encoded_password_and_a_vhost_reaches_the_broker) {
  char out[4096];
  /* A user and a vhost whose names need percent-encoding in a URL. */
  tw_ctl(out, sizeof out, "delete_vhost 'it/env'");
  cr_assert_eq(tw_ctl(out, sizeof out, "add_vhost 'it/env'"), 0, "%s", out);
  tw_ctl(out, sizeof out, "delete_user 'it@env'");
  cr_assert_eq(tw_ctl(out, sizeof out, "add_user 'it@env' 'p:a/s%s w'"), 0,
               "%s", out);
  cr_assert_eq(tw_ctl(out, sizeof out,
                      "set_permissions -p 'it/env' 'it@env' '.*' '.*' '.*'"),
               0, "%s", out);
  char url[300];
  snprintf(url, sizeof url,
           "amqp://it%%40env:p%%3Aa%%2Fs%%25s%%20w@127.0.0.1:%d/it%%2Fenv",
           tw_port());
  setenv("WARREN_BROKER_URL", url, 1);
  char log[300], rec[300];
  pid_t w = tw_start_record("it.env.url", "", "", log, rec);
  unsetenv("WARREN_BROKER_URL");
  cr_assert_gt(w, 0, "consuming through the URL's user and vhost");
  cr_assert_eq(tw_ctl(out, sizeof out, "list_queues -p 'it/env' name"), 0);
  cr_assert(strstr(out, "it.env.url"), "the queue is in vhost it/env:\n%s",
            out);
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
  tw_ctl(out, sizeof out, "delete_vhost 'it/env'");
  tw_ctl(out, sizeof out, "delete_user 'it@env'");
}

Test(envcfg, a_handler_variable_wins_over_the_file) {
  setenv("WARREN_HANDLER_H_CONCURRENCY", "3", 1);
  char log[300], rec[300];
  pid_t w = tw_start_record("it.env.conc", "concurrency = 1; prefetch = 6;", "",
                            log, rec);
  unsetenv("WARREN_HANDLER_H_CONCURRENCY");
  cr_assert_gt(w, 0);
  /* Three worker processes, not the file's one. */
  char path[100], kids[512] = "";
  snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)w, (int)w);
  FILE *f = fopen(path, "r");
  if (f) {
    if (!fgets(kids, sizeof kids, f)) kids[0] = '\0';
    fclose(f);
  }
  int n = 0;
  for (char *t = strtok(kids, " \n"); t; t = strtok(NULL, " \n")) n++;
  cr_assert_eq(n, 3, "3 workers from WARREN_HANDLER_H_CONCURRENCY: %s", kids);
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
}

Test(envcfg, a_bad_variable_stops_the_start_naming_it) {
  setenv("WARREN_HEALTH_PORT", "80x", 1);
  char log[300], rec[300];
  pid_t w = tw_start_record("it.env.bad", "", "", log, rec);
  unsetenv("WARREN_HEALTH_PORT");
  cr_assert_lt(w, 0, "never consumed");
  cr_assert(tw_wait_text(log, "environment WARREN_HEALTH_PORT", 5),
            "the error names the variable");
}

/* A worker with the broker section `broker` and one record handler on
 * queue q; its log's path into log (300 bytes). */
static pid_t start_on(const char *broker, const char *q, char *log) {
  char text[1024];
  snprintf(log, 300, "%s/warren.log", tw_dir());
  snprintf(text, sizeof text,
           "handlers = ( { name = \"h\"; queue = \"%s\";\n"
           "  plugin = \"" TEST_HANDLER_DIR
           "/record.so\";\n  settings = { log = \"%s/rec\"; }; } );\n",
           q, tw_dir());
  return tw_warren_start_broker(tw_dir(), broker, text);
}

/* broker.nodes: a node that does not answer is skipped for the next. */
Test(envcfg, a_node_list_skips_a_node_that_is_down) {
  char broker[300];
  snprintf(broker, sizeof broker,
           "broker = { nodes = [\"127.0.0.1:%d\", \"127.0.0.1:%d\"]; "
           "heartbeat = 5; };\n",
           tw_free_port(), tw_port());
  char log[300];
  pid_t w = start_on(broker, "it.env.nodes", log);
  char want[64];
  snprintf(want, sizeof want, "connected to 127.0.0.1:%d", tw_port());
  cr_assert(tw_wait_text(log, want, 20), "on the node that is up");
  cr_assert(tw_wait_text(log, "consuming 1 queue(s)", 10));
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
}

/* After a failed connect the next attempt goes to the next node, never
 * the same one again (which node comes first is this process's shuffle,
 * so both nodes are down here and the log tells each step). */
Test(envcfg, a_failed_node_is_followed_by_the_next) {
  int a = tw_free_port(), b = tw_free_port();
  char broker[300];
  snprintf(broker, sizeof broker,
           "broker = { nodes = [\"127.0.0.1:%d\", \"127.0.0.1:%d\"]; };\n", a,
           b);
  char log[300];
  pid_t w = start_on(broker, "it.env.rotate", log);
  cr_assert_gt(w, 0);
  double until = wr_now() + 20;
  while (tw_occurrences(log, "; next: node ") < 3 && wr_now() < until)
    usleep(50 * 1000);
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
  FILE *f = fopen(log, "r");
  cr_assert(f);
  char line[1024];
  int steps = 0;
  while (fgets(line, sizeof line, f)) {
    const char *at = strstr(line, "broker 127.0.0.1:"),
               *next = strstr(line, "; next: node 127.0.0.1:");
    if (!at || !next) continue;
    int was = atoi(at + strlen("broker 127.0.0.1:")),
        to = atoi(next + strlen("; next: node 127.0.0.1:"));
    cr_assert(was != to, "node %d failed and was tried again: %s", was, line);
    cr_assert((was == a || was == b) && (to == a || to == b), "%s", line);
    steps++;
  }
  fclose(f);
  cr_assert_geq(steps, 3, "three failed connects in 20 s");
}

/* warren-publish --node, repeated: a node that does not answer is skipped
 * (libwarren's warren_producer_opts.nodes). */
Test(envcfg, warren_publish_takes_a_node_list) {
  cr_assert_eq(tw_own_queues("it.env.pubnodes", NULL), 0);
  cr_assert_eq(tw_declare_plain("it.env.pubnodes"), 0);
  char cmd[600];
  snprintf(cmd, sizeof cmd,
           "%s --node 127.0.0.1:%d --node 127.0.0.1:%d --node 127.0.0.1:%d "
           "--routing-key it.env.pubnodes --count 5 >/dev/null 2>&1",
           WARREN_PUBLISH_BIN, tw_free_port(), tw_port(), tw_free_port());
  for (int i = 0; i < 3; i++) /* the order is random: try it a few times */
    cr_assert_eq(system(cmd), 0, "%s", cmd);
  cr_assert_eq(tw_queue_len("it.env.pubnodes"), 15);
}
