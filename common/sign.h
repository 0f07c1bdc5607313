/*
 * The job-signing scheme, version 1 (docs/signing.md is its spec; keep
 * them in step): parsing and formatting the signature headers, the
 * canonical strings, and the verdict on a delivery. Pure functions over
 * plain data, shared by the worker, libwarren (warren_sign) and the tools;
 * the keys are in keyring.h, the supervisor's use of it in sigcheck.h.
 * Nothing here logs, and no secret or signature is ever written to an
 * error text.
 */
#ifndef WR_SIGN_H
#define WR_SIGN_H

#include <stddef.h>
#include <stdint.h>

#include <warren/sign.h>

struct wr_keyring;

#define WR_SIGN_HEADER WARREN_SIGNATURE_HEADER
#define WR_SIGN_COUNTER_HEADER "warren-countersignature"
#define WR_SIGN_CHECK_HEADER "warren-signature-check" /* on a dead letter */
#define WR_SIGN_MAC_LEN 32                            /* HMAC-SHA256 */
#define WR_SIGN_B64_LEN 44                            /* base64 of 32 bytes */
#define WR_SIGN_MAX_HEADER 240 /* a longer header value is malformed */
/* A delayed job may come this much before its signed not-before time
 * (the clocks of its producer's and its worker's hosts differ a little);
 * earlier, it was sent the short way: refused as WR_SIGN_EARLY. */
#define WR_SIGN_EARLY_SLACK_MS 2000
#define WR_SIGN_MAX_TIME_DIGITS 15
#define WR_SIGN_CANON_MAX 2048 /* longest canonical string, with margin */

/* Which check a delivery failed; WR_SIGN_OK and WR_SIGN_UNSIGNED pass. */
#define WR_SIGN_CHECKS(X)                                         \
  X(OK, "ok")                                                     \
  X(UNSIGNED, "unsigned")       /* passes: not required */        \
  X(MISSING, "missing")         /* required but absent */         \
  X(MALFORMED, "malformed")     /* header unparseable */          \
  X(UNKNOWN_KEY, "unknown-key") /* key id not accepted */         \
  X(BAD_SIGNATURE, "bad-signature")                               \
  X(EXPIRED, "expired")         /* signed before now - window */  \
  X(FUTURE, "future")           /* signed after now + window */   \
  X(BODY_DIGEST, "body-digest") /* body is not what was signed */ \
  X(C_MALFORMED, "countersignature-malformed")                    \
  X(C_UNKNOWN_KEY, "countersignature-unknown-key")                \
  X(C_BAD_SIGNATURE, "countersignature-bad-signature")            \
  X(C_EXPIRED, "countersignature-expired")                        \
  X(C_FUTURE, "countersignature-future")                          \
  X(EARLY, "early") /* before its signed not-before time */

typedef enum wr_sign_check {
#define WR_SIGN_ENUM_(name, text) WR_SIGN_##name,
  WR_SIGN_CHECKS(WR_SIGN_ENUM_)
#undef WR_SIGN_ENUM_
} wr_sign_check;

/* The check's name, as written to WR_SIGN_CHECK_HEADER. */
const char *wr_sign_check_name(wr_sign_check c);

/* A byte string that is not NUL-terminated. */
typedef struct wr_sign_str {
  const char *p;
  size_t len;
} wr_sign_str;

/* A parsed signature or countersignature header; pointers into it. */
typedef struct wr_sig {
  wr_sign_str key_id;
  wr_sign_str time; /* the digits as written */
  int64_t time_ms;
  wr_sign_str nb; /* not-before digits (a delayed job's); len 0: none */
  int64_t nb_ms;
  unsigned char body_sha256[32]; /* signature only */
  unsigned char mac[WR_SIGN_MAC_LEN];
} wr_sig;

/* Parse a warren-signature (counter = 0) or warren-countersignature
 * (counter = 1) value. 0, or -1 when it does not follow the spec. */
int wr_sign_parse(const char *v, size_t len, int counter, wr_sig *out);

/* A job as the scheme sees it: what the signature binds. */
typedef struct wr_sign_job {
  wr_sign_str message_id, exchange, routing_key, content_type;
  wr_sign_str queue; /* the handler's work queue (countersignatures) */
  /* Countersignatures only: the copy's warren-attempt and warren-crashes
   * headers in decimal, empty when absent. Bound so that a captured copy
   * cannot be published again as a fresh attempt. */
  wr_sign_str attempt, crashes;
} wr_sign_job;

/* Canonical strings (docs/signing.md). Return the length written to buf
 * (WR_SIGN_CANON_MAX bytes), or 0 when a field is too long. */
size_t wr_sign_canonical(const wr_sig *sig, const char *body_hex,
                         const wr_sign_job *job, char *buf);
size_t wr_sign_counter_canonical(const wr_sig *csig, wr_sign_str signature,
                                 const wr_sign_job *job, char *buf);

/* SHA-256 of data (OpenSSL); 0 or -1. */
int wr_sign_sha256(const void *data, size_t len, unsigned char out[32]);
/* Does body hash to want? Constant-time comparison. */
int wr_sign_body_matches(const void *body, size_t len,
                         const unsigned char want[32]);
/* Lowercase hex of 32 bytes into out (65 bytes with the NUL). */
void wr_sign_hex(const unsigned char in[32], char out[65]);
/* Standard base64 with padding of 32 bytes into out (45 bytes). */
void wr_sign_b64(const unsigned char in[32], char out[45]);

/* What a handler accepts. */
typedef struct wr_sign_policy {
  const struct wr_keyring *ring;
  const char *const *ids; /* key ids it accepts; n_ids 0: the whole ring */
  size_t n_ids;
  const char *counter_key; /* Warren's own key: countersignatures */
  int64_t now_ms, window_ms;
  int require; /* an unsigned job fails (WR_SIGN_MISSING) */
} wr_sign_policy;

/* What a delivery carries: each header's value, or present = 0 (a value
 * that is not a string counts as present but malformed: p = NULL). */
typedef struct wr_sign_headers {
  int sig_present, counter_present;
  wr_sign_str sig, counter;
  char attempt[24], crashes[24]; /* decimal, for wr_sign_job's; "" absent */
} wr_sign_headers;

/*
 * The verdict on a delivery, before any body is read: WR_SIGN_OK (then
 * *digest is the signed SHA-256 of the body, still to be compared with
 * wr_sign_body_matches where the body is read), WR_SIGN_UNSIGNED (passes,
 * nothing to compare), or the check that failed. A countersignature, when
 * present, stands for the signature's time (docs/signing.md, "Retries and
 * replays"). *skew_ms gets now - signing time of the time that was
 * checked (for the log), *key the key id that was checked.
 */
wr_sign_check wr_sign_verify(const wr_sign_policy *pol,
                             const wr_sign_headers *h, const wr_sign_job *job,
                             unsigned char digest[32], int64_t *skew_ms,
                             wr_sign_str *key);

/* Countersign: write the warren-countersignature value for a job whose
 * signature header is `signature`, at time `when_ms`, with key `key_id`
 * of ring, into out (WARREN_SIGNATURE_MAX). 0, or -1 (unknown key). */
int wr_sign_countersign(const struct wr_keyring *ring, const char *key_id,
                        int64_t when_ms, wr_sign_str signature,
                        const wr_sign_job *job, char *out);

/* Sign: write the warren-signature value for job with body (len bytes)
 * under key `key_id` of ring, signed at time_ms, not to run before nb_ms
 * (Unix ms; 0: no such time, the field is left out), into out
 * (WARREN_SIGNATURE_MAX). 0, or -1 (unknown key, field too long). */
int wr_sign_make(const struct wr_keyring *ring, const char *key_id,
                 int64_t time_ms, int64_t nb_ms, const wr_sign_job *job,
                 const void *body, size_t len, char *out);

/* The wall clock in Unix ms (the signing time). */
int64_t wr_sign_now_ms(void);

#endif
