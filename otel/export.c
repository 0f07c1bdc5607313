#include "export.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "otlp.h"

#ifndef WARREN_VERSION
#define WARREN_VERSION "0.0.0" /* CMake defines it from PROJECT_VERSION */
#endif

/* The queue is a ring of bytes sized for max_queue average spans; a span
 * whose copy is larger than SPAN_MAX is dropped rather than let one span
 * take the room of many. */
#define SPAN_AVG 2048
#define SPAN_MAX (16 * 1024)
#define RING_MIN (4 * SPAN_MAX)
#define RING_MAX ((size_t)256 << 20)

/* Each copy in the ring follows a header; a header of length 0, or fewer
 * than HDR bytes left before the end, means the next copy is at 0. */
#define HDR 8

/* Retries of a failed request: 0.5 s doubling up to 5 s. */
#define BACKOFF_FIRST 0.5
#define BACKOFF_MAX 5.0

struct wr_exporter {
  wr_otel_cfg cfg;
  wr_otlp_resource res;

  pthread_mutex_t mu;
  pthread_cond_t cv;  /* wakes the exporter thread */
  char *ring;         /* cap bytes */
  size_t cap;         /* a multiple of WR_OTLP_FLAT_ALIGN */
  size_t head, tail;  /* first copy; where the next goes */
  size_t used;        /* bytes taken, with any skipped at the end */
  size_t count;       /* copies in the ring, the batch being sent included */
  int stopping;       /* wr_exporter_stop was called */
  double stop_by;     /* monotonic seconds the flush may last until */
  char *scratch;      /* SPAN_MAX bytes: submit's copy, made unlocked */

  pthread_t thread;
  const wr_span **batch; /* max_batch spans being sent */
  CURL *curl;
  struct curl_slist *hdrs;
  double retry_after; /* seconds the collector asked for, or 0 */
  int failing;        /* in an episode of failures (logged once) */
  uint64_t episode_errors, episode_dropped;

  _Atomic uint64_t submitted, exported, dropped_full, dropped_large,
      dropped_failed, export_errors;
};

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static struct timespec abs_time(double t) {
  /* The condvar runs on CLOCK_MONOTONIC (wr_exporter_start). */
  struct timespec ts;
  ts.tv_sec = (time_t)t;
  ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
  if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
  return ts;
}

/* ---- the ring (callers hold mu) ---- */

/* Reserve rec bytes (header included) for one copy; returns its offset or
 * -1 when the ring has no contiguous room. Copies never wrap: the bytes
 * left at the end are skipped, so each copy can be read where it lies. */
static long ring_reserve(wr_exporter *e, size_t rec) {
  if (e->used == 0) e->head = e->tail = 0;
  size_t at;
  if (e->used == 0 || e->tail > e->head) {
    if (e->cap - e->tail >= rec) {
      at = e->tail;
    } else if (e->head >= rec) {
      /* Wrap: mark the rest of the end as skipped. */
      size_t skip = e->cap - e->tail;
      if (skip >= HDR) memset(e->ring + e->tail, 0, HDR);
      e->used += skip;
      at = 0;
    } else {
      return -1;
    }
  } else if (e->tail < e->head && e->head - e->tail >= rec) {
    at = e->tail;
  } else {
    return -1; /* tail == head with used > 0: full */
  }
  e->tail = at + rec;
  if (e->tail == e->cap) e->tail = 0;
  e->used += rec;
  return (long)at;
}

/* The offset of the copy at or after pos, skipping a wrap; *skipped gets
 * the bytes passed over. Only reads headers of copies already queued. */
static size_t ring_next(const wr_exporter *e, size_t pos, size_t *skipped) {
  uint32_t len = 0;
  if (e->cap - pos >= HDR) memcpy(&len, e->ring + pos, sizeof len);
  if (len == 0) {
    *skipped = e->cap - pos;
    return 0;
  }
  *skipped = 0;
  return pos;
}

/* ---- submit (the loop thread) ---- */

int wr_exporter_submit(wr_exporter *e, const wr_span *sp) {
  size_t sz = wr_otlp_flat_size(sp);
  if (sz > SPAN_MAX) {
    atomic_fetch_add(&e->dropped_large, 1);
    return -1;
  }
  /* The copy is made before taking the lock: only one thread submits. */
  wr_otlp_flatten(e->scratch, sp);
  int wake = 0;
  pthread_mutex_lock(&e->mu);
  long at = e->count < e->cfg.max_queue ? ring_reserve(e, HDR + sz) : -1;
  if (at >= 0) {
    uint32_t hdr[2] = {(uint32_t)(HDR + sz), 0};
    memcpy(e->ring + at, hdr, HDR);
    memcpy(e->ring + at + HDR, e->scratch, sz);
    e->count++;
    /* One wake-up per full batch, not one per span: the thread also
     * wakes every `delay` seconds. */
    wake = e->count == e->cfg.max_batch;
  }
  pthread_mutex_unlock(&e->mu);
  if (at < 0) {
    atomic_fetch_add(&e->dropped_full, 1);
    return -1;
  }
  if (wake) pthread_cond_signal(&e->cv);
  atomic_fetch_add(&e->submitted, 1);
  return 0;
}

void wr_exporter_stats_get(wr_exporter *e, wr_exporter_stats *out) {
  memset(out, 0, sizeof *out);
  if (!e) return;
  out->submitted = atomic_load(&e->submitted);
  out->exported = atomic_load(&e->exported);
  out->dropped_full = atomic_load(&e->dropped_full);
  out->dropped_large = atomic_load(&e->dropped_large);
  out->dropped_failed = atomic_load(&e->dropped_failed);
  out->export_errors = atomic_load(&e->export_errors);
  pthread_mutex_lock(&e->mu);
  out->queued = e->count;
  pthread_mutex_unlock(&e->mu);
}

/* ---- HTTP ---- */

static size_t discard(char *p, size_t size, size_t n, void *ctx) {
  (void)p;
  (void)ctx;
  return size * n;
}

/* Retry-After in seconds (the HTTP-date form is ignored: the backoff
 * applies then). */
static size_t header_cb(char *p, size_t size, size_t n, void *ctx) {
  wr_exporter *e = ctx;
  size_t len = size * n;
  static const char name[] = "retry-after:";
  if (len > sizeof name && strncasecmp(p, name, sizeof name - 1) == 0) {
    char buf[32];
    size_t vl = len - (sizeof name - 1);
    if (vl >= sizeof buf) vl = sizeof buf - 1;
    memcpy(buf, p + sizeof name - 1, vl);
    buf[vl] = '\0';
    char *end;
    long s = strtol(buf, &end, 10);
    while (*end == ' ' || *end == '\r' || *end == '\n') end++;
    if (end != buf && *end == '\0' && s > 0) e->retry_after = (double)s;
  }
  return len;
}

typedef enum { SENT, RETRY, REFUSED } outcome;

static outcome post(wr_exporter *e, const uint8_t *body, size_t len,
                    double timeout, char *why, size_t whylen) {
  CURL *c = e->curl;
  char cerr[CURL_ERROR_SIZE] = "";
  e->retry_after = 0;
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, (const char *)body);
  curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
  long ms = (long)(timeout * 1000);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, ms > 0 ? ms : 1L);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, cerr);
  CURLcode rc = curl_easy_perform(c);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, NULL);
  if (rc != CURLE_OK) {
    snprintf(why, whylen, "%s", cerr[0] ? cerr : curl_easy_strerror(rc));
    /* A URL curl cannot use will not get better. */
    return rc == CURLE_URL_MALFORMAT || rc == CURLE_UNSUPPORTED_PROTOCOL
               ? REFUSED
               : RETRY;
  }
  long code = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
  if (code >= 200 && code < 300) return SENT;
  snprintf(why, whylen, "HTTP %ld", code);
  /* The codes OTLP/HTTP names as retryable. */
  return code == 429 || code == 502 || code == 503 || code == 504 ? RETRY
                                                                  : REFUSED;
}

/* Wait until t or stop, whichever is first (mu not held). */
static void nap_until(wr_exporter *e, double t) {
  struct timespec ts = abs_time(t);
  pthread_mutex_lock(&e->mu);
  while (!e->stopping && now() < t)
    if (pthread_cond_timedwait(&e->cv, &e->mu, &ts) == ETIMEDOUT) break;
  pthread_mutex_unlock(&e->mu);
}

static void end_episode(wr_exporter *e) {
  if (!e->failing) return;
  if (e->episode_dropped)
    wr_warn("tracing: export to %s works again after %llu failed requests; "
            "%llu spans were dropped",
            e->cfg.endpoint, (unsigned long long)e->episode_errors,
            (unsigned long long)e->episode_dropped);
  else
    wr_info("tracing: export to %s works again after %llu failed requests",
            e->cfg.endpoint, (unsigned long long)e->episode_errors);
  e->failing = 0;
  e->episode_errors = e->episode_dropped = 0;
}

/* Send one encoded batch of n spans, retrying what may succeed later. */
static void send_batch(wr_exporter *e, const uint8_t *body, size_t len,
                       size_t n) {
  double give_up = now() + e->cfg.retry_max;
  double backoff = BACKOFF_FIRST;
  char why[CURL_ERROR_SIZE + 32];
  for (;;) {
    pthread_mutex_lock(&e->mu);
    int stopping = e->stopping;
    double stop_by = e->stop_by;
    pthread_mutex_unlock(&e->mu);
    double limit = stopping && stop_by < give_up ? stop_by : give_up;
    double timeout = e->cfg.timeout;
    if (stopping && stop_by - now() < timeout) timeout = stop_by - now();
    outcome o = timeout > 0 ? post(e, body, len, timeout, why, sizeof why)
                            : (snprintf(why, sizeof why, "stopped"), RETRY);
    if (o == SENT) {
      atomic_fetch_add(&e->exported, n);
      end_episode(e);
      return;
    }
    atomic_fetch_add(&e->export_errors, 1);
    e->episode_errors++;
    if (!e->failing) {
      /* Once per episode, not per batch and never per span. */
      e->failing = 1;
      if (o == REFUSED)
        wr_warn("tracing: %s refused %zu spans (%s); they are dropped",
                e->cfg.endpoint, n, why);
      else
        wr_warn("tracing: export to %s failed (%s); retrying each batch for "
                "up to %gs, spans are queued meanwhile",
                e->cfg.endpoint, why, e->cfg.retry_max);
    }
    double wait = e->retry_after > 0 ? e->retry_after : backoff;
    backoff = backoff * 2 > BACKOFF_MAX ? BACKOFF_MAX : backoff * 2;
    if (o == REFUSED || now() + wait > limit) {
      atomic_fetch_add(&e->dropped_failed, n);
      e->episode_dropped += n;
      return;
    }
    nap_until(e, now() + wait);
  }
}

/* ---- the exporter thread ---- */

/*
 * Fork: the supervisor forks workers while this thread runs. A child
 * inherits the memory but not this thread, and mu may be locked in it;
 * children therefore never call any wr_exporter function (export.h).
 */
static void *run(void *arg) {
  wr_exporter *e = arg;
  for (;;) {
    pthread_mutex_lock(&e->mu);
    struct timespec ts = abs_time(now() + e->cfg.delay);
    while (!e->stopping && e->count < e->cfg.max_batch)
      if (pthread_cond_timedwait(&e->cv, &e->mu, &ts) == ETIMEDOUT) break;
    size_t n = e->count < e->cfg.max_batch ? e->count : e->cfg.max_batch;
    int stopping = e->stopping;
    int late = stopping && now() >= e->stop_by;
    size_t pos = e->head;
    pthread_mutex_unlock(&e->mu);
    if (n == 0) {
      if (stopping) break;
      continue;
    }
    /* The first n copies stay where they are until released below: the
     * loop thread only writes to the free part of the ring. */
    size_t taken = 0;
    for (size_t i = 0; i < n; i++) {
      size_t skipped;
      pos = ring_next(e, pos, &skipped);
      uint32_t rec;
      memcpy(&rec, e->ring + pos, sizeof rec);
      e->batch[i] = wr_otlp_unflatten(e->ring + pos + HDR);
      taken += skipped + rec;
      pos += rec;
      if (pos == e->cap) pos = 0;
    }
    if (late) {
      atomic_fetch_add(&e->dropped_failed, n);
    } else {
      size_t len;
      uint8_t *body = wr_otlp_encode(&e->res, e->batch, n, &len);
      if (body) {
        send_batch(e, body, len, n);
        free(body);
      } else {
        wr_warn("tracing: no memory to encode %zu spans; they are dropped", n);
        atomic_fetch_add(&e->dropped_failed, n);
      }
    }
    pthread_mutex_lock(&e->mu);
    e->head = pos;
    e->used -= taken;
    e->count -= n;
    if (e->count == 0) e->head = e->tail = e->used = 0;
    pthread_mutex_unlock(&e->mu);
  }
  return NULL;
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;
static void curl_init(void) {
  curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void destroy(wr_exporter *e) {
  if (e->curl) curl_easy_cleanup(e->curl);
  curl_slist_free_all(e->hdrs);
  free(e->ring);
  free(e->scratch);
  free(e->batch);
  pthread_cond_destroy(&e->cv);
  pthread_mutex_destroy(&e->mu);
  free(e);
}

static int set_headers(wr_exporter *e) {
  char line[sizeof e->cfg.headers[0].key + sizeof e->cfg.headers[0].value +
            4];
  const char *fixed[] = {"Content-Type: application/x-protobuf",
                         /* No 100-continue round trip for large batches. */
                         "Expect:"};
  for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++) {
    struct curl_slist *l = curl_slist_append(e->hdrs, fixed[i]);
    if (!l) return -1;
    e->hdrs = l;
  }
  for (size_t i = 0; i < e->cfg.n_headers; i++) {
    snprintf(line, sizeof line, "%s: %s", e->cfg.headers[i].key,
             e->cfg.headers[i].value);
    struct curl_slist *l = curl_slist_append(e->hdrs, line);
    if (!l) return -1;
    e->hdrs = l;
  }
  return 0;
}

wr_exporter *wr_exporter_start(const wr_otel_cfg *cfg, char *err,
                               size_t errlen) {
  pthread_once(&curl_once, curl_init);
  if (curl_init_rc != CURLE_OK) {
    snprintf(err, errlen, "tracing: curl_global_init: %s",
             curl_easy_strerror(curl_init_rc));
    return NULL;
  }
  wr_exporter *e = calloc(1, sizeof *e);
  if (!e) {
    snprintf(err, errlen, "tracing: no memory");
    return NULL;
  }
  e->cfg = *cfg;
  if (e->cfg.max_queue == 0) e->cfg.max_queue = 1;
  if (e->cfg.max_batch == 0 || e->cfg.max_batch > e->cfg.max_queue)
    e->cfg.max_batch = e->cfg.max_queue;
  if (!(e->cfg.delay > 0)) e->cfg.delay = 1.0;
  pthread_mutex_init(&e->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&e->cv, &ca);
  pthread_condattr_destroy(&ca);

  e->res.service_name = e->cfg.service_name;
  e->res.attrs = e->cfg.resource;
  e->res.nattrs = e->cfg.n_resource;
  /* This process's pid; workers forked later send no spans. */
  e->res.pid = (int64_t)getpid();

  size_t cap = e->cfg.max_queue > RING_MAX / SPAN_AVG
                   ? RING_MAX
                   : e->cfg.max_queue * SPAN_AVG;
  if (cap < RING_MIN) cap = RING_MIN;
  e->cap = cap;
  e->ring = malloc(cap);
  e->scratch = malloc(SPAN_MAX);
  e->batch = calloc(e->cfg.max_batch, sizeof *e->batch);
  e->curl = curl_easy_init();
  if (!e->ring || !e->scratch || !e->batch || !e->curl || set_headers(e)) {
    snprintf(err, errlen, "tracing: no memory for the span queue (%zu bytes)",
             cap);
    destroy(e);
    return NULL;
  }
  CURL *c = e->curl;
  curl_easy_setopt(c, CURLOPT_URL, e->cfg.endpoint);
  curl_easy_setopt(c, CURLOPT_POST, 1L);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, e->hdrs);
  curl_easy_setopt(c, CURLOPT_USERAGENT, "warren/" WARREN_VERSION);
  /* No signals from a thread: the supervisor owns them. */
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, header_cb);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, e);

  /* The thread starts with every signal blocked, so that the supervisor's
   * signals are delivered to the threads that handle them. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int rc = pthread_create(&e->thread, NULL, run, e);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (rc != 0) {
    snprintf(err, errlen, "tracing: cannot start the exporter thread: %s",
             strerror(rc));
    destroy(e);
    return NULL;
  }
  return e;
}

void wr_exporter_stop(wr_exporter *e, double timeout_s) {
  if (!e) return;
  uint64_t before = atomic_load(&e->dropped_failed);
  pthread_mutex_lock(&e->mu);
  e->stopping = 1;
  e->stop_by = now() + (timeout_s > 0 ? timeout_s : 0);
  pthread_mutex_unlock(&e->mu);
  pthread_cond_signal(&e->cv);
  pthread_join(e->thread, NULL);
  /* One line for what the flush could not send. */
  uint64_t lost = atomic_load(&e->dropped_failed) - before;
  if (lost)
    wr_warn("tracing: %llu spans were not sent to %s before stopping",
            (unsigned long long)lost, e->cfg.endpoint);
  destroy(e);
}
