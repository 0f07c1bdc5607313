/*
 * Signed jobs in the supervisor (docs/signing.md): the intake check that
 * verifies a delivery's signature before any handler sees it, the
 * countersignature Warren puts on the copies it republishes (retries, dead
 * letters, replays), and the keyring's reload on SIGHUP.
 *
 * Where the work is done, and why: the check here costs one HMAC over a
 * canonical string of a few hundred bytes, whatever the body's size. The
 * body's SHA-256 is compared where the job runs, in its worker process
 * (worker.c) or, with isolation = false, just before handle()
 * (inproc.c): a 10 MB body must not stall the loop that serves every
 * handler. The keys stay in the supervisor: workers only compare digests,
 * and the keyring is wiped in every forked child (pthread_atfork).
 *
 * Runs on the loop thread only.
 */
#ifndef WR_SIGCHECK_H
#define WR_SIGCHECK_H

#include <amqp.h>
#include <stddef.h>
#include <stdint.h>

#include "intake.h"
#include "job.h"
#include "sign.h"

struct wr_cfg;
struct wr_keyring;

typedef struct wr_sigcheck_handler {
  const char *name;  /* the handler's, from the config of the start */
  const char *queue; /* its work queue: what countersignatures bind */
  int require;       /* unsigned jobs are refused */
  char **ids;        /* key ids it accepts (owned); n_ids 0: all */
  size_t n_ids;
} wr_sigcheck_handler;

typedef struct wr_sigcheck {
  struct wr_keyring *ring; /* owned; NULL: signing is off */
  char counter_key[WARREN_SIGN_MAX_KEY_ID + 1];
  int64_t window_ms;
  wr_sigcheck_handler *h; /* one per handler, in the config's order */
  size_t nh;
  const char *delay_prefix; /* the delay levels' (cfg.h), for their jobs */
} wr_sigcheck;

/* Take cfg's keyring (cfg->signing.keyring becomes NULL) and the
 * handlers' policies. With no signing section sc->ring stays NULL and
 * nothing is checked. 0 or WARREN_NOMEM. */
int wr_sigcheck_init(wr_sigcheck *sc, struct wr_cfg *cfg);
void wr_sigcheck_free(wr_sigcheck *sc);

/* Refuses a delivery whose signature does not verify as WR_OUT_SIGNATURE
 * (job->sig_check says which check); sets job->signed_ok and
 * job->body_sha256 when it does. ctx: the wr_sigcheck. */
extern const wr_intake_check wr_intake_signature;

/* The body did not match its signed digest (found where the job ran):
 * sets job->sig_check and writes the reason. */
void wr_sigcheck_body_refused(wr_job *job, char *why, size_t whylen);

/* The signature headers and the fields a countersignature binds, read
 * from properties p; pointers into p. */
void wr_sigcheck_read(const amqp_basic_properties_t *p, const char *queue,
                      wr_sign_headers *hd, wr_sign_job *job);

/* Countersign a copy of `job` (verified: job->signed_ok) of handler h,
 * valid around when_ms, into out (WARREN_SIGNATURE_MAX). attempt is the
 * copy's warren-attempt (0: it has none, as a dead letter), crashes its
 * warren-crashes: both are bound, so a copy published again cannot pass
 * for a later attempt. 0 or -1. */
int wr_sigcheck_countersign(const wr_sigcheck *sc, size_t h, const wr_job *job,
                            int64_t when_ms, int64_t attempt, int64_t crashes,
                            char *out);

/* For `warren dlq replay`: a fresh countersignature (time now) for dead
 * letter m of handler h, into out (WARREN_SIGNATURE_MAX), when m carries
 * a countersignature that verifies under cfg's keys whatever its age and
 * its body matches. 0, or -1 (then m goes back as it is, and is verified
 * as its producer signed it). */
int wr_sigcheck_recountersign(const struct wr_cfg *cfg,
                              const struct wr_handler_cfg *h,
                              const amqp_message_t *m, char *out);

/* Read the config file at path again and take its keys, countersign key,
 * window and the handlers' key lists; the old ring is kept, and err says
 * why, when the file is invalid, has no signing section, or lacks a
 * handler. Jobs held are not touched. 0, WARREN_NOT_FOUND (signing was
 * off at start: nothing to reload) or another negative warren_status. */
int wr_sigcheck_reload(wr_sigcheck *sc, const char *path, char *err,
                       size_t errlen);

#endif
