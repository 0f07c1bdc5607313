#include "pool.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <warren/status.h>

#include "arena.h"
#include "clock.h"
#include "extras.h"
#include "headers.h"
#include "log.h"
#include "worker.h"

#define WR_POOL_ARENA (64 * 1024) /* flattened headers of one batch */
/* Jobs are queued behind a running one only while it is young: a worker
 * busy with a slow job gets nothing more to wait behind it. */
#define PIPELINE_WINDOW_S 0.005
/* A job still running after this long hands the jobs queued behind it
 * to other workers. */
#define REVOKE_AFTER_S 0.25

int wr_pool_init(wr_pool *p, const char *name, const warren_handler *def,
                 const config_setting_t *settings, int n, double restart_min,
                 double restart_max, const wr_pool_events *ev, void *ctx) {
  memset(p, 0, sizeof *p);
  p->children = calloc((size_t)n, sizeof *p->children);
  if (!p->children) return WARREN_NOMEM;
  for (int i = 0; i < n; i++) {
    wr_child *c = &p->children[i];
    c->fd = -1;
    /* No jitter: a handler's workers die for their own reasons. */
    wr_backoff_init(&c->restart, restart_min, restart_max, 0);
    c->shm = mmap(NULL, sizeof *c->shm, PROT_READ | PROT_WRITE,
                  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    c->out = malloc(sizeof *c->out);
    c->arena = malloc(WR_POOL_ARENA);
    if (c->shm == MAP_FAILED || !c->out || !c->arena) {
      if (c->shm == MAP_FAILED) c->shm = NULL;
      p->n = i + 1;
      wr_pool_free(p);
      return WARREN_NOMEM;
    }
  }
  p->name = name;
  p->depth = 1;
  p->max_result = WR_RESULT_DEFAULT_MAX;
  p->def = def;
  p->settings = settings;
  p->n = n;
  p->restart_max = restart_max;
  p->ev = ev;
  p->ctx = ctx;
  return WARREN_OK;
}

/* In the child: become a clean worker process and never return. */
static _Noreturn void child(wr_pool *p, wr_child *self, int fd, pid_t parent) {
  /* If the supervisor dies, its workers must not keep running jobs whose
   * acks nobody can send. */
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) _exit(0);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  /* Ctrl-C reaches the whole process group; the supervisor alone decides
   * when a worker stops, so a running job is not cut short. */
  signal(SIGINT, SIG_IGN);
  signal(SIGTERM, SIG_IGN);
  /* A handler writing to a closed pipe or socket gets EPIPE, as in most
   * servers, instead of dying with its job blamed as a crash. */
  signal(SIGPIPE, SIG_IGN);
  /* fd 3 is the socket, fd 4 the handler's arena; the socket is moved
   * out of the way first, as either may be on the other's number now. */
  int sock = fcntl(fd, F_DUPFD, 10);
  if (sock < 0) _exit(WR_WORKER_EXIT_PROTOCOL);
  wr_arena_adopt(p->arena, 4);
  if (dup2(sock, 3) < 0) _exit(WR_WORKER_EXIT_PROTOCOL);
  /* A program the handler runs must not hold the worker's socket (the
   * supervisor would not see the worker's end); what it forks without
   * exec is in the worker's own process group, killed with it. */
  fcntl(3, F_SETFD, FD_CLOEXEC);
  setpgid(0, 0);
  /* The AMQP socket and other workers' sockets and result memory stay
   * with the supervisor. */
  close_range(5, ~0U, 0);
  for (int i = 0; i < p->n; i++)
    if (&p->children[i] != self && p->children[i].shm)
      munmap(p->children[i].shm, sizeof *p->children[i].shm);
  wr_worker_main(3, self->shm, p->arena, p->name, p->def, p->settings);
}

/* Extras read from a worker whose results will not be collected. */
static void drop_extras(wr_child *c) {
  for (int i = 0; i < c->nx; i++) free(c->xq[i].p);
  c->nx = 0;
}

static int spawn(wr_pool *p, wr_child *c) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return -1;
  /* The supervisor's end never blocks: a busy worker's full socket must
   * not stop the loop (ipc.h). */
  fcntl(sv[0], F_SETFL, O_NONBLOCK);
  pid_t parent = getpid();
  atomic_store(&c->shm->published, 0);
  atomic_store(&c->shm->wake, 0);
  atomic_store(&c->shm->stop, p->draining);
  atomic_store(&c->shm->claim, 0);
  c->shm->rss_limit_kb = p->max_rss_kb;
  c->shm->max_result = p->max_result;
  c->jobs = 0;
  c->retiring = 0;
  memcpy(c->version, p->version, sizeof c->version);
  c->nrev = 0;
  c->collected = 0;
  c->unsent = 0;
  c->out->n = c->out->niov = c->out->first = c->out->done = 0;
  c->arena_used = 0;
  pid_t pid = fork();
  if (pid < 0) {
    close(sv[0]);
    close(sv[1]);
    return -1;
  }
  if (pid == 0) child(p, c, sv[1], parent);
  close(sv[1]);
  wr_ipc_reader_free(&c->rd);
  memset(&c->rd, 0, sizeof c->rd);
  drop_extras(c);
  c->pid = pid;
  c->fd = sv[0];
  c->state = WR_CHILD_STARTING;
  c->spawned = wr_now();
  c->head = c->len = 0;
  c->timed_out = 0;
  c->revoked = 0;
  return 0;
}

int wr_pool_start(wr_pool *p, double timeout_s, char *err, size_t errlen) {
  for (int i = 0; i < p->n; i++) {
    if (spawn(p, &p->children[i]) != 0) {
      snprintf(err, errlen, "handler %s: fork: %s", p->name, strerror(errno));
      return WARREN_WORKER_SPAWN;
    }
  }
  double deadline = wr_now() + timeout_s;
  for (int i = 0; i < p->n; i++) {
    wr_child *c = &p->children[i];
    while (c->state == WR_CHILD_STARTING) {
      int ms = (int)((deadline - wr_now()) * 1000);
      struct pollfd pfd = {c->fd, POLLIN, 0};
      if (ms <= 0 || poll(&pfd, 1, ms) == 0) {
        snprintf(err, errlen,
                 "handler %s: worker %d did not finish init() "
                 "within %.0f s",
                 p->name, (int)c->pid, timeout_s);
        return WARREN_PLUGIN_INIT;
      }
      wr_ipc_hdr h;
      const unsigned char *pl;
      long n = wr_ipc_reader_fill(&c->rd, c->fd);
      if (n == WR_IPC_AGAIN) continue;
      int got = n > 0 ? wr_ipc_reader_next(&c->rd, &h, &pl) : -1;
      if (got == 0) continue;
      if (got < 0 || h.type != WR_IPC_READY) {
        snprintf(err, errlen, "handler %s: worker %d failed to start: %.*s",
                 p->name, (int)c->pid,
                 got > 0 && h.type == WR_IPC_INIT_FAILED ? (int)h.len : 19,
                 got > 0 && h.type == WR_IPC_INIT_FAILED ? (const char *)pl
                                                         : "it exited early");
        return WARREN_PLUGIN_INIT;
      }
      c->state = WR_CHILD_IDLE;
      p->idle++;
    }
  }
  return WARREN_OK;
}

wr_child *wr_pool_pick(wr_pool *p) {
  wr_child *best = NULL;
  double now = 0;
  for (int i = 0; i < p->n; i++) {
    wr_child *c = &p->children[i];
    if (c->state != WR_CHILD_IDLE && c->state != WR_CHILD_BUSY) continue;
    if (c->len >= p->depth || c->nrev || c->retiring || c->revoked ||
        wr_ipc_batch_pending(c->out))
      continue;
    /* Never more queued than its remaining budget of jobs. */
    if (p->max_jobs && c->jobs + (unsigned long)c->len >= p->max_jobs) continue;
    if (c->len) {
      if (now == 0) now = wr_now();
      if (now - c->q[c->head]->started > PIPELINE_WINDOW_S) continue;
    }
    if (!best || c->len < best->len) best = c;
    if (c->len == 0) break;
  }
  return best;
}

wr_job *wr_pool_running(const wr_child *c) {
  return c->len ? c->q[c->head] : NULL;
}

static const char *field(amqp_bytes_t b, size_t *len) {
  *len = b.len;
  return b.bytes;
}

/* Kill a worker and whatever it forked (its process group). */
static void kill_worker(const wr_child *c) {
  if (c->pid <= 0) return;
  kill(-c->pid, SIGKILL);
  kill(c->pid, SIGKILL); /* in case it had not made its group yet */
}

/* Write what c's socket takes of its queued jobs. Returns 0 when all is
 * out, 1 when the rest waits for the socket to drain, -1 when the worker
 * is gone: it is killed, and reaping hands the unwritten jobs back as
 * never started. */
static int flush_child(wr_pool *p, wr_child *c) {
  if (!c->out->n) return 0;
  int before = c->out->done;
  int rc = wr_ipc_batch_send(c->out, c->fd);
  if (rc < 0) {
    wr_warn("handler %s: worker %d is gone (%s)", p->name, (int)c->pid,
            strerror(errno));
    kill_worker(c);
    return -1;
  }
  if (rc == 0) {
    c->unsent = 0;
    c->arena_used = 0; /* the blobs are written */
  } else {
    c->unsent -= c->out->done - before;
  }
  return rc;
}

void wr_pool_flush(wr_pool *p) {
  for (int i = 0; i < p->n; i++)
    if (p->children[i].fd >= 0 && p->children[i].out->n)
      flush_child(p, &p->children[i]);
}

int wr_pool_wants_write(const wr_child *c) {
  return c->fd >= 0 && wr_ipc_batch_pending(c->out);
}

/* Headers too large for a batch's arena (up to WR_HDR_MAX_BLOB) get a
 * worker's own buffer: only one such job is in flight at a time. */

void wr_pool_job_fields(const wr_job *job, wr_ipc_field f[WR_JOB_NFIELDS]) {
  const amqp_basic_properties_t *pr = &job->env.message.properties;
  memset(f, 0, WR_JOB_NFIELDS * sizeof *f);
  f[WR_JOB_EXCHANGE].ptr = field(job->env.exchange, &f[WR_JOB_EXCHANGE].len);
  f[WR_JOB_ROUTING_KEY].ptr =
      field(job->env.routing_key, &f[WR_JOB_ROUTING_KEY].len);
  if (pr->_flags & AMQP_BASIC_MESSAGE_ID_FLAG)
    f[WR_JOB_MESSAGE_ID].ptr = field(pr->message_id, &f[WR_JOB_MESSAGE_ID].len);
  if (pr->_flags & AMQP_BASIC_CORRELATION_ID_FLAG)
    f[WR_JOB_CORRELATION_ID].ptr =
        field(pr->correlation_id, &f[WR_JOB_CORRELATION_ID].len);
  if (pr->_flags & AMQP_BASIC_CONTENT_TYPE_FLAG)
    f[WR_JOB_CONTENT_TYPE].ptr =
        field(pr->content_type, &f[WR_JOB_CONTENT_TYPE].len);
  f[WR_JOB_BODY] =
      (wr_ipc_field){job->env.message.body.bytes, job->env.message.body.len};
}

uint32_t wr_pool_job_present(const wr_job *job) {
  amqp_flags_t fl = job->env.message.properties._flags;
  return ((fl & AMQP_BASIC_MESSAGE_ID_FLAG) ? WARREN_MESSAGE_HAS_MESSAGE_ID
                                            : 0) |
         ((fl & AMQP_BASIC_CORRELATION_ID_FLAG)
              ? WARREN_MESSAGE_HAS_CORRELATION_ID
              : 0) |
         ((fl & AMQP_BASIC_CONTENT_TYPE_FLAG) ? WARREN_MESSAGE_HAS_CONTENT_TYPE
                                              : 0);
}

int wr_pool_dispatch(wr_pool *p, wr_child *c, wr_job *job) {
  const amqp_basic_properties_t *pr = &job->env.message.properties;
  wr_ipc_field f[WR_JOB_NFIELDS];
  wr_pool_job_fields(job, f);
  size_t hlen;
  const amqp_table_t *t =
      wr_hdr_visible(pr, p->name, &p->warned_headers, &hlen);
  unsigned char *blob;
  int alone = hlen > WR_POOL_ARENA;
  if (alone && !c->big && !(c->big = malloc(WR_HDR_MAX_BLOB)))
    return WARREN_NOMEM;
  /* Room in the batch, or write it first; a worker whose socket is full
   * takes no more for now (the job stays the caller's). */
  if ((alone || c->arena_used + hlen > WR_POOL_ARENA ||
       c->out->n == WR_IPC_SLOTS) &&
      flush_child(p, c) != 0)
    return WARREN_IO;
  if (alone) {
    blob = c->big;
  } else {
    blob = c->arena + c->arena_used;
    c->arena_used += hlen;
  }
  wr_hdr_encode(t, blob);
  f[WR_JOB_HEADERS] = (wr_ipc_field){blob, hlen};
  wr_ipc_job j = {.job_id = job->id,
                  .delivery_tag = job->env.delivery_tag,
                  .attempt = job->meta.attempt,
                  .redelivered = job->env.redelivered ? 1u : 0u,
                  .body_off = p->arena ? job->body_off : WR_ARENA_NONE,
                  .check_body = job->signed_ok,
                  .crashes = job->meta.crashes,
                  .present = wr_pool_job_present(job)};
  if (j.body_off != WR_ARENA_NONE) { /* the worker reads it in place */
    j.body_len = f[WR_JOB_BODY].len;
    f[WR_JOB_BODY] = (wr_ipc_field){"", 0};
  }
  /* The body is hashed by the worker, off the loop (sigcheck.h). */
  if (job->signed_ok) memcpy(j.body_sha256, job->body_sha256, 32);
  if (job->trace.on) {
    memcpy(j.trace_id, job->trace.trace_id, 16);
    memcpy(j.span_id, job->trace.span_id, 8);
    j.trace_flags = job->trace.flags;
    j.traced = 1;
  }
  wr_ipc_batch_add(c->out, &j, f);
  c->unsent++;
  c->q[(c->head + c->len++) % WR_POOL_MAX_DEPTH] = job;
  if (c->len == 1) {
    c->state = WR_CHILD_BUSY;
    p->idle--;
    p->busy++;
    job->started = wr_now();
    if (p->ev->started) p->ev->started(p->ctx, p, job);
  }
  if (alone) flush_child(p, c); /* c->big holds one job's headers */
  return WARREN_OK;
}

/* Take c's published results, in order. */
/* Is this the skip of a revoked job? Then it is consumed here. */
static int revoked_skip(wr_child *c, const wr_ipc_slot *s) {
  if (!c->nrev || s->result != WR_IPC_SKIPPED) return 0;
  for (int i = 0; i < c->nrev; i++) {
    if (c->rev[i] != s->job_id) continue;
    c->rev[i] = c->rev[--c->nrev];
    c->collected++;
    /* All skipped: let the worker claim again from its next job. */
    if (!c->nrev) atomic_store(&c->shm->claim, c->collected);
    return 1;
  }
  return 0;
}

static void collect(wr_pool *p, wr_child *c) {
  uint32_t published = atomic_load(&c->shm->published);
  while (c->collected != published && (c->len > c->unsent || c->nrev)) {
    const wr_ipc_slot *s = &c->shm->slot[c->collected % WR_IPC_SLOTS];
    if (revoked_skip(c, s)) continue;
    if (c->len <= c->unsent) break;
    wr_job *job = c->q[c->head];
    /* Its extras came first on the socket: wait for them to be read. */
    if (s->extras && !c->nx) break;
    if (s->job_id != job->id || s->err_len > WR_IPC_MAX_ERROR ||
        (s->extras && c->xq[0].job_id != job->id)) {
      wr_warn(
          "handler %s: worker %d published a result for another job; "
          "killing it",
          p->name, (int)c->pid);
      kill_worker(c);
      c->collected = published; /* nothing more is trusted from it */
      return;
    }
    c->collected++;
    c->head = (c->head + 1) % WR_POOL_MAX_DEPTH;
    wr_backoff_reset(&c->restart);
    /* Celery's max_tasks_per_child and max_memory_per_child: a worker that
     * leaks is replaced once the jobs it holds are done. */
    if (s->result != WR_IPC_SKIPPED) c->jobs++;
    int over_rss = (int)s->over_rss;
    int retire =
        !c->retiring && ((p->max_jobs && c->jobs >= p->max_jobs) || over_rss);
    if (--c->len == 0) {
      c->state = WR_CHILD_IDLE;
      p->busy--;
      p->idle++;
    } else {
      c->q[c->head]->started = wr_now(); /* the next one starts now */
      if (p->ev->started) p->ev->started(p->ctx, p, c->q[c->head]);
    }
    if (s->extras) {
      job->xbuf = c->xq[0].p;
      job->xlen = c->xq[0].len;
      memmove(&c->xq[0], &c->xq[1], (size_t)--c->nx * sizeof c->xq[0]);
    }
    if (s->result == WR_IPC_SKIPPED)
      p->ev->unstarted(p->ctx, p, job);
    else
      p->ev->done(p->ctx, p, job, s->result, s->err, s->err_len);
    if (retire) {
      /* The worker skips what is queued behind (worker.c); those come
       * back unstarted and go to other workers. */
      c->retiring = 1;
      wr_info("handler %s: worker %d recycled after %lu job(s)%s", p->name,
              (int)c->pid, c->jobs,
              over_rss ? ": its memory passed max_worker_rss" : "");
    }
  }
}

void wr_pool_drain(wr_pool *p) {
  p->draining = 1;
  for (int i = 0; i < p->n; i++)
    if (p->children[i].shm) atomic_store(&p->children[i].shm->stop, 1);
}

void wr_pool_collect(wr_pool *p) {
  for (int i = 0; i < p->n; i++) {
    wr_child *c = &p->children[i];
    if (c->state != WR_CHILD_BUSY && !c->nrev) continue;
    if (atomic_load_explicit(&c->shm->wake, memory_order_relaxed))
      atomic_store(&c->shm->wake, 0); /* awake now */
    collect(p, c);
  }
}

int wr_pool_sleep(wr_pool *p) {
  int ready = 0;
  for (int i = 0; i < p->n; i++) {
    wr_child *c = &p->children[i];
    if (c->state != WR_CHILD_BUSY && !c->nrev) continue;
    /* Store, then load (both seq_cst); the worker stores published, then
     * loads wake: one of the two always sees the other. */
    atomic_store(&c->shm->wake, 1);
    ready |= atomic_load(&c->shm->published) != c->collected;
  }
  return ready;
}

/* A worker that broke protocol or hung up: kill it; reaping reports its
 * job. Its fd is closed now so poll() does not spin on the hang-up. */
static void discard(wr_pool *p, wr_child *c, const char *why) {
  /* A closed socket is how most deaths are first seen: reaping logs the
   * cause once, so the hang-up itself is only a debug line. */
  wr_log(strcmp(why, "closed its socket") ? WARREN_LOG_WARN : WARREN_LOG_DEBUG,
         "handler %s: worker %d %s; killing it", p->name, (int)c->pid, why);
  kill_worker(c);
  close(c->fd);
  c->fd = -1;
  if (c->state == WR_CHILD_IDLE) p->idle--;
  if (c->state == WR_CHILD_BUSY) p->busy--;
  c->state = WR_CHILD_EXITING;
}

/* Read once and handle every complete frame. Returns what read()
 * returned (0 on EOF), or -1 when the worker broke protocol (discarded). */
static long pump(wr_pool *p, wr_child *c) {
  long n = wr_ipc_reader_fill(&c->rd, c->fd);
  if (n <= 0) return n;
  wr_ipc_hdr h;
  const unsigned char *pl;
  int got;
  while ((got = wr_ipc_reader_next(&c->rd, &h, &pl)) == 1) {
    if (h.type == WR_IPC_READY && c->state == WR_CHILD_STARTING) {
      c->state = WR_CHILD_IDLE;
      p->idle++;
      wr_info("handler %s: worker %d ready", p->name, (int)c->pid);
    } else if (h.type == WR_IPC_INIT_FAILED) {
      wr_error("handler %s: worker %d: %.*s", p->name, (int)c->pid, (int)h.len,
               (const char *)pl);
    } else if (h.type == WR_IPC_WAKE && h.len == 0) {
      /* results are collected below */
    } else if (h.type == WR_IPC_EXTRAS && h.len >= 8 &&
               c->nx < WR_POOL_MAX_DEPTH) {
      unsigned char *x = malloc((size_t)h.len - 8);
      if (!x && h.len > 8) {
        discard(p, c, "sent extras that do not fit in memory");
        return -1;
      }
      memcpy(&c->xq[c->nx].job_id, pl, 8);
      if (h.len > 8) memcpy(x, pl + 8, (size_t)h.len - 8);
      c->xq[c->nx].p = x;
      c->xq[c->nx++].len = (size_t)h.len - 8;
    } else {
      discard(p, c, "sent an unexpected frame");
      return -1;
    }
  }
  if (got < 0) {
    discard(p, c, "sent a malformed frame");
    return -1;
  }
  return n;
}

void wr_pool_readable(wr_pool *p, wr_child *c) {
  long n = pump(p, c);
  if (c->state == WR_CHILD_BUSY) collect(p, c);
  if (n == 0) discard(p, c, "closed its socket");
  if (n == -1 && c->fd >= 0) discard(p, c, "socket failed");
}

static void describe(int status, int starting, char *buf, size_t len) {
  if (WIFSIGNALED(status))
    snprintf(buf, len, "killed by signal %d (%s)%s", WTERMSIG(status),
             strsignal(WTERMSIG(status)),
             WCOREDUMP(status) ? ", core dumped" : "");
  else if (starting && WIFEXITED(status) &&
           WEXITSTATUS(status) == WR_WORKER_EXIT_INIT)
    snprintf(buf, len, "init() failed");
  else
    snprintf(buf, len, "exited with status %d", WEXITSTATUS(status));
}

static void reaped(wr_pool *p, wr_child *c, int status, int restart) {
  /* Results the worker published before it died may not be collected
   * yet: take them first, or a finished job would be blamed for the death
   * and the one that really ran would pass for never started. */
  while (c->fd >= 0 && pump(p, c) > 0) {
  }
  /* What the worker forked dies with it (its group; pool.c child()). */
  if (c->pid > 0) kill(-c->pid, SIGKILL);
  if (c->state == WR_CHILD_BUSY) collect(p, c);
  char why[128];
  int timed_out = c->timed_out, revoked = c->revoked;
  if (timed_out)
    snprintf(why, sizeof why, "ran past the %.1f s timeout and was killed",
             p->timeout);
  else if (revoked)
    snprintf(why, sizeof why, "was killed to stop a revoked job");
  else
    describe(status, c->state == WR_CHILD_STARTING, why, sizeof why);
  if (c->fd >= 0) close(c->fd);
  if (c->state == WR_CHILD_IDLE) p->idle--;
  if (c->state == WR_CHILD_BUSY) p->busy--;
  /* Only a job that was written to the worker can have run. */
  wr_job *job = c->len > c->unsent ? wr_pool_running(c) : NULL;
  pid_t pid = c->pid;
  c->fd = -1;
  c->pid = 0;
  c->state = WR_CHILD_DOWN;
  if (restart) {
    double delay = wr_backoff_fail(&c->restart, 0.5);
    if (timed_out || c->retiring || revoked) {
      /* Recycling a hung or retired worker, or stopping a revoked job, is
       * not a crash. */
      delay = 0;
      wr_backoff_reset(&c->restart);
    } else {
      c->deaths++;
    }
    c->restart_at = wr_now() + delay;
    if (c->retiring && !job)
      wr_debug("handler %s: worker %d retired", p->name, (int)pid);
    else
      wr_log(timed_out || revoked ? WARREN_LOG_WARN : WARREN_LOG_ERROR,
             "handler %s: worker %d %s%s; restarting in %.1f s", p->name,
             (int)pid, why,
             job && !timed_out && !revoked ? " while running a job" : "",
             delay);
  }
  if (job) p->ev->lost(p->ctx, p, job, why, timed_out);
  for (int k = c->len - 1; k >= (job ? 1 : 0); k--)
    p->ev->unstarted(p->ctx, p, c->q[(c->head + k) % WR_POOL_MAX_DEPTH]);
  c->head = c->len = c->unsent = 0;
  c->out->n = c->out->niov = c->out->first = c->out->done = 0;
  c->arena_used = 0;
  drop_extras(c);
}

int wr_pool_reap(wr_pool *p, pid_t pid, int status) {
  for (int i = 0; i < p->n; i++) {
    if (p->children[i].pid == pid && pid > 0) {
      reaped(p, &p->children[i], status, 1);
      return 1;
    }
  }
  return 0;
}

/* Take back c's jobs from its from-th queued one on (0: the head too),
 * if the worker has not claimed that one yet (the claim in ipc.h decides
 * the race); they come back through `unstarted`, last first. Returns how
 * many, 0 when the worker claimed it first or nothing is there. */
static int revoke_from(wr_pool *p, wr_child *c, int from) {
  uint32_t r = c->collected + (uint32_t)from, expect = r;
  if (c->len <= from || !atomic_compare_exchange_strong(&c->shm->claim, &expect,
                                                        r | WR_IPC_REVOKED))
    return 0;
  int len = c->len;
  for (int k = from; k < len; k++)
    c->rev[c->nrev++] = c->q[(c->head + k) % WR_POOL_MAX_DEPTH]->id;
  c->len = from;
  if (!from) {
    c->state = WR_CHILD_IDLE;
    p->busy--;
    p->idle++;
  }
  for (int k = len - 1; k >= from; k--)
    p->ev->unstarted(p->ctx, p, c->q[(c->head + k) % WR_POOL_MAX_DEPTH]);
  return len - from;
}

int wr_pool_revoke_unstarted(wr_pool *p) {
  int total = 0;
  for (int i = 0; i < p->n; i++) {
    wr_child *c = &p->children[i];
    if (c->state != WR_CHILD_BUSY || c->nrev) continue;
    /* From the head if the worker has not claimed it, else from the job
     * behind it. */
    int n = revoke_from(p, c, 0);
    total += n ? n : revoke_from(p, c, 1);
  }
  return total;
}

int wr_pool_terminate(wr_pool *p, wr_child *c) {
  if (c->state != WR_CHILD_BUSY || c->len <= c->unsent) return 0;
  /* Nothing may be left behind it to start in its place before the kill
   * lands: if the worker has claimed the next job, the revoked one is
   * over. */
  if (c->len > 1 && !revoke_from(p, c, 1)) return 0;
  c->revoked = 1;
  kill_worker(c); /* reaping reports the job */
  return 1;
}

/* c's head job has run long: take back the jobs queued behind it, if the
 * worker has not claimed the next one yet, and hand them out again. */
static void revoke_queued(wr_pool *p, wr_child *c) {
  double ran = wr_now() - c->q[c->head]->started;
  int n = revoke_from(p, c, 1);
  if (n) /* else the head just finished and the next one started */
    wr_info(
        "handler %s: a job has run %.1f s in worker %d; %d job(s) queued "
        "behind it go to other workers",
        p->name, ran, (int)c->pid, n);
}

double wr_pool_tick(wr_pool *p, double now) {
  double next = 0;
  for (int i = 0; i < p->n; i++) {
    wr_child *c = &p->children[i];
    if (c->state == WR_CHILD_BUSY && p->n > 1 && c->len > 1 && !c->unsent &&
        !c->nrev) {
      double due = c->q[c->head]->started + REVOKE_AFTER_S;
      if (due <= now)
        revoke_queued(p, c);
      else if (next == 0 || due < next)
        next = due;
    }
    if (c->state == WR_CHILD_BUSY && p->timeout > 0 && !c->timed_out) {
      double due = c->q[c->head]->started + p->timeout;
      if (due <= now) {
        c->timed_out = 1;
        kill_worker(c); /* reaping reports the job */
      } else if (next == 0 || due < next) {
        next = due;
      }
    }
    if (c->retiring && c->state == WR_CHILD_IDLE && c->fd >= 0) {
      /* EOF on its socket: it runs shutdown() and exits; reaping starts
       * its replacement at once. */
      close(c->fd);
      c->fd = -1;
      p->idle--;
      c->state = WR_CHILD_EXITING;
    }
    if (c->state != WR_CHILD_DOWN) continue;
    if (c->restart_at <= now) {
      if (spawn(p, c) == 0) {
        p->restarts++;
        continue;
      }
      wr_error("handler %s: cannot fork a worker: %s", p->name,
               strerror(errno));
      c->restart_at = now + p->restart_max;
    }
    if (next == 0 || c->restart_at < next) next = c->restart_at;
  }
  return next;
}

void wr_pool_stop(wr_pool *p, double grace_s) {
  for (int i = 0; i < p->n; i++) {
    wr_child *c = &p->children[i];
    if (c->pid <= 0) continue;
    /* A worker still running a job past the drain deadline is killed now;
     * idle ones see EOF, run shutdown() and exit. */
    if (c->state == WR_CHILD_BUSY) kill_worker(c);
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
  }
  double deadline = wr_now() + grace_s;
  for (int i = 0; i < p->n; i++) {
    wr_child *c = &p->children[i];
    if (c->pid <= 0) continue;
    int status = 0;
    pid_t r;
    while ((r = waitpid(c->pid, &status, WNOHANG)) == 0 && wr_now() < deadline)
      nanosleep(&(struct timespec){0, 5 * 1000 * 1000}, NULL);
    if (r == 0) {
      wr_warn("handler %s: worker %d did not stop in %.1f s; killing it",
              p->name, (int)c->pid, grace_s);
      kill_worker(c);
      r = waitpid(c->pid, &status, 0);
    }
    if (r == c->pid) reaped(p, c, status, 0);
  }
}

void wr_pool_replace(wr_pool *p, const warren_handler *def,
                     const char *version) {
  p->def = def;
  snprintf(p->version, sizeof p->version, "%s", version);
  for (int i = 0; i < p->n; i++) {
    wr_child *c = &p->children[i];
    if (c->state == WR_CHILD_DOWN || c->state == WR_CHILD_EXITING) continue;
    /* wr_pool_pick gives it nothing more; wr_pool_tick stops it once idle
     * and reaping forks its replacement from the new plugin at once. */
    c->retiring = 1;
    if (c->state == WR_CHILD_BUSY && !c->nrev) revoke_from(p, c, 1);
  }
}

void wr_pool_worker_info(const wr_pool *p, int k, wr_pool_worker *out) {
  const wr_child *c = &p->children[k];
  *out = (wr_pool_worker){c->pid,     c->state, wr_pool_running(c), c->len,
                          c->spawned, c->jobs,  c->deaths,          c->version};
}

void wr_pool_free(wr_pool *p) {
  for (int i = 0; p->children && i < p->n; i++) {
    wr_child *c = &p->children[i];
    if (c->shm) munmap(c->shm, sizeof *c->shm);
    free(c->out);
    free(c->arena);
    free(c->big);
    drop_extras(c);
    wr_ipc_reader_free(&c->rd);
  }
  free(p->children);
  p->children = NULL;
}

unsigned long wr_pool_deaths(const wr_pool *p) {
  unsigned long d = 0;
  for (int k = 0; k < p->n; k++) {
    wr_pool_worker pw;
    wr_pool_worker_info(p, k, &pw);
    d += pw.deaths;
  }
  return d;
}
