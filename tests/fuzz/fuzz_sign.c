/* Fuzz target: the signature headers as a delivery brings them. The input
 * is the warren-signature value, optionally followed by a NUL and a
 * warren-countersignature value; both are parsed and verified against a
 * fixed keyring and job, and a verified body digest is compared. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "keyring.h"
#include "sign.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static wr_keyring *ring;
  if (!ring) {
    char err[160];
    ring = wr_keyring_new();
    wr_keyring_add(ring, "gw-2026", "warren-test-vector-key-0123456789abcdef",
                   39, err, sizeof err);
    wr_keyring_add(ring, "warren", "warren-own-key-0123456789abcdef0123456", 38,
                   err, sizeof err);
  }
  const char *p = (const char *)data;
  const char *nul = memchr(p, 0, size);
  wr_sign_headers h = {
      1,
      nul != NULL,
      {p, nul ? (size_t)(nul - p) : size},
      {nul ? nul + 1 : NULL, nul ? size - (size_t)(nul - p) - 1 : 0},
      "",
      ""};
  wr_sign_job job = {{"order-42", 8},
                     {"jobs", 4},
                     {"email.send", 10},
                     {"application/json", 16},
                     {"email", 5},
                     {"2", 1},
                     {"0", 1}};
  /* Around the test vector's time, so a well-formed input reaches every
   * check. */
  wr_sign_policy pol = {ring, NULL, 0, "warren", 1764072000000, 300000, 1};
  unsigned char digest[32];
  int64_t skew;
  wr_sign_str key;
  if (wr_sign_verify(&pol, &h, &job, digest, &skew, &key) == WR_SIGN_OK)
    wr_sign_body_matches("{\"to\":\"ann@example.com\"}", 24, digest);
  wr_sig s;
  wr_sign_parse(h.sig.p, h.sig.len, 1, &s);
  return 0;
}
