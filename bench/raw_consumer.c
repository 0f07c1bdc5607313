/*
 * The baseline: a plain rabbitmq-c consumer doing no work per message.
 *   raw_consumer PORT QUEUE N PREFETCH ACK_EVERY
 * ACK_EVERY 1 acks each delivery; k > 1 acks every k-th with multiple=true
 * (and the rest at the end). Prints "msgs seconds msg/s", timed from the
 * first delivery to the last ack.
 */
#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <stdio.h>
#include <stdlib.h>
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
  if (argc != 6) {
    fprintf(stderr, "usage: raw_consumer PORT QUEUE N PREFETCH ACK_EVERY\n");
    return 2;
  }
  int port = atoi(argv[1]);
  long n = atol(argv[3]);
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
  printf("%ld %.3f %.0f\n", n, dt, (double)n / dt);
  amqp_connection_close(c, AMQP_REPLY_SUCCESS);
  amqp_destroy_connection(c);
  return 0;
}
