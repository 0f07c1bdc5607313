#include "ledger.h"

#include <assert.h>
#include <stdlib.h>

#include <warren/status.h>

#include "arena.h"

/* A slot as new: nothing of an earlier job, its body nowhere. */
static void wipe(wr_job *j, wr_job *next) {
  *j = (wr_job){.body_off = WR_ARENA_NONE, .next = next};
}

int wr_ledger_init(wr_ledger *l, size_t n, size_t nh,
                   wr_ledger_release_fn release, void *ctx) {
  *l = (wr_ledger){.n = n, .nh = nh, .release = release, .ctx = ctx};
  l->slots = calloc(n ? n : 1, sizeof *l->slots);
  l->waiting = calloc(nh ? nh : 1, sizeof *l->waiting);
  l->held_head = calloc(nh + 1, sizeof *l->held_head);
  l->held_tail = calloc(nh + 1, sizeof *l->held_tail);
  if (!l->slots || !l->waiting || !l->held_head || !l->held_tail) {
    free(l->slots);
    free(l->waiting);
    free(l->held_head);
    free(l->held_tail);
    *l = (wr_ledger){0};
    return WARREN_NOMEM;
  }
  for (size_t i = n; i-- > 0;) {
    wipe(&l->slots[i], l->free);
    l->free = &l->slots[i];
  }
  return WARREN_OK;
}

void wr_ledger_free(wr_ledger *l) {
  for (size_t i = 0; l->slots && i < l->n; i++)
    if (l->slots[i].state != WR_JOB_FREE && l->release)
      l->release(l->ctx, &l->slots[i]);
  free(l->slots);
  free(l->waiting);
  free(l->held_head);
  free(l->held_tail);
  *l = (wr_ledger){0};
}

void wr_ledger_watch(wr_ledger *l, wr_ledger_watch_fn fn, void *ctx) {
  l->watch = fn;
  l->watch_ctx = ctx;
}

/* Handler h's held line (the last for any other channel). */
static size_t held_line(const wr_ledger *l, size_t h) {
  return h < l->nh ? h : l->nh;
}

wr_job *wr_ledger_slot(const wr_ledger *l) {
  return l->free;
}

wr_job *wr_ledger_take(wr_ledger *l, uint16_t handler) {
  wr_job *j = l->free;
  if (!j) return NULL;
  l->free = j->next;
  j->next = NULL;
  j->state = WR_JOB_RECEIVED;
  j->id = ++l->next_id;
  j->handler = handler;
  size_t k = held_line(l, handler);
  j->by_tag_prev = l->held_tail[k];
  if (l->held_tail[k])
    l->held_tail[k]->by_tag_next = j;
  else
    l->held_head[k] = j;
  l->held_tail[k] = j;
  l->held++;
  return j;
}

int wr_ledger_may(wr_job_state from, wr_job_state to) {
  /* One bit per state a job may go to, by the state it is in. */
#define B(s) (1u << WR_JOB_##s)
  static const unsigned to_of[WR_JOB_NSTATES] = {
      [WR_JOB_FREE] = B(RECEIVED),
      [WR_JOB_RECEIVED] = B(WAITING) | B(SETTLING) | B(FREE),
      [WR_JOB_WAITING] = B(WORKING) | B(SETTLING) | B(FREE) | B(HELD),
      [WR_JOB_WORKING] = B(WAITING) | B(SETTLING) | B(FREE),
      [WR_JOB_SETTLING] = B(CONFIRMING) | B(PARKED) | B(FREE),
      [WR_JOB_CONFIRMING] = B(SETTLING) | B(FREE),
      [WR_JOB_PARKED] = B(FREE),
      [WR_JOB_HELD] = B(WORKING) | B(SETTLING) | B(FREE),
  };
#undef B
  return from < WR_JOB_NSTATES && to < WR_JOB_NSTATES &&
         (to_of[from] >> to & 1u);
}

const wr_jobq *wr_ledger_line(const wr_ledger *l, wr_job_state st, size_t h) {
  switch (st) {
    case WR_JOB_WAITING:
      return h < l->nh ? &l->waiting[h] : NULL;
    case WR_JOB_CONFIRMING:
      return &l->confirming;
    case WR_JOB_PARKED:
      return &l->parked;
    default:
      return NULL;
  }
}

/* The line of state st that j would be on (the ledger's own, to change). */
static wr_jobq *line_of(wr_ledger *l, const wr_job *j, wr_job_state st) {
  return (wr_jobq *)wr_ledger_line(l, st, j->handler);
}

/* Off the line of its state, into state `to` (no line yet). */
static void leave(wr_ledger *l, wr_job *j, wr_job_state to) {
  wr_job_state st = (wr_job_state)j->state;
  assert(wr_ledger_may(st, to));
  wr_jobq *from = line_of(l, j, st);
  if (from) wr_jobq_remove(from, j);
  j->state = (uint8_t)to;
  if (l->watch) l->watch(l->watch_ctx, j, st, to);
}

void wr_ledger_move(wr_ledger *l, wr_job *j, wr_job_state to) {
  leave(l, j, to);
  if (to == WR_JOB_FREE) {
    size_t k = held_line(l, j->handler);
    if (j->by_tag_prev)
      j->by_tag_prev->by_tag_next = j->by_tag_next;
    else
      l->held_head[k] = j->by_tag_next;
    if (j->by_tag_next)
      j->by_tag_next->by_tag_prev = j->by_tag_prev;
    else
      l->held_tail[k] = j->by_tag_prev;
    if (l->release) l->release(l->ctx, j);
    wipe(j, l->free);
    l->free = j;
    l->held--;
    return;
  }
  wr_jobq *q = line_of(l, j, to);
  if (q) wr_jobq_push(q, j);
}

void wr_ledger_wait_front(wr_ledger *l, wr_job *j) {
  assert(j->state == WR_JOB_WORKING);
  leave(l, j, WR_JOB_WAITING);
  wr_jobq_push_front(&l->waiting[j->handler], j);
}

uint64_t wr_ledger_lowest_open(const wr_ledger *l, size_t h, uint64_t gen) {
  if (h >= l->nh) return UINT64_MAX;
  for (const wr_job *j = l->held_head[h]; j; j = j->by_tag_next)
    if (j->gen == gen) return j->env.delivery_tag;
  return UINT64_MAX;
}

size_t wr_ledger_count(const wr_ledger *l, size_t h) {
  size_t n = 0;
  for (const wr_job *j = h < l->nh ? l->held_head[h] : NULL; j;
       j = j->by_tag_next)
    n++;
  return n;
}

const char *wr_ledger_state_name(wr_job_state st) {
  static const char *const names[WR_JOB_NSTATES] = {
      "free",     "received",   "waiting", "working",
      "settling", "confirming", "parked",  "held"};
  return st < WR_JOB_NSTATES ? names[st] : "?";
}
