/*
 * A keyring: named HMAC-SHA256 keys (key id -> secret), several valid at
 * once so producers can switch keys without downtime (docs/signing.md).
 *
 * Secrets are copied in, never leave, are never logged, and are wiped
 * (OPENSSL_cleanse) when the ring is freed. Each key keeps an OpenSSL MAC
 * context keyed once, so a signature costs one HMAC over a short string.
 * A ring is used from one thread at a time (the MAC contexts are reused).
 */
#ifndef WR_KEYRING_H
#define WR_KEYRING_H

#include <stddef.h>

typedef struct wr_keyring wr_keyring;

/* An empty ring, or NULL (out of memory). Free with wr_keyring_free. */
wr_keyring *wr_keyring_new(void);
void wr_keyring_free(wr_keyring *r);

/* Add key `id` (copied). 0, or -1 with err set: a bad or duplicate id,
 * a secret under WARREN_SIGN_MIN_KEY or over WARREN_SIGN_MAX_KEY bytes,
 * or out of memory. err never contains the secret. */
int wr_keyring_add(wr_keyring *r, const char *id, const void *secret,
                   size_t len, char *err, size_t errlen);

/* Read a secret from a file (its bytes, trailing CR/LF removed) or from
 * an environment variable (its bytes): exactly one of file and env is
 * non-NULL. Into buf (cap bytes); *len its length. 0 or -1 with err. */
int wr_keyring_read(const char *file, const char *env, unsigned char *buf,
                    size_t cap, size_t *len, char *err, size_t errlen);

/* Is key id[0..len) in the ring? */
int wr_keyring_has(const wr_keyring *r, const char *id, size_t len);
size_t wr_keyring_count(const wr_keyring *r);
/* Id of the i-th key (i < count), valid while the ring lives. */
const char *wr_keyring_id(const wr_keyring *r, size_t i);

/* HMAC-SHA256 of data under key id[0..idlen) into out (32 bytes).
 * 0, or -1 (no such key, or OpenSSL failed). */
int wr_keyring_mac(const wr_keyring *r, const char *id, size_t idlen,
                   const void *data, size_t len, unsigned char out[32]);

/* Is this a valid key id (1..64 bytes of A-Z a-z 0-9 . _ -)? */
int wr_keyring_id_ok(const char *id, size_t len);

#endif
