/* The settle decisions on publisher confirms (framework/settle.h), without
 * a broker: which awaited publishes a confirm covers, when a job awaits
 * nothing more, and what a nack of a dead letter's error result does. */
#include <criterion/criterion.h>

#include "settle.h"

static wr_pub_event ack(uint64_t tag, int multiple) {
  return (wr_pub_event){.kind = WR_PUB_ACK, .tag = tag, .multiple = multiple};
}

static wr_pub_event nack(uint64_t tag, int multiple) {
  return (wr_pub_event){.kind = WR_PUB_NACK, .tag = tag, .multiple = multiple};
}

Test(settle, one_multiple_confirm_settles_every_copy_it_covers) {
  wr_job a = {0}, b = {0}, c = {0};
  wr_settle_expect(&a, 3, 1);
  wr_settle_expect(&b, 4, 1);
  wr_settle_expect(&c, 6, 1);
  wr_pub_event ev = ack(5, 1);
  cr_assert(wr_settle_cover(&a, &ev) && !wr_settle_awaited(&a));
  cr_assert(wr_settle_cover(&b, &ev) && !wr_settle_awaited(&b));
  cr_assert_not(wr_settle_cover(&c, &ev), "6 is above the confirm");
  cr_assert(wr_settle_awaited(&c));
  ev = ack(6, 0);
  cr_assert(wr_settle_cover(&c, &ev) && !wr_settle_awaited(&c));
}

Test(settle, a_job_with_several_publishes_waits_for_all_of_them) {
  wr_job j = {0};
  wr_settle_expect(&j, 10, 3); /* two follow-ups and the result */
  wr_pub_event ev = ack(10, 0);
  cr_assert(wr_settle_cover(&j, &ev) && wr_settle_awaited(&j));
  ev = ack(12, 0);
  cr_assert(wr_settle_cover(&j, &ev) && wr_settle_awaited(&j), "11 waits");
  ev = ack(11, 0);
  cr_assert(wr_settle_cover(&j, &ev) && !wr_settle_awaited(&j));
  ev = ack(11, 0);
  cr_assert_not(wr_settle_cover(&j, &ev), "a confirm twice covers nothing");
}

Test(settle, a_single_confirm_covers_only_its_own_tag) {
  wr_job j = {0};
  wr_settle_expect(&j, 5, 1);
  wr_pub_event ev = ack(4, 0);
  cr_assert_not(wr_settle_cover(&j, &ev));
  ev = ack(7, 0);
  cr_assert_not(wr_settle_cover(&j, &ev), "not multiple: 7 alone");
  cr_assert(wr_settle_awaited(&j));
}

Test(settle, more_than_64_publishes_are_tracked_across_words) {
  wr_job j = {0};
  wr_settle_expect(&j, 1, 300);
  wr_pub_event ev = ack(299, 1);
  cr_assert(wr_settle_cover(&j, &ev) && wr_settle_awaited(&j));
  ev = ack(300, 0);
  cr_assert(wr_settle_cover(&j, &ev) && !wr_settle_awaited(&j));
}

Test(settle, a_refused_error_result_does_not_send_the_dead_letter_round) {
  wr_job j = {0};
  wr_settle_expect(&j, 8, 2); /* the dead letter, then its error result */
  j.dead = 1;
  j.reply_seq = 9;
  wr_pub_event ev = nack(9, 0);
  cr_assert_not(wr_settle_cover(&j, &ev), "not counted as a refused copy");
  cr_assert_eq(j.no_reply, 2, "the result is lost, and said so");
  ev = ack(8, 0);
  cr_assert(wr_settle_cover(&j, &ev) && !wr_settle_awaited(&j));
  /* A nacked dead-letter copy itself counts. */
  wr_job k = {0};
  wr_settle_expect(&k, 20, 2);
  k.dead = 1;
  k.reply_seq = 21;
  ev = nack(21, 1);
  cr_assert(wr_settle_cover(&k, &ev), "20 is covered by the multiple nack");
}
