/* warren dlq's pure parts (tools/dlq.c). */
#include <criterion/criterion.h>
#include <stdint.h>

#include "dlq.h"

/* A publisher can set warren-replays to anything: the count saturates
 * and never goes below 1 (2^63-1 once aborted the replay). */
Test(dlq, the_replay_count_saturates) {
  cr_assert_eq(wr_dlq_next_replays(0), 1);
  cr_assert_eq(wr_dlq_next_replays(41), 42);
  cr_assert_eq(wr_dlq_next_replays(INT64_MAX), INT64_MAX);
  cr_assert_eq(wr_dlq_next_replays(INT64_MAX - 1), INT64_MAX);
  cr_assert_eq(wr_dlq_next_replays(-5), 1);
  cr_assert_eq(wr_dlq_next_replays(INT64_MIN), 1);
}
