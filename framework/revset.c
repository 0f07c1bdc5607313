#include "revset.h"

#include <stdlib.h>
#include <string.h>

void wr_revset_init(wr_revset *s, size_t cap) {
  memset(s, 0, sizeof *s);
  s->cap = cap < 1 ? 1 : cap > 1000000 ? 1000000 : cap;
}

void wr_revset_free(wr_revset *s) {
  free(s->e);
  free(s->bucket);
  size_t cap = s->cap;
  wr_revset_init(s, cap);
}

static uint32_t hash_of(const char *id, size_t len) {
  uint32_t h = 2166136261u; /* FNV-1a */
  for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)id[i]) * 16777619u;
  return h;
}

/* Index of id's entry, or -1. */
static long find(const wr_revset *s, const char *id, size_t len, uint32_t h) {
  if (!s->bucket) return -1;
  for (uint32_t k = s->bucket[h & (s->nbucket - 1)]; k; k = s->e[k - 1].next) {
    const wr_revset_entry *e = &s->e[k - 1];
    if (e->hash == h && e->len == len && memcmp(e->id, id, len) == 0)
      return (long)k - 1;
  }
  return -1;
}

/* Empty slot i: out of its chain, and no longer counted. */
static void drop(wr_revset *s, size_t i) {
  wr_revset_entry *e = &s->e[i];
  uint32_t *link = &s->bucket[e->hash & (s->nbucket - 1)];
  while (*link != i + 1) link = &s->e[*link - 1].next;
  *link = e->next;
  e->len = 0;
  e->next = 0;
  s->n--;
}

/* The ring starts at its oldest id: empty slots at the head are free. */
static void trim(wr_revset *s) {
  while (s->used && s->e[s->head].len == 0) {
    s->head = (s->head + 1) % s->cap;
    s->used--;
  }
}

int wr_revset_has(const wr_revset *s, const char *id, size_t len, double now) {
  if (!s->n || len == 0 || len > WR_REVSET_MAX_ID) return 0;
  long i = find(s, id, len, hash_of(id, len));
  return i >= 0 && s->e[i].expires > now;
}

size_t wr_revset_expire(wr_revset *s, double now) {
  size_t gone = 0;
  for (size_t k = 0; k < s->used && s->n; k++) {
    size_t i = (s->head + k) % s->cap;
    if (s->e[i].len && s->e[i].expires <= now) {
      drop(s, i);
      gone++;
    }
  }
  trim(s);
  return gone;
}

/* Close the gaps expired ids left in the ring, keeping the order: each
 * live entry moves back (never past one not yet moved), then the chains
 * are rebuilt. */
static void compact(wr_revset *s) {
  size_t w = 0;
  for (size_t k = 0; k < s->used; k++) {
    size_t from = (s->head + k) % s->cap, to = (s->head + w) % s->cap;
    if (!s->e[from].len) continue;
    if (from != to) {
      s->e[to] = s->e[from];
      s->e[from].len = 0;
    }
    w++;
  }
  s->used = w;
  memset(s->bucket, 0, s->nbucket * sizeof *s->bucket);
  for (size_t k = 0; k < w; k++) {
    size_t i = (s->head + k) % s->cap;
    uint32_t *b = &s->bucket[s->e[i].hash & (s->nbucket - 1)];
    s->e[i].next = *b;
    *b = (uint32_t)i + 1;
  }
}

int wr_revset_add(wr_revset *s, const char *id, size_t len, double expires,
                  double now) {
  if (len == 0 || len > WR_REVSET_MAX_ID) return -1;
  if (!s->e) {
    size_t nb = 16;
    while (nb < 2 * s->cap) nb *= 2;
    s->e = calloc(s->cap, sizeof *s->e);
    s->bucket = calloc(nb, sizeof *s->bucket);
    if (!s->e || !s->bucket) {
      wr_revset_free(s);
      return -1;
    }
    s->nbucket = nb;
  }
  uint32_t h = hash_of(id, len);
  long at = find(s, id, len, h);
  if (at >= 0) {
    if (s->e[at].expires <= now || expires > s->e[at].expires)
      s->e[at].expires = expires;
    return 0;
  }
  int rc = 0;
  if (s->used == s->cap) wr_revset_expire(s, now);
  if (s->used == s->cap && s->n < s->cap) compact(s);
  if (s->used == s->cap) { /* full of live ids: the oldest goes */
    drop(s, s->head);
    s->evicted++;
    rc = 1;
    trim(s);
  }
  size_t i = (s->head + s->used++) % s->cap;
  wr_revset_entry *e = &s->e[i];
  memcpy(e->id, id, len);
  e->len = (uint8_t)len;
  e->hash = h;
  e->expires = expires;
  uint32_t *b = &s->bucket[h & (s->nbucket - 1)];
  e->next = *b;
  *b = (uint32_t)i + 1;
  s->n++;
  return rc;
}
