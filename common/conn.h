/*
 * The AMQP client side shared by the worker, libwarren and the tools:
 * connecting, turning rabbitmq-c's replies into Warren status codes plus
 * a reason, and publisher confirms. It never logs or prints: every error
 * comes back to the caller as text (like curl's error buffer). Topology
 * and consumers, which only the worker needs, are in topology.h.
 *
 * A connection is used from one thread at a time (rabbitmq-c's rule).
 */
#ifndef WR_CONN_H
#define WR_CONN_H

#include <amqp.h>
#include <stddef.h>
#include <stdint.h>

/* The system's trusted CAs (Debian's ca-certificates bundle). */
#define WR_CONN_SYSTEM_CA "/etc/ssl/certs/ca-certificates.crt"

typedef struct wr_tls_params {
  int enabled;
  const char *ca_file; /* NULL: WR_CONN_SYSTEM_CA */
  const char *cert_file;
  const char *key_file;
  int verify_peer;
  int verify_hostname;
} wr_tls_params;

/* Where and how to connect. Strings are read during wr_conn_open only. */
/* One node of a cluster (broker.nodes). */
typedef struct wr_conn_node {
  const char *host;
  int port;
} wr_conn_node;

typedef struct wr_conn_params {
  const char *host; /* with n_nodes > 0: the node being tried */
  int port;
  const wr_conn_node *nodes; /* a cluster's nodes, or NULL: host and port */
  size_t n_nodes;
  const char *vhost;
  const char *user;
  const char *password;
  int heartbeat; /* seconds, 0 disables */
  double connect_timeout;
  /* The worker's whole connection set-up: both connections, log-ins,
   * declares and consumers (seconds; session.c). */
  double setup_timeout;
  wr_tls_params tls;
  /* Advertise connection.blocked: the broker then says when a resource
   * alarm stops it reading this connection (WR_PUB_BLOCKED). Only for a
   * caller that reads channel 0's methods (session.c). */
  int notify_blocked;
} wr_conn_params;

/* The most nodes a node list may have (broker.nodes). */
#define WR_CONN_MAX_NODES 64

/* The order in which to try b's nodes: a random permutation of 0..n-1
 * (n = b->n_nodes, at most WR_CONN_MAX_NODES), seeded per process, so
 * that many processes spread over a cluster. The one way every Warren
 * program picks a node (worker, events, libwarren, the tools). */
void wr_conn_node_order(size_t n, uint8_t order[WR_CONN_MAX_NODES]);

/* b, with host and port of its node i when it has a node list. */
wr_conn_params wr_conn_at(const wr_conn_params *b, size_t i);

/* wr_conn_open on b's nodes in the order wr_conn_node_order gives, until
 * one connects (b itself when it has no node list). A refused login ends
 * the search: every node of a cluster shares its users. err keeps the
 * last failure; *node (may be NULL) the index of the node that answered. */
int wr_conn_open_any(const wr_conn_params *b, amqp_connection_state_t *out,
                     size_t *node, char *err, size_t errlen);

/*
 * Read an AMQP URI (amqp://user:pass@host:port/vhost, or amqps:// which
 * turns TLS on) into b's host, port, vhost, user, password and
 * tls.enabled; other members are left as they are. rabbitmq-c's
 * amqp_parse_url reads it, percent-decoding user, password and vhost;
 * absent parts are its defaults (guest, guest, port 5672 or 5671). An
 * empty vhost ("amqp://host/") is "/", as pika and kombu read it. The
 * strings are copied into store (storelen bytes), which must outlive b's
 * use. 0, or -1 with err saying what is wrong (never the password).
 */
int wr_conn_url(const char *url, wr_conn_params *b, char *store,
                size_t storelen, char *err, size_t errlen);

/*
 * One entry of a node list: "host", "host:port", "[v6 address]:port", or
 * an amqp:// or amqps:// URI of which only host and port are taken. The
 * host goes to host (hostlen bytes), the port to *port (default_port when
 * it has none). 0, or -1 with err.
 */
int wr_conn_node_parse(const char *s, int default_port, char *host,
                       size_t hostlen, int *port, char *err, size_t errlen);

/* Connect, log in and set timeouts. On failure *out is NULL and err says
 * why (host:port and the broker's or the library's words), and the status
 * tells an operator's error from the network's:
 *   WARREN_BROKER_CONNECT  unreachable: the TCP connect failed, or it
 *                          worked and the AMQP handshake then timed out,
 *                          was reset or hit EOF (a partition, a proxy
 *                          without its broker): nothing was refused;
 *   WARREN_BROKER_LOGIN    the broker answered and closed the connection
 *                          (403 ACCESS_REFUSED for a wrong user or
 *                          password, 530 NOT_ALLOWED for a vhost), or the
 *                          TLS session failed at the login;
 *   WARREN_BROKER_TLS      the TLS set-up failed. */
int wr_conn_open(const wr_conn_params *b, amqp_connection_state_t *out,
                 char *err, size_t errlen);

/* Whether a failed login reply is the network's (timeout, reset, EOF:
 * no broker answered) rather than the broker's refusal. */
int wr_conn_unanswered(amqp_rpc_reply_t r);

/* Close politely (bounded by the RPC timeout) and free. NULL is allowed. */
void wr_conn_close(amqp_connection_state_t c);

/* Translate a reply. `what` names the operation for err. For a broker
 * exception the matching close-ok is sent, so the channel or connection
 * is cleanly closed afterwards. */
int wr_conn_reply(amqp_connection_state_t c, amqp_rpc_reply_t r,
                  const char *what, char *err, size_t errlen);

/* The broker's reason in a channel.close or connection.close method
 * ("broker closed the channel: 404 NOT_FOUND - ..."); any other method
 * is named by its id. Returns buf. */
char *wr_conn_close_reason(const amqp_method_t *m, char *buf, size_t len);

/* Open channel ch; with confirm, also put it in confirm mode. */
int wr_conn_channel(amqp_connection_state_t c, amqp_channel_t ch, int confirm,
                    char *err, size_t errlen);

/*
 * Publisher confirms, as the broker reports them on a channel in confirm
 * mode. wr_conn_pub_frame classifies one frame; a returned message is read
 * (and freed) here, and the integer header WR_CONN_COPY_HEADER it carries,
 * if any, is reported, so a caller that tags its publishes can tell which
 * one came back (a basic.return precedes the confirm of its publish).
 */
#define WR_CONN_COPY_HEADER "warren-copy"

typedef enum wr_pub_kind {
  WR_PUB_OTHER = 0, /* not about publishing */
  WR_PUB_ACK,
  WR_PUB_NACK,
  WR_PUB_RETURN,
  WR_PUB_CLOSED,    /* channel.close or connection.close; why says why */
  WR_PUB_BLOCKED,   /* connection.blocked: a resource alarm; why: reason */
  WR_PUB_UNBLOCKED, /* connection.unblocked */
} wr_pub_kind;

typedef struct wr_pub_event {
  wr_pub_kind kind;
  uint64_t tag;  /* ACK, NACK: the confirmed sequence */
  int multiple;  /* ACK, NACK: every sequence up to tag */
  int64_t copy;  /* RETURN: WR_CONN_COPY_HEADER of the message, or -1 */
  char why[256]; /* RETURN, CLOSED: the broker's words */
} wr_pub_event;

/* Classify frame f (read on connection c). Returns -1 only when reading a
 * returned message's content failed (the connection is unusable). */
int wr_conn_pub_frame(amqp_connection_state_t c, const amqp_frame_t *f,
                      wr_pub_event *ev);

/*
 * Waiting for confirms synchronously (libwarren, warren dlq). Up to
 * WR_CONFIRM_WINDOW publishes may be unconfirmed at once.
 */
#define WR_CONFIRM_WINDOW 1024
typedef struct wr_confirms {
  uint64_t next; /* sequence of the next publish (from 1) */
  uint64_t low;  /* lowest sequence not yet confirmed */
  unsigned char acked[WR_CONFIRM_WINDOW]; /* by sequence % window */
  int refused;   /* a nack or a return since the last wr_confirms_wait */
  int broken;    /* the connection is unusable */
  char err[300]; /* why, when refused or broken */
} wr_confirms;

void wr_confirms_init(wr_confirms *cf);
/* Account for frame f, read by the caller (which reads other frames of
 * the channel too, e.g. replies): WARREN_OK, or WARREN_BROKER_CLOSED. */
int wr_confirms_frame(amqp_connection_state_t c, wr_confirms *cf,
                      const amqp_frame_t *f);
/* A publish was written: count it. */
void wr_confirms_sent(wr_confirms *cf);
/* Room for another publish? Waits (up to timeout_ms) while the window is
 * full. WARREN_OK or an error. */
int wr_confirms_room(amqp_connection_state_t c, wr_confirms *cf,
                     int timeout_ms);
/* Wait until every publish so far is confirmed, up to timeout_ms for each
 * frame. WARREN_OK; WARREN_BROKER_NACK if any was refused or returned
 * since the last call (then cleared); WARREN_BROKER_TIMEOUT; or
 * WARREN_BROKER_CLOSED. cf->err says why. */
int wr_confirms_wait(amqp_connection_state_t c, wr_confirms *cf,
                     int timeout_ms);

#endif
