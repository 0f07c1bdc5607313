/*
 * Liveness and readiness over HTTP (libmicrohttpd, its own thread).
 *   GET /healthz  200 while the event loop turns (it ticks at least once a
 *                 second); 503 if it has not for 10 s. Does not depend on
 *                 the broker: an outage must not get workers restarted.
 *   GET /readyz   200 when connected with every consumer registered and
 *                 not draining; 503 otherwise.
 * The HTTP thread only reads two atomics the loop writes: no lock is
 * shared with the hot path. The status and metrics endpoints of a later
 * issue extend this module.
 */
#ifndef WR_HEALTH_H
#define WR_HEALTH_H

#include <stdatomic.h>
#include <stddef.h>

typedef struct wr_health_state {
  atomic_int ready;
  atomic_llong tick_ms; /* wr_now_ms() of the loop's last turn */
} wr_health_state;

typedef struct wr_health wr_health;

/* Serve on listen:port. Returns NULL (and says why in err) on failure. */
wr_health *wr_health_start(const char *listen, int port, wr_health_state *st,
                           char *err, size_t errlen);
void wr_health_stop(wr_health *h);

#endif
