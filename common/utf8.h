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

/* 1 when the n bytes at s are valid UTF-8 (no overlong forms, no
 * surrogates, nothing past U+10FFFF), else 0. */
int wr_utf8_valid(const char *s, size_t n);

#endif
