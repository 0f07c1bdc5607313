/*
 * Loading and validating the worker's one libconfig file.
 *
 * Strings in these structs point into the libconfig tree (or, for resolved
 * paths and secrets, into memory owned by the wr_cfg) and live until
 * wr_cfg_free(). docs/config.md lists every setting; keep it in step with
 * the tables in cfg.c.
 */
#ifndef WR_CFG_H
#define WR_CFG_H

#include <libconfig.h>
#include <stddef.h>
#include <stdio.h>

#include "conn.h"
#include "otelcfg.h"

#define WR_CFG_MAX_PREFETCH 65535
#define WR_CFG_MAX_CONCURRENCY 1024
#define WR_CFG_MAX_REPLY_QUEUES 64 /* handlers.reply_queues entries */
#define WR_CFG_MAX_HANDLERS 64
#define WR_CFG_MAX_SECRET 1023 /* bytes of a password_file */
#define WR_CFG_MAX_NODES 64    /* broker.nodes */

/* The broker section is the connection's own parameters (conn.h). */
typedef wr_tls_params wr_tls_cfg;
typedef wr_conn_params wr_broker_cfg;

typedef struct wr_exchange_cfg {
  const char *name;
  const char *type; /* direct, topic, fanout, headers */
  int durable;
} wr_exchange_cfg;

typedef struct wr_binding_cfg {
  const char *exchange;
  const char *routing_key;
} wr_binding_cfg;

#define WR_CFG_MAX_BACKOFF 16

/* Retry policy of one handler (retry.c reads it). */
typedef struct wr_retry_cfg {
  int max_attempts;   /* attempts in all, the first included */
  int max_crashes;    /* consecutive worker deaths before "crashed" */
  int max_deliveries; /* deliveries of one copy (a quorum queue's
                         x-delivery-count + 1) before "max-deliveries" */
  double backoff[WR_CFG_MAX_BACKOFF]; /* seconds before attempt 2, 3, ... */
  int n_backoff;                      /* the last step repeats */
  double jitter;                      /* +- fraction of each delay */
} wr_retry_cfg;

/* A handler's circuit breaker (framework/breaker.h; docs/features.md,
 * "Circuit breaker"). The `breaker` group; off when absent. */
typedef struct wr_breaker_cfg {
  int enabled;            /* the group is there */
  double failure_rate;    /* open at this share of failures; 0: never */
  double slow_ms;         /* open when the percentile passes it; 0: never */
  double slow_percentile; /* which percentile of the durations, 0.5..1 */
  int window;             /* the last N attempts are looked at */
  int min_jobs;           /* attempts in the window before any decision */
  double cool_down;       /* seconds open before the trial jobs */
  int trial_jobs;         /* trials in a row that must pass to close */
} wr_breaker_cfg;

#define WR_CFG_MAX_BREAKER_WINDOW 1000

typedef struct wr_handler_cfg {
  const char *name;
  const char *queue;
  const char *plugin; /* resolved against the config file's folder */
  int prefetch;       /* 1..65535 */
  int concurrency;    /* worker processes, 1..1024 */
  int declare;        /* declare the queue and its bindings */
  int durable;
  int quorum;       /* queue_type = "quorum" */
  int max_priority; /* the work queue's x-max-priority, 1..255; 0: none */
  int isolated;     /* run in worker processes (default) */
  wr_binding_cfg *bindings;
  size_t n_bindings;
  double timeout;         /* seconds a job may run; 0: no limit */
  unsigned long max_jobs; /* recycle a worker after N jobs; 0: never */
  unsigned max_rss_mb;    /* recycle a worker past N MiB peak RSS; 0: never */
  size_t max_body;        /* bytes; a larger job is dead-lettered; 0: none */
  int delayed;            /* its queue takes delayed jobs (docs/delays.md) */
  size_t max_result;      /* bytes of a job's result (results.md) */
  wr_retry_cfg retry;
  wr_breaker_cfg breaker;
  int require_signature;     /* refuse unsigned jobs (signing.md) */
  const char **signing_keys; /* key ids it accepts; none: every key */
  size_t n_signing_keys;
  const char **reply_queues; /* named queues results may go to (besides
                                direct reply-to); none: no named queue */
  size_t n_reply_queues;
  const char *tenant_header;  /* names a job's tenant (tenant.h); NULL: off */
  int tenant_concurrency;     /* jobs of one tenant at once, 1..concurrency */
  int tenant_hold;            /* jobs held beyond prefetch for their tenant */
  config_setting_t *settings; /* the handler's own group, or NULL */
  int line;                   /* where the handler is defined */
} wr_handler_cfg;

struct wr_keyring;

/* Job signing (docs/signing.md); keyring NULL: no `signing` section. */
typedef struct wr_signing_cfg {
  struct wr_keyring *keyring;  /* owned; taken over by the supervisor */
  const char *countersign_key; /* id of Warren's own key in the ring */
  double window;               /* seconds a signing time may be off */
} wr_signing_cfg;

/* The delay cascade (common/delay.h), shared by the delayed handlers. */
typedef struct wr_delays_cfg {
  const char *prefix; /* names' prefix, WR_DELAY_PREFIX by default */
  int quorum;         /* queue_type = "quorum" */
  int used;           /* some handler has delayed = true */
} wr_delays_cfg;
/* Lifecycle events (docs/events.md); the `events` group. */
typedef struct wr_events_cfg {
  int enabled;
  const char *exchange;  /* the topic exchange, declared durable */
  double heartbeat;      /* seconds between worker.heartbeat events */
  double flush_interval; /* seconds an event may wait for its group */
  int batch;             /* events in one message, at most */
  int buffer;            /* events waiting to be sent, at most */
} wr_events_cfg;

/* The live view on the health port (docs/monitoring.md#live-events). */
typedef struct wr_stream_cfg {
  int enabled;      /* GET /api/events */
  int clients;      /* streams at once, at most */
  size_t buffer;    /* bytes waiting for one stream, at most */
  double keepalive; /* seconds between comments on an idle stream */
  int dashboard;    /* GET /dashboard */
} wr_stream_cfg;

typedef struct wr_cfg {
  config_t lc;
  char *path;
  wr_broker_cfg broker;
  double shutdown_grace; /* seconds in-flight jobs get on SIGTERM */
  double reconnect_min;  /* backoff after a lost connection, seconds */
  double reconnect_max;
  double restart_min; /* backoff before restarting a dead worker */
  double restart_max;
  int exit_after_refused_logins; /* give up (exit 3) after N; 0: never */
  const char *health_listen;     /* liveness/readiness HTTP address */
  int health_port;               /* 0: not served */
  const char *admin_token;       /* from health.admin_token_file; NULL: no
                                    admin route */
  double snapshot_interval;      /* seconds between status snapshots, at most */
  double probe_interval;         /* seconds between two probes of one queue */
  double check_interval;         /* seconds between self-checks */
  double queue_log_interval; /* seconds between queue-metrics lines; 0: off */
  int log_format;            /* WR_LOG_TEXT, WR_LOG_JSON, WR_LOG_LOGFMT */
  wr_exchange_cfg *exchanges;
  size_t n_exchanges;
  wr_handler_cfg *handlers;
  size_t n_handlers;
  wr_signing_cfg signing;
  wr_delays_cfg delays;
  wr_otel_cfg tracing;  /* the `tracing` group and the OTEL_* variables */
  char url_store[1024]; /* broker.url, parsed: broker's strings point here */
  wr_conn_node *nodes;  /* broker.nodes (broker.nodes points here) */
  char *owned;          /* resolved plugin paths and password, one block */
  wr_events_cfg events; /* the `events` group (docs/events.md) */
  wr_stream_cfg stream; /* health.events_stream* and health.dashboard */
} wr_cfg;

/**
 * Parse and validate `path`. On success *out owns everything; free with
 * wr_cfg_free(). On failure returns a negative warren_status and writes
 * every problem found, one per line as "FILE:LINE: setting: what", into
 * err (truncated to errlen).
 * Warnings (prefetch below concurrency) go to the log, not err.
 */
int wr_cfg_load(const char *path, wr_cfg **out, char *err, size_t errlen);
void wr_cfg_free(wr_cfg *cfg);

/* The most jobs of handler hc Warren holds at once: the prefetch (waiting
 * and running jobs of the current connection), running jobs of an older
 * connection (up to concurrency), and jobs held for their tenant beyond
 * the prefetch (up to tenant_hold, tenant.h). Sizes the job slots, the
 * coalesced acks and the tenants' tables. */
size_t wr_cfg_held_most(const wr_handler_cfg *hc);

/* `warren --print-config`: every effective setting, one per line, with
 * where its value came from (file, environment or default); secrets are
 * masked. Returns 0. */
int wr_cfg_print(const wr_cfg *cfg, FILE *out);

#endif
