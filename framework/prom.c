#include "prom.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A growable page with a hard maximum; a failed write marks it broken. */
typedef struct page {
  char *p;
  size_t len, cap;
  int broken;
} page;

static void put(page *g, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void put(page *g, const char *fmt, ...) {
  for (;;) {
    if (g->broken) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(g->p + g->len, g->cap - g->len, fmt, ap);
    va_end(ap);
    if (n < 0) {
      g->broken = 1;
      return;
    }
    if ((size_t)n < g->cap - g->len) {
      g->len += (size_t)n;
      return;
    }
    size_t cap = g->cap * 2;
    char *p = cap <= WR_PROM_MAX ? realloc(g->p, cap) : NULL;
    if (!p) {
      g->broken = 1;
      return;
    }
    g->p = p;
    g->cap = cap;
  }
}

/* A label value: backslash, double quote and newline escaped. */
static const char *label(const char *v, char *buf, size_t len) {
  size_t o = 0;
  for (; *v && o + 3 < len; v++) {
    if (*v == '\\' || *v == '"' || *v == '\n') {
      buf[o++] = '\\';
      buf[o++] = *v == '\n' ? 'n' : *v;
    } else {
      buf[o++] = *v;
    }
  }
  buf[o] = '\0';
  return buf;
}

static void head(page *g, const char *name, const char *type,
                 const char *help) {
  put(g, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

typedef double (*per_handler)(const wr_snap_handler *h);

/* One sample per handler; NaN values (not known yet) are left out. */
static void each(page *g, const wr_snap *s, const char *name, const char *type,
                 const char *help, per_handler f) {
  char hl[600];
  head(g, name, type, help);
  for (size_t i = 0; i < s->nh; i++) {
    double v = f(&s->h[i]);
    if (isnan(v)) continue;
    put(g, "%s{handler=\"%s\"} %.17g\n", name,
        label(s->h[i].name, hl, sizeof hl), v);
  }
}

static void hist(page *g, const wr_snap *s, const char *name, const char *help,
                 int pickup) {
  char hl[600];
  head(g, name, "histogram", help);
  for (size_t i = 0; i < s->nh; i++) {
    const wr_hist *h = pickup ? &s->h[i].m.pickup : &s->h[i].m.duration;
    label(s->h[i].name, hl, sizeof hl);
    unsigned long cum = 0;
    for (int b = 0; b < WR_METRICS_BUCKETS; b++) {
      cum += h->n[b];
      put(g, "%s_bucket{handler=\"%s\",le=\"%g\"} %lu\n", name, hl,
          wr_metrics_bounds[b], cum);
    }
    put(g, "%s_bucket{handler=\"%s\",le=\"+Inf\"} %lu\n", name, hl, h->count);
    put(g, "%s_sum{handler=\"%s\"} %.17g\n", name, hl, h->sum);
    put(g, "%s_count{handler=\"%s\"} %lu\n", name, hl, h->count);
  }
}

static double nan_if(long long v) {
  return v < 0 ? NAN : (double)v;
}

static double delivered(const wr_snap_handler *h) {
  return (double)h->st.delivered;
}
static double retried(const wr_snap_handler *h) {
  return (double)h->st.retried;
}
static double refused(const wr_snap_handler *h) {
  return (double)h->st.republish_failed;
}
static double dropped(const wr_snap_handler *h) {
  return (double)h->st.dropped;
}
static double restarts(const wr_snap_handler *h) {
  return (double)h->restarts;
}

static double reloads(const wr_snap_handler *h) {
  return (double)h->reloads;
}

static double reload_failures(const wr_snap_handler *h) {
  return (double)h->reload_failures;
}

/* The plugin each handler's new jobs run, and how many of its workers run
 * each version (during a reload, old and new side by side). */
static void versions(page *g, const wr_snap *s) {
  char hl[600], vl[64];
  head(g, "warren_handler_info", "gauge",
       "The plugin version (SHA-256 of the .so, cut) new jobs run: 1.");
  for (size_t i = 0; i < s->nh; i++)
    put(g, "warren_handler_info{handler=\"%s\",version=\"%s\"} 1\n",
        label(s->h[i].name, hl, sizeof hl),
        label(s->h[i].version, vl, sizeof vl));
  head(g, "warren_workers_by_version", "gauge",
       "Worker processes up, by the plugin version they run.");
  for (size_t i = 0; i < s->nh; i++) {
    const wr_snap_handler *h = &s->h[i];
    label(h->name, hl, sizeof hl);
    for (int k = 0; k < h->nworkers; k++) {
      int seen = 0, n = 0;
      for (int j = 0; j < h->nworkers; j++) {
        if (!h->w[j].pid || strcmp(h->w[j].version, h->w[k].version)) continue;
        seen |= j < k;
        n++;
      }
      if (seen || !h->w[k].pid) continue; /* counted at its first worker */
      put(g, "warren_workers_by_version{handler=\"%s\",version=\"%s\"} %d\n",
          hl, label(h->w[k].version, vl, sizeof vl), n);
    }
  }
}
static double in_flight(const wr_snap_handler *h) {
  return (double)h->in_flight;
}
static double running(const wr_snap_handler *h) {
  return (double)h->running_jobs;
}
static double alive(const wr_snap_handler *h) {
  return (double)h->alive;
}
static double depth(const wr_snap_handler *h) {
  return nan_if(h->work.messages);
}
static double consumers(const wr_snap_handler *h) {
  return nan_if(h->work.consumers);
}
static double per_worker(const wr_snap_handler *h) {
  return nan_if(h->work.messages) / (double)h->concurrency;
}
static double cancels(const wr_snap_handler *h) {
  return (double)h->st.cancels;
}

static double tenant_held(const wr_snap_handler *h) {
  return h->tenant_limit ? (double)h->tenant_held : NAN;
}
static double tenants(const wr_snap_handler *h) {
  return h->tenant_limit ? (double)h->tenants : NAN;
}
static double tenant_held_total(const wr_snap_handler *h) {
  return h->tenant_limit ? (double)h->tenant_held_total : NAN;
}
static double tenant_widened(const wr_snap_handler *h) {
  return h->tenant_limit ? (double)h->tenant_widened : NAN;
}
static double tenant_untagged(const wr_snap_handler *h) {
  return h->tenant_limit ? (double)h->tenant_untagged : NAN;
}

/* Handlers with tenant limits (tenant.h): the others have no samples, and
 * without any the families are left out. */
static void tenant_metrics(page *g, const wr_snap *s) {
  size_t i = 0;
  while (i < s->nh && !s->h[i].tenant_limit) i++;
  if (i == s->nh) return;
  each(g, s, "warren_tenant_held_jobs", "gauge",
       "Jobs held because their tenant runs tenant_concurrency jobs.",
       tenant_held);
  each(g, s, "warren_tenants", "gauge",
       "Tenants with jobs waiting, held or running in this process.", tenants);
  each(g, s, "warren_tenant_held_total", "counter",
       "Jobs held for their tenant since start.", tenant_held_total);
  each(g, s, "warren_tenant_window_renewals_total", "counter",
       "Consumers renewed to take jobs beyond the ones held (tenant_hold).",
       tenant_widened);
  each(g, s, "warren_tenant_untagged_total", "counter",
       "Jobs without a valid tenant header, run as the one tenant \"\".",
       tenant_untagged);
}

static double results(const wr_snap_handler *h) {
  return (double)h->st.results;
}
static double results_lost(const wr_snap_handler *h) {
  return (double)h->st.results_lost;
}

static double retrying(const wr_snap_handler *h) {
  return nan_if(h->retrying);
}
static double dlq(const wr_snap_handler *h) {
  return nan_if(h->dlq.messages);
}

static double breaker_state(const wr_snap_handler *h) {
  return h->breaker.on ? h->breaker.state : NAN;
}

static double breaker_opened(const wr_snap_handler *h) {
  return h->breaker.on ? (double)h->breaker.opened : NAN;
}

static double breaker_returned(const wr_snap_handler *h) {
  return h->breaker.on ? (double)h->breaker.returned : NAN;
}

/* Handlers with a circuit breaker; nothing when none has one. */
static void breakers(page *g, const wr_snap *s) {
  size_t i = 0;
  while (i < s->nh && !s->h[i].breaker.on) i++;
  if (i == s->nh) return;
  each(g, s, "warren_breaker_state", "gauge",
       "The handler's circuit breaker: 0 closed, 1 open, 2 half-open.",
       breaker_state);
  each(g, s, "warren_breaker_opened_total", "counter",
       "Times the handler's circuit breaker opened.", breaker_opened);
  each(g, s, "warren_breaker_jobs_given_back_total", "counter",
       "Prefetched jobs the open breaker gave back to the queue unstarted.",
       breaker_returned);
}

static void outcomes(page *g, const wr_snap *s) {
  char hl[600];
  head(g, "warren_jobs_total", "counter",
       "Attempts finished, by handler and outcome.");
  for (size_t i = 0; i < s->nh; i++) {
    const wr_handler_stats *st = &s->h[i].st;
    const unsigned long v[WR_METRICS_OUTCOMES] = {
        [WR_OUT_FAILED] = st->failed,       [WR_OUT_REJECTED] = st->rejected,
        [WR_OUT_CRASHED] = st->lost,        [WR_OUT_TIMEOUT] = st->timeouts,
        [WR_OUT_MALFORMED] = st->malformed, [WR_OUT_ACKED] = st->acked,
        [WR_OUT_TOO_LARGE] = st->too_large, [WR_OUT_SIGNATURE] = st->signature,
        [WR_OUT_REVOKED] = st->revoked};
    label(s->h[i].name, hl, sizeof hl);
    for (int o = 0; o < WR_METRICS_OUTCOMES; o++)
      put(g, "warren_jobs_total{handler=\"%s\",outcome=\"%s\"} %lu\n", hl,
          wr_metrics_outcome((wr_outcome)o), v[o]);
  }
  head(g, "warren_dead_letters_total", "counter",
       "Dead letters the broker confirmed, by handler and reason.");
  for (size_t i = 0; i < s->nh; i++) {
    label(s->h[i].name, hl, sizeof hl);
    for (int r = 0; r < WR_DEAD_N; r++)
      put(g, "warren_dead_letters_total{handler=\"%s\",reason=\"%s\"} %lu\n",
          hl, wr_metrics_reasons[r], s->h[i].m.dead[r]);
  }
}

char *wr_prom_render(const wr_snap *s, size_t *len) {
  page g = {malloc(16384), 0, 16384, 0};
  if (!g.p) return NULL;
  g.p[0] = '\0';
  each(&g, s, "warren_jobs_delivered_total", "counter",
       "Deliveries received from the broker.", delivered);
  outcomes(&g, s);
  each(&g, s, "warren_retries_total", "counter",
       "Retry copies the broker confirmed.", retried);
  each(&g, s, "warren_copies_refused_total", "counter",
       "Retry or dead-letter copies the broker refused or returned.", refused);
  each(&g, s, "warren_jobs_redelivered_total", "counter",
       "Finished jobs left to the broker because their connection closed.",
       dropped);
  each(&g, s, "warren_worker_restarts_total", "counter",
       "Worker processes started again.", restarts);
  each(&g, s, "warren_plugin_reloads_total", "counter",
       "New handler plugins a reload (SIGHUP) took.", reloads);
  each(&g, s, "warren_plugin_reload_failures_total", "counter",
       "New handler plugins a reload refused; the old one kept running.",
       reload_failures);
  versions(&g, s);
  each(&g, s, "warren_consumer_cancels_total", "counter",
       "Consumers the broker cancelled (queue deleted, leader moved, "
       "consumer_timeout); each is consumed again.",
       cancels);
  each(&g, s, "warren_results_total", "counter",
       "Job results sent to a reply_to and confirmed (docs/results.md).",
       results);
  each(&g, s, "warren_results_lost_total", "counter",
       "Job results whose reply queue did not exist, error results the "
       "broker refused, results to a malformed direct reply-to name.",
       results_lost);
  each(&g, s, "warren_jobs_in_flight", "gauge",
       "Jobs delivered and not settled yet.", in_flight);
  each(&g, s, "warren_jobs_running", "gauge",
       "Jobs running in a worker process now.", running);
  tenant_metrics(&g, s);
  each(&g, s, "warren_workers_alive", "gauge",
       "Worker processes up (1 for an in-process handler).", alive);
  each(&g, s, "warren_queue_messages_ready", "gauge",
       "Messages ready in the work queue (last probe).", depth);
  each(&g, s, "warren_queue_consumers", "gauge",
       "Consumers of the work queue (last probe).", consumers);
  each(&g, s, "warren_queue_messages_ready_per_worker", "gauge",
       "Messages ready in the work queue per configured worker process; "
       "an autoscaler's target.",
       per_worker);
  each(&g, s, "warren_retry_queue_messages", "gauge",
       "Messages waiting in the handler's retry queues (last probe).",
       retrying);
  each(&g, s, "warren_dead_letter_queue_messages", "gauge",
       "Messages in the handler's dead-letter queue (last probe).", dlq);
  breakers(&g, s);
  hist(&g, s, "warren_job_duration_seconds",
       "Time from a handler's start to its result.", 0);
  hist(&g, s, "warren_job_pickup_latency_seconds",
       "Time from the publish timestamp to the handler's start (jobs with a "
       "timestamp).",
       1);
  head(&g, "warren_broker_connected", "gauge",
       "1 while connected to the broker.");
  put(&g, "warren_broker_connected %d\n", s->connected);
  head(&g, "warren_broker_blocked", "gauge",
       "1 while a resource alarm of the broker blocks publishing.");
  put(&g, "warren_broker_blocked %d\n", s->blocked);
  head(&g, "warren_broker_blocked_total", "counter",
       "Times the broker blocked publishing (connection.blocked).");
  put(&g, "warren_broker_blocked_total %llu\n",
      (unsigned long long)s->blocked_n);
  head(&g, "warren_broker_blocked_seconds_total", "counter",
       "Seconds publishing was blocked by the broker.");
  put(&g, "warren_broker_blocked_seconds_total %.3f\n", s->blocked_s);
  head(&g, "warren_ready", "gauge", "1 while ready (as /readyz).");
  put(&g, "warren_ready %d\n", s->ready);
  head(&g, "warren_health_check_ok", "gauge",
       "1 while the last self-check passed.");
  put(&g, "warren_health_check_ok %d\n", s->check_ok);
  if (s->rtt_ms >= 0) {
    head(&g, "warren_broker_rtt_seconds", "gauge",
         "Round trip of the last passive queue declare.");
    put(&g, "warren_broker_rtt_seconds %.9f\n", s->rtt_ms / 1000.0);
  }
  if (s->tracing) {
    head(&g, "warren_trace_spans_exported_total", "counter",
         "Spans the OTLP collector accepted.");
    put(&g, "warren_trace_spans_exported_total %llu\n",
        (unsigned long long)s->trace.exported);
    head(&g, "warren_trace_spans_dropped_total", "counter",
         "Spans dropped: the export queue was full, or the collector did not "
         "take them after retries.");
    put(&g, "warren_trace_spans_dropped_total{reason=\"queue_full\"} %llu\n",
        (unsigned long long)s->trace.dropped_full);
    put(&g, "warren_trace_spans_dropped_total{reason=\"export_failed\"} %llu\n",
        (unsigned long long)s->trace.dropped_failed);
    head(&g, "warren_trace_export_errors_total", "counter",
         "Export requests that failed (each may be retried).");
    put(&g, "warren_trace_export_errors_total %llu\n",
        (unsigned long long)s->trace.export_errors);
    head(&g, "warren_trace_queue_spans", "gauge",
         "Spans waiting in the export queue.");
    put(&g, "warren_trace_queue_spans %llu\n",
        (unsigned long long)s->trace.queued);
    head(&g, "warren_trace_jobs_total", "counter",
         "Jobs traced, by the sampler's decision.");
    put(&g, "warren_trace_jobs_total{sampled=\"true\"} %llu\n",
        (unsigned long long)s->trace.sampled);
    put(&g, "warren_trace_jobs_total{sampled=\"false\"} %llu\n",
        (unsigned long long)s->trace.not_sampled);
    head(&g, "warren_trace_context_invalid_total", "counter",
         "Jobs whose traceparent or tracestate header was invalid (they ran "
         "as new traces).");
    put(&g, "warren_trace_context_invalid_total %llu\n",
        (unsigned long long)s->trace.invalid_context);
  }
  if (s->events) { /* docs/events.md */
    head(&g, "warren_events_published_total", "counter",
         "Lifecycle events published to the events exchange.");
    put(&g, "warren_events_published_total %llu\n",
        (unsigned long long)s->ev.published);
    head(&g, "warren_events_messages_total", "counter",
         "Messages those events went in (a JSON array each).");
    put(&g, "warren_events_messages_total %llu\n",
        (unsigned long long)s->ev.messages);
    head(&g, "warren_events_dropped_total", "counter",
         "Lifecycle events dropped: the queue of events was full, or the "
         "broker was unavailable.");
    put(&g, "warren_events_dropped_total{cause=\"queue_full\"} %llu\n",
        (unsigned long long)s->ev.dropped_full);
    put(&g, "warren_events_dropped_total{cause=\"broker_unavailable\"} %llu\n",
        (unsigned long long)s->ev.dropped_broker);
    head(&g, "warren_events_connected", "gauge",
         "1 while the events connection is open.");
    put(&g, "warren_events_connected %d\n", s->ev.connected);
  }
  if (s->stream) { /* GET /api/events, docs/monitoring.md */
    head(&g, "warren_event_streams", "gauge",
         "Clients streaming lifecycle events from /api/events now.");
    put(&g, "warren_event_streams %llu\n", (unsigned long long)s->st.clients);
    head(&g, "warren_event_streams_opened_total", "counter",
         "Event streams opened.");
    put(&g, "warren_event_streams_opened_total %llu\n",
        (unsigned long long)s->st.accepted);
    head(&g, "warren_event_streams_refused_total", "counter",
         "Event streams refused because health.events_stream_clients were "
         "streaming.");
    put(&g, "warren_event_streams_refused_total %llu\n",
        (unsigned long long)s->st.refused);
    head(&g, "warren_event_streams_dropped_total", "counter",
         "Event streams dropped because the client read too slowly (its "
         "buffer was full).");
    put(&g, "warren_event_streams_dropped_total %llu\n",
        (unsigned long long)s->st.dropped);
    head(&g, "warren_event_stream_events_total", "counter",
         "Events written to streams (one per client it went to).");
    put(&g, "warren_event_stream_events_total %llu\n",
        (unsigned long long)s->st.sent);
  }
  head(&g, "warren_start_time_seconds", "gauge",
       "Unix time the worker started.");
  put(&g, "warren_start_time_seconds %.3f\n", (double)s->started_ms / 1000.0);
  if (g.broken) {
    free(g.p);
    return NULL;
  }
  *len = g.len;
  return g.p;
}
