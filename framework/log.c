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

void wr_logv(warren_log_level level, const char *tag, const char *fmt,
             va_list ap) {
  if ((int)level > wr_log_level) return;
  char line[2048];
  struct timespec ts;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  int n = snprintf(line, sizeof line,
                   "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s [%d]%s%s ",
                   tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                   tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000L,
                   level_names[level < 4 ? level : 3], (int)getpid(),
                   tag ? " " : "", tag ? tag : "");
  if (n < 0 || (size_t)n >= sizeof line) n = 0;
  int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
  size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
  if (len > sizeof line - 2) len = sizeof line - 2;
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
