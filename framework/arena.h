/*
 * Where a large job's body lives, from the content frames to its ack: a
 * handler's region of shared memory (a memfd), mapped at the same address
 * in the supervisor and in every worker of the handler (they inherit it
 * at fork). The supervisor reads the body frames straight into a block of
 * it, the worker's handler reads the body where it lies, and retries and
 * dead letters republish it from there: no copy to the worker, and no
 * page faulted in per job, because freed blocks are reused (glibc would
 * give a large malloc'd body's pages back to the system at every free and
 * fault them in again for the next one).
 *
 * Blocks come in size classes four to a power of two (at most 25% slack)
 * and go back to their class's free list; the region grows by appending.
 * It is given back to the system when the handler has held no body in it
 * for ARENA_IDLE_S and it grew past WR_ARENA_KEEP (wr_arena_tick).
 *
 * One thread (the supervisor's loop) allocates and frees; a worker only
 * maps (wr_arena_view), read-only.
 */
#ifndef WR_ARENA_H
#define WR_ARENA_H

#include <stddef.h>
#include <stdint.h>

/* Bodies smaller than this are malloc'd and go to workers through the
 * socket, with the job: bench/run compare against a build with
 * -DWR_ARENA_MIN_BODY=65536 measured the socket 6% cheaper in CPU at
 * 4 KiB and the region 9% cheaper at 8 KiB, 20% at 16 KiB (docs/benchmarks.md).
 */
#ifndef WR_ARENA_MIN_BODY
#define WR_ARENA_MIN_BODY 8192
#endif
/* Address space reserved per handler; a body that does not fit in what
 * is left falls back to malloc and the socket. */
#define WR_ARENA_RESERVE ((size_t)4 << 30)
/* Kept mapped when idle: below this the region is not worth giving back. */
#define WR_ARENA_KEEP ((size_t)16 << 20)
#define WR_ARENA_NONE UINT64_MAX /* an offset meaning "not in the arena" */

typedef struct wr_arena wr_arena;

/* A handler's region, named after it (shown in /proc/PID/maps).
 * NULL when shared memory is not available (bodies then use malloc). */
wr_arena *wr_arena_open(const char *name);
void wr_arena_close(wr_arena *a);

/* A block of at least len bytes: its address, and its offset in *off.
 * NULL when the region cannot hold it. */
void *wr_arena_alloc(wr_arena *a, size_t len, uint64_t *off);
/* Give back the block at off, of the len it was allocated with. */
void wr_arena_free(wr_arena *a, uint64_t off, size_t len);

/* Give the region back to the system once it has been empty for a while
 * (now: monotonic seconds); called every turn of the loop. */
void wr_arena_tick(wr_arena *a, double now);

/* Bytes held by live blocks and mapped in all, for status and tests. */
size_t wr_arena_live(const wr_arena *a);
size_t wr_arena_mapped(const wr_arena *a);

/* ---- in a worker ---- */

/* In a freshly forked worker: keep a (its fd moved to `fd`), and unmap
 * and close every other handler's region. a may be NULL. */
void wr_arena_adopt(wr_arena *a, int fd);

/* The len bytes at off, mapping what the supervisor appended since the
 * fork. NULL if they lie outside the region (a protocol error). */
const void *wr_arena_view(wr_arena *a, uint64_t off, size_t len);

#endif
