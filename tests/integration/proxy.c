/*
 * A fault-injecting TCP proxy for the integration tests (support.h,
 * tw_proxy_*): a thread of the test process listening on a loopback port
 * and forwarding each connection to the test broker. Its mode decides
 * what happens to the bytes:
 *   pass       forwarded as they come
 *   blackhole  read and dropped, both ways; a new connection is accepted
 *              and never connected on: TCP works, no broker answers
 *   latency    forwarded N ms after they were read
 * and tw_proxy_reset ends every connection with a RST on both sides.
 * The thread dies with the test process (Criterion runs each test in its
 * own), so a failing test leaves no proxy behind.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "support.h"

#define MAX_PAIRS 64
#define CHUNK 65536
/* The ports this worktree's tests may use for what they start. */
#define PORT_LO 5830
#define PORT_HI 5849

typedef struct chunk {
  struct chunk *next;
  double due; /* monotonic seconds */
  size_t len;
  unsigned char b[];
} chunk;

typedef struct pair {
  int fd[2];   /* 0: the client, 1: the broker (-1: never connected) */
  chunk *q[2]; /* bytes read from fd[i], waiting to go to fd[1 - i] */
  chunk *tail[2];
} pair;

static struct {
  pthread_t t;
  int started;
  int lfd, port, upstream;
  atomic_int mode, latency_ms, resets, done;
  pair p[MAX_PAIRS];
  atomic_int n; /* read by tw_proxy_connections */
} px;

static double mono(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void rst(int fd) {
  if (fd < 0) return;
  struct linger l = {1, 0}; /* close sends a RST */
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  close(fd);
}

static void drop(int k, int reset) {
  pair *p = &px.p[k];
  for (int i = 0; i < 2; i++) {
    if (reset)
      rst(p->fd[i]);
    else if (p->fd[i] >= 0)
      close(p->fd[i]);
    for (chunk *c = p->q[i], *n; c; c = n) {
      n = c->next;
      free(c);
    }
  }
  px.p[k] = px.p[--px.n];
}

static int connect_upstream(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET,
                           .sin_port = htons((uint16_t)px.upstream)};
  inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
  if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
    close(fd);
    fd = -1;
  }
  return fd;
}

static void take(void) {
  int fd = accept(px.lfd, NULL, NULL);
  if (fd < 0) return;
  if (px.n == MAX_PAIRS) {
    close(fd);
    return;
  }
  int up =
      atomic_load(&px.mode) == TW_PROXY_BLACKHOLE ? -1 : connect_upstream();
  if (up < 0 && atomic_load(&px.mode) != TW_PROXY_BLACKHOLE) {
    rst(fd); /* as a refused connect would look through a real network */
    return;
  }
  px.p[px.n++] = (pair){{fd, up}, {NULL, NULL}, {NULL, NULL}};
}

/* Write what is due of p's queue i; -1 when the connection broke. */
static int flush(pair *p, int i, double now) {
  while (p->q[i] && p->q[i]->due <= now) {
    chunk *c = p->q[i];
    size_t off = 0;
    while (off < c->len) {
      ssize_t w = send(p->fd[1 - i], c->b + off, c->len - off, MSG_NOSIGNAL);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) return -1;
      off += (size_t)w;
    }
    p->q[i] = c->next;
    if (!p->q[i]) p->tail[i] = NULL;
    free(c);
  }
  return 0;
}

/* Read from p's side i; -1 at its end. */
static int pump(pair *p, int i, double now) {
  unsigned char buf[CHUNK];
  ssize_t r = recv(p->fd[i], buf, sizeof buf, 0);
  if (r < 0 && errno == EINTR) return 0;
  if (r <= 0) return -1;
  int mode = atomic_load(&px.mode);
  if (mode == TW_PROXY_BLACKHOLE || p->fd[1 - i] < 0) return 0;
  chunk *c = malloc(sizeof *c + (size_t)r);
  if (!c) return -1;
  c->next = NULL;
  c->len = (size_t)r;
  c->due =
      now +
      (mode == TW_PROXY_LATENCY ? atomic_load(&px.latency_ms) / 1000.0 : 0);
  memcpy(c->b, buf, (size_t)r);
  if (p->tail[i])
    p->tail[i]->next = c;
  else
    p->q[i] = c;
  p->tail[i] = c;
  return flush(p, i, now);
}

static void *run(void *arg) {
  (void)arg;
  int seen_resets = 0;
  while (!atomic_load(&px.done)) {
    int resets = atomic_load(&px.resets);
    if (resets != seen_resets) {
      seen_resets = resets;
      while (px.n) drop(px.n - 1, 1);
    }
    struct pollfd pf[1 + 2 * MAX_PAIRS];
    int map[1 + 2 * MAX_PAIRS], n = 0;
    pf[n] = (struct pollfd){px.lfd, POLLIN, 0};
    map[n++] = -1;
    for (int k = 0; k < px.n; k++)
      for (int i = 0; i < 2; i++)
        if (px.p[k].fd[i] >= 0) {
          pf[n] = (struct pollfd){px.p[k].fd[i], POLLIN, 0};
          map[n++] = k * 2 + i;
        }
    poll(pf, (nfds_t)n, 10);
    double now = mono();
    if (pf[0].revents & POLLIN) take();
    /* Back to front: drop() moves the last pair into the hole. */
    for (int j = n - 1; j >= 1; j--) {
      int k = map[j] / 2, i = map[j] % 2;
      if (k >= px.n || px.p[k].fd[i] != pf[j].fd) continue;
      if ((pf[j].revents & (POLLIN | POLLHUP | POLLERR)) &&
          pump(&px.p[k], i, now) != 0)
        drop(k, 0);
    }
    for (int k = px.n - 1; k >= 0; k--)
      if (flush(&px.p[k], 0, now) || flush(&px.p[k], 1, now)) drop(k, 0);
  }
  while (px.n) drop(px.n - 1, 0);
  close(px.lfd);
  return NULL;
}

int tw_proxy_start(int upstream_port) {
  if (px.started) return px.port;
  px.upstream = upstream_port ? upstream_port : tw_port();
  for (int port = PORT_LO; port <= PORT_HI; port++) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
        listen(fd, 64) == 0) {
      px.lfd = fd;
      px.port = port;
      break;
    }
    close(fd);
  }
  if (!px.port) return -1;
  atomic_store(&px.mode, TW_PROXY_PASS);
  if (pthread_create(&px.t, NULL, run, NULL) != 0) {
    close(px.lfd);
    px.port = 0;
    return -1;
  }
  px.started = 1;
  return px.port;
}

void tw_proxy_mode(int mode, int latency_ms) {
  atomic_store(&px.latency_ms, latency_ms);
  atomic_store(&px.mode, mode);
}

void tw_proxy_reset(void) {
  atomic_fetch_add(&px.resets, 1);
  /* Done within a turn of the proxy's loop (10 ms). */
  nanosleep(&(struct timespec){0, 50 * 1000 * 1000}, NULL);
}

int tw_proxy_connections(void) {
  return px.n;
}

void tw_proxy_stop(void) {
  if (!px.started) return;
  atomic_store(&px.done, 1);
  pthread_join(px.t, NULL);
  px.started = 0;
  px.port = 0;
}
