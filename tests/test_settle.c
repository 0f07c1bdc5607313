/* The settle decisions on publisher confirms (framework/settle.h), without
 * a broker: which awaited publishes a confirm covers, when a job awaits
 * nothing more, and what a nack of a dead letter's error result does;
 * then, on the wire, what settling sends and when. */
#include <amqp_tcp_socket.h>
#include <criterion/criterion.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "../config/cfg.h"
#include "clock.h"
#include "names.h"
#include "settle.h"

static wr_pub_event ack(uint64_t tag, int multiple) {
  return (wr_pub_event){.kind = WR_PUB_ACK, .tag = tag, .multiple = multiple};
}

static wr_pub_event nack(uint64_t tag, int multiple) {
  return (wr_pub_event){.kind = WR_PUB_NACK, .tag = tag, .multiple = multiple};
}

Test(settle, one_multiple_confirm_settles_every_copy_it_covers) {
  wr_job a = {0}, b = {0}, c = {0};
  wr_settle_expect(&a, 3, 1);
  wr_settle_expect(&b, 4, 1);
  wr_settle_expect(&c, 6, 1);
  wr_pub_event ev = ack(5, 1);
  cr_assert(wr_settle_cover(&a, &ev) && !wr_settle_awaited(&a));
  cr_assert(wr_settle_cover(&b, &ev) && !wr_settle_awaited(&b));
  cr_assert_not(wr_settle_cover(&c, &ev), "6 is above the confirm");
  cr_assert(wr_settle_awaited(&c));
  ev = ack(6, 0);
  cr_assert(wr_settle_cover(&c, &ev) && !wr_settle_awaited(&c));
}

Test(settle, a_job_with_several_publishes_waits_for_all_of_them) {
  wr_job j = {0};
  wr_settle_expect(&j, 10, 3); /* two follow-ups and the result */
  wr_pub_event ev = ack(10, 0);
  cr_assert(wr_settle_cover(&j, &ev) && wr_settle_awaited(&j));
  ev = ack(12, 0);
  cr_assert(wr_settle_cover(&j, &ev) && wr_settle_awaited(&j), "11 waits");
  ev = ack(11, 0);
  cr_assert(wr_settle_cover(&j, &ev) && !wr_settle_awaited(&j));
  ev = ack(11, 0);
  cr_assert_not(wr_settle_cover(&j, &ev), "a confirm twice covers nothing");
}

Test(settle, a_single_confirm_covers_only_its_own_tag) {
  wr_job j = {0};
  wr_settle_expect(&j, 5, 1);
  wr_pub_event ev = ack(4, 0);
  cr_assert_not(wr_settle_cover(&j, &ev));
  ev = ack(7, 0);
  cr_assert_not(wr_settle_cover(&j, &ev), "not multiple: 7 alone");
  cr_assert(wr_settle_awaited(&j));
}

Test(settle, more_than_64_publishes_are_tracked_across_words) {
  wr_job j = {0};
  wr_settle_expect(&j, 1, 300);
  wr_pub_event ev = ack(299, 1);
  cr_assert(wr_settle_cover(&j, &ev) && wr_settle_awaited(&j));
  ev = ack(300, 0);
  cr_assert(wr_settle_cover(&j, &ev) && !wr_settle_awaited(&j));
}

Test(settle, a_refused_error_result_does_not_send_the_dead_letter_round) {
  wr_job j = {0};
  wr_settle_expect(&j, 8, 2); /* the dead letter, then its error result */
  j.dead = 1;
  j.reply_seq = 9;
  wr_pub_event ev = nack(9, 0);
  cr_assert_not(wr_settle_cover(&j, &ev), "not counted as a refused copy");
  cr_assert_eq(j.no_reply, 2, "the result is lost, and said so");
  ev = ack(8, 0);
  cr_assert(wr_settle_cover(&j, &ev) && !wr_settle_awaited(&j));
  /* A nacked dead-letter copy itself counts. */
  wr_job k = {0};
  wr_settle_expect(&k, 20, 2);
  k.dead = 1;
  k.reply_seq = 21;
  ev = nack(21, 1);
  cr_assert(wr_settle_cover(&k, &ev), "20 is covered by the multiple nack");
}

/* ---- settling on the wire, without a broker --------------------------
 * The session's two connections are socket pairs: settle publishes, acks
 * and nacks through rabbitmq-c as it does against RabbitMQ, and the test
 * reads the frames off the other ends, decoded by rabbitmq-c too. Handler
 * 0 consumes on channel 1; copies go on the confirm channel 2. */

static wr_handler_cfg hc_;
static wr_cfg cfg_;
static wr_conn_params params_;
static wr_loop *loop_;
static wr_session ses_;
static wr_ledger led_;
static wr_observers obs_;
static wr_sigcheck sig_;
static wr_intake in_;
static wr_settle st_;
static amqp_connection_state_t consumer_end_, publisher_end_;
static int lost_;

static void on_lost(void *ctx) {
  (void)ctx;
  lost_++;
}

static const wr_session_events ses_ev_ = {.lost = on_lost};

static void release(void *ctx, wr_job *job) {
  (void)ctx;
  free(job->late_body);
  free(job->late_err);
}

/* A connection on one end of a socket pair; the other end into *peer. */
static amqp_connection_state_t pair(amqp_connection_state_t *peer) {
  int sv[2];
  cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  amqp_connection_state_t c = amqp_new_connection();
  *peer = amqp_new_connection();
  amqp_tcp_socket_set_sockfd(amqp_tcp_socket_new(c), sv[0]);
  amqp_tcp_socket_set_sockfd(amqp_tcp_socket_new(*peer), sv[1]);
  return c;
}

static void wire_setup(void) {
  static double steps[] = {1.0};
  hc_ = (wr_handler_cfg){.name = "h",
                         .queue = "q",
                         .prefetch = 10,
                         .concurrency = 2,
                         .isolated = 1};
  hc_.retry.max_attempts = 3;
  hc_.retry.max_crashes = 3;
  hc_.retry.backoff[0] = steps[0];
  hc_.retry.n_backoff = 1;
  cfg_ = (wr_cfg){.handlers = &hc_, .n_handlers = 1};
  params_ = (wr_conn_params){.host = "127.0.0.1", .port = 1};
  cr_assert_eq(wr_loop_create(&loop_), 0);
  wr_session_init(&ses_, &params_, 2, 1, 30, loop_, &ses_ev_, NULL);
  ses_.conn = pair(&consumer_end_);
  ses_.pconn = pair(&publisher_end_);
  ses_.gen = 1;
  lost_ = 0;
  memset(&obs_, 0, sizeof obs_);
  memset(&sig_, 0, sizeof sig_);
  memset(&in_, 0, sizeof in_);
  in_.cfg = &cfg_;
  cr_assert_eq(wr_ledger_init(&led_, 8, 1, release, NULL), 0);
  wr_settle_env env = {&cfg_, &ses_, &led_, &obs_, &sig_, &in_, "host", 3};
  cr_assert_eq(wr_settle_init(&st_, &env), 0);
}

static void wire_teardown(void) {
  wr_settle_free(&st_);
  wr_ledger_free(&led_);
  amqp_destroy_connection(ses_.conn);
  amqp_destroy_connection(ses_.pconn);
  amqp_destroy_connection(consumer_end_);
  amqp_destroy_connection(publisher_end_);
  wr_loop_destroy(loop_);
}

TestSuite(settle_wire, .init = wire_setup, .fini = wire_teardown);

/* One method as the broker's end read it: an ack, a nack, or a publish
 * with its properties (headers rendered as "key=value;" for strstr). */
typedef struct seen {
  amqp_method_number_t id;
  amqp_channel_t ch;
  uint64_t tag;
  int flag; /* ack: multiple; nack: requeue; publish: mandatory */
  char exchange[256], rk[256], expiration[32], headers[2048], corr[64];
  int has_expiration, priority;
} seen;

static void render(const amqp_table_t *t, char *out, size_t len) {
  size_t n = 0;
  out[0] = '\0';
  for (int i = 0; t && i < t->num_entries && n < len; i++) {
    const amqp_table_entry_t *e = &t->entries[i];
    const amqp_field_value_t *v = &e->value;
    if (v->kind == AMQP_FIELD_KIND_UTF8 || v->kind == AMQP_FIELD_KIND_BYTES)
      n += (size_t)snprintf(out + n, len - n, "%.*s=%.*s;", (int)e->key.len,
                            (const char *)e->key.bytes, (int)v->value.bytes.len,
                            (const char *)v->value.bytes.bytes);
    else if (v->kind == AMQP_FIELD_KIND_I64)
      n +=
          (size_t)snprintf(out + n, len - n, "%.*s=%lld;", (int)e->key.len,
                           (const char *)e->key.bytes, (long long)v->value.i64);
    else
      n += (size_t)snprintf(out + n, len - n, "%.*s=?;", (int)e->key.len,
                            (const char *)e->key.bytes);
  }
}

/* Every method waiting at the broker's end c (up to max), in order. */
static int read_all(amqp_connection_state_t c, seen *out, int max) {
  int n = 0;
  for (;;) {
    amqp_frame_t f;
    /* rabbitmq-c's own timeout needs a logged-in connection: wait for
     * the socket here, and read only what is there. */
    struct pollfd pfd = {amqp_get_sockfd(c), POLLIN, 0};
    if (!amqp_frames_enqueued(c) && !amqp_data_in_buffer(c) &&
        poll(&pfd, 1, 100) != 1)
      break;
    if (amqp_simple_wait_frame(c, &f) != AMQP_STATUS_OK) break;
    if (f.frame_type == AMQP_FRAME_HEADER && n > 0) {
      const amqp_basic_properties_t *p = f.payload.properties.decoded;
      seen *s = &out[n - 1];
      if (p->_flags & AMQP_BASIC_HEADERS_FLAG)
        render(&p->headers, s->headers, sizeof s->headers);
      s->has_expiration = (p->_flags & AMQP_BASIC_EXPIRATION_FLAG) != 0;
      if (s->has_expiration)
        snprintf(s->expiration, sizeof s->expiration, "%.*s",
                 (int)p->expiration.len, (const char *)p->expiration.bytes);
      s->priority = (p->_flags & AMQP_BASIC_PRIORITY_FLAG) ? p->priority : -1;
      if (p->_flags & AMQP_BASIC_CORRELATION_ID_FLAG)
        snprintf(s->corr, sizeof s->corr, "%.*s", (int)p->correlation_id.len,
                 (const char *)p->correlation_id.bytes);
      continue;
    }
    if (f.frame_type != AMQP_FRAME_METHOD) continue; /* bodies */
    cr_assert_lt(n, max);
    seen *s = &out[n++];
    memset(s, 0, sizeof *s);
    s->id = f.payload.method.id;
    s->ch = f.channel;
    void *d = f.payload.method.decoded;
    if (s->id == AMQP_BASIC_ACK_METHOD) {
      s->tag = ((amqp_basic_ack_t *)d)->delivery_tag;
      s->flag = ((amqp_basic_ack_t *)d)->multiple;
    } else if (s->id == AMQP_BASIC_NACK_METHOD) {
      s->tag = ((amqp_basic_nack_t *)d)->delivery_tag;
      s->flag = ((amqp_basic_nack_t *)d)->requeue;
    } else if (s->id == AMQP_BASIC_PUBLISH_METHOD) {
      const amqp_basic_publish_t *p = d;
      s->flag = p->mandatory;
      snprintf(s->exchange, sizeof s->exchange, "%.*s", (int)p->exchange.len,
               (const char *)p->exchange.bytes);
      snprintf(s->rk, sizeof s->rk, "%.*s", (int)p->routing_key.len,
               (const char *)p->routing_key.bytes);
    }
  }
  amqp_maybe_release_buffers(c);
  return n;
}

/* A job of handler 0, delivered with tag and running its attempt, with
 * the publisher's properties p. */
static wr_job *running(uint64_t tag, uint32_t attempt,
                       const amqp_basic_properties_t *p) {
  wr_job *j = wr_ledger_slot(&led_);
  cr_assert_not_null(j);
  j->env.delivery_tag = tag;
  j->env.channel = 1;
  j->gen = ses_.gen;
  j = wr_ledger_take(&led_, 0);
  j->env.message.properties = *p;
  j->env.message.body = amqp_cstring_bytes("body");
  j->env.routing_key = amqp_cstring_bytes("q");
  j->meta.attempt = j->meta.recorded = attempt;
  j->started = wr_now();
  wr_ledger_move(&led_, j, WR_JOB_WAITING);
  wr_ledger_move(&led_, j, WR_JOB_WORKING);
  return j;
}

/* The publisher's properties: a header of its own, a TTL, a priority. */
static amqp_table_entry_t own_[1];
static amqp_basic_properties_t published(void) {
  own_[0] = (amqp_table_entry_t){
      amqp_cstring_bytes("tenant"),
      {AMQP_FIELD_KIND_UTF8, {.bytes = amqp_cstring_bytes("acme")}}};
  amqp_basic_properties_t p = {0};
  p._flags = AMQP_BASIC_HEADERS_FLAG | AMQP_BASIC_EXPIRATION_FLAG |
             AMQP_BASIC_PRIORITY_FLAG;
  p.headers = (amqp_table_t){1, own_};
  p.expiration = amqp_cstring_bytes("60000");
  p.priority = 7;
  return p;
}

static wr_pub_event confirm(int kind, uint64_t tag, int multiple) {
  return (wr_pub_event){.kind = kind, .tag = tag, .multiple = multiple};
}

Test(settle_wire, a_failed_job_is_acked_only_once_its_retry_copy_is_confirmed) {
  amqp_basic_properties_t p = published();
  wr_job *j = running(5, 1, &p);
  wr_settle_finish(&st_, 0, j, WR_OUT_FAILED, "boom");
  seen s[8];
  cr_assert_eq(read_all(publisher_end_, s, 8), 1, "one copy");
  char rq[300];
  wr_name_retry_queue("q", 1.0, rq, sizeof rq);
  cr_assert_eq(s[0].id, AMQP_BASIC_PUBLISH_METHOD);
  cr_assert_eq(s[0].ch, 2, "on the confirm channel");
  cr_assert(s[0].flag, "mandatory: an unroutable copy comes back");
  cr_assert_str_eq(s[0].exchange, "");
  cr_assert_str_eq(s[0].rk, rq);
  cr_assert(strstr(s[0].headers, "warren-attempt=2;"), "%s", s[0].headers);
  cr_assert(strstr(s[0].headers, "warren-last-error=boom;"));
  cr_assert(strstr(s[0].headers, "tenant=acme;"), "the publisher's header");
  cr_assert_str_eq(s[0].expiration, "1000", "the retry delay");
  cr_assert_eq(s[0].priority, 7, "the job's priority");
  cr_assert_eq(read_all(consumer_end_, s, 8), 0, "no ack before the confirm");
  cr_assert_eq(j->state, WR_JOB_CONFIRMING);
  wr_pub_event ev = confirm(WR_PUB_ACK, ses_.pub_seq, 0);
  wr_settle_published(&st_, &ev);
  cr_assert_eq(read_all(consumer_end_, s, 8), 1);
  cr_assert_eq(s[0].id, AMQP_BASIC_ACK_METHOD);
  cr_assert_eq(s[0].ch, 1);
  cr_assert_eq(s[0].tag, 5);
  cr_assert_eq(wr_ledger_held(&led_), 0);
  cr_assert_not(wr_settle_refusing(&st_));
  cr_assert_eq(lost_, 0);
}

Test(settle_wire,
     a_dead_letter_keeps_the_jobs_headers_and_priority_not_its_ttl) {
  amqp_basic_properties_t p = published();
  wr_job *j = running(9, 3, &p); /* its last attempt */
  wr_settle_finish(&st_, 0, j, WR_OUT_FAILED, "still failing");
  seen s[8];
  cr_assert_eq(read_all(publisher_end_, s, 8), 1);
  char dlx[300];
  wr_name_dlx("q", dlx, sizeof dlx);
  cr_assert_str_eq(s[0].exchange, dlx);
  cr_assert_str_eq(s[0].rk, "q", "the job's own routing key");
  cr_assert(strstr(s[0].headers, "warren-dead-reason=max-attempts;"), "%s",
            s[0].headers);
  cr_assert(strstr(s[0].headers, "warren-dead-attempts=3;"));
  cr_assert(strstr(s[0].headers, "warren-dead-queue=q;"));
  cr_assert(strstr(s[0].headers, "warren-dead-host=host;"));
  cr_assert(strstr(s[0].headers, "tenant=acme;"), "the publisher's header");
  cr_assert_not(s[0].has_expiration, "a dead letter waits for an operator");
  cr_assert_eq(s[0].priority, 7);
  cr_assert_eq(read_all(consumer_end_, s, 8), 0);
  wr_pub_event ev = confirm(WR_PUB_ACK, ses_.pub_seq, 0);
  wr_settle_published(&st_, &ev);
  cr_assert_eq(read_all(consumer_end_, s, 8), 1);
  cr_assert_eq(s[0].tag, 9);
}

Test(settle_wire, a_nacked_copy_requeues_its_original_after_a_backoff) {
  amqp_basic_properties_t p = published();
  wr_job *j = running(4, 1, &p);
  wr_settle_finish(&st_, 0, j, WR_OUT_FAILED, "boom");
  seen s[8];
  cr_assert_eq(read_all(publisher_end_, s, 8), 1);
  wr_pub_event ev = confirm(WR_PUB_NACK, ses_.pub_seq, 0);
  wr_settle_published(&st_, &ev);
  cr_assert_eq(read_all(consumer_end_, s, 8), 0, "neither acked nor lost");
  cr_assert_eq(j->state, WR_JOB_PARKED);
  cr_assert(wr_settle_refusing(&st_), "the worker says it is not ready");
  cr_assert_gt(st_.redeclare_at, 0, "the topology is declared again");
  /* This test plays no broker for the re-declare's RPCs. */
  st_.redeclare_at = 0;
  double now = wr_now();
  wr_settle_tick(&st_, now, 0);
  cr_assert_eq(read_all(consumer_end_, s, 8), 0, "not before its backoff");
  wr_settle_tick(&st_, now + WR_REFUSAL_MAX_S + 1, 0);
  cr_assert_eq(read_all(consumer_end_, s, 8), 1);
  cr_assert_eq(s[0].id, AMQP_BASIC_NACK_METHOD);
  cr_assert_eq(s[0].tag, 4);
  cr_assert(s[0].flag, "requeued, not dropped");
  cr_assert_eq(wr_ledger_held(&led_), 0);
}

Test(settle_wire, a_return_marks_the_copy_that_came_back_not_the_oldest) {
  amqp_basic_properties_t p = published();
  wr_job *a = running(1, 1, &p), *b = running(2, 1, &p);
  wr_settle_finish(&st_, 0, a, WR_OUT_FAILED, "a");
  wr_settle_finish(&st_, 0, b, WR_OUT_FAILED, "b");
  seen s[8];
  cr_assert_eq(read_all(publisher_end_, s, 8), 2);
  /* b's copy came back unroutable, then one confirm covers both. */
  wr_pub_event ev = {.kind = WR_PUB_RETURN, .copy = (int64_t)ses_.pub_seq};
  snprintf(ev.why, sizeof ev.why, "312 NO_ROUTE");
  wr_settle_published(&st_, &ev);
  ev = confirm(WR_PUB_ACK, ses_.pub_seq, 1);
  wr_settle_published(&st_, &ev);
  cr_assert_eq(read_all(consumer_end_, s, 8), 1, "a is acked, b is not");
  cr_assert_eq(s[0].id, AMQP_BASIC_ACK_METHOD);
  cr_assert_eq(s[0].tag, 1);
  cr_assert_eq(a->state, WR_JOB_FREE);
  cr_assert_eq(b->state, WR_JOB_PARKED);
}

Test(settle_wire, an_ack_never_covers_a_job_still_running_below_it) {
  amqp_basic_properties_t p = {0};
  wr_job *a = running(1, 1, &p), *b = running(2, 1, &p);
  (void)a;
  wr_settle_finish(&st_, 0, b, WR_OUT_ACKED, NULL);
  wr_settle_flush(&st_, 0);
  seen s[8];
  cr_assert_eq(read_all(consumer_end_, s, 8), 1);
  cr_assert_eq(s[0].tag, 2);
  cr_assert_not(s[0].flag, "a multiple ack would ack the running job 1");
  cr_assert_not(wr_settle_unacked(&st_, 0));
}

/* A job that asks for its result in queue "replies" (listed), with
 * correlation id "c1". */
static const char *replies_[] = {"replies"};
static amqp_basic_properties_t asking(void) {
  hc_.reply_queues = replies_;
  hc_.n_reply_queues = 1;
  amqp_basic_properties_t p = {0};
  p._flags = AMQP_BASIC_REPLY_TO_FLAG | AMQP_BASIC_CORRELATION_ID_FLAG;
  p.reply_to = amqp_cstring_bytes("replies");
  p.correlation_id = amqp_cstring_bytes("c1");
  return p;
}

Test(settle_wire,
     a_result_goes_first_and_the_job_is_acked_once_it_is_confirmed) {
  amqp_basic_properties_t p = asking();
  wr_job *j = running(3, 1, &p);
  wr_settle_followups(&st_, 0, j);
  seen s[8];
  cr_assert_eq(read_all(publisher_end_, s, 8), 1, "the result");
  cr_assert_str_eq(s[0].exchange, "");
  cr_assert_str_eq(s[0].rk, "replies");
  cr_assert_str_eq(s[0].corr, "c1", "the caller matches it by this");
  cr_assert(strstr(s[0].headers, "warren-outcome=ack;"), "%s", s[0].headers);
  cr_assert_eq(read_all(consumer_end_, s, 8), 0, "no ack before its confirm");
  /* The reply queue is gone (its caller timed out): the job's work is
   * done all the same. */
  wr_pub_event ev = {.kind = WR_PUB_RETURN, .copy = (int64_t)ses_.pub_seq};
  wr_settle_published(&st_, &ev);
  ev = confirm(WR_PUB_ACK, ses_.pub_seq, 0);
  wr_settle_published(&st_, &ev);
  cr_assert(wr_settle_unacked(&st_, 0), "its ack waits with the others");
  wr_settle_flush(&st_, 0);
  cr_assert_eq(read_all(consumer_end_, s, 8), 1);
  cr_assert_eq(s[0].id, AMQP_BASIC_ACK_METHOD);
  cr_assert_eq(s[0].tag, 3);
  cr_assert_eq(read_all(publisher_end_, s, 8), 0, "the job ran once");
}

Test(settle_wire, a_dead_lettered_job_answers_its_caller_with_an_error_result) {
  amqp_basic_properties_t p = asking();
  wr_job *j = running(6, 3, &p);
  wr_settle_finish(&st_, 0, j, WR_OUT_FAILED, "no");
  seen s[8];
  cr_assert_eq(read_all(publisher_end_, s, 8), 2,
               "the dead letter, the result");
  cr_assert_str_eq(s[1].rk, "replies");
  cr_assert_str_eq(s[1].corr, "c1");
  cr_assert(strstr(s[1].headers, "warren-outcome=dead-lettered;"), "%s",
            s[1].headers);
  cr_assert(strstr(s[1].headers, "warren-dead-reason=max-attempts;"));
  wr_pub_event ev = confirm(WR_PUB_ACK, ses_.pub_seq - 1, 0);
  wr_settle_published(&st_, &ev);
  cr_assert_eq(read_all(consumer_end_, s, 8), 0, "the result is awaited too");
  ev = confirm(WR_PUB_ACK, ses_.pub_seq, 0);
  wr_settle_published(&st_, &ev);
  cr_assert_eq(read_all(consumer_end_, s, 8), 1);
  cr_assert_eq(s[0].tag, 6);
}
