/* Ack coalescing (framework/acks.c): which tags may be acked, and when. */
#include <criterion/criterion.h>
#include <stdint.h>

#include <warren/status.h>

#include "acks.h"

static wr_acks a;

static void setup(void) {
  cr_assert_eq(wr_acks_init(&a, 8, 4), WARREN_OK);
}
static void teardown(void) {
  wr_acks_free(&a);
}

TestSuite(acks, .init = setup, .fini = teardown);

Test(acks, a_multiple_ack_never_covers_a_tag_still_open) {
  /* 1, 2, 3 and 5 finished; 4 still runs. */
  uint64_t done[] = {3, 1, 5, 2};
  for (size_t i = 0; i < 4; i++) wr_acks_add(&a, done[i], 1.0);
  wr_ack_plan p = wr_acks_take(&a, 4);
  cr_assert_eq(p.upto, 3, "one multiple ack covers the run below the open tag");
  cr_assert_eq(p.n_single, 1);
  cr_assert_eq(p.single[0], 5, "the finished tag above it is acked alone");
  cr_assert_eq(a.n, 0, "taking empties the set");
}

Test(acks, nothing_open_acks_everything_with_one_frame) {
  wr_acks_add(&a, 7, 1.0);
  wr_acks_add(&a, 6, 1.0);
  wr_ack_plan p = wr_acks_take(&a, UINT64_MAX);
  cr_assert_eq(p.upto, 7);
  cr_assert_eq(p.n_single, 0);
}

Test(acks, lowest_open_below_every_finished_tag_means_singles_only) {
  wr_acks_add(&a, 9, 1.0);
  wr_acks_add(&a, 8, 1.0);
  wr_ack_plan p = wr_acks_take(&a, 2);
  cr_assert_eq(p.upto, 0, "no multiple ack may cover open tag 2");
  cr_assert_eq(p.n_single, 2);
  cr_assert_eq(p.single[0], 8, "sorted");
  cr_assert_eq(p.single[1], 9);
}

Test(acks, a_batch_is_due_when_full) {
  cr_assert_eq(wr_acks_add(&a, 1, 1.0), 0);
  cr_assert_eq(wr_acks_add(&a, 2, 1.0), 0);
  cr_assert_eq(wr_acks_add(&a, 3, 1.0), 0);
  cr_assert_eq(wr_acks_add(&a, 4, 1.0), 1, "the fourth of a batch of 4");
}

Test(acks, overdue_counts_from_the_oldest_waiting_tag) {
  cr_assert(!wr_acks_overdue(&a, 5.0, 0.001), "nothing waits");
  wr_acks_add(&a, 1, 1.0);
  wr_acks_add(&a, 2, 1.5);
  cr_assert(!wr_acks_overdue(&a, 1.0005, 0.001));
  cr_assert(wr_acks_overdue(&a, 1.002, 0.001), "tag 1 waits since 1.0");
  wr_acks_take(&a, UINT64_MAX);
  cr_assert(!wr_acks_overdue(&a, 9.0, 0.001));
}

Test(acks, more_tags_than_capacity_are_refused_not_dropped) {
  for (uint64_t t = 1; t <= 8; t++) cr_assert_geq(wr_acks_add(&a, t, 1.0), 0);
  cr_assert_eq(wr_acks_add(&a, 9, 1.0), -1);
  cr_assert_eq(a.n, 8);
}

Test(acks, a_lost_connection_forgets_what_waited) {
  wr_acks_add(&a, 1, 1.0);
  wr_acks_add(&a, 2, 1.0);
  cr_assert_eq(wr_acks_forget(&a), 2);
  wr_ack_plan p = wr_acks_take(&a, UINT64_MAX);
  cr_assert_eq(p.upto, 0, "nothing left to ack");
  cr_assert_eq(p.n_single, 0);
}
