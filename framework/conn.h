/*
 * The AMQP side: connecting, topology, consumers, and turning rabbitmq-c's
 * replies into Warren status codes plus a logged reason. Only the
 * supervisor process (loop.c) uses a connection, from one thread.
 */
#ifndef WR_CONN_H
#define WR_CONN_H

#include <amqp.h>
#include <stddef.h>

#include "../config/cfg.h"

/* Connect, log in and set timeouts. On failure *out is NULL and err says
 * why (host:port and the broker's or the library's words). */
int wr_conn_open(const wr_broker_cfg *b, amqp_connection_state_t *out,
                 char *err, size_t errlen);

/* Close politely (bounded by the RPC timeout) and free. NULL is allowed. */
void wr_conn_close(amqp_connection_state_t c);

/* Translate a reply. `what` names the operation for err. For a broker
 * exception the matching close-ok is sent, so the channel or connection
 * is cleanly closed afterwards. */
int wr_conn_reply(amqp_connection_state_t c, amqp_rpc_reply_t r,
                  const char *what, char *err, size_t errlen);

/* Declare exchanges, each handler's queues (work, retry, dead-letter;
 * passive first, so a queue an operator made is used as it is) and
 * bindings, on channel `ch`, which it opens and leaves open. */
int wr_conn_declare(amqp_connection_state_t c, const wr_cfg *cfg,
                    amqp_channel_t ch, char *err, size_t errlen);

/* Open channel ch, set basic.qos(prefetch, global=false) and consume. */
int wr_conn_consume(amqp_connection_state_t c, amqp_channel_t ch,
                    const wr_handler_cfg *h, const char *tag, char *err,
                    size_t errlen);

#endif
