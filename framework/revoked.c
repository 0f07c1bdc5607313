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
#include "keyring.h"

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

int wr_revoked_setup(wr_revoked *r, amqp_connection_state_t c, char *err,
                     size_t errlen) {
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

int wr_revoked_has(const wr_revoked *r, const wr_job *job, double now) {
  amqp_bytes_t id = message_id(job);
  return id.len && wr_revset_has(&r->set, id.bytes, id.len, now);
}

const char *wr_revoked_id(const wr_job *job, char *buf, size_t len) {
  amqp_bytes_t id = message_id(job);
  wr_escape(buf, len, id.bytes, id.len);
  return buf;
}

static const char *esc_id(amqp_bytes_t id, char *buf, size_t len) {
  wr_escape(buf, len, id.bytes, id.len);
  return buf;
}

static int check_revoked(void *ctx, size_t handler, wr_job *job, wr_outcome *o,
                         char *why, size_t whylen) {
  wr_revoked *r = ctx;
  if (wr_revset_empty(&r->set) || !wr_revoked_has(r, job, wr_now())) return 0;
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

int wr_revoked_delivery(wr_revoked *r, const wr_keyring *ring, double window,
                        const amqp_message_t *msg, int *terminate) {
  *terminate = 0;
  char err[300];
  wr_control_msg m;
  if (ring) {
    /* With a keyring, only a holder of one of its keys may revoke. */
    amqp_bytes_t sig =
        wr_field_header_str(&msg->properties, WR_CONTROL_SIG_HEADER);
    if (wr_control_verify(ring, sig.bytes, sig.len, msg->body.bytes,
                          msg->body.len, err, sizeof err) != 0) {
      r->ignored++;
      wr_warn("revoke: control message ignored: %s", err);
      return 0;
    }
  }
  if (wr_control_parse(msg->body.bytes, msg->body.len, &m, err, sizeof err) !=
      0) {
    r->ignored++;
    wr_warn("revoke: control message ignored: %s", err);
    return 0;
  }
  if (ring) {
    /* A signed message is valid around when it was sent, as a signed
     * job is: a copy replayed much later is refused. */
    double skew = (double)wr_unix_ms() / 1000.0 - m.sent_at;
    if (!m.sent_at || fabs(skew) > window) {
      r->ignored++;
      wr_warn(
          "revoke: signed control message ignored: its sent_at is missing "
          "or more than %.0f s off",
          window);
      wr_control_free(&m);
      return 0;
    }
  }
  if (m.kind != WR_CONTROL_REVOKE) {
    char t[sizeof m.type * 4];
    wr_escape(t, sizeof t, m.type, strlen(m.type));
    wr_info("control message of type '%s' ignored: this version knows revoke",
            t);
    wr_control_free(&m);
    return 0;
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
  *terminate = m.terminate;
  wr_control_free(&m);
  return 1;
}
