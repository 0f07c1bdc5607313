#include "acks.h"

#include <stdlib.h>

#include <warren/status.h>

int wr_acks_init(wr_acks *a, size_t cap, size_t batch) {
  a->done = calloc(cap ? cap : 1, sizeof *a->done);
  a->n = 0;
  a->cap = cap;
  a->batch = batch < 1 ? 1 : batch > cap ? cap : batch;
  a->since = 0;
  return a->done ? WARREN_OK : WARREN_NOMEM;
}

void wr_acks_free(wr_acks *a) {
  free(a->done);
  a->done = NULL;
  a->n = a->cap = 0;
}

int wr_acks_add(wr_acks *a, uint64_t tag, double now) {
  if (a->n >= a->cap) return -1;
  if (a->n == 0) a->since = now;
  a->done[a->n++] = tag;
  return a->n >= a->batch;
}

int wr_acks_overdue(const wr_acks *a, double now, double delay) {
  return a->n && now - a->since >= delay;
}

wr_ack_plan wr_acks_take(wr_acks *a, uint64_t floor) {
  uint64_t *d = a->done;
  size_t n = a->n;
  /* Insertion sort: results come back nearly in tag order. */
  for (size_t i = 1; i < n; i++)
    for (size_t k = i; k > 0 && d[k - 1] > d[k]; k--) {
      uint64_t t = d[k];
      d[k] = d[k - 1];
      d[k - 1] = t;
    }
  size_t run = 0;
  while (run < n && d[run] < floor) run++;
  wr_ack_plan p = {run ? d[run - 1] : 0, d + run, n - run};
  a->n = 0;
  return p;
}

size_t wr_acks_forget(wr_acks *a) {
  size_t n = a->n;
  a->n = 0;
  return n;
}
