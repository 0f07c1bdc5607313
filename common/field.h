/*
 * Reading a message's application headers by name: the one lookup the
 * worker, libwarren and the tools share (headers.h flattens whole tables
 * for handlers; this reads single values).
 */
#ifndef WR_FIELD_H
#define WR_FIELD_H

#include <amqp.h>
#include <stdint.h>

/* If v is an AMQP integer of any width (a timestamp too): 1 and *out set
 * (a U64 above INT64_MAX wraps); else 0. */
int wr_field_int(const amqp_field_value_t *v, int64_t *out);

/* The first header named key whose value is a string (long string or
 * byte array): its bytes, pointing into p. Absent: length 0, bytes "". */
amqp_bytes_t wr_field_header_str(const amqp_basic_properties_t *p,
                                 const char *key);

/* The first header named key whose value is an integer: 1 and *out set;
 * else 0 and *out untouched. */
int wr_field_header_int(const amqp_basic_properties_t *p, const char *key,
                        int64_t *out);

#endif
