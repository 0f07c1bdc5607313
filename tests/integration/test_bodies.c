/* Job bodies of every size reach handlers intact: small ones through the
 * worker's socket, large ones in place in the handler's shared region
 * (framework/arena.h), also after a retry republished them from there,
 * and in process; the region is given back once the handler is idle. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <warren/status.h>

#include "conn.h"
#include "support.h"

TW_SUITE(bodies, 240);

/* Around a page, WR_ARENA_MIN_BODY (8 KiB), a frame (128 KiB), several. */
static const size_t sizes[] = {
    0,     1,      4096,   4097,    8191,          8192,         8193,
    65536, 131072, 131073, 1 << 20, (3 << 20) + 5, (8 << 20) + 3};
#define NSIZES (sizeof sizes / sizeof *sizes)

static unsigned char byte_at(size_t k, size_t i) {
  return (unsigned char)(((i * 2654435761u) >> 13) ^ (k * 97));
}

static uint64_t fnv(size_t k, size_t len) {
  uint64_t h = 14695981039346656037ull;
  for (size_t i = 0; i < len; i++) h = (h ^ byte_at(k, i)) * 1099511628211ull;
  return h;
}

/* Job "b<k+1>" carries sizes[k % NSIZES] bytes of pattern k, `copies`
 * rounds of every size. Confirmed; 0 on success. */
static int publish_bodies(const char *queue, int copies) {
  amqp_connection_state_t c = tw_conn_confirming();
  if (!c) return -1;
  int rc = WARREN_OK;
  wr_confirms cf;
  wr_confirms_init(&cf);
  unsigned char *body = malloc(sizes[NSIZES - 1]);
  if (!body) rc = WARREN_NOMEM;
  for (size_t k = 0; rc == WARREN_OK && k < NSIZES * (size_t)copies; k++) {
    size_t len = sizes[k % NSIZES];
    for (size_t i = 0; i < len; i++) body[i] = byte_at(k, i);
    char id[32];
    snprintf(id, sizeof id, "b%zu", k + 1);
    amqp_basic_properties_t p = {0};
    p._flags = AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_MESSAGE_ID_FLAG;
    p.delivery_mode = 2;
    p.message_id = amqp_cstring_bytes(id);
    rc = amqp_basic_publish(c, 1, amqp_cstring_bytes(""),
                            amqp_cstring_bytes(queue), 1, 0, &p,
                            (amqp_bytes_t){len, body}) == AMQP_STATUS_OK
             ? WARREN_OK
             : WARREN_BROKER_CLOSED;
    if (rc == WARREN_OK) wr_confirms_sent(&cf);
  }
  if (rc == WARREN_OK) rc = wr_confirms_wait(c, &cf, 30000);
  free(body);
  wr_conn_close(c);
  return rc;
}

/* Every "body" line of rec names a job b1..bn with the length and digest
 * it was published with. Returns how many lines each job has (counts[k]
 * for job b<k+1>; the caller frees it). */
static unsigned *check_digests(const char *rec, size_t n) {
  unsigned *seen = calloc(n, sizeof *seen);
  FILE *f = fopen(rec, "r");
  cr_assert(f && seen);
  char line[512];
  while (fgets(line, sizeof line, f)) {
    size_t k, len;
    unsigned attempt;
    unsigned long long h;
    if (sscanf(line, "body b%zu %u %zu %llx", &k, &attempt, &len, &h) != 4)
      continue;
    cr_assert(k >= 1 && k <= n, "%s", line);
    k--;
    cr_assert_eq(len, sizes[k % NSIZES], "job b%zu attempt %u: length", k + 1,
                 attempt);
    cr_assert_eq(h, fnv(k, len), "job b%zu (%zu bytes) attempt %u: digest",
                 k + 1, len, attempt);
    seen[k]++;
  }
  fclose(f);
  return seen;
}

static void expect_runs(const unsigned *seen, size_t from, size_t to,
                        unsigned runs) {
  for (size_t k = from; k < to; k++)
    cr_assert_eq(seen[k], runs, "job b%zu ran %u time(s), not %u", k + 1,
                 seen[k], runs);
}

static void run_sizes(const char *q, const char *extra) {
  char log[300], rec[300];
  pid_t w =
      tw_start_record(q, extra, "digest = true; fail_below = 2;", log, rec);
  cr_assert_gt(w, 0, "worker did not start");
  enum { COPIES = 3 };
  cr_assert_eq(publish_bodies(q, COPIES), 0);
  /* Each job fails its first attempt: the second reads the retry copy,
   * which Warren republished from the body it held. */
  int want = (int)(NSIZES * COPIES);
  cr_assert_geq(tw_wait_count(rec, "end", "b", want, want, 120), want,
                "every job finished");
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
  unsigned *seen = check_digests(rec, NSIZES * COPIES);
  expect_runs(seen, 0, NSIZES * COPIES, 2);
  free(seen);
}

Test(bodies, every_size_reaches_workers_intact_also_after_a_retry) {
  run_sizes("it.bodies",
            "prefetch = 8; concurrency = 2; "
            "retry = { backoff = [0.05]; max_attempts = 3; };");
}

Test(bodies, every_size_reaches_an_in_process_handler_intact) {
  run_sizes("it.bodies.inproc",
            "prefetch = 8; isolation = false; "
            "retry = { backoff = [0.05]; max_attempts = 3; };");
}

/* Size of the supervisor's region for handler h (its memfd), or -1. */
static long long region_size(pid_t pid) {
  char dir[64], path[400], target[400];
  snprintf(dir, sizeof dir, "/proc/%d/fd", (int)pid);
  DIR *d = opendir(dir);
  if (!d) return -1;
  long long size = -1;
  for (struct dirent *e; (e = readdir(d));) {
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    ssize_t n = readlink(path, target, sizeof target - 1);
    if (n <= 0) continue;
    target[n] = '\0';
    struct stat st;
    if (strstr(target, "memfd:warren-h") && stat(path, &st) == 0)
      size = (long long)st.st_size;
  }
  closedir(d);
  return size;
}

/* A burst of large jobs grows the region; once the handler has held no
 * body for a few seconds it is given back to the system. */
Test(bodies, the_region_is_given_back_when_idle) {
  char log[300], rec[300];
  /* All of them in hand at once: the region passes WR_ARENA_KEEP. */
  pid_t w = tw_start_record("it.bodies.idle", "prefetch = 30; concurrency = 1;",
                            "digest = true; sleep_ms = 50;", log, rec);
  cr_assert_gt(w, 0, "worker did not start");
  cr_assert_eq(publish_bodies("it.bodies.idle", 2), 0);
  int n = (int)(NSIZES * 2);
  cr_assert_geq(tw_wait_count(rec, "end", "b", n, n, 120), n);
  long long grown = region_size(w);
  cr_assert_gt(grown, 16ll << 20, "26 jobs of up to 8 MiB in hand: %lld",
               grown);
  long long now = grown;
  for (int i = 0; i < 300 && now != 0; i++) {
    usleep(50000);
    now = region_size(w);
  }
  cr_assert_eq(now, 0, "given back after idling (was %lld bytes)", grown);
  /* and it grows again for the next jobs */
  cr_assert_eq(publish_bodies("it.bodies.idle", 1), 0);
  cr_assert_geq(tw_wait_count(rec, "end", "b", n, n + (int)NSIZES, 120),
                n + (int)NSIZES);
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
  unsigned *seen = check_digests(rec, NSIZES * 2);
  expect_runs(seen, 0, NSIZES, 2); /* in both bursts */
  expect_runs(seen, NSIZES, NSIZES * 2, 1);
  free(seen);
}

/* The body a worker reads in place is read-only there: a handler that
 * writes to it (the ABI forbids it) crashes, and the retry carries the
 * body as it was published. Attempt 1 runs in a worker that mapped the
 * region itself, attempt 2 in its replacement, which inherited the
 * region's mapping at fork: both must crash; attempt 3 writes nothing. */
Test(bodies, a_handler_writing_to_its_body_crashes_and_the_retry_is_intact) {
  char log[300], rec[300];
  /* b9 is 131072 bytes: it lies in the shared region */
  pid_t w = tw_start_record("it.bodies.scribble",
                            "retry = { backoff = [0.05]; max_crashes = 3; };",
                            "digest = true; scribble_on = \"b9\";", log, rec);
  cr_assert_gt(w, 0, "worker did not start");
  cr_assert_eq(publish_bodies("it.bodies.scribble", 1), 0);
  int n = (int)NSIZES;
  cr_assert_geq(tw_wait_count(rec, "end", "b", n, n, 60), n);
  /* (killed by SIGSEGV; under AddressSanitizer, exited with status 1) */
  cr_assert(tw_wait_text(log, "job b9 attempt 1 failed (worker", 5),
            "b9's first attempt crashed");
  cr_assert(tw_wait_text(log, "job b9 attempt 2 failed (worker", 5),
            "and its second, in a worker forked since");
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
  unsigned *seen = check_digests(rec, NSIZES);
  expect_runs(seen, 8, 9, 3);
  expect_runs(seen, 0, 8, 1);
  expect_runs(seen, 9, NSIZES, 1);
  free(seen);
}
