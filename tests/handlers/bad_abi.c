/* A plugin built for a future major ABI: must be refused at load. */
#include <warren/handler.h>

static warren_result h(void *s, const warren_message *m) {
  (void)s;
  (void)m;
  return WARREN_ACK;
}

WARREN_PLUGIN_EXPORT const warren_handler warren_handler_entry = {
    (2u << 16) | 0u, sizeof(warren_handler), "bad_abi", 0, h, 0, 0};
