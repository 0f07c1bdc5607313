/*
 * Command lines: what `warren`, `warren dlq` and `warren-publish` share.
 * A strict number parser (the whole argument is the number, within a
 * range), the broker connection options the two tools take alike (--url,
 * --host, ... and WARREN_BROKER_URL), and the messages of a refused
 * command line. Nothing here exits: callers decide, with exit status 2
 * for every usage error (docs/tools.md).
 */
#ifndef WR_ARGS_H
#define WR_ARGS_H

#include <getopt.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "conn.h"

/* The environment variable the tools read a broker URL from. */
#define WR_ARGS_URL_ENV "WARREN_BROKER_URL"

/*
 * A whole decimal number in [min, max]: an optional '-' and digits, and
 * nothing else (no sign '+', no spaces, no suffix, not empty). 0 with
 * *out set, or -1 with err naming opt and the allowed range ("--port
 * takes a whole number from 1 to 65535 (got '99999')"); *out is then
 * untouched.
 */
int wr_args_long(const char *opt, const char *s, long min, long max, long *out,
                 char *err, size_t errlen);

/*
 * A duration: whole numbers each followed by a unit, ms, s, m, h or d, in
 * any order ("90s", "30m", "2h", "1h30m"); a bare number is seconds. 0
 * with *ms set when it is within [min_ms, max_ms], else -1 with err
 * naming opt, the format and the range.
 */
int wr_args_duration(const char *opt, const char *s, int64_t min_ms,
                     int64_t max_ms, int64_t *ms, char *err, size_t errlen);

/*
 * An ISO 8601 time with its zone: YYYY-MM-DDTHH:MM[:SS[.fraction]]
 * followed by Z or an offset (+HH:MM, +HHMM, -HH:MM, -HHMM); a space may
 * stand for the T. A time without a zone is refused: whose clock it
 * means would be a guess. 0 with *ms (Unix ms), or -1 with err naming
 * opt.
 */
int wr_args_time(const char *opt, const char *s, int64_t *ms, char *err,
                 size_t errlen);

/* The connection options as given; NULL or 0: not given. */
typedef struct wr_args_conn {
  const char *url; /* --url */
  const char *host;
  long port;
  const char *vhost;
  const char *user;
  const char *password_file;
  int tls;          /* --tls */
  const char *ca;   /* --tls-ca */
  const char *cert; /* --tls-cert */
  const char *key;  /* --tls-key */
  int no_verify_hostname;
} wr_args_conn;

/* getopt_long values of the connection options (outside char range). */
enum {
  WR_ARGS_OPT_URL = 0x100,
  WR_ARGS_OPT_HOST,
  WR_ARGS_OPT_PORT,
  WR_ARGS_OPT_VHOST,
  WR_ARGS_OPT_USER,
  WR_ARGS_OPT_PASSWORD_FILE,
  WR_ARGS_OPT_TLS,
  WR_ARGS_OPT_TLS_CA,
  WR_ARGS_OPT_TLS_CERT,
  WR_ARGS_OPT_TLS_KEY,
  WR_ARGS_OPT_NO_VERIFY_HOSTNAME,
  WR_ARGS_OPT_NEXT /* a command's own long-only options start here */
};

/* The connection options' getopt_long entries, for a command's table.
 * (Laid out by hand: clang-format cannot indent a macro's initialisers.) */
// clang-format off
#define WR_ARGS_CONN_LONGOPTS                                              \
  {"url", required_argument, NULL, WR_ARGS_OPT_URL},                       \
  {"host", required_argument, NULL, WR_ARGS_OPT_HOST},                     \
  {"port", required_argument, NULL, WR_ARGS_OPT_PORT},                     \
  {"vhost", required_argument, NULL, WR_ARGS_OPT_VHOST},                   \
  {"user", required_argument, NULL, WR_ARGS_OPT_USER},                     \
  {"password-file", required_argument, NULL, WR_ARGS_OPT_PASSWORD_FILE},   \
  {"tls", no_argument, NULL, WR_ARGS_OPT_TLS},                             \
  {"tls-ca", required_argument, NULL, WR_ARGS_OPT_TLS_CA},                 \
  {"tls-cert", required_argument, NULL, WR_ARGS_OPT_TLS_CERT},             \
  {"tls-key", required_argument, NULL, WR_ARGS_OPT_TLS_KEY},               \
  {"no-verify-hostname", no_argument, NULL, WR_ARGS_OPT_NO_VERIFY_HOSTNAME}
// clang-format on

/* Their help text, two columns as the commands print theirs; `base` says
 * where unset parts come from ("the defaults", "CONFIG_FILE's broker
 * section"). docs/tools.md documents the same. */
void wr_args_conn_help(FILE *f, const char *base);

/*
 * Take getopt_long's result c (with optarg v) into a. Returns 1 when c is
 * a connection option, 0 when it is not (the caller's own), -1 when its
 * value is refused (err says why: a bad port, an empty string).
 */
int wr_args_conn_opt(wr_args_conn *a, int c, const char *v, char *err,
                     size_t errlen);

/* Where wr_args_conn_apply keeps the strings it makes; must outlive the
 * use of the parameters it filled. */
typedef struct wr_args_store {
  char url[2048];
  char password[1024]; /* as config/cfg.c: WR_CFG_MAX_SECRET + 1 */
} wr_args_store;

/*
 * Lay the options over b, which holds the defaults or the config file's
 * broker section. The precedence is the command line, then the
 * environment, then b: the URL is --url, else env_url (WARREN_BROKER_URL;
 * NULL or "" is none) unless --host is given; it sets what wr_conn_url
 * sets, and every other option given overrides its part of it. The
 * password file is read as config/cfg.c reads broker.password_file (a
 * regular file, trailing newlines removed, 1..1023 bytes). When TLS is
 * turned on here and no port came from here, the port becomes 5671.
 * 0, or -1 with err saying what is wrong (never the password).
 */
int wr_args_conn_apply(const wr_args_conn *a, const char *env_url,
                       wr_conn_params *b, wr_args_store *store, char *err,
                       size_t errlen);

/*
 * The message for getopt_long's '?' or ':' (the option string must start
 * with ':' so a missing value is told apart), written into err: "unknown
 * option '--x'" or "option '--port' needs a value". argv and optind as
 * getopt_long left them.
 */
void wr_args_getopt_error(int c, char *const argv[], char *err, size_t errlen);

/* The version of this build (CMake's project version), e.g. "0.1.0". */
const char *wr_args_version(void);

/* `warren --version` and `warren dlq --version`: the version and the
 * handler ABI the worker speaks, on stdout. */
void wr_args_print_warren_version(void);

/* Print "PROG: MSG" and the one-line hint "Try 'PROG --help' ..." to
 * stderr. Returns 2, the exit status of a usage error. */
int wr_args_refuse(const char *prog, const char *msg);

#endif
