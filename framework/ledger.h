/*
 * The job ledger: the one owner of the supervisor's job slots and of
 * every place a held job can be. A slot is handed out whole, as new (no
 * field of the job before it), and every move of a job between states
 * goes through wr_ledger_move, which keeps the lines of the states that
 * have one (waiting per handler, confirming, parked) and, in debug
 * builds, checks that the move is one the lifecycle allows. The others
 * ask it: "every held job", "the lowest open tag of a handler".
 *
 * A job's life:
 *
 *   FREE -> RECEIVED -> WAITING -> WORKING -> SETTLING -> FREE (acked)
 *                 \          \          \          \-> CONFIRMING -> FREE
 *                  \          \          \                 \-> SETTLING
 *                   \----------\----------\-> SETTLING     (a failed copy,
 *                                                           follow-ups)
 *   WORKING -> WAITING (taken back unstarted), SETTLING -> PARKED -> FREE
 *   (a refused copy: the original is requeued when due), WAITING -> HELD
 *   -> WORKING (its tenant at its limit, then under it again; HELD ->
 *   SETTLING when revoked), and any held state -> FREE when its delivery
 *   can no longer be acked.
 *
 * Not thread-safe: the loop thread owns it.
 */
#ifndef WR_LEDGER_H
#define WR_LEDGER_H

#include <stddef.h>
#include <stdint.h>

#include "job.h"

typedef enum wr_job_state {
  WR_JOB_FREE = 0,   /* on the free list */
  WR_JOB_RECEIVED,   /* delivered; the intake checks run */
  WR_JOB_WAITING,    /* admitted: on its handler's waiting line */
  WR_JOB_WORKING,    /* queued to or running in a worker, or in process */
  WR_JOB_SETTLING,   /* its attempt is over: being settled */
  WR_JOB_CONFIRMING, /* awaiting the confirms of what it published */
  WR_JOB_PARKED,     /* its copy was refused: requeued when due */
  WR_JOB_HELD,       /* admitted, its tenant at its limit: on its tenant's
                        line (tenant.h), not on a line of the ledger */
  WR_JOB_NSTATES
} wr_job_state;

/* Frees what a job holds (body, envelope, extras), not the slot. */
typedef void (*wr_ledger_release_fn)(void *ctx, wr_job *job);

/* Told of every move, once the job is off the line of `from` and before
 * it is put on the line of `to` (so a watcher keeping the line of a state
 * the ledger has none for, HELD, links and unlinks it there). It must not
 * move jobs. */
typedef void (*wr_ledger_watch_fn)(void *ctx, wr_job *job, wr_job_state from,
                                   wr_job_state to);

typedef struct wr_ledger {
  wr_job *slots; /* all of them, contiguous (observers index by slot) */
  size_t n;
  wr_job *free;
  uint64_t next_id;
  size_t nh;
  wr_jobq *waiting;   /* one line per handler */
  wr_job **held_head; /* per handler (and one for other channels): */
  wr_job **held_tail; /* its held jobs in delivery (tag) order */
  wr_jobq confirming; /* all handlers', in the order they went */
  wr_jobq parked;     /* all handlers', in the order they went */
  size_t held;        /* jobs not FREE */
  wr_ledger_release_fn release;
  void *ctx;
  wr_ledger_watch_fn watch; /* NULL: none (tenant.h is the one) */
  void *watch_ctx;
} wr_ledger;

/* n slots for nh handlers; release frees a job's parts when it goes back
 * to FREE. WARREN_OK or WARREN_NOMEM (then nothing is allocated). */
int wr_ledger_init(wr_ledger *l, size_t n, size_t nh,
                   wr_ledger_release_fn release, void *ctx);
/* Give back the slots (held jobs' parts are released first). */
void wr_ledger_free(wr_ledger *l);

/* Tell fn of every move from now on (one watcher). */
void wr_ledger_watch(wr_ledger *l, wr_ledger_watch_fn fn, void *ctx);

/* Jobs of handler h held (any state but FREE): walks its held jobs. */
size_t wr_ledger_count(const wr_ledger *l, size_t h);

/* The slot the next delivery is read into, as new, still FREE; NULL when
 * every slot is held. The same slot until it is taken. */
wr_job *wr_ledger_slot(const wr_ledger *l);

/* Take that slot: RECEIVED, with the next id and handler h. */
wr_job *wr_ledger_take(wr_ledger *l, uint16_t handler);

/* Whether the lifecycle lets a job go from one state to another (the
 * table above); pure. */
int wr_ledger_may(wr_job_state from, wr_job_state to);

/* Move job to state `to`: off the line of its state, onto the end of the
 * line of `to` (WAITING: its handler's). FREE releases its parts and
 * wipes the slot. A move the lifecycle does not allow aborts in debug
 * builds. */
void wr_ledger_move(wr_ledger *l, wr_job *job, wr_job_state to);

/* WORKING -> WAITING, at the front of its handler's line: a job a worker
 * never started keeps its place. */
void wr_ledger_wait_front(wr_ledger *l, wr_job *job);

/* The line of a state that has one (WAITING: handler h's); NULL for the
 * others. Read it; move jobs with wr_ledger_move only. */
const wr_jobq *wr_ledger_line(const wr_ledger *l, wr_job_state st, size_t h);

/* Lowest delivery tag of handler h held under connection generation gen
 * and not finished (any state but FREE); UINT64_MAX when none. Acks stay
 * below it (acks.h). Asked at every ack flush, so it is the head of the
 * handler's held jobs in delivery order (a channel's tags only grow),
 * past the few of an older connection still running. */
uint64_t wr_ledger_lowest_open(const wr_ledger *l, size_t h, uint64_t gen);

/* Jobs held: in any state but FREE. */
static inline size_t wr_ledger_held(const wr_ledger *l) {
  return l->held;
}

const char *wr_ledger_state_name(wr_job_state st);

#endif
