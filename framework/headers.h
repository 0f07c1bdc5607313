/*
 * Header tables as the worker processes see them.
 *
 * The process owning the AMQP connection flattens a decoded amqp_table_t
 * into a compact blob (wr_hdr_encode) that travels to the worker process
 * inside the job frame; the worker indexes it in place (wr_hdr_parse)
 * without copying strings. Top-level scalar entries are kept; nested
 * tables and arrays are passed as WARREN_VALUE_OTHER.
 *
 * Blob: u32 count, then per entry: u32 key_len, key, NUL, u8 type, value
 * (string: u32 len, bytes, NUL; int: i64; double: f64; bool: u8).
 * Host byte order: the blob never leaves the machine.
 */
#ifndef WR_HEADERS_H
#define WR_HEADERS_H

#include <amqp.h>
#include <stddef.h>

#include <warren/handler.h>

#define WR_HDR_MAX_ENTRIES 1024      /* a handler sees at most these */
#define WR_HDR_MAX_BLOB (256 * 1024) /* flattened, or it sees none */

/*
 * The headers a handler is given for properties p: its table when it has
 * one and it flattens to at most WR_HDR_MAX_BLOB bytes, else an empty one;
 * only the first WR_HDR_MAX_ENTRIES are kept (wr_hdr_encode). Every
 * header still travels on in retry and dead-letter copies. The first time
 * a handler's job hits a limit it is logged (*warned is set). *bytes gets
 * wr_hdr_encoded_size() of the table returned.
 */
const amqp_table_t *wr_hdr_visible(const amqp_basic_properties_t *p,
                                   const char *handler, int *warned,
                                   size_t *bytes);

/* Bytes wr_hdr_encode() will write for t. */
size_t wr_hdr_encoded_size(const amqp_table_t *t);
/* Writes the blob for t into dst (wr_hdr_encoded_size bytes). */
void wr_hdr_encode(const amqp_table_t *t, unsigned char *dst);

typedef struct wr_hdr_entry {
  const char *name;
  warren_value value;
} wr_hdr_entry;

/* This is the warren_headers a handler sees. */
struct warren_headers {
  size_t count;
  wr_hdr_entry entries[WR_HDR_MAX_ENTRIES];
};

/* Index blob[0..len) into h; pointers in h point into blob. Returns 0 or
 * WARREN_INVALID when the blob is malformed (then h->count is 0). */
int wr_hdr_parse(struct warren_headers *h, const unsigned char *blob,
                 size_t len);

int wr_hdr_get(const struct warren_headers *h, const char *name,
               warren_value *out);
size_t wr_hdr_count(const struct warren_headers *h);
int wr_hdr_at(const struct warren_headers *h, size_t index, const char **name,
              warren_value *out);

#endif
