#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <warren/producer.h>

#include "../config/cfg.h"
#include "conn.h"
#include "log.h"

#define WINDOW 1024 /* unconfirmed publishes before publish() waits */
#define CH 1

struct warren_producer {
  amqp_connection_state_t c;
  uint64_t next_tag;         /* tag of the next publish (starts at 1) */
  uint64_t low;              /* lowest tag not yet confirmed */
  unsigned char acked[WINDOW]; /* by tag % WINDOW, for tags >= low */
  int refused;               /* a nack or a return since the last flush */
  int broken;                /* connection unusable */
};

int warren_producer_open(const warren_producer_opts *o,
                         warren_producer **out) {
  wr_broker_cfg b = {.host = "127.0.0.1", .port = 5672, .vhost = "/",
                     .user = "guest", .password = "guest", .heartbeat = 30,
                     .connect_timeout = 5};
  if (o) {
    if (o->host) b.host = o->host;
    if (o->port) b.port = o->port;
    if (o->vhost) b.vhost = o->vhost;
    if (o->user) b.user = o->user;
    if (o->password) b.password = o->password;
    if (o->heartbeat) b.heartbeat = o->heartbeat;
  }
  warren_producer *p = calloc(1, sizeof *p);
  if (!p) return WARREN_NOMEM;
  char err[512];
  int rc = wr_conn_open(&b, &p->c, err, sizeof err);
  if (rc == WARREN_OK) {
    amqp_channel_open(p->c, CH);
    rc = wr_conn_reply(p->c, amqp_get_rpc_reply(p->c), "channel.open", err,
                       sizeof err);
  }
  if (rc == WARREN_OK) {
    amqp_confirm_select(p->c, CH);
    rc = wr_conn_reply(p->c, amqp_get_rpc_reply(p->c), "confirm.select", err,
                       sizeof err);
  }
  if (rc != WARREN_OK) {
    wr_error("producer: %s", err);
    if (p->c) amqp_destroy_connection(p->c);
    free(p);
    return rc;
  }
  p->next_tag = p->low = 1;
  *out = p;
  return WARREN_OK;
}

static void confirm(warren_producer *p, uint64_t tag, int multiple) {
  if (multiple)
    for (uint64_t t = p->low; t <= tag && t < p->next_tag; t++)
      p->acked[t % WINDOW] = 1;
  else if (tag >= p->low && tag < p->next_tag)
    p->acked[tag % WINDOW] = 1;
  while (p->low < p->next_tag && p->acked[p->low % WINDOW]) {
    p->acked[p->low % WINDOW] = 0;
    p->low++;
  }
}

/* Read one frame (waiting up to timeout_ms) and account for it. */
static int pump(warren_producer *p, int timeout_ms) {
  amqp_frame_t f;
  struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  int rc = amqp_simple_wait_frame_noblock(p->c, &f, &tv);
  if (rc == AMQP_STATUS_TIMEOUT) return WARREN_BROKER_TIMEOUT;
  if (rc != AMQP_STATUS_OK) {
    p->broken = 1;
    wr_error("producer: %s", amqp_error_string2(rc));
    return WARREN_BROKER_CLOSED;
  }
  if (f.frame_type != AMQP_FRAME_METHOD) return WARREN_OK;
  switch (f.payload.method.id) {
    case AMQP_BASIC_ACK_METHOD: {
      amqp_basic_ack_t *a = f.payload.method.decoded;
      confirm(p, a->delivery_tag, a->multiple);
      return WARREN_OK;
    }
    case AMQP_BASIC_NACK_METHOD: {
      amqp_basic_nack_t *n = f.payload.method.decoded;
      p->refused = 1;
      confirm(p, n->delivery_tag, n->multiple);
      return WARREN_OK;
    }
    case AMQP_BASIC_RETURN_METHOD: {
      amqp_basic_return_t *r = f.payload.method.decoded;
      wr_error("producer: job returned unroutable: %u %.*s", r->reply_code,
               (int)r->reply_text.len, (const char *)r->reply_text.bytes);
      p->refused = 1;
      amqp_message_t m;
      if (amqp_read_message(p->c, f.channel, &m, 0).reply_type ==
          AMQP_RESPONSE_NORMAL)
        amqp_destroy_message(&m);
      return WARREN_OK;
    }
    case AMQP_CHANNEL_CLOSE_METHOD:
    case AMQP_CONNECTION_CLOSE_METHOD: {
      amqp_channel_close_t *m = f.payload.method.decoded; /* same layout */
      wr_error("producer: broker closed: %u %.*s", m->reply_code,
               (int)m->reply_text.len, (const char *)m->reply_text.bytes);
      p->broken = 1;
      return WARREN_BROKER_CLOSED;
    }
    default:
      return WARREN_OK;
  }
}

int warren_producer_flush(warren_producer *p, int timeout_ms) {
  if (p->broken) return WARREN_BROKER_CLOSED;
  while (p->low < p->next_tag) {
    int rc = pump(p, timeout_ms);
    if (rc != WARREN_OK) return rc;
  }
  int refused = p->refused;
  p->refused = 0;
  return refused ? WARREN_BROKER_NACK : WARREN_OK;
}

int warren_producer_publish(warren_producer *p, const char *exchange,
                            const char *routing_key, const void *body,
                            size_t len, const warren_publish_opts *o) {
  if (p->broken) return WARREN_BROKER_CLOSED;
  while (p->next_tag - p->low >= WINDOW) {
    int rc = pump(p, 30000);
    if (rc != WARREN_OK) return rc;
  }
  amqp_basic_properties_t pr = {0};
  pr._flags = AMQP_BASIC_DELIVERY_MODE_FLAG;
  pr.delivery_mode = (o && o->transient) ? 1 : 2;
  amqp_table_entry_t entries[64];
  if (o && o->message_id) {
    pr._flags |= AMQP_BASIC_MESSAGE_ID_FLAG;
    pr.message_id = amqp_cstring_bytes(o->message_id);
  }
  if (o && o->correlation_id) {
    pr._flags |= AMQP_BASIC_CORRELATION_ID_FLAG;
    pr.correlation_id = amqp_cstring_bytes(o->correlation_id);
  }
  if (o && o->content_type) {
    pr._flags |= AMQP_BASIC_CONTENT_TYPE_FLAG;
    pr.content_type = amqp_cstring_bytes(o->content_type);
  }
  if (o && o->n_headers) {
    if (o->n_headers > 64) return WARREN_TOO_LARGE;
    for (size_t i = 0; i < o->n_headers; i++) {
      entries[i].key = amqp_cstring_bytes(o->headers[i].name);
      entries[i].value.kind = AMQP_FIELD_KIND_UTF8;
      entries[i].value.value.bytes = amqp_cstring_bytes(o->headers[i].value);
    }
    pr._flags |= AMQP_BASIC_HEADERS_FLAG;
    pr.headers = (amqp_table_t){(int)o->n_headers, entries};
  }
  amqp_bytes_t b = {len, (void *)body};
  int rc = amqp_basic_publish(p->c, CH, amqp_cstring_bytes(exchange ? exchange : ""),
                              amqp_cstring_bytes(routing_key ? routing_key : ""),
                              1, 0, &pr, b);
  if (rc != AMQP_STATUS_OK) {
    wr_error("producer: publish: %s", amqp_error_string2(rc));
    p->broken = 1;
    return WARREN_BROKER_CLOSED;
  }
  p->next_tag++;
  return p->refused ? WARREN_BROKER_NACK : WARREN_OK;
}

int warren_producer_close(warren_producer *p) {
  if (!p) return WARREN_OK;
  int rc = p->broken ? WARREN_BROKER_CLOSED : warren_producer_flush(p, 10000);
  if (p->broken)
    amqp_destroy_connection(p->c);
  else
    wr_conn_close(p->c);
  free(p);
  return rc;
}
