#include "control.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sign.h"

/* Whether the JSON text s[0..n) holds a NUL: a raw byte, or a \u0000
 * escape in a string, which cJSON decodes into a NUL that would end the
 * string early ("rv13\u0000tail" read as "rv13"). */
static int holds_nul(const char *s, size_t n) {
  if (memchr(s, 0, n)) return 1;
  int in_str = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '"') {
      in_str = !in_str;
    } else if (in_str && s[i] == '\\' && i + 1 < n) {
      if (s[i + 1] == 'u' && i + 5 < n && memcmp(s + i + 2, "0000", 4) == 0)
        return 1;
      i++; /* the escaped character: \" and \\ do not end or start anything */
    }
  }
  return 0;
}

int wr_control_parse(const void *body, size_t len, wr_control_msg *m, char *err,
                     size_t errlen) {
  memset(m, 0, sizeof *m);
  if (len > WR_CONTROL_MAX_BODY) {
    snprintf(err, errlen, "body of %zu bytes is over %d", len,
             WR_CONTROL_MAX_BODY);
    return -1;
  }
  if (holds_nul(body, len)) {
    snprintf(err, errlen, "a string holds a NUL byte (\\u0000)");
    return -1;
  }
  cJSON *root = cJSON_ParseWithLength(body, len);
  if (!root || !cJSON_IsObject(root)) {
    snprintf(err, errlen, "not a JSON object");
    cJSON_Delete(root);
    return -1;
  }
  const char *why = NULL;
  const cJSON *type = cJSON_GetObjectItemCaseSensitive(root, "type");
  if (!cJSON_IsString(type)) {
    why = "\"type\" is missing or not a string";
    goto bad;
  }
  if (strcmp(type->valuestring, "revoke") != 0) {
    m->kind = WR_CONTROL_UNKNOWN;
    snprintf(m->type, sizeof m->type, "%s", type->valuestring);
    m->tree = root;
    return 0;
  }
  const cJSON *ids = cJSON_GetObjectItemCaseSensitive(root, "ids");
  if (!cJSON_IsArray(ids)) {
    why = "\"ids\" is missing or not an array";
    goto bad;
  }
  int n = cJSON_GetArraySize(ids);
  if (n < 1 || n > WR_CONTROL_MAX_IDS) {
    snprintf(err, errlen, "\"ids\" holds %d ids, not 1 to %d", n,
             WR_CONTROL_MAX_IDS);
    cJSON_Delete(root);
    return -1;
  }
  const cJSON *id;
  cJSON_ArrayForEach(id, ids) {
    size_t k = cJSON_IsString(id) ? strlen(id->valuestring) : 0;
    if (k < 1 || k > WR_CONTROL_MAX_ID) {
      why = "an id is not a string of 1 to 255 bytes";
      goto bad;
    }
    m->ids[m->n] = id->valuestring;
    m->id_len[m->n++] = k;
  }
  m->expires = WR_CONTROL_DEFAULT_EXPIRES;
  const cJSON *ex = cJSON_GetObjectItemCaseSensitive(root, "expires");
  if (ex) {
    if (!cJSON_IsNumber(ex) || !isfinite(ex->valuedouble) ||
        ex->valuedouble < 1) {
      why = "\"expires\" is not a number of seconds, at least 1";
      goto bad;
    }
    m->expires = ex->valuedouble;
    if (m->expires > WR_CONTROL_MAX_EXPIRES) {
      m->expires = WR_CONTROL_MAX_EXPIRES;
      m->capped = 1;
    }
  }
  const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "terminate");
  if (t && !cJSON_IsBool(t)) {
    why = "\"terminate\" is not true or false";
    goto bad;
  }
  m->terminate = cJSON_IsTrue(t);
  const cJSON *at = cJSON_GetObjectItemCaseSensitive(root, "sent_at");
  if (at) {
    if (!cJSON_IsNumber(at) || !isfinite(at->valuedouble) ||
        at->valuedouble <= 0) {
      why = "\"sent_at\" is not a positive number of unix seconds";
      goto bad;
    }
    m->sent_at = at->valuedouble;
  }
  m->tree = root;
  return 0;
bad:
  snprintf(err, errlen, "%s", why);
  cJSON_Delete(root);
  memset(m, 0, sizeof *m);
  return -1;
}

void wr_control_free(wr_control_msg *m) {
  cJSON_Delete(m->tree);
  m->tree = NULL;
}

char *wr_control_build_revoke(const char *const *ids, size_t n, double expires,
                              int terminate, double sent_at, size_t *len) {
  cJSON *o = cJSON_CreateObject();
  cJSON *a = cJSON_AddArrayToObject(o, "ids");
  int ok = o && a && cJSON_AddStringToObject(o, "type", "revoke");
  for (size_t i = 0; ok && i < n; i++) {
    cJSON *s = cJSON_CreateString(ids[i]);
    ok = s && cJSON_AddItemToArray(a, s);
  }
  ok = ok && cJSON_AddNumberToObject(o, "expires", expires) &&
       cJSON_AddBoolToObject(o, "terminate", terminate) &&
       cJSON_AddNumberToObject(o, "sent_at", sent_at);
  char *out = ok ? cJSON_PrintUnformatted(o) : NULL;
  cJSON_Delete(o);
  if (out) *len = strlen(out);
  return out;
}

int wr_control_sign(const wr_keyring *ring, const char *key_id,
                    const void *body, size_t len,
                    char out[WR_CONTROL_SIG_MAX]) {
  unsigned char mac[32];
  size_t idlen = strlen(key_id);
  if (idlen > 256 || wr_keyring_mac(ring, key_id, idlen, body, len, mac) != 0)
    return -1;
  char hex[65];
  wr_sign_hex(mac, hex);
  snprintf(out, WR_CONTROL_SIG_MAX, "%s:%s", key_id, hex);
  return 0;
}

int wr_control_verify(const wr_keyring *ring, const char *sig, size_t siglen,
                      const void *body, size_t len, char *err, size_t errlen) {
  const char *colon = sig ? memchr(sig, ':', siglen) : NULL;
  if (!colon || colon == sig || sig + siglen - (colon + 1) != 64) {
    snprintf(err, errlen, "header %s is missing or not <key id>:<64 hex>",
             WR_CONTROL_SIG_HEADER);
    return -1;
  }
  size_t idlen = (size_t)(colon - sig);
  unsigned char mac[32];
  if (!wr_keyring_has(ring, sig, idlen) ||
      wr_keyring_mac(ring, sig, idlen, body, len, mac) != 0) {
    snprintf(err, errlen, "signed with a key not in the keyring");
    return -1;
  }
  char hex[65];
  wr_sign_hex(mac, hex);
  if (CRYPTO_memcmp(hex, colon + 1, 64) != 0) {
    snprintf(err, errlen, "the signature does not match the body");
    return -1;
  }
  return 0;
}
