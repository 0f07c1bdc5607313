#include <criterion/criterion.h>
#include <string.h>

#include <warren/status.h>

static const struct {
  int code;
  const char *name, *msg;
} all[] = {
#define X(name, value, msg) {value, "WARREN_" #name, msg},
    WARREN_STATUS_MAP(X)
#undef X
};
static const size_t n = sizeof all / sizeof all[0];

Test(status, every_code_has_its_own_message) {
  for (size_t i = 0; i < n; i++) {
    cr_assert(all[i].code <= 0, "codes are 0 or negative");
    cr_assert_str_eq(warren_strerror(all[i].code), all[i].msg);
    cr_assert_str_neq(warren_strerror(all[i].code), "unknown status");
    for (size_t j = i + 1; j < n; j++)
      cr_assert_neq(all[i].code, all[j].code, "duplicate code %d", all[i].code);
  }
  cr_assert_str_eq(warren_strerror(12345), "unknown status");
}

Test(status, every_code_has_its_own_name) {
  for (size_t i = 0; i < n; i++) {
    const char *name = warren_status_name(all[i].code);
    cr_assert_str_eq(name, all[i].name, "code %d", all[i].code);
    for (size_t j = 0; j < n; j++)
      if (j != i)
        cr_assert_str_neq(name, warren_status_name(all[j].code),
                          "codes %d and %d share a name", all[i].code,
                          all[j].code);
  }
  cr_assert_str_eq(warren_status_name(WARREN_NOT_FOUND), "WARREN_NOT_FOUND");
  cr_assert_str_eq(warren_status_name(12345), "unknown");
  cr_assert_str_eq(warren_status_name(-7), "unknown", "gaps have no name");
}
