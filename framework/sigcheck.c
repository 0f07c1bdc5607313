#include "sigcheck.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <warren/status.h>

#include "../config/cfg.h"
#include "clock.h"
#include "delay.h"
#include "field.h"
#include "keyring.h"
#include "log.h"
#include "retry.h"

static void free_policies(wr_sigcheck_handler *h, size_t nh) {
  for (size_t i = 0; h && i < nh; i++) {
    for (size_t k = 0; k < h[i].n_ids; k++) free(h[i].ids[k]);
    free(h[i].ids);
  }
  free(h);
}

/* The policies of cfg's handlers, in the order of `like` (the handlers
 * of the start; NULL: cfg's own order). NULL with err when one is gone. */
static wr_sigcheck_handler *policies(const wr_cfg *cfg,
                                     const wr_sigcheck_handler *like, size_t nh,
                                     char *err, size_t errlen) {
  wr_sigcheck_handler *out = calloc(nh ? nh : 1, sizeof *out);
  if (!out) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  for (size_t i = 0; i < nh; i++) {
    const wr_handler_cfg *hc = like ? NULL : &cfg->handlers[i];
    for (size_t k = 0; !hc && k < cfg->n_handlers; k++)
      if (!strcmp(cfg->handlers[k].name, like[i].name)) hc = &cfg->handlers[k];
    if (!hc) {
      snprintf(err, errlen,
               "handler %s is not in the file any more: handlers change "
               "with a restart",
               like[i].name);
      free_policies(out, nh);
      return NULL;
    }
    wr_sigcheck_handler *p = &out[i];
    p->name = like ? like[i].name : hc->name;
    p->queue = like ? like[i].queue : hc->queue;
    p->require = hc->require_signature;
    p->ids =
        calloc(hc->n_signing_keys ? hc->n_signing_keys : 1, sizeof *p->ids);
    for (size_t k = 0; p->ids && k < hc->n_signing_keys; k++)
      if ((p->ids[k] = strdup(hc->signing_keys[k]))) p->n_ids++;
    if (!p->ids || p->n_ids != hc->n_signing_keys) {
      snprintf(err, errlen, "out of memory");
      free_policies(out, nh);
      return NULL;
    }
  }
  return out;
}

/* Take cfg's signing section into sc (cfg's ring becomes sc's). */
static void take(wr_sigcheck *sc, wr_cfg *cfg, wr_sigcheck_handler *h) {
  wr_keyring_free(sc->ring);
  free_policies(sc->h, sc->nh);
  sc->ring = cfg->signing.keyring;
  cfg->signing.keyring = NULL;
  snprintf(sc->counter_key, sizeof sc->counter_key, "%s",
           cfg->signing.countersign_key ? cfg->signing.countersign_key : "");
  sc->window_ms = (int64_t)(cfg->signing.window * 1000.0 + 0.5);
  sc->h = h;
}

/* The supervisor's keys, for wipe_in_child. */
static wr_sigcheck *g_forked_from;

/* A forked process (a worker) gets no keys: a handler's code, or a bug in
 * it, cannot read them from its own memory. Workers only compare digests
 * (sigcheck.h). */
static void wipe_in_child(void) {
  if (!g_forked_from) return;
  wr_keyring_free(g_forked_from->ring);
  g_forked_from->ring = NULL;
  g_forked_from = NULL;
}

static void register_wipe(void) {
  pthread_atfork(NULL, NULL, wipe_in_child);
}

int wr_sigcheck_init(wr_sigcheck *sc, wr_cfg *cfg) {
  memset(sc, 0, sizeof *sc);
  if (!cfg->signing.keyring) return WARREN_OK;
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, register_wipe);
  g_forked_from = sc;
  char err[64];
  wr_sigcheck_handler *h =
      policies(cfg, NULL, cfg->n_handlers, err, sizeof err);
  if (!h) return WARREN_NOMEM;
  sc->nh = cfg->n_handlers;
  sc->delay_prefix = cfg->delays.prefix;
  take(sc, cfg, h);
  return WARREN_OK;
}

void wr_sigcheck_free(wr_sigcheck *sc) {
  if (g_forked_from == sc) g_forked_from = NULL;
  wr_keyring_free(sc->ring);
  free_policies(sc->h, sc->nh);
  memset(sc, 0, sizeof *sc);
}

static wr_sign_str bytes(amqp_bytes_t b) {
  return (wr_sign_str){b.len ? (const char *)b.bytes : "", b.len};
}

static int key_is(amqp_bytes_t k, const char *name, size_t n) {
  return k.len == n && memcmp(k.bytes, name, n) == 0;
}

/* A header value as the scheme sees it: a string, or present but
 * unusable (p NULL: malformed). */
static wr_sign_str value(const amqp_field_value_t *v) {
  if (v->kind == AMQP_FIELD_KIND_UTF8 || v->kind == AMQP_FIELD_KIND_BYTES)
    return bytes(v->value.bytes);
  return (wr_sign_str){NULL, 0};
}

void wr_sigcheck_read(const amqp_basic_properties_t *p, const char *queue,
                      wr_sign_headers *hd, wr_sign_job *job) {
  static const size_t sl = sizeof WR_SIGN_HEADER - 1,
                      cl = sizeof WR_SIGN_COUNTER_HEADER - 1;
  memset(hd, 0, sizeof *hd);
  amqp_bytes_t none = {0, NULL};
  *job = (wr_sign_job){
      bytes(p->_flags & AMQP_BASIC_MESSAGE_ID_FLAG ? p->message_id : none),
      {"", 0},
      {"", 0},
      bytes(p->_flags & AMQP_BASIC_CONTENT_TYPE_FLAG ? p->content_type : none),
      {queue, strlen(queue)},
      {hd->attempt, 0},
      {hd->crashes, 0}};
  if (!(p->_flags & AMQP_BASIC_HEADERS_FLAG)) return;
  for (int i = 0; i < p->headers.num_entries; i++) {
    const amqp_table_entry_t *e = &p->headers.entries[i];
    int64_t v;
    /* One pass; a header given twice is malformed, not a choice. */
    if (key_is(e->key, WR_H_ATTEMPT, sizeof WR_H_ATTEMPT - 1) &&
        wr_field_int(&e->value, &v)) {
      job->attempt.len = (size_t)snprintf(hd->attempt, sizeof hd->attempt,
                                          "%lld", (long long)v);
    } else if (key_is(e->key, WR_H_CRASHES, sizeof WR_H_CRASHES - 1) &&
               wr_field_int(&e->value, &v)) {
      job->crashes.len = (size_t)snprintf(hd->crashes, sizeof hd->crashes,
                                          "%lld", (long long)v);
    } else if (key_is(e->key, WR_SIGN_HEADER, sl)) {
      hd->sig = hd->sig_present ? (wr_sign_str){NULL, 0} : value(&e->value);
      hd->sig_present = 1;
    } else if (key_is(e->key, WR_SIGN_COUNTER_HEADER, cl)) {
      hd->counter =
          hd->counter_present ? (wr_sign_str){NULL, 0} : value(&e->value);
      hd->counter_present = 1;
    }
  }
}

static wr_sign_policy policy(const wr_sigcheck *sc,
                             const wr_sigcheck_handler *p) {
  return (wr_sign_policy){sc->ring,     (const char *const *)p->ids,
                          p->n_ids,     sc->counter_key,
                          wr_unix_ms(), sc->window_ms,
                          p->require};
}

static int check_signature(void *ctx, size_t handler, wr_job *job,
                           wr_outcome *o, char *why, size_t whylen) {
  const wr_sigcheck *sc = ctx;
  const wr_sigcheck_handler *p = &sc->h[handler];
  wr_sign_headers hd;
  wr_sign_job sj;
  wr_sigcheck_read(&job->env.message.properties, p->queue, &hd, &sj);
  sj.exchange = bytes(job->env.exchange);
  sj.routing_key = bytes(job->env.routing_key);
  /* Through the delay levels: signed as sent straight to its queue, the
   * route it took being the bits of its delay (docs/signing.md). */
  const char *dest;
  size_t dl;
  if (wr_delay_destination(sc->delay_prefix, sj.exchange.p, sj.exchange.len,
                           sj.routing_key.p, sj.routing_key.len, &dest, &dl)) {
    sj.exchange = (wr_sign_str){"", 0};
    sj.routing_key = (wr_sign_str){dest, dl};
  }
  wr_sign_policy pol = policy(sc, p);
  int64_t skew;
  wr_sign_str key;
  wr_sign_check c =
      wr_sign_verify(&pol, &hd, &sj, job->body_sha256, &skew, &key);
  job->sig_check = (uint8_t)c;
  job->signed_ok = c == WR_SIGN_OK;
  if (c == WR_SIGN_OK || c == WR_SIGN_UNSIGNED) return 0;
  /* The key id and the time are told, never the signature or a secret;
   * a time only once the MAC has vouched for it. */
  const char *name = wr_sign_check_name(c);
  int kl = (int)(key.len > 64 ? 64 : key.len);
  if (c == WR_SIGN_MISSING || c == WR_SIGN_MALFORMED ||
      c == WR_SIGN_C_MALFORMED)
    snprintf(why, whylen, "signature check failed: %s", name);
  else if (c == WR_SIGN_EARLY)
    snprintf(why, whylen,
             "signature check failed: early (key '%.*s', %.1f s before its "
             "signed not-before time: its delay was cut short)",
             kl, key.p, (double)-skew / 1000.0);
  else if (c == WR_SIGN_EXPIRED || c == WR_SIGN_FUTURE ||
           c == WR_SIGN_C_EXPIRED || c == WR_SIGN_C_FUTURE)
    snprintf(why, whylen,
             "signature check failed: %s (key '%.*s', signed %.1f s %s, "
             "window %.0f s)",
             name, kl, key.p, (double)(skew < 0 ? -skew : skew) / 1000.0,
             skew < 0 ? "ahead" : "ago", (double)sc->window_ms / 1000.0);
  else
    snprintf(why, whylen, "signature check failed: %s (key '%.*s')", name, kl,
             key.p);
  *o = WR_OUT_SIGNATURE;
  return 1;
}

const wr_intake_check wr_intake_signature = {"signature", check_signature};

void wr_sigcheck_body_refused(wr_job *job, char *why, size_t whylen) {
  job->sig_check = WR_SIGN_BODY_DIGEST;
  job->signed_ok = 0;
  snprintf(why, whylen,
           "signature check failed: body-digest (the body is not the one "
           "that was signed)");
}

/* v (> 0) in decimal into buf, as s; 0: absent (empty). */
static wr_sign_str decimal(int64_t v, char buf[24]) {
  buf[0] = '\0';
  return (wr_sign_str){
      buf, v > 0 ? (size_t)snprintf(buf, 24, "%lld", (long long)v) : 0};
}

int wr_sigcheck_countersign(const wr_sigcheck *sc, size_t h, const wr_job *job,
                            int64_t when_ms, int64_t attempt, int64_t crashes,
                            char *out) {
  if (!sc->ring || !job->signed_ok || h >= sc->nh) return -1;
  wr_sign_headers hd;
  wr_sign_job sj;
  wr_sigcheck_read(&job->env.message.properties, sc->h[h].queue, &hd, &sj);
  if (!hd.sig.p) return -1;
  /* The copy's own counts, not the delivery's: a copy always carries
   * warren-crashes, and warren-attempt when it is a retry. */
  sj.attempt = decimal(attempt, hd.attempt);
  sj.crashes =
      (wr_sign_str){hd.crashes, (size_t)snprintf(hd.crashes, sizeof hd.crashes,
                                                 "%lld", (long long)crashes)};
  return wr_sign_countersign(sc->ring, sc->counter_key, when_ms, hd.sig, &sj,
                             out);
}

int wr_sigcheck_recountersign(const wr_cfg *cfg, const wr_handler_cfg *h,
                              const amqp_message_t *m, char *out) {
  const wr_signing_cfg *sg = &cfg->signing;
  wr_sign_headers hd;
  wr_sign_job sj;
  wr_sigcheck_read(&m->properties, h->queue, &hd, &sj);
  if (!sg->keyring || !hd.counter_present) return -1;
  /* Any age: Warren countersigned it once, so it was verified once; the
   * operator's replay is what renews it. */
  wr_sign_policy pol = {sg->keyring,
                        h->signing_keys,
                        h->n_signing_keys,
                        sg->countersign_key,
                        0,
                        INT64_MAX / 4,
                        1};
  unsigned char digest[32];
  int64_t skew;
  wr_sign_str key;
  if (wr_sign_verify(&pol, &hd, &sj, digest, &skew, &key) != WR_SIGN_OK ||
      !wr_sign_body_matches(m->body.bytes, m->body.len, digest))
    return -1;
  /* The replayed copy carries none of Warren's counts (tools/dlq.c). */
  sj.attempt = sj.crashes = (wr_sign_str){"", 0};
  return wr_sign_countersign(sg->keyring, sg->countersign_key, wr_unix_ms(),
                             hd.sig, &sj, out);
}

int wr_sigcheck_reload(wr_sigcheck *sc, const char *path, char *err,
                       size_t errlen) {
  if (!sc->ring) {
    snprintf(err, errlen,
             "signing was not configured at start: restart to turn it on");
    return WARREN_NOT_FOUND;
  }
  wr_cfg *cfg;
  int rc = wr_cfg_load(path, &cfg, err, errlen);
  if (rc != WARREN_OK) return rc;
  wr_sigcheck_handler *h = NULL;
  if (!cfg->signing.keyring)
    snprintf(err, errlen,
             "%s has no signing section any more: restart to turn signing "
             "off",
             path);
  else
    h = policies(cfg, sc->h, sc->nh, err, errlen);
  if (h) take(sc, cfg, h);
  wr_cfg_free(cfg);
  return h ? WARREN_OK : WARREN_CONFIG_INVALID;
}
