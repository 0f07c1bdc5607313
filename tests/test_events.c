/*
 * Lifecycle events (events.h, docs/events.md): the names, routing keys
 * and JSON fields a subscriber relies on, and the `events` settings.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <warren/status.h>

#include "cfg.h"
#include "events.h"
#include "events_cli.h"
#include "utf8.h"

static char path[64];
static char err[4096];

static int load(const char *text, wr_cfg **cfg) {
  strcpy(path, "/tmp/warren-evcfg-XXXXXX");
  int fd = mkstemp(path);
  cr_assert(fd >= 0);
  cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
  close(fd);
  *cfg = NULL;
  int rc = wr_cfg_load(path, cfg, err, sizeof err);
  unlink(path);
  return rc;
}

static wr_cfg *cfg_ok(const char *text) {
  wr_cfg *cfg;
  int rc = load(text, &cfg);
  cr_assert_eq(rc, WARREN_OK, "%s", err);
  return cfg;
}

#define ONE_HANDLER                                                           \
  "handlers = ( { name = \"email\"; queue = \"mail\"; plugin = \"/x/a.so\"; " \
  "} );\n"

Test(events, routing_keys_are_handler_job_event_and_worker_event) {
  char rk[100];
  cr_assert_str_eq(wr_events_routing_key("email", WR_EV_STARTED, rk, sizeof rk),
                   "email.job.started");
  cr_assert_str_eq(
      wr_events_routing_key("email", WR_EV_DEAD_LETTERED, rk, sizeof rk),
      "email.job.dead_lettered");
  cr_assert_str_eq(
      wr_events_routing_key("email", WR_EV_HEARTBEAT, rk, sizeof rk),
      "worker.heartbeat");
  cr_assert_str_eq(wr_events_routing_key(NULL, WR_EV_ONLINE, rk, sizeof rk),
                   "worker.online");
  cr_assert_str_eq(wr_events_name(WR_EV_REVOKED), "job.revoked");
  cr_assert_str_eq(wr_events_name(WR_EV_OFFLINE), "worker.offline");
}

Test(events, texts_are_kept_as_valid_utf8_and_cut_between_characters) {
  char out[16];
  const char *s = "ab\xc3\xa9z";         /* "abéz" */
  size_t k = wr_utf8_copy(out, s, 5, 3); /* 3 would split é */
  cr_assert_eq(k, 2);
  k = wr_utf8_copy(out, s, 5, 4);
  cr_assert_eq(k, 4);
  cr_assert_eq(memcmp(out, "ab\xc3\xa9", 4), 0);
  /* A stray continuation byte, a truncated sequence, an overlong '/' and
   * a surrogate each become '?'. */
  const char *bad =
      "a"
      "\x80"
      "b"
      "\xc3"
      "c"
      "\xc0\xaf"
      "\xed\xa0\x80";
  k = wr_utf8_copy(out, bad, 10, sizeof out);
  out[k] = '\0';
  cr_assert_str_eq(out, "a?b?c?????");
}

static wr_ev_rec rec_of(int kind) {
  wr_ev_rec r;
  memset(&r, 0, sizeof r);
  r.kind = (uint8_t)kind;
  r.time_ms = 1764107000123;
  r.attempt = 2;
  r.duration = -1;
  r.texts = 1;
  r.has_id = 1;
  r.id_len = 3;
  memcpy(r.id, "j-1", 3);
  return r;
}

/* r as the sender writes it. */
static int format(const wr_ev_rec *r, const wr_ev_source *src, char *buf,
                  size_t len) {
  char head[1024];
  int h = wr_events_format_head(r->kind, r->handler, src, head, sizeof head);
  cr_assert_gt(h, 0);
  return wr_events_format_job(r, head, (size_t)h, buf, len);
}

static const char *str(const cJSON *o, const char *k) {
  const cJSON *v = cJSON_GetObjectItem(o, k);
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

Test(events, a_retried_event_has_error_delay_and_no_reason) {
  wr_cfg *cfg = cfg_ok(ONE_HANDLER);
  wr_ev_source src = {"host-a", 4242, cfg};
  wr_ev_rec r = rec_of(WR_EV_RETRIED);
  r.outcome = WR_OUT_TIMEOUT + 1;
  r.duration = 1.5;
  r.delay_ms = 2500;
  strcpy(r.error, "job timed out");
  char s[2048];
  int n = format(&r, &src, s, sizeof s);
  cr_assert_eq(n, (int)strlen(s));
  cr_log_info("%s", s);
  cr_assert_str_eq(s,
                   "{\"event\":\"job.retried\",\"hostname\":\"host-a\","
                   "\"pid\":4242,\"handler\":\"email\",\"queue\":\"mail\","
                   "\"time\":1764107000.123,\"job_id\":\"j-1\",\"attempt\":2,"
                   "\"duration\":1.500000,\"outcome\":\"timeout\","
                   "\"delay\":2.500,\"error\":\"job timed out\"}");
  /* Too small a buffer: refused, never cut. */
  n = format(&r, &src, s, 40);
  cr_assert_eq(n, -1);
  wr_cfg_free(cfg);
}

Test(events, a_received_event_has_no_outcome_and_a_missing_id_is_null) {
  wr_cfg *cfg = cfg_ok(ONE_HANDLER);
  wr_ev_source src = {"h", 1, cfg};
  wr_ev_rec r = rec_of(WR_EV_RECEIVED);
  r.has_id = 0;
  r.outcome = WR_OUT_ACKED + 1; /* ignored for received */
  r.traced = 1;
  for (int i = 0; i < 16; i++) r.trace_id[i] = (uint8_t)(0xa0 + i);
  char text[2048];
  cr_assert_gt(format(&r, &src, text, sizeof text), 0);
  cJSON *o = cJSON_Parse(text);
  cr_assert(o, "%s", text);
  cr_assert(cJSON_IsNull(cJSON_GetObjectItem(o, "job_id")));
  cr_assert_null(cJSON_GetObjectItem(o, "outcome"));
  cr_assert_null(cJSON_GetObjectItem(o, "duration"));
  cr_assert_null(cJSON_GetObjectItem(o, "delay"));
  const char *t = str(o, "trace_id");
  cr_assert(t && !strcmp(t, "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf"), "trace_id %s",
            t ? t : "(none)");
  cJSON_Delete(o);
  wr_cfg_free(cfg);
}

Test(events, a_dead_lettered_event_has_its_reason_and_no_duration) {
  wr_cfg *cfg = cfg_ok(ONE_HANDLER);
  wr_ev_source src = {"h", 1, cfg};
  wr_ev_rec r = rec_of(WR_EV_DEAD_LETTERED);
  r.outcome = WR_OUT_REVOKED + 1;
  r.duration = 0.25;
  strcpy(r.reason, "revoked");
  char text[2048];
  cr_assert_gt(format(&r, &src, text, sizeof text), 0);
  cJSON *o = cJSON_Parse(text);
  cr_assert(o, "%s", text);
  const char *why = str(o, "reason"), *out = str(o, "outcome");
  cr_assert(why && !strcmp(why, "revoked"));
  cr_assert(out && !strcmp(out, "revoked"));
  cr_assert_null(cJSON_GetObjectItem(o, "duration"));
  cJSON_Delete(o);
  wr_cfg_free(cfg);
}

Test(events, worker_online_lists_the_handlers) {
  wr_cfg *cfg = cfg_ok(ONE_HANDLER);
  wr_ev_source src = {"h", 7, cfg};
  wr_ev_worker w = {2, 3, 40, 1};
  cJSON *o = wr_events_worker_json(WR_EV_ONLINE, 1000, &src, &w);
  char *s = cJSON_PrintUnformatted(o);
  cr_assert_str_eq(s,
                   "{\"event\":\"worker.online\",\"time\":1.000,\"hostname\":"
                   "\"h\",\"pid\":7,\"freq\":2,\"active\":3,\"processed\":40,"
                   "\"dropped\":1,\"handlers\":[\"email\"]}");
  free(s);
  cJSON_Delete(o);
  wr_cfg_free(cfg);
}

Test(events, defaults_and_settings_are_read) {
  wr_cfg *cfg = cfg_ok(ONE_HANDLER);
  cr_assert_eq(cfg->events.enabled, 0);
  cr_assert_str_eq(cfg->events.exchange, "warren.events");
  cr_assert_float_eq(cfg->events.heartbeat, 2.0, 1e-9);
  cr_assert_float_eq(cfg->events.flush_interval, 0.1, 1e-9);
  wr_cfg_free(cfg);
  cfg = cfg_ok(
      "events = { enabled = true; exchange = \"ev\"; heartbeat = 5.0; "
      "batch = 10; buffer = 64; };\n" ONE_HANDLER);
  cr_assert_eq(cfg->events.enabled, 1);
  cr_assert_str_eq(cfg->events.exchange, "ev");
  cr_assert_eq(cfg->events.batch, 10);
  wr_cfg_free(cfg);
}

Test(events, the_environment_turns_events_on) {
  setenv("WARREN_EVENTS_ENABLED", "yes", 1);
  setenv("WARREN_EVENTS_HEARTBEAT", "0.5", 1);
  wr_cfg *cfg = cfg_ok(ONE_HANDLER);
  cr_assert_eq(cfg->events.enabled, 1);
  cr_assert_float_eq(cfg->events.heartbeat, 0.5, 1e-9);
  wr_cfg_free(cfg);
  setenv("WARREN_EVENTS_HEARTBEAT", "soon", 1);
  wr_cfg *bad;
  int rc = load(ONE_HANDLER, &bad);
  cr_assert_lt(rc, 0);
  cr_assert(strstr(err, "WARREN_EVENTS_HEARTBEAT"), "%s", err);
  unsetenv("WARREN_EVENTS_ENABLED");
  unsetenv("WARREN_EVENTS_HEARTBEAT");
}

/* A dot in a handler's name would make `a.b.job.started`, which the
 * pattern `a.job.*` misses and `*.job.*` does not match. */
Test(events, a_handler_name_that_breaks_routing_keys_is_refused) {
  static const char *const names[] = {"a.b", "a*", "#"};
  for (size_t i = 0; i < 3; i++) {
    char text[400];
    snprintf(text, sizeof text,
             "events = { enabled = true; };\n"
             "handlers = ( { name = \"%s\"; queue = \"q\"; plugin = "
             "\"/x/a.so\"; } );\n",
             names[i]);
    wr_cfg *cfg;
    int rc = load(text, &cfg);
    cr_assert_lt(rc, 0, "%s accepted", names[i]);
    cr_assert(strstr(err, ":2:") && strstr(err, "routing keys"), "%s", err);
    snprintf(text, sizeof text,
             "handlers = ( { name = \"%s\"; queue = \"q\"; plugin = "
             "\"/x/a.so\"; } );\n",
             names[i]);
    rc = load(text, &cfg);
    cr_assert_eq(rc, WARREN_OK, "events off: %s is fine (%s)", names[i], err);
    wr_cfg_free(cfg);
  }
}

Test(events, bad_settings_are_refused_with_their_line) {
  static const char *const bad[] = {
      "events = { heartbeat = 0.0; };\n",
      "events = { exchange = \"\"; };\n",
      "events = { exchange = \"amq.topic\"; };\n",
      "events = { batch = 0; };\n",
      "events = { buffer = 2; };\n",
      "events = { enable = true; };\n",
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    char text[400];
    snprintf(text, sizeof text, "%s%s", bad[i], ONE_HANDLER);
    wr_cfg *cfg;
    int rc = load(text, &cfg);
    cr_assert_lt(rc, 0, "accepted: %s", bad[i]);
    cr_assert(strstr(err, ":1:"), "no line in '%s'", err);
  }
}

/* An error text with quotes, a newline and UTF-8 stays valid JSON. */
Test(events, texts_are_escaped_by_cjson) {
  wr_cfg *cfg = cfg_ok(ONE_HANDLER);
  wr_ev_source src = {"h", 1, cfg};
  wr_ev_rec r = rec_of(WR_EV_FAILED);
  r.outcome = WR_OUT_REJECTED + 1;
  strcpy(r.error, "bad \"input\"\n\xc3\xa9");
  r.id_len = 4;
  memcpy(r.id, "a\\b\"", 4);
  char text[2048];
  cr_assert_gt(format(&r, &src, text, sizeof text), 0);
  cJSON *o = cJSON_Parse(text);
  cr_assert(o, "%s", text);
  const char *e = str(o, "error"), *id = str(o, "job_id");
  cr_assert(e && !strcmp(e, "bad \"input\"\n\xc3\xa9"), "%s", text);
  cr_assert(id && !strcmp(id, "a\\b\""), "%s", text);
  cJSON_Delete(o);
  wr_cfg_free(cfg);
}

/* warren events' human line: any "time" an event may carry formats
 * within its buffer (1e300 once read past it). */
Test(events, any_event_time_formats_within_its_buffer) {
  static const double at[] = {1e300,          -1e300, 1e19, -1,
                              253402300800.0, 9.2e18, 0,    1764100000.25};
  for (size_t i = 0; i < sizeof at / sizeof *at; i++) {
    char out[WR_EVENTS_TIME_LEN + 8];
    memset(out, 'X', sizeof out);
    wr_events_format_time(at[i], out, WR_EVENTS_TIME_LEN);
    cr_assert_lt(strlen(out), WR_EVENTS_TIME_LEN, "%g", at[i]);
    cr_assert_eq(out[WR_EVENTS_TIME_LEN], 'X');
  }
  char out[WR_EVENTS_TIME_LEN];
  wr_events_format_time(1764100000.25, out, sizeof out);
  cr_assert_str_eq(out, "2025-11-25T19:46:40.250Z");
  wr_events_format_time(0, out, sizeof out);
  cr_assert_str_eq(out, "1970-01-01T00:00:00.000Z");
  wr_events_format_time(1e300, out, sizeof out);
  cr_assert_str_eq(out, "?");
  wr_events_format_time(0.0 / 0.0, out, sizeof out);
  cr_assert_str_eq(out, "?");
}

/* The ring (docs/events.md, "What it costs"): with the broker away, every
 * event is accounted for: taken by the sender and counted as not sent
 * (dropped by the broker's absence), or, when the loop outruns the
 * sender, refused by the full ring and counted as such. None vanishes. */
Test(events, every_event_is_sent_or_counted_as_dropped) {
  wr_cfg *cfg = cfg_ok(
      "broker = { port = 1; };\n"
      "events = { enabled = true; buffer = 16; batch = 1; };\n" ONE_HANDLER);
  static wr_job slots[4];
  wr_events *ev = NULL;
  cr_assert_eq(
      wr_events_create(cfg, "host", slots, 4, NULL, &ev, err, sizeof err), 0,
      "%s", err);
  enum { N = 200000 };
  for (int i = 0; i < N; i++) wr_events_events.received(ev, 0, &slots[i % 4]);
  /* The sender takes what is left in the ring. */
  wr_events_counters c;
  for (int k = 0; k < 200; k++) {
    wr_events_counters_get(ev, &c);
    if (c.dropped_full + c.dropped_broker >= N) break;
    usleep(50 * 1000);
  }
  wr_events_destroy(ev, 0.1);
  cr_assert_gt(c.dropped_full, 0, "the loop outran the sender");
  cr_assert_eq(c.published, 0);
  cr_assert_geq(c.dropped_full + c.dropped_broker, N, "full %llu, broker %llu",
                (unsigned long long)c.dropped_full,
                (unsigned long long)c.dropped_broker);
  wr_cfg_free(cfg);
}
