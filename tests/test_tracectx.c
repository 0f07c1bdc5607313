/* W3C traceparent and tracestate: what is accepted, what is refused, how
 * contexts are written, ids and the ratio sampler. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tracectx.h"

static int parse(const char *s, wr_trace_ctx *c) {
  return wr_trace_parse(s, strlen(s), c);
}

Test(tracectx, the_w3c_example_parses_and_writes_back_the_same) {
  const char *tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  wr_trace_ctx c;
  int rc = parse(tp, &c);
  cr_assert_eq(rc, 0);
  cr_assert(c.valid);
  cr_assert_eq(c.trace_id[0], 0x4b);
  cr_assert_eq(c.trace_id[15], 0x36);
  cr_assert_eq(c.span_id[0], 0x00);
  cr_assert_eq(c.span_id[7], 0xb7);
  cr_assert_eq(c.flags, WR_TRACE_SAMPLED);
  char out[WR_TRACEPARENT_LEN + 1];
  wr_trace_format(&c, out);
  cr_assert_str_eq(out, tp);
  rc = parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", &c);
  cr_assert_eq(rc, 0);
  cr_assert_eq(c.flags, 0, "not sampled");
}

Test(tracectx, malformed_values_are_refused) {
  static const char *const bad[] = {
      "",
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",   /* short */
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-", /* long */
      "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  /* upper */
      "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  /* 0 trace */
      "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  /* 0 span */
      "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  /* ver ff */
      "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  /* dash */
      "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",  /* hex */
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",  /* flags */
      "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x", /* future */
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    wr_trace_ctx c = {.valid = 7};
    int rc = parse(bad[i], &c);
    cr_assert_eq(rc, -1, "accepted '%s'", bad[i]);
    cr_assert_eq(c.valid, 7, "and wrote to *out");
  }
}

Test(tracectx, a_later_version_is_read_as_far_as_00_goes) {
  wr_trace_ctx c;
  int rc = parse(
      "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-next", &c);
  cr_assert_eq(rc, 0);
  cr_assert_eq(c.flags, WR_TRACE_SAMPLED);
}

Test(tracectx, tracestate_follows_the_w3c_grammar) {
  cr_assert(wr_tracestate_valid("", 0));
  const char *ok[] = {"rojo=00f067aa0ba902b7",
                      "congo=t61rcWkgMzE, rojo=00f067aa0ba902b7",
                      "tenant@vendor=x,a-b_c*d/e=1"};
  for (size_t i = 0; i < 3; i++)
    cr_assert(wr_tracestate_valid(ok[i], strlen(ok[i])), "%s", ok[i]);
  const char *bad[] = {"=x", "Upper=1", "a=", "a=b=c", "a=\x01"};
  for (size_t i = 0; i < 5; i++)
    cr_assert(!wr_tracestate_valid(bad[i], strlen(bad[i])), "%s", bad[i]);
  char many[600] = "";
  for (int i = 0; i < 33; i++)
    snprintf(many + strlen(many), sizeof many - strlen(many), "%sk%d=v",
             i ? "," : "", i);
  cr_assert(!wr_tracestate_valid(many, strlen(many)), "33 members");
  char big[600];
  memset(big, 'a', sizeof big);
  big[0] = 'k';
  big[1] = '=';
  cr_assert(!wr_tracestate_valid(big, 513), "over 512 bytes");
}

Test(tracectx, ids_are_fresh_and_differ_between_forked_processes) {
  uint8_t a[16], b[16], s[8];
  wr_trace_new_trace_id(a);
  wr_trace_new_trace_id(b);
  wr_trace_new_span_id(s);
  cr_assert_neq(memcmp(a, b, 16), 0);
  int p[2];
  cr_assert_eq(pipe(p), 0);
  pid_t pid = fork();
  if (pid == 0) {
    uint8_t c[16];
    wr_trace_new_trace_id(c);
    _exit(write(p[1], c, 16) == 16 ? 0 : 1);
  }
  uint8_t c[16], d[16];
  wr_trace_new_trace_id(d);
  cr_assert_eq(read(p[0], c, 16), 16);
  waitpid(pid, NULL, 0);
  cr_assert_neq(memcmp(c, d, 16), 0, "a child must not repeat its parent");
}

Test(tracectx, the_ratio_sampler_keeps_about_its_share) {
  int kept = 0;
  for (int i = 0; i < 20000; i++) {
    uint8_t id[16];
    wr_trace_new_trace_id(id);
    kept += wr_trace_ratio_sampled(id, 0.25);
  }
  cr_assert(kept > 4500 && kept < 5500, "kept %d of 20000 at 0.25", kept);
  uint8_t id[16] = {0};
  id[15] = 1;
  cr_assert(wr_trace_ratio_sampled(id, 1.0));
  cr_assert(!wr_trace_ratio_sampled(id, 0.0));
}
