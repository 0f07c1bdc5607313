/*
 * Running under a service manager, without one: the systemd notification
 * protocol checked on a datagram socket of the test's own (notify.h), and
 * the health listener on IPv6 (health.c). docs/deploying.md, "Running under
 * systemd".
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "clock.h"
#include "support.h"

#define RECORD TEST_HANDLER_DIR "/record.so"

TW_SUITE(ops, 120);

/* Health ports of these tests: inside the range the test broker's port
 * belongs to (WARREN_TEST_PORT + 9 and + 10), not the ephemeral one. */
static int health_port(int k) {
  return tw_port() + 9 + k;
}

/* One notification with the pid that sent it (SCM_CREDENTIALS). */
typedef struct note {
  char text[256];
  pid_t pid;
} note;

/* The next datagram within timeout_s; 0 when none came. */
static int next_note(int fd, double timeout_s, note *n) {
  struct pollfd p = {fd, POLLIN, 0};
  if (poll(&p, 1, (int)(timeout_s * 1000)) <= 0) return 0;
  union {
    char buf[CMSG_SPACE(sizeof(struct ucred))];
    struct cmsghdr align;
  } c;
  struct iovec iov = {n->text, sizeof n->text - 1};
  struct msghdr m = {.msg_iov = &iov,
                     .msg_iovlen = 1,
                     .msg_control = c.buf,
                     .msg_controllen = sizeof c.buf};
  ssize_t r = recvmsg(fd, &m, 0);
  cr_assert_geq(r, 0, "recvmsg: %s", strerror(errno));
  n->text[r] = '\0';
  n->pid = -1;
  struct cmsghdr *h = CMSG_FIRSTHDR(&m);
  if (h && h->cmsg_type == SCM_CREDENTIALS)
    n->pid = ((struct ucred *)CMSG_DATA(h))->pid;
  return 1;
}

/* Under NotifyAccess=main systemd drops what another process sends: the
 * supervisor (not a worker) must send everything, once consumers are up
 * (READY), while the loop turns (WATCHDOG), around a reload (RELOADING,
 * READY) and when the drain begins (STOPPING). The socket has an abstract name,
 * as systemd's may. */
Test(ops, systemd_notify_ready_watchdog_stopping) {
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  cr_assert_geq(fd, 0);
  int on = 1;
  cr_assert_eq(setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &on, sizeof on), 0);
  char name[80];
  snprintf(name, sizeof name, "@warren-it-%d-notify-%d", tw_port(),
           (int)getpid());
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  memcpy(sa.sun_path + 1, name + 1, strlen(name) - 1);
  cr_assert_eq(
      bind(fd, (struct sockaddr *)&sa,
           (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(name))),
      0, "bind %s: %s", name, strerror(errno));

  /* The worker inherits the environment of this process. */
  setenv("NOTIFY_SOCKET", name, 1);
  setenv("WATCHDOG_USEC", "200000", 1);
  char log[300], rec[300];
  pid_t w = tw_start_record("it.ops.notify", "concurrency = 2;", "", log, rec);
  unsetenv("NOTIFY_SOCKET");
  unsetenv("WATCHDOG_USEC");
  cr_assert_gt(w, 0, "worker started");

  /* Pets may come before READY (the loop turns while it connects). */
  note n;
  int ready = 0, pets = 0;
  double until = wr_now() + 10;
  while (!ready && wr_now() < until && next_note(fd, 1, &n)) {
    cr_assert_eq(n.pid, w, "'%s' sent by %d, not the supervisor %d", n.text,
                 (int)n.pid, (int)w);
    if (strcmp(n.text, "WATCHDOG=1") == 0) {
      pets++;
      continue;
    }
    cr_assert_str_eq(n.text, "READY=1\nSTATUS=consuming 1 queue(s)");
    ready = 1;
  }
  cr_assert(ready, "no READY=1 (%d watchdog pets)", pets);
  cr_assert(tw_wait_text(log, "consuming 1 queue(s)", 0),
            "READY=1 before the consumers were registered");

  /* WatchdogSec=0.2 s: a pet every 0.1 s, from the loop, never READY
   * again while nothing changes. */
  pets = 0;
  until = wr_now() + 1.0;
  while (wr_now() < until && next_note(fd, until - wr_now(), &n)) {
    cr_assert_eq(n.pid, w, "'%s' from %d", n.text, (int)n.pid);
    cr_assert_str_eq(n.text, "WATCHDOG=1");
    pets++;
  }
  cr_assert_geq(pets, 6, "%d watchdog pets in 1 s, want about 10", pets);
  cr_assert_leq(pets, 15, "%d watchdog pets in 1 s, want about 10", pets);

  /* systemctl reload: RELOADING=1 (with the time systemd 253 wants),
   * then READY=1 once the keys are read again. */
  cr_assert_eq(kill(w, SIGHUP), 0);
  int reloading = 0, back = 0;
  until = wr_now() + 5;
  while (!back && wr_now() < until && next_note(fd, 1, &n)) {
    if (strcmp(n.text, "WATCHDOG=1") == 0) continue;
    if (!reloading) {
      cr_assert(strncmp(n.text, "RELOADING=1\nMONOTONIC_USEC=", 27) == 0,
                "'%s' before RELOADING=1", n.text);
      reloading = 1;
      continue;
    }
    cr_assert_str_eq(n.text, "READY=1");
    back = 1;
  }
  cr_assert(back, "no RELOADING=1 then READY=1 on SIGHUP (%d)", reloading);

  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0, "clean exit");
  int stopping = 0;
  while (next_note(fd, 0.5, &n)) {
    cr_assert_eq(n.pid, w, "'%s' from %d", n.text, (int)n.pid);
    if (strcmp(n.text, "STOPPING=1") == 0)
      stopping++;
    else
      cr_assert_str_eq(n.text, "WATCHDOG=1");
  }
  cr_assert_eq(stopping, 1, "STOPPING=1 sent %d times", stopping);
  close(fd);
}

/* 1 when this machine can bind ::1 (a container may have no IPv6). */
static int have_ipv6_loopback(void) {
  int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  struct sockaddr_in6 a = {.sin6_family = AF_INET6,
                           .sin6_addr = in6addr_loopback};
  int ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
  close(fd);
  return ok;
}

static pid_t start_listening(const char *listen, int port) {
  const char *dir = tw_dir();
  char text[2048], log[300];
  snprintf(log, sizeof log, "%s/warren.log", dir);
  snprintf(text, sizeof text,
           "health = { listen = \"%s\"; port = %d; };\n"
           "handlers = ( { name = \"h\"; queue = \"it.ops.health\"; plugin = "
           "\"" RECORD "\";\n  settings = { log = \"%s/rec\"; }; } );\n",
           listen, port, dir);
  pid_t w = tw_warren_start(dir, text);
  cr_assert_gt(w, 0);
  cr_assert(tw_wait_text(log, "consuming 1 queue(s)", 30), "worker started");
  return w;
}

Test(ops, health_listens_on_the_ipv6_loopback_only_when_told_so) {
  if (!have_ipv6_loopback()) cr_skip_test("no IPv6 loopback (::1) here");
  int port = health_port(0);
  pid_t w = start_listening("::1", port);
  char url[128];
  snprintf(url, sizeof url, "http://[::1]:%d/healthz", port);
  cr_assert_eq(tw_http_url(url), 200, "GET %s", url);
  snprintf(url, sizeof url, "http://127.0.0.1:%d/healthz", port);
  cr_assert_eq(tw_http_url(url), -1, "::1 is not 127.0.0.1: %s answered", url);
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
}

Test(ops, health_on_any_address_answers_ipv4_and_ipv6_clients) {
  if (!have_ipv6_loopback()) cr_skip_test("no IPv6 loopback (::1) here");
  int port = health_port(1);
  pid_t w = start_listening("::", port);
  char url[128];
  snprintf(url, sizeof url, "http://[::1]:%d/healthz", port);
  cr_assert_eq(tw_http_url(url), 200, "GET %s", url);
  snprintf(url, sizeof url, "http://127.0.0.1:%d/healthz", port);
  cr_assert_eq(tw_http_url(url), 200, "dual stack: GET %s", url);
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
}
