/*
 * isolation = false: a handler run inside the supervisor, one job after
 * the other, with no crash isolation (a crash or hang of the handler takes
 * the supervisor with it; the broker then redelivers its unacked jobs).
 * For trusted, fast handlers. It runs a job and says how it ended; the
 * supervisor settles it.
 */
#ifndef WR_INPROC_H
#define WR_INPROC_H

#include <libconfig.h>
#include <stddef.h>
#include <stdint.h>

#include <warren/handler.h>

#include "job.h"

typedef struct wr_inproc {
  const char *name;          /* the handler's, for its log lines */
  const warren_handler *def; /* the plugin's (plugin.h) */
  void *state;               /* what its init() made */
  int ready;                 /* its init() succeeded */
  int warned_headers;        /* a job's headers passed a limit */
  size_t max_result;         /* handlers.max_result */
} wr_inproc;

/* init() of handler `name` (def, its settings group), in this process.
 * 0 or -1. */
int wr_inproc_init(wr_inproc *ip, const char *name, const warren_handler *def,
                   const config_setting_t *settings, size_t max_result);

/* Run job: its fields are made NUL-terminated and its headers flattened,
 * as a worker would receive them. Returns the handler's verdict (a
 * warren_result), or WR_IPC_BAD_BODY when the body is not the one its
 * signature covers (job->signed_ok). *err, *err_len: its set_error text,
 * valid until the next run. What the handler added (its span data,
 * follow-ups, result) is in job->xbuf. */
int32_t wr_inproc_run(wr_inproc *ip, wr_job *job, const char **err,
                      size_t *err_len);

/* shutdown() of the handler, if its init() succeeded. */
void wr_inproc_shutdown(wr_inproc *ip);

#endif
