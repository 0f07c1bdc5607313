/*
 * One delivery held by the supervisor, from basic.deliver until it is
 * acked, requeued or rejected. Slots are preallocated (loop.c) and linked
 * through `next`, so the hot path allocates nothing of Warren's own: the
 * envelope is filled by rabbitmq-c in place and sent to a worker from
 * there.
 */
#ifndef WR_JOB_H
#define WR_JOB_H

#include <amqp.h>
#include <stdint.h>

typedef struct wr_job {
  amqp_envelope_t env; /* owned while the job lives */
  uint64_t id;         /* supervisor-wide sequence, matched in results */
  uint64_t gen;        /* connection generation the tag belongs to */
  uint32_t attempt;
  double started;      /* monotonic seconds when a worker took it */
  struct wr_job *next; /* pending FIFO or free list */
} wr_job;

#endif
