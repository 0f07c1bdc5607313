/*
 * Names in reply_to that Warren may publish a job's result to
 * (docs/results.md). A name under RabbitMQ's direct reply-to prefix is
 * decoded by the broker into the caller's channel process; RabbitMQ 3.10
 * closes the publisher's whole connection (541 INTERNAL_ERROR) on one it
 * cannot decode, which would lose every unacked job and, since the job
 * runs again and answers again, loop. Such a name never leaves Warren.
 */
#ifndef WR_REPLYTO_H
#define WR_REPLYTO_H

#include <stddef.h>

#define WR_REPLYTO_DIRECT "amq.rabbitmq.reply-to"

/* Whether name (len bytes) is the direct reply-to pseudo-queue or a name
 * under it. */
int wr_replyto_is_direct(const char *name, size_t len);

/* Whether a result may be published to name: any queue name, or a direct
 * reply-to name as the broker makes them,
 * "amq.rabbitmq.reply-to.<PID>.<KEY>", PID the base64 of an Erlang
 * external-term pid (131, NEW_PID_EXT or PID_EXT, an atom node name,
 * its numbers; nothing after), KEY base64. The bare pseudo-queue name is
 * refused too (only a consumer's own channel may publish to it). */
int wr_replyto_ok(const char *name, size_t len);

#endif
