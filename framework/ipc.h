/*
 * Frames between the supervisor (owner of the AMQP connection) and its
 * worker processes, over one SOCK_STREAM socketpair per worker.
 *
 * Every frame is a wr_ipc_hdr followed by `len` payload bytes. Jobs go
 * down, results come up; the supervisor writes one job to a worker only
 * when that worker is idle, so it always knows which job each worker runs.
 * Host byte order and layout: both ends are the same binary.
 */
#ifndef WR_IPC_H
#define WR_IPC_H

#include <stddef.h>
#include <stdint.h>

#define WR_IPC_MAX_FRAME ((uint64_t)256 << 20) /* above RabbitMQ's 128 MiB */
#define WR_IPC_MAX_ERROR 1024                  /* error text, bytes */

enum wr_ipc_type {
  WR_IPC_JOB = 1,         /* supervisor -> worker: wr_ipc_job + fields */
  WR_IPC_RESULT = 2,      /* worker -> supervisor: wr_ipc_result + text */
  WR_IPC_READY = 3,       /* worker -> supervisor: init done */
  WR_IPC_INIT_FAILED = 4, /* worker -> supervisor: text, then exit */
};

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

typedef struct wr_ipc_job {
  uint64_t job_id;
  uint64_t delivery_tag;
  uint32_t attempt;
  uint32_t redelivered;
  uint64_t field_len[WR_JOB_NFIELDS];
} wr_ipc_job;

typedef struct wr_ipc_result {
  uint64_t job_id;
  int32_t result;    /* warren_result */
  uint32_t err_len;  /* error text bytes that follow */
} wr_ipc_result;

/* One field of a job as it is sent: pointer and length, not copied. */
typedef struct wr_ipc_field {
  const void *ptr;
  size_t len;
} wr_ipc_field;

/* Write a whole job frame with writev, without copying fields. Blocking
 * fd. Returns 0 or -1 (errno set; EPIPE when the worker is gone). */
int wr_ipc_send_job(int fd, const wr_ipc_job *job,
                    const wr_ipc_field fields[WR_JOB_NFIELDS]);

/* Write a small frame: header, fixed part and an optional tail. */
int wr_ipc_send(int fd, uint32_t type, const void *fixed, size_t fixed_len,
                const void *tail, size_t tail_len);

/*
 * Incremental frame reader for the supervisor's non-blocking side: feed
 * it what read() returned, then pop complete frames. Frames from workers
 * are small; anything over the buffer is a protocol error.
 */
#define WR_IPC_RBUF (sizeof(wr_ipc_hdr) + sizeof(wr_ipc_result) + WR_IPC_MAX_ERROR + 64)
typedef struct wr_ipc_reader {
  unsigned char buf[WR_IPC_RBUF * 2];
  size_t len;
  size_t consumed; /* bytes of the frame last returned by _next */
} wr_ipc_reader;

/* read() once from fd into r. Returns bytes read, 0 on EOF, -1 on error. */
long wr_ipc_reader_fill(wr_ipc_reader *r, int fd);
/* Next complete frame: 1 and *hdr, *payload set, 0 when none is complete,
 * -1 when the stream is malformed. payload is valid until the next call. */
int wr_ipc_reader_next(wr_ipc_reader *r, wr_ipc_hdr *hdr,
                       const unsigned char **payload);

#endif
