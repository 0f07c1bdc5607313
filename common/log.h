/*
 * Worker logging: one line per call to stderr, with time, level and pid,
 * as text (the default), JSON (cJSON, one object per line) or logfmt.
 */
#ifndef WR_LOG_H
#define WR_LOG_H

#include <stdarg.h>
#include <stddef.h>

#include <warren/handler.h>

/* Lines above this level are dropped; set from WARREN_LOG_LEVEL at start. */
extern int wr_log_level;

/* How lines are written; set once at start (before workers fork). */
enum { WR_LOG_TEXT = 0, WR_LOG_JSON, WR_LOG_LOGFMT };
extern int wr_log_format;

void wr_log_init_from_env(void);
void wr_log(warren_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void wr_logv(warren_log_level level, const char *tag, const char *fmt,
             va_list ap);

/* Copy len bytes of untrusted text into dst (cap bytes, NUL-terminated),
 * control characters written as \xNN; truncated to fit. Returns the
 * length written. Used by every sink of outside text (logs, warren dlq). */
size_t wr_escape(char *dst, size_t cap, const char *src, size_t len);

/* The fields of a line about one job (joblog.c). Strings may come from
 * publishers: they are escaped in every format. */
typedef struct wr_log_job {
  const char *handler;
  const char *id; /* message id, id_len bytes, not NUL-terminated */
  size_t id_len;
  unsigned attempt;
  const char *outcome;
  double duration_ms; /* < 0: not run (never reached a handler) */
} wr_log_job;

/* A line with the job's fields: in text after the message, in JSON and
 * logfmt as their own keys. */
void wr_log_job_line(warren_log_level level, const wr_log_job *job,
                     const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* 1 when a line of this level would be written. */
static inline int wr_log_enabled(warren_log_level level) {
  return (int)level <= wr_log_level;
}

#define wr_error(...) wr_log(WARREN_LOG_ERROR, __VA_ARGS__)
#define wr_warn(...) wr_log(WARREN_LOG_WARN, __VA_ARGS__)
#define wr_info(...) wr_log(WARREN_LOG_INFO, __VA_ARGS__)
#define wr_debug(...) wr_log(WARREN_LOG_DEBUG, __VA_ARGS__)

#endif
