#include "events_cli.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <amqp.h>
#include <cjson/cJSON.h>

#include <warren/status.h>

#include "../config/cfg.h"
#include "args.h"
#include "conn.h"
#include "toolcfg.h"

#define CH 1

static volatile sig_atomic_t stop;

static void on_signal(int sig) {
  (void)sig;
  stop = 1;
}

static void usage(FILE *f) {
  fprintf(
      f,
      "usage: warren events CONFIG_FILE [OPTION]...\n"
      "Prints the lifecycle events the workers of CONFIG_FILE publish\n"
      "(events.exchange; docs/events.md), one line each, until SIGINT or\n"
      "SIGTERM. Its queue is its own (exclusive, deleted when it stops).\n"
      "  --handler NAME        only the job events of handler NAME\n"
      "  --job ID              only the events of the job with that id\n"
      "  --json                each event as its JSON object, one a line\n");
  wr_args_conn_help(f, "CONFIG_FILE's broker section");
  fprintf(f,
          "Other:\n"
          "  -h, --help            this text\n"
          "  --version             the version and the handler ABI version\n"
          "Exit status: 0 stopped by a signal, 1 broker trouble, 2 usage or\n"
          "configuration error.\n");
}

static const char *str(const cJSON *o, const char *k) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* 10000-01-01T00:00:00Z: later times are not printed. */
#define MAX_EVENT_TIME 253402300800.0

/* s with control characters as \xNN, as every tool prints what came
 * from a publisher: a job id cannot forge a line or move the cursor. */
static void put_text(const char *s) {
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c < 0x20 || c == 0x7f)
      printf("\\x%02x", c);
    else
      putchar(c);
  }
}

/* One human line: time (UTC), host:pid, handler, event, then the rest. */
void wr_events_format_time(double at, char *out, size_t len) {
  /* The event came from the broker: anything outside years 1970..9999
   * (or not a number) is shown as "?", never converted (a double too
   * large for time_t is undefined, and gmtime fails on it). */
  struct tm tm;
  time_t sec = (time_t)(at >= 0 && at < MAX_EVENT_TIME ? at : 0);
  char when[32];
  if (!(at >= 0 && at < MAX_EVENT_TIME) || !gmtime_r(&sec, &tm) ||
      !strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm)) {
    snprintf(out, len, "?");
    return;
  }
  int ms = (int)((at - (double)sec) * 1000 + 0.5);
  snprintf(out, len, "%s.%03dZ", when, ms > 999 ? 999 : ms);
}

static void print_human(const cJSON *o) {
  const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "time");
  char when[WR_EVENTS_TIME_LEN];
  wr_events_format_time(cJSON_IsNumber(t) ? t->valuedouble : 0, when,
                        sizeof when);
  const cJSON *pid = cJSON_GetObjectItemCaseSensitive(o, "pid");
  const char *h = str(o, "handler");
  printf("%s ", when);
  put_text(str(o, "hostname") ? str(o, "hostname") : "?");
  printf(":%d ", cJSON_IsNumber(pid) ? pid->valueint : 0);
  put_text(h ? h : "-");
  putchar(' ');
  put_text(str(o, "event") ? str(o, "event") : "?");
  static const char *const keys[] = {
      "job_id", "attempt",  "duration", "outcome",   "delay",  "reason",
      "error",  "trace_id", "active",   "processed", "dropped"};
  for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, keys[i]);
    if (cJSON_IsString(v)) {
      int quote = strchr(v->valuestring, ' ') != NULL;
      printf(" %s=%s", keys[i], quote ? "\"" : "");
      put_text(v->valuestring);
      if (quote) putchar('"');
    } else if (cJSON_IsNumber(v) && !strcmp(keys[i], "duration")) {
      printf(" %s=%.6f", keys[i], v->valuedouble);
    } else if (cJSON_IsNumber(v)) {
      printf(" %s=%g", keys[i], v->valuedouble);
    }
  }
  putchar('\n');
}

/* Every event of one message body (a JSON array) that passes the
 * filter. */
static void show(const amqp_bytes_t *body, const char *job, int json) {
  cJSON *a = cJSON_ParseWithLength(body->bytes, body->len);
  if (!cJSON_IsArray(a)) {
    fprintf(stderr, "events: a message that is not a JSON array: %.*s\n",
            (int)(body->len > 200 ? 200 : body->len),
            (const char *)body->bytes);
    cJSON_Delete(a);
    return;
  }
  const cJSON *o;
  cJSON_ArrayForEach(o, a) {
    if (job) {
      const char *id = str(o, "job_id");
      if (!id || strcmp(id, job)) continue;
    }
    if (json) {
      char *s = cJSON_PrintUnformatted(o);
      if (s) puts(s);
      free(s);
    } else {
      print_human(o);
    }
  }
  fflush(stdout);
  cJSON_Delete(a);
}

static int bind(amqp_connection_state_t c, amqp_bytes_t q, const char *ex,
                const char *key, char *err, size_t errlen) {
  amqp_queue_bind(c, CH, q, amqp_cstring_bytes(ex), amqp_cstring_bytes(key),
                  amqp_empty_table);
  return wr_conn_reply(c, amqp_get_rpc_reply(c), "queue.bind", err, errlen);
}

static int tail(const wr_cfg *cfg, const char *handler, const char *job,
                int json) {
  char err[1024];
  amqp_connection_state_t c;
  int rc = wr_conn_open_any(&cfg->broker, &c, NULL, err, sizeof err);
  if (rc != WARREN_OK) {
    fprintf(stderr, "events: %s\n", err);
    return 1;
  }
  const char *ex = cfg->events.exchange;
  rc = wr_conn_channel(c, CH, 0, err, sizeof err);
  if (rc == WARREN_OK) {
    /* As the workers declare it: binding works before any has started. */
    amqp_exchange_declare(c, CH, amqp_cstring_bytes(ex),
                          amqp_cstring_bytes("topic"), 0, 1, 0, 0,
                          amqp_empty_table);
    rc = wr_conn_reply(c, amqp_get_rpc_reply(c), "exchange.declare", err,
                       sizeof err);
  }
  amqp_bytes_t q = amqp_empty_bytes;
  if (rc == WARREN_OK) {
    amqp_queue_declare_ok_t *ok = amqp_queue_declare(c, CH, amqp_empty_bytes, 0,
                                                     0, 1, 1, amqp_empty_table);
    rc = wr_conn_reply(c, amqp_get_rpc_reply(c), "queue.declare", err,
                       sizeof err);
    if (rc == WARREN_OK) q = amqp_bytes_malloc_dup(ok->queue);
  }
  char key[300];
  if (handler)
    snprintf(key, sizeof key, "%s.job.*", handler);
  else
    snprintf(key, sizeof key, "*.job.*");
  if (rc == WARREN_OK) rc = bind(c, q, ex, key, err, sizeof err);
  if (rc == WARREN_OK && !handler && !job)
    rc = bind(c, q, ex, "worker.*", err, sizeof err);
  if (rc == WARREN_OK) {
    amqp_basic_consume(c, CH, q, amqp_empty_bytes, 0, 1, 1, amqp_empty_table);
    rc = wr_conn_reply(c, amqp_get_rpc_reply(c), "basic.consume", err,
                       sizeof err);
  }
  amqp_bytes_free(q);
  if (rc != WARREN_OK) {
    fprintf(stderr, "events: %s\n", err);
    amqp_destroy_connection(c);
    return 1;
  }
  fprintf(stderr, "events: listening to %s (%s%s)\n", ex, key,
          !handler && !job ? " and worker.*" : "");
  int code = 0;
  while (!stop) {
    amqp_envelope_t env;
    struct timeval tv = {0, 200000};
    amqp_maybe_release_buffers(c);
    amqp_rpc_reply_t r = amqp_consume_message(c, &env, &tv, 0);
    if (r.reply_type == AMQP_RESPONSE_NORMAL) {
      show(&env.message.body, job, json);
      amqp_destroy_envelope(&env);
      continue;
    }
    if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
        (r.library_error == AMQP_STATUS_TIMEOUT ||
         r.library_error == AMQP_STATUS_UNEXPECTED_STATE)) {
      if (r.library_error == AMQP_STATUS_UNEXPECTED_STATE) {
        /* A frame that is not a delivery: a close ends the tail. */
        amqp_frame_t f;
        if (amqp_simple_wait_frame_noblock(c, &f, &(struct timeval){0, 0}) ==
                AMQP_STATUS_OK &&
            f.frame_type == AMQP_FRAME_METHOD &&
            (f.payload.method.id == AMQP_CHANNEL_CLOSE_METHOD ||
             f.payload.method.id == AMQP_CONNECTION_CLOSE_METHOD)) {
          wr_conn_close_reason(&f.payload.method, err, sizeof err);
          fprintf(stderr, "events: %s\n", err);
          code = 1;
          break;
        }
      }
      continue;
    }
    wr_conn_reply(c, r, "consuming", err, sizeof err);
    fprintf(stderr, "events: %s\n", err);
    code = 1;
    break;
  }
  if (code)
    amqp_destroy_connection(c);
  else
    wr_conn_close(c);
  return code;
}

int wr_events_tool_main(int argc, char **argv) {
  enum { OPT_HANDLER = WR_ARGS_OPT_NEXT, OPT_JOB, OPT_JSON, OPT_VERSION };
  static const struct option longopts[] = {
      {"handler", required_argument, NULL, OPT_HANDLER},
      {"job", required_argument, NULL, OPT_JOB},
      {"json", no_argument, NULL, OPT_JSON},
      {"help", no_argument, NULL, 'h'},
      {"version", no_argument, NULL, OPT_VERSION},
      WR_ARGS_CONN_LONGOPTS,
      {NULL, 0, NULL, 0}};
  static const char prog[] = "warren events";
  const char *handler = NULL, *job = NULL;
  int json = 0, c;
  wr_args_conn conn = {0};
  char err[8192];
  optind = 0;
  opterr = 0;
  while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
    int taken = wr_args_conn_opt(&conn, c, optarg, err, sizeof err);
    if (taken < 0) return wr_args_refuse(prog, err);
    if (taken) continue;
    switch (c) {
      case OPT_HANDLER:
        handler = optarg;
        break;
      case OPT_JOB:
        job = optarg;
        break;
      case OPT_JSON:
        json = 1;
        break;
      case 'h':
        usage(stdout);
        return 0;
      case OPT_VERSION:
        wr_args_print_warren_version();
        return 0;
      default:
        wr_args_getopt_error(c, argv, err, sizeof err);
        return wr_args_refuse(prog, err);
    }
  }
  if (argc - optind != 1) {
    snprintf(err, sizeof err, "takes CONFIG_FILE (got %d operands)",
             argc - optind);
    return wr_args_refuse(prog, err);
  }
  wr_cfg *cfg;
  static wr_args_store store;
  int bad = wr_toolcfg_load(prog, argv[optind], &conn, &store, &cfg);
  if (bad) return bad;
  if (handler) {
    size_t k = 0;
    while (k < cfg->n_handlers && strcmp(cfg->handlers[k].name, handler)) k++;
    if (k == cfg->n_handlers) {
      snprintf(err, sizeof err, "%s has no handler named '%s'", argv[optind],
               handler);
      wr_cfg_free(cfg);
      return wr_args_refuse(prog, err);
    }
  }
  /* No SA_RESTART: a signal ends the wait for the next message. */
  struct sigaction sa = {0};
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  int rc = tail(cfg, handler, job, json);
  wr_cfg_free(cfg);
  return rc;
}
