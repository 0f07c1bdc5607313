#include "notify.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <warren/status.h>

#include "clock.h"
#include "log.h"

struct wr_notify {
  int fd; /* SOCK_CLOEXEC | SOCK_NONBLOCK datagram socket */
  struct sockaddr_un sa;
  socklen_t salen;
  double every; /* seconds between WATCHDOG=1; 0: no watchdog */
  double next;  /* monotonic time of the next one */
  int ready;    /* READY=1 was sent */
  int failed;   /* a send failed (said once) */
};

int wr_notify_addr(const char *value, struct sockaddr_un *sa, socklen_t *len) {
  if (!value || (value[0] != '/' && value[0] != '@')) return -1;
  size_t n = strlen(value);
  memset(sa, 0, sizeof *sa);
  sa->sun_family = AF_UNIX;
  if (value[0] == '@') {
    /* Abstract: a leading NUL, then the name; the length says where it
     * ends (no terminating NUL is part of it). */
    if (n < 2 || n > sizeof sa->sun_path) return -1;
    memcpy(sa->sun_path + 1, value + 1, n - 1);
    *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    return 0;
  }
  if (n >= sizeof sa->sun_path) return -1; /* room for its NUL */
  memcpy(sa->sun_path, value, n);
  *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
  return 0;
}

double wr_notify_watchdog_interval(const char *usec, const char *wpid,
                                   pid_t pid) {
  if (!usec || !*usec) return 0;
  /* systemd sets WATCHDOG_PID to the main process; a child that kept the
   * environment must not pet the watchdog in its stead. */
  if (wpid && *wpid) {
    char *end;
    errno = 0;
    long long p = strtoll(wpid, &end, 10);
    if (errno || *end || p != (long long)pid) return 0;
  }
  char *end;
  errno = 0;
  unsigned long long us = strtoull(usec, &end, 10);
  if (errno || *end || us == 0 || usec[0] == '-') return 0;
  return (double)us / 2e6;
}

void wr_notify_send(wr_notify *n, const char *msg) {
  if (!n) return;
  /* Non-blocking: a service manager that does not read must not stall
   * the loop; a message it misses is less harm than a stuck worker. */
  ssize_t w = sendto(n->fd, msg, strlen(msg), MSG_NOSIGNAL | MSG_DONTWAIT,
                     (struct sockaddr *)&n->sa, n->salen);
  if (w >= 0 || n->failed) return;
  n->failed = 1;
  wr_warn("service manager notification '%.*s' not sent: %s",
          (int)strcspn(msg, "\n"), msg, strerror(errno));
}

void wr_notify_ready(wr_notify *n, size_t nq) {
  if (!n) return;
  char msg[96];
  snprintf(msg, sizeof msg, "%sSTATUS=consuming %zu queue(s)",
           n->ready ? "" : "READY=1\n", nq);
  n->ready = 1;
  wr_notify_send(n, msg);
}

void wr_notify_reloading(wr_notify *n) {
  /* Before start-up is over there is no ready state to leave. */
  if (!n || !n->ready) return;
  char msg[64];
  /* systemd 253 and later want the time the reload began with it. */
  snprintf(msg, sizeof msg, "RELOADING=1\nMONOTONIC_USEC=%lld",
           (long long)(wr_now() * 1e6));
  wr_notify_send(n, msg);
}

void wr_notify_reloaded(wr_notify *n) {
  if (n && n->ready) wr_notify_send(n, "READY=1");
}

/* The watchdog as a phase: the loop wakes when a pet is due, and a turn
 * that never comes sends nothing. */
static double prepare(void *ctx, double now) {
  wr_notify *n = ctx;
  if (now >= n->next) {
    wr_notify_send(n, "WATCHDOG=1");
    n->next = now + n->every;
  }
  return n->next;
}

static const wr_loop_phase watchdog = {prepare, NULL, NULL};

int wr_notify_create(wr_loop *loop, wr_notify **out) {
  *out = NULL;
  const char *value = getenv("NOTIFY_SOCKET");
  if (!value || !*value) return WARREN_OK;
  wr_notify *n = calloc(1, sizeof *n);
  if (!n) return WARREN_NOMEM;
  if (wr_notify_addr(value, &n->sa, &n->salen) != 0) {
    wr_warn(
        "NOTIFY_SOCKET '%s' is not a path or an abstract name; the "
        "service manager is not told of readiness",
        value);
    free(n);
    return WARREN_OK;
  }
  n->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (n->fd < 0) {
    wr_error("NOTIFY_SOCKET: socket: %s", strerror(errno));
    free(n);
    return WARREN_IO;
  }
  n->every = wr_notify_watchdog_interval(getenv("WATCHDOG_USEC"),
                                         getenv("WATCHDOG_PID"), getpid());
  if (n->every > 0) {
    int rc = wr_loop_add_phase(loop, &watchdog, n);
    if (rc != WARREN_OK) {
      wr_notify_destroy(n);
      return rc;
    }
    wr_info("watchdog: pinging the service manager every %.3f s", n->every);
  }
  *out = n;
  return WARREN_OK;
}

void wr_notify_destroy(wr_notify *n) {
  if (!n) return;
  close(n->fd);
  free(n);
}
