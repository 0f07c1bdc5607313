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
#include "health.h"
#include "retry.h"
#include "log.h"
#include "plugin.h"
#include "pool.h"
#include "worker.h"

#define READ_BUDGET 256       /* deliveries read before serving workers */
#define IDLE_WAKE_MS 1000     /* heartbeats are serviced at least this often */
#define WORKER_START_S 30.0   /* time init() gets at start */
#define WORKER_STOP_S 5.0     /* time idle workers get to run shutdown() */
#define ACK_DELAY_S 0.001     /* longest a finished job waits for its ack */

typedef struct wr_handler_rt {
  const wr_handler_cfg *cfg;
  struct wr_loop *loop;
  wr_plugin plugin;
  wr_pool pool;
  amqp_channel_t ch;
  char tag[200];
  wr_job *pend_head, *pend_tail; /* delivered, waiting for a worker */
  size_t pending;
  void *inline_state; /* isolation = false: the handler's state */
  int inline_ready;   /* its init() succeeded */
  uint64_t *done;  /* tags of finished jobs whose ack is not sent yet */
  size_t n_done, ack_batch;
  double done_since;
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
  wr_health_state hs; /* read by the health thread */
  wr_health *health;
  int draining;
  double drain_deadline;
  double next_connect, backoff;
  double next_service; /* next forced read of the socket (heartbeats) */
  amqp_channel_t pub_ch; /* confirmed republishing to retry and DLX */
  uint64_t pub_seq;      /* confirm sequence of the last publish */
  wr_job *conf_head, *conf_tail; /* jobs whose copy awaits its confirm */
  unsigned returns;      /* basic.returns not yet matched to a confirm */
  char host[64];
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

/* Forget the deliveries no worker has started; unacked, they go back to
 * the queue when the connection closes. */
static void drop_pending(wr_loop *l) {
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
}

/* Lowest delivery tag of this handler that is held but not finished:
 * waiting, queued to or running in a worker, or awaiting its copy's
 * confirm. */
static uint64_t open_floor(const wr_loop *l, const wr_handler_rt *h) {
  uint64_t m = UINT64_MAX;
  for (const wr_job *j = h->pend_head; j; j = j->next)
    if (j->env.delivery_tag < m) m = j->env.delivery_tag;
  for (int i = 0; i < h->pool.n; i++) {
    const wr_child *c = &h->pool.children[i];
    for (int k = 0; k < c->len; k++) {
      const wr_job *j = c->q[(c->head + k) % WR_POOL_MAX_DEPTH];
      if (j->gen == l->gen && j->env.delivery_tag < m) m = j->env.delivery_tag;
    }
  }
  for (const wr_job *j = l->conf_head; j; j = j->next)
    if (j->handler == h - l->h && j->env.delivery_tag < m) m = j->env.delivery_tag;
  return m;
}

static void conn_lost(wr_loop *l, const char *why, int polite);

/*
 * Send the acks of finished jobs. Every tag below the lowest one still
 * open is finished, so one basic.ack(multiple=true) covers that run; the
 * few finished above it are acked one by one. A job is never acked
 * before its handler finished: only finished tags are ever covered.
 */
static void flush_acks(wr_loop *l, wr_handler_rt *h) {
  if (!h->n_done || !l->conn) return;
  uint64_t floor = open_floor(l, h);
  uint64_t *d = h->done;
  size_t n = h->n_done;
  for (size_t i = 1; i < n; i++) /* nearly sorted already */
    for (size_t k = i; k > 0 && d[k - 1] > d[k]; k--) {
      uint64_t t = d[k];
      d[k] = d[k - 1];
      d[k - 1] = t;
    }
  size_t run = 0;
  while (run < n && d[run] < floor) run++;
  int rc = AMQP_STATUS_OK;
  if (run) rc = amqp_basic_ack(l->conn, h->ch, d[run - 1], 1);
  for (size_t i = run; i < n && rc == AMQP_STATUS_OK; i++)
    rc = amqp_basic_ack(l->conn, h->ch, d[i], 0);
  h->n_done = 0;
  if (rc != AMQP_STATUS_OK) conn_lost(l, amqp_error_string2(rc), 0);
}

static void flush_all_acks(wr_loop *l) {
  for (size_t i = 0; i < l->nh; i++) flush_acks(l, &l->h[i]);
}

static void conn_lost(wr_loop *l, const char *why, int polite) {
  if (!l->conn) return;
  wr_warn("broker connection lost: %s; unacked jobs go back to the queue", why);
  atomic_store(&l->hs.ready, 0);
  if (polite)
    wr_conn_close(l->conn);
  else
    amqp_destroy_connection(l->conn);
  l->conn = NULL;
  l->sock = -1;
  l->gen++;
  drop_pending(l);
  for (size_t i = 0; i < l->nh; i++) {
    l->h[i].st.dropped += l->h[i].n_done;
    l->h[i].n_done = 0; /* their acks cannot be sent now: redelivered */
  }
  /* Their originals were never acked: the broker requeues them. A copy
   * that did reach a retry queue or the DLQ makes a duplicate, not a
   * loss. */
  while (l->conf_head) {
    wr_job *j = l->conf_head;
    l->conf_head = j->next;
    release(l, j);
  }
  l->conf_tail = NULL;
  l->returns = 0;
  /* Jitter keeps a fleet of workers from reconnecting in lock-step. */
  double jitter = 0.8 + 0.4 * ((double)rand() / RAND_MAX);
  l->next_connect = wr_now() + l->backoff * jitter;
  if (!l->draining)
    wr_info("reconnecting in %.1f s", l->backoff * jitter);
  l->backoff *= 2;
  if (l->backoff > l->cfg->reconnect_max) l->backoff = l->cfg->reconnect_max;
}

/* The job's message id for logs; "" when it has none. */
static amqp_bytes_t msg_id(const wr_job *job) {
  const amqp_basic_properties_t *p = &job->env.message.properties;
  amqp_bytes_t none = {0, ""};
  return (p->_flags & AMQP_BASIC_MESSAGE_ID_FLAG) ? p->message_id : none;
}

static double rand01(void) {
  return (double)rand() / ((double)RAND_MAX + 1.0);
}

/*
 * Publish the copy that carries a failed job on: to its retry queue, or
 * to its dead-letter exchange with the reason. The original stays unacked
 * until the broker confirms the copy (confirmed()), so a crash in between
 * duplicates the job at worst and never loses it.
 */
static void republish(wr_handler_rt *h, wr_job *job, wr_outcome o,
                      const char *err) {
  wr_loop *l = h->loop;
  const wr_handler_cfg *hc = h->cfg;
  wr_decision d = wr_retry_decide(&hc->retry, &job->meta, o, rand01());
  int64_t now = wr_unix_ms();
  uint32_t crashes = o == WR_OUT_CRASHED ? job->meta.crashes + 1 : 0;
  amqp_table_entry_t add[12];
  size_t n = 0;
  add[n++] = wr_entry_int(WR_H_FIRST_FAILURE,
                          job->meta.first_failure ? job->meta.first_failure : now);
  add[n++] = wr_entry_int(WR_H_LAST_FAILURE, now);
  add[n++] = wr_entry_str(WR_H_LAST_ERROR, err);
  add[n++] = wr_entry_int(WR_H_CRASHES, crashes);
  amqp_basic_properties_t pr = job->env.message.properties;
  char exchange[300], rk[300], expiration[32];
  if (d.dead) {
    add[n++] = wr_entry_str(WR_H_REASON, d.reason);
    add[n++] = wr_entry_str(WR_H_HANDLER, hc->name);
    add[n++] = wr_entry_int(WR_H_ATTEMPTS, job->meta.attempt);
    add[n++] = wr_entry_str(WR_H_HOST, l->host);
    add[n++] = wr_entry_str(WR_H_QUEUE, hc->queue);
    /* A dead letter waits for an operator: it must not expire. */
    pr._flags &= ~AMQP_BASIC_EXPIRATION_FLAG;
    wr_retry_dlx_name(hc->queue, exchange, sizeof exchange);
    snprintf(rk, sizeof rk, "%.*s", (int)job->env.routing_key.len,
             (const char *)job->env.routing_key.bytes);
  } else {
    add[n++] = wr_entry_int(WR_H_ATTEMPT, (int64_t)job->meta.attempt + 1);
    snprintf(expiration, sizeof expiration, "%lld", (long long)d.delay_ms);
    pr._flags |= AMQP_BASIC_EXPIRATION_FLAG;
    pr.expiration = amqp_cstring_bytes(expiration);
    exchange[0] = '\0';
    wr_retry_queue_name(hc->queue, hc->retry.backoff[d.step], rk, sizeof rk);
  }
  static amqp_table_entry_t store[WR_HDR_MAX_ENTRIES + 16];
  const amqp_table_t *orig =
      (pr._flags & AMQP_BASIC_HEADERS_FLAG) ? &job->env.message.properties.headers : NULL;
  pr.headers = wr_retry_headers(orig, store, sizeof store / sizeof *store, add, n);
  pr._flags |= AMQP_BASIC_HEADERS_FLAG;
  int rc = amqp_basic_publish(l->conn, l->pub_ch, amqp_cstring_bytes(exchange),
                              amqp_cstring_bytes(rk), 1, 0, &pr,
                              job->env.message.body);
  if (rc != AMQP_STATUS_OK) {
    release(l, job);
    conn_lost(l, amqp_error_string2(rc), 0);
    return;
  }
  amqp_bytes_t id = msg_id(job);
  if (d.dead)
    wr_warn("handler %s: job %.*s dead-lettered to %s after attempt %u: %s (%s)",
            hc->name, (int)id.len, (const char *)id.bytes, exchange,
            job->meta.attempt, d.reason, err);
  else
    wr_info("handler %s: job %.*s attempt %u failed (%s); retry in %.1f s",
            hc->name, (int)id.len, (const char *)id.bytes, job->meta.attempt,
            err, (double)d.delay_ms / 1000.0);
  job->confirm_seq = ++l->pub_seq;
  job->dead = (uint8_t)d.dead;
  job->next = NULL;
  if (l->conf_tail)
    l->conf_tail->next = job;
  else
    l->conf_head = job;
  l->conf_tail = job;
}

/* The broker confirmed (ok) or refused publishes up to `tag`. */
static void confirmed(wr_loop *l, uint64_t tag, int multiple, int ok) {
  wr_job *prev = NULL, *j = l->conf_head;
  while (j && l->conn) {
    wr_job *next = j->next;
    if (j->confirm_seq == tag || (multiple && j->confirm_seq < tag)) {
      if (prev)
        prev->next = next;
      else
        l->conf_head = next;
      if (l->conf_tail == j) l->conf_tail = prev;
      /* A basic.return comes just before the confirm of the same publish. */
      int good = ok && l->returns == 0;
      if (l->returns) l->returns--;
      wr_handler_rt *h = &l->h[j->handler];
      int rc;
      if (good) {
        if (j->dead) h->st.dead++; else h->st.retried++;
        rc = amqp_basic_ack(l->conn, h->ch, j->env.delivery_tag, 0);
      } else {
        h->st.republish_failed++;
        wr_error("handler %s: the broker refused the %s copy of job tag %llu; "
                 "the original goes back to the queue", h->cfg->name,
                 j->dead ? "dead-letter" : "retry",
                 (unsigned long long)j->env.delivery_tag);
        rc = amqp_basic_nack(l->conn, h->ch, j->env.delivery_tag, 0, 1);
      }
      release(l, j);
      if (rc != AMQP_STATUS_OK) {
        conn_lost(l, amqp_error_string2(rc), 0);
        return;
      }
    } else {
      prev = j;
    }
    j = next;
  }
}

/* A job is over for this attempt: ack it, or hand it to the policy. */
static void finish(wr_handler_rt *h, wr_job *job, int acked, wr_outcome o,
                   const char *err) {
  wr_loop *l = h->loop;
  if (job->gen != l->gen || !l->conn) {
    h->st.dropped++;
    wr_debug("handler %s: result for a delivery of a closed connection; the "
             "broker redelivers it", h->cfg->name);
    release(l, job);
    return;
  }
  if (!acked) {
    republish(h, job, o, err);
    return;
  }
  /* Acks are coalesced (flush_acks): sent when a batch is due, after at
   * most ACK_DELAY_S, or as soon as the loop has nothing else to do. */
  if (h->n_done == 0) h->done_since = wr_now();
  h->done[h->n_done++] = job->env.delivery_tag;
  release(l, job);
  if (h->n_done >= h->ack_batch) flush_acks(l, h);
}

static void on_done(void *ctx, wr_pool *p, wr_job *job, int result,
                    const char *err, size_t err_len) {
  wr_handler_rt *h = ctx;
  (void)p;
  if (result == WARREN_ACK) {
    h->st.acked++;
    finish(h, job, 1, WR_OUT_FAILED, NULL);
    return;
  }
  /* Only failures carry a text: formatting it for every ack cost 14% of
   * the supervisor's instructions per job (bench/run callgrind). */
  char text[WR_IPC_MAX_ERROR + 64];
  if (err_len)
    snprintf(text, sizeof text, "%.*s", (int)err_len, err);
  else
    snprintf(text, sizeof text, "handler returned %s",
             result == WARREN_REJECT ? "reject" : "retry");
  if (result == WARREN_REJECT) {
    h->st.rejected++;
    finish(h, job, 0, WR_OUT_REJECTED, text);
  } else {
    h->st.failed++;
    finish(h, job, 0, WR_OUT_FAILED, text);
  }
}

static void on_lost(void *ctx, wr_pool *p, wr_job *job, const char *why,
                    int timed_out) {
  wr_handler_rt *h = ctx;
  (void)p;
  char err[192];
  if (timed_out) {
    h->st.timeouts++;
    snprintf(err, sizeof err, "job %s", why);
  } else {
    h->st.lost++;
    snprintf(err, sizeof err, "worker %s", why);
  }
  finish(h, job, 0, timed_out ? WR_OUT_TIMEOUT : WR_OUT_CRASHED, err);
}

/* Queued to a worker that died first: back to the front of the line,
 * no attempt spent. */
static void on_unstarted(void *ctx, wr_pool *p, wr_job *job) {
  wr_handler_rt *h = ctx;
  (void)p;
  job->next = h->pend_head;
  h->pend_head = job;
  if (!h->pend_tail) h->pend_tail = job;
  h->pending++;
}

static const wr_pool_events pool_events = {on_done, on_lost, on_unstarted};

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
  job->handler = (uint16_t)(ch - 1);
  job->confirm_seq = 0;
  job->next = NULL;
  h->st.delivered++;
  /* The seam where every check before running a job goes (signatures
   * will): a job that fails one never reaches a handler. */
  char why[160];
  if (wr_retry_meta(&job->env.message.properties, &job->meta, why, sizeof why) != 0) {
    h->st.malformed++;
    finish(h, job, 0, WR_OUT_MALFORMED, why);
    return;
  }
  if (h->pend_tail)
    h->pend_tail->next = job;
  else
    h->pend_head = job;
  h->pend_tail = job;
  h->pending++;
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
    case AMQP_BASIC_ACK_METHOD: {
      amqp_basic_ack_t *a = f.payload.method.decoded;
      if (f.channel == l->pub_ch) confirmed(l, a->delivery_tag, a->multiple, 1);
      return l->conn ? 0 : -1;
    }
    case AMQP_BASIC_NACK_METHOD: {
      amqp_basic_nack_t *a = f.payload.method.decoded;
      if (f.channel == l->pub_ch) confirmed(l, a->delivery_tag, a->multiple, 0);
      return l->conn ? 0 : -1;
    }
    case AMQP_BASIC_RETURN_METHOD: {
      amqp_basic_return_t *ret = f.payload.method.decoded;
      wr_error("a republished job came back unroutable: %u %.*s",
               ret->reply_code, (int)ret->reply_text.len,
               (const char *)ret->reply_text.bytes);
      if (f.channel == l->pub_ch) l->returns++;
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
  if (rc == WARREN_OK) rc = wr_conn_declare(c, l->cfg, l->pub_ch, err, sizeof err);
  if (rc == WARREN_OK) {
    amqp_confirm_select(c, l->pub_ch);
    rc = wr_conn_reply(c, amqp_get_rpc_reply(c), "confirm.select", err, sizeof err);
  }
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
  l->pub_seq = 0;
  l->gen++;
  atomic_store(&l->hs.ready, 1);
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
  atomic_store(&l->hs.ready, 0);
  l->drain_deadline = wr_now() + l->cfg->shutdown_grace;
  int busy = 0;
  for (size_t i = 0; i < l->nh; i++) busy += l->h[i].pool.busy;
  wr_info("stopping: cancelling consumers; %d job(s) running get %.0f s",
          busy, l->cfg->shutdown_grace);
  for (size_t i = 0; i < l->nh; i++) wr_pool_drain(&l->h[i].pool);
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

/* Bounded copy of a short string (AMQP shortstr: at most 255 bytes). */
static const char *cstr(char buf[256], amqp_bytes_t b) {
  size_t n = b.len < 255 ? b.len : 255;
  if (n) memcpy(buf, b.bytes, n);
  buf[n] = '\0';
  return buf;
}

/* isolation = false: run the waiting jobs here, one after the other. A
 * crash or hang of the handler takes the supervisor with it; the broker
 * then redelivers its unacked jobs. */
static void run_inline(wr_loop *l, wr_handler_rt *h) {
  static struct warren_headers hdrs;
  static unsigned char blob[256 * 1024];
  char s[5][256];
  while (h->pend_head && l->conn && !l->draining) {
    wr_job *job = h->pend_head;
    h->pend_head = job->next;
    if (!h->pend_head) h->pend_tail = NULL;
    h->pending--;
    const amqp_basic_properties_t *p = &job->env.message.properties;
    amqp_bytes_t none = {0, ""};
    amqp_table_t empty = {0, NULL};
    const amqp_table_t *t = (p->_flags & AMQP_BASIC_HEADERS_FLAG) ? &p->headers : &empty;
    if (wr_hdr_encoded_size(t) > sizeof blob) t = &empty;
    wr_hdr_encode(t, blob);
    wr_hdr_parse(&hdrs, blob, wr_hdr_encoded_size(t));
    warren_message m = {
        .size = sizeof m,
        .body = job->env.message.body.bytes,
        .body_len = job->env.message.body.len,
        .exchange = cstr(s[0], job->env.exchange),
        .routing_key = cstr(s[1], job->env.routing_key),
        .message_id = cstr(s[2], (p->_flags & AMQP_BASIC_MESSAGE_ID_FLAG) ? p->message_id : none),
        .correlation_id = cstr(s[3], (p->_flags & AMQP_BASIC_CORRELATION_ID_FLAG) ? p->correlation_id : none),
        .content_type = cstr(s[4], (p->_flags & AMQP_BASIC_CONTENT_TYPE_FLAG) ? p->content_type : none),
        .headers = &hdrs,
        .attempt = job->meta.attempt,
        .redelivered = job->env.redelivered ? 1u : 0u,
        .delivery_tag = job->env.delivery_tag,
    };
    const char *err;
    size_t err_len;
    int32_t r = wr_worker_run(h->cfg->name, h->plugin.def, h->inline_state, &m,
                              &err, &err_len);
    on_done(h, NULL, job, r, err, err_len);
  }
}

static void dispatch(wr_loop *l) {
  if (l->draining) return; /* prefetched jobs go back on close */
  for (size_t i = 0; i < l->nh; i++) {
    wr_handler_rt *h = &l->h[i];
    if (!h->cfg->isolated) {
      run_inline(l, h);
      continue;
    }
    wr_child *c;
    while (h->pend_head && (c = wr_pool_pick(&h->pool))) {
      wr_job *job = h->pend_head;
      h->pend_head = job->next;
      if (!h->pend_head) h->pend_tail = NULL;
      h->pending--;
      wr_pool_dispatch(&h->pool, c, job);
    }
    wr_pool_flush(&h->pool);
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
    atomic_store_explicit(&l->hs.tick_ms, (long long)(now * 1000), memory_order_relaxed);
    if (!l->conn && !l->draining && now >= l->next_connect) try_connect(l);
    if (l->draining &&
        ((busy_total(l) == 0 && (!l->conf_head || !l->conn)) ||
         now >= l->drain_deadline))
      break;
    int ms = IDLE_WAKE_MS;
    if (!l->conn && !l->draining) ms = min_ms(ms, l->next_connect, now);
    if (l->draining) ms = min_ms(ms, l->drain_deadline, now);
    for (size_t i = 0; i < l->nh; i++)
      ms = min_ms(ms, wr_pool_tick(&l->h[i].pool, now), now);
    if (l->conn && (amqp_data_in_buffer(l->conn) || amqp_frames_enqueued(l->conn)))
      ms = 0;
    for (size_t i = 0; i < l->nh && ms > 0; i++)
      if (l->h[i].n_done) flush_acks(l, &l->h[i]); /* about to sleep */
    for (size_t i = 0; i < l->nh && ms > 0; i++)
      if (wr_pool_sleep(&l->h[i].pool)) ms = 0; /* results already in */
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
    for (size_t i = 0; i < l->nh; i++) wr_pool_collect(&l->h[i].pool);
    if (l->conn && (amqp_ready || now >= l->next_service ||
                    amqp_data_in_buffer(l->conn) || amqp_frames_enqueued(l->conn))) {
      read_amqp(l);
      l->next_service = now + IDLE_WAKE_MS / 1000.0;
    }
    dispatch(l);
    for (size_t i = 0; i < l->nh; i++)
      if (l->h[i].n_done && now - l->h[i].done_since >= ACK_DELAY_S)
        flush_acks(l, &l->h[i]);
  }
  flush_all_acks(l);
  wr_info("stopping workers");
  for (size_t i = 0; i < l->nh; i++) wr_pool_stop(&l->h[i].pool, WORKER_STOP_S);
  if (l->conn) {
    atomic_store(&l->hs.ready, 0);
    drop_pending(l);
    flush_all_acks(l); /* of jobs the stop just settled */
    wr_conn_close(l->conn);
    l->conn = NULL;
  }
  for (size_t i = 0; i < l->nh; i++) {
    const wr_handler_stats *s = &l->h[i].st;
    wr_info("handler %s: delivered %lu, acked %lu, failed %lu, rejected %lu, "
            "crashed %lu, timed out %lu, malformed %lu; sent to retry %lu, "
            "dead-lettered %lu; left to the broker at disconnect %lu",
            l->h[i].cfg->name, s->delivered, s->acked, s->failed, s->rejected,
            s->lost, s->timeouts, s->malformed, s->retried, s->dead, s->dropped);
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
  gethostname(l->host, sizeof l->host - 1);
  l->pub_ch = (amqp_channel_t)(l->nh + 1);
  int rc = WARREN_OK;
  for (size_t i = 0; i < l->nh && rc == WARREN_OK; i++) {
    wr_handler_rt *h = &l->h[i];
    h->cfg = &cfg->handlers[i];
    h->loop = l;
    h->ch = (amqp_channel_t)(i + 1);
    snprintf(h->tag, sizeof h->tag, "warren.%s.%s.%d", h->cfg->name, l->host,
             (int)getpid());
    char why[512];
    rc = wr_plugin_load(h->cfg->plugin, &h->plugin, why, sizeof why);
    if (rc != WARREN_OK)
      snprintf(err, errlen, "%s:%d: handler %s: %s", cfg->path, h->cfg->line,
               h->cfg->name, why);
    else if (!h->cfg->isolated) {
      if (wr_worker_init(h->cfg->name, h->plugin.def, h->cfg->settings,
                         &h->inline_state) != 0) {
        snprintf(err, errlen, "handler %s: init() failed", h->cfg->name);
        rc = WARREN_PLUGIN_INIT;
      } else {
        h->inline_ready = 1;
      }
    } else
      rc = wr_pool_init(&h->pool, h->cfg->name, h->plugin.def, h->cfg->settings,
                        h->cfg->concurrency, cfg->restart_min, cfg->restart_max,
                        &pool_events, h);
    h->pool.timeout = h->cfg->timeout;
    h->done = calloc((size_t)(h->cfg->prefetch + h->cfg->concurrency) + 1, sizeof *h->done);
    if (!h->done) rc = WARREN_NOMEM;
    /* prefetch 1 acks at once; larger prefetch acks in runs of half of it,
     * so the broker always has room to send the next ones. */
    h->ack_batch = (size_t)(h->cfg->prefetch / 2 > 1 ? h->cfg->prefetch / 2 : 1);
    /* Enough queued per worker to hide the round trip, never more than
     * its share of the prefetch (so prefetch 1 stays strictly one). */
    int depth = h->cfg->prefetch / h->cfg->concurrency;
    h->pool.depth = depth < 1 ? 1 : depth > WR_POOL_MAX_DEPTH ? WR_POOL_MAX_DEPTH : depth;
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
  atomic_store(&l->hs.tick_ms, wr_health_now_ms());
  if (rc == WARREN_OK && cfg->health_port > 0) {
    /* Started after the workers are forked, and serving only atomics. */
    l->health = wr_health_start(cfg->health_listen, cfg->health_port, &l->hs,
                                err, errlen);
    if (!l->health) rc = WARREN_IO;
    else wr_info("health endpoints on http://%s:%d/healthz and /readyz",
                 cfg->health_listen, cfg->health_port);
  }
  if (rc != WARREN_OK) {
    wr_loop_destroy(l);
    return rc;
  }
  *out = l;
  return WARREN_OK;
}

int wr_loop_ready(wr_loop *l) {
  return atomic_load(&l->hs.ready);
}

const wr_handler_stats *wr_loop_stats(const wr_loop *l, size_t handler) {
  return handler < l->nh ? &l->h[handler].st : NULL;
}

void wr_loop_destroy(wr_loop *l) {
  if (!l) return;
  wr_health_stop(l->health);
  for (size_t i = 0; l->h && i < l->nh; i++) {
    wr_handler_rt *h = &l->h[i];
    if (h->pool.children) {
      wr_pool_stop(&h->pool, WORKER_STOP_S);
      wr_pool_free(&h->pool);
    }
    if (h->inline_ready && h->plugin.def->shutdown)
      h->plugin.def->shutdown(h->inline_state);
    wr_plugin_unload(&h->plugin);
    free(h->done);
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
