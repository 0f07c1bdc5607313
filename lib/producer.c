/* libwarren: the producer side (include/warren/producer.h). */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <warren/producer.h>
#include <warren/sign.h>

#include "conn.h"
#include "keyring.h"
#include "sign.h"

#define CH 1
#define MAX_HEADERS 64

struct warren_producer {
  amqp_connection_state_t c;
  wr_confirms cf;
  wr_keyring *ring; /* the signing key; NULL: jobs are not signed */
  char key_id[WARREN_SIGN_MAX_KEY_ID + 1];
  char err[sizeof((wr_confirms *)0)->err]; /* warren_producer_error() */
};

/* An options field exists when the caller's struct is large enough. */
#define HAS(o, field) \
  ((o)->size >= offsetof(warren_producer_opts, field) + sizeof((o)->field))

int warren_producer_open(const warren_producer_opts *o, warren_producer **out) {
  wr_conn_params b = {.host = "127.0.0.1",
                      .port = 5672,
                      .vhost = "/",
                      .user = "guest",
                      .password = "guest",
                      .heartbeat = 30,
                      .connect_timeout = 5};
  if (o) {
    if (o->host) b.host = o->host;
    if (o->port) b.port = o->port;
    if (o->vhost) b.vhost = o->vhost;
    if (o->user) b.user = o->user;
    if (o->password) b.password = o->password;
    if (o->heartbeat) b.heartbeat = o->heartbeat;
  }
  if (o && HAS(o, sign_key_len)) {
    b.tls = (wr_tls_params){o->tls || o->ca_file || o->cert_file,
                            o->ca_file,
                            o->cert_file,
                            o->key_file,
                            !o->no_verify_peer,
                            !o->no_verify_hostname};
    if (b.tls.enabled && !o->port) b.port = 5671;
  }
  char err[512];
  warren_producer *p = calloc(1, sizeof *p);
  int rc = p ? WARREN_OK : WARREN_NOMEM;
  if (!p) snprintf(err, sizeof err, "out of memory");
  if (p && o && HAS(o, sign_key_len) && o->sign_key_id) {
    /* The key is checked before connecting: a bad one is a usage error. */
    p->ring = wr_keyring_new();
    if (!p->ring || wr_keyring_add(p->ring, o->sign_key_id, o->sign_key,
                                   o->sign_key_len, err, sizeof err) != 0)
      rc = p->ring ? WARREN_INVALID : WARREN_NOMEM;
    snprintf(p->key_id, sizeof p->key_id, "%s", o->sign_key_id);
  }
  if (rc == WARREN_OK) rc = wr_conn_open(&b, &p->c, err, sizeof err);
  if (rc == WARREN_OK) rc = wr_conn_channel(p->c, CH, 1, err, sizeof err);
  if (rc != WARREN_OK) {
    if (o && HAS(o, errlen) && o->errbuf && o->errlen)
      snprintf(o->errbuf, o->errlen, "%s", err);
    if (p && p->c) amqp_destroy_connection(p->c);
    if (p) wr_keyring_free(p->ring);
    free(p);
    return rc;
  }
  wr_confirms_init(&p->cf);
  *out = p;
  return WARREN_OK;
}

const char *warren_producer_error(const warren_producer *p) {
  return p ? p->err : "";
}

/* Keep the confirms' reason for warren_producer_error(). */
static int failed(warren_producer *p, int rc) {
  if (rc != WARREN_OK) snprintf(p->err, sizeof p->err, "%s", p->cf.err);
  return rc;
}

int warren_producer_flush(warren_producer *p, int timeout_ms) {
  return failed(p, wr_confirms_wait(p->c, &p->cf, timeout_ms));
}

int warren_producer_publish(warren_producer *p, const char *exchange,
                            const char *routing_key, const void *body,
                            size_t len, const warren_publish_opts *o) {
  int rc = wr_confirms_room(p->c, &p->cf, 30000);
  if (rc != WARREN_OK) return failed(p, rc);
  amqp_basic_properties_t pr = {0};
  pr._flags = AMQP_BASIC_DELIVERY_MODE_FLAG;
  pr.delivery_mode = (o && o->transient) ? 1 : 2;
  amqp_table_entry_t entries[MAX_HEADERS + 1];
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
    if (o->n_headers > MAX_HEADERS) {
      snprintf(p->err, sizeof p->err, "%zu headers: at most %d", o->n_headers,
               MAX_HEADERS);
      return WARREN_TOO_LARGE;
    }
    for (size_t i = 0; i < o->n_headers; i++) {
      if (p->ring && !strcmp(o->headers[i].name, WARREN_SIGNATURE_HEADER)) {
        snprintf(p->err, sizeof p->err,
                 "header %s is written by the producer's signing key",
                 WARREN_SIGNATURE_HEADER);
        return WARREN_INVALID;
      }
      entries[i].key = amqp_cstring_bytes(o->headers[i].name);
      entries[i].value.kind = AMQP_FIELD_KIND_UTF8;
      entries[i].value.value.bytes = amqp_cstring_bytes(o->headers[i].value);
    }
    pr._flags |= AMQP_BASIC_HEADERS_FLAG;
    pr.headers = (amqp_table_t){(int)o->n_headers, entries};
  }
  char sig[WARREN_SIGNATURE_MAX];
  if (p->ring) {
    wr_sign_job job = {
        {o && o->message_id ? o->message_id : "",
         o && o->message_id ? strlen(o->message_id) : 0},
        {exchange ? exchange : "", exchange ? strlen(exchange) : 0},
        {routing_key ? routing_key : "", routing_key ? strlen(routing_key) : 0},
        {o && o->content_type ? o->content_type : "",
         o && o->content_type ? strlen(o->content_type) : 0},
        {"", 0}};
    if (wr_sign_make(p->ring, p->key_id, wr_sign_now_ms(), &job, body, len,
                     sig) != 0) {
      snprintf(p->err, sizeof p->err,
               "cannot sign: a field is over 255 bytes or OpenSSL failed");
      return WARREN_INVALID;
    }
    size_t n = (pr._flags & AMQP_BASIC_HEADERS_FLAG) ? o->n_headers : 0;
    entries[n].key = amqp_cstring_bytes(WARREN_SIGNATURE_HEADER);
    entries[n].value.kind = AMQP_FIELD_KIND_UTF8;
    entries[n].value.value.bytes = amqp_cstring_bytes(sig);
    pr._flags |= AMQP_BASIC_HEADERS_FLAG;
    pr.headers = (amqp_table_t){(int)n + 1, entries};
  }
  amqp_bytes_t b = {len, (void *)body};
  rc = amqp_basic_publish(
      p->c, CH, amqp_cstring_bytes(exchange ? exchange : ""),
      amqp_cstring_bytes(routing_key ? routing_key : ""), 1, 0, &pr, b);
  if (rc != AMQP_STATUS_OK) {
    snprintf(p->err, sizeof p->err, "publish: %s", amqp_error_string2(rc));
    p->cf.broken = 1;
    return WARREN_BROKER_CLOSED;
  }
  wr_confirms_sent(&p->cf);
  if (p->cf.refused) {
    snprintf(p->err, sizeof p->err, "%s", p->cf.err);
    return WARREN_BROKER_NACK;
  }
  return WARREN_OK;
}

int warren_producer_close(warren_producer *p) {
  if (!p) return WARREN_OK;
  int rc =
      p->cf.broken ? WARREN_BROKER_CLOSED : warren_producer_flush(p, 10000);
  if (p->cf.broken)
    amqp_destroy_connection(p->c);
  else
    wr_conn_close(p->c);
  wr_keyring_free(p->ring);
  free(p);
  return rc;
}
