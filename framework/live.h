/*
 * The live stream of lifecycle events (GET /api/events, docs/monitoring.md):
 * the fan-out from the events sender thread (events.c, the one producer)
 * to the HTTP clients (health.c) that stream them as Server-Sent Events.
 *
 * The producer never waits for a client: each client has a bounded buffer
 * of its own, and a client whose buffer would overflow is dropped (and
 * counted), never waited for. One mutex guards the clients; it is held
 * to copy an event into the buffers of the clients whose filter matches,
 * or to copy bytes out to one client, never across I/O.
 *
 * Knows nothing of HTTP: a client is parked (the HTTP side suspends its
 * connection) when it has read everything, and woken when there is more;
 * both callbacks run under the mutex, so a wake never precedes its park.
 */
#ifndef WR_LIVE_H
#define WR_LIVE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define WR_LIVE_ID_MAX \
  128 /* bytes of a job id filter; events.h keeps as many */

typedef struct wr_live wr_live;
typedef struct wr_live_client wr_live_client;

typedef struct wr_live_opts {
  int max_clients;  /* streams at once */
  size_t buffer;    /* bytes waiting for one client, at most */
  double keepalive; /* seconds between comments on an idle stream */
} wr_live_opts;

/* Which events a client gets. */
typedef struct wr_live_filter {
  long handler; /* its index, -1: every handler */
  int has_job;  /* only the events whose job_id is job[0..job_len) */
  size_t job_len;
  char job[WR_LIVE_ID_MAX];
} wr_live_filter;

typedef struct wr_live_counters {
  uint64_t clients;  /* streaming now */
  uint64_t accepted; /* streams opened since start */
  uint64_t refused;  /* refused: max_clients were streaming */
  uint64_t dropped;  /* dropped: their buffer was full */
  uint64_t sent;     /* events put in clients' buffers */
} wr_live_counters;

/* Called under the hub's mutex: park when the client has read all, wake
 * once when more came (or it ends). arg is the join's. */
typedef void (*wr_live_fn)(void *arg);

/* NULL on out of memory. */
wr_live *wr_live_create(const wr_live_opts *o);
/* No client may be joined any more (wr_live_close, then the HTTP side
 * stopped). NULL is ignored. */
void wr_live_destroy(wr_live *l);

/* The number of clients, for a lock-free "does anyone listen" (a relaxed
 * load of it is the whole cost of the stream when nobody does). */
const atomic_int *wr_live_listeners(const wr_live *l);

/* The producer (one thread at a time). An event's JSON text json[0..len)
 * of handler `handler` and job id[0..idlen) (id NULL: the job has none). */
void wr_live_publish(wr_live *l, size_t handler, const char *id, size_t idlen,
                     const char *json, size_t len);
/* A comment to every client that had nothing for `keepalive` seconds
 * (monotonic now), so proxies keep the stream. */
void wr_live_tick(wr_live *l, double now);

/* The HTTP side. 0 and *out; -1: max_clients streaming (counted); -2:
 * closed or out of memory. The client starts with a `retry:` line. */
int wr_live_join(wr_live *l, const wr_live_filter *f, wr_live_fn park,
                 wr_live_fn wake, void *arg, wr_live_client **out);
/* Up to max bytes of the stream into buf: their number; 0: nothing now
 * (park was called, wake follows); -1: the stream ends (dropped, or the
 * hub closed). */
ssize_t wr_live_read(wr_live_client *c, char *buf, size_t max);
/* The client is gone; c is freed. */
void wr_live_leave(wr_live_client *c);
/* Every stream ends (each parked client is woken, its next read is -1)
 * and no new one is accepted. */
void wr_live_close(wr_live *l);

void wr_live_counters_get(wr_live *l, wr_live_counters *out);

/* Parse one query value of /api/events: 0, or -1 with why (a static
 * text). A job id: 1 to WR_LIVE_ID_MAX bytes of valid UTF-8 without
 * control characters. */
int wr_live_valid_job(const char *v, size_t len, const char **why);

#endif
