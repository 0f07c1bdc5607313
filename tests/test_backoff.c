/* Backoff delays: doubling, jitter that never passes the cap, and
 * random numbers that differ between processes (a fleet restarted
 * together must not retry in lock-step). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backoff.h"

Test(backoff, delays_double_and_never_pass_the_cap) {
  wr_backoff b;
  wr_backoff_init(&b, 0.5, 2.0, 0.2);
  /* (each delay is drawn once: the assertion macros read it twice) */
  double d1 = wr_backoff_fail(&b, 0.5), d2 = wr_backoff_fail(&b, 0.5);
  cr_assert_float_eq(d1, 0.5, 1e-9, "no jitter at 0.5");
  cr_assert_float_eq(d2, 1.0, 1e-9, "doubled");
  double lo = 10, hi = 0;
  for (int i = 0; i < 1000; i++) {
    double d = wr_backoff_fail(&b, i / 1000.0);
    cr_assert_leq(d, 2.0, "draw %d gave %.3f s over reconnect_max 2.0", i, d);
    if (d < lo) lo = d;
    if (d > hi) hi = d;
  }
  cr_assert_geq(lo, 1.6 - 1e-9, "jitter is at most 20%% below");
  cr_assert_lt(lo, 1.61, "and the draws use it");
  cr_assert_gt(hi, 1.99, "spread up to the cap");
  wr_backoff_reset(&b);
  double d3 = wr_backoff_fail(&b, 0.5);
  cr_assert_float_eq(d3, 0.5, 1e-9, "reset to min");
}

/* Each of two forked processes draws its own sequence. */
Test(backoff, two_processes_draw_different_delays) {
  double seq[2][4];
  for (int k = 0; k < 2; k++) {
    int p[2];
    cr_assert_eq(pipe(p), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
      double d[4];
      wr_backoff b;
      wr_backoff_init(&b, 1.0, 1.0, 0.2);
      for (int i = 0; i < 4; i++) d[i] = wr_backoff_fail(&b, wr_rand01());
      _exit(write(p[1], d, sizeof d) == (ssize_t)sizeof d ? 0 : 1);
    }
    close(p[1]);
    cr_assert_eq(read(p[0], seq[k], sizeof seq[k]), (ssize_t)sizeof seq[k]);
    close(p[0]);
    int st;
    waitpid(pid, &st, 0);
    for (int i = 0; i < 4; i++) cr_assert_leq(seq[k][i], 1.0);
  }
  int same = 0;
  for (int i = 0; i < 4; i++) same += seq[0][i] == seq[1][i];
  cr_assert_lt(same, 4, "both processes drew %.6f %.6f %.6f %.6f", seq[0][0],
               seq[0][1], seq[0][2], seq[0][3]);
}
