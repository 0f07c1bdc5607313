#include "monitor.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <warren/status.h>

#include "../config/cfg.h"
#include "clock.h"
#include "events.h"
#include "report.h"
#include "live.h"
#include "log.h"
#include "names.h"
#include "spans.h"

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
  wr_monitor_env env;
  uint64_t gen;           /* the session's connection at the last turn */
  unsigned char *missing; /* per handler: wr_monitor_take_missing */
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
    wr_loop_unwatch(m->env.loop, m->pfd, m);
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
  q->gen = m->gen;
  q->at_ms = wr_unix_ms();
  q->messages = ok ? (long long)ok->message_count : -1;
  q->consumers = ok ? (long long)ok->consumer_count : -1;
  m->rtt_ms = (wr_now() - m->sent_at) * 1000.0;
  m->rtt_at_ms = q->at_ms;
  /* A work queue gone or without a consumer while connected: the
   * supervisor hears of it (wr_monitor_take_missing). */
  if (q->kind == Q_WORK && q->consumers <= 0)
    m->missing[q->handler] = ok ? 1 : 2;
}

int wr_monitor_take_missing(wr_monitor *m, size_t h) {
  int r = m->missing[h];
  m->missing[h] = 0;
  return r;
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
static void probe_step(wr_monitor *m, double now, const wr_monitor_facts *f) {
  char err[512];
  if (!m->pc) {
    /* The node the session uses (a cluster's nodes: session.h). */
    wr_conn_params p = *f->node;
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
    if (wr_loop_watch(m->env.loop, m->pfd, POLLIN, on_probe_io, m) != 0) {
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

/* The monitor's part of handler i's status. */
static void snap_handler(wr_monitor *m, size_t i, wr_snap_handler *o,
                         const wr_monitor_facts *f) {
  const wr_handler_cfg *hc = &m->env.cfg->handlers[i];
  o->name = hc->name;
  o->queue = hc->queue;
  o->prefetch = hc->prefetch;
  o->concurrency = hc->concurrency;
  o->isolated = hc->isolated;
  o->quorum = hc->quorum;
  o->durable = hc->durable;
  o->running = f->connected && !f->draining;
  o->m = m->metrics.h[i];
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

wr_snap *wr_monitor_snapshot(wr_monitor *m, double now,
                             const wr_monitor_facts *f) {
  if (now < m->next_snap && f->why == m->published_why &&
      m->failing == m->published_failing &&
      f->breaker_changes == m->published_breakers)
    return NULL;
  m->next_snap = now + m->env.cfg->snapshot_interval;
  size_t nh = m->env.cfg->n_handlers;
  wr_snap *n = wr_snap_alloc(nh, m->nworkers);
  if (!n) return NULL; /* the previous one stays */
  n->at_ms = wr_unix_ms();
  n->started_ms = m->started_ms;
  n->uptime_s = now - m->started;
  n->connected = f->connected;
  n->not_ready = f->why;
  n->ready = n->not_ready == WR_READY;
  n->draining = f->draining;
  n->check_ok = !m->failing;
  n->check_at_ms = m->check_at_ms;
  snprintf(n->check_why, sizeof n->check_why, "%s", m->why);
  n->host = f->node->host;
  n->port = f->node->port;
  n->vhost = m->env.cfg->broker.vhost;
  memcpy(n->node, m->node, sizeof n->node);
  memcpy(n->version, m->version, sizeof n->version);
  memcpy(n->product, m->product, sizeof n->product);
  n->rtt_ms = m->rtt_at_ms ? m->rtt_ms : -1;
  n->rtt_at_ms = m->rtt_at_ms;
  for (size_t i = 0; i < nh; i++) snap_handler(m, i, &n->h[i], f);
  if (m->env.spans) {
    wr_spans_counters c;
    wr_spans_counters_get(m->env.spans, &c);
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
  if (m->env.live) {
    wr_live_counters c;
    wr_live_counters_get(m->env.live, &c);
    n->stream = 1;
    n->st.clients = c.clients;
    n->st.accepted = c.accepted;
    n->st.refused = c.refused;
    n->st.dropped = c.dropped;
    n->st.sent = c.sent;
  }
  if (m->env.events && m->env.cfg->events.enabled) {
    wr_events_counters c;
    wr_events_counters_get(m->env.events, &c);
    n->events = 1;
    n->ev.published = c.published;
    n->ev.messages = c.messages;
    n->ev.dropped_full = c.dropped_full;
    n->ev.dropped_broker = c.dropped_broker;
    n->ev.connected = c.connected;
  }
  m->published_why = n->not_ready;
  m->published_breakers = f->breaker_changes;
  m->published_failing = m->failing;
  return n;
}

void wr_monitor_publish(wr_monitor *m, wr_snap *n) {
  wr_snap_publish(&m->store, n);
}

/* ---- the self-check and the queue log ------------------------------------ */

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

/* The check interval is over (log, and sample the crash counts), or a
 * failing check is looked at again, so readiness comes back as soon as
 * the cause is gone. */
void wr_monitor_check(wr_monitor *m, double now, const wr_monitor_facts *f,
                      const wr_monitor_handler *hf) {
  const wr_cfg *cfg = m->env.cfg;
  int due = now >= m->next_check;
  if (due) m->next_check = now + cfg->check_interval;
  char why[sizeof m->why + 256] = "";
  if (!f->connected && !f->draining)
    snprintf(why, sizeof why, "broker %s:%d unreachable", f->node->host,
             f->node->port);
  for (size_t k = 0; !why[0] && f->connected && !f->draining && k < m->nq;
       k++) {
    const probe_q *q = &m->q[k];
    /* Only a probe of this connection says anything of its consumers.
     * An open breaker cancelled its handler's consumer on purpose. */
    const wr_monitor_handler *h = &hf[q->handler];
    if (q->kind == Q_WORK && q->gen == f->gen && q->consumers == 0 &&
        !h->consumer_off && q->at_ms > h->consumed_ms)
      snprintf(why, sizeof why,
               "handler %s: no consumer registered on queue %s",
               cfg->handlers[q->handler].name, q->name);
  }
  for (size_t i = 0; i < cfg->n_handlers; i++) {
    if (!cfg->handlers[i].isolated) continue;
    unsigned long n = crashes_lately(&m->crashes[i], now, hf[i].deaths, due);
    if (!why[0] && n >= WR_MONITOR_CRASH_LOOP)
      snprintf(why, sizeof why,
               "handler %s: workers crash-looping (%lu unplanned exits in "
               "%.0f s)",
               cfg->handlers[i].name, n, CRASH_WINDOW_S);
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

int wr_monitor_turn(wr_monitor *m, double now, const wr_monitor_facts *f) {
  const wr_cfg *cfg = m->env.cfg;
  m->gen = f->gen;
  if (!f->connected) {
    if (m->pc) probe_close(m); /* the broker is gone for the worker too */
  } else if ((m->pstate == P_OPENING || m->pstate == P_DECLARING) &&
             now - m->sent_at > PROBE_TIMEOUT_S) {
    wr_debug("status probe: no answer in %d s", PROBE_TIMEOUT_S);
    probe_close(m);
  } else if (now >= m->next_probe || m->pstate == P_CLOSED_CHANNEL) {
    probe_step(m, now, f);
    /* A channel being opened sends the declare once it is open. */
    if (m->pstate != P_OPENING)
      m->next_probe = now + cfg->probe_interval / (double)m->nq;
  }
  if (cfg->queue_log_interval > 0 && now >= m->next_qlog) {
    if (m->next_qlog) queue_log(m); /* not at start: nothing probed yet */
    m->next_qlog = now + cfg->queue_log_interval;
  }
  return now >= m->next_check || m->failing;
}

double wr_monitor_due(const wr_monitor *m, const wr_monitor_facts *f) {
  const wr_cfg *cfg = m->env.cfg;
  double due = earliest(m->next_snap, m->next_check);
  if (cfg->queue_log_interval > 0) due = earliest(due, m->next_qlog);
  if (!f->connected) return due;
  /* While an answer is awaited, its socket wakes the loop. */
  if (m->pstate == P_OPENING || m->pstate == P_DECLARING)
    return earliest(due, m->sent_at + PROBE_TIMEOUT_S + 0.01);
  return earliest(due, m->next_probe);
}

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

int wr_monitor_create(const wr_monitor_env *env, wr_monitor **out) {
  wr_monitor *m = calloc(1, sizeof *m);
  if (!m) return WARREN_NOMEM;
  const wr_cfg *cfg = env->cfg;
  size_t nh = cfg->n_handlers, cap = 0;
  for (size_t i = 0; i < nh; i++)
    cap += 2 + (size_t)cfg->handlers[i].retry.n_backoff;
  m->env = *env;
  m->q = calloc(cap ? cap : 1, sizeof *m->q);
  m->crashes = calloc(nh ? nh : 1, sizeof *m->crashes);
  m->nworkers = calloc(nh ? nh : 1, sizeof *m->nworkers);
  m->missing = calloc(nh ? nh : 1, 1);
  wr_snap_store_init(&m->store);
  if (!m->q || !m->crashes || !m->nworkers || !m->missing ||
      wr_metrics_init(&m->metrics, nh, env->slots, env->nslots) != WARREN_OK) {
    wr_monitor_destroy(m);
    return WARREN_NOMEM;
  }
  char name[300];
  for (size_t i = 0; i < nh; i++) {
    const wr_handler_cfg *h = &cfg->handlers[i];
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
  m->next_check = m->started + cfg->check_interval;
  m->published_why = -1;
  if (wr_observe(env->obs, &wr_metrics_events, &m->metrics) != 0) {
    wr_monitor_destroy(m);
    return WARREN_NOMEM;
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
  free(m->missing);
  free(m);
}

wr_snap_store *wr_monitor_store(wr_monitor *m) {
  return &m->store;
}

int wr_monitor_failing(const wr_monitor *m) {
  return m && m->failing;
}
