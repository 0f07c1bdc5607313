/*
 * The supervisor's own state: the handlers' runtime and what it owns and
 * lends to its step modules. Each step module keeps its part in its own
 * struct and gets what it works with lent at its init (settle.h's
 * wr_settle_env, for one); only supervisor.c includes this header.
 */
#ifndef WR_SUP_PRIVATE_H
#define WR_SUP_PRIVATE_H

#include "acks.h"
#include "arena.h"
#include "backoff.h"
#include "breaker.h"
#include "health.h"
#include "inproc.h"
#include "intake.h"
#include "job.h"
#include "ledger.h"
#include "lifecycle.h"
#include "loop.h"
#include "plugin.h"
#include "pool.h"
#include "revoked.h"
#include "session.h"
#include "settle.h"
#include "sigcheck.h"
#include "supervisor.h"
#include "tenant.h"

typedef struct wr_handler_rt {
  const wr_handler_cfg *cfg;
  struct wr_sup *sup;
  size_t index;
  wr_plugin plugin;
  wr_pool pool;
  amqp_channel_t ch;
  char tag[200];          /* consumer tag */
  wr_inproc inproc;       /* isolation = false: the handler in process */
  struct child_ref *refs; /* its workers' sockets as the loop watches them */
  wr_arena *arena;        /* its large bodies (arena.h); NULL: none */
  double resume_at;       /* consume again then: the broker cancelled it */
  wr_backoff resume;      /* between attempts to consume again */
  wr_breaker *breaker;    /* its circuit breaker (breaker.h); NULL: none */
  uint64_t breaker_seen;  /* the breaker's changes carried out so far */
  int consuming;          /* with a breaker: the prefetch its consumer was
                             started with; 0: none (the breaker is open) */
  int planned;            /* the prefetch the set-up under way consumes
                             with (on_plan, session.h) */
  int64_t consumed_ms;    /* unix ms the breaker last consumed again */
  unsigned long reloads;  /* new plugins taken by a reload (SIGHUP) */
  unsigned long reload_failures; /* new plugins a reload refused */
} wr_handler_rt;

struct wr_sup {
  wr_cfg *cfg;
  wr_loop *loop;
  wr_handler_rt *h;
  size_t nh;
  wr_ledger ledger; /* the job slots and where each job is (ledger.h) */
  wr_session session;
  wr_settle settle;
  wr_intake intake;
  wr_sigcheck sig; /* signed jobs: keys and policies (sigcheck.h) */
  wr_observers obs;
  wr_handler_stats *stats; /* one per handler; the first observer */
  struct wr_spans *spans;  /* tracing (spans.h); NULL: off */
  wr_health_state hs;      /* read by the health thread */
  wr_health *health;
  struct wr_monitor *monitor; /* probes, snapshots, self-check (monitor.h) */
  struct wr_monitor_handler *watch; /* per handler: what the self-check is
                                       told (monitor.h) */
  struct wr_notify *notify; /* the service manager (notify.h); NULL: none */
  int draining;
  int stopping;     /* the loop is over: workers are being stopped */
  int burst;        /* --burst: stop once the queues are empty */
  int burst_empty;  /* checks in a row that found them empty */
  double burst_due; /* when to look again */
  double drain_deadline;
  amqp_channel_t declare_ch; /* re-declaring topology while running */
  char host[64];
  struct wr_events *events; /* lifecycle events (events.h); NULL: off */
  struct wr_live *live;     /* GET /api/events (live.h); NULL: off */
  wr_revoked revoked;    /* revoked ids and the control channel (revoked.h) */
  wr_breakers breakers;  /* the handlers' circuit breakers; n 0: none */
  wr_tenant_set tenants; /* per-tenant limits (tenant.h); h NULL: none */
};

/* Give a job's slot back (its envelope is freed): the ledger's move to
 * WR_JOB_FREE. */
static inline void wr_sup_release(wr_sup *s, wr_job *job) {
  wr_ledger_move(&s->ledger, job, WR_JOB_FREE);
}

/* Handler h's waiting line (ledger.h). */
static inline const wr_jobq *wr_sup_waiting(const wr_sup *s, size_t h) {
  return wr_ledger_line(&s->ledger, WR_JOB_WAITING, h);
}

/* Handler h's tenants when it limits them (tenant.h), else NULL. */
static inline wr_tenants *wr_sup_tenants(const wr_sup *s, size_t h) {
  return s->tenants.h && s->tenants.h[h].on ? &s->tenants.h[h] : NULL;
}

/* A handler's verdict on job (a warren_result; err: its set_error text). */
void wr_sup_done(wr_sup *s, wr_handler_rt *h, wr_job *job, int result,
                 const char *err, size_t err_len);

#endif
