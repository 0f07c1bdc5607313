#include "secret.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *kind(mode_t m) {
  return S_ISFIFO(m)   ? "a FIFO"
         : S_ISDIR(m)  ? "a directory"
         : S_ISCHR(m)  ? "a character device"
         : S_ISBLK(m)  ? "a block device"
         : S_ISSOCK(m) ? "a socket"
                       : "not a plain file";
}

/* An open descriptor of the regular file at path, or -1 (err set).
 * O_NONBLOCK: opening a FIFO for reading would otherwise wait for a
 * writer; it changes nothing for a regular file. */
static int open_regular(const char *path, char *err, size_t errlen) {
  int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0) {
    snprintf(err, errlen, "cannot read '%s': %s", path, strerror(errno));
    if (fd >= 0) close(fd);
    return -1;
  }
  if (!S_ISREG(st.st_mode)) {
    snprintf(err, errlen, "'%s' is not a regular file (%s)", path,
             kind(st.st_mode));
    close(fd);
    return -1;
  }
  return fd;
}

int wr_secret_check(const char *path, char *err, size_t errlen) {
  int fd = open_regular(path, err, errlen);
  if (fd < 0) return -1;
  close(fd);
  return 0;
}

int wr_secret_read(const char *path, void *buf, size_t max, size_t *len,
                   char *err, size_t errlen) {
  size_t cap = max + 2; /* a secret of max bytes and "\r\n" */
  *len = 0;
  int fd = open_regular(path, err, errlen);
  if (fd < 0) return -1;
  unsigned char *b = buf;
  size_t n = 0;
  ssize_t r = 1;
  while (n < cap && (r = read(fd, b + n, cap - n)) != 0) {
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) break;
    n += (size_t)r;
  }
  int e = errno;
  unsigned char more;
  int over = r > 0 && n == cap && read(fd, &more, 1) == 1;
  close(fd);
  if (r < 0) {
    OPENSSL_cleanse(buf, cap);
    snprintf(err, errlen, "cannot read '%s': %s", path, strerror(e));
    return -1;
  }
  /* A secret written with echo or an editor ends in a newline that is
   * not part of it. */
  while (n > 0 && (b[n - 1] == '\n' || b[n - 1] == '\r')) n--;
  if (over || n > max) {
    OPENSSL_cleanse(buf, cap);
    snprintf(err, errlen, "'%s' is longer than %zu bytes", path, max);
    return -1;
  }
  *len = n;
  return 0;
}
