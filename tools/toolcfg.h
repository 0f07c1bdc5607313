/*
 * The start `warren dlq`, `warren events` and `warren revoke` share: the
 * worker's config, with the connection options and WARREN_BROKER_URL laid
 * over its broker section (args.h), so a tool reaches the broker the
 * worker does unless told otherwise.
 */
#ifndef WR_TOOLCFG_H
#define WR_TOOLCFG_H

#include "../config/cfg.h"
#include "args.h"

/* Load the config at path and lay conn and WARREN_BROKER_URL over its
 * broker section (a password read goes to store, which must outlive the
 * connection; wipe it after). 0 with *cfg (free it with wr_cfg_free), or
 * the exit status, 2, with the error printed. */
int wr_toolcfg_load(const char *prog, const char *path,
                    const wr_args_conn *conn, wr_args_store *store,
                    wr_cfg **cfg);

#endif
