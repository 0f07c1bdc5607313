/*
 * Frames between the supervisor (owner of the AMQP connection) and its
 * worker processes, over one SOCK_STREAM socketpair per worker.
 *
 * Every frame is a wr_ipc_hdr followed by `len` payload bytes. Jobs go
 * down (several may be queued to a busy worker, docs/threading.md), results
 * come up through shared memory (below); the supervisor keeps the queue it
 * gave each worker, so it always knows which job each worker runs.
 * Host byte order and layout: both ends are the same binary.
 */
#ifndef WR_IPC_H
#define WR_IPC_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define WR_IPC_MAX_FRAME ((uint64_t)256 << 20) /* above RabbitMQ's 128 MiB */
#define WR_IPC_MAX_ERROR 1024                  /* error text, bytes */

enum wr_ipc_type {
  WR_IPC_JOB = 1,         /* supervisor -> worker: wr_ipc_job + fields */
  WR_IPC_WAKE = 2,        /* worker -> supervisor: results are published */
  WR_IPC_READY = 3,       /* worker -> supervisor: init done */
  WR_IPC_INIT_FAILED = 4, /* worker -> supervisor: text, then exit */
  /* worker -> supervisor: u64 job id, then what the handler added to the
   * job (extras.h), sent before the job's result is published */
  WR_IPC_EXTRAS = 5,
};

/*
 * Results travel through memory shared by the supervisor and one worker,
 * not the socket. The worker fills slot[k % WR_IPC_SLOTS] for its k-th
 * job and bumps `published` *before* it starts the next job, so the
 * supervisor can read every finished result even after the worker died:
 * the first job without one is the job that was running. A worker sends a
 * WR_IPC_WAKE frame only when the supervisor set `wake` before sleeping,
 * so a busy pair exchanges results without a system call. The supervisor
 * never has more than WR_IPC_SLOTS jobs out to a worker, so a slot is
 * always read before it is reused.
 */
#define WR_IPC_SLOTS 32
/* Slot result of a job the worker skipped (stop set, or revoked). */
#define WR_IPC_SKIPPED (-1)
/* Slot result of a job whose body did not match its signed digest: it
 * never reached handle() (sigcheck.h). */
#define WR_IPC_BAD_BODY (-2)
#define WR_IPC_REVOKED 0x80000000u

typedef struct wr_ipc_slot {
  uint64_t job_id;
  int32_t result;    /* warren_result */
  uint32_t err_len;  /* bytes of err used */
  uint32_t over_rss; /* the worker's peak RSS passed rss_limit_kb */
  uint32_t extras;   /* a WR_IPC_EXTRAS frame for this job came first */
  char err[WR_IPC_MAX_ERROR];
} wr_ipc_slot;

typedef struct wr_ipc_shm {
  _Atomic uint32_t published; /* results written; worker stores, seq_cst */
  char pad1[60];              /* own cache lines for the two counters */
  _Atomic uint32_t wake;      /* supervisor: 1 = about to sleep */
  _Atomic uint32_t stop;      /* supervisor: start no further job */
  /* Index of the next job the worker may start. The worker claims job k
   * with CAS(claim, k, k + 1) before running it; the supervisor revokes
   * the jobs from r on with CAS(claim, r, r | WR_IPC_REVOKED), which only
   * succeeds while job r is unclaimed. A job is thus run by the worker or
   * revoked, never both. Revoked jobs are published as skipped. */
  _Atomic uint32_t claim;
  uint32_t rss_limit_kb; /* set before fork; 0: not checked */
  uint32_t max_result;   /* set before fork: bytes of a job's result */
  char pad2[44];
  wr_ipc_slot slot[WR_IPC_SLOTS];
} wr_ipc_shm;

typedef struct wr_ipc_hdr {
  uint32_t type;
  uint32_t pad;
  uint64_t len; /* payload bytes after this header */
} wr_ipc_hdr;

/* String fields of a job, in the order they follow wr_ipc_job, each
 * followed by a NUL so the worker can hand them out in place. */
enum {
  WR_JOB_EXCHANGE,
  WR_JOB_ROUTING_KEY,
  WR_JOB_MESSAGE_ID,
  WR_JOB_CORRELATION_ID,
  WR_JOB_CONTENT_TYPE,
  WR_JOB_HEADERS, /* headers.h blob */
  WR_JOB_BODY,
  WR_JOB_NFIELDS
};

/* A large body is not in the frame: it lies in the handler's arena
 * (arena.h) at body_off, body_len bytes, and the frame's body field is
 * empty. body_off is WR_ARENA_NONE when the body is in the frame. */
typedef struct wr_ipc_job {
  uint64_t job_id;
  uint64_t delivery_tag;
  uint32_t attempt;
  uint32_t redelivered;
  uint64_t body_off;
  uint64_t body_len;
  uint64_t field_len[WR_JOB_NFIELDS];
  uint32_t check_body; /* compare the body with body_sha256 */
  uint32_t pad;
  unsigned char body_sha256[32]; /* its signed digest (sigcheck.h) */
  uint8_t trace_id[16];          /* the job's span (job.h), when traced */
  uint8_t span_id[8];
  uint8_t trace_flags;
  uint8_t traced;
  uint8_t pad2[2];
  uint32_t crashes; /* worker deaths in a row on it so far */
  uint32_t present; /* WARREN_MESSAGE_HAS_* */
  uint32_t pad3;
} wr_ipc_job;

/* One field of a job as it is sent: pointer and length, not copied. */
typedef struct wr_ipc_field {
  const void *ptr;
  size_t len;
} wr_ipc_field;

/* Frames for several jobs, written with one writev: the iovecs point at
 * the caller's fields (not copied) and at the batch's own headers, so the
 * fields must stay valid until the batch is written. The supervisor's
 * side of the socket is non-blocking: a batch the socket cannot take at
 * once is written on as it drains, and never blocks the loop. */
#define WR_IPC_IOV_PER_JOB (2 + 2 * WR_JOB_NFIELDS)
typedef struct wr_ipc_batch {
  int n; /* jobs in the batch */
  int niov;
  int first;                 /* iovecs before it are written */
  int done;                  /* jobs entirely written */
  int job_end[WR_IPC_SLOTS]; /* one past each job's last iovec */
  wr_ipc_hdr hdr[WR_IPC_SLOTS];
  wr_ipc_job job[WR_IPC_SLOTS];
  struct iovec iov[WR_IPC_SLOTS * WR_IPC_IOV_PER_JOB];
} wr_ipc_batch;

/* Add a job (at most WR_IPC_SLOTS per batch; not while one is pending). */
void wr_ipc_batch_add(wr_ipc_batch *b, const wr_ipc_job *job,
                      const wr_ipc_field fields[WR_JOB_NFIELDS]);
/* Write what fd takes now. 0: everything is out and the batch is empty
 * again; 1: the rest waits for fd to be writable (b->done jobs are out);
 * -1 with errno (EPIPE when the worker is gone). */
int wr_ipc_batch_send(wr_ipc_batch *b, int fd);
/* Part of the batch is written, the rest waits. */
static inline int wr_ipc_batch_pending(const wr_ipc_batch *b) {
  return b->first > 0 && b->first < b->niov;
}

/* Write a small frame: header, fixed part and an optional tail. */
int wr_ipc_send(int fd, uint32_t type, const void *fixed, size_t fixed_len,
                const void *tail, size_t tail_len);

/*
 * Incremental frame reader for the supervisor's non-blocking side: feed
 * it what read() returned, then pop complete frames. Frames from workers
 * are small, but for WR_IPC_EXTRAS, which may carry follow-up jobs: one
 * over the buffer is read into memory of its own, up to WR_IPC_MAX_BIG.
 * Anything else over the buffer is a protocol error.
 */
#define WR_IPC_RBUF (sizeof(wr_ipc_hdr) + WR_IPC_MAX_ERROR + 64)
#define WR_IPC_MAX_BIG (((uint64_t)64 << 20) + 65536) /* extras.h, framed */
typedef struct wr_ipc_reader {
  unsigned char buf[WR_IPC_RBUF * 2];
  size_t len;
  size_t consumed;    /* bytes of the frame last returned by _next */
  unsigned char *big; /* the large frame being read, or last returned */
  size_t big_have;    /* its payload bytes read so far */
  wr_ipc_hdr big_hdr;
  int in_big; /* big is being filled */
} wr_ipc_reader;

/* Free what a reader holds (a large frame). */
void wr_ipc_reader_free(wr_ipc_reader *r);

/* read() once from fd into r. Returns bytes read, 0 on EOF, -1 on error,
 * WR_IPC_AGAIN when a non-blocking fd has nothing now. */
#define WR_IPC_AGAIN (-2)
long wr_ipc_reader_fill(wr_ipc_reader *r, int fd);
/* Next complete frame: 1 and *hdr, *payload set, 0 when none is complete,
 * -1 when the stream is malformed. payload is valid until the next call. */
int wr_ipc_reader_next(wr_ipc_reader *r, wr_ipc_hdr *hdr,
                       const unsigned char **payload);

#endif
