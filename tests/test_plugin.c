#include <criterion/criterion.h>
#include <string.h>

#include <warren/status.h>

#include "plugin.h"

static char err[1024];

Test(plugin, good_plugin_loads) {
  wr_plugin p;
  int rc = wr_plugin_load(TEST_HANDLER_DIR "/record.so", &p, err, sizeof err);
  cr_assert_eq(rc, WARREN_OK, "%s", err);
  cr_assert_not_null(p.def->handle);
  cr_assert_str_eq(p.def->name, "record");
  cr_assert_eq(p.def->abi_version, WARREN_ABI_VERSION);
  wr_plugin_unload(&p);
  cr_assert_null(p.dl);
}

Test(plugin, missing_file_is_refused_with_path) {
  wr_plugin p;
  int rc = wr_plugin_load("/nonexistent/x.so", &p, err, sizeof err);
  cr_assert_eq(rc, WARREN_PLUGIN_OPEN);
  cr_assert(strstr(err, "/nonexistent/x.so: cannot load"), "%s", err);
  cr_assert_null(p.dl);
}

Test(plugin, object_without_symbol_is_refused) {
  wr_plugin p;
  int rc = wr_plugin_load(TEST_HANDLER_DIR "/no_symbol.so", &p, err, sizeof err);
  cr_assert_eq(rc, WARREN_PLUGIN_SYMBOL);
  cr_assert(strstr(err, "no_symbol.so: no 'warren_handler_entry' symbol"), "%s",
            err);
}

Test(plugin, other_major_abi_is_refused) {
  wr_plugin p;
  int rc = wr_plugin_load(TEST_HANDLER_DIR "/bad_abi.so", &p, err, sizeof err);
  cr_assert_eq(rc, WARREN_PLUGIN_ABI);
  cr_assert(strstr(err, "bad_abi.so: built for handler ABI 2.0"), "%s", err);
  cr_assert_null(p.dl);
}

static warren_result noop(void *s, const warren_message *m) {
  (void)s;
  (void)m;
  return WARREN_ACK;
}

Test(plugin, descriptor_checks) {
  char why[256];
  warren_handler d = {WARREN_ABI_VERSION, sizeof d, "t", 0, noop, 0, 0};
  cr_assert_eq(wr_plugin_check(&d, why, sizeof why), WARREN_OK);
  d.handle = NULL;
  cr_assert_eq(wr_plugin_check(&d, why, sizeof why), WARREN_PLUGIN_INVALID);
  cr_assert(strstr(why, "no handle()"));
  d.handle = noop;
  d.reserved = 1;
  cr_assert_eq(wr_plugin_check(&d, why, sizeof why), WARREN_PLUGIN_INVALID);
  d.reserved = 0;
  d.size = 8;
  cr_assert_eq(wr_plugin_check(&d, why, sizeof why), WARREN_PLUGIN_INVALID);
  d.size = sizeof d;
  d.abi_version = WARREN_ABI_VERSION + 1; /* a newer minor */
  cr_assert_eq(wr_plugin_check(&d, why, sizeof why), WARREN_PLUGIN_ABI);
  cr_assert(strstr(why, "upgrade warren"), "%s", why);
  d.abi_version = (uint32_t)WARREN_ABI_MAJOR << 16; /* older minor: fine */
  cr_assert_eq(wr_plugin_check(&d, why, sizeof why), WARREN_OK);
}
