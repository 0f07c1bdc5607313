/* What a handler adds to its job (extras.h): recorded in its process,
 * parsed by the supervisor, which must not trust a byte of it. */
#include <criterion/criterion.h>
#include <string.h>

#include <warren/status.h>

#include "extras.h"

static warren_value sv(const char *s) {
  return (warren_value){
      .type = WARREN_VALUE_STRING, .str = s, .len = strlen(s)};
}

Test(extras, attributes_events_and_follow_ups_survive_the_trip) {
  wr_extras_buf b = {0};
  warren_value i = {.type = WARREN_VALUE_INT, .i = -7};
  warren_value d = {.type = WARREN_VALUE_DOUBLE, .d = 2.5};
  warren_value t = {.type = WARREN_VALUE_BOOL, .i = 9};
  warren_value s1 = sv("one"), s2 = sv("two");
  cr_assert_eq(wr_extras_attr(&b, "k", &s1), WARREN_OK);
  cr_assert_eq(wr_extras_attr(&b, "i", &i), WARREN_OK);
  cr_assert_eq(wr_extras_attr(&b, "d", &d), WARREN_OK);
  cr_assert_eq(wr_extras_attr(&b, "b", &t), WARREN_OK);
  cr_assert_eq(wr_extras_attr(&b, "k", &s2), WARREN_OK, "the same key again");
  warren_attribute ea[] = {{"x", sv("y")}};
  cr_assert_eq(wr_extras_event(&b, "ev", 123, ea, 1), WARREN_OK);
  warren_attribute hd[] = {{"h", sv("v")}};
  warren_publish p = {.size = sizeof p,
                      .exchange = "ex",
                      .routing_key = "rk",
                      .body = "\0body",
                      .body_len = 5,
                      .headers = hd,
                      .n_headers = 1,
                      .transient = 1};
  cr_assert_eq(wr_extras_followup(&b, &p, "job/1"), WARREN_OK);
  wr_extras x;
  int rc = wr_extras_parse(b.p, b.len, &x);
  cr_assert_eq(rc, 0);
  cr_assert_eq(x.nattrs, 4, "k kept once, with its last value");
  cr_assert_str_eq(x.attrs[0].key, "k");
  cr_assert_eq(x.attrs[0].len, 3);
  cr_assert_eq(memcmp(x.attrs[0].str, "two", 3), 0);
  cr_assert_eq(x.attrs[1].type, WR_ATTR_INT);
  cr_assert_eq(x.attrs[1].i, -7);
  cr_assert_eq(x.attrs[2].type, WR_ATTR_DOUBLE);
  cr_assert_eq(x.attrs[3].type, WR_ATTR_BOOL);
  cr_assert_eq(x.attrs[3].i, 1);
  cr_assert_eq(x.nevents, 1);
  cr_assert_str_eq(x.events[0].name, "ev");
  cr_assert_eq(x.events[0].time_ns, 123);
  cr_assert_eq(x.events[0].nattrs, 1);
  cr_assert_eq(x.nfollow, 1);
  const wr_followup *f = &x.follow[0];
  cr_assert_str_eq(f->exchange.s, "ex");
  cr_assert_str_eq(f->routing_key.s, "rk");
  cr_assert_str_eq(f->message_id.s, "job/1", "the default id");
  cr_assert_eq(f->transient, 1);
  cr_assert_eq(f->body_len, 5);
  cr_assert_eq(memcmp(f->body, "\0body", 5), 0);
  cr_assert_eq(f->nheaders, 1);
  wr_extras_release(&x);
  wr_extras_free(&b);
}

Test(extras, limits_and_bad_arguments_record_nothing) {
  wr_extras_buf b = {0};
  warren_value v = sv("v");
  for (int k = 0; k < WR_EXTRAS_MAX_ATTRS; k++)
    cr_assert_eq(wr_extras_attr(&b, "a", &v), WARREN_OK);
  size_t len = b.len;
  cr_assert_eq(wr_extras_attr(&b, "a", &v), WARREN_TOO_LARGE);
  cr_assert_eq(b.len, len, "nothing written");
  cr_assert_eq(wr_extras_event(&b, NULL, 0, NULL, 0), WARREN_INVALID);
  cr_assert_eq(wr_extras_event(&b, "e", 0, NULL, 17), WARREN_TOO_LARGE);
  cr_assert_eq(b.len, len);
  warren_attribute bad[] = {{"traceparent", sv("x")}};
  warren_publish p = {
      .size = sizeof p, .routing_key = "rk", .headers = bad, .n_headers = 1};
  cr_assert_eq(wr_extras_followup(&b, &p, NULL), WARREN_INVALID,
               "Warren's own header");
  p.n_headers = 0;
  p.size = 8;
  cr_assert_eq(wr_extras_followup(&b, &p, NULL), WARREN_INVALID, "old size");
  p.size = sizeof p;
  p.routing_key = NULL;
  cr_assert_eq(wr_extras_followup(&b, &p, NULL), WARREN_INVALID);
  char big[300];
  memset(big, 'r', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  p.routing_key = big;
  cr_assert_eq(wr_extras_followup(&b, &p, NULL), WARREN_INVALID, "over 255");
  cr_assert_eq(b.len, len);
  wr_extras_free(&b);
}

/* Every cut and every flipped byte of a valid buffer is refused or
 * parsed within its bounds (ASan watches the reads). */
Test(extras, a_cut_or_corrupted_buffer_is_refused_not_trusted) {
  wr_extras_buf b = {0};
  warren_value v = sv("value");
  warren_attribute ea[] = {{"x", sv("y")}};
  warren_publish p = {
      .size = sizeof p, .routing_key = "rk", .body = "abc", .body_len = 3};
  size_t ends[3];
  wr_extras_attr(&b, "key", &v);
  ends[0] = b.len;
  wr_extras_event(&b, "ev", 1, ea, 1);
  ends[1] = b.len;
  wr_extras_followup(&b, &p, NULL);
  ends[2] = b.len;
  wr_extras x;
  for (size_t n = 1; n < b.len; n++) {
    int rc = wr_extras_parse(b.p, n, &x);
    if (rc == 0) wr_extras_release(&x);
    /* Whole records parse; a cut inside one never does. */
    int whole = n == ends[0] || n == ends[1] || n == ends[2];
    cr_assert_eq(rc, whole ? 0 : -1, "a cut at %zu of %zu", n, b.len);
  }
  unsigned char *c = malloc(b.len);
  for (size_t k = 0; k < b.len; k++) {
    memcpy(c, b.p, b.len);
    c[k] ^= 0xff;
    if (wr_extras_parse(c, b.len, &x) == 0) wr_extras_release(&x);
  }
  /* A length that points past the end. */
  memcpy(c, b.p, b.len);
  uint32_t huge = 0x7fffffff;
  memcpy(c + 1, &huge, 4); /* the first record's key length */
  cr_assert_eq(wr_extras_parse(c, b.len, &x), -1);
  /* A string without its NUL. */
  memcpy(c, b.p, b.len);
  c[1 + 4 + 3] = 'X'; /* the NUL after "key" */
  cr_assert_eq(wr_extras_parse(c, b.len, &x), -1);
  free(c);
  wr_extras_free(&b);
}

/* Breaks when the last set_result does not win, when one over the limit
 * is taken or drops the one before it, or when a result record with a
 * length past its buffer or over the hard maximum is trusted. */
Test(extras, the_last_result_wins_and_one_over_the_limit_keeps_the_one_before) {
  wr_extras_buf b = {0};
  warren_value v = sv("a");
  cr_assert_eq(wr_extras_attr(&b, "before", &v), WARREN_OK);
  cr_assert_eq(wr_extras_result(&b, "first", 5, "text/plain", 10), WARREN_OK);
  cr_assert_eq(wr_extras_attr(&b, "between", &v), WARREN_OK);
  cr_assert_eq(wr_extras_result(&b, "second!", 7, NULL, 10), WARREN_OK);
  size_t len_two = b.len;
  cr_assert_eq(wr_extras_result(&b, "0123456789X", 11, "x", 10),
               WARREN_TOO_LARGE);
  cr_assert_eq(b.len, len_two, "a refused result leaves the buffer as it was");
  cr_assert_eq(wr_extras_result(&b, NULL, 3, NULL, 10), WARREN_INVALID);
  char longtype[300];
  memset(longtype, 't', sizeof longtype - 1);
  longtype[sizeof longtype - 1] = '\0';
  cr_assert_eq(wr_extras_result(&b, "x", 1, longtype, 10), WARREN_INVALID);
  cr_assert_eq(wr_extras_attr(&b, "after", &v), WARREN_OK);
  wr_extras x;
  int rc = wr_extras_parse(b.p, b.len, &x);
  cr_assert_eq(rc, 0);
  cr_assert(x.has_result);
  size_t rl = x.result_len;
  cr_assert_eq(rl, 7);
  cr_assert_eq(memcmp(x.result, "second!", 7), 0);
  size_t tl = x.result_type.len;
  cr_assert_eq(tl, 0, "the second result has no content type");
  size_t na = x.nattrs;
  cr_assert_eq(na, 3, "the attributes around the results are kept");
  wr_extras_release(&x);

  /* The limit is the handler's; an empty result is a result. */
  wr_extras_clear(&b);
  cr_assert_eq(wr_extras_result(&b, NULL, 0, "text/plain", 0), WARREN_OK);
  rc = wr_extras_parse(b.p, b.len, &x);
  cr_assert_eq(rc, 0);
  cr_assert(x.has_result);
  cr_assert_str_eq(x.result_type.s, "text/plain");
  wr_extras_release(&x);

  /* A length past the end of the buffer is refused. */
  wr_extras_clear(&b);
  cr_assert_eq(wr_extras_result(&b, "abc", 3, "t", 10), WARREN_OK);
  uint64_t huge = 1000;
  memcpy(b.p + 1 + 4 + 1 + 1, &huge, 8);
  rc = wr_extras_parse(b.p, b.len, &x);
  cr_assert_eq(rc, -1);
  cr_assert_not(x.has_result);
  wr_extras_free(&b);
}
