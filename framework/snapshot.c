#include "snapshot.h"

#include <stdlib.h>

void wr_snap_store_init(wr_snap_store *st) {
  pthread_mutex_init(&st->mu, NULL);
  st->cur = NULL;
}

void wr_snap_store_free(wr_snap_store *st) {
  free(st->cur);
  st->cur = NULL;
  pthread_mutex_destroy(&st->mu);
}

void wr_snap_publish(wr_snap_store *st, wr_snap *s) {
  s->refs = 1; /* the store's own */
  pthread_mutex_lock(&st->mu);
  wr_snap *old = st->cur;
  st->cur = s;
  int last = old && --old->refs == 0;
  pthread_mutex_unlock(&st->mu);
  if (last) free(old);
}

wr_snap *wr_snap_acquire(wr_snap_store *st) {
  pthread_mutex_lock(&st->mu);
  wr_snap *s = st->cur;
  if (s) s->refs++;
  pthread_mutex_unlock(&st->mu);
  return s;
}

void wr_snap_release(wr_snap_store *st, wr_snap *s) {
  if (!s) return;
  pthread_mutex_lock(&st->mu);
  int last = --s->refs == 0;
  pthread_mutex_unlock(&st->mu);
  if (last) free(s);
}

wr_snap *wr_snap_alloc(size_t nh, const int *workers) {
  size_t nw = 0;
  for (size_t i = 0; i < nh; i++) nw += (size_t)workers[i];
  wr_snap *s = calloc(1, sizeof *s + nh * sizeof(wr_snap_handler) +
                             nw * sizeof(wr_snap_worker));
  if (!s) return NULL;
  s->nh = nh;
  wr_snap_worker *w = (wr_snap_worker *)(s->h + nh);
  for (size_t i = 0; i < nh; i++) {
    s->h[i].w = w;
    s->h[i].nworkers = workers[i];
    w += workers[i];
  }
  return s;
}
