/*
 * Lifecycle events (docs/events.md): a subscriber of the job's lifecycle
 * (lifecycle.h) that publishes what happens to jobs and to the worker as
 * JSON to a topic exchange, for `warren events` and dashboards.
 *
 * On the loop thread the callbacks only copy a small fixed-size record
 * into a bounded single-producer ring (no JSON, no I/O, no lock). A
 * thread of its own, with its own AMQP connection, turns the records into
 * JSON (cJSON), groups them per routing key and publishes each group as
 * one transient message whose body is a JSON array. When the ring is full
 * or the broker unreachable, events are dropped and counted, never
 * waited for.
 */
#ifndef WR_EVENTS_H
#define WR_EVENTS_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "job.h"
#include "lifecycle.h"

struct wr_cfg;
struct wr_live;
typedef struct wr_events wr_events;

/* What an event is about; the names are in wr_events_name. Keep
 * docs/events.md in step. The order of the job events is the order of
 * one attempt's events (the sender relies on it). */
typedef enum wr_ev_kind {
  WR_EV_RECEIVED,
  WR_EV_STARTED,
  WR_EV_SUCCEEDED,
  WR_EV_RETRIED,
  WR_EV_FAILED,
  WR_EV_REVOKED,
  WR_EV_DEAD_LETTERED,
  WR_EV_JOB_KINDS, /* job events come before this */
  WR_EV_ONLINE = WR_EV_JOB_KINDS,
  WR_EV_HEARTBEAT,
  WR_EV_OFFLINE,
  WR_EV_BREAKER_OPENED, /* a handler's circuit breaker (breaker.h) */
  WR_EV_BREAKER_HALF_OPEN,
  WR_EV_BREAKER_CLOSED,
  WR_EV_KINDS
} wr_ev_kind;

#define WR_EV_ID_MAX 128    /* bytes of a job id kept */
#define WR_EV_ERROR_MAX 200 /* bytes of an error text kept */
#define WR_EV_REASON_MAX 24

/* One event as the loop thread records it. */
typedef struct wr_ev_rec {
  int64_t time_ms;  /* unix ms */
  double duration;  /* seconds the attempt ran; < 0: not started */
  int64_t delay_ms; /* retried: the copy's delay */
  uint32_t attempt;
  uint16_t handler;
  uint8_t kind;    /* wr_ev_kind */
  uint8_t outcome; /* wr_outcome + 1; 0: none */
  uint8_t traced;  /* trace_id is set */
  uint8_t has_id;  /* the job has a message id (maybe empty) */
  uint8_t id_len;
  uint8_t texts; /* reason and error are set; else not even touched, so
                    a job's usual events write two cache lines */
  uint8_t trace_id[16];
  char id[WR_EV_ID_MAX];
  char reason[WR_EV_REASON_MAX]; /* with texts: NUL-terminated, "" none */
  char error[WR_EV_ERROR_MAX];
  double bound; /* breaker events: the bound `duration` (the measured
                   value) was held against; opened: times it opened */
} wr_ev_rec;

/* Who sends: the fields every event carries. */
typedef struct wr_ev_source {
  const char *hostname;
  long pid;
  const struct wr_cfg *cfg; /* handler names and queues */
} wr_ev_source;

/* Worker events' numbers. */
typedef struct wr_ev_worker {
  double freq; /* seconds between heartbeats */
  uint64_t active, processed, dropped;
} wr_ev_worker;

typedef struct wr_events_counters {
  uint64_t published;      /* events in messages written to the socket */
  uint64_t messages;       /* messages published */
  uint64_t dropped_full;   /* the ring was full */
  uint64_t dropped_broker; /* no connection, or it failed while sending */
  int connected;
} wr_events_counters;

/* "job.received", ..., "worker.online". */
const char *wr_events_name(int kind);
/* The outcome's word in events ("acked", "failed", "rejected", ...). */
const char *wr_events_outcome(int outcome);
/* The routing key of kind for handler name (ignored for worker events)
 * into buf. Returns buf. */
char *wr_events_routing_key(const char *handler, int kind, char *buf,
                            size_t len);
/* The fields every job event of kind and handler has ("event",
 * "hostname", "pid", "handler", "queue") as the text of a JSON object
 * without its closing brace, into buf (len bytes, NUL included): its
 * length, or -1 when it does not fit. */
int wr_events_format_head(int kind, size_t handler, const wr_ev_source *src,
                          char *buf, size_t len);
/* Job event r as a JSON object's text into buf: its head (hlen bytes,
 * from wr_events_format_head for r's kind and handler) and then its own
 * fields. Its length, or -1 when it does not fit. */
int wr_events_format_job(const wr_ev_rec *r, const char *head, size_t hlen,
                         char *buf, size_t len);
/* One worker event (kind WR_EV_ONLINE, _HEARTBEAT or _OFFLINE). */
cJSON *wr_events_worker_json(int kind, int64_t time_ms, const wr_ev_source *src,
                             const wr_ev_worker *w);

/* A breaker event (kind WR_EV_BREAKER_*) as a JSON object: the record's
 * state, reason, message, value and bound. */
cJSON *wr_events_breaker_json(const wr_ev_rec *r, const wr_ev_source *src);

/* Start: with events.enabled the sender thread connects with cfg's
 * broker settings and publishes to the exchange; live (NULL: none) gets
 * every job event while a client streams them (live.h), also with the
 * exchange off: then the callbacks cost one load of the clients' count
 * while nobody streams, and no connection is made. slots and nslots: the
 * supervisor's job slots (a job's state between its callbacks is kept
 * per slot). 0, or a negative warren_status with err. */
int wr_events_create(const struct wr_cfg *cfg, const char *hostname,
                     const wr_job *slots, size_t nslots, struct wr_live *live,
                     wr_events **out, char *err, size_t errlen);
/* Send what is queued and worker.offline, waiting at most flush_s
 * seconds, and stop. NULL is ignored. */
void wr_events_destroy(wr_events *ev, double flush_s);
/* Any thread. */
void wr_events_counters_get(wr_events *ev, wr_events_counters *out);

struct wr_breaker;
/* Handler h's breaker b changed (text: the change in words): a
 * breaker.opened, breaker.half_open or breaker.closed event, sent at the
 * sender's next turn after the job events before it. Loop thread; ev
 * NULL is ignored. */
void wr_events_breaker(wr_events *ev, size_t h, const struct wr_breaker *b,
                       const char *text);

/* ctx: the wr_events. */
extern const wr_job_events wr_events_events;

#endif
