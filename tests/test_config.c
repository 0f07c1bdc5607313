#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <warren/status.h>

#include "cfg.h"
#include "log.h"

static char path[64];
static char err[4096];

static const char *write_cfg(const char *text) {
  strcpy(path, "/tmp/warren-cfg-XXXXXX");
  int fd = mkstemp(path);
  cr_assert(fd >= 0);
  cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
  close(fd);
  return path;
}

static int load(const char *text, wr_cfg **cfg) {
  *cfg = NULL;
  int rc = wr_cfg_load(write_cfg(text), cfg, err, sizeof err);
  unlink(path);
  return rc;
}

/* Asserts the load fails and the error names the line and setting. */
static void expect_error(const char *text, int line, const char *needle) {
  wr_cfg *cfg;
  int rc = load(text, &cfg);
  cr_assert_lt(rc, 0, "expected failure for:\n%s", text);
  cr_assert_null(cfg);
  char at[128];
  if (line > 0)
    snprintf(at, sizeof at, "%s:%d:", path, line);
  else
    snprintf(at, sizeof at, "%s: ", path); /* no line: the setting is absent */
  cr_assert(strstr(err, at), "error '%s' lacks '%s'", err, at);
  cr_assert(strstr(err, needle), "error '%s' lacks '%s'", err, needle);
}

#define H(extra) \
  "handlers = ( { name = \"a\"; plugin = \"/x/a.so\"; " extra " } );\n"

Test(config, full_file_is_read) {
  wr_cfg *cfg;
  /* ca_file is relative to the config's folder, /tmp, and must exist. */
  char ca[] = "/tmp/ca.pem";
  FILE *caf = access(ca, R_OK) == 0 ? NULL : fopen(ca, "w");
  if (caf) fclose(caf);
  int rc = load(
      "broker = { host = \"10.1.2.3\"; port = 5673; vhost = \"jobs\";\n"
      "  user = \"u\"; password = \"p\"; heartbeat = 15;\n"
      "  tls = { enabled = true; ca_file = \"ca.pem\"; verify_hostname = "
      "false; }; };\n"
      "worker = { shutdown_grace = 12.5; };\n"
      "exchanges = ( { name = \"jobs\"; type = \"topic\"; } );\n"
      "handlers = (\n"
      "  { name = \"mail\"; queue = \"q.mail\"; plugin = \"lib/mail.so\";\n"
      "    prefetch = 20; concurrency = 4; queue_type = \"classic\";\n"
      "    bindings = ( { exchange = \"jobs\"; routing_key = \"mail.#\"; } );\n"
      "    settings = { smtp = { host = \"mx\"; }; }; },\n"
      "  { name = \"b\"; plugin = \"/abs/b.so\"; }\n"
      ");\n",
      &cfg);
  cr_assert_eq(rc, WARREN_OK, "%s", err);
  cr_assert_str_eq(cfg->broker.host, "10.1.2.3");
  cr_assert_eq(cfg->broker.port, 5673);
  cr_assert_str_eq(cfg->broker.vhost, "jobs");
  cr_assert_eq(cfg->broker.heartbeat, 15);
  cr_assert(cfg->broker.tls.enabled);
  cr_assert_eq(cfg->broker.tls.ca_file[0], '/', "relative paths are resolved");
  cr_assert_not(cfg->broker.tls.verify_hostname);
  cr_assert_float_eq(cfg->shutdown_grace, 12.5, 1e-9);
  cr_assert_eq(cfg->n_exchanges, 1);
  cr_assert_eq(cfg->n_handlers, 2);
  const wr_handler_cfg *h = &cfg->handlers[0];
  cr_assert_str_eq(h->queue, "q.mail");
  cr_assert_str_eq(h->plugin, "/tmp/lib/mail.so");
  cr_assert_eq(h->prefetch, 20);
  cr_assert_eq(h->concurrency, 4);
  cr_assert_not(h->quorum);
  cr_assert_eq(h->n_bindings, 1);
  cr_assert_str_eq(h->bindings[0].routing_key, "mail.#");
  cr_assert_not_null(h->settings);
  /* defaults */
  const wr_handler_cfg *b = &cfg->handlers[1];
  cr_assert_str_eq(b->queue, "b");
  cr_assert_eq(b->prefetch, 10);
  cr_assert_eq(b->concurrency, 1);
  cr_assert(b->quorum);
  cr_assert(b->declare);
  wr_cfg_free(cfg);
}

/* A temporary file holding text; its path into path (a mkstemp template). */
static void temp_file(char *path, const char *text) {
  int fd = mkstemp(path);
  cr_assert_geq(fd, 0);
  cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
  close(fd);
}

Test(config, password_file_is_read_and_trimmed) {
  char secret[] = "/tmp/warren-secret-XXXXXX";
  temp_file(secret, "s3cret\n");
  char text[512];
  snprintf(text, sizeof text, "broker = { password_file = \"%s\"; };\n" H(""),
           secret);
  wr_cfg *cfg;
  cr_assert_eq(load(text, &cfg), WARREN_OK, "%s", err);
  cr_assert_str_eq(cfg->broker.password, "s3cret");
  wr_cfg_free(cfg);
  unlink(secret);
}

Test(config, health_and_log_settings_are_read) {
  char secret[] = "/tmp/warren-token-XXXXXX";
  temp_file(secret, "t0ken\n");
  char text[512];
  snprintf(text, sizeof text,
           "worker = { log_format = \"json\"; };\n"
           "health = { port = 8080; admin_token_file = \"%s\"; "
           "probe_interval = 2.0; queue_log_interval = 0; };\n" H(""),
           secret);
  wr_cfg *cfg;
  cr_assert_eq(load(text, &cfg), WARREN_OK, "%s", err);
  cr_assert_str_eq(cfg->admin_token, "t0ken");
  cr_assert_eq(cfg->log_format, WR_LOG_JSON);
  cr_assert_float_eq(cfg->probe_interval, 2.0, 1e-9);
  cr_assert_float_eq(cfg->snapshot_interval, 0.5, 1e-9, "the default");
  cr_assert_float_eq(cfg->check_interval, 10.0, 1e-9, "the default");
  cr_assert_float_eq(cfg->queue_log_interval, 0.0, 1e-9);
  wr_cfg_free(cfg);
  unlink(secret);
  cr_assert_eq(load("health = { port = 8080; };\n" H(""), &cfg), WARREN_OK);
  cr_assert_null(cfg->admin_token, "no token file: no admin route");
  cr_assert_eq(cfg->log_format, WR_LOG_TEXT);
  wr_cfg_free(cfg);
  expect_error("worker = { log_format = \"yaml\"; };\n" H(""), 1,
               "worker.log_format: must be \"text\", \"json\" or \"logfmt\"");
  expect_error("health = { admin_token_file = \"/nonexistent/t\"; };\n" H(""),
               1, "cannot read '/nonexistent/t'");
}

Test(config, syntax_error_names_line) {
  expect_error("broker = { port = 5672; };\n\nhandlers = ( { name = ; } );\n",
               3, "syntax error");
}

Test(config, unknown_key_is_an_error) {
  expect_error("broker = { hots = \"x\"; };\n" H(""), 1,
               "broker.hots: unknown setting");
  expect_error("\n" H("prefecth = 3;"), 2, "unknown setting");
  expect_error("colour = 1;\n" H(""), 1, "colour: unknown setting");
}

Test(config, wrong_type_is_an_error) {
  expect_error("broker = { port = \"5672\"; };\n" H(""), 1,
               "broker.port: must be an integer");
  expect_error(H("prefetch = 2.5;"), 1, "prefetch: must be an integer");
  expect_error(H("declare = 1;"), 1, "declare: must be true or false");
  expect_error(H("settings = 3;"), 1, "settings: must be a group");
}

Test(config, prefetch_bounds) {
  expect_error(H("prefetch = 0;"), 1, "prefetch: must be 1..65535 (got 0)");
  expect_error(H("prefetch = 65536;"), 1, "must be 1..65535 (got 65536)");
  expect_error(H("concurrency = 0;"), 1, "concurrency: must be 1..1024");
}

Test(config, duplicate_names_are_refused) {
  expect_error(
      "handlers = (\n { name = \"a\"; plugin = \"/a.so\"; },\n"
      " { name = \"a\"; plugin = \"/b.so\"; queue = \"other\"; }\n);\n",
      3, "handler name 'a' is used twice (first at line 2)");
  expect_error(
      "handlers = (\n { name = \"a\"; plugin = \"/a.so\"; },\n"
      " { name = \"b\"; plugin = \"/b.so\"; queue = \"a\"; }\n);\n",
      3, "queue 'a' is consumed by two handlers");
  expect_error(
      "exchanges = ( { name = \"x\"; },\n { name = \"x\"; } );\n" H(""), 2,
      "exchange 'x' is declared twice");
}

Test(config, missing_required_settings) {
  expect_error("broker = { };\n", 0, "handlers: at least one handler");
  expect_error("handlers = ( { plugin = \"/a.so\"; } );\n", 1,
               "missing setting 'name'");
  expect_error("handlers = ( { name = \"a\"; } );\n", 1,
               "missing setting 'plugin'");
  expect_error(H("queue_type = \"stream\";"), 1,
               "must be \"quorum\" or \"classic\"");
  expect_error(H("durable = false;"), 1, "quorum queues are always durable");
}

Test(config, retry_policy_and_timeout) {
  wr_cfg *cfg;
  cr_assert_eq(
      load(H("timeout = 30; retry = { max_attempts = 7; "
             "backoff = [0.5, 2.0, 30.0]; jitter = 0.2; max_crashes = 2; };"),
           &cfg),
      WARREN_OK, "%s", err);
  const wr_handler_cfg *h = &cfg->handlers[0];
  cr_assert_float_eq(h->timeout, 30, 1e-9);
  cr_assert_eq(h->retry.max_attempts, 7);
  cr_assert_eq(h->retry.max_crashes, 2);
  cr_assert_eq(h->retry.n_backoff, 3);
  cr_assert_float_eq(h->retry.backoff[1], 2, 1e-9);
  cr_assert_float_eq(h->retry.jitter, 0.2, 1e-9);
  wr_cfg_free(cfg);
  cr_assert_eq(load(H(""), &cfg), WARREN_OK, "%s", err);
  cr_assert_eq(cfg->handlers[0].retry.max_attempts, 5, "default");
  cr_assert_eq(cfg->handlers[0].retry.n_backoff, 3, "default 1 s, 10 s, 60 s");
  cr_assert_float_eq(cfg->handlers[0].retry.backoff[2], 60, 1e-9);
  wr_cfg_free(cfg);
  expect_error(H("retry = { backoff = []; };"), 1,
               "retry.backoff: must be a list");
  expect_error(H("retry = { backoff = (1.0, \"x\"); };"), 1,
               "retry.backoff[1]: each delay must be");
  expect_error(H("retry = { max_attempts = 0; };"), 1,
               "retry.max_attempts: must be 1..1000");
  expect_error(H("retry = { tries = 3; };"), 1, "retry.tries: unknown setting");
}

Test(config, a_breaker_is_off_without_its_group_and_checked_with_it) {
  wr_cfg *cfg;
  cr_assert_eq(load(H(""), &cfg), WARREN_OK, "%s", err);
  cr_assert_eq(cfg->handlers[0].breaker.enabled, 0, "off when absent");
  wr_cfg_free(cfg);
  cr_assert_eq(load(H("breaker = { };"), &cfg), WARREN_OK, "%s", err);
  const wr_breaker_cfg *b = &cfg->handlers[0].breaker;
  cr_assert_eq(b->enabled, 1);
  cr_assert_float_eq(b->failure_rate, 0.5, 1e-9);
  cr_assert_float_eq(b->slow_ms, 0, 1e-9, "not by duration unless set");
  cr_assert_float_eq(b->slow_percentile, 0.9, 1e-9);
  cr_assert_eq(b->window, 20);
  cr_assert_eq(b->min_jobs, 10);
  cr_assert_float_eq(b->cool_down, 30, 1e-9);
  cr_assert_eq(b->trial_jobs, 3);
  wr_cfg_free(cfg);
  cr_assert_eq(load(H("breaker = { window = 5; };"), &cfg), WARREN_OK, "%s",
               err);
  cr_assert_eq(cfg->handlers[0].breaker.min_jobs, 5,
               "min_jobs defaults to the window when it is under 10");
  wr_cfg_free(cfg);
  expect_error(H("breaker = { window = 5; min_jobs = 6; };"), 1,
               "breaker.min_jobs: must be at most window (5)");
  expect_error(H("breaker = { failure_rate = 0; };"), 1,
               "breaker: failure_rate and slow_ms are both 0");
  expect_error(H("breaker = { rate = 0.5; };"), 1,
               "breaker.rate: unknown setting");
  expect_error(H("breaker = 1;"), 1, "breaker: must be a group");
}

Test(config, in_process_handlers_are_limited) {
  wr_cfg *cfg;
  cr_assert_eq(load(H("isolation = false;"), &cfg), WARREN_OK, "%s", err);
  cr_assert_not(cfg->handlers[0].isolated);
  wr_cfg_free(cfg);
  cr_assert_eq(load(H(""), &cfg), WARREN_OK, "%s", err);
  cr_assert(cfg->handlers[0].isolated, "isolation is the default");
  wr_cfg_free(cfg);
  expect_error(
      H("isolation = false; concurrency = 2;"), 1,
      "isolation: isolation = false runs the handler in the supervisor");
  expect_error(H("isolation = false; timeout = 5;"), 1,
               "a timeout needs isolation");
}

Test(config, missing_file_is_reported) {
  wr_cfg *cfg;
  int rc = wr_cfg_load("/nonexistent/warren.cfg", &cfg, err, sizeof err);
  cr_assert_eq(rc, WARREN_CONFIG_READ);
  cr_assert(strstr(err, "/nonexistent/warren.cfg: cannot open"), "%s", err);
}

Test(config, several_errors_are_all_reported) {
  expect_error("broker = { port = 0; heartbeat = -1; };\n" H("prefetch = 0;"),
               1, "port");
  cr_assert(strstr(err, "heartbeat"), "%s", err);
  cr_assert(strstr(err, ":2: handlers[0].prefetch"), "%s", err);
}

Test(config, shipped_example_is_valid) {
  wr_cfg *cfg;
  int rc = wr_cfg_load(WARREN_SOURCE_DIR "/config/warren.cfg", &cfg, err,
                       sizeof err);
  cr_assert_eq(rc, WARREN_OK, "%s", err);
  wr_cfg_free(cfg);
}

Test(config, a_password_file_that_is_no_usable_secret_is_refused) {
  char text[512];
  snprintf(text, sizeof text,
           "broker = { password_file = \"/tmp\"; };\n" H(""));
  expect_error(text, 1, "is not a regular file");
  char secret[] = "/tmp/warren-secret-XXXXXX";
  int fd = mkstemp(secret);
  cr_assert(fd >= 0);
  cr_assert_eq(write(fd, "\n", 1), 1);
  snprintf(text, sizeof text, "broker = { password_file = \"%s\"; };\n" H(""),
           secret);
  expect_error(text, 1, "is empty");
  char big[1100];
  memset(big, 'x', sizeof big);
  cr_assert_eq(pwrite(fd, big, sizeof big, 0), (ssize_t)sizeof big);
  expect_error(text, 1, "is longer than 1023 bytes");
  close(fd);
  unlink(secret);
}

/* health.listen takes both families and names (health.c binds "::" dual
 * stack); a name is resolved at load, so a typo fails --check-config. */
Test(config, health_listen_takes_ipv4_ipv6_and_host_names) {
  static const char *const ok[] = {"0.0.0.0", "127.0.0.1", "::", "::1",
                                   "localhost"};
  for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
    char text[512];
    snprintf(text, sizeof text,
             "health = { listen = \"%s\"; port = 8080; };\n" H(""), ok[i]);
    wr_cfg *cfg;
    cr_assert_eq(load(text, &cfg), 0, "listen '%s': %s", ok[i], err);
    cr_assert_str_eq(cfg->health_listen, ok[i]);
    wr_cfg_free(cfg);
  }
}

Test(config, names_and_addresses_the_broker_would_refuse_are_errors) {
  char q[300], text[1024];
  memset(q, 'q', 250);
  q[250] = '\0';
  snprintf(text, sizeof text, H("queue = \"%s\";"), q);
  expect_error(text, 1, "queue name too long");
  expect_error(H("queue = \"\";"), 1, "must not be empty");
  expect_error("health = { listen = \"local host\"; port = 8080; };\n" H(""), 1,
               "must be an IPv4 or IPv6 address or a host name");
  expect_error("health = { listen = \"::1/128\"; port = 8080; };\n" H(""), 1,
               "must be an IPv4 or IPv6 address or a host name");
  expect_error(
      "broker = { tls = { enabled = true; ca_file = \"\"; }; };\n" H(""), 1,
      "ca_file: must not be empty");
  expect_error(H("isolation = false; max_jobs_per_worker = 10;"), 1,
               "need isolation");
}

Test(config,
     a_relative_plugin_is_found_beside_a_config_named_without_a_folder) {
  char dir[] = "/tmp/warren-cfgdir-XXXXXX";
  cr_assert(mkdtemp(dir));
  char old[4096];
  cr_assert(getcwd(old, sizeof old));
  cr_assert_eq(chdir(dir), 0);
  FILE *f = fopen("w.cfg", "w");
  fputs("handlers = ( { name = \"a\"; plugin = \"a.so\"; } );\n", f);
  fclose(f);
  wr_cfg *cfg;
  int rc = wr_cfg_load("w.cfg", &cfg, err, sizeof err);
  unlink("w.cfg");
  cr_assert_eq(chdir(old), 0);
  rmdir(dir);
  cr_assert_eq(rc, WARREN_OK, "%s", err);
  cr_assert_str_eq(cfg->handlers[0].plugin, "./a.so",
                   "never a library path search");
  wr_cfg_free(cfg);
}

Test(config, worker_recycling_limits_are_read) {
  wr_cfg *cfg;
  cr_assert_eq(
      load(H("max_jobs_per_worker = 500; max_worker_rss = 256;"), &cfg),
      WARREN_OK, "%s", err);
  cr_assert_eq(cfg->handlers[0].max_jobs, 500);
  cr_assert_eq(cfg->handlers[0].max_rss_mb, 256);
  wr_cfg_free(cfg);
}

/* Breaks when max_result loses its default, or the variable named in
 * docs/config.md does not reach it. */
Test(config, max_result_has_a_default_and_an_environment_variable) {
  wr_cfg *cfg;
  cr_assert_eq(load(H(""), &cfg), WARREN_OK, "%s", err);
  size_t def = cfg->handlers[0].max_result;
  cr_assert_eq(def, 1048576);
  wr_cfg_free(cfg);
  setenv("WARREN_HANDLER_A_MAX_RESULT", "4096", 1);
  int rc = load(H("max_result = 10;"), &cfg);
  unsetenv("WARREN_HANDLER_A_MAX_RESULT");
  cr_assert_eq(rc, WARREN_OK, "%s", err);
  size_t got = cfg->handlers[0].max_result;
  cr_assert_eq(got, 4096);
  wr_cfg_free(cfg);
}

/*
 * Every numeric setting at its bounds, through `warren --check-config`
 * (what an operator runs): the minimum and maximum pass, one step below
 * and above is refused naming the setting. Breaks when any bound in
 * cfg.c moves (e.g. max_crashes = 0 accepted: the first crash would
 * dead-letter the job).
 */
typedef struct bound {
  const char *path; /* as the error names it */
  const char *tmpl; /* config text; %s is the value */
  const char *below, *min, *max, *above;
} bound;

#define HR(extra)                                             \
  "handlers = ( { name = \"a\"; plugin = \"" TEST_HANDLER_DIR \
  "/record.so\"; " extra " } );\n"
#define BACKOFF16                                                          \
  "1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, " \
  "1.0, 1.0"

static const bound bounds[] = {
    {"broker.port", "broker = { port = %s; };\n" HR(""), "0", "1", "65535",
     "65536"},
    {"broker.heartbeat", "broker = { heartbeat = %s; };\n" HR(""), "-1", "0",
     "3600", "3601"},
    {"broker.connect_timeout", "broker = { connect_timeout = %s; };\n" HR(""),
     "0.099", "0.1", "600.0", "600.001"},
    {"broker.setup_timeout", "broker = { setup_timeout = %s; };\n" HR(""),
     "0.999", "1.0", "3600.0", "3600.001"},
    {"worker.shutdown_grace", "worker = { shutdown_grace = %s; };\n" HR(""),
     "-0.001", "0.0", "86400.0", "86400.001"},
    {"worker.reconnect_min",
     "worker = { reconnect_min = %s; reconnect_max = 3600.0; };\n" HR(""),
     "0.009", "0.01", "3600.0", "3600.001"},
    {"worker.reconnect_max",
     "worker = { reconnect_min = 0.01; reconnect_max = %s; };\n" HR(""),
     "0.009", "0.01", "3600.0", "3600.001"},
    {"worker.restart_min",
     "worker = { restart_min = %s; restart_max = 3600.0; };\n" HR(""), "0.009",
     "0.01", "3600.0", "3600.001"},
    {"worker.restart_max",
     "worker = { restart_min = 0.01; restart_max = %s; };\n" HR(""), "0.009",
     "0.01", "3600.0", "3600.001"},
    {"health.port", "health = { port = %s; };\n" HR(""), "-1", "0", "65535",
     "65536"},
    {"health.snapshot_interval",
     "health = { snapshot_interval = %s; };\n" HR(""), "0.049", "0.05", "60.0",
     "60.001"},
    {"health.probe_interval", "health = { probe_interval = %s; };\n" HR(""),
     "0.999", "1.0", "3600.0", "3600.001"},
    {"health.check_interval", "health = { check_interval = %s; };\n" HR(""),
     "0.999", "1.0", "3600.0", "3600.001"},
    {"health.queue_log_interval",
     "health = { queue_log_interval = %s; };\n" HR(""), "-0.001", "0.0",
     "86400.0", "86400.001"},
    {"handlers.[0].prefetch", HR("prefetch = %s;"), "0", "1", "65535", "65536"},
    {"handlers.[0].concurrency", HR("prefetch = 1024; concurrency = %s;"), "0",
     "1", "1024", "1025"},
    {"handlers.[0].timeout", HR("timeout = %s;"), "-0.001", "0.0", "86400.0",
     "86400.001"},
    {"handlers.[0].max_result", HR("max_result = %s;"), "-1", "0", "16777216",
     "16777217"},
    {"handlers.[0].max_priority",
     HR("queue_type = \"classic\"; max_priority = %s;"), "0", "1", "255",
     "256"},
    {"handlers.[0].tenant_concurrency",
     HR("concurrency = 4; tenant_header = \"t\"; tenant_concurrency = %s;"),
     "0", "1", "4", "5"},
    {"handlers.[0].tenant_hold",
     HR("concurrency = 2; tenant_header = \"t\"; tenant_concurrency = 1; "
        "tenant_hold = %s;"),
     "-1", "0", "100000", "100001"},
    {"handlers.[0].retry.max_attempts", HR("retry = { max_attempts = %s; };"),
     "0", "1", "1000", "1001"},
    {"handlers.[0].retry.max_crashes", HR("retry = { max_crashes = %s; };"),
     "0", "1", "1000", "1001"},
    {"handlers.[0].retry.jitter", HR("retry = { jitter = %s; };"), "-0.001",
     "0.0", "1.0", "1.001"},
    {"handlers.[0].retry.backoff.[0]", HR("retry = { backoff = [%s]; };"),
     "0.0009", "0.001", "86400.0", "86400.001"},
    {"handlers.[0].retry.backoff", HR("retry = { backoff = [%s]; };"), "",
     "1.0", BACKOFF16, BACKOFF16 ", 1.0"},
    {"handlers.[0].breaker.failure_rate",
     HR("breaker = { slow_ms = 1.0; failure_rate = %s; };"), "-0.001", "0.0",
     "1.0", "1.001"},
    {"handlers.[0].breaker.slow_ms", HR("breaker = { slow_ms = %s; };"),
     "-0.001", "0.0", "86400000.0", "86400000.1"},
    {"handlers.[0].breaker.slow_percentile",
     HR("breaker = { slow_percentile = %s; };"), "0.499", "0.5", "1.0",
     "1.001"},
    {"handlers.[0].breaker.window",
     HR("breaker = { min_jobs = 1; window = %s; };"), "1", "2", "1000", "1001"},
    {"handlers.[0].breaker.min_jobs",
     HR("breaker = { window = 1000; min_jobs = %s; };"), "0", "1", "1000",
     "1001"},
    {"handlers.[0].breaker.cool_down", HR("breaker = { cool_down = %s; };"),
     "0.099", "0.1", "86400.0", "86400.001"},
    {"handlers.[0].breaker.trial_jobs", HR("breaker = { trial_jobs = %s; };"),
     "0", "1", "1000", "1001"},
};

/* `warren --check-config` on text with value v; its exit code, output in out.
 */
static int check_config(const bound *b, const char *v, char *out, size_t len) {
  char text[2048], cmd[512];
  snprintf(text, sizeof text, b->tmpl, v);
  snprintf(cmd, sizeof cmd, "WARREN_LOG_LEVEL=error %s --check-config %s 2>&1",
           WARREN_BIN, write_cfg(text));
  FILE *p = popen(cmd, "r");
  cr_assert_not_null(p);
  size_t n = fread(out, 1, len - 1, p);
  out[n] = '\0';
  int st = pclose(p);
  unlink(path);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

Test(config, every_numeric_bound_is_enforced_by_check_config) {
  char out[4096], want[256];
  for (size_t i = 0; i < sizeof bounds / sizeof *bounds; i++) {
    const bound *b = &bounds[i];
    /* libconfig spells list elements [0] after a dot-less parent. */
    snprintf(want, sizeof want, "%s: ", b->path);
    for (char *s = want; (s = strstr(s, ".["));) memmove(s, s + 1, strlen(s));
    const char *ok[] = {b->min, b->max}, *bad[] = {b->below, b->above};
    for (int k = 0; k < 2; k++) {
      cr_assert_eq(check_config(b, ok[k], out, sizeof out), 0,
                   "%s = %s refused:\n%s", b->path, ok[k], out);
      cr_assert_eq(check_config(b, bad[k], out, sizeof out), 2,
                   "%s = %s accepted:\n%s", b->path, bad[k], out);
      cr_assert(strstr(out, want), "%s = %s: the error does not name it:\n%s",
                b->path, bad[k], out);
    }
  }
}

/* Keys: read from files or the environment, at least 32 bytes, refused
 * at load with the file and line. */
Test(config, signing_keys_are_checked_at_load) {
  char kf[64] = "/tmp/warren-key-XXXXXX";
  int fd = mkstemp(kf);
  cr_assert(fd >= 0);
  cr_assert_eq(write(fd, "too-short\n", 10), 10);
  close(fd);
  char text[1024];
  snprintf(text, sizeof text,
           "signing = { keys = (\n  { id = \"gw\"; file = \"%s\"; } );\n"
           "  countersign_key = \"gw\"; };\n" H(""),
           kf);
  expect_error(text, 2, "key 'gw' is 9 bytes; keys must be 32..1024 bytes");
  setenv("WARREN_TEST_KEY", "0123456789abcdef0123456789abcdef", 1);
  snprintf(
      text, sizeof text,
      "signing = { keys = (\n  { id = \"gw\"; env = \"WARREN_TEST_KEY\"; "
      "} );\n  countersign_key = \"gw\"; };\n" H("signing_keys = [\"nope\"];"));
  expect_error(text, 4, "'nope' is not a key in signing.keys");
  snprintf(text, sizeof text,
           "signing = { keys = (\n  { id = \"gw\"; env = \"WARREN_NO_KEY\"; "
           "} );\n  countersign_key = \"gw\"; };\n" H(""));
  expect_error(text, 2, "environment variable WARREN_NO_KEY is not set");
  expect_error(H("require_signature = true;"), 1,
               "require_signature needs keys");
  wr_cfg *cfg;
  snprintf(text, sizeof text,
           "signing = { keys = ( { id = \"gw\"; env = \"WARREN_TEST_KEY\"; "
           "} ); countersign_key = \"gw\"; window = 10.0; };\n" H(""));
  cr_assert_eq(load(text, &cfg), 0, "%s", err);
  cr_assert_eq(cfg->handlers[0].require_signature, 1,
               "required by default once there are keys");
  cr_assert_eq(cfg->signing.window, 10.0);
  wr_cfg_free(cfg);
  cr_assert_eq(load(H(""), &cfg), 0, "%s", err);
  cr_assert_eq(cfg->handlers[0].require_signature, 0, "no keys: not checked");
  wr_cfg_free(cfg);
  unlink(kf);
}

/* ---- the environment over the file -------------------------------------- */

Test(config, a_broker_url_gives_host_port_vhost_user_and_password) {
  wr_cfg *cfg;
  int rc = load(
      "broker = { url = \"amqps://jobs%40x:p%2Fss@mq.example:5999/%2Fprod\"; "
      "};\n" H(""),
      &cfg);
  cr_assert_eq(rc, WARREN_OK, "%s", err);
  cr_assert_str_eq(cfg->broker.host, "mq.example");
  cr_assert_eq(cfg->broker.port, 5999);
  cr_assert_str_eq(cfg->broker.vhost, "/prod");
  cr_assert_str_eq(cfg->broker.user, "jobs@x");
  cr_assert_str_eq(cfg->broker.password, "p/ss");
  cr_assert(cfg->broker.tls.enabled, "amqps turns TLS on");
  wr_cfg_free(cfg);
  expect_error("broker = { url = \"amqp://h\"; host = \"x\"; };\n" H(""), 1,
               "set either broker.url or the broker's host");
  expect_error("broker = { url = \"http://h\"; };\n" H(""), 1,
               "broker URL is not amqp://");
}

Test(config, the_environment_wins_over_the_file) {
  setenv("WARREN_BROKER_URL", "amqp://envuser:envpw@envhost:5800/envvh", 1);
  setenv("WARREN_HANDLER_A_CONCURRENCY", "7", 1);
  setenv("WARREN_HEALTH_PORT", "8123", 1);
  wr_cfg *cfg;
  int rc = load(
      "broker = { host = \"filehost\"; port = 5673; password = \"f\"; };\n"
      "health = { port = 9000; };\n" H("concurrency = 2;"),
      &cfg);
  unsetenv("WARREN_BROKER_URL");
  unsetenv("WARREN_HANDLER_A_CONCURRENCY");
  unsetenv("WARREN_HEALTH_PORT");
  cr_assert_eq(rc, WARREN_OK, "%s", err);
  cr_assert_str_eq(cfg->broker.host, "envhost");
  cr_assert_eq(cfg->broker.port, 5800);
  cr_assert_str_eq(cfg->broker.password, "envpw");
  cr_assert_eq(cfg->handlers[0].concurrency, 7);
  cr_assert_eq(cfg->health_port, 8123);
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  wr_cfg_print(cfg, f);
  fclose(f);
  cr_assert(strstr(text, "environment WARREN_HANDLER_A_CONCURRENCY"), "%s",
            text);
  cr_assert(strstr(text, "environment WARREN_HEALTH_PORT"), "%s", text);
  cr_assert(strstr(text, "\"****\""), "the password is masked");
  cr_assert_null(strstr(text, "envpw"), "and never shown:\n%s", text);
  cr_assert(strstr(text, "# default"), "defaults say so");
  free(text);
  wr_cfg_free(cfg);
}

Test(config, a_bad_value_in_a_variable_is_refused_naming_it) {
  setenv("WARREN_BROKER_PORT", "99x", 1);
  wr_cfg *cfg;
  int rc = load(H(""), &cfg);
  unsetenv("WARREN_BROKER_PORT");
  cr_assert_lt(rc, 0);
  cr_assert(strstr(err, "environment WARREN_BROKER_PORT"), "%s", err);
  setenv("WARREN_HANDLER_A_PREFETCH", "70000", 1);
  rc = load(H(""), &cfg);
  unsetenv("WARREN_HANDLER_A_PREFETCH");
  cr_assert_lt(rc, 0);
  cr_assert(strstr(err, "WARREN_HANDLER_A_PREFETCH"), "%s", err);
  cr_assert(strstr(err, "1..65535"), "%s", err);
}

Test(config, a_node_list_is_read_and_checked) {
  wr_cfg *cfg;
  int rc = load(
      "broker = { nodes = [\"mq1:5700\", \"mq2\", \"[::1]:5701\", "
      "\"amqp://mq4:5702\"]; };\n" H(""),
      &cfg);
  cr_assert_eq(rc, WARREN_OK, "%s", err);
  cr_assert_eq(cfg->broker.n_nodes, 4);
  cr_assert_str_eq(cfg->broker.nodes[0].host, "mq1");
  cr_assert_eq(cfg->broker.nodes[0].port, 5700);
  cr_assert_str_eq(cfg->broker.nodes[1].host, "mq2");
  cr_assert_eq(cfg->broker.nodes[1].port, 5672, "the default port");
  cr_assert_str_eq(cfg->broker.nodes[2].host, "::1");
  cr_assert_eq(cfg->broker.nodes[2].port, 5701);
  cr_assert_str_eq(cfg->broker.nodes[3].host, "mq4");
  cr_assert_eq(cfg->broker.nodes[3].port, 5702);
  wr_cfg_free(cfg);
  expect_error("broker = { nodes = [\"mq1:99999\"]; };\n" H(""), 1,
               "the port must be 1..65535");
  expect_error("broker = { nodes = [\"::1:5672\"]; };\n" H(""), 1,
               "[addr]:port");
  expect_error("broker = { host = \"x\"; nodes = [\"mq1\"]; };\n" H(""), 1,
               "set either broker.nodes or broker.host");
}

Test(config, delayed_handlers_and_the_delay_levels) {
  wr_cfg *cfg;
  int rc = load(H("queue = \"jobs.email\"; delayed = true;"), &cfg);
  cr_assert_eq(rc, 0, "%s", err);
  cr_assert(cfg->handlers[0].delayed);
  cr_assert(cfg->delays.used);
  cr_assert_str_eq(cfg->delays.prefix, "warren.delay");
  cr_assert_not(cfg->delays.quorum, "classic by default");
  wr_cfg_free(cfg);
  rc = load(
      "delays = { prefix = \"app.later\"; queue_type = \"quorum\"; };\n" H(""),
      &cfg);
  cr_assert_eq(rc, 0, "%s", err);
  cr_assert_not(cfg->delays.used, "no handler takes delayed jobs");
  cr_assert(cfg->delays.quorum);
  cr_assert_str_eq(cfg->delays.prefix, "app.later");
  wr_cfg_free(cfg);
  expect_error(H("queue = \"jobs.*\"; delayed = true;"), 1,
               "cannot take delayed jobs");
  expect_error("delays = { queue_type = \"lazy\"; };\n" H(""), 1,
               "must be \"quorum\" or \"classic\"");
  expect_error("delays = { prefix = \"a#b\"; };\n" H(""), 1,
               "without '*' or '#'");
  expect_error("delays = { levels = 3; };\n" H(""), 1, "levels");
}

/* max_priority: a classic work queue's x-max-priority. Breaks when it is
 * not read, when a quorum queue (RabbitMQ refuses the argument there: the
 * worker would never connect) or declare = false (the setting would do
 * nothing) is let through, or when the refusal does not say why. */
Test(config, max_priority_needs_a_classic_queue_that_warren_declares) {
  wr_cfg *cfg;
  int rc = load(H("queue_type = \"classic\"; max_priority = 10;"), &cfg);
  cr_assert_eq(rc, 0, "%s", err);
  cr_assert_eq(cfg->handlers[0].max_priority, 10);
  wr_cfg_free(cfg);
  rc = load(H("queue_type = \"classic\";"), &cfg);
  cr_assert_eq(rc, 0, "%s", err);
  cr_assert_eq(cfg->handlers[0].max_priority, 0, "none by default");
  wr_cfg_free(cfg);
  /* queue_type is quorum by default. */
  expect_error(H("max_priority = 5;"), 1,
               "handlers[0].max_priority: needs queue_type = \"classic\": "
               "RabbitMQ refuses x-max-priority on a quorum queue");
  expect_error(H("queue_type = \"quorum\"; max_priority = 5;"), 1,
               "two priorities without it");
  expect_error(H("queue_type = \"classic\"; declare = false; "
                 "max_priority = 5;"),
               1,
               "max_priority: is set when Warren declares the queue: with "
               "declare = false, declare 'a' with x-max-priority = 5 yourself");
  expect_error(H("queue_type = \"classic\"; max_priority = \"high\";"), 1,
               "max_priority: must be an integer");
}

/* Per-tenant concurrency (framework/tenant.h). Breaks when the settings
 * are not read, when one is let through without the others (a limit
 * without a header would do nothing), when a header name the broker or
 * Warren owns is accepted (the broker may drop x- headers a publisher sets
 * from 3.13: every job would fall into the one bucket without a tenant),
 * or in process, where the limit cannot mean anything. */
Test(config, tenant_settings_go_together_and_name_a_usable_header) {
  wr_cfg *cfg;
  int rc = load(H("concurrency = 3; tenant_header = \"tenant\"; "
                  "tenant_concurrency = 2;"),
                &cfg);
  cr_assert_eq(rc, 0, "%s", err);
  cr_assert_str_eq(cfg->handlers[0].tenant_header, "tenant");
  cr_assert_eq(cfg->handlers[0].tenant_concurrency, 2);
  cr_assert_eq(cfg->handlers[0].tenant_hold, 1000, "1000 by default");
  wr_cfg_free(cfg);
  rc = load(H(""), &cfg);
  cr_assert_eq(rc, 0, "%s", err);
  cr_assert_null(cfg->handlers[0].tenant_header, "off by default");
  wr_cfg_free(cfg);
  expect_error(H("concurrency = 3; tenant_concurrency = 2;"), 1,
               "handlers[0].tenant_concurrency: needs tenant_header");
  expect_error(H("concurrency = 3; tenant_hold = 2;"), 1,
               "handlers[0].tenant_hold: needs tenant_header");
  expect_error(H("concurrency = 3; tenant_header = \"tenant\";"), 1,
               "handlers[0].tenant_header: needs tenant_concurrency, "
               "1..concurrency (3)");
  expect_error(H("concurrency = 3; tenant_header = \"x-tenant\"; "
                 "tenant_concurrency = 1;"),
               1,
               "tenant_header: 'x-tenant': names starting with x- are the "
               "broker's");
  expect_error(H("concurrency = 3; tenant_header = \"Warren-Tenant\"; "
                 "tenant_concurrency = 1;"),
               1, "warren- ones are Warren's");
  expect_error(H("concurrency = 3; tenant_header = \"a b\"; "
                 "tenant_concurrency = 1;"),
               1, "tenant_header: must be 1..128 bytes of letters, digits");
  expect_error(H("concurrency = 3; tenant_header = \"\"; "
                 "tenant_concurrency = 1;"),
               1, "tenant_header: must be 1..128 bytes");
  expect_error(H("isolation = false; tenant_header = \"t\"; "
                 "tenant_concurrency = 1;"),
               1, "tenant_header: needs isolation");
  expect_error(H("concurrency = 2; tenant_header = \"t\"; "
                 "tenant_concurrency = 3;"),
               1, "tenant_concurrency: must be 1..2 (got 3)");
}

/* A FIFO where a secret or a TLS file should be: refused at once with a
 * clear error (opening it for reading once waited for a writer forever:
 * the start, --check-config and a SIGHUP reload hung). */
Test(config, a_fifo_as_a_secret_or_tls_file_is_refused_without_blocking,
     .timeout = 20) {
  char fifo[] = "/tmp/warren-fifo-XXXXXX";
  cr_assert_neq(mkdtemp(fifo), NULL);
  char f[128];
  snprintf(f, sizeof f, "%s/p", fifo);
  cr_assert_eq(mkfifo(f, 0600), 0);
  static const char *const fmt[] = {
      "broker = { password_file = \"%s\"; };\n" H(""),
      "health = { admin_token_file = \"%s\"; };\n" H(""),
      "signing = { keys = ( { id = \"gw\"; file = \"%s\"; } ); };\n" H(""),
      "broker = { tls = { enabled = true; ca_file = \"%s\"; }; };\n" H(""),
  };
  static const char *const key[] = {"broker.password_file",
                                    "health.admin_token_file", "signing.keys",
                                    "broker.tls.ca_file"};
  for (size_t i = 0; i < sizeof fmt / sizeof *fmt; i++) {
    char text[512];
    snprintf(text, sizeof text, fmt[i], f);
    expect_error(text, 1, "is not a regular file (a FIFO)");
    cr_assert(strstr(err, key[i]), "names %s: %s", key[i], err);
  }
  unlink(f);
  rmdir(fifo);
}

/* A NUL in a token or password file would cut it: "Bearer ab" was
 * accepted for a file "ab\0...". */
Test(config, a_secret_file_holding_a_nul_is_refused) {
  char secret[] = "/tmp/warren-secret-XXXXXX";
  int fd = mkstemp(secret);
  cr_assert(fd >= 0);
  cr_assert_eq(write(fd, "ab\0cdef\n", 8), 8);
  close(fd);
  char text[512];
  snprintf(text, sizeof text,
           "health = { admin_token_file = \"%s\"; };\n" H(""), secret);
  expect_error(text, 1, "holds a NUL byte");
  cr_assert(strstr(err, "health.admin_token_file"), "%s", err);
  snprintf(text, sizeof text, "broker = { password_file = \"%s\"; };\n" H(""),
           secret);
  expect_error(text, 1, "holds a NUL byte");
  unlink(secret);
}

/* What the broker or OpenSSL would refuse later is refused at load,
 * naming the key. */
Test(config, settings_the_broker_would_refuse_are_errors_at_load) {
  expect_error("broker = { url = \"amqp://h:0/\"; };\n" H(""), 1, "broker.url");
  cr_assert(strstr(err, "port 1..65535"), "%s", err);
  expect_error("broker = { url = \"amqp://u%00x:p@h/\"; };\n" H(""), 1,
               "broker.url");
  cr_assert(strstr(err, "%00"), "%s", err);
  expect_error("broker = { url = \"amqp://u:p%00@h/\"; };\n" H(""), 1,
               "broker.url");
  char text[1024], name[301];
  memset(name, 'e', 300);
  name[300] = '\0';
  snprintf(text, sizeof text, "events = { exchange = \"%s\"; };\n" H(""), name);
  expect_error(text, 1, "events.exchange");
  cr_assert(strstr(err, "255 bytes"), "%s", err);
  snprintf(text, sizeof text, "exchanges = ( { name = \"%s\"; } );\n" H(""),
           name);
  expect_error(text, 1, "255 bytes");
  expect_error(
      "broker = { tls = { enabled = true; ca_file = \"/nonexistent/ca.pem\"; "
      "}; };\n" H(""),
      1, "broker.tls.ca_file");
  cr_assert(strstr(err, "cannot read '/nonexistent/ca.pem'"), "%s", err);
  expect_error(
      "broker = { url = \"amqps://h/\"; tls = { ca_file = \"/no/ca.pem\"; }; "
      "};\n" H(""),
      1, "broker.tls.ca_file");
}
