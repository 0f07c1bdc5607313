/*
 * The pure parts of span export: a span copied into one relocatable block
 * of bytes (what the exporter's queue holds), and a batch of spans encoded
 * as an OTLP ExportTraceServiceRequest (protobuf, trace_service.proto).
 * No I/O, no globals; export.c does the threads and HTTP.
 */
#ifndef WR_OTLP_H
#define WR_OTLP_H

#include <stddef.h>
#include <stdint.h>

#include "otelcfg.h"
#include "span.h"

/* Copies are multiples of this, so that one copy placed right after
 * another stays aligned. */
#define WR_OTLP_FLAT_ALIGN 8

/* Bytes wr_otlp_flatten writes for sp (a multiple of WR_OTLP_FLAT_ALIGN). */
size_t wr_otlp_flat_size(const wr_span *sp);

/*
 * Copy sp, with every array and string it points to, into dst (at least
 * wr_otlp_flat_size(sp) bytes, aligned to WR_OTLP_FLAT_ALIGN). The copy
 * holds offsets instead of pointers, so it may be moved as bytes; call
 * wr_otlp_unflatten where it finally lies to use it. Strings of attribute
 * values gain a NUL after their len bytes.
 */
void wr_otlp_flatten(void *dst, const wr_span *sp);

/* Turn a copy made by wr_otlp_flatten, now at p (aligned), into a span
 * whose pointers point into p. Call once per copy. */
wr_span *wr_otlp_unflatten(void *p);

/* The resource every span of a request shares. */
typedef struct wr_otlp_resource {
  const char *service_name;
  const wr_otel_kv *attrs; /* service.name excluded */
  size_t nattrs;
  int64_t pid; /* process.pid; <= 0: left out */
} wr_otlp_resource;

/*
 * Encode spans[0..n) as one ExportTraceServiceRequest: one ResourceSpans
 * with res, one ScopeSpans (scope "warren", the Warren version). Strings
 * that are not valid UTF-8 have each bad byte replaced by '?' (protobuf
 * receivers reject the whole request otherwise). Returns a malloc'd
 * buffer of *len bytes, which the caller frees, or NULL (no memory).
 */
uint8_t *wr_otlp_encode(const wr_otlp_resource *res,
                        const wr_span *const *spans, size_t n, size_t *len);

#endif
