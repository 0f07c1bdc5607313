/*
 * The command lines of `warren`, `warren dlq` and `warren-publish`
 * (docs/tools.md): every one prints its options with --help and its
 * version with --version (exit 0), refuses a bad number or an unknown
 * option with exit 2, a message naming the option and a one-line hint,
 * and the two tools find the broker by --url, WARREN_BROKER_URL or the
 * separate options, in that order of precedence over the config file.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "clock.h"
#include "support.h"

TW_SUITE(cli, 120);

/* Run cmd with sh; its stdout (with "2>&1" in cmd, also stderr) into out.
 * WARREN_BROKER_URL is unset unless cmd sets it, so a developer's own
 * cannot change what a test sees. Returns the exit status. */

static void has_all(const char *what, const char *out,
                    const char *const *opts) {
  for (; *opts; opts++)
    cr_expect(strstr(out, *opts), "'%s --help' does not list %s:\n%s", what,
              *opts, out);
}

static const char *const conn_opts[] = {"--url",
                                        "--host",
                                        "--port",
                                        "--vhost",
                                        "--user",
                                        "--password-file",
                                        "--tls",
                                        "--tls-ca",
                                        "--tls-cert",
                                        "--tls-key",
                                        "--no-verify-hostname",
                                        "--help",
                                        "--version",
                                        NULL};

/* Breaks when a command's --help fails, goes to stderr, or leaves out
 * one of its options. */
Test(cli, every_help_exits_0_and_lists_its_options) {
  static char out[16384];
  static const char *const warren_opts[] = {
      "--check-config", "--print-config", "--burst",    "--help", "-h",
      "--version",      "CONFIG_FILE",    "warren dlq", NULL};
  cr_assert_eq(tw_sh(out, sizeof out, "%s --help 2>/dev/null", WARREN_BIN), 0);
  has_all("warren", out, warren_opts);
  cr_assert_eq(tw_sh(out, sizeof out, "%s -h 2>/dev/null", WARREN_BIN), 0);
  has_all("warren -h", out, warren_opts);

  static const char *const dlq_opts[] = {"--count", "--reason", "--id", "list",
                                         "replay",  "purge",    NULL};
  static const char *const dlq_args[] = {"dlq --help", "dlq -h",
                                         "dlq list --help",
                                         "dlq replay x.cfg h --help", NULL};
  for (const char *const *a = dlq_args; *a; a++) {
    cr_assert_eq(tw_sh(out, sizeof out, "%s %s 2>/dev/null", WARREN_BIN, *a), 0,
                 "warren %s", *a);
    has_all(*a, out, dlq_opts);
    has_all(*a, out, conn_opts);
  }

  static const char *const pub_opts[] = {"--routing-key", "--exchange",
                                         "--count",       "--id",
                                         "--body",        "--content-type",
                                         "--header",      "--key-id",
                                         "--key-file",    "--traceparent",
                                         "--tracestate",  "--print-trace",
                                         "--priority",    NULL};
  cr_assert_eq(
      tw_sh(out, sizeof out, "%s --help 2>/dev/null", WARREN_PUBLISH_BIN), 0);
  has_all("warren-publish", out, pub_opts);
  has_all("warren-publish", out, conn_opts);
}

Test(cli, every_command_prints_its_version) {
  char out[1024], want[200];
  snprintf(want, sizeof want, "warren %s (handler ABI ", WARREN_VERSION_TEST);
  cr_assert_eq(tw_sh(out, sizeof out, "%s --version", WARREN_BIN), 0, "%s",
               out);
  cr_assert(strstr(out, want) == out, "%s", out);
  cr_assert_eq(tw_sh(out, sizeof out, "%s dlq --version", WARREN_BIN), 0, "%s",
               out);
  cr_assert(strstr(out, want) == out, "%s", out);
  snprintf(want, sizeof want, "warren-publish %s\n", WARREN_VERSION_TEST);
  cr_assert_eq(tw_sh(out, sizeof out, "%s --version", WARREN_PUBLISH_BIN), 0,
               "%s", out);
  cr_assert_str_eq(out, want);
}

/* The stderr of a refused command line: "PROG: MESSAGE" and the hint. */
static void refused(const char *prog, const char *args, const char *msg) {
  char out[4096], want[600];
  const char *bin =
      strcmp(prog, "warren-publish") ? WARREN_BIN : WARREN_PUBLISH_BIN;
  /* stderr only: a refusal prints nothing on stdout */
  int rc = tw_sh(out, sizeof out, "%s %s 2>&1 >/dev/null", bin, args);
  cr_expect_eq(rc, 2, "%s %s: exit %d\n%s", prog, args, rc, out);
  snprintf(want, sizeof want, "%s: %s\nTry '%s --help' for the options.\n",
           prog, msg, prog);
  cr_expect_str_eq(out, want, "%s %s", prog, args);
}

/* Breaks when a number with a suffix or out of range is taken (or cut),
 * when an option is unknown or lacks its value and the command runs
 * anyway, or when the message does not say which option and what range.
 * Nothing reaches the broker: the queue stays empty. */
Test(cli, bad_numbers_and_options_exit_2_naming_the_option) {
  const char *q = "it.cli.refused";
  cr_assert_eq(tw_own_queues(q, NULL), 0);
  cr_assert_eq(tw_declare_plain(q), 0);
  char args[600];
  snprintf(args, sizeof args, "--port %d --routing-key %s --count 5x",
           tw_port(), q);
  refused("warren-publish", args,
          "--count takes a whole number from 1 to 100000000 (got '5x')");
  snprintf(args, sizeof args, "--port %d --routing-key %s --count ''",
           tw_port(), q);
  refused("warren-publish", args,
          "--count takes a whole number from 1 to 100000000 (got '')");
  /* The priority property is one octet: 256 must not become 0. */
  snprintf(args, sizeof args, "--port %d --routing-key %s --priority 256",
           tw_port(), q);
  refused("warren-publish", args,
          "--priority takes a whole number from 0 to 255 (got '256')");
  snprintf(args, sizeof args, "--port %d --routing-key %s --priority -1",
           tw_port(), q);
  refused("warren-publish", args,
          "--priority takes a whole number from 0 to 255 (got '-1')");
  snprintf(args, sizeof args, "--port %d --routing-key %s --priority high",
           tw_port(), q);
  refused("warren-publish", args,
          "--priority takes a whole number from 0 to 255 (got 'high')");
  snprintf(args, sizeof args, "--port 99999 --routing-key %s", q);
  refused("warren-publish", args,
          "--port takes a whole number from 1 to 65535 (got '99999')");
  snprintf(args, sizeof args, "--port -1 --routing-key %s", q);
  refused("warren-publish", args,
          "--port takes a whole number from 1 to 65535 (got '-1')");
  snprintf(args, sizeof args, "--port %d --routing-key %s --bogus", tw_port(),
           q);
  refused("warren-publish", args, "unknown option '--bogus'");
  snprintf(args, sizeof args, "--port %d --routing-key", tw_port());
  refused("warren-publish", args, "option '--routing-key' needs a value");
  snprintf(args, sizeof args, "--port %d --routing-key %s --password-file ''",
           tw_port(), q);
  refused("warren-publish", args, "--password-file must not be empty");
  snprintf(args, sizeof args, "--port %d", tw_port());
  refused("warren-publish", args, "--routing-key is required");
  cr_assert_eq(tw_queue_len(q), 0, "a refused command published");

  refused("warren dlq", "dlq list x.cfg h --count 5x",
          "--count takes a whole number from 1 to 1000000000 (got '5x')");
  refused("warren dlq", "dlq list x.cfg h --port 99999",
          "--port takes a whole number from 1 to 65535 (got '99999')");
  refused("warren dlq", "dlq list x.cfg h --nope", "unknown option '--nope'");
  refused("warren dlq", "dlq list x.cfg h --reason max_attempts",
          "--reason: 'max_attempts' is no reason Warren writes (max-attempts, "
          "rejected, crashed, timeout, malformed, too_large, signature, "
          "revoked, max-deliveries)");
  refused("warren dlq", "dlq list x.cfg",
          "list takes CONFIG_FILE and HANDLER (got 1)");
  refused("warren dlq", "dlq lsit x.cfg h",
          "the subcommand is list, show, replay or purge (got 'lsit')");
  refused("warren", "--bogus x.cfg", "unknown option '--bogus'");
  refused("warren", "", "CONFIG_FILE is missing");
  refused("warren", "a.cfg b.cfg", "one CONFIG_FILE only (got 'b.cfg' too)");
}

/* Breaks when --url is not what warren-publish connects with: the
 * defaults (port 5672) would not reach the test node. */
Test(cli, warren_publish_connects_by_url) {
  const char *q = "it.cli.url";
  cr_assert_eq(tw_own_queues(q, NULL), 0);
  cr_assert_eq(tw_declare_plain(q), 0);
  char out[4096];
  int rc =
      tw_sh(out, sizeof out,
            "%s --url amqp://guest:guest@127.0.0.1:%d/%%2F --routing-key %s "
            "--id u --count 2 2>&1",
            WARREN_PUBLISH_BIN, tw_port(), q);
  cr_assert_eq(rc, 0, "%s", out);
  cr_assert_eq(tw_queue_len(q), 2, "%s", out);

  /* --port over the URL's: a URL for a port where nothing listens. */
  rc = tw_sh(out, sizeof out,
             "%s --url amqp://guest:guest@127.0.0.1:1/ --port %d "
             "--routing-key %s 2>&1",
             WARREN_PUBLISH_BIN, tw_port(), q);
  cr_assert_eq(rc, 0, "%s", out);
  cr_assert_eq(tw_queue_len(q), 3);

  /* A bad URL is a usage error and its password is not printed. */
  rc =
      tw_sh(out, sizeof out,
            "%s --url http://guest:hunter2@127.0.0.1:%d/ --routing-key %s 2>&1",
            WARREN_PUBLISH_BIN, tw_port(), q);
  cr_assert_eq(rc, 2, "%s", out);
  cr_assert(strstr(out, "--url: broker URL is not amqp://"), "%s", out);
  cr_assert_null(strstr(out, "hunter2"), "%s", out);
}

/* Breaks when warren-publish cuts a long --body short (it cut every body
 * at 65,535 bytes): one of 70,000 bytes arrives whole. */
Test(cli, warren_publish_sends_a_long_body_whole) {
  enum { N = 70000 };
  const char *q = "it.cli.long";
  cr_assert_eq(tw_declare_plain(q), 0);
  static char body[N + 1];
  for (int i = 0; i < N; i++) body[i] = (char)('a' + i % 26);
  char path[400];
  snprintf(path, sizeof path, "%s/body", tw_dir());
  FILE *f = fopen(path, "w");
  cr_assert(f, "cannot write %s", path);
  fputs(body, f);
  fclose(f);
  char out[4096];
  int rc =
      tw_sh(out, sizeof out,
            "%s --url amqp://guest:guest@127.0.0.1:%d/%%2F --routing-key %s "
            "--body \"$(cat %s)\" 2>&1",
            WARREN_PUBLISH_BIN, tw_port(), q, path);
  cr_assert_eq(rc, 0, "%s", out);
  static char dump[N + 4096];
  cr_assert_eq(tw_get(q, 1, dump, sizeof dump), 1);
  const char *b = strstr(dump, "\nbody=");
  const char *e = b ? strstr(b + 6, "\nexchange=") : NULL;
  cr_assert(b && e, "%.200s", dump);
  b += 6;
  cr_assert_eq(e - b, N, "the body arrived with %td bytes", e - b);
  cr_assert(memcmp(b, body, N) == 0, "the body arrived changed");
  tw_delete_queue(q);
}

/* Breaks when WARREN_BROKER_URL is not read, or is read over --url or
 * --host. */
Test(cli, warren_publish_honours_warren_broker_url) {
  const char *q = "it.cli.env";
  cr_assert_eq(tw_own_queues(q, NULL), 0);
  cr_assert_eq(tw_declare_plain(q), 0);
  char out[4096];
  int rc = tw_sh(out, sizeof out,
                 "env WARREN_BROKER_URL=amqp://guest:guest@127.0.0.1:%d %s "
                 "--routing-key %s 2>&1",
                 tw_port(), WARREN_PUBLISH_BIN, q);
  cr_assert_eq(rc, 0, "%s", out);
  cr_assert_eq(tw_queue_len(q), 1);

  /* --url over the environment's. */
  rc = tw_sh(
      out, sizeof out,
      "env WARREN_BROKER_URL=amqp://127.0.0.1:1 %s --url amqp://127.0.0.1:%d "
      "--routing-key %s 2>&1",
      WARREN_PUBLISH_BIN, tw_port(), q);
  cr_assert_eq(rc, 0, "%s", out);
  cr_assert_eq(tw_queue_len(q), 2);

  /* With --host the environment's URL (its port too) is not read. */
  rc = tw_sh(out, sizeof out,
             "env WARREN_BROKER_URL=amqp://127.0.0.1:%d %s --host 127.0.0.1 "
             "--port 1 --routing-key %s 2>&1",
             tw_port(), WARREN_PUBLISH_BIN, q);
  cr_assert_eq(rc, 1, "the environment's port was used: %s", out);
  cr_assert(strstr(out, "127.0.0.1:1"), "%s", out);
  cr_assert_eq(tw_queue_len(q), 2);
}

/* Breaks when `warren dlq` ignores the command line or the environment
 * and connects where its config file says (a port where nothing
 * listens), or when --password-file is not the password it logs in with. */
Test(cli, dlq_takes_the_broker_from_the_command_line_over_the_file) {
  const char *dir = tw_dir();
  char cfg[300], pw[300], out[8192];
  snprintf(cfg, sizeof cfg, "%s/dlq.cfg", dir);
  FILE *f = fopen(cfg, "w");
  cr_assert_not_null(f);
  fprintf(f,
          "broker = { host = \"127.0.0.1\"; port = 1; };\n"
          "handlers = ( { name = \"h\"; queue = \"it.cli.dlq\";\n"
          "  plugin = \"" TEST_HANDLER_DIR "/record.so\"; } );\n");
  fclose(f);
  /* What the worker would have declared: `warren dlq` only looks. */
  cr_assert_eq(tw_own_queues("it.cli.dlq.dlq", NULL), 0);
  cr_assert_eq(tw_declare_plain("it.cli.dlq.dlq"), 0);

  int rc = tw_sh(out, sizeof out, "%s dlq list %s h 2>&1", WARREN_BIN, cfg);
  cr_assert_eq(rc, 1, "the file's broker is not there: %s", out);

  rc = tw_sh(out, sizeof out, "%s dlq list %s h --port %d 2>&1", WARREN_BIN,
             cfg, tw_port());
  cr_assert_eq(rc, 0, "%s", out);
  cr_assert(strstr(out, "0 of 0 message(s) in it.cli.dlq.dlq shown"), "%s",
            out);

  rc = tw_sh(out, sizeof out,
             "env WARREN_BROKER_URL=amqp://127.0.0.1:%d/ %s dlq list %s h 2>&1",
             tw_port(), WARREN_BIN, cfg);
  cr_assert_eq(rc, 0, "WARREN_BROKER_URL over the file: %s", out);

  snprintf(pw, sizeof pw, "%s/pw", dir);
  f = fopen(pw, "w");
  cr_assert_not_null(f);
  fputs("not-the-password\n", f);
  fclose(f);
  rc = tw_sh(out, sizeof out,
             "%s dlq --url amqp://guest@127.0.0.1:%d list %s h "
             "--password-file %s 2>&1",
             WARREN_BIN, tw_port(), cfg, pw);
  cr_assert_eq(rc, 1, "logged in with a wrong password: %s", out);
  f = fopen(pw, "w");
  fputs("guest\n", f);
  fclose(f);
  rc = tw_sh(out, sizeof out,
             "%s dlq --url amqp://nobody:x@127.0.0.1:%d list %s h "
             "--user guest --password-file %s 2>&1",
             WARREN_BIN, tw_port(), cfg, pw);
  cr_assert_eq(rc, 0, "--user and --password-file over the URL's: %s", out);
}

/* Breaks when the TLS options of `warren dlq` are not the ones it
 * connects with (the file says plain AMQP on a port where nothing
 * listens), or when amqps:// does not turn TLS on for warren-publish. The
 * TLS listener requires a client certificate (test_tls.c). */
Test(cli, dlq_and_warren_publish_connect_over_tls_from_the_command_line) {
  const char *d = tw_tls_dir();
  char cfg[300], out[8192], tls[1200];
  snprintf(cfg, sizeof cfg, "%s/dlq.cfg", tw_dir());
  FILE *f = fopen(cfg, "w");
  cr_assert_not_null(f);
  fprintf(f,
          "broker = { host = \"127.0.0.1\"; port = 1; };\n"
          "handlers = ( { name = \"h\"; queue = \"it.cli.tls\";\n"
          "  plugin = \"" TEST_HANDLER_DIR "/record.so\"; } );\n");
  fclose(f);
  cr_assert_eq(tw_own_queues("it.cli.tls.dlq", NULL), 0);
  cr_assert_eq(tw_declare_plain("it.cli.tls.dlq"), 0);
  snprintf(tls, sizeof tls,
           "--tls-ca %s/ca.pem --tls-cert %s/client.pem --tls-key "
           "%s/client.key",
           d, d, d);

  int rc = tw_sh(out, sizeof out,
                 "%s dlq list %s h --host localhost --port %d %s 2>&1",
                 WARREN_BIN, cfg, tw_port() + 2, tls);
  cr_assert_eq(rc, 0, "%s", out);
  cr_assert(strstr(out, "in it.cli.tls.dlq shown"), "%s", out);

  /* The CA given is the one used: another CA fails verification. */
  rc = tw_sh(out, sizeof out,
             "%s dlq list %s h --host localhost --port %d --tls-ca "
             "%s/other-ca.pem --tls-cert %s/client.pem --tls-key %s/client.key "
             "2>&1",
             WARREN_BIN, cfg, tw_port() + 2, d, d, d);
  cr_assert_eq(rc, 1, "%s", out);
  cr_assert(strstr(out, "verification failed"), "%s", out);

  rc = tw_sh(out, sizeof out,
             "%s --url amqps://guest:guest@localhost:%d/ %s --routing-key "
             "it.cli.tls.dlq --id t 2>&1",
             WARREN_PUBLISH_BIN, tw_port() + 2, tls);
  cr_assert_eq(rc, 0, "%s", out);
  cr_assert_eq(tw_queue_len("it.cli.tls.dlq"), 1);
}

/* --print-config reads the file and connects to nothing (the broker in
 * the file is not there). */
Test(cli, print_config_exits_0_without_connecting) {
  char cfg[300], out[8192];
  snprintf(cfg, sizeof cfg, "%s/print.cfg", tw_dir());
  FILE *f = fopen(cfg, "w");
  cr_assert_not_null(f);
  fprintf(f,
          "broker = { host = \"127.0.0.1\"; port = 1; };\n"
          "handlers = ( { name = \"h\"; queue = \"it.cli.print\";\n"
          "  plugin = \"" TEST_HANDLER_DIR "/record.so\"; } );\n");
  fclose(f);
  int rc = tw_sh(out, sizeof out, "%s --print-config %s 2>&1", WARREN_BIN, cfg);
  cr_assert_eq(rc, 0, "%s", out);
  cr_assert(strstr(out, cfg), "%s", out);
}

/* `warren --burst` (docs/deploying.md, "Batch runs"): every job runs once, the
 * queue is left empty, and the worker exits 0 by itself. */
Test(cli, burst_runs_every_job_and_exits_0) {
  enum { N = 300 };
  char log[300], rec[300];
  snprintf(log, sizeof log, "%s/warren.log", tw_dir());
  snprintf(rec, sizeof rec, "%s/rec", tw_dir());
  char text[1024];
  snprintf(text, sizeof text,
           "handlers = ( { name = \"h\"; queue = \"it.burst\";\n"
           "  plugin = \"" TEST_HANDLER_DIR
           "/record.so\"; prefetch = 20; concurrency = 2;\n"
           "  settings = { log = \"%s\"; }; } );\n",
           rec);
  /* Declared by a first start, then filled, then run in a burst. */
  pid_t w = tw_warren_start(tw_dir(), text);
  cr_assert(tw_wait_text(log, "consuming 1 queue(s)", 30));
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
  cr_assert_eq(tw_publish("it.burst", N, "b"), 0);
  tw_warren_option = "--burst";
  w = tw_warren_start(tw_dir(), text);
  tw_warren_option = NULL;
  cr_assert_gt(w, 0);
  int status = -1;
  double until = wr_now() + 60;
  while (wr_now() < until && waitpid(w, &status, WNOHANG) == 0)
    nanosleep(&(struct timespec){0, 50 * 1000 * 1000}, NULL);
  cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
            "exited by itself, status 0 (status %d)", status);
  static int done[N + 1];
  int dupes, missing = tw_wait_all(rec, "b", done, N, 1);
  tw_missing(done, NULL, N, &dupes);
  cr_assert_eq(missing, 0, "every job ran");
  cr_assert_eq(dupes, 0, "once");
  cr_assert_eq(tw_queue_len("it.burst"), 0, "the queue is empty");
  cr_assert(tw_wait_text(log, "burst: every queue is empty", 1));
}

/* broker.nodes: the tools try every node, in a random order, as the
 * worker does (conn.h). Three of four nodes are down, the live one last
 * in the list: warren dlq, warren revoke and warren events reach it. */
Test(cli, the_tools_fail_over_to_a_node_that_answers) {
  char cfg[1024], path[400], out[8192], args[600];
  snprintf(cfg, sizeof cfg,
           "broker = { nodes = [\"127.0.0.1:%d\", \"127.0.0.1:%d\", "
           "\"127.0.0.1:%d\", \"127.0.0.1:%d\"]; };\n"
           "handlers = ( { name = \"h\"; queue = \"it.cli.nodes\"; plugin = "
           "\"" TEST_HANDLER_DIR
           "/record.so\"; settings = { log = \"/dev/null\"; }; } );\n",
           tw_free_port(), tw_free_port(), tw_free_port(), tw_port());
  snprintf(path, sizeof path, "%s/nodes.cfg", tw_dir());
  FILE *f = fopen(path, "w");
  cr_assert(f);
  fputs(cfg, f);
  fclose(f);
  cr_assert_eq(tw_declare_plain("it.cli.nodes.dlq"), 0);
  for (int i = 0; i < 3; i++) { /* each a fresh random order */
    snprintf(args, sizeof args, "dlq list %s h", path);
    int rc = tw_warren_cli(out, sizeof out, args);
    cr_assert_eq(rc, 0, "dlq: %s", out);
    snprintf(args, sizeof args, "revoke %s nodes-%d --expires 1m", path, i);
    rc = tw_warren_cli(out, sizeof out, args);
    /* Nobody listens: the broker returns it, so the tool reached one. */
    cr_assert(strstr(out, "no Warren process is listening"), "revoke: %s", out);
  }
  tw_delete_queue("it.cli.nodes.dlq");
}
