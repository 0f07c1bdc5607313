#include "events.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <amqp_framing.h>

#include "../config/cfg.h"
#include "breaker.h"
#include "clock.h"
#include "conn.h"
#include "field.h"
#include "live.h"
#include "log.h"
#include "metrics.h"
#include "utf8.h"
#include "retry.h"
#include "warren/status.h"

#define CH 1
#define RECONNECT_MIN_S 0.5
#define RECONNECT_MAX_S 30.0
#define WINDOW_IDS 64 /* ids of jobs whose attempt ended in the window */
#define SENDER_NICE 10
#define STREAM_IDLE_S 0.25 /* the sender's turn for a stream nobody reads */

/* A job's state between its callbacks, per supervisor slot. */
typedef struct slot_state {
  uint64_t job;     /* the job (wr_job.id) the rest is about: settled and
                       republished may have been skipped (no listener) */
  uint8_t running;  /* started and not yet settled */
  uint8_t outcome;  /* its attempt's outcome + 1 */
  double duration;  /* seconds it ran; < 0: never started */
  int64_t delay_ms; /* the retry copy's delay */
  char reason[WR_EV_REASON_MAX];
  char error[WR_EV_ERROR_MAX];
} slot_state;

/* Events of one routing key waiting to be sent together: the text of a
 * JSON array being written, "[e1,e2" (the ']' is added when sent). */
#define GROUP_CAP (64u << 10)
typedef struct group {
  char *buf; /* GROUP_CAP bytes, from the first event on */
  size_t len;
  int n;
} group;

struct wr_events {
  const wr_cfg *cfg;
  const wr_events_cfg *ec;
  int exchange;              /* events.enabled: published to the exchange */
  wr_live *live;             /* the stream (GET /api/events); NULL: none */
  const atomic_int *streams; /* its clients; NULL: none */
  wr_ev_source src;
  char host[256];
  /* The ring: the loop thread writes at tail, the sender reads at head. */
  wr_ev_rec *ring;
  size_t mask;
  _Atomic size_t head, tail;
  size_t head_seen; /* the loop thread's last read of head */
  const wr_job *slots;
  slot_state *slot;
  size_t nslots;
  _Atomic uint64_t published, messages, dropped_full, dropped_broker;
  _Atomic uint64_t active, processed;
  atomic_int connected;
  atomic_int sockfd; /* the sender's socket, -1: none (shut down to stop) */
  /* The sender thread. */
  pthread_t thread;
  int started;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int stopping;
  double stop_by;
  /* Sender-only state. */
  amqp_connection_state_t conn;
  double connect_at, backoff;
  group *groups; /* handler-major: nh x WR_EV_JOB_KINDS */
  char **heads;  /* the same, each its events' head (format_head) */
  size_t *hlens;
  size_t nwin;   /* events in the window */
  double win_at; /* when its first event was taken */
  char ids[WINDOW_IDS][WR_EV_ID_MAX + 1];
  size_t nids;
  char *buf;
  size_t buflen;
};

/* ---- formatting (pure) ---------------------------------------------- */

static const char *const names[WR_EV_KINDS] = {
    "job.received",      "job.started",    "job.succeeded",
    "job.retried",       "job.failed",     "job.revoked",
    "job.dead_lettered", "worker.online",  "worker.heartbeat",
    "worker.offline",    "breaker.opened", "breaker.half_open",
    "breaker.closed"};

const char *wr_events_name(int kind) {
  return kind >= 0 && kind < WR_EV_KINDS ? names[kind] : "unknown";
}

const char *wr_events_outcome(int outcome) {
  /* The words of /metrics and the dead letters' reasons. */
  return outcome >= 1 && outcome - 1 <= WR_OUT_REVOKED
             ? wr_metrics_outcome((wr_outcome)(outcome - 1))
             : NULL;
}

char *wr_events_routing_key(const char *handler, int kind, char *buf,
                            size_t len) {
  if (kind >= WR_EV_JOB_KINDS && kind < WR_EV_BREAKER_OPENED)
    snprintf(buf, len, "%s", wr_events_name(kind));
  else
    snprintf(buf, len, "%s.%s", handler, wr_events_name(kind));
  return buf;
}

/*
 * A job event is printed with cJSON from nodes on the stack whose keys
 * and values point at the record and the config (cJSON_IsReference,
 * cJSON_StringIsConst): cJSON writes the text, and no node or string is
 * allocated per event (heap nodes cost three times as much, per event
 * on a busy worker). Numbers cJSON would print with "%1.15g" (time,
 * durations) are raw texts formatted here. The fields that are the same
 * for every event of a kind and handler (the head) are printed once, at
 * start: an event is its head and its own fields, each printed by cJSON,
 * joined where the second object's '{' becomes a ','.
 */
typedef struct stack_obj {
  cJSON root;
  cJSON f[16];
  int n;
} stack_obj;

static void field(stack_obj *o, const char *key, int type, const char *s,
                  double d) {
  cJSON *it = &o->f[o->n];
  memset(it, 0, sizeof *it);
  it->string = (char *)key;
  it->valuestring = (char *)s;
  it->valuedouble = d;
  it->valueint = (int)d;
  it->type =
      type | cJSON_StringIsConst |
      (type == cJSON_String || type == cJSON_Raw ? cJSON_IsReference : 0);
  if (o->n) {
    o->f[o->n - 1].next = it;
    it->prev = &o->f[o->n - 1];
  } else {
    o->root.child = it;
  }
  o->root.child->prev = it; /* cJSON: the first's prev is the last */
  o->n++;
}

/* v as decimal, with `digits` digits of frac after a point (none when
 * digits is 0), into out (32 bytes). printf's and cJSON's own number
 * printing (which reads its output back with sscanf) were half the cost
 * of an event. */
static const char *decimal(char *out, uint64_t v, uint64_t frac, int digits) {
  char tmp[32];
  int n = 0;
  for (int i = 0; i < digits; i++, frac /= 10)
    tmp[n++] = (char)('0' + frac % 10);
  if (digits) tmp[n++] = '.';
  do {
    tmp[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  for (int i = 0; i < n; i++) out[i] = tmp[n - 1 - i];
  out[n] = '\0';
  return out;
}

static void obj_init(stack_obj *o) {
  memset(&o->root, 0, sizeof o->root);
  o->root.type = cJSON_Object;
  o->n = 0;
}

int wr_events_format_head(int kind, size_t handler, const wr_ev_source *src,
                          char *buf, size_t len) {
  stack_obj o;
  obj_init(&o);
  const wr_handler_cfg *h = &src->cfg->handlers[handler];
  char pid[32];
  field(&o, "event", cJSON_String, wr_events_name(kind), 0);
  field(&o, "hostname", cJSON_String, src->hostname, 0);
  field(&o, "pid", cJSON_Raw, decimal(pid, (uint64_t)src->pid, 0, 0), 0);
  field(&o, "handler", cJSON_String, h->name, 0);
  field(&o, "queue", cJSON_String, h->queue, 0);
  if (len > INT32_MAX || !cJSON_PrintPreallocated(&o.root, buf, (int)len, 0))
    return -1;
  size_t n = strlen(buf);
  buf[--n] = '\0'; /* the closing brace: the job's own fields follow */
  return (int)n;
}

int wr_events_format_job(const wr_ev_rec *r, const char *head, size_t hlen,
                         char *buf, size_t len) {
  if (hlen + 3 > len || len > INT32_MAX) return -1;
  memcpy(buf, head, hlen);
  stack_obj o;
  obj_init(&o);
  char time[32], att[32], dur[32], delay[32], hex[33];
  char id[WR_EV_ID_MAX + 1];
  uint64_t ms = r->time_ms > 0 ? (uint64_t)r->time_ms : 0;
  field(&o, "time", cJSON_Raw, decimal(time, ms / 1000, ms % 1000, 3), 0);
  if (r->has_id) {
    memcpy(id, r->id, r->id_len);
    id[r->id_len] = '\0';
    field(&o, "job_id", cJSON_String, id, 0);
  } else {
    field(&o, "job_id", cJSON_NULL, NULL, 0);
  }
  field(&o, "attempt", cJSON_Raw, decimal(att, r->attempt, 0, 0), 0);
  if (r->kind != WR_EV_RECEIVED && r->kind != WR_EV_STARTED &&
      r->kind != WR_EV_DEAD_LETTERED && r->duration >= 0) {
    uint64_t us = (uint64_t)(r->duration * 1e6 + 0.5);
    field(&o, "duration", cJSON_Raw,
          decimal(dur, us / 1000000, us % 1000000, 6), 0);
  }
  const char *out = wr_events_outcome(r->outcome);
  if (out && r->kind != WR_EV_RECEIVED && r->kind != WR_EV_STARTED)
    field(&o, "outcome", cJSON_String, out, 0);
  if (r->kind == WR_EV_RETRIED) {
    uint64_t d = r->delay_ms > 0 ? (uint64_t)r->delay_ms : 0;
    field(&o, "delay", cJSON_Raw, decimal(delay, d / 1000, d % 1000, 3), 0);
  }
  if (r->texts && r->error[0]) field(&o, "error", cJSON_String, r->error, 0);
  if (r->texts && r->reason[0]) field(&o, "reason", cJSON_String, r->reason, 0);
  if (r->traced) {
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) {
      hex[2 * i] = digits[r->trace_id[i] >> 4];
      hex[2 * i + 1] = digits[r->trace_id[i] & 15];
    }
    hex[32] = '\0';
    field(&o, "trace_id", cJSON_String, hex, 0);
  }
  char *rest = buf + hlen;
  if (!cJSON_PrintPreallocated(&o.root, rest, (int)(len - hlen), 0)) return -1;
  rest[0] = ','; /* its '{' joins these fields to the head's */
  return (int)(hlen + strlen(rest));
}

static void add_raw(cJSON *o, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void add_raw(cJSON *o, const char *key, const char *fmt, ...) {
  char v[64];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(v, sizeof v, fmt, ap);
  va_end(ap);
  cJSON_AddRawToObject(o, key, v);
}

static cJSON *common(int kind, int64_t time_ms, const wr_ev_source *src) {
  cJSON *o = cJSON_CreateObject();
  if (!o) return NULL;
  cJSON_AddStringToObject(o, "event", wr_events_name(kind));
  add_raw(o, "time", "%lld.%03d", (long long)(time_ms / 1000),
          (int)(time_ms % 1000));
  cJSON_AddStringToObject(o, "hostname", src->hostname);
  cJSON_AddNumberToObject(o, "pid", (double)src->pid);
  return o;
}

cJSON *wr_events_worker_json(int kind, int64_t time_ms, const wr_ev_source *src,
                             const wr_ev_worker *w) {
  cJSON *o = common(kind, time_ms, src);
  if (!o) return NULL;
  add_raw(o, "freq", "%g", w->freq);
  cJSON_AddNumberToObject(o, "active", (double)w->active);
  cJSON_AddNumberToObject(o, "processed", (double)w->processed);
  cJSON_AddNumberToObject(o, "dropped", (double)w->dropped);
  if (kind == WR_EV_ONLINE) {
    cJSON *hs = cJSON_AddArrayToObject(o, "handlers");
    for (size_t i = 0; hs && i < src->cfg->n_handlers; i++)
      cJSON_AddItemToArray(hs, cJSON_CreateString(src->cfg->handlers[i].name));
  }
  return o;
}

/* ---- the loop thread: records into the ring -------------------------- */

/* Counters only the loop thread writes: no locked read-modify-write. */
cJSON *wr_events_breaker_json(const wr_ev_rec *r, const wr_ev_source *src) {
  cJSON *o = common(r->kind, r->time_ms, src);
  if (!o) return NULL;
  const wr_handler_cfg *h = &src->cfg->handlers[r->handler];
  static const char *const states[] = {"open", "half_open", "closed"};
  cJSON_AddStringToObject(o, "handler", h->name);
  cJSON_AddStringToObject(o, "queue", h->queue);
  cJSON_AddStringToObject(o, "state", states[r->kind - WR_EV_BREAKER_OPENED]);
  cJSON_AddStringToObject(o, "reason", r->reason);
  cJSON_AddStringToObject(o, "message", r->error);
  /* A measure only where one was held against a bound. */
  if (!strcmp(r->reason, "failure_rate") || !strcmp(r->reason, "slow") ||
      !strcmp(r->reason, "trial_slow")) {
    cJSON_AddNumberToObject(o, "value", r->duration);
    cJSON_AddNumberToObject(o, "bound", r->bound);
  }
  cJSON_AddNumberToObject(o, "opened", (double)r->delay_ms);
  return o;
}

static void bump(_Atomic uint64_t *a, int d) {
  atomic_store_explicit(
      a, atomic_load_explicit(a, memory_order_relaxed) + (uint64_t)(int64_t)d,
      memory_order_relaxed);
}

/* Whether anyone wants events: the exchange, or a client of the stream.
 * With the exchange off and nobody streaming, this load is all a
 * callback costs. */
static int wanted(const wr_events *ev) {
  return ev->exchange ||
         (ev->streams &&
          atomic_load_explicit(ev->streams, memory_order_relaxed));
}

static size_t slot_of(const wr_events *ev, const wr_job *job) {
  size_t i = (size_t)(job - ev->slots);
  return i < ev->nslots ? i : 0;
}

/* A free record at the ring's tail, or NULL (counted) when it is full. */
static wr_ev_rec *take(wr_events *ev) {
  size_t t = atomic_load_explicit(&ev->tail, memory_order_relaxed);
  /* head is read again only when the ring looks full: its cache line is
   * the sender's, and a read per event would fetch it every time. */
  if (t - ev->head_seen > ev->mask)
    ev->head_seen = atomic_load_explicit(&ev->head, memory_order_acquire);
  if (t - ev->head_seen > ev->mask) {
    bump(&ev->dropped_full, 1);
    return NULL;
  }
  return &ev->ring[t & ev->mask];
}

static void put(wr_events *ev) {
  size_t t = atomic_load_explicit(&ev->tail, memory_order_relaxed);
  atomic_store_explicit(&ev->tail, t + 1, memory_order_release);
}

/* The parts of a record every job event has. */
static wr_ev_rec *job_rec(wr_events *ev, int kind, size_t h,
                          const wr_job *job) {
  wr_ev_rec *r = take(ev);
  if (!r) return NULL;
  r->time_ms = wr_unix_ms();
  r->kind = (uint8_t)kind;
  r->handler = (uint16_t)h;
  r->attempt = job->meta.attempt;
  r->outcome = 0;
  r->duration = -1;
  r->delay_ms = 0;
  r->texts = 0;
  r->traced = job->trace.on;
  if (r->traced) memcpy(r->trace_id, job->trace.trace_id, 16);
  const amqp_basic_properties_t *p = &job->env.message.properties;
  r->has_id = (p->_flags & AMQP_BASIC_MESSAGE_ID_FLAG) != 0;
  r->id_len = 0;
  if (r->has_id) {
    r->id_len = (uint8_t)wr_utf8_copy(r->id, p->message_id.bytes,
                                      p->message_id.len, WR_EV_ID_MAX);
  }
  return r;
}

static void copy_text(char *dst, size_t cap, const char *s) {
  size_t n = s ? wr_utf8_copy(dst, s, strlen(s), cap - 1) : 0;
  dst[n] = '\0';
}

/* The attempt a delivery is, from its warren-attempt header: at
 * `received` the intake checks have not read the headers yet. */
static uint32_t header_attempt(const wr_job *job) {
  int64_t v;
  if (!wr_field_header_int(&job->env.message.properties, WR_H_ATTEMPT, &v))
    return 1;
  return v >= 1 && v <= WR_RETRY_MAX_COUNT ? (uint32_t)v : 1;
}

static void on_received(void *ctx, size_t h, const wr_job *job) {
  wr_events *ev = ctx;
  if (!wanted(ev)) return;
  slot_state *st = &ev->slot[slot_of(ev, job)];
  if (st->running) { /* its last delivery was dropped unsettled */
    st->running = 0;
    bump(&ev->active, -1);
  }
  st->duration = -1;
  wr_ev_rec *r = job_rec(ev, WR_EV_RECEIVED, h, job);
  if (!r) return;
  r->attempt = header_attempt(job);
  put(ev);
}

static void on_started(void *ctx, size_t h, const wr_job *job) {
  wr_events *ev = ctx;
  if (!wanted(ev)) return;
  slot_state *st = &ev->slot[slot_of(ev, job)];
  if (!st->running) {
    st->running = 1;
    bump(&ev->active, 1);
  }
  if (job_rec(ev, WR_EV_STARTED, h, job)) put(ev);
}

static void on_settled(void *ctx, size_t h, const wr_job *job, wr_outcome o,
                       const char *err) {
  wr_events *ev = ctx;
  if (!wanted(ev)) return;
  slot_state *st = &ev->slot[slot_of(ev, job)];
  bump(&ev->processed, 1);
  if (st->running) {
    st->running = 0;
    bump(&ev->active, -1);
  }
  /* From the job, not from `started`: that may have been skipped while
   * nobody listened (-1 when it never started). */
  st->duration = wr_job_ran(job, wr_now());
  st->job = job->id;
  st->outcome = (uint8_t)(o + 1);
  if (o == WR_OUT_ACKED) {
    wr_ev_rec *r = job_rec(ev, WR_EV_SUCCEEDED, h, job);
    if (!r) return;
    r->outcome = st->outcome;
    r->duration = st->duration;
    put(ev);
    return;
  }
  /* What follows depends on the copy (republished, confirmed). */
  copy_text(st->error, sizeof st->error, err);
  st->reason[0] = '\0';
}

static void on_republished(void *ctx, size_t h, const wr_job *job, int dead,
                           const char *reason) {
  wr_events *ev = ctx;
  (void)h;
  if (!wanted(ev)) return;
  slot_state *st = &ev->slot[slot_of(ev, job)];
  if (st->job != job->id) return; /* its settling was not seen */
  st->delay_ms = dead ? 0 : job->retry_delay_ms;
  copy_text(st->reason, sizeof st->reason, dead ? reason : NULL);
}

/* The copy is safe with the broker: the attempt's end is told. A refused
 * copy tells nothing: the original goes back to the queue and is received
 * again. */
static void on_confirmed(void *ctx, size_t h, const wr_job *job, int ok) {
  wr_events *ev = ctx;
  if (!ok || !wanted(ev)) return;
  slot_state *st = &ev->slot[slot_of(ev, job)];
  /* Its settling came before anyone listened: its end is not known. */
  if (st->job != job->id) return;
  int kind = !job->dead                          ? WR_EV_RETRIED
             : st->outcome == WR_OUT_REVOKED + 1 ? WR_EV_REVOKED
                                                 : WR_EV_FAILED;
  wr_ev_rec *r = job_rec(ev, kind, h, job);
  if (r) {
    r->outcome = st->outcome;
    r->duration = st->duration;
    r->delay_ms = st->delay_ms;
    memcpy(r->error, st->error, sizeof r->error);
    memcpy(r->reason, st->reason, sizeof r->reason);
    r->texts = 1;
    put(ev);
  }
  if (!job->dead) return;
  r = job_rec(ev, WR_EV_DEAD_LETTERED, h, job);
  if (!r) return;
  r->outcome = st->outcome;
  r->error[0] = '\0';
  memcpy(r->reason, st->reason, sizeof r->reason);
  r->texts = 1;
  put(ev);
}

void wr_events_breaker(wr_events *ev, size_t h, const wr_breaker *b,
                       const char *text) {
  if (!ev || !wanted(ev)) return;
  wr_ev_rec *r = take(ev);
  if (!r) return;
  r->time_ms = wr_unix_ms();
  r->kind =
      (uint8_t)(b->state == WR_BREAKER_OPEN     ? WR_EV_BREAKER_OPENED
                : b->state == WR_BREAKER_CLOSED ? WR_EV_BREAKER_CLOSED
                                                : WR_EV_BREAKER_HALF_OPEN);
  r->handler = (uint16_t)h;
  r->attempt = 0;
  r->outcome = 0;
  r->traced = 0;
  r->has_id = 0;
  r->id_len = 0;
  r->texts = 1;
  r->duration = b->value;
  r->bound = b->bound;
  r->delay_ms = (int64_t)b->opened;
  copy_text(r->reason, sizeof r->reason, wr_breaker_why_name(b->why));
  copy_text(r->error, sizeof r->error, text);
  put(ev);
}

const wr_job_events wr_events_events = {
    .received = on_received,
    .started = on_started,
    .settled = on_settled,
    .republished = on_republished,
    .confirmed = on_confirmed,
};

/* ---- the sender thread ------------------------------------------------ */

static void lost(wr_events *ev, const char *why) {
  if (ev->conn) {
    atomic_store(&ev->sockfd, -1);
    amqp_destroy_connection(ev->conn);
    ev->conn = NULL;
  }
  atomic_store(&ev->connected, 0);
  wr_warn("events: %s; events are dropped until the connection is back", why);
  ev->connect_at = wr_now() + ev->backoff;
  ev->backoff =
      ev->backoff * 2 > RECONNECT_MAX_S ? RECONNECT_MAX_S : ev->backoff * 2;
}

/* Publish body (blen bytes) to routing key rk; n events in it. 0, or -1:
 * lost. */
static int publish(wr_events *ev, const char *rk, const char *body, size_t blen,
                   size_t n) {
  if (!ev->conn) {
    atomic_fetch_add(&ev->dropped_broker, n);
    return -1;
  }
  amqp_basic_properties_t pr = {0};
  pr._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG;
  pr.content_type = amqp_cstring_bytes("application/json");
  pr.delivery_mode = 1; /* transient */
  int rc = amqp_basic_publish(
      ev->conn, CH, amqp_cstring_bytes(ev->ec->exchange),
      amqp_cstring_bytes(rk), 0, 0, &pr, (amqp_bytes_t){blen, (void *)body});
  if (rc != AMQP_STATUS_OK) {
    atomic_fetch_add(&ev->dropped_broker, n);
    char why[200];
    snprintf(why, sizeof why, "publishing failed: %s", amqp_error_string2(rc));
    lost(ev, why);
    return -1;
  }
  atomic_fetch_add(&ev->published, n);
  atomic_fetch_add(&ev->messages, 1);
  return 0;
}

/* Print a (an array of n events) and send it to rk; a is deleted. */
static void send_json(wr_events *ev, const char *rk, cJSON *a, size_t n) {
  if (!ev->conn) {
    atomic_fetch_add(&ev->dropped_broker, n);
    cJSON_Delete(a);
    return;
  }
  if (cJSON_PrintPreallocated(a, ev->buf, (int)ev->buflen, 0)) {
    publish(ev, rk, ev->buf, strlen(ev->buf), n);
  } else {
    char *s = cJSON_PrintUnformatted(a);
    if (s)
      publish(ev, rk, s, strlen(s), n);
    else
      atomic_fetch_add(&ev->dropped_broker, n);
    free(s);
  }
  cJSON_Delete(a);
}

static void worker_event(wr_events *ev, int kind) {
  wr_ev_worker w = {
      ev->ec->heartbeat, atomic_load(&ev->active), atomic_load(&ev->processed),
      atomic_load(&ev->dropped_full) + atomic_load(&ev->dropped_broker)};
  cJSON *a = cJSON_CreateArray();
  cJSON *o = wr_events_worker_json(kind, wr_unix_ms(), &ev->src, &w);
  if (!a || !o) {
    cJSON_Delete(a);
    cJSON_Delete(o);
    return;
  }
  cJSON_AddItemToArray(a, o);
  char rk[64];
  send_json(ev, wr_events_routing_key(NULL, kind, rk, sizeof rk), a, 1);
}

/* Send every group: kind by kind, so that one attempt's events leave in
 * their order (received, started, its end, dead_lettered). */
static void flush(wr_events *ev) {
  size_t nh = ev->cfg->n_handlers;
  for (int k = 0; k < WR_EV_JOB_KINDS; k++)
    for (size_t h = 0; h < nh; h++) {
      group *g = &ev->groups[h * WR_EV_JOB_KINDS + (size_t)k];
      if (!g->n) continue;
      char rk[300];
      wr_events_routing_key(ev->cfg->handlers[h].name, k, rk, sizeof rk);
      g->buf[g->len++] = ']';
      publish(ev, rk, g->buf, g->len, (size_t)g->n);
      g->len = 0;
      g->n = 0;
    }
  ev->nwin = 0;
  ev->nids = 0;
}

static int in_window(const wr_events *ev, const wr_ev_rec *r) {
  for (size_t i = 0; i < ev->nids; i++)
    if (strlen(ev->ids[i]) == r->id_len &&
        !memcmp(ev->ids[i], r->id, r->id_len))
      return 1;
  return 0;
}

/* Whether a client of the stream is connected. */
static int streaming(const wr_events *ev) {
  return ev->streams && atomic_load_explicit(ev->streams, memory_order_relaxed);
}

/* Event r, formatted as text[0..len), to the clients of the stream. */
static void stream(wr_events *ev, const wr_ev_rec *r, const char *text,
                   size_t len) {
  if (streaming(ev))
    wr_live_publish(ev->live, r->handler, r->has_id ? r->id : NULL, r->id_len,
                    text, len);
}

/* r for the stream alone (the exchange is off, or not connected). */
static void stream_only(wr_events *ev, const wr_ev_rec *r) {
  if (!streaming(ev)) return;
  size_t gi = (size_t)r->handler * WR_EV_JOB_KINDS + r->kind;
  int k = wr_events_format_job(r, ev->heads[gi], ev->hlens[gi], ev->buf,
                               ev->buflen);
  if (k >= 0) stream(ev, r, ev->buf, (size_t)k);
}

/* Put r in the window. A job received again whose earlier attempt ended
 * in this window (a short retry) sends the window first: per kind, its
 * new `received` would otherwise leave before the old attempt's end. */
static void add(wr_events *ev, const wr_ev_rec *r) {
  if (r->kind == WR_EV_RECEIVED && r->has_id && ev->nids && in_window(ev, r))
    flush(ev);
  group *g = &ev->groups[(size_t)r->handler * WR_EV_JOB_KINDS + r->kind];
  if (!g->buf && !(g->buf = malloc(GROUP_CAP))) {
    atomic_fetch_add(&ev->dropped_broker, 1);
    return;
  }
  /* Printed where it goes: after '[' or after the last event and ','; the
   * room for the closing ']' is kept. A full buffer sends the window. */
  for (;;) {
    size_t at = g->n ? g->len + 1 : 1;
    size_t gi = (size_t)r->handler * WR_EV_JOB_KINDS + r->kind;
    int k = wr_events_format_job(r, ev->heads[gi], ev->hlens[gi], g->buf + at,
                                 GROUP_CAP - at - 1);
    if (k >= 0) {
      g->buf[at - 1] = g->n ? ',' : '[';
      g->len = at + (size_t)k;
      stream(ev, r, g->buf + at, (size_t)k);
      break;
    }
    if (!g->n) { /* cannot be: an event is a few KiB at most */
      atomic_fetch_add(&ev->dropped_broker, 1);
      return;
    }
    flush(ev);
  }
  g->n++;
  if (!ev->nwin++) ev->win_at = wr_now();
  if (r->kind >= WR_EV_RETRIED && r->kind != WR_EV_DEAD_LETTERED && r->has_id) {
    if (ev->nids == WINDOW_IDS) {
      flush(ev);
      return;
    }
    memcpy(ev->ids[ev->nids], r->id, r->id_len);
    ev->ids[ev->nids++][r->id_len] = '\0';
  }
  if (g->n >= ev->ec->batch) flush(ev);
}

/* A breaker event: after the job events that led to it, in a message of
 * its own, and to the stream. */
static void breaker_event(wr_events *ev, const wr_ev_rec *r) {
  cJSON *o = wr_events_breaker_json(r, &ev->src);
  if (!o) {
    atomic_fetch_add(&ev->dropped_broker, 1);
    return;
  }
  if (streaming(ev)) {
    char *text = cJSON_PrintUnformatted(o);
    if (text)
      wr_live_publish(ev->live, r->handler, NULL, 0, text, strlen(text));
    free(text);
  }
  if (!ev->exchange) {
    cJSON_Delete(o);
    return;
  }
  cJSON *a = cJSON_CreateArray();
  if (!a) {
    cJSON_Delete(o);
    atomic_fetch_add(&ev->dropped_broker, 1);
    return;
  }
  cJSON_AddItemToArray(a, o);
  if (ev->nwin) flush(ev);
  char rk[300];
  wr_events_routing_key(ev->cfg->handlers[r->handler].name, r->kind, rk,
                        sizeof rk);
  send_json(ev, rk, a, 1);
}

/* Take what the loop thread queued; returns how many. */
static size_t drain(wr_events *ev) {
  size_t h = atomic_load_explicit(&ev->head, memory_order_relaxed);
  size_t t = atomic_load_explicit(&ev->tail, memory_order_acquire);
  size_t n = t - h;
  for (size_t i = h; i != t; i++) {
    const wr_ev_rec *r = &ev->ring[i & ev->mask];
    if (r->kind >= WR_EV_BREAKER_OPENED) {
      breaker_event(ev, r);
      continue;
    }
    if (ev->conn) {
      add(ev, r); /* and to the stream */
      continue;
    }
    if (ev->exchange) atomic_fetch_add(&ev->dropped_broker, 1);
    stream_only(ev, r);
  }
  atomic_store_explicit(&ev->head, t, memory_order_release);
  return n;
}

static void try_connect(wr_events *ev) {
  char err[512];
  amqp_connection_state_t c;
  /* Every node, in a random order (conn.h), as the worker does. */
  size_t node;
  int rc = wr_conn_open_any(&ev->cfg->broker, &c, &node, err, sizeof err);
  if (rc == WARREN_OK) rc = wr_conn_channel(c, CH, 0, err, sizeof err);
  if (rc == WARREN_OK) {
    amqp_exchange_declare(c, CH, amqp_cstring_bytes(ev->ec->exchange),
                          amqp_cstring_bytes("topic"), 0, 1, 0, 0,
                          amqp_empty_table);
    char what[300];
    snprintf(what, sizeof what, "declaring exchange '%s'", ev->ec->exchange);
    rc = wr_conn_reply(c, amqp_get_rpc_reply(c), what, err, sizeof err);
  }
  if (rc != WARREN_OK) {
    if (c) amqp_destroy_connection(c);
    ev->conn = NULL;
    char why[700];
    snprintf(why, sizeof why, "cannot connect: %s", err);
    lost(ev, why);
    return;
  }
  ev->conn = c;
  ev->backoff = RECONNECT_MIN_S;
  atomic_store(&ev->sockfd, amqp_get_sockfd(c));
  atomic_store(&ev->connected, 1);
  wr_conn_params p = wr_conn_at(&ev->cfg->broker, node);
  wr_info("events: publishing to exchange %s on %s:%d", ev->ec->exchange,
          p.host, p.port);
  worker_event(ev, WR_EV_ONLINE);
}

/* Read what the broker sent (heartbeats, a close) without waiting. */
static void poll_broker(wr_events *ev) {
  while (ev->conn) {
    amqp_frame_t f;
    struct timeval tv = {0, 0};
    int rc = amqp_simple_wait_frame_noblock(ev->conn, &f, &tv);
    if (rc == AMQP_STATUS_TIMEOUT) break;
    if (rc != AMQP_STATUS_OK) {
      char why[200];
      snprintf(why, sizeof why, "connection lost: %s", amqp_error_string2(rc));
      lost(ev, why);
      return;
    }
    if (f.frame_type == AMQP_FRAME_METHOD &&
        (f.payload.method.id == AMQP_CHANNEL_CLOSE_METHOD ||
         f.payload.method.id == AMQP_CONNECTION_CLOSE_METHOD)) {
      char why[300];
      wr_conn_close_reason(&f.payload.method, why, sizeof why);
      lost(ev, why);
      return;
    }
    amqp_maybe_release_buffers(ev->conn);
  }
}

static struct timespec abs_mono(double t) {
  struct timespec ts;
  ts.tv_sec = (time_t)t;
  ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
  return ts;
}

static void *run(void *arg) {
  wr_events *ev = arg;
  /* Below the loop and the workers: on a busy host the events wait, not
   * the jobs (Linux: nice is per thread). */
  setpriority(PRIO_PROCESS, (id_t)gettid(), SENDER_NICE);
  double tick = ev->ec->flush_interval / 4;
  double next_beat = wr_now() + ev->ec->heartbeat;
  for (;;) {
    pthread_mutex_lock(&ev->mu);
    if (!ev->stopping) {
      /* For the stream alone, while nobody streams, a slower turn: a
       * newcomer's first events wait for it at most STREAM_IDLE_S. */
      double t = ev->exchange || streaming(ev) ? tick : STREAM_IDLE_S;
      struct timespec ts = abs_mono(wr_now() + t);
      pthread_cond_timedwait(&ev->cv, &ev->mu, &ts);
    }
    int stopping = ev->stopping;
    pthread_mutex_unlock(&ev->mu);
    double now = wr_now();
    if (ev->exchange && !ev->conn && now >= ev->connect_at) try_connect(ev);
    drain(ev);
    if (ev->nwin && (stopping || now - ev->win_at >= ev->ec->flush_interval))
      flush(ev);
    if (streaming(ev)) wr_live_tick(ev->live, now);
    if (now >= next_beat) {
      if (ev->conn) worker_event(ev, WR_EV_HEARTBEAT);
      next_beat = now + ev->ec->heartbeat;
    }
    poll_broker(ev);
    if (stopping) break;
  }
  drain(ev);
  flush(ev);
  if (ev->conn) {
    worker_event(ev, WR_EV_OFFLINE);
    atomic_store(&ev->sockfd, -1);
    wr_conn_close(ev->conn);
    ev->conn = NULL;
  }
  return NULL;
}

/* ---- life ------------------------------------------------------------- */

static void destroy(wr_events *ev) {
  for (size_t i = 0; ev->groups && i < ev->cfg->n_handlers * WR_EV_JOB_KINDS;
       i++) {
    free(ev->groups[i].buf);
    if (ev->heads) free(ev->heads[i]);
  }
  free(ev->heads);
  free(ev->hlens);
  free(ev->groups);
  free(ev->ring);
  free(ev->slot);
  free(ev->buf);
  pthread_cond_destroy(&ev->cv);
  pthread_mutex_destroy(&ev->mu);
  free(ev);
}

int wr_events_create(const wr_cfg *cfg, const char *hostname,
                     const wr_job *slots, size_t nslots, wr_live *live,
                     wr_events **out, char *err, size_t errlen) {
  *out = NULL;
  wr_events *ev = calloc(1, sizeof *ev);
  if (!ev) return WARREN_NOMEM;
  ev->cfg = cfg;
  ev->ec = &cfg->events;
  ev->exchange = cfg->events.enabled;
  ev->live = live;
  ev->streams = live ? wr_live_listeners(live) : NULL;
  snprintf(ev->host, sizeof ev->host, "%s", hostname);
  ev->src = (wr_ev_source){ev->host, (long)getpid(), cfg};
  size_t cap = 16;
  while (cap < (size_t)ev->ec->buffer) cap <<= 1;
  ev->mask = cap - 1;
  ev->slots = slots;
  ev->nslots = nslots;
  ev->backoff = RECONNECT_MIN_S;
  atomic_store(&ev->sockfd, -1);
  ev->buflen = (size_t)ev->ec->batch * 1024 + 4096;
  pthread_mutex_init(&ev->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&ev->cv, &ca);
  pthread_condattr_destroy(&ca);
  /* The ring's pages are touched only as far as it fills. */
  ev->ring = calloc(cap, sizeof *ev->ring);
  ev->slot = calloc(nslots ? nslots : 1, sizeof *ev->slot);
  ev->groups = calloc(cfg->n_handlers * WR_EV_JOB_KINDS, sizeof *ev->groups);
  ev->buf = malloc(ev->buflen);
  size_t ng = cfg->n_handlers * WR_EV_JOB_KINDS;
  ev->heads = calloc(ng, sizeof *ev->heads);
  ev->hlens = calloc(ng, sizeof *ev->hlens);
  int heads_ok = ev->heads && ev->hlens;
  for (size_t i = 0; heads_ok && i < ng; i++) {
    char head[4096];
    int n =
        wr_events_format_head((int)(i % WR_EV_JOB_KINDS), i / WR_EV_JOB_KINDS,
                              &ev->src, head, sizeof head);
    heads_ok = n > 0 && (ev->heads[i] = strdup(head)) != NULL;
    ev->hlens[i] = n > 0 ? (size_t)n : 0;
  }
  if (!ev->ring || !ev->slot || !ev->groups || !ev->buf || !heads_ok) {
    snprintf(err, errlen, "events: no memory for %zu queued events", cap);
    destroy(ev);
    return WARREN_NOMEM;
  }
  /* Every signal blocked: the supervisor's are read by its loop. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int rc = pthread_create(&ev->thread, NULL, run, ev);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (rc != 0) {
    snprintf(err, errlen, "events: cannot start the sender thread: %s",
             strerror(rc));
    destroy(ev);
    return WARREN_NOMEM;
  }
  ev->started = 1;
  *out = ev;
  return WARREN_OK;
}

void wr_events_destroy(wr_events *ev, double flush_s) {
  if (!ev) return;
  pthread_mutex_lock(&ev->mu);
  ev->stopping = 1;
  pthread_mutex_unlock(&ev->mu);
  pthread_cond_signal(&ev->cv);
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_sec += (time_t)flush_s;
  if (pthread_timedjoin_np(ev->thread, NULL, &ts) != 0) {
    /* Stuck writing to a broker that does not read (a memory alarm
     * blocks publishers): cut the socket so the thread gives up. */
    int fd = atomic_load(&ev->sockfd);
    if (fd >= 0) shutdown(fd, SHUT_RDWR);
    pthread_join(ev->thread, NULL);
  }
  uint64_t lost =
      atomic_load(&ev->dropped_full) + atomic_load(&ev->dropped_broker);
  if (lost)
    wr_info(
        "events: %llu events were dropped (ring full %llu, broker "
        "unavailable %llu); %llu sent",
        (unsigned long long)lost,
        (unsigned long long)atomic_load(&ev->dropped_full),
        (unsigned long long)atomic_load(&ev->dropped_broker),
        (unsigned long long)atomic_load(&ev->published));
  destroy(ev);
}

void wr_events_counters_get(wr_events *ev, wr_events_counters *out) {
  out->published = atomic_load(&ev->published);
  out->messages = atomic_load(&ev->messages);
  out->dropped_full = atomic_load(&ev->dropped_full);
  out->dropped_broker = atomic_load(&ev->dropped_broker);
  out->connected = atomic_load(&ev->connected);
}
