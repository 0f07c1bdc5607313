/* Per-tenant concurrency (framework/tenant.h): which job may go to a
 * worker, which is held and which comes back first, the bucket of jobs
 * without a tenant, and when the consumer is renewed; driven through the
 * ledger's moves as the supervisor makes them. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "ledger.h"
#include "tenant.h"

enum { SLOTS = 32 };

typedef struct fixture {
  wr_ledger l;
  wr_tenants t;
  wr_tenant_set set;
  amqp_table_entry_t e[SLOTS]; /* each job's one header */
  char name[SLOTS][300];       /* its value */
} fixture;

static fixture fx;

static void setup(uint32_t limit, uint32_t hold, uint32_t prefetch) {
  memset(&fx, 0, sizeof fx);
  cr_assert_eq(wr_ledger_init(&fx.l, SLOTS, 1, NULL, NULL), 0);
  cr_assert_eq(
      wr_tenants_init(&fx.t, "tenant", limit, hold, prefetch, 3, SLOTS), 0);
  fx.set = (wr_tenant_set){&fx.t, 1};
  wr_ledger_watch(&fx.l, wr_tenants_moved, &fx.set);
}

static void teardown(void) {
  wr_ledger_free(&fx.l);
  wr_tenants_free(&fx.t);
}

/* A job delivered and admitted (RECEIVED -> WAITING), its header `tenant`
 * set to the string v (NULL: no header). */
static wr_job *admit_kind(const char *v, uint8_t kind) {
  wr_job *j = wr_ledger_slot(&fx.l);
  cr_assert(j, "a free slot");
  size_t k = (size_t)(j - fx.l.slots);
  if (v) {
    snprintf(fx.name[k], sizeof fx.name[k], "%s", v);
    fx.e[k].key = amqp_cstring_bytes("tenant");
    fx.e[k].value.kind = kind;
    fx.e[k].value.value.bytes = amqp_cstring_bytes(fx.name[k]);
    j->env.message.properties._flags = AMQP_BASIC_HEADERS_FLAG;
    j->env.message.properties.headers = (amqp_table_t){1, &fx.e[k]};
  }
  j = wr_ledger_take(&fx.l, 0);
  wr_ledger_move(&fx.l, j, WR_JOB_WAITING);
  return j;
}

static wr_job *admit(const char *v) {
  return admit_kind(v, AMQP_FIELD_KIND_UTF8);
}

/* What the supervisor's dispatch does with the head of the line: held
 * when its tenant may not run, else to a worker. Returns 1 if it runs. */
static int dispatch(wr_job *j) {
  if (!wr_tenants_may_run(&fx.t, j)) {
    wr_ledger_move(&fx.l, j, WR_JOB_HELD);
    return 0;
  }
  wr_ledger_move(&fx.l, j, WR_JOB_WORKING);
  return 1;
}

/* Breaks when the limit is not counted per tenant, or when a held job
 * blocks the jobs of other tenants behind it. */
Test(tenant, a_tenant_at_its_limit_is_held_and_others_go_past_it) {
  setup(1, 10, 10);
  wr_job *a1 = admit("a"), *a2 = admit("a"), *b1 = admit("b");
  cr_assert(dispatch(a1), "a's first job runs");
  cr_assert_not(dispatch(a2), "a's second waits: a runs its limit of 1");
  cr_assert_eq(a2->state, WR_JOB_HELD);
  cr_assert(dispatch(b1), "b's job goes past a's held one");
  cr_assert_eq(fx.t.held, 1);
  cr_assert_eq(fx.t.n, 2, "two tenants with jobs in hand");
  cr_assert_eq(wr_tenants_ready(&fx.t), NULL, "a has no room yet");
  teardown();
}

/* Breaks when an ended job does not give its tenant room back, or when
 * the tenant's jobs come back out of order. */
Test(tenant, an_ended_job_lets_its_tenants_oldest_held_job_run) {
  setup(1, 10, 10);
  wr_job *a1 = admit("a"), *a2 = admit("a"), *a3 = admit("a");
  cr_assert(dispatch(a1));
  cr_assert_not(dispatch(a2));
  cr_assert_not(dispatch(a3));
  wr_ledger_move(&fx.l, a1, WR_JOB_SETTLING); /* its attempt is over */
  cr_assert_eq(wr_tenants_ready(&fx.t), a2, "the oldest held job first");
  wr_ledger_move(&fx.l, a2, WR_JOB_WORKING);
  cr_assert_eq(wr_tenants_ready(&fx.t), NULL, "a is at its limit again");
  /* A new job of a waits behind the one still held, even with room. */
  wr_ledger_move(&fx.l, a2, WR_JOB_FREE);
  wr_job *a4 = admit("a");
  cr_assert_not(wr_tenants_may_run(&fx.t, a4), "a3 is held before it");
  cr_assert_eq(wr_tenants_ready(&fx.t), a3);
  teardown();
}

/* Breaks when a job taken back unstarted from a worker keeps counting
 * against its tenant. */
Test(tenant, a_job_taken_back_unstarted_stops_counting) {
  setup(1, 10, 10);
  wr_job *a1 = admit("a"), *a2 = admit("a");
  cr_assert(dispatch(a1));
  cr_assert_not(dispatch(a2));
  wr_ledger_wait_front(&fx.l, a1); /* its worker died before it started */
  cr_assert_eq(wr_tenants_ready(&fx.t), a2, "a has room again");
  teardown();
}

/* Breaks when jobs without the header (or with one that is not a
 * string, too long, or not UTF-8) are not one tenant of their own under
 * the same limit. */
Test(tenant, jobs_without_a_valid_tenant_share_one_limited_bucket) {
  setup(1, 10, 10);
  char big[WR_TENANT_MAX_LEN + 2];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  wr_job *n1 = admit(NULL), *n2 = admit(""), *n3 = admit(big),
         *n4 = admit("\xC3\x28"), *n5 = admit_kind("a", AMQP_FIELD_KIND_I32);
  wr_job *ok = admit("\xC3\xA9t\xC3\xA9"); /* valid UTF-8: its own tenant */
  cr_assert(dispatch(n1));
  cr_assert_not(dispatch(n2), "empty value: the same bucket");
  cr_assert_not(dispatch(n3), "too long: the same bucket");
  cr_assert_not(dispatch(n4), "not UTF-8: the same bucket");
  cr_assert_not(dispatch(n5), "not a string: the same bucket");
  cr_assert(dispatch(ok));
  cr_assert_eq(fx.t.untagged, 5);
  cr_assert_str_eq(wr_tenants_of_job(&fx.t, n1)->key, "");
  cr_assert_eq(fx.t.n, 2);
  teardown();
}

/* Breaks when a tenant's entry outlives its last job (the table would
 * fill with tenants long gone) or a held job's release leaves it linked. */
Test(tenant, a_tenant_is_forgotten_with_its_last_job) {
  setup(2, 10, 10);
  wr_job *a1 = admit("a"), *a2 = admit("a"), *a3 = admit("a");
  cr_assert(dispatch(a1));
  cr_assert(dispatch(a2), "a's limit is 2");
  cr_assert_not(dispatch(a3));
  wr_ledger_move(&fx.l, a3, WR_JOB_FREE); /* connection lost: redelivered */
  cr_assert_eq(fx.t.held, 0);
  cr_assert_eq(wr_tenants_held_first(&fx.t), NULL);
  wr_ledger_move(&fx.l, a1, WR_JOB_SETTLING);
  wr_ledger_move(&fx.l, a2, WR_JOB_SETTLING);
  cr_assert_eq(fx.t.n, 0, "no tenant left");
  cr_assert_eq(a1->tenant, 0, "a settling job has no tenant");
  teardown();
}

/* Breaks when the walk over held jobs (revoke, stop, a lost connection)
 * misses a tenant's line. */
Test(tenant, every_held_job_is_walked_tenant_by_tenant) {
  setup(1, 10, 10);
  const char *who[] = {"a", "b", "c", "a", "b", "c", "c"};
  int held = 0;
  for (size_t i = 0; i < sizeof who / sizeof *who; i++)
    held += !dispatch(admit(who[i]));
  cr_assert_eq(held, 4);
  int seen = 0;
  for (wr_job *j = wr_tenants_held_first(&fx.t); j;) {
    wr_job *next = wr_tenants_held_next(&fx.t, j);
    cr_assert_eq(j->state, WR_JOB_HELD);
    wr_ledger_move(&fx.l, j, WR_JOB_SETTLING); /* as a revoke does */
    seen++;
    j = next;
  }
  cr_assert_eq(seen, 4);
  cr_assert_eq(fx.t.held, 0);
  teardown();
}

/* Breaks when the window is renewed before half the prefetch is held,
 * with no tenant_hold, or when a new window would pass the slots. */
Test(tenant, the_window_is_renewed_when_half_of_it_is_held) {
  setup(1, 10, 4);
  cr_assert(dispatch(admit("a")));
  cr_assert_not(dispatch(admit("a")));
  cr_assert_not(wr_tenants_widen_wanted(&fx.t), "1 of 4 held");
  cr_assert_not(dispatch(admit("a")));
  cr_assert(wr_tenants_widen_wanted(&fx.t), "2 of 4 held");
  cr_assert(wr_tenants_widen_fits(&fx.t, 13), "13 + 4 within 4 + 3 + 10");
  cr_assert_not(wr_tenants_widen_fits(&fx.t, 14));
  uint32_t e = wr_tenants_widen(&fx.t);
  cr_assert_eq(e, 1);
  cr_assert_not(wr_tenants_widen_wanted(&fx.t),
                "the jobs held are the old consumer's");
  /* A job the old consumer delivered after it was cancelled does not
   * count against the new window either. */
  fx.t.tag = "new";
  wr_ledger_slot(&fx.l)->env.consumer_tag = amqp_cstring_bytes("old");
  wr_job *late = admit("a");
  cr_assert_not(dispatch(late));
  cr_assert_eq(fx.t.held_window, 0);
  teardown();
  setup(1, 0, 4); /* tenant_hold 0: never */
  for (int i = 0; i < 4; i++) dispatch(admit("a"));
  cr_assert_not(wr_tenants_widen_wanted(&fx.t));
  teardown();
}
