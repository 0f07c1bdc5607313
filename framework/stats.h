/*
 * Per-handler counters: the first subscriber of the job's lifecycle
 * (lifecycle.h). Updated only on the loop thread.
 */
#ifndef WR_STATS_H
#define WR_STATS_H

#include "lifecycle.h"

typedef struct wr_handler_stats {
  unsigned long delivered; /* basic.deliver received */
  unsigned long acked;     /* handler said ack */
  unsigned long failed;    /* handler said retry */
  unsigned long rejected;  /* handler said reject */
  unsigned long lost;      /* worker died while running it */
  unsigned long timeouts;  /* ran past the timeout */
  unsigned long malformed; /* never given to the handler */
  unsigned long too_large; /* over max_body, never given to the handler */
  unsigned long signature; /* signature refused, never given to the handler */
  unsigned long revoked;   /* revoked (warren revoke), dead-lettered */
  unsigned long retried;   /* copies confirmed into a retry queue */
  unsigned long dead;      /* copies confirmed into the dead-letter queue */
  unsigned long republish_failed; /* copies the broker refused */
  unsigned long dropped;      /* finished, but their connection closed first */
  unsigned long cancels;      /* consumer cancelled by the broker, resumed */
  unsigned long results;      /* results sent to a reply_to, confirmed */
  unsigned long results_lost; /* results whose reply queue did not exist */
} wr_handler_stats;

/* Subscribe with ctx = an array of wr_handler_stats, one per handler. */
extern const wr_job_events wr_stats_events;

/* The closing summary line of handler `name`. */
void wr_stats_log(const char *name, const wr_handler_stats *s);

#endif
