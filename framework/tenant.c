#include "tenant.h"

#include <stdlib.h>
#include <string.h>

#include <warren/status.h>

#include "field.h"
#include "utf8.h"

int wr_tenants_init(wr_tenants *t, const char *header, uint32_t limit,
                    uint32_t hold, uint32_t prefetch, uint32_t concurrency,
                    uint32_t cap) {
  *t = (wr_tenants){.on = 1,
                    .header = header,
                    .limit = limit ? limit : 1,
                    .hold = hold,
                    .prefetch = prefetch,
                    .concurrency = concurrency,
                    .tag = "",
                    .cap = cap ? cap : 1};
  t->nbucket = 16;
  while (t->nbucket < 2 * t->cap) t->nbucket *= 2;
  t->t = calloc(t->cap, sizeof *t->t);
  t->bucket = calloc(t->nbucket, sizeof *t->bucket);
  t->ring = calloc(t->cap, sizeof *t->ring);
  if (!t->t || !t->bucket || !t->ring) {
    wr_tenants_free(t);
    return WARREN_NOMEM;
  }
  for (uint32_t i = t->cap; i-- > 0;) {
    t->t[i].chain = t->free;
    t->free = i + 1;
  }
  return WARREN_OK;
}

void wr_tenants_free(wr_tenants *t) {
  for (uint32_t i = 0; t->t && i < t->cap; i++) free(t->t[i].key);
  free(t->t);
  free(t->bucket);
  free(t->ring);
  *t = (wr_tenants){0};
}

int wr_tenant_of(const amqp_basic_properties_t *p, const char *name,
                 amqp_bytes_t *out) {
  amqp_bytes_t v = wr_field_header_str(p, name);
  if (v.len < 1 || v.len > WR_TENANT_MAX_LEN || !wr_utf8_valid(v.bytes, v.len))
    return 0;
  *out = v;
  return 1;
}

static uint32_t hash_of(const void *p, size_t n) {
  const unsigned char *s = p;
  uint32_t h = 2166136261u; /* FNV-1a */
  for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 16777619u;
  return h;
}

/* The entry of tenant key (len bytes), made if needed: its index + 1, or
 * 0 when the table is full or out of memory. */
static uint32_t intern(wr_tenants *t, const void *key, size_t len) {
  uint32_t h = hash_of(key, len);
  uint32_t *b = &t->bucket[h & (t->nbucket - 1)];
  for (uint32_t k = *b; k; k = t->t[k - 1].chain) {
    const wr_tenant *e = &t->t[k - 1];
    if (e->hash == h && e->len == len && memcmp(e->key, key, len) == 0)
      return k;
  }
  uint32_t k = t->free;
  if (!k) return 0;
  wr_tenant *e = &t->t[k - 1];
  char *copy = malloc(len + 1);
  if (!copy) return 0;
  memcpy(copy, key, len);
  copy[len] = '\0';
  t->free = e->chain;
  /* ready stays as it is: set, the index is still on the ring, and
   * wr_tenants_ready looks at what the entry holds when it gets there. */
  *e = (wr_tenant){.key = copy,
                   .len = (uint32_t)len,
                   .hash = h,
                   .chain = *b,
                   .ready = e->ready};
  *b = k;
  t->n++;
  return k;
}

static void forget(wr_tenants *t, uint32_t k) {
  wr_tenant *e = &t->t[k - 1];
  uint32_t *p = &t->bucket[e->hash & (t->nbucket - 1)];
  while (*p != k) p = &t->t[*p - 1].chain;
  *p = e->chain;
  free(e->key);
  e->key = NULL;
  e->len = 0;
  e->chain = t->free;
  t->free = k;
  t->n--;
}

/* A tenant with a held job and room goes on the ready ring (once). */
static void check_ready(wr_tenants *t, uint32_t k) {
  wr_tenant *e = &t->t[k - 1];
  if (e->ready || !e->held.n || e->working >= t->limit) return;
  e->ready = 1;
  t->ring[(t->ring_at + t->ring_n++) % t->cap] = k;
}

/* Admitted: the tenant the job names, or the bucket "" of jobs without
 * one; a full table lets the job through without a tenant. */
static void admit(wr_tenants *t, wr_job *j) {
  amqp_bytes_t v = {0, ""};
  if (!wr_tenant_of(&j->env.message.properties, t->header, &v)) t->untagged++;
  j->tenant = intern(t, v.bytes, v.len);
  if (!j->tenant) {
    t->overflow++;
    return;
  }
  t->t[j->tenant - 1].refs++;
  /* The current consumer's deliveries fill the current window; those of
   * a consumer already cancelled do not (tenant.h). */
  size_t n = strlen(t->tag);
  const amqp_bytes_t *ct = &j->env.consumer_tag;
  j->window = ct->len == n && (!n || memcmp(ct->bytes, t->tag, n) == 0)
                  ? t->epoch
                  : t->epoch - 1;
}

static int lined(wr_job_state s) {
  return s == WR_JOB_WAITING || s == WR_JOB_HELD || s == WR_JOB_WORKING;
}

void wr_tenants_moved(void *ctx, wr_job *j, wr_job_state from,
                      wr_job_state to) {
  const wr_tenant_set *set = ctx;
  if (j->handler >= set->nh) return;
  wr_tenants *t = &set->h[j->handler];
  if (!t->on) return;
  if (from == WR_JOB_RECEIVED && to == WR_JOB_WAITING) admit(t, j);
  uint32_t k = j->tenant;
  if (!k) return;
  wr_tenant *e = &t->t[k - 1];
  if (from == WR_JOB_HELD) {
    wr_jobq_remove(&e->held, j);
    t->held--;
    if (j->window == t->epoch) t->held_window--;
  }
  if (to == WR_JOB_HELD) {
    wr_jobq_push(&e->held, j);
    t->held++;
    t->held_total++;
    if (j->window == t->epoch) t->held_window++;
  }
  if (from == WR_JOB_WORKING) e->working--;
  if (to == WR_JOB_WORKING) e->working++;
  if (!lined(to)) {
    /* Its attempt is over (or its delivery gone): it lets its tenant go. */
    j->tenant = 0;
    if (--e->refs == 0) {
      forget(t, k);
      return;
    }
  }
  check_ready(t, k);
}

int wr_tenants_may_run(const wr_tenants *t, const wr_job *j) {
  if (!j->tenant) return 1;
  const wr_tenant *e = &t->t[j->tenant - 1];
  return e->working < t->limit && e->held.n == 0;
}

wr_job *wr_tenants_ready(wr_tenants *t) {
  while (t->ring_n) {
    wr_tenant *e = &t->t[t->ring[t->ring_at] - 1];
    if (e->refs && e->held.n && e->working < t->limit) return e->held.head;
    e->ready = 0;
    t->ring_at = (t->ring_at + 1) % t->cap;
    t->ring_n--;
  }
  return NULL;
}

int wr_tenants_widen_wanted(const wr_tenants *t) {
  size_t half = t->prefetch / 2 ? t->prefetch / 2 : 1;
  return t->hold && t->held_window >= half;
}

int wr_tenants_widen_fits(const wr_tenants *t, size_t in_hand) {
  return in_hand <= (size_t)t->concurrency + t->hold;
}

uint32_t wr_tenants_widen(wr_tenants *t) {
  t->held_window = 0;
  t->widened++;
  return ++t->epoch;
}

static wr_job *first_from(const wr_tenants *t, uint32_t i) {
  for (; i < t->cap; i++)
    if (t->t[i].held.head) return t->t[i].held.head;
  return NULL;
}

wr_job *wr_tenants_held_first(const wr_tenants *t) {
  return t->on ? first_from(t, 0) : NULL;
}

wr_job *wr_tenants_held_next(const wr_tenants *t, const wr_job *j) {
  return j->next ? j->next : first_from(t, j->tenant);
}

const wr_tenant *wr_tenants_of_job(const wr_tenants *t, const wr_job *j) {
  return t->on && j->tenant ? &t->t[j->tenant - 1] : NULL;
}
