#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>

#include <warren/status.h>

#include "plugin.h"
#include "worker.h"

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
  int rc =
      wr_plugin_load(TEST_HANDLER_DIR "/no_symbol.so", &p, err, sizeof err);
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

/* The table the worker hands to init(), caught by a stand-in plugin. */
static const warren_api *seen_api;

static int catch_api(const warren_api *api, const warren_settings *s,
                     void **state) {
  (void)s;
  (void)state;
  seen_api = api;
  return WARREN_OK;
}

static const warren_api *host_api(void) {
  warren_handler d = {WARREN_ABI_VERSION, sizeof d, "t", catch_api, noop, 0, 0};
  void *state;
  seen_api = NULL;
  cr_assert_eq(wr_worker_init("t", &d, NULL, &state), WARREN_OK);
  cr_assert_not_null(seen_api);
  return seen_api;
}

/* headers.so declares WARREN_PLUGIN_ABI_MINOR 0: built for 1.0, it loads
 * in this 1.1 worker (the integration tests run it). */
Test(plugin, a_plugin_built_for_1_0_loads) {
  wr_plugin p;
  int rc = wr_plugin_load(TEST_HANDLER_DIR "/headers.so", &p, err, sizeof err);
  cr_assert_eq(rc, WARREN_OK, "%s", err);
  cr_assert_eq(p.def->abi_version, (uint32_t)(WARREN_ABI_MAJOR << 16 | 0));
  wr_plugin_unload(&p);
}

Test(plugin, host_api_has_every_member_it_declares) {
  const warren_api *api = host_api();
  cr_assert_eq(api->size, sizeof(warren_api));
  cr_assert_eq(api->abi_version, WARREN_ABI_VERSION);
#define HAS_AND_SET(m)                                \
  cr_assert(WARREN_API_HAS(api, m), "api lacks " #m); \
  cr_assert_not_null((const void *)(uintptr_t)api->m, #m " is NULL")
  HAS_AND_SET(log);
  HAS_AND_SET(header_get);
  HAS_AND_SET(header_count);
  HAS_AND_SET(header_at);
  HAS_AND_SET(setting_get);
  HAS_AND_SET(set_error);
  HAS_AND_SET(span_set_attribute);
  HAS_AND_SET(span_add_event);
  HAS_AND_SET(publish);
  HAS_AND_SET(logv);
  HAS_AND_SET(set_errorv);
  HAS_AND_SET(strerror);
#undef HAS_AND_SET
}

Test(plugin, api_has_tells_an_older_table_from_a_newer_one) {
  /* A table built by a host that ended after header_at. */
  warren_api old = *host_api();
  old.size = (uint32_t)(offsetof(warren_api, header_at) + sizeof old.header_at);
  cr_assert(WARREN_API_HAS(&old, log));
  cr_assert(WARREN_API_HAS(&old, header_at));
  cr_assert_not(WARREN_API_HAS(&old, setting_get));
  cr_assert_not(WARREN_API_HAS(&old, set_error));
  /* A size that covers only part of a member does not count. */
  old.size = (uint32_t)offsetof(warren_api, set_error) + 1;
  cr_assert(WARREN_API_HAS(&old, setting_get));
  cr_assert_not(WARREN_API_HAS(&old, set_error));
  /* A 1.1 table has no set_result (ABI 1.2). */
  old.size = (uint32_t)offsetof(warren_api, set_result);
  cr_assert(WARREN_API_HAS(&old, strerror));
  cr_assert_not(WARREN_API_HAS(&old, set_result));

  warren_message m = {.size = (uint32_t)offsetof(warren_message, attempt)};
  cr_assert(WARREN_MESSAGE_HAS(&m, headers));
  cr_assert_not(WARREN_MESSAGE_HAS(&m, attempt));
  cr_assert_not(WARREN_MESSAGE_HAS(&m, delivery_tag));
  m.size = sizeof m;
  cr_assert(WARREN_MESSAGE_HAS(&m, delivery_tag));
}

#if UINTPTR_MAX == UINT64_MAX && SIZE_MAX == UINT64_MAX
/* ABI 1.0 on LP64, as released: members are only ever appended, so these
 * offsets never change (docs/plugin-abi.md lists them). */
Test(plugin, abi_1_0_layout_is_frozen) {
  cr_assert_eq(offsetof(warren_handler, size), 4);
  cr_assert_eq(offsetof(warren_handler, name), 8);
  cr_assert_eq(offsetof(warren_handler, init), 16);
  cr_assert_eq(offsetof(warren_handler, handle), 24);
  cr_assert_eq(offsetof(warren_handler, shutdown), 32);
  cr_assert_eq(offsetof(warren_handler, reserved), 40);
  cr_assert_eq(WR_PLUGIN_MIN_SIZE, 48);

  cr_assert_eq(offsetof(warren_api, abi_version), 4);
  cr_assert_eq(offsetof(warren_api, log), 8);
  cr_assert_eq(offsetof(warren_api, header_get), 16);
  cr_assert_eq(offsetof(warren_api, header_count), 24);
  cr_assert_eq(offsetof(warren_api, header_at), 32);
  cr_assert_eq(offsetof(warren_api, setting_get), 40);
  cr_assert_eq(offsetof(warren_api, set_error), 48);
  cr_assert_geq(sizeof(warren_api), 56);

  cr_assert_eq(offsetof(warren_message, body), 8);
  cr_assert_eq(offsetof(warren_message, body_len), 16);
  cr_assert_eq(offsetof(warren_message, exchange), 24);
  cr_assert_eq(offsetof(warren_message, routing_key), 32);
  cr_assert_eq(offsetof(warren_message, message_id), 40);
  cr_assert_eq(offsetof(warren_message, correlation_id), 48);
  cr_assert_eq(offsetof(warren_message, content_type), 56);
  cr_assert_eq(offsetof(warren_message, headers), 64);
  cr_assert_eq(offsetof(warren_message, attempt), 72);
  cr_assert_eq(offsetof(warren_message, redelivered), 76);
  cr_assert_eq(offsetof(warren_message, delivery_tag), 80);
  cr_assert_geq(sizeof(warren_message), 88);

  /* 1.1 appended these. */
  cr_assert_eq(offsetof(warren_api, span_set_attribute), 56);
  cr_assert_eq(offsetof(warren_api, span_add_event), 64);
  cr_assert_eq(offsetof(warren_api, publish), 72);
  cr_assert_eq(offsetof(warren_message, trace_id), 88);
  cr_assert_eq(offsetof(warren_message, span_id), 96);
  cr_assert_eq(offsetof(warren_message, traceparent), 104);
  cr_assert_eq(offsetof(warren_message, api), 112);
  cr_assert_eq(offsetof(warren_message, crashes), 120);
  cr_assert_eq(offsetof(warren_message, present), 124);
  cr_assert_eq(sizeof(warren_message), 128);
  cr_assert_eq(offsetof(warren_api, logv), 80);
  cr_assert_eq(offsetof(warren_api, set_errorv), 88);
  cr_assert_eq(offsetof(warren_api, strerror), 96);
  /* 1.2 appended set_result. */
  cr_assert_eq(offsetof(warren_api, set_result), 104);
  cr_assert_eq(sizeof(warren_api), 112);
  cr_assert_eq(offsetof(warren_attribute, value), 8);
  cr_assert_eq(sizeof(warren_attribute), 48);

  /* warren_value never grows: not even at the end. */
  cr_assert_eq(offsetof(warren_value, str), 8);
  cr_assert_eq(offsetof(warren_value, len), 16);
  cr_assert_eq(offsetof(warren_value, i), 24);
  cr_assert_eq(offsetof(warren_value, d), 32);
  cr_assert_eq(sizeof(warren_value), 40);
}
#endif
