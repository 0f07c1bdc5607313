#include "log.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

int wr_log_level = WARREN_LOG_INFO;
int wr_log_format = WR_LOG_TEXT;

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

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0. */
static size_t utf8_seq(const unsigned char *s, size_t n) {
  size_t k = s[0] < 0x80             ? 1
             : (s[0] & 0xe0) == 0xc0 ? 2
             : (s[0] & 0xf0) == 0xe0 ? 3
             : (s[0] & 0xf8) == 0xf0 ? 4
                                     : 0;
  if (!k || k > n || (k == 2 && s[0] < 0xc2)) return 0;
  for (size_t i = 1; i < k; i++)
    if ((s[i] & 0xc0) != 0x80) return 0;
  return k;
}

/* wr_escape, and bytes that are not UTF-8 written as \xNN too: a JSON
 * reader must be able to decode every line. */
static size_t escape_utf8(char *dst, size_t cap, const char *src, size_t len) {
  size_t o = 0, i = 0;
  if (!cap) return 0;
  dst[0] = '\0';
  while (i < len) {
    size_t k = utf8_seq((const unsigned char *)src + i, len - i);
    if (k > 1) { /* a whole character, or nothing */
      if (o + k >= cap) break;
      memcpy(dst + o, src + i, k);
      o += k;
      dst[o] = '\0';
    } else if (k == 1) {
      size_t w = wr_escape(dst + o, cap - o, src + i, 1);
      if (!w) break;
      o += w;
    } else {
      if (o + 4 >= cap) break;
      o += (size_t)snprintf(dst + o, cap - o, "\\x%02x", (unsigned char)src[i]);
    }
    i += k ? k : 1;
  }
  return o;
}

static void stamp(char *buf, size_t len) {
  struct timespec ts;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
           tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
           ts.tv_nsec / 1000000L);
}

/* logfmt: quoted when it holds a space, '=', '"' or nothing. */
static size_t logfmt_pair(char *dst, size_t cap, const char *key,
                          const char *v) {
  int quote = !*v || strpbrk(v, " =\"\\") != NULL;
  size_t o = (size_t)snprintf(dst, cap, " %s=%s", key, quote ? "\"" : "");
  for (; *v && o + 3 < cap; v++) {
    if (quote && (*v == '"' || *v == '\\')) dst[o++] = '\\';
    dst[o++] = *v;
  }
  if (quote && o + 2 < cap) dst[o++] = '"';
  dst[o < cap ? o : cap - 1] = '\0';
  return o < cap ? o : cap - 1;
}

/* One line out, one write, so lines from worker processes do not
 * interleave. */
static void emit(warren_log_level lv, const char *tag, const char *msg,
                 size_t mlen, const wr_log_job *job) {
  char ts[96], line[4096], text[2048], id[1024] = "";
  stamp(ts, sizeof ts);
  const char *level = level_names[lv];
  size_t len;
  if (wr_log_format == WR_LOG_TEXT) {
    /* Message ids, routing keys and error texts come from publishers and
     * handlers: control characters are escaped so no one forges a log
     * line or drives the operator's terminal. */
    int n = snprintf(line, sizeof line, "%s %-5s [%d]%s%s ", ts, level,
                     (int)getpid(), tag ? " " : "", tag ? tag : "");
    if (n < 0 || (size_t)n >= sizeof line) n = 0;
    len =
        (size_t)n + wr_escape(line + n, sizeof line - (size_t)n - 1, msg, mlen);
    if (job) {
      wr_escape(id, sizeof id, job->id, job->id_len);
      int w =
          snprintf(line + len, sizeof line - len - 1, " (id %s, attempt %u, %s",
                   id, job->attempt, job->outcome);
      if (w > 0) len += (size_t)w < sizeof line - len - 1 ? (size_t)w : 0;
      w = job->duration_ms >= 0
              ? snprintf(line + len, sizeof line - len - 1, ", %.3f ms)",
                         job->duration_ms)
              : snprintf(line + len, sizeof line - len - 1, ")");
      if (w > 0) len += (size_t)w < sizeof line - len - 1 ? (size_t)w : 0;
    }
  } else {
    char handler[256] = "";
    if (job && job->handler)
      snprintf(handler, sizeof handler, "%s", job->handler);
    else if (tag) /* a worker's "name:" */
      snprintf(handler, sizeof handler, "%.*s", (int)strcspn(tag, ":"), tag);
    escape_utf8(text, sizeof text, msg, mlen);
    if (job) escape_utf8(id, sizeof id, job->id, job->id_len);
    if (wr_log_format == WR_LOG_JSON) {
      cJSON *o = cJSON_CreateObject();
      char *s = NULL;
      if (o) {
        cJSON_AddStringToObject(o, "ts", ts);
        cJSON_AddStringToObject(o, "level", level);
        cJSON_AddNumberToObject(o, "pid", (double)getpid());
        if (handler[0]) cJSON_AddStringToObject(o, "handler", handler);
        cJSON_AddStringToObject(o, "msg", text);
        if (job) {
          cJSON_AddStringToObject(o, "message_id", id);
          cJSON_AddNumberToObject(o, "attempt", job->attempt);
          cJSON_AddStringToObject(o, "outcome", job->outcome);
          if (job->duration_ms >= 0)
            cJSON_AddNumberToObject(o, "duration_ms", job->duration_ms);
        }
        s = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
      }
      len = (size_t)snprintf(line, sizeof line - 1, "%s", s ? s : "{}");
      free(s);
      if (len >= sizeof line - 1) { /* never a cut, unparsable line */
        len = (size_t)snprintf(line, sizeof line - 1,
                               "{\"ts\":\"%s\",\"level\":\"%s\",\"pid\":%d,"
                               "\"msg\":\"(line too long)\"}",
                               ts, level, (int)getpid());
      }
    } else {
      char pid[16];
      snprintf(pid, sizeof pid, "%d", (int)getpid());
      len = logfmt_pair(line, sizeof line, "ts", ts);
      len += logfmt_pair(line + len, sizeof line - len, "level", level);
      len += logfmt_pair(line + len, sizeof line - len, "pid", pid);
      if (handler[0])
        len += logfmt_pair(line + len, sizeof line - len, "handler", handler);
      len += logfmt_pair(line + len, sizeof line - len, "msg", text);
      if (job) {
        char num[32];
        len += logfmt_pair(line + len, sizeof line - len, "message_id", id);
        snprintf(num, sizeof num, "%u", job->attempt);
        len += logfmt_pair(line + len, sizeof line - len, "attempt", num);
        len +=
            logfmt_pair(line + len, sizeof line - len, "outcome", job->outcome);
        snprintf(num, sizeof num, "%.3f", job->duration_ms);
        if (job->duration_ms >= 0)
          len += logfmt_pair(line + len, sizeof line - len, "duration_ms", num);
      }
      memmove(line, line + 1, len--); /* the first pair's leading space */
      if (len > sizeof line - 2) len = sizeof line - 2;
    }
  }
  line[len++] = '\n';
  ssize_t w = write(STDERR_FILENO, line, len);
  (void)w;
}

static int clamp(warren_log_level level) {
  /* A plugin passes any int: out-of-range levels are clamped, never used
   * as an index. */
  return (int)level < WARREN_LOG_ERROR   ? WARREN_LOG_ERROR
         : (int)level > WARREN_LOG_DEBUG ? WARREN_LOG_DEBUG
                                         : (int)level;
}

static void vline(warren_log_level level, const char *tag,
                  const wr_log_job *job, const char *fmt, va_list ap) {
  int lv = clamp(level);
  if (lv > wr_log_level) return;
  char msg[1024];
  int m = vsnprintf(msg, sizeof msg, fmt, ap);
  size_t mlen = m < 0 ? 0 : (size_t)m < sizeof msg ? (size_t)m : sizeof msg - 1;
  emit((warren_log_level)lv, tag, msg, mlen, job);
}

void wr_logv(warren_log_level level, const char *tag, const char *fmt,
             va_list ap) {
  vline(level, tag, NULL, fmt, ap);
}

void wr_log(warren_log_level level, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vline(level, NULL, NULL, fmt, ap);
  va_end(ap);
}

void wr_log_job_line(warren_log_level level, const wr_log_job *job,
                     const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vline(level, NULL, job, fmt, ap);
  va_end(ap);
}
