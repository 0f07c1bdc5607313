/*
 * A Warren handler to start from: copy this folder, rename the handler,
 * and put the work in tmpl_handle(). Build it with `make` (pkg-config) or
 * CMake (find_package(Warren)); docs/getting-started.md says how, and
 * docs/plugin-abi.md (installed with Warren) has the whole ABI.
 *
 * As it stands it checks each job's size, logs it and acknowledges it.
 * Settings (the handler's `settings` group in the config file):
 *   max_body  integer, optional: larger bodies are rejected (default 1 MiB)
 */
#include <stdlib.h>

#include <warren/handler.h>

typedef struct tmpl {
  const warren_api *api; /* valid until tmpl_shutdown() returns */
  long long max_body;
} tmpl;

/* Once per worker process, before any job. What it leaves in *state is
 * passed to every call below. Any return but WARREN_OK stops the worker,
 * and tmpl_shutdown() is not called: free what was allocated here. */
static int tmpl_init(const warren_api *api, const warren_settings *settings,
                     void **state) {
  tmpl *t = calloc(1, sizeof *t);
  if (!t) return WARREN_NOMEM;
  t->api = api;
  t->max_body = 1 << 20;
  warren_value v;
  if (api->setting_get(settings, "max_body", &v) == WARREN_OK) {
    if (v.type != WARREN_VALUE_INT || v.i < 1) {
      api->log(WARREN_LOG_ERROR,
               "settings.max_body must be a positive integer");
      free(t);
      return WARREN_INVALID;
    }
    t->max_body = v.i;
  }
  *state = t;
  return WARREN_OK;
}

/* One job at a time. Everything in m is valid until this returns: copy
 * what must outlive it. */
static warren_result tmpl_handle(void *state, const warren_message *m) {
  tmpl *t = state;
  if (m->body_len == 0) {
    /* A job that can never succeed: dead-lettered with this text. */
    t->api->set_error(m, "job %s: empty body", m->message_id);
    return WARREN_REJECT;
  }
  if ((unsigned long long)m->body_len > (unsigned long long)t->max_body) {
    t->api->set_error(m, "job %s: body of %zu bytes exceeds max_body %lld",
                      m->message_id, m->body_len, t->max_body);
    return WARREN_REJECT;
  }
  warren_value tenant;
  if (t->api->header_get(m->headers, "tenant", &tenant) != WARREN_OK ||
      tenant.type != WARREN_VALUE_STRING)
    tenant.str = "-";
  t->api->log(WARREN_LOG_INFO, "job %s: %zu bytes, tenant %s, attempt %u",
              m->message_id, m->body_len, tenant.str, m->attempt);
  /* The work goes here. A failure that may pass later (a service that is
   * down) returns WARREN_RETRY, after set_error() says why. */
  return WARREN_ACK;
}

/* When the worker stops while idle. Not called after a crash or a kill. */
static void tmpl_shutdown(void *state) {
  free(state);
}

WARREN_HANDLER_DEFINE("template", tmpl_init, tmpl_handle, tmpl_shutdown);
