#include "backoff.h"

#include <stdlib.h>

void wr_backoff_init(wr_backoff *b, double min, double max, double jitter) {
  b->min = min;
  b->max = max < min ? min : max;
  b->jitter = jitter;
  b->next = min;
}

double wr_backoff_fail(wr_backoff *b, double rnd) {
  double d = b->next * (1.0 + b->jitter * (2.0 * rnd - 1.0));
  b->next *= 2;
  if (b->next > b->max) b->next = b->max;
  return d;
}

void wr_backoff_reset(wr_backoff *b) { b->next = b->min; }

double wr_rand01(void) { return (double)rand() / ((double)RAND_MAX + 1.0); }
