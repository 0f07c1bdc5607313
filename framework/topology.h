/*
 * The worker's topology on the broker: exchanges, each handler's queues
 * (work, retry, dead-letter; names in retry.h) and bindings, and its
 * consumers. Declared passive first, so a queue an operator made is used
 * as it is (arguments cannot change on redeclare).
 */
#ifndef WR_TOPOLOGY_H
#define WR_TOPOLOGY_H

#include <amqp.h>
#include <stddef.h>

#include "../config/cfg.h"

/* Declare everything cfg names, on channel ch, which it opens and leaves
 * open. */
int wr_topology_declare(amqp_connection_state_t c, const wr_cfg *cfg,
                        amqp_channel_t ch, char *err, size_t errlen);

/* Whether exchange `name` exists, asked passively on channel ch, which it
 * opens and closes again: 1 yes, 0 no (the broker closed ch: NOT_FOUND),
 * or a negative warren_status with err set. For names a handler chose: a
 * publish to a missing exchange would close the publishing channel. */
int wr_topology_exchange_exists(amqp_connection_state_t c, amqp_channel_t ch,
                                const char *name, char *err, size_t errlen);

/* Messages ready in queue `name`, asked passively on channel ch, which it
 * opens and closes again. 0 and *ready, or a negative warren_status with
 * err set (a missing queue closes ch: WARREN_BROKER_CLOSED). */
int wr_topology_queue_ready(amqp_connection_state_t c, amqp_channel_t ch,
                            const char *name, uint32_t *ready, char *err,
                            size_t errlen);

/* basic.consume again on ch, still open, after the broker cancelled the
 * consumer (its qos stays). A missing queue closes ch. */
int wr_topology_resume(amqp_connection_state_t c, amqp_channel_t ch,
                       const wr_handler_cfg *h, const char *tag, char *err,
                       size_t errlen);

/* basic.qos(prefetch, global=false) on ch, still open: RabbitMQ applies
 * it to the consumers started on ch from now on, not to one already
 * consuming. */
int wr_topology_qos(amqp_connection_state_t c, amqp_channel_t ch,
                    const wr_handler_cfg *h, int prefetch, char *err,
                    size_t errlen);

/* Open channel ch, set basic.qos(prefetch, global=false) and consume;
 * prefetch 0: open the channel only, consume nothing (the handler's
 * circuit breaker is open: breaker.h). */
int wr_topology_consume(amqp_connection_state_t c, amqp_channel_t ch,
                        const wr_handler_cfg *h, int prefetch, const char *tag,
                        char *err, size_t errlen);

#endif
