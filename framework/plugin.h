/*
 * Loading handler plugins (.so) and checking their ABI.
 *
 * Loading reads the plugin's `warren_handler_entry` descriptor without calling
 * any of its functions (only the object's own constructors run, which
 * dlopen cannot avoid). init/handle/shutdown are called in worker
 * processes (worker.c).
 */
#ifndef WR_PLUGIN_H
#define WR_PLUGIN_H

#include <stddef.h>

#include <warren/handler.h>

typedef struct wr_plugin {
  void *dl;
  const warren_handler *def;
} wr_plugin;

/* Minimum descriptor size: a 1.0 plugin has everything up to reserved. */
#define WR_PLUGIN_MIN_SIZE \
  (offsetof(warren_handler, reserved) + sizeof(uint64_t))

/**
 * dlopen `path` (RTLD_NOW|RTLD_LOCAL) and validate its descriptor.
 * On failure returns a negative warren_status, writes "PATH: reason" to err
 * and leaves nothing loaded.
 */
int wr_plugin_load(const char *path, wr_plugin *out, char *err, size_t errlen);

/* Validate a descriptor (split out so tests can feed odd ones). */
int wr_plugin_check(const warren_handler *def, char *why, size_t whylen);

void wr_plugin_unload(wr_plugin *p);

#endif
