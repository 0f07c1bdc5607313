/*
 * Reading one delivery off the connection: rabbitmq-c's
 * amqp_consume_message, except that the body goes into storage the
 * caller chooses (arena.h for large bodies) instead of a fresh malloc per
 * job.
 */
#ifndef WR_DELIVER_H
#define WR_DELIVER_H

#include <amqp.h>
#include <stddef.h>

typedef struct wr_deliver_store {
  /* Storage for env's body of len (> 0) bytes, or NULL (out of memory).
   * The envelope's channel and tag are set. */
  void *(*body)(void *ctx, amqp_envelope_t *env, size_t len);
  /* Give back what body() returned for env. */
  void (*release)(void *ctx, amqp_envelope_t *env);
  void *ctx;
} wr_deliver_store;

/* deliver is a basic.deliver method frame just read; read the rest of the
 * delivery (its content header and body frames) into env. Returns
 *  - AMQP_STATUS_OK: env holds the delivery; its strings and properties
 *    are freed by wr_deliver_free, its body by the store's release;
 *  - AMQP_STATUS_INVALID_PARAMETER: the content header cannot be copied
 *    (a header with an empty key, which the broker accepts); env has
 *    only its channel and tag, and the body frames are left unread (they
 *    are skipped as frames of no delivery);
 *  - another status: the connection is unusable.
 * On an error nothing of env is left allocated. */
int wr_deliver_read(amqp_connection_state_t c, const amqp_frame_t *deliver,
                    amqp_envelope_t *env, const wr_deliver_store *store);

/* Free what wr_deliver_read allocated (not the body). */
void wr_deliver_free(amqp_envelope_t *env);

#endif
