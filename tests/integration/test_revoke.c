/* warren revoke (docs/revoke.md) against the real broker: a revoked job
 * is dead-lettered as `revoked` and never reaches handle(); --terminate
 * stops a running one without counting a crash; revokes expire; a
 * malformed control message changes nothing; every process hears one. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <amqp.h>
#include <cjson/cJSON.h>

#include <warren/status.h>

#include "conn.h"
#include "control.h"
#include "keyring.h"
#include "support.h"

TW_SUITE(revoke, 240);

/* `warren revoke` with the test's config and args; its output in out. */
static int revoke_cli(const char *dir, const char *args, char *out,
                      size_t len) {
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "revoke %s/warren.cfg %s", dir, args);
  return tw_warren_cli(out, len, cmd);
}

static void must_revoke(const char *dir, const char *args, const char *log,
                        const char *seen) {
  char out[4096];
  int rc = revoke_cli(dir, args, out, sizeof out);
  cr_assert_eq(rc, 0, "warren revoke %s: %s", args, out);
  cr_assert(strstr(out, "revoked "), "%s", out);
  cr_assert(tw_wait_text(log, seen, 20), "the worker applied it: %s", seen);
}

/* Publish body to the control exchange as any client could (confirmed),
 * with the signature header sig unless NULL. */
static void publish_signed(const void *body, size_t len, const char *sig) {
  amqp_connection_state_t c = tw_conn_confirming();
  cr_assert(c);
  wr_confirms cf;
  wr_confirms_init(&cf);
  amqp_basic_properties_t pr = {0};
  amqp_table_entry_t h = {amqp_cstring_bytes(WR_CONTROL_SIG_HEADER),
                          {AMQP_FIELD_KIND_UTF8, {0}}};
  if (sig) {
    h.value.value.bytes = amqp_cstring_bytes(sig);
    pr._flags = AMQP_BASIC_HEADERS_FLAG;
    pr.headers = (amqp_table_t){1, &h};
  }
  int rc = amqp_basic_publish(c, 1, amqp_cstring_bytes(WR_CONTROL_EXCHANGE),
                              amqp_empty_bytes, 0, 0, &pr,
                              (amqp_bytes_t){len, (void *)body});
  cr_assert_eq(rc, AMQP_STATUS_OK);
  wr_confirms_sent(&cf);
  int st = wr_confirms_wait(c, &cf, 30000);
  cr_assert_eq(st, WARREN_OK, "%s", cf.err);
  wr_conn_close(c);
}

static void publish_control(const void *body, size_t len) {
  publish_signed(body, len, NULL);
}

static int log_count(const char *path, const char *needle) {
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  char line[8192];
  int n = 0;
  while (fgets(line, sizeof line, f))
    if (strstr(line, needle)) n++;
  fclose(f);
  return n;
}

Test(revoke, a_revoked_id_published_afterwards_is_dead_lettered_and_never_runs,
     .timeout = 120) {
  char out[4096];
  /* Nobody listens yet: the operator is told nothing was revoked. */
  char cfg[600];
  snprintf(cfg, sizeof cfg,
           "broker = { host = \"127.0.0.1\"; port = %d; };\n"
           "handlers = ( { name = \"h\"; queue = \"it.rv.none\"; plugin = "
           "\"" TEST_HANDLER_DIR
           "/record.so\"; settings = { log = \"/dev/null\"; }; } );\n",
           tw_port());
  char path[400];
  snprintf(path, sizeof path, "%s/alone.cfg", tw_dir());
  FILE *f = fopen(path, "w");
  cr_assert(f);
  fputs(cfg, f);
  fclose(f);
  char cmd[600];
  snprintf(cmd, sizeof cmd, "revoke %s nobody1", path);
  int rc = tw_warren_cli(out, sizeof out, cmd);
  cr_assert_eq(rc, 1, "%s", out);
  cr_assert(strstr(out, "no Warren process is listening"), "%s", out);

  char log[300], rec[300];
  /* The retry copy waits 3 s: time enough for the revoke, which takes a
   * few hundred ms on a loaded machine, to come first. */
  pid_t w = tw_start_record("it.rv.later", "retry = { backoff = [3.0]; };",
                            "fail_suffix = \"-f\";", log, rec);
  cr_assert_gt(w, 0, "worker did not start");
  must_revoke(tw_dir(), "later1", log, "revoke: 1 id(s)");
  cr_assert_eq(tw_publish("it.rv.later", 2, "later"), 0);
  cr_assert(tw_wait_text(rec, "end later2", 30), "later2 ran");
  /* A job that fails, is revoked while its retry copy waits, and comes
   * back: refused at intake too. */
  cr_assert_eq(tw_publish_raw("it.rv.later", "again-f", NULL), 0);
  cr_assert(tw_wait_text(rec, "fail again-f", 20));
  must_revoke(tw_dir(), "again-f", log,
              "revoke: 1 id(s) for 3600 s, first again-f");
  cr_assert(tw_wait_text(log, "job again-f is revoked", 20));
  cr_assert(tw_wait_text(log, "job later1 is revoked", 20));
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
  cr_assert(!tw_wait_text(rec, "start later1", 0.1), "handle() never ran it");
  int starts = log_count(rec, "start again-f");
  cr_assert_eq(starts, 1, "the retry copy never ran");
  cr_assert(tw_wait_text(log, "revoked 2;", 1), "counted");
  static char dump[1 << 16];
  int ids = 0;
  while (tw_take_one("it.rv.later.dlq", dump, sizeof dump) == 1) {
    cr_assert(strstr(dump, "h.warren-dead-reason=revoked\n"), "%s", dump);
    ids += strstr(dump, "id=later1\n") || strstr(dump, "id=again-f\n");
  }
  cr_assert_eq(ids, 2, "both dead-lettered as revoked");
}

Test(revoke, a_job_waiting_behind_a_busy_worker_is_dead_lettered,
     .timeout = 120) {
  char log[300], rec[300];
  pid_t w = tw_start_record("it.rv.wait", "concurrency = 1; prefetch = 4;",
                            "sleep_ms = 2000;", log, rec);
  cr_assert_gt(w, 0, "worker did not start");
  cr_assert_eq(tw_publish("it.rv.wait", 3, "wait"), 0);
  cr_assert(tw_wait_text(rec, "start wait1", 20));
  must_revoke(tw_dir(), "wait2", log, "job wait2 revoked before it started");
  cr_assert(tw_wait_text(rec, "end wait3", 30));
  cr_assert(tw_wait_text(rec, "end wait1", 1));
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
  cr_assert(!tw_wait_text(rec, "start wait2", 0.1), "handle() never ran it");
  static char dump[1 << 16];
  cr_assert_eq(tw_take_one("it.rv.wait.dlq", dump, sizeof dump), 1);
  cr_assert(strstr(dump, "id=wait2\n"), "%s", dump);
  cr_assert(strstr(dump, "h.warren-dead-reason=revoked\n"), "%s", dump);
  int more = tw_take_one("it.rv.wait.dlq", dump, sizeof dump);
  cr_assert_eq(more, 0, "only wait2: %s", dump);
}

Test(revoke, terminate_stops_a_running_job_not_counted_as_a_crash,
     .timeout = 120) {
  char log[300], rec[300], text[2048];
  int port = tw_free_port();
  snprintf(log, sizeof log, "%s/warren.log", tw_dir());
  snprintf(rec, sizeof rec, "%s/rec", tw_dir());
  snprintf(text, sizeof text,
           "health = { port = %d; };\n"
           "handlers = ( { name = \"h\"; queue = \"it.rv.term\";\n"
           "  concurrency = 1; plugin = \"" TEST_HANDLER_DIR
           "/record.so\";\n"
           "  settings = { log = \"%s\"; hang_on = \"run1\"; }; } );\n",
           port, rec);
  pid_t w = tw_warren_start(tw_dir(), text);
  cr_assert(tw_wait_text(log, "consuming 1 queue(s)", 30), "not started");
  cr_assert_eq(tw_publish("it.rv.term", 2, "run"), 0);
  cr_assert(tw_wait_text(rec, "start run1", 20));
  /* Without --terminate a running job goes on. */
  must_revoke(tw_dir(), "run1", log, "it goes on");
  cr_assert(!tw_wait_text(rec, "start run2", 0.5), "run1 still holds it");
  must_revoke(tw_dir(), "--terminate run1", log,
              "was killed to stop a revoked job");
  cr_assert(tw_wait_text(rec, "end run2", 30), "run2 ran after it");
  /* The worker's own count of deaths, as /status/workers shows it. */
  double revoked = -1, restarts = -1, crashed = -1;
  for (int i = 0; i < 200 && revoked != 1; i++) {
    static char body[65536];
    if (tw_http(port, NULL, "/status/workers", NULL, body, sizeof body) ==
        200) {
      cJSON *j = cJSON_Parse(body);
      cJSON *h = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "handlers"), 0);
      cJSON *c = cJSON_GetObjectItem(h, "counts");
      cJSON *wk = cJSON_GetArrayItem(cJSON_GetObjectItem(h, "workers"), 0);
      revoked = cJSON_GetNumberValue(cJSON_GetObjectItem(
          cJSON_GetObjectItem(c, "dead_lettered"), "revoked"));
      crashed = cJSON_GetNumberValue(cJSON_GetObjectItem(c, "crashed"));
      restarts = cJSON_GetNumberValue(cJSON_GetObjectItem(wk, "restarts"));
      cJSON_Delete(j);
    }
    if (revoked != 1) nanosleep(&(struct timespec){0, 50 * 1000 * 1000}, NULL);
  }
  cr_assert_eq(revoked, 1, "dead-lettered as revoked");
  cr_assert_eq(crashed, 0, "not a crash");
  cr_assert_eq(restarts, 0, "the worker's death is not counted");
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
  cr_assert(tw_wait_text(log, "crashed 0,", 1), "not counted as a crash");
  cr_assert(tw_wait_text(log, "revoked 1;", 1), "counted as revoked");
  cr_assert(!tw_wait_text(log, "while running a job", 0.1));
  static char dump[1 << 16];
  cr_assert_eq(tw_take_one("it.rv.term.dlq", dump, sizeof dump), 1);
  cr_assert(strstr(dump, "id=run1\n"), "%s", dump);
  cr_assert(strstr(dump, "h.warren-dead-reason=revoked\n"), "%s", dump);
  cr_assert(strstr(dump, "h.warren-crashes=0\n"), "%s", dump);
  cr_assert(strstr(dump,
                   "h.warren-last-error=stopped while running by warren "
                   "revoke --terminate\n"),
            "%s", dump);
}

Test(revoke, an_expired_revoke_no_longer_applies, .timeout = 120) {
  char log[300], rec[300], out[4096];
  pid_t w = tw_start_record("it.rv.exp", "", "", log, rec);
  cr_assert_gt(w, 0, "worker did not start");
  int rc = revoke_cli(tw_dir(), "--expires 0 exp1", out, sizeof out);
  cr_assert_eq(rc, 2, "%s", out);
  cr_assert(strstr(out, "--expires"), "%s", out);
  must_revoke(tw_dir(), "--expires 1s exp1 exp2", log,
              "revoke: 2 id(s) for 1 s");
  nanosleep(&(struct timespec){1, 500 * 1000 * 1000}, NULL);
  cr_assert_eq(tw_publish("it.rv.exp", 2, "exp"), 0);
  int done[3];
  cr_assert_eq(tw_wait_all(rec, "exp", done, 2, 30), 0, "both ran");
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
  int dead = tw_queue_len("it.rv.exp.dlq");
  cr_assert_eq(dead, 0);
}

Test(revoke,
     a_malformed_control_message_is_ignored_and_the_worker_keeps_running,
     .timeout = 120) {
  char log[300], rec[300];
  pid_t w = tw_start_record("it.rv.bad", "", "", log, rec);
  cr_assert_gt(w, 0, "worker did not start");
  static const char *bad[] = {
      "not json",
      "[1,2]",
      "{\"ids\":[\"bad1\"]}",
      "{\"type\":\"revoke\"}",
      "{\"type\":\"revoke\",\"ids\":[]}",
      "{\"type\":\"revoke\",\"ids\":[1]}",
      "{\"type\":\"revoke\",\"ids\":[\"bad1\"],\"expires\":-5}",
      "{\"type\":\"revoke\",\"ids\":[\"bad1\"],\"terminate\":\"yes\"}",
      "{\"type\":\"revoke\",\"ids\":[\"\"]}",
  };
  size_t nbad = sizeof bad / sizeof *bad;
  for (size_t i = 0; i < nbad; i++) publish_control(bad[i], strlen(bad[i]));
  static char big[WR_CONTROL_MAX_BODY + 100];
  memset(big, ' ', sizeof big);
  publish_control(big, sizeof big);
  char longid[400];
  memset(longid, 'x', 300);
  snprintf(longid + 300, 100, "\"]}");
  char msg[500];
  snprintf(msg, sizeof msg, "{\"type\":\"revoke\",\"ids\":[\"%s", longid);
  publish_control(msg, strlen(msg));
  const char *other = "{\"type\":\"shutdown\"}";
  publish_control(other, strlen(other));
  cr_assert(tw_wait_text(log, "type 'shutdown' ignored", 20));
  int ignored = log_count(log, "control message ignored");
  cr_assert_eq(ignored, (int)nbad + 2, "each is refused and logged");
  /* Still running jobs, and still hearing revokes. */
  cr_assert_eq(tw_publish("it.rv.bad", 1, "ok"), 0);
  int done[2];
  cr_assert_eq(tw_wait_all(rec, "ok", done, 1, 30), 0);
  must_revoke(tw_dir(), "fine1", log, "revoke: 1 id(s)");
  cr_assert_eq(tw_publish_raw("it.rv.bad", "fine1", NULL), 0);
  cr_assert(tw_wait_text(log, "job fine1 is revoked", 20));
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
  cr_assert(!tw_wait_text(rec, "bad1", 0.1), "no malformed revoke applied");
}

Test(revoke, two_processes_both_receive_one_revoke, .timeout = 120) {
  char log[300], rec[300], dir2[400], text[2048], log2[500], rec2[500];
  pid_t a = tw_start_record("it.rv.a", "", "", log, rec);
  cr_assert_gt(a, 0, "worker a did not start");
  snprintf(dir2, sizeof dir2, "%s/b", tw_dir());
  mkdir(dir2, 0755);
  snprintf(log2, sizeof log2, "%s/warren.log", dir2);
  snprintf(rec2, sizeof rec2, "%s/rec", dir2);
  snprintf(text, sizeof text,
           "handlers = ( { name = \"h\"; queue = \"it.rv.b\";\n"
           "  plugin = \"" TEST_HANDLER_DIR
           "/record.so\";\n  settings = { log = \"%s\"; }; } );\n",
           rec2);
  pid_t b = tw_warren_start(dir2, text);
  cr_assert(tw_wait_text(log2, "consuming 1 queue(s)", 30), "b not started");
  must_revoke(tw_dir(), "both1", log, "revoke: 1 id(s)");
  cr_assert(tw_wait_text(log2, "revoke: 1 id(s)", 20), "b heard it too");
  cr_assert_eq(tw_publish_raw("it.rv.a", "both1", NULL), 0);
  cr_assert_eq(tw_publish_raw("it.rv.b", "both1", NULL), 0);
  cr_assert(tw_wait_text(log, "job both1 is revoked", 20));
  cr_assert(tw_wait_text(log2, "job both1 is revoked", 20));
  cr_assert_eq(tw_warren_stop(a, SIGTERM, 30), 0);
  cr_assert_eq(tw_warren_stop(b, SIGTERM, 30), 0);
  static char dump[1 << 16];
  cr_assert_eq(tw_take_one("it.rv.a.dlq", dump, sizeof dump), 1);
  cr_assert(strstr(dump, "h.warren-dead-reason=revoked\n"), "%s", dump);
  cr_assert_eq(tw_take_one("it.rv.b.dlq", dump, sizeof dump), 1);
  cr_assert(strstr(dump, "h.warren-dead-reason=revoked\n"), "%s", dump);
}

/* With a signing keyring, a control message must be signed by one of its
 * keys (warren revoke signs with the config's key); anyone else who can
 * publish to the exchange is ignored, also with a forged or stale
 * signature. */
Test(revoke, with_a_keyring_only_a_signed_revoke_applies, .timeout = 120) {
  char kpath[400], text[2048], log[400], rec[400];
  snprintf(kpath, sizeof kpath, "%s/ops.key", tw_dir());
  FILE *f = fopen(kpath, "w");
  cr_assert(f);
  fputs("ops-secret-0123456789abcdef0123456789abcdef\n", f);
  fclose(f);
  chmod(kpath, 0600);
  snprintf(log, sizeof log, "%s/warren.log", tw_dir());
  snprintf(rec, sizeof rec, "%s/rec", tw_dir());
  snprintf(text, sizeof text,
           "signing = { keys = ( { id = \"ops\"; file = \"%s\"; } ); "
           "countersign_key = \"ops\"; window = 60; };\n"
           "handlers = ( { name = \"h\"; queue = \"it.rv.sig\";\n"
           "  require_signature = false;\n"
           "  plugin = \"" TEST_HANDLER_DIR
           "/record.so\";\n  settings = { log = \"%s\"; }; } );\n",
           kpath, rec);
  pid_t w = tw_warren_start(tw_dir(), text);
  cr_assert(tw_wait_text(log, "consuming 1 queue(s)", 30), "not started");
  const char *plain = "{\"type\":\"revoke\",\"ids\":[\"sig1\"]}";
  publish_control(plain, strlen(plain));
  cr_assert(tw_wait_text(log,
                         "control message ignored: header "
                         "warren-control-signature is missing",
                         20));
  /* Right key, but sent an hour ago (a replayed copy), and a forgery. */
  char err[200], sig[WR_CONTROL_SIG_MAX];
  wr_keyring *ring = wr_keyring_new();
  const char *secret = "ops-secret-0123456789abcdef0123456789abcdef";
  cr_assert_eq(
      wr_keyring_add(ring, "ops", secret, strlen(secret), err, sizeof err), 0,
      "%s", err);
  const char *ids[] = {"sig1"};
  size_t len;
  char *old =
      wr_control_build_revoke(ids, 1, 60, 0, (double)time(NULL) - 3600, &len);
  cr_assert_eq(wr_control_sign(ring, "ops", old, len, sig), 0);
  publish_signed(old, len, sig);
  cr_assert(tw_wait_text(log, "sent_at is missing or more than 60 s off", 20));
  char *now = wr_control_build_revoke(ids, 1, 60, 0, (double)time(NULL), &len);
  cr_assert_eq(wr_control_sign(ring, "ops", now, len, sig), 0);
  sig[strlen(sig) - 1] ^= 1;
  publish_signed(now, len, sig);
  cr_assert(tw_wait_text(log, "the signature does not match the body", 20));
  free(old);
  free(now);
  wr_keyring_free(ring);
  must_revoke(tw_dir(), "sig2", log, "revoke: 1 id(s)");
  cr_assert_eq(tw_publish_raw("it.rv.sig", "sig1", NULL), 0);
  cr_assert_eq(tw_publish_raw("it.rv.sig", "sig2", NULL), 0);
  cr_assert(tw_wait_text(rec, "end sig1", 20),
            "the unsigned revoke did nothing");
  cr_assert(tw_wait_text(log, "job sig2 is revoked", 20));
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
  cr_assert(!tw_wait_text(rec, "start sig2", 0.1));
  static char dump[1 << 16];
  cr_assert_eq(tw_take_one("it.rv.sig.dlq", dump, sizeof dump), 1);
  cr_assert(strstr(dump, "id=sig2\n"), "%s", dump);
}

/* The command line: --help lists every option; a bad one exits 2 naming
 * it, before any connection is tried. */
Test(revoke, help_lists_the_options_and_bad_arguments_exit_2, .timeout = 60) {
  static char out[16384];
  int rc = tw_warren_cli(out, sizeof out, "revoke --help");
  cr_assert_eq(rc, 0, "%s", out);
  static const char *const opts[] = {"--expires", "--terminate", "--key",
                                     "--url",     "--tls",       "JOB_ID",
                                     "--version", NULL};
  for (const char *const *o = opts; *o; o++)
    cr_assert(strstr(out, *o), "warren revoke --help lists %s", *o);
  rc = tw_warren_cli(out, sizeof out, "--help");
  cr_assert_eq(rc, 0);
  cr_assert(strstr(out, "warren revoke"), "%s", out);
  char id[300];
  memset(id, 'z', 256);
  id[256] = '\0';
  char longid[400];
  snprintf(longid, sizeof longid, "revoke x.cfg %s", id);
  static const char *const bad[][2] = {
      {"revoke", "CONFIG_FILE is missing"},
      {"revoke x.cfg", "no JOB_ID"},
      {"revoke x.cfg a --expires 8d", "--expires"},
      {"revoke x.cfg a --expires 1x", "--expires"},
      {"revoke x.cfg a --expires ''", "--expires"},
      {"revoke x.cfg a --nope", "--nope"},
      {"revoke /nonexistent/warren.cfg a", "/nonexistent/warren.cfg"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    rc = tw_warren_cli(out, sizeof out, bad[i][0]);
    cr_assert_eq(rc, 2, "warren %s: %s", bad[i][0], out);
    cr_assert(strstr(out, bad[i][1]), "warren %s: %s", bad[i][0], out);
  }
  rc = tw_warren_cli(out, sizeof out, longid);
  cr_assert_eq(rc, 2, "%s", out);
  cr_assert(strstr(out, "1 to 255 bytes"), "%s", out);
}
