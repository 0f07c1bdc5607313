/*
 * Settling a job when an attempt is over: ack it (coalesced, acks.h), or
 * carry it on by publishing a copy to its retry queue or its dead-letter
 * exchange, under publisher confirms. The original stays unacked until the
 * broker confirms its copy, so a crash in between duplicates the job at
 * worst and never loses it.
 *
 * Each copy carries the header WR_CONN_COPY_HEADER (conn.h) with its
 * confirm sequence, so a basic.return is tied to exactly the copy that
 * came back, even when one confirm covers several copies. A refused copy
 * (nacked or returned) leaves its original unacked; it is requeued after
 * a backoff while the handler's topology is declared again, and the
 * handler reports not ready until a copy goes through.
 */
#ifndef WR_SETTLE_H
#define WR_SETTLE_H

#include <stddef.h>
#include <stdint.h>

#include "acks.h"
#include "backoff.h"
#include "conn.h"
#include "intake.h"
#include "job.h"
#include "ledger.h"
#include "lifecycle.h"
#include "retry.h"
#include "session.h"
#include "sigcheck.h"

struct wr_cfg;
struct wr_handler_cfg;

/* Requeueing the original of a refused copy backs off from WR_REFUSAL_MIN_S
 * up to WR_REFUSAL_MAX_S (per handler, reset by a copy that goes through);
 * a failed re-declare is tried again after WR_REFUSAL_MAX_S. */
#define WR_REFUSAL_MIN_S 1.0
#define WR_REFUSAL_MAX_S 30.0

#define WR_SETTLE_KNOWN 32 /* exchanges follow-ups went to, remembered */

/* What settling works with and does not own: the supervisor's, lent for
 * settling's whole life (wr_settle_init to wr_settle_free). Loop thread
 * only, as all of settling. */
typedef struct wr_settle_env {
  const struct wr_cfg *cfg;  /* the handlers, and the topology it declares */
  wr_session *session;       /* publishes, acks and nacks go through it */
  wr_ledger *ledger;         /* the only way a job changes state */
  wr_observers *obs;         /* told of each settled job (lifecycle.h) */
  const wr_sigcheck *sig;    /* countersigns copies, signs follow-ups */
  wr_intake *intake;         /* told of an original requeued after it ran */
  const char *host;          /* written on dead letters */
  amqp_channel_t declare_ch; /* declares topology, checks exchanges */
} wr_settle_env;

/* One handler's settling, owned by wr_settle. */
typedef struct wr_settle_handler {
  const struct wr_handler_cfg *cfg;
  amqp_channel_t ch;  /* its consumer's channel: acks, nacks, late answers */
  wr_acks acks;       /* finished jobs whose ack is not sent yet (acks.h) */
  wr_backoff refusal; /* before requeueing an original whose copy was
                         refused */
  int refusing;       /* its retry/dead-letter copies are being refused:
                         the worker is not ready (health.h) */
} wr_settle_handler;

typedef struct wr_settle {
  wr_settle_env env;
  wr_settle_handler *h; /* one per handler, in the config's order */
  size_t nh;
  /* Exchanges follow-ups may be published to (checked once per
   * connection, as a publish to a missing one closes the channel);
   * replaced round-robin. */
  char known[WR_SETTLE_KNOWN][256];
  unsigned nknown;
  double redeclare_at; /* re-declare the topology then (0: not needed) */
  int warned_reply;    /* a result's reply queue was missing: said once */
} wr_settle;

/* Set st up for env's handlers (handler i consumes on channel i + 1).
 * WARREN_OK or WARREN_NOMEM (then nothing is held). */
int wr_settle_init(wr_settle *st, const wr_settle_env *env);
void wr_settle_free(wr_settle *st);

/* Results (docs/results.md): the header that says how the job ended, and
 * its values; RabbitMQ's direct reply-to pseudo-queue. */
#define WR_H_OUTCOME "warren-outcome"
#define WR_OUTCOME_ACK "ack"
#define WR_OUTCOME_DEAD "dead-lettered"
#define WR_DIRECT_REPLY_TO "amq.rabbitmq.reply-to"

/* The decisions on confirms, pure (tests/test_settle.c): */
/* job awaits the confirms of the n publishes from sequence first on (at
 * most 320: follow-ups, a result, or a copy and its error result). */
void wr_settle_expect(wr_job *job, uint64_t first, size_t n);
/* Clear the publishes of job that confirm ev (an ack or nack, multiple
 * or not) covers; 1 when any was. A refused error result of a dead letter
 * is best effort: it sets job->no_reply = 2 and is not counted. */
int wr_settle_cover(wr_job *job, const wr_pub_event *ev);
/* Whether job still awaits a confirm. */
int wr_settle_awaited(const wr_job *job);

/* The job carries a reply_to: its result (or error result) goes there. */
int wr_settle_wants_reply(const wr_job *job);

/* Handler h's attempt at job is over with outcome o (WR_OUT_ACKED, or a
 * failure and its text). */
void wr_settle_finish(wr_settle *st, size_t h, wr_job *job, wr_outcome o,
                      const char *err);

/* A confirm, nack or return on the publishing channel. */
void wr_settle_published(wr_settle *st, const wr_pub_event *ev);

/* A job acked by its handler that published follow-ups (extras.h, parsed
 * in job->extras) or that carries a reply_to: publish them and its
 * result; the job is settled as acked once the broker confirmed every
 * one, or fails this attempt if one is refused or a follow-up is
 * returned (handler.h says why). A result whose reply queue is missing
 * is counted, not a failure. */
void wr_settle_followups(wr_settle *st, size_t h, wr_job *job);

/* Send handler h's waiting acks now: a multiple ack below its lowest open
 * tag (ledger.h), single ones above it. */
void wr_settle_flush(wr_settle *st, size_t h);

/* Send the acks of every handler whose oldest waits over delay seconds. */
void wr_settle_flush_overdue(wr_settle *st, double now, double delay);

/* Handler h has finished jobs whose ack is not sent yet. */
int wr_settle_unacked(const wr_settle *st, size_t h);

/* A handler's copies are being refused (the worker is not ready). */
int wr_settle_refusing(const wr_settle *st);

/* Declare the whole topology again on the declare channel, while
 * consuming (an operator may have deleted a queue). WARREN_OK, or the
 * error with err set; a timeout has then lost the connection. */
int wr_settle_redeclare(wr_settle *st, char *err, size_t errlen);

/* Requeue parked jobs that are due (all of them while draining),
 * re-declare topology when asked. Returns when it is next due (0:
 * nothing). */
double wr_settle_tick(wr_settle *st, double now, int draining);

/* Nothing awaits a confirm or a requeue. */
int wr_settle_idle(const wr_settle *st);

/* The connection is gone: forget the acks waiting (told to the observers
 * as dropped) and let every held original go (the broker requeues them;
 * a copy that did arrive makes a duplicate, not a loss). */
void wr_settle_forget(wr_settle *st);

#endif
