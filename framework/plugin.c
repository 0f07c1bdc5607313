#include "plugin.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <warren/status.h>

#include "sign.h"

#define PLUGIN_MAX_BYTES (512u << 20) /* a larger .so is refused on reload */

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

static wr_plugin_file file_of(const struct stat *st) {
  return (wr_plugin_file){
      (unsigned long long)st->st_dev, (unsigned long long)st->st_ino,
      (unsigned long long)st->st_size,
      (long long)st->st_mtim.tv_sec * 1000000000LL + st->st_mtim.tv_nsec};
}

/* The whole file at `fd` (malloc'd, *len bytes), or NULL with errno. */
static unsigned char *slurp(int fd, const struct stat *st, size_t *len) {
  if ((unsigned long long)st->st_size > PLUGIN_MAX_BYTES) {
    errno = EFBIG;
    return NULL;
  }
  size_t n = (size_t)st->st_size, got = 0;
  unsigned char *buf = malloc(n ? n : 1);
  while (buf && got < n) {
    ssize_t r = read(fd, buf + got, n - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      if (r == 0) errno = EIO; /* shrank while read: being written */
      free(buf);
      return NULL;
    }
    got += (size_t)r;
  }
  *len = n;
  return buf;
}

static void version_of(const unsigned char *buf, size_t len,
                       char out[WR_PLUGIN_VERSION_LEN + 1]) {
  unsigned char d[32];
  wr_sign_sha256(buf, len, d);
  for (int i = 0; i < WR_PLUGIN_VERSION_LEN / 2; i++)
    snprintf(out + 2 * i, 3, "%02x", d[i]);
}

/* Fill out->file and out->version from the file at `path`: best effort, a
 * plugin that loads is not refused for them. */
static void identify(const char *path, wr_plugin *out) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  struct stat st;
  if (fd < 0) return;
  size_t len;
  unsigned char *buf = fstat(fd, &st) == 0 ? slurp(fd, &st, &len) : NULL;
  if (buf) {
    out->file = file_of(&st);
    version_of(buf, len, out->version);
  }
  free(buf);
  close(fd);
}

int wr_plugin_load(const char *path, wr_plugin *out, char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  identify(path, out);
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

int wr_plugin_reload(const char *path, const wr_plugin *cur, wr_plugin *out,
                     char *err, size_t errlen) {
  struct stat st;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0 || fstat(fd, &st) != 0) {
    snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    if (fd >= 0) close(fd);
    return WARREN_PLUGIN_OPEN;
  }
  wr_plugin_file f = file_of(&st);
  if (!memcmp(&f, &cur->file, sizeof f)) {
    close(fd);
    return WARREN_NOT_FOUND;
  }
  size_t len = 0;
  unsigned char *buf = slurp(fd, &st, &len);
  close(fd);
  if (!buf) {
    snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
    return WARREN_PLUGIN_OPEN;
  }
  /* A private copy: its own path, so dlopen maps it anew; unlinked once
   * mapped (the supervisor and the workers it forks keep the mapping). */
  const char *dir = getenv("TMPDIR");
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s/warren-plugin-XXXXXX.so",
           dir && *dir ? dir : "/tmp");
  int tfd = mkstemps(tmp, 3);
  size_t put = 0;
  while (tfd >= 0 && put < len) {
    ssize_t w = write(tfd, buf + put, len - put);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) break;
    put += (size_t)w;
  }
  int saved = errno;
  if (tfd < 0 || put < len || close(tfd) != 0) {
    snprintf(err, errlen, "%s: cannot copy to %s: %s", path, tmp,
             strerror(tfd < 0 || put < len ? saved : errno));
    if (tfd >= 0) unlink(tmp);
    free(buf);
    return WARREN_PLUGIN_OPEN;
  }
  char why[3072];
  int rc = wr_plugin_load(tmp, out, why, sizeof why);
  unlink(tmp);
  if (rc != WARREN_OK) {
    /* The reason names the copy; say which file it was. */
    const char *r = strncmp(why, tmp, strlen(tmp)) ? why : why + strlen(tmp);
    snprintf(err, errlen, "%s%s%s", path, r == why ? ": " : "", r);
  } else {
    out->file = f;
    version_of(buf, len, out->version);
  }
  free(buf);
  return rc;
}

void wr_plugin_unload(wr_plugin *p) {
  if (p && p->dl) dlclose(p->dl);
  if (p) memset(p, 0, sizeof *p);
}
