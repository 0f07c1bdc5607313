#include "report.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "utf8.h"

/* Every text of these bodies is valid UTF-8: a job id is the publisher's
 * bytes, an error the handler's, a node name the broker's; cJSON copies
 * bytes as they are. A byte outside a valid sequence becomes '?' (as in
 * the lifecycle events, events.h). NULL: null. */
static cJSON *text(const char *v) {
  if (!v) return cJSON_CreateNull();
  size_t n = strlen(v);
  char small[512], *buf = n < sizeof small ? small : malloc(n + 1);
  if (!buf) return NULL;
  buf[wr_utf8_copy(buf, v, n, n)] = '\0';
  cJSON *s = cJSON_CreateString(buf);
  if (buf != small) free(buf);
  return s;
}

static void add_text(cJSON *o, const char *k, const char *v) {
  cJSON_AddItemToObject(o, k, text(v));
}

static char *done(cJSON *o) {
  char *s = o ? cJSON_PrintUnformatted(o) : NULL;
  cJSON_Delete(o);
  return s;
}

/* Unix ms as ISO 8601 UTC, or null for 0 ("never"). */
static cJSON *iso(int64_t ms) {
  if (!ms) return cJSON_CreateNull();
  char buf[96];
  time_t t = (time_t)(ms / 1000);
  struct tm tm;
  gmtime_r(&t, &tm);
  snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
           tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
           tm.tm_sec, (int)(ms % 1000));
  return cJSON_CreateString(buf);
}

/* A count the probes may not know yet: null then. */
static cJSON *known(long long v) {
  return v < 0 ? cJSON_CreateNull() : cJSON_CreateNumber((double)v);
}

static const char *not_ready_text(int why, const wr_snap *s, char *buf,
                                  size_t len) {
  if (why == WR_NR_CHECK && s && s->check_why[0])
    snprintf(buf, len, "%s: %s", wr_report_reason(why), s->check_why);
  else if (why == WR_NR_BLOCKED && s && s->blocked_why[0])
    snprintf(buf, len, "%s: %s", wr_report_reason(why), s->blocked_why);
  else
    snprintf(buf, len, "%s", wr_report_reason(why));
  return buf;
}

static const char *breaker_state(int st) {
  return st == 1 ? "open" : st == 2 ? "half_open" : "closed";
}

char *wr_report_ready(int why, const wr_snap *s) {
  char buf[400];
  cJSON *o = cJSON_CreateObject();
  add_text(o, "status", why == WR_READY ? "ready" : "not ready");
  cJSON_AddBoolToObject(o, "ready", why == WR_READY);
  if (why == WR_READY)
    cJSON_AddNullToObject(o, "reason");
  else
    add_text(o, "reason", not_ready_text(why, s, buf, sizeof buf));
  /* Breakers that are not closed: the worker stays ready (a breaker
   * protects what the handler calls, not this process), and says so. */
  cJSON *bs = NULL;
  for (size_t i = 0; s && i < s->nh; i++) {
    const wr_snap_handler *h = &s->h[i];
    if (!h->breaker.on) continue;
    if (!bs) bs = cJSON_AddArrayToObject(o, "breakers");
    if (!h->breaker.state) continue;
    cJSON *b = cJSON_CreateObject();
    add_text(b, "handler", h->name);
    add_text(b, "state", breaker_state(h->breaker.state));
    add_text(b, "message", h->breaker.message);
    cJSON_AddItemToArray(bs, b);
  }
  return done(o);
}

char *wr_report_alive(int alive, double idle_s) {
  cJSON *o = cJSON_CreateObject();
  add_text(o, "status", alive ? "ok" : "event loop stalled");
  cJSON_AddNumberToObject(o, "loop_idle_seconds", idle_s);
  return done(o);
}

char *wr_report_error(const char *what) {
  cJSON *o = cJSON_CreateObject();
  add_text(o, "error", what);
  return done(o);
}

static cJSON *broker(const wr_snap *s) {
  cJSON *b = cJSON_CreateObject();
  cJSON_AddBoolToObject(b, "connected", s->connected);
  cJSON_AddBoolToObject(b, "blocked", s->blocked);
  if (s->blocked)
    add_text(b, "blocked_reason", s->blocked_why);
  else
    cJSON_AddNullToObject(b, "blocked_reason");
  add_text(b, "host", s->host);
  cJSON_AddNumberToObject(b, "port", s->port);
  add_text(b, "vhost", s->vhost);
  add_text(b, "node", s->node);
  add_text(b, "product", s->product);
  add_text(b, "version", s->version);
  if (s->rtt_ms < 0)
    cJSON_AddNullToObject(b, "latency_ms");
  else
    cJSON_AddNumberToObject(b, "latency_ms", s->rtt_ms);
  cJSON_AddItemToObject(b, "latency_measured_at", iso(s->rtt_at_ms));
  return b;
}

/* Readiness and the self-check, shared by /api/health and the admin
 * route. */
static void readiness(cJSON *o, const wr_snap *s) {
  char buf[400];
  add_text(o, "status", s->ready ? "ok" : "unavailable");
  cJSON_AddBoolToObject(o, "ready", s->ready);
  if (s->ready)
    cJSON_AddNullToObject(o, "reason");
  else
    add_text(o, "reason", not_ready_text(s->not_ready, s, buf, sizeof buf));
  cJSON_AddItemToObject(o, "timestamp", iso(s->at_ms));
  cJSON_AddNumberToObject(o, "uptime_seconds", s->uptime_s);
  cJSON *c = cJSON_AddObjectToObject(o, "check");
  cJSON_AddBoolToObject(c, "ok", s->check_ok);
  if (s->check_ok)
    cJSON_AddNullToObject(c, "reason");
  else
    add_text(c, "reason", s->check_why);
  cJSON_AddItemToObject(c, "at", iso(s->check_at_ms));
}

char *wr_report_health(const wr_snap *s) {
  cJSON *o = cJSON_CreateObject();
  readiness(o, s);
  cJSON_AddItemToObject(o, "broker", broker(s));
  cJSON *qs = cJSON_AddArrayToObject(cJSON_AddObjectToObject(o, "durability"),
                                     "queues");
  for (size_t i = 0; i < s->nh; i++) {
    const wr_snap_handler *h = &s->h[i];
    cJSON *q = cJSON_CreateObject();
    add_text(q, "name", h->queue);
    add_text(q, "handler", h->name);
    add_text(q, "type", h->quorum ? "quorum" : "classic");
    cJSON_AddBoolToObject(q, "durable", h->durable);
    /* Measured on what arrived: null until a job did. */
    if (h->m.persistent + h->m.transient == 0)
      cJSON_AddNullToObject(q, "persistent_delivery");
    else
      cJSON_AddBoolToObject(q, "persistent_delivery", h->m.transient == 0);
    cJSON_AddNumberToObject(q, "persistent_jobs", (double)h->m.persistent);
    cJSON_AddNumberToObject(q, "transient_jobs", (double)h->m.transient);
    cJSON_AddItemToArray(qs, q);
  }
  if (s->events) { /* docs/events.md */
    cJSON *e = cJSON_AddObjectToObject(o, "events");
    cJSON_AddBoolToObject(e, "connected", s->ev.connected);
    cJSON_AddNumberToObject(e, "published", (double)s->ev.published);
    cJSON_AddNumberToObject(e, "messages", (double)s->ev.messages);
    cJSON *d = cJSON_AddObjectToObject(e, "dropped");
    cJSON_AddNumberToObject(d, "queue_full", (double)s->ev.dropped_full);
    cJSON_AddNumberToObject(d, "broker_unavailable",
                            (double)s->ev.dropped_broker);
  }
  return done(o);
}

static cJSON *counts(const wr_snap_handler *h) {
  cJSON *c = cJSON_CreateObject();
  const wr_handler_stats *st = &h->st;
  cJSON_AddNumberToObject(c, "delivered", (double)st->delivered);
  cJSON_AddNumberToObject(c, "acked", (double)st->acked);
  cJSON_AddNumberToObject(c, "failed", (double)st->failed);
  cJSON_AddNumberToObject(c, "retried", (double)st->retried);
  cJSON_AddNumberToObject(c, "rejected", (double)st->rejected);
  cJSON *d = cJSON_AddObjectToObject(c, "dead_lettered");
  cJSON_AddNumberToObject(d, "total", (double)st->dead);
  for (int r = 0; r < WR_DEAD_N; r++)
    cJSON_AddNumberToObject(d, wr_metrics_reasons[r], (double)h->m.dead[r]);
  cJSON_AddNumberToObject(c, "signature_rejected",
                          (double)h->m.dead[WR_DEAD_SIGNATURE]);
  cJSON_AddNumberToObject(c, "crashed", (double)st->lost);
  cJSON_AddNumberToObject(c, "timed_out", (double)st->timeouts);
  cJSON_AddNumberToObject(c, "malformed", (double)st->malformed);
  cJSON_AddNumberToObject(c, "too_large", (double)st->too_large);
  cJSON_AddNumberToObject(c, "copies_refused", (double)st->republish_failed);
  cJSON_AddNumberToObject(c, "redelivered_after_disconnect",
                          (double)st->dropped);
  return c;
}

static cJSON *worker(const wr_snap_worker *w) {
  cJSON *o = cJSON_CreateObject();
  if (w->pid)
    cJSON_AddNumberToObject(o, "pid", w->pid);
  else
    cJSON_AddNullToObject(o, "pid");
  add_text(o, "state", w->state);
  if (w->running) {
    add_text(o, "job_id", w->job);
    cJSON_AddNumberToObject(o, "job_age_seconds", w->job_age_s);
  } else {
    cJSON_AddNullToObject(o, "job_id");
    cJSON_AddNullToObject(o, "job_age_seconds");
  }
  cJSON_AddNumberToObject(o, "uptime_seconds", w->uptime_s);
  cJSON_AddNumberToObject(o, "jobs", (double)w->jobs);
  cJSON_AddNumberToObject(o, "restarts", (double)w->deaths);
  add_text(o, "version", w->version);
  return o;
}

/* A handler's circuit breaker, or null without one. */
static cJSON *breaker(const wr_snap_handler *h) {
  if (!h->breaker.on) return cJSON_CreateNull();
  cJSON *b = cJSON_CreateObject();
  add_text(b, "state", breaker_state(h->breaker.state));
  add_text(b, "reason", h->breaker.reason);
  add_text(b, "message", h->breaker.message);
  cJSON_AddItemToObject(b, "since", iso(h->breaker.since_ms));
  if (h->breaker.state == 1)
    cJSON_AddItemToObject(b, "trials_at", iso(h->breaker.trials_at_ms));
  else
    cJSON_AddNullToObject(b, "trials_at");
  cJSON_AddNumberToObject(b, "trials_passed", h->breaker.trials_passed);
  cJSON_AddNumberToObject(b, "trial_jobs", h->breaker.trial_jobs);
  cJSON_AddNumberToObject(b, "opened", (double)h->breaker.opened);
  cJSON_AddNumberToObject(b, "jobs_given_back", (double)h->breaker.returned);
  return b;
}

static cJSON *handler(const wr_snap_handler *h) {
  cJSON *o = cJSON_CreateObject();
  add_text(o, "name", h->name);
  cJSON_AddBoolToObject(o, "running", h->running);
  add_text(o, "queue", h->queue);
  cJSON_AddNumberToObject(o, "prefetch", h->prefetch);
  cJSON_AddNumberToObject(o, "concurrency", h->concurrency);
  cJSON_AddBoolToObject(o, "isolation", h->isolated);
  cJSON_AddNumberToObject(o, "in_flight", (double)h->in_flight);
  cJSON_AddNumberToObject(o, "running_jobs", (double)h->running_jobs);
  cJSON_AddItemToObject(o, "counts", counts(h));
  cJSON_AddItemToObject(o, "queue_depth", known(h->work.messages));
  cJSON_AddItemToObject(o, "consumers", known(h->work.consumers));
  cJSON_AddItemToObject(o, "depth_measured_at", iso(h->work.at_ms));
  cJSON_AddItemToObject(o, "retrying", known(h->retrying));
  cJSON_AddItemToObject(o, "dead_letter_queue_depth", known(h->dlq.messages));
  if (h->m.last_error_ms) {
    cJSON *e = cJSON_AddObjectToObject(o, "last_error");
    add_text(e, "message", h->m.last_error);
    cJSON_AddItemToObject(e, "at", iso(h->m.last_error_ms));
  } else {
    cJSON_AddNullToObject(o, "last_error");
  }
  cJSON_AddItemToObject(o, "breaker", breaker(h));
  cJSON_AddNumberToObject(o, "restarts", (double)h->restarts);
  add_text(o, "version", h->version);
  cJSON_AddNumberToObject(o, "reloads", (double)h->reloads);
  cJSON_AddNumberToObject(o, "reload_failures", (double)h->reload_failures);
  if (h->tenant_limit) { /* tenant.h */
    cJSON *t = cJSON_AddObjectToObject(o, "tenants");
    cJSON_AddNumberToObject(t, "limit", h->tenant_limit);
    cJSON_AddNumberToObject(t, "active", (double)h->tenants);
    cJSON_AddNumberToObject(t, "held", (double)h->tenant_held);
    cJSON_AddNumberToObject(t, "held_total", (double)h->tenant_held_total);
    cJSON_AddNumberToObject(t, "window_renewals", (double)h->tenant_widened);
    cJSON_AddNumberToObject(t, "untagged", (double)h->tenant_untagged);
  }
  cJSON_AddNumberToObject(o, "workers_alive", h->alive);
  cJSON *ws = cJSON_AddArrayToObject(o, "workers");
  for (int k = 0; k < h->nworkers; k++)
    cJSON_AddItemToArray(ws, worker(&h->w[k]));
  return o;
}

/* Ready messages in every work queue: null while any is not known. */
static long long total_depth(const wr_snap *s) {
  long long d = 0;
  for (size_t i = 0; i < s->nh && d >= 0; i++)
    d = s->h[i].work.messages < 0 ? -1 : d + s->h[i].work.messages;
  return d;
}

static void status(cJSON *o, const wr_snap *s) {
  int running = s->connected && !s->draining;
  long in_flight = 0;
  for (size_t i = 0; i < s->nh; i++) in_flight += s->h[i].in_flight;
  cJSON_AddItemToObject(o, "timestamp", iso(s->at_ms));
  cJSON_AddBoolToObject(o, "running", running);
  cJSON_AddBoolToObject(o, "ready", s->ready);
  cJSON_AddItemToObject(o, "started_at", iso(s->started_ms));
  cJSON_AddNumberToObject(o, "uptime_seconds", s->uptime_s);
  /* The keys monitoring recipes of other task queues read. */
  cJSON_AddBoolToObject(cJSON_AddObjectToObject(o, "scheduler"), "running",
                        running);
  cJSON *tq = cJSON_AddObjectToObject(o, "task_queue");
  cJSON_AddItemToObject(tq, "depth", known(total_depth(s)));
  cJSON_AddNumberToObject(tq, "in_flight", (double)in_flight);
  cJSON *hs = cJSON_AddArrayToObject(o, "handlers");
  for (size_t i = 0; i < s->nh; i++)
    cJSON_AddItemToArray(hs, handler(&s->h[i]));
}

char *wr_report_workers(const wr_snap *s) {
  cJSON *o = cJSON_CreateObject();
  status(o, s);
  return done(o);
}

char *wr_report_queues(const wr_snap *s) {
  cJSON *o = cJSON_CreateObject();
  cJSON *qs = cJSON_AddArrayToObject(o, "queues");
  for (size_t i = 0; i < s->nh; i++) {
    const wr_snap_handler *h = &s->h[i];
    cJSON *q = cJSON_CreateObject();
    add_text(q, "name", h->queue);
    cJSON_AddItemToObject(q, "queued", known(h->work.messages));
    cJSON_AddNumberToObject(q, "started", (double)h->in_flight);
    cJSON_AddNumberToObject(q, "finished", (double)h->st.acked);
    cJSON_AddNumberToObject(q, "failed", (double)h->st.dead);
    cJSON_AddItemToObject(q, "retrying", known(h->retrying));
    cJSON_AddItemToObject(q, "dead_lettered", known(h->dlq.messages));
    add_text(q, "handler", h->name);
    cJSON_AddItemToArray(qs, q);
  }
  return done(o);
}

char *wr_report_admin(const wr_snap *s) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddBoolToObject(o, "success", 1);
  cJSON *d = cJSON_AddObjectToObject(o, "data");
  cJSON_AddItemToObject(d, "timestamp", iso(s->at_ms));
  cJSON *ew = cJSON_AddObjectToObject(d, "executionWorker");
  cJSON_AddBoolToObject(ew, "started", s->connected && !s->draining);
  cJSON_AddItemToObject(ew, "startedAt", iso(s->started_ms));
  add_text(ew, "queueDriver", "rabbitmq");
  cJSON *qd = cJSON_AddObjectToObject(cJSON_AddObjectToObject(ew, "metrics"),
                                      "queueDepths");
  for (size_t i = 0; i < s->nh; i++) {
    const wr_snap_handler *h = &s->h[i];
    cJSON *q = cJSON_AddObjectToObject(qd, h->queue);
    cJSON_AddItemToObject(q, "waiting", known(h->work.messages));
    cJSON_AddNumberToObject(q, "active", (double)h->in_flight);
    cJSON_AddItemToObject(
        q, "total",
        known(h->work.messages < 0 ? -1 : h->work.messages + h->in_flight));
  }
  cJSON *health = cJSON_AddObjectToObject(d, "health");
  readiness(health, s);
  cJSON_AddItemToObject(d, "broker", broker(s));
  status(cJSON_AddObjectToObject(d, "status"), s);
  return done(o);
}

const char *wr_report_reason(int why) {
  switch (why) {
    case WR_READY:
      return "ready";
    case WR_NR_BROKER:
      return "broker unreachable";
    case WR_NR_DRAINING:
      return "draining";
    case WR_NR_COPIES:
      return "retry or dead-letter copies refused by the broker";
    case WR_NR_CHECK:
      return "health check failed";
    case WR_NR_BLOCKED:
      return "broker blocked";
  }
  return "not ready";
}
