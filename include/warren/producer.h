/*
 * libwarren producer: publish jobs that a Warren worker consumes.
 *
 * Every publish is mandatory and confirmed (publisher confirms): a job
 * counts as sent only once the broker has taken responsibility for it. A job
 * no queue is bound for comes back as WARREN_BROKER_NACK instead of
 * vanishing. warren_producer_call() publishes a job and waits for its
 * result (docs/results.md).
 *
 * Threading: a producer owns one AMQP connection and is not thread-safe;
 * use one producer per thread.
 */
#ifndef WARREN_PRODUCER_H
#define WARREN_PRODUCER_H

#include <stddef.h>
#include <stdint.h>

#include <warren/status.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct warren_producer warren_producer;

/** Where to connect. Strings are copied; NULL fields take the default. */
typedef struct warren_producer_opts {
  uint32_t size;        /**< sizeof(warren_producer_opts) */
  const char *host;     /**< default "127.0.0.1" */
  int port;             /**< default 5672 */
  const char *vhost;    /**< default "/" */
  const char *user;     /**< default "guest" */
  const char *password; /**< default "guest" */
  int heartbeat;        /**< seconds, default 30 */
  /** Optional, read when size covers it: on failure of
   *  warren_producer_open() the reason is written here (NUL-terminated,
   *  truncated to errlen). libwarren never prints. */
  char *errbuf;
  size_t errlen;
  /* Fields below were added with signing and TLS; read when size covers
   * them. Strings and the key are read during warren_producer_open only
   * (the key is copied, kept in the producer and wiped when it closes). */
  int tls;                 /**< 1: connect with TLS (port default 5671) */
  const char *ca_file;     /**< PEM CAs the broker's certificate must chain
                                to; NULL: the system's bundle */
  const char *cert_file;   /**< PEM client certificate (mTLS), with key_file */
  const char *key_file;    /**< its private key */
  int no_verify_peer;      /**< 1: accept any broker certificate (tests only) */
  int no_verify_hostname;  /**< 1: do not match the name against host */
  const char *sign_key_id; /**< non-NULL: sign every job (warren/sign.h) */
  const void *sign_key;    /**< sign_key_len bytes */
  size_t sign_key_len;     /**< WARREN_SIGN_MIN_KEY..WARREN_SIGN_MAX_KEY */
  /* Added with clusters; read when size covers them. */
  /** n_nodes nodes of a cluster, each "host", "host:port", "[v6]:port" or
   *  an amqp:// URI of which host and port are used (the port defaults to
   *  `port`, or 5672/5671). Tried in a random order until one connects;
   *  host is then ignored. Read during warren_producer_open only. A lost
   *  connection is not re-established: open a new producer. */
  const char *const *nodes;
  size_t n_nodes; /**< 0: connect to host */
} warren_producer_opts;

/** One extra string header on a job. */
typedef struct warren_header_kv {
  const char *name;
  const char *value;
} warren_header_kv;

/** Length of a W3C traceparent (version 00) without its NUL. */
#define WARREN_TRACEPARENT_LEN 55

/** Per-job properties; every field optional (NULL/0). */
typedef struct warren_publish_opts {
  uint32_t size; /**< sizeof(warren_publish_opts) */
  const char *message_id;
  const char *correlation_id;
  const char *content_type;
  /** Read during the call only. A header named traceparent or tracestate
   *  (any case) is taken as the option of that name below. */
  const warren_header_kv *headers; /**< n_headers entries */
  size_t n_headers;
  int transient; /**< 1: delivery_mode 1 (default persistent) */
  /* Fields below were added with tracing; read when size covers them.
   * Every job carries a W3C `traceparent` header (docs/producing.md). */
  /** The job's parent context, read during the call only: the job carries
   *  exactly this value (a W3C traceparent of at most
   *  WARREN_TRACEPARENT_LEN characters, lower-case hex). NULL: a new trace
   *  (new trace id and span id, sampled). Invalid: WARREN_INVALID. */
  const char *traceparent;
  /** W3C tracestate sent beside the traceparent (read during the call
   *  only); needs a given traceparent. NULL or "": none. Invalid:
   *  WARREN_INVALID. */
  const char *tracestate;
  /** NULL, or a caller-owned buffer of at least WARREN_TRACEPARENT_LEN + 1
   *  bytes that receives the traceparent the job carries (NUL-terminated)
   *  when the job was written: on a return of 0 or WARREN_BROKER_NACK;
   *  untouched otherwise. */
  char *traceparent_out;
  /* Fields below were added with delayed jobs; read when size covers
   * them (docs/delays.md). A delayed job waits in the delay levels the
   * worker declares (a handler with `delayed = true`) and is delivered
   * to the queue named by routing_key: exchange must then be NULL or "".
   * It carries a `warren-not-before` header (Unix ms), and with a signing
   * key its signature binds that time. */
  /** Run it no earlier than this many ms from now (whole seconds, rounded
   *  up; at most WARREN_DELAY_MAX_S). 0: at once. */
  int64_t delay_ms;
  /** Or not before this time, Unix ms, by this host's clock. In the past:
   *  at once. Giving both is WARREN_INVALID. */
  int64_t not_before_ms;
  /** The delay levels' names prefix, as the worker's delays.prefix (read
   *  during the call only); NULL: "warren.delay". */
  const char *delay_prefix;
  /* Added with results; read when size covers it. */
  /** The job's `reply_to` (read during the call only): the queue its
   *  result goes to (docs/results.md), at most 255 bytes. NULL: none.
   *  warren_producer_call() sets it itself and refuses one given here. */
  const char *reply_to;
  /* Added with priorities; read when size covers it. */
  /** The job's AMQP `priority`, 0..255. A work queue declared with
   *  x-max-priority (the handler's max_priority) delivers a higher one
   *  first; Warren's retry and dead-letter copies and replays keep it
   *  (docs/producing.md, "Priorities"). 0: no priority property (the
   *  broker counts it as 0). Outside 0..255: WARREN_INVALID, nothing
   *  published. */
  int priority;
} warren_publish_opts;

/** The longest delay, in seconds: 2^28 - 1 (about 8.5 years). */
#define WARREN_DELAY_MAX_S 268435455

/**
 * Connect and enable publisher confirms.
 * @param opts  read during the call only; may be NULL for all defaults.
 * @param out   receives the producer, owned by the caller; free it with
 *              warren_producer_close(). Untouched on error.
 * @return 0 or a negative warren_status.
 */
WARREN_EXPORT int warren_producer_open(const warren_producer_opts *opts,
                                       warren_producer **out);

/**
 * Publish one job. With a signing key (warren_producer_opts.sign_key_id)
 * it carries a WARREN_SIGNATURE_HEADER over exactly what is published,
 * signed now; a header of that name in opts->headers is refused
 * (WARREN_INVALID). Returns once it is written; the confirm is awaited by
 * warren_producer_flush(), or here when too many are outstanding.
 *
 * Tracing: the job carries a `traceparent` header (and `tracestate` when
 * one is given), from opts->traceparent / opts->tracestate or from a header
 * of that name in opts->headers (matched in any case, sent once, under
 * the lower-case name), else a new trace. Giving one both as an option
 * and as a header, two headers of one name, a tracestate without a
 * traceparent, or a value that is not valid W3C is WARREN_INVALID, and
 * warren_producer_error() names the problem; nothing is published then.
 *
 * @param p            the producer; used by one thread at a time.
 * @param exchange     NULL or "": the default exchange. Read during the
 *                     call only, as are routing_key and body.
 * @param opts         NULL for all defaults; read during the call only,
 *                     except that opts->traceparent_out is written.
 * @return 0 or a negative warren_status (WARREN_BROKER_NACK when the broker
 *         refused or could not route a job published so far).
 */
WARREN_EXPORT int warren_producer_publish(warren_producer *p,
                                          const char *exchange,
                                          const char *routing_key,
                                          const void *body, size_t len,
                                          const warren_publish_opts *opts);

/** Wait until every job published so far is confirmed. 0 or an error. */
WARREN_EXPORT int warren_producer_flush(warren_producer *p, int timeout_ms);

/**
 * Why the last call on p failed: the broker's or the library's words.
 * @return a NUL-terminated string owned by p, valid until the next call on
 *         p; "" when nothing failed.
 */
WARREN_EXPORT const char *warren_producer_error(const warren_producer *p);

/** How a job ended, as its result says (warren_reply.outcome). */
typedef enum warren_outcome {
  WARREN_OUTCOME_ACK = 0,           /**< the handler acked it */
  WARREN_OUTCOME_DEAD_LETTERED = 1, /**< it failed for good (reason, error) */
  WARREN_OUTCOME_UNKNOWN = 2,       /**< a reply without Warren's header */
} warren_outcome;

/**
 * A job's result, filled by warren_producer_call(). The caller owns the
 * struct; the strings and body are malloc'd by libwarren and owned by the
 * struct until warren_reply_free(). Every string is NUL-terminated and ""
 * when absent; the body has a NUL after it too (not counted in body_len).
 */
typedef struct warren_reply {
  uint32_t size;        /**< sizeof(warren_reply), set by the caller */
  void *body;           /**< the result (dead-lettered: Warren's JSON) */
  size_t body_len;      /**< bytes of body */
  char *content_type;   /**< the result's content type */
  char *correlation_id; /**< the request's (given or generated) */
  warren_outcome outcome;
  char *reason;      /**< dead-lettered: rejected, max-attempts, crashed, ... */
  char *error;       /**< dead-lettered: the last error text */
  uint32_t attempts; /**< dead-lettered: attempts made; else 0 */
} warren_reply;

/**
 * Publish a job and wait for its result (request-response), through
 * RabbitMQ's direct reply-to: the producer consumes the pseudo-queue
 * `amq.rabbitmq.reply-to` on its channel (once, at the first call),
 * publishes the job with reply_to set to it and a correlation id
 * (opts->correlation_id, or 32 random hex digits), and reads replies until
 * one carries that correlation id; others (a timed-out call's late
 * result) are dropped. Jobs published before are flushed first.
 *
 * A retried attempt sends nothing: the result comes when the job is acked
 * or dead-lettered, so timeout_ms must cover the retries the caller is
 * prepared to wait for. A job dead-lettered answers with outcome
 * WARREN_OUTCOME_DEAD_LETTERED, reason and error set.
 *
 * @param p          the producer; used by one thread at a time.
 * @param exchange, routing_key, body, len, opts  as warren_producer_publish;
 *                   opts->reply_to must be NULL.
 * @param timeout_ms how long to wait for the result, > 0.
 * @param out        the caller's, with out->size set; filled on WARREN_OK
 *                   (free its members with warren_reply_free), zeroed but
 *                   for size otherwise.
 * @return WARREN_OK when a result came (whatever its outcome);
 *         WARREN_NO_REPLY when none came in timeout_ms (the job may
 *         still run; its result is then dropped); WARREN_BROKER_NACK when
 *         the broker refused the job or could not route it;
 *         WARREN_INVALID; or another negative warren_status.
 */
WARREN_EXPORT int warren_producer_call(warren_producer *p, const char *exchange,
                                       const char *routing_key,
                                       const void *body, size_t len,
                                       const warren_publish_opts *opts,
                                       int timeout_ms, warren_reply *out);

/** Free what warren_producer_call put in r (not r itself) and zero it,
 *  keeping r->size. NULL is allowed. */
WARREN_EXPORT void warren_reply_free(warren_reply *r);

/** Flush (up to 10 s), close and free. NULL is allowed. */
WARREN_EXPORT int warren_producer_close(warren_producer *p);

#ifdef __cplusplus
}
#endif
#endif /* WARREN_PRODUCER_H */
