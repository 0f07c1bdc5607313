/*
 * Signing jobs for a Warren worker that requires signatures
 * (docs/signing.md has the scheme, so any language can implement it).
 *
 * warren_producer_open() with a key id and key signs every job it
 * publishes; warren_sign() is the lower-level call for callers that
 * publish with their own AMQP client: it computes the value of the one
 * header, WARREN_SIGNATURE_HEADER, that the job must carry.
 *
 * Thread-safe: no state is kept between calls. libwarren never logs or
 * prints the key.
 */
#ifndef WARREN_SIGN_H
#define WARREN_SIGN_H

#include <stddef.h>
#include <stdint.h>

#include <warren/status.h>

#ifdef __cplusplus
extern "C" {
#endif

/** The application header that carries a job's signature (a string). */
#define WARREN_SIGNATURE_HEADER "warren-signature"
/** Room for the header value with its NUL (the longest is 231 bytes). */
#define WARREN_SIGNATURE_MAX 256
/** Keys are at least this many bytes (a worker refuses shorter ones). */
#define WARREN_SIGN_MIN_KEY 32
/** At most this many bytes. */
#define WARREN_SIGN_MAX_KEY 1024
/** Key ids are 1..64 bytes of A-Z a-z 0-9 . _ - */
#define WARREN_SIGN_MAX_KEY_ID 64

/** What a signature binds: the job exactly as it will be published.
 *  NULL strings mean the property is not set (signed as ""). */
typedef struct warren_sign_input {
  uint32_t size;            /**< sizeof(warren_sign_input) */
  const char *key_id;       /**< required */
  const void *key;          /**< key_len bytes, read during the call */
  size_t key_len;           /**< WARREN_SIGN_MIN_KEY..WARREN_SIGN_MAX_KEY */
  int64_t time_ms;          /**< signing time, Unix ms; 0: now */
  const char *message_id;   /**< the message_id property */
  const char *exchange;     /**< "" for the default exchange */
  const char *routing_key;  /**< as published */
  const char *content_type; /**< the content_type property */
  const void *body;         /**< body_len bytes, read during the call */
  size_t body_len;
  /* Added with delayed jobs; read when size covers it. */
  /** A delayed job's not-before time, Unix ms (0: not delayed). Signed
   *  jobs sent through the delay levels must carry it, with exchange ""
   *  and routing_key the destination queue (docs/signing.md). */
  int64_t not_before_ms;
} warren_sign_input;

/**
 * Compute the value of the WARREN_SIGNATURE_HEADER header for a job.
 * @param in   the job and the key; read during the call only.
 * @param out  receives the NUL-terminated header value (caller's memory).
 * @param outlen  at least WARREN_SIGNATURE_MAX.
 * @return WARREN_OK; WARREN_INVALID for a bad key id, a key shorter than
 *         WARREN_SIGN_MIN_KEY or longer than WARREN_SIGN_MAX_KEY, a field
 *         over 255 bytes (AMQP's limit) or outlen too small; WARREN_NOMEM.
 */
WARREN_EXPORT int warren_sign(const warren_sign_input *in, char *out,
                              size_t outlen);

#ifdef __cplusplus
}
#endif
#endif /* WARREN_SIGN_H */
