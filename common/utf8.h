/*
 * Text that must be valid UTF-8 (JSON bodies, events, the status page)
 * made from bytes a publisher chose.
 */
#ifndef WR_UTF8_H
#define WR_UTF8_H

#include <stddef.h>

/* Copy src (n bytes) into dst as valid UTF-8: a byte that is not part
 * of a valid sequence becomes '?', and at most max bytes are written,
 * never part of a sequence. Returns the bytes written (no NUL added). */
size_t wr_utf8_copy(char *dst, const char *src, size_t n, size_t max);

#endif
