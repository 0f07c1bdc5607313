#include "otelcfg.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#ifndef WARREN_VERSION
#define WARREN_VERSION "0.0.0" /* CMake defines it from PROJECT_VERSION */
#endif

/* The OTLP/HTTP default when tracing is on but no endpoint is given. */
#define DEFAULT_ENDPOINT "http://localhost:4318/v1/traces"

/* Collected problems, one per line. */
typedef struct errs {
  char *buf;
  size_t cap, len;
  int n;
} errs;

static void bad(errs *e, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void bad(errs *e, const char *fmt, ...) {
  e->n++;
  if (!e->buf || e->len + 1 >= e->cap) return;
  if (e->len) e->buf[e->len++] = '\n';
  va_list ap;
  va_start(ap, fmt);
  int w = vsnprintf(e->buf + e->len, e->cap - e->len, fmt, ap);
  va_end(ap);
  if (w > 0) e->len += (size_t)w;
  if (e->len >= e->cap) e->len = e->cap - 1;
  e->buf[e->len] = '\0';
}

static const char *const samplers[] = {
    [WR_SAMPLER_ALWAYS_ON] = "always_on",
    [WR_SAMPLER_ALWAYS_OFF] = "always_off",
    [WR_SAMPLER_RATIO] = "traceidratio",
    [WR_SAMPLER_PARENT_ALWAYS_ON] = "parentbased_always_on",
    [WR_SAMPLER_PARENT_ALWAYS_OFF] = "parentbased_always_off",
    [WR_SAMPLER_PARENT_RATIO] = "parentbased_traceidratio",
};
#define N_SAMPLERS (sizeof samplers / sizeof samplers[0])

static int sampler_of(const char *s, wr_sampler *out) {
  for (size_t i = 0; i < N_SAMPLERS; i++)
    if (strcasecmp(s, samplers[i]) == 0) {
      *out = (wr_sampler)i;
      return 0;
    }
  return -1;
}

/* Copy s into dst (cap bytes); -1 when it does not fit. */
static int copy(char *dst, size_t cap, const char *s, size_t len) {
  if (len >= cap) return -1;
  memcpy(dst, s, len);
  dst[len] = '\0';
  return 0;
}

/* Set key to value in a table, replacing an earlier value of the same key
 * so that a later source (the user's, then the environment) overrides an
 * earlier one. Returns 0, -1 when the table is full, -2 when too long. */
static int kv_set(wr_otel_kv *t, size_t *n, size_t max, const char *key,
                  const char *value) {
  size_t kl = strlen(key), vl = strlen(value);
  if (kl >= sizeof t->key || vl >= sizeof t->value) return -2;
  size_t i = 0;
  while (i < *n && strcmp(t[i].key, key) != 0) i++;
  if (i == *n) {
    if (*n == max) return -1;
    (*n)++;
  }
  memcpy(t[i].key, key, kl + 1);
  memcpy(t[i].value, value, vl + 1);
  return 0;
}

/* HTTP header names are tokens (RFC 9110); values must not carry CR or LF,
 * which would let a setting inject its own header lines. */
static int header_ok(const char *k, const char *v) {
  if (!*k) return 0;
  for (const char *p = k; *p; p++)
    if (!isalnum((unsigned char)*p) && !strchr("!#$%&'*+-.^_`|~", *p))
      return 0;
  for (const char *p = v; *p; p++)
    if ((unsigned char)*p < 0x20 && *p != '\t') return 0;
  return 1;
}

/* Where a key=value pair goes, for both the file and the environment. */
typedef enum { T_RESOURCE, T_HEADERS } table;

static void put(errs *e, wr_otel_cfg *o, table t, const char *where,
                const char *key, const char *value) {
  int r;
  if (t == T_RESOURCE) {
    if (strcmp(key, "service.name") == 0) {
      if (copy(o->service_name, sizeof o->service_name, value,
               strlen(value)) != 0)
        bad(e, "%s: service.name: longer than %zu bytes", where,
            sizeof o->service_name - 1);
      return;
    }
    r = kv_set(o->resource, &o->n_resource, WR_OTEL_MAX_RESOURCE, key, value);
  } else {
    if (!header_ok(key, value)) {
      bad(e, "%s: '%s': not a valid HTTP header", where, key);
      return;
    }
    r = kv_set(o->headers, &o->n_headers, WR_OTEL_MAX_HEADERS, key, value);
  }
  if (r == -1)
    bad(e, "%s: more than %d entries", where,
        t == T_RESOURCE ? WR_OTEL_MAX_RESOURCE : WR_OTEL_MAX_HEADERS);
  else if (r == -2)
    bad(e, "%s: '%s': key longer than %zu or value longer than %zu bytes",
        where, key, sizeof o->resource[0].key - 1,
        sizeof o->resource[0].value - 1);
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Percent-decode s[0..len) into dst (cap bytes). -1 on a bad escape or
 * when it does not fit. */
static int pct_decode(char *dst, size_t cap, const char *s, size_t len) {
  size_t o = 0;
  for (size_t i = 0; i < len; i++) {
    char c = s[i];
    if (c == '%') {
      if (i + 2 >= len) return -1;
      int a = hexval(s[i + 1]), b = a < 0 ? -1 : hexval(s[i + 2]);
      if (a < 0 || b < 0) return -1;
      c = (char)(a * 16 + b);
      if (c == '\0') return -1;
      i += 2;
    }
    if (o + 1 >= cap) return -1;
    dst[o++] = c;
  }
  dst[o] = '\0';
  return 0;
}

static void trim(const char **s, size_t *len) {
  while (*len && isspace((unsigned char)**s)) (*s)++, (*len)--;
  while (*len && isspace((unsigned char)(*s)[*len - 1])) (*len)--;
}

/* A W3C-Baggage-like list, key1=value1,key2=value2, as
 * OTEL_RESOURCE_ATTRIBUTES and OTEL_EXPORTER_OTLP_HEADERS are written:
 * blanks around keys and values are ignored, values are percent-decoded. */
static void put_list(errs *e, wr_otel_cfg *o, table t, const char *var,
                     const char *list) {
  const char *p = list;
  while (*p) {
    const char *end = strchr(p, ',');
    size_t n = end ? (size_t)(end - p) : strlen(p);
    const char *eq = memchr(p, '=', n);
    const char *k = p, *v = eq ? eq + 1 : NULL;
    size_t kl = eq ? (size_t)(eq - p) : n;
    size_t vl = eq ? n - kl - 1 : 0;
    trim(&k, &kl);
    if (!eq || kl == 0) {
      /* An empty entry (a trailing comma) is harmless. */
      if (eq || kl != 0) bad(e, "%s: '%.*s' is not key=value", var, (int)n, p);
    } else {
      char key[sizeof o->resource[0].key], val[sizeof o->resource[0].value];
      trim(&v, &vl);
      if (copy(key, sizeof key, k, kl) != 0)
        bad(e, "%s: key '%.*s' is longer than %zu bytes", var, (int)kl, k,
            sizeof key - 1);
      else if (pct_decode(val, sizeof val, v, vl) != 0)
        bad(e, "%s: value of '%s' has a bad %%-escape or is too long", var,
            key);
      else
        put(e, o, t, var, key, val);
    }
    if (!end) break;
    p = end + 1;
  }
}

static int url_ok(const char *u) {
  return (strncmp(u, "http://", 7) == 0 && u[7]) ||
         (strncmp(u, "https://", 8) == 0 && u[8]);
}

/* base + /v1/traces, one slash between them (the spec's rule for
 * OTEL_EXPORTER_OTLP_ENDPOINT). */
static int set_base(wr_otel_cfg *o, const char *base) {
  size_t n = strlen(base);
  int slash = n > 0 && base[n - 1] == '/';
  int w = snprintf(o->endpoint, sizeof o->endpoint, "%s%s", base,
                   slash ? "v1/traces" : "/v1/traces");
  return w > 0 && (size_t)w < sizeof o->endpoint ? 0 : -1;
}

/* ---- the file ---- */

static const char *const keys[] = {
    "enabled", "endpoint",  "traces_endpoint", "service_name",
    "resource_attributes",  "headers",         "sampler",
    "sampler_arg",          "parent",          "max_queue",
    "max_batch",            "delay",           "timeout",
    "retry_max",            NULL};

static const config_setting_t *member(const config_setting_t *g,
                                      const char *name) {
  return config_setting_get_member((config_setting_t *)g, name);
}

static const char *file_str(errs *e, const config_setting_t *g,
                            const char *name) {
  const config_setting_t *s = member(g, name);
  if (!s) return NULL;
  if (config_setting_type(s) != CONFIG_TYPE_STRING) {
    bad(e, "tracing.%s: must be a string", name);
    return NULL;
  }
  return config_setting_get_string(s);
}

static void file_num(errs *e, const config_setting_t *g, const char *name,
                     double *out, double min, double max, int integer) {
  const config_setting_t *s = member(g, name);
  if (!s) return;
  double v;
  switch (config_setting_type(s)) {
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64:
      v = (double)config_setting_get_int64(s);
      break;
    case CONFIG_TYPE_FLOAT:
      if (!integer) {
        v = config_setting_get_float(s);
        break;
      }
      /* fall through */
    default:
      bad(e, "tracing.%s: must be %s", name,
          integer ? "an integer" : "a number");
      return;
  }
  if (!(v >= min && v <= max)) {
    bad(e, "tracing.%s: must be %g..%g (got %g)", name, min, max, v);
    return;
  }
  *out = v;
}

/* A group of string values, or, because libconfig names cannot hold the
 * dots of most attribute keys, a string written as the environment
 * variables are: "key=value,key2=value2". */
static void file_table(errs *e, wr_otel_cfg *o, const config_setting_t *g,
                       const char *name, table t) {
  const config_setting_t *s = member(g, name);
  if (!s) return;
  char where[64];
  snprintf(where, sizeof where, "tracing.%s", name);
  if (config_setting_type(s) == CONFIG_TYPE_STRING) {
    put_list(e, o, t, where, config_setting_get_string(s));
    return;
  }
  if (!config_setting_is_group(s)) {
    bad(e,
        "tracing.%s: must be a group { key = \"value\"; ... } or a string "
        "\"key=value,...\"",
        name);
    return;
  }
  for (int i = 0; i < config_setting_length(s); i++) {
    const config_setting_t *m =
        config_setting_get_elem((config_setting_t *)s, (unsigned)i);
    if (config_setting_type(m) != CONFIG_TYPE_STRING) {
      bad(e, "tracing.%s.%s: must be a string", name, config_setting_name(m));
      continue;
    }
    put(e, o, t, where, config_setting_name(m), config_setting_get_string(m));
  }
}

static int load_file(errs *e, const config_setting_t *g, wr_otel_cfg *o) {
  int enabled = 1;
  for (int i = 0; i < config_setting_length(g); i++) {
    const char *name =
        config_setting_name(config_setting_get_elem((config_setting_t *)g, i));
    int ok = 0;
    for (const char *const *k = keys; *k && !ok; k++) ok = !strcmp(*k, name);
    if (!ok) bad(e, "tracing.%s: unknown setting", name);
  }
  const config_setting_t *en = member(g, "enabled");
  if (en) {
    if (config_setting_type(en) != CONFIG_TYPE_BOOL)
      bad(e, "tracing.enabled: must be true or false");
    else
      enabled = config_setting_get_bool(en);
  }
  const char *s;
  if ((s = file_str(e, g, "endpoint"))) {
    if (!url_ok(s) || set_base(o, s) != 0)
      bad(e, "tracing.endpoint: must be an http:// or https:// URL of at "
             "most %zu bytes",
          sizeof o->endpoint - 11);
  }
  /* The signal's own URL wins over the base one, as in the environment. */
  if ((s = file_str(e, g, "traces_endpoint"))) {
    if (!url_ok(s) || copy(o->endpoint, sizeof o->endpoint, s, strlen(s)))
      bad(e, "tracing.traces_endpoint: must be an http:// or https:// URL of "
             "at most %zu bytes",
          sizeof o->endpoint - 1);
  }
  file_table(e, o, g, "resource_attributes", T_RESOURCE);
  file_table(e, o, g, "headers", T_HEADERS);
  if ((s = file_str(e, g, "service_name"))) {
    if (!*s || copy(o->service_name, sizeof o->service_name, s, strlen(s)))
      bad(e, "tracing.service_name: must be 1..%zu bytes",
          sizeof o->service_name - 1);
  }
  if ((s = file_str(e, g, "sampler")) && sampler_of(s, &o->sampler) != 0)
    bad(e,
        "tracing.sampler: must be always_on, always_off, traceidratio, "
        "parentbased_always_on, parentbased_always_off or "
        "parentbased_traceidratio (got '%s')",
        s);
  file_num(e, g, "sampler_arg", &o->ratio, 0, 1, 0);
  if ((s = file_str(e, g, "parent"))) {
    if (strcmp(s, "parent") == 0)
      o->link_parent = 0;
    else if (strcmp(s, "link") == 0)
      o->link_parent = 1;
    else
      bad(e, "tracing.parent: must be \"parent\" or \"link\" (got '%s')", s);
  }
  double v = (double)o->max_queue;
  file_num(e, g, "max_queue", &v, 1, 1000000, 1);
  o->max_queue = (size_t)v;
  v = (double)o->max_batch;
  file_num(e, g, "max_batch", &v, 1, 1000000, 1);
  o->max_batch = (size_t)v;
  file_num(e, g, "delay", &o->delay, 0.001, 3600, 0);
  file_num(e, g, "timeout", &o->timeout, 0.001, 3600, 0);
  file_num(e, g, "retry_max", &o->retry_max, 0, 86400, 0);
  return enabled;
}

/* ---- the environment ---- */

static const char *get(wr_otel_getenv_fn env, const char *name) {
  const char *v = env(name);
  /* The spec treats an empty variable as an unset one. */
  return v && *v ? v : NULL;
}

/* A whole decimal integer in [min, max]; -1 when it is not one. */
static int env_int(errs *e, wr_otel_getenv_fn env, const char *name,
                   long long min, long long max, long long *out) {
  const char *s = get(env, name);
  if (!s) return 0;
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  while (isspace((unsigned char)*end)) end++;
  if (errno || end == s || *end || v < min || v > max) {
    bad(e, "%s: must be an integer %lld..%lld (got '%s')", name, min, max, s);
    return -1;
  }
  *out = v;
  return 1;
}

static void env_ms(errs *e, wr_otel_getenv_fn env, const char *name,
                   double *out) {
  long long ms;
  if (env_int(e, env, name, 1, 3600000, &ms) > 0) *out = (double)ms / 1000.0;
}

static void env_size(errs *e, wr_otel_getenv_fn env, const char *name,
                     size_t *out) {
  long long n;
  if (env_int(e, env, name, 1, 1000000, &n) > 0) *out = (size_t)n;
}

static const char *os_getenv(const char *name) {
  return getenv(name);
}

static void load_env(errs *e, wr_otel_getenv_fn env, wr_otel_cfg *o,
                     int *endpoint_set) {
  const char *s;
  if ((s = get(env, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))) {
    *endpoint_set = 1;
    if (!url_ok(s) || copy(o->endpoint, sizeof o->endpoint, s, strlen(s)))
      bad(e,
          "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: must be an http:// or "
          "https:// URL of at most %zu bytes (got '%s')",
          sizeof o->endpoint - 1, s);
  } else if ((s = get(env, "OTEL_EXPORTER_OTLP_ENDPOINT"))) {
    *endpoint_set = 1;
    if (!url_ok(s) || set_base(o, s) != 0)
      bad(e,
          "OTEL_EXPORTER_OTLP_ENDPOINT: must be an http:// or https:// URL "
          "of at most %zu bytes (got '%s')",
          sizeof o->endpoint - 11, s);
  }
  /* Resource attributes first: OTEL_SERVICE_NAME overrides their
   * service.name. */
  if ((s = get(env, "OTEL_RESOURCE_ATTRIBUTES")))
    put_list(e, o, T_RESOURCE, "OTEL_RESOURCE_ATTRIBUTES", s);
  if ((s = get(env, "OTEL_SERVICE_NAME")) &&
      copy(o->service_name, sizeof o->service_name, s, strlen(s)))
    bad(e, "OTEL_SERVICE_NAME: longer than %zu bytes",
        sizeof o->service_name - 1);
  if ((s = get(env, "OTEL_TRACES_SAMPLER")) && sampler_of(s, &o->sampler))
    bad(e,
        "OTEL_TRACES_SAMPLER: must be always_on, always_off, traceidratio, "
        "parentbased_always_on, parentbased_always_off or "
        "parentbased_traceidratio (got '%s')",
        s);
  if ((s = get(env, "OTEL_TRACES_SAMPLER_ARG"))) {
    char *end;
    errno = 0;
    double r = strtod(s, &end);
    while (isspace((unsigned char)*end)) end++;
    if (errno || end == s || *end || !(r >= 0 && r <= 1))
      bad(e, "OTEL_TRACES_SAMPLER_ARG: must be a number 0..1 (got '%s')", s);
    else
      o->ratio = r;
  }
  /* Generic headers, then the signal's own, which win key by key. */
  if ((s = get(env, "OTEL_EXPORTER_OTLP_HEADERS")))
    put_list(e, o, T_HEADERS, "OTEL_EXPORTER_OTLP_HEADERS", s);
  if ((s = get(env, "OTEL_EXPORTER_OTLP_TRACES_HEADERS")))
    put_list(e, o, T_HEADERS, "OTEL_EXPORTER_OTLP_TRACES_HEADERS", s);
  if (get(env, "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT"))
    env_ms(e, env, "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", &o->timeout);
  else
    env_ms(e, env, "OTEL_EXPORTER_OTLP_TIMEOUT", &o->timeout);
  env_ms(e, env, "OTEL_BSP_SCHEDULE_DELAY", &o->delay);
  env_size(e, env, "OTEL_BSP_MAX_QUEUE_SIZE", &o->max_queue);
  env_size(e, env, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", &o->max_batch);
}

int wr_otel_cfg_load(const config_setting_t *g, wr_otel_getenv_fn env,
                     wr_otel_cfg *out, char *err, size_t errlen) {
  errs e = {err, errlen, 0, 0};
  if (err && errlen) err[0] = '\0';
  if (!env) env = os_getenv;
  wr_otel_cfg *o = out;
  memset(o, 0, sizeof *o);
  snprintf(o->service_name, sizeof o->service_name, "warren");
  o->sampler = WR_SAMPLER_PARENT_ALWAYS_ON;
  o->ratio = 1.0;
  o->max_queue = 2048;
  o->max_batch = 512;
  o->delay = 1.0;
  o->timeout = 10;
  o->retry_max = 30;

  /* Defaults the user's attributes may override (kv_set replaces). */
  char host[256];
  if (gethostname(host, sizeof host) != 0) host[0] = '\0';
  host[sizeof host - 1] = '\0';
  if (host[0])
    kv_set(o->resource, &o->n_resource, WR_OTEL_MAX_RESOURCE, "host.name",
           host);
  kv_set(o->resource, &o->n_resource, WR_OTEL_MAX_RESOURCE, "service.version",
         WARREN_VERSION);
  kv_set(o->resource, &o->n_resource, WR_OTEL_MAX_RESOURCE,
         "telemetry.sdk.name", "warren");
  kv_set(o->resource, &o->n_resource, WR_OTEL_MAX_RESOURCE,
         "telemetry.sdk.language", "c");
  kv_set(o->resource, &o->n_resource, WR_OTEL_MAX_RESOURCE,
         "telemetry.sdk.version", WARREN_VERSION);

  int enabled = 0, file_off = 0, endpoint_env = 0;
  if (g) {
    if (!config_setting_is_group(g))
      bad(&e, "tracing: must be a group { ... }");
    else {
      enabled = load_file(&e, g, o);
      file_off = !enabled;
    }
  }
  load_env(&e, env, o, &endpoint_env);
  /* An endpoint in the environment turns tracing on, except where the file
   * says enabled = false: that is the operator's explicit switch. */
  if (endpoint_env && !file_off) enabled = 1;

  const char *dis = get(env, "OTEL_SDK_DISABLED");
  if (dis) {
    if (strcasecmp(dis, "true") == 0)
      enabled = 0;
    else if (strcasecmp(dis, "false") != 0)
      bad(&e, "OTEL_SDK_DISABLED: must be true or false (got '%s')", dis);
  }
  if (o->max_batch > o->max_queue)
    bad(&e,
        "tracing.max_batch: %zu is more than max_queue %zu "
        "(OTEL_BSP_MAX_EXPORT_BATCH_SIZE, OTEL_BSP_MAX_QUEUE_SIZE)",
        o->max_batch, o->max_queue);
  if (!o->endpoint[0]) snprintf(o->endpoint, sizeof o->endpoint, "%s",
                                DEFAULT_ENDPOINT);
  o->enabled = enabled;
  return e.n ? -1 : 0;
}
