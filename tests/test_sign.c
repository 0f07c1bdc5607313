/* The signing scheme as pure functions (common/sign.c): the spec's
 * test vector, strict parsing, and the verdict for every check. */
#include <amqp.h>
#include <criterion/criterion.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <warren/sign.h>

#include "keyring.h"
#include "sigcheck.h"
#include "sign.h"

#define VKEY "warren-test-vector-key-0123456789abcdef"
#define VBODY "{\"to\":\"ann@example.com\"}"
/* docs/signing.md, "Test vector": keep in step. */
#define VSIG                                                          \
  "v1;key=gw-2026;time=1764072000000;body="                           \
  "a9d25f9c95495eb1ced6a884c1b5af6c5b4abaa8e8de0899981fee47995bdf21;" \
  "sig=ePjRb9jTEZg1enNFGtCRnUYv+mJA2Jr4okEoLUkXUaY="

static warren_sign_input vector(void) {
  return (warren_sign_input){.size = sizeof(warren_sign_input),
                             .key_id = "gw-2026",
                             .key = VKEY,
                             .key_len = strlen(VKEY),
                             .time_ms = 1764072000000,
                             .message_id = "order-42",
                             .exchange = "jobs",
                             .routing_key = "email.send",
                             .content_type = "application/json",
                             .body = VBODY,
                             .body_len = strlen(VBODY)};
}

#define S(lit) ((wr_sign_str){lit, sizeof lit - 1})

static wr_sign_job vjob(void) {
  return (wr_sign_job){S("order-42"),
                       S("jobs"),
                       S("email.send"),
                       S("application/json"),
                       S("email"),
                       S(""),
                       S("")};
}

Test(sign, the_spec_test_vector) {
  warren_sign_input in = vector();
  char out[WARREN_SIGNATURE_MAX];
  cr_assert_eq(warren_sign(&in, out, sizeof out), WARREN_OK);
  cr_assert_str_eq(out, VSIG);
  wr_sig s;
  cr_assert_eq(wr_sign_parse(VSIG, strlen(VSIG), 0, &s), 0);
  char hex[65], canon[WR_SIGN_CANON_MAX];
  wr_sign_hex(s.body_sha256, hex);
  wr_sign_job j = vjob();
  size_t n = wr_sign_canonical(&s, hex, &j, canon);
  const char *want =
      "warren-signature-v1\n"
      "key-id:7:gw-2026\n"
      "time:13:1764072000000\n"
      "message-id:8:order-42\n"
      "exchange:4:jobs\n"
      "routing-key:10:email.send\n"
      "content-type:16:application/json\n"
      "body-sha256:64:"
      "a9d25f9c95495eb1ced6a884c1b5af6c5b4abaa8e8de0899981fee47995bdf21\n";
  cr_assert_eq(n, strlen(want));
  cr_assert_eq(memcmp(canon, want, n), 0);
}

Test(sign, short_keys_and_bad_ids_are_refused) {
  warren_sign_input in = vector();
  char out[WARREN_SIGNATURE_MAX];
  in.key_len = 31;
  cr_assert_eq(warren_sign(&in, out, sizeof out), WARREN_INVALID);
  in = vector();
  in.key_id = "has space";
  cr_assert_eq(warren_sign(&in, out, sizeof out), WARREN_INVALID);
  in = vector();
  cr_assert_eq(warren_sign(&in, out, 100), WARREN_INVALID, "room checked");
  wr_keyring *r = wr_keyring_new();
  char err[200];
  cr_assert_eq(wr_keyring_add(r, "k", "short", 5, err, sizeof err), -1);
  cr_assert(strstr(err, "5 bytes") && !strstr(err, "short"), "%s", err);
  cr_assert_eq(wr_keyring_add(r, "k", VKEY, strlen(VKEY), err, sizeof err), 0);
  cr_assert_eq(wr_keyring_add(r, "k", VKEY, strlen(VKEY), err, sizeof err), -1,
               "duplicate id");
  wr_keyring_free(r);
}

Test(sign, parsing_is_strict) {
  static const char *const bad[] = {
      "",
      "v2;key=gw-2026;time=1;body=" /* wrong version */
      "a9d25f9c95495eb1ced6a884c1b5af6c5b4abaa8e8de0899981fee47995bdf21;"
      "sig=ePjRb9jTEZg1enNFGtCRnUYv+mJA2Jr4okEoLUkXUaY=",
      "v1;key=gw-2026;time=01;body=" /* leading zero */
      "a9d25f9c95495eb1ced6a884c1b5af6c5b4abaa8e8de0899981fee47995bdf21;"
      "sig=ePjRb9jTEZg1enNFGtCRnUYv+mJA2Jr4okEoLUkXUaY=",
      "v1;time=1;key=gw-2026;body=" /* order */
      "a9d25f9c95495eb1ced6a884c1b5af6c5b4abaa8e8de0899981fee47995bdf21;"
      "sig=ePjRb9jTEZg1enNFGtCRnUYv+mJA2Jr4okEoLUkXUaY=",
      "v1;key=gw-2026;time=1;body=" /* uppercase hex */
      "A9d25f9c95495eb1ced6a884c1b5af6c5b4abaa8e8de0899981fee47995bdf21;"
      "sig=ePjRb9jTEZg1enNFGtCRnUYv+mJA2Jr4okEoLUkXUaY=",
      "v1;key=gw-2026;time=1;body=" /* base64 without padding */
      "a9d25f9c95495eb1ced6a884c1b5af6c5b4abaa8e8de0899981fee47995bdf21;"
      "sig=ePjRb9jTEZg1enNFGtCRnUYv+mJA2Jr4okEoLUkXUaY",
      "v1;key=gw-2026;time=1;body=" /* unused bits set: a second spelling */
      "a9d25f9c95495eb1ced6a884c1b5af6c5b4abaa8e8de0899981fee47995bdf21;"
      "sig=ePjRb9jTEZg1enNFGtCRnUYv+mJA2Jr4okEoLUkXUaZ=",
      "v1;key=gw-2026;time=1;body=" /* trailing field */
      "a9d25f9c95495eb1ced6a884c1b5af6c5b4abaa8e8de0899981fee47995bdf21;"
      "sig=ePjRb9jTEZg1enNFGtCRnUYv+mJA2Jr4okEoLUkXUaY=;x=1",
      "v1;key=;time=1;body=" /* empty key id */
      "a9d25f9c95495eb1ced6a884c1b5af6c5b4abaa8e8de0899981fee47995bdf21;"
      "sig=ePjRb9jTEZg1enNFGtCRnUYv+mJA2Jr4okEoLUkXUaY=",
  };
  wr_sig s;
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
    cr_assert_eq(wr_sign_parse(bad[i], strlen(bad[i]), 0, &s), -1, "%s",
                 bad[i]);
  cr_assert_eq(wr_sign_parse(VSIG, strlen(VSIG), 1, &s), -1,
               "a signature is no countersignature");
}

/* Every verdict, with a ring holding gw-2026 and Warren's own key. */
Test(sign, each_check_and_the_countersignature) {
  wr_keyring *r = wr_keyring_new();
  char err[200];
  cr_assert_eq(
      wr_keyring_add(r, "gw-2026", VKEY, strlen(VKEY), err, sizeof err), 0);
  cr_assert_eq(
      wr_keyring_add(r, "warren", VKEY "-w", strlen(VKEY) + 2, err, sizeof err),
      0);
  wr_sign_policy pol = {r, NULL, 0, "warren", 1764072000000, 300000, 1};
  wr_sign_job j = vjob();
  wr_sign_headers h = {1, 0, S(VSIG), {0}, "", ""};
  unsigned char d[32];
  int64_t skew;
  wr_sign_str key;
  cr_assert_eq(wr_sign_verify(&pol, &h, &j, d, &skew, &key), WR_SIGN_OK);
  cr_assert(wr_sign_body_matches(VBODY, strlen(VBODY), d));
  cr_assert_not(wr_sign_body_matches("{}", 2, d));
  pol.now_ms += 300001;
  cr_assert_eq(wr_sign_verify(&pol, &h, &j, d, &skew, &key), WR_SIGN_EXPIRED);
  pol.now_ms -= 2 * 300001;
  cr_assert_eq(wr_sign_verify(&pol, &h, &j, d, &skew, &key), WR_SIGN_FUTURE);
  pol.now_ms = 1764072000000 + 300000;
  cr_assert_eq(wr_sign_verify(&pol, &h, &j, d, &skew, &key), WR_SIGN_OK,
               "the window's edge is inside");
  j.routing_key = S("billing");
  cr_assert_eq(wr_sign_verify(&pol, &h, &j, d, &skew, &key),
               WR_SIGN_BAD_SIGNATURE);
  j = vjob();
  const char *only_other[] = {"other"};
  pol.ids = only_other;
  pol.n_ids = 1;
  cr_assert_eq(wr_sign_verify(&pol, &h, &j, d, &skew, &key),
               WR_SIGN_UNKNOWN_KEY, "a key the handler does not accept");
  pol.ids = NULL;
  pol.n_ids = 0;
  h.sig_present = 0;
  cr_assert_eq(wr_sign_verify(&pol, &h, &j, d, &skew, &key), WR_SIGN_MISSING);
  pol.require = 0;
  cr_assert_eq(wr_sign_verify(&pol, &h, &j, d, &skew, &key), WR_SIGN_UNSIGNED);
  h = (wr_sign_headers){1, 0, {NULL, 0}, {0}, "", ""};
  cr_assert_eq(wr_sign_verify(&pol, &h, &j, d, &skew, &key), WR_SIGN_MALFORMED,
               "a header that is not a string");

  /* A day later, Warren's countersignature carries the job. */
  char cs[WARREN_SIGNATURE_MAX];
  int64_t later = 1764072000000 + 86400000;
  cr_assert_eq(wr_sign_countersign(r, "warren", later, S(VSIG), &j, cs), 0);
  h = (wr_sign_headers){1, 1, S(VSIG), {cs, strlen(cs)}, "", ""};
  pol.now_ms = later + 1000;
  cr_assert_eq(wr_sign_verify(&pol, &h, &j, d, &skew, &key), WR_SIGN_OK);
  pol.now_ms = later + 300001;
  cr_assert_eq(wr_sign_verify(&pol, &h, &j, d, &skew, &key), WR_SIGN_C_EXPIRED);
  /* The copy's attempt and crash count are bound: the same copy with
   * another warren-attempt (or none) is refused. */
  pol.now_ms = later + 1000;
  j.attempt = S("2");
  j.crashes = S("0");
  cr_assert_eq(wr_sign_countersign(r, "warren", later, S(VSIG), &j, cs), 0);
  h = (wr_sign_headers){1, 1, S(VSIG), {cs, strlen(cs)}, "", ""};
  cr_assert_eq(wr_sign_verify(&pol, &h, &j, d, &skew, &key), WR_SIGN_OK);
  j.attempt = S("1");
  cr_assert_eq(wr_sign_verify(&pol, &h, &j, d, &skew, &key),
               WR_SIGN_C_BAD_SIGNATURE, "attempt lowered");
  j.attempt = S("");
  cr_assert_eq(wr_sign_verify(&pol, &h, &j, d, &skew, &key),
               WR_SIGN_C_BAD_SIGNATURE, "attempt dropped");
  j.attempt = S("2");
  j.crashes = S("");
  cr_assert_eq(wr_sign_verify(&pol, &h, &j, d, &skew, &key),
               WR_SIGN_C_BAD_SIGNATURE, "crash count dropped");
  j = vjob();
  pol.now_ms = later;
  j.queue = S("billing");
  cr_assert_eq(wr_sign_verify(&pol, &h, &j, d, &skew, &key),
               WR_SIGN_C_BAD_SIGNATURE, "bound to its queue");
  j = vjob();
  j.message_id = S("order-43");
  cr_assert_eq(wr_sign_verify(&pol, &h, &j, d, &skew, &key),
               WR_SIGN_C_BAD_SIGNATURE, "bound to its message id");
  j = vjob();
  /* Signed by a producer key instead of Warren's, on a handler that only
   * accepts another producer key: refused. */
  cr_assert_eq(wr_sign_countersign(r, "gw-2026", later, S(VSIG), &j, cs), 0);
  h.counter = (wr_sign_str){cs, strlen(cs)};
  pol.ids = only_other;
  pol.n_ids = 1;
  cr_assert_eq(wr_sign_verify(&pol, &h, &j, d, &skew, &key),
               WR_SIGN_C_UNKNOWN_KEY);
  cr_assert_str_eq(wr_sign_check_name(WR_SIGN_C_EXPIRED),
                   "countersignature-expired");
  wr_keyring_free(r);
}

/* docs/signing.md, "Delayed jobs": the same job sent with a one-hour
 * delay, signed as published straight to queue email.send. */
#define VNB 1764075600000
#define VSIG_NB                                                       \
  "v1;key=gw-2026;time=1764072000000;nb=1764075600000;body="          \
  "a9d25f9c95495eb1ced6a884c1b5af6c5b4abaa8e8de0899981fee47995bdf21;" \
  "sig=KCyYhpR8AE83CCuECSkM0PV6KIAQe1Gdm/dCTgrjM4M="

Test(sign, the_delayed_test_vector) {
  warren_sign_input in = vector();
  in.exchange = "";
  in.not_before_ms = VNB;
  char out[WARREN_SIGNATURE_MAX];
  cr_assert_eq(warren_sign(&in, out, sizeof out), WARREN_OK);
  cr_assert_str_eq(out, VSIG_NB);
  wr_sig s;
  cr_assert_eq(wr_sign_parse(VSIG_NB, strlen(VSIG_NB), 0, &s), 0);
  int64_t nb = s.nb_ms;
  cr_assert_eq(nb, VNB);
  char hex[65], canon[WR_SIGN_CANON_MAX];
  wr_sign_hex(s.body_sha256, hex);
  wr_sign_job j = vjob();
  j.exchange = S("");
  size_t n = wr_sign_canonical(&s, hex, &j, canon);
  const char *want =
      "warren-signature-v1\n"
      "key-id:7:gw-2026\n"
      "time:13:1764072000000\n"
      "not-before:13:1764075600000\n"
      "message-id:8:order-42\n"
      "exchange:0:\n"
      "routing-key:10:email.send\n"
      "content-type:16:application/json\n"
      "body-sha256:64:"
      "a9d25f9c95495eb1ced6a884c1b5af6c5b4abaa8e8de0899981fee47995bdf21\n";
  cr_assert_eq(n, strlen(want));
  cr_assert_eq(memcmp(canon, want, n), 0);
  /* A caller built before the field existed signs without it. */
  in.size = (uint32_t)offsetof(warren_sign_input, not_before_ms);
  cr_assert_eq(warren_sign(&in, out, sizeof out), WARREN_OK);
  cr_assert_null(strstr(out, ";nb="));
  /* One spelling: no leading zero, no zero time, only before body=. */
  const char *bad[] = {
      "v1;key=gw-2026;time=1764072000000;nb=01764075600000;body="
      "a9d25f9c95495eb1ced6a884c1b5af6c5b4abaa8e8de0899981fee47995bdf21;"
      "sig=KCyYhpR8AE83CCuECSkM0PV6KIAQe1Gdm/dCTgrjM4M=",
      "v1;key=gw-2026;time=1764072000000;nb=0;body="
      "a9d25f9c95495eb1ced6a884c1b5af6c5b4abaa8e8de0899981fee47995bdf21;"
      "sig=KCyYhpR8AE83CCuECSkM0PV6KIAQe1Gdm/dCTgrjM4M=",
      "v1;key=gw-2026;nb=1764075600000;time=1764072000000;body="
      "a9d25f9c95495eb1ced6a884c1b5af6c5b4abaa8e8de0899981fee47995bdf21;"
      "sig=KCyYhpR8AE83CCuECSkM0PV6KIAQe1Gdm/dCTgrjM4M="};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    int rc = wr_sign_parse(bad[i], strlen(bad[i]), 0, &s);
    cr_assert_eq(rc, -1, "%s", bad[i]);
  }
}

Test(sign, a_delay_is_bound_and_the_window_starts_at_its_end) {
  wr_keyring *r = wr_keyring_new();
  char err[200];
  cr_assert_eq(
      wr_keyring_add(r, "gw-2026", VKEY, strlen(VKEY), err, sizeof err), 0);
  /* Due an hour after signing: fresh then, though the signing time is
   * far outside the window. */
  wr_sign_policy pol = {r, NULL, 0, NULL, VNB + 1000, 300000, 1};
  wr_sign_job j = vjob();
  j.exchange = S("");
  wr_sign_headers h = {1, 0, S(VSIG_NB), {0}, "", ""};
  unsigned char d[32];
  int64_t skew;
  wr_sign_str key;
  wr_sign_check c = wr_sign_verify(&pol, &h, &j, d, &skew, &key);
  cr_assert_eq(c, WR_SIGN_OK, "%s", wr_sign_check_name(c));
  /* Delivered long before its time: the delay was cut short. */
  pol.now_ms = VNB - 60000;
  c = wr_sign_verify(&pol, &h, &j, d, &skew, &key);
  cr_assert_eq(c, WR_SIGN_EARLY, "%s", wr_sign_check_name(c));
  cr_assert_eq(skew, -60000);
  pol.now_ms = VNB - WR_SIGN_EARLY_SLACK_MS;
  c = wr_sign_verify(&pol, &h, &j, d, &skew, &key);
  cr_assert_eq(c, WR_SIGN_OK, "clocks a little apart: %s",
               wr_sign_check_name(c));
  /* Held back longer than the window after its time. */
  pol.now_ms = VNB + 300001;
  c = wr_sign_verify(&pol, &h, &j, d, &skew, &key);
  cr_assert_eq(c, WR_SIGN_EXPIRED, "%s", wr_sign_check_name(c));
  /* Another not-before (shorter or longer) fails the MAC. */
  const char *moved =
      "v1;key=gw-2026;time=1764072000000;nb=1764072060000;body="
      "a9d25f9c95495eb1ced6a884c1b5af6c5b4abaa8e8de0899981fee47995bdf21;"
      "sig=KCyYhpR8AE83CCuECSkM0PV6KIAQe1Gdm/dCTgrjM4M=";
  h.sig = (wr_sign_str){moved, strlen(moved)};
  pol.now_ms = 1764072060000;
  c = wr_sign_verify(&pol, &h, &j, d, &skew, &key);
  cr_assert_eq(c, WR_SIGN_BAD_SIGNATURE, "%s", wr_sign_check_name(c));
  /* Dropping the field fails too. */
  h.sig = (wr_sign_str){VSIG, strlen(VSIG)};
  j = vjob();
  j.exchange = S("");
  c = wr_sign_verify(&pol, &h, &j, d, &skew, &key);
  cr_assert_eq(c, WR_SIGN_BAD_SIGNATURE, "%s", wr_sign_check_name(c));
  wr_keyring_free(r);
}

/* ---- what a producer in another language must get right ---------------- */

/* Properties carrying the given header entries. */
static amqp_basic_properties_t with_headers(amqp_table_entry_t *e, int n) {
  amqp_basic_properties_t p = {0};
  p._flags = AMQP_BASIC_HEADERS_FLAG | AMQP_BASIC_MESSAGE_ID_FLAG |
             AMQP_BASIC_CONTENT_TYPE_FLAG;
  p.message_id = amqp_cstring_bytes("order-42");
  p.content_type = amqp_cstring_bytes("application/json");
  p.headers = (amqp_table_t){n, e};
  return p;
}

static amqp_table_entry_t str_entry(const char *key, const char *v,
                                    amqp_field_value_kind_t kind) {
  amqp_table_entry_t e = {amqp_cstring_bytes(key), {0}};
  e.value.kind = (uint8_t)kind;
  e.value.value.bytes = amqp_cstring_bytes(v);
  return e;
}

/* The verdict on the spec's test vector carried by properties p. */
static wr_sign_check verdict_of(const amqp_basic_properties_t *p) {
  wr_keyring *r = wr_keyring_new();
  char err[200];
  cr_assert_eq(
      wr_keyring_add(r, "gw-2026", VKEY, strlen(VKEY), err, sizeof err), 0);
  wr_sign_policy pol = {r, NULL, 0, NULL, 1764072000000, 300000, 1};
  wr_sign_headers h;
  wr_sign_job j;
  wr_sigcheck_read(p, "email", &h, &j);
  j.exchange = S("jobs");
  j.routing_key = S("email.send");
  unsigned char d[32];
  int64_t skew;
  wr_sign_str key;
  wr_sign_check c = wr_sign_verify(&pol, &h, &j, d, &skew, &key);
  wr_keyring_free(r);
  return c;
}

/* Header names are compared byte for byte, as AMQP tables name them:
 * `Warren-Signature` is another header, so the job is unsigned. */
Test(sign, the_header_name_is_case_sensitive) {
  amqp_table_entry_t e[2] = {
      str_entry("Warren-Signature", VSIG, AMQP_FIELD_KIND_UTF8)};
  amqp_basic_properties_t p = with_headers(e, 1);
  cr_assert_eq(verdict_of(&p), WR_SIGN_MISSING);
  e[0] = str_entry("WARREN-SIGNATURE", VSIG, AMQP_FIELD_KIND_UTF8);
  cr_assert_eq(verdict_of(&p), WR_SIGN_MISSING);
  /* Next to the real one it is any other header: not "given twice". */
  e[1] = str_entry("warren-signature", VSIG, AMQP_FIELD_KIND_UTF8);
  p = with_headers(e, 2);
  cr_assert_eq(verdict_of(&p), WR_SIGN_OK);
  /* Nor is a countersignature in another case one. */
  e[0] = str_entry("Warren-Countersignature", "v1;key=x;time=1;sig=x",
                   AMQP_FIELD_KIND_UTF8);
  cr_assert_eq(verdict_of(&p), WR_SIGN_OK);
}

/* The value may be a long string (`S`) or a byte array (`x`): the same
 * bytes, the same verdict. Any other type, or the header twice, is
 * malformed. */
Test(sign, a_byte_array_value_is_accepted) {
  amqp_table_entry_t e[2] = {
      str_entry("warren-signature", VSIG, AMQP_FIELD_KIND_BYTES)};
  amqp_basic_properties_t p = with_headers(e, 1);
  cr_assert_eq(verdict_of(&p), WR_SIGN_OK);
  e[0].value.kind = AMQP_FIELD_KIND_I64;
  e[0].value.value.i64 = 1;
  cr_assert_eq(verdict_of(&p), WR_SIGN_MALFORMED);
  e[0] = str_entry("warren-signature", VSIG, AMQP_FIELD_KIND_UTF8);
  e[1] = str_entry("warren-signature", VSIG, AMQP_FIELD_KIND_BYTES);
  p = with_headers(e, 2);
  cr_assert_eq(verdict_of(&p), WR_SIGN_MALFORMED, "given twice");
}

/* docs/signing.md, "Verification": a job failing two checks is refused
 * for the one that comes first in the spec's order: missing, malformed,
 * unknown-key, bad-signature, future, early, expired, body-digest. */
Test(sign, a_job_failing_two_checks_reports_the_first_in_the_spec_order) {
  wr_keyring *r = wr_keyring_new();
  char err[200];
  cr_assert_eq(
      wr_keyring_add(r, "gw-2026", VKEY, strlen(VKEY), err, sizeof err), 0);
  wr_sign_job j = vjob();
  j.exchange = S("");
  wr_sign_headers h = {1, 0, S(VSIG_NB), {0}, "", ""};
  unsigned char d[32];
  int64_t skew;
  wr_sign_str key;
  /* Early (an hour before its time) and with another body: early. The
   * body is compared only once every other check has passed, where the
   * job runs (worker.c, inproc.c): the verdict here is final. */
  wr_sign_policy pol = {r, NULL, 0, NULL, VNB - 3600000, 300000, 1};
  wr_sign_check c = wr_sign_verify(&pol, &h, &j, d, &skew, &key);
  cr_assert_eq(c, WR_SIGN_EARLY, "%s", wr_sign_check_name(c));
  cr_assert_not(wr_sign_body_matches("{}", 2, d), "the body fails too");
  /* Expired and with another body: expired. */
  pol.now_ms = VNB + 3600000;
  c = wr_sign_verify(&pol, &h, &j, d, &skew, &key);
  cr_assert_eq(c, WR_SIGN_EXPIRED, "%s", wr_sign_check_name(c));
  /* Signed in the future and due later still: future, not early. */
  pol.now_ms = 1764072000000 - 300001;
  c = wr_sign_verify(&pol, &h, &j, d, &skew, &key);
  cr_assert_eq(c, WR_SIGN_FUTURE, "%s", wr_sign_check_name(c));
  /* A wrong MAC and expired: bad-signature (a time is only judged once
   * the MAC vouches for it). */
  j.routing_key = S("billing");
  pol.now_ms = VNB + 3600000;
  c = wr_sign_verify(&pol, &h, &j, d, &skew, &key);
  cr_assert_eq(c, WR_SIGN_BAD_SIGNATURE, "%s", wr_sign_check_name(c));
  /* A key the handler does not take and a wrong MAC: unknown-key. */
  const char *only_other[] = {"other"};
  pol.ids = only_other;
  pol.n_ids = 1;
  c = wr_sign_verify(&pol, &h, &j, d, &skew, &key);
  cr_assert_eq(c, WR_SIGN_UNKNOWN_KEY, "%s", wr_sign_check_name(c));
  wr_keyring_free(r);
}
