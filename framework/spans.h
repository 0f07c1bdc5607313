/*
 * Every job a span (docs/tracing.md): the subscriber that turns the job's
 * lifecycle (lifecycle.h) into OpenTelemetry spans and hands them to the
 * exporter (otel/export.h).
 *
 *  - At intake (wr_intake_trace, first in the chain) the job's context is
 *    read from its `traceparent` and `tracestate` headers (keys in any
 *    case; string or byte-array values), sampled, and given a span id of
 *    its own, in job->trace. A missing or invalid context makes the job a
 *    new root; an invalid one is counted. It never refuses a job.
 *  - When the job's attempt is settled, its CONSUMER span is built, from
 *    when a worker took it (pool.c) to then, with the messaging
 *    attributes, the outcome and what the handler added (extras.h); a
 *    crash or timeout is recorded here, by the supervisor.
 *  - A retry or dead-letter copy carries a traceparent naming a PRODUCER
 *    span of its own, a child of the attempt that sent it, so attempts
 *    and the dead letter form one trace.
 * All on the loop thread; the exporter's queue never blocks it.
 */
#ifndef WR_SPANS_H
#define WR_SPANS_H

#include <amqp.h>
#include <stdint.h>

#include "intake.h"
#include "job.h"
#include "lifecycle.h"
#include "otelcfg.h"
#include "tracectx.h"

struct wr_cfg;
typedef struct wr_spans wr_spans;

typedef struct wr_spans_counters {
  uint64_t invalid_context; /* traceparent/tracestate headers refused */
  uint64_t sampled;         /* jobs whose spans are recorded */
  uint64_t not_sampled;
  uint64_t exported, dropped_full, dropped_failed, export_errors, queued;
} wr_spans_counters;

/* Start tracing with oc (copied) for the handlers of cfg: the exporter
 * thread starts here. 0, or a negative warren_status with err set. */
int wr_spans_create(const wr_otel_cfg *oc, const struct wr_cfg *cfg,
                    wr_spans **out, char *err, size_t errlen);
/* Flush (at most flush_s seconds) and stop. NULL is ignored. */
void wr_spans_destroy(wr_spans *sp, double flush_s);
void wr_spans_counters_get(wr_spans *sp, wr_spans_counters *out);

/* ctx: the wr_spans. */
extern const wr_intake_check wr_intake_trace;
extern const wr_job_events wr_spans_events;

/* For a retry or dead-letter copy of job: a new span id for the copy
 * (job->trace.copy_id) and its traceparent in tp. -1: the job is not
 * traced (the copy keeps the job's own headers). */
int wr_spans_copy_context(wr_job *job, char tp[WR_TRACEPARENT_LEN + 1]);

/* For a follow-up job that job's handler published: the traceparent
 * naming job's span, or when job is not traced, the job's own valid
 * traceparent header passed on; *ts gets the tracestate to pass on
 * (bytes within job's headers, or empty). -1: no context to pass on. */
int wr_spans_followup_context(const wr_job *job,
                              char tp[WR_TRACEPARENT_LEN + 1],
                              amqp_bytes_t *ts);

#endif
