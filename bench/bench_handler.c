/*
 * bench: a handler that does no work and measures. Per worker process it
 * keeps, in memory, the job count, the first and last job's start time and
 * (when the body starts with a publish timestamp "t=<unix ns>") each
 * job's pickup latency; at shutdown it appends one line to settings.out:
 *   <count> <first ns> <last ns> <latency ns>...
 * (monotonic for first/last; wall-clock difference for latencies).
 * settings.mark (n) and settings.mark_file: the n-th job creates that
 * file, so the bench can read the processes' counters after a warm-up.
 * settings.work_us: each job sleeps that long (a job that takes time,
 * without taking the CPU the broker and the supervisor share).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <warren/handler.h>

#define MAX_LAT 200000

typedef struct bench {
  const char *out, *mark_file;
  long mark;
  long work_us;
  long count;
  long long first, last;
  long long *lat;
  long nlat;
} bench;

static long long ns(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int b_init(const warren_api *api, const warren_settings *s,
                  void **state) {
  warren_value v;
  bench *b = calloc(1, sizeof *b);
  if (!b || api->setting_get(s, "out", &v) != 0) return -1;
  b->out = v.str;
  if (api->setting_get(s, "mark", &v) == 0) b->mark = (long)v.i;
  if (api->setting_get(s, "mark_file", &v) == 0) b->mark_file = v.str;
  if (api->setting_get(s, "work_us", &v) == 0) b->work_us = (long)v.i;
  b->lat = malloc(sizeof *b->lat * MAX_LAT);
  *state = b;
  return b->lat ? 0 : -1;
}

static warren_result b_handle(void *state, const warren_message *m) {
  bench *b = state;
  long long t = ns(CLOCK_MONOTONIC);
  if (!b->count++) b->first = t;
  if (b->count == b->mark && b->mark_file) {
    FILE *f = fopen(b->mark_file, "w");
    if (f) fclose(f);
  }
  b->last = t;
  if (m->body_len > 2 && memcmp(m->body, "t=", 2) == 0 && b->nlat < MAX_LAT)
    b->lat[b->nlat++] = ns(CLOCK_REALTIME) - atoll((const char *)m->body + 2);
  if (b->work_us > 0)
    nanosleep(
        &(struct timespec){b->work_us / 1000000, b->work_us % 1000000 * 1000},
        NULL);
  return WARREN_ACK;
}

static void b_shutdown(void *state) {
  bench *b = state;
  FILE *f = fopen(b->out, "a");
  if (f) {
    fprintf(f, "%ld %lld %lld", b->count, b->first, b->last);
    for (long i = 0; i < b->nlat; i++) fprintf(f, " %lld", b->lat[i]);
    fprintf(f, "\n");
    fclose(f);
  }
  free(b->lat);
  free(b);
}

WARREN_HANDLER_DEFINE("bench", b_init, b_handle, b_shutdown);
