/*
 * warren-publish: publish jobs with publisher confirms (libwarren).
 *   warren-publish [CONNECTION] [--exchange X] --routing-key K
 *                  [--count N] [--id PREFIX] [--header NAME=VALUE]...
 *                  [--content-type T] [--body TEXT] [--priority N]
 *                  [--key-id ID --key-file FILE]
 *                  [--traceparent TP [--tracestate TS]] [--print-trace]
 *                  [--reply-to QUEUE | --wait [--timeout SECONDS]]
 * CONNECTION is --url, --host, --port, --vhost, --user, --password-file
 * and the TLS options, as `warren dlq` takes them (args.h), over
 * WARREN_BROKER_URL, over libwarren's defaults.
 * With --count N the jobs get message ids PREFIX1..PREFIXN; "{n}" in the
 * body is replaced by the job's number. Every job carries a traceparent:
 * TP as it is (each job a child of the caller's span), or a new trace per
 * job. Exits non-zero unless every job was confirmed by the broker.
 * When the environment configures tracing (OTEL_EXPORTER_OTLP_ENDPOINT or
 * OTEL_EXPORTER_OTLP_TRACES_ENDPOINT), each job of a new trace also gets
 * a PRODUCER span, exported over OTLP/HTTP before the program exits.
 * With --wait the one job is sent by warren_producer_call and its result
 * (docs/results.md) is written to stdout as it is; a dead-lettered job's
 * reason and error go to stderr, and the exit status says which.
 */
#include <errno.h>
#include <math.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <warren/producer.h>
#include <warren/sign.h>

#include "args.h"
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

/* Bytes expand() needs for tmpl, its '\0' included: each "{n}" becomes at
 * most 20 characters (a long). tmpl is an argument, so the kernel bounds
 * it (MAX_ARG_STRLEN, 128 KiB on Linux). */
static size_t expanded_size(const char *tmpl) {
  size_t n = strlen(tmpl) + 1;
  for (const char *p = strstr(tmpl, "{n}"); p; p = strstr(p + 3, "{n}"))
    n += 20 - 3;
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
  fprintf(
      f,
      "usage: warren-publish [OPTION]... --routing-key KEY\n"
      "Publishes jobs and waits until the broker confirms every one.\n"
      "Job:\n"
      "  --routing-key KEY     routing key (with the default exchange:\n"
      "                        the queue); required\n"
      "  --exchange X          exchange (default \"\": the default one)\n"
      "  --count N             publish N jobs, 1..100000000 (default 1)\n"
      "  --id PREFIX           message id; PREFIX1..PREFIXN with --count\n"
      "  --body TEXT           the body; {n} is the job's number\n"
      "                        (default {n})\n"
      "  --content-type T      the content_type property\n"
      "  --header NAME=VALUE   a string header; up to 16\n"
      "  --priority N          the priority property, 0..255 (a handler's\n"
      "                        max_priority queue runs higher ones first)\n"
      "  --delay DURATION      run it no earlier than DURATION from now\n"
      "                        (90s, 30m, 2h, 1h30m, 3d; whole seconds,\n"
      "                        rounded up); KEY is then the queue\n"
      "  --at TIME             or not before TIME, ISO 8601 with its zone\n"
      "                        (2026-11-26T09:30:00Z)\n"
      "  --delay-prefix P      the delay levels' prefix, as the worker's\n"
      "                        delays.prefix (default warren.delay)\n"
      "  --key-id ID           sign every job with this key id, with\n"
      "  --key-file FILE       the key: the file's bytes, trailing newline\n"
      "                        removed\n"
      "Tracing:\n"
      "  --traceparent TP      the jobs' parent context (default: a new\n"
      "                        trace per job)\n"
      "  --tracestate TS       W3C tracestate, with --traceparent\n"
      "  --print-trace         print 'MESSAGE_ID TRACEPARENT' per job\n"
      "Results (docs/results.md):\n"
      "  --reply-to QUEUE      the job's reply_to: its result goes there\n"
      "  --wait                send one job and wait for its result (direct\n"
      "                        reply-to); write the result to stdout\n"
      "  --timeout SECONDS     how long --wait waits (default 30)\n");
  wr_args_conn_help(f, "libwarren's defaults");
  fprintf(
      f,
      "  --node HOST[:PORT]    a node of a cluster; repeat for each: one\n"
      "                        is picked at random, the next tried if it\n"
      "                        does not answer (instead of --host/--port)\n");
  fprintf(f,
          "Other:\n"
          "  -h, --help            this text\n"
          "  --version             the version\n"
          "Exit status: 0 every job confirmed (--wait: its result says ack),\n"
          "1 broker trouble, 2 usage, 3 the job was dead-lettered (--wait),\n"
          "4 no result in time (--wait).\n");
}

/* --wait: send the job, wait for its result and print it. Returns the
 * exit status. */
static int call(warren_producer *p, const char *exchange, const char *key,
                const char *text, const warren_publish_opts *o,
                double timeout_s) {
  warren_reply r = {.size = sizeof r};
  int ms = (int)(timeout_s * 1000 + 0.999);
  int rc =
      warren_producer_call(p, exchange, key, text, strlen(text), o, ms, &r);
  if (rc == WARREN_NO_REPLY) {
    fprintf(stderr, "warren-publish: no result in %.3g s: %s\n", timeout_s,
            warren_producer_error(p));
    return 4;
  }
  if (rc != WARREN_OK) {
    fprintf(stderr, "warren-publish: %s: %s\n", warren_strerror(rc),
            warren_producer_error(p));
    return rc == WARREN_INVALID ? 2 : 1;
  }
  fwrite(r.body, 1, r.body_len, stdout);
  fflush(stdout);
  int status = 0;
  if (r.outcome == WARREN_OUTCOME_DEAD_LETTERED) {
    fprintf(stderr,
            "warren-publish: the job was dead-lettered after %u attempt(s): "
            "%s: %s\n",
            r.attempts, r.reason, r.error);
    status = 3;
  } else if (r.outcome != WARREN_OUTCOME_ACK) {
    fprintf(stderr, "warren-publish: a reply without Warren's outcome\n");
    status = 1;
  }
  warren_reply_free(&r);
  return status;
}

/* The connection as libwarren takes it. */
static void producer_conn(const wr_conn_params *b, warren_producer_opts *po) {
  po->host = b->host;
  po->port = b->port;
  po->vhost = b->vhost;
  po->user = b->user;
  po->password = b->password;
  po->tls = b->tls.enabled;
  po->ca_file = b->tls.ca_file;
  po->cert_file = b->tls.cert_file;
  po->key_file = b->tls.key_file;
  po->no_verify_hostname = !b->tls.verify_hostname;
}

int main(int argc, char **argv) {
  enum {
    OPT_EXCHANGE = WR_ARGS_OPT_NEXT,
    OPT_ROUTING_KEY,
    OPT_COUNT,
    OPT_ID,
    OPT_BODY,
    OPT_CONTENT_TYPE,
    OPT_HEADER,
    OPT_KEY_ID,
    OPT_KEY_FILE,
    OPT_TRACEPARENT,
    OPT_TRACESTATE,
    OPT_PRINT_TRACE,
    OPT_NODE,
    OPT_DELAY,
    OPT_AT,
    OPT_DELAY_PREFIX,
    OPT_VERSION,
    OPT_REPLY_TO,
    OPT_WAIT,
    OPT_TIMEOUT,
    OPT_PRIORITY,
  };
  static const struct option longopts[] = {
      {"exchange", required_argument, NULL, OPT_EXCHANGE},
      {"routing-key", required_argument, NULL, OPT_ROUTING_KEY},
      {"count", required_argument, NULL, OPT_COUNT},
      {"id", required_argument, NULL, OPT_ID},
      {"body", required_argument, NULL, OPT_BODY},
      {"content-type", required_argument, NULL, OPT_CONTENT_TYPE},
      {"header", required_argument, NULL, OPT_HEADER},
      {"key-id", required_argument, NULL, OPT_KEY_ID},
      {"key-file", required_argument, NULL, OPT_KEY_FILE},
      {"traceparent", required_argument, NULL, OPT_TRACEPARENT},
      {"tracestate", required_argument, NULL, OPT_TRACESTATE},
      {"print-trace", no_argument, NULL, OPT_PRINT_TRACE},
      {"node", required_argument, NULL, OPT_NODE},
      {"delay", required_argument, NULL, OPT_DELAY},
      {"at", required_argument, NULL, OPT_AT},
      {"delay-prefix", required_argument, NULL, OPT_DELAY_PREFIX},
      {"reply-to", required_argument, NULL, OPT_REPLY_TO},
      {"wait", no_argument, NULL, OPT_WAIT},
      {"timeout", required_argument, NULL, OPT_TIMEOUT},
      {"priority", required_argument, NULL, OPT_PRIORITY},
      {"help", no_argument, NULL, 'h'},
      {"version", no_argument, NULL, OPT_VERSION},
      WR_ARGS_CONN_LONGOPTS,
      {NULL, 0, NULL, 0}};
  static const char prog[] = "warren-publish";
  warren_producer_opts po = {.size = sizeof po};
  wr_args_conn conn = {0};
  const char *exchange = "", *key = NULL, *id = NULL, *body = "{n}";
  const char *key_file = NULL, *ctype = NULL;
  const char *traceparent = NULL, *tracestate = NULL;
  const char *delay_prefix = NULL;
  int64_t delay_ms = 0, at_ms = 0;
  int print_trace = 0, c;
  const char *reply_to = NULL;
  int wait = 0;
  double timeout_s = 30;
  long count = 1, priority = 0;
  warren_header_kv hdr[MAX_HEADERS];
  size_t nh = 0;
  const char *nodes[64];
  size_t nn = 0;
  char why[512] = "";
  opterr = 0; /* refused options are reported below, in one format */
  while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
    int taken = wr_args_conn_opt(&conn, c, optarg, why, sizeof why);
    if (taken < 0) return wr_args_refuse(prog, why);
    if (taken) continue;
    switch (c) {
      case OPT_EXCHANGE:
        exchange = optarg;
        break;
      case OPT_ROUTING_KEY:
        key = optarg;
        break;
      case OPT_COUNT:
        if (wr_args_long("--count", optarg, 1, 100000000, &count, why,
                         sizeof why))
          return wr_args_refuse(prog, why);
        break;
      case OPT_ID:
        id = optarg;
        break;
      case OPT_PRIORITY:
        if (wr_args_long("--priority", optarg, 0, 255, &priority, why,
                         sizeof why))
          return wr_args_refuse(prog, why);
        break;
      case OPT_BODY:
        body = optarg;
        break;
      case OPT_CONTENT_TYPE:
        ctype = optarg;
        break;
      case OPT_HEADER: {
        char *eq = strchr(optarg, '=');
        if (!eq || eq == optarg || nh == MAX_HEADERS) {
          snprintf(why, sizeof why,
                   "--header takes NAME=VALUE, up to %d of them (got '%s')",
                   MAX_HEADERS, optarg);
          return wr_args_refuse(prog, why);
        }
        *eq = '\0';
        hdr[nh++] = (warren_header_kv){optarg, eq + 1};
        break;
      }
      case OPT_KEY_ID:
        po.sign_key_id = optarg;
        break;
      case OPT_KEY_FILE:
        key_file = optarg;
        break;
      case OPT_TRACEPARENT:
        traceparent = optarg;
        break;
      case OPT_TRACESTATE:
        tracestate = optarg;
        break;
      case OPT_PRINT_TRACE:
        print_trace = 1;
        break;
      case OPT_NODE:
        if (nn == sizeof nodes / sizeof *nodes)
          return wr_args_refuse(prog, "at most 64 --node options");
        nodes[nn++] = optarg;
        break;
      case OPT_DELAY:
        if (wr_args_duration("--delay", optarg, 0,
                             (int64_t)WARREN_DELAY_MAX_S * 1000, &delay_ms, why,
                             sizeof why))
          return wr_args_refuse(prog, why);
        break;
      case OPT_AT:
        if (wr_args_time("--at", optarg, &at_ms, why, sizeof why))
          return wr_args_refuse(prog, why);
        break;
      case OPT_DELAY_PREFIX:
        delay_prefix = optarg;
        break;
      case OPT_REPLY_TO:
        reply_to = optarg;
        break;
      case OPT_WAIT:
        wait = 1;
        break;
      case OPT_TIMEOUT: {
        char *end;
        errno = 0;
        timeout_s = strtod(optarg, &end);
        if (errno || end == optarg || *end || !isfinite(timeout_s) ||
            timeout_s < 0.001 || timeout_s > 86400) {
          snprintf(why, sizeof why,
                   "--timeout takes seconds from 0.001 to 86400 (got '%s')",
                   optarg);
          return wr_args_refuse(prog, why);
        }
        break;
      }
      case 'h':
        usage(stdout);
        return 0;
      case OPT_VERSION:
        printf("%s %s\n", prog, wr_args_version());
        return 0;
      default:
        wr_args_getopt_error(c, argv, why, sizeof why);
        return wr_args_refuse(prog, why);
    }
  }
  if (optind < argc) {
    snprintf(why, sizeof why, "unexpected argument '%s'", argv[optind]);
    return wr_args_refuse(prog, why);
  }
  if (!key) return wr_args_refuse(prog, "--routing-key is required");
  if (!po.sign_key_id != !key_file)
    return wr_args_refuse(prog, "--key-id and --key-file go together");
  if (tracestate && !traceparent)
    return wr_args_refuse(prog, "--tracestate needs --traceparent");
  if (delay_ms && at_ms)
    return wr_args_refuse(prog, "--delay and --at: give one of them");
  if ((delay_ms || at_ms) && exchange[0])
    return wr_args_refuse(prog,
                          "a delayed job goes to a queue: give --routing-key "
                          "QUEUE without --exchange");
  if (wait && reply_to)
    return wr_args_refuse(prog,
                          "--wait sets its own reply-to: not with "
                          "--reply-to");
  if (wait && count != 1)
    return wr_args_refuse(prog, "--wait sends one job: not with --count");
  /* libwarren's defaults, for the options to lay over. */
  wr_conn_params b = {.host = "127.0.0.1",
                      .port = 5672,
                      .vhost = "/",
                      .user = "guest",
                      .password = "guest",
                      .tls = {.verify_peer = 1, .verify_hostname = 1}};
  static wr_args_store store;
  if (wr_args_conn_apply(&conn, getenv(WR_ARGS_URL_ENV), &b, &store, why,
                         sizeof why))
    return wr_args_refuse(prog, why);
  producer_conn(&b, &po);
  po.nodes = nn ? nodes : NULL;
  po.n_nodes = nn;
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
  memset(store.password, 0, sizeof store.password);
  if (rc != 0) {
    fprintf(stderr, "warren-publish: %s: %s\n", warren_strerror(rc), why);
    return 1;
  }
  /* As long as the body needs: a fixed buffer cut bodies at 64 KiB. */
  size_t text_size = expanded_size(body);
  char *text = malloc(text_size);
  if (!text) {
    fprintf(stderr, "warren-publish: out of memory for a %zu-byte body\n",
            text_size);
    warren_producer_close(p);
    return 1;
  }
  wr_log_init_from_env();
  wr_exporter *tracer = traceparent ? NULL : tracing_start();
  char mid[256], tp[WARREN_TRACEPARENT_LEN + 1];
  for (long n = 1; n <= count && rc == 0; n++) {
    warren_publish_opts o = {.size = sizeof o,
                             .headers = hdr,
                             .n_headers = nh,
                             .content_type = ctype,
                             .traceparent = traceparent,
                             .tracestate = tracestate,
                             .traceparent_out = tp,
                             .delay_ms = delay_ms,
                             .not_before_ms = at_ms,
                             .delay_prefix = delay_prefix,
                             .reply_to = reply_to,
                             .priority = (int)priority};
    if (id) {
      if (count > 1)
        snprintf(mid, sizeof mid, "%s%ld", id, n);
      else
        snprintf(mid, sizeof mid, "%s", id);
      o.message_id = mid;
    }
    expand(text, text_size, body, n);
    uint64_t start_ns = wr_prodspan_now_ns();
    if (wait) {
      rc = call(p, exchange, key, text, &o, timeout_s);
      if (tracer && rc != WARREN_INVALID)
        publish_span(tracer, tp, exchange, key, o.message_id, strlen(text),
                     start_ns);
      wr_exporter_stop(tracer, 5);
      warren_producer_close(p);
      free(text);
      return rc;
    }
    rc = warren_producer_publish(p, exchange, key, text, strlen(text), &o);
    if (tracer && (rc == 0 || rc == WARREN_BROKER_NACK))
      publish_span(tracer, tp, exchange, key, o.message_id, strlen(text),
                   start_ns);
    /* Printed once written, so a script finds the trace of every job that
     * may have reached the broker, a failed run's included. */
    if (print_trace && (rc == 0 || rc == WARREN_BROKER_NACK))
      printf("%s %s\n", id ? mid : "-", tp);
  }
  free(text);
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
  /* On stderr: stdout holds only what a script reads (--print-trace). */
  if (delay_ms || at_ms)
    fprintf(stderr,
            "published %ld delayed job(s) for queue '%s', all confirmed\n",
            count, key);
  else
    fprintf(stderr,
            "published %ld job(s) to exchange '%s' key '%s', all confirmed\n",
            count, exchange, key);
  return 0;
}
