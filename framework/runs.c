#include "runs.h"

#include <string.h>

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
  return h;
}

uint64_t wr_runs_key(size_t h, const amqp_basic_properties_t *p,
                     amqp_bytes_t body, uint32_t recorded) {
  uint64_t k = 14695981039346656037ull;
  uint64_t hh = h;
  k = fnv(k, &hh, sizeof hh);
  k = fnv(k, &recorded, sizeof recorded);
  if ((p->_flags & AMQP_BASIC_MESSAGE_ID_FLAG) && p->message_id.len)
    return fnv(fnv(k, "i", 1), p->message_id.bytes, p->message_id.len);
  return fnv(fnv(k, "b", 1), body.bytes, body.len);
}

static size_t find(const wr_runs *r, uint64_t key) {
  for (size_t i = 0; i < WR_RUNS_MAX; i++)
    if ((r->runs[i] || r->waited[i]) && r->key[i] == key) return i;
  return WR_RUNS_MAX;
}

void wr_runs_note(wr_runs *r, uint64_t key, uint32_t runs, uint32_t waited) {
  size_t i = find(r, key);
  if (i == WR_RUNS_MAX) {
    if (!runs && !waited) return;
    i = r->next;
    r->next = (r->next + 1) % WR_RUNS_MAX;
  }
  r->key[i] = key;
  r->runs[i] = runs;
  r->waited[i] = waited;
}

uint32_t wr_runs_take(wr_runs *r, uint64_t key, uint32_t *waited) {
  size_t i = find(r, key);
  *waited = 0;
  if (i == WR_RUNS_MAX) return 0;
  uint32_t n = r->runs[i];
  *waited = r->waited[i];
  r->runs[i] = r->waited[i] = 0;
  return n;
}
