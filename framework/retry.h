/*
 * Retries and dead letters: topology names, the retry policy, and the
 * headers Warren reads from and writes to jobs. docs/retries.md explains
 * the design; docs/retries.md lists the names and headers (keep them in step).
 *
 * Topology of a handler consuming queue Q:
 *   Q              work queue; x-dead-letter-exchange = Q.dlx, so what the
 *                  broker dead-letters itself (quorum delivery limit, TTL)
 *                  lands in the DLQ too
 *   Q.retry.<ms>   one per backoff step: x-message-ttl 2 x <ms> (the cap;
 *                  each copy carries its jittered expiration),
 *                  dead-lettering to the default exchange with key Q
 *   Q.dlx          fanout exchange for dead letters
 *   Q.dlq          the dead-letter queue, bound to Q.dlx
 */
#ifndef WR_RETRY_H
#define WR_RETRY_H

#include <amqp.h>
#include <stddef.h>
#include <stdint.h>

#include "cfg.h"
#include "conn.h"
#include "names.h"

/* Headers are not "x-" prefixed: RabbitMQ 3.13+ may drop x-* headers a
 * client publishes. */
#define WR_H_ATTEMPT "warren-attempt"             /* int: attempt to come */
#define WR_H_CRASHES "warren-crashes"             /* int: deaths in a row */
#define WR_H_FIRST_FAILURE "warren-first-failure" /* int: unix ms */
#define WR_H_LAST_FAILURE "warren-last-failure"   /* int: unix ms */
#define WR_H_LAST_ERROR "warren-last-error"       /* string */
#define WR_H_REASON "warren-dead-reason"          /* string, see below */
#define WR_H_HANDLER "warren-dead-handler"        /* string */
#define WR_H_ATTEMPTS "warren-dead-attempts"      /* int: attempts made */
#define WR_H_HOST "warren-dead-host"              /* string: worker host */
#define WR_H_QUEUE "warren-dead-queue"            /* string: work queue */
#define WR_H_REPLAYS "warren-replays"             /* int: DLQ replays */
#define WR_H_COPY WR_CONN_COPY_HEADER           /* int: which copy (settle.h) */
#define WR_H_SIG_CHECK "warren-signature-check" /* string: sign.h */

/* How a run of a job ended, as the policy sees it. */
typedef enum wr_outcome {
  WR_OUT_FAILED,     /* handler said retry */
  WR_OUT_REJECTED,   /* handler said reject */
  WR_OUT_CRASHED,    /* its worker died */
  WR_OUT_TIMEOUT,    /* it ran past the handler's timeout */
  WR_OUT_MALFORMED,  /* it could not be given to a handler */
  WR_OUT_ACKED,      /* handler said ack (never passed to the policy) */
  WR_OUT_TOO_LARGE,  /* its body is over the handler's max_body */
  WR_OUT_SIGNATURE,  /* its signature did not verify (sigcheck.h) */
  WR_OUT_REVOKED,    /* revoked by `warren revoke` before or while it ran */
  WR_OUT_DELIVERIES, /* delivered max_deliveries times with no outcome
                        recorded: it may kill the supervisor (intake.c) */
} wr_outcome;

/* Reasons written to WR_H_REASON. */
const char *wr_retry_reason(wr_outcome o);
/* Whether s is a reason wr_retry_reason writes (warren dlq --reason). */
int wr_retry_reason_known(const char *s);

/* What Warren knows of a job from its headers (and of its runs from its
 * memory, runs.h). */
typedef struct wr_job_meta {
  uint32_t attempt;      /* this attempt, 1-based: recorded + unrecorded */
  uint32_t crashes;      /* consecutive crashes before this attempt */
  int64_t first_failure; /* unix ms, 0 if it never failed */
  uint32_t recorded;     /* warren-attempt (1 if absent): the attempt its
                            copy was made for */
  uint32_t unrecorded;   /* runs of this copy that started and whose
                            outcome Warren could not record (runs.h) */
  uint32_t deliveries;   /* a quorum queue's x-delivery-count: returns of
                            this copy to its queue, run or not */
  uint32_t waited;       /* of those, returns by a lost connection before
                            any handler started it, as this process saw
                            them (runs.h) */
} wr_job_meta;

/* Counts above this in a job's headers are absurd: the job is malformed. */
#define WR_RETRY_MAX_COUNT 1000000

/* Read the meta of a delivery: attempt = recorded = warren-attempt.
 * broker_counts: x-delivery-count was set by the broker (a quorum queue's
 * redelivery) and goes to m->deliveries; it is no attempt count, as the
 * broker raises it for prefetched copies no handler started, too.
 * Otherwise a publisher wrote it and it is ignored. Returns 0, or -1 with
 * why set when the counts are there but unusable (a malformed job). */
int wr_retry_meta(const amqp_basic_properties_t *p, int broker_counts,
                  wr_job_meta *m, char *why, size_t whylen);

/* Add runs that started and were never recorded (runs.h) to the attempt,
 * saturating at WR_RETRY_MAX_COUNT. */
void wr_retry_add_unrecorded(wr_job_meta *m, uint32_t runs);

/* Whether this delivery is past the policy's max_deliveries: the copy was
 * delivered that often and no run of it was ever recorded (a job that
 * kills the supervisor, or a flapping connection): dead-letter it. */
int wr_retry_over_deliveries(const wr_retry_cfg *p, const wr_job_meta *m);

typedef struct wr_decision {
  int dead;           /* 1: dead-letter; 0: retry after delay_ms */
  const char *reason; /* when dead */
  int step;           /* backoff index when retrying */
  int64_t delay_ms;   /* jittered delay when retrying */
} wr_decision;

/* Decide what happens after outcome o of attempt m->attempt. rnd is a
 * uniform number in [0,1) for the jitter. */
wr_decision wr_retry_decide(const wr_retry_cfg *p, const wr_job_meta *m,
                            wr_outcome o, double rnd);

/* The queues' names are in names.h. */
/* TTL of a retry queue, in ms: twice its step, the cap of any jitter. */
int64_t wr_retry_queue_ttl(const wr_retry_cfg *p, int step);

/*
 * Headers for a republished copy: the original entries without Warren's
 * own bookkeeping (the WR_H_* above but WR_H_REPLAYS, and
 * x-delivery-count) and without the keys of `add`, then `add`. Every
 * other header is kept, application headers named "warren-..." too.
 * Entries are written to store (cap entries; orig's count plus n_add is
 * always enough); the returned table points into store and into the
 * strings of orig and add, so it is valid while they are.
 */
amqp_table_t wr_retry_headers(const amqp_table_t *orig,
                              amqp_table_entry_t *store, size_t cap,
                              const amqp_table_entry_t *add, size_t n_add);

/* Convenience constructors for table entries. */
amqp_table_entry_t wr_entry_int(const char *key, int64_t v);
amqp_table_entry_t wr_entry_str(const char *key, const char *v);

#endif
