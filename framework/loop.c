#include "loop.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <warren/status.h>

#include "clock.h"
#include "log.h"

#define MAX_PHASES 16
#define MAX_SIGNALS 16
#define IDLE_WAKE_MS 1000 /* no turn sleeps longer than this */

typedef struct watch {
  int fd;
  wr_loop_io_fn fn; /* NULL: unwatched, removed at the next turn */
  void *ctx;
} watch;

struct wr_loop {
  struct {
    const wr_loop_phase *ph;
    void *ctx;
  } phase[MAX_PHASES];
  size_t nphase;
  struct {
    int signo;
    wr_loop_signal_fn fn;
    void *ctx;
  } sig[MAX_SIGNALS];
  size_t nsig;
  sigset_t mask, old_mask;
  int sigfd;
  watch *w; /* w[k] is polled as pfd[k + 1]; pfd[0] is the signalfd */
  struct pollfd *pfd;
  size_t nw, cap;
  int stopped;
};

int wr_loop_create(wr_loop **out) {
  wr_loop *l = calloc(1, sizeof *l);
  if (!l) return WARREN_NOMEM;
  l->sigfd = -1;
  l->pfd = calloc(1, sizeof *l->pfd); /* the signalfd's entry */
  if (!l->pfd) {
    free(l);
    return WARREN_NOMEM;
  }
  sigemptyset(&l->mask);
  sigprocmask(SIG_BLOCK, NULL, &l->old_mask);
  *out = l;
  return WARREN_OK;
}

void wr_loop_destroy(wr_loop *l) {
  if (!l) return;
  if (l->sigfd >= 0) {
    close(l->sigfd);
    sigprocmask(SIG_SETMASK, &l->old_mask, NULL);
  }
  free(l->w);
  free(l->pfd);
  free(l);
}

int wr_loop_add_phase(wr_loop *l, const wr_loop_phase *ph, void *ctx) {
  if (l->nphase == MAX_PHASES) return WARREN_TOO_LARGE;
  l->phase[l->nphase].ph = ph;
  l->phase[l->nphase++].ctx = ctx;
  return WARREN_OK;
}

int wr_loop_watch(wr_loop *l, int fd, short events, wr_loop_io_fn fn,
                  void *ctx) {
  if (l->nw == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 16;
    watch *w = realloc(l->w, cap * sizeof *w);
    if (!w) return WARREN_NOMEM;
    l->w = w;
    struct pollfd *p = realloc(l->pfd, (cap + 1) * sizeof *p);
    if (!p) return WARREN_NOMEM;
    l->pfd = p;
    l->cap = cap;
  }
  l->w[l->nw] = (watch){fd, fn, ctx};
  l->pfd[l->nw + 1] = (struct pollfd){fd, events, 0};
  l->nw++;
  return WARREN_OK;
}

void wr_loop_unwatch(wr_loop *l, int fd, void *ctx) {
  for (size_t k = 0; k < l->nw; k++)
    if (l->w[k].fn && l->w[k].fd == fd && l->w[k].ctx == ctx) {
      l->w[k].fn = NULL;
      l->pfd[k + 1].fd = -1; /* poll ignores negative fds */
    }
}

/* Drop the unwatched entries; done between turns only, so indexes stay
 * valid while callbacks run. */
static void compact(wr_loop *l) {
  size_t n = 0;
  for (size_t k = 0; k < l->nw; k++) {
    if (!l->w[k].fn) continue;
    l->w[n] = l->w[k];
    l->pfd[n + 1] = l->pfd[k + 1];
    n++;
  }
  l->nw = n;
}

int wr_loop_on_signal(wr_loop *l, int signo, wr_loop_signal_fn fn, void *ctx) {
  if (l->nsig == MAX_SIGNALS) return WARREN_TOO_LARGE;
  sigaddset(&l->mask, signo);
  sigprocmask(SIG_BLOCK, &l->mask, NULL);
  int fd = signalfd(l->sigfd, &l->mask, SFD_NONBLOCK | SFD_CLOEXEC);
  if (fd < 0) return WARREN_IO;
  l->sigfd = fd;
  l->sig[l->nsig].signo = signo;
  l->sig[l->nsig].fn = fn;
  l->sig[l->nsig++].ctx = ctx;
  return WARREN_OK;
}

void wr_loop_stop(wr_loop *l) {
  l->stopped = 1;
}

static void read_signals(wr_loop *l) {
  struct signalfd_siginfo si;
  while (read(l->sigfd, &si, sizeof si) == (ssize_t)sizeof si)
    for (size_t i = 0; i < l->nsig; i++)
      if (l->sig[i].signo == (int)si.ssi_signo)
        l->sig[i].fn(l->sig[i].ctx, &si);
}

/* Milliseconds until `due` (0: nothing due), capped at ms. */
static int until(int ms, double due, double now) {
  if (due <= 0) return ms;
  double d = (due - now) * 1000.0;
  if (d <= 0) return 0;
  return d < ms ? (int)d + 1 : ms;
}

int wr_loop_run(wr_loop *l) {
  while (!l->stopped) {
    compact(l);
    double now = wr_now();
    int ms = IDLE_WAKE_MS;
    for (size_t i = 0; i < l->nphase && !l->stopped; i++)
      if (l->phase[i].ph->prepare)
        ms = until(ms, l->phase[i].ph->prepare(l->phase[i].ctx, now), now);
    if (l->stopped) break;
    for (size_t i = 0; i < l->nphase && ms > 0; i++)
      if (l->phase[i].ph->idle && l->phase[i].ph->idle(l->phase[i].ctx)) ms = 0;
    l->pfd[0] = (struct pollfd){l->sigfd, POLLIN, 0};
    int pr = poll(l->pfd, l->nw + 1, ms);
    if (pr < 0 && errno != EINTR) {
      wr_error("poll: %s", strerror(errno));
      return -1;
    }
    if (pr > 0 && l->pfd[0].revents) read_signals(l);
    size_t nw = l->nw; /* fds watched by callbacks wait for the next turn */
    for (size_t k = 0; pr > 0 && k < nw; k++) {
      short ev = l->pfd[k + 1].revents;
      if (ev && l->w[k].fn) l->w[k].fn(l->w[k].ctx, l->w[k].fd, ev);
    }
    now = wr_now();
    for (size_t i = 0; i < l->nphase; i++)
      if (l->phase[i].ph->check) l->phase[i].ph->check(l->phase[i].ctx, now);
  }
  return 0;
}
