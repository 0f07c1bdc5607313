#include "health.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <microhttpd.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>

#include "../config/cfg.h"
#include "addr.h"
#include "clock.h"
#include "dashboard.h"
#include "live.h"
#include "prom.h"
#include "report.h"

#define STALL_MS 10000
#define MAX_CONNECTIONS 1000u /* about 16 MiB at CONN_MEMORY each */
#define CONN_MEMORY (16 * 1024)
#define IDLE_S 2u
#define REQUEST_S 10.0     /* a request's whole time, from its first byte */
#define STREAM_STALL_S 10u /* an event stream whose client takes no byte */

/* One connection, from libmicrohttpd's thread only (its notify and
 * completed callbacks): when it began waiting for its current request,
 * its address, its socket. */
typedef struct conn_rec {
  int used;
  int closing; /* shut down by us; libmicrohttpd closes it next */
  int stream;  /* an event stream: its request never completes */
  int fd;
  double since;
  struct sockaddr_storage addr;
} conn_rec;

struct wr_health {
  struct MHD_Daemon *d;
  wr_health_state *st;
  wr_snap_store *snaps;
  const char *token; /* NULL: no admin route */
  wr_live *live;     /* NULL: no /api/events */
  const wr_cfg *cfg; /* NULL: no filter by handler, no dashboard */
  conn_rec *conns;   /* limit of them */
  unsigned limit;    /* libmicrohttpd's connection limit */
  unsigned keep;     /* connections allowed before the oldest is shut */
  unsigned per_addr; /* connections of one client address */
};

/* Send body (malloc'd, owned from here on; NULL: out of memory). */
static enum MHD_Result reply(struct MHD_Connection *c, unsigned code,
                             const char *type, char *body, size_t len) {
  if (!body) {
    static const char oom[] = "{\"error\":\"out of memory\"}";
    struct MHD_Response *r = MHD_create_response_from_buffer(
        sizeof oom - 1, (void *)oom, MHD_RESPMEM_PERSISTENT);
    if (!r) return MHD_NO;
    enum MHD_Result ret = MHD_queue_response(c, 500, r);
    MHD_destroy_response(r);
    return ret;
  }
  struct MHD_Response *r =
      MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
  if (!r) {
    free(body);
    return MHD_NO;
  }
  MHD_add_response_header(r, "Content-Type", type);
  MHD_add_response_header(r, "Cache-Control", "no-store");
  if (code == MHD_HTTP_METHOD_NOT_ALLOWED)
    MHD_add_response_header(r, "Allow", "GET, HEAD");
  if (code == MHD_HTTP_SERVICE_UNAVAILABLE)
    MHD_add_response_header(r, "Retry-After", "5");
  if (code == MHD_HTTP_UNAUTHORIZED)
    MHD_add_response_header(r, "WWW-Authenticate", "Bearer");
  enum MHD_Result ret = MHD_queue_response(c, code, r);
  MHD_destroy_response(r);
  return ret;
}

static enum MHD_Result json(struct MHD_Connection *c, unsigned code,
                            char *body) {
  return reply(c, code, "application/json", body, body ? strlen(body) : 0);
}

/* Equal, in a time that depends on neither the contents nor the
 * lengths: the SHA-256 digests of both are compared in constant time. */
static int same_secret(const char *given, size_t glen, const char *want) {
  unsigned char g[SHA256_DIGEST_LENGTH], w[SHA256_DIGEST_LENGTH];
  size_t wlen = strlen(want);
  if (!SHA256((const unsigned char *)given, glen, g) ||
      !SHA256((const unsigned char *)want, wlen, w))
    return 0;
  return CRYPTO_memcmp(g, w, sizeof g) == 0 && glen == wlen;
}

int wr_health_bearer_ok(const char *header, size_t len, const char *token) {
  /* RFC 9110: the scheme is case-insensitive, followed by one or more
   * spaces; the token is the rest (a NUL in it is no token). */
  if (!header || len < 7 || strncasecmp(header, "Bearer ", 7) != 0) return 0;
  size_t i = 7;
  while (i < len && header[i] == ' ') i++;
  if (i == len || memchr(header + i, '\0', len - i)) return 0;
  return same_secret(header + i, len - i, token);
}

static int authorized(struct MHD_Connection *c, const char *token) {
  const char *a = NULL;
  size_t len = 0;
  if (MHD_lookup_connection_value_n(c, MHD_HEADER_KIND, "Authorization", 13, &a,
                                    &len) != MHD_YES)
    return 0;
  return wr_health_bearer_ok(a, len, token);
}

enum route {
  R_ALIVE,
  R_READY,
  R_HEALTH,
  R_WORKERS,
  R_QUEUES,
  R_ADMIN,
  R_METRICS,
  R_EVENTS,
  R_DASHBOARD
};

static const struct {
  const char *path;
  enum route r;
} routes[] = {
    {"/healthz", R_ALIVE},
    {"/readyz", R_READY},
    {"/api/health/ready", R_READY},
    {"/api/health", R_HEALTH},
    {"/status/workers", R_WORKERS},
    {"/api/v1/tasks/queues", R_QUEUES},
    {"/api/admin/workers/status", R_ADMIN},
    {"/metrics", R_METRICS},
    {"/api/events", R_EVENTS},
    {"/dashboard", R_DASHBOARD},
    {"/", R_DASHBOARD},
};

static enum MHD_Result answer(wr_health *h, struct MHD_Connection *c,
                              enum route r) {
  if (r == R_ALIVE) {
    double idle = (double)(wr_now_ms() - atomic_load(&h->st->tick_ms)) / 1000.0;
    int alive = idle * 1000 < STALL_MS;
    return json(c, alive ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE,
                wr_report_alive(alive, idle));
  }
  if (r == R_ADMIN && !authorized(c, h->token))
    return json(c, MHD_HTTP_UNAUTHORIZED,
                wr_report_error("a valid bearer token is required"));
  wr_snap *s = h->snaps ? wr_snap_acquire(h->snaps) : NULL;
  enum MHD_Result ret;
  if (r == R_READY) {
    /* The atomics are fresher than the snapshot; its text says more. */
    int why = atomic_load(&h->st->ready) ? WR_READY : atomic_load(&h->st->why);
    if (why == WR_READY && !atomic_load(&h->st->ready)) why = WR_NR_BROKER;
    ret = json(c, why == WR_READY ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE,
               wr_report_ready(why, s));
  } else if (!s) {
    ret = json(c, MHD_HTTP_SERVICE_UNAVAILABLE,
               wr_report_error("starting: no status yet"));
  } else if (r == R_HEALTH) {
    ret = json(c, s->ready ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE,
               wr_report_health(s));
  } else if (r == R_WORKERS) {
    ret = json(c, MHD_HTTP_OK, wr_report_workers(s));
  } else if (r == R_QUEUES) {
    ret = json(c, MHD_HTTP_OK, wr_report_queues(s));
  } else if (r == R_ADMIN) {
    ret = json(c, MHD_HTTP_OK, wr_report_admin(s));
  } else {
    size_t len = 0;
    char *page = wr_prom_render(s, &len);
    ret = reply(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8",
                page, len);
  }
  wr_snap_release(h->snaps, s);
  return ret;
}

/* ---- GET /api/events ---------------------------------------------------
 *
 * A stream is a response of unknown length whose reader takes bytes from
 * the client's buffer in the hub (live.h). When the buffer is empty, the
 * reader suspends the connection (under the hub's mutex) and the events'
 * sender resumes it when it put more there: no thread waits for a client,
 * and a client that reads nothing only fills its own bounded buffer, then
 * is dropped. A suspended connection is not timed out by libmicrohttpd;
 * the hub's keep-alive comments wake it, so one whose client left is
 * found within health.events_stream_keepalive. */
typedef struct stream {
  struct MHD_Connection *c;
  wr_live_client *lc;
} stream;

static void stream_park(void *arg) {
  MHD_suspend_connection(((stream *)arg)->c);
}

static void stream_wake(void *arg) {
  MHD_resume_connection(((stream *)arg)->c);
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
  (void)pos;
  ssize_t n = wr_live_read(((stream *)cls)->lc, buf, max);
  return n < 0 ? (ssize_t)MHD_CONTENT_READER_END_OF_STREAM : n;
}

static void stream_free(void *cls) {
  stream *st = cls;
  wr_live_leave(st->lc);
  free(st);
}

/* The query of /api/events: handler=NAME and job=ID, each at most once;
 * anything else is refused. */
typedef struct query {
  const wr_cfg *cfg;
  wr_live_filter f;
  int seen_handler;
  const char *why; /* NULL: valid */
  char text[160];
} query;

static enum MHD_Result query_arg(void *cls, enum MHD_ValueKind kind,
                                 const char *key, size_t klen,
                                 const char *value, size_t vlen) {
  (void)kind;
  query *q = cls;
  if (!value) value = "";
  if (klen == 7 && !memcmp(key, "handler", 7)) {
    if (q->seen_handler) {
      q->why = "handler given twice";
      return MHD_NO;
    }
    q->seen_handler = 1;
    for (size_t i = 0; q->cfg && i < q->cfg->n_handlers; i++) {
      const char *n = q->cfg->handlers[i].name;
      if (strlen(n) == vlen && !memcmp(n, value, vlen)) {
        q->f.handler = (long)i;
        return MHD_YES;
      }
    }
    q->why = "handler: no handler of that name";
    return MHD_NO;
  }
  if (klen == 3 && !memcmp(key, "job", 3)) {
    if (q->f.has_job) {
      q->why = "job given twice";
      return MHD_NO;
    }
    if (wr_live_valid_job(value, vlen, &q->why) != 0) return MHD_NO;
    memcpy(q->f.job, value, vlen);
    q->f.job_len = vlen;
    q->f.has_job = 1;
    return MHD_YES;
  }
  q->why = "unknown parameter: the filters are handler and job";
  return MHD_NO;
}

static enum MHD_Result events(wr_health *h, struct MHD_Connection *c) {
  if (h->token && !authorized(c, h->token))
    return json(c, MHD_HTTP_UNAUTHORIZED,
                wr_report_error("a valid bearer token is required"));
  query q = {.cfg = h->cfg, .f = {.handler = -1}};
  MHD_get_connection_values_n(c, MHD_GET_ARGUMENT_KIND, query_arg, &q);
  if (q.why) return json(c, MHD_HTTP_BAD_REQUEST, wr_report_error(q.why));
  stream *st = calloc(1, sizeof *st);
  if (!st) return json(c, MHD_HTTP_INTERNAL_SERVER_ERROR, NULL);
  st->c = c;
  int rc = wr_live_join(h->live, &q.f, stream_park, stream_wake, st, &st->lc);
  if (rc != 0) {
    free(st);
    return json(c, MHD_HTTP_SERVICE_UNAVAILABLE,
                wr_report_error(rc == -1 ? "too many event streams "
                                           "(health.events_stream_clients)"
                                         : "stopping"));
  }
  struct MHD_Response *r = MHD_create_response_from_callback(
      MHD_SIZE_UNKNOWN, 4096, stream_read, st, stream_free);
  if (!r) {
    stream_free(st);
    return MHD_NO;
  }
  MHD_add_response_header(r, "Content-Type", "text/event-stream");
  MHD_add_response_header(r, "Cache-Control", "no-store");
  MHD_add_response_header(r, "X-Accel-Buffering", "no"); /* nginx */
  /* Out of the slow-request rule (its request never completes), and
   * closed when its client takes no byte for STREAM_STALL_S. */
  const union MHD_ConnectionInfo *i =
      MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
  conn_rec *cr = i ? i->socket_context : NULL;
  if (cr) cr->stream = 1;
  MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, STREAM_STALL_S);
  enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_OK, r);
  MHD_destroy_response(r);
  return ret;
}

/* The page: static, built in; the data it shows comes from the routes
 * above, read by its script, so it holds no secret. */
static enum MHD_Result dashboard(struct MHD_Connection *c) {
  struct MHD_Response *r = MHD_create_response_from_buffer(
      wr_dashboard_html_len, (void *)wr_dashboard_html, MHD_RESPMEM_PERSISTENT);
  if (!r) return MHD_NO;
  MHD_add_response_header(r, "Content-Type", "text/html; charset=utf-8");
  MHD_add_response_header(r, "Cache-Control", "no-store");
  MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
  MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
  /* Its script and style are inline; nothing is loaded from elsewhere. */
  MHD_add_response_header(r, "Content-Security-Policy",
                          "default-src 'none'; script-src 'unsafe-inline'; "
                          "style-src 'unsafe-inline'; connect-src 'self'; "
                          "frame-ancestors 'none'; base-uri 'none'; "
                          "form-action 'none'");
  enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_OK, r);
  MHD_destroy_response(r);
  return ret;
}

static enum MHD_Result serve(void *cls, struct MHD_Connection *c,
                             const char *url, const char *method,
                             const char *version, const char *data,
                             size_t *data_size, void **req) {
  (void)version, (void)data, (void)data_size, (void)req;
  wr_health *h = cls;
  for (size_t i = 0; i < sizeof routes / sizeof *routes; i++) {
    if (strcmp(url, routes[i].path) != 0) continue;
    /* No token file: the admin route does not exist at all. */
    if (routes[i].r == R_ADMIN && !h->token) break;
    if (routes[i].r == R_EVENTS && !h->live) break;
    if (routes[i].r == R_DASHBOARD && !(h->cfg && h->cfg->stream.dashboard))
      break;
    if (routes[i].r == R_EVENTS && strcmp(method, "GET") != 0)
      return json(c, MHD_HTTP_METHOD_NOT_ALLOWED,
                  wr_report_error("method not allowed: GET"));
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
      return json(c, MHD_HTTP_METHOD_NOT_ALLOWED,
                  wr_report_error("method not allowed: GET or HEAD"));
    if (routes[i].r == R_EVENTS) return events(h, c);
    if (routes[i].r == R_DASHBOARD) return dashboard(c);
    if (routes[i].r != R_ALIVE && routes[i].r != R_READY && !h->snaps) break;
    return answer(h, c, routes[i].r);
  }
  return json(c, MHD_HTTP_NOT_FOUND, wr_report_error("not found"));
}

/*
 * Slow clients. libmicrohttpd's timeout is an idle one: a client sending
 * a byte every second keeps a connection for ever, and enough of them
 * hold every slot, so that probes are never accepted. So each connection
 * is tracked from the moment it waits for a request (its start, or the
 * end of its previous request), and whenever a client connects:
 *   - a connection waiting longer than REQUEST_S is shut;
 *   - past per_addr connections of the newcomer's address, that
 *     address's oldest is shut;
 *   - past keep connections in all, the oldest is shut.
 * keep is below the hard limit, so the listening socket is always served
 * and a probe always gets in: it takes the place of the oldest client,
 * and answers in a millisecond, long before it would be the oldest. A
 * shut connection is closed by libmicrohttpd at its next turn (shutdown
 * only: the descriptor stays libmicrohttpd's to close).
 */
static int same_addr(const struct sockaddr_storage *a,
                     const struct sockaddr_storage *b) {
  if (a->ss_family != b->ss_family) return 0;
  if (a->ss_family == AF_INET)
    return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
           ((const struct sockaddr_in *)b)->sin_addr.s_addr;
  if (a->ss_family == AF_INET6)
    return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
                  &((const struct sockaddr_in6 *)b)->sin6_addr,
                  sizeof(struct in6_addr)) == 0;
  return 0;
}

static void shut(conn_rec *r) {
  shutdown(r->fd, SHUT_RDWR);
  r->closing = 1;
}

/* The oldest open connection (of addr's address when addr), other than
 * self; NULL if none. */
static conn_rec *oldest(wr_health *h, const conn_rec *self,
                        const struct sockaddr_storage *addr, unsigned *n) {
  conn_rec *o = NULL;
  *n = 0;
  for (unsigned i = 0; i < h->limit; i++) {
    conn_rec *r = &h->conns[i];
    if (!r->used || r->closing || (addr && !same_addr(&r->addr, addr)))
      continue;
    ++*n;
    if (r != self && (!o || r->since < o->since)) o = r;
  }
  return o;
}

static void make_room(wr_health *h, conn_rec *self) {
  double now = wr_now();
  for (unsigned i = 0; i < h->limit; i++) {
    conn_rec *r = &h->conns[i];
    if (r->used && !r->closing && !r->stream && now - r->since > REQUEST_S)
      shut(r);
  }
  unsigned n;
  conn_rec *o;
  while ((o = oldest(h, self, &self->addr, &n)) && n > h->per_addr) shut(o);
  while ((o = oldest(h, self, NULL, &n)) && n > h->keep) shut(o);
}

static void notify(void *cls, struct MHD_Connection *c, void **ctx,
                   enum MHD_ConnectionNotificationCode code) {
  wr_health *h = cls;
  conn_rec *r = *ctx;
  if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
    if (r) r->used = 0;
    *ctx = NULL;
    return;
  }
  const union MHD_ConnectionInfo *fd =
      MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
  const union MHD_ConnectionInfo *addr =
      MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
  for (unsigned i = 0; fd && addr && i < h->limit; i++) {
    if (h->conns[i].used) continue;
    r = &h->conns[i];
    memset(r, 0, sizeof *r);
    r->used = 1;
    r->fd = fd->connect_fd;
    r->since = wr_now();
    const struct sockaddr *sa = addr->client_addr;
    memcpy(&r->addr, sa,
           sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                     : sizeof(struct sockaddr_in));
    *ctx = r;
    make_room(h, r);
    return;
  }
}

/* A request is answered: the connection waits for the next one from
 * now. */
static void completed(void *cls, struct MHD_Connection *c, void **req,
                      enum MHD_RequestTerminationCode code) {
  (void)cls, (void)req, (void)code;
  const union MHD_ConnectionInfo *i =
      MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
  conn_rec *r = i ? i->socket_context : NULL;
  if (r) r->since = wr_now();
}

/* Connections the HTTP side may hold: at most MAX_CONNECTIONS and a
 * quarter of the descriptors this process may open, so clients can never
 * take the ones the loop needs (workers' sockets, reconnects). */
static unsigned connection_limit(void) {
  struct rlimit rl;
  unsigned lim = MAX_CONNECTIONS;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
      rl.rlim_cur / 4 < lim)
    lim = (unsigned)(rl.rlim_cur / 4);
  return lim < 8 ? 8 : lim;
}

wr_health *wr_health_start(const wr_health_opts *o, char *err, size_t errlen) {
  struct sockaddr_storage sa;
  socklen_t salen;
  char why[256];
  if (wr_addr_listen(o->listen, o->port, &sa, &salen, why, sizeof why)) {
    snprintf(err, errlen, "health.listen: %s", why);
    return NULL;
  }
  /* libmicrohttpd reads the family from the flags, not from the address.
   * On "::" it turns IPV6_V6ONLY off (dual stack), so IPv4 clients reach
   * it too, as mapped addresses; on any other IPv6 address it serves that
   * address only. */
  unsigned family = 0;
  if (sa.ss_family == AF_INET6)
    family = IN6_IS_ADDR_UNSPECIFIED(&((struct sockaddr_in6 *)&sa)->sin6_addr)
                 ? MHD_USE_DUAL_STACK
                 : MHD_USE_IPv6;
  wr_health *h = calloc(1, sizeof *h);
  if (!h) return NULL;
  h->st = o->st;
  h->snaps = o->snaps;
  h->token = o->admin_token;
  h->live = o->live;
  h->cfg = o->cfg;
  h->limit = connection_limit();
  /* A tenth of the slots stays free for newcomers (libmicrohttpd accepts
   * several per turn before the shut ones are closed); one address may
   * hold a quarter. */
  h->keep = h->limit - (h->limit / 10 > 4 ? h->limit / 10 : 4);
  h->per_addr = h->limit / 4;
  h->conns = calloc(h->limit, sizeof *h->conns);
  if (!h->conns) {
    free(h);
    return NULL;
  }
  /* Probes must answer while clients abuse the port: epoll (no select()
   * limit), a bounded number of connections at a few KiB each, an idle
   * client dropped after IDLE_S, and trickling ones shut to make room
   * (make_room above). Bodies are rendered from a snapshot: no request
   * waits for the loop, nor the loop for a request. */
  h->d = MHD_start_daemon(
      MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ERROR_LOG |
          MHD_ALLOW_SUSPEND_RESUME | family,
      (uint16_t)o->port, NULL, NULL, serve, h, MHD_OPTION_SOCK_ADDR,
      (struct sockaddr *)&sa, MHD_OPTION_CONNECTION_LIMIT, h->limit,
      MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONN_MEMORY,
      MHD_OPTION_CONNECTION_TIMEOUT, IDLE_S, MHD_OPTION_NOTIFY_CONNECTION,
      notify, h, MHD_OPTION_NOTIFY_COMPLETED, completed, h, MHD_OPTION_END);
  if (!h->d) {
    int v6 = strchr(o->listen, ':') != NULL;
    snprintf(err, errlen, "cannot serve health endpoints on %s%s%s:%d",
             v6 ? "[" : "", o->listen, v6 ? "]" : "", o->port);
    free(h->conns);
    free(h);
    return NULL;
  }
  return h;
}

void wr_health_stop(wr_health *h) {
  if (!h) return;
  /* libmicrohttpd may not stop with a suspended connection: every stream
   * is woken, and ends at its next read. */
  wr_live_close(h->live);
  MHD_stop_daemon(h->d);
  free(h->conns);
  free(h);
}
