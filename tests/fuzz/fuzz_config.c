/* Fuzz target: the config loader (libconfig text, then validation). */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "cfg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char path[] = "/tmp/warren-fuzz-cfg-XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) return 0;
  if (write(fd, data, size) != (ssize_t)size) size = 0;
  close(fd);
  wr_cfg *cfg;
  char err[4096];
  if (wr_cfg_load(path, &cfg, err, sizeof err) == 0) wr_cfg_free(cfg);
  unlink(path);
  return 0;
}
