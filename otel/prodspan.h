/*
 * The PRODUCER span of one publish, as OpenTelemetry's messaging
 * conventions describe it for RabbitMQ: what warren-publish and
 * `warren dlq replay` export (docs/tools.md). Pure; the span's ids are the
 * ones the message carries in its traceparent, so the consumer's span
 * finds its parent.
 */
#ifndef WR_PRODSPAN_H
#define WR_PRODSPAN_H

#include <stddef.h>
#include <stdint.h>

#include "span.h"
#include "tracectx.h"

#define WR_PRODSPAN_MAX_ATTRS 12

/* A span and the storage it points into. Every string it points at is
 * borrowed from the arguments of wr_prodspan_init and _add_*: they must
 * stay valid until the span has been submitted (wr_exporter_submit
 * copies it). */
typedef struct wr_prodspan {
  wr_span span;
  wr_attr attrs[WR_PRODSPAN_MAX_ATTRS];
  wr_span_link link;
  char name[320]; /* "<operation> <destination>" */
} wr_prodspan;

/*
 * A PRODUCER span named "<operation> <name_dest>" ("(default)" when
 * name_dest is NULL or ""), with the ids and flags of traceparent and no
 * parent, and the attributes messaging.system, messaging.operation.type
 * (send), messaging.operation.name, messaging.destination.name (exchange,
 * "" for the default), messaging.rabbitmq.destination.routing_key,
 * messaging.message.id (when message_id is not NULL) and
 * messaging.message.body.size. Returns 0, or -1 when traceparent does not
 * parse (*ps is then unusable).
 */
int wr_prodspan_init(wr_prodspan *ps, const char *operation,
                     const char *name_dest, const char *traceparent,
                     const char *exchange, const char *routing_key,
                     const char *message_id, size_t body_size,
                     uint64_t start_ns, uint64_t end_ns);

/* One more attribute; ignored past WR_PRODSPAN_MAX_ATTRS (returns -1). */
int wr_prodspan_add_str(wr_prodspan *ps, const char *key, const char *v);
int wr_prodspan_add_int(wr_prodspan *ps, const char *key, int64_t v);

/* Link the span to ctx (with its tracestate, NULL for none). A context
 * that is not valid is not linked (returns -1). */
int wr_prodspan_link(wr_prodspan *ps, const wr_trace_ctx *ctx,
                     const char *tracestate);

/* The time now as Unix nanoseconds, for start_ns and end_ns. */
uint64_t wr_prodspan_now_ns(void);

#endif
