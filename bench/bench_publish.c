/*
 * Load for the benchmarks, through libwarren (publisher confirms).
 *   bench_publish PORT QUEUE N SIZE [RATE]
 *   bench_publish PORT QUEUE --wait-empty   (until no job is ready; 120 s)
 * N persistent jobs of SIZE bytes to QUEUE via the default exchange. With
 * RATE > 0 they are paced at RATE/s and each body starts "t=<unix ns> "
 * (the publish time, for pickup latency). With BENCH_KEY_FILE set, every
 * job is signed with that key under key id "bench" (warren/sign.h). With
 * BENCH_TENANT set, every job carries a header "tenant" with its value
 * (bench/run tenants).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <amqp.h>
#include <amqp_tcp_socket.h>

#include <warren/producer.h>

/* Poll the queue's ready count (passive declare) until it is 0. */
static int wait_empty(int port, const char *queue) {
  amqp_connection_state_t c = amqp_new_connection();
  amqp_socket_t *s = amqp_tcp_socket_new(c);
  if (amqp_socket_open(s, "127.0.0.1", port)) return 1;
  if (amqp_login(c, "/", 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, "guest", "guest")
          .reply_type != AMQP_RESPONSE_NORMAL)
    return 1;
  amqp_channel_open(c, 1);
  for (int i = 0; i < 12000; i++) {
    amqp_queue_declare_ok_t *ok = amqp_queue_declare(
        c, 1, amqp_cstring_bytes(queue), 1, 0, 0, 0, amqp_empty_table);
    if (!ok) return 1;
    if (ok->message_count == 0) break;
    amqp_maybe_release_buffers(c);
    nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
  }
  amqp_connection_close(c, AMQP_REPLY_SUCCESS);
  amqp_destroy_connection(c);
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 4 && !strcmp(argv[3], "--wait-empty"))
    return wait_empty(atoi(argv[1]), argv[2]);
  if (argc < 5) {
    fprintf(stderr, "usage: bench_publish PORT QUEUE N SIZE [RATE]\n");
    return 2;
  }
  warren_producer_opts o = {.size = sizeof o, .port = atoi(argv[1])};
  static char key[1100];
  const char *kf = getenv("BENCH_KEY_FILE");
  if (kf && *kf) {
    FILE *f = fopen(kf, "r");
    size_t n = f ? fread(key, 1, sizeof key - 1, f) : 0;
    if (f) fclose(f);
    while (n && key[n - 1] == '\n') n--;
    o.sign_key_id = "bench";
    o.sign_key = key;
    o.sign_key_len = n;
  }
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
  const char *tenant = getenv("BENCH_TENANT");
  warren_header_kv kv = {"tenant", tenant};
  warren_publish_opts po = {.size = sizeof po,
                            .headers = &kv,
                            .n_headers = tenant && *tenant ? 1 : 0};
  for (long i = 0; i < n && rc == 0; i++) {
    if (rate > 0) {
      double due = (double)i / rate;
      struct timespec ts;
      for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &ts);
        double el = (double)(ts.tv_sec - t0.tv_sec) +
                    (double)(ts.tv_nsec - t0.tv_nsec) / 1e9;
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
    rc = warren_producer_publish(p, "", argv[2], body, size,
                                 po.n_headers ? &po : NULL);
  }
  if (rc == 0) rc = warren_producer_flush(p, 60000);
  warren_producer_close(p);
  free(body);
  if (rc) fprintf(stderr, "bench_publish: %s\n", warren_strerror(rc));
  return rc ? 1 : 0;
}
