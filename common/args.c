#include "args.h"

#include <errno.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <warren/handler.h>

#include "secret.h"

#ifndef WARREN_VERSION
#error "WARREN_VERSION is defined by CMakeLists.txt for this file"
#endif

const char *wr_args_version(void) {
  return WARREN_VERSION;
}

int wr_args_long(const char *opt, const char *s, long min, long max, long *out,
                 char *err, size_t errlen) {
  /* strtol alone would take " 5", "+5" and "5x" (stopping at the x): the
   * characters are checked first, so only the number itself is read. */
  const char *d = s && s[0] == '-' ? s + 1 : s;
  int ok = d && *d;
  for (const char *p = d; ok && *p; p++) ok = *p >= '0' && *p <= '9';
  long n = 0;
  if (ok) {
    char *end;
    errno = 0;
    n = strtol(s, &end, 10);
    ok = !errno && !*end && n >= min && n <= max;
  }
  if (!ok) {
    snprintf(err, errlen, "%s takes a whole number from %ld to %ld (got '%s')",
             opt, min, max, s ? s : "");
    return -1;
  }
  *out = n;
  return 0;
}

int wr_args_duration(const char *opt, const char *s, int64_t min_ms,
                     int64_t max_ms, int64_t *ms, char *err, size_t errlen) {
  static const struct {
    const char *unit;
    int64_t ms;
  } units[] = {{"ms", 1},      {"s", 1000},     {"m", 60000},
               {"h", 3600000}, {"d", 86400000}, {"", 1000}};
  int64_t total = 0;
  const char *p = s ? s : "";
  int ok = *p != '\0';
  while (ok && *p) {
    int64_t n = 0;
    const char *d = p;
    while (*p >= '0' && *p <= '9' && n <= INT64_C(1) << 30)
      n = n * 10 + (*p++ - '0');
    ok = p > d && !(*p >= '0' && *p <= '9');
    size_t k = 0, nu = sizeof units / sizeof *units;
    while (ok && k < nu &&
           strncmp(p, units[k].unit, strlen(units[k].unit)) != 0)
      k++;
    /* "m" must not take the m of "ms"; a bare number is the whole text. */
    if (ok && k == 2 && p[1] == 's') k = 0;
    ok = ok && k < nu && (units[k].unit[0] || (d == s && !*p));
    if (ok) {
      p += strlen(units[k].unit);
      total += n * units[k].ms;
      ok = total <= max_ms;
    }
  }
  if (!ok || total < min_ms) {
    snprintf(err, errlen,
             "%s takes a duration like 90s, 30m, 2h or 1h30m (units ms, s, m, "
             "h, d) from %lld ms to %lld s (got '%s')",
             opt, (long long)min_ms, (long long)(max_ms / 1000), s ? s : "");
    return -1;
  }
  *ms = total;
  return 0;
}

/* Exactly n digits at *p, advancing it; -1 if not. */
static int digits(const char **p, int n) {
  int v = 0;
  for (int i = 0; i < n; i++) {
    if ((*p)[i] < '0' || (*p)[i] > '9') return -1;
    v = v * 10 + ((*p)[i] - '0');
  }
  *p += n;
  return v;
}

int wr_args_time(const char *opt, const char *s, int64_t *ms, char *err,
                 size_t errlen) {
  const char *p = s ? s : "";
  struct tm tm = {0};
  int frac = 0, off = 0, ok = 1;
  int y = digits(&p, 4);
  ok = y >= 1970 && *p++ == '-';
  int mo = ok ? digits(&p, 2) : -1;
  ok = ok && mo >= 1 && mo <= 12 && *p++ == '-';
  int d = ok ? digits(&p, 2) : -1;
  ok = ok && d >= 1 && d <= 31 && (*p == 'T' || *p == 't' || *p == ' ');
  p += ok;
  int h = ok ? digits(&p, 2) : -1;
  ok = ok && h >= 0 && h <= 23 && *p++ == ':';
  int mi = ok ? digits(&p, 2) : -1;
  ok = ok && mi >= 0 && mi <= 59;
  int sec = 0;
  if (ok && *p == ':') {
    p++;
    sec = digits(&p, 2);
    ok = sec >= 0 && sec <= 60;
    if (ok && (*p == '.' || *p == ',')) {
      p++;
      int scale = 100, any = 0;
      for (; *p >= '0' && *p <= '9'; p++, any = 1, scale /= 10)
        frac += (*p - '0') * scale;
      ok = any;
    }
  }
  if (ok && (*p == 'Z' || *p == 'z')) {
    p++;
  } else if (ok && (*p == '+' || *p == '-')) {
    int sign = *p++ == '-' ? -1 : 1;
    int oh = digits(&p, 2);
    if (*p == ':') p++;
    int om = oh >= 0 ? digits(&p, 2) : -1;
    ok = oh >= 0 && oh <= 23 && om >= 0 && om <= 59;
    off = sign * (oh * 60 + om) * 60;
  } else {
    ok = 0;
  }
  ok = ok && *p == '\0';
  if (ok) {
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    time_t t = timegm(&tm);
    /* timegm folds 31 February into March: a date that moved is wrong. */
    struct tm back;
    ok = t != (time_t)-1 && gmtime_r(&t, &back) && back.tm_mday == d;
    if (ok) *ms = ((int64_t)t - off) * 1000 + frac;
  }
  if (!ok) {
    snprintf(err, errlen,
             "%s takes an ISO 8601 time with its zone, like "
             "2026-11-26T09:30:00Z or 2026-11-26T10:30:00+01:00 (got '%s')",
             opt, s ? s : "");
    return -1;
  }
  return 0;
}

void wr_args_conn_help(FILE *f, const char *base) {
  fprintf(
      f,
      "Connection (command line over %s over %s):\n"
      "  --url URL             amqp://[USER[:PASSWORD]@]HOST[:PORT][/VHOST]\n"
      "                        or amqps://... (TLS); the options below\n"
      "                        override its parts\n"
      "  --host HOST           broker host (default 127.0.0.1)\n"
      "  --port N              broker port, 1..65535 (default 5672, 5671\n"
      "                        with TLS)\n"
      "  --vhost VHOST         virtual host (default /)\n"
      "  --user USER           user name (default guest)\n"
      "  --password-file FILE  the password: the file's content, trailing\n"
      "                        newlines removed (default guest)\n"
      "  --tls                 connect with TLS, verifying the broker\n"
      "  --tls-ca FILE         PEM CAs the broker's certificate must chain\n"
      "                        to (default: the system's); implies --tls\n"
      "  --tls-cert FILE       PEM client certificate, with --tls-key;\n"
      "                        implies --tls\n"
      "  --tls-key FILE        its private key\n"
      "  --no-verify-hostname  accept a certificate for another host name\n",
      WR_ARGS_URL_ENV " (when neither --url nor --host is given)", base);
}

/* A string option: refused when empty, which would only be a mistake. */
static int str_opt(const char **dst, const char *opt, const char *v, char *err,
                   size_t errlen) {
  if (!v || !v[0]) {
    snprintf(err, errlen, "%s must not be empty", opt);
    return -1;
  }
  *dst = v;
  return 1;
}

int wr_args_conn_opt(wr_args_conn *a, int c, const char *v, char *err,
                     size_t errlen) {
  switch (c) {
    case WR_ARGS_OPT_URL:
      return str_opt(&a->url, "--url", v, err, errlen);
    case WR_ARGS_OPT_HOST:
      return str_opt(&a->host, "--host", v, err, errlen);
    case WR_ARGS_OPT_PORT:
      return wr_args_long("--port", v, 1, 65535, &a->port, err, errlen) == 0
                 ? 1
                 : -1;
    case WR_ARGS_OPT_VHOST:
      return str_opt(&a->vhost, "--vhost", v, err, errlen);
    case WR_ARGS_OPT_USER:
      return str_opt(&a->user, "--user", v, err, errlen);
    case WR_ARGS_OPT_PASSWORD_FILE:
      return str_opt(&a->password_file, "--password-file", v, err, errlen);
    case WR_ARGS_OPT_TLS:
      a->tls = 1;
      return 1;
    case WR_ARGS_OPT_TLS_CA:
      return str_opt(&a->ca, "--tls-ca", v, err, errlen);
    case WR_ARGS_OPT_TLS_CERT:
      return str_opt(&a->cert, "--tls-cert", v, err, errlen);
    case WR_ARGS_OPT_TLS_KEY:
      return str_opt(&a->key, "--tls-key", v, err, errlen);
    case WR_ARGS_OPT_NO_VERIFY_HOSTNAME:
      a->no_verify_hostname = 1;
      return 1;
    default:
      return 0;
  }
}

/* The rules of config/cfg.c's read_secret (keep the two alike): a
 * regular file of 1..cap-1 bytes once trailing newlines are removed,
 * without a NUL; anything else (a FIFO too, never waited on: secret.h)
 * is an error, never an empty or cut password. */
static int read_secret(const char *path, char *buf, size_t cap, char *err,
                       size_t errlen) {
  char tmp[sizeof((wr_args_store *)0)->password + 2], why[PATH_MAX + 128];
  size_t n;
  if (cap < 2 || cap > sizeof tmp - 2) return -1;
  if (wr_secret_read(path, tmp, cap - 1, &n, why, sizeof why)) {
    snprintf(err, errlen, "--password-file: %s", why);
    return -1;
  }
  const char *bad = n == 0                 ? "is empty"
                    : memchr(tmp, '\0', n) ? "holds a NUL byte"
                                           : NULL;
  if (bad)
    snprintf(err, errlen, "--password-file: '%s' %s", path, bad);
  else
    memcpy(buf, tmp, n), buf[n] = '\0';
  OPENSSL_cleanse(tmp, sizeof tmp);
  return bad ? -1 : 0;
}

int wr_args_conn_apply(const wr_args_conn *a, const char *env_url,
                       wr_conn_params *b, wr_args_store *store, char *err,
                       size_t errlen) {
  int tls_before = b->tls.enabled, port_here = 0;
  const char *url = a->url, *from = "--url";
  if (!url && !a->host && env_url && env_url[0]) {
    url = env_url;
    from = WR_ARGS_URL_ENV;
  }
  if (url) {
    char why[300];
    if (wr_conn_url(url, b, store->url, sizeof store->url, why, sizeof why)) {
      snprintf(err, errlen, "%s: %s", from, why);
      return -1;
    }
    port_here = 1; /* the URL's, or its scheme's default */
  }
  if (a->host) b->host = a->host;
  if (a->port) {
    b->port = (int)a->port;
    port_here = 1;
  }
  if (a->vhost) b->vhost = a->vhost;
  if (a->user) b->user = a->user;
  if (a->password_file) {
    if (read_secret(a->password_file, store->password, sizeof store->password,
                    err, errlen))
      return -1;
    b->password = store->password;
  }
  if (a->tls || a->ca || a->cert) b->tls.enabled = 1;
  if (a->ca) b->tls.ca_file = a->ca;
  if (a->cert) b->tls.cert_file = a->cert;
  if (a->key) b->tls.key_file = a->key;
  if (a->no_verify_hostname) b->tls.verify_hostname = 0;
  if (b->tls.enabled && !tls_before && !port_here) b->port = 5671;
  if (!b->tls.cert_file != !b->tls.key_file) {
    snprintf(err, errlen, "--tls-cert and --tls-key go together");
    return -1;
  }
  return 0;
}

void wr_args_getopt_error(int c, char *const argv[], char *err, size_t errlen) {
  /* getopt_long has moved optind past the offending argument; a short
   * option inside a group ("-xh") is named by optopt instead. */
  const char *arg = optind > 0 ? argv[optind - 1] : "?";
  if (optopt && !(arg[0] == '-' && arg[1] == '-')) {
    snprintf(err, errlen,
             c == ':' ? "option '-%c' needs a value" : "unknown option '-%c'",
             optopt);
    return;
  }
  /* "--opt=value" is named without its value. */
  size_t len = strcspn(arg, "=");
  snprintf(err, errlen,
           c == ':' ? "option '%.*s' needs a value" : "unknown option '%.*s'",
           (int)len, arg);
}

int wr_args_refuse(const char *prog, const char *msg) {
  fprintf(stderr, "%s: %s\n", prog, msg);
  fprintf(stderr, "Try '%s --help' for the options.\n", prog);
  return 2;
}

void wr_args_print_warren_version(void) {
  printf("warren %s (handler ABI %d.%d)\n", wr_args_version(), WARREN_ABI_MAJOR,
         WARREN_ABI_MINOR);
}
