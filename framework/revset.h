/*
 * The set of revoked job ids a Warren process keeps (docs/revoke.md): a
 * hash set of message ids, each with its own expiry, bounded to `cap`
 * ids, the oldest added evicted first when it is full. Pure data, no I/O
 * and no clock of its own: the caller passes the time (monotonic
 * seconds). Loop thread only.
 */
#ifndef WR_REVSET_H
#define WR_REVSET_H

#include <stddef.h>
#include <stdint.h>

#define WR_REVSET_MAX_ID 255 /* an AMQP message id is a short string */

typedef struct wr_revset_entry {
  double expires; /* monotonic seconds */
  uint32_t next;  /* next in its hash chain, + 1 (0: none) */
  uint32_t hash;  /* of the id */
  uint8_t len;    /* id length; 0: the slot is empty */
  char id[WR_REVSET_MAX_ID];
} wr_revset_entry;

typedef struct wr_revset {
  wr_revset_entry *e; /* a ring in the order ids were added */
  uint32_t *bucket;   /* entry index + 1 of a chain's first (0: none) */
  size_t cap, nbucket;
  size_t head;           /* oldest slot of the ring */
  size_t used;           /* slots from head on, empty ones (expired) included */
  size_t n;              /* ids in the set */
  unsigned long evicted; /* ids pushed out while not expired, so far */
} wr_revset;

/* An empty set for up to cap ids (1..1000000); memory is taken at the
 * first add. */
void wr_revset_init(wr_revset *s, size_t cap);
void wr_revset_free(wr_revset *s);

/* Add id[0..len) (1..WR_REVSET_MAX_ID bytes) until `expires`; an id
 * already there keeps the later of its two expiries. When the set is
 * full the oldest id goes (counted in `evicted`). 0, 1 when an id that
 * had not expired was evicted for it, -1 when the id is refused (empty,
 * too long) or memory is short. */
int wr_revset_add(wr_revset *s, const char *id, size_t len, double expires,
                  double now);

/* Is id[0..len) in the set and not expired at now? Free when empty. */
static inline int wr_revset_empty(const wr_revset *s) {
  return s->n == 0;
}
int wr_revset_has(const wr_revset *s, const char *id, size_t len, double now);

/* Drop every id expired at now. Returns how many went. */
size_t wr_revset_expire(wr_revset *s, double now);

#endif
