/*
 * Exponential backoff with jitter: reconnecting to the broker and
 * restarting dead workers. Jitter keeps a fleet that failed together from
 * retrying in lock-step.
 */
#ifndef WR_BACKOFF_H
#define WR_BACKOFF_H

typedef struct wr_backoff {
  double min, max; /* seconds */
  double jitter;   /* each delay is scaled by 1 +- jitter, never past max */
  double next;     /* the delay before jitter of the next failure */
} wr_backoff;

void wr_backoff_init(wr_backoff *b, double min, double max, double jitter);
/* The delay to wait after one more failure (then the next one doubles,
 * up to max), jittered and never above max. rnd is uniform in [0, 1). */
double wr_backoff_fail(wr_backoff *b, double rnd);
/* Success: the next failure waits min again. */
void wr_backoff_reset(wr_backoff *b);

/* A uniform number in [0, 1), from a per-process seeded generator. */
double wr_rand01(void);

#endif
