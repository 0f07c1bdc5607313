#include "delay.h"

#include <stdio.h>
#include <string.h>

int64_t wr_delay_seconds(int64_t ms) {
  return ms <= 0 ? 0 : (ms + 999) / 1000;
}

size_t wr_delay_routing_key(int64_t seconds, const char *queue, char *buf,
                            size_t len) {
  size_t q = strlen(queue);
  if (seconds < 1 || seconds > WR_DELAY_MAX_S || !q ||
      WR_DELAY_BITS_LEN + q > 255 || WR_DELAY_BITS_LEN + q + 1 > len)
    return 0;
  char *o = buf;
  for (int n = WR_DELAY_LEVELS - 1; n >= 0; n--) {
    *o++ = (seconds >> n) & 1 ? '1' : '0';
    *o++ = '.';
  }
  memcpy(o, queue, q + 1);
  return WR_DELAY_BITS_LEN + q;
}

char *wr_delay_level(const char *prefix, int n, char *buf, size_t len) {
  snprintf(buf, len, "%s.%d", prefix, n);
  return buf;
}

char *wr_delay_entry(const char *prefix, char *buf, size_t len) {
  return wr_delay_level(prefix, WR_DELAY_LEVELS - 1, buf, len);
}

char *wr_delay_deliver(const char *prefix, char *buf, size_t len) {
  snprintf(buf, len, "%s.deliver", prefix);
  return buf;
}

char *wr_delay_unrouted(const char *prefix, char *buf, size_t len) {
  snprintf(buf, len, "%s.unrouted", prefix);
  return buf;
}

size_t wr_delay_binding(const char *queue, char *buf, size_t len) {
  size_t q = strlen(queue);
  if (WR_DELAY_BITS_LEN + q + 1 > len) return 0;
  char *o = buf;
  for (int n = 0; n < WR_DELAY_LEVELS; n++) {
    *o++ = '*';
    *o++ = '.';
  }
  memcpy(o, queue, q + 1);
  return WR_DELAY_BITS_LEN + q;
}

int wr_delay_queue_ok(const char *queue) {
  size_t q = strlen(queue);
  return q && WR_DELAY_BITS_LEN + q <= 255 && !strpbrk(queue, "*#");
}

int wr_delay_split(const void *rk, size_t rklen, const char **dest,
                   size_t *destlen) {
  const char *r = rk;
  if (rklen <= WR_DELAY_BITS_LEN) return 0;
  for (size_t i = 0; i < WR_DELAY_BITS_LEN; i += 2)
    if ((r[i] != '0' && r[i] != '1') || r[i + 1] != '.') return 0;
  *dest = r + WR_DELAY_BITS_LEN;
  *destlen = rklen - WR_DELAY_BITS_LEN;
  return 1;
}

int wr_delay_destination(const char *prefix, const void *exchange, size_t exlen,
                         const void *rk, size_t rklen, const char **dest,
                         size_t *destlen) {
  size_t p = strlen(prefix);
  const char *x = exchange;
  if (exlen <= p + 1 || memcmp(x, prefix, p) != 0 || x[p] != '.') return 0;
  return wr_delay_split(rk, rklen, dest, destlen);
}
