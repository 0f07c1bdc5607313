#include "monitor.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <warren/status.h>

#include "clock.h"
#include "events.h"
#include "live.h"
#include "log.h"
#include "spans.h"
#include "sup_private.h"
#include "utf8.h"

#define CRASH_WINDOW_S 60.0
#define CRASH_SAMPLES 64  /* self-checks remembered per handler */
#define PROBE_TIMEOUT_S 2 /* connecting at most; an answer later is none */

enum { Q_WORK, Q_DLQ, Q_RETRY };

/* One queue the probes visit. */
typedef struct probe_q {
  char name[256];
  size_t handler;
  int kind;
  long long messages, consumers; /* -1: not known */
  uint64_t gen;                  /* connection it was probed on */
  int64_t at_ms;
} probe_q;

/* Unplanned worker exits of a handler at each self-check. */
typedef struct crash_ring {
  double t[CRASH_SAMPLES];
  unsigned long deaths[CRASH_SAMPLES];
  int n, next;
} crash_ring;

struct wr_monitor {
  wr_sup *s;
  wr_metrics metrics;
  wr_snap_store store;
  probe_q *q;
  size_t nq, next_q;
  /* The probes' own connection: a channel on the consuming one would cost
   * every delivery (rabbitmq-c recycles every channel's buffers per read),
   * and a missing queue's 404 must not close a channel that matters. */
  amqp_connection_state_t pc;
  int pfd;         /* its socket */
  int pstate;      /* P_* */
  double sent_at;  /* monotonic time the method in flight was sent */
  size_t inflight; /* the queue being probed */
  char node[128], version[64], product[64];
  double rtt_ms;
  int64_t rtt_at_ms;
  double next_probe, next_snap, next_check, next_qlog;
  int failing;
  char why[256];
  int64_t check_at_ms;
  int published_why; /* readiness in the last snapshot, to publish changes */
  uint64_t published_breakers; /* breaker changes in the last snapshot */
  int published_failing;
  crash_ring *crashes; /* one per handler */
  int *nworkers;       /* per handler, for the snapshot's size */
  int64_t started_ms;
  double started;
};

/* ---- probes ----------------------------------------------------------- */

static void prop(const amqp_table_t *t, const char *key, char *out,
                 size_t len) {
  for (int i = 0; t && i < t->num_entries; i++) {
    const amqp_table_entry_t *e = &t->entries[i];
    if (e->key.len == strlen(key) &&
        memcmp(e->key.bytes, key, e->key.len) == 0 &&
        (e->value.kind == AMQP_FIELD_KIND_UTF8 ||
         e->value.kind == AMQP_FIELD_KIND_BYTES)) {
      snprintf(out, len, "%.*s", (int)e->value.value.bytes.len,
               (const char *)e->value.value.bytes.bytes);
      return;
    }
  }
  out[0] = '\0';
}

/* The probes' connection, driven by the loop without ever waiting for
 * the broker: a method is sent, and its answer read when the socket is
 * readable. Only connecting blocks, like the worker's own connect. */
enum { P_NONE, P_OPENING, P_IDLE, P_DECLARING, P_CLOSED_CHANNEL };

static void probe_close(wr_monitor *m) {
  if (m->pc) {
    wr_loop_unwatch(m->s->loop, m->pfd, m);
    amqp_destroy_connection(m->pc);
  }
  m->pc = NULL;
  m->pstate = P_NONE;
}

static void probe_send(wr_monitor *m, amqp_method_number_t id, void *method,
                       int state, double now) {
  if (amqp_send_method(m->pc, 1, id, method) != AMQP_STATUS_OK) {
    probe_close(m);
    return;
  }
  m->pstate = state;
  m->sent_at = now;
}

/* The answer to the probe in flight. */
static void probe_answer(wr_monitor *m, const amqp_queue_declare_ok_t *ok) {
  probe_q *q = &m->q[m->inflight];
  q->gen = m->s->session.gen;
  q->at_ms = wr_unix_ms();
  q->messages = ok ? (long long)ok->message_count : -1;
  q->consumers = ok ? (long long)ok->consumer_count : -1;
  m->rtt_ms = (wr_now() - m->sent_at) * 1000.0;
  m->rtt_at_ms = q->at_ms;
  /* A work queue gone or without a consumer while connected: the broker
   * dropped the consumer without the cancel notification (a queue deleted
   * behind a partition, a node lost). Declare and consume it again, as
   * after a cancel (supervisor.c). */
  wr_sup *s = m->s;
  wr_handler_rt *h = &s->h[q->handler];
  if (q->kind == Q_WORK && q->consumers <= 0 && s->session.conn &&
      !s->draining && !h->resume_at && !(h->breaker && !h->consuming)) {
    wr_warn("handler %s: queue %s %s; declaring and consuming it again",
            h->cfg->name, q->name, ok ? "has no consumer" : "does not exist");
    h->resume_at = wr_now();
  }
}

static void on_probe_io(void *ctx, int fd, short revents) {
  wr_monitor *m = ctx;
  (void)fd, (void)revents;
  while (m->pc) {
    amqp_frame_t f;
    struct timeval zero = {0, 0};
    int rc = amqp_simple_wait_frame_noblock(m->pc, &f, &zero);
    if (rc == AMQP_STATUS_TIMEOUT) break;
    if (rc != AMQP_STATUS_OK) {
      wr_debug("status probe: %s", amqp_error_string2(rc));
      probe_close(m);
      return;
    }
    if (f.frame_type != AMQP_FRAME_METHOD) continue;
    switch (f.payload.method.id) {
      case AMQP_CHANNEL_OPEN_OK_METHOD:
        m->pstate = P_IDLE;
        break;
      case AMQP_QUEUE_DECLARE_OK_METHOD:
        if (m->pstate == P_DECLARING) probe_answer(m, f.payload.method.decoded);
        m->pstate = P_IDLE;
        break;
      case AMQP_CHANNEL_CLOSE_METHOD: { /* a missing queue: 404 */
        char why[300];
        wr_debug("status probe of %s: %s", m->q[m->inflight].name,
                 wr_conn_close_reason(&f.payload.method, why, sizeof why));
        if (m->pstate == P_DECLARING) probe_answer(m, NULL);
        amqp_channel_close_ok_t ok = {0};
        amqp_send_method(m->pc, 1, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
        m->pstate = P_CLOSED_CHANNEL;
        break;
      }
      default: /* connection.close and anything unexpected */
        probe_close(m);
        return;
    }
  }
  if (m->pc) amqp_maybe_release_buffers(m->pc);
}

/* Connect when needed, then send the next step if one is due. */
static void probe_step(wr_monitor *m, double now) {
  char err[512];
  if (!m->pc) {
    /* The node the session uses (a cluster's nodes: session.h). */
    wr_conn_params p = m->s->session.cur;
    p.heartbeat = 0; /* idle between probes; a dead socket fails the next */
    if (p.connect_timeout > PROBE_TIMEOUT_S)
      p.connect_timeout = PROBE_TIMEOUT_S;
    if (wr_conn_open(&p, &m->pc, err, sizeof err) != WARREN_OK) {
      wr_debug("status probe: %s", err);
      return;
    }
    struct timeval tv = {PROBE_TIMEOUT_S, 0}; /* closing it, at the end */
    amqp_set_rpc_timeout(m->pc, &tv);
    m->pfd = amqp_get_sockfd(m->pc);
    if (wr_loop_watch(m->s->loop, m->pfd, POLLIN, on_probe_io, m) != 0) {
      amqp_destroy_connection(m->pc);
      m->pc = NULL;
      return;
    }
    const amqp_table_t *t = amqp_get_server_properties(m->pc);
    prop(t, "cluster_name", m->node, sizeof m->node);
    prop(t, "version", m->version, sizeof m->version);
    prop(t, "product", m->product, sizeof m->product);
    m->pstate = P_CLOSED_CHANNEL;
  }
  if (m->pstate == P_CLOSED_CHANNEL) {
    amqp_channel_open_t open = {0};
    probe_send(m, AMQP_CHANNEL_OPEN_METHOD, &open, P_OPENING, now);
  } else if (m->pstate == P_IDLE) {
    m->inflight = m->next_q;
    m->next_q = (m->next_q + 1) % m->nq;
    amqp_queue_declare_t d = {0};
    d.queue = amqp_cstring_bytes(m->q[m->inflight].name);
    d.passive = 1;
    probe_send(m, AMQP_QUEUE_DECLARE_METHOD, &d, P_DECLARING, now);
  }
}

/* ---- the snapshot ------------------------------------------------------ */

static const char *state_name(wr_child_state st) {
  static const char *const names[] = {"down", "starting", "idle", "busy",
                                      "exiting"};
  return (unsigned)st < sizeof names / sizeof *names ? names[st] : "unknown";
}

/* Handler h's circuit breaker, with its times as unix ms. */
static void snap_breaker(const wr_handler_rt *h, wr_snap_handler *o,
                         double now) {
  const wr_breaker *b = h->breaker;
  if (!b) return;
  int64_t unix_now = wr_unix_ms();
  o->breaker.on = 1;
  o->breaker.state = b->state;
  o->breaker.reason = wr_breaker_why_name(b->why);
  wr_breaker_describe(b, o->breaker.message, sizeof o->breaker.message);
  o->breaker.since_ms = unix_now - (int64_t)((now - b->since) * 1000);
  if (b->state == WR_BREAKER_OPEN)
    o->breaker.trials_at_ms =
        unix_now + (int64_t)((wr_breaker_due(b) - now) * 1000);
  o->breaker.opened = b->opened;
  o->breaker.returned = b->returned;
  o->breaker.trials_passed = b->passed;
  o->breaker.trial_jobs = b->cfg->trial_jobs;
}

/* Changes of every breaker so far: a change is published at once. */
static uint64_t breaker_changes(const wr_sup *s) {
  uint64_t n = 0;
  for (size_t i = 0; i < s->breakers.n; i++)
    if (s->h[i].breaker) n += s->h[i].breaker->changes;
  return n;
}

static void snap_handler(wr_monitor *m, size_t i, wr_snap_handler *o,
                         double now) {
  wr_sup *s = m->s;
  wr_handler_rt *h = &s->h[i];
  o->name = h->cfg->name;
  o->queue = h->cfg->queue;
  o->prefetch = h->cfg->prefetch;
  o->concurrency = h->cfg->concurrency;
  o->isolated = h->cfg->isolated;
  o->quorum = h->cfg->quorum;
  o->durable = h->cfg->durable;
  o->running = s->session.conn && !s->draining;
  o->st = s->stats[i];
  o->m = m->metrics.h[i];
  o->pending = (long)wr_sup_waiting(s, i)->n;
  for (const wr_job *j = wr_ledger_line(&s->ledger, WR_JOB_CONFIRMING, 0)->head;
       j; j = j->next)
    o->awaiting_copy += j->handler == i;
  for (const wr_job *j = wr_ledger_line(&s->ledger, WR_JOB_PARKED, 0)->head; j;
       j = j->next)
    o->awaiting_copy += j->handler == i;
  o->restarts = h->pool.restarts;
  snprintf(o->version, sizeof o->version, "%s", h->plugin.version);
  o->reloads = h->reloads;
  o->reload_failures = h->reload_failures;
  const wr_tenants *t = wr_sup_tenants(s, i);
  if (t) {
    o->tenant_limit = (int)t->limit;
    o->tenant_held = (long)t->held;
    o->tenants = (long)t->n;
    o->tenant_held_total = t->held_total;
    o->tenant_widened = t->widened;
    o->tenant_untagged = t->untagged;
  }
  o->alive = h->cfg->isolated ? 0 : 1;
  for (int k = 0; h->cfg->isolated && k < o->nworkers; k++) {
    wr_pool_worker pw;
    wr_pool_worker_info(&h->pool, k, &pw);
    wr_snap_worker *w = &o->w[k];
    w->pid = (int)pw.pid;
    w->state = state_name(pw.state);
    w->uptime_s = pw.pid ? now - pw.spawned : 0;
    w->jobs = pw.jobs;
    w->deaths = pw.deaths;
    snprintf(w->version, sizeof w->version, "%s", pw.version);
    o->in_workers += pw.queued;
    o->alive += pw.pid > 0 && pw.state != WR_CHILD_EXITING;
    if (pw.job && pw.state == WR_CHILD_BUSY) {
      const amqp_basic_properties_t *p = &pw.job->env.message.properties;
      w->running = 1;
      w->job_age_s = now - pw.job->started;
      o->running_jobs++;
      /* The publisher's bytes: valid UTF-8, cut between characters. */
      if (p->_flags & AMQP_BASIC_MESSAGE_ID_FLAG)
        w->job[wr_utf8_copy(w->job, p->message_id.bytes, p->message_id.len,
                            sizeof w->job - 1)] = '\0';
    }
  }
  snap_breaker(h, o, now);
  o->in_flight = o->pending + o->tenant_held + o->in_workers + o->awaiting_copy;
  o->work = o->dlq = (wr_snap_queue){-1, -1, 0};
  o->retrying = 0;
  for (size_t k = 0; k < m->nq; k++) {
    const probe_q *q = &m->q[k];
    if (q->handler != i) continue;
    wr_snap_queue v = {q->messages, q->consumers, q->at_ms};
    if (!q->at_ms) v.messages = v.consumers = -1;
    if (q->kind == Q_WORK)
      o->work = v;
    else if (q->kind == Q_DLQ)
      o->dlq = v;
    else if (v.messages < 0 || o->retrying < 0)
      o->retrying = -1;
    else
      o->retrying += v.messages;
  }
}

static void snapshot(wr_monitor *m, double now) {
  wr_sup *s = m->s;
  wr_snap *n = wr_snap_alloc(s->nh, m->nworkers);
  if (!n) return; /* the previous one stays */
  n->at_ms = wr_unix_ms();
  n->started_ms = m->started_ms;
  n->uptime_s = now - m->started;
  n->connected = s->session.conn != NULL;
  n->blocked = s->session.blocked;
  snprintf(n->blocked_why, sizeof n->blocked_why, "%s", s->session.blocked_why);
  n->blocked_s = wr_session_blocked_s(&s->session, now);
  n->blocked_n = s->session.blocked_n;
  n->not_ready = atomic_load_explicit(&s->hs.why, memory_order_relaxed);
  n->ready = n->not_ready == WR_READY;
  n->draining = s->draining;
  n->check_ok = !m->failing;
  n->check_at_ms = m->check_at_ms;
  snprintf(n->check_why, sizeof n->check_why, "%s", m->why);
  n->host = s->session.cur.host;
  n->port = s->session.cur.port;
  n->vhost = s->cfg->broker.vhost;
  memcpy(n->node, m->node, sizeof n->node);
  memcpy(n->version, m->version, sizeof n->version);
  memcpy(n->product, m->product, sizeof n->product);
  n->rtt_ms = m->rtt_at_ms ? m->rtt_ms : -1;
  n->rtt_at_ms = m->rtt_at_ms;
  for (size_t i = 0; i < s->nh; i++) snap_handler(m, i, &n->h[i], now);
  if (s->spans) {
    wr_spans_counters c;
    wr_spans_counters_get(s->spans, &c);
    n->tracing = 1;
    n->trace.invalid_context = c.invalid_context;
    n->trace.sampled = c.sampled;
    n->trace.not_sampled = c.not_sampled;
    n->trace.exported = c.exported;
    n->trace.dropped_full = c.dropped_full;
    n->trace.dropped_failed = c.dropped_failed;
    n->trace.export_errors = c.export_errors;
    n->trace.queued = c.queued;
  }
  if (s->live) {
    wr_live_counters c;
    wr_live_counters_get(s->live, &c);
    n->stream = 1;
    n->st.clients = c.clients;
    n->st.accepted = c.accepted;
    n->st.refused = c.refused;
    n->st.dropped = c.dropped;
    n->st.sent = c.sent;
  }
  if (s->events && s->cfg->events.enabled) {
    wr_events_counters c;
    wr_events_counters_get(s->events, &c);
    n->events = 1;
    n->ev.published = c.published;
    n->ev.messages = c.messages;
    n->ev.dropped_full = c.dropped_full;
    n->ev.dropped_broker = c.dropped_broker;
    n->ev.connected = c.connected;
  }
  m->published_why = n->not_ready;
  m->published_breakers = breaker_changes(s);
  m->published_failing = m->failing;
  wr_snap_publish(&m->store, n);
}

/* ---- the self-check and the queue log ------------------------------------ */

static unsigned long deaths_of(const wr_pool *p) {
  unsigned long d = 0;
  for (int k = 0; k < p->n; k++) {
    wr_pool_worker pw;
    wr_pool_worker_info(p, k, &pw);
    d += pw.deaths;
  }
  return d;
}

/* Unplanned exits within the last CRASH_WINDOW_S; sample: remember this
 * count (once per check interval, so the ring spans the window). */
static unsigned long crashes_lately(crash_ring *r, double now,
                                    unsigned long deaths, int sample) {
  if (sample) {
    r->t[r->next] = now;
    r->deaths[r->next] = deaths;
    r->next = (r->next + 1) % CRASH_SAMPLES;
    if (r->n < CRASH_SAMPLES) r->n++;
  }
  unsigned long oldest = deaths;
  for (int k = 0; k < r->n; k++)
    if (now - r->t[k] <= CRASH_WINDOW_S && r->deaths[k] < oldest)
      oldest = r->deaths[k];
  return deaths - oldest;
}

/* due: the check interval is over (log, and sample the crash counts);
 * otherwise a failing check is only looked at again, so readiness comes
 * back as soon as the cause is gone. */
static void self_check(wr_monitor *m, double now, int due) {
  wr_sup *s = m->s;
  char why[sizeof m->why + 256] = "";
  if (!s->session.conn && !s->draining)
    snprintf(why, sizeof why, "broker %s:%d unreachable", s->session.cur.host,
             s->session.cur.port);
  for (size_t k = 0; !why[0] && s->session.conn && !s->draining && k < m->nq;
       k++) {
    const probe_q *q = &m->q[k];
    /* Only a probe of this connection says anything of its consumers. */
    /* An open breaker cancelled its handler's consumer on purpose. */
    const wr_handler_rt *h = &s->h[q->handler];
    if (q->kind == Q_WORK && q->gen == s->session.gen && q->consumers == 0 &&
        !(h->breaker && (!h->consuming || q->at_ms <= h->consumed_ms)))
      snprintf(why, sizeof why,
               "handler %s: no consumer registered on queue %s",
               s->h[q->handler].cfg->name, q->name);
  }
  for (size_t i = 0; i < s->nh; i++) {
    if (!s->h[i].cfg->isolated) continue;
    unsigned long n =
        crashes_lately(&m->crashes[i], now, deaths_of(&s->h[i].pool), due);
    if (!why[0] && n >= WR_MONITOR_CRASH_LOOP)
      snprintf(why, sizeof why,
               "handler %s: workers crash-looping (%lu unplanned exits in "
               "%.0f s)",
               s->h[i].cfg->name, n, CRASH_WINDOW_S);
  }
  int was = m->failing;
  m->failing = why[0] != 0;
  if (due) m->check_at_ms = wr_unix_ms();
  snprintf(m->why, sizeof m->why, "%.*s", (int)sizeof m->why - 1, why);
  /* The exact words existing alert rules grep for. */
  if (m->failing && due)
    wr_warn("Background worker health check failed: %s", why);
  else if (was && !m->failing)
    wr_info("Background worker health check passed again");
}

static void queue_log(wr_monitor *m) {
  wr_snap *n = wr_snap_acquire(&m->store);
  for (size_t i = 0; n && i < n->nh; i++) {
    const wr_snap_handler *h = &n->h[i];
    wr_info(
        "queue metrics: handler %s queue %s: %lld ready, %lld consumer(s), "
        "%ld in flight, %lld retrying, %lld in %s.dlq; since start "
        "delivered %lu, acked %lu, retried %lu, dead-lettered %lu",
        h->name, h->queue, h->work.messages, h->work.consumers, h->in_flight,
        h->retrying, h->dlq.messages, h->queue, h->st.delivered, h->st.acked,
        h->st.retried, h->st.dead);
  }
  wr_snap_release(&m->store, n);
}

/* ---- the phase ---------------------------------------------------------- */

static double earliest(double a, double b) {
  return !a ? b : !b ? a : a < b ? a : b;
}

static double prepare(void *ctx, double now) {
  wr_monitor *m = ctx;
  wr_sup *s = m->s;
  const wr_cfg *cfg = s->cfg;
  if (!s->session.conn) {
    if (m->pc) probe_close(m); /* the broker is gone for the worker too */
  } else if ((m->pstate == P_OPENING || m->pstate == P_DECLARING) &&
             now - m->sent_at > PROBE_TIMEOUT_S) {
    wr_debug("status probe: no answer in %d s", PROBE_TIMEOUT_S);
    probe_close(m);
  } else if (now >= m->next_probe || m->pstate == P_CLOSED_CHANNEL) {
    probe_step(m, now);
    /* A channel being opened sends the declare once it is open. */
    if (m->pstate != P_OPENING)
      m->next_probe = now + cfg->probe_interval / (double)m->nq;
  }
  if (now >= m->next_check) {
    self_check(m, now, 1);
    m->next_check = now + cfg->check_interval;
  } else if (m->failing) {
    self_check(m, now, 0);
  }
  int why = atomic_load_explicit(&s->hs.why, memory_order_relaxed);
  if (now >= m->next_snap || why != m->published_why ||
      m->failing != m->published_failing ||
      (s->breakers.n && breaker_changes(s) != m->published_breakers)) {
    snapshot(m, now);
    m->next_snap = now + cfg->snapshot_interval;
  }
  if (cfg->queue_log_interval > 0 && now >= m->next_qlog) {
    if (m->next_qlog) queue_log(m); /* not at start: nothing probed yet */
    m->next_qlog = now + cfg->queue_log_interval;
  }
  double due = earliest(m->next_snap, m->next_check);
  if (cfg->queue_log_interval > 0) due = earliest(due, m->next_qlog);
  if (!s->session.conn) return due;
  /* While an answer is awaited, its socket wakes the loop. */
  if (m->pstate == P_OPENING || m->pstate == P_DECLARING)
    return earliest(due, m->sent_at + PROBE_TIMEOUT_S + 0.01);
  return earliest(due, m->next_probe);
}

static const wr_loop_phase phase = {prepare, NULL, NULL};

/* ---- life ------------------------------------------------------------- */

static int add_queue(wr_monitor *m, size_t h, int kind, const char *name) {
  for (size_t k = 0; k < m->nq; k++)
    if (strcmp(m->q[k].name, name) == 0) return 0; /* equal backoff steps */
  probe_q *q = &m->q[m->nq++];
  snprintf(q->name, sizeof q->name, "%s", name);
  q->handler = h;
  q->kind = kind;
  q->messages = q->consumers = -1;
  return 0;
}

int wr_monitor_create(wr_sup *s, wr_monitor **out) {
  wr_monitor *m = calloc(1, sizeof *m);
  if (!m) return WARREN_NOMEM;
  size_t cap = 0;
  for (size_t i = 0; i < s->nh; i++)
    cap += 2 + (size_t)s->cfg->handlers[i].retry.n_backoff;
  m->s = s;
  m->q = calloc(cap, sizeof *m->q);
  m->crashes = calloc(s->nh, sizeof *m->crashes);
  m->nworkers = calloc(s->nh, sizeof *m->nworkers);
  wr_snap_store_init(&m->store);
  if (!m->q || !m->crashes || !m->nworkers ||
      wr_metrics_init(&m->metrics, s->nh, s->ledger.slots, s->ledger.n) !=
          WARREN_OK) {
    wr_monitor_destroy(m);
    return WARREN_NOMEM;
  }
  char name[300];
  for (size_t i = 0; i < s->nh; i++) {
    const wr_handler_cfg *h = &s->cfg->handlers[i];
    m->nworkers[i] = h->isolated ? h->concurrency : 0;
    add_queue(m, i, Q_WORK, h->queue);
    add_queue(m, i, Q_DLQ, wr_name_dlq(h->queue, name, sizeof name));
    for (int k = 0; k < h->retry.n_backoff; k++)
      add_queue(m, i, Q_RETRY,
                wr_name_retry_queue(h->queue, h->retry.backoff[k], name,
                                    sizeof name));
  }
  m->rtt_ms = -1;
  m->started = wr_now();
  m->started_ms = wr_unix_ms();
  m->next_check = m->started + s->cfg->check_interval;
  m->published_why = -1;
  int rc = wr_observe(&s->obs, &wr_metrics_events, &m->metrics) == 0
               ? wr_loop_add_phase(s->loop, &phase, m)
               : WARREN_NOMEM;
  if (rc != WARREN_OK) {
    wr_monitor_destroy(m);
    return rc;
  }
  *out = m;
  return WARREN_OK;
}

void wr_monitor_destroy(wr_monitor *m) {
  if (!m) return;
  if (m->pc) wr_conn_close(m->pc);
  wr_snap_store_free(&m->store);
  wr_metrics_free(&m->metrics);
  free(m->q);
  free(m->crashes);
  free(m->nworkers);
  free(m);
}

wr_snap_store *wr_monitor_store(wr_monitor *m) {
  return &m->store;
}

int wr_monitor_failing(const wr_monitor *m) {
  return m && m->failing;
}
