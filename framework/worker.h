/*
 * The worker process: runs one handler's callbacks, one job at a time.
 *
 * Started by pool.c with fork(); talks to the supervisor over `fd` only
 * (ipc.h). It never touches the AMQP connection. If it crashes or hangs,
 * only the job it was running is affected: the supervisor knows which.
 */
#ifndef WR_WORKER_H
#define WR_WORKER_H

#include <libconfig.h>
#include <stddef.h>
#include <stdint.h>

#include <warren/handler.h>

/* Exit codes a worker uses on purpose (anything else is a crash). */
#define WR_WORKER_EXIT_OK 0
#define WR_WORKER_EXIT_INIT 3     /* init() refused; INIT_FAILED was sent */
#define WR_WORKER_EXIT_PROTOCOL 4 /* bad frame from the supervisor */

struct wr_ipc_shm;
struct warren_headers;

#include "ipc.h"

struct wr_arena;

/* Never returns. `settings` may be NULL; results go to `shm` (ipc.h);
 * large bodies are read in place from `arena` (may be NULL). */
_Noreturn void wr_worker_main(int fd, struct wr_ipc_shm *shm,
                              struct wr_arena *arena, const char *handler_name,
                              const warren_handler *def,
                              const config_setting_t *settings);

/*
 * Try a plugin before any worker runs it (reload): fork a process that
 * runs init() and, if it succeeds, shutdown(), then exits. Waits up to
 * timeout_s. Returns WARREN_OK, or WARREN_PLUGIN_INIT with the reason in
 * why. The child is reaped here.
 */
int wr_worker_probe(const char *handler_name, const warren_handler *def,
                    const config_setting_t *settings, double timeout_s,
                    char *why, size_t whylen);

/*
 * The same calls for a handler run inside the supervisor (isolation =
 * false): init once, then one wr_worker_run per job. The error text of the
 * last run is in *err (not NUL-terminated), valid until the next run.
 */
int wr_worker_init(const char *handler_name, const warren_handler *def,
                   const config_setting_t *settings, void **state);
int32_t wr_worker_run(const char *handler_name, const warren_handler *def,
                      void *state, const warren_message *msg, const char **err,
                      size_t *err_len);

/* The largest result set_result takes (the handler's max_result), for
 * the runs that follow in this process. */
void wr_worker_set_max_result(size_t max);

struct wr_extras_buf;
/* What the handler added to the job of the last run (extras.h): span
 * attributes and events, follow-ups. Valid until the next run. */
const struct wr_extras_buf *wr_worker_extras(void);

/* The trace of the job about to run, as the handler sees it (the
 * warren_message members of ABI 1.1). traced 0: not traced. */
typedef struct wr_worker_trace {
  char trace_id[33];
  char span_id[17];
  char traceparent[56];
  int sampled; /* span calls are recorded */
} wr_worker_trace;
void wr_worker_trace_set(wr_worker_trace *t, const uint8_t trace_id[16],
                         const uint8_t span_id[8], uint8_t flags, int traced);

/*
 * The one builder of the warren_message a handler sees, in a worker and in
 * process alike: f[i] is field i (ipc.h order), len[i] bytes; the string
 * fields are NUL-terminated at f[i][len[i]]. hdrs is filled from the
 * headers blob (headers.h) and points into it; m gives the rest (its
 * trace is kept by the caller while msg is used). Returns 0, or -1 when
 * the blob is malformed.
 */
typedef struct wr_worker_meta {
  uint64_t delivery_tag;
  uint32_t attempt, redelivered, crashes;
  uint32_t present; /* WARREN_MESSAGE_HAS_* */
  const wr_worker_trace *trace;
} wr_worker_meta;

int wr_worker_message(warren_message *msg, const char *const f[WR_JOB_NFIELDS],
                      const uint64_t len[WR_JOB_NFIELDS],
                      struct warren_headers *hdrs, const wr_worker_meta *m);

#endif
