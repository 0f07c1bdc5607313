/* The HTTP side's pure parts (framework/health.c). */
#include <criterion/criterion.h>
#include <string.h>

#include "health.h"

static int ok(const char *h) {
  return wr_health_bearer_ok(h, strlen(h), "s3cret-Token");
}

/* RFC 9110: the scheme is case-insensitive and one or more spaces follow
 * it; the token itself is compared exactly. */
Test(health, the_bearer_scheme_is_case_insensitive_and_the_token_exact) {
  cr_assert(ok("Bearer s3cret-Token"));
  cr_assert(ok("bearer s3cret-Token"));
  cr_assert(ok("BEARER s3cret-Token"));
  cr_assert(ok("Bearer   s3cret-Token"));
  cr_assert_not(ok("Bearer s3cret-token"));
  cr_assert_not(ok("Bearer s3cret-Toke"));
  cr_assert_not(ok("Bearer s3cret-Token2"));
  cr_assert_not(ok("Basic s3cret-Token"));
  cr_assert_not(ok("Bearers3cret-Token"));
  cr_assert_not(ok("Bearer "));
  cr_assert_not(ok(""));
  cr_assert_not(wr_health_bearer_ok(NULL, 0, "s3cret-Token"));
  /* A NUL in what was sent is no token, whatever follows it. */
  cr_assert_not(
      wr_health_bearer_ok("Bearer s3cret-Token\0x", 21, "s3cret-Token"));
}
