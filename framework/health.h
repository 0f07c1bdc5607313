/*
 * The HTTP side (libmicrohttpd, its own thread): probes, status, metrics.
 *   GET /healthz                 200 while the event loop turns (it ticks
 *                                at least once a second); 503 if it has not
 *                                for 10 s. Does not depend on the broker: an
 *                                outage must not get workers restarted.
 *   GET /readyz, /api/health/ready  200 when connected with every consumer
 *                                registered, copies going through, the
 *                                self-check passing and not draining; 503
 *                                with the reason otherwise.
 *   GET /api/health, /status/workers, /api/v1/tasks/queues, /metrics, and
 *       /api/admin/workers/status (bearer token; only when configured):
 *                                rendered from the latest snapshot
 *                                (report.h, prom.h).
 *   GET /api/events              the job events as Server-Sent Events
 *                                (live.h), a suspended connection woken
 *                                by the events' sender; behind the admin
 *                                token when one is configured.
 *   GET /, /dashboard            a static page (dashboard/index.html,
 *                                built in) that reads the routes above.
 * The thread reads two atomics the loop writes and the snapshots the loop
 * publishes (snapshot.h): no lock is held by the loop while a client is
 * served. docs/monitoring.md lists every endpoint with a sample.
 */
#ifndef WR_HEALTH_H
#define WR_HEALTH_H

#include <stdatomic.h>
#include <stddef.h>
#include <sys/socket.h>

#include "report.h"
#include "snapshot.h"

typedef struct wr_health_state {
  atomic_int ready;
  atomic_int why;       /* WR_READY or a WR_NR_* */
  atomic_llong tick_ms; /* wr_now_ms() of the loop's last turn */
} wr_health_state;

typedef struct wr_health wr_health;
struct wr_live;
struct wr_cfg;

typedef struct wr_health_opts {
  const char *listen; /* IPv4 or IPv6 address, or host name */
  int port;
  wr_health_state *st;
  wr_snap_store *snaps;     /* NULL: probes only */
  const char *admin_token;  /* NULL: no admin route; else it also guards
                               /api/events */
  struct wr_live *live;     /* GET /api/events (live.h); NULL: 404 */
  const struct wr_cfg *cfg; /* handler names (the stream's filter) and
                               health.dashboard; NULL: neither */
} wr_health_opts;

/* Whether header[0..len) (an Authorization header's value) carries the
 * bearer token: the scheme in any case, one or more spaces, the token,
 * compared in constant time. */
int wr_health_bearer_ok(const char *header, size_t len, const char *token);

/* Serve. Returns NULL (and says why in err) on failure. */
wr_health *wr_health_start(const wr_health_opts *o, char *err, size_t errlen);
void wr_health_stop(wr_health *h);

#endif
