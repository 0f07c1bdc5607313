/*
 * headers: a test handler that writes what the handler API shows it of
 * each message (every header, settings.greeting, the properties) to
 * settings.log, one "key=value" per line, then "--".
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* Built for ABI 1.0 on purpose: a 1.1 worker must keep loading it. */
#define WARREN_PLUGIN_ABI_MINOR 0
#include <warren/handler.h>

typedef struct st {
  const warren_api *api;
  FILE *out;
  const char *greeting;
} st;

static int hinit(const warren_api *api, const warren_settings *s,
                 void **state) {
  warren_value v;
  st *x = calloc(1, sizeof *x);
  if (!x || api->setting_get(s, "log", &v) != 0) return -1;
  x->api = api;
  x->out = fopen(v.str, "a");
  x->greeting = api->setting_get(s, "greeting", &v) == 0 ? v.str : "(none)";
  *state = x;
  return x->out ? 0 : -1;
}

static warren_result hhandle(void *state, const warren_message *m) {
  st *x = state;
  fprintf(x->out,
          "id=%s\ncorrelation=%s\ntype=%s\nkey=%s\nexchange=%s\n"
          "attempt=%u\nbody=%.*s\ngreeting=%s\n",
          m->message_id, m->correlation_id, m->content_type, m->routing_key,
          m->exchange, m->attempt, (int)m->body_len, (const char *)m->body,
          x->greeting);
  for (size_t i = 0; i < x->api->header_count(m->headers); i++) {
    const char *name;
    warren_value v;
    x->api->header_at(m->headers, i, &name, &v);
    if (v.type == WARREN_VALUE_STRING)
      fprintf(x->out, "h.%s=%s\n", name, v.str);
    else if (v.type == WARREN_VALUE_INT)
      fprintf(x->out, "h.%s=%lld\n", name, (long long)v.i);
  }
  warren_value v;
  fprintf(x->out, "missing=%d\n--\n",
          x->api->header_get(m->headers, "no-such-header", &v));
  fflush(x->out);
  return WARREN_ACK;
}

static void hshutdown(void *state) {
  st *x = state;
  fclose(x->out);
  free(x);
}

WARREN_HANDLER_DEFINE("headers", hinit, hhandle, hshutdown);
