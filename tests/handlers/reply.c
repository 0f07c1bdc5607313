/*
 * reply: a test handler for job results (ABI 1.2, docs/results.md). What
 * it does depends on the job's message id:
 *   ok...     result "echo:<body>", content type text/plain; ack
 *   none...   no result; ack
 *   twice...  result "a", then "bb" (the last call wins); ack
 *   big...    the body is a number N: a first result "first", then one of N
 *             bytes 'x' (refused over max_result: "first" stays); ack
 *   rej...    set_error("no good: <body>"); reject
 *   retry...  set_error("try again"); retry (the policy decides)
 *   follow... a follow-up job to the queue in settings.followup_queue
 *             (body "next <id>"), and result "followed"; ack
 * Every job appends "<id> <attempt> <set_result status of its last call>"
 * to settings.log (one write per line).
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <warren/handler.h>

typedef struct st {
  const warren_api *api;
  int fd;
  const char *followup_queue;
} st;

static int rinit(const warren_api *api, const warren_settings *s,
                 void **state) {
  warren_value v;
  st *x = calloc(1, sizeof *x);
  if (!x || api->setting_get(s, "log", &v) != 0) {
    free(x);
    return -1;
  }
  x->api = api;
  x->fd = open(v.str, O_WRONLY | O_APPEND | O_CREAT, 0644);
  if (api->setting_get(s, "followup_queue", &v) == 0) x->followup_queue = v.str;
  *state = x;
  return x->fd < 0 ? -1 : 0;
}

static int starts(const char *s, const char *p) {
  return strncmp(s, p, strlen(p)) == 0;
}

static warren_result rhandle(void *state, const warren_message *m) {
  st *x = state;
  const warren_api *api = x->api;
  const char *id = m->message_id;
  int rc = WARREN_OK;
  warren_result res = WARREN_ACK;
  char buf[512];
  if (starts(id, "ok")) {
    int n = snprintf(buf, sizeof buf, "echo:%.*s", (int)m->body_len,
                     (const char *)m->body);
    rc = api->set_result(m, buf, (size_t)n, "text/plain");
  } else if (starts(id, "twice")) {
    api->set_result(m, "a", 1, NULL);
    rc = api->set_result(m, "bb", 2, "text/plain");
  } else if (starts(id, "big")) {
    api->set_result(m, "first", 5, "text/plain");
    size_t n = (size_t)strtoull(
        m->body_len < sizeof buf
            ? (snprintf(buf, sizeof buf, "%.*s", (int)m->body_len,
                        (const char *)m->body),
               buf)
            : "0",
        NULL, 10);
    char *big = malloc(n ? n : 1);
    if (big) {
      memset(big, 'x', n);
      rc = api->set_result(m, big, n, "application/octet-stream");
      free(big);
    }
  } else if (starts(id, "rej")) {
    api->set_error(m, "no good: %.*s", (int)m->body_len, (const char *)m->body);
    res = WARREN_REJECT;
  } else if (starts(id, "retry")) {
    api->set_error(m, "try again");
    res = WARREN_RETRY;
  } else if (starts(id, "follow") && x->followup_queue) {
    char body[300];
    int n = snprintf(body, sizeof body, "next %s", id);
    warren_publish pub = {.size = sizeof pub,
                          .routing_key = x->followup_queue,
                          .body = body,
                          .body_len = (size_t)n};
    api->publish(m, &pub);
    rc = api->set_result(m, "followed", 8, "text/plain");
  }
  int n = snprintf(buf, sizeof buf, "%s %u %d\n", id, m->attempt, rc);
  if (n > 0 && write(x->fd, buf, (size_t)n) != n) abort();
  return res;
}

static void rshutdown(void *state) {
  st *x = state;
  close(x->fd);
  free(x);
}

WARREN_HANDLER_DEFINE("reply", rinit, rhandle, rshutdown);
