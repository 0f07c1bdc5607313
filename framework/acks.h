/*
 * Coalescing the acks of finished jobs, as pure bookkeeping: which tags
 * may be acked and when. No I/O; the supervisor sends what it decides.
 *
 * The rule that keeps a job from being acked early: a basic.ack with
 * multiple=true covers every tag up to its own, so it may only cover tags
 * below the lowest one still open (waiting, queued to or running in a
 * worker, or awaiting a copy's confirm). Finished tags above that floor
 * are acked one by one.
 */
#ifndef WR_ACKS_H
#define WR_ACKS_H

#include <stddef.h>
#include <stdint.h>

typedef struct wr_acks {
  uint64_t *done; /* finished tags whose ack is not sent yet */
  size_t n, cap;
  size_t batch; /* send once this many are waiting */
  double since; /* monotonic time the oldest of them finished */
} wr_acks;

/* What to send: one multiple ack up to `upto` (0: none), then `n_single`
 * single acks. `single` points into the wr_acks and is valid until the
 * next wr_acks_add. */
typedef struct wr_ack_plan {
  uint64_t upto;
  const uint64_t *single;
  size_t n_single;
} wr_ack_plan;

/* cap: the most tags ever waiting (prefetch plus jobs of an older
 * connection still running); batch: 1..cap. */
int wr_acks_init(wr_acks *a, size_t cap, size_t batch);
void wr_acks_free(wr_acks *a);

/* A job finished. Returns 1 when a batch is due (send now). Tags beyond
 * cap are refused with -1 (a bookkeeping error, never silently dropped). */
int wr_acks_add(wr_acks *a, uint64_t tag, double now);

/* Something waits longer than `delay` seconds. */
int wr_acks_overdue(const wr_acks *a, double now, double delay);

/* Take everything waiting as a plan, given `floor`, the lowest tag still
 * open (UINT64_MAX: none). Empties the set. */
wr_ack_plan wr_acks_take(wr_acks *a, uint64_t floor);

/* The connection is gone: its tags cannot be acked any more (the broker
 * redelivers those jobs). Returns how many were waiting. */
size_t wr_acks_forget(wr_acks *a);

#endif
