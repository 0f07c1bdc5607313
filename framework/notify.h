/*
 * Telling the service manager how the supervisor is doing: systemd's
 * notification protocol (sd_notify(3)), spoken directly. Each message is
 * one datagram of "KEY=VALUE" lines on the AF_UNIX socket named by
 * $NOTIFY_SOCKET; that protocol is documented as stable, so a few lines
 * here replace libsystemd (a library linked for about 40 lines).
 *
 *   READY=1      once, when every consumer is registered the first time
 *                (with STATUS=consuming N queue(s));
 *   STOPPING=1   when the drain begins (SIGTERM/SIGINT);
 *   RELOADING=1  then READY=1 around the SIGHUP key reload;
 *   WATCHDOG=1   every WatchdogSec/2 ($WATCHDOG_USEC / 2), sent by a
 *                phase of the supervisor's loop, so a loop that is stuck
 *                stops petting and systemd restarts the service.
 *
 * Supervisor only: workers never call it (they close the socket with
 * every fd >= 5 after fork, pool.c, and it is SOCK_CLOEXEC). Loop thread
 * only. Without $NOTIFY_SOCKET every call does nothing. docs/deploying.md,
 * "Running under systemd", and deploy/systemd/warren.service.
 */
#ifndef WR_NOTIFY_H
#define WR_NOTIFY_H

#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>

#include "loop.h"

typedef struct wr_notify wr_notify;

/* The address of a $NOTIFY_SOCKET value into sa and len: an absolute
 * path, or an abstract name when it starts with '@'. Returns 0, or -1
 * for an empty, relative (or "vsock:") or too long value. */
int wr_notify_addr(const char *value, struct sockaddr_un *sa, socklen_t *len);

/* Seconds between two WATCHDOG=1 for process pid, from the values of
 * $WATCHDOG_USEC and $WATCHDOG_PID (NULL: unset): half the timeout, or 0
 * when no watchdog is asked of pid. */
double wr_notify_watchdog_interval(const char *usec, const char *wpid,
                                   pid_t pid);

/* Read the environment; *out is NULL (and 0 returned) when there is no
 * service manager to tell. With a watchdog, adds its phase to loop, which
 * must outlive the notifier. */
int wr_notify_create(wr_loop *loop, wr_notify **out);
/* NULL is allowed. */
void wr_notify_destroy(wr_notify *n);

/* Send msg as one datagram; never blocks, failures are logged once. */
void wr_notify_send(wr_notify *n, const char *msg);

/* Consuming nq queues: READY=1 the first time, the status every time. */
void wr_notify_ready(wr_notify *n, size_t nq);
/* Around a reload: RELOADING=1, then READY=1 (only once ready). */
void wr_notify_reloading(wr_notify *n);
void wr_notify_reloaded(wr_notify *n);

#endif
