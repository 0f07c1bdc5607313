/* The job ledger (framework/ledger.h): slots handed out as new, the
 * lifecycle's moves and no others, the lines, and the lowest open tag
 * that acks must stay below. */
#include <criterion/criterion.h>
#include <string.h>

#include "arena.h"
#include "ledger.h"

static int released;

static void count_release(void *ctx, wr_job *job) {
  (void)ctx;
  (void)job;
  released++;
}

static wr_job *deliver(wr_ledger *l, uint16_t h, uint64_t tag, uint64_t gen) {
  wr_job *j = wr_ledger_slot(l);
  cr_assert(j, "a free slot");
  j->env.delivery_tag = tag;
  j->gen = gen;
  return wr_ledger_take(l, h);
}

Test(ledger, a_reused_slot_keeps_nothing_of_the_job_before) {
  wr_ledger l;
  cr_assert_eq(wr_ledger_init(&l, 1, 1, count_release, NULL), 0);
  wr_job *j = deliver(&l, 0, 7, 1);
  cr_assert_eq(j->state, WR_JOB_RECEIVED);
  cr_assert_eq(j->id, 1);
  /* What a verified, traced, started job leaves in its slot. */
  j->signed_ok = 1;
  j->started = 12.5;
  j->trace.on = 1;
  j->meta.attempt = 3;
  j->revoked = 1;
  j->confirm_seq = 9;
  memset(j->body_sha256, 0xAB, sizeof j->body_sha256);
  released = 0;
  wr_ledger_move(&l, j, WR_JOB_FREE);
  cr_assert_eq(released, 1, "its parts were released");
  wr_job *k = wr_ledger_slot(&l);
  cr_assert_eq(k, j, "the same slot comes back");
  wr_job fresh = {.body_off = WR_ARENA_NONE};
  cr_assert_eq(memcmp(k, &fresh, sizeof fresh), 0, "the slot is as new");
  k = deliver(&l, 0, 8, 1);
  cr_assert_eq(k->id, 2, "numbered on");
  cr_assert_eq(wr_ledger_slot(&l), NULL, "no slot is left");
  wr_ledger_free(&l);
}

Test(ledger, only_the_lifecycles_moves_are_allowed) {
  /* Every move a job makes in the supervisor. */
  static const wr_job_state ok[][2] = {{WR_JOB_FREE, WR_JOB_RECEIVED},
                                       {WR_JOB_RECEIVED, WR_JOB_WAITING},
                                       {WR_JOB_RECEIVED, WR_JOB_SETTLING},
                                       {WR_JOB_RECEIVED, WR_JOB_FREE},
                                       {WR_JOB_WAITING, WR_JOB_WORKING},
                                       {WR_JOB_WAITING, WR_JOB_SETTLING},
                                       {WR_JOB_WAITING, WR_JOB_FREE},
                                       {WR_JOB_WORKING, WR_JOB_WAITING},
                                       {WR_JOB_WORKING, WR_JOB_SETTLING},
                                       {WR_JOB_WORKING, WR_JOB_FREE},
                                       {WR_JOB_SETTLING, WR_JOB_CONFIRMING},
                                       {WR_JOB_SETTLING, WR_JOB_PARKED},
                                       {WR_JOB_SETTLING, WR_JOB_FREE},
                                       {WR_JOB_CONFIRMING, WR_JOB_SETTLING},
                                       {WR_JOB_CONFIRMING, WR_JOB_FREE},
                                       {WR_JOB_PARKED, WR_JOB_FREE},
                                       {WR_JOB_WAITING, WR_JOB_HELD},
                                       {WR_JOB_HELD, WR_JOB_WORKING},
                                       {WR_JOB_HELD, WR_JOB_SETTLING},
                                       {WR_JOB_HELD, WR_JOB_FREE}};
  int allowed = 0;
  for (int f = 0; f < WR_JOB_NSTATES; f++)
    for (int t = 0; t < WR_JOB_NSTATES; t++)
      allowed += wr_ledger_may((wr_job_state)f, (wr_job_state)t);
  cr_assert_eq(allowed, (int)(sizeof ok / sizeof *ok), "no other move");
  for (size_t i = 0; i < sizeof ok / sizeof *ok; i++)
    cr_assert(wr_ledger_may(ok[i][0], ok[i][1]), "%s -> %s",
              wr_ledger_state_name(ok[i][0]), wr_ledger_state_name(ok[i][1]));
  /* A few that would lose or double a job. */
  cr_assert_not(wr_ledger_may(WR_JOB_FREE, WR_JOB_WAITING));
  cr_assert_not(wr_ledger_may(WR_JOB_PARKED, WR_JOB_WAITING));
  cr_assert_not(wr_ledger_may(WR_JOB_CONFIRMING, WR_JOB_WORKING));
  cr_assert_not(wr_ledger_may(WR_JOB_WAITING, WR_JOB_CONFIRMING));
  cr_assert_not(wr_ledger_may(WR_JOB_HELD, WR_JOB_WAITING));
  cr_assert_not(wr_ledger_may(WR_JOB_WORKING, WR_JOB_HELD));
}

Test(ledger, lines_follow_the_jobs_moves) {
  wr_ledger l;
  cr_assert_eq(wr_ledger_init(&l, 4, 2, count_release, NULL), 0);
  wr_job *a = deliver(&l, 0, 1, 1), *b = deliver(&l, 0, 2, 1),
         *c = deliver(&l, 1, 1, 1);
  wr_ledger_move(&l, a, WR_JOB_WAITING);
  wr_ledger_move(&l, b, WR_JOB_WAITING);
  wr_ledger_move(&l, c, WR_JOB_WAITING);
  cr_assert_eq(wr_ledger_line(&l, WR_JOB_WAITING, 0)->n, 2);
  cr_assert_eq(wr_ledger_line(&l, WR_JOB_WAITING, 1)->n, 1);
  cr_assert_eq(wr_ledger_line(&l, WR_JOB_WAITING, 0)->head, a);
  wr_ledger_move(&l, a, WR_JOB_WORKING);
  cr_assert_eq(wr_ledger_line(&l, WR_JOB_WAITING, 0)->head, b);
  wr_ledger_wait_front(&l, a); /* taken back unstarted: first again */
  cr_assert_eq(wr_ledger_line(&l, WR_JOB_WAITING, 0)->head, a);
  cr_assert_eq(wr_ledger_line(&l, WR_JOB_WAITING, 0)->tail, b);
  /* b, from the middle of nowhere: off the line it is on. */
  wr_ledger_move(&l, b, WR_JOB_SETTLING);
  wr_ledger_move(&l, b, WR_JOB_CONFIRMING);
  wr_ledger_move(&l, a, WR_JOB_SETTLING);
  wr_ledger_move(&l, a, WR_JOB_CONFIRMING);
  const wr_jobq *cf = wr_ledger_line(&l, WR_JOB_CONFIRMING, 0);
  cr_assert_eq(cf->n, 2);
  wr_ledger_move(&l, b, WR_JOB_SETTLING);
  cr_assert_eq(cf->n, 1);
  cr_assert(cf->head == a && cf->tail == a && !a->prev && !a->next);
  wr_ledger_move(&l, b, WR_JOB_PARKED);
  cr_assert_eq(wr_ledger_line(&l, WR_JOB_PARKED, 0)->n, 1);
  cr_assert_eq(wr_ledger_held(&l), 3);
  wr_ledger_move(&l, b, WR_JOB_FREE);
  cr_assert_eq(wr_ledger_line(&l, WR_JOB_PARKED, 0)->n, 0);
  cr_assert_eq(wr_ledger_held(&l), 2);
  released = 0;
  wr_ledger_free(&l);
  cr_assert_eq(released, 2, "held jobs' parts are released at the end");
}

Test(ledger, the_lowest_open_tag_is_any_held_job_of_the_connection) {
  wr_ledger l;
  cr_assert_eq(wr_ledger_init(&l, 8, 2, count_release, NULL), 0);
  cr_assert_eq(wr_ledger_lowest_open(&l, 0, 2), UINT64_MAX);
  wr_job *old = deliver(&l, 0, 1, 1); /* of the connection before */
  wr_ledger_move(&l, old, WR_JOB_WAITING);
  wr_ledger_move(&l, old, WR_JOB_WORKING);
  /* A channel's tags only grow: they are delivered in this order. */
  wr_job *copy = deliver(&l, 0, 4, 2), *run = deliver(&l, 0, 5, 2),
         *wait = deliver(&l, 0, 6, 2), *other = deliver(&l, 1, 2, 2);
  wr_ledger_move(&l, run, WR_JOB_WAITING);
  wr_ledger_move(&l, run, WR_JOB_WORKING);
  wr_ledger_move(&l, wait, WR_JOB_WAITING);
  wr_ledger_move(&l, other, WR_JOB_WAITING);
  wr_ledger_move(&l, copy, WR_JOB_SETTLING);
  wr_ledger_move(&l, copy, WR_JOB_CONFIRMING);
  cr_assert_eq(wr_ledger_lowest_open(&l, 0, 2), 4, "awaiting its confirm");
  wr_ledger_move(&l, copy, WR_JOB_SETTLING);
  wr_ledger_move(&l, copy, WR_JOB_PARKED);
  cr_assert_eq(wr_ledger_lowest_open(&l, 0, 2), 4, "parked");
  wr_ledger_move(&l, copy, WR_JOB_FREE);
  cr_assert_eq(wr_ledger_lowest_open(&l, 0, 2), 5, "running");
  wr_ledger_move(&l, run, WR_JOB_SETTLING);
  cr_assert_eq(wr_ledger_lowest_open(&l, 0, 2), 5, "being settled");
  wr_ledger_move(&l, run, WR_JOB_FREE);
  cr_assert_eq(wr_ledger_lowest_open(&l, 0, 2), 6, "waiting");
  cr_assert_eq(wr_ledger_lowest_open(&l, 1, 2), 2, "per handler");
  wr_ledger_move(&l, wait, WR_JOB_FREE);
  cr_assert_eq(wr_ledger_lowest_open(&l, 0, 2), UINT64_MAX,
               "only the older connection's job is left");
  cr_assert_eq(wr_ledger_lowest_open(&l, 0, 1), 1);
  wr_ledger_free(&l);
}
