#include "cfg.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/crypto.h>

#include <warren/status.h>

#include "../framework/keyring.h"
#include "../framework/log.h"
#include "../framework/retry.h"
#include "../framework/sign.h"

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
  int line = s ? (int)config_setting_source_line(s) : 0;
  char at[16] = "";
  if (line > 0) snprintf(at, sizeof at, ":%d", line);
  int w = snprintf(c->buf + c->len, c->cap - c->len, "%s%s%s: %s: %s",
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
 * trailing newline is removed. Anything else is an error, never an empty
 * or cut password. framework/args.c reads --password-file by the same
 * rules: change both. */
static const char *read_secret(wr_cfg *cfg, size_t *used, ctx *c,
                               const config_setting_t *s, const char *path) {
  struct stat st;
  FILE *f = NULL;
  if (stat(path, &st) != 0 || !(f = fopen(path, "r"))) {
    problem(c, s, "cannot read '%s': %s", path, strerror(errno));
    return NULL;
  }
  if (!S_ISREG(st.st_mode)) {
    fclose(f);
    problem(c, s, "'%s' is not a regular file", path);
    return NULL;
  }
  char buf[WR_CFG_MAX_SECRET + 2];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r')) buf[--n] = '\0';
  if (n == 0) {
    problem(c, s, "'%s' is empty", path);
    return NULL;
  }
  if (n > WR_CFG_MAX_SECRET) {
    problem(c, s, "'%s' is longer than %d bytes", path, WR_CFG_MAX_SECRET);
    return NULL;
  }
  return own(cfg, used, c, s, buf, "");
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

static void load_broker(ctx *c, wr_cfg *cfg, size_t *used,
                        config_setting_t *root) {
  static const char *const keys[] = {
      "host",          "port",      "vhost",           "user", "password",
      "password_file", "heartbeat", "connect_timeout", "tls",  NULL};
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
  b->heartbeat = (int)get_int(c, g, "heartbeat", 30, 0, 3600);
  b->connect_timeout = get_double(c, g, "connect_timeout", 5, 0.1, 600);
  config_setting_t *pf =
      g ? config_setting_get_member(g, "password_file") : NULL;
  config_setting_t *pw = g ? config_setting_get_member(g, "password") : NULL;
  if (pf && pw) problem(c, pf, "set either password or password_file");
  if (pf) {
    b->password = secret_file(cfg, used, c, g, "password_file");
  } else {
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
  b->tls.enabled = get_bool(c, t, "enabled", 0);
  b->tls.ca_file = opt_path(cfg, used, c, t, "ca_file");
  b->tls.cert_file = opt_path(cfg, used, c, t, "cert_file");
  b->tls.key_file = opt_path(cfg, used, c, t, "key_file");
  b->tls.verify_peer = get_bool(c, t, "verify_peer", 1);
  b->tls.verify_hostname = get_bool(c, t, "verify_hostname", 1);
  if (t && (!b->tls.cert_file) != (!b->tls.key_file))
    problem(c, t, "cert_file and key_file go together");
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
  static const char *const keys[] = {"max_attempts", "backoff", "jitter",
                                     "max_crashes", NULL};
  static const double default_backoff[] = {1, 10, 60};
  config_setting_t *g = get_group(c, e, "retry", 0);
  check_keys(c, g, keys);
  wr_retry_cfg *r = &h->retry;
  r->max_attempts = (int)get_int(c, g, "max_attempts", 5, 1, 1000);
  r->max_crashes = (int)get_int(c, g, "max_crashes", 3, 1, 1000);
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

static void load_handler_signing(ctx *c, wr_cfg *cfg, wr_handler_cfg *h,
                                 config_setting_t *e) {
  const wr_keyring *ring = cfg->signing.keyring;
  config_setting_t *rs = config_setting_get_member(e, "require_signature");
  h->require_signature = get_bool(c, e, "require_signature", ring != NULL);
  if (rs && h->require_signature && !ring)
    problem(c, rs, "require_signature needs keys: add a signing section");
  config_setting_t *l = config_setting_get_member(e, "signing_keys");
  if (!l) return;
  int n = config_setting_is_array(l) ? config_setting_length(l) : -1;
  if (n < 1 || !ring) {
    problem(c, l, "%s",
            ring ? "must be a list of key ids, e.g. [\"gw-1\"]"
                 : "signing_keys needs a signing section");
    return;
  }
  if (!(h->signing_keys = calloc((size_t)n, sizeof *h->signing_keys))) {
    problem(c, l, "out of memory");
    return;
  }
  for (int i = 0; i < n; i++) {
    config_setting_t *v = config_setting_get_elem(l, (unsigned)i);
    const char *id = config_setting_type(v) == CONFIG_TYPE_STRING
                         ? config_setting_get_string(v)
                         : NULL;
    if (!id || !wr_keyring_has(ring, id, strlen(id)))
      problem(c, v, "'%s' is not a key in signing.keys", id ? id : "?");
    else
      h->signing_keys[h->n_signing_keys++] = id;
  }
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
                                     "bindings",
                                     "settings",
                                     "retry",
                                     "timeout",
                                     "isolation",
                                     "max_jobs_per_worker",
                                     "max_worker_rss",
                                     "max_body",
                                     "require_signature",
                                     "signing_keys",
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
  load_bindings(c, h, e);
  load_retry(c, h, e);
  /* RabbitMQ refuses names over 255 bytes: check the longest derived one
   * here, not at the first retry. */
  char name[512];
  for (int i = 0; i < h->retry.n_backoff; i++)
    if (strlen(wr_retry_queue_name(h->queue, h->retry.backoff[i], name,
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
  load_handler_signing(c, cfg, h, e);
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
                                     NULL};
  config_setting_t *g = get_group(c, root, "health", 0);
  check_keys(c, g, keys);
  cfg->health_listen = get_str(c, g, "listen", "127.0.0.1", 0);
  struct in_addr ip;
  if (inet_pton(AF_INET, cfg->health_listen, &ip) != 1)
    problem(c, config_setting_get_member(g, "listen"),
            "must be an IPv4 address such as 127.0.0.1 or 0.0.0.0 (got '%s')",
            cfg->health_listen);
  cfg->health_port = (int)get_int(c, g, "port", 0, 0, 65535);
  cfg->admin_token = secret_file(cfg, used, c, g, "admin_token_file");
  cfg->snapshot_interval = get_double(c, g, "snapshot_interval", 0.5, 0.05, 60);
  cfg->probe_interval = get_double(c, g, "probe_interval", 5, 1, 3600);
  cfg->check_interval = get_double(c, g, "check_interval", 10, 1, 3600);
  cfg->queue_log_interval =
      get_double(c, g, "queue_log_interval", 60, 0, 86400);
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
  static const char *const top_keys[] = {"broker",   "worker", "exchanges",
                                         "handlers", "health", "signing",
                                         "tracing",  NULL};
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
  check_keys(&c, root, top_keys);
  load_broker(&c, cfg, &used, root);
  load_worker(&c, cfg, root);
  load_health(&c, cfg, &used, root);
  load_exchanges(&c, cfg, root);
  load_signing(&c, cfg, &used, root);
  load_handlers(&c, cfg, &used, root);
  load_tracing(&c, cfg, root);
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
  }
  wr_keyring_free(cfg->signing.keyring);
  free(cfg->handlers);
  free(cfg->exchanges);
  config_destroy(&cfg->lc);
  free(cfg->owned);
  free(cfg->path);
  free(cfg);
}

int wr_cfg_print(const wr_cfg *cfg, FILE *out) {
  fprintf(out, "config %s\n", cfg->path);
  return 0;
}
