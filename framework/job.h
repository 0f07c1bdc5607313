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

#include "retry.h"

typedef struct wr_job {
  amqp_envelope_t env; /* owned while the job lives */
  uint64_t id;         /* supervisor-wide sequence, matched in results */
  uint64_t gen;        /* connection generation the tag belongs to */
  wr_job_meta meta;    /* attempt, crashes, first failure */
  double started;      /* monotonic seconds when a worker took it */
  uint64_t confirm_seq; /* publish awaiting its confirm; 0: none */
  uint16_t handler;    /* index of its handler */
  uint8_t dead;        /* the awaited publish is a dead letter */
  struct wr_job *next; /* pending FIFO or free list */
} wr_job;

#endif
