#include "deliver.h"

#include <string.h>

/* Copy b into the pool; 0 or -1. */
static int dup_bytes(amqp_pool_t *pool, amqp_bytes_t *b) {
  if (!b->len) return 0;
  amqp_bytes_t n;
  amqp_pool_alloc_bytes(pool, b->len, &n);
  if (!n.bytes) return -1;
  memcpy(n.bytes, b->bytes, b->len);
  *b = n;
  return 0;
}

/* rabbitmq-c keeps its properties clone private: the same, field by
 * field. The decoded frame is only valid until the connection's buffers
 * are recycled. */
static int clone_props(const amqp_basic_properties_t *from,
                       amqp_basic_properties_t *to, amqp_pool_t *pool) {
  static const struct {
    amqp_flags_t flag;
    size_t off;
  } strs[] = {
#define S(F, f) {AMQP_BASIC_##F##_FLAG, offsetof(amqp_basic_properties_t, f)}
      S(CONTENT_TYPE, content_type),
      S(CONTENT_ENCODING, content_encoding),
      S(CORRELATION_ID, correlation_id),
      S(REPLY_TO, reply_to),
      S(EXPIRATION, expiration),
      S(MESSAGE_ID, message_id),
      S(TYPE, type),
      S(USER_ID, user_id),
      S(APP_ID, app_id),
      S(CLUSTER_ID, cluster_id),
#undef S
  };
  *to = *from;
  for (size_t i = 0; i < sizeof strs / sizeof *strs; i++)
    if ((to->_flags & strs[i].flag) &&
        dup_bytes(pool, (amqp_bytes_t *)((char *)to + strs[i].off)) != 0)
      return AMQP_STATUS_NO_MEMORY;
  if (to->_flags & AMQP_BASIC_HEADERS_FLAG)
    return amqp_table_clone(&from->headers, &to->headers, pool);
  return AMQP_STATUS_OK;
}

void wr_deliver_free(amqp_envelope_t *env) {
  env->message.body = amqp_empty_bytes;
  amqp_destroy_envelope(env); /* frees the strings and the pool */
}

/* The next frame, which must belong to this delivery. RabbitMQ writes a
 * delivery's frames in one go, so anything else here is a broken stream. */
static int next_frame(amqp_connection_state_t c, amqp_channel_t ch,
                      uint8_t type, amqp_frame_t *f) {
  int rc = amqp_simple_wait_frame(c, f);
  if (rc != AMQP_STATUS_OK) return rc;
  if (f->channel != ch || f->frame_type != type)
    return AMQP_STATUS_UNEXPECTED_STATE;
  return AMQP_STATUS_OK;
}

int wr_deliver_read(amqp_connection_state_t c, const amqp_frame_t *deliver,
                    amqp_envelope_t *env, const wr_deliver_store *store) {
  const amqp_basic_deliver_t *d = deliver->payload.method.decoded;
  memset(env, 0, sizeof *env);
  env->channel = deliver->channel;
  env->delivery_tag = d->delivery_tag;
  env->redelivered = d->redelivered;
  env->consumer_tag = amqp_bytes_malloc_dup(d->consumer_tag);
  env->exchange = amqp_bytes_malloc_dup(d->exchange);
  env->routing_key = amqp_bytes_malloc_dup(d->routing_key);
  init_amqp_pool(&env->message.pool, 4096);
  amqp_frame_t f;
  int rc = (!env->consumer_tag.bytes && d->consumer_tag.len) ||
                   (!env->exchange.bytes && d->exchange.len) ||
                   (!env->routing_key.bytes && d->routing_key.len)
               ? AMQP_STATUS_NO_MEMORY
               : next_frame(c, env->channel, AMQP_FRAME_HEADER, &f);
  if (rc == AMQP_STATUS_OK)
    rc = clone_props(f.payload.properties.decoded, &env->message.properties,
                     &env->message.pool);
  uint64_t size = rc == AMQP_STATUS_OK ? f.payload.properties.body_size : 0;
  void *body = NULL;
  if (rc == AMQP_STATUS_OK && size) {
    body = store->body(store->ctx, env, (size_t)size); /* LP64: fits */
    if (!body) rc = AMQP_STATUS_NO_MEMORY;
  }
  if (rc != AMQP_STATUS_OK) {
    uint64_t tag = env->delivery_tag;
    amqp_channel_t ch = env->channel;
    wr_deliver_free(env);
    memset(env, 0, sizeof *env);
    env->channel = ch;
    env->delivery_tag = tag;
    return rc;
  }
  env->message.body = (amqp_bytes_t){(size_t)size, size ? body : NULL};
  for (uint64_t got = 0; got < size;) {
    rc = next_frame(c, env->channel, AMQP_FRAME_BODY, &f);
    if (rc == AMQP_STATUS_OK && f.payload.body_fragment.len > size - got)
      rc = AMQP_STATUS_BAD_AMQP_DATA;
    if (rc != AMQP_STATUS_OK) {
      store->release(store->ctx, env);
      wr_deliver_free(env);
      memset(env, 0, sizeof *env);
      return rc;
    }
    memcpy((char *)body + got, f.payload.body_fragment.bytes,
           f.payload.body_fragment.len);
    got += f.payload.body_fragment.len;
  }
  return AMQP_STATUS_OK;
}
