#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

int wr_log_level = WARREN_LOG_INFO;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void wr_log_init_from_env(void) {
  const char *v = getenv("WARREN_LOG_LEVEL");
  if (!v) return;
  for (int i = 0; i < 4; i++)
    if (strcasecmp(v, level_names[i]) == 0) wr_log_level = i;
}

size_t wr_escape(char *dst, size_t cap, const char *src, size_t len) {
  static const char hex[] = "0123456789abcdef";
  size_t o = 0;
  if (!cap) return 0;
  for (size_t i = 0; i < len; i++) {
    unsigned char ch = (unsigned char)src[i];
    if (ch >= 0x20 && ch != 0x7f) {
      if (o + 1 >= cap) break;
      dst[o++] = (char)ch;
    } else {
      if (o + 4 >= cap) break;
      dst[o++] = '\\';
      dst[o++] = 'x';
      dst[o++] = hex[ch >> 4];
      dst[o++] = hex[ch & 15];
    }
  }
  dst[o] = '\0';
  return o;
}

void wr_logv(warren_log_level level, const char *tag, const char *fmt,
             va_list ap) {
  /* A plugin passes any int: out-of-range levels are clamped, never used
   * as an index. */
  int lv = (int)level < WARREN_LOG_ERROR   ? WARREN_LOG_ERROR
           : (int)level > WARREN_LOG_DEBUG ? WARREN_LOG_DEBUG
                                           : (int)level;
  if (lv > wr_log_level) return;
  char line[2048], msg[1024];
  struct timespec ts;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  int n = snprintf(line, sizeof line,
                   "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s [%d]%s%s ",
                   tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                   tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000L, level_names[lv],
                   (int)getpid(), tag ? " " : "", tag ? tag : "");
  if (n < 0 || (size_t)n >= sizeof line) n = 0;
  int m = vsnprintf(msg, sizeof msg, fmt, ap);
  size_t mlen = m < 0 ? 0 : (size_t)m < sizeof msg ? (size_t)m : sizeof msg - 1;
  /* Message ids, routing keys and error texts come from publishers and
   * handlers: control characters are escaped so no one forges a log line
   * or drives the operator's terminal. */
  size_t len =
      (size_t)n + wr_escape(line + n, sizeof line - (size_t)n - 1, msg, mlen);
  line[len++] = '\n';
  /* One write per line so lines from worker processes do not interleave. */
  ssize_t w = write(STDERR_FILENO, line, len);
  (void)w;
}

void wr_log(warren_log_level level, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  wr_logv(level, NULL, fmt, ap);
  va_end(ap);
}
