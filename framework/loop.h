/*
 * The supervisor's event loop: the one thread that owns the AMQP
 * connection. It reads deliveries, hands each to an idle worker process
 * of its handler (pool.c), acks when the worker answers, reconnects with
 * backoff when the broker goes away, and drains on SIGTERM/SIGINT.
 * See docs/threading.md for why it is one thread and no locks.
 */
#ifndef WR_LOOP_H
#define WR_LOOP_H

#include <stddef.h>

#include "../config/cfg.h"

typedef struct wr_loop wr_loop;

/* Per-handler counters, updated only by the loop thread. */
typedef struct wr_handler_stats {
  unsigned long delivered; /* basic.deliver received */
  unsigned long acked;     /* handler said ack */
  unsigned long failed;    /* handler said retry */
  unsigned long rejected;  /* handler said reject */
  unsigned long lost;      /* worker died while running it */
  unsigned long timeouts;  /* ran past the timeout */
  unsigned long malformed; /* never given to the handler */
  unsigned long retried;   /* copies confirmed into a retry queue */
  unsigned long dead;      /* copies confirmed into the dead-letter queue */
  unsigned long republish_failed; /* copies the broker refused */
  unsigned long dropped;   /* result arrived after its connection closed */
} wr_handler_stats;

/* Load every plugin and start every worker process. Blocks SIGTERM,
 * SIGINT and SIGCHLD in the calling thread (they are read via signalfd).
 * cfg must outlive the loop. */
int wr_loop_create(wr_cfg *cfg, wr_loop **out, char *err, size_t errlen);

/* Run until SIGTERM/SIGINT and a drain. Returns 0 after a clean stop. */
int wr_loop_run(wr_loop *l);

/* 1 while connected with every consumer registered and not draining. */
int wr_loop_ready(wr_loop *l);

const wr_handler_stats *wr_loop_stats(const wr_loop *l, size_t handler);

void wr_loop_destroy(wr_loop *l);

#endif
