#include "replyto.h"

#include <openssl/evp.h>
#include <string.h>

/* Erlang's external term format (erts/emulator/beam/external.h). */
enum {
  TTB_VERSION = 131,
  NEW_PID_EXT = 88,
  PID_EXT = 103,
  ATOM_EXT = 100,
  SMALL_ATOM_EXT = 115,
  ATOM_UTF8_EXT = 118,
  SMALL_ATOM_UTF8_EXT = 119,
};

int wr_replyto_is_direct(const char *name, size_t len) {
  size_t n = strlen(WR_REPLYTO_DIRECT);
  return len >= n && memcmp(name, WR_REPLYTO_DIRECT, n) == 0 &&
         (len == n || name[n] == '.');
}

static int b64_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
         (c >= '0' && c <= '9') || c == '+' || c == '/';
}

/* Standard base64 with its padding; the decoded bytes into out (at most
 * 255). Returns their number, or -1. */
static int b64_decode(const char *s, size_t len, unsigned char *out) {
  if (len == 0 || len % 4 || len / 4 * 3 > 255) return -1;
  size_t pad = 0;
  for (size_t i = 0; i < len; i++) {
    if (s[i] == '=' && i >= len - 2) {
      pad++;
    } else if (!b64_char(s[i]) || pad) {
      return -1;
    }
  }
  if (pad && s[len - 1] != '=') return -1;
  int n = EVP_DecodeBlock(out, (const unsigned char *)s, (int)len);
  return n < 0 ? -1 : n - (int)pad;
}

/* An external-term pid, exactly n bytes. */
static int is_pid(const unsigned char *p, size_t n) {
  if (n < 3 || p[0] != TTB_VERSION || (p[1] != NEW_PID_EXT && p[1] != PID_EXT))
    return 0;
  size_t at = 3, alen;
  switch (p[2]) {
    case ATOM_EXT:
    case ATOM_UTF8_EXT:
      if (n < 5) return 0;
      alen = (size_t)p[3] << 8 | p[4];
      at = 5;
      break;
    case SMALL_ATOM_EXT:
    case SMALL_ATOM_UTF8_EXT:
      if (n < 4) return 0;
      alen = p[3];
      at = 4;
      break;
    default:
      return 0;
  }
  /* ID, serial, then creation: 4 bytes (NEW_PID_EXT) or 1 (PID_EXT). */
  size_t tail = p[1] == NEW_PID_EXT ? 12 : 9;
  return alen > 0 && n == at + alen + tail;
}

int wr_replyto_ok(const char *name, size_t len) {
  if (!wr_replyto_is_direct(name, len)) return len > 0;
  size_t pre = strlen(WR_REPLYTO_DIRECT) + 1;
  if (len <= pre) return 0; /* the bare pseudo-queue */
  const char *rest = name + pre;
  size_t rlen = len - pre;
  const char *dot = memchr(rest, '.', rlen);
  if (!dot || dot == rest || dot == rest + rlen - 1) return 0;
  size_t plen = (size_t)(dot - rest), klen = rlen - plen - 1;
  if (memchr(dot + 1, '.', klen)) return 0;
  for (size_t i = 0; i < klen; i++)
    if (!b64_char(dot[1 + i]) && dot[1 + i] != '=') return 0;
  unsigned char pid[256];
  int n = b64_decode(rest, plen, pid);
  return n > 0 && is_pid(pid, (size_t)n);
}
