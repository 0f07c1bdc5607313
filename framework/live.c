#include "live.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "utf8.h"

/* The first bytes of every stream: the client's reconnect delay (ms). */
static const char hello[] = "retry: 2000\n\n";
static const char ping[] = ": keep-alive\n\n";

struct wr_live_client {
  wr_live *hub;
  wr_live_client *next, *prev;
  wr_live_filter f;
  wr_live_fn park, wake;
  void *arg;
  char *buf; /* a ring of cap bytes */
  size_t cap, head, len;
  int parked;  /* park was called and wake not yet */
  int ended;   /* dropped or closed: the next read says so */
  double last; /* when something was last put in its buffer */
};

struct wr_live {
  pthread_mutex_t mu;
  wr_live_opts o;
  wr_live_client *clients;
  int closed;
  atomic_int n; /* clients; written under mu */
  _Atomic uint64_t accepted, refused, dropped, sent;
};

wr_live *wr_live_create(const wr_live_opts *o) {
  wr_live *l = calloc(1, sizeof *l);
  if (!l) return NULL;
  l->o = *o;
  if (l->o.buffer < sizeof hello + sizeof ping) l->o.buffer = 4096;
  pthread_mutex_init(&l->mu, NULL);
  return l;
}

void wr_live_destroy(wr_live *l) {
  if (!l) return;
  /* Every client has left (the HTTP side stopped); a leftover one is
   * freed, never used again. */
  while (l->clients) {
    wr_live_client *c = l->clients;
    l->clients = c->next;
    free(c->buf);
    free(c);
  }
  pthread_mutex_destroy(&l->mu);
  free(l);
}

const atomic_int *wr_live_listeners(const wr_live *l) {
  return &l->n;
}

/* Append n bytes to c's ring; 0, or -1 when they do not fit. Under mu. */
static int put(wr_live_client *c, const char *s, size_t n) {
  if (c->cap - c->len < n) return -1;
  size_t at = (c->head + c->len) % c->cap;
  size_t first = c->cap - at < n ? c->cap - at : n;
  memcpy(c->buf + at, s, first);
  memcpy(c->buf, s + first, n - first);
  c->len += n;
  return 0;
}

static void wake(wr_live_client *c) {
  if (!c->parked) return;
  c->parked = 0;
  c->wake(c->arg);
}

/* c's buffer is full: it is dropped. Its bytes are let go now; the HTTP
 * side ends the stream at its next read. Under mu. */
static void drop(wr_live *l, wr_live_client *c) {
  c->ended = 1;
  c->len = 0;
  atomic_fetch_add(&l->dropped, 1);
  wake(c);
}

static int matches(const wr_live_filter *f, size_t handler, const char *id,
                   size_t idlen) {
  if (f->handler >= 0 && (size_t)f->handler != handler) return 0;
  if (!f->has_job) return 1;
  return id && idlen == f->job_len && memcmp(id, f->job, idlen) == 0;
}

void wr_live_publish(wr_live *l, size_t handler, const char *id, size_t idlen,
                     const char *json, size_t len) {
  static const char pre[] = "data: ", post[] = "\n\n";
  double now = wr_now();
  pthread_mutex_lock(&l->mu);
  for (wr_live_client *c = l->clients; c; c = c->next) {
    if (c->ended || !matches(&c->f, handler, id, idlen)) continue;
    if (c->cap - c->len < sizeof pre - 1 + len + sizeof post - 1) {
      drop(l, c);
      continue;
    }
    put(c, pre, sizeof pre - 1);
    put(c, json, len);
    put(c, post, sizeof post - 1);
    c->last = now;
    atomic_fetch_add(&l->sent, 1);
    wake(c);
  }
  pthread_mutex_unlock(&l->mu);
}

void wr_live_tick(wr_live *l, double now) {
  pthread_mutex_lock(&l->mu);
  for (wr_live_client *c = l->clients; c; c = c->next) {
    if (c->ended || now - c->last < l->o.keepalive) continue;
    /* A comment that does not fit means the client reads nothing. */
    if (put(c, ping, sizeof ping - 1) != 0) {
      drop(l, c);
      continue;
    }
    c->last = now;
    wake(c);
  }
  pthread_mutex_unlock(&l->mu);
}

int wr_live_join(wr_live *l, const wr_live_filter *f, wr_live_fn park,
                 wr_live_fn wakefn, void *arg, wr_live_client **out) {
  *out = NULL;
  wr_live_client *c = calloc(1, sizeof *c);
  char *buf = c ? malloc(l->o.buffer) : NULL;
  if (!buf) {
    free(c);
    return -2;
  }
  c->hub = l;
  c->f = *f;
  c->park = park;
  c->wake = wakefn;
  c->arg = arg;
  c->buf = buf;
  c->cap = l->o.buffer;
  c->last = wr_now();
  put(c, hello, sizeof hello - 1);
  pthread_mutex_lock(&l->mu);
  int rc = l->closed ? -2 : atomic_load(&l->n) >= l->o.max_clients ? -1 : 0;
  if (rc == 0) {
    c->next = l->clients;
    if (l->clients) l->clients->prev = c;
    l->clients = c;
    atomic_store(&l->n, atomic_load(&l->n) + 1);
    atomic_fetch_add(&l->accepted, 1);
  } else if (rc == -1) {
    atomic_fetch_add(&l->refused, 1);
  }
  pthread_mutex_unlock(&l->mu);
  if (rc != 0) {
    free(buf);
    free(c);
    return rc;
  }
  *out = c;
  return 0;
}

ssize_t wr_live_read(wr_live_client *c, char *buf, size_t max) {
  wr_live *l = c->hub;
  pthread_mutex_lock(&l->mu);
  ssize_t n;
  if (c->ended) {
    n = -1;
  } else if (!c->len) {
    c->parked = 1;
    c->park(c->arg);
    n = 0;
  } else {
    size_t k = c->len < max ? c->len : max;
    size_t first = c->cap - c->head < k ? c->cap - c->head : k;
    memcpy(buf, c->buf + c->head, first);
    memcpy(buf + first, c->buf, k - first);
    c->head = (c->head + k) % c->cap;
    c->len -= k;
    n = (ssize_t)k;
  }
  pthread_mutex_unlock(&l->mu);
  return n;
}

void wr_live_leave(wr_live_client *c) {
  if (!c) return;
  wr_live *l = c->hub;
  pthread_mutex_lock(&l->mu);
  if (c->prev)
    c->prev->next = c->next;
  else
    l->clients = c->next;
  if (c->next) c->next->prev = c->prev;
  atomic_store(&l->n, atomic_load(&l->n) - 1);
  pthread_mutex_unlock(&l->mu);
  free(c->buf);
  free(c);
}

void wr_live_close(wr_live *l) {
  if (!l) return;
  pthread_mutex_lock(&l->mu);
  l->closed = 1;
  for (wr_live_client *c = l->clients; c; c = c->next) {
    c->ended = 1;
    wake(c);
  }
  pthread_mutex_unlock(&l->mu);
}

void wr_live_counters_get(wr_live *l, wr_live_counters *out) {
  out->clients = (uint64_t)atomic_load(&l->n);
  out->accepted = atomic_load(&l->accepted);
  out->refused = atomic_load(&l->refused);
  out->dropped = atomic_load(&l->dropped);
  out->sent = atomic_load(&l->sent);
}

int wr_live_valid_job(const char *v, size_t len, const char **why) {
  char tmp[WR_LIVE_ID_MAX];
  if (!len || len > WR_LIVE_ID_MAX) {
    *why = "job: 1 to 128 bytes";
    return -1;
  }
  for (size_t i = 0; i < len; i++)
    if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f) {
      *why = "job: no control characters";
      return -1;
    }
  if (wr_utf8_copy(tmp, v, len, sizeof tmp) != len || memcmp(tmp, v, len)) {
    *why = "job: not valid UTF-8";
    return -1;
  }
  return 0;
}
