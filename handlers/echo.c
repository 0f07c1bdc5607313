/*
 * echo: the smallest useful handler. Logs each job and acknowledges it,
 * with the body as the job's result (sent back when the job asks for one
 * with reply_to: docs/results.md).
 * Settings: prefix (string, optional) put in front of every line.
 */
#include <stdlib.h>

#include <warren/handler.h>

typedef struct echo {
  const warren_api *api;
  const char *prefix;
} echo;

static int echo_init(const warren_api *api, const warren_settings *settings,
                     void **state) {
  echo *e = calloc(1, sizeof *e);
  if (!e) return WARREN_NOMEM;
  warren_value v;
  e->api = api;
  e->prefix = api->setting_get(settings, "prefix", &v) == WARREN_OK &&
                      v.type == WARREN_VALUE_STRING
                  ? v.str
                  : "echo";
  *state = e;
  return WARREN_OK;
}

static warren_result echo_handle(void *state, const warren_message *m) {
  echo *e = state;
  int shown = m->body_len > 200 ? 200 : (int)m->body_len;
  e->api->log(WARREN_LOG_INFO, "%s: job %s (key %s, attempt %u): %.*s%s",
              e->prefix, m->message_id[0] ? m->message_id : "-", m->routing_key,
              m->attempt, shown, (const char *)m->body,
              m->body_len > 200 ? "..." : "");
  /* Over max_result the job is acked without a result: an empty one. */
  e->api->set_result(m, m->body, m->body_len,
                     m->content_type[0] ? m->content_type : "text/plain");
  return WARREN_ACK;
}

static void echo_shutdown(void *state) {
  free(state);
}

WARREN_HANDLER_DEFINE("echo", echo_init, echo_handle, echo_shutdown);
