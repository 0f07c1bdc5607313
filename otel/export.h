/*
 * Span export: a bounded queue that the loop thread fills without
 * blocking, drained by the exporter's own thread, which batches spans and
 * sends them over OTLP/HTTP (protobuf encoding) with retries. Swappable
 * as a const ops table plus a context: the OTLP exporter, or none.
 *
 * Threads and fork: wr_exporter_submit and _stats may be called from one
 * thread (the supervisor's loop) while the exporter thread runs. A child
 * forked while it runs must not call any of these functions: it has no
 * exporter thread and the queue's lock may be held (the worker processes
 * never do; docs/tracing.md).
 */
#ifndef WR_EXPORT_H
#define WR_EXPORT_H

#include <stddef.h>
#include <stdint.h>

#include "otelcfg.h"
#include "span.h"

typedef struct wr_exporter wr_exporter;

/* Counters since start; read them any time. */
typedef struct wr_exporter_stats {
  uint64_t submitted;      /* spans taken into the queue */
  uint64_t exported;       /* spans the collector accepted */
  uint64_t dropped_full;   /* refused by submit: the queue was full */
  uint64_t dropped_failed; /* queued, then given up after retries or at stop */
  uint64_t export_errors;  /* failed export requests (each may be retried) */
  uint64_t queued;         /* spans in the queue now */
  uint64_t dropped_large;  /* refused by submit: its copy is over 16 KiB */
} wr_exporter_stats;

/*
 * Start exporting to cfg->endpoint (cfg is copied). Returns NULL with err
 * set when it cannot start (no memory, no thread). Call before any fork
 * that must not see a half-made exporter; see above for children.
 */
wr_exporter *wr_exporter_start(const wr_otel_cfg *cfg, char *err,
                               size_t errlen);

/* Copy sp into the queue. Never blocks on I/O: 0 when queued, -1 when
 * dropped (queue full, span too large); both are counted. */
int wr_exporter_submit(wr_exporter *e, const wr_span *sp);

void wr_exporter_stats_get(wr_exporter *e, wr_exporter_stats *out);

/* Flush what is queued, waiting at most timeout_s for the collector, then
 * stop the thread and free everything. Spans not sent by then are counted
 * as dropped_failed and logged once. NULL is ignored. */
void wr_exporter_stop(wr_exporter *e, double timeout_s);

#endif
