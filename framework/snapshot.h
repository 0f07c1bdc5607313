/*
 * The status snapshot: everything the HTTP endpoints show, copied by the
 * loop thread into one immutable block (at most every
 * health.snapshot_interval, and at once when readiness changes), then
 * published. HTTP threads take a reference to the latest block under a
 * mutex held only for a pointer swap, render from it without any lock,
 * and drop the reference: the loop never waits for a client, and a
 * client never sees a half-updated state. docs/threading.md.
 */
#ifndef WR_SNAPSHOT_H
#define WR_SNAPSHOT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "metrics.h"
#include "stats.h"

#define WR_SNAP_ID_MAX 256 /* AMQP short strings are at most 255 bytes */

typedef struct wr_snap_worker {
  int pid;                  /* 0 while down */
  const char *state;        /* down, starting, idle, busy, exiting */
  char job[WR_SNAP_ID_MAX]; /* message id of the running job ("" none) */
  int running;              /* a job is running */
  double job_age_s;         /* how long it has run */
  double uptime_s;          /* since the process was forked */
  unsigned long jobs;       /* results since it started */
  unsigned long deaths;     /* unplanned exits of this slot */
  char version[16];         /* the plugin it runs (plugin.h) */
} wr_snap_worker;

/* A queue as the last passive declare saw it. */
typedef struct wr_snap_queue {
  long long messages;  /* ready; -1: not known (yet, or it is missing) */
  long long consumers; /* -1: not known */
  int64_t at_ms;       /* unix ms of the probe; 0: never */
} wr_snap_queue;

typedef struct wr_snap_handler {
  const char *name, *queue; /* the config's strings (outlive the HTTP side) */
  int prefetch, concurrency, isolated, quorum, durable;
  int running;                   /* consuming now */
  wr_handler_stats st;           /* counters (stats.h) */
  wr_handler_metrics m;          /* histograms, dead letters by reason, ... */
  long pending;                  /* delivered, waiting for a worker */
  long in_workers;               /* queued to or running in a worker */
  long running_jobs;             /* running in a worker now */
  long awaiting_copy;            /* retry/dead-letter copy not confirmed yet */
  long in_flight;                /* all of the above: unacked, held by Warren */
  wr_snap_queue work, dlq;       /* the work queue and its dead-letter queue */
  long long retrying;            /* in its retry queues; -1: not known */
  unsigned long restarts;        /* worker restarts since start */
  char version[16];              /* the plugin new jobs run (plugin.h) */
  unsigned long reloads;         /* new plugins a reload took */
  unsigned long reload_failures; /* new plugins a reload refused */
  int tenant_limit;              /* tenant_concurrency; 0: no tenant limits */
  long tenant_held;              /* jobs held for their tenant now (tenant.h) */
  long tenants; /* tenants with jobs waiting, held or working */
  unsigned long tenant_held_total; /* jobs ever held for their tenant */
  unsigned long tenant_widened;    /* consumers renewed to widen the window */
  unsigned long tenant_untagged;   /* jobs without a valid tenant */
  int alive;                       /* worker processes up (1 in process) */
  int nworkers;
  wr_snap_worker *w;
  struct {
    int on;               /* the handler has a circuit breaker */
    int state;            /* wr_breaker_state: 0 closed, 1 open, 2 half-open */
    const char *reason;   /* why it last changed (wr_breaker_why_name) */
    char message[200];    /* the same in words */
    int64_t since_ms;     /* unix ms of that change */
    int64_t trials_at_ms; /* open: when the trials begin */
    uint64_t opened;      /* times it opened */
    uint64_t returned;    /* prefetched jobs given back unstarted */
    int trials_passed, trial_jobs;
  } breaker;
} wr_snap_handler;

typedef struct wr_snap {
  int refs;                  /* under the store's mutex */
  int64_t at_ms, started_ms; /* unix ms: taken, and the worker's start */
  double uptime_s;
  int connected, ready, draining;
  int blocked;           /* a resource alarm blocks publishing */
  char blocked_why[128]; /* the broker's reason */
  double blocked_s;      /* seconds blocked in all */
  uint64_t blocked_n;    /* times blocked */
  int not_ready;         /* why not ready (health.h), 0 when ready */
  int check_ok;          /* the last self-check passed */
  char check_why[256];   /* why it failed */
  int64_t check_at_ms;   /* 0: not run yet */
  const char *host, *vhost;
  int port;
  char node[128], version[64], product[64]; /* server properties */
  double rtt_ms; /* the last probe's round trip; < 0: none yet */
  int64_t rtt_at_ms;
  int tracing; /* spans are exported; then trace holds the counters */
  struct {
    uint64_t invalid_context, sampled, not_sampled;
    uint64_t exported, dropped_full, dropped_failed, export_errors, queued;
  } trace;
  int events; /* lifecycle events are on; then ev holds the counters */
  struct {
    uint64_t published, messages, dropped_full, dropped_broker;
    int connected;
  } ev;
  int stream; /* GET /api/events is served; then st holds its counters */
  struct {
    uint64_t clients, accepted, refused, dropped, sent;
  } st;
  size_t nh;
  wr_snap_handler h[]; /* then every handler's workers */
} wr_snap;

/* The latest snapshot, shared between the loop and the HTTP threads. */
typedef struct wr_snap_store {
  pthread_mutex_t mu;
  wr_snap *cur;
} wr_snap_store;

void wr_snap_store_init(wr_snap_store *st);
/* Frees the last snapshot; no reader may hold one any more. */
void wr_snap_store_free(wr_snap_store *st);
/* Make s (allocated by wr_snap_alloc) the latest; the store owns it. */
void wr_snap_publish(wr_snap_store *st, wr_snap *s);
/* A reference to the latest (NULL before the first), valid until
 * wr_snap_release. Any thread. */
wr_snap *wr_snap_acquire(wr_snap_store *st);
void wr_snap_release(wr_snap_store *st, wr_snap *s);

/* A zeroed snapshot with room for nh handlers and nworkers workers in
 * all; each handler's `w` is set from `workers[i]` counts. NULL when out
 * of memory. */
wr_snap *wr_snap_alloc(size_t nh, const int *workers);

#endif
