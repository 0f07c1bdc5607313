/*
 * One delivery held by the supervisor, from basic.deliver until it is
 * acked, requeued or rejected. Slots are preallocated (supervisor.c) and
 * linked through `next`. The envelope is filled in place (deliver.c): its
 * strings and properties by rabbitmq-c's allocator, its body in the
 * handler's region when large (arena.h), and sent to a worker from there.
 */
#ifndef WR_JOB_H
#define WR_JOB_H

#include <amqp.h>
#include <stddef.h>
#include <stdint.h>

#include "retry.h"

/* The job's place in a trace (spans.c fills it at intake; otel/tracectx.h
 * for the format). Not traced: on = 0, the rest unset. */
typedef struct wr_job_trace {
  uint8_t trace_id[16];
  uint8_t span_id[8];      /* this attempt's span */
  uint8_t parent_id[8];    /* the producer's span: parent, or link if linked */
  uint8_t link_trace[16];  /* linked: the producer's trace */
  uint8_t copy_id[8];      /* span of the retry or dead-letter copy sent */
  uint8_t flags;           /* W3C trace flags; bit 0: sampled */
  uint8_t on;              /* traced: the ids are set */
  uint8_t has_parent;      /* parent_id is set */
  uint8_t linked;          /* the producer's context is a link */
  uint8_t link_flags;      /* its W3C flags */
  amqp_bytes_t tracestate; /* the job's valid tracestate, passed on (into
                              its own headers); empty: none */
} wr_job_trace;

struct wr_extras;

typedef struct wr_job {
  amqp_envelope_t env;      /* owned while the job lives */
  uint64_t id;              /* supervisor-wide sequence, matched in results */
  uint64_t gen;             /* connection generation the tag belongs to */
  wr_job_meta meta;         /* attempt, crashes, first failure */
  double started;           /* monotonic seconds when a worker took it */
  uint64_t confirm_seq;     /* last publish awaiting its confirm; 0: none */
  uint64_t confirm_first;   /* first of them: they are consecutive */
  uint64_t confirm_bits[5]; /* which of first.. are still unconfirmed: up
                               to 256 follow-ups and the result */
  uint64_t reply_seq;       /* confirm sequence of its result; 0: none */
  uint64_t body_off;        /* the body's block in its handler's arena, or
                               WR_ARENA_NONE: malloc'd (arena.h) */
  double due;         /* when parked (settle.c): monotonic time to requeue */
  uint16_t handler;   /* index of its handler */
  uint8_t dead;       /* the awaited publish is a dead letter */
  uint8_t returned;   /* the broker returned an awaited publish */
  uint8_t nacked;     /* the broker refused (nacked) an awaited publish */
  uint8_t followups;  /* the awaited publishes are its follow-ups (and
                         its result) */
  uint8_t no_reply;   /* its result was lost: 1 returned, 2 refused */
  uint8_t signed_ok;  /* its signature verified: body_sha256 is to match */
  uint8_t sig_check;  /* wr_sign_check that refused it (sign.h) */
  uint8_t revoked;    /* a revoke with terminate stopped it (revoked.h) */
  uint8_t reply_late; /* its result goes to direct reply-to after its ack
                         (settle.c): 1 the result, 2 the error result */
  unsigned char body_sha256[32]; /* signed digest, checked where it runs */
  wr_job_trace trace;
  unsigned char *xbuf; /* what its handler added (extras.h), malloc'd */
  size_t xlen;
  struct wr_extras *extras;   /* xbuf parsed, once it is settled */
  struct wr_job *next;        /* the one line it is on, or the free list */
  struct wr_job *prev;        /* on a line: the one before it */
  uint8_t state;              /* wr_job_state (ledger.h); only the ledger
                                 changes it */
  struct wr_job *by_tag_next; /* its handler's held jobs in delivery order */
  struct wr_job *by_tag_prev; /* (ledger.h), whatever their state */
  int64_t retry_delay_ms;     /* the retry copy's delay (settle.c), for the
                                 observers of `republished` */
  uint32_t tenant;            /* its tenant's entry + 1 (tenant.h); 0: none */
  uint32_t window;            /* epoch of the consumer that delivered it */
  char *late_body;            /* reply_late 2: the error result, malloc'd */
  char *late_err;             /* and its error text, malloc'd */
  const char *late_reason;    /* and its reason (static) */
} wr_job;

/* Seconds the job has run by monotonic time now, or -1 when no worker
 * (nor the in-process handler) ever took it: a job refused at intake has
 * no duration, whatever ran in its slot before. */
static inline double wr_job_ran(const wr_job *job, double now) {
  return job->started > 0 ? now - job->started : -1;
}

/* The job whose envelope env is (deliver.c hands out envelopes). */
static inline wr_job *wr_job_of(amqp_envelope_t *env) {
  return (wr_job *)((char *)env - offsetof(wr_job, env));
}

/* A line of jobs linked both ways; a job is on one line at a time. */
typedef struct wr_jobq {
  wr_job *head, *tail;
  size_t n;
} wr_jobq;

static inline void wr_jobq_push(wr_jobq *q, wr_job *j) {
  j->next = NULL;
  j->prev = q->tail;
  if (q->tail)
    q->tail->next = j;
  else
    q->head = j;
  q->tail = j;
  q->n++;
}

/* Back to the front of the line (a job handed back unstarted). */
static inline void wr_jobq_push_front(wr_jobq *q, wr_job *j) {
  j->prev = NULL;
  j->next = q->head;
  if (q->head)
    q->head->prev = j;
  else
    q->tail = j;
  q->head = j;
  q->n++;
}

/* Take j, which is on q, off it. */
static inline void wr_jobq_remove(wr_jobq *q, wr_job *j) {
  if (j->prev)
    j->prev->next = j->next;
  else
    q->head = j->next;
  if (j->next)
    j->next->prev = j->prev;
  else
    q->tail = j->prev;
  q->n--;
  j->next = j->prev = NULL;
}

static inline wr_job *wr_jobq_pop(wr_jobq *q) {
  wr_job *j = q->head;
  if (j) wr_jobq_remove(q, j);
  return j;
}

#endif
