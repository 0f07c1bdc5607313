#include "backoff.h"

#include <stdlib.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

void wr_backoff_init(wr_backoff *b, double min, double max, double jitter) {
  b->min = min;
  b->max = max < min ? min : max;
  b->jitter = jitter;
  b->next = min;
}

double wr_backoff_fail(wr_backoff *b, double rnd) {
  double d = b->next * (1.0 + b->jitter * (2.0 * rnd - 1.0));
  /* Never above max: a draw past it is folded back below, so delays at
   * the cap stay spread (clamping would stack them all on max). */
  if (d > b->max) d = 2 * b->max - d;
  b->next *= 2;
  if (b->next > b->max) b->next = b->max;
  return d;
}

void wr_backoff_reset(wr_backoff *b) {
  b->next = b->min;
}

double wr_rand01(void) {
  /* Seeded per process from the kernel: workers started together must not
   * draw the same jitter (a fleet restarted at once would reconnect in
   * lock-step). */
  static unsigned seed;
  static int seeded;
  if (!seeded) {
    if (getrandom(&seed, sizeof seed, 0) != (ssize_t)sizeof seed)
      seed = (unsigned)getpid() ^ (unsigned)time(NULL);
    seeded = 1;
  }
  return (double)rand_r(&seed) / ((double)RAND_MAX + 1.0);
}
