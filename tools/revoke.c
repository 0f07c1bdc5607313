#include "revoke.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <warren/status.h>

#include "../config/cfg.h"
#include "args.h"
#include "clock.h"
#include "conn.h"
#include "control.h"
#include "keyring.h"
#include "retry.h"
#include "toolcfg.h"

#define CH 1

static void usage(FILE *f) {
  fprintf(
      f,
      "usage: warren revoke CONFIG_FILE JOB_ID... [OPTION]...\n"
      "Revokes jobs by id (their AMQP message_id) in every Warren process\n"
      "running now on CONFIG_FILE's broker and vhost: a revoked job is not\n"
      "run; it is dead-lettered with reason revoked. A process started\n"
      "later does not know the revoke (docs/revoke.md).\n"
      "  --expires DURATION    how long each process refuses these ids:\n"
      "                        90, 15m, 1h, 1h30m (units ms, s, m, h, d);\n"
      "                        1s to 7d\n"
      "                        (default 1h)\n"
      "  --terminate           also stop the job where it is running (its\n"
      "                        worker is killed and restarted)\n"
      "  --key KEY_ID          sign with this key of the config's signing\n"
      "                        keyring (default: signing.countersign_key,\n"
      "                        else the first key); with a keyring the\n"
      "                        message is always signed\n");
  wr_args_conn_help(f, "CONFIG_FILE's broker section");
  fprintf(
      f,
      "Other:\n"
      "  -h, --help            this text\n"
      "  --version             the version and the handler ABI version\n"
      "At most %d job ids, each 1 to %d bytes.\n"
      "Exit status: 0 the broker confirmed the revoke, 1 broker trouble or\n"
      "no Warren process listening, 2 usage or configuration error.\n",
      WR_CONTROL_MAX_IDS, WR_CONTROL_MAX_ID);
}

/* Publish body to the control exchange, confirmed. */
static int send_revoke(const wr_cfg *cfg, const char *body, size_t len,
                       const char *sig) {
  char err[512];
  amqp_connection_state_t c;
  int rc = wr_conn_open_any(&cfg->broker, &c, NULL, err, sizeof err);
  if (rc != WARREN_OK) {
    fprintf(stderr, "revoke: %s\n", err);
    return rc;
  }
  rc = wr_conn_channel(c, CH, 1, err, sizeof err);
  amqp_bytes_t ex = amqp_cstring_bytes(WR_CONTROL_EXCHANGE);
  if (rc == WARREN_OK) {
    /* As every worker declares it: a publish to a missing exchange would
     * close the channel. */
    amqp_exchange_declare(c, CH, ex, amqp_cstring_bytes("fanout"), 0, 1, 0, 0,
                          amqp_empty_table);
    rc =
        wr_conn_reply(c, amqp_get_rpc_reply(c),
                      "exchange.declare " WR_CONTROL_EXCHANGE, err, sizeof err);
  }
  if (rc != WARREN_OK) {
    fprintf(stderr, "revoke: %s\n", err);
    amqp_destroy_connection(c);
    return rc;
  }
  amqp_table_entry_t h = wr_entry_str(WR_CONTROL_SIG_HEADER, sig ? sig : "");
  amqp_basic_properties_t pr = {0};
  pr._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG |
              AMQP_BASIC_APP_ID_FLAG | AMQP_BASIC_TYPE_FLAG;
  pr.content_type = amqp_cstring_bytes("application/json");
  pr.delivery_mode = 1; /* transient: it is for the processes running now */
  pr.app_id = amqp_cstring_bytes("warren revoke");
  pr.type = amqp_cstring_bytes("revoke");
  if (sig) {
    pr._flags |= AMQP_BASIC_HEADERS_FLAG;
    pr.headers = (amqp_table_t){1, &h};
  }
  wr_confirms cf;
  wr_confirms_init(&cf);
  /* Mandatory: with no process listening the broker returns it, and the
   * operator is told that nothing was revoked. */
  int st = amqp_basic_publish(c, CH, ex, amqp_empty_bytes, 1, 0, &pr,
                              (amqp_bytes_t){len, (void *)body});
  if (st != AMQP_STATUS_OK) {
    fprintf(stderr, "revoke: publish: %s\n", amqp_error_string2(st));
    amqp_destroy_connection(c);
    return WARREN_BROKER_CLOSED;
  }
  wr_confirms_sent(&cf);
  rc = wr_confirms_wait(c, &cf, 30000);
  /* A return (no queue bound) comes with the broker's NO_ROUTE. */
  if (rc == WARREN_BROKER_NACK && strstr(cf.err, "NO_ROUTE"))
    fprintf(stderr,
            "revoke: no Warren process is listening on exchange %s (the "
            "broker returned the message); nothing was revoked\n",
            WR_CONTROL_EXCHANGE);
  else if (rc != WARREN_OK)
    fprintf(stderr, "revoke: not confirmed: %s\n", cf.err);
  wr_conn_close(c);
  return rc;
}

int wr_revoke_main(int argc, char **argv) {
  enum { OPT_EXPIRES = WR_ARGS_OPT_NEXT, OPT_TERMINATE, OPT_KEY, OPT_VERSION };
  static const struct option longopts[] = {
      {"expires", required_argument, NULL, OPT_EXPIRES},
      {"terminate", no_argument, NULL, OPT_TERMINATE},
      {"key", required_argument, NULL, OPT_KEY},
      {"help", no_argument, NULL, 'h'},
      {"version", no_argument, NULL, OPT_VERSION},
      WR_ARGS_CONN_LONGOPTS,
      {NULL, 0, NULL, 0}};
  static const char prog[] = "warren revoke";
  wr_args_conn conn = {0};
  double expires = WR_CONTROL_DEFAULT_EXPIRES;
  int64_t ms;
  int terminate = 0, c;
  const char *key = NULL;
  char err[8192];
  optind = 0; /* getopt_long starts afresh */
  opterr = 0;
  while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
    int taken = wr_args_conn_opt(&conn, c, optarg, err, sizeof err);
    if (taken < 0) return wr_args_refuse(prog, err);
    if (taken) continue;
    switch (c) {
      case OPT_EXPIRES:
        /* The worker keeps an id to the second: 1s at least. */
        if (wr_args_duration("--expires", optarg, 1000,
                             (int64_t)WR_CONTROL_MAX_EXPIRES * 1000, &ms, err,
                             sizeof err))
          return wr_args_refuse(prog, err);
        expires = (double)ms / 1000;
        break;
      case OPT_TERMINATE:
        terminate = 1;
        break;
      case OPT_KEY:
        key = optarg;
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
  if (optind >= argc) return wr_args_refuse(prog, "CONFIG_FILE is missing");
  const char *path = argv[optind++];
  int n = argc - optind;
  if (n < 1) return wr_args_refuse(prog, "no JOB_ID given");
  if (n > WR_CONTROL_MAX_IDS) {
    snprintf(err, sizeof err, "at most %d job ids at once (got %d)",
             WR_CONTROL_MAX_IDS, n);
    return wr_args_refuse(prog, err);
  }
  const char *const *ids = (const char *const *)argv + optind;
  for (int i = 0; i < n; i++) {
    size_t k = strlen(ids[i]);
    if (k < 1 || k > WR_CONTROL_MAX_ID) {
      snprintf(err, sizeof err, "a job id is 1 to %d bytes (got %zu)",
               WR_CONTROL_MAX_ID, k);
      return wr_args_refuse(prog, err);
    }
  }
  wr_cfg *cfg;
  static wr_args_store store;
  int bad = wr_toolcfg_load(prog, path, &conn, &store, &cfg);
  if (bad) return bad;
  const wr_keyring *ring = cfg->signing.keyring;
  if (!key && ring)
    key = cfg->signing.countersign_key
              ? cfg->signing.countersign_key
              : (wr_keyring_count(ring) ? wr_keyring_id(ring, 0) : NULL);
  if (key && !ring) {
    wr_cfg_free(cfg);
    return wr_args_refuse(prog, "--key needs a signing section in CONFIG_FILE");
  }
  size_t len;
  char *body = wr_control_build_revoke(ids, (size_t)n, expires, terminate,
                                       (double)wr_unix_ms() / 1000.0, &len);
  char sig[WR_CONTROL_SIG_MAX];
  int rc = 2;
  if (!body) {
    fprintf(stderr, "revoke: out of memory\n");
  } else if (key && wr_control_sign(ring, key, body, len, sig) != 0) {
    fprintf(stderr, "%s: no key '%s' in the signing keyring\n", path, key);
  } else {
    rc = send_revoke(cfg, body, len, key ? sig : NULL) == WARREN_OK ? 0 : 1;
    if (rc == 0)
      printf(
          "revoked %d job id(s) for %.0f s%s%s: sent to every Warren "
          "process listening on exchange %s\n",
          n, expires, terminate ? ", terminating running ones" : "",
          key ? " (signed)" : "", WR_CONTROL_EXCHANGE);
  }
  free(body);
  wr_cfg_free(cfg);
  memset(store.password, 0, sizeof store.password);
  return rc;
}
