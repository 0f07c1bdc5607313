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

#define WR_PLUGIN_VERSION_LEN 12 /* hex digits of the file's SHA-256 shown */

/* Which file a plugin was loaded from, to tell a replaced one (reload). */
typedef struct wr_plugin_file {
  unsigned long long dev, ino, size;
  long long mtime_ns;
} wr_plugin_file;

typedef struct wr_plugin {
  void *dl;
  const warren_handler *def;
  wr_plugin_file file;                     /* the path's file when loaded */
  char version[WR_PLUGIN_VERSION_LEN + 1]; /* its SHA-256, hex, cut */
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

/**
 * Load the file now at `path` again, as a new object: dlopen of a path it
 * already opened would return the old one, so the file is copied to a
 * private temporary file first (under $TMPDIR), opened from there and
 * unlinked. Returns WARREN_OK, WARREN_NOT_FOUND when the file at `path`
 * is still the one `cur` was loaded from (out is then untouched), or a
 * negative warren_status with "PATH: reason" in err.
 */
int wr_plugin_reload(const char *path, const wr_plugin *cur, wr_plugin *out,
                     char *err, size_t errlen);

/* Validate a descriptor (split out so tests can feed odd ones). */
int wr_plugin_check(const warren_handler *def, char *why, size_t whylen);

void wr_plugin_unload(wr_plugin *p);

#endif
