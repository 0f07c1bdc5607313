/* warren: the worker binary. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <warren/handler.h>
#include <warren/status.h>

#include "../config/cfg.h"
#include "dlq.h"
#include "log.h"
#include "plugin.h"
#include "supervisor.h"

#define WARREN_VERSION "0.1.0"

static void usage(FILE *f) {
  fprintf(f,
          "usage: warren [--check-config] CONFIG_FILE\n"
          "       warren dlq list|show|replay|purge CONFIG_FILE HANDLER [...]\n"
          "       warren --version\n"
          "\n"
          "Runs the handlers CONFIG_FILE lists against RabbitMQ.\n"
          "  --check-config  validate the file and load every plugin, without\n"
          "                  connecting; exit 0 if all is well, 2 if not.\n"
          "Environment: WARREN_LOG_LEVEL=error|warn|info|debug\n");
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
  int check = 0;
  const char *path = NULL;
  if (argc > 1 && strcmp(argv[1], "dlq") == 0)
    return wr_dlq_main(argc - 2, argv + 2);
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--check-config") == 0) {
      check = 1;
    } else if (strcmp(argv[i], "--version") == 0) {
      printf("warren %s (handler ABI %d.%d)\n", WARREN_VERSION,
             WARREN_ABI_MAJOR, WARREN_ABI_MINOR);
      return 0;
    } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      usage(stdout);
      return 0;
    } else if (argv[i][0] == '-' || path) {
      usage(stderr);
      return 2;
    } else {
      path = argv[i];
    }
  }
  if (!path) {
    usage(stderr);
    return 2;
  }
  wr_cfg *cfg;
  char err[8192];
  int rc = wr_cfg_load(path, &cfg, err, sizeof err);
  if (rc != WARREN_OK) {
    fprintf(stderr, "%s\n", err);
    return 2;
  }
  wr_log_format = cfg->log_format;
  if (check) {
    int bad = check_plugins(cfg);
    if (!bad) printf("%s: OK, %zu handler(s)\n", path, cfg->n_handlers);
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
  wr_info("warren %s started with %zu handler(s) from %s", WARREN_VERSION,
          cfg->n_handlers, path);
  int code = wr_sup_run(sup);
  wr_sup_destroy(sup);
  wr_cfg_free(cfg);
  return code;
}
