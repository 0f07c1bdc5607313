#include "health.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"

#define STALL_MS 10000
#define MAX_CONNECTIONS 1000u /* about 16 MiB at CONN_MEMORY each */
#define CONN_MEMORY (16 * 1024)
#define IDLE_S 2u

struct wr_health {
  struct MHD_Daemon *d;
  wr_health_state *st;
};

static enum MHD_Result reply(struct MHD_Connection *c, unsigned code,
                             const char *body) {
  struct MHD_Response *r = MHD_create_response_from_buffer(
      strlen(body), (void *)body, MHD_RESPMEM_PERSISTENT);
  if (!r) return MHD_NO;
  MHD_add_response_header(r, "Content-Type", "text/plain");
  enum MHD_Result ret = MHD_queue_response(c, code, r);
  MHD_destroy_response(r);
  return ret;
}

static enum MHD_Result serve(void *cls, struct MHD_Connection *c,
                             const char *url, const char *method,
                             const char *version, const char *data,
                             size_t *data_size, void **req) {
  (void)version, (void)data, (void)data_size, (void)req;
  wr_health *h = cls;
  if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
    return reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, "GET only\n");
  if (strcmp(url, "/healthz") == 0) {
    long long idle = wr_now_ms() - atomic_load(&h->st->tick_ms);
    return idle < STALL_MS
               ? reply(c, MHD_HTTP_OK, "ok\n")
               : reply(c, MHD_HTTP_SERVICE_UNAVAILABLE, "event loop stalled\n");
  }
  if (strcmp(url, "/readyz") == 0)
    return atomic_load(&h->st->ready)
               ? reply(c, MHD_HTTP_OK, "ready\n")
               : reply(c, MHD_HTTP_SERVICE_UNAVAILABLE,
                       "not ready: broker unreachable, consumers not "
                       "registered, or draining\n");
  return reply(c, MHD_HTTP_NOT_FOUND, "not found\n");
}

wr_health *wr_health_start(const char *listen, int port, wr_health_state *st,
                           char *err, size_t errlen) {
  struct sockaddr_in sa = {.sin_family = AF_INET,
                           .sin_port = htons((uint16_t)port)};
  if (inet_pton(AF_INET, listen, &sa.sin_addr) != 1) {
    snprintf(err, errlen, "health.listen '%s' is not an IPv4 address", listen);
    return NULL;
  }
  wr_health *h = calloc(1, sizeof *h);
  if (!h) return NULL;
  h->st = st;
  /* Probes must answer while clients abuse the port: epoll (no select()
   * limit), room for many connections at a few KiB each, and an idle
   * client is dropped after IDLE_S, so trickling clients cannot hold the
   * slots for long. */
  h->d = MHD_start_daemon(
      MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ERROR_LOG, (uint16_t)port, NULL,
      NULL, serve, h, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
      MHD_OPTION_CONNECTION_LIMIT, MAX_CONNECTIONS,
      MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONN_MEMORY,
      MHD_OPTION_CONNECTION_TIMEOUT, IDLE_S, MHD_OPTION_END);
  if (!h->d) {
    snprintf(err, errlen, "cannot serve health endpoints on %s:%d", listen,
             port);
    free(h);
    return NULL;
  }
  return h;
}

void wr_health_stop(wr_health *h) {
  if (!h) return;
  MHD_stop_daemon(h->d);
  free(h);
}
