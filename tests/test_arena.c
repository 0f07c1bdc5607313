/* The body arena's blocks: sized in classes, reused, and the region given
 * back once idle. */
#include <criterion/criterion.h>
#include <string.h>

#include "arena.h"

Test(arena, blocks_are_reused_by_size_class) {
  wr_arena *a = wr_arena_open("unit");
  cr_assert(a);
  uint64_t o1, o2, o3;
  char *p1 = wr_arena_alloc(a, 100000, &o1);
  char *p2 = wr_arena_alloc(a, 100000, &o2);
  cr_assert(p1 && p2);
  cr_assert_neq(o1, o2);
  memset(p1, 1, 100000);
  memset(p2, 2, 100000);
  cr_assert_eq(p2[99999], 2, "blocks do not overlap");
  cr_assert_eq(p1[99999], 1);
  /* 100000 rounds up to 112 KiB (quarters of 128 KiB): 25% slack at most */
  cr_assert_eq(wr_arena_live(a), 2 * 114688);
  wr_arena_free(a, o1, 100000);
  cr_assert_eq(wr_arena_live(a), 114688);
  /* A size of the same class takes the freed block back. */
  cr_assert_eq(wr_arena_alloc(a, 110000, &o3), p1);
  cr_assert_eq(o3, o1);
  /* Another class does not. */
  uint64_t o4;
  cr_assert(wr_arena_alloc(a, 5000, &o4));
  cr_assert(o4 != o1 && o4 != o2);
  wr_arena_close(a);
}

/* Every quarter of a power of two is its own class: a freed block never
 * goes to a request larger than it. */
Test(arena, a_freed_block_never_serves_a_larger_size) {
  wr_arena *a = wr_arena_open("unit");
  static const size_t quarter = 16384; /* of 64 KiB..128 KiB */
  for (size_t q = 5; q < 8; q++) {
    uint64_t small, big;
    cr_assert(wr_arena_alloc(a, q * quarter, &small));
    wr_arena_free(a, small, q * quarter);
    cr_assert(wr_arena_alloc(a, q * quarter + 1, &big));
    cr_assert_neq(big, small, "%zu quarters' block served %zu bytes", q,
                  q * quarter + 1);
    uint64_t again;
    cr_assert(wr_arena_alloc(a, q * quarter - 1, &again));
    cr_assert_eq(again, small, "a size of its own class takes it back");
  }
  wr_arena_close(a);
}

Test(arena, a_block_grows_the_region_and_keeps_its_address) {
  wr_arena *a = wr_arena_open("unit");
  uint64_t o1, o2;
  char *p1 = wr_arena_alloc(a, 4096, &o1);
  memcpy(p1, "kept", 5);
  size_t before = wr_arena_mapped(a);
  char *p2 = wr_arena_alloc(a, 40u << 20, &o2);
  cr_assert(p2);
  cr_assert_gt(wr_arena_mapped(a), before, "grew");
  cr_assert_geq(wr_arena_mapped(a), o2 + (40u << 20));
  p2[(40u << 20) - 1] = 'x';
  cr_assert_str_eq(p1, "kept", "earlier blocks stay where they were");
  cr_assert_eq(wr_arena_view(a, o1, 5), p1, "a view is the same address");
  cr_assert_null(wr_arena_view(a, wr_arena_mapped(a), 1), "outside the file");
  cr_assert_null(wr_arena_view(a, UINT64_MAX - 1, 2), "no wrap-around");
  wr_arena_close(a);
}

Test(arena, an_idle_region_past_the_keep_size_is_given_back) {
  wr_arena *a = wr_arena_open("unit");
  uint64_t o;
  cr_assert(wr_arena_alloc(a, WR_ARENA_KEEP + 1, &o));
  size_t grown = wr_arena_mapped(a);
  wr_arena_tick(a, 100.0);
  cr_assert_eq(wr_arena_mapped(a), grown, "never while a block is held");
  wr_arena_free(a, o, WR_ARENA_KEEP + 1);
  wr_arena_tick(a, 200.0);
  wr_arena_tick(a, 201.0);
  cr_assert_eq(wr_arena_mapped(a), grown, "not at once");
  wr_arena_tick(a, 206.0);
  cr_assert_eq(wr_arena_mapped(a), 0, "given back after idling");
  char *p = wr_arena_alloc(a, 10000, &o);
  cr_assert(p, "and usable again");
  cr_assert_eq(o, 0);
  p[9999] = 1;
  wr_arena_close(a);
}

Test(arena, a_small_region_is_kept) {
  wr_arena *a = wr_arena_open("unit");
  uint64_t o;
  cr_assert(wr_arena_alloc(a, 1 << 20, &o));
  wr_arena_free(a, o, 1 << 20);
  wr_arena_tick(a, 1.0);
  wr_arena_tick(a, 100.0);
  cr_assert_gt(wr_arena_mapped(a), 0);
  wr_arena_close(a);
}
