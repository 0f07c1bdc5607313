/*
 * Reading a secret (a signing key, a password, a bearer token) or
 * checking a file OpenSSL will read (TLS CA, certificate, key): one
 * helper for config/cfg.c, common/keyring.c and common/args.c.
 * The file is opened without blocking and must be a regular file: a FIFO,
 * a device or a directory in its place is refused with a clear error
 * instead of hanging the start, --check-config or a SIGHUP reload.
 */
#ifndef WR_SECRET_H
#define WR_SECRET_H

#include <stddef.h>

/* Read the regular file at path into buf (room for max + 2 bytes),
 * without its trailing newlines (\n, \r): at most max bytes remain. 0
 * with the length in *len; -1 with err saying why ("cannot read 'P':
 * <errno>", "'P' is not a regular file (a FIFO)", "'P' is longer than MAX
 * bytes"), buf then wiped. Reads with open/read, not stdio, so no buffer
 * keeps a copy. Any byte may be in it, NUL included: a caller that needs
 * text checks. */
int wr_secret_read(const char *path, void *buf, size_t max, size_t *len,
                   char *err, size_t errlen);

/* Whether the file at path can be opened for reading without blocking and
 * is a regular file: 0, or -1 with err as above. */
int wr_secret_check(const char *path, char *err, size_t errlen);

#endif
