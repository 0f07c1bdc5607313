/*
 * The supervisor's broker session: connecting (with the one jittered
 * backoff), losing the connection, the connection generation, and reading
 * frames: deliveries and the broker methods that are not replies.
 * Everything that follows from them is the owner's, through
 * wr_session_events. Loop thread only, but for the connection set-up,
 * which runs on a thread of its own (session.c) and calls `setup` there.
 *
 * A session is two AMQP connections to the same node, made and lost
 * together: one consumes, acks and declares; the other only publishes
 * (retry and dead-letter copies, follow-ups, results) on its confirm
 * channel. A resource alarm makes RabbitMQ stop reading connections that
 * publish; connections that only consume go on, so acks and jobs that
 * publish nothing keep flowing during an alarm (Spring AMQP's publisher
 * connection does the same). The publishing connection advertises
 * connection.blocked; while the broker says it is blocked, the session
 * is `blocked` (readiness says so). Losing either connection loses both:
 * the originals of unconfirmed copies are unacked on the consuming one,
 * so the broker requeues them (docs/threading.md).
 */
#ifndef WR_SESSION_H
#define WR_SESSION_H

#include <amqp.h>
#include <stddef.h>
#include <stdint.h>

#include "backoff.h"
#include "conn.h"
#include "deliver.h"
#include "job.h"
#include "loop.h"

typedef struct wr_session_events {
  /* On the loop thread, just before a set-up starts: fix what `setup`
   * will read, which nothing may change until `connected` or `lost`. */
  void (*plan)(void *ctx);
  /* A fresh consuming connection is logged in (the publishing one is
   * ready): declare what is needed, open the channels and consumers.
   * Runs on the set-up's own thread (session.c): it may read only the
   * configuration and what `plan` fixed. Non-zero (with err set)
   * abandons both. */
  int (*setup)(void *ctx, amqp_connection_state_t c, char *err, size_t errlen);
  void (*connected)(void *ctx);
  /* The connection is gone; every tag of it is void (the broker requeues
   * what was not acked). */
  void (*lost)(void *ctx);
  /* The slot the next delivery is read into (not taken yet), or NULL. */
  wr_job *(*slot)(void *ctx);
  /* Storage for the body of the delivery being read into env (a slot's),
   * and its release if the delivery cannot be completed (deliver.h). */
  void *(*body)(void *ctx, amqp_envelope_t *env, size_t len);
  void (*release)(void *ctx, amqp_envelope_t *env);
  /* That slot was filled by a delivery: take it. */
  void (*delivery)(void *ctx, wr_job *job);
  /* A delivery whose content header rabbitmq-c cannot decode (e.g. a
   * header with an empty key, which the broker accepts): only its channel
   * and tag are known. The connection stays usable. */
  void (*undecodable)(void *ctx, amqp_channel_t ch, uint64_t tag,
                      const char *why);
  /* A confirm, nack or return on the publishing channel. */
  void (*published)(void *ctx, const wr_pub_event *ev);
  /* The broker cancelled the consumer on channel ch (the queue was
   * deleted, its leader moved, consumer_timeout): the channel and its
   * unacked deliveries stay; the owner consumes again. Not while
   * draining. */
  void (*cancelled)(void *ctx, amqp_channel_t ch);
  /* Name of what uses channel ch, for logs. */
  const char *(*channel_name)(void *ctx, amqp_channel_t ch);
} wr_session_events;

#define WR_SESSION_MAX_NODES WR_CONN_MAX_NODES

/* A connection set-up under way (session.c). */
typedef struct wr_setup wr_setup;

typedef struct wr_session {
  const wr_conn_params *params;
  /* A cluster's nodes (params->nodes) in this process's own shuffled
   * order, so a fleet spreads over them; `node` is the one to try next
   * (or connected to). */
  uint8_t order[WR_SESSION_MAX_NODES];
  size_t node;
  wr_conn_params cur; /* params with the node's host and port */
  /* Connecting runs on a thread of its own while the loop goes on; NULL
   * when no set-up is under way. */
  wr_setup *setup;
  amqp_connection_state_t conn; /* NULL while disconnected */
  int sock;
  amqp_connection_state_t pconn; /* publishing; set whenever conn is */
  int psock;
  int preadable;         /* its socket polled readable this turn */
  int blocked;           /* the broker blocked the publishing connection */
  double blocked_since;  /* monotonic seconds, while blocked */
  char blocked_why[128]; /* the broker's reason ("low on memory") */
  double blocked_s;      /* seconds blocked in all, ended episodes */
  uint64_t blocked_n;    /* connection.blocked received in all */
  uint64_t gen;          /* bumped per connection: older tags are void */
  amqp_channel_t pub_ch; /* confirmed publishing */
  uint64_t pub_seq;      /* confirm sequence of the last publish */
  wr_backoff backoff;
  double next_connect;    /* when to try again, while disconnected */
  double next_service;    /* next forced read (heartbeats) */
  int readable;           /* the socket polled readable this turn */
  int draining;           /* no reconnecting; cancels are expected */
  int max_refused_logins; /* give up after this many in a row; 0: never */
  int refused_logins;     /* in a row, so far */
  int gave_up;            /* the owner should stop: the login is refused */
  wr_deliver_store store; /* the events' body and release */
  wr_loop *loop;
  const wr_session_events *ev;
  void *ctx;
} wr_session;

void wr_session_init(wr_session *s, const wr_conn_params *p,
                     amqp_channel_t pub_ch, double backoff_min,
                     double backoff_max, wr_loop *loop,
                     const wr_session_events *ev, void *ctx);
/* The index in params->nodes of the node to try now (0 without nodes):
 * the session's shuffled order, every node once per round. */
size_t wr_session_node_index(const wr_session *s);

/* Before the loop polls: connect when due. Returns when the session next
 * needs a turn (now, if input is already buffered). */
double wr_session_prepare(wr_session *s, double now);
/* After the poll: read what arrived (and service heartbeats). */
void wr_session_check(wr_session *s, double now);

/* Frames already read and not handled yet: the loop must not sleep. */
int wr_session_buffered(const wr_session *s);

/* Drop the connection (polite: close it cleanly) and plan a reconnect. */
void wr_session_lost(wr_session *s, const char *why, int polite);

/* Each returns 0, or -1 after the connection was lost. */
int wr_session_ack(wr_session *s, amqp_channel_t ch, uint64_t tag,
                   int multiple);
int wr_session_nack(wr_session *s, amqp_channel_t ch, uint64_t tag,
                    int requeue);
int wr_session_cancel(wr_session *s, amqp_channel_t ch, const char *tag);

/* Publish mandatory on the confirm channel of the publishing connection.
 * Returns its confirm sequence (wr_session_next_seq() before the call),
 * or 0 after the connection was lost. */
uint64_t wr_session_publish(wr_session *s, const char *exchange,
                            const char *routing_key,
                            const amqp_basic_properties_t *props,
                            amqp_bytes_t body);

/* The same, mandatory or not: a job's result to RabbitMQ's direct
 * reply-to is delivered but routed to no queue, so a mandatory one would
 * come back (results.md). */
uint64_t wr_session_publish_ex(wr_session *s, const char *exchange,
                               const char *routing_key,
                               const amqp_basic_properties_t *props,
                               amqp_bytes_t body, int mandatory);

/* Publish on channel ch, not mandatory and not confirmed: what the
 * broker may refuse by closing the connection (a direct reply-to name
 * it cannot decode) goes this way, after the job's ack on the same
 * channel, which the broker then has handled first. 0, or -1 after the
 * connection was lost. */
int wr_session_send(wr_session *s, amqp_channel_t ch, const char *exchange,
                    const char *routing_key,
                    const amqp_basic_properties_t *props, amqp_bytes_t body);

/* The sequence the next publish will get. */
static inline uint64_t wr_session_next_seq(const wr_session *s) {
  return s->pub_seq + 1;
}

/* Seconds blocked in all by now, the episode under way included. */
double wr_session_blocked_s(const wr_session *s, double now);

/* Close cleanly at the end. */
void wr_session_close(wr_session *s);

#endif
