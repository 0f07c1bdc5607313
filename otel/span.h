/*
 * A finished span as the supervisor hands it to an exporter (export.h).
 * Everything is borrowed: pointers need only stay valid during the call
 * that takes the span; the exporter copies what it keeps. Times are Unix
 * nanoseconds. Field meanings follow OTLP's trace.proto (Span, Status,
 * Span.Event, Span.Link, AnyValue).
 */
#ifndef WR_SPAN_H
#define WR_SPAN_H

#include <stddef.h>
#include <stdint.h>

/* OTLP Span.SpanKind values. */
enum {
  WR_SPAN_INTERNAL = 1,
  WR_SPAN_SERVER = 2,
  WR_SPAN_CLIENT = 3,
  WR_SPAN_PRODUCER = 4,
  WR_SPAN_CONSUMER = 5,
};

/* OTLP Status.StatusCode values. */
enum { WR_STATUS_UNSET = 0, WR_STATUS_OK = 1, WR_STATUS_ERROR = 2 };

typedef enum wr_attr_type {
  WR_ATTR_STRING = 1,
  WR_ATTR_INT = 2,
  WR_ATTR_DOUBLE = 3,
  WR_ATTR_BOOL = 4,
} wr_attr_type;

/* One attribute; only the member `type` names is read. str need not be
 * NUL-terminated (len counts its bytes). */
typedef struct wr_attr {
  const char *key; /* NUL-terminated */
  wr_attr_type type;
  const char *str;
  size_t len;
  int64_t i; /* INT, and BOOL as 0/1 */
  double d;
} wr_attr;

typedef struct wr_span_event {
  const char *name; /* NUL-terminated */
  uint64_t time_ns;
  const wr_attr *attrs;
  size_t nattrs;
} wr_span_event;

typedef struct wr_span_link {
  uint8_t trace_id[16];
  uint8_t span_id[8];
  const char *tracestate; /* NULL or "" when none; NUL-terminated */
  uint8_t flags;          /* W3C trace flags of the linked context */
} wr_span_link;

typedef struct wr_span {
  uint8_t trace_id[16];
  uint8_t span_id[8];
  uint8_t parent_span_id[8];
  int has_parent;         /* parent_span_id is set */
  const char *tracestate; /* NULL or ""; NUL-terminated */
  uint8_t flags;          /* W3C trace flags (bit 0: sampled) */
  const char *name;       /* NUL-terminated */
  int kind;               /* WR_SPAN_* */
  uint64_t start_ns, end_ns;
  const wr_attr *attrs;
  size_t nattrs;
  const wr_span_event *events;
  size_t nevents;
  const wr_span_link *links;
  size_t nlinks;
  int status;             /* WR_STATUS_* */
  const char *status_msg; /* NULL or NUL-terminated */
} wr_span;

#endif
