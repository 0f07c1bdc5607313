/* A shared object that is not a Warren plugin: no entry symbol. */
#include <warren/handler.h>

WARREN_PLUGIN_EXPORT int not_a_handler(void);
int not_a_handler(void) {
  return 42;
}
