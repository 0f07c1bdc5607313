#include "toolcfg.h"

#include <stdio.h>
#include <stdlib.h>

#include <warren/status.h>

int wr_toolcfg_load(const char *prog, const char *path,
                    const wr_args_conn *conn, wr_args_store *store,
                    wr_cfg **cfg) {
  char err[8192];
  if (wr_cfg_load(path, cfg, err, sizeof err) != WARREN_OK) {
    fprintf(stderr, "%s\n", err);
    return 2;
  }
  if (wr_args_conn_apply(conn, getenv(WR_ARGS_URL_ENV), &(*cfg)->broker, store,
                         err, sizeof err) == 0)
    return 0;
  wr_cfg_free(*cfg);
  *cfg = NULL;
  return wr_args_refuse(prog, err);
}
