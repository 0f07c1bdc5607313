/*
 * Runs a supervisor started and could not record: a job running (or
 * awaiting its copy's confirm, or parked after a refused copy) when its
 * connection was lost goes back to its queue with the warren-attempt it
 * had, as do the prefetched jobs no handler ever started. The broker's
 * x-delivery-count cannot tell the two apart; this memory can. When such
 * a job comes back (redelivered), its unrecorded runs are added to its
 * attempt, so a job that ran loses the attempt and one that only waited
 * loses none (docs/retries.md, "Attempt counting"). Its returns before
 * any handler started it are kept too, so that they do not count towards
 * retry.max_deliveries either.
 *
 * A job is known by a key over its handler, its message id (its body when
 * it has none) and the warren-attempt of its copy. The memory is bounded
 * (WR_RUNS_MAX, oldest forgotten first) and per process: a supervisor
 * that dies forgets, which the policy's max_deliveries bounds instead.
 * Loop thread only.
 */
#ifndef WR_RUNS_H
#define WR_RUNS_H

#include <amqp.h>
#include <stddef.h>
#include <stdint.h>

#define WR_RUNS_MAX 4096

typedef struct wr_runs {
  uint64_t key[WR_RUNS_MAX];
  uint32_t runs[WR_RUNS_MAX];   /* both 0: a free entry */
  uint32_t waited[WR_RUNS_MAX]; /* returns before any handler started it */
  size_t next;                  /* the entry written next (ring order) */
} wr_runs;

/* The key of a delivery of handler h with properties p, body and the
 * warren-attempt its copy carries. */
uint64_t wr_runs_key(size_t h, const amqp_basic_properties_t *p,
                     amqp_bytes_t body, uint32_t recorded);

/* The copy with key has `runs` unrecorded runs in all, and went back to
 * its queue `waited` times before any handler started it (this replaces
 * what was noted for it). */
void wr_runs_note(wr_runs *r, uint64_t key, uint32_t runs, uint32_t waited);

/* The unrecorded runs noted for key (0: none) and, in *waited, its
 * returns unstarted, forgotten here: the delivery that takes them carries
 * them on (wr_job_meta.unrecorded and .waited). */
uint32_t wr_runs_take(wr_runs *r, uint64_t key, uint32_t *waited);

#endif
