#include "ipc.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

/* writev until every iovec is out; adjusts iov in place. */
static int writev_all(int fd, struct iovec *iov, int n) {
  while (n > 0) {
    ssize_t w = writev(fd, iov, n > IOV_MAX ? IOV_MAX : n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    size_t left = (size_t)w;
    while (n > 0 && left >= iov->iov_len) {
      left -= iov->iov_len;
      iov++;
      n--;
    }
    if (n > 0) {
      iov->iov_base = (char *)iov->iov_base + left;
      iov->iov_len -= left;
    }
  }
  return 0;
}

void wr_ipc_batch_add(wr_ipc_batch *b, const wr_ipc_job *job,
                      const wr_ipc_field fields[WR_JOB_NFIELDS]) {
  static const char nul = 0;
  wr_ipc_job *j = &b->job[b->n];
  wr_ipc_hdr *h = &b->hdr[b->n++];
  *j = *job;
  *h = (wr_ipc_hdr){WR_IPC_JOB, 0, sizeof *j};
  for (int i = 0; i < WR_JOB_NFIELDS; i++) {
    j->field_len[i] = fields[i].len;
    h->len += fields[i].len + 1;
  }
  struct iovec *iov = b->iov;
  iov[b->niov++] = (struct iovec){h, sizeof *h};
  iov[b->niov++] = (struct iovec){j, sizeof *j};
  for (int i = 0; i < WR_JOB_NFIELDS; i++) {
    if (fields[i].len)
      iov[b->niov++] = (struct iovec){(void *)fields[i].ptr, fields[i].len};
    iov[b->niov++] = (struct iovec){(void *)&nul, 1};
  }
  b->job_end[b->n - 1] = b->niov;
}

int wr_ipc_batch_send(wr_ipc_batch *b, int fd) {
  /* Locals in the loop: this runs for every batch of jobs. */
  struct iovec *iov = b->iov;
  int first = b->first, niov = b->niov;
  while (first < niov) {
    int n = niov - first;
    ssize_t w = writev(fd, iov + first, n > IOV_MAX ? IOV_MAX : n);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) return -1;
      /* The socket is full: remember how far each job got. */
      b->first = first;
      while (b->done < b->n && b->job_end[b->done] <= first) b->done++;
      return 1;
    }
    size_t left = (size_t)w;
    while (first < niov && left >= iov[first].iov_len)
      left -= iov[first++].iov_len;
    if (first < niov) {
      iov[first].iov_base = (char *)iov[first].iov_base + left;
      iov[first].iov_len -= left;
    }
  }
  b->n = b->niov = b->first = b->done = 0;
  return 0;
}

int wr_ipc_send(int fd, uint32_t type, const void *fixed, size_t fixed_len,
                const void *tail, size_t tail_len) {
  wr_ipc_hdr h = {type, 0, fixed_len + tail_len};
  struct iovec iov[3] = {
      {&h, sizeof h}, {(void *)fixed, fixed_len}, {(void *)tail, tail_len}};
  return writev_all(fd, iov, 3);
}

void wr_ipc_reader_free(wr_ipc_reader *r) {
  free(r->big);
  r->big = NULL;
  r->in_big = 0;
  r->big_have = 0;
}

long wr_ipc_reader_fill(wr_ipc_reader *r, int fd) {
  if (r->in_big) { /* straight into the large frame's own memory */
    ssize_t n;
    do {
      n = read(fd, r->big + r->big_have, r->big_hdr.len - r->big_have);
    } while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return WR_IPC_AGAIN;
    if (n > 0) r->big_have += (size_t)n;
    return (long)n;
  }
  if (r->consumed) {
    memmove(r->buf, r->buf + r->consumed, r->len - r->consumed);
    r->len -= r->consumed;
    r->consumed = 0;
  }
  if (r->len == sizeof r->buf) return -1;
  ssize_t n;
  do {
    n = read(fd, r->buf + r->len, sizeof r->buf - r->len);
  } while (n < 0 && errno == EINTR);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return WR_IPC_AGAIN;
  if (n > 0) r->len += (size_t)n;
  return (long)n;
}

/* Start reading a large frame whose header is at r->consumed. */
static int begin_big(wr_ipc_reader *r, const wr_ipc_hdr *hdr) {
  if (hdr->type != WR_IPC_EXTRAS || hdr->len > WR_IPC_MAX_BIG) return -1;
  free(r->big);
  r->big = malloc((size_t)hdr->len);
  if (!r->big) return -1;
  r->big_hdr = *hdr;
  r->consumed += sizeof *hdr;
  size_t have = r->len - r->consumed;
  r->big_have = have < hdr->len ? have : (size_t)hdr->len;
  memcpy(r->big, r->buf + r->consumed, r->big_have);
  r->consumed += r->big_have;
  r->in_big = 1;
  return 0;
}

int wr_ipc_reader_next(wr_ipc_reader *r, wr_ipc_hdr *hdr,
                       const unsigned char **payload) {
  if (r->in_big) {
    if (r->big_have < r->big_hdr.len) return 0;
    r->in_big = 0; /* complete: returned once, freed by the next one */
    *hdr = r->big_hdr;
    *payload = r->big;
    return 1;
  }
  size_t avail = r->len - r->consumed;
  if (avail < sizeof *hdr) return 0;
  memcpy(hdr, r->buf + r->consumed, sizeof *hdr);
  if (hdr->len > WR_IPC_RBUF - sizeof *hdr) {
    if (begin_big(r, hdr) != 0) return -1;
    return wr_ipc_reader_next(r, hdr, payload);
  }
  if (avail < sizeof *hdr + hdr->len) return 0;
  *payload = r->buf + r->consumed + sizeof *hdr;
  r->consumed += sizeof *hdr + (size_t)hdr->len;
  return 1;
}
