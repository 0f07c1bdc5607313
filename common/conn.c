#include "conn.h"

#include <amqp_ssl_socket.h>
#include <amqp_tcp_socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <openssl/rand.h>
#include <warren/status.h>

#define RPC_TIMEOUT_S 10

char *wr_conn_close_reason(const amqp_method_t *m, char *buf, size_t len) {
  if (m->id == AMQP_CONNECTION_CLOSE_METHOD) {
    const amqp_connection_close_t *c = m->decoded;
    snprintf(buf, len, "broker closed the connection: %u %.*s", c->reply_code,
             (int)c->reply_text.len, (const char *)c->reply_text.bytes);
  } else if (m->id == AMQP_CHANNEL_CLOSE_METHOD) {
    const amqp_channel_close_t *c = m->decoded;
    snprintf(buf, len, "broker closed the channel: %u %.*s", c->reply_code,
             (int)c->reply_text.len, (const char *)c->reply_text.bytes);
  } else {
    snprintf(buf, len, "unexpected method 0x%08x from the broker", m->id);
  }
  return buf;
}

int wr_conn_reply(amqp_connection_state_t c, amqp_rpc_reply_t r,
                  const char *what, char *err, size_t errlen) {
  switch (r.reply_type) {
    case AMQP_RESPONSE_NORMAL:
      return WARREN_OK;
    case AMQP_RESPONSE_NONE:
      snprintf(err, errlen, "%s: no reply from the broker", what);
      return WARREN_BROKER_PROTOCOL;
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
      snprintf(err, errlen, "%s: %s", what,
               amqp_error_string2(r.library_error));
      return r.library_error == AMQP_STATUS_TIMEOUT ? WARREN_BROKER_TIMEOUT
                                                    : WARREN_BROKER_CLOSED;
    case AMQP_RESPONSE_SERVER_EXCEPTION:
      break;
  }
  char why[300];
  snprintf(err, errlen, "%s: %s", what,
           wr_conn_close_reason(&r.reply, why, sizeof why));
  if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
    amqp_connection_close_ok_t ok = {0};
    amqp_send_method(c, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
  }
  /* For a channel.close, the channel that failed is the one the caller
   * used; rabbitmq-c does not report it, so callers that care close-ok it
   * themselves (topology.c). */
  return WARREN_BROKER_CLOSED;
}

int wr_conn_unanswered(amqp_rpc_reply_t r) {
  if (r.reply_type == AMQP_RESPONSE_NONE) return 1;
  if (r.reply_type != AMQP_RESPONSE_LIBRARY_EXCEPTION) return 0;
  switch (r.library_error) {
    case AMQP_STATUS_TIMEOUT:
    case AMQP_STATUS_CONNECTION_CLOSED:
    case AMQP_STATUS_SOCKET_ERROR:
    case AMQP_STATUS_SOCKET_CLOSED:
    case AMQP_STATUS_HEARTBEAT_TIMEOUT:
      return 1;
    default:
      return 0;
  }
}

void wr_conn_node_order(size_t n, uint8_t order[WR_CONN_MAX_NODES]) {
  if (n > WR_CONN_MAX_NODES) n = WR_CONN_MAX_NODES;
  for (size_t i = 0; i < n; i++) order[i] = (uint8_t)i;
  for (size_t i = n; i > 1; i--) { /* Fisher-Yates */
    uint64_t x = 0;
    if (RAND_bytes((unsigned char *)&x, sizeof x) != 1)
      x = (uint64_t)i * 2654435761u; /* no entropy: a fixed shuffle */
    size_t j = (size_t)(x % i);
    uint8_t t = order[i - 1];
    order[i - 1] = order[j];
    order[j] = t;
  }
}

wr_conn_params wr_conn_at(const wr_conn_params *b, size_t i) {
  wr_conn_params p = *b;
  if (b->n_nodes && b->nodes && i < b->n_nodes) {
    p.host = b->nodes[i].host;
    p.port = b->nodes[i].port;
  }
  return p;
}

int wr_conn_open_any(const wr_conn_params *b, amqp_connection_state_t *out,
                     size_t *node, char *err, size_t errlen) {
  size_t n = b->n_nodes && b->nodes ? b->n_nodes : 0;
  if (n > WR_CONN_MAX_NODES) n = WR_CONN_MAX_NODES;
  if (node) *node = 0;
  if (!n) return wr_conn_open(b, out, err, errlen);
  uint8_t order[WR_CONN_MAX_NODES];
  wr_conn_node_order(n, order);
  int rc = WARREN_BROKER_CONNECT;
  for (size_t k = 0; k < n; k++) {
    wr_conn_params p = wr_conn_at(b, order[k]);
    rc = wr_conn_open(&p, out, err, errlen);
    if (rc == WARREN_OK && node) *node = order[k];
    if (rc == WARREN_OK || rc == WARREN_BROKER_LOGIN) return rc;
  }
  return rc;
}

int wr_conn_open(const wr_conn_params *b, amqp_connection_state_t *out,
                 char *err, size_t errlen) {
  *out = NULL;
  amqp_connection_state_t c = amqp_new_connection();
  if (!c) {
    snprintf(err, errlen, "out of memory");
    return WARREN_NOMEM;
  }
  amqp_socket_t *s =
      b->tls.enabled ? amqp_ssl_socket_new(c) : amqp_tcp_socket_new(c);
  if (!s) {
    snprintf(err, errlen, "cannot create %s socket",
             b->tls.enabled ? "TLS" : "TCP");
    amqp_destroy_connection(c);
    return WARREN_NOMEM;
  }
  if (b->tls.enabled) {
    amqp_ssl_socket_set_verify_peer(s, b->tls.verify_peer);
    amqp_ssl_socket_set_verify_hostname(s, b->tls.verify_hostname);
    int rc = AMQP_STATUS_OK;
    /* rabbitmq-c loads no default store of its own: without a ca_file,
     * Debian's bundle of the system's trusted CAs. */
    const char *ca = b->tls.ca_file ? b->tls.ca_file : WR_CONN_SYSTEM_CA;
    if (b->tls.verify_peer || b->tls.ca_file)
      rc = amqp_ssl_socket_set_cacert(s, ca);
    if (rc == AMQP_STATUS_OK && b->tls.cert_file)
      rc = amqp_ssl_socket_set_key(s, b->tls.cert_file, b->tls.key_file);
    if (rc != AMQP_STATUS_OK) {
      snprintf(err, errlen, "TLS set-up: %s", amqp_error_string2(rc));
      amqp_destroy_connection(c);
      return WARREN_BROKER_TLS;
    }
  }
  double t = b->connect_timeout;
  struct timeval tv = {(time_t)t, (suseconds_t)((t - (double)(time_t)t) * 1e6)};
  int rc = amqp_socket_open_noblock(s, b->host, b->port, &tv);
  if (rc != AMQP_STATUS_OK) {
    /* rabbitmq-c's words name the check; say what it was checked against. */
    char hint[400] = "";
    if (rc == AMQP_STATUS_SSL_PEER_VERIFY_FAILED)
      snprintf(hint, sizeof hint,
               " (the broker's certificate is not signed by a CA in %s)",
               b->tls.ca_file ? b->tls.ca_file : WR_CONN_SYSTEM_CA);
    else if (rc == AMQP_STATUS_SSL_HOSTNAME_VERIFY_FAILED)
      snprintf(hint, sizeof hint,
               " (the broker's certificate is not for host name '%s')",
               b->host);
    snprintf(err, errlen, "connect to %s:%d: %s%s", b->host, b->port,
             amqp_error_string2(rc), hint);
    amqp_destroy_connection(c);
    return WARREN_BROKER_CONNECT;
  }
  amqp_set_handshake_timeout(c, &tv);
  struct timeval rpc = {RPC_TIMEOUT_S, 0};
  amqp_set_rpc_timeout(c, &rpc);
  /* consumer_cancel_notify: the broker tells a consumer it cancelled
   * (queue deleted, leader moved, consumer_timeout) instead of going
   * silent; rabbitmq-c merges this with its own capabilities. */
  amqp_table_entry_t cap[] = {
      {amqp_cstring_bytes("consumer_cancel_notify"),
       {AMQP_FIELD_KIND_BOOLEAN, {.boolean = 1}}},
      {amqp_cstring_bytes("authentication_failure_close"),
       {AMQP_FIELD_KIND_BOOLEAN, {.boolean = 1}}},
  };
  amqp_table_entry_t cap_blocked[] = {
      cap[0],
      cap[1],
      {amqp_cstring_bytes("connection.blocked"),
       {AMQP_FIELD_KIND_BOOLEAN, {.boolean = 1}}},
  };
  amqp_table_entry_t props_e[] = {
      {amqp_cstring_bytes("capabilities"),
       {AMQP_FIELD_KIND_TABLE,
        {.table = b->notify_blocked ? (amqp_table_t){3, cap_blocked}
                                    : (amqp_table_t){2, cap}}}},
  };
  amqp_table_t props = {1, props_e};
  amqp_rpc_reply_t r =
      amqp_login_with_properties(c, b->vhost, 0, 131072, b->heartbeat, &props,
                                 AMQP_SASL_METHOD_PLAIN, b->user, b->password);
  if (r.reply_type != AMQP_RESPONSE_NORMAL && wr_conn_unanswered(r)) {
    /* TCP connected and nobody spoke AMQP back (a partition, a proxy or
     * load balancer without its broker, a broker still starting): the
     * broker is unreachable; it refused nothing. */
    snprintf(err, errlen,
             "%s:%d: broker unreachable: the AMQP handshake got no answer "
             "(%s)",
             b->host, b->port, amqp_error_string2(r.library_error));
    amqp_destroy_connection(c);
    return WARREN_BROKER_CONNECT;
  }
  if (r.reply_type != AMQP_RESPONSE_NORMAL) {
    char why[384];
    wr_conn_reply(c, r, "login", why, sizeof why);
    /* A broker that requires a client certificate ends the TLS session
     * after the handshake, so it shows here, at the login. */
    snprintf(err, errlen, "%s:%d vhost '%s' user '%s': %s%s", b->host, b->port,
             b->vhost, b->user, why,
             b->tls.enabled && !b->tls.cert_file &&
                     r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
                     r.library_error == AMQP_STATUS_SSL_ERROR
                 ? " (no client certificate was sent: does the broker require "
                   "one?)"
                 : "");
    amqp_destroy_connection(c);
    return WARREN_BROKER_LOGIN;
  }
  *out = c;
  return WARREN_OK;
}

void wr_conn_close(amqp_connection_state_t c) {
  if (!c) return;
  amqp_connection_close(c, AMQP_REPLY_SUCCESS);
  amqp_destroy_connection(c);
}

int wr_conn_channel(amqp_connection_state_t c, amqp_channel_t ch, int confirm,
                    char *err, size_t errlen) {
  amqp_channel_open(c, ch);
  int rc = wr_conn_reply(c, amqp_get_rpc_reply(c), "channel.open", err, errlen);
  if (rc == WARREN_OK && confirm) {
    amqp_confirm_select(c, ch);
    rc = wr_conn_reply(c, amqp_get_rpc_reply(c), "confirm.select", err, errlen);
  }
  return rc;
}

static int64_t copy_header(const amqp_basic_properties_t *p) {
  if (!(p->_flags & AMQP_BASIC_HEADERS_FLAG)) return -1;
  size_t klen = strlen(WR_CONN_COPY_HEADER);
  for (int i = 0; i < p->headers.num_entries; i++) {
    const amqp_table_entry_t *e = &p->headers.entries[i];
    if (e->key.len == klen &&
        memcmp(e->key.bytes, WR_CONN_COPY_HEADER, klen) == 0 &&
        e->value.kind == AMQP_FIELD_KIND_I64)
      return e->value.value.i64;
  }
  return -1;
}

int wr_conn_pub_frame(amqp_connection_state_t c, const amqp_frame_t *f,
                      wr_pub_event *ev) {
  ev->kind = WR_PUB_OTHER;
  ev->copy = -1;
  ev->why[0] = '\0';
  if (f->frame_type != AMQP_FRAME_METHOD) return 0;
  switch (f->payload.method.id) {
    case AMQP_BASIC_ACK_METHOD: {
      const amqp_basic_ack_t *a = f->payload.method.decoded;
      ev->kind = WR_PUB_ACK;
      ev->tag = a->delivery_tag;
      ev->multiple = a->multiple;
      return 0;
    }
    case AMQP_BASIC_NACK_METHOD: {
      const amqp_basic_nack_t *a = f->payload.method.decoded;
      ev->kind = WR_PUB_NACK;
      ev->tag = a->delivery_tag;
      ev->multiple = a->multiple;
      return 0;
    }
    case AMQP_BASIC_RETURN_METHOD: {
      const amqp_basic_return_t *r = f->payload.method.decoded;
      ev->kind = WR_PUB_RETURN;
      snprintf(ev->why, sizeof ev->why, "%u %.*s (exchange '%.*s', key '%.*s')",
               r->reply_code, (int)r->reply_text.len,
               (const char *)r->reply_text.bytes, (int)r->exchange.len,
               (const char *)r->exchange.bytes, (int)r->routing_key.len,
               (const char *)r->routing_key.bytes);
      /* The message itself follows; it must be read off the connection. */
      amqp_message_t m;
      if (amqp_read_message(c, f->channel, &m, 0).reply_type !=
          AMQP_RESPONSE_NORMAL)
        return -1;
      ev->copy = copy_header(&m.properties);
      amqp_destroy_message(&m);
      return 0;
    }
    case AMQP_CHANNEL_CLOSE_METHOD:
    case AMQP_CONNECTION_CLOSE_METHOD:
      ev->kind = WR_PUB_CLOSED;
      wr_conn_close_reason(&f->payload.method, ev->why, sizeof ev->why);
      return 0;
    case AMQP_CONNECTION_BLOCKED_METHOD: {
      const amqp_connection_blocked_t *b = f->payload.method.decoded;
      ev->kind = WR_PUB_BLOCKED;
      snprintf(ev->why, sizeof ev->why, "%.*s", (int)b->reason.len,
               (const char *)b->reason.bytes);
      return 0;
    }
    case AMQP_CONNECTION_UNBLOCKED_METHOD:
      ev->kind = WR_PUB_UNBLOCKED;
      return 0;
    default:
      return 0;
  }
}

void wr_confirms_init(wr_confirms *cf) {
  memset(cf, 0, sizeof *cf);
  cf->next = cf->low = 1;
}

void wr_confirms_sent(wr_confirms *cf) {
  cf->next++;
}

static void confirm(wr_confirms *cf, uint64_t tag, int multiple) {
  if (multiple)
    for (uint64_t t = cf->low; t <= tag && t < cf->next; t++)
      cf->acked[t % WR_CONFIRM_WINDOW] = 1;
  else if (tag >= cf->low && tag < cf->next)
    cf->acked[tag % WR_CONFIRM_WINDOW] = 1;
  while (cf->low < cf->next && cf->acked[cf->low % WR_CONFIRM_WINDOW]) {
    cf->acked[cf->low % WR_CONFIRM_WINDOW] = 0;
    cf->low++;
  }
}

/* Read one frame (waiting up to timeout_ms) and account for it. */
static int pump(amqp_connection_state_t c, wr_confirms *cf, int timeout_ms) {
  amqp_frame_t f;
  struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  int rc = amqp_simple_wait_frame_noblock(c, &f, &tv);
  if (rc == AMQP_STATUS_TIMEOUT) {
    snprintf(cf->err, sizeof cf->err, "no confirm from the broker in %d ms",
             timeout_ms);
    return WARREN_BROKER_TIMEOUT;
  }
  if (rc != AMQP_STATUS_OK) {
    cf->broken = 1;
    snprintf(cf->err, sizeof cf->err, "waiting for confirms: %s",
             amqp_error_string2(rc));
    return WARREN_BROKER_CLOSED;
  }
  return wr_confirms_frame(c, cf, &f);
}

int wr_confirms_frame(amqp_connection_state_t c, wr_confirms *cf,
                      const amqp_frame_t *f) {
  wr_pub_event ev;
  if (wr_conn_pub_frame(c, f, &ev) != 0) {
    cf->broken = 1;
    snprintf(cf->err, sizeof cf->err, "waiting for confirms: %s",
             amqp_error_string2(AMQP_STATUS_CONNECTION_CLOSED));
    return WARREN_BROKER_CLOSED;
  }
  switch (ev.kind) {
    case WR_PUB_ACK:
      confirm(cf, ev.tag, ev.multiple);
      break;
    case WR_PUB_NACK:
      cf->refused = 1;
      snprintf(cf->err, sizeof cf->err,
               "the broker refused (nacked) a message");
      confirm(cf, ev.tag, ev.multiple);
      break;
    case WR_PUB_RETURN:
      cf->refused = 1;
      snprintf(cf->err, sizeof cf->err, "a message came back unroutable: %s",
               ev.why);
      break;
    case WR_PUB_CLOSED:
      cf->broken = 1;
      snprintf(cf->err, sizeof cf->err, "%s", ev.why);
      return WARREN_BROKER_CLOSED;
    case WR_PUB_OTHER:
    case WR_PUB_BLOCKED: /* asked for by the session only */
    case WR_PUB_UNBLOCKED:
      break;
  }
  return WARREN_OK;
}

int wr_confirms_room(amqp_connection_state_t c, wr_confirms *cf,
                     int timeout_ms) {
  if (cf->broken) return WARREN_BROKER_CLOSED;
  while (cf->next - cf->low >= WR_CONFIRM_WINDOW) {
    int rc = pump(c, cf, timeout_ms);
    if (rc != WARREN_OK) return rc;
  }
  return WARREN_OK;
}

int wr_confirms_wait(amqp_connection_state_t c, wr_confirms *cf,
                     int timeout_ms) {
  if (cf->broken) return WARREN_BROKER_CLOSED;
  while (cf->low < cf->next) {
    int rc = pump(c, cf, timeout_ms);
    if (rc != WARREN_OK) return rc;
  }
  int refused = cf->refused;
  cf->refused = 0;
  return refused ? WARREN_BROKER_NACK : WARREN_OK;
}

int wr_conn_url(const char *url, wr_conn_params *b, char *store,
                size_t storelen, char *err, size_t errlen) {
  size_t n = url ? strlen(url) : 0;
  if (!n || n >= storelen) {
    snprintf(err, errlen, "broker URL is %s", n ? "too long" : "empty");
    return -1;
  }
  /* A percent-encoded NUL would cut the user, password or vhost short
   * once decoded: the broker would be asked for another user. */
  for (const char *p = strchr(url, '%'); p; p = strchr(p + 1, '%'))
    if (p[1] == '0' && p[2] == '0') {
      snprintf(err, errlen, "broker URL holds a percent-encoded NUL (%%00)");
      return -1;
    }
  memcpy(store, url, n + 1); /* parsed in place: the fields point into it */
  struct amqp_connection_info ci;
  amqp_default_connection_info(&ci);
  if (amqp_parse_url(store, &ci) != AMQP_STATUS_OK || ci.port < 1 ||
      ci.port > 65535) {
    /* The URL may hold a password: say what is expected, not what came. */
    snprintf(err, errlen,
             "broker URL is not amqp://[user[:password]@]host[:port][/vhost] "
             "or amqps://... (port 1..65535, percent-encode reserved "
             "characters)");
    return -1;
  }
  b->host = ci.host;
  b->port = ci.port;
  b->vhost = ci.vhost[0] ? ci.vhost : "/";
  b->user = ci.user;
  b->password = ci.password;
  b->tls.enabled = ci.ssl;
  return 0;
}

int wr_conn_node_parse(const char *s, int default_port, char *host,
                       size_t hostlen, int *port, char *err, size_t errlen) {
  char buf[600];
  if (!s || !*s || strlen(s) >= sizeof buf) {
    snprintf(err, errlen, "a node is \"host\", \"host:port\" or a URI");
    return -1;
  }
  snprintf(buf, sizeof buf, "%s", s);
  const char *h = buf;
  long p = default_port;
  if (!strncmp(buf, "amqp://", 7) || !strncmp(buf, "amqps://", 8)) {
    struct amqp_connection_info ci;
    amqp_default_connection_info(&ci);
    if (amqp_parse_url(buf, &ci) != AMQP_STATUS_OK) {
      snprintf(err, errlen, "'%s' is not an amqp:// URI", s);
      return -1;
    }
    h = ci.host;
    p = ci.port;
  } else {
    char *colon = NULL;
    if (buf[0] == '[') { /* [v6]:port */
      char *close = strchr(buf, ']');
      if (!close || (close[1] && close[1] != ':')) {
        snprintf(err, errlen, "'%s': an IPv6 address goes in [brackets]", s);
        return -1;
      }
      *close = '\0';
      h = buf + 1;
      colon = close[1] == ':' ? close + 1 : NULL;
    } else {
      colon = strchr(buf, ':');
      if (colon && strchr(colon + 1, ':')) {
        snprintf(err, errlen, "'%s': write an IPv6 address as [addr]:port", s);
        return -1;
      }
    }
    if (colon) {
      *colon = '\0';
      char *end;
      p = strtol(colon + 1, &end, 10);
      if (end == colon + 1 || *end || p < 1 || p > 65535) {
        snprintf(err, errlen, "'%s': the port must be 1..65535", s);
        return -1;
      }
    }
  }
  if (!*h || strlen(h) >= hostlen) {
    snprintf(err, errlen, "'%s': no host, or a host name too long", s);
    return -1;
  }
  snprintf(host, hostlen, "%s", h);
  *port = (int)p;
  return 0;
}
