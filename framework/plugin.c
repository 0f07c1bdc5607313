#include "plugin.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include <warren/status.h>

int wr_plugin_check(const warren_handler *def, char *why, size_t whylen) {
  uint32_t major = def->abi_version >> 16, minor = def->abi_version & 0xffff;
  if (major != WARREN_ABI_MAJOR) {
    snprintf(why, whylen,
             "built for handler ABI %u.%u, this worker speaks %d.%d "
             "(rebuild the plugin against this warren/handler.h)",
             major, minor, WARREN_ABI_MAJOR, WARREN_ABI_MINOR);
    return WARREN_PLUGIN_ABI;
  }
  if (minor > WARREN_ABI_MINOR) {
    snprintf(why, whylen,
             "needs handler ABI %u.%u, this worker provides %d.%d (upgrade "
             "warren)",
             major, minor, WARREN_ABI_MAJOR, WARREN_ABI_MINOR);
    return WARREN_PLUGIN_ABI;
  }
  if (def->size < WR_PLUGIN_MIN_SIZE) {
    snprintf(why, whylen, "descriptor size %u is below the %zu of ABI 1.0",
             def->size, (size_t)WR_PLUGIN_MIN_SIZE);
    return WARREN_PLUGIN_INVALID;
  }
  if (!def->handle) {
    snprintf(why, whylen, "descriptor has no handle() callback");
    return WARREN_PLUGIN_INVALID;
  }
  if (def->reserved != 0) {
    snprintf(why, whylen, "descriptor's reserved field is not 0");
    return WARREN_PLUGIN_INVALID;
  }
  return WARREN_OK;
}

int wr_plugin_load(const char *path, wr_plugin *out, char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!dl) {
    snprintf(err, errlen, "%s: cannot load: %s", path, dlerror());
    return WARREN_PLUGIN_OPEN;
  }
  dlerror();
  const warren_handler *def =
      (const warren_handler *)dlsym(dl, WARREN_HANDLER_SYMBOL);
  if (!def) {
    snprintf(err, errlen,
             "%s: no '" WARREN_HANDLER_SYMBOL
             "' symbol: not a Warren handler plugin "
             "(define it with WARREN_HANDLER_DEFINE)",
             path);
    dlclose(dl);
    return WARREN_PLUGIN_SYMBOL;
  }
  char why[256];
  int rc = wr_plugin_check(def, why, sizeof why);
  if (rc != WARREN_OK) {
    snprintf(err, errlen, "%s: %s", path, why);
    dlclose(dl);
    return rc;
  }
  out->dl = dl;
  out->def = def;
  return WARREN_OK;
}

void wr_plugin_unload(wr_plugin *p) {
  if (p && p->dl) dlclose(p->dl);
  if (p) memset(p, 0, sizeof *p);
}
