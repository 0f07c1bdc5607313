/* The service manager's address and watchdog period, read from the
 * environment systemd sets (notify.h): an abstract name keeps its bytes
 * and no NUL, a path too long for sockaddr_un is refused rather than cut
 * (a cut path would be another socket), and a watchdog meant for another
 * process is not petted by this one. */
#include <criterion/criterion.h>
#include <stddef.h>
#include <string.h>

#include "notify.h"

#define BASE offsetof(struct sockaddr_un, sun_path)

Test(notify, an_abstract_name_starts_with_a_nul_and_has_no_terminator) {
  struct sockaddr_un sa;
  socklen_t len = 0;
  cr_assert_eq(wr_notify_addr("@warren/notify", &sa, &len), 0);
  cr_assert_eq(sa.sun_family, AF_UNIX);
  cr_assert_eq(sa.sun_path[0], '\0');
  cr_assert_eq(memcmp(sa.sun_path + 1, "warren/notify", 13), 0);
  cr_assert_eq(len, BASE + 14, "the length is the name's: %u", (unsigned)len);
}

Test(notify, a_path_is_kept_with_its_nul) {
  struct sockaddr_un sa;
  socklen_t len = 0;
  cr_assert_eq(wr_notify_addr("/run/systemd/notify", &sa, &len), 0);
  cr_assert_str_eq(sa.sun_path, "/run/systemd/notify");
  cr_assert_eq(len, BASE + 20);
}

Test(notify, a_path_or_name_too_long_is_refused_not_cut) {
  struct sockaddr_un sa;
  socklen_t len = 0;
  char v[sizeof sa.sun_path + 2];
  /* A path fills sun_path with its NUL: one byte less than a name. */
  memset(v, 'a', sizeof v);
  v[0] = '/';
  v[sizeof sa.sun_path - 1] = '\0';
  cr_assert_eq(wr_notify_addr(v, &sa, &len), 0, "107 bytes and a NUL fit");
  v[sizeof sa.sun_path - 1] = 'a';
  v[sizeof sa.sun_path] = '\0';
  cr_assert_eq(wr_notify_addr(v, &sa, &len), -1, "108 bytes do not");
  v[0] = '@';
  cr_assert_eq(wr_notify_addr(v, &sa, &len), 0, "an abstract name of 108");
  cr_assert_eq(len, BASE + sizeof sa.sun_path);
  v[sizeof sa.sun_path] = 'a';
  v[sizeof sa.sun_path + 1] = '\0';
  cr_assert_eq(wr_notify_addr(v, &sa, &len), -1, "109 do not");
}

Test(notify, empty_relative_and_vsock_values_are_refused) {
  struct sockaddr_un sa;
  socklen_t len;
  cr_assert_eq(wr_notify_addr("", &sa, &len), -1);
  cr_assert_eq(wr_notify_addr("@", &sa, &len), -1);
  cr_assert_eq(wr_notify_addr("run/notify", &sa, &len), -1);
  cr_assert_eq(wr_notify_addr("vsock:2:1234", &sa, &len), -1);
  cr_assert_eq(wr_notify_addr(NULL, &sa, &len), -1);
}

Test(notify, the_watchdog_is_petted_at_half_its_timeout_by_its_pid_only) {
  cr_assert_float_eq(wr_notify_watchdog_interval("30000000", NULL, 42), 15.0,
                     1e-9);
  cr_assert_float_eq(wr_notify_watchdog_interval("200000", "42", 42), 0.1,
                     1e-9);
  cr_assert_float_eq(wr_notify_watchdog_interval("200000", "", 42), 0.1, 1e-9);
  cr_assert_eq(wr_notify_watchdog_interval("200000", "43", 42), 0,
               "another process's watchdog");
  cr_assert_eq(wr_notify_watchdog_interval(NULL, NULL, 42), 0);
  cr_assert_eq(wr_notify_watchdog_interval("0", NULL, 42), 0);
  cr_assert_eq(wr_notify_watchdog_interval("-5", NULL, 42), 0);
  cr_assert_eq(wr_notify_watchdog_interval("12x", NULL, 42), 0);
  cr_assert_eq(wr_notify_watchdog_interval("200000", "42x", 42), 0);
}
