/*
 * A delivery's admission: a chain of checks every job passes before any
 * handler code sees it. A job that fails one is settled at once (dead-
 * lettered as `malformed`, for the built-in check) and never reaches a
 * handler. Warren's own headers are the first check; signature
 * verification is added to the chain the same way.
 */
#ifndef WR_INTAKE_H
#define WR_INTAKE_H

#include <stddef.h>

#include "job.h"
#include "retry.h"
#include "runs.h"

typedef struct wr_intake_check {
  const char *name;
  /* 0: pass. Non-zero: refuse, with *o the outcome that settles the job
   * and why the reason (written to the dead letter). Fills job->meta if
   * it reads it. */
  int (*check)(void *ctx, size_t handler, wr_job *job, wr_outcome *o, char *why,
               size_t whylen);
} wr_intake_check;

#define WR_INTAKE_MAX 8

typedef struct wr_intake {
  struct {
    const wr_intake_check *c;
    void *ctx;
  } chain[WR_INTAKE_MAX];
  size_t n;
  const struct wr_cfg *cfg; /* the handlers' settings, for the built-in
                               checks */
  wr_runs runs;             /* runs started and never recorded (runs.h) */
} wr_intake;

/* Append a check; it runs after those added before. 0 or -1 (full). */
int wr_intake_add(wr_intake *in, const wr_intake_check *c, void *ctx);

/* Reads Warren's headers into job->meta (retry.h), adding to a
 * redelivery's attempt the runs this process started and could not record
 * (runs.h); refuses a job whose headers are there but unusable as
 * WR_OUT_MALFORMED, and a quorum queue's redelivery past the handler's
 * max_deliveries as WR_OUT_DELIVERIES. ctx: the wr_intake itself. */
extern const wr_intake_check wr_intake_headers;

/* Refuses a body over the handler's max_body as WR_OUT_TOO_LARGE
 * (dead-lettered, reason too_large) before any worker sees it. ctx: the
 * wr_intake itself. */
extern const wr_intake_check wr_intake_size;

/* The verdict on handler's delivery job: 0, admitted; 1, refused, with
 * *o the outcome that settles it and why the reason. Runs the chain in
 * order; the checks fill job->meta, the trace and signature fields. It
 * decides only: the supervisor carries the verdict out. */
int wr_intake_decide(const wr_intake *in, size_t handler, wr_job *job,
                     wr_outcome *o, char *why, size_t whylen);

/* job goes back to its queue with no outcome recorded (requeued, or its
 * connection lost). If it ran (a handler started it), its redelivery
 * counts that run as an attempt; if no handler started it, the return
 * costs nothing, not even towards max_deliveries (runs.h). Only for a job
 * past the intake (its meta is read). */
void wr_intake_unrecorded(wr_intake *in, const wr_job *job);

#endif
