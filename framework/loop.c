#include "loop.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <warren/status.h>

#include "conn.h"
#include "headers.h"
#include "log.h"
#include "plugin.h"
#include "pool.h"

#define READ_BUDGET 256       /* deliveries read before serving workers */
#define IDLE_WAKE_MS 1000     /* heartbeats are serviced at least this often */
#define WORKER_START_S 30.0   /* time init() gets at start */
#define WORKER_STOP_S 5.0     /* time idle workers get to run shutdown() */

typedef struct wr_handler_rt {
  const wr_handler_cfg *cfg;
  struct wr_loop *loop;
  wr_plugin plugin;
  wr_pool pool;
  amqp_channel_t ch;
  char tag[200];
  wr_job *pend_head, *pend_tail; /* delivered, waiting for a worker */
  size_t pending;
  wr_handler_stats st;
} wr_handler_rt;

struct wr_loop {
  wr_cfg *cfg;
  wr_handler_rt *h;
  size_t nh;
  wr_job *slots, *free_list;
  amqp_connection_state_t conn;
  int sock;
  uint64_t gen;     /* bumped per connection: tags of older ones are void */
  uint64_t next_id;
  int ready;
  int draining;
  double drain_deadline;
  double next_connect, backoff;
  double next_service; /* next forced read of the socket (heartbeats) */
  int sigfd;
  sigset_t old_mask;
  struct pollfd *pfd;
  wr_child **pchild;
  size_t npfd;
};

static void release(wr_loop *l, wr_job *job) {
  amqp_destroy_envelope(&job->env);
  job->next = l->free_list;
  l->free_list = job;
}

static void conn_lost(wr_loop *l, const char *why, int polite) {
  if (!l->conn) return;
  wr_warn("broker connection lost: %s; unacked jobs go back to the queue", why);
  l->ready = 0;
  if (polite)
    wr_conn_close(l->conn);
  else
    amqp_destroy_connection(l->conn);
  l->conn = NULL;
  l->sock = -1;
  l->gen++;
  for (size_t i = 0; i < l->nh; i++) {
    wr_handler_rt *h = &l->h[i];
    while (h->pend_head) {
      wr_job *j = h->pend_head;
      h->pend_head = j->next;
      release(l, j);
    }
    h->pend_tail = NULL;
    h->pending = 0;
  }
  /* Jitter keeps a fleet of workers from reconnecting in lock-step. */
  double jitter = 0.8 + 0.4 * ((double)rand() / RAND_MAX);
  l->next_connect = wr_now() + l->backoff * jitter;
  if (!l->draining)
    wr_info("reconnecting in %.1f s", l->backoff * jitter);
  l->backoff *= 2;
  if (l->backoff > l->cfg->reconnect_max) l->backoff = l->cfg->reconnect_max;
}

static void settle(wr_handler_rt *h, wr_job *job, int result, const char *err,
                   size_t err_len) {
  wr_loop *l = h->loop;
  static const char *const names[] = {"ack", "retry", "reject"};
  if (result == WARREN_ACK) h->st.acked++;
  if (result == WARREN_RETRY) h->st.retried++;
  if (result == WARREN_REJECT) h->st.rejected++;
  if (result != WARREN_ACK || err_len)
    wr_warn("handler %s: job tag %llu attempt %u: %s%s%.*s", h->cfg->name,
            (unsigned long long)job->env.delivery_tag, job->attempt,
            names[result], err_len ? ": " : "", (int)err_len, err);
  if (job->gen != l->gen || !l->conn) {
    h->st.dropped++;
    wr_debug("handler %s: result for a delivery of a closed connection; the "
             "broker redelivers it", h->cfg->name);
    release(l, job);
    return;
  }
  uint64_t tag = job->env.delivery_tag;
  int rc;
  /* Until the retry topology exists, retry means requeue at once and
   * reject means basic.reject without requeue (the queue's own
   * dead-letter settings apply). */
  if (result == WARREN_ACK)
    rc = amqp_basic_ack(l->conn, h->ch, tag, 0);
  else if (result == WARREN_RETRY)
    rc = amqp_basic_nack(l->conn, h->ch, tag, 0, 1);
  else
    rc = amqp_basic_reject(l->conn, h->ch, tag, 0);
  release(l, job);
  if (rc != AMQP_STATUS_OK) conn_lost(l, amqp_error_string2(rc), 0);
}

static void on_done(void *ctx, wr_pool *p, wr_job *job, int result,
                    const char *err, size_t err_len) {
  (void)p;
  settle(ctx, job, result, err, err_len);
}

static void on_lost(void *ctx, wr_pool *p, wr_job *job, const char *why) {
  wr_handler_rt *h = ctx;
  (void)p;
  h->st.lost++;
  h->st.retried--; /* settle() counts it as a retry; it is a loss */
  char err[160];
  int n = snprintf(err, sizeof err, "worker %s", why);
  settle(h, job, WARREN_RETRY, err, n > 0 ? (size_t)n : 0);
}

static const wr_pool_events pool_events = {on_done, on_lost};

static uint32_t attempt_of(const amqp_basic_properties_t *p) {
  if (!(p->_flags & AMQP_BASIC_HEADERS_FLAG)) return 1;
  int64_t own = 1, redeliveries = 0;
  for (int i = 0; i < p->headers.num_entries; i++) {
    const amqp_table_entry_t *e = &p->headers.entries[i];
    int64_t n;
    if (!wr_hdr_amqp_int(&e->value, &n)) continue;
    if (e->key.len == 16 && memcmp(e->key.bytes, "x-warren-attempt", 16) == 0 &&
        n >= 1)
      own = n;
    else if (e->key.len == 16 &&
             memcmp(e->key.bytes, "x-delivery-count", 16) == 0 && n >= 0)
      redeliveries = n; /* quorum queues count returns here */
  }
  int64_t a = own + redeliveries;
  return a > UINT32_MAX ? UINT32_MAX : (uint32_t)a;
}

static void on_delivery(wr_loop *l, wr_job *job) {
  amqp_channel_t ch = job->env.channel;
  if (ch < 1 || ch > l->nh) {
    wr_error("delivery on unexpected channel %u; requeued", ch);
    amqp_basic_reject(l->conn, ch, job->env.delivery_tag, 1);
    release(l, job);
    return;
  }
  wr_handler_rt *h = &l->h[ch - 1];
  job->id = ++l->next_id;
  job->gen = l->gen;
  job->attempt = attempt_of(&job->env.message.properties);
  job->next = NULL;
  if (h->pend_tail)
    h->pend_tail->next = job;
  else
    h->pend_head = job;
  h->pend_tail = job;
  h->pending++;
  h->st.delivered++;
}

/* A method that is not a delivery. Returns -1 when the connection is
 * gone (or going). */
static int on_frame(wr_loop *l) {
  amqp_frame_t f;
  int rc = amqp_simple_wait_frame(l->conn, &f);
  if (rc != AMQP_STATUS_OK) {
    conn_lost(l, amqp_error_string2(rc), 0);
    return -1;
  }
  if (f.frame_type != AMQP_FRAME_METHOD) return 0;
  const char *hname = f.channel >= 1 && f.channel <= l->nh
                          ? l->h[f.channel - 1].cfg->name
                          : "-";
  char why[400];
  switch (f.payload.method.id) {
    case AMQP_BASIC_RETURN_METHOD: {
      amqp_message_t m;
      amqp_rpc_reply_t r = amqp_read_message(l->conn, f.channel, &m, 0);
      if (r.reply_type == AMQP_RESPONSE_NORMAL) amqp_destroy_message(&m);
      return 0;
    }
    case AMQP_CHANNEL_CLOSE_METHOD: {
      amqp_channel_close_t *m = f.payload.method.decoded;
      snprintf(why, sizeof why, "broker closed channel %u (handler %s): %u %.*s",
               f.channel, hname, m->reply_code, (int)m->reply_text.len,
               (const char *)m->reply_text.bytes);
      amqp_channel_close_ok_t ok = {0};
      amqp_send_method(l->conn, f.channel, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
      /* Every channel is set up again on a fresh connection: simpler than
       * per-channel recovery, and the broker requeues this channel's jobs
       * anyway. */
      conn_lost(l, why, 1);
      return -1;
    }
    case AMQP_CONNECTION_CLOSE_METHOD: {
      amqp_connection_close_t *m = f.payload.method.decoded;
      snprintf(why, sizeof why, "broker closed the connection: %u %.*s",
               m->reply_code, (int)m->reply_text.len,
               (const char *)m->reply_text.bytes);
      amqp_connection_close_ok_t ok = {0};
      amqp_send_method(l->conn, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
      conn_lost(l, why, 0);
      return -1;
    }
    case AMQP_BASIC_CANCEL_METHOD:
      if (l->draining) return 0;
      snprintf(why, sizeof why,
               "broker cancelled the consumer of handler %s (queue deleted?)",
               hname);
      conn_lost(l, why, 1);
      return -1;
    default:
      wr_debug("ignored method 0x%08x on channel %u", f.payload.method.id,
               f.channel);
      return 0;
  }
}

static void read_amqp(wr_loop *l) {
  for (int budget = READ_BUDGET; budget > 0 && l->conn; budget--) {
    wr_job *job = l->free_list;
    if (!job) {
      /* Cannot happen while the broker honours prefetch; stop reading and
       * let the socket buffer hold the rest. */
      wr_error("no free job slot; is the broker ignoring basic.qos?");
      return;
    }
    amqp_maybe_release_buffers(l->conn);
    struct timeval zero = {0, 0};
    amqp_rpc_reply_t r = amqp_consume_message(l->conn, &job->env, &zero, 0);
    if (r.reply_type == AMQP_RESPONSE_NORMAL) {
      l->free_list = job->next;
      on_delivery(l, job);
      continue;
    }
    if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
        r.library_error == AMQP_STATUS_TIMEOUT)
      return;
    if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
        r.library_error == AMQP_STATUS_UNEXPECTED_STATE) {
      if (on_frame(l) != 0) return;
      continue;
    }
    char why[256];
    wr_conn_reply(l->conn, r, "consume", why, sizeof why);
    conn_lost(l, why, 0);
  }
}

static void try_connect(wr_loop *l) {
  char err[512];
  amqp_connection_state_t c = NULL;
  const wr_broker_cfg *b = &l->cfg->broker;
  int rc = wr_conn_open(b, &c, err, sizeof err);
  if (rc == WARREN_OK)
    rc = wr_conn_declare(c, l->cfg, (amqp_channel_t)(l->nh + 1), err, sizeof err);
  for (size_t i = 0; rc == WARREN_OK && i < l->nh; i++)
    rc = wr_conn_consume(c, l->h[i].ch, l->h[i].cfg, l->h[i].tag, err, sizeof err);
  if (rc != WARREN_OK) {
    if (c) amqp_destroy_connection(c);
    double jitter = 0.8 + 0.4 * ((double)rand() / RAND_MAX);
    wr_warn("broker %s:%d: %s; retrying in %.1f s", b->host, b->port, err,
            l->backoff * jitter);
    l->next_connect = wr_now() + l->backoff * jitter;
    l->backoff *= 2;
    if (l->backoff > l->cfg->reconnect_max) l->backoff = l->cfg->reconnect_max;
    return;
  }
  l->conn = c;
  l->sock = amqp_get_sockfd(c);
  l->gen++;
  l->ready = 1;
  l->backoff = l->cfg->reconnect_min;
  wr_info("connected to %s:%d vhost '%s'; consuming %zu queue(s)", b->host,
          b->port, b->vhost, l->nh);
}

static void begin_drain(wr_loop *l) {
  if (l->draining) {
    wr_warn("second stop signal: not waiting for running jobs");
    l->drain_deadline = wr_now();
    return;
  }
  l->draining = 1;
  l->ready = 0;
  l->drain_deadline = wr_now() + l->cfg->shutdown_grace;
  int busy = 0;
  for (size_t i = 0; i < l->nh; i++) busy += l->h[i].pool.busy;
  wr_info("stopping: cancelling consumers; %d job(s) running get %.0f s",
          busy, l->cfg->shutdown_grace);
  for (size_t i = 0; i < l->nh && l->conn; i++) {
    wr_handler_rt *h = &l->h[i];
    amqp_basic_cancel(l->conn, h->ch, amqp_cstring_bytes(h->tag));
    char err[300];
    if (wr_conn_reply(l->conn, amqp_get_rpc_reply(l->conn), "basic.cancel", err,
                      sizeof err) != WARREN_OK)
      conn_lost(l, err, 0);
  }
}

static void on_signals(wr_loop *l) {
  struct signalfd_siginfo si;
  while (read(l->sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
    if (si.ssi_signo == SIGCHLD) {
      int status;
      pid_t pid;
      while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
        for (size_t i = 0; i < l->nh; i++)
          if (wr_pool_reap(&l->h[i].pool, pid, status)) break;
    } else if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
      begin_drain(l);
    }
  }
}

static void dispatch(wr_loop *l) {
  if (l->draining) return; /* prefetched jobs go back on close */
  for (size_t i = 0; i < l->nh; i++) {
    wr_handler_rt *h = &l->h[i];
    wr_child *c;
    while (h->pend_head && (c = wr_pool_idle(&h->pool))) {
      wr_job *job = h->pend_head;
      if (wr_pool_dispatch(&h->pool, c, job) != WARREN_OK) break;
      h->pend_head = job->next;
      if (!h->pend_head) h->pend_tail = NULL;
      h->pending--;
    }
  }
}

static int min_ms(int ms, double at, double now) {
  if (at <= 0) return ms;
  double d = (at - now) * 1000.0;
  if (d < 0) d = 0;
  return d < ms ? (int)d + 1 : ms;
}

static size_t build_pollset(wr_loop *l) {
  size_t n = 0;
  l->pfd[n] = (struct pollfd){l->sigfd, POLLIN, 0};
  l->pchild[n++] = NULL;
  if (l->conn) {
    l->pfd[n] = (struct pollfd){l->sock, POLLIN, 0};
    l->pchild[n++] = NULL;
  }
  for (size_t i = 0; i < l->nh; i++) {
    wr_pool *p = &l->h[i].pool;
    for (int k = 0; k < p->n; k++) {
      if (p->children[k].fd < 0) continue;
      l->pfd[n] = (struct pollfd){p->children[k].fd, POLLIN, 0};
      l->pchild[n++] = &p->children[k];
    }
  }
  return n;
}

static int busy_total(const wr_loop *l) {
  int busy = 0;
  for (size_t i = 0; i < l->nh; i++) busy += l->h[i].pool.busy;
  return busy;
}

int wr_loop_run(wr_loop *l) {
  for (;;) {
    double now = wr_now();
    if (!l->conn && !l->draining && now >= l->next_connect) try_connect(l);
    if (l->draining && (busy_total(l) == 0 || now >= l->drain_deadline)) break;
    int ms = IDLE_WAKE_MS;
    if (!l->conn && !l->draining) ms = min_ms(ms, l->next_connect, now);
    if (l->draining) ms = min_ms(ms, l->drain_deadline, now);
    for (size_t i = 0; i < l->nh; i++)
      ms = min_ms(ms, wr_pool_tick(&l->h[i].pool, now), now);
    if (l->conn && (amqp_data_in_buffer(l->conn) || amqp_frames_enqueued(l->conn)))
      ms = 0;
    size_t n = build_pollset(l);
    int pr = poll(l->pfd, n, ms);
    if (pr < 0 && errno != EINTR) {
      wr_error("poll: %s", strerror(errno));
      return 1;
    }
    now = wr_now();
    int amqp_ready = 0;
    for (size_t k = 0; pr > 0 && k < n; k++) {
      if (!l->pfd[k].revents) continue;
      if (l->pfd[k].fd == l->sigfd) {
        on_signals(l);
      } else if (!l->pchild[k]) {
        amqp_ready = 1;
      } else if (l->pchild[k]->fd == l->pfd[k].fd) {
        for (size_t i = 0; i < l->nh; i++) {
          wr_pool *p = &l->h[i].pool;
          if (l->pchild[k] >= p->children && l->pchild[k] < p->children + p->n)
            wr_pool_readable(p, l->pchild[k]);
        }
      }
    }
    if (l->conn && (amqp_ready || now >= l->next_service ||
                    amqp_data_in_buffer(l->conn) || amqp_frames_enqueued(l->conn))) {
      read_amqp(l);
      l->next_service = now + IDLE_WAKE_MS / 1000.0;
    }
    dispatch(l);
  }
  wr_info("stopping workers");
  for (size_t i = 0; i < l->nh; i++) wr_pool_stop(&l->h[i].pool, WORKER_STOP_S);
  if (l->conn) {
    l->ready = 0;
    for (size_t i = 0; i < l->nh; i++) {
      wr_handler_rt *h = &l->h[i];
      while (h->pend_head) {
        wr_job *j = h->pend_head;
        h->pend_head = j->next;
        release(l, j);
      }
      h->pend_tail = NULL;
      h->pending = 0;
    }
    wr_conn_close(l->conn);
    l->conn = NULL;
  }
  for (size_t i = 0; i < l->nh; i++) {
    const wr_handler_stats *s = &l->h[i].st;
    wr_info("handler %s: delivered %lu, acked %lu, retried %lu, rejected %lu, "
            "lost with a worker %lu, unacked at disconnect %lu",
            l->h[i].cfg->name, s->delivered, s->acked, s->retried, s->rejected,
            s->lost, s->dropped);
  }
  return 0;
}

int wr_loop_create(wr_cfg *cfg, wr_loop **out, char *err, size_t errlen) {
  wr_loop *l = calloc(1, sizeof *l);
  if (!l) return WARREN_NOMEM;
  l->cfg = cfg;
  l->sigfd = -1;
  l->sock = -1;
  l->backoff = cfg->reconnect_min;
  l->nh = cfg->n_handlers;
  l->h = calloc(l->nh, sizeof *l->h);
  size_t nslots = 0, nchildren = 0;
  for (size_t i = 0; i < l->nh; i++) {
    /* Pending plus running jobs of the current connection stay within
     * prefetch; running jobs of an older connection add up to concurrency. */
    nslots += (size_t)cfg->handlers[i].prefetch + (size_t)cfg->handlers[i].concurrency;
    nchildren += (size_t)cfg->handlers[i].concurrency;
  }
  l->slots = calloc(nslots + 1, sizeof *l->slots);
  l->pfd = calloc(nchildren + 2, sizeof *l->pfd);
  l->pchild = calloc(nchildren + 2, sizeof *l->pchild);
  if (!l->h || !l->slots || !l->pfd || !l->pchild) {
    wr_loop_destroy(l);
    return WARREN_NOMEM;
  }
  for (size_t i = 0; i <= nslots; i++) {
    l->slots[i].next = l->free_list;
    l->free_list = &l->slots[i];
  }
  char host[64] = "";
  gethostname(host, sizeof host - 1);
  int rc = WARREN_OK;
  for (size_t i = 0; i < l->nh && rc == WARREN_OK; i++) {
    wr_handler_rt *h = &l->h[i];
    h->cfg = &cfg->handlers[i];
    h->loop = l;
    h->ch = (amqp_channel_t)(i + 1);
    snprintf(h->tag, sizeof h->tag, "warren.%s.%s.%d", h->cfg->name, host,
             (int)getpid());
    char why[512];
    rc = wr_plugin_load(h->cfg->plugin, &h->plugin, why, sizeof why);
    if (rc != WARREN_OK)
      snprintf(err, errlen, "%s:%d: handler %s: %s", cfg->path, h->cfg->line,
               h->cfg->name, why);
    else
      rc = wr_pool_init(&h->pool, h->cfg->name, h->plugin.def, h->cfg->settings,
                        h->cfg->concurrency, cfg->restart_min, cfg->restart_max,
                        &pool_events, h);
  }
  if (rc == WARREN_OK) {
    /* Signals are read through signalfd by the loop; workers unblock them
     * after fork (pool.c). */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGCHLD);
    sigprocmask(SIG_BLOCK, &set, &l->old_mask);
    signal(SIGPIPE, SIG_IGN);
    l->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (l->sigfd < 0) {
      snprintf(err, errlen, "signalfd: %s", strerror(errno));
      rc = WARREN_IO;
    }
  }
  for (size_t i = 0; i < l->nh && rc == WARREN_OK; i++)
    rc = wr_pool_start(&l->h[i].pool, WORKER_START_S, err, errlen);
  if (rc != WARREN_OK) {
    wr_loop_destroy(l);
    return rc;
  }
  *out = l;
  return WARREN_OK;
}

int wr_loop_ready(const wr_loop *l) {
  return l->ready;
}

const wr_handler_stats *wr_loop_stats(const wr_loop *l, size_t handler) {
  return handler < l->nh ? &l->h[handler].st : NULL;
}

void wr_loop_destroy(wr_loop *l) {
  if (!l) return;
  for (size_t i = 0; l->h && i < l->nh; i++) {
    wr_handler_rt *h = &l->h[i];
    if (h->pool.children) {
      wr_pool_stop(&h->pool, WORKER_STOP_S);
      wr_pool_free(&h->pool);
    }
    wr_plugin_unload(&h->plugin);
  }
  if (l->conn) amqp_destroy_connection(l->conn);
  if (l->sigfd >= 0) {
    close(l->sigfd);
    sigprocmask(SIG_SETMASK, &l->old_mask, NULL);
  }
  free(l->h);
  free(l->slots);
  free(l->pfd);
  free(l->pchild);
  free(l);
}
