#include "utf8.h"

#include <string.h>

/* Bytes in the UTF-8 sequence starting at s (n bytes left), or 0 when
 * it is not one (overlong forms, surrogates and > U+10FFFF included). */
static size_t utf8_seq(const unsigned char *s, size_t n) {
  unsigned c = s[0];
  size_t len;
  unsigned min;
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF)
    len = 2, min = 0x80;
  else if (c >= 0xE0 && c <= 0xEF)
    len = 3, min = 0x800;
  else if (c >= 0xF0 && c <= 0xF4)
    len = 4, min = 0x10000;
  else
    return 0;
  if (n < len) return 0;
  unsigned v = c & (0x3F >> (len - 1));
  for (size_t i = 1; i < len; i++) {
    if ((s[i] & 0xC0) != 0x80) return 0;
    v = (v << 6) | (s[i] & 0x3F);
  }
  if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
  return len;
}

size_t wr_utf8_copy(char *dst, const char *src, size_t n, size_t max) {
  const unsigned char *s = (const unsigned char *)src;
  size_t i = 0, o = 0;
  while (i < n) {
    size_t k = utf8_seq(s + i, n - i);
    if (!k) { /* not UTF-8: a subscriber's parser would refuse the batch */
      if (o + 1 > max) break;
      dst[o++] = '?';
      i++;
      continue;
    }
    if (o + k > max) break;
    memcpy(dst + o, s + i, k);
    o += k;
    i += k;
  }
  return o;
}

int wr_utf8_valid(const char *src, size_t n) {
  const unsigned char *s = (const unsigned char *)src;
  for (size_t i = 0, k; i < n; i += k)
    if (!(k = utf8_seq(s + i, n - i))) return 0;
  return 1;
}
