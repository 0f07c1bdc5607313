#include "supervisor.h"

#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <warren/status.h>

#include "clock.h"
#include "control.h"
#include "events.h"
#include "live.h"
#include "extras.h"
#include "inproc.h"
#include "joblog.h"
#include "keyring.h"
#include "log.h"
#include "monitor.h"
#include "notify.h"
#include "spans.h"
#include "sup_private.h"
#include "topology.h"
#include "utf8.h"
#include "worker.h"

#define WORKER_START_S 30.0 /* time init() gets at start */
#define WORKER_STOP_S 5.0   /* time idle workers get to run shutdown() */
#define ACK_DELAY_S 0.001   /* longest a finished job waits for its ack */
#define SPAN_FLUSH_S 5.0    /* time queued spans get to reach the collector */
#define EVENTS_FLUSH_S 3.0  /* time queued events get to reach the broker */

/* A worker's socket as the loop watches it. */
typedef struct child_ref {
  wr_pool *pool;
  wr_child *child;
  int fd;       /* the fd being watched, -1: none */
  short events; /* what it is watched for */
} child_ref;

/* ---- jobs and acks ---------------------------------------------------- */

/* Where a delivery's body is read to: its handler's arena when large
 * (arena.h), else the heap. */
static void *on_body(void *ctx, amqp_envelope_t *env, size_t len) {
  wr_sup *s = ctx;
  wr_job *job = wr_job_of(env);
  job->body_off = WR_ARENA_NONE;
  wr_arena *a = env->channel >= 1 && env->channel <= s->nh
                    ? s->h[env->channel - 1].arena
                    : NULL;
  void *p = a && len >= WR_ARENA_MIN_BODY
                ? wr_arena_alloc(a, len, &job->body_off)
                : NULL;
  return p ? p : malloc(len);
}

static void on_release(void *ctx, amqp_envelope_t *env) {
  wr_sup *s = ctx;
  wr_job *job = wr_job_of(env);
  if (job->body_off != WR_ARENA_NONE)
    wr_arena_free(s->h[env->channel - 1].arena, job->body_off,
                  env->message.body.len);
  else
    free(env->message.body.bytes);
  job->body_off = WR_ARENA_NONE;
  env->message.body = amqp_empty_bytes;
}

/* What a job holds, freed when the ledger takes its slot back (the
 * ledger then wipes the slot: nothing of this job, its verified
 * signature, start time or trace, passes to the next). */
static void release_job(void *ctx, wr_job *job) {
  on_release(ctx, &job->env);
  if (job->extras) {
    wr_extras_release(job->extras);
    free(job->extras);
  }
  free(job->xbuf);
  free(job->late_body);
  free(job->late_err);
  wr_deliver_free(&job->env);
}

/* What the handler added to the job (extras.h): parsed into job->extras
 * for its span and follow-ups. Malformed, it is dropped, and said once. */
static void take_extras(const wr_handler_rt *h, wr_job *job) {
  wr_extras *x = malloc(sizeof *x);
  if (x && wr_extras_parse(job->xbuf, job->xlen, x) == 0) {
    job->extras = x;
    return;
  }
  free(x);
  wr_error(
      "handler %s: what the handler added to job %llu (span data, follow-up "
      "jobs) is malformed or too large for memory; dropped",
      h->cfg->name, (unsigned long long)job->id);
}

void wr_sup_done(wr_sup *s, wr_handler_rt *h, wr_job *job, int result,
                 const char *err, size_t err_len) {
  if (job->xbuf && !job->extras) take_extras(h, job);
  if (result == WARREN_ACK) {
    if ((job->extras && job->extras->nfollow) || wr_settle_wants_reply(job))
      wr_settle_followups(&s->settle, h->index, job);
    else
      wr_settle_finish(&s->settle, h->index, job, WR_OUT_ACKED, NULL);
    return;
  }
  char text[WR_IPC_MAX_ERROR + 64];
  if (result == WR_IPC_BAD_BODY) {
    wr_sigcheck_body_refused(job, text, sizeof text);
    wr_settle_finish(&s->settle, h->index, job, WR_OUT_SIGNATURE, text);
    return;
  }
  /* Only failures carry a text: formatting it for every ack cost 14% of
   * the supervisor's instructions per job (bench/run callgrind). */
  if (err_len)
    snprintf(text, sizeof text, "%.*s", (int)err_len, err);
  else
    snprintf(text, sizeof text, "handler returned %s",
             result == WARREN_REJECT ? "reject" : "retry");
  wr_settle_finish(&s->settle, h->index, job,
                   result == WARREN_REJECT ? WR_OUT_REJECTED : WR_OUT_FAILED,
                   text);
}

/* ---- the pool's events -------------------------------------------------- */

static void on_done(void *ctx, wr_pool *p, wr_job *job, int result,
                    const char *err, size_t err_len) {
  wr_handler_rt *h = ctx;
  (void)p;
  wr_sup_done(h->sup, h, job, result, err, err_len);
}

static void on_lost(void *ctx, wr_pool *p, wr_job *job, const char *why,
                    int timed_out) {
  wr_handler_rt *h = ctx;
  (void)p;
  if (h->sup->stopping) {
    /* Killed by a forced stop, not a crash: the job goes back to the
     * queue unacked, and no copy is made (one or the other, never both). */
    WR_NOTIFY(&h->sup->obs, dropped, h->index, 1);
    wr_warn(
        "handler %s: a job was still running at the forced stop; the "
        "broker delivers it again",
        h->cfg->name);
    wr_sup_release(h->sup, job);
    return;
  }
  if (job->revoked) { /* stopped by a revoke: not a crash (revoked.h) */
    wr_settle_finish(&h->sup->settle, h->index, job, WR_OUT_REVOKED,
                     "stopped while running by warren revoke --terminate");
    return;
  }
  char err[192];
  snprintf(err, sizeof err, timed_out ? "job %s" : "worker %s", why);
  wr_settle_finish(&h->sup->settle, h->index, job,
                   timed_out ? WR_OUT_TIMEOUT : WR_OUT_CRASHED, err);
}

/* Queued to a worker that never started it: back to the front of the
 * line, no attempt spent. */
static void on_unstarted(void *ctx, wr_pool *p, wr_job *job) {
  wr_handler_rt *h = ctx;
  (void)p;
  wr_sup *s = h->sup;
  if (job->gen != s->session.gen || !s->session.conn) {
    /* Its delivery died with its connection: the broker has it again. */
    WR_NOTIFY(&s->obs, dropped, h->index, 1);
    wr_sup_release(s, job);
    return;
  }
  job->started = 0; /* it never ran: no run, no duration */
  wr_ledger_wait_front(&s->ledger, job);
}

static void on_started(void *ctx, wr_pool *p, wr_job *job) {
  wr_handler_rt *h = ctx;
  (void)p;
  WR_NOTIFY(&h->sup->obs, started, h->index, job);
}

static const wr_pool_events pool_events = {on_done, on_lost, on_unstarted,
                                           on_started};
/* Without a subscriber of `started` the pool need not say it per job. */
static const wr_pool_events pool_events_quiet = {on_done, on_lost, on_unstarted,
                                                 NULL};

static const wr_pool_events *pool_events_for(const wr_observers *obs) {
  for (size_t i = 0; i < obs->n; i++)
    if (obs->o[i].ev->started) return &pool_events;
  return &pool_events_quiet;
}

/* ---- the session's events ----------------------------------------------- */

static int breaker_prefetch(const wr_handler_rt *h);
static void breaker_consume(wr_sup *s, wr_handler_rt *h);

/* Loop thread, before a set-up: each consumer's prefetch as its breaker
 * allows now (an open breaker stays open across a reconnect: none). */
static void on_plan(void *ctx) {
  wr_sup *s = ctx;
  for (size_t i = 0; i < s->nh; i++)
    s->h[i].planned = breaker_prefetch(&s->h[i]);
}

/* The set-up's thread (session.h): the configuration, the handlers'
 * channels and tags, and what on_plan fixed. */
static int on_setup(void *ctx, amqp_connection_state_t c, char *err,
                    size_t errlen) {
  wr_sup *s = ctx;
  /* Declared on the channel that then publishes (session.c puts it in
   * confirm mode): every channel rabbitmq-c has used costs its buffer
   * recycling on every delivery. */
  int rc = wr_topology_declare(c, s->cfg, s->session.pub_ch, err, errlen);
  for (size_t i = 0; rc == WARREN_OK && i < s->nh; i++)
    rc = wr_topology_consume(c, s->h[i].ch, s->h[i].cfg, s->h[i].planned,
                             s->h[i].tag, err, errlen);
  if (rc == WARREN_OK) rc = wr_revoked_setup(&s->revoked, c, err, errlen);
  return rc;
}

static void on_connected(void *ctx) {
  wr_sup *s = ctx;
  for (size_t i = 0; i < s->nh; i++) {
    s->h[i].consuming = s->h[i].planned;
    /* A breaker that changed during the set-up is carried out now. */
    if (s->h[i].breaker) breaker_consume(s, &s->h[i]);
  }
  for (size_t i = 0; i < s->nh; i++) s->h[i].resume_at = 0;
  wr_info("consuming %zu queue(s)", s->nh);
  wr_notify_ready(s->notify, s->nh);
}

/* Forget the deliveries no worker has started; unacked, they go back to
 * the queue with the connection. */
static void drop_pending(wr_sup *s) {
  for (size_t i = 0; i < s->nh; i++) {
    wr_job *j;
    while ((j = wr_sup_waiting(s, i)->head)) wr_sup_release(s, j);
    const wr_tenants *t = wr_sup_tenants(s, i); /* held for their tenant */
    while (t && (j = wr_tenants_held_first(t))) wr_sup_release(s, j);
  }
}

/* The connection was lost (the session's generation is already the next
 * one): every job of it that a handler started and whose outcome was not
 * recorded (running, being settled, awaiting its copy's confirm, parked)
 * is noted, so that its redelivery counts the run, and every admitted job
 * no handler started, so that its return costs nothing (runs.h). A job
 * still in the intake has no meta to carry yet. */
static void note_unrecorded(wr_sup *s) {
  uint64_t lost = s->session.gen - 1;
  for (size_t i = 0; i < s->ledger.n; i++) {
    const wr_job *j = &s->ledger.slots[i];
    if (j->state != WR_JOB_FREE && j->state != WR_JOB_RECEIVED &&
        j->gen == lost)
      wr_intake_unrecorded(&s->intake, j);
  }
}

static void on_lost_connection(void *ctx) {
  wr_sup *s = ctx;
  note_unrecorded(s); /* before anything of it is released */
  atomic_store(&s->hs.ready, 0);
  atomic_store(&s->hs.why, WR_NR_BROKER);
  drop_pending(s);
  for (size_t i = 0; i < s->nh; i++) {
    wr_handler_rt *h = &s->h[i];
    /* Jobs queued to workers and not started would run for nothing (their
     * acks cannot count) and run again when redelivered: only the running
     * ones are left to finish. */
    int r = h->cfg->isolated ? wr_pool_revoke_unstarted(&h->pool) : 0;
    if (r)
      wr_info(
          "handler %s: %d job(s) queued to workers taken back; the "
          "broker delivers them again",
          h->cfg->name, r);
  }
  wr_settle_forget(&s->settle);
}

/* Does a job queued to one of h's workers, or running there, match? */
static int pool_holds(const wr_revoked *r, const wr_pool *p, double now) {
  for (int i = 0; i < p->n; i++) {
    const wr_child *c = &p->children[i];
    for (int k = 0; k < c->len; k++)
      if (wr_revoked_has(r, c->q[(c->head + k) % WR_POOL_MAX_DEPTH], now))
        return 1;
  }
  return 0;
}

/* ---- revoke ------------------------------------------------------------ */

/* The jobs of the revoked set that h holds: dead-letter those not started; stop
 * the running ones when told to. Returns how many were settled or
 * stopped. */
static int revoke_held(wr_sup *s, wr_handler_rt *h, int terminate, double now) {
  wr_revoked *r = &s->revoked;
  int n = 0;
  char id[4 * WR_CONTROL_MAX_ID + 1];
  /* Queued to workers and not started: taken back (the claim in ipc.h
   * decides against a worker about to start one), onto the waiting line. */
  if (h->cfg->isolated && pool_holds(r, &h->pool, now)) {
    int back = wr_pool_revoke_unstarted(&h->pool);
    if (back)
      wr_debug("handler %s: %d job(s) queued to workers taken back",
               h->cfg->name, back);
  }
  wr_job *j = wr_sup_waiting(s, h->index)->head;
  while (j) {
    wr_job *next = j->next;
    if (wr_revoked_has(r, j, now)) {
      wr_info("handler %s: job %s revoked before it started; dead-lettered",
              h->cfg->name, wr_revoked_id(j, id, sizeof id));
      wr_settle_finish(&s->settle, h->index, j, WR_OUT_REVOKED,
                       "revoked by warren revoke before it started");
      n++;
    }
    j = next;
  }
  /* Held for their tenant (tenant.h): not started either. */
  const wr_tenants *t = wr_sup_tenants(s, h->index);
  for (j = t ? wr_tenants_held_first(t) : NULL; j;) {
    wr_job *next = wr_tenants_held_next(t, j);
    if (wr_revoked_has(r, j, now)) {
      wr_info(
          "handler %s: job %s revoked while held for its tenant; "
          "dead-lettered",
          h->cfg->name, wr_revoked_id(j, id, sizeof id));
      wr_settle_finish(&s->settle, h->index, j, WR_OUT_REVOKED,
                       "revoked by warren revoke before it started");
      n++;
    }
    j = next;
  }
  for (int i = 0; h->cfg->isolated && i < h->pool.n; i++) {
    wr_child *c = &h->pool.children[i];
    wr_job *run = c->len > c->unsent ? wr_pool_running(c) : NULL;
    if (!run || !wr_revoked_has(r, run, now)) continue;
    wr_revoked_id(run, id, sizeof id);
    if (!terminate) {
      wr_info(
          "handler %s: job %s is running in worker %d; it goes on (a revoke "
          "with terminate would stop it)",
          h->cfg->name, id, (int)c->pid);
      continue;
    }
    run->revoked = 1;
    if (wr_pool_terminate(&h->pool, c)) {
      wr_warn("handler %s: job %s is running in worker %d; stopping it",
              h->cfg->name, id, (int)c->pid);
      n++;
    } else {
      run->revoked = 0; /* it has just finished */
    }
  }
  return n;
}

/* A control message (revoked.h): revoke the jobs held when it applies. */
static void control_message(wr_sup *s, const wr_job *job) {
  int terminate;
  if (!wr_revoked_delivery(&s->revoked, s->sig.ring, s->cfg->signing.window,
                           &job->env.message, &terminate))
    return;
  double now = wr_now();
  int done = 0;
  for (size_t i = 0; i < s->nh; i++)
    done += revoke_held(s, &s->h[i], terminate, now);
  if (done) wr_info("revoke: %d held job(s) revoked", done);
}

static wr_job *on_slot(void *ctx) {
  return wr_ledger_slot(&((wr_sup *)ctx)->ledger);
}

static void on_delivery(void *ctx, wr_job *job) {
  wr_sup *s = ctx;
  amqp_channel_t ch = job->env.channel;
  /* Handler channels are 1..nh; the others' jobs belong to no handler. */
  size_t hi = ch >= 1 && ch <= s->nh ? (size_t)ch - 1 : s->nh;
  wr_ledger_take(&s->ledger, (uint16_t)hi);
  if (ch == s->revoked.ch) { /* a control message */
    control_message(s, job);
    wr_sup_release(s, job);
    return;
  }
  if (ch < 1 || ch > s->nh) {
    wr_error("delivery on unexpected channel %u; requeued", ch);
    uint64_t tag = job->env.delivery_tag;
    wr_sup_release(s, job);
    wr_session_nack(&s->session, ch, tag, 1);
    return;
  }
  wr_handler_rt *h = &s->h[hi];
  WR_NOTIFY(&s->obs, received, h->index, job);
  wr_outcome o;
  char why[160];
  if (wr_intake_decide(&s->intake, h->index, job, &o, why, sizeof why))
    wr_settle_finish(&s->settle, h->index, job, o, why);
  else
    wr_ledger_move(&s->ledger, job, WR_JOB_WAITING);
}

static void on_undecodable(void *ctx, amqp_channel_t ch, uint64_t tag,
                           const char *why) {
  wr_sup *s = ctx;
  if (ch == s->revoked.ch) { /* consumed without acks: nothing to nack */
    wr_warn("revoke: a control message with undecodable headers ignored (%s)",
            why);
    return;
  }
  const char *name = ch >= 1 && ch <= s->nh ? s->h[ch - 1].cfg->name : "-";
  /* Nothing of it can be republished: the broker dead-letters the message
   * itself, intact, to the work queue's dead-letter exchange (Q.dlx). */
  wr_error(
      "handler %s: delivery tag %llu has a content header that cannot be "
      "decoded (%s); rejected to the dead-letter queue as it is",
      name, (unsigned long long)tag, why);
  if (ch >= 1 && ch <= s->nh) s->stats[ch - 1].malformed++;
  wr_session_nack(&s->session, ch, tag, 0);
}

static void on_published(void *ctx, const wr_pub_event *ev) {
  wr_sup *s = ctx;
  wr_settle_published(&s->settle, ev);
}

static void on_cancelled(void *ctx, amqp_channel_t ch) {
  wr_sup *s = ctx;
  if (ch == s->revoked.ch) {
    s->revoked.listening = 0;
    wr_warn(
        "revoke: the broker cancelled the control consumer (its queue "
        "was deleted); revokes reach this process again after a "
        "reconnect");
    return;
  }
  if (ch < 1 || ch > s->nh) return;
  wr_handler_rt *h = &s->h[ch - 1];
  if (h->breaker && !h->consuming) return; /* its breaker cancelled it */
  s->stats[h->index].cancels++;
  wr_warn(
      "handler %s: the broker cancelled the consumer of queue %s (deleted, "
      "its leader moved, or a consumer timeout); consuming it again",
      h->cfg->name, h->cfg->queue);
  h->resume_at = wr_now();
}

/* Consume h's queue again after a cancel: declare the topology (the queue
 * may have been deleted), then basic.consume on the channel, still open,
 * so the jobs it holds keep their tags. */
static void resume_consumer(wr_sup *s, wr_handler_rt *h, double now) {
  char err[512];
  if (h->breaker && !h->consuming) { /* its open breaker cancelled it */
    h->resume_at = 0;
    return;
  }
  int rc = wr_settle_redeclare(&s->settle, err, sizeof err);
  if (rc == WARREN_OK) {
    rc = wr_topology_resume(s->session.conn, h->ch, h->cfg, h->tag, err,
                            sizeof err);
    if (rc == WARREN_OK) {
      h->resume_at = 0;
      wr_backoff_reset(&h->resume);
      wr_info("handler %s: consuming queue %s again", h->cfg->name,
              h->cfg->queue);
      return;
    }
    /* The consume failed on the handler's channel, which the broker then
     * closed with its deliveries: start over with a fresh connection. */
    wr_session_lost(&s->session, err, 0);
    return;
  }
  if (rc == WARREN_BROKER_TIMEOUT) return; /* the connection is lost */
  double d = wr_backoff_fail(&h->resume, wr_rand01());
  wr_error("handler %s: cannot consume queue %s again: %s; retrying in %.1f s",
           h->cfg->name, h->cfg->queue, err, d);
  h->resume_at = now + d;
}

static const char *on_channel_name(void *ctx, amqp_channel_t ch) {
  wr_sup *s = ctx;
  if (ch >= 1 && ch <= s->nh) return s->h[ch - 1].cfg->name;
  if (ch == s->revoked.ch) return "(control)";
  return ch == s->session.pub_ch ? "(republishing)" : "-";
}

static const wr_session_events session_events = {
    on_plan,        on_setup,     on_connected, on_lost_connection,
    on_slot,        on_body,      on_release,   on_delivery,
    on_undecodable, on_published, on_cancelled, on_channel_name,
};

/* ---- the circuit breaker (breaker.h) ------------------------------------ */

/* Whether h's breaker is open: no job of h may start. */
static int held(const wr_handler_rt *h) {
  return h->breaker && h->breaker->state == WR_BREAKER_OPEN;
}

/* The prefetch h's consumer is to have: 0 (none) while its breaker is
 * open, trial_jobs (at most the prefetch, for which the job slots are
 * sized) while half-open. */
static int breaker_prefetch(const wr_handler_rt *h) {
  if (!h->breaker) return h->cfg->prefetch;
  const wr_breaker *b = h->breaker;
  int trial = b->cfg->trial_jobs < h->cfg->prefetch ? b->cfg->trial_jobs
                                                    : h->cfg->prefetch;
  return b->state == WR_BREAKER_OPEN        ? 0
         : b->state == WR_BREAKER_HALF_OPEN ? trial
                                            : h->cfg->prefetch;
}

/* Prefetched jobs of h that no handler started go back to the queue:
 * nacked with requeue, no attempt spent, and noted as returned unstarted
 * so that a quorum queue's x-delivery-count they raise does not count
 * towards max_deliveries (runs.h). Those queued to its workers are taken
 * back first. Returns how many. */
static int give_back(wr_sup *s, wr_handler_rt *h) {
  if (h->cfg->isolated) wr_pool_revoke_unstarted(&h->pool);
  int n = 0;
  wr_job *j;
  while ((j = wr_sup_waiting(s, h->index)->head) && s->session.conn) {
    uint64_t tag = j->env.delivery_tag;
    wr_intake_unrecorded(&s->intake, j);
    wr_sup_release(s, j);
    if (wr_session_nack(&s->session, h->ch, tag, 1) != 0) break;
    n++;
  }
  /* And those held for their tenant (tenant.h). */
  const wr_tenants *t = wr_sup_tenants(s, h->index);
  while (t && (j = wr_tenants_held_first(t)) && s->session.conn) {
    uint64_t tag = j->env.delivery_tag;
    wr_intake_unrecorded(&s->intake, j);
    wr_sup_release(s, j);
    if (wr_session_nack(&s->session, h->ch, tag, 1) != 0) break;
    n++;
  }
  wr_breaker_gave_back(h->breaker, (unsigned)n);
  return n;
}

/* Make h's consumer what its breaker allows: cancel it, give back what
 * waits, consume again with the trial or the full prefetch. */
static void breaker_consume(wr_sup *s, wr_handler_rt *h) {
  int want = breaker_prefetch(h);
  if (want == h->consuming || !s->session.conn || s->draining) return;
  char err[512];
  if (h->consuming && wr_session_cancel(&s->session, h->ch, h->tag) != 0)
    return; /* the connection is lost; the next one consumes as allowed */
  h->consuming = 0;
  h->resume_at = 0;
  if (!want) return;
  /* A tag of its own per consumer: on RabbitMQ 3.10 a quorum queue's
   * delivery to the cancelled consumer, still under way, crashes the
   * channel when a new consumer has the same tag. */
  snprintf(h->tag, sizeof h->tag, "warren.%s.%s.%d.%llu", h->cfg->name, s->host,
           (int)getpid(), (unsigned long long)h->breaker->changes);
  int rc =
      wr_topology_qos(s->session.conn, h->ch, h->cfg, want, err, sizeof err);
  if (rc == WARREN_OK)
    rc = wr_topology_resume(s->session.conn, h->ch, h->cfg, h->tag, err,
                            sizeof err);
  if (rc == WARREN_OK) {
    h->consuming = want;
    h->consumed_ms = wr_unix_ms(); /* older probes saw no consumer */
  } else /* the broker closed the channel: start over with a new connection */
    wr_session_lost(&s->session, err, 0);
}

/* One turn of h's breaker: cool-down over, a change to carry out (said
 * in the log, as an event, and in the next snapshot), jobs to give back
 * while open. Returns when it next has work. */
static double breaker_step(wr_sup *s, wr_handler_rt *h, double now) {
  wr_breaker *b = h->breaker;
  wr_breaker_tick(b, now);
  if (b->changes != h->breaker_seen) {
    h->breaker_seen = b->changes;
    char why[200];
    wr_breaker_describe(b, why, sizeof why);
    breaker_consume(s, h);
    if (b->state == WR_BREAKER_OPEN) {
      int n = give_back(s, h);
      wr_warn(
          "handler %s: circuit breaker open: %s; no new job for %g s "
          "(%d prefetched job(s) given back)",
          h->cfg->name, why, b->cfg->cool_down, n);
    } else {
      wr_info("handler %s: circuit breaker %s: %s", h->cfg->name,
              b->state == WR_BREAKER_CLOSED ? "closed" : "half-open", why);
    }
    wr_events_breaker(s->events, h->index, b, why);
  } else if (held(h) && wr_sup_waiting(s, h->index)->n) {
    give_back(s, h); /* delivered before the cancel took effect */
  }
  return wr_breaker_due(b);
}

/* ---- signals and draining ------------------------------------------------ */

static void begin_drain(wr_sup *s) {
  if (s->draining) {
    wr_warn("second stop signal: not waiting for running jobs");
    s->drain_deadline = wr_now();
    return;
  }
  s->draining = 1;
  s->session.draining = 1;
  wr_notify_send(s->notify, "STOPPING=1");
  atomic_store(&s->hs.ready, 0);
  atomic_store(&s->hs.why, WR_NR_DRAINING);
  s->drain_deadline = wr_now() + s->cfg->shutdown_grace;
  int busy = 0;
  for (size_t i = 0; i < s->nh; i++) busy += s->h[i].pool.busy;
  wr_info("stopping: cancelling consumers; %d job(s) running get %.0f s", busy,
          s->cfg->shutdown_grace);
  for (size_t i = 0; i < s->nh; i++) wr_pool_drain(&s->h[i].pool);
  for (size_t i = 0; i < s->nh && s->session.conn; i++)
    wr_session_cancel(&s->session, s->h[i].ch, s->h[i].tag);
}

static void on_stop_signal(void *ctx, const struct signalfd_siginfo *si) {
  (void)si;
  begin_drain(ctx);
}

static void on_child_signal(void *ctx, const struct signalfd_siginfo *si) {
  wr_sup *s = ctx;
  (void)si;
  int status;
  pid_t pid;
  while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
    for (size_t i = 0; i < s->nh; i++)
      if (wr_pool_reap(&s->h[i].pool, pid, status)) break;
}

/* SIGHUP: the keyring is read again (rotation without a restart). It
 * runs between two turns of the loop: jobs held, running or awaiting a
 * confirm are not touched, and those admitted stay admitted. */
static void reload_keys(wr_sup *s) {
  char err[4096];
  int rc = wr_sigcheck_reload(&s->sig, s->cfg->path, err, sizeof err);
  if (rc == WARREN_NOT_FOUND) {
    wr_info("SIGHUP: nothing to reload: %s", err);
    return;
  }
  if (rc != WARREN_OK) {
    wr_error("SIGHUP: signing keys not reloaded, the old ones stay: %s", err);
    return;
  }
  char ids[600] = "";
  size_t o = 0;
  for (size_t i = 0; i < wr_keyring_count(s->sig.ring) && o < sizeof ids; i++) {
    int w = snprintf(ids + o, sizeof ids - o, "%s%s", i ? ", " : "",
                     wr_keyring_id(s->sig.ring, i));
    if (w > 0) o += (size_t)w;
  }
  wr_info("SIGHUP: signing keys reloaded from %s: %s", s->cfg->path, ids);
}

/* SIGHUP: a handler's plugin file that changed is loaded as a new object,
 * checked (ABI, descriptor) and its init() tried before anything changes;
 * then new workers are forked from it and the old ones retire after the
 * job they run (pool.h wr_pool_replace). In process, the loop is between
 * two jobs here: the new init() runs, then the old shutdown(). A plugin
 * that fails leaves the old one running. docs/features.md "Upgrading a
 * handler". */
static void reload_plugin(wr_handler_rt *h) {
  char why[4096];
  wr_plugin next;
  const char *path = h->cfg->plugin, *name = h->cfg->name;
  int rc = wr_plugin_reload(path, &h->plugin, &next, why, sizeof why);
  if (rc == WARREN_NOT_FOUND) {
    wr_info("SIGHUP: handler %s: plugin %s unchanged (version %s)", name, path,
            h->plugin.version);
    return;
  }
  wr_inproc ip = {0};
  if (rc == WARREN_OK && h->cfg->isolated) {
    char w[512];
    rc = wr_worker_probe(name, next.def, h->cfg->settings, WORKER_START_S, w,
                         sizeof w);
    if (rc != WARREN_OK) snprintf(why, sizeof why, "%s: %s", path, w);
  } else if (rc == WARREN_OK &&
             wr_inproc_init(&ip, name, next.def, h->cfg->settings,
                            h->cfg->max_result) != 0) {
    rc = WARREN_PLUGIN_INIT;
    snprintf(why, sizeof why, "%s: init() returned non-zero", path);
  }
  if (rc != WARREN_OK) {
    if (next.dl) wr_plugin_unload(&next);
    h->reload_failures++;
    wr_error(
        "SIGHUP: handler %s: new plugin refused, version %s keeps running: "
        "%s",
        name, h->plugin.version, why);
    return;
  }
  wr_info("SIGHUP: handler %s: plugin %s reloaded, version %s -> %s%s", name,
          path, h->plugin.version, next.version,
          h->cfg->isolated ? "; workers switch after their current job" : "");
  if (h->cfg->isolated) {
    /* The workers running the old version have their own copy of it. */
    wr_pool_replace(&h->pool, next.def, next.version);
  } else {
    wr_inproc_shutdown(&h->inproc);
    h->inproc = ip;
  }
  wr_plugin_unload(&h->plugin);
  h->plugin = next;
  h->reloads++;
}

/* SIGHUP applies the signing keys and the plugins only: a change to the
 * handlers' other settings is said, so nobody believes it applied. The
 * plugin path is read from the running config: a new path needs a
 * restart too. */
static void config_changes(wr_sup *s) {
  wr_cfg *now;
  char err[1024];
  if (wr_cfg_load(s->cfg->path, &now, err, sizeof err) != WARREN_OK) {
    wr_warn(
        "SIGHUP: %s does not load (%s); plugins are reloaded from the "
        "paths given at start",
        s->cfg->path, err);
    return;
  }
  int same = now->n_handlers == s->nh;
  for (size_t i = 0; same && i < s->nh; i++) {
    const wr_handler_cfg *a = s->h[i].cfg, *b = &now->handlers[i];
    same = !strcmp(a->name, b->name) && !strcmp(a->queue, b->queue) &&
           !strcmp(a->plugin, b->plugin) && a->prefetch == b->prefetch &&
           a->concurrency == b->concurrency && a->isolated == b->isolated &&
           a->timeout == b->timeout && a->max_jobs == b->max_jobs;
  }
  if (!same)
    wr_warn(
        "SIGHUP: the handlers in %s changed (handlers added or removed, "
        "or their queue, plugin path, prefetch, concurrency, isolation, "
        "timeout or max_jobs_per_worker): that needs a restart; only "
        "the plugins' files and the signing keys were reloaded",
        s->cfg->path);
  wr_cfg_free(now);
}

/* The service manager shows "reloading" until READY=1 comes back. */
static void on_reload_signal(void *ctx, const struct signalfd_siginfo *si) {
  wr_sup *s = ctx;
  (void)si;
  wr_notify_reloading(s->notify);
  reload_keys(s);
  config_changes(s);
  for (size_t i = 0; i < s->nh; i++) reload_plugin(&s->h[i]);
  wr_notify_reloaded(s->notify);
}

static void on_other_signal(void *ctx, const struct signalfd_siginfo *si) {
  (void)ctx;
  wr_info("signal %u (%s) ignored: only SIGTERM and SIGINT stop the worker",
          si->ssi_signo, strsignal((int)si->ssi_signo));
}

/* ---- one turn --------------------------------------------------------------
 */

static void on_child_io(void *ctx, int fd, short revents) {
  child_ref *r = ctx;
  (void)fd;
  if (revents & POLLOUT) wr_pool_flush(r->pool);
  if (revents & ~POLLOUT) wr_pool_readable(r->pool, r->child);
}

/* Workers come and go (restarts), and a full socket waits to drain: keep
 * the loop watching what each worker's socket needs. */
static void watch_workers(wr_sup *s) {
  for (size_t i = 0; i < s->nh; i++) {
    wr_pool *p = &s->h[i].pool;
    child_ref *refs = s->h[i].refs;
    for (int k = 0; refs && k < p->n; k++) {
      child_ref *r = &refs[k];
      const wr_child *c = &p->children[k];
      short ev = (short)(POLLIN | (wr_pool_wants_write(c) ? POLLOUT : 0));
      if (r->fd == c->fd && r->events == ev) continue;
      if (r->fd >= 0) wr_loop_unwatch(s->loop, r->fd, r);
      r->fd = c->fd;
      r->events = ev;
      if (r->fd >= 0 && wr_loop_watch(s->loop, r->fd, ev, on_child_io, r) != 0)
        r->fd = -1; /* out of memory: tried again next turn */
    }
  }
}

static int busy_total(const wr_sup *s) {
  int busy = 0;
  for (size_t i = 0; i < s->nh; i++) busy += s->h[i].pool.busy;
  return busy;
}

/* WR_READY, or why not (health.h). */
static int readiness(const wr_sup *s) {
  if (s->draining) return WR_NR_DRAINING;
  if (!s->session.conn) return WR_NR_BROKER;
  if (s->session.blocked) return WR_NR_BLOCKED;
  if (wr_settle_refusing(&s->settle)) return WR_NR_COPIES;
  return wr_monitor_failing(s->monitor) ? WR_NR_CHECK : WR_READY;
}

/* Nothing delivered is held: no job waits, runs, or awaits a confirm, and
 * every ack is sent. */
static int holds_nothing(const wr_sup *s) {
  if (!wr_settle_idle(&s->settle) || wr_session_buffered(&s->session)) return 0;
  for (size_t i = 0; i < s->nh; i++)
    if (s->h[i].pool.busy || wr_settle_unacked(&s->settle, i)) return 0;
  if (wr_ledger_held(&s->ledger)) return 0;
  return 1;
}

/* --burst (like `rq worker --burst`): once nothing is held and every work
 * queue has had no ready message twice in a row, 50 ms apart, stop as on
 * SIGTERM. Retry copies still waiting for their delay stay in their retry
 * queues for the next run (README, "Batch runs"). */
static void burst_check(wr_sup *s, double now) {
  if (!s->burst || s->draining || !s->session.conn || now < s->burst_due)
    return;
  s->burst_due = now + 0.05;
  uint32_t total = 0;
  for (size_t i = 0; i < s->nh && holds_nothing(s); i++) {
    uint32_t n = 0;
    char err[512];
    int rc = wr_topology_queue_ready(s->session.conn, s->declare_ch,
                                     s->h[i].cfg->queue, &n, err, sizeof err);
    if (rc == WARREN_BROKER_TIMEOUT) {
      wr_session_lost(&s->session, err, 0);
      return;
    }
    total += rc == WARREN_OK ? n : 1; /* an error is not "empty" */
  }
  s->burst_empty = holds_nothing(s) && total == 0 ? s->burst_empty + 1 : 0;
  if (s->burst_empty < 2) return;
  wr_info("burst: every queue is empty and every job settled; stopping");
  begin_drain(s);
}

static double earliest(double a, double b) {
  return !a ? b : !b ? a : a < b ? a : b;
}

/* ---- what the monitor is told (monitor.h) ------------------------------ */

static const char *state_name(wr_child_state st) {
  static const char *const names[] = {"down", "starting", "idle", "busy",
                                      "exiting"};
  return (unsigned)st < sizeof names / sizeof *names ? names[st] : "unknown";
}

/* Changes of every breaker so far: a change is published at once. */
static uint64_t breaker_changes(const wr_sup *s) {
  uint64_t n = 0;
  for (size_t i = 0; i < s->breakers.n; i++)
    if (s->h[i].breaker) n += s->h[i].breaker->changes;
  return n;
}

/* The runtime part of handler i's status; the monitor filled the rest. */
static void status_of(wr_sup *s, size_t i, wr_snap_handler *o, double now) {
  wr_handler_rt *h = &s->h[i];
  o->st = s->stats[i];
  o->pending = (long)wr_sup_waiting(s, i)->n;
  for (const wr_job *j = wr_ledger_line(&s->ledger, WR_JOB_CONFIRMING, 0)->head;
       j; j = j->next)
    o->awaiting_copy += j->handler == i;
  for (const wr_job *j = wr_ledger_line(&s->ledger, WR_JOB_PARKED, 0)->head; j;
       j = j->next)
    o->awaiting_copy += j->handler == i;
  o->restarts = h->pool.restarts;
  snprintf(o->version, sizeof o->version, "%s", h->plugin.version);
  o->reloads = h->reloads;
  o->reload_failures = h->reload_failures;
  const wr_tenants *t = wr_sup_tenants(s, i);
  if (t) {
    o->tenant_limit = (int)t->limit;
    o->tenant_held = (long)t->held;
    o->tenants = (long)t->n;
    o->tenant_held_total = t->held_total;
    o->tenant_widened = t->widened;
    o->tenant_untagged = t->untagged;
  }
  o->alive = h->cfg->isolated ? 0 : 1;
  for (int k = 0; h->cfg->isolated && k < o->nworkers; k++) {
    wr_pool_worker pw;
    wr_pool_worker_info(&h->pool, k, &pw);
    wr_snap_worker *w = &o->w[k];
    w->pid = (int)pw.pid;
    w->state = state_name(pw.state);
    w->uptime_s = pw.pid ? now - pw.spawned : 0;
    w->jobs = pw.jobs;
    w->deaths = pw.deaths;
    snprintf(w->version, sizeof w->version, "%s", pw.version);
    o->in_workers += pw.queued;
    o->alive += pw.pid > 0 && pw.state != WR_CHILD_EXITING;
    if (pw.job && pw.state == WR_CHILD_BUSY) {
      const amqp_basic_properties_t *p = &pw.job->env.message.properties;
      w->running = 1;
      w->job_age_s = now - pw.job->started;
      o->running_jobs++;
      /* The publisher's bytes: valid UTF-8, cut between characters. */
      if (p->_flags & AMQP_BASIC_MESSAGE_ID_FLAG)
        w->job[wr_utf8_copy(w->job, p->message_id.bytes, p->message_id.len,
                            sizeof w->job - 1)] = '\0';
    }
  }
  if (h->breaker) wr_breaker_status(h->breaker, o, now);
  o->in_flight = o->pending + o->tenant_held + o->in_workers + o->awaiting_copy;
}

/* A probe found a work queue without its consumer, or gone (monitor.h):
 * consume it again, as after a cancel, unless that is under way or an
 * open breaker cancelled it on purpose. */
static void consume_missing(wr_sup *s, double now) {
  for (size_t i = 0; i < s->nh; i++) {
    wr_handler_rt *h = &s->h[i];
    int r = wr_monitor_take_missing(s->monitor, i);
    if (!r || !s->session.conn || s->draining || h->resume_at ||
        (h->breaker && !h->consuming))
      continue;
    wr_warn("handler %s: queue %s %s; declaring and consuming it again",
            h->cfg->name, h->cfg->queue,
            r == 1 ? "has no consumer" : "does not exist");
    h->resume_at = now;
  }
}

/* The monitor's turn: it is told the worker's state and asks for the
 * self-check's facts and a snapshot's runtime part. Returns when it is
 * next due. why: readiness now. */
static double watch(wr_sup *s, double now, int why) {
  wr_monitor *m = s->monitor;
  wr_monitor_facts f = {
      s->session.conn != NULL, s->session.gen,    s->draining, why,
      &s->session.cur,         breaker_changes(s)};
  if (wr_monitor_turn(m, now, &f)) {
    for (size_t i = 0; i < s->nh; i++) {
      const wr_handler_rt *h = &s->h[i];
      s->watch[i] = (wr_monitor_handler){
          h->cfg->isolated ? wr_pool_deaths(&h->pool) : 0,
          h->breaker && !h->consuming, h->breaker ? h->consumed_ms : 0};
    }
    wr_monitor_check(m, now, &f, s->watch);
  }
  wr_snap *n = wr_monitor_snapshot(m, now, &f);
  if (n) {
    n->blocked = s->session.blocked;
    snprintf(n->blocked_why, sizeof n->blocked_why, "%s",
             s->session.blocked_why);
    n->blocked_s = wr_session_blocked_s(&s->session, now);
    n->blocked_n = s->session.blocked_n;
    for (size_t i = 0; i < s->nh; i++) status_of(s, i, &n->h[i], now);
    wr_monitor_publish(m, n);
  }
  return wr_monitor_due(m, &f);
}

static double prepare(void *ctx, double now) {
  wr_sup *s = ctx;
  atomic_store_explicit(&s->hs.tick_ms, (long long)(now * 1000),
                        memory_order_relaxed);
  if ((s->draining && ((busy_total(s) == 0 &&
                        (wr_settle_idle(&s->settle) || !s->session.conn)) ||
                       now >= s->drain_deadline)) ||
      s->session.gave_up) {
    wr_loop_stop(s->loop);
    return 0;
  }
  double due = wr_session_prepare(&s->session, now);
  if (s->draining) due = earliest(due, s->drain_deadline);
  for (size_t i = 0; i < s->nh; i++)
    due = earliest(due, wr_pool_tick(&s->h[i].pool, now));
  due = earliest(due, wr_settle_tick(&s->settle, now, s->draining));
  burst_check(s, now);
  consume_missing(s, now);
  for (size_t i = 0; i < s->nh; i++) {
    wr_handler_rt *h = &s->h[i];
    if (!h->resume_at) continue;
    if (s->session.conn && !s->draining && now >= h->resume_at)
      resume_consumer(s, h, now);
    due = earliest(due, h->resume_at);
  }
  for (size_t i = 0; i < s->breakers.n; i++)
    if (s->h[i].breaker) due = earliest(due, breaker_step(s, &s->h[i], now));
  if (s->burst && !s->draining) due = earliest(due, s->burst_due);
  for (size_t i = 0; i < s->nh; i++) wr_arena_tick(s->h[i].arena, now);
  watch_workers(s);
  int why = readiness(s);
  atomic_store_explicit(&s->hs.why, why, memory_order_relaxed);
  atomic_store_explicit(&s->hs.ready, why == WR_READY, memory_order_relaxed);
  return earliest(due, watch(s, now, why));
}

static int idle(void *ctx) {
  wr_sup *s = ctx;
  int no_sleep = 0;
  for (size_t i = 0; i < s->nh; i++) wr_settle_flush(&s->settle, i);
  for (size_t i = 0; i < s->nh; i++)
    if (wr_pool_sleep(&s->h[i].pool)) no_sleep = 1; /* results already in */
  return no_sleep || wr_session_buffered(&s->session);
}

/* isolation = false: h's waiting jobs run here, one after the other,
 * until none is left, the connection is gone or a drain starts. */
static void run_in_process(wr_sup *s, wr_handler_rt *h) {
  wr_job *job;
  while (s->session.conn && !s->draining && !held(h) &&
         (job = wr_sup_waiting(s, h->index)->head)) {
    wr_ledger_move(&s->ledger, job, WR_JOB_WORKING);
    job->started = wr_now(); /* as a worker's job (pool.c), for durations */
    WR_NOTIFY(&s->obs, started, h->index, job);
    const char *err;
    size_t err_len;
    int32_t r = wr_inproc_run(&h->inproc, job, &err, &err_len);
    wr_sup_done(s, h, job, r, err, err_len);
  }
}

/* Half of h's window is held for tenants at their limit: consume again
 * under a new tag, then cancel the old consumer, whose jobs stay unacked
 * on the channel but outside any window (tenant.h). In that order, so
 * that the queue is never without a consumer. */
static void widen(wr_sup *s, wr_handler_rt *h, wr_tenants *t) {
  char old[sizeof h->tag], err[512];
  memcpy(old, h->tag, sizeof old);
  uint32_t epoch = wr_tenants_widen(t);
  /* Never a tag used before on the channel (breaker_consume's are
   * numbered without the t): on RabbitMQ 3.10 a quorum queue's delivery
   * to a cancelled consumer crashes the channel when a new consumer has
   * its tag. */
  snprintf(h->tag, sizeof h->tag, "warren.%.100s.%.60s.%d.t%u", h->cfg->name,
           s->host, (int)getpid(), (unsigned)epoch);
  if (wr_topology_resume(s->session.conn, h->ch, h->cfg, h->tag, err,
                         sizeof err) != WARREN_OK) {
    wr_session_lost(&s->session, err, 0);
    return;
  }
  if (wr_session_cancel(&s->session, h->ch, old) != 0) return; /* lost */
  wr_debug("handler %s: %zu job(s) held for their tenant; consuming as %s",
           h->cfg->name, t->held, h->tag);
}

/* A handler with tenant limits (tenant.h): held jobs whose tenant has
 * room again go first, then the waiting line, where a job whose tenant is
 * at its limit is held and the jobs behind it go on. */
static void dispatch_tenants(wr_sup *s, wr_handler_rt *h, wr_tenants *t) {
  const wr_jobq *waiting = wr_sup_waiting(s, h->index);
  wr_job *job;
  wr_child *c;
  for (;;) {
    if (!(job = wr_tenants_ready(t))) {
      while ((job = waiting->head) && !wr_tenants_may_run(t, job))
        wr_ledger_move(&s->ledger, job, WR_JOB_HELD);
      if (!job) break;
    }
    if (!(c = wr_pool_pick(&h->pool))) break;
    wr_ledger_move(&s->ledger, job, WR_JOB_WORKING);
    if (wr_pool_dispatch(&h->pool, c, job) != WARREN_OK) {
      wr_ledger_wait_front(&s->ledger, job); /* its worker is full now */
      break;
    }
  }
  /* No worker free: the jobs over their limit at the head are held now
   * all the same, so that the window is seen filling. */
  while ((job = waiting->head) && !wr_tenants_may_run(t, job))
    wr_ledger_move(&s->ledger, job, WR_JOB_HELD);
  wr_pool_flush(&h->pool);
  /* Not while its breaker has the consumer cancelled. */
  if (wr_tenants_widen_wanted(t) && s->session.conn && !h->resume_at &&
      h->consuming &&
      wr_tenants_widen_fits(t, wr_ledger_count(&s->ledger, h->index)))
    widen(s, h, t);
}

static void dispatch(wr_sup *s) {
  if (s->draining) return; /* prefetched jobs go back on close */
  for (size_t i = 0; i < s->nh; i++) {
    wr_handler_rt *h = &s->h[i];
    if (held(h)) continue; /* its breaker is open */
    if (!h->cfg->isolated) {
      run_in_process(s, h);
      continue;
    }
    wr_tenants *t = wr_sup_tenants(s, i);
    if (t) {
      dispatch_tenants(s, h, t);
      continue;
    }
    wr_child *c;
    wr_job *job;
    while ((job = wr_sup_waiting(s, i)->head) && (c = wr_pool_pick(&h->pool))) {
      wr_ledger_move(&s->ledger, job, WR_JOB_WORKING);
      if (wr_pool_dispatch(&h->pool, c, job) != WARREN_OK) {
        wr_ledger_wait_front(&s->ledger, job); /* its worker is full now */
        break;
      }
    }
    wr_pool_flush(&h->pool);
  }
}

static void check(void *ctx, double now) {
  wr_sup *s = ctx;
  for (size_t i = 0; i < s->nh; i++) wr_pool_collect(&s->h[i].pool);
  wr_session_check(&s->session, now);
  dispatch(s);
  wr_settle_flush_overdue(&s->settle, now, ACK_DELAY_S);
}

static const wr_loop_phase turn = {prepare, idle, check};

int wr_sup_run(wr_sup *s) {
  int rc = wr_loop_run(s->loop);
  for (size_t i = 0; i < s->nh; i++) wr_settle_flush(&s->settle, i);
  wr_info("stopping workers");
  s->stopping = 1;
  for (size_t i = 0; i < s->nh; i++) wr_pool_stop(&s->h[i].pool, WORKER_STOP_S);
  if (s->session.conn) {
    atomic_store(&s->hs.ready, 0);
    drop_pending(s);
    /* of jobs the stop just settled */
    for (size_t i = 0; i < s->nh; i++) wr_settle_flush(&s->settle, i);
    wr_session_close(&s->session);
  } else {
    wr_session_close(&s->session); /* a set-up under way is abandoned */
  }
  for (size_t i = 0; i < s->nh; i++)
    wr_stats_log(s->h[i].cfg->name, &s->stats[i]);
  if (s->session.gave_up) return WR_SUP_EXIT_LOGIN;
  return rc == 0 ? 0 : 1;
}

/* ---- life -------------------------------------------------------------- */

static int start_handler(wr_sup *s, size_t i, char *err, size_t errlen) {
  wr_handler_rt *h = &s->h[i];
  wr_cfg *cfg = s->cfg;
  h->cfg = &cfg->handlers[i];
  h->sup = s;
  h->index = i;
  h->ch = (amqp_channel_t)(i + 1);
  snprintf(h->tag, sizeof h->tag, "warren.%s.%s.%d", h->cfg->name, s->host,
           (int)getpid());
  wr_backoff_init(&h->resume, 0.5, 30, 0.2);
  if (h->cfg->tenant_header) { /* jobs held beyond the prefetch */
    size_t most = wr_cfg_held_most(h->cfg);
    if (wr_tenants_init(
            &s->tenants.h[i], h->cfg->tenant_header,
            (uint32_t)h->cfg->tenant_concurrency, (uint32_t)h->cfg->tenant_hold,
            (uint32_t)h->cfg->prefetch, (uint32_t)h->cfg->concurrency,
            (uint32_t)most) != WARREN_OK)
      return WARREN_NOMEM;
    s->tenants.h[i].tag = h->tag;
  }
  /* Without shared memory (a sandbox denying memfd), bodies use malloc. */
  h->arena = wr_arena_open(h->cfg->name);
  if (!h->arena)
    wr_warn("handler %s: no shared memory for bodies; using the heap",
            h->cfg->name);
  char why[512];
  int rc = wr_plugin_load(h->cfg->plugin, &h->plugin, why, sizeof why);
  if (rc != WARREN_OK) {
    snprintf(err, errlen, "%s:%d: handler %s: %s", cfg->path, h->cfg->line,
             h->cfg->name, why);
    return rc;
  }
  if (!h->cfg->isolated) {
    if (wr_inproc_init(&h->inproc, h->cfg->name, h->plugin.def,
                       h->cfg->settings, h->cfg->max_result) != 0) {
      snprintf(err, errlen, "handler %s: init() failed", h->cfg->name);
      return WARREN_PLUGIN_INIT;
    }
    return WARREN_OK;
  }
  rc = wr_pool_init(&h->pool, h->cfg->name, h->plugin.def, h->cfg->settings,
                    h->cfg->concurrency, cfg->restart_min, cfg->restart_max,
                    pool_events_for(&s->obs), h);
  if (rc != WARREN_OK) return rc;
  snprintf(h->pool.version, sizeof h->pool.version, "%s", h->plugin.version);
  h->pool.arena = h->arena;
  h->pool.timeout = h->cfg->timeout;
  h->pool.max_jobs = h->cfg->max_jobs;
  h->pool.max_rss_kb = h->cfg->max_rss_mb * 1024u;
  h->pool.max_result = (uint32_t)h->cfg->max_result;
  /* Enough queued per worker to hide the round trip, never more than
   * its share of the prefetch (so prefetch 1 stays strictly one). */
  int depth = h->cfg->prefetch / h->cfg->concurrency;
  h->pool.depth = depth < 1                   ? 1
                  : depth > WR_POOL_MAX_DEPTH ? WR_POOL_MAX_DEPTH
                                              : depth;
  h->refs = calloc((size_t)h->pool.n, sizeof *h->refs);
  if (!h->refs) return WARREN_NOMEM;
  for (int k = 0; k < h->pool.n; k++)
    h->refs[k] = (child_ref){&h->pool, &h->pool.children[k], -1, 0};
  return WARREN_OK;
}

/* A breaker for each handler that has one, and their observer; without
 * any, nothing is subscribed and nothing runs per job. */
static int create_breakers(wr_sup *s) {
  for (size_t i = 0; i < s->nh; i++) {
    const wr_breaker_cfg *bc = &s->cfg->handlers[i].breaker;
    if (!bc->enabled) continue;
    if (!s->breakers.b && !(s->breakers.b = calloc(s->nh, sizeof(void *))))
      return WARREN_NOMEM;
    if (!(s->h[i].breaker = malloc(sizeof *s->h[i].breaker)))
      return WARREN_NOMEM;
    wr_breaker_init(s->h[i].breaker, bc, wr_now());
    s->breakers.b[i] = s->h[i].breaker;
    s->breakers.n = s->nh;
  }
  if (s->breakers.n && wr_observe(&s->obs, &wr_breaker_events, &s->breakers))
    return WARREN_NOMEM;
  return WARREN_OK;
}

int wr_sup_create(wr_cfg *cfg, wr_sup **out, char *err, size_t errlen) {
  if (errlen) err[0] = '\0';
  wr_sup *s = calloc(1, sizeof *s);
  if (!s) return WARREN_NOMEM;
  s->cfg = cfg;
  s->nh = cfg->n_handlers;
  s->h = calloc(s->nh, sizeof *s->h);
  s->stats = calloc(s->nh, sizeof *s->stats);
  s->watch = calloc(s->nh, sizeof *s->watch);
  size_t nslots = 0, ntenants = 0;
  for (size_t i = 0; i < s->nh; i++) {
    const wr_handler_cfg *hc = &cfg->handlers[i];
    nslots += wr_cfg_held_most(hc);
    if (hc->tenant_header) ntenants++;
  }
  if (ntenants && s->h) {
    s->tenants.h = calloc(s->nh, sizeof *s->tenants.h);
    s->tenants.nh = s->tenants.h ? s->nh : 0;
  }
  /* One more for a control message (revoked.h). */
  int rc = s->h && s->stats && s->watch && (!ntenants || s->tenants.h)
               ? wr_ledger_init(&s->ledger, nslots + 1, s->nh, release_job, s)
               : WARREN_NOMEM;
  if (rc == WARREN_OK && ntenants)
    wr_ledger_watch(&s->ledger, wr_tenants_moved, &s->tenants);
  if (rc == WARREN_OK) rc = wr_loop_create(&s->loop);
  if (rc != WARREN_OK) {
    wr_sup_destroy(s);
    return rc;
  }
  gethostname(s->host, sizeof s->host - 1);
  wr_observe(&s->obs, &wr_stats_events, s->stats);
  wr_observe(&s->obs, &wr_joblog_events, cfg);
  if (cfg->tracing.enabled) {
    rc = wr_spans_create(&cfg->tracing, cfg, &s->spans, err, errlen);
    if (rc != WARREN_OK) {
      wr_sup_destroy(s);
      return rc;
    }
    /* First in the chain: a job refused at intake has its span too. */
    wr_intake_add(&s->intake, &wr_intake_trace, s->spans);
    wr_observe(&s->obs, &wr_spans_events, s->spans);
    wr_info("tracing: spans go to %s as service %s", cfg->tracing.endpoint,
            cfg->tracing.service_name);
  }
  if (cfg->health_port > 0 && cfg->stream.enabled) {
    /* GET /api/events: the events' sender feeds it, with the exchange
     * on or off (events.h). */
    wr_live_opts lo = {cfg->stream.clients, cfg->stream.buffer,
                       cfg->stream.keepalive};
    s->live = wr_live_create(&lo);
    if (!s->live) {
      wr_sup_destroy(s);
      return WARREN_NOMEM;
    }
  }
  if (cfg->events.enabled || s->live) {
    rc = wr_events_create(cfg, s->host, s->ledger.slots, s->ledger.n, s->live,
                          &s->events, err, errlen);
    if (rc != WARREN_OK) {
      wr_sup_destroy(s);
      return rc;
    }
    wr_observe(&s->obs, &wr_events_events, s->events);
    if (cfg->events.enabled)
      wr_info("events: lifecycle events go to exchange %s",
              cfg->events.exchange);
  }
  rc = create_breakers(s);
  if (rc != WARREN_OK) {
    wr_sup_destroy(s);
    return rc;
  }
  /* Only checks that some handler needs run on every delivery. */
  for (size_t i = 0; i < s->nh; i++)
    if (cfg->handlers[i].max_body) {
      wr_intake_add(&s->intake, &wr_intake_size, &s->intake);
      break;
    }
  s->intake.cfg = cfg;
  wr_intake_add(&s->intake, &wr_intake_headers, &s->intake);
  rc = wr_sigcheck_init(&s->sig, cfg);
  if (rc != WARREN_OK) {
    wr_sup_destroy(s);
    return rc;
  }
  if (s->sig.ring)
    wr_intake_add(&s->intake, &wr_intake_signature, &s->sig);
  else
    wr_info("signing is not configured: jobs are not verified");
  s->declare_ch = (amqp_channel_t)(s->nh + 2);
  /* Last in the chain: any job whose id is revoked is refused. */
  wr_revoked_init(&s->revoked, (amqp_channel_t)(s->nh + 3));
  wr_intake_add(&s->intake, &wr_intake_revoked, &s->revoked);
  wr_session_init(&s->session, &cfg->broker, (amqp_channel_t)(s->nh + 1),
                  cfg->reconnect_min, cfg->reconnect_max, s->loop,
                  &session_events, s);
  s->session.max_refused_logins = cfg->exit_after_refused_logins;
  wr_settle_env senv = {cfg,     &s->session, &s->ledger, &s->obs,
                        &s->sig, &s->intake,  s->host,    s->declare_ch};
  rc = wr_settle_init(&s->settle, &senv);
  /* Before any handler code runs: a write to a closed socket or pipe is
   * an EPIPE error, in the supervisor and in the workers (pool.c). */
  signal(SIGPIPE, SIG_IGN);
  for (size_t i = 0; i < s->nh && rc == WARREN_OK; i++)
    rc = start_handler(s, i, err, errlen);
  /* Signals are read through the loop's signalfd; workers unblock them
   * after fork (pool.c), so they are registered before any fork. */
  static const int others[] = {SIGUSR1, SIGUSR2};
  if (rc == WARREN_OK)
    rc = wr_loop_on_signal(s->loop, SIGTERM, on_stop_signal, s);
  if (rc == WARREN_OK)
    rc = wr_loop_on_signal(s->loop, SIGINT, on_stop_signal, s);
  if (rc == WARREN_OK)
    rc = wr_loop_on_signal(s->loop, SIGCHLD, on_child_signal, s);
  if (rc == WARREN_OK)
    rc = wr_loop_on_signal(s->loop, SIGHUP, on_reload_signal, s);
  for (size_t i = 0; i < sizeof others / sizeof *others && rc == WARREN_OK; i++)
    rc = wr_loop_on_signal(s->loop, others[i], on_other_signal, s);
  if (rc != WARREN_OK && !err[0])
    snprintf(err, errlen, "signalfd: %s", warren_strerror(rc));
  for (size_t i = 0; i < s->nh && rc == WARREN_OK; i++)
    if (s->h[i].cfg->isolated)
      rc = wr_pool_start(&s->h[i].pool, WORKER_START_S, err, errlen);
  if (rc == WARREN_OK) rc = wr_loop_add_phase(s->loop, &turn, s);
  wr_monitor_env menv = {cfg,         s->loop,  &s->obs, s->ledger.slots,
                         s->ledger.n, s->spans, s->live, s->events};
  if (rc == WARREN_OK) rc = wr_monitor_create(&menv, &s->monitor);
  if (rc == WARREN_OK) rc = wr_notify_create(s->loop, &s->notify);
  atomic_store(&s->hs.tick_ms, wr_now_ms());
  atomic_store(&s->hs.why, WR_NR_BROKER);
  if (rc == WARREN_OK && cfg->health_port > 0) {
    /* Started after the workers are forked; it reads atomics and the
     * snapshots the monitor publishes, nothing else. */
    wr_health_opts ho = {cfg->health_listen,
                         cfg->health_port,
                         &s->hs,
                         wr_monitor_store(s->monitor),
                         cfg->admin_token,
                         s->live,
                         cfg};
    s->health = wr_health_start(&ho, err, errlen);
    if (!s->health)
      rc = WARREN_IO;
    else
      wr_info(
          "health endpoints on http://%s%s%s:%d/healthz, /readyz, "
          "/status/workers, /metrics%s%s%s",
          strchr(cfg->health_listen, ':') ? "[" : "", cfg->health_listen,
          strchr(cfg->health_listen, ':') ? "]" : "", cfg->health_port,
          s->live ? ", /api/events" : "",
          cfg->stream.dashboard ? ", /dashboard" : "",
          cfg->admin_token ? " and the admin route" : "");
  }
  if (rc != WARREN_OK) {
    wr_sup_destroy(s);
    return rc;
  }
  *out = s;
  return WARREN_OK;
}

int wr_sup_ready(const wr_sup *s) {
  return atomic_load(&s->hs.ready);
}

const wr_handler_stats *wr_sup_stats(const wr_sup *s, size_t handler) {
  return handler < s->nh ? &s->stats[handler] : NULL;
}

void wr_sup_destroy(wr_sup *s) {
  if (!s) return;
  wr_health_stop(s->health);
  for (size_t i = 0; s->h && i < s->nh; i++)
    if (s->h[i].pool.children) {
      wr_pool_stop(&s->h[i].pool, WORKER_STOP_S);
      wr_pool_free(&s->h[i].pool);
    }
  /* Jobs still held give their bodies back to the arenas closed below. */
  wr_ledger_free(&s->ledger);
  for (size_t i = 0; i < s->tenants.nh; i++)
    if (s->tenants.h[i].on) wr_tenants_free(&s->tenants.h[i]);
  free(s->tenants.h);
  for (size_t i = 0; s->h && i < s->nh; i++) {
    wr_handler_rt *h = &s->h[i];
    wr_inproc_shutdown(&h->inproc);
    wr_plugin_unload(&h->plugin);
    free(h->refs);
    free(h->breaker);
    wr_arena_close(h->arena);
  }
  if (s->session.conn) amqp_destroy_connection(s->session.conn);
  wr_loop_destroy(s->loop);
  wr_notify_destroy(s->notify); /* its phase went with the loop */
  wr_sigcheck_free(&s->sig);
  wr_settle_free(&s->settle);
  wr_revoked_free(&s->revoked);
  wr_monitor_destroy(s->monitor); /* observers are not called any more */
  wr_spans_destroy(s->spans, SPAN_FLUSH_S);
  wr_events_destroy(s->events, EVENTS_FLUSH_S); /* worker.offline last */
  wr_live_destroy(s->live); /* its clients left with the HTTP side */
  free(s->h);
  free(s->stats);
  free(s->watch);
  free(s->breakers.b);
  free(s);
}

void wr_sup_set_burst(wr_sup *s, int on) {
  s->burst = on;
}
