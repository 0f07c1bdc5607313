/*
 * The baseline: a plain rabbitmq-c consumer doing no work per message.
 *   raw_consumer PORT QUEUE N PREFETCH ACK_EVERY [WARMUP [LATFILE]]
 * ACK_EVERY 1 acks each delivery; k > 1 acks every k-th with multiple=true
 * (and the rest at the end). Prints "msgs seconds msg/s faults/job
 * cpu_us/job", timed from the first delivery to the last ack; the page
 * faults and CPU time are its own from the WARMUP-th delivery (default
 * N/10) to the end. With LATFILE, each delivery whose body starts with
 * "t=<unix ns>" has its pickup latency appended there as the bench
 * handler writes it ("<count> <first> <last> <latency ns>...").
 */
#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, amqp_rpc_reply_t r) {
  if (r.reply_type == AMQP_RESPONSE_NORMAL) return;
  fprintf(stderr, "raw_consumer: %s failed (%d)\n", what, r.reply_type);
  exit(1);
}

int main(int argc, char **argv) {
  if (argc < 6 || argc > 8) {
    fprintf(stderr,
            "usage: raw_consumer PORT QUEUE N PREFETCH ACK_EVERY "
            "[WARMUP [LATFILE]]\n");
    return 2;
  }
  int port = atoi(argv[1]);
  long n = atol(argv[3]);
  long warm = argc > 6 ? atol(argv[6]) : n / 10;
  const char *latfile = argc > 7 ? argv[7] : NULL;
  long long *lat = latfile ? malloc(sizeof *lat * (size_t)(n + 1)) : NULL;
  long nlat = 0;
  struct rusage r0 = {0}, r1;
  int prefetch = atoi(argv[4]), every = atoi(argv[5]);
  amqp_connection_state_t c = amqp_new_connection();
  amqp_socket_t *s = amqp_tcp_socket_new(c);
  if (amqp_socket_open(s, "127.0.0.1", port)) return 1;
  die("login", amqp_login(c, "/", 0, 131072, 30, AMQP_SASL_METHOD_PLAIN,
                          "guest", "guest"));
  amqp_channel_open(c, 1);
  die("channel.open", amqp_get_rpc_reply(c));
  amqp_basic_qos(c, 1, 0, (uint16_t)prefetch, 0);
  die("basic.qos", amqp_get_rpc_reply(c));
  amqp_basic_consume(c, 1, amqp_cstring_bytes(argv[2]), amqp_empty_bytes, 0, 0,
                     0, amqp_empty_table);
  die("basic.consume", amqp_get_rpc_reply(c));
  double t0 = 0;
  uint64_t last = 0;
  for (long i = 1; i <= n; i++) {
    amqp_envelope_t e;
    amqp_maybe_release_buffers(c);
    amqp_rpc_reply_t r = amqp_consume_message(c, &e, NULL, 0);
    die("consume", r);
    if (i == 1) t0 = now();
    if (i == warm) getrusage(RUSAGE_SELF, &r0);
    if (lat && e.message.body.len > 2 &&
        memcmp(e.message.body.bytes, "t=", 2) == 0) {
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      lat[nlat++] = (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec -
                    atoll((const char *)e.message.body.bytes + 2);
    }
    last = e.delivery_tag;
    if (every <= 1)
      amqp_basic_ack(c, 1, e.delivery_tag, 0);
    else if (i % every == 0)
      amqp_basic_ack(c, 1, e.delivery_tag, 1);
    amqp_destroy_envelope(&e);
  }
  if (every > 1 && n % every) amqp_basic_ack(c, 1, last, 1);
  /* A round trip, so every ack has reached the broker before the clock stops.
   */
  amqp_basic_qos(c, 1, 0, (uint16_t)prefetch, 0);
  die("final qos", amqp_get_rpc_reply(c));
  double dt = now() - t0;
  getrusage(RUSAGE_SELF, &r1);
  long jobs = n - (warm > 0 ? warm : 0);
  double cpu = (double)(r1.ru_utime.tv_sec - r0.ru_utime.tv_sec) +
               (double)(r1.ru_stime.tv_sec - r0.ru_stime.tv_sec) +
               (double)(r1.ru_utime.tv_usec - r0.ru_utime.tv_usec +
                        r1.ru_stime.tv_usec - r0.ru_stime.tv_usec) /
                   1e6;
  /* bench/run's columns: jobs, seconds, msg/s, faults, CPU us and
   * context switches per job */
  printf("%ld %.3f %.0f %.2f %.1f %.2f\n", n, dt, (double)n / dt,
         jobs > 0 ? (double)(r1.ru_minflt - r0.ru_minflt) / (double)jobs : 0,
         jobs > 0 ? cpu * 1e6 / (double)jobs : 0,
         jobs > 0 ? (double)(r1.ru_nvcsw - r0.ru_nvcsw + r1.ru_nivcsw -
                             r0.ru_nivcsw) /
                        (double)jobs
                  : 0);
  if (lat) {
    FILE *f = fopen(latfile, "a");
    if (f) {
      fprintf(f, "%ld 0 0", nlat);
      for (long i = 0; i < nlat; i++) fprintf(f, " %lld", lat[i]);
      fprintf(f, "\n");
      fclose(f);
    }
    free(lat);
  }
  amqp_connection_close(c, AMQP_REPLY_SUCCESS);
  amqp_destroy_connection(c);
  return 0;
}
