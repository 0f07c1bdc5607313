/* Signed jobs against the real broker (docs/signing.md): what runs, what
 * is dead-lettered as `signature` with which check, key rotation by
 * SIGHUP, countersigned retries and replays past the window, and a
 * producer written in Python from the spec alone. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <warren/sign.h>

#include "clock.h"
#include "conn.h"
#include "support.h"

TW_SUITE(sign, 180);

#define KEY_A "gw-a-secret-0123456789abcdef0123456789abcdef"
#define KEY_B "gw-b-secret-0123456789abcdef0123456789abcdef"
#define KEY_W "warren-own-secret-0123456789abcdef0123456789"

static char log_[300], rec[300];

/* The worker's config: a signing section with keys `ids` (comma
 * separated, from gw-a, gw-b and warren) and one record handler on q. */
static void config_text(char *out, size_t len, const char *ids, double window,
                        const char *q, const char *extra,
                        const char *settings) {
  size_t o = (size_t)snprintf(out, len, "signing = { keys = (");
  char list[100];
  snprintf(list, sizeof list, "%s", ids);
  int first = 1;
  for (char *id = strtok(list, ","); id; id = strtok(NULL, ",")) {
    o += (size_t)snprintf(out + o, len - o,
                          "%s { id = \"%s\"; file = \"%s/%s.key\"; }",
                          first ? "" : ",", id, tw_dir(), id);
    first = 0;
  }
  snprintf(out + o, len - o,
           "); countersign_key = \"warren\"; window = %g; };\n"
           "handlers = ( { name = \"h\"; queue = \"%s\";\n"
           "  plugin = \"" TEST_HANDLER_DIR
           "/record.so\";\n"
           "  %s\n  settings = { log = \"%s/rec\"; %s }; } );\n",
           window, q, extra, tw_dir(), settings);
}

static pid_t start(const char *ids, double window, const char *q,
                   const char *extra, const char *settings) {
  tw_key_file("gw-a", KEY_A);
  tw_key_file("gw-b", KEY_B);
  tw_key_file("warren", KEY_W);
  snprintf(log_, sizeof log_, "%s/warren.log", tw_dir());
  snprintf(rec, sizeof rec, "%s/rec", tw_dir());
  char text[4096];
  config_text(text, sizeof text, ids, window, q, extra, settings);
  pid_t w = tw_warren_start(tw_dir(), text);
  cr_assert(tw_wait_text(log_, "consuming 1 queue(s)", 30), "not started");
  return w;
}

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* How a test job is signed; a NULL field is the job's own value. */
typedef struct how {
  const char *key_id, *key;
  int64_t offset_ms;       /* signing time - now */
  const char *body;        /* signed body (the job's body is its id) */
  const char *routing_key; /* signed routing key */
  const char *header;      /* the header value as it is, not signed */
  int unsigned_job;        /* no header at all */
} how;

/* Publish job `id` (body = id, default exchange, key q) with the
 * signature `h` describes. */
static void publish(const char *q, const char *id, how h) {
  char sig[WARREN_SIGNATURE_MAX];
  warren_sign_input in = {.size = sizeof in,
                          .key_id = h.key_id ? h.key_id : "gw-a",
                          .key = h.key ? h.key : KEY_A,
                          .key_len = strlen(h.key ? h.key : KEY_A),
                          .time_ms = now_ms() + h.offset_ms,
                          .message_id = id,
                          .exchange = "",
                          .routing_key = h.routing_key ? h.routing_key : q,
                          .body = h.body ? h.body : id,
                          .body_len = strlen(h.body ? h.body : id)};
  cr_assert_eq(warren_sign(&in, sig, sizeof sig), 0);
  amqp_table_entry_t e = {
      amqp_cstring_bytes(WARREN_SIGNATURE_HEADER),
      {AMQP_FIELD_KIND_UTF8,
       {.bytes = amqp_cstring_bytes(h.header ? h.header : sig)}}};
  amqp_table_t t = {1, &e};
  cr_assert_eq(tw_publish_raw(q, id, h.unsigned_job ? NULL : &t), 0);
}

/* Take every dead letter of q: "id check" pairs into out. */
static int dead_letters(const char *q, char *out, size_t len) {
  char dlq[200];
  static char dump[65536];
  snprintf(dlq, sizeof dlq, "%s.dlq", q);
  size_t o = 0;
  int n = 0;
  out[0] = '\0';
  while (tw_take_one(dlq, dump, sizeof dump)) {
    n++;
    cr_assert(strstr(dump, "h.warren-dead-reason=signature\n"), "%s", dump);
    char *id = strstr(dump, "id="),
         *c = strstr(dump, "h.warren-signature-check=");
    cr_assert(id && c, "%s", dump);
    o += (size_t)snprintf(out + o, len - o, "%.*s %.*s\n",
                          (int)strcspn(id + 3, "\n"), id + 3,
                          (int)strcspn(c + 25, "\n"), c + 25);
  }
  return n;
}

/* Does process pid hold `needle` anywhere in its readable memory? */
static int memory_holds(pid_t pid, const char *needle) {
  char path[64], line[512];
  snprintf(path, sizeof path, "/proc/%d/maps", (int)pid);
  FILE *maps = fopen(path, "r");
  snprintf(path, sizeof path, "/proc/%d/mem", (int)pid);
  FILE *mem = fopen(path, "rb");
  cr_assert(maps && mem, "cannot read the memory of %d", (int)pid);
  size_t nl = strlen(needle);
  static char buf[1 << 20];
  int found = 0;
  while (!found && fgets(line, sizeof line, maps)) {
    unsigned long lo, hi;
    char perms[8];
    /* Sanitizers reserve terabytes of shadow memory: regions that large
     * hold no heap of ours. */
    if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) != 3 || perms[0] != 'r' ||
        hi - lo > (256ul << 20) || strstr(line, "[vvar]") ||
        strstr(line, "[vsyscall]"))
      continue;
    for (unsigned long at = lo; !found && at < hi; at += sizeof buf - nl) {
      size_t want = hi - at < sizeof buf ? hi - at : sizeof buf;
      if (fseek(mem, (long)at, SEEK_SET) != 0) break;
      size_t got = fread(buf, 1, want, mem);
      clearerr(mem);
      found = got >= nl && memmem(buf, got, needle, nl) != NULL;
      if (got < want) break;
    }
  }
  fclose(maps);
  fclose(mem);
  return found;
}

static void wait_dead(const char *q, int n) {
  char dlq[200];
  snprintf(dlq, sizeof dlq, "%s.dlq", q);
  double until = wr_now() + 30;
  while (tw_queue_len(dlq) < n && wr_now() < until)
    nanosleep(&(struct timespec){0, 50 * 1000 * 1000}, NULL);
  cr_assert_eq(tw_queue_len(dlq), n, "dead letters in %s", dlq);
}

/* Wait for q's one dead letter, stop worker w, and check that it is
 * `want` ("id check\n"). */
static void one_dead_letter(pid_t w, const char *q, const char *want) {
  wait_dead(q, 1);
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
  char got[200];
  cr_assert_eq(dead_letters(q, got, sizeof got), 1);
  cr_assert_str_eq(got, want);
}

Test(sign, a_signed_job_runs_and_each_forgery_is_dead_lettered_with_its_check,
     .timeout = 120) {
  pid_t w = start("gw-a,warren", 300, "it.sign", "", "");
  publish("it.sign", "good", (how){0});
  /* warren-publish signs with --key-id and --key-file */
  char cmd[1200];
  snprintf(cmd, sizeof cmd,
           WARREN_PUBLISH_BIN
           " --port %d --routing-key it.sign --id cli --key-id gw-a "
           "--key-file %s/gw-a.key --content-type text/plain >/dev/null",
           tw_port(), tw_dir());
  cr_assert_eq(system(cmd), 0);
  publish("it.sign", "unsigned", (how){.unsigned_job = 1});
  publish("it.sign", "forged-body", (how){.body = "something else"});
  publish("it.sign", "forged-field", (how){.routing_key = "it.other"});
  publish("it.sign", "unknown-key", (how){.key_id = "gw-b", .key = KEY_B});
  publish("it.sign", "expired", (how){.offset_ms = -301000});
  publish("it.sign", "future", (how){.offset_ms = 301000});
  publish("it.sign", "malformed",
          (how){.header = "v1;key=gw-a;time=12;body=00;sig=AAAA"});
  cr_assert(tw_wait_text(rec, "end good", 30), "the signed job ran");
  cr_assert(tw_wait_text(rec, "end cli", 30), "warren-publish's job ran");
  /* The keys stay in the supervisor: a worker is wiped as it is forked. */
  pid_t worker = tw_child_of(w);
  cr_assert_gt(worker, 0);
  cr_assert(memory_holds(w, KEY_A), "the supervisor holds the key");
  cr_assert_not(memory_holds(worker, KEY_A), "no key in a worker's memory");
  wait_dead("it.sign", 7);
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
  char got[2000];
  cr_assert_eq(dead_letters("it.sign", got, sizeof got), 7);
  static const char *const want[] = {"unsigned missing\n",
                                     "forged-body body-digest\n",
                                     "forged-field bad-signature\n",
                                     "unknown-key unknown-key\n",
                                     "expired expired\n",
                                     "future future\n",
                                     "malformed malformed\n"};
  for (size_t i = 0; i < sizeof want / sizeof *want; i++)
    cr_assert(strstr(got, want[i]), "want %s in\n%s", want[i], got);
  const char *never[] = {"unsigned", "forged", "unknown",
                         "expired",  "future", "malformed"};
  for (size_t i = 0; i < sizeof never / sizeof *never; i++) {
    char start_line[64];
    snprintf(start_line, sizeof start_line, "start %s", never[i]);
    cr_assert(!tw_wait_text(rec, start_line, 0), "%s reached the handler",
              never[i]);
  }
  cr_assert(
      tw_wait_text(log_, "signature check failed: expired (key 'gw-a'", 0));
  cr_assert(tw_wait_text(log_, "signature refused 7", 0),
            "counted per handler");
  cr_assert(!tw_wait_text(log_, "secret-", 0), "no key in the log");
  cr_assert(!tw_wait_text(log_, "sig=", 0), "no signature in the log");
}

/* Old and new key are both accepted; a SIGHUP after the old one left the
 * config refuses it, without a restart, and a batch published across the
 * reload runs exactly once. */
Test(sign, keys_rotate_without_a_restart, .timeout = 150) {
  pid_t w = start("gw-a,gw-b,warren", 300, "it.rotate", "", "");
  publish("it.rotate", "old1", (how){0});
  publish("it.rotate", "new1", (how){.key_id = "gw-b", .key = KEY_B});
  cr_assert(tw_wait_text(rec, "end old1", 30));
  cr_assert(tw_wait_text(rec, "end new1", 30));
  char text[4096], path[400];
  config_text(text, sizeof text, "gw-b,warren", 300, "it.rotate", "", "");
  snprintf(path, sizeof path, "%s/warren.cfg", tw_dir());
  FILE *f = fopen(path, "r+");
  cr_assert(f);
  /* keep the broker and worker lines tw_warren_start wrote */
  char head[1024];
  size_t n = fread(head, 1, sizeof head - 1, f);
  head[n] = '\0';
  *strstr(head, "signing") = '\0';
  fclose(f);
  f = fopen(path, "w");
  fprintf(f, "%s%s", head, text);
  fclose(f);
  char id[32];
  for (int i = 1; i <= 100; i++) {
    snprintf(id, sizeof id, "batch%d", i);
    publish("it.rotate", id, (how){.key_id = "gw-b", .key = KEY_B});
    if (i == 50) cr_assert_eq(kill(w, SIGHUP), 0);
  }
  cr_assert(tw_wait_text(log_, "signing keys reloaded", 30), "reloaded");
  publish("it.rotate", "old2", (how){0});
  publish("it.rotate", "new2", (how){.key_id = "gw-b", .key = KEY_B});
  cr_assert(tw_wait_text(rec, "end new2", 30));
  int done[101];
  cr_assert_eq(tw_wait_all(rec, "batch", done, 100, 30), 0);
  one_dead_letter(w, "it.rotate", "old2 unknown-key\n");
  int starts[101] = {0}, dupes = 0;
  tw_count(rec, "start", "batch", starts, 100);
  for (int i = 1; i <= 100; i++) dupes += starts[i] != 1;
  cr_assert_eq(dupes, 0, "every job of the batch ran exactly once");
}

/* A 1 s window and a 2.5 s backoff: the retry arrives after its
 * producer's signature has expired and runs on Warren's countersignature. */
Test(sign, a_retried_job_runs_after_its_window_has_passed, .timeout = 120) {
  pid_t w =
      start("gw-a,warren", 1, "it.sretry",
            "retry = { backoff = [2.5]; jitter = 0.0; };", "fail_below = 2;");
  publish("it.sretry", "late", (how){0});
  cr_assert(tw_wait_text(rec, "end late", 30), "the retry ran");
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
  cr_assert(tw_wait_text(rec, "fail late", 0), "the first attempt failed");
  cr_assert_eq(tw_queue_len("it.sretry.dlq"), 0);
}

/* A dead letter replayed after its window runs (warren dlq replay gives
 * it a fresh countersignature); a countersignature moved onto another job
 * is refused. */
Test(sign,
     a_dlq_replay_runs_after_the_window_and_a_moved_countersignature_fails,
     .timeout = 120) {
  char flag[300], settings[400];
  snprintf(flag, sizeof flag, "%s/flag", tw_dir());
  snprintf(settings, sizeof settings, "reject_unless = \"%s\";", flag);
  pid_t w = start("gw-a,warren", 1, "it.sreplay", "", settings);
  publish("it.sreplay", "job1", (how){0});
  cr_assert(tw_wait_text(log_, "job job1 dead-lettered", 30));
  wait_dead("it.sreplay", 1);
  /* A copy of the dead letter's countersignature, for later. */
  static char dump[65536];
  cr_assert_eq(tw_get("it.sreplay.dlq", 0, dump, sizeof dump), 1);
  char *cs = strstr(dump, "h.warren-countersignature=S:");
  char *sg = strstr(dump, "h.warren-signature=S:");
  cr_assert(cs && sg, "the dead letter is countersigned: %s", dump);
  /* "S:<length>:<value>" */
  char csig[300], sig[300];
  cs = strchr(cs + 28, ':') + 1;
  sg = strchr(sg + 21, ':') + 1;
  snprintf(csig, sizeof csig, "%.*s", (int)strcspn(cs, "\n"), cs);
  snprintf(sig, sizeof sig, "%.*s", (int)strcspn(sg, "\n"), sg);
  sleep(2); /* past the window */
  FILE *f = fopen(flag, "w");
  fclose(f);
  char out[4096], args[600];
  snprintf(args, sizeof args, "dlq replay %s/warren.cfg h", tw_dir());
  cr_assert_eq(tw_warren_cli(out, sizeof out, args), 0, "%s", out);
  cr_assert(strstr(out, "replayed 1 message(s)"), "%s", out);
  cr_assert(tw_wait_text(rec, "end job1", 30), "the replay ran");
  /* The same two headers on another job id: the countersignature binds
   * the message id, so it is refused. */
  amqp_table_entry_t e[2] = {
      {amqp_cstring_bytes("warren-signature"),
       {AMQP_FIELD_KIND_UTF8, {.bytes = amqp_cstring_bytes(sig)}}},
      {amqp_cstring_bytes("warren-countersignature"),
       {AMQP_FIELD_KIND_UTF8, {.bytes = amqp_cstring_bytes(csig)}}}};
  amqp_table_t t = {2, e};
  cr_assert_eq(tw_publish_raw("it.sreplay", "job2", &t), 0);
  one_dead_letter(w, "it.sreplay", "job2 countersignature-bad-signature\n");
  cr_assert(!tw_wait_text(rec, "start job2", 0));
}

/* tests/integration/sign_producer.py implements docs/signing.md with
 * Python's hmac and pika only. */
Test(sign, a_python_producer_written_from_the_spec_is_verified,
     .timeout = 120) {
  const char *py = tw_python();
  pid_t w = start("gw-a,warren", 300, "it.python", "", "");
  char cmd[1200];
  snprintf(cmd, sizeof cmd,
           "%s " WARREN_SOURCE_DIR
           "/tests/integration/sign_producer.py --port %d --queue it.python "
           "--key-id gw-a --key-file %s/gw-a.key --count 3 --id py "
           "> %s/python.log 2>&1",
           py, tw_port(), tw_dir(), tw_dir());
  cr_assert_eq(system(cmd), 0, "see %s/python.log", tw_dir());
  int done[4];
  cr_assert_eq(tw_wait_all(rec, "py", done, 3, 30), 0);
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
  cr_assert_eq(tw_queue_len("it.python.dlq"), 0);
}

/* require_signature = false (migration): an unsigned job runs, a signed
 * one is still verified. */
Test(sign, unsigned_jobs_run_where_signatures_are_not_required,
     .timeout = 120) {
  pid_t w = start("gw-a,warren", 300, "it.optional",
                  "require_signature = false;", "");
  publish("it.optional", "plain", (how){.unsigned_job = 1});
  publish("it.optional", "signed", (how){0});
  publish("it.optional", "forged", (how){.body = "other"});
  cr_assert(tw_wait_text(rec, "end plain", 30));
  cr_assert(tw_wait_text(rec, "end signed", 30));
  one_dead_letter(w, "it.optional", "forged body-digest\n");
}

/* isolation = false: the body is compared in the supervisor, just before
 * handle(). */
Test(sign, an_in_process_handler_refuses_a_forged_body, .timeout = 120) {
  pid_t w = start("gw-a,warren", 300, "it.sinproc", "isolation = false;", "");
  publish("it.sinproc", "good", (how){0});
  publish("it.sinproc", "forged", (how){.body = "other"});
  cr_assert(tw_wait_text(rec, "end good", 30));
  one_dead_letter(w, "it.sinproc", "forged body-digest\n");
  cr_assert(!tw_wait_text(rec, "start forged", 0));
}

/* A job refused before its signature was checked (here for an unusable
 * warren-attempt) takes the slot of a genuine job that ran before it, at
 * prefetch 1. Nothing of that job may pass to it: its dead letter carries
 * no countersignature, and a replay of it is refused, never run. */
Test(sign, a_forged_job_in_a_reused_slot_is_never_countersigned_nor_run,
     .timeout = 120) {
  pid_t w = start("gw-a,warren", 300, "it.sreuse",
                  "prefetch = 1; concurrency = 1;", "");
  publish("it.sreuse", "genuine", (how){0});
  cr_assert(tw_wait_text(rec, "end genuine", 30), "the genuine job ran");
  char sig[WARREN_SIGNATURE_MAX];
  warren_sign_input in = {.size = sizeof in,
                          .key_id = "gw-a",
                          .key = KEY_B, /* not gw-a's */
                          .key_len = strlen(KEY_B),
                          .time_ms = now_ms(),
                          .message_id = "forged",
                          .exchange = "",
                          .routing_key = "it.sreuse",
                          .body = "forged",
                          .body_len = 6};
  cr_assert_eq(warren_sign(&in, sig, sizeof sig), 0);
  amqp_table_entry_t e[2] = {
      {amqp_cstring_bytes(WARREN_SIGNATURE_HEADER),
       {AMQP_FIELD_KIND_UTF8, {.bytes = amqp_cstring_bytes(sig)}}},
      {amqp_cstring_bytes("warren-attempt"),
       {AMQP_FIELD_KIND_UTF8, {.bytes = amqp_cstring_bytes("x")}}}};
  cr_assert_eq(tw_publish_raw("it.sreuse", "forged", &(amqp_table_t){2, e}), 0);
  wait_dead("it.sreuse", 1);
  static char dump[65536];
  cr_assert_eq(tw_get("it.sreuse.dlq", 0, dump, sizeof dump), 1);
  cr_assert(strstr(dump, "h.warren-dead-reason=S:9:malformed\n") ||
                strstr(dump, "malformed"),
            "%s", dump);
  cr_assert(!strstr(dump, "warren-countersignature"),
            "a job never verified is countersigned: %s", dump);
  char out[4096], args[600];
  snprintf(args, sizeof args, "dlq replay %s/warren.cfg h", tw_dir());
  cr_assert_eq(tw_warren_cli(out, sizeof out, args), 0, "%s", out);
  cr_assert(strstr(out, "replayed 1 message(s)"), "%s", out);
  /* Back in the queue without Warren's headers, it is checked as any job
   * and refused for its signature. */
  one_dead_letter(w, "it.sreuse", "forged bad-signature\n");
  cr_assert(!tw_wait_text(rec, "start forged", 0), "the forged job ran");
}

/* A job refused for its signature never ran: it adds nothing to
 * warren_job_duration_seconds and its log line has no duration, whatever
 * job used its slot before (a publisher without the key must not be able
 * to trip slow-job alerts). */
Test(sign, a_job_refused_for_its_signature_has_no_duration, .timeout = 120) {
  tw_key_file("gw-a", KEY_A);
  tw_key_file("gw-b", KEY_B);
  tw_key_file("warren", KEY_W);
  snprintf(log_, sizeof log_, "%s/warren.log", tw_dir());
  snprintf(rec, sizeof rec, "%s/rec", tw_dir());
  int port = tw_free_port();
  char text[4096];
  size_t o = (size_t)snprintf(text, sizeof text,
                              "health = { port = %d; snapshot_interval = "
                              "0.2; };\n",
                              port);
  config_text(text + o, sizeof text - o, "gw-a,warren", 300, "it.sdur",
              "prefetch = 1; concurrency = 1;", "");
  setenv("WARREN_LOG_FORMAT", "logfmt", 1);
  pid_t w = tw_warren_start(tw_dir(), text);
  cr_assert(tw_wait_text(log_, "consuming 1 queue(s)", 30), "not started");
  publish("it.sdur", "genuine", (how){0});
  cr_assert(tw_wait_text(rec, "end genuine", 30), "the genuine job ran");
  for (int i = 0; i < 3; i++) {
    char id[16];
    snprintf(id, sizeof id, "forged%d", i);
    publish("it.sdur", id, (how){.key = KEY_B});
  }
  wait_dead("it.sdur", 3);
  static char page[65536];
  double count = -1, sum = -1;
  for (int i = 0; i < 50 && count != 1; i++) {
    nanosleep(&(struct timespec){0, 100 * 1000 * 1000}, NULL);
    if (tw_http(port, NULL, "/metrics", NULL, page, sizeof page) != 200)
      continue;
    const char *c =
        strstr(page, "\nwarren_job_duration_seconds_count{handler=\"h\"} ");
    const char *s =
        strstr(page, "\nwarren_job_duration_seconds_sum{handler=\"h\"} ");
    if (c) count = atof(strchr(c + 1, ' ') + 1);
    if (s) sum = atof(strchr(s + 1, ' ') + 1);
  }
  cr_assert_eq(count, 1, "only the genuine job has a duration: %g", count);
  cr_assert(sum >= 0 && sum < 5, "duration sum %g s", sum);
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
  /* The refused jobs' lines say they failed, with no duration. */
  FILE *f = fopen(log_, "r");
  cr_assert(f);
  char line[4096];
  int refused = 0;
  while (fgets(line, sizeof line, f))
    if (strstr(line, "job finished") && strstr(line, "forged")) {
      refused++;
      cr_assert(!strstr(line, "duration_ms"), "a duration: %s", line);
    }
  fclose(f);
  cr_assert_eq(refused, 3, "the refused jobs' lines");
}

/* Count the lines of path that start with `what id ` and end with
 * attempt a (record.c's format: what id time pid attempt). */
static int runs_at(const char *path, const char *what, const char *id,
                   unsigned a) {
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  char line[512], w[32], i[64];
  long long t;
  int pid, n = 0;
  unsigned at;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "%31s %63s %lld %d %u", w, i, &t, &pid, &at) == 5 &&
        !strcmp(w, what) && !strcmp(i, id) && at == a)
      n++;
  fclose(f);
  return n;
}

/* A retry copy is countersigned with its warren-attempt and
 * warren-crashes: captured from its retry queue and published again with
 * its attempt lowered, it is refused; as it was, it runs as the attempt
 * it says (docs/signing.md). */
Test(sign, a_retry_copy_published_again_with_its_attempt_lowered_is_refused,
     .timeout = 120) {
  tw_delete_queue("it.sattempt.retry.60000ms");
  pid_t w = start("gw-a,warren", 300, "it.sattempt",
                  "retry = { max_attempts = 5; backoff = [60.0]; jitter = "
                  "0.0; };",
                  "fail_on = \"cap\";");
  publish("it.sattempt", "cap", (how){0});
  cr_assert(tw_wait_text(rec, "fail cap", 30), "the first attempt failed");
  const char *rq = "it.sattempt.retry.60000ms";
  for (int i = 0; i < 100 && tw_queue_len(rq) < 1; i++)
    nanosleep(&(struct timespec){0, 50 * 1000 * 1000}, NULL);
  amqp_connection_state_t c = tw_conn_confirming();
  cr_assert(c);
  amqp_rpc_reply_t r = amqp_basic_get(c, 1, amqp_cstring_bytes(rq), 1);
  cr_assert(r.reply_type == AMQP_RESPONSE_NORMAL &&
                r.reply.id == AMQP_BASIC_GET_OK_METHOD,
            "the retry copy is in %s", rq);
  amqp_message_t m;
  cr_assert_eq(amqp_read_message(c, 1, &m, 0).reply_type, AMQP_RESPONSE_NORMAL);
  amqp_basic_properties_t pr = m.properties;
  pr._flags &= ~AMQP_BASIC_EXPIRATION_FLAG;
  /* As captured: it runs as attempt 2. */
  cr_assert_eq(
      amqp_basic_publish(c, 1, amqp_cstring_bytes(""),
                         amqp_cstring_bytes("it.sattempt"), 1, 0, &pr, m.body),
      0);
  cr_assert(tw_wait_text(rec, "start cap", 30));
  double until = wr_now() + 30;
  while (runs_at(rec, "fail", "cap", 2) < 1 && wr_now() < until)
    nanosleep(&(struct timespec){0, 50 * 1000 * 1000}, NULL);
  cr_assert_eq(runs_at(rec, "fail", "cap", 2), 1);
  /* Its attempt lowered to 1: refused, never run. */
  int found = 0;
  for (int i = 0; i < pr.headers.num_entries; i++) {
    amqp_table_entry_t *e = &pr.headers.entries[i];
    if (e->key.len == 14 && !memcmp(e->key.bytes, "warren-attempt", 14)) {
      e->value.kind = AMQP_FIELD_KIND_I64;
      e->value.value.i64 = 1;
      found = 1;
    }
  }
  cr_assert(found, "the copy carries warren-attempt");
  cr_assert_eq(
      amqp_basic_publish(c, 1, amqp_cstring_bytes(""),
                         amqp_cstring_bytes("it.sattempt"), 1, 0, &pr, m.body),
      0);
  amqp_destroy_message(&m);
  wr_conn_close(c);
  one_dead_letter(w, "it.sattempt", "cap countersignature-bad-signature\n");
  cr_assert_eq(runs_at(rec, "fail", "cap", 1), 1, "attempt 1 ran once");
  tw_delete_queue(rq);
}

/* Warren signs a follow-up with its own key only for a job it verified:
 * a lax handler (require_signature = false) running an unsigned job makes
 * an unsigned follow-up, which a strict handler refuses as `missing`; the
 * follow-up of a signed job runs there. */
Test(sign, only_a_verified_jobs_follow_up_is_signed_with_warrens_key,
     .timeout = 120) {
  tw_key_file("gw-a", KEY_A);
  tw_key_file("warren", KEY_W);
  snprintf(log_, sizeof log_, "%s/warren.log", tw_dir());
  snprintf(rec, sizeof rec, "%s/rec", tw_dir());
  char text[4096];
  snprintf(text, sizeof text,
           "signing = { keys = ( { id = \"gw-a\"; file = \"%s/gw-a.key\"; },"
           " { id = \"warren\"; file = \"%s/warren.key\"; } );"
           " countersign_key = \"warren\"; window = 300; };\n"
           "handlers = ( { name = \"lax\"; queue = \"it.sfollow\";"
           " require_signature = false;"
           " plugin = \"" TEST_HANDLER_DIR
           "/record.so\";"
           " settings = { log = \"%s/rec\"; followup_queue = "
           "\"it.sfollow.strict\"; }; },\n"
           " { name = \"strict\"; queue = \"it.sfollow.strict\";"
           " plugin = \"" TEST_HANDLER_DIR
           "/record.so\";"
           " settings = { log = \"%s/strict\"; }; } );\n",
           tw_dir(), tw_dir(), tw_dir(), tw_dir());
  pid_t w = tw_warren_start(tw_dir(), text);
  cr_assert(tw_wait_text(log_, "consuming 2 queue(s)", 30), "not started");
  publish("it.sfollow", "plain", (how){.unsigned_job = 1});
  publish("it.sfollow", "signed", (how){0});
  char strict[300];
  snprintf(strict, sizeof strict, "%s/strict", tw_dir());
  cr_assert(tw_wait_text(rec, "end plain", 30));
  cr_assert(tw_wait_text(rec, "end signed", 30));
  wait_dead("it.sfollow.strict", 1);
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
  static char dump[65536];
  cr_assert_eq(tw_take_one("it.sfollow.strict.dlq", dump, sizeof dump), 1);
  cr_assert(strstr(dump, "body=next plain\n"), "%s", dump);
  cr_assert(strstr(dump, "h.warren-signature-check=missing\n"), "%s", dump);
  cr_assert(!strstr(dump, "h.warren-signature="), "signed: %s", dump);
  /* The signed job's follow-up ran on the strict handler. */
  FILE *f = fopen(strict, "r");
  cr_assert(f, "the strict handler ran nothing");
  char line[512];
  int ends = 0;
  while (fgets(line, sizeof line, f)) ends += !strncmp(line, "end ", 4);
  fclose(f);
  cr_assert_eq(ends, 1, "one follow-up ran on the strict handler");
}
