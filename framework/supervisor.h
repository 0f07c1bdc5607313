/*
 * The supervisor: the one thread that owns the AMQP connection. It reads
 * deliveries (session.c), admits them (intake.c), queues them to the
 * worker processes of their handler (pool.c) or runs them in process
 * (inproc.c), coalesces acks (acks.c), settles failures by republishing to
 * retry and dead-letter queues under publisher confirms (settle.c), and
 * drains on SIGTERM/SIGINT. Each turn of its loop (loop.c) reads as those
 * steps; see docs/threading.md for why it is one thread and no locks.
 *
 * Jobs are pipelined: a worker may hold up to `depth` jobs queued behind
 * the one it runs (docs/threading.md says when and how they are taken
 * back), so a job can wait behind a slow one; `timeout` bounds that wait.
 */
#ifndef WR_SUPERVISOR_H
#define WR_SUPERVISOR_H

#include <stddef.h>

#include "../config/cfg.h"
#include "stats.h"

typedef struct wr_sup wr_sup;

/* Load every plugin and start every worker process; signals are read
 * through the loop from here on. cfg must outlive the supervisor. */
int wr_sup_create(wr_cfg *cfg, wr_sup **out, char *err, size_t errlen);

/* Exit status after worker.exit_after_refused_logins refused logins. */
#define WR_SUP_EXIT_LOGIN 3

/* Run until SIGTERM/SIGINT and a drain (0), a failed loop (1), or the
 * broker refusing the login too often (WR_SUP_EXIT_LOGIN). */
int wr_sup_run(wr_sup *s);

/* 1 while connected with every consumer registered, its topology
 * complete, and not draining. */
int wr_sup_ready(const wr_sup *s);

const wr_handler_stats *wr_sup_stats(const wr_sup *s, size_t handler);

void wr_sup_destroy(wr_sup *s);

/* `warren --burst`: stop, as SIGTERM would, once every queue it consumes
 * is empty and nothing is held (docs/deploying.md, "Batch runs"). Before
 * wr_sup_run. */
void wr_sup_set_burst(wr_sup *s, int on);

#endif
