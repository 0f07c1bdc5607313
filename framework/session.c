#include "session.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <warren/status.h>

#include "clock.h"
#include "deliver.h"
#include "log.h"

#define READ_BUDGET 256 /* deliveries read before serving workers */
#define SERVICE_S 1.0   /* heartbeats are serviced at least this often */
#define RECONNECT_JITTER 0.2
#define SETUP_TIMEOUT_S 60.0 /* broker.setup_timeout's default */

void wr_session_init(wr_session *s, const wr_conn_params *p,
                     amqp_channel_t pub_ch, double backoff_min,
                     double backoff_max, wr_loop *loop,
                     const wr_session_events *ev, void *ctx) {
  memset(s, 0, sizeof *s);
  s->params = p;
  s->sock = -1;
  s->psock = -1;
  s->pub_ch = pub_ch;
  wr_backoff_init(&s->backoff, backoff_min, backoff_max, RECONNECT_JITTER);
  s->loop = loop;
  s->ev = ev;
  s->ctx = ctx;
  s->store = (wr_deliver_store){ev->body, ev->release, ctx};
  wr_conn_node_order(p->n_nodes <= WR_SESSION_MAX_NODES ? p->n_nodes : 0,
                     s->order);
  s->cur = *p;
}

size_t wr_session_node_index(const wr_session *s) {
  size_t n = s->params->n_nodes;
  return n && n <= WR_SESSION_MAX_NODES ? s->order[s->node % n] : 0;
}

/* The parameters of the node to try now. */
static const wr_conn_params *current(wr_session *s) {
  const wr_conn_params *p = s->params;
  if (!p->n_nodes || p->n_nodes > WR_SESSION_MAX_NODES) return p;
  s->cur = wr_conn_at(p, wr_session_node_index(s));
  return &s->cur;
}

static void on_readable(void *ctx, int fd, short revents) {
  (void)fd, (void)revents;
  ((wr_session *)ctx)->readable = 1;
}

static void on_pub_readable(void *ctx, int fd, short revents) {
  (void)fd, (void)revents;
  ((wr_session *)ctx)->preadable = 1;
}

static void end_blocked(wr_session *s) {
  if (!s->blocked) return;
  s->blocked_s += wr_now() - s->blocked_since;
  s->blocked = 0;
}

double wr_session_blocked_s(const wr_session *s, double now) {
  return s->blocked_s + (s->blocked ? now - s->blocked_since : 0);
}

/* why: the failure to connect (NULL after losing a connection); rc its
 * status. A refused login or TLS set-up is an operator's error, said at
 * error level every time; an unreachable broker is a warning. Both are
 * retried: a worker waits (not ready) for its broker, as containers do. */
static void plan_reconnect(wr_session *s, const char *why, int rc) {
  double d = wr_backoff_fail(&s->backoff, wr_rand01());
  s->next_connect = wr_now() + d;
  const wr_conn_params *p = current(s);
  char was[300], to[300] = "";
  snprintf(was, sizeof was, "%s:%d", p->host, p->port);
  /* A cluster: the next attempt goes to the next node (the one that
   * failed or went away may be down). */
  if (s->params->n_nodes > 1) {
    s->node++;
    p = current(s);
    snprintf(to, sizeof to, "; next: node %s:%d", p->host, p->port);
  }
  if (why)
    wr_log(rc == WARREN_BROKER_LOGIN || rc == WARREN_BROKER_TLS
               ? WARREN_LOG_ERROR
               : WARREN_LOG_WARN,
           "broker %s: %s; retrying in %.1f s%s", was, why, d, to);
  else if (!s->draining)
    wr_info("reconnecting in %.1f s%s", d, to);
}

/* A connection set-up runs on a thread of its own: the TCP connects,
 * log-ins, declares and consumers of both connections wait on the
 * network, and the loop goes on meanwhile (workers, timers, health,
 * metrics). The thread touches only what it is given here and what the
 * setup event reads (the configuration); the loop takes its result after
 * joining it. */
struct wr_setup {
  pthread_t thread;
  int efd;                 /* eventfd: the thread is done */
  int done;                /* efd polled readable */
  wr_conn_params params;   /* the node tried */
  double deadline;         /* the whole set-up's (broker.setup_timeout) */
  int cut;                 /* the deadline passed: sockets shut down */
  _Atomic int sock, psock; /* the thread's sockets once open, or -1 */
  const wr_session_events *ev;
  void *ctx;
  amqp_channel_t pub_ch;
  /* The thread's result, read by the loop after the join. */
  amqp_connection_state_t c, pc;
  int rc;
  char err[512];
};

static void *setup_run(void *arg) {
  wr_setup *u = arg;
  wr_conn_params pb = u->params;
  pb.notify_blocked = 1;
  /* The publishing connection first: deliveries start with the consumers
   * (setup), and a copy must have somewhere to go. */
  int rc = wr_conn_open(&pb, &u->pc, u->err, sizeof u->err);
  if (rc == WARREN_OK) {
    atomic_store(&u->psock, amqp_get_sockfd(u->pc));
    rc = wr_conn_channel(u->pc, u->pub_ch, 1, u->err, sizeof u->err);
  }
  if (rc == WARREN_OK)
    rc = wr_conn_open(&u->params, &u->c, u->err, sizeof u->err);
  if (rc == WARREN_OK) {
    atomic_store(&u->sock, amqp_get_sockfd(u->c));
    rc = u->ev->setup(u->ctx, u->c, u->err, sizeof u->err);
  }
  u->rc = rc;
  uint64_t one = 1;
  while (write(u->efd, &one, sizeof one) < 0 && errno == EINTR) {
  }
  return NULL;
}

static void on_setup_done(void *ctx, int fd, short revents) {
  (void)fd, (void)revents;
  ((wr_session *)ctx)->setup->done = 1;
}

/* Past the set-up's deadline: whatever the thread waits on fails now. */
static void cut_setup(wr_setup *u) {
  int fd = atomic_load(&u->sock), pfd = atomic_load(&u->psock);
  if (fd >= 0) shutdown(fd, SHUT_RDWR);
  if (pfd >= 0) shutdown(pfd, SHUT_RDWR);
  u->cut = 1;
}

/* Join the thread and free what it leaves but the connections, which
 * are returned (NULL when not made). */
static void end_setup(wr_session *s, amqp_connection_state_t *c,
                      amqp_connection_state_t *pc) {
  wr_setup *u = s->setup;
  pthread_join(u->thread, NULL);
  wr_loop_unwatch(s->loop, u->efd, s);
  close(u->efd);
  *c = u->c;
  *pc = u->pc;
  s->setup = NULL;
}

static void start_setup(wr_session *s) {
  wr_setup *u = calloc(1, sizeof *u);
  const char *why = "no memory";
  if (u) {
    u->params = *current(s);
    double t = s->params->setup_timeout;
    u->deadline = wr_now() + (t > 0 ? t : SETUP_TIMEOUT_S);
    atomic_init(&u->sock, -1);
    atomic_init(&u->psock, -1);
    u->ev = s->ev;
    u->ctx = s->ctx;
    u->pub_ch = s->pub_ch;
    u->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (s->ev->plan) s->ev->plan(s->ctx);
    why = "eventfd failed";
    if (u->efd >= 0) {
      s->setup = u;
      if (wr_loop_watch(s->loop, u->efd, POLLIN, on_setup_done, s) ==
              WARREN_OK &&
          pthread_create(&u->thread, NULL, setup_run, u) == 0)
        return;
      why = "cannot start the connection set-up";
      wr_loop_unwatch(s->loop, u->efd, s);
      close(u->efd);
      s->setup = NULL;
    }
  }
  free(u);
  plan_reconnect(s, why, WARREN_NOMEM);
}

/* The thread is done: take its connections, or plan the next try. */
static void finish_setup(wr_session *s) {
  wr_setup *u = s->setup;
  amqp_connection_state_t c, pc;
  end_setup(s, &c, &pc); /* joined: what the thread wrote is seen now */
  int rc = u->rc, cut = u->cut;
  char err[sizeof u->err + 96];
  const wr_conn_params b = u->params; /* its strings are the config's */
  if (cut)
    snprintf(err, sizeof err,
             "the connection set-up passed broker.setup_timeout (%g s): %s",
             s->params->setup_timeout, u->err);
  else
    snprintf(err, sizeof err, "%s", u->err);
  free(u);
  int watched = 0;
  if (rc == WARREN_OK && cut) rc = WARREN_BROKER_CONNECT;
  if (rc == WARREN_OK)
    rc = wr_loop_watch(s->loop, amqp_get_sockfd(c), POLLIN, on_readable, s);
  if (rc == WARREN_OK) {
    watched = 1;
    rc =
        wr_loop_watch(s->loop, amqp_get_sockfd(pc), POLLIN, on_pub_readable, s);
  }
  if (rc != WARREN_OK) {
    if (watched) wr_loop_unwatch(s->loop, amqp_get_sockfd(c), s);
    if (c) amqp_destroy_connection(c);
    if (pc) amqp_destroy_connection(pc);
    plan_reconnect(s, err, rc);
    s->refused_logins = rc == WARREN_BROKER_LOGIN ? s->refused_logins + 1 : 0;
    if (s->max_refused_logins && s->refused_logins >= s->max_refused_logins) {
      wr_error("giving up: the broker refused the login %d time(s) in a row",
               s->refused_logins);
      s->gave_up = 1;
    }
    return;
  }
  s->refused_logins = 0;
  s->conn = c;
  s->sock = amqp_get_sockfd(c);
  s->pconn = pc;
  s->psock = amqp_get_sockfd(pc);
  s->pub_seq = 0;
  s->gen++;
  wr_backoff_reset(&s->backoff);
  wr_info("connected to %s:%d vhost '%s'", b.host, b.port, b.vhost);
  s->ev->connected(s->ctx);
}

/* Stop a set-up under way (the process is stopping): its sockets are
 * shut down, the thread joined, what it made destroyed. */
static void abandon_setup(wr_session *s) {
  if (!s->setup) return;
  cut_setup(s->setup);
  amqp_connection_state_t c, pc;
  wr_setup *u = s->setup;
  end_setup(s, &c, &pc);
  free(u);
  if (c) amqp_destroy_connection(c);
  if (pc) amqp_destroy_connection(pc);
}

void wr_session_lost(wr_session *s, const char *why, int polite) {
  if (!s->conn) return;
  wr_warn("broker connection lost: %s; unacked jobs go back to the queue", why);
  wr_loop_unwatch(s->loop, s->sock, s);
  wr_loop_unwatch(s->loop, s->psock, s);
  if (polite) {
    wr_conn_close(s->conn);
    wr_conn_close(s->pconn);
  } else {
    amqp_destroy_connection(s->conn);
    amqp_destroy_connection(s->pconn);
  }
  s->conn = s->pconn = NULL;
  s->sock = s->psock = -1;
  s->gen++;
  s->readable = s->preadable = 0;
  end_blocked(s);
  plan_reconnect(s, NULL, WARREN_OK);
  s->ev->lost(s->ctx);
}

int wr_session_buffered(const wr_session *s) {
  return s->conn &&
         (amqp_data_in_buffer(s->conn) || amqp_frames_enqueued(s->conn) ||
          amqp_data_in_buffer(s->pconn) || amqp_frames_enqueued(s->pconn));
}

double wr_session_prepare(wr_session *s, double now) {
  if (s->setup && s->draining) {
    /* Stopping: no consumer may start now. */
    if (!s->setup->cut) cut_setup(s->setup);
    if (s->setup->done) abandon_setup(s);
    return 0;
  }
  if (s->setup && s->setup->done) finish_setup(s);
  if (s->setup) {
    if (!s->setup->cut && now >= s->setup->deadline) cut_setup(s->setup);
    return s->setup->cut ? 0 : s->setup->deadline; /* the eventfd wakes it */
  }
  if (!s->conn) {
    if (s->draining) return 0;
    if (now >= s->next_connect) start_setup(s);
    if (!s->conn) return s->setup ? s->setup->deadline : s->next_connect;
  }
  return wr_session_buffered(s) ? now : s->next_service;
}

/* A method that is not a delivery. Returns -1 when the connection is
 * gone (or going). */
static int on_frame(wr_session *s, amqp_frame_t f) {
  if (f.frame_type != AMQP_FRAME_METHOD) return 0;
  char why[400], reason[300];
  if (f.channel == s->pub_ch) {
    wr_pub_event ev;
    if (wr_conn_pub_frame(s->conn, &f, &ev) != 0) {
      wr_session_lost(s, "cannot read a returned message", 0);
      return -1;
    }
    if (ev.kind == WR_PUB_ACK || ev.kind == WR_PUB_NACK ||
        ev.kind == WR_PUB_RETURN) {
      s->ev->published(s->ctx, &ev);
      return s->conn ? 0 : -1;
    }
  }
  const char *name = s->ev->channel_name(s->ctx, f.channel);
  switch (f.payload.method.id) {
    case AMQP_CHANNEL_CLOSE_METHOD: {
      snprintf(why, sizeof why, "channel %u (%s): %s", f.channel, name,
               wr_conn_close_reason(&f.payload.method, reason, sizeof reason));
      amqp_channel_close_ok_t ok = {0};
      amqp_send_method(s->conn, f.channel, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
      /* Every channel is set up again on a fresh connection: simpler than
       * per-channel recovery, and the broker requeues this channel's jobs
       * anyway. */
      wr_session_lost(s, why, 1);
      return -1;
    }
    case AMQP_CONNECTION_CLOSE_METHOD: {
      wr_conn_close_reason(&f.payload.method, why, sizeof why);
      amqp_connection_close_ok_t ok = {0};
      amqp_send_method(s->conn, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
      wr_session_lost(s, why, 0);
      return -1;
    }
    case AMQP_BASIC_CANCEL_METHOD:
      if (s->draining) return 0;
      /* Only that consumer is gone: its channel, its unacked deliveries
       * and the other handlers' consumers are untouched. */
      s->ev->cancelled(s->ctx, f.channel);
      return s->conn ? 0 : -1;
    default:
      wr_debug("ignored method 0x%08x on channel %u", f.payload.method.id,
               f.channel);
      return 0;
  }
}

static void read_frames(wr_session *s) {
  for (int budget = READ_BUDGET; budget > 0 && s->conn; budget--) {
    wr_job *job = s->ev->slot(s->ctx);
    if (!job) {
      /* Cannot happen while the broker honours prefetch; stop reading and
       * let the socket buffer hold the rest. */
      wr_error("no free job slot; is the broker ignoring basic.qos?");
      return;
    }
    amqp_maybe_release_buffers(s->conn);
    struct timeval zero = {0, 0};
    amqp_frame_t f;
    int rc = amqp_simple_wait_frame_noblock(s->conn, &f, &zero);
    if (rc == AMQP_STATUS_TIMEOUT) return;
    if (rc != AMQP_STATUS_OK) {
      wr_session_lost(s, amqp_error_string2(rc), 0);
      return;
    }
    if (f.frame_type != AMQP_FRAME_METHOD ||
        f.payload.method.id != AMQP_BASIC_DELIVER_METHOD) {
      if (on_frame(s, f) != 0) return;
      continue;
    }
    rc = wr_deliver_read(s->conn, &f, &job->env, &s->store);
    if (rc == AMQP_STATUS_OK) {
      job->gen = s->gen;
      s->ev->delivery(s->ctx, job);
      continue;
    }
    /* The deliver method was read but its properties could not be
     * copied: the frame stream is intact (the body frames that follow are
     * skipped by on_frame), so only this message is refused. */
    if (rc == AMQP_STATUS_INVALID_PARAMETER) {
      s->ev->undecodable(s->ctx, job->env.channel, job->env.delivery_tag,
                         amqp_error_string2(rc));
      job->env.delivery_tag = 0;
      continue;
    }
    wr_session_lost(s, amqp_error_string2(rc), 0);
    return;
  }
}

/* What the broker says on the publishing connection: confirms and
 * returns of its channel, connection.blocked and unblocked. */
static void read_pub_frames(wr_session *s) {
  for (int budget = READ_BUDGET; budget > 0 && s->pconn; budget--) {
    struct timeval zero = {0, 0};
    amqp_frame_t f;
    amqp_maybe_release_buffers(s->pconn);
    int rc = amqp_simple_wait_frame_noblock(s->pconn, &f, &zero);
    if (rc == AMQP_STATUS_TIMEOUT) return;
    if (rc != AMQP_STATUS_OK) {
      char why[300];
      snprintf(why, sizeof why, "publishing connection: %s",
               amqp_error_string2(rc));
      wr_session_lost(s, why, 0);
      return;
    }
    wr_pub_event ev;
    if (wr_conn_pub_frame(s->pconn, &f, &ev) != 0) {
      wr_session_lost(s, "cannot read a returned message", 0);
      return;
    }
    switch (ev.kind) {
      case WR_PUB_ACK:
      case WR_PUB_NACK:
      case WR_PUB_RETURN:
        s->ev->published(s->ctx, &ev);
        break;
      case WR_PUB_BLOCKED:
        if (!s->blocked) {
          s->blocked = 1;
          s->blocked_since = wr_now();
          s->blocked_n++;
        }
        snprintf(s->blocked_why, sizeof s->blocked_why, "%.120s", ev.why);
        wr_warn(
            "the broker blocked publishing (%s): retry and dead-letter "
            "copies, follow-ups and results wait for it; jobs that publish "
            "nothing are still acked",
            ev.why);
        break;
      case WR_PUB_UNBLOCKED:
        if (s->blocked)
          wr_info("the broker unblocked publishing after %.1f s",
                  wr_now() - s->blocked_since);
        end_blocked(s);
        break;
      case WR_PUB_CLOSED: {
        char why[400];
        snprintf(why, sizeof why, "publishing connection: %s", ev.why);
        if (f.payload.method.id == AMQP_CONNECTION_CLOSE_METHOD) {
          amqp_connection_close_ok_t ok = {0};
          amqp_send_method(s->pconn, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
        } else {
          amqp_channel_close_ok_t ok = {0};
          amqp_send_method(s->pconn, f.channel, AMQP_CHANNEL_CLOSE_OK_METHOD,
                           &ok);
        }
        wr_session_lost(s, why, 0);
        return;
      }
      case WR_PUB_OTHER:
        break;
    }
  }
}

void wr_session_check(wr_session *s, double now) {
  if (!s->conn) return;
  if (s->readable || now >= s->next_service || wr_session_buffered(s)) {
    s->readable = 0;
    read_frames(s);
  }
  if (s->pconn &&
      (s->preadable || now >= s->next_service || wr_session_buffered(s))) {
    s->preadable = 0;
    read_pub_frames(s);
  }
  if (now >= s->next_service) s->next_service = now + SERVICE_S;
}

static int sent(wr_session *s, int rc) {
  if (rc == AMQP_STATUS_OK) return 0;
  wr_session_lost(s, amqp_error_string2(rc), 0);
  return -1;
}

int wr_session_ack(wr_session *s, amqp_channel_t ch, uint64_t tag,
                   int multiple) {
  if (!s->conn) return -1;
  return sent(s, amqp_basic_ack(s->conn, ch, tag, multiple));
}

int wr_session_nack(wr_session *s, amqp_channel_t ch, uint64_t tag,
                    int requeue) {
  if (!s->conn) return -1;
  return sent(s, amqp_basic_nack(s->conn, ch, tag, 0, requeue));
}

int wr_session_cancel(wr_session *s, amqp_channel_t ch, const char *tag) {
  if (!s->conn) return -1;
  amqp_basic_cancel(s->conn, ch, amqp_cstring_bytes(tag));
  char err[300];
  if (wr_conn_reply(s->conn, amqp_get_rpc_reply(s->conn), "basic.cancel", err,
                    sizeof err) == WARREN_OK)
    return 0;
  wr_session_lost(s, err, 0);
  return -1;
}

uint64_t wr_session_publish(wr_session *s, const char *exchange,
                            const char *routing_key,
                            const amqp_basic_properties_t *props,
                            amqp_bytes_t body) {
  return wr_session_publish_ex(s, exchange, routing_key, props, body, 1);
}

uint64_t wr_session_publish_ex(wr_session *s, const char *exchange,
                               const char *routing_key,
                               const amqp_basic_properties_t *props,
                               amqp_bytes_t body, int mandatory) {
  if (!s->pconn) return 0;
  int rc = amqp_basic_publish(s->pconn, s->pub_ch, amqp_cstring_bytes(exchange),
                              amqp_cstring_bytes(routing_key), mandatory != 0,
                              0, props, body);
  if (sent(s, rc) != 0) return 0;
  return ++s->pub_seq;
}

int wr_session_send(wr_session *s, amqp_channel_t ch, const char *exchange,
                    const char *routing_key,
                    const amqp_basic_properties_t *props, amqp_bytes_t body) {
  if (!s->conn) return -1;
  return sent(s, amqp_basic_publish(s->conn, ch, amqp_cstring_bytes(exchange),
                                    amqp_cstring_bytes(routing_key), 0, 0,
                                    props, body));
}

void wr_session_close(wr_session *s) {
  abandon_setup(s);
  if (!s->conn) return;
  wr_loop_unwatch(s->loop, s->sock, s);
  wr_loop_unwatch(s->loop, s->psock, s);
  wr_conn_close(s->conn);
  wr_conn_close(s->pconn);
  s->conn = s->pconn = NULL;
  s->sock = s->psock = -1;
  end_blocked(s);
}
