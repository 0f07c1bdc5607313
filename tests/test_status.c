#include <criterion/criterion.h>
#include <string.h>

#include <warren/status.h>

Test(status, every_code_has_its_own_message) {
  static const struct { int code; const char *msg; } all[] = {
#define X(name, value, msg) {value, msg},
      WARREN_STATUS_MAP(X)
#undef X
  };
  size_t n = sizeof all / sizeof all[0];
  for (size_t i = 0; i < n; i++) {
    cr_assert(all[i].code <= 0, "codes are 0 or negative");
    cr_assert_str_eq(warren_strerror(all[i].code), all[i].msg);
    cr_assert_str_neq(warren_strerror(all[i].code), "unknown status");
    for (size_t j = i + 1; j < n; j++)
      cr_assert_neq(all[i].code, all[j].code, "duplicate code %d", all[i].code);
  }
  cr_assert_str_eq(warren_strerror(12345), "unknown status");
}
