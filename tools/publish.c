/*
 * warren-publish: publish jobs with publisher confirms (libwarren).
 *   warren-publish [--host H] [--port N] [--exchange X] --routing-key K
 *                  [--count N] [--id PREFIX] [--header NAME=VALUE]...
 *                  [--content-type T] [--body TEXT]
 *                  [--key-id ID --key-file FILE]
 *                  [--tls] [--tls-ca FILE] [--tls-cert FILE --tls-key FILE]
 *                  [--no-verify-hostname]
 *                  [--traceparent TP [--tracestate TS]] [--print-trace]
 * With --count N the jobs get message ids PREFIX1..PREFIXN; "{n}" in the
 * body is replaced by the job's number. Every job carries a traceparent:
 * TP as it is (each job a child of the caller's span), or a new trace per
 * job. Exits non-zero unless every job was confirmed by the broker.
 * When the environment configures tracing (OTEL_EXPORTER_OTLP_ENDPOINT or
 * OTEL_EXPORTER_OTLP_TRACES_ENDPOINT), each job of a new trace also gets
 * a PRODUCER span, exported over OTLP/HTTP before the program exits.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <warren/producer.h>
#include <warren/sign.h>

#include "export.h"
#include "keyring.h"
#include "log.h"
#include "otelcfg.h"
#include "prodspan.h"

#define MAX_HEADERS 16

static void expand(char *dst, size_t cap, const char *tmpl, long n) {
  size_t o = 0;
  for (const char *p = tmpl; *p && o + 1 < cap;) {
    if (strncmp(p, "{n}", 3) == 0) {
      int w = snprintf(dst + o, cap - o, "%ld", n);
      if (w > 0) o += (size_t)w;
      if (o >= cap) o = cap - 1;
      p += 3;
    } else {
      dst[o++] = *p++;
    }
  }
  dst[o] = '\0';
}

/* A whole number in [min, max], or -1 after saying why. */
static long number(const char *opt, const char *v, long min, long max) {
  char *end;
  errno = 0;
  long n = strtol(v, &end, 10);
  if (errno || end == v || *end || n < min || n > max) {
    fprintf(stderr,
            "warren-publish: %s takes a whole number from %ld to %ld "
            "(got '%s')\n",
            opt, min, max, v);
    return -1;
  }
  return n;
}

static const char *env(const char *name) {
  return getenv(name);
}

/* The span exporter when the environment configures tracing, else NULL.
 * Tracing is an extra: a bad setting is reported and the jobs still go. */
static wr_exporter *tracing_start(void) {
  wr_otel_cfg cfg;
  char err[2048];
  if (wr_otel_cfg_load(NULL, env, &cfg, err, sizeof err) != 0) {
    fprintf(stderr, "warren-publish: tracing off: %s\n", err);
    return NULL;
  }
  if (!cfg.enabled) return NULL;
  /* The spans are this program's, not a worker's, unless the user named
   * the service. */
  const char *ra = getenv("OTEL_RESOURCE_ATTRIBUTES");
  if (!getenv("OTEL_SERVICE_NAME") && !(ra && strstr(ra, "service.name=")))
    snprintf(cfg.service_name, sizeof cfg.service_name, "warren-publish");
  wr_exporter *e = wr_exporter_start(&cfg, err, sizeof err);
  if (!e) fprintf(stderr, "warren-publish: tracing off: %s\n", err);
  return e;
}

/* The PRODUCER span of one job of a new trace, with the ids the job
 * carries so the consumer's span finds its parent. A job sent with a
 * given traceparent gets none: that context's span is the caller's, and
 * a second span with its id would collide with it. */
static void publish_span(wr_exporter *e, const char *tp, const char *exchange,
                         const char *key, const char *mid, size_t len,
                         uint64_t start_ns) {
  wr_prodspan ps;
  if (wr_prodspan_init(&ps, "publish", exchange, tp, exchange, key, mid, len,
                       start_ns, wr_prodspan_now_ns()) == 0 &&
      (ps.span.flags & WR_TRACE_SAMPLED))
    wr_exporter_submit(e, &ps.span);
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: warren-publish [--host H] [--port N] [--exchange X] "
          "--routing-key K [--count N] [--id PREFIX] "
          "[--header NAME=VALUE]... [--content-type T] [--body TEXT]\n"
          "       [--key-id ID --key-file FILE]   sign every job\n"
          "       [--tls] [--tls-ca FILE] [--tls-cert FILE --tls-key FILE]\n"
          "       [--no-verify-hostname]          TLS (port default 5671)\n"
          "       [--traceparent TP [--tracestate TS]] the jobs' parent "
          "context (default: a new trace per job)\n"
          "       [--print-trace]                 print 'message_id "
          "traceparent' per job\n"
          "Exit status: 0 every job confirmed, 1 broker trouble, 2 usage.\n");
}

int main(int argc, char **argv) {
  warren_producer_opts po = {.size = sizeof po};
  const char *exchange = "", *key = NULL, *id = NULL, *body = "{n}";
  const char *key_file = NULL, *ctype = NULL;
  const char *traceparent = NULL, *tracestate = NULL;
  int print_trace = 0;
  long count = 1;
  warren_header_kv hdr[MAX_HEADERS];
  size_t nh = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      return 0;
    }
    if (!strcmp(a, "--print-trace")) {
      print_trace = 1;
      continue; /* takes no value */
    }
    if (!v && strcmp(a, "--tls") && strcmp(a, "--no-verify-hostname"))
      goto usage;
    if (!strcmp(a, "--host"))
      po.host = v;
    else if (!strcmp(a, "--port")) {
      if ((po.port = (int)number(a, v, 1, 65535)) < 0) return 2;
    } else if (!strcmp(a, "--exchange"))
      exchange = v;
    else if (!strcmp(a, "--routing-key"))
      key = v;
    else if (!strcmp(a, "--count")) {
      if ((count = number(a, v, 1, 100000000)) < 0) return 2;
    } else if (!strcmp(a, "--id"))
      id = v;
    else if (!strcmp(a, "--body"))
      body = v;
    else if (!strcmp(a, "--content-type"))
      ctype = v;
    else if (!strcmp(a, "--traceparent"))
      traceparent = v;
    else if (!strcmp(a, "--tracestate"))
      tracestate = v;
    else if (!strcmp(a, "--key-id"))
      po.sign_key_id = v;
    else if (!strcmp(a, "--key-file"))
      key_file = v;
    else if (!strcmp(a, "--tls-ca"))
      po.ca_file = v;
    else if (!strcmp(a, "--tls-cert"))
      po.cert_file = v;
    else if (!strcmp(a, "--tls-key"))
      po.key_file = v;
    else if (!strcmp(a, "--tls") || !strcmp(a, "--no-verify-hostname")) {
      if (a[2] == 't')
        po.tls = 1;
      else
        po.no_verify_hostname = 1;
      continue; /* takes no value */
    } else if (!strcmp(a, "--header") && nh < MAX_HEADERS && strchr(v, '=')) {
      char *eq = strchr(argv[i + 1], '=');
      *eq = '\0';
      hdr[nh++] = (warren_header_kv){argv[i + 1], eq + 1};
    } else
      goto usage;
    i++;
  }
  if (!key || count < 1 || !po.sign_key_id != !key_file ||
      !po.cert_file != !po.key_file || (tracestate && !traceparent))
    goto usage;
  char why[512] = "";
  static unsigned char secret[WARREN_SIGN_MAX_KEY + 2];
  if (key_file) {
    if (wr_keyring_read(key_file, NULL, secret, sizeof secret, &po.sign_key_len,
                        why, sizeof why) != 0) {
      fprintf(stderr, "warren-publish: %s\n", why);
      return 2;
    }
    po.sign_key = secret;
  }
  po.errbuf = why;
  po.errlen = sizeof why;
  warren_producer *p;
  int rc = warren_producer_open(&po, &p);
  /* The producer keeps its own copy. */
  memset(secret, 0, sizeof secret);
  if (rc != 0) {
    fprintf(stderr, "warren-publish: %s: %s\n", warren_strerror(rc), why);
    return 1;
  }
  wr_log_init_from_env();
  wr_exporter *tracer = traceparent ? NULL : tracing_start();
  char mid[256], text[65536], tp[WARREN_TRACEPARENT_LEN + 1];
  for (long n = 1; n <= count && rc == 0; n++) {
    warren_publish_opts o = {.size = sizeof o,
                             .headers = hdr,
                             .n_headers = nh,
                             .content_type = ctype,
                             .traceparent = traceparent,
                             .tracestate = tracestate,
                             .traceparent_out = tp};
    if (id) {
      if (count > 1)
        snprintf(mid, sizeof mid, "%s%ld", id, n);
      else
        snprintf(mid, sizeof mid, "%s", id);
      o.message_id = mid;
    }
    expand(text, sizeof text, body, n);
    uint64_t start_ns = wr_prodspan_now_ns();
    rc = warren_producer_publish(p, exchange, key, text, strlen(text), &o);
    if (tracer && (rc == 0 || rc == WARREN_BROKER_NACK))
      publish_span(tracer, tp, exchange, key, o.message_id, strlen(text),
                   start_ns);
    /* Printed once written, so a script finds the trace of every job that
     * may have reached the broker, a failed run's included. */
    if (print_trace && (rc == 0 || rc == WARREN_BROKER_NACK))
      printf("%s %s\n", id ? mid : "-", tp);
  }
  if (rc == 0) rc = warren_producer_flush(p, 30000);
  if (rc != 0) snprintf(why, sizeof why, "%s", warren_producer_error(p));
  int rc2 = warren_producer_close(p);
  if (rc == 0) rc = rc2;
  /* What is not sent by then is counted and logged by the exporter. */
  wr_exporter_stop(tracer, 5);
  if (rc != 0) {
    fprintf(stderr, "warren-publish: %s%s%s\n", warren_strerror(rc),
            why[0] ? ": " : "", why);
    return 1;
  }
  printf("published %ld job(s) to exchange '%s' key '%s', all confirmed\n",
         count, exchange, key);
  return 0;
usage:
  usage(stderr);
  return 2;
}
