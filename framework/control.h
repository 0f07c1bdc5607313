/*
 * Control messages (docs/revoke.md): what `warren revoke` publishes to
 * the control exchange and every Warren process reads. One JSON object
 * per message; this file is its one definition, used by both ends.
 *
 *   {"type":"revoke","ids":["job-1","job-2"],"expires":3600,
 *    "terminate":false,"sent_at":1764100000.25}
 *
 * Optionally signed (when the worker has a signing keyring it requires
 * it): the header WR_CONTROL_SIG_HEADER holds "<key id>:<hex>", hex being
 * the lowercase HMAC-SHA256 of the body under that key.
 */
#ifndef WR_CONTROL_H
#define WR_CONTROL_H

#include <stddef.h>

#include "keyring.h"

#define WR_CONTROL_EXCHANGE "warren.control" /* durable fanout */
#define WR_CONTROL_SIG_HEADER "warren-control-signature"
#define WR_CONTROL_MAX_BODY (2 * 1024 * 1024) /* bytes; larger is refused */
#define WR_CONTROL_MAX_IDS 1000               /* per message */
#define WR_CONTROL_MAX_ID 255                 /* bytes (AMQP short string) */
#define WR_CONTROL_DEFAULT_EXPIRES 3600.0     /* seconds */
#define WR_CONTROL_MAX_EXPIRES 604800.0       /* 7 days; more is capped */
/* "<key id>:" and 64 hex digits, NUL included */
#define WR_CONTROL_SIG_MAX (256 + 1 + 64 + 1)

typedef enum wr_control_kind {
  WR_CONTROL_REVOKE = 0,
  WR_CONTROL_UNKNOWN, /* a well-formed message of another type: ignored */
} wr_control_kind;

typedef struct wr_control_msg {
  wr_control_kind kind;
  const char *ids[WR_CONTROL_MAX_IDS]; /* into the parsed tree */
  size_t id_len[WR_CONTROL_MAX_IDS];
  size_t n;
  double expires; /* seconds, 1..WR_CONTROL_MAX_EXPIRES */
  int capped;     /* expires was over the maximum and was capped */
  int terminate;  /* stop the job where it runs */
  double sent_at; /* unix seconds; 0: not given */
  char type[32];  /* of an unknown message, for the log */
  void *tree;     /* owned (cJSON) */
} wr_control_msg;

/* Parse and validate body[0..len). 0, or -1 with err saying what is
 * wrong (the message is then to be ignored; nothing is allocated). Free
 * a parsed message with wr_control_free. */
int wr_control_parse(const void *body, size_t len, wr_control_msg *m, char *err,
                     size_t errlen);
void wr_control_free(wr_control_msg *m);

/* The body of a revoke of ids[0..n), malloc'd and NUL-terminated (its
 * length in *len), or NULL when out of memory. */
char *wr_control_build_revoke(const char *const *ids, size_t n, double expires,
                              int terminate, double sent_at, size_t *len);

/* Sign body[0..len) with key_id of ring into out ("<id>:<hex>").
 * 0, or -1 (no such key). */
int wr_control_sign(const wr_keyring *ring, const char *key_id,
                    const void *body, size_t len, char out[WR_CONTROL_SIG_MAX]);

/* Check sig[0..siglen) (the header's value) over body under ring: 0, or
 * -1 with err saying why (malformed, unknown key, wrong signature). */
int wr_control_verify(const wr_keyring *ring, const char *sig, size_t siglen,
                      const void *body, size_t len, char *err, size_t errlen);

#endif
