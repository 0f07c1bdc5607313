/* The revoked-id set (revset.h) and the control message format
 * (control.h). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control.h"
#include "keyring.h"
#include "revset.h"

static int has(const wr_revset *s, const char *id, double now) {
  return wr_revset_has(s, id, strlen(id), now);
}

static int add(wr_revset *s, const char *id, double expires, double now) {
  return wr_revset_add(s, id, strlen(id), expires, now);
}

Test(revset, an_id_is_revoked_until_it_expires) {
  wr_revset s;
  wr_revset_init(&s, 10);
  cr_assert(wr_revset_empty(&s));
  int none = has(&s, "a", 0);
  cr_assert_eq(none, 0);
  cr_assert_eq(add(&s, "a", 100, 0), 0);
  cr_assert(has(&s, "a", 0));
  cr_assert(has(&s, "a", 99.9));
  int later = has(&s, "a", 100);
  cr_assert_eq(later, 0, "expired at its time");
  int other = has(&s, "b", 0);
  cr_assert_eq(other, 0);
  int prefix = wr_revset_has(&s, "ab", 1, 0);
  cr_assert_eq(prefix, 1, "by bytes and length");
  size_t gone = wr_revset_expire(&s, 100);
  cr_assert_eq(gone, 1);
  cr_assert(wr_revset_empty(&s));
  wr_revset_free(&s);
}

Test(revset, revoking_again_keeps_the_later_expiry) {
  wr_revset s;
  wr_revset_init(&s, 10);
  add(&s, "a", 100, 0);
  add(&s, "a", 50, 1);
  cr_assert(has(&s, "a", 80), "the shorter one does not shorten it");
  add(&s, "a", 200, 2);
  cr_assert(has(&s, "a", 150));
  cr_assert_eq(s.n, 1);
  /* Expired, then revoked again: it counts from the new revoke. */
  add(&s, "a", 300, 250);
  cr_assert(has(&s, "a", 260));
  wr_revset_free(&s);
}

Test(revset, a_full_set_forgets_the_oldest_first) {
  wr_revset s;
  wr_revset_init(&s, 3);
  char id[16];
  for (int i = 0; i < 3; i++) {
    snprintf(id, sizeof id, "id%d", i);
    cr_assert_eq(add(&s, id, 1000, 0), 0);
  }
  cr_assert_eq(add(&s, "id3", 1000, 0), 1, "one was evicted");
  int first = has(&s, "id0", 1);
  cr_assert_eq(first, 0, "the oldest went");
  cr_assert(has(&s, "id1", 1) && has(&s, "id2", 1) && has(&s, "id3", 1));
  cr_assert_eq(s.n, 3);
  cr_assert_eq(s.evicted, 1);
  /* Expired ids make room before any live one is evicted. */
  wr_revset_free(&s);
  wr_revset_init(&s, 3);
  add(&s, "old", 1000, 0);
  add(&s, "short", 5, 0);
  add(&s, "x", 1000, 0);
  cr_assert_eq(add(&s, "y", 1000, 10), 0, "the expired one made room");
  cr_assert(has(&s, "old", 10) && has(&s, "x", 10) && has(&s, "y", 10));
  cr_assert_eq(s.evicted, 0);
  wr_revset_free(&s);
}

Test(revset, many_ids_stay_bounded_and_findable) {
  wr_revset s;
  wr_revset_init(&s, 1000);
  char id[32];
  for (int i = 0; i < 5000; i++) {
    snprintf(id, sizeof id, "job-%d", i);
    cr_assert_geq(add(&s, id, 1000, 0), 0);
  }
  cr_assert_eq(s.n, 1000);
  for (int i = 0; i < 5000; i++) {
    snprintf(id, sizeof id, "job-%d", i);
    int want = i >= 4000;
    int got = has(&s, id, 1);
    cr_assert_eq(got, want, "%s", id);
  }
  wr_revset_free(&s);
}

Test(revset, empty_and_oversized_ids_are_refused) {
  wr_revset s;
  wr_revset_init(&s, 4);
  char big[300];
  memset(big, 'x', sizeof big);
  cr_assert_eq(wr_revset_add(&s, "", 0, 10, 0), -1);
  cr_assert_eq(wr_revset_add(&s, big, 256, 10, 0), -1);
  cr_assert_eq(wr_revset_add(&s, big, 255, 10, 0), 0);
  cr_assert(wr_revset_has(&s, big, 255, 0));
  wr_revset_free(&s);
}

static int parse(const char *body, wr_control_msg *m, char *err) {
  return wr_control_parse(body, strlen(body), m, err, 200);
}

Test(control, a_built_revoke_parses_back) {
  const char *ids[] = {"a", "job \"2\"", "\xc3\xa9t\xc3\xa9"};
  size_t len;
  char *b = wr_control_build_revoke(ids, 3, 90, 1, 1764100000.5, &len);
  cr_assert(b);
  wr_control_msg m;
  char err[200];
  cr_assert_eq(wr_control_parse(b, len, &m, err, sizeof err), 0, "%s", err);
  cr_assert_eq(m.kind, WR_CONTROL_REVOKE);
  cr_assert_eq(m.n, 3);
  for (size_t i = 0; i < 3; i++) {
    cr_assert_eq(m.id_len[i], strlen(ids[i]));
    cr_assert_eq(memcmp(m.ids[i], ids[i], m.id_len[i]), 0);
  }
  cr_assert_eq(m.expires, 90);
  cr_assert_eq(m.terminate, 1);
  cr_assert_eq(m.sent_at, 1764100000.5);
  wr_control_free(&m);
  free(b);
}

Test(control, defaults_and_caps) {
  wr_control_msg m;
  char err[200];
  cr_assert_eq(parse("{\"type\":\"revoke\",\"ids\":[\"x\"]}", &m, err), 0);
  cr_assert_eq(m.expires, WR_CONTROL_DEFAULT_EXPIRES);
  cr_assert_eq(m.terminate, 0);
  cr_assert_eq(m.sent_at, 0);
  wr_control_free(&m);
  cr_assert_eq(
      parse("{\"type\":\"revoke\",\"ids\":[\"x\"],\"expires\":1e9}", &m, err),
      0);
  cr_assert_eq(m.expires, WR_CONTROL_MAX_EXPIRES);
  cr_assert(m.capped);
  wr_control_free(&m);
  cr_assert_eq(parse("{\"type\":\"ping\"}", &m, err), 0);
  cr_assert_eq(m.kind, WR_CONTROL_UNKNOWN);
  cr_assert_str_eq(m.type, "ping");
  wr_control_free(&m);
}

Test(control, malformed_messages_are_refused_with_a_reason) {
  static const char *bad[] = {
      "",
      "nope",
      "[]",
      "{}",
      "{\"type\":7}",
      "{\"type\":\"revoke\"}",
      "{\"type\":\"revoke\",\"ids\":\"x\"}",
      "{\"type\":\"revoke\",\"ids\":[]}",
      "{\"type\":\"revoke\",\"ids\":[null]}",
      "{\"type\":\"revoke\",\"ids\":[\"\"]}",
      "{\"type\":\"revoke\",\"ids\":[\"x\"],\"expires\":0}",
      "{\"type\":\"revoke\",\"ids\":[\"x\"],\"expires\":\"1h\"}",
      "{\"type\":\"revoke\",\"ids\":[\"x\"],\"terminate\":1}",
      "{\"type\":\"revoke\",\"ids\":[\"x\"],\"sent_at\":-1}",
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    wr_control_msg m;
    char err[200] = "";
    int rc = parse(bad[i], &m, err);
    cr_assert_eq(rc, -1, "%s", bad[i]);
    cr_assert(err[0], "a reason for %s", bad[i]);
    cr_assert_null(m.tree);
  }
  /* Too many ids, and too long a one. */
  static char body[WR_CONTROL_MAX_IDS * 8 + 100];
  size_t o =
      (size_t)snprintf(body, sizeof body, "{\"type\":\"revoke\",\"ids\":[");
  for (int i = 0; i <= WR_CONTROL_MAX_IDS; i++)
    o += (size_t)snprintf(body + o, sizeof body - o, "%s\"i%d\"", i ? "," : "",
                          i);
  snprintf(body + o, sizeof body - o, "]}");
  wr_control_msg m;
  char err[200];
  cr_assert_eq(parse(body, &m, err), -1);
  char longid[400] = "{\"type\":\"revoke\",\"ids\":[\"";
  size_t k = strlen(longid);
  memset(longid + k, 'y', 256);
  strcpy(longid + k + 256, "\"]}");
  cr_assert_eq(parse(longid, &m, err), -1);
}

/* cJSON decodes \u0000 into a NUL that would end the id early: revoking
 * "rv13\u0000tail" must not revoke rv13. */
Test(control, an_id_holding_a_nul_byte_is_refused) {
  static const char *bad[] = {
      "{\"type\":\"revoke\",\"ids\":[\"rv13\\u0000tail\"]}",
      "{\"type\":\"revoke\",\"ids\":[\"ok\",\"rv13\\u0000\"]}",
      "{\"type\":\"revoke\",\"ids\":[\"\\u0000\"]}",
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    wr_control_msg m;
    char err[200] = "";
    cr_assert_eq(parse(bad[i], &m, err), -1, "%s", bad[i]);
    cr_assert(strstr(err, "NUL"), "%s: %s", bad[i], err);
  }
  /* A raw NUL byte in the body, which is not JSON either. */
  static const char raw[] = "{\"type\":\"revoke\",\"ids\":[\"rv13\0tail\"]}";
  wr_control_msg m;
  char err[200] = "";
  cr_assert_eq(wr_control_parse(raw, sizeof raw - 1, &m, err, sizeof err), -1);
  /* An escaped backslash before u0000 is text, not a NUL. */
  const char *ok = "{\"type\":\"revoke\",\"ids\":[\"a\\\\u0000\"]}";
  cr_assert_eq(parse(ok, &m, err), 0, "%s", err);
  cr_assert_eq(m.id_len[0], 7);
  wr_control_free(&m);
}

#define KEY "0123456789abcdef0123456789abcdef"

Test(control, a_signature_verifies_only_with_its_key_and_body) {
  char err[200];
  wr_keyring *r = wr_keyring_new();
  cr_assert_eq(wr_keyring_add(r, "ops", KEY, strlen(KEY), err, sizeof err), 0);
  const char *body = "{\"type\":\"revoke\",\"ids\":[\"x\"]}";
  char sig[WR_CONTROL_SIG_MAX];
  cr_assert_eq(wr_control_sign(r, "ops", body, strlen(body), sig), 0);
  cr_assert_eq(strlen(sig), 4 + 64);
  char none[WR_CONTROL_SIG_MAX];
  cr_assert_eq(wr_control_sign(r, "nope", body, strlen(body), none), -1);
  cr_assert_eq(wr_control_verify(r, sig, strlen(sig), body, strlen(body), err,
                                 sizeof err),
               0, "%s", err);
  const char *other = "{\"type\":\"revoke\",\"ids\":[\"y\"]}";
  cr_assert_eq(wr_control_verify(r, sig, strlen(sig), other, strlen(other), err,
                                 sizeof err),
               -1, "another body");
  char forged[WR_CONTROL_SIG_MAX];
  snprintf(forged, sizeof forged, "gw:%s", sig + 4);
  cr_assert_eq(wr_control_verify(r, forged, strlen(forged), body, strlen(body),
                                 err, sizeof err),
               -1, "a key not in the ring");
  cr_assert_eq(
      wr_control_verify(r, NULL, 0, body, strlen(body), err, sizeof err), -1,
      "unsigned");
  cr_assert_eq(
      wr_control_verify(r, "ops:abc", 7, body, strlen(body), err, sizeof err),
      -1, "malformed");
  wr_keyring_free(r);
}
