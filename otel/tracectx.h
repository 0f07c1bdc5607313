/*
 * W3C Trace Context (https://www.w3.org/TR/trace-context/) as Warren
 * carries it in AMQP headers: parsing and writing `traceparent`, checking
 * `tracestate`, new ids, and the samplers' decisions. Pure and without
 * allocation; shared by the worker, libwarren and the tools.
 */
#ifndef WR_TRACECTX_H
#define WR_TRACECTX_H

#include <stddef.h>
#include <stdint.h>

#define WR_TRACEPARENT_LEN 55 /* "00-" 32 "-" 16 "-" 2 */
#define WR_TRACESTATE_MAX 512 /* what W3C says a carrier must propagate */
#define WR_TRACE_SAMPLED 0x01

typedef struct wr_trace_ctx {
  uint8_t trace_id[16];
  uint8_t span_id[8];
  uint8_t flags; /* W3C trace flags; bit 0: sampled */
  uint8_t valid; /* the ids are set (and not all zero) */
} wr_trace_ctx;

/*
 * Parse a traceparent value of len bytes (not NUL-terminated). Version 00
 * must be exactly 55 bytes; a later version may carry more after a '-'
 * (W3C: parse what version 00 defines). Upper-case hex, zero ids and
 * version ff are invalid. Returns 0, or -1 with *out untouched.
 */
int wr_trace_parse(const char *s, size_t len, wr_trace_ctx *out);

/* Write c as a version-00 traceparent: 55 characters and a NUL. */
void wr_trace_format(const wr_trace_ctx *c, char out[WR_TRACEPARENT_LEN + 1]);

/* Whether a tracestate value may be propagated as it is: at most 512
 * bytes, 32 list members of key=value with W3C's characters. Empty is
 * valid. */
int wr_tracestate_valid(const char *s, size_t len);

/* Lower-case hex of n bytes into out (2n characters and a NUL). */
void wr_trace_hex(const uint8_t *b, size_t n, char *out);

/* Fresh random ids (never all zero), from a generator seeded from the
 * system per process; a forked child re-seeds itself on first use. */
void wr_trace_new_trace_id(uint8_t id[16]);
void wr_trace_new_span_id(uint8_t id[8]);

/* TraceIdRatioBased: whether trace_id falls within ratio (0..1), from its
 * last 8 bytes as the OpenTelemetry specification describes, so every
 * service with the same ratio decides the same way for a trace. */
int wr_trace_ratio_sampled(const uint8_t trace_id[16], double ratio);

#endif
