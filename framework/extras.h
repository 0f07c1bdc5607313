/*
 * What a handler adds to its job besides the verdict (handler.h, ABI
 * 1.1 and 1.2): attributes and events for the job's span, follow-up jobs
 * and the job's result (results.md).
 * The handler's process records them in one buffer while handle() runs
 * (worker.c); the buffer reaches the supervisor with the result (ipc.h,
 * WR_IPC_EXTRAS), which parses it here, checking every length: the bytes
 * come from a process that runs plugin code.
 *
 * Records, in call order, host byte order (both ends are one binary):
 *   u8 kind, then its fields; a string is u32 length, the bytes and a NUL;
 *   a value is u8 type (warren_value_type) and a string, i64 or double.
 *   ATTR:     key, value
 *   EVENT:    name, u64 time (Unix ns), u32 n, n x (key, value)
 *   FOLLOWUP: exchange, routing key, content type, message id,
 *             correlation id, u8 transient, u32 n, n x (key, value),
 *             u64 body length, the body
 *   RESULT:   content type, u64 body length, the body (ABI 1.2; the last
 *             one recorded counts)
 * Every buffer has a hard maximum (the limits below, documented in
 * handler.h).
 */
#ifndef WR_EXTRAS_H
#define WR_EXTRAS_H

#include <stddef.h>
#include <stdint.h>

#include <warren/handler.h>

#include "span.h"

#define WR_EXTRAS_MAX_ATTRS 64
#define WR_EXTRAS_MAX_EVENTS 32
#define WR_EXTRAS_MAX_EVENT_ATTRS 16
#define WR_EXTRAS_MAX_VALUE 1024 /* bytes of a key, name or string value */
#define WR_EXTRAS_MAX_FOLLOWUPS 256
#define WR_EXTRAS_MAX_HEADERS 64 /* of one follow-up */
#define WR_EXTRAS_MAX_BYTES ((size_t)64 << 20)
#define WR_EXTRAS_MAX_SHORTSTR 255 /* AMQP short strings */
/* A job's result (results.md): default and hard maximum of max_result. */
#define WR_RESULT_DEFAULT_MAX ((size_t)1 << 20)
#define WR_RESULT_MAX ((size_t)16 << 20)

/* ---- recording (the handler's process) -------------------------------- */

typedef struct wr_extras_buf {
  unsigned char *p;
  size_t len, cap;
  unsigned nattrs, nevents, nfollow;
  size_t result_at; /* offset + 1 of the result record; 0: none */
} wr_extras_buf;

/* Each returns WARREN_OK, WARREN_INVALID or WARREN_TOO_LARGE (handler.h);
 * on an error nothing is recorded. */
int wr_extras_attr(wr_extras_buf *b, const char *key, const warren_value *v);
int wr_extras_event(wr_extras_buf *b, const char *name, uint64_t time_ns,
                    const warren_attribute *attrs, size_t n);
/* default_id: the message id to use when pub has none (NULL: none). */
int wr_extras_followup(wr_extras_buf *b, const warren_publish *pub,
                       const char *default_id);

/* The job's result (replacing an earlier one of the same job): len bytes,
 * at most max (else WARREN_TOO_LARGE). */
int wr_extras_result(wr_extras_buf *b, const void *body, size_t len,
                     const char *content_type, size_t max);

/* Empty it for the next job; memory past 1 MiB is given back. */
void wr_extras_clear(wr_extras_buf *b);
void wr_extras_free(wr_extras_buf *b);

/* ---- reading (the supervisor) ------------------------------------------ */

typedef struct wr_str {
  const char *s; /* NUL-terminated, within the buffer */
  size_t len;
} wr_str;

typedef struct wr_followup {
  wr_str exchange, routing_key, content_type, message_id, correlation_id;
  int transient;
  size_t nheaders;
  wr_attr headers[WR_EXTRAS_MAX_HEADERS];
  const void *body;
  size_t body_len;
} wr_followup;

/* A parsed buffer: pointers into it, valid while it is. Attributes of the
 * same key keep the last value. */
typedef struct wr_extras {
  wr_attr attrs[WR_EXTRAS_MAX_ATTRS];
  size_t nattrs;
  wr_span_event events[WR_EXTRAS_MAX_EVENTS];
  size_t nevents;
  wr_attr ev_attrs[WR_EXTRAS_MAX_EVENTS * WR_EXTRAS_MAX_EVENT_ATTRS];
  size_t nfollow;
  wr_followup *follow; /* nfollow entries, malloc'd; wr_extras_release */
  int has_result;      /* the handler set a result: the fields below */
  wr_str result_type;  /* its content type ("" : none) */
  const void *result;  /* result_len bytes */
  size_t result_len;
} wr_extras;

/* Parse len bytes at p. 0, or -1 when they break the format or a limit
 * (*out is then empty). */
int wr_extras_parse(const unsigned char *p, size_t len, wr_extras *out);
void wr_extras_release(wr_extras *x);

#endif
