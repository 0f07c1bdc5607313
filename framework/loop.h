/*
 * A small event loop that knows nothing of its users (like redis's ae.c
 * and libuv's uv_run): file descriptors, signals and phases are registered
 * by the modules that own them. One turn:
 *
 *   1. prepare  every phase says when it next has work (a time <= now
 *               means "do not sleep");
 *   2. idle     if the loop would sleep, every phase may flush what it
 *               holds, or ask not to sleep;
 *   3. poll     the watched fds and the signalfd, until the earliest due;
 *   4. io       callbacks of the ready fds, signals first;
 *   5. check    every phase, in the order they were added.
 *
 * Single threaded: every call comes from the thread that runs the loop.
 * See docs/threading.md.
 */
#ifndef WR_LOOP_H
#define WR_LOOP_H

#include <stddef.h>
#include <sys/signalfd.h>

typedef struct wr_loop wr_loop;

typedef void (*wr_loop_io_fn)(void *ctx, int fd, short revents);
typedef void (*wr_loop_signal_fn)(void *ctx, const struct signalfd_siginfo *si);

/* One phase of a turn; any member may be NULL. */
typedef struct wr_loop_phase {
  /* Monotonic time something is next due, 0 for nothing. */
  double (*prepare)(void *ctx, double now);
  /* About to sleep: return 1 to poll without sleeping. */
  int (*idle)(void *ctx);
  /* After poll and the fd callbacks. */
  void (*check)(void *ctx, double now);
} wr_loop_phase;

int wr_loop_create(wr_loop **out);
/* Restores the signal mask the loop changed. NULL is allowed. */
void wr_loop_destroy(wr_loop *l);

/* Phases run in the order they are added; ph must outlive the loop. */
int wr_loop_add_phase(wr_loop *l, const wr_loop_phase *ph, void *ctx);

/* Watch fd for `events` (POLLIN...), calling fn(ctx, ...). A callback
 * may watch and unwatch any fd, its own included; a watch removed during
 * a turn gets no further callback in that turn. */
int wr_loop_watch(wr_loop *l, int fd, short events, wr_loop_io_fn fn,
                  void *ctx);
/* Remove the watch of fd with ctx (an fd number can be reused by another
 * owner before the first one noticed it closed). */
void wr_loop_unwatch(wr_loop *l, int fd, void *ctx);

/* Read signo through the loop's signalfd from now on (it is blocked for
 * the calling thread; processes forked later must unblock it). */
int wr_loop_on_signal(wr_loop *l, int signo, wr_loop_signal_fn fn, void *ctx);

/* Make wr_loop_run return after the current turn. */
void wr_loop_stop(wr_loop *l);

/* Turn until wr_loop_stop. Returns 0, or -1 when poll fails. */
int wr_loop_run(wr_loop *l);

#endif
