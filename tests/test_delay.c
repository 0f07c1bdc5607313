/* The delay levels' names and routing keys (common/delay.c). */
#include <criterion/criterion.h>
#include <string.h>

#include "delay.h"

Test(delay, whole_seconds_round_up) {
  int64_t a = wr_delay_seconds(0), b = wr_delay_seconds(1),
          c = wr_delay_seconds(1000), d = wr_delay_seconds(1001),
          e = wr_delay_seconds(-5);
  cr_assert_eq(a, 0);
  cr_assert_eq(b, 1, "never early");
  cr_assert_eq(c, 1);
  cr_assert_eq(d, 2);
  cr_assert_eq(e, 0);
}

Test(delay, the_routing_key_is_the_bits_then_the_queue) {
  char rk[300];
  size_t n = wr_delay_routing_key(5, "email", rk, sizeof rk);
  const char *want =
      "0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.1.email";
  cr_assert_str_eq(rk, want);
  cr_assert_eq(n, strlen(want));
  /* Three days: 259200 s = 2^17 + 2^16 + ... ; bit 17 is the highest. */
  n = wr_delay_routing_key(259200, "q", rk, sizeof rk);
  cr_assert_str_eq(rk,
                   "0.0.0.0.0.0.0.0.0.0.1.1.1.1.1.1.0.1.0.0.1.0.0.0.0.0.0.0.q");
  n = wr_delay_routing_key(WR_DELAY_MAX_S, "q", rk, sizeof rk);
  cr_assert_eq(n, (size_t)WR_DELAY_BITS_LEN + 1);
  cr_assert_eq(strspn(rk, "1."), (size_t)WR_DELAY_BITS_LEN);
  size_t over = wr_delay_routing_key(WR_DELAY_MAX_S + 1, "q", rk, sizeof rk),
         zero = wr_delay_routing_key(0, "q", rk, sizeof rk),
         small = wr_delay_routing_key(5, "email", rk, 40);
  cr_assert_eq(over, 0);
  cr_assert_eq(zero, 0);
  cr_assert_eq(small, 0, "does not fit the buffer");
  char longq[256];
  memset(longq, 'x', 200);
  longq[200] = '\0';
  size_t toolong = wr_delay_routing_key(5, longq, rk, sizeof rk);
  cr_assert_eq(toolong, 0, "past AMQP's 255 bytes");
  cr_assert_not(wr_delay_queue_ok(longq));
  cr_assert_not(wr_delay_queue_ok("a.*"));
  cr_assert_not(wr_delay_queue_ok("a#"));
  cr_assert_not(wr_delay_queue_ok(""));
  cr_assert(wr_delay_queue_ok("jobs.email"));
}

Test(delay, names_and_the_binding) {
  char b[300];
  cr_assert_str_eq(wr_delay_entry("warren.delay", b, sizeof b),
                   "warren.delay.27");
  cr_assert_str_eq(wr_delay_level("p", 0, b, sizeof b), "p.0");
  cr_assert_str_eq(wr_delay_deliver("p", b, sizeof b), "p.deliver");
  cr_assert_str_eq(wr_delay_unrouted("p", b, sizeof b), "p.unrouted");
  size_t n = wr_delay_binding("jobs.email", b, sizeof b);
  cr_assert_eq(n, strlen(b));
  cr_assert_eq(strncmp(b, "*.*.*.", 6), 0);
  cr_assert_str_eq(b + WR_DELAY_BITS_LEN, "jobs.email");
}

Test(delay, a_delivery_through_the_levels_names_its_queue) {
  char rk[300];
  size_t n = wr_delay_routing_key(90, "jobs.email", rk, sizeof rk);
  const char *dest;
  size_t dl;
  int through = wr_delay_destination("warren.delay", "warren.delay.3", 14, rk,
                                     n, &dest, &dl);
  cr_assert_eq(through, 1);
  cr_assert_eq(dl, 10);
  cr_assert_eq(memcmp(dest, "jobs.email", 10), 0);
  int other =
      wr_delay_destination("warren.delay", "jobs", 4, rk, n, &dest, &dl);
  cr_assert_eq(other, 0, "another exchange");
  int prefix_only = wr_delay_destination("warren.delay", "warren.delayed.3", 16,
                                         rk, n, &dest, &dl);
  cr_assert_eq(prefix_only, 0, "a name that only starts alike");
  rk[4] = '2';
  int badbits = wr_delay_destination("warren.delay", "warren.delay.deliver", 20,
                                     rk, n, &dest, &dl);
  cr_assert_eq(badbits, 0, "bits are 0 or 1");
  int nodest = wr_delay_destination("warren.delay", "warren.delay.0", 14, rk,
                                    WR_DELAY_BITS_LEN, &dest, &dl);
  cr_assert_eq(nodest, 0, "no queue after the bits");
}
