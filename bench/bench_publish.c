/*
 * Load for the benchmarks, through libwarren (publisher confirms).
 *   bench_publish PORT QUEUE N SIZE [RATE]
 * N persistent jobs of SIZE bytes to QUEUE via the default exchange. With
 * RATE > 0 they are paced at RATE/s and each body starts "t=<unix ns> "
 * (the publish time, for pickup latency).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <warren/producer.h>

int main(int argc, char **argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: bench_publish PORT QUEUE N SIZE [RATE]\n");
    return 2;
  }
  warren_producer_opts o = {.size = sizeof o, .port = atoi(argv[1])};
  long n = atol(argv[3]);
  size_t size = (size_t)atol(argv[4]);
  double rate = argc > 5 ? atof(argv[5]) : 0;
  char *body = malloc(size + 64);
  memset(body, 'x', size + 64);
  warren_producer *p;
  if (warren_producer_open(&o, &p) != 0) return 1;
  struct timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  int rc = 0;
  for (long i = 0; i < n && rc == 0; i++) {
    if (rate > 0) {
      double due = (double)i / rate;
      struct timespec ts;
      for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &ts);
        double el = (double)(ts.tv_sec - t0.tv_sec) + (double)(ts.tv_nsec - t0.tv_nsec) / 1e9;
        if (el >= due) break;
        double w = due - el;
        struct timespec d = {0, (long)(w * 1e9)};
        nanosleep(&d, NULL);
      }
      clock_gettime(CLOCK_REALTIME, &ts);
      int k = snprintf(body, size + 64, "t=%lld ",
                       (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec);
      body[k] = 'x';
    }
    rc = warren_producer_publish(p, "", argv[2], body, size, NULL);
  }
  if (rc == 0) rc = warren_producer_flush(p, 60000);
  warren_producer_close(p);
  free(body);
  if (rc) fprintf(stderr, "bench_publish: %s\n", warren_strerror(rc));
  return rc ? 1 : 0;
}
