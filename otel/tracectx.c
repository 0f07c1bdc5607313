#include "tracectx.h"

#include <pthread.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1; /* W3C: upper case is invalid */
}

static int byte_at(const char *s, uint8_t *out) {
  int hi = hexval(s[0]), lo = hexval(s[1]);
  if (hi < 0 || lo < 0) return -1;
  *out = (uint8_t)(hi << 4 | lo);
  return 0;
}

/* An id of n bytes; all-zero ids are invalid. */
static int unhex_id(const char *s, size_t n, uint8_t *out) {
  int any = 0;
  for (size_t i = 0; i < n; i++) {
    if (byte_at(s + 2 * i, &out[i]) != 0) return -1;
    any |= out[i];
  }
  return any ? 0 : -1;
}

int wr_trace_parse(const char *s, size_t len, wr_trace_ctx *out) {
  if (!s || len < WR_TRACEPARENT_LEN) return -1;
  uint8_t ver, flags;
  if (byte_at(s, &ver) != 0 || ver == 0xff) return -1;
  /* Version 00 is exactly 55 bytes; a later one may append fields. */
  if (ver == 0 && len != WR_TRACEPARENT_LEN) return -1;
  if (len > WR_TRACEPARENT_LEN && s[WR_TRACEPARENT_LEN] != '-') return -1;
  if (s[2] != '-' || s[35] != '-' || s[52] != '-') return -1;
  wr_trace_ctx c = {0};
  if (unhex_id(s + 3, 16, c.trace_id) != 0 ||
      unhex_id(s + 36, 8, c.span_id) != 0 || byte_at(s + 53, &flags) != 0)
    return -1;
  c.flags = (uint8_t)(flags & WR_TRACE_SAMPLED);
  c.valid = 1;
  *out = c;
  return 0;
}

void wr_trace_hex(const uint8_t *b, size_t n, char *out) {
  static const char digits[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = digits[b[i] >> 4];
    out[2 * i + 1] = digits[b[i] & 15];
  }
  out[2 * n] = '\0';
}

void wr_trace_format(const wr_trace_ctx *c, char out[WR_TRACEPARENT_LEN + 1]) {
  memcpy(out, "00-", 3);
  wr_trace_hex(c->trace_id, 16, out + 3);
  out[35] = '-';
  wr_trace_hex(c->span_id, 8, out + 36);
  out[52] = '-';
  /* Only the sampled flag is defined for version 00. */
  wr_trace_hex((const uint8_t[]){(uint8_t)(c->flags & WR_TRACE_SAMPLED)}, 1,
               out + 53);
}

/* W3C tracestate: list-member = key "=" value, separated by commas and
 * optional spaces or tabs; key: lcalpha then [a-z0-9_-*\/] (or a
 * tenant@system form), value: printable ASCII but ',' and '=', not
 * ending in a space. */
static int key_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-' || c == '*' || c == '/' || c == '@';
}

static int member_valid(const char *m, size_t n) {
  const char *eq = memchr(m, '=', n);
  if (!eq || eq == m) return 0;
  size_t kl = (size_t)(eq - m), vl = n - kl - 1;
  if (kl > 256 || vl == 0 || vl > 256) return 0;
  if (!((m[0] >= 'a' && m[0] <= 'z') || (m[0] >= '0' && m[0] <= '9'))) return 0;
  for (size_t i = 0; i < kl; i++)
    if (!key_char(m[i])) return 0;
  for (size_t i = 0; i < vl; i++) {
    unsigned char c = (unsigned char)eq[1 + i];
    if (c < 0x20 || c > 0x7e || c == ',' || c == '=') return 0;
  }
  return eq[vl] != ' ';
}

int wr_tracestate_valid(const char *s, size_t len) {
  if (len > WR_TRACESTATE_MAX) return 0;
  size_t members = 0, i = 0;
  while (i < len) {
    while (i < len && (s[i] == ' ' || s[i] == '\t')) i++;
    size_t start = i;
    while (i < len && s[i] != ',') i++;
    size_t end = i;
    while (end > start && (s[end - 1] == ' ' || s[end - 1] == '\t')) end--;
    if (end > start) {
      if (!member_valid(s + start, end - start)) return 0;
      if (++members > 32) return 0;
    }
    i++; /* past the comma */
  }
  return 1;
}

/* xoshiro256** seeded per process: ids need to be unique, not secret, and
 * a system call per span would cost more than the span. */
static uint64_t g_s[4];
static int g_seeded;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

/* A forked child draws its own ids: it seeds again on first use. (Asking
 * getpid() per id instead would be a system call per span.) */
static void forked(void) {
  g_seeded = 0;
}

static void watch_forks(void) {
  pthread_atfork(NULL, NULL, forked);
}

static uint64_t rotl(uint64_t x, int k) {
  return (x << k) | (x >> (64 - k));
}

static uint64_t next64(void) {
  if (!g_seeded) {
    pthread_once(&g_once, watch_forks);
    g_seeded = 1;
    if (getrandom(g_s, sizeof g_s, 0) != (ssize_t)sizeof g_s) {
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      g_s[0] = (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32);
      g_s[1] = (uint64_t)ts.tv_sec * 0x9e3779b97f4a7c15ull;
      g_s[2] = (uint64_t)(uintptr_t)&ts;
      g_s[3] = 0x2545f4914f6cdd1dull;
    }
  }
  uint64_t r = rotl(g_s[1] * 5, 7) * 9, t = g_s[1] << 17;
  g_s[2] ^= g_s[0];
  g_s[3] ^= g_s[1];
  g_s[1] ^= g_s[2];
  g_s[0] ^= g_s[3];
  g_s[2] ^= t;
  g_s[3] = rotl(g_s[3], 45);
  return r;
}

static void fill(uint8_t *id, size_t n) {
  for (size_t i = 0; i < n; i += 8) {
    uint64_t r = next64();
    memcpy(id + i, &r, n - i < 8 ? n - i : 8);
  }
  int any = 0;
  for (size_t i = 0; i < n; i++) any |= id[i];
  if (!any) id[n - 1] = 1;
}

void wr_trace_new_trace_id(uint8_t id[16]) {
  fill(id, 16);
}

void wr_trace_new_span_id(uint8_t id[8]) {
  fill(id, 8);
}

int wr_trace_ratio_sampled(const uint8_t trace_id[16], double ratio) {
  if (ratio >= 1.0) return 1;
  if (ratio <= 0.0) return 0;
  /* The last 8 bytes, big-endian, against ratio * 2^64 (the same rule as
   * the OpenTelemetry SDKs' TraceIdRatioBased). */
  uint64_t x = 0;
  for (int i = 8; i < 16; i++) x = x << 8 | trace_id[i];
  return (double)(x >> 11) < ratio * (double)(UINT64_C(1) << 53);
}
