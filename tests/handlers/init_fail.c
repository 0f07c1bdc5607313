/* A plugin whose init() refuses to start. */
#include <warren/handler.h>

static int fail_init(const warren_api *api, const warren_settings *s,
                     void **state) {
  (void)s;
  (void)state;
  api->log(WARREN_LOG_ERROR, "init_fail: refusing on purpose");
  return -1;
}

static warren_result h(void *s, const warren_message *m) {
  (void)s;
  (void)m;
  return WARREN_ACK;
}

WARREN_HANDLER_DEFINE("init_fail", fail_init, h, 0);
