/*
 * A handler's pool of supervised worker processes (worker.c).
 *
 * `concurrency` processes per handler, each running one job at a time, so
 * at most `concurrency` jobs run at once by construction. To keep workers
 * busy without a round trip per job, up to `depth` jobs are queued to a
 * worker; it runs them in order and answers each as it finishes. The pool
 * keeps that queue, so the job at its head is the one running: when a
 * process dies, exactly that job is reported lost, the ones behind it
 * (never started) are handed back, and the process is restarted with
 * backoff. Single threaded: called only from the supervisor's event loop.
 */
#ifndef WR_POOL_H
#define WR_POOL_H

#include <libconfig.h>
#include <sys/types.h>

#include <warren/handler.h>

#include "backoff.h"
#include "clock.h"
#include "ipc.h"
#include "job.h"

#define WR_POOL_MAX_DEPTH WR_IPC_SLOTS

typedef enum wr_child_state {
  WR_CHILD_DOWN = 0, /* not running; restart_at says when */
  WR_CHILD_STARTING, /* forked, init() not confirmed yet */
  WR_CHILD_IDLE,     /* no job queued */
  WR_CHILD_BUSY,     /* running q[head], maybe more queued */
  WR_CHILD_EXITING,  /* killed or told to stop; waiting to reap */
} wr_child_state;

typedef struct wr_child {
  pid_t pid;
  int fd;
  wr_child_state state;
  wr_job *q[WR_POOL_MAX_DEPTH]; /* given, unanswered; q[head] is running */
  int head, len;
  int unsent; /* the last `unsent` of q are still in `out` */
  uint64_t rev[WR_POOL_MAX_DEPTH]; /* ids revoked, awaiting their skip */
  int nrev;
  wr_ipc_shm *shm;      /* results (ipc.h), shared with the worker */
  uint32_t collected;   /* results taken from shm */
  wr_ipc_batch *out;    /* jobs given, not yet written */
  unsigned char *arena; /* their flattened headers */
  unsigned char *big;   /* one job's headers too large for the arena */
  size_t arena_used;
  double restart_at;  /* monotonic seconds, when DOWN */
  wr_backoff restart; /* consecutive deaths back off restarts */
  int timed_out;      /* killed for running past the job timeout */
  unsigned long jobs; /* results since it started */
  int retiring;       /* takes no more jobs; stopped and replaced when idle */
  wr_ipc_reader rd;
  /* WR_IPC_EXTRAS frames read, each waiting for its job's result: job
   * ids and malloc'd payloads, oldest first */
  struct {
    uint64_t job_id;
    unsigned char *p;
    size_t len;
  } xq[WR_POOL_MAX_DEPTH];
  int nx;
  double spawned;       /* monotonic seconds of its fork */
  unsigned long deaths; /* unplanned exits (not recycles or timeouts) */
  int revoked;          /* killed to stop a revoked job (revoked.h) */
  char version[16];     /* the plugin it was forked with (p->version) */
} wr_child;

struct wr_pool;
typedef struct wr_pool_events {
  /* The worker finished `job` with `result`; err is its set_error text.
   * What the handler added (extras.h), if anything, is job->xbuf, which
   * the callee then owns. */
  void (*done)(void *ctx, struct wr_pool *p, wr_job *job, int result,
               const char *err, size_t err_len);
  /* The worker running `job` died; `why` describes how. timed_out: the
   * pool killed it because the job ran past p->timeout. */
  void (*lost)(void *ctx, struct wr_pool *p, wr_job *job, const char *why,
               int timed_out);
  /* `job` was queued to a worker that never started it: the worker died
   * first (called after lost(), last queued first, so pushing each to the
   * front of a FIFO restores the order), or skipped it after
   * wr_pool_drain(). No attempt was spent on it. */
  void (*unstarted)(void *ctx, struct wr_pool *p, wr_job *job);
  /* Optional. `job` became the one its worker runs (as far as the pool knows:
   * the worker takes it once the job before it is answered). */
  void (*started)(void *ctx, struct wr_pool *p, wr_job *job);
} wr_pool_events;

typedef struct wr_pool {
  const char *name;
  const warren_handler *def;
  const config_setting_t *settings;
  int n;
  int depth;              /* jobs queued per worker, 1..WR_POOL_MAX_DEPTH */
  struct wr_arena *arena; /* the handler's bodies (arena.h); NULL: none */
  wr_child *children;
  int idle;               /* children in WR_CHILD_IDLE */
  int busy;               /* children in WR_CHILD_BUSY */
  double restart_max;     /* retry after this when fork() fails */
  double timeout;         /* seconds a job may run, 0: no limit */
  unsigned long max_jobs; /* recycle a worker after this many, 0: never */
  uint32_t max_rss_kb; /* recycle a worker whose peak RSS passed it, 0: never */
  uint32_t max_result; /* bytes of a job's result (extras.h); 0: default */
  const wr_pool_events *ev;
  void *ctx;
  unsigned long restarts; /* total, for status */
  int draining;           /* wr_pool_drain was called */
  int warned_headers;     /* a job's headers passed a limit (headers.h) */
  char version[16];       /* the plugin new workers run (plugin.h) */
} wr_pool;

int wr_pool_init(wr_pool *p, const char *name, const warren_handler *def,
                 const config_setting_t *settings, int n, double restart_min,
                 double restart_max, const wr_pool_events *ev, void *ctx);

/* Fork every worker and wait (up to timeout_s) until each has run init().
 * Fails if any worker refuses to start. */
int wr_pool_start(wr_pool *p, double timeout_s, char *err, size_t errlen);

/* The worker with the fewest queued jobs that can take another, or NULL. */
wr_child *wr_pool_pick(wr_pool *p);

/* The job worker c is running, or NULL. */
wr_job *wr_pool_running(const wr_child *c);

/* Queue `job` to worker c (from wr_pool_pick). It is written with the
 * others given in the same round by wr_pool_flush(). On WARREN_OK the pool
 * owns the job until done/lost/unstarted hands it back; otherwise (the
 * worker's socket is full, or it is gone) the job stays the caller's. */
int wr_pool_dispatch(wr_pool *p, wr_child *c, wr_job *job);

/* Write every worker's queued jobs, one writev each, as far as each
 * socket takes them now; the rest is written as the sockets drain. */
void wr_pool_flush(wr_pool *p);

/* c has jobs its socket could not take yet: poll c->fd for POLLOUT and
 * call wr_pool_flush when it is writable. */
int wr_pool_wants_write(const wr_child *c);

/* Take the results workers published (calls `done`). Cheap: one atomic
 * load per busy worker; call it every turn of the loop. */
void wr_pool_collect(wr_pool *p);

/* The loop is about to sleep: ask busy workers to wake it. Returns 1 if
 * results are already waiting (then it must not sleep). */
int wr_pool_sleep(wr_pool *p);

/* Stopping: workers finish the job they run and skip the ones queued
 * behind it, which come back through `unstarted`. */
void wr_pool_drain(wr_pool *p);

/* The connection the jobs came on is gone, so their acks could not
 * count: take back every job queued to a worker that has not started it
 * (the worker skips it; the claim in ipc.h decides the race), and hand
 * each back through `unstarted`. The jobs running go on. Returns how many
 * were taken back. */
int wr_pool_revoke_unstarted(wr_pool *p);

/* Stop the job c runs (revoked with terminate, revoked.h): the jobs
 * queued behind it are taken back first (through `unstarted`), then the
 * worker is killed. Reaping reports the job through `lost`; the death is
 * not a crash (deaths and the restart backoff do not move) and the worker
 * is restarted at once. Returns 1, or 0 when c no longer runs that job
 * (it finished and the worker took the next). */
int wr_pool_terminate(wr_pool *p, wr_child *c);

/* c->fd is readable (or hung up). */
void wr_pool_readable(wr_pool *p, wr_child *c);

/* A child exited; returns 1 if pid was one of this pool's. */
int wr_pool_reap(wr_pool *p, pid_t pid, int status);

/* Restart workers whose backoff is over and kill those whose job ran
 * past the timeout. Returns the earliest future time something is due,
 * or 0 when nothing is. */
double wr_pool_tick(wr_pool *p, double now);

/* Stop every worker: close their sockets so they run shutdown() and exit;
 * after grace_s SIGKILL what is left. Jobs still held are reported lost. */
void wr_pool_stop(wr_pool *p, double grace_s);

void wr_pool_free(wr_pool *p);

/* The fields of a job as a worker receives them (ipc.h), but for the
 * headers blob, which the caller encodes. Pointers into job->env. */
void wr_pool_job_fields(const wr_job *job, wr_ipc_field f[WR_JOB_NFIELDS]);

/* Which of its properties a job carries (WARREN_MESSAGE_HAS_*). */
uint32_t wr_pool_job_present(const wr_job *job);

/* One worker as status reports show it (health.h). */
typedef struct wr_pool_worker {
  pid_t pid; /* 0 while down */
  wr_child_state state;
  const wr_job *job;    /* the one it runs, or NULL */
  int queued;           /* jobs given to it, the running one included */
  double spawned;       /* monotonic seconds */
  unsigned long jobs;   /* results since it started */
  unsigned long deaths; /* unplanned exits of this slot so far */
  const char *version;  /* the plugin it runs (plugin.h) */
} wr_pool_worker;

/* A new plugin (reload): workers forked from now on run `def`, shown as
 * `version`. Every worker running now retires: the job it runs goes on
 * to its end, the jobs queued behind it come back through `unstarted` (if
 * the worker has not claimed the next one yet; else that one runs here
 * too), and it is replaced once idle. The caller keeps `def` valid while
 * workers may be forked from it. */
void wr_pool_replace(wr_pool *p, const warren_handler *def,
                     const char *version);

/* Worker k (0..p->n-1) of p. */
void wr_pool_worker_info(const wr_pool *p, int k, wr_pool_worker *out);

/* Unplanned worker exits of p so far, every slot's. */
unsigned long wr_pool_deaths(const wr_pool *p);

#endif
