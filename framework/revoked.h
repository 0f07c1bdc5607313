/*
 * Revoking jobs in a running Warren process (docs/revoke.md). Each
 * process listens on the control exchange (control.h) through its own
 * exclusive, auto-delete, server-named queue, consumed without acks on a
 * channel of the supervisor's own connection. A revoke adds its ids to
 * the process's set (revset.h, in memory only) and at once dead-letters
 * the jobs of those ids the supervisor holds but has not started; with
 * terminate, a running one's worker is killed and its job dead-lettered
 * as revoked, not counted as a crash. A revoked job that arrives later is
 * refused at intake (wr_intake_revoked).
 */
#ifndef WR_REVOKED_H
#define WR_REVOKED_H

#include <amqp.h>
#include <stddef.h>

#include "intake.h"
#include "job.h"
#include "revset.h"

struct wr_keyring;

#define WR_REVOKED_CAP 10000 /* ids kept; the oldest go first */
/* The listening queue holds at most this many bytes: a flood of control
 * messages drops the oldest rather than growing the broker's memory. */
#define WR_REVOKED_QUEUE_BYTES (16 * 1024 * 1024)

typedef struct wr_revoked {
  wr_revset set;
  amqp_channel_t ch;      /* the control channel */
  int listening;          /* its consumer is registered on this connection */
  unsigned long received; /* revokes applied */
  unsigned long ignored;  /* control messages refused (malformed, unsigned) */
  unsigned long refused;  /* jobs refused at intake as revoked */
} wr_revoked;

/* Ready to listen on channel ch (no I/O). */
void wr_revoked_init(wr_revoked *r, amqp_channel_t ch);
void wr_revoked_free(wr_revoked *r);

/* On a fresh connection: declare the control exchange and this process's
 * queue, bind it and consume it. A refusal by the broker (a channel
 * error: permissions, an exchange of another type) is logged and leaves
 * the process without revokes on this connection, running jobs as
 * before; only a failure that makes the connection unusable is returned
 * (non-zero, err set). */
int wr_revoked_setup(wr_revoked *r, amqp_connection_state_t c, char *err,
                     size_t errlen);

/* A control message msg arrived on r->ch: validate it (with ring, signed
 * and sent within window seconds of now; NULL: any) and add its ids to
 * the set. Returns 1 when it did, *terminate then saying whether running
 * jobs of those ids are to be stopped; the supervisor then revokes the
 * jobs it holds (supervisor.c). 0: ignored, and said why. */
int wr_revoked_delivery(wr_revoked *r, const struct wr_keyring *ring,
                        double window, const amqp_message_t *msg,
                        int *terminate);

/* Whether job's id is in the set now. */
int wr_revoked_has(const wr_revoked *r, const wr_job *job, double now);

/* job's message id, escaped for a log line, into buf. */
const char *wr_revoked_id(const wr_job *job, char *buf, size_t len);

/* Refuses a job whose id is revoked as WR_OUT_REVOKED; ctx is the
 * wr_revoked. With no id revoked it costs one load and a branch. */
extern const wr_intake_check wr_intake_revoked;

#endif
