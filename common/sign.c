#include "sign.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stddef.h>
#include <string.h>
#include <time.h>

#include "keyring.h"

static const char *const check_names[] = {
#define WR_SIGN_NAME_(name, text) text,
    WR_SIGN_CHECKS(WR_SIGN_NAME_)
#undef WR_SIGN_NAME_
};

const char *wr_sign_check_name(wr_sign_check c) {
  return (size_t)c < sizeof check_names / sizeof *check_names ? check_names[c]
                                                              : "unknown";
}

/* ---- encodings --------------------------------------------------------- */

void wr_sign_hex(const unsigned char in[32], char out[65]) {
  static const char d[] = "0123456789abcdef";
  for (int i = 0; i < 32; i++) {
    out[2 * i] = d[in[i] >> 4];
    out[2 * i + 1] = d[in[i] & 15];
  }
  out[64] = '\0';
}

static int unhex(char c) {
  return c >= '0' && c <= '9'   ? c - '0'
         : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                : -1;
}

/* Exactly 64 lowercase hex digits. */
static int parse_hex(const char *s, size_t len, unsigned char out[32]) {
  if (len != 64) return -1;
  for (int i = 0; i < 32; i++) {
    int a = unhex(s[2 * i]), b = unhex(s[2 * i + 1]);
    if (a < 0 || b < 0) return -1;
    out[i] = (unsigned char)(a << 4 | b);
  }
  return 0;
}

void wr_sign_b64(const unsigned char in[32], char out[45]) {
  EVP_EncodeBlock((unsigned char *)out, in, 32);
}

static int b64_val(char c) {
  return c >= 'A' && c <= 'Z'   ? c - 'A'
         : c >= 'a' && c <= 'z' ? c - 'a' + 26
         : c >= '0' && c <= '9' ? c - '0' + 52
         : c == '+'             ? 62
         : c == '/'             ? 63
                                : -1;
}

/* Exactly 44 characters of standard base64 ending in one '=' (32 bytes);
 * the last character's unused bits must be 0, so each MAC has one
 * spelling. Decoded by hand because EVP_DecodeBlock accepts whitespace
 * and returns padding as bytes. */
static int parse_b64(const char *s, size_t len, unsigned char out[32]) {
  if (len != WR_SIGN_B64_LEN || s[43] != '=') return -1;
  unsigned char v[43];
  for (int i = 0; i < 43; i++) {
    int x = b64_val(s[i]);
    if (x < 0) return -1;
    v[i] = (unsigned char)x;
  }
  if (v[42] & 3) return -1;
  int o = 0;
  for (int i = 0; i + 3 < 43; i += 4) {
    out[o++] = (unsigned char)(v[i] << 2 | v[i + 1] >> 4);
    out[o++] = (unsigned char)(v[i + 1] << 4 | v[i + 2] >> 2);
    out[o++] = (unsigned char)(v[i + 2] << 6 | v[i + 3]);
  }
  out[o++] = (unsigned char)(v[40] << 2 | v[41] >> 4);
  out[o++] = (unsigned char)(v[41] << 4 | v[42] >> 2);
  return o == 32 ? 0 : -1;
}

/* ---- hashing ----------------------------------------------------------- */

static EVP_MD *g_sha256;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static void fetch_sha256(void) {
  g_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
}

int wr_sign_sha256(const void *data, size_t len, unsigned char out[32]) {
  pthread_once(&g_once, fetch_sha256);
  unsigned int n = 0;
  if (!g_sha256 || !EVP_Digest(data, len, out, &n, g_sha256, NULL) || n != 32)
    return -1;
  return 0;
}

int wr_sign_body_matches(const void *body, size_t len,
                         const unsigned char want[32]) {
  unsigned char got[32];
  return wr_sign_sha256(body, len, got) == 0 &&
         CRYPTO_memcmp(got, want, 32) == 0;
}

/* ---- headers ----------------------------------------------------------- */

/* Decimal Unix ms without sign or leading zeros, so one time has one
 * spelling; 0 and the value, or -1. */
static int parse_ms(const wr_sign_str *t, int64_t *out) {
  if (t->len < 1 || t->len > WR_SIGN_MAX_TIME_DIGITS ||
      (t->p[0] == '0' && t->len > 1))
    return -1;
  int64_t ms = 0;
  for (size_t i = 0; i < t->len; i++) {
    if (t->p[i] < '0' || t->p[i] > '9') return -1;
    ms = ms * 10 + (t->p[i] - '0');
  }
  *out = ms;
  return 0;
}

/* Take "name=" then the value up to the next ';' (or the end when last).
 * Returns 0 and the value, advancing *at; -1 if it is not there. */
static int field(const char *v, size_t len, size_t *at, const char *name,
                 int last, wr_sign_str *out) {
  size_t n = strlen(name);
  if (len - *at < n + 1 || memcmp(v + *at, name, n) != 0 || v[*at + n] != '=')
    return -1;
  size_t start = *at + n + 1, end = start;
  while (end < len && v[end] != ';') end++;
  if (last != (end == len)) return -1;
  *out = (wr_sign_str){v + start, end - start};
  *at = end + (last ? 0 : 1);
  return 0;
}

int wr_sign_parse(const char *v, size_t len, int counter, wr_sig *out) {
  memset(out, 0, sizeof *out);
  if (!v || len > WR_SIGN_MAX_HEADER || len < 3 || memcmp(v, "v1;", 3) != 0)
    return -1;
  size_t at = 3;
  wr_sign_str body = {0}, mac;
  if (field(v, len, &at, "key", 0, &out->key_id) ||
      field(v, len, &at, "time", 0, &out->time))
    return -1;
  /* A delayed job's not-before time, only in a signature, only here. */
  if (!counter && len - at > 3 && memcmp(v + at, "nb=", 3) == 0 &&
      (field(v, len, &at, "nb", 0, &out->nb) ||
       parse_ms(&out->nb, &out->nb_ms) || out->nb_ms == 0))
    return -1;
  if ((!counter && field(v, len, &at, "body", 0, &body)) ||
      field(v, len, &at, "sig", 1, &mac))
    return -1;
  if (!wr_keyring_id_ok(out->key_id.p, out->key_id.len)) return -1;
  if (parse_ms(&out->time, &out->time_ms)) return -1;
  if (!counter && parse_hex(body.p, body.len, out->body_sha256) != 0) return -1;
  return parse_b64(mac.p, mac.len, out->mac);
}

/* ---- canonical strings ------------------------------------------------- */

typedef struct canon {
  char *buf;
  size_t len;
  int overflow;
} canon;

/* One line: NAME ":" decimal byte length ":" value LF. The length makes
 * the string unambiguous whatever bytes a value holds. */
static void line(canon *c, const char *name, const char *v, size_t n) {
  /* The length in decimal, written by hand: snprintf per field was a
   * third of the check's cost (bench/run). */
  char digits[24];
  int d = 0;
  size_t k = n;
  do digits[d++] = (char)('0' + k % 10);
  while ((k /= 10) && d < (int)sizeof digits);
  size_t nl = strlen(name);
  if (c->overflow || c->len + nl + (size_t)d + n + 3 > WR_SIGN_CANON_MAX) {
    c->overflow = 1;
    return;
  }
  char *o = c->buf + c->len;
  memcpy(o, name, nl);
  o += nl;
  *o++ = ':';
  while (d) *o++ = digits[--d];
  *o++ = ':';
  if (n) memcpy(o, v, n);
  o += n;
  *o++ = '\n';
  c->len = (size_t)(o - c->buf);
}

/* The first line, then one line per field, in the spec's order. */
static size_t build(char *buf, const char *tag, const char *const *names,
                    const wr_sign_str *vals, size_t n) {
  size_t t = strlen(tag);
  canon c = {buf, t + 1, 0};
  memcpy(buf, tag, t);
  buf[t] = '\n';
  for (size_t i = 0; i < n; i++) line(&c, names[i], vals[i].p, vals[i].len);
  return c.overflow ? 0 : c.len;
}

size_t wr_sign_canonical(const wr_sig *sig, const char *body_hex,
                         const wr_sign_job *job, char *buf) {
  /* A delayed job's not-before line comes after the time, and only then:
   * the signatures of other jobs are as they always were. */
  static const char *const names[] = {
      "key-id",   "time",        "not-before",   "message-id",
      "exchange", "routing-key", "content-type", "body-sha256"};
  const wr_sign_str vals[] = {
      sig->key_id,   sig->time,        sig->nb,           job->message_id,
      job->exchange, job->routing_key, job->content_type, {body_hex, 64}};
  if (sig->nb.len) return build(buf, "warren-signature-v1", names, vals, 8);
  static const char *const plain[] = {
      "key-id",      "time",         "message-id", "exchange",
      "routing-key", "content-type", "body-sha256"};
  const wr_sign_str pv[] = {sig->key_id,   sig->time,        job->message_id,
                            job->exchange, job->routing_key, job->content_type,
                            {body_hex, 64}};
  return build(buf, "warren-signature-v1", plain, pv, 7);
}

size_t wr_sign_counter_canonical(const wr_sig *csig, wr_sign_str signature,
                                 const wr_sign_job *job, char *buf) {
  static const char *const names[] = {"key-id",    "time",       "queue",
                                      "signature", "message-id", "content-type",
                                      "attempt",   "crashes"};
  const wr_sign_str vals[] = {csig->key_id, csig->time,      job->queue,
                              signature,    job->message_id, job->content_type,
                              job->attempt, job->crashes};
  return build(buf, "warren-countersignature-v2", names, vals, 8);
}

/* ---- verdicts ---------------------------------------------------------- */

static int accepted(const wr_sign_policy *pol, wr_sign_str id, int counter) {
  if (!wr_keyring_has(pol->ring, id.p, id.len)) return 0;
  if (counter && pol->counter_key && strlen(pol->counter_key) == id.len &&
      memcmp(pol->counter_key, id.p, id.len) == 0)
    return 1;
  if (!pol->n_ids) return 1;
  for (size_t i = 0; i < pol->n_ids; i++)
    if (strlen(pol->ids[i]) == id.len && memcmp(pol->ids[i], id.p, id.len) == 0)
      return 1;
  return 0;
}

/* The MAC under the key the header names, compared in constant time. */
static int mac_ok(const wr_sign_policy *pol, const wr_sig *s, const char *canon,
                  size_t n) {
  unsigned char want[WR_SIGN_MAC_LEN];
  return n &&
         wr_keyring_mac(pol->ring, s->key_id.p, s->key_id.len, canon, n,
                        want) == 0 &&
         CRYPTO_memcmp(want, s->mac, WR_SIGN_MAC_LEN) == 0;
}

/* Offsets: the countersignature's checks follow the signature's. */
#define COUNTER(c) \
  ((wr_sign_check)((c)-WR_SIGN_MALFORMED + WR_SIGN_C_MALFORMED))

wr_sign_check wr_sign_verify(const wr_sign_policy *pol,
                             const wr_sign_headers *h, const wr_sign_job *job,
                             unsigned char digest[32], int64_t *skew_ms,
                             wr_sign_str *key) {
  *skew_ms = 0;
  *key = (wr_sign_str){"", 0};
  if (!h->sig_present) return pol->require ? WR_SIGN_MISSING : WR_SIGN_UNSIGNED;
  wr_sig sig, csig;
  if (wr_sign_parse(h->sig.p, h->sig.len, 0, &sig) != 0)
    return WR_SIGN_MALFORMED;
  *key = sig.key_id;
  memcpy(digest, sig.body_sha256, 32);
  char buf[WR_SIGN_CANON_MAX];
  const wr_sig *timed = &sig;
  int counter = h->counter_present;
  if (counter) {
    /* Warren's own copy (a retry, a dead letter, a replay): the
     * countersignature binds the signature header to this queue and
     * carries the time that is checked. */
    if (wr_sign_parse(h->counter.p, h->counter.len, 1, &csig) != 0)
      return WR_SIGN_C_MALFORMED;
    *key = csig.key_id;
    if (!accepted(pol, csig.key_id, 1)) return WR_SIGN_C_UNKNOWN_KEY;
    if (!mac_ok(pol, &csig, buf,
                wr_sign_counter_canonical(&csig, h->sig, job, buf)))
      return WR_SIGN_C_BAD_SIGNATURE;
    timed = &csig;
  } else {
    if (!accepted(pol, sig.key_id, 0)) return WR_SIGN_UNKNOWN_KEY;
    char hex[65];
    wr_sign_hex(sig.body_sha256, hex);
    if (!mac_ok(pol, &sig, buf, wr_sign_canonical(&sig, hex, job, buf)))
      return WR_SIGN_BAD_SIGNATURE;
  }
  /* Checked after the MAC: only a genuine time says "expired". */
  *skew_ms = pol->now_ms - timed->time_ms;
  if (-*skew_ms > pol->window_ms)
    return counter ? COUNTER(WR_SIGN_FUTURE) : WR_SIGN_FUTURE;
  if (!counter && sig.nb.len) {
    /* A delayed job: fresh from its not-before time, and not before it
     * (a shortened delay); a lengthened one is expired from there. */
    int64_t from = sig.nb_ms > sig.time_ms ? sig.nb_ms : sig.time_ms;
    if (pol->now_ms < sig.nb_ms - WR_SIGN_EARLY_SLACK_MS) {
      *skew_ms = pol->now_ms - sig.nb_ms;
      return WR_SIGN_EARLY;
    }
    *skew_ms = pol->now_ms - from;
  }
  if (*skew_ms > pol->window_ms)
    return counter ? COUNTER(WR_SIGN_EXPIRED) : WR_SIGN_EXPIRED;
  return WR_SIGN_OK;
}

int wr_sign_countersign(const wr_keyring *ring, const char *key_id,
                        int64_t when_ms, wr_sign_str signature,
                        const wr_sign_job *job, char *out) {
  char t[24], buf[WR_SIGN_CANON_MAX];
  int tl = snprintf(t, sizeof t, "%lld", (long long)when_ms);
  wr_sig c = {.key_id = {key_id, strlen(key_id)}, .time = {t, (size_t)tl}};
  size_t n = wr_sign_counter_canonical(&c, signature, job, buf);
  unsigned char mac[32];
  char b64[45];
  if (!n || wr_keyring_mac(ring, key_id, c.key_id.len, buf, n, mac) != 0)
    return -1;
  wr_sign_b64(mac, b64);
  snprintf(out, WARREN_SIGNATURE_MAX, "v1;key=%s;time=%s;sig=%s", key_id, t,
           b64);
  return 0;
}

/* ---- the public call (include/warren/sign.h) ---------------------------- */

static wr_sign_str opt(const char *s) {
  return s ? (wr_sign_str){s, strlen(s)} : (wr_sign_str){"", 0};
}

int wr_sign_make(const wr_keyring *ring, const char *key_id, int64_t time_ms,
                 int64_t nb_ms, const wr_sign_job *job, const void *body,
                 size_t len, char *out) {
  char t[24], nb[24], hex[65], buf[WR_SIGN_CANON_MAX], b64[45];
  unsigned char digest[32], mac[32];
  int tl = snprintf(t, sizeof t, "%lld", (long long)time_ms);
  int nl = nb_ms > 0 ? snprintf(nb, sizeof nb, "%lld", (long long)nb_ms) : 0;
  wr_sig s = {
      .key_id = opt(key_id), .time = {t, (size_t)tl}, .nb = {nb, (size_t)nl}};
  if (time_ms <= 0 || tl > WR_SIGN_MAX_TIME_DIGITS ||
      nl > WR_SIGN_MAX_TIME_DIGITS || nb_ms < 0 ||
      wr_sign_sha256(body ? body : "", len, digest) != 0)
    return -1;
  wr_sign_hex(digest, hex);
  size_t n = wr_sign_canonical(&s, hex, job, buf);
  if (!n || wr_keyring_mac(ring, s.key_id.p, s.key_id.len, buf, n, mac) != 0)
    return -1;
  wr_sign_b64(mac, b64);
  if (nl)
    snprintf(out, WARREN_SIGNATURE_MAX,
             "v1;key=%s;time=%s;nb=%s;body=%s;sig=%s", key_id, t, nb, hex, b64);
  else
    snprintf(out, WARREN_SIGNATURE_MAX, "v1;key=%s;time=%s;body=%s;sig=%s",
             key_id, t, hex, b64);
  return 0;
}

int64_t wr_sign_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Fields appended to warren_sign_input are read when its size covers them. */
#define SIGN_HAS(in, f) \
  ((in)->size >= offsetof(warren_sign_input, f) + sizeof(in)->f)

int warren_sign(const warren_sign_input *in, char *out, size_t outlen) {
  if (!in || in->size < offsetof(warren_sign_input, not_before_ms) || !out ||
      outlen < WARREN_SIGNATURE_MAX || !in->key_id || !in->key ||
      (!in->body && in->body_len))
    return WARREN_INVALID;
  wr_sign_job job = {opt(in->message_id),
                     opt(in->exchange),
                     opt(in->routing_key),
                     opt(in->content_type),
                     {"", 0},
                     {"", 0},
                     {"", 0}};
  if (job.message_id.len > 255 || job.exchange.len > 255 ||
      job.routing_key.len > 255 || job.content_type.len > 255)
    return WARREN_INVALID;
  wr_keyring *ring = wr_keyring_new();
  if (!ring) return WARREN_NOMEM;
  char err[160];
  int rc =
      wr_keyring_add(ring, in->key_id, in->key, in->key_len, err, sizeof err) ==
                  0 &&
              wr_sign_make(ring, in->key_id,
                           in->time_ms ? in->time_ms : wr_sign_now_ms(),
                           SIGN_HAS(in, not_before_ms) ? in->not_before_ms : 0,
                           &job, in->body, in->body_len, out) == 0
          ? WARREN_OK
          : WARREN_INVALID;
  wr_keyring_free(ring);
  return rc;
}
