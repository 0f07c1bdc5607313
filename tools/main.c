/* warren: the worker binary. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <warren/handler.h>
#include <warren/status.h>

#include "../config/cfg.h"
#include "args.h"
#include "dlq.h"
#include "events_cli.h"
#include "log.h"
#include "plugin.h"
#include "revoke.h"
#include "supervisor.h"

static void usage(FILE *f) {
  fprintf(
      f,
      "usage: warren [--check-config] [--print-config] [--burst] "
      "CONFIG_FILE\n"
      "       warren dlq list|show|replay|purge CONFIG_FILE HANDLER "
      "[OPTION]...\n"
      "       warren events CONFIG_FILE [--handler NAME] [--job ID] [--json]\n"
      "       warren revoke CONFIG_FILE JOB_ID... [--expires DURATION] "
      "[--terminate]\n"
      "       warren --help | --version\n"
      "\n"
      "Runs the handlers CONFIG_FILE lists against RabbitMQ.\n"
      "  --check-config  validate the file and load every plugin, without\n"
      "                  connecting; exit 0 if all is well, 2 if not\n"
      "  --print-config  print every effective setting and where it came\n"
      "                  from (secrets masked), without connecting; exit 0\n"
      "  --burst         stop once every queue is empty and no job is\n"
      "                  held, as SIGTERM would (batch runs)\n"
      "  -h, --help      this text\n"
      "  --version       the version and the handler ABI version\n"
      "`warren dlq --help` lists the options of the dead-letter tools;\n"
      "`warren revoke --help` those of revoking jobs.\n"
      "Environment: WARREN_LOG_LEVEL=error|warn|info|debug\n"
      "Exit status: 0 stopped cleanly, 1 the event loop failed, 2 usage or\n"
      "configuration error, 3 too many refused logins (docs/tools.md).\n");
}

/* Load and unload every plugin, so --check-config catches what start
 * would refuse. */
static int check_plugins(const wr_cfg *cfg) {
  int bad = 0;
  for (size_t i = 0; i < cfg->n_handlers; i++) {
    const wr_handler_cfg *h = &cfg->handlers[i];
    wr_plugin p;
    char err[512];
    if (wr_plugin_load(h->plugin, &p, err, sizeof err) != WARREN_OK) {
      fprintf(stderr, "%s:%d: handler %s: %s\n", cfg->path, h->line, h->name,
              err);
      bad = 1;
      continue;
    }
    printf("handler %-16s queue %-20s prefetch %-5d concurrency %-4d %s\n",
           h->name, h->queue, h->prefetch, h->concurrency, h->plugin);
    wr_plugin_unload(&p);
  }
  return bad;
}

int main(int argc, char **argv) {
  wr_log_init_from_env();
  /* A subcommand has its own options: it is dispatched before any are
   * read here. */
  if (argc > 1 && strcmp(argv[1], "dlq") == 0)
    return wr_dlq_main(argc - 1, argv + 1);
  if (argc > 1 && strcmp(argv[1], "events") == 0)
    return wr_events_tool_main(argc - 1, argv + 1);
  if (argc > 1 && strcmp(argv[1], "revoke") == 0)
    return wr_revoke_main(argc - 1, argv + 1);
  enum { OPT_CHECK = WR_ARGS_OPT_NEXT, OPT_PRINT, OPT_BURST, OPT_VERSION };
  static const struct option longopts[] = {
      {"check-config", no_argument, NULL, OPT_CHECK},
      {"print-config", no_argument, NULL, OPT_PRINT},
      {"burst", no_argument, NULL, OPT_BURST},
      {"help", no_argument, NULL, 'h'},
      {"version", no_argument, NULL, OPT_VERSION},
      {NULL, 0, NULL, 0}};
  int check = 0, print = 0, burst = 0, c;
  char err[8192];
  opterr = 0; /* refused options are reported below, in one format */
  while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
    switch (c) {
      case OPT_CHECK:
        check = 1;
        break;
      case OPT_PRINT:
        print = 1;
        break;
      case OPT_BURST:
        burst = 1;
        break;
      case 'h':
        usage(stdout);
        return 0;
      case OPT_VERSION:
        wr_args_print_warren_version();
        return 0;
      default:
        wr_args_getopt_error(c, argv, err, sizeof err);
        return wr_args_refuse("warren", err);
    }
  }
  if (optind >= argc) return wr_args_refuse("warren", "CONFIG_FILE is missing");
  if (optind + 1 < argc) {
    snprintf(err, sizeof err, "one CONFIG_FILE only (got '%s' too)",
             argv[optind + 1]);
    return wr_args_refuse("warren", err);
  }
  const char *path = argv[optind];
  wr_cfg *cfg;
  int rc = wr_cfg_load(path, &cfg, err, sizeof err);
  if (rc != WARREN_OK) {
    fprintf(stderr, "%s\n", err);
    return 2;
  }
  wr_log_format = cfg->log_format;
  if (print || check) {
    int bad = 0;
    if (print) wr_cfg_print(cfg, stdout);
    if (check) {
      bad = check_plugins(cfg);
      if (!bad) printf("%s: OK, %zu handler(s)\n", path, cfg->n_handlers);
    }
    wr_cfg_free(cfg);
    return bad ? 2 : 0;
  }
  wr_sup *sup;
  rc = wr_sup_create(cfg, &sup, err, sizeof err);
  if (rc != WARREN_OK) {
    wr_error("%s", err[0] ? err : warren_strerror(rc));
    wr_cfg_free(cfg);
    return 2;
  }
  if (burst) wr_sup_set_burst(sup, 1);
  wr_info("warren %s started with %zu handler(s) from %s%s", wr_args_version(),
          cfg->n_handlers, path,
          burst ? " (burst: until the queues are empty)" : "");
  int code = wr_sup_run(sup);
  wr_sup_destroy(sup);
  wr_cfg_free(cfg);
  return code;
}
