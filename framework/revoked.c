#include "revoked.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include <warren/status.h>

#include "clock.h"
#include "conn.h"
#include "control.h"
#include "field.h"
#include "log.h"
#include "sup_private.h"

void wr_revoked_init(wr_revoked *r, amqp_channel_t ch) {
  memset(r, 0, sizeof *r);
  wr_revset_init(&r->set, WR_REVOKED_CAP);
  r->ch = ch;
}

void wr_revoked_free(wr_revoked *r) {
  wr_revset_free(&r->set);
}

/* One step of the set-up: 0 done, 1 the broker closed the control
 * channel (answered here), -1 the connection is unusable. */
static int step(amqp_connection_state_t c, amqp_channel_t ch, const char *what,
                char *err, size_t errlen) {
  amqp_rpc_reply_t r = amqp_get_rpc_reply(c);
  if (wr_conn_reply(c, r, what, err, errlen) == WARREN_OK) return 0;
  if (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION &&
      r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
    amqp_channel_close_ok_t ok = {0};
    return amqp_send_method(c, ch, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok) ==
                   AMQP_STATUS_OK
               ? 1
               : -1;
  }
  return -1;
}

int wr_revoked_setup(wr_sup *s, amqp_connection_state_t c, char *err,
                     size_t errlen) {
  wr_revoked *r = &s->revoked;
  amqp_channel_t ch = r->ch;
  amqp_bytes_t ex = amqp_cstring_bytes(WR_CONTROL_EXCHANGE);
  r->listening = 0;
  amqp_channel_open(c, ch);
  int rc = step(c, ch, "control channel.open", err, errlen);
  if (rc == 0) {
    amqp_exchange_declare(c, ch, ex, amqp_cstring_bytes("fanout"), 0, 1, 0, 0,
                          amqp_empty_table);
    rc = step(c, ch, "exchange.declare " WR_CONTROL_EXCHANGE, err, errlen);
  }
  char qname[256] = "";
  if (rc == 0) {
    amqp_table_entry_t arg =
        wr_entry_int("x-max-length-bytes", WR_REVOKED_QUEUE_BYTES);
    amqp_table_t args = {1, &arg};
    amqp_queue_declare_ok_t *q =
        amqp_queue_declare(c, ch, amqp_empty_bytes, 0, 0, 1, 1, args);
    rc = step(c, ch, "control queue.declare", err, errlen);
    if (rc == 0)
      snprintf(qname, sizeof qname, "%.*s", (int)q->queue.len,
               (const char *)q->queue.bytes);
  }
  if (rc == 0) {
    amqp_queue_bind(c, ch, amqp_cstring_bytes(qname), ex, amqp_empty_bytes,
                    amqp_empty_table);
    rc = step(c, ch, "control queue.bind", err, errlen);
  }
  if (rc == 0) {
    /* No acks: a control message is applied when read, and one lost with
     * the connection is lost as a broadcast would be. */
    amqp_basic_consume(c, ch, amqp_cstring_bytes(qname), amqp_empty_bytes, 0, 1,
                       1, amqp_empty_table);
    rc = step(c, ch, "control basic.consume", err, errlen);
  }
  if (rc < 0) return WARREN_BROKER_CLOSED;
  if (rc > 0) {
    wr_error(
        "revoke: cannot listen on exchange %s (%s); this process receives "
        "no revokes until it reconnects, and runs jobs as before",
        WR_CONTROL_EXCHANGE, err);
    err[0] = '\0';
    return WARREN_OK;
  }
  r->listening = 1;
  wr_debug("revoke: listening on exchange %s through queue %s",
           WR_CONTROL_EXCHANGE, qname);
  return WARREN_OK;
}

static amqp_bytes_t message_id(const wr_job *job) {
  const amqp_basic_properties_t *p = &job->env.message.properties;
  amqp_bytes_t none = {0, ""};
  return (p->_flags & AMQP_BASIC_MESSAGE_ID_FLAG) ? p->message_id : none;
}

static int revoked_job(const wr_revoked *r, const wr_job *job, double now) {
  amqp_bytes_t id = message_id(job);
  return id.len && wr_revset_has(&r->set, id.bytes, id.len, now);
}

static const char *esc_id(amqp_bytes_t id, char *buf, size_t len) {
  wr_escape(buf, len, id.bytes, id.len);
  return buf;
}

static int check_revoked(void *ctx, size_t handler, wr_job *job, wr_outcome *o,
                         char *why, size_t whylen) {
  wr_revoked *r = ctx;
  if (wr_revset_empty(&r->set) || !revoked_job(r, job, wr_now())) return 0;
  (void)handler;
  r->refused++;
  char id[4 * WR_CONTROL_MAX_ID + 1];
  wr_info("revoke: job %s is revoked; dead-lettered without running",
          esc_id(message_id(job), id, sizeof id));
  *o = WR_OUT_REVOKED;
  snprintf(why, whylen, "revoked by warren revoke before it ran");
  return 1;
}

const wr_intake_check wr_intake_revoked = {"revoked", check_revoked};

/* Does a job queued to one of h's workers, or running there, match? */
static int pool_holds(const wr_revoked *r, const wr_pool *p, double now) {
  for (int i = 0; i < p->n; i++) {
    const wr_child *c = &p->children[i];
    for (int k = 0; k < c->len; k++)
      if (revoked_job(r, c->q[(c->head + k) % WR_POOL_MAX_DEPTH], now))
        return 1;
  }
  return 0;
}

/* The jobs of the set that h holds: dead-letter those not started; stop
 * the running ones when told to. Returns how many were settled or
 * stopped. */
static int apply(wr_sup *s, wr_handler_rt *h, int terminate, double now) {
  wr_revoked *r = &s->revoked;
  int n = 0;
  char id[4 * WR_CONTROL_MAX_ID + 1];
  /* Queued to workers and not started: taken back (the claim in ipc.h
   * decides against a worker about to start one), onto the waiting line. */
  if (h->cfg->isolated && pool_holds(r, &h->pool, now)) {
    int back = wr_pool_revoke_unstarted(&h->pool);
    if (back)
      wr_debug("handler %s: %d job(s) queued to workers taken back",
               h->cfg->name, back);
  }
  wr_job *j = wr_sup_waiting(s, h->index)->head;
  while (j) {
    wr_job *next = j->next;
    if (revoked_job(r, j, now)) {
      wr_info("handler %s: job %s revoked before it started; dead-lettered",
              h->cfg->name, esc_id(message_id(j), id, sizeof id));
      wr_settle_finish(s, h, j, WR_OUT_REVOKED,
                       "revoked by warren revoke before it started");
      n++;
    }
    j = next;
  }
  for (int i = 0; h->cfg->isolated && i < h->pool.n; i++) {
    wr_child *c = &h->pool.children[i];
    wr_job *run = c->len > c->unsent ? wr_pool_running(c) : NULL;
    if (!run || !revoked_job(r, run, now)) continue;
    esc_id(message_id(run), id, sizeof id);
    if (!terminate) {
      wr_info(
          "handler %s: job %s is running in worker %d; it goes on (a revoke "
          "with terminate would stop it)",
          h->cfg->name, id, (int)c->pid);
      continue;
    }
    run->revoked = 1;
    if (wr_pool_terminate(&h->pool, c)) {
      wr_warn("handler %s: job %s is running in worker %d; stopping it",
              h->cfg->name, id, (int)c->pid);
      n++;
    } else {
      run->revoked = 0; /* it has just finished */
    }
  }
  return n;
}

void wr_revoked_delivery(wr_sup *s, wr_job *job) {
  wr_revoked *r = &s->revoked;
  const amqp_message_t *msg = &job->env.message;
  char err[300];
  wr_control_msg m;
  if (s->sig.ring) {
    /* With a keyring, only a holder of one of its keys may revoke. */
    amqp_bytes_t sig =
        wr_field_header_str(&msg->properties, WR_CONTROL_SIG_HEADER);
    if (wr_control_verify(s->sig.ring, sig.bytes, sig.len, msg->body.bytes,
                          msg->body.len, err, sizeof err) != 0) {
      r->ignored++;
      wr_warn("revoke: control message ignored: %s", err);
      return;
    }
  }
  if (wr_control_parse(msg->body.bytes, msg->body.len, &m, err, sizeof err) !=
      0) {
    r->ignored++;
    wr_warn("revoke: control message ignored: %s", err);
    return;
  }
  if (s->sig.ring) {
    /* A signed message is valid around when it was sent, as a signed
     * job is: a copy replayed much later is refused. */
    double skew = (double)wr_unix_ms() / 1000.0 - m.sent_at;
    if (!m.sent_at || fabs(skew) > s->cfg->signing.window) {
      r->ignored++;
      wr_warn(
          "revoke: signed control message ignored: its sent_at is missing "
          "or more than %.0f s off",
          s->cfg->signing.window);
      wr_control_free(&m);
      return;
    }
  }
  if (m.kind != WR_CONTROL_REVOKE) {
    char t[sizeof m.type * 4];
    wr_escape(t, sizeof t, m.type, strlen(m.type));
    wr_info("control message of type '%s' ignored: this version knows revoke",
            t);
    wr_control_free(&m);
    return;
  }
  double now = wr_now();
  wr_revset_expire(&r->set, now);
  size_t evicted = 0;
  for (size_t i = 0; i < m.n; i++)
    if (wr_revset_add(&r->set, m.ids[i], m.id_len[i], now + m.expires, now) ==
        1)
      evicted++;
  r->received++;
  char first[4 * WR_CONTROL_MAX_ID + 1];
  wr_escape(first, sizeof first, m.ids[0], m.id_len[0]);
  wr_info("revoke: %zu id(s) for %.0f s%s%s, first %s; %zu revoked id(s) kept",
          m.n, m.expires, m.capped ? " (capped)" : "",
          m.terminate ? ", terminate" : "", first, r->set.n);
  if (evicted)
    wr_warn(
        "revoke: the set is full (%d ids): the %zu oldest id(s) were "
        "forgotten before they expired",
        WR_REVOKED_CAP, evicted);
  int done = 0;
  for (size_t i = 0; i < s->nh; i++)
    done += apply(s, &s->h[i], m.terminate, now);
  if (done) wr_info("revoke: %d held job(s) revoked", done);
  wr_control_free(&m);
}
