/*
 * Tracing configuration: the `tracing` group of the config file, with the
 * standard OTEL_* environment variables applied over it (docs/tracing.md
 * gives the precedence). Pure: the environment is read through a lookup
 * function so tests can supply their own.
 */
#ifndef WR_OTELCFG_H
#define WR_OTELCFG_H

#include <libconfig.h>
#include <stddef.h>

#define WR_OTEL_MAX_RESOURCE 32 /* resource attributes */
#define WR_OTEL_MAX_HEADERS 16  /* extra HTTP headers */

typedef enum wr_sampler {
  WR_SAMPLER_ALWAYS_ON,
  WR_SAMPLER_ALWAYS_OFF,
  WR_SAMPLER_RATIO,             /* traceidratio */
  WR_SAMPLER_PARENT_ALWAYS_ON,  /* parentbased_always_on (default) */
  WR_SAMPLER_PARENT_ALWAYS_OFF, /* parentbased_always_off */
  WR_SAMPLER_PARENT_RATIO,      /* parentbased_traceidratio */
} wr_sampler;

typedef struct wr_otel_kv {
  char key[128];
  char value[256];
} wr_otel_kv;

typedef struct wr_otel_cfg {
  int enabled;        /* a `tracing` group or an endpoint, not disabled */
  char endpoint[512]; /* full URL spans are POSTed to (.../v1/traces) */
  char service_name[128];
  wr_otel_kv resource[WR_OTEL_MAX_RESOURCE]; /* service.name excluded */
  size_t n_resource;
  wr_otel_kv headers[WR_OTEL_MAX_HEADERS];
  size_t n_headers;
  wr_sampler sampler;
  double ratio;     /* for the ratio samplers, 0..1 */
  int link_parent;  /* the producer's context is a link, not a parent */
  size_t max_queue; /* spans held at most (OTEL_BSP_MAX_QUEUE_SIZE) */
  size_t max_batch; /* spans per request (OTEL_BSP_MAX_EXPORT_BATCH_SIZE) */
  double delay;     /* seconds between exports (OTEL_BSP_SCHEDULE_DELAY) */
  double timeout;   /* seconds per request (OTEL_EXPORTER_OTLP_TIMEOUT) */
  double retry_max; /* seconds a batch is retried before it is dropped */
} wr_otel_cfg;

/* Returns the value of an environment variable, or NULL. */
typedef const char *(*wr_otel_getenv_fn)(const char *name);

/*
 * Fill *out from the `tracing` group g (NULL: absent) and the environment.
 * Returns 0, or -1 with every problem in err, one per line, naming the
 * setting or variable.
 */
int wr_otel_cfg_load(const config_setting_t *g, wr_otel_getenv_fn env,
                     wr_otel_cfg *out, char *err, size_t errlen);

#endif
