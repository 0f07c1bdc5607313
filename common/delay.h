/*
 * Delayed jobs without a broker plugin (docs/delays.md): a cascade of
 * WR_DELAY_LEVELS topic exchanges and queues. Level n's queue holds a
 * message 2^n seconds; the delay's bits are the first WR_DELAY_LEVELS
 * words of the routing key, most significant first, and the destination
 * queue follows them. Each level sends a message whose bit is 1 to its
 * queue and one whose bit is 0 straight on to the next level's exchange;
 * a queue dead-letters into the next level's exchange when its TTL is up.
 * After level 0 comes the delivery exchange, to which each delayed
 * handler's queue is bound by its own name.
 *
 * Pure functions over names and routing keys, shared by the worker,
 * libwarren and the tools; the declarations are in topology.c.
 */
#ifndef WR_DELAY_H
#define WR_DELAY_H

#include <stddef.h>
#include <stdint.h>

#define WR_DELAY_LEVELS 28
#define WR_DELAY_MAX_S ((INT64_C(1) << WR_DELAY_LEVELS) - 1) /* 8.5 years */
#define WR_DELAY_PREFIX "warren.delay" /* names' default prefix */
#define WR_DELAY_MAX_PREFIX 100
/* The routing key's bits: "0." or "1." per level. */
#define WR_DELAY_BITS_LEN (2 * WR_DELAY_LEVELS)
/* Int header, Unix ms: the job is not to run before then (informational;
 * a signature binds its own copy, docs/signing.md). */
#define WR_DELAY_HEADER "warren-not-before"

/* Whole seconds a delay of ms waits in the cascade: rounded up, so a job
 * never arrives before its time. 0 for ms <= 0. */
int64_t wr_delay_seconds(int64_t ms);

/* The routing key for a delay of `seconds` (1..WR_DELAY_MAX_S) to queue:
 * the bits, then the queue. Returns its length, or 0 when it does not fit
 * len or AMQP's 255 bytes, or seconds is out of range. */
size_t wr_delay_routing_key(int64_t seconds, const char *queue, char *buf,
                            size_t len);

/* Names: level n's exchange and queue ("<prefix>.<n>"), the entry
 * exchange producers publish to (the top level), the delivery exchange
 * ("<prefix>.deliver") and the exchange and queue of delayed jobs no
 * queue took ("<prefix>.unrouted"). Each returns buf. */
char *wr_delay_level(const char *prefix, int n, char *buf, size_t len);
char *wr_delay_entry(const char *prefix, char *buf, size_t len);
char *wr_delay_deliver(const char *prefix, char *buf, size_t len);
char *wr_delay_unrouted(const char *prefix, char *buf, size_t len);

/* The binding key of a queue on the delivery exchange: one "*" per
 * level, then the queue's name, so it takes exactly the jobs addressed to
 * it. Its length, or 0 when it does not fit. */
size_t wr_delay_binding(const char *queue, char *buf, size_t len);

/* Can queue be a delayed job's destination? Not when its name holds a
 * topic wildcard or would make the routing key pass 255 bytes. */
int wr_delay_queue_ok(const char *queue);

/* A routing key of the levels: the bits, then a destination. Returns 1
 * and the destination (a pointer into rk), else 0. */
int wr_delay_split(const void *rk, size_t rklen, const char **dest,
                   size_t *destlen);

/* A delivery that came through the cascade: its exchange is one of
 * prefix's and its routing key is bits then a destination. Returns 1 and
 * the destination (a pointer into rk), else 0. */
int wr_delay_destination(const char *prefix, const void *exchange, size_t exlen,
                         const void *rk, size_t rklen, const char **dest,
                         size_t *destlen);

#endif
