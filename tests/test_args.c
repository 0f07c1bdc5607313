/* Command lines (common/args.c): numbers are whole and in range or
 * refused naming the option and the range; the connection options lay
 * over the environment's URL, which lays over the file's broker section;
 * a password file is read by the config file's rules. */
#include <criterion/criterion.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "args.h"

Test(args, a_whole_number_in_range_is_taken) {
  long n = -7;
  char err[200];
  cr_assert_eq(wr_args_long("--port", "5672", 1, 65535, &n, err, sizeof err),
               0);
  cr_assert_eq(n, 5672);
  cr_assert_eq(wr_args_long("--port", "1", 1, 65535, &n, err, sizeof err), 0);
  cr_assert_eq(n, 1, "the minimum is allowed");
  cr_assert_eq(wr_args_long("--port", "65535", 1, 65535, &n, err, sizeof err),
               0);
  cr_assert_eq(n, 65535, "the maximum is allowed");
  cr_assert_eq(wr_args_long("--x", "-3", -5, 5, &n, err, sizeof err), 0);
  cr_assert_eq(n, -3, "a negative number where the range allows one");
}

/* Breaks when a suffix, a sign, a space, an empty string or a number out
 * of range (including one past long) gets through, or when the message
 * does not name the option, its range and what was given. */
Test(args, anything_else_is_refused_naming_the_option_and_range) {
  static const char *const bad[] = {
      "5x",   "",     "-1",  "0",   "99999", " 5",  "5 ",
      "+5",   "0x10", "1e3", "5.0", "-",     "--5", "99999999999999999999999",
      "65536"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    long n = 42;
    char err[200] = "";
    cr_assert_eq(wr_args_long("--port", bad[i], 1, 65535, &n, err, sizeof err),
                 -1, "'%s' was taken as %ld", bad[i], n);
    cr_assert_eq(n, 42, "'%s' changed the value", bad[i]);
    char want[200];
    snprintf(want, sizeof want,
             "--port takes a whole number from 1 to 65535 (got '%s')", bad[i]);
    cr_assert_str_eq(err, want);
  }
  long n = 0;
  char err[200];
  cr_assert_eq(wr_args_long("--count", NULL, 1, 10, &n, err, sizeof err), -1,
               "no value at all");
  cr_assert_eq(wr_args_long("--x", "9223372036854775808", LONG_MIN, LONG_MAX,
                            &n, err, sizeof err),
               -1, "past long, even when the range is all of long");
}

Test(args, connection_options_refuse_an_empty_string_or_a_bad_port) {
  wr_args_conn a = {0};
  char err[200];
  cr_assert_eq(wr_args_conn_opt(&a, WR_ARGS_OPT_HOST, "", err, sizeof err), -1);
  cr_assert_str_eq(err, "--host must not be empty");
  cr_assert_eq(wr_args_conn_opt(&a, WR_ARGS_OPT_PORT, "99999", err, sizeof err),
               -1);
  cr_assert(strstr(err, "--port takes a whole number from 1 to 65535"), "%s",
            err);
  cr_assert_eq(wr_args_conn_opt(&a, WR_ARGS_OPT_PORT, "5721", err, sizeof err),
               1);
  cr_assert_eq(a.port, 5721);
  cr_assert_eq(wr_args_conn_opt(&a, 'h', NULL, err, sizeof err), 0,
               "not a connection option: the caller's");
}

static wr_conn_params file_broker(void) {
  return (wr_conn_params){.host = "file-host",
                          .port = 5000,
                          .vhost = "file-vhost",
                          .user = "file-user",
                          .password = "file-pass",
                          .tls = {.verify_peer = 1, .verify_hostname = 1}};
}

/* Breaks when the environment's URL loses to the file, wins over the
 * command line, or is read although --host names another broker. */
Test(args, command_line_over_environment_over_file) {
  static wr_args_store st;
  char err[300];
  const char *env = "amqp://envu:envp@env-host:6000/env-vhost";

  wr_conn_params b = file_broker();
  wr_args_conn a = {0};
  cr_assert_eq(wr_args_conn_apply(&a, NULL, &b, &st, err, sizeof err), 0);
  cr_assert_str_eq(b.host, "file-host", "nothing given: the file's");
  cr_assert_eq(b.port, 5000);

  b = file_broker();
  cr_assert_eq(wr_args_conn_apply(&a, env, &b, &st, err, sizeof err), 0, "%s",
               err);
  cr_assert_str_eq(b.host, "env-host", "the environment over the file");
  cr_assert_eq(b.port, 6000);
  cr_assert_str_eq(b.vhost, "env-vhost");
  cr_assert_str_eq(b.user, "envu");
  cr_assert_str_eq(b.password, "envp");

  b = file_broker();
  a.port = 7000;
  a.user = "cli-user";
  cr_assert_eq(wr_args_conn_apply(&a, env, &b, &st, err, sizeof err), 0);
  cr_assert_str_eq(b.host, "env-host");
  cr_assert_eq(b.port, 7000, "--port over the environment's URL");
  cr_assert_str_eq(b.user, "cli-user", "--user over the environment's URL");

  b = file_broker();
  a = (wr_args_conn){.host = "cli-host"};
  cr_assert_eq(wr_args_conn_apply(&a, env, &b, &st, err, sizeof err), 0);
  cr_assert_str_eq(b.host, "cli-host");
  cr_assert_str_eq(b.user, "file-user",
                   "with --host the environment's URL is not read");
  cr_assert_eq(b.port, 5000);

  b = file_broker();
  a = (wr_args_conn){.url = "amqp://cli-url-host/"};
  cr_assert_eq(wr_args_conn_apply(&a, env, &b, &st, err, sizeof err), 0);
  cr_assert_str_eq(b.host, "cli-url-host", "--url over the environment's");
  cr_assert_eq(b.port, 5672, "the URL's default port");
  cr_assert_str_eq(b.vhost, "/", "an empty vhost is /");
  cr_assert_str_eq(b.user, "guest", "the URL's default user");

  b = file_broker();
  cr_assert_eq(
      wr_args_conn_apply(&(wr_args_conn){0}, "", &b, &st, err, sizeof err), 0);
  cr_assert_str_eq(b.host, "file-host", "an empty variable is no URL");
}

/* Breaks when a bad URL's message shows its password, or does not say
 * where the URL came from. */
Test(args, a_bad_url_is_refused_without_its_password) {
  static wr_args_store st;
  char err[300];
  wr_conn_params b = file_broker();
  wr_args_conn a = {.url = "http://u:sekrit@h/"};
  cr_assert_eq(wr_args_conn_apply(&a, NULL, &b, &st, err, sizeof err), -1);
  cr_assert(!strncmp(err, "--url: ", 7), "%s", err);
  cr_assert_null(strstr(err, "sekrit"), "%s", err);
  a.url = NULL;
  cr_assert_eq(wr_args_conn_apply(&a, "amqp://u:sekrit@h:99999/", &b, &st, err,
                                  sizeof err),
               -1);
  cr_assert(!strncmp(err, WR_ARGS_URL_ENV ": ", strlen(WR_ARGS_URL_ENV) + 2),
            "%s", err);
  cr_assert_null(strstr(err, "sekrit"), "%s", err);
}

/* Breaks when TLS turned on here keeps a plain port nobody gave, or
 * moves a port that was given, or when cert and key may come alone. */
Test(args, tls_takes_port_5671_unless_a_port_was_given) {
  static wr_args_store st;
  char err[300];
  wr_conn_params b = file_broker();
  wr_args_conn a = {.tls = 1};
  cr_assert_eq(wr_args_conn_apply(&a, NULL, &b, &st, err, sizeof err), 0);
  cr_assert(b.tls.enabled);
  cr_assert_eq(b.port, 5671);

  b = file_broker();
  a = (wr_args_conn){.ca = "/ca.pem", .port = 6671};
  cr_assert_eq(wr_args_conn_apply(&a, NULL, &b, &st, err, sizeof err), 0);
  cr_assert(b.tls.enabled, "--tls-ca implies --tls");
  cr_assert_str_eq(b.tls.ca_file, "/ca.pem");
  cr_assert_eq(b.port, 6671);

  b = file_broker();
  b.tls.enabled = 1; /* the file's own TLS port stays */
  a = (wr_args_conn){.no_verify_hostname = 1};
  cr_assert_eq(wr_args_conn_apply(&a, NULL, &b, &st, err, sizeof err), 0);
  cr_assert_eq(b.port, 5000);
  cr_assert_eq(b.tls.verify_hostname, 0);
  cr_assert_eq(b.tls.verify_peer, 1);

  b = file_broker();
  a = (wr_args_conn){.url = "amqps://h"};
  cr_assert_eq(wr_args_conn_apply(&a, NULL, &b, &st, err, sizeof err), 0);
  cr_assert(b.tls.enabled, "amqps:// turns TLS on");
  cr_assert_eq(b.port, 5671);

  b = file_broker();
  a = (wr_args_conn){.cert = "/c.pem"};
  cr_assert_eq(wr_args_conn_apply(&a, NULL, &b, &st, err, sizeof err), -1);
  cr_assert_str_eq(err, "--tls-cert and --tls-key go together");
}

static void write_file(const char *path, const char *data, size_t len) {
  FILE *f = fopen(path, "w");
  cr_assert_not_null(f);
  cr_assert_eq(fwrite(data, 1, len, f), len);
  fclose(f);
}

/* Breaks when the newline an editor adds becomes part of the password,
 * or when an empty, too long or unreadable file gives a password at all
 * (the rules of broker.password_file in config/cfg.c). */
Test(args, a_password_file_is_read_as_the_config_reads_one) {
  static wr_args_store st;
  char dir[] = "/tmp/warren-args-XXXXXX", path[300], err[600];
  cr_assert_not_null(mkdtemp(dir));
  snprintf(path, sizeof path, "%s/pw", dir);
  wr_args_conn a = {.password_file = path};
  wr_conn_params b = file_broker();

  write_file(path, "s3cret\r\n\n", 9);
  cr_assert_eq(wr_args_conn_apply(&a, NULL, &b, &st, err, sizeof err), 0, "%s",
               err);
  cr_assert_str_eq(b.password, "s3cret", "trailing newlines removed");

  b = file_broker();
  cr_assert_eq(
      wr_args_conn_apply(&a, "amqp://u:urlpass@h/", &b, &st, err, sizeof err),
      0);
  cr_assert_str_eq(b.password, "s3cret", "the file over the URL's password");

  write_file(path, "\n", 1);
  b = file_broker();
  cr_assert_eq(wr_args_conn_apply(&a, NULL, &b, &st, err, sizeof err), -1);
  cr_assert(strstr(err, "is empty"), "%s", err);
  cr_assert_str_eq(b.password, "file-pass");

  static char big[1025];
  memset(big, 'p', sizeof big);
  write_file(path, big, 1023);
  cr_assert_eq(wr_args_conn_apply(&a, NULL, &b, &st, err, sizeof err), 0,
               "1023 bytes fit: %s", err);
  cr_assert_eq(strlen(b.password), 1023);
  write_file(path, big, 1024);
  b = file_broker();
  cr_assert_eq(wr_args_conn_apply(&a, NULL, &b, &st, err, sizeof err), -1);
  cr_assert(strstr(err, "longer than 1023 bytes"), "%s", err);

  a.password_file = dir;
  cr_assert_eq(wr_args_conn_apply(&a, NULL, &b, &st, err, sizeof err), -1);
  cr_assert(strstr(err, "not a regular file"), "%s", err);
  unlink(path);
  a.password_file = path;
  cr_assert_eq(wr_args_conn_apply(&a, NULL, &b, &st, err, sizeof err), -1);
  cr_assert(strstr(err, "cannot read"), "%s", err);
  rmdir(dir);
}

/* Breaks when a refused option is not named as it was typed (without
 * the value of "--opt=value"). */
Test(args, getopt_errors_name_the_option) {
  static const struct option longopts[] = {
      {"count", required_argument, NULL, 'c'}, {NULL, 0, NULL, 0}};
  char err[200];
  char a0[] = "prog", a1[] = "--bogus=1", a2[] = "--count";
  char *argv[] = {a0, a1, a2, NULL};
  optind = 0;
  opterr = 0;
  int c = getopt_long(3, argv, ":h", longopts, NULL);
  cr_assert_eq(c, '?');
  wr_args_getopt_error(c, argv, err, sizeof err);
  cr_assert_str_eq(err, "unknown option '--bogus'");
  c = getopt_long(3, argv, ":h", longopts, NULL);
  cr_assert_eq(c, ':');
  wr_args_getopt_error(c, argv, err, sizeof err);
  cr_assert_str_eq(err, "option '--count' needs a value");
  char b1[] = "-x";
  char *argv2[] = {a0, b1, NULL};
  optind = 0;
  c = getopt_long(2, argv2, ":h", longopts, NULL);
  wr_args_getopt_error(c, argv2, err, sizeof err);
  cr_assert_str_eq(err, "unknown option '-x'");
}

Test(args, durations_take_units_and_refuse_the_rest) {
  char err[300];
  int64_t ms = -1;
  static const struct {
    const char *in;
    int64_t ms;
  } good[] = {{"90s", 90000},     {"30m", 1800000},  {"2h", 7200000},
              {"1h30m", 5400000}, {"3d", 259200000}, {"250ms", 250},
              {"45", 45000},      {"1m5s", 65000}};
  for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
    int rc = wr_args_duration("--delay", good[i].in, 0, INT64_C(1) << 40, &ms,
                              err, sizeof err);
    cr_assert_eq(rc, 0, "%s: %s", good[i].in, err);
    cr_assert_eq(ms, good[i].ms, "%s: %lld", good[i].in, (long long)ms);
  }
  static const char *const bad[] = {
      "", "s", "5x", "-5s", "1.5h", "5 s", "h5", "5s5", "99999999999999d"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    ms = 7;
    int rc = wr_args_duration("--delay", bad[i], 0, INT64_C(1) << 40, &ms, err,
                              sizeof err);
    cr_assert_eq(rc, -1, "'%s' taken as %lld", bad[i], (long long)ms);
    cr_assert_eq(ms, 7, "untouched");
    cr_assert(strstr(err, "--delay") && strstr(err, bad[i]), "%s", err);
  }
  int rc =
      wr_args_duration("--expires", "2h", 0, 3600000, &ms, err, sizeof err);
  cr_assert_eq(rc, -1, "over the most");
}

Test(args, times_are_iso_8601_with_a_zone) {
  char err[300];
  int64_t ms = 0;
  static const struct {
    const char *in;
    int64_t ms;
  } good[] = {{"2025-11-25T12:00:00Z", 1764072000000},
              {"2025-11-25T13:00:00+01:00", 1764072000000},
              {"2025-11-25T07:00:00-0500", 1764072000000},
              {"2025-11-25 12:00Z", 1764072000000},
              {"2025-11-25T12:00:00.250Z", 1764072000250}};
  for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
    int rc = wr_args_time("--at", good[i].in, &ms, err, sizeof err);
    cr_assert_eq(rc, 0, "%s: %s", good[i].in, err);
    cr_assert_eq(ms, good[i].ms, "%s: %lld", good[i].in, (long long)ms);
  }
  static const char *const bad[] = {"2026-11-25T12:00:00",
                                    "2026-02-31T12:00:00Z",
                                    "2026-11-25T25:00:00Z",
                                    "2026-11-25",
                                    "tomorrow",
                                    "2026-11-25T12:00:00Zx",
                                    "2026-11-25T12:00:00.Z"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    int rc = wr_args_time("--at", bad[i], &ms, err, sizeof err);
    cr_assert_eq(rc, -1, "'%s' taken", bad[i]);
    cr_assert(strstr(err, "ISO 8601"), "%s", err);
  }
}

/* --password-file: a FIFO is refused at once (it blocked), a NUL byte is
 * refused (it cut the password). */
Test(args, a_password_file_that_is_a_fifo_or_holds_a_nul_is_refused,
     .timeout = 20) {
  static wr_args_store st;
  char dir[] = "/tmp/warren-args-XXXXXX";
  cr_assert_neq(mkdtemp(dir), NULL);
  char path[128];
  snprintf(path, sizeof path, "%s/p", dir);
  cr_assert_eq(mkfifo(path, 0600), 0);
  wr_args_conn a = {.password_file = path};
  wr_conn_params b = file_broker();
  char err[512];
  cr_assert_eq(wr_args_conn_apply(&a, NULL, &b, &st, err, sizeof err), -1);
  cr_assert(strstr(err, "not a regular file (a FIFO)"), "%s", err);
  unlink(path);
  write_file(path, "ab\0cd\n", 6);
  cr_assert_eq(wr_args_conn_apply(&a, NULL, &b, &st, err, sizeof err), -1);
  cr_assert(strstr(err, "holds a NUL byte"), "%s", err);
  unlink(path);
  rmdir(dir);
}
