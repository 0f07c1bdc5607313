#include "keyring.h"

#include <limits.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <warren/sign.h>

#include "secret.h"

#define MAX_KEYS 64

typedef struct key {
  char id[WARREN_SIGN_MAX_KEY_ID + 1];
  size_t id_len;
  EVP_MAC_CTX *mac; /* keyed once; re-initialised per use */
} key;

struct wr_keyring {
  key k[MAX_KEYS];
  size_t n;
};

/* Fetched once per process: a fetch per signature would cost more than
 * the HMAC itself (OpenSSL 3 looks algorithms up in a locked store). */
static EVP_MAC *g_hmac;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static void fetch_hmac(void) {
  g_hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
}

wr_keyring *wr_keyring_new(void) {
  pthread_once(&g_once, fetch_hmac);
  return g_hmac ? calloc(1, sizeof(wr_keyring)) : NULL;
}

void wr_keyring_free(wr_keyring *r) {
  if (!r) return;
  /* The MAC contexts hold the key's pads: EVP_MAC_CTX_free wipes them. */
  for (size_t i = 0; i < r->n; i++) EVP_MAC_CTX_free(r->k[i].mac);
  OPENSSL_cleanse(r, sizeof *r);
  free(r);
}

int wr_keyring_id_ok(const char *id, size_t len) {
  if (len < 1 || len > WARREN_SIGN_MAX_KEY_ID) return 0;
  for (size_t i = 0; i < len; i++) {
    char c = id[i];
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
          (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
      return 0;
  }
  return 1;
}

int wr_keyring_add(wr_keyring *r, const char *id, const void *secret,
                   size_t len, char *err, size_t errlen) {
  size_t idlen = strlen(id);
  if (!wr_keyring_id_ok(id, idlen)) {
    snprintf(err, errlen,
             "key id '%.64s' must be 1..%d characters of A-Z a-z 0-9 . _ -", id,
             WARREN_SIGN_MAX_KEY_ID);
    return -1;
  }
  if (wr_keyring_has(r, id, idlen)) {
    snprintf(err, errlen, "key id '%s' is used twice", id);
    return -1;
  }
  if (len < WARREN_SIGN_MIN_KEY || len > WARREN_SIGN_MAX_KEY) {
    snprintf(err, errlen, "key '%s' is %zu bytes; keys must be %d..%d bytes",
             id, len, WARREN_SIGN_MIN_KEY, WARREN_SIGN_MAX_KEY);
    return -1;
  }
  if (r->n == MAX_KEYS) {
    snprintf(err, errlen, "more than %d keys", MAX_KEYS);
    return -1;
  }
  key *k = &r->k[r->n];
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
      OSSL_PARAM_construct_end()};
  k->mac = EVP_MAC_CTX_new(g_hmac);
  if (!k->mac || !EVP_MAC_init(k->mac, secret, len, params)) {
    EVP_MAC_CTX_free(k->mac);
    k->mac = NULL;
    snprintf(err, errlen, "key '%s': OpenSSL cannot set up HMAC-SHA256", id);
    return -1;
  }
  memcpy(k->id, id, idlen + 1);
  k->id_len = idlen;
  r->n++;
  return 0;
}

int wr_keyring_read(const char *file, const char *env, unsigned char *buf,
                    size_t cap, size_t *len, char *err, size_t errlen) {
  *len = 0;
  if (env) {
    const char *v = getenv(env);
    if (!v) {
      snprintf(err, errlen, "environment variable %s is not set", env);
      return -1;
    }
    size_t n = strlen(v);
    if (n > cap) {
      snprintf(err, errlen, "environment variable %s is over %zu bytes", env,
               cap);
      return -1;
    }
    memcpy(buf, v, n);
    *len = n;
    return 0;
  }
  /* Without blocking on a FIFO, and without stdio, whose buffer would
   * leave a copy of the key in freed memory (secret.h). */
  if (cap < 3) return -1;
  char why[PATH_MAX + 128];
  if (wr_secret_read(file, buf, cap - 2, len, why, sizeof why) != 0) {
    snprintf(err, errlen, "key file %s", why);
    return -1;
  }
  return 0;
}

static const key *find(const wr_keyring *r, const char *id, size_t len) {
  for (size_t i = 0; r && i < r->n; i++)
    if (r->k[i].id_len == len && memcmp(r->k[i].id, id, len) == 0)
      return &r->k[i];
  return NULL;
}

int wr_keyring_has(const wr_keyring *r, const char *id, size_t len) {
  return find(r, id, len) != NULL;
}

size_t wr_keyring_count(const wr_keyring *r) {
  return r ? r->n : 0;
}

const char *wr_keyring_id(const wr_keyring *r, size_t i) {
  return i < r->n ? r->k[i].id : NULL;
}

int wr_keyring_mac(const wr_keyring *r, const char *id, size_t idlen,
                   const void *data, size_t len, unsigned char out[32]) {
  const key *k = find(r, id, idlen);
  size_t outl = 0;
  /* Without a key, EVP_MAC_init starts over from the keyed state. */
  if (!k || !EVP_MAC_init(k->mac, NULL, 0, NULL) ||
      !EVP_MAC_update(k->mac, data, len) ||
      !EVP_MAC_final(k->mac, out, &outl, 32) || outl != 32)
    return -1;
  return 0;
}
