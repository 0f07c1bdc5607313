/*
 * Faults at the network's pace, through the tests' own TCP proxy
 * (proxy.c): partitions, resets, and a broker that blocks publishers.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "support.h"

TW_SUITE(network, 240);

static void nap(double s) {
  struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
  nanosleep(&ts, NULL);
}

/* How often needle occurs in file path. */
static int occurrences(const char *path, const char *needle) {
  static char text[4 << 20];
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  size_t n = fread(text, 1, sizeof text - 1, f);
  fclose(f);
  text[n] = '\0';
  int k = 0;
  for (const char *p = text; (p = strstr(p, needle)); p += strlen(needle)) k++;
  return k;
}

/* A partition is no refused login: with exit_after_refused_logins = 2, a
 * broker that accepts TCP and never answers (the proxy's blackhole) keeps
 * the worker retrying, at warn level, for as long as it lasts; and it
 * consumes once the network is back. */
Test(network, a_partition_is_no_refused_login, .timeout = 90) {
  int port = tw_proxy_start(0);
  cr_assert_gt(port, 0, "no proxy port free in 5830..5849");
  tw_proxy_mode(TW_PROXY_BLACKHOLE, 0);
  const char *dir = tw_dir();
  char broker[300], text[1024], log[400];
  snprintf(broker, sizeof broker,
           "broker = { host = \"127.0.0.1\"; port = %d; heartbeat = 5; "
           "connect_timeout = 1.0; };\n",
           port);
  snprintf(text, sizeof text,
           "handlers = ( { name = \"h\"; queue = \"it.partition\";\n"
           "  plugin = \"" TEST_HANDLER_DIR
           "/record.so\";\n"
           "  settings = { log = \"%s/rec\"; }; } );\n",
           dir);
  snprintf(log, sizeof log, "%s/warren.log", dir);
  pid_t w =
      tw_warren_start_with(dir, broker,
                           "exit_after_refused_logins = 2;",
                           text);
  cr_assert_gt(w, 0);
  int status = 0;
  pid_t r = 0;
  for (int i = 0; i < 250 && r == 0; i++) {
    nap(0.1);
    r = waitpid(w, &status, WNOHANG);
  }
  cr_assert_eq(r, 0, "the worker ended (status %d) during a partition",
               WIFEXITED(status) ? WEXITSTATUS(status) : -1);
  int tries = occurrences(log, "broker unreachable");
  cr_log_info("25 s of partition: %d unreachable handshakes logged", tries);
  cr_assert_geq(tries, 3, "the handshakes were tried and said unreachable");
  cr_assert_eq(occurrences(log, "refused the login"), 0);
  cr_assert_eq(occurrences(log, "error ["), 0,
               "a partition is a warning, not an operator's error");
  tw_proxy_mode(TW_PROXY_PASS, 0);
  cr_assert(tw_wait_text(log, "consuming 1 queue(s)", 30),
            "consuming once the network is back");
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
}
