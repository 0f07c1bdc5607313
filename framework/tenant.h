/*
 * Per-tenant concurrency (a handler's tenant_header, tenant_concurrency
 * and tenant_hold; docs/features.md, "Per-tenant concurrency").
 *
 * A handler with tenant_header runs at most tenant_concurrency jobs of one
 * tenant at once in this Warren process, across its workers: a job counts
 * from when it is handed to a worker (queued to it or running) until its
 * attempt is over. A job whose tenant is at its limit is held: it leaves
 * its handler's waiting line for its tenant's line (ledger state
 * WR_JOB_HELD), so the jobs behind it go to the free workers, and comes
 * back, oldest first, when one of its tenant's jobs ends.
 *
 * Held jobs are unacked and fill the consumer's prefetch window. RabbitMQ
 * fixes a consumer's window when it consumes (a later basic.qos changes
 * only consumers made after it), so when half the window is held the
 * supervisor consumes again under a new consumer tag and cancels the old
 * consumer: the jobs the old one delivered stay unacked on the channel
 * but no longer count against any window, and the new consumer brings a
 * whole window of other jobs. tenant_hold bounds how many jobs may be held
 * beyond the prefetch that way.
 *
 * This module keeps the tenants (a small hash table of the tenants with
 * jobs waiting, held or working), their lines of held jobs and the
 * decisions; it learns of every move of a job through the ledger's watch
 * (ledger.h) and moves nothing itself. Not thread-safe: the loop thread
 * owns it.
 */
#ifndef WR_TENANT_H
#define WR_TENANT_H

#include <amqp.h>
#include <stddef.h>
#include <stdint.h>

#include "job.h"
#include "ledger.h"

#define WR_TENANT_MAX_LEN 255 /* bytes of a tenant's name (a header value) */

/* One tenant with jobs waiting, held or working. */
typedef struct wr_tenant {
  char *key;        /* the tenant's name, malloc'd; "" for jobs without one */
  uint32_t len;     /* bytes of key */
  uint32_t hash;    /* of key */
  uint32_t working; /* its jobs handed to workers */
  uint32_t refs;    /* its jobs waiting, held or working; 0: slot unused */
  uint32_t chain;   /* next in its bucket or on the free list (index + 1) */
  uint8_t ready;    /* its index is on the ready ring */
  wr_jobq held;     /* its jobs over the limit, oldest first */
} wr_tenant;

/* One handler's tenants. */
typedef struct wr_tenants {
  int on;             /* the handler has tenant_header */
  const char *header; /* the header that names a job's tenant */
  uint32_t limit;     /* tenant_concurrency */
  uint32_t hold;      /* tenant_hold: held jobs beyond the prefetch */
  uint32_t prefetch, concurrency;
  const char *tag;  /* the handler's current consumer tag (supervisor) */
  wr_tenant *t;     /* cap entries */
  uint32_t cap;     /* the handler's job slots: never more tenants */
  uint32_t *bucket; /* nbucket chains (index + 1; 0: empty) */
  uint32_t nbucket; /* a power of two */
  uint32_t free;    /* free entries (index + 1; 0: none) */
  uint32_t n;       /* entries in use: tenants with jobs in hand */
  uint32_t *ring;   /* tenants that may have a held job ready to run */
  uint32_t ring_at, ring_n;
  uint32_t epoch;     /* the consumer's incarnation: one more per widening */
  size_t held;        /* jobs held now */
  size_t held_window; /* of them, delivered by the current consumer */
  unsigned long held_total; /* jobs ever held */
  unsigned long widened;    /* times the window was widened */
  unsigned long untagged;   /* jobs without a valid tenant (none, not a
                               string, too long, not UTF-8) */
  unsigned long overflow;   /* jobs let through because the table was
                               full (cannot happen within the slots) */
} wr_tenants;

/* The supervisor's tenants: one wr_tenants per handler (on = 0 for those
 * without tenant_header). The ledger's watch context. */
typedef struct wr_tenant_set {
  wr_tenants *h;
  size_t nh;
} wr_tenant_set;

/* A handler's tenants: header names the tenant; limit 1..; hold 0..;
 * cap the handler's job slots. WARREN_OK or WARREN_NOMEM (then nothing is
 * allocated). */
int wr_tenants_init(wr_tenants *t, const char *header, uint32_t limit,
                    uint32_t hold, uint32_t prefetch, uint32_t concurrency,
                    uint32_t cap);
void wr_tenants_free(wr_tenants *t);

/* The tenant a message names: 1 and *out (pointing into p) when its
 * header `name` is a string (or byte array) of 1..WR_TENANT_MAX_LEN bytes
 * of valid UTF-8; else 0 (no tenant: such jobs share the bucket ""). */
int wr_tenant_of(const amqp_basic_properties_t *p, const char *name,
                 amqp_bytes_t *out);

/* The ledger's watch (ledger.h), ctx a wr_tenant_set: a job is given its
 * tenant when admitted (RECEIVED -> WAITING), counted while working, put
 * on its tenant's line while held, and lets its tenant go when its
 * attempt is over. */
void wr_tenants_moved(void *ctx, wr_job *j, wr_job_state from, wr_job_state to);

/* May job j (waiting) go to a worker now: its tenant is under the limit
 * and has no job held before it. Pure. */
int wr_tenants_may_run(const wr_tenants *t, const wr_job *j);

/* A held job whose tenant is under its limit again (oldest of its
 * tenant), still held; NULL when none. Tenants are served in the order
 * they got room. */
wr_job *wr_tenants_ready(wr_tenants *t);

/* Whether the consumer should be renewed to widen the window: half its
 * prefetch (at least one job) is held (wanted), and in_hand, the
 * handler's jobs held by the ledger now (any state), leaves room for a
 * whole new window within the slots, prefetch + concurrency + hold
 * (fits). Pure; fits is asked only when wanted, as in_hand is counted. */
int wr_tenants_widen_wanted(const wr_tenants *t);
int wr_tenants_widen_fits(const wr_tenants *t, size_t in_hand);

/* The consumer is being renewed: the next epoch (for its tag). */
uint32_t wr_tenants_widen(wr_tenants *t);

/* Every held job, tenant by tenant: the first, and the one after j (read
 * it before moving j). */
wr_job *wr_tenants_held_first(const wr_tenants *t);
wr_job *wr_tenants_held_next(const wr_tenants *t, const wr_job *j);

/* The tenant of job j ("" for none), for messages; NULL when j has none. */
const wr_tenant *wr_tenants_of_job(const wr_tenants *t, const wr_job *j);

#endif
