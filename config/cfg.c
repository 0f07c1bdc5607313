#include "cfg.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <openssl/crypto.h>

#include <warren/status.h>

#include "addr.h"
#include "conn.h"
#include "delay.h"
#include "keyring.h"
#include "log.h"
#include "names.h"
#include "secret.h"
#include "sign.h"

/* Collected problems; every message names file, line and setting. */
typedef struct ctx {
  const char *file;
  char *buf;
  size_t cap, len;
  int errors;
} ctx;

/* Resolved paths and secrets go into one bounded arena. */
#define OWNED_MAX (64 * 1024)

static void setting_path(const config_setting_t *s, char *buf, size_t len) {
  const config_setting_t *chain[32];
  size_t n = 0;
  for (; s && config_setting_parent(s) && n < 32; s = config_setting_parent(s))
    chain[n++] = s;
  size_t off = 0;
  buf[0] = '\0';
  while (n-- > 0 && off < len) {
    const char *name = config_setting_name(chain[n]);
    int w = name ? snprintf(buf + off, len - off, "%s%s", off ? "." : "", name)
                 : snprintf(buf + off, len - off, "[%d]",
                            config_setting_index(chain[n]));
    if (w < 0) break;
    off += (size_t)w;
  }
}

static void problem(ctx *c, const config_setting_t *s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void problem(ctx *c, const config_setting_t *s, const char *fmt, ...) {
  char path[256], msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  setting_path(s, path, sizeof path);
  c->errors++;
  if (c->len >= c->cap) return;
  /* A setting the environment gave names its variable, not a line. */
  const char *var = s ? config_setting_get_hook(s) : NULL;
  int line = s ? (int)config_setting_source_line(s) : 0;
  char at[16] = "";
  if (line > 0) snprintf(at, sizeof at, ":%d", line);
  int w = var ? snprintf(c->buf + c->len, c->cap - c->len,
                         "%senvironment %s: %s: %s", c->len ? "\n" : "", var,
                         path, msg)
              : snprintf(c->buf + c->len, c->cap - c->len, "%s%s%s: %s: %s",
                         c->len ? "\n" : "", c->file, at,
                         path[0] ? path : "(top level)", msg);
  if (w > 0) c->len += (size_t)w;
  if (c->len > c->cap) c->len = c->cap;
}

/* Every key in `group` must be in `allowed`: a typo is an error, never a
 * silently ignored setting. */
static void check_keys(ctx *c, const config_setting_t *group,
                       const char *const *allowed) {
  if (!group) return;
  for (int i = 0; i < config_setting_length(group); i++) {
    const config_setting_t *e = config_setting_get_elem(group, (unsigned)i);
    const char *name = config_setting_name(e);
    int ok = 0;
    for (const char *const *a = allowed; *a && !ok; a++)
      ok = strcmp(*a, name) == 0;
    if (!ok) problem(c, e, "unknown setting");
  }
}

static config_setting_t *get_group(ctx *c, config_setting_t *parent,
                                   const char *name, int required) {
  config_setting_t *s = config_setting_get_member(parent, name);
  if (!s) {
    if (required) problem(c, parent, "missing group '%s'", name);
    return NULL;
  }
  if (!config_setting_is_group(s)) {
    problem(c, s, "must be a group { ... }");
    return NULL;
  }
  return s;
}

static const char *get_str(ctx *c, config_setting_t *g, const char *name,
                           const char *def, int required) {
  config_setting_t *s = g ? config_setting_get_member(g, name) : NULL;
  if (!s) {
    if (required) problem(c, g, "missing setting '%s'", name);
    return def;
  }
  if (config_setting_type(s) != CONFIG_TYPE_STRING) {
    problem(c, s, "must be a string");
    return def;
  }
  const char *v = config_setting_get_string(s);
  if (required && v[0] == '\0') problem(c, s, "must not be empty");
  return v;
}

static long long get_int(ctx *c, config_setting_t *g, const char *name,
                         long long def, long long min, long long max) {
  config_setting_t *s = g ? config_setting_get_member(g, name) : NULL;
  if (!s) return def;
  int t = config_setting_type(s);
  if (t != CONFIG_TYPE_INT && t != CONFIG_TYPE_INT64) {
    problem(c, s, "must be an integer");
    return def;
  }
  long long v = config_setting_get_int64(s);
  if (v < min || v > max) {
    problem(c, s, "must be %lld..%lld (got %lld)", min, max, v);
    return def;
  }
  return v;
}

static double get_double(ctx *c, config_setting_t *g, const char *name,
                         double def, double min, double max) {
  config_setting_t *s = g ? config_setting_get_member(g, name) : NULL;
  if (!s) return def;
  double v;
  switch (config_setting_type(s)) {
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64:
      v = (double)config_setting_get_int64(s);
      break;
    case CONFIG_TYPE_FLOAT:
      v = config_setting_get_float(s);
      break;
    default:
      problem(c, s, "must be a number");
      return def;
  }
  if (!(v >= min && v <= max)) {
    problem(c, s, "must be %g..%g (got %g)", min, max, v);
    return def;
  }
  return v;
}

static int get_bool(ctx *c, config_setting_t *g, const char *name, int def) {
  config_setting_t *s = g ? config_setting_get_member(g, name) : NULL;
  if (!s) return def;
  if (config_setting_type(s) != CONFIG_TYPE_BOOL) {
    problem(c, s, "must be true or false");
    return def;
  }
  return config_setting_get_bool(s);
}

static config_setting_t *get_list(ctx *c, config_setting_t *g,
                                  const char *name) {
  config_setting_t *s = config_setting_get_member(g, name);
  if (!s) return NULL;
  if (!config_setting_is_list(s)) {
    problem(c, s, "must be a list ( {...}, {...} )");
    return NULL;
  }
  return s;
}

/* List `name` under g and an array of its length in *arr (elements of
 * `size` bytes, zeroed). Returns the list, or NULL when it is absent or
 * empty or memory ran out (reported). */
static config_setting_t *list_alloc(ctx *c, config_setting_t *g,
                                    const char *name, size_t size, void **arr,
                                    int *n) {
  config_setting_t *l = get_list(c, g, name);
  *n = l ? config_setting_length(l) : 0;
  if (*n == 0) return NULL;
  if (!(*arr = calloc((size_t)*n, size))) {
    problem(c, l, "out of memory");
    return NULL;
  }
  return l;
}

/* Element i of list l when it is a group; otherwise reported, NULL. */
static config_setting_t *group_elem(ctx *c, config_setting_t *l, int i,
                                    const char *example) {
  config_setting_t *e = config_setting_get_elem(l, (unsigned)i);
  if (config_setting_is_group(e)) return e;
  problem(c, e, "must be a group %s", example);
  return NULL;
}

/* Copies into the arena; NULL when it is full (reported as an error). */
static const char *own(wr_cfg *cfg, size_t *used, ctx *c,
                       const config_setting_t *s, const char *a,
                       const char *b) {
  size_t need = strlen(a) + strlen(b) + 1;
  if (*used + need > OWNED_MAX) {
    problem(c, s, "too many or too long paths");
    return NULL;
  }
  char *dst = cfg->owned + *used;
  memcpy(dst, a, strlen(a));
  memcpy(dst + strlen(a), b, strlen(b) + 1);
  *used += need;
  return dst;
}

/* Relative to the config file's folder; "./" when it was named without
 * one, so dlopen never searches the library path for a plugin. */
static const char *resolve_path(wr_cfg *cfg, size_t *used, ctx *c,
                                const config_setting_t *s, const char *p) {
  if (!p || p[0] == '/' || p[0] == '\0') return p;
  char dir[PATH_MAX];
  snprintf(dir, sizeof dir, "%s", cfg->path);
  char *slash = strrchr(dir, '/');
  if (!slash) return own(cfg, used, c, s, "./", p);
  slash[1] = '\0';
  return own(cfg, used, c, s, dir, p);
}

/* A secret file: a regular file of 1..WR_CFG_MAX_SECRET bytes once its
 * trailing newline is removed, without a NUL (which would cut the
 * password or token short). Anything else is an error, never an empty
 * or cut password; a FIFO is refused, never waited on (secret.h).
 * common/args.c reads --password-file by the same rules: change
 * both. */
static const char *read_secret(wr_cfg *cfg, size_t *used, ctx *c,
                               const config_setting_t *s, const char *path) {
  char buf[WR_CFG_MAX_SECRET + 3], why[PATH_MAX + 128];
  size_t n;
  if (wr_secret_read(path, buf, WR_CFG_MAX_SECRET, &n, why, sizeof why)) {
    problem(c, s, "%s", why);
    return NULL;
  }
  const char *bad = n == 0                 ? "is empty"
                    : memchr(buf, '\0', n) ? "holds a NUL byte"
                                           : NULL;
  buf[n] = '\0';
  const char *own_copy = bad ? NULL : own(cfg, used, c, s, buf, "");
  OPENSSL_cleanse(buf, sizeof buf);
  if (bad) problem(c, s, "'%s' %s", path, bad);
  return own_copy;
}

/* The secret in the file that setting `name` of g names, or NULL when the
 * setting is absent (or unusable: reported). */
static const char *secret_file(wr_cfg *cfg, size_t *used, ctx *c,
                               config_setting_t *g, const char *name) {
  config_setting_t *s = g ? config_setting_get_member(g, name) : NULL;
  if (!s) return NULL;
  const char *p = resolve_path(cfg, used, c, s, get_str(c, g, name, NULL, 1));
  return p ? read_secret(cfg, used, c, s, p) : NULL;
}

/* An optional path that, when given, must not be empty. */
static const char *opt_path(wr_cfg *cfg, size_t *used, ctx *c,
                            config_setting_t *g, const char *name) {
  const char *v = get_str(c, g, name, NULL, 0);
  if (v && !v[0]) {
    problem(c, config_setting_get_member(g, name), "must not be empty");
    return NULL;
  }
  return resolve_path(cfg, used, c, g, v);
}

/* ---- the environment over the file (docs/features.md, "Configuration from the
 * environment"; docs/config.md has the same table) ---------------------- */

typedef struct env_setting {
  const char *var;  /* WARREN_... (for handlers: the part after the name) */
  const char *path; /* the setting, dotted */
  int type;         /* CONFIG_TYPE_INT, _FLOAT, _BOOL or _STRING */
} env_setting;

static const env_setting env_global[] = {
    {"WARREN_BROKER_URL", "broker.url", CONFIG_TYPE_STRING},
    {"WARREN_BROKER_HOST", "broker.host", CONFIG_TYPE_STRING},
    {"WARREN_BROKER_PORT", "broker.port", CONFIG_TYPE_INT},
    {"WARREN_BROKER_VHOST", "broker.vhost", CONFIG_TYPE_STRING},
    {"WARREN_BROKER_USER", "broker.user", CONFIG_TYPE_STRING},
    {"WARREN_BROKER_PASSWORD_FILE", "broker.password_file", CONFIG_TYPE_STRING},
    {"WARREN_BROKER_HEARTBEAT", "broker.heartbeat", CONFIG_TYPE_INT},
    {"WARREN_BROKER_TLS", "broker.tls.enabled", CONFIG_TYPE_BOOL},
    {"WARREN_BROKER_TLS_CA_FILE", "broker.tls.ca_file", CONFIG_TYPE_STRING},
    {"WARREN_LOG_FORMAT", "worker.log_format", CONFIG_TYPE_STRING},
    {"WARREN_SHUTDOWN_GRACE", "worker.shutdown_grace", CONFIG_TYPE_FLOAT},
    {"WARREN_HEALTH_LISTEN", "health.listen", CONFIG_TYPE_STRING},
    {"WARREN_HEALTH_PORT", "health.port", CONFIG_TYPE_INT},
    {"WARREN_EVENTS_ENABLED", "events.enabled", CONFIG_TYPE_BOOL},
    {"WARREN_EVENTS_EXCHANGE", "events.exchange", CONFIG_TYPE_STRING},
    {"WARREN_EVENTS_HEARTBEAT", "events.heartbeat", CONFIG_TYPE_FLOAT},
};

/* WARREN_HANDLER_<NAME>_<suffix>, NAME the handler's name in capitals
 * with every other character than A-Z and 0-9 as '_'. */
static const env_setting env_handler[] = {
    {"CONCURRENCY", "concurrency", CONFIG_TYPE_INT},
    {"PREFETCH", "prefetch", CONFIG_TYPE_INT},
    {"TIMEOUT", "timeout", CONFIG_TYPE_FLOAT},
    {"MAX_ATTEMPTS", "retry.max_attempts", CONFIG_TYPE_INT},
    {"MAX_RESULT", "max_result", CONFIG_TYPE_INT},
};

/* Settings an environment variable replaces, with the file's settings
 * they make void (a URL from the environment wins over the file's host;
 * a password file over the file's password). */
static void drop_member(config_setting_t *g, const char *name) {
  if (g && config_setting_get_member(g, name)) config_setting_remove(g, name);
}

/* Put value (from variable var) at the dotted path under root, creating
 * groups, replacing what the file had there. 0, or -1 when the value is
 * not of the setting's type (the problem names the variable). */
static int env_put(ctx *c, config_setting_t *root, const char *path,
                   const char *var, const char *value, int type) {
  char buf[256];
  snprintf(buf, sizeof buf, "%s", path);
  config_setting_t *g = root;
  char *save = NULL, *part = strtok_r(buf, ".", &save);
  while (part) {
    char *next = strtok_r(NULL, ".", &save);
    config_setting_t *m = config_setting_get_member(g, part);
    if (!next) {
      if (m) config_setting_remove(g, part);
      /* Whole numbers as 64-bit, so a value out of int's range is
       * refused by its setting's bounds, with the value named. */
      m = config_setting_add(
          g, part, type == CONFIG_TYPE_INT ? CONFIG_TYPE_INT64 : type);
      if (!m) return -1;
      config_setting_set_hook(m, (void *)var);
      char *end;
      errno = 0;
      switch (type) {
        case CONFIG_TYPE_INT: {
          long long v = strtoll(value, &end, 10);
          if (errno || end == value || *end) {
            problem(c, m, "'%s' is not a whole number", value);
            return -1;
          }
          config_setting_set_int64(m, v);
          return 0;
        }
        case CONFIG_TYPE_FLOAT: {
          double v = strtod(value, &end);
          if (errno || end == value || *end) {
            problem(c, m, "'%s' is not a number", value);
            return -1;
          }
          config_setting_set_float(m, v);
          return 0;
        }
        case CONFIG_TYPE_BOOL: {
          int t = !strcmp(value, "true") || !strcmp(value, "1") ||
                  !strcmp(value, "yes");
          int f = !strcmp(value, "false") || !strcmp(value, "0") ||
                  !strcmp(value, "no");
          if (!t && !f) {
            problem(c, m, "'%s' is not true or false", value);
            return -1;
          }
          config_setting_set_bool(m, t);
          return 0;
        }
        default:
          config_setting_set_string(m, value);
          return 0;
      }
    }
    if (!m) m = config_setting_add(g, part, CONFIG_TYPE_GROUP);
    if (!m || !config_setting_is_group(m)) {
      problem(c, m ? m : g, "cannot take %s: not a group", var);
      return -1;
    }
    g = m;
    part = next;
  }
  return -1;
}

static void env_name(const char *name, char *out, size_t len) {
  size_t i = 0;
  for (; name[i] && i + 1 < len; i++) {
    char ch = name[i];
    out[i] = (ch >= 'a' && ch <= 'z')   ? (char)(ch - 'a' + 'A')
             : (ch >= 'A' && ch <= 'Z') ? ch
             : (ch >= '0' && ch <= '9') ? ch
                                        : '_';
  }
  out[i] = '\0';
}

/* Apply every WARREN_* variable that is set over the parsed file. The
 * variables' names are static strings: the settings' hooks point at them
 * (problem() and wr_cfg_print read them). */
static void apply_env(ctx *c, config_setting_t *root) {
  static char handler_vars[WR_CFG_MAX_HANDLERS]
                          [sizeof env_handler / sizeof *env_handler][160];
  for (size_t i = 0; i < sizeof env_global / sizeof *env_global; i++) {
    const env_setting *e = &env_global[i];
    const char *v = getenv(e->var);
    if (!v) continue;
    config_setting_t *b = config_setting_get_member(root, "broker");
    if (!strcmp(e->var, "WARREN_BROKER_URL")) {
      static const char *const by_url[] = {"host", "port", "vhost", "user",
                                           "password"};
      for (size_t k = 0; k < 5; k++) drop_member(b, by_url[k]);
    } else if (!strcmp(e->var, "WARREN_BROKER_PASSWORD_FILE")) {
      drop_member(b, "password");
    } else if (!strncmp(e->var, "WARREN_BROKER_", 14) &&
               strcmp(e->var, "WARREN_BROKER_HEARTBEAT") &&
               strncmp(e->var, "WARREN_BROKER_TLS", 17) &&
               !getenv("WARREN_BROKER_URL")) {
      drop_member(b, "url"); /* a part given alone wins over the file's URL */
    }
    env_put(c, root, e->path, e->var, v, e->type);
  }
  config_setting_t *hs = config_setting_get_member(root, "handlers");
  for (int i = 0;
       hs && i < config_setting_length(hs) && i < WR_CFG_MAX_HANDLERS; i++) {
    config_setting_t *h = config_setting_get_elem(hs, (unsigned)i);
    const char *name = NULL;
    if (!h || !config_setting_is_group(h) ||
        !config_setting_lookup_string(h, "name", &name))
      continue;
    char up[128];
    env_name(name, up, sizeof up);
    for (size_t k = 0; k < sizeof env_handler / sizeof *env_handler; k++) {
      char *var = handler_vars[i][k];
      snprintf(var, sizeof handler_vars[i][k], "WARREN_HANDLER_%s_%s", up,
               env_handler[k].var);
      const char *v = getenv(var);
      if (v) env_put(c, h, env_handler[k].path, var, v, env_handler[k].type);
    }
  }
}

/* broker.nodes: the nodes of a cluster, tried in turn (docs/config.md). */
static void load_nodes(ctx *c, wr_cfg *cfg, size_t *used, config_setting_t *g) {
  config_setting_t *l = g ? config_setting_get_member(g, "nodes") : NULL;
  if (!l) return;
  if (config_setting_type(l) != CONFIG_TYPE_ARRAY &&
      config_setting_type(l) != CONFIG_TYPE_LIST) {
    problem(c, l, "must be a list of strings such as [\"mq1:5672\", \"mq2\"]");
    return;
  }
  int n = config_setting_length(l);
  if (n < 1 || n > WR_CFG_MAX_NODES) {
    problem(c, l, "must list 1..%d nodes", WR_CFG_MAX_NODES);
    return;
  }
  if (config_setting_get_member(g, "host") ||
      config_setting_get_member(g, "port"))
    problem(c, l, "set either broker.nodes or broker.host and port");
  cfg->nodes = calloc((size_t)n, sizeof *cfg->nodes);
  if (!cfg->nodes) {
    problem(c, l, "out of memory");
    return;
  }
  for (int i = 0; i < n; i++) {
    config_setting_t *e = config_setting_get_elem(l, (unsigned)i);
    const char *v = e && config_setting_type(e) == CONFIG_TYPE_STRING
                        ? config_setting_get_string(e)
                        : NULL;
    char host[256], why[300];
    int port;
    if (!v) {
      problem(c, e ? e : l, "must be a string");
      continue;
    }
    /* The default port follows TLS (an amqps:// URL sets it). */
    int def = cfg->broker.tls.enabled ? 5671 : 5672;
    if (config_setting_get_member(g, "url")) def = cfg->broker.port;
    if (wr_conn_node_parse(v, def, host, sizeof host, &port, why, sizeof why) !=
        0) {
      problem(c, e, "%s", why);
      continue;
    }
    cfg->nodes[cfg->broker.n_nodes].host = own(cfg, used, c, e, host, "");
    cfg->nodes[cfg->broker.n_nodes++].port = port;
  }
  cfg->broker.nodes = cfg->nodes;
  cfg->broker.host = cfg->nodes[0].host ? cfg->nodes[0].host : "";
  cfg->broker.port = cfg->nodes[0].port;
}

static void load_broker(ctx *c, wr_cfg *cfg, size_t *used,
                        config_setting_t *root) {
  static const char *const keys[] = {"url",
                                     "host",
                                     "port",
                                     "nodes",
                                     "vhost",
                                     "user",
                                     "password",
                                     "password_file",
                                     "heartbeat",
                                     "connect_timeout",
                                     "setup_timeout",
                                     "tls",
                                     NULL};
  static const char *const tls_keys[] = {
      "enabled",     "ca_file",         "cert_file", "key_file",
      "verify_peer", "verify_hostname", NULL};
  wr_broker_cfg *b = &cfg->broker;
  config_setting_t *g = get_group(c, root, "broker", 0);
  check_keys(c, g, keys);
  b->host = get_str(c, g, "host", "127.0.0.1", 0);
  b->port = (int)get_int(c, g, "port", 5672, 1, 65535);
  b->vhost = get_str(c, g, "vhost", "/", 0);
  b->user = get_str(c, g, "user", "guest", 0);
  config_setting_t *url = g ? config_setting_get_member(g, "url") : NULL;
  int from_url = 0;
  if (url) {
    static const char *const parts[] = {"host", "port", "vhost", "user",
                                        "password"};
    for (size_t k = 0; k < 5; k++)
      if (config_setting_get_member(g, parts[k]))
        problem(c, config_setting_get_member(g, parts[k]),
                "set either broker.url or the broker's %s", parts[k]);
    char why[256];
    const char *u = get_str(c, g, "url", NULL, 1);
    if (u && wr_conn_url(u, b, cfg->url_store, sizeof cfg->url_store, why,
                         sizeof why) != 0)
      problem(c, url, "%s", why);
    from_url = u != NULL;
  }
  b->heartbeat = (int)get_int(c, g, "heartbeat", 30, 0, 3600);
  b->connect_timeout = get_double(c, g, "connect_timeout", 5, 0.1, 600);
  b->setup_timeout = get_double(c, g, "setup_timeout", 60, 1, 3600);
  config_setting_t *pf =
      g ? config_setting_get_member(g, "password_file") : NULL;
  config_setting_t *pw = g ? config_setting_get_member(g, "password") : NULL;
  if (pf && pw) problem(c, pf, "set either password or password_file");
  if (pf) {
    b->password = secret_file(cfg, used, c, g, "password_file");
  } else if (!from_url) {
    b->password = get_str(c, g, "password", "guest", 0);
    struct stat st;
    /* A password in a file others can read is a password others know. */
    if (pw && stat(cfg->path, &st) == 0 && (st.st_mode & S_IROTH))
      wr_warn(
          "%s:%d: broker.password is in a file every user can read; use "
          "password_file, or chmod o-r %s",
          c->file, config_setting_source_line(pw), cfg->path);
  }
  config_setting_t *t = g ? get_group(c, g, "tls", 0) : NULL;
  check_keys(c, t, tls_keys);
  /* amqps:// turns TLS on; the tls group's other settings still apply. */
  b->tls.enabled = get_bool(c, t, "enabled", 0) || (from_url && b->tls.enabled);
  b->tls.ca_file = opt_path(cfg, used, c, t, "ca_file");
  b->tls.cert_file = opt_path(cfg, used, c, t, "cert_file");
  b->tls.key_file = opt_path(cfg, used, c, t, "key_file");
  b->tls.verify_peer = get_bool(c, t, "verify_peer", 1);
  b->tls.verify_hostname = get_bool(c, t, "verify_hostname", 1);
  if (t && (!b->tls.cert_file) != (!b->tls.key_file))
    problem(c, t, "cert_file and key_file go together");
  /* OpenSSL reads them at each connect: a missing one (or a FIFO, which
   * would block it) is an error now, not at the first connection. */
  static const char *const files[] = {"ca_file", "cert_file", "key_file"};
  const char *paths[] = {b->tls.ca_file, b->tls.cert_file, b->tls.key_file};
  for (size_t k = 0; b->tls.enabled && k < 3; k++) {
    char why[PATH_MAX + 128];
    if (paths[k] && wr_secret_check(paths[k], why, sizeof why) != 0)
      problem(c, config_setting_get_member(t, files[k]), "%s", why);
  }
  load_nodes(c, cfg, used, g);
}

static void load_exchanges(ctx *c, wr_cfg *cfg, config_setting_t *root) {
  static const char *const keys[] = {"name", "type", "durable", NULL};
  static const char *const types[] = {"direct", "topic", "fanout", "headers",
                                      NULL};
  int n;
  config_setting_t *l = list_alloc(c, root, "exchanges", sizeof *cfg->exchanges,
                                   (void **)&cfg->exchanges, &n);
  for (int i = 0; l && i < n; i++) {
    config_setting_t *e = group_elem(c, l, i, "{ name = ...; }");
    if (!e) continue;
    check_keys(c, e, keys);
    wr_exchange_cfg *x = &cfg->exchanges[cfg->n_exchanges++];
    x->name = get_str(c, e, "name", "", 1);
    x->type = get_str(c, e, "type", "direct", 0);
    x->durable = get_bool(c, e, "durable", 1);
    if (strlen(x->name) > 255)
      problem(c, config_setting_get_member(e, "name"),
              "is %zu bytes; RabbitMQ's names are 1..255 bytes",
              strlen(x->name));
    int ok = 0;
    for (const char *const *t = types; *t; t++) ok |= strcmp(*t, x->type) == 0;
    if (!ok) problem(c, e, "type must be direct, topic, fanout or headers");
    for (size_t j = 0; j + 1 < cfg->n_exchanges; j++)
      if (strcmp(cfg->exchanges[j].name, x->name) == 0)
        problem(c, e, "exchange '%s' is declared twice", x->name);
  }
}

static void load_bindings(ctx *c, wr_handler_cfg *h, config_setting_t *g) {
  static const char *const keys[] = {"exchange", "routing_key", NULL};
  int n;
  config_setting_t *l = list_alloc(c, g, "bindings", sizeof *h->bindings,
                                   (void **)&h->bindings, &n);
  for (int i = 0; l && i < n; i++) {
    config_setting_t *e = group_elem(c, l, i, "{ exchange = ...; }");
    if (!e) continue;
    check_keys(c, e, keys);
    wr_binding_cfg *b = &h->bindings[h->n_bindings++];
    b->exchange = get_str(c, e, "exchange", "", 1);
    b->routing_key = get_str(c, e, "routing_key", "", 0);
  }
}

static void load_retry(ctx *c, wr_handler_cfg *h, config_setting_t *e) {
  static const char *const keys[] = {"max_attempts", "backoff",        "jitter",
                                     "max_crashes",  "max_deliveries", NULL};
  static const double default_backoff[] = {1, 10, 60};
  config_setting_t *g = get_group(c, e, "retry", 0);
  check_keys(c, g, keys);
  wr_retry_cfg *r = &h->retry;
  r->max_attempts = (int)get_int(c, g, "max_attempts", 5, 1, 1000);
  r->max_crashes = (int)get_int(c, g, "max_crashes", 3, 1, 1000);
  /* Far above max_attempts: lost connections return prefetched copies
   * that never ran (docs/retries.md, "Attempt counting"). */
  r->max_deliveries = (int)get_int(c, g, "max_deliveries",
                                   4 * (long long)r->max_attempts, 2, 100000);
  r->jitter = get_double(c, g, "jitter", 0.1, 0, 1);
  config_setting_t *b = g ? config_setting_get_member(g, "backoff") : NULL;
  if (!b) {
    r->n_backoff = 3;
    memcpy(r->backoff, default_backoff, sizeof default_backoff);
    return;
  }
  int n = config_setting_is_aggregate(b) ? config_setting_length(b) : -1;
  if (n < 1 || n > WR_CFG_MAX_BACKOFF) {
    problem(c, b, "must be a list of 1..%d delays in seconds, e.g. [1.0, 10.0]",
            WR_CFG_MAX_BACKOFF);
    return;
  }
  for (int i = 0; i < n; i++) {
    config_setting_t *v = config_setting_get_elem(b, (unsigned)i);
    int t = config_setting_type(v);
    double d = t == CONFIG_TYPE_FLOAT ? config_setting_get_float(v)
               : (t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64)
                   ? (double)config_setting_get_int64(v)
                   : -1;
    if (!(d >= 0.001 && d <= 86400)) {
      problem(c, v, "each delay must be a number of seconds, 0.001..86400");
      return;
    }
    r->backoff[i] = d;
  }
  r->n_backoff = n;
}

/* handlers[].breaker: off without the group. A bound of 0 turns its
 * trigger off; at least one must be on. */
static void load_breaker(ctx *c, wr_handler_cfg *h, config_setting_t *e) {
  static const char *const keys[] = {
      "failure_rate", "slow_ms",   "slow_percentile", "window",
      "min_jobs",     "cool_down", "trial_jobs",      NULL};
  config_setting_t *g = get_group(c, e, "breaker", 0);
  wr_breaker_cfg *b = &h->breaker;
  b->enabled = g != NULL;
  check_keys(c, g, keys);
  b->failure_rate = get_double(c, g, "failure_rate", 0.5, 0, 1);
  b->slow_ms = get_double(c, g, "slow_ms", 0, 0, 86400000);
  b->slow_percentile = get_double(c, g, "slow_percentile", 0.9, 0.5, 1);
  b->window = (int)get_int(c, g, "window", 20, 2, WR_CFG_MAX_BREAKER_WINDOW);
  b->min_jobs = (int)get_int(c, g, "min_jobs", b->window < 10 ? b->window : 10,
                             1, WR_CFG_MAX_BREAKER_WINDOW);
  b->cool_down = get_double(c, g, "cool_down", 30, 0.1, 86400);
  b->trial_jobs = (int)get_int(c, g, "trial_jobs", 3, 1, 1000);
  if (!g) return;
  if (b->min_jobs > b->window)
    problem(c, config_setting_get_member(g, "min_jobs"),
            "must be at most window (%d): the window holds only that many "
            "jobs",
            b->window);
  if (b->failure_rate == 0 && b->slow_ms == 0)
    problem(c, g,
            "failure_rate and slow_ms are both 0: nothing would open the "
            "breaker");
}

/* The `signing` section: the keyring, read now so a missing, unreadable
 * or short key stops the start with its file and line. */
static void load_signing(ctx *c, wr_cfg *cfg, size_t *used,
                         config_setting_t *root) {
  static const char *const keys[] = {"keys", "countersign_key", "window", NULL};
  static const char *const key_keys[] = {"id", "file", "env", NULL};
  wr_signing_cfg *sg = &cfg->signing;
  config_setting_t *g = get_group(c, root, "signing", 0);
  sg->window = 300;
  if (!g) return;
  check_keys(c, g, keys);
  sg->window = get_double(c, g, "window", 300, 0.001, 86400 * 366);
  config_setting_t *l = get_list(c, g, "keys");
  if (!l || !config_setting_length(l)) {
    problem(c, l ? l : g, "signing needs at least one key in signing.keys");
    return;
  }
  if (!(sg->keyring = wr_keyring_new())) {
    problem(c, g, "out of memory");
    return;
  }
  for (int i = 0; i < config_setting_length(l); i++) {
    config_setting_t *e = group_elem(c, l, i, "{ id = ...; file = ...; }");
    if (!e) continue;
    check_keys(c, e, key_keys);
    const char *id = get_str(c, e, "id", "", 1);
    const char *file = get_str(c, e, "file", NULL, 0);
    const char *env = get_str(c, e, "env", NULL, 0);
    if (!file == !env) {
      problem(c, e, "key '%s': set exactly one of file and env", id);
      continue;
    }
    if (file) file = resolve_path(cfg, used, c, e, file);
    if (!file && !env) continue;
    unsigned char secret[WARREN_SIGN_MAX_KEY + 2];
    size_t len;
    char why[400];
    struct stat st;
    if (wr_keyring_read(file, env, secret, sizeof secret, &len, why,
                        sizeof why) != 0 ||
        wr_keyring_add(sg->keyring, id, secret, len, why, sizeof why) != 0)
      problem(c, e, "%s", why);
    else if (file && stat(file, &st) == 0 && (st.st_mode & (S_IRGRP | S_IROTH)))
      /* Whoever reads the key can make the worker run anything. */
      wr_warn("%s:%d: key file %s can be read by other users; chmod 600 it",
              c->file, config_setting_source_line(e), file);
    OPENSSL_cleanse(secret, sizeof secret);
  }
  config_setting_t *ck = config_setting_get_member(g, "countersign_key");
  sg->countersign_key = get_str(c, g, "countersign_key", NULL, 1);
  if (sg->countersign_key && sg->countersign_key[0] &&
      !wr_keyring_has(sg->keyring, sg->countersign_key,
                      strlen(sg->countersign_key)))
    problem(c, ck, "'%s' is not a key in signing.keys", sg->countersign_key);
}

/* A list l of 1..max strings, each one that ok (a check that says what
 * is wrong with problem and returns 0) accepts, into *out (calloc'd; the
 * strings are libconfig's) and *n. usage: the error of a list that is
 * not one, or is empty or too long. */
static void load_strings(ctx *c, config_setting_t *l, int max,
                         const char *usage, const void *arg,
                         int (*ok)(ctx *, config_setting_t *, const char *,
                                   const void *),
                         const char ***out, size_t *n) {
  int len = config_setting_is_array(l) ? config_setting_length(l) : -1;
  if (len < 1 || len > max) {
    problem(c, l, "%s", usage);
    return;
  }
  if (!(*out = calloc((size_t)len, sizeof **out))) {
    problem(c, l, "out of memory");
    return;
  }
  for (int i = 0; i < len; i++) {
    config_setting_t *v = config_setting_get_elem(l, (unsigned)i);
    const char *s = config_setting_type(v) == CONFIG_TYPE_STRING
                        ? config_setting_get_string(v)
                        : NULL;
    if (ok(c, v, s, arg)) (*out)[(*n)++] = s;
  }
}

static int key_id_ok(ctx *c, config_setting_t *v, const char *id,
                     const void *ring) {
  if (id && wr_keyring_has(ring, id, strlen(id))) return 1;
  problem(c, v, "'%s' is not a key in signing.keys", id ? id : "?");
  return 0;
}

static void load_handler_signing(ctx *c, wr_cfg *cfg, wr_handler_cfg *h,
                                 config_setting_t *e) {
  const wr_keyring *ring = cfg->signing.keyring;
  config_setting_t *rs = config_setting_get_member(e, "require_signature");
  h->require_signature = get_bool(c, e, "require_signature", ring != NULL);
  if (rs && h->require_signature && !ring)
    problem(c, rs, "require_signature needs keys: add a signing section");
  config_setting_t *l = config_setting_get_member(e, "signing_keys");
  if (!l) return;
  if (!ring) {
    problem(c, l, "signing_keys needs a signing section");
    return;
  }
  load_strings(c, l, INT32_MAX, "must be a list of key ids, e.g. [\"gw-1\"]",
               ring, key_id_ok, &h->signing_keys, &h->n_signing_keys);
}

static int reply_queue_ok(ctx *c, config_setting_t *v, const char *q,
                          const void *unused) {
  (void)unused;
  if (!q || !q[0] || strlen(q) > 255)
    problem(c, v, "must be a queue name of 1 to 255 bytes");
  else if (!strncmp(q, "amq.", 4))
    problem(c, v,
            "'%s': direct reply-to needs no listing, and other amq. names "
            "are the broker's",
            q);
  else
    return 1;
  return 0;
}

/* The named queues a handler's results may go to (docs/results.md): a
 * job's reply_to is not covered by its signature, so it only picks among
 * the queues the operator listed. */
static void load_reply_queues(ctx *c, wr_handler_cfg *h, config_setting_t *e) {
  config_setting_t *l = config_setting_get_member(e, "reply_queues");
  if (!l) return;
  char usage[80];
  snprintf(usage, sizeof usage,
           "must be a list of 1 to %d queue names, e.g. [\"replies\"]",
           WR_CFG_MAX_REPLY_QUEUES);
  load_strings(c, l, WR_CFG_MAX_REPLY_QUEUES, usage, NULL, reply_queue_ok,
               &h->reply_queues, &h->n_reply_queues);
}

/* The work queue's x-max-priority (docs/features.md, "Priorities"): a
 * classic queue's argument, set by Warren's declare only. Called once
 * queue_type and declare are read. */
static void load_max_priority(ctx *c, wr_handler_cfg *h, config_setting_t *e) {
  config_setting_t *s = config_setting_get_member(e, "max_priority");
  if (!s) return;
  h->max_priority = (int)get_int(c, e, "max_priority", 0, 1, 255);
  if (!h->max_priority) return;
  if (h->quorum)
    problem(c, s,
            "needs queue_type = \"classic\": RabbitMQ refuses x-max-priority "
            "on a quorum queue (from 4.0 a quorum queue has two priorities "
            "without it, 5 and over before the rest)");
  else if (!h->declare)
    problem(c, s,
            "is set when Warren declares the queue: with declare = false, "
            "declare '%s' with x-max-priority = %d yourself and leave "
            "max_priority out",
            h->queue, h->max_priority);
  else if (h->max_priority > 10)
    wr_warn(
        "%s:%d: handlers.%s.max_priority %d: RabbitMQ recommends at most 10 "
        "(each level is a sub-queue that costs memory and CPU)",
        c->file, config_setting_source_line(s), h->name, h->max_priority);
}

/* tenant_header, tenant_concurrency, tenant_hold (framework/tenant.h):
 * called once concurrency, prefetch, isolation and timeout are read. */
static void load_tenant(ctx *c, wr_handler_cfg *h, config_setting_t *e) {
  config_setting_t *hs = config_setting_get_member(e, "tenant_header");
  config_setting_t *cs = config_setting_get_member(e, "tenant_concurrency");
  config_setting_t *ks = config_setting_get_member(e, "tenant_hold");
  if (!hs && !cs && !ks) return;
  const char *name = get_str(c, e, "tenant_header", "", 0);
  h->tenant_concurrency =
      (int)get_int(c, e, "tenant_concurrency", 0, 1, h->concurrency);
  h->tenant_hold = (int)get_int(c, e, "tenant_hold", 1000, 0, 100000);
  if (!hs) {
    problem(c, cs ? cs : ks,
            "needs tenant_header, the header that names a job's tenant");
    return;
  }
  if (config_setting_type(hs) != CONFIG_TYPE_STRING) return; /* said */
  size_t n = strlen(name), ok = n >= 1 && n <= 128;
  for (size_t i = 0; ok && i < n; i++)
    ok = isalnum((unsigned char)name[i]) || strchr("-_.", name[i]);
  if (!ok) {
    problem(c, hs,
            "must be 1..128 bytes of letters, digits, '-', '_' and '.' (got "
            "'%s')",
            name);
    return;
  }
  if (strncasecmp(name, "x-", 2) == 0 || strncasecmp(name, "warren-", 7) == 0) {
    problem(c, hs,
            "'%s': names starting with x- are the broker's (RabbitMQ 3.13 and "
            "later drop some a publisher sets) and warren- ones are "
            "Warren's; use another, such as \"tenant\"",
            name);
    return;
  }
  if (!cs) {
    problem(c, hs, "needs tenant_concurrency, 1..concurrency (%d)",
            h->concurrency);
    return;
  }
  if (!h->isolated) {
    problem(c, hs,
            "needs isolation: in process one job runs at a time, whatever "
            "its tenant");
    return;
  }
  if (h->tenant_concurrency < 1) return; /* out of range: said above */
  h->tenant_header = name;
  /* A held job waits for the jobs of its tenant before it, each up to
   * the timeout, unacked all along (consumer_timeout, as below). */
  double worst =
      h->timeout * ((h->prefetch + h->tenant_hold + h->tenant_concurrency - 1) /
                    h->tenant_concurrency);
  if (h->timeout > 0 && worst > 1800)
    wr_warn(
        "%s:%d: handler %s: a job held for its tenant may stay unacked up to "
        "%.0f s, over RabbitMQ's default consumer_timeout of 1800 s: lower "
        "tenant_hold, prefetch or timeout, or raise consumer_timeout",
        c->file, config_setting_source_line(hs), h->name, worst);
}

static void load_handler(ctx *c, wr_cfg *cfg, size_t *used, config_setting_t *e,
                         wr_handler_cfg *h) {
  static const char *const keys[] = {"name",
                                     "queue",
                                     "plugin",
                                     "prefetch",
                                     "concurrency",
                                     "declare",
                                     "durable",
                                     "queue_type",
                                     "max_priority",
                                     "bindings",
                                     "settings",
                                     "retry",
                                     "timeout",
                                     "isolation",
                                     "max_jobs_per_worker",
                                     "max_worker_rss",
                                     "max_body",
                                     "max_result",
                                     "require_signature",
                                     "signing_keys",
                                     "delayed",
                                     "reply_queues",
                                     "breaker",
                                     "tenant_header",
                                     "tenant_concurrency",
                                     "tenant_hold",
                                     NULL};
  check_keys(c, e, keys);
  h->line = config_setting_source_line(e);
  h->name = get_str(c, e, "name", "", 1);
  h->queue = get_str(c, e, "queue", h->name, 0);
  if (config_setting_get_member(e, "queue") && !h->queue[0])
    problem(c, config_setting_get_member(e, "queue"), "must not be empty");
  h->plugin = resolve_path(cfg, used, c, e, get_str(c, e, "plugin", "", 1));
  struct stat st;
  /* Anyone who can write the plugin can run code as this worker. */
  if (h->plugin && h->plugin[0] && stat(h->plugin, &st) == 0 &&
      (st.st_mode & S_IWOTH))
    wr_warn("%s:%d: handler %s: plugin %s is writable by every user", c->file,
            h->line, h->name, h->plugin);
  h->concurrency =
      (int)get_int(c, e, "concurrency", 1, 1, WR_CFG_MAX_CONCURRENCY);
  config_setting_t *pf = config_setting_get_member(e, "prefetch");
  h->prefetch = (int)get_int(c, e, "prefetch", 10, 1, WR_CFG_MAX_PREFETCH);
  if (pf && h->prefetch < h->concurrency)
    wr_warn(
        "%s:%d: handlers.%s.prefetch %d is below concurrency %d: %d "
        "worker(s) will sit idle",
        c->file, config_setting_source_line(pf), h->name, h->prefetch,
        h->concurrency, h->concurrency - h->prefetch);
  if (!pf && h->prefetch < h->concurrency) h->prefetch = h->concurrency;
  h->declare = get_bool(c, e, "declare", 1);
  h->durable = get_bool(c, e, "durable", 1);
  const char *qt = get_str(c, e, "queue_type", "quorum", 0);
  h->quorum = strcmp(qt, "quorum") == 0;
  if (!h->quorum && strcmp(qt, "classic") != 0)
    problem(c, config_setting_get_member(e, "queue_type"),
            "must be \"quorum\" or \"classic\"");
  if (h->quorum && !h->durable)
    problem(c, config_setting_get_member(e, "durable"),
            "quorum queues are always durable");
  load_max_priority(c, h, e);
  load_bindings(c, h, e);
  load_retry(c, h, e);
  load_breaker(c, h, e);
  /* RabbitMQ refuses names over 255 bytes: check the longest derived one
   * here, not at the first retry. */
  char name[512];
  for (int i = 0; i < h->retry.n_backoff; i++)
    if (strlen(wr_name_retry_queue(h->queue, h->retry.backoff[i], name,
                                   sizeof name)) > 255)
      problem(c,
              config_setting_get_member(e, "queue")
                  ? config_setting_get_member(e, "queue")
                  : e,
              "queue name too long: its retry queue '%s' would pass RabbitMQ's "
              "255 bytes",
              name);
  h->max_jobs =
      (unsigned long)get_int(c, e, "max_jobs_per_worker", 0, 0, 1000000000);
  h->max_rss_mb = (unsigned)get_int(c, e, "max_worker_rss", 0, 0, 1048576);
  /* RabbitMQ's own limit on a message is 512 MiB (128 MiB by default). */
  h->max_body = (size_t)get_int(c, e, "max_body", 0, 0, 536870912);
  /* A result travels with the job's extras (extras.h), 16 MiB at most. */
  h->max_result = (size_t)get_int(c, e, "max_result", 1048576, 0, 16777216);
  h->timeout = get_double(c, e, "timeout", 0, 0, 86400);
  h->isolated = get_bool(c, e, "isolation", 1);
  if (!h->isolated && h->concurrency != 1)
    problem(c, config_setting_get_member(e, "isolation"),
            "isolation = false runs the handler in the supervisor, one job at "
            "a time: concurrency must be 1");
  if (!h->isolated && (h->max_jobs || h->max_rss_mb))
    problem(c, config_setting_get_member(e, "isolation"),
            "max_jobs_per_worker and max_worker_rss recycle worker processes: "
            "they need isolation");
  if (!h->isolated && h->timeout > 0)
    problem(c, config_setting_get_member(e, "isolation"),
            "a timeout needs isolation (a hung job is stopped by killing its "
            "worker process)");
  /* RabbitMQ closes the channel (or cancels, from 4.3) when a delivery
   * stays unacked past consumer_timeout, 30 min by default. A job can wait
   * for prefetch/concurrency jobs ahead of it before running. */
  double worst =
      h->timeout * ((h->prefetch + h->concurrency - 1) / h->concurrency);
  if (h->timeout > 0 && worst > 1800)
    wr_warn(
        "%s:%d: handler %s: a prefetched job may stay unacked up to %.0f s, "
        "over RabbitMQ's default consumer_timeout of 1800 s: lower prefetch "
        "or timeout, or raise consumer_timeout",
        c->file, h->line, h->name, worst);
  load_tenant(c, h, e);
  load_handler_signing(c, cfg, h, e);
  load_reply_queues(c, h, e);
  h->delayed = get_bool(c, e, "delayed", 0);
  if (h->delayed && !wr_delay_queue_ok(h->queue))
    problem(c, config_setting_get_member(e, "delayed"),
            "queue '%s' cannot take delayed jobs: its name must have no '*' "
            "or '#' and at most %d bytes",
            h->queue, 255 - WR_DELAY_BITS_LEN);
  if (h->delayed) cfg->delays.used = 1;
  config_setting_t *s = config_setting_get_member(e, "settings");
  if (s && !config_setting_is_group(s))
    problem(c, s, "must be a group { ... }");
  else
    h->settings = s;
}

static void load_handlers(ctx *c, wr_cfg *cfg, size_t *used,
                          config_setting_t *root) {
  config_setting_t *l = get_list(c, root, "handlers");
  int n = l ? config_setting_length(l) : 0;
  if (n == 0) {
    problem(c, l ? l : root, "%s",
            l ? "at least one handler is required"
              : "handlers: at least one handler is required");
    return;
  }
  if (n > WR_CFG_MAX_HANDLERS) {
    problem(c, l, "at most %d handlers", WR_CFG_MAX_HANDLERS);
    return;
  }
  if (!list_alloc(c, root, "handlers", sizeof *cfg->handlers,
                  (void **)&cfg->handlers, &n))
    return;
  for (int i = 0; i < n; i++) {
    config_setting_t *e = group_elem(c, l, i, "{ name = ...; }");
    if (!e) continue;
    wr_handler_cfg *h = &cfg->handlers[cfg->n_handlers++];
    load_handler(c, cfg, used, e, h);
    for (size_t j = 0; j + 1 < cfg->n_handlers; j++) {
      if (strcmp(cfg->handlers[j].name, h->name) == 0)
        problem(c, config_setting_get_member(e, "name"),
                "handler name '%s' is used twice (first at line %d)", h->name,
                cfg->handlers[j].line);
      else if (strcmp(cfg->handlers[j].queue, h->queue) == 0)
        problem(c, e, "queue '%s' is consumed by two handlers", h->queue);
    }
  }
}

static void load_worker(ctx *c, wr_cfg *cfg, config_setting_t *root) {
  static const char *const keys[] = {"shutdown_grace",
                                     "log_format",
                                     "reconnect_min",
                                     "reconnect_max",
                                     "restart_min",
                                     "restart_max",
                                     "exit_after_refused_logins",
                                     NULL};
  config_setting_t *g = get_group(c, root, "worker", 0);
  check_keys(c, g, keys);
  cfg->shutdown_grace = get_double(c, g, "shutdown_grace", 30, 0, 86400);
  cfg->reconnect_min = get_double(c, g, "reconnect_min", 0.5, 0.01, 3600);
  cfg->reconnect_max = get_double(c, g, "reconnect_max", 30, 0.01, 3600);
  cfg->restart_min = get_double(c, g, "restart_min", 0.1, 0.01, 3600);
  cfg->restart_max = get_double(c, g, "restart_max", 10, 0.01, 3600);
  cfg->exit_after_refused_logins =
      (int)get_int(c, g, "exit_after_refused_logins", 0, 0, 1000000);
  const char *lf = get_str(c, g, "log_format", "text", 0);
  cfg->log_format = strcmp(lf, "json") == 0     ? WR_LOG_JSON
                    : strcmp(lf, "logfmt") == 0 ? WR_LOG_LOGFMT
                                                : WR_LOG_TEXT;
  if (cfg->log_format == WR_LOG_TEXT && strcmp(lf, "text") != 0)
    problem(c, config_setting_get_member(g, "log_format"),
            "must be \"text\", \"json\" or \"logfmt\"");
  if (cfg->reconnect_max < cfg->reconnect_min)
    problem(c, g, "reconnect_max must be >= reconnect_min");
  if (cfg->restart_max < cfg->restart_min)
    problem(c, g, "restart_max must be >= restart_min");
}

static void load_health(ctx *c, wr_cfg *cfg, size_t *used,
                        config_setting_t *root) {
  static const char *const keys[] = {"listen",
                                     "port",
                                     "admin_token_file",
                                     "snapshot_interval",
                                     "probe_interval",
                                     "check_interval",
                                     "queue_log_interval",
                                     "events_stream",
                                     "events_stream_clients",
                                     "events_stream_buffer",
                                     "events_stream_keepalive",
                                     "dashboard",
                                     NULL};
  config_setting_t *g = get_group(c, root, "health", 0);
  check_keys(c, g, keys);
  cfg->health_listen = get_str(c, g, "listen", "127.0.0.1", 0);
  struct sockaddr_storage sa;
  socklen_t salen;
  char why[256];
  if (wr_addr_listen(cfg->health_listen, 0, &sa, &salen, why, sizeof why))
    problem(c, config_setting_get_member(g, "listen"), "%s", why);
  cfg->health_port = (int)get_int(c, g, "port", 0, 0, 65535);
  cfg->admin_token = secret_file(cfg, used, c, g, "admin_token_file");
  cfg->snapshot_interval = get_double(c, g, "snapshot_interval", 0.5, 0.05, 60);
  cfg->probe_interval = get_double(c, g, "probe_interval", 5, 1, 3600);
  cfg->check_interval = get_double(c, g, "check_interval", 10, 1, 3600);
  cfg->queue_log_interval =
      get_double(c, g, "queue_log_interval", 60, 0, 86400);
  /* GET /api/events and the dashboard (docs/monitoring.md). */
  cfg->stream.enabled = get_bool(c, g, "events_stream", 1);
  cfg->stream.clients = (int)get_int(c, g, "events_stream_clients", 8, 1, 256);
  cfg->stream.buffer = (size_t)get_int(c, g, "events_stream_buffer", 256 * 1024,
                                       4096, 16 * 1024 * 1024);
  cfg->stream.keepalive =
      get_double(c, g, "events_stream_keepalive", 15, 1, 300);
  cfg->stream.dashboard = get_bool(c, g, "dashboard", 1);
}

/* The `delays` group: where the delay cascade lives and its queue type. */
static void load_delays(ctx *c, wr_cfg *cfg, config_setting_t *root) {
  static const char *const keys[] = {"prefix", "queue_type", NULL};
  config_setting_t *g = get_group(c, root, "delays", 0);
  check_keys(c, g, keys);
  wr_delays_cfg *d = &cfg->delays;
  d->prefix = get_str(c, g, "prefix", WR_DELAY_PREFIX, 0);
  size_t pl = strlen(d->prefix);
  if (!pl || pl > WR_DELAY_MAX_PREFIX || strpbrk(d->prefix, "*#"))
    problem(c, config_setting_get_member(g, "prefix"),
            "must be 1 to %d bytes without '*' or '#'", WR_DELAY_MAX_PREFIX);
  const char *qt = get_str(c, g, "queue_type", "classic", 0);
  d->quorum = strcmp(qt, "quorum") == 0;
  if (!d->quorum && strcmp(qt, "classic") != 0)
    problem(c, config_setting_get_member(g, "queue_type"),
            "must be \"quorum\" or \"classic\"");
}

/* The `events` group (docs/events.md). A handler's name is the first
 * word of its events' routing keys: '.', '*' and '#' in it would break
 * the subscribers' patterns, so such names are refused while events are
 * on. */
static void load_events(ctx *c, wr_cfg *cfg, config_setting_t *root) {
  static const char *const keys[] = {
      "enabled", "exchange", "heartbeat", "flush_interval",
      "batch",   "buffer",   NULL};
  config_setting_t *g = get_group(c, root, "events", 0);
  check_keys(c, g, keys);
  wr_events_cfg *e = &cfg->events;
  e->enabled = get_bool(c, g, "enabled", 0);
  e->exchange = get_str(c, g, "exchange", "warren.events", 0);
  e->heartbeat = get_double(c, g, "heartbeat", 2, 0.1, 3600);
  e->flush_interval = get_double(c, g, "flush_interval", 0.1, 0.001, 10);
  e->batch = (int)get_int(c, g, "batch", 100, 1, 10000);
  e->buffer = (int)get_int(c, g, "buffer", 16384, 16, 1048576);
  if (!e->exchange[0])
    problem(c, config_setting_get_member(g, "exchange"), "must not be empty");
  else if (strlen(e->exchange) > 255)
    problem(c, config_setting_get_member(g, "exchange"),
            "is %zu bytes; RabbitMQ's names are 1..255 bytes",
            strlen(e->exchange));
  else if (!strncmp(e->exchange, "amq.", 4))
    problem(c, config_setting_get_member(g, "exchange"),
            "'%s': names starting with amq. are the broker's", e->exchange);
  if (!e->enabled) return;
  config_setting_t *hs = config_setting_get_member(root, "handlers");
  for (size_t i = 0; i < cfg->n_handlers; i++) {
    const char *name = cfg->handlers[i].name;
    if (name && strpbrk(name, ".*#")) {
      config_setting_t *h =
          hs ? config_setting_get_elem(hs, (unsigned)i) : NULL;
      problem(c, h ? config_setting_get_member(h, "name") : g,
              "handler name '%s' has '.', '*' or '#', which would break "
              "the routing keys of its events (events.enabled is true)",
              name);
    }
  }
}

static const char *env_lookup(const char *name) {
  return getenv(name);
}

/* The `tracing` group, with the OTEL_* environment over it (otelcfg.h). */
static void load_tracing(ctx *c, wr_cfg *cfg, config_setting_t *root) {
  config_setting_t *g = config_setting_get_member(root, "tracing");
  if (g && !config_setting_is_group(g)) {
    problem(c, g, "must be a group");
    return;
  }
  char why[2048];
  if (wr_otel_cfg_load(g, env_lookup, &cfg->tracing, why, sizeof why) == 0)
    return;
  /* One problem per line, each naming its setting or variable. */
  for (char *line = strtok(why, "\n"); line; line = strtok(NULL, "\n"))
    problem(c, g ? g : root, "%s", line);
}

int wr_cfg_load(const char *path, wr_cfg **out, char *err, size_t errlen) {
  static const char *const top_keys[] = {
      "broker",  "worker",  "exchanges", "handlers", "health",
      "signing", "tracing", "delays",    "events",   NULL};
  if (errlen) err[0] = '\0';
  wr_cfg *cfg = calloc(1, sizeof *cfg);
  if (cfg) config_init(&cfg->lc);
  if (cfg) cfg->path = strdup(path);
  if (cfg) cfg->owned = malloc(OWNED_MAX);
  if (!cfg || !cfg->path || !cfg->owned) {
    snprintf(err, errlen, "%s: out of memory", path);
    wr_cfg_free(cfg);
    return WARREN_NOMEM;
  }
  FILE *f = fopen(path, "r");
  if (!f) {
    snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    wr_cfg_free(cfg);
    return WARREN_CONFIG_READ;
  }
  int parsed = config_read(&cfg->lc, f);
  fclose(f);
  if (!parsed) {
    snprintf(err, errlen, "%s:%d: syntax error: %s", path,
             config_error_line(&cfg->lc), config_error_text(&cfg->lc));
    wr_cfg_free(cfg);
    return WARREN_CONFIG_SYNTAX;
  }
  ctx c = {path, err, errlen ? errlen - 1 : 0, 0, 0};
  size_t used = 0;
  config_setting_t *root = config_root_setting(&cfg->lc);
  apply_env(&c, root);
  check_keys(&c, root, top_keys);
  load_broker(&c, cfg, &used, root);
  load_worker(&c, cfg, root);
  load_health(&c, cfg, &used, root);
  load_exchanges(&c, cfg, root);
  load_signing(&c, cfg, &used, root);
  load_delays(&c, cfg, root);
  load_handlers(&c, cfg, &used, root);
  load_tracing(&c, cfg, root);
  load_events(&c, cfg, root);
  if (c.errors) {
    wr_cfg_free(cfg);
    return WARREN_CONFIG_INVALID;
  }
  *out = cfg;
  return WARREN_OK;
}

void wr_cfg_free(wr_cfg *cfg) {
  if (!cfg) return;
  for (size_t i = 0; i < cfg->n_handlers; i++) {
    free(cfg->handlers[i].bindings);
    free(cfg->handlers[i].signing_keys);
    free(cfg->handlers[i].reply_queues);
  }
  wr_keyring_free(cfg->signing.keyring);
  free(cfg->nodes);
  free(cfg->handlers);
  free(cfg->exchanges);
  config_destroy(&cfg->lc);
  free(cfg->owned);
  free(cfg->path);
  free(cfg);
}

/* ---- --print-config --------------------------------------------------- */

/* Where member `name` of group g (NULL: absent) came from. */
static void source(const wr_cfg *cfg, const config_setting_t *g,
                   const char *name, char *buf, size_t len) {
  const config_setting_t *s =
      g ? config_setting_get_member((config_setting_t *)g, name) : NULL;
  const char *var = s ? config_setting_get_hook(s) : NULL;
  if (var)
    snprintf(buf, len, "environment %s", var);
  else if (s)
    snprintf(buf, len, "file %s:%d", cfg->path, config_setting_source_line(s));
  else
    snprintf(buf, len, "default");
}

static const config_setting_t *group(const config_setting_t *g,
                                     const char *name) {
  return g ? config_setting_get_member((config_setting_t *)g, name) : NULL;
}

typedef struct printer {
  const wr_cfg *cfg;
  FILE *out;
} printer;

static void line_of(printer *p, const char *prefix, const char *key,
                    const config_setting_t *g, const char *member,
                    const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static void line_of(printer *p, const char *prefix, const char *key,
                    const config_setting_t *g, const char *member,
                    const char *fmt, ...) {
  char val[600], src[400], name[200];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(val, sizeof val, fmt, ap);
  va_end(ap);
  source(p->cfg, g, member, src, sizeof src);
  snprintf(name, sizeof name, "%s%s", prefix, key);
  fprintf(p->out, "%-36s = %-28s # %s\n", name, val, src);
}

#define MASK(s) ((s) && (s)[0] ? "\"****\"" : "(none)")
/* A string quoted, or (none): three arguments for "%s%s%s". */
#define QUOTED(s) (s) ? "\"" : "", (s) ? (s) : "(none)", (s) ? "\"" : ""

/* A list of strings as ["a", "b"], or `none` when empty; in buf. */
static const char *list_of(const char *const *v, size_t n, const char *none,
                           char *buf, size_t len) {
  if (!n) return none;
  size_t used = (size_t)snprintf(buf, len, "[");
  for (size_t i = 0; i < n && used < len; i++)
    used += (size_t)snprintf(buf + used, len - used, "%s\"%s\"", i ? ", " : "",
                             v[i]);
  if (used < len) snprintf(buf + used, len - used, "]");
  return buf;
}

int wr_cfg_print(const wr_cfg *cfg, FILE *out) {
  printer p = {cfg, out};
  const config_setting_t *root = config_root_setting(&cfg->lc);
  const config_setting_t *b = group(root, "broker"), *t = group(b, "tls");
  const wr_broker_cfg *bc = &cfg->broker;
  /* A value the URL gave is sourced to the URL. */
  const char *url = group(b, "url") ? "url" : NULL;
  fprintf(out,
          "# the effective configuration of %s: each setting, its value "
          "and where the value came from; secrets are masked\n",
          cfg->path);
  line_of(&p, "broker.", "host", b, url ? url : "host", "\"%s\"", bc->host);
  line_of(&p, "broker.", "port", b, url ? url : "port", "%d", bc->port);
  line_of(&p, "broker.", "vhost", b, url ? url : "vhost", "\"%s\"", bc->vhost);
  line_of(&p, "broker.", "user", b, url ? url : "user", "\"%s\"", bc->user);
  line_of(&p, "broker.", "password", b,
          group(b, "password_file") ? "password_file"
          : url                     ? url
                                    : "password",
          "%s", MASK(bc->password));
  line_of(&p, "broker.", "heartbeat", b, "heartbeat", "%d", bc->heartbeat);
  line_of(&p, "broker.", "connect_timeout", b, "connect_timeout", "%g",
          bc->connect_timeout);
  line_of(&p, "broker.", "setup_timeout", b, "setup_timeout", "%g",
          bc->setup_timeout);
  line_of(&p, "broker.tls.", "enabled", t, "enabled", "%s",
          bc->tls.enabled ? "true" : "false");
  line_of(&p, "broker.tls.", "ca_file", t, "ca_file", "\"%s\"",
          bc->tls.ca_file ? bc->tls.ca_file : WR_CONN_SYSTEM_CA);
  line_of(&p, "broker.tls.", "cert_file", t, "cert_file", "%s%s%s",
          QUOTED(bc->tls.cert_file));
  line_of(&p, "broker.tls.", "key_file", t, "key_file", "%s%s%s",
          QUOTED(bc->tls.key_file));
  line_of(&p, "broker.tls.", "verify_peer", t, "verify_peer", "%s",
          bc->tls.verify_peer ? "true" : "false");
  line_of(&p, "broker.tls.", "verify_hostname", t, "verify_hostname", "%s",
          bc->tls.verify_hostname ? "true" : "false");
  /* broker.nodes: one line per node, in the file's order (each process
   * shuffles its own copy when it connects). */
  for (size_t i = 0; i < cfg->broker.n_nodes; i++) {
    char key[32];
    snprintf(key, sizeof key, "nodes[%zu]", i);
    line_of(&p, "broker.", key, b, "nodes", "\"%s:%d\"",
            cfg->broker.nodes[i].host, cfg->broker.nodes[i].port);
  }
  const config_setting_t *w = group(root, "worker");
  line_of(&p, "worker.", "shutdown_grace", w, "shutdown_grace", "%g",
          cfg->shutdown_grace);
  line_of(&p, "worker.", "reconnect_min", w, "reconnect_min", "%g",
          cfg->reconnect_min);
  line_of(&p, "worker.", "reconnect_max", w, "reconnect_max", "%g",
          cfg->reconnect_max);
  line_of(&p, "worker.", "restart_min", w, "restart_min", "%g",
          cfg->restart_min);
  line_of(&p, "worker.", "restart_max", w, "restart_max", "%g",
          cfg->restart_max);
  static const char *const formats[] = {"text", "json", "logfmt"};
  line_of(&p, "worker.", "log_format", w, "log_format", "\"%s\"",
          cfg->log_format >= 0 && cfg->log_format < 3 ? formats[cfg->log_format]
                                                      : "text");
  line_of(&p, "worker.", "exit_after_refused_logins", w,
          "exit_after_refused_logins", "%d", cfg->exit_after_refused_logins);
  const config_setting_t *he = group(root, "health");
  line_of(&p, "health.", "listen", he, "listen", "\"%s\"", cfg->health_listen);
  line_of(&p, "health.", "port", he, "port", "%d", cfg->health_port);
  line_of(&p, "health.", "admin_token_file", he, "admin_token_file", "%s",
          MASK(cfg->admin_token));
  line_of(&p, "health.", "snapshot_interval", he, "snapshot_interval", "%g",
          cfg->snapshot_interval);
  line_of(&p, "health.", "probe_interval", he, "probe_interval", "%g",
          cfg->probe_interval);
  line_of(&p, "health.", "check_interval", he, "check_interval", "%g",
          cfg->check_interval);
  line_of(&p, "health.", "queue_log_interval", he, "queue_log_interval", "%g",
          cfg->queue_log_interval);
  line_of(&p, "health.", "events_stream", he, "events_stream", "%s",
          cfg->stream.enabled ? "true" : "false");
  line_of(&p, "health.", "events_stream_clients", he, "events_stream_clients",
          "%d", cfg->stream.clients);
  line_of(&p, "health.", "events_stream_buffer", he, "events_stream_buffer",
          "%zu", cfg->stream.buffer);
  line_of(&p, "health.", "events_stream_keepalive", he,
          "events_stream_keepalive", "%g", cfg->stream.keepalive);
  line_of(&p, "health.", "dashboard", he, "dashboard", "%s",
          cfg->stream.dashboard ? "true" : "false");
  const config_setting_t *xs = group(root, "exchanges");
  for (size_t i = 0; i < cfg->n_exchanges; i++) {
    const wr_exchange_cfg *x = &cfg->exchanges[i];
    const config_setting_t *xg =
        xs ? config_setting_get_elem((config_setting_t *)xs, (unsigned)i)
           : NULL;
    char pre[160];
    snprintf(pre, sizeof pre, "exchanges[%zu](%s).", i, x->name);
    line_of(&p, pre, "type", xg, "type", "\"%s\"", x->type);
    line_of(&p, pre, "durable", xg, "durable", "%s",
            x->durable ? "true" : "false");
  }
  const config_setting_t *hs = group(root, "handlers");
  for (size_t i = 0; i < cfg->n_handlers; i++) {
    const wr_handler_cfg *h = &cfg->handlers[i];
    const config_setting_t *hg =
        hs ? config_setting_get_elem((config_setting_t *)hs, (unsigned)i)
           : NULL;
    const config_setting_t *rg = group(hg, "retry");
    char pre[160];
    snprintf(pre, sizeof pre, "handlers[%zu](%s).", i, h->name);
    line_of(&p, pre, "queue", hg, "queue", "\"%s\"", h->queue);
    line_of(&p, pre, "plugin", hg, "plugin", "\"%s\"", h->plugin);
    line_of(&p, pre, "prefetch", hg, "prefetch", "%d", h->prefetch);
    line_of(&p, pre, "concurrency", hg, "concurrency", "%d", h->concurrency);
    line_of(&p, pre, "max_priority", hg, "max_priority", "%d", h->max_priority);
    line_of(&p, pre, "queue_type", hg, "queue_type", "\"%s\"",
            h->quorum ? "quorum" : "classic");
    char mp[16] = "(none)";
    if (h->max_priority) snprintf(mp, sizeof mp, "%d", h->max_priority);
    line_of(&p, pre, "max_priority", hg, "max_priority", "%s", mp);
    line_of(&p, pre, "declare", hg, "declare", "%s",
            h->declare ? "true" : "false");
    line_of(&p, pre, "durable", hg, "durable", "%s",
            h->durable ? "true" : "false");
    for (size_t k = 0; k < h->n_bindings; k++) {
      char key[48];
      snprintf(key, sizeof key, "bindings[%zu]", k);
      line_of(&p, pre, key, hg, "bindings", "\"%s\" \"%s\"",
              h->bindings[k].exchange, h->bindings[k].routing_key);
    }
    line_of(&p, pre, "isolation", hg, "isolation", "%s",
            h->isolated ? "true" : "false");
    line_of(&p, pre, "timeout", hg, "timeout", "%g", h->timeout);
    line_of(&p, pre, "max_jobs_per_worker", hg, "max_jobs_per_worker", "%lu",
            h->max_jobs);
    line_of(&p, pre, "max_worker_rss", hg, "max_worker_rss", "%u",
            h->max_rss_mb);
    line_of(&p, pre, "max_body", hg, "max_body", "%zu", h->max_body);
    line_of(&p, pre, "max_result", hg, "max_result", "%zu", h->max_result);
    if (h->tenant_header) {
      line_of(&p, pre, "tenant_header", hg, "tenant_header", "\"%s\"",
              h->tenant_header);
      line_of(&p, pre, "tenant_concurrency", hg, "tenant_concurrency", "%d",
              h->tenant_concurrency);
      line_of(&p, pre, "tenant_hold", hg, "tenant_hold", "%d", h->tenant_hold);
    }
    line_of(&p, pre, "retry.max_attempts", rg, "max_attempts", "%d",
            h->retry.max_attempts);
    line_of(&p, pre, "retry.max_crashes", rg, "max_crashes", "%d",
            h->retry.max_crashes);
    line_of(&p, pre, "retry.max_deliveries", rg, "max_deliveries", "%d",
            h->retry.max_deliveries);
    char steps[400];
    size_t used = 0;
    steps[0] = '\0';
    for (int k = 0; k < h->retry.n_backoff && used < sizeof steps; k++)
      used += (size_t)snprintf(steps + used, sizeof steps - used, "%s%g",
                               k ? ", " : "", h->retry.backoff[k]);
    line_of(&p, pre, "retry.backoff", rg, "backoff", "[%s]", steps);
    line_of(&p, pre, "retry.jitter", rg, "jitter", "%g", h->retry.jitter);
    const config_setting_t *bg = group(hg, "breaker");
    if (h->breaker.enabled) {
      const wr_breaker_cfg *b = &h->breaker;
      line_of(&p, pre, "breaker.failure_rate", bg, "failure_rate", "%g",
              b->failure_rate);
      line_of(&p, pre, "breaker.slow_ms", bg, "slow_ms", "%g", b->slow_ms);
      line_of(&p, pre, "breaker.slow_percentile", bg, "slow_percentile", "%g",
              b->slow_percentile);
      line_of(&p, pre, "breaker.window", bg, "window", "%d", b->window);
      line_of(&p, pre, "breaker.min_jobs", bg, "min_jobs", "%d", b->min_jobs);
      line_of(&p, pre, "breaker.cool_down", bg, "cool_down", "%g",
              b->cool_down);
      line_of(&p, pre, "breaker.trial_jobs", bg, "trial_jobs", "%d",
              b->trial_jobs);
    } else {
      line_of(&p, pre, "breaker", hg, "breaker", "%s", "(off)");
    }
    line_of(&p, pre, "require_signature", hg, "require_signature", "%s",
            h->require_signature ? "true" : "false");
    line_of(&p, pre, "signing_keys", hg, "signing_keys", "%s",
            list_of(h->signing_keys, h->n_signing_keys, "(every key)", steps,
                    sizeof steps));
    line_of(&p, pre, "delayed", hg, "delayed", "%s",
            h->delayed ? "true" : "false");
    line_of(&p, pre, "reply_queues", hg, "reply_queues", "%s",
            list_of(h->reply_queues, h->n_reply_queues, "(none)", steps,
                    sizeof steps));
  }
  const config_setting_t *sg = group(root, "signing");
  if (cfg->signing.keyring) {
    /* The key ids, never the keys. */
    size_t nk = wr_keyring_count(cfg->signing.keyring);
    for (size_t i = 0; i < nk; i++) {
      char key[32];
      snprintf(key, sizeof key, "keys[%zu].id", i);
      line_of(&p, "signing.", key, sg, "keys", "\"%s\" (key masked)",
              wr_keyring_id(cfg->signing.keyring, i));
    }
    line_of(&p, "signing.", "countersign_key", sg, "countersign_key", "%s%s%s",
            QUOTED(cfg->signing.countersign_key));
  } else {
    fprintf(out, "# signing: no `signing` group, jobs are not verified\n");
  }
  line_of(&p, "signing.", "window", sg, "window", "%g", cfg->signing.window);
  const config_setting_t *dg = group(root, "delays");
  line_of(&p, "delays.", "prefix", dg, "prefix", "\"%s\"", cfg->delays.prefix);
  line_of(&p, "delays.", "queue_type", dg, "queue_type", "\"%s\"",
          cfg->delays.quorum ? "quorum" : "classic");
  const wr_otel_cfg *tr = &cfg->tracing;
  const config_setting_t *tg = group(root, "tracing");
  fprintf(out,
          "# tracing: the `tracing` group with the OTEL_* variables "
          "over it (docs/tracing.md)\n");
  line_of(&p, "tracing.", "enabled", tg, "enabled", "%s",
          tr->enabled ? "true" : "false");
  if (tr->enabled) {
    line_of(&p, "tracing.", "endpoint", tg, "endpoint", "\"%s\"", tr->endpoint);
    line_of(&p, "tracing.", "service_name", tg, "service_name", "\"%s\"",
            tr->service_name);
    line_of(&p, "tracing.", "sampler_arg", tg, "sampler_arg", "%g", tr->ratio);
    for (size_t i = 0; i < tr->n_headers; i++)
      fprintf(out, "tracing.headers.%-20s = \"****\"\n", tr->headers[i].key);
  }
  const wr_events_cfg *ev = &cfg->events;
  const config_setting_t *eg = group(root, "events");
  line_of(&p, "events.", "enabled", eg, "enabled", "%s",
          ev->enabled ? "true" : "false");
  if (ev->enabled) {
    line_of(&p, "events.", "exchange", eg, "exchange", "\"%s\"", ev->exchange);
    line_of(&p, "events.", "heartbeat", eg, "heartbeat", "%g", ev->heartbeat);
    line_of(&p, "events.", "flush_interval", eg, "flush_interval", "%g",
            ev->flush_interval);
    line_of(&p, "events.", "batch", eg, "batch", "%d", ev->batch);
    line_of(&p, "events.", "buffer", eg, "buffer", "%d", ev->buffer);
  }
  return 0;
}

size_t wr_cfg_held_most(const wr_handler_cfg *hc) {
  size_t n = (size_t)hc->prefetch + (size_t)hc->concurrency;
  return hc->tenant_header ? n + (size_t)hc->tenant_hold : n;
}
