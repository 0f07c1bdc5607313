/* Worker logging: one line per call to stderr, with time, level and pid. */
#ifndef WR_LOG_H
#define WR_LOG_H

#include <stdarg.h>
#include <stddef.h>

#include <warren/handler.h>

/* Lines above this level are dropped; set from WARREN_LOG_LEVEL at start. */
extern int wr_log_level;

void wr_log_init_from_env(void);
void wr_log(warren_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void wr_logv(warren_log_level level, const char *tag, const char *fmt,
             va_list ap);

/* Copy len bytes of untrusted text into dst (cap bytes, NUL-terminated),
 * control characters written as \xNN; truncated to fit. Returns the
 * length written. Used by every sink of outside text (logs, warren dlq). */
size_t wr_escape(char *dst, size_t cap, const char *src, size_t len);

#define wr_error(...) wr_log(WARREN_LOG_ERROR, __VA_ARGS__)
#define wr_warn(...) wr_log(WARREN_LOG_WARN, __VA_ARGS__)
#define wr_info(...) wr_log(WARREN_LOG_INFO, __VA_ARGS__)
#define wr_debug(...) wr_log(WARREN_LOG_DEBUG, __VA_ARGS__)

#endif
