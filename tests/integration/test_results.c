/*
 * Job results (docs/results.md): a handler's result reaches the caller by
 * RabbitMQ's direct reply-to (warren_producer_call) and by a named reply
 * queue, with the job's correlation id and the result's content type; a
 * dead-lettered job answers with an error result; a missing reply queue
 * neither blocks nor loops its job; a result over max_result is refused
 * to the handler; warren-publish --wait prints the result.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <sys/stat.h>

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <warren/producer.h>
#include <warren/status.h>

#include "clock.h"
#include "conn.h"
#include "support.h"

TW_SUITE(results, 180);

static char g_log[300], g_rec[300];

/* Start a worker with handler "h" running the reply test plugin on queue
 * q; extra goes into the handler's group, settings into its settings. */
static pid_t start(const char *q, const char *extra, const char *settings) {
  const char *dir = tw_dir();
  char text[4096];
  snprintf(g_log, sizeof g_log, "%s/warren.log", dir);
  snprintf(g_rec, sizeof g_rec, "%s/rec", dir);
  snprintf(text, sizeof text,
           "handlers = ( { name = \"h\"; queue = \"%s\";\n"
           "  plugin = \"" TEST_HANDLER_DIR
           "/reply.so\";\n"
           "  %s\n  settings = { log = \"%s\"; %s }; } );\n",
           q, extra, g_rec, settings);
  pid_t w = tw_warren_start(dir, text);
  return tw_wait_text(g_log, "consuming 1 queue(s)", 30) ? w : -1;
}

/* Lines of the handler's record for job id: how many times it ran. */
static int runs(const char *id) {
  FILE *f = fopen(g_rec, "r");
  if (!f) return 0;
  char line[512], word[256];
  int n = 0;
  while (fgets(line, sizeof line, f))
    n += sscanf(line, "%255s", word) == 1 && strcmp(word, id) == 0;
  fclose(f);
  return n;
}

static warren_producer *producer(void) {
  warren_producer_opts po = {.size = sizeof po, .port = tw_port()};
  warren_producer *p = NULL;
  int rc = warren_producer_open(&po, &p);
  cr_assert_eq(rc, 0, "producer: %s", warren_strerror(rc));
  return p;
}

/* One message taken from queue (acked), its properties as they came. */
typedef struct got {
  char id[256], corr[256], ctype[256], outcome[64], body[4096];
} got;

static int take(const char *queue, got *g, double timeout_s) {
  memset(g, 0, sizeof *g);
  double until = wr_now() + timeout_s;
  while (wr_now() < until) {
    amqp_connection_state_t c = tw_conn_confirming();
    if (!c) return 0;
    amqp_rpc_reply_t r = amqp_basic_get(c, 1, amqp_cstring_bytes(queue), 1);
    amqp_message_t m;
    int ok = r.reply_type == AMQP_RESPONSE_NORMAL &&
             r.reply.id == AMQP_BASIC_GET_OK_METHOD &&
             amqp_read_message(c, 1, &m, 0).reply_type == AMQP_RESPONSE_NORMAL;
    if (ok) {
      const amqp_basic_properties_t *p = &m.properties;
#define PROP(flag, f, dst)                                 \
  if (p->_flags & (flag))                                  \
    snprintf(g->dst, sizeof g->dst, "%.*s", (int)p->f.len, \
             (const char *)p->f.bytes);                    \
  else                                                     \
    snprintf(g->dst, sizeof g->dst, "(none)");
      PROP(AMQP_BASIC_MESSAGE_ID_FLAG, message_id, id)
      PROP(AMQP_BASIC_CORRELATION_ID_FLAG, correlation_id, corr)
      PROP(AMQP_BASIC_CONTENT_TYPE_FLAG, content_type, ctype)
#undef PROP
      snprintf(g->body, sizeof g->body, "%.*s", (int)m.body.len,
               (const char *)m.body.bytes);
      for (int i = 0;
           (p->_flags & AMQP_BASIC_HEADERS_FLAG) && i < p->headers.num_entries;
           i++) {
        const amqp_table_entry_t *e = &p->headers.entries[i];
        if (e->key.len == 14 && !memcmp(e->key.bytes, "warren-outcome", 14))
          snprintf(g->outcome, sizeof g->outcome, "%.*s",
                   (int)e->value.value.bytes.len,
                   (const char *)e->value.value.bytes.bytes);
      }
      amqp_destroy_message(&m);
    }
    wr_conn_close(c);
    if (ok) return 1;
    usleep(50 * 1000);
  }
  return 0;
}

/* Stop the worker; then every job it acked is gone from q, and one it
 * left unacked would be back. */
static void stop_and_check_empty(pid_t w, const char *q) {
  int st = tw_warren_stop(w, SIGTERM, 30);
  cr_assert_eq(st, 0, "warren exited %d", st);
  int n = tw_queue_len(q);
  cr_assert_eq(n, 0, "%d job(s) left in %s", n, q);
}

/* Breaks when the result does not come back by direct reply-to (a
 * mandatory publish to the pseudo-queue comes back unroutable, the
 * correlation id is not copied, the content type is lost), when the last
 * set_result does not win, or when a job without a result leaves its
 * caller waiting. */
Test(results, a_result_comes_back_by_direct_reply_to) {
  const char *q = "it.res.direct";
  tw_delete_queue(q);
  pid_t w = start(q, "", "");
  cr_assert_gt(w, 0);
  warren_producer *p = producer();
  warren_reply r = {.size = sizeof r};
  warren_publish_opts o = {
      .size = sizeof o, .message_id = "ok1", .correlation_id = "c-1"};
  int rc = warren_producer_call(p, "", q, "hello", 5, &o, 30000, &r);
  cr_assert_eq(rc, 0, "%s: %s", warren_strerror(rc), warren_producer_error(p));
  int outcome = r.outcome;
  cr_assert_eq(outcome, WARREN_OUTCOME_ACK);
  size_t len = r.body_len;
  cr_assert_eq(len, 10);
  cr_assert_str_eq((const char *)r.body, "echo:hello");
  cr_assert_str_eq(r.content_type, "text/plain");
  cr_assert_str_eq(r.correlation_id, "c-1");
  cr_assert_str_eq(r.reason, "");
  warren_reply_free(&r);

  /* A generated correlation id; no result set: an empty one. */
  o = (warren_publish_opts){.size = sizeof o, .message_id = "none2"};
  rc = warren_producer_call(p, "", q, "x", 1, &o, 30000, &r);
  cr_assert_eq(rc, 0, "%s: %s", warren_strerror(rc), warren_producer_error(p));
  size_t clen = strlen(r.correlation_id);
  cr_assert_eq(clen, 32, "generated id '%s'", r.correlation_id);
  len = r.body_len;
  cr_assert_eq(len, 0);
  outcome = r.outcome;
  cr_assert_eq(outcome, WARREN_OUTCOME_ACK);
  warren_reply_free(&r);

  o = (warren_publish_opts){.size = sizeof o, .message_id = "twice3"};
  rc = warren_producer_call(p, "", q, "x", 1, &o, 30000, &r);
  cr_assert_eq(rc, 0, "%s: %s", warren_strerror(rc), warren_producer_error(p));
  cr_assert_str_eq((const char *)r.body, "bb");
  warren_reply_free(&r);

  /* A job no queue takes fails the call at once, not at its timeout. */
  o = (warren_publish_opts){.size = sizeof o, .message_id = "ok4"};
  rc =
      warren_producer_call(p, "", "it.res.no.such.queue", "x", 1, &o, 5000, &r);
  cr_assert_eq(rc, WARREN_BROKER_NACK, "%s", warren_strerror(rc));
  warren_producer_close(p);
  stop_and_check_empty(w, q);
  /* Each result was taken by the broker as delivered, none came back. */
  cr_assert(
      tw_wait_text(g_log, "results sent 3, to a missing reply queue 0", 5),
      "results were returned or not counted");
}

/* Breaks when the result is not published to a named reply_to queue, or
 * without the job's correlation id (or, without one, its message id),
 * content type or outcome header, or when the job is acked before it. */
Test(results, a_result_goes_to_a_named_reply_queue) {
  const char *q = "it.res.named", *rq = "it.res.named.replies";
  tw_delete_queue(q);
  tw_delete_queue(rq);
  cr_assert_eq(tw_declare_plain(rq), 0);
  pid_t w = start(q, "reply_queues = [\"it.res.named.replies\"];", "");
  cr_assert_gt(w, 0);
  warren_producer *p = producer();
  warren_publish_opts o = {.size = sizeof o,
                           .message_id = "ok7",
                           .correlation_id = "corr-42",
                           .reply_to = rq};
  int rc = warren_producer_publish(p, "", q, "x", 1, &o);
  cr_assert_eq(rc, 0, "%s", warren_producer_error(p));
  o.message_id = "ok8";
  o.correlation_id = NULL;
  rc = warren_producer_publish(p, "", q, "yz", 2, &o);
  cr_assert_eq(rc, 0, "%s", warren_producer_error(p));
  rc = warren_producer_flush(p, 30000);
  cr_assert_eq(rc, 0, "%s", warren_producer_error(p));
  warren_producer_close(p);

  /* warren-publish --reply-to sets it the same way. */
  char cmd[1024];
  snprintf(cmd, sizeof cmd,
           "%s --port %d --routing-key %s --id ok9 --body cli --reply-to %s "
           ">/dev/null 2>&1",
           WARREN_PUBLISH_BIN, tw_port(), q, rq);
  int st = system(cmd);
  cr_assert_eq(st, 0, "warren-publish --reply-to exited %d", st);

  got g;
  cr_assert(take(rq, &g, 30), "no result in %s", rq);
  cr_assert_str_eq(g.corr, "corr-42");
  cr_assert_str_eq(g.ctype, "text/plain");
  cr_assert_str_eq(g.body, "echo:x");
  cr_assert_str_eq(g.outcome, "ack");
  cr_assert_str_eq(g.id, "ok7");
  cr_assert(take(rq, &g, 30), "no second result in %s", rq);
  cr_assert_str_eq(g.corr, "ok8", "answered under its message id");
  cr_assert_str_eq(g.body, "echo:yz");
  cr_assert(take(rq, &g, 30), "no result of warren-publish's job in %s", rq);
  cr_assert_str_eq(g.corr, "ok9");
  cr_assert_str_eq(g.body, "echo:cli");
  stop_and_check_empty(w, q);
  tw_delete_queue(rq);
}

/* Breaks when a dead-lettered job sends no error result, or one without
 * its outcome, reason, error text and attempts, when a retried attempt
 * answers early, or when the error result is not confirmed with the dead
 * letter (the dead letter must be in the DLQ too). */
Test(results, a_dead_lettered_job_answers_with_an_error_result) {
  const char *q = "it.res.err";
  tw_delete_queue(q);
  tw_delete_queue("it.res.err.dlq");
  pid_t w = start(q, "retry = { max_attempts = 3; backoff = [0.2]; };", "");
  cr_assert_gt(w, 0);
  warren_producer *p = producer();
  warren_reply r = {.size = sizeof r};
  warren_publish_opts o = {.size = sizeof o, .message_id = "rej1"};
  int rc = warren_producer_call(p, "", q, "bad input", 9, &o, 30000, &r);
  cr_assert_eq(rc, 0, "%s: %s", warren_strerror(rc), warren_producer_error(p));
  int outcome = r.outcome;
  cr_assert_eq(outcome, WARREN_OUTCOME_DEAD_LETTERED);
  cr_assert_str_eq(r.reason, "rejected");
  cr_assert_str_eq(r.error, "no good: bad input");
  unsigned attempts = r.attempts;
  cr_assert_eq(attempts, 1);
  cr_assert_str_eq(r.content_type, "application/json");
  const char *body = r.body;
  cr_assert(strstr(body, "\"outcome\":\"dead-lettered\""), "%s", body);
  cr_assert(strstr(body, "\"reason\":\"rejected\""), "%s", body);
  cr_assert(strstr(body, "\"error\":\"no good: bad input\""), "%s", body);
  cr_assert(strstr(body, "\"message_id\":\"rej1\""), "%s", body);
  cr_assert(strstr(body, "\"attempts\":1"), "%s", body);
  warren_reply_free(&r);

  /* Attempts run out: one answer, after the last. */
  o.message_id = "retry2";
  rc = warren_producer_call(p, "", q, "x", 1, &o, 30000, &r);
  cr_assert_eq(rc, 0, "%s: %s", warren_strerror(rc), warren_producer_error(p));
  outcome = r.outcome;
  cr_assert_eq(outcome, WARREN_OUTCOME_DEAD_LETTERED);
  cr_assert_str_eq(r.reason, "max-attempts");
  cr_assert_str_eq(r.error, "try again");
  attempts = r.attempts;
  cr_assert_eq(attempts, 3);
  warren_reply_free(&r);
  int ran = runs("retry2");
  cr_assert_eq(ran, 3, "%d attempts ran before the answer came", ran);

  warren_producer_close(p);
  int dead = tw_queue_len("it.res.err.dlq");
  cr_assert_eq(dead, 2, "%d dead letter(s)", dead);
  stop_and_check_empty(w, q);
}

/* Breaks when a result to a reply queue that does not exist fails the
 * job, blocks it, or loops it (the job must run once and be acked), or
 * when it is not said in the log. */
Test(results, a_missing_reply_queue_neither_blocks_nor_loops_the_job) {
  const char *q = "it.res.gone";
  tw_delete_queue(q);
  tw_delete_queue("it.res.gone.dlq");
  tw_delete_queue("it.res.gone.nobody");
  pid_t w = start(q, "reply_queues = [\"it.res.gone.nobody\"];", "");
  cr_assert_gt(w, 0);
  warren_producer *p = producer();
  warren_publish_opts o = {.size = sizeof o,
                           .message_id = "ok9",
                           .correlation_id = "c9",
                           .reply_to = "it.res.gone.nobody"};
  int rc = warren_producer_publish(p, "", q, "x", 1, &o);
  cr_assert_eq(rc, 0, "%s", warren_producer_error(p));
  /* A second job behind it shows the handler is not blocked. */
  o.message_id = "ok10";
  o.reply_to = NULL;
  rc = warren_producer_publish(p, "", q, "x", 1, &o);
  cr_assert_eq(rc, 0, "%s", warren_producer_error(p));
  cr_assert_eq(warren_producer_flush(p, 30000), 0);
  warren_producer_close(p);
  cr_assert(tw_wait_text(g_log, "reply queue does not exist", 30),
            "the missing reply queue is not said");
  cr_assert(tw_wait_text(g_rec, "ok10 1", 30));
  usleep(1000 * 1000); /* a loop would run it again by now */
  int ran = runs("ok9");
  cr_assert_eq(ran, 1, "job ran %d times", ran);
  int dead = tw_queue_len("it.res.gone.dlq");
  cr_assert_eq(dead, 0);
  stop_and_check_empty(w, q);
  cr_assert(tw_wait_text(g_log, "to a missing reply queue 1", 5),
            "the summary does not count it");
}

/* Breaks when a result over the handler's max_result is taken (or the
 * handler is not told), when one at the limit is refused, or when the
 * refused call drops the earlier result. */
Test(results, a_result_over_max_result_is_refused_to_the_handler) {
  const char *q = "it.res.big";
  tw_delete_queue(q);
  pid_t w = start(q, "max_result = 100;", "");
  cr_assert_gt(w, 0);
  warren_producer *p = producer();
  warren_reply r = {.size = sizeof r};
  warren_publish_opts o = {.size = sizeof o, .message_id = "big1"};
  int rc = warren_producer_call(p, "", q, "101", 3, &o, 30000, &r);
  cr_assert_eq(rc, 0, "%s: %s", warren_strerror(rc), warren_producer_error(p));
  cr_assert_str_eq((const char *)r.body, "first");
  warren_reply_free(&r);
  char line[64];
  snprintf(line, sizeof line, "big1 1 %d", WARREN_TOO_LARGE);
  cr_assert(tw_wait_text(g_rec, line, 5), "the handler was not told");

  o.message_id = "big2";
  rc = warren_producer_call(p, "", q, "100", 3, &o, 30000, &r);
  cr_assert_eq(rc, 0, "%s: %s", warren_strerror(rc), warren_producer_error(p));
  size_t len = r.body_len;
  cr_assert_eq(len, 100);
  cr_assert_str_eq(r.content_type, "application/octet-stream");
  warren_reply_free(&r);
  warren_producer_close(p);
  stop_and_check_empty(w, q);
}

/* Breaks when an in-process handler's result (isolation = false) or its
 * follow-up is not sent, or the result goes before the follow-up is
 * confirmed. */
Test(results, an_in_process_handler_answers_with_its_follow_up_sent) {
  const char *q = "it.res.inproc", *fq = "it.res.inproc.next";
  tw_delete_queue(q);
  tw_delete_queue(fq);
  cr_assert_eq(tw_declare_plain(fq), 0);
  char settings[200];
  snprintf(settings, sizeof settings, "followup_queue = \"%s\";", fq);
  pid_t w = start(q, "isolation = false;", settings);
  cr_assert_gt(w, 0);
  warren_producer *p = producer();
  warren_reply r = {.size = sizeof r};
  warren_publish_opts o = {.size = sizeof o, .message_id = "ok11"};
  int rc = warren_producer_call(p, "", q, "in", 2, &o, 30000, &r);
  cr_assert_eq(rc, 0, "%s: %s", warren_strerror(rc), warren_producer_error(p));
  cr_assert_str_eq((const char *)r.body, "echo:in");
  warren_reply_free(&r);
  o.message_id = "follow12";
  rc = warren_producer_call(p, "", q, "x", 1, &o, 30000, &r);
  cr_assert_eq(rc, 0, "%s: %s", warren_strerror(rc), warren_producer_error(p));
  cr_assert_str_eq((const char *)r.body, "followed");
  warren_reply_free(&r);
  int n = tw_queue_len(fq);
  cr_assert_eq(n, 1, "the follow-up is in its queue when the result comes");
  warren_producer_close(p);
  stop_and_check_empty(w, q);
  tw_delete_queue(fq);
}

static int sh(char *out, size_t len, const char *cmd) {
  FILE *f = popen(cmd, "r");
  if (!f) return -1;
  size_t n = fread(out, 1, len - 1, f);
  out[n] = '\0';
  int st = pclose(f);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Breaks when warren-publish --wait does not print the result as it is,
 * or its exit status does not tell an ack, a dead letter and no result. */
Test(results, warren_publish_wait_prints_the_result) {
  const char *q = "it.res.cli";
  tw_delete_queue(q);
  pid_t w = start(q, "", "");
  cr_assert_gt(w, 0);
  char cmd[1024], out[4096];
  snprintf(cmd, sizeof cmd,
           "%s --port %d --routing-key %s --id ok13 --body 'hi there' "
           "--wait --timeout 30 2>&1",
           WARREN_PUBLISH_BIN, tw_port(), q);
  int st = sh(out, sizeof out, cmd);
  cr_assert_eq(st, 0, "exit %d: %s", st, out);
  cr_assert_str_eq(out, "echo:hi there");

  snprintf(cmd, sizeof cmd,
           "%s --port %d --routing-key %s --id rej14 --body nope --wait "
           "2>&1 >/dev/null",
           WARREN_PUBLISH_BIN, tw_port(), q);
  st = sh(out, sizeof out, cmd);
  cr_assert_eq(st, 3, "exit %d: %s", st, out);
  cr_assert(strstr(out, "rejected: no good: nope"), "%s", out);

  /* No worker: no result in time. */
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
  snprintf(cmd, sizeof cmd,
           "%s --port %d --routing-key %s --id ok15 --wait --timeout 0.5 "
           "2>&1",
           WARREN_PUBLISH_BIN, tw_port(), q);
  st = sh(out, sizeof out, cmd);
  cr_assert_eq(st, 4, "exit %d: %s", st, out);
  cr_assert(strstr(out, "no result in"), "%s", out);
  tw_delete_queue(q);
}

/* Breaks when the job is acked before the broker confirmed its result
 * (a refused result must fail the attempt, as a refused follow-up does),
 * or when a refused error result sends the dead-lettered job round again
 * (it is best effort: the dead letter is confirmed, the job acked). */
Test(results,
     a_refused_result_fails_the_attempt_and_the_error_result_is_best_effort) {
  const char *q = "it.res.full", *rq = "it.res.full.replies";
  tw_delete_queue(q);
  tw_delete_queue("it.res.full.dlq");
  tw_delete_queue(rq);
  cr_assert_eq(tw_declare_refusing(rq), 0);
  pid_t w = start(q,
                  "retry = { max_attempts = 2; backoff = [0.2]; };"
                  " reply_queues = [\"it.res.full.replies\"];",
                  "");
  cr_assert_gt(w, 0);
  warren_producer *p = producer();
  warren_publish_opts o = {
      .size = sizeof o, .message_id = "ok16", .reply_to = rq};
  int rc = warren_producer_publish(p, "", q, "x", 1, &o);
  cr_assert_eq(rc, 0, "%s", warren_producer_error(p));
  cr_assert_eq(warren_producer_flush(p, 30000), 0);
  warren_producer_close(p);
  double until = wr_now() + 30;
  while (tw_queue_len("it.res.full.dlq") < 1 && wr_now() < until)
    usleep(50 * 1000);
  char dump[8192];
  cr_assert_eq(tw_get("it.res.full.dlq", 1, dump, sizeof dump), 1,
               "not dead-lettered");
  cr_assert(strstr(dump, "the job's result was refused by the broker"), "%s",
            dump);
  cr_assert(strstr(dump, "h.warren-dead-reason=S:12:max-attempts"), "%s", dump);
  cr_assert(tw_wait_text(g_log, "refused the error result", 10));
  usleep(1500 * 1000); /* a job sent round again would run by now */
  int ran = runs("ok16");
  cr_assert_eq(ran, 2, "ran %d times", ran);
  int dead = tw_queue_len("it.res.full.dlq");
  cr_assert_eq(dead, 0, "%d more dead letter(s)", dead);
  stop_and_check_empty(w, q);
  tw_delete_queue(rq);
}

/* A job in queue q with message id `id` whose reply_to is a direct
 * reply-to name the broker gave to a channel that is closed since (as a
 * replayed dead letter carries): asked for through a holding queue, then
 * moved to q with its properties as they are. 0 when done. */
static int publish_stale(const char *q, const char *id) {
  const char *hold = "it.res.stale.hold";
  tw_delete_queue(hold);
  if (tw_declare_plain(hold) != 0) return -1;
  amqp_connection_state_t c = tw_conn_confirming();
  if (!c) return -1;
  amqp_basic_consume(c, 1, amqp_cstring_bytes("amq.rabbitmq.reply-to"),
                     amqp_empty_bytes, 0, 1, 0, amqp_empty_table);
  if (amqp_get_rpc_reply(c).reply_type != AMQP_RESPONSE_NORMAL) return -1;
  amqp_basic_properties_t p = {
      ._flags = AMQP_BASIC_REPLY_TO_FLAG | AMQP_BASIC_MESSAGE_ID_FLAG |
                AMQP_BASIC_DELIVERY_MODE_FLAG,
      .reply_to = amqp_cstring_bytes("amq.rabbitmq.reply-to"),
      .message_id = amqp_cstring_bytes(id),
      .delivery_mode = 2};
  wr_confirms cf;
  wr_confirms_init(&cf);
  amqp_basic_publish(c, 1, amqp_empty_bytes, amqp_cstring_bytes(hold), 1, 0, &p,
                     amqp_cstring_bytes("x"));
  wr_confirms_sent(&cf);
  int rc = wr_confirms_wait(c, &cf, 10000);
  wr_conn_close(c); /* the name is stale from here on */
  if (rc != 0) return -1;
  c = tw_conn_confirming();
  if (!c) return -1;
  amqp_rpc_reply_t r = amqp_basic_get(c, 1, amqp_cstring_bytes(hold), 1);
  amqp_message_t m;
  if (r.reply_type != AMQP_RESPONSE_NORMAL ||
      r.reply.id != AMQP_BASIC_GET_OK_METHOD ||
      amqp_read_message(c, 1, &m, 0).reply_type != AMQP_RESPONSE_NORMAL) {
    wr_conn_close(c);
    return -1;
  }
  int direct = m.properties.reply_to.len > 22;
  wr_confirms_init(&cf);
  amqp_basic_publish(c, 1, amqp_empty_bytes, amqp_cstring_bytes(q), 1, 0,
                     &m.properties, m.body);
  wr_confirms_sent(&cf);
  rc = wr_confirms_wait(c, &cf, 10000);
  amqp_destroy_message(&m);
  wr_conn_close(c);
  tw_delete_queue(hold);
  return rc == 0 && direct ? 0 : -1;
}

/* Breaks when a reply_to that looks like direct reply-to but names no
 * live caller (a made-up name, or a caller long gone, as a replayed dead
 * letter carries) costs Warren its publishing channel or loops the job. */
Test(results, a_stale_or_made_up_direct_reply_to_name_costs_nothing) {
  const char *q = "it.res.stale";
  tw_delete_queue(q);
  pid_t w = start(q, "", "");
  cr_assert_gt(w, 0);
  /* A name the broker once gave, to a channel that is gone. */
  cr_assert_eq(publish_stale(q, "ok20"), 0);
  /* A call after it still gets its result: the connection is fine. */
  warren_producer *p = producer();
  warren_reply r = {.size = sizeof r};
  warren_publish_opts o = {.size = sizeof o, .message_id = "ok21"};
  int rc = warren_producer_call(p, "", q, "after", 5, &o, 30000, &r);
  cr_assert_eq(rc, 0, "%s: %s", warren_strerror(rc), warren_producer_error(p));
  cr_assert_str_eq((const char *)r.body, "echo:after");
  warren_reply_free(&r);
  /* Made-up names, last: nothing published after them must be needed
   * to settle them. */
  const char *names[] = {"amq.rabbitmq.reply-to.garbage",
                         "amq.rabbitmq.reply-to.g2wCZAAPcmFiYml0QGxvY2FsaG9z"
                         "dAAAA3wAAAAAAAAAAQ==.AAAAAAAAAAAAAAAAAAAAAA=="};
  for (int i = 0; i < 2; i++) {
    char id[32];
    snprintf(id, sizeof id, "ok%d", 22 + i);
    warren_publish_opts po = {
        .size = sizeof po, .message_id = id, .reply_to = names[i]};
    rc = warren_producer_publish(p, "", q, "x", 1, &po);
    cr_assert_eq(rc, 0, "%s", warren_producer_error(p));
  }
  cr_assert_eq(warren_producer_flush(p, 30000), 0);
  warren_producer_close(p);
  cr_assert(tw_wait_text(g_rec, "ok23 1", 30));
  cr_assert(tw_wait_text(g_log, "no direct reply-to name the broker gave", 5));
  usleep(500 * 1000); /* a loop would run them again by now */
  int r20 = runs("ok20"), r22 = runs("ok22"), r23 = runs("ok23");
  cr_assert(r20 == 1 && r22 == 1 && r23 == 1, "ran %d, %d and %d times", r20,
            r22, r23);
  int lost = tw_wait_text(g_log, "connection lost", 0.1);
  cr_assert_not(lost, "the broker closed Warren's connection");
  /* Acked, though nothing went out for them. */
  stop_and_check_empty(w, q);
  /* The stale name's result went out (the broker dropped it); the two
   * made-up names' did not. */
  cr_assert(
      tw_wait_text(g_log, "results sent 2, to a missing reply queue 2", 5),
      "the results are not counted as they went");
}

/* reply_to is not signed: a result goes to a named queue only when the
 * handler's reply_queues lists it, never into another handler's work
 * queue or a DLQ. The job itself is acked; the result is counted as
 * lost and said once. */
Test(results, a_reply_to_naming_an_unlisted_queue_gets_no_result) {
  const char *q = "it.res.deputy", *victim = "it.res.deputy.victim";
  tw_delete_queue(q);
  tw_delete_queue(victim);
  cr_assert_eq(tw_declare_plain(victim), 0);
  pid_t w = start(q, "reply_queues = [\"it.res.deputy.replies\"];", "");
  cr_assert_gt(w, 0);
  warren_producer *p = producer();
  warren_publish_opts o = {
      .size = sizeof o, .message_id = "dep1", .reply_to = victim};
  int rc = warren_producer_publish(p, "", q, "x", 1, &o);
  cr_assert_eq(rc, 0, "%s", warren_producer_error(p));
  cr_assert_eq(warren_producer_flush(p, 30000), 0);
  warren_producer_close(p);
  cr_assert(tw_wait_text(g_log, "is not in the handler's reply_queues", 30),
            "the lost result is said");
  cr_assert_eq(runs("dep1"), 1);
  stop_and_check_empty(w, q);
  cr_assert_eq(tw_queue_len(victim), 0, "a result reached %s", victim);
  tw_delete_queue(victim);
}

/* A job refused at intake gets no result of any kind: an unsigned job
 * sent to a handler that requires signatures, asking for an answer by
 * direct reply-to, is dead-lettered as `missing` and its caller hears
 * nothing. */
Test(results, a_job_refused_at_intake_gets_no_error_result) {
  const char *q = "it.res.refused";
  tw_delete_queue(q);
  tw_delete_queue("it.res.refused.dlq");
  const char *dir = tw_dir();
  char keyf[400], text[2048];
  snprintf(keyf, sizeof keyf, "%s/gw.key", dir);
  FILE *f = fopen(keyf, "w");
  cr_assert(f);
  fputs("gw-secret-0123456789abcdef0123456789abcdef\n", f);
  fclose(f);
  chmod(keyf, 0600);
  snprintf(g_log, sizeof g_log, "%s/warren.log", dir);
  snprintf(g_rec, sizeof g_rec, "%s/rec", dir);
  snprintf(text, sizeof text,
           "signing = { keys = ( { id = \"gw\"; file = \"%s\"; } );"
           " countersign_key = \"gw\"; };\n"
           "handlers = ( { name = \"h\"; queue = \"%s\";\n"
           "  plugin = \"" TEST_HANDLER_DIR
           "/reply.so\";\n"
           "  settings = { log = \"%s\"; }; } );\n",
           keyf, q, g_rec);
  pid_t w = tw_warren_start(dir, text);
  cr_assert(tw_wait_text(g_log, "consuming 1 queue(s)", 30));
  warren_producer *p = producer();
  warren_reply r = {.size = sizeof r};
  warren_publish_opts o = {.size = sizeof o, .message_id = "uns1"};
  int rc = warren_producer_call(p, "", q, "x", 1, &o, 5000, &r);
  cr_assert_eq(rc, WARREN_NO_REPLY, "an answer came: %s (%s)",
               warren_strerror(rc), warren_producer_error(p));
  warren_reply_free(&r);
  warren_producer_close(p);
  double until = wr_now() + 30;
  while (tw_queue_len("it.res.refused.dlq") < 1 && wr_now() < until)
    usleep(50 * 1000);
  cr_assert_eq(tw_queue_len("it.res.refused.dlq"), 1, "dead-lettered");
  cr_assert_eq(runs("uns1"), 0, "the handler ran it");
  stop_and_check_empty(w, q);
}

/* "amq.rabbitmq.reply-to.<pid>.<key>" with a pid of node `node`, shaped
 * as the broker makes them (replyto.h) but made up. */
static void forged_name(const char *node, char *out, size_t len) {
  unsigned char term[128];
  size_t n = 0, nl = strlen(node);
  term[n++] = 131;
  term[n++] = 88;  /* NEW_PID_EXT */
  term[n++] = 118; /* ATOM_UTF8_EXT */
  term[n++] = (unsigned char)(nl >> 8);
  term[n++] = (unsigned char)nl;
  memcpy(term + n, node, nl);
  n += nl;
  static const unsigned char tail[12] = {0, 0, 2,   0xc5, 0,    0,
                                         0, 0, 'k', 0x16, 0xef, '_'};
  memcpy(term + n, tail, sizeof tail);
  n += sizeof tail;
  unsigned char b64[200];
  EVP_EncodeBlock(b64, term, (int)n);
  snprintf(out, len, "amq.rabbitmq.reply-to.%s.SS0rbMYAlDtGMrEm+zFaZA==",
           (const char *)b64);
}

/* A publisher may put any name in reply_to. One shaped as the broker's
 * but made up makes RabbitMQ close the whole connection (541) when a
 * result is published to it; the result goes after the job's ack, on the
 * same channel, so the job runs once and is not delivered again, and the
 * worker goes on after a reconnect. */
Test(results, a_forged_direct_reply_to_name_runs_its_job_once) {
  const char *q = "it.res.forged";
  tw_delete_queue(q);
  pid_t w = start(q, "", "");
  cr_assert_gt(w, 0);
  const char *nodes[] = {"reply@12345678", "reply@00000000",
                         "rabbit@localhost"};
  /* One at a time: a job in flight when the broker closes the
   * connection is delivered again (at least once), which is not what is
   * tested here. */
  for (int i = 0; i < 3; i++) {
    char name[300], id[32], want[40];
    forged_name(nodes[i], name, sizeof name);
    snprintf(id, sizeof id, "fg%d", i);
    warren_producer *p = producer();
    warren_publish_opts po = {
        .size = sizeof po, .message_id = id, .reply_to = name};
    int rc = warren_producer_publish(p, "", q, "x", 1, &po);
    cr_assert_eq(rc, 0, "%s", warren_producer_error(p));
    cr_assert_eq(warren_producer_flush(p, 30000), 0);
    warren_producer_close(p);
    snprintf(want, sizeof want, "%s 1", id);
    cr_assert(tw_wait_text(g_rec, want, 30), "%s ran", id);
    sleep(2); /* a loop ran each 27-30 times in 6 s */
    cr_assert_eq(runs(id), 1, "%s ran %d times", id, runs(id));
  }
  cr_assert(tw_wait_text(g_log, "connection lost", 1),
            "the broker closed the connection on a forged name");
  /* Still working: a call gets its answer. */
  warren_producer *p = producer();
  warren_reply r = {.size = sizeof r};
  warren_publish_opts o = {.size = sizeof o, .message_id = "ok-after"};
  int rc = warren_producer_call(p, "", q, "after", 5, &o, 30000, &r);
  cr_assert_eq(rc, 0, "%s: %s", warren_strerror(rc), warren_producer_error(p));
  cr_assert_str_eq((const char *)r.body, "echo:after");
  warren_reply_free(&r);
  warren_producer_close(p);
  stop_and_check_empty(w, q);
}
