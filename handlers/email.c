/*
 * email: an example of a real job. The body is JSON,
 *   {"to": "ann@example.com", "subject": "...", "body": "..."}
 * and "sending" appends a line to the outbox file named in the settings
 * (a stand-in for an SMTP call). It shows the three outcomes:
 *   - ack when the mail is written;
 *   - reject (dead-letter) for a body that is not such JSON: a poison pill
 *     that can never succeed, with the reason attached via set_error;
 *   - retry when the recipient's domain is listed in `fail_domains`,
 *     standing in for a mail server that is down for now.
 * Settings: outbox (path, required), fail_domains (comma-separated).
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <warren/handler.h>

typedef struct mailer {
  const warren_api *api;
  FILE *outbox;
  const char *fail_domains;
} mailer;

static int mail_init(const warren_api *api, const warren_settings *settings,
                     void **state) {
  warren_value v;
  if (api->setting_get(settings, "outbox", &v) != WARREN_OK ||
      v.type != WARREN_VALUE_STRING) {
    api->log(WARREN_LOG_ERROR, "settings.outbox (a file path) is required");
    return WARREN_NOT_FOUND;
  }
  mailer *m = calloc(1, sizeof *m);
  if (!m) return WARREN_NOMEM;
  m->api = api;
  m->outbox = fopen(v.str, "a");
  if (!m->outbox) {
    api->log(WARREN_LOG_ERROR, "cannot open outbox %s", v.str);
    free(m);
    return WARREN_IO;
  }
  m->fail_domains =
      api->setting_get(settings, "fail_domains", &v) == WARREN_OK &&
              v.type == WARREN_VALUE_STRING
          ? v.str
          : "";
  *state = m;
  return WARREN_OK;
}

static int domain_listed(const char *list, const char *domain) {
  size_t n = strlen(domain);
  for (const char *p = list; *p;) {
    const char *end = strchr(p, ',');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    if (len == n && strncmp(p, domain, n) == 0) return 1;
    p += len + (end ? 1 : 0);
  }
  return 0;
}

static warren_result mail_handle(void *state, const warren_message *msg) {
  mailer *m = state;
  cJSON *j = cJSON_ParseWithLength(msg->body, msg->body_len);
  const cJSON *to = cJSON_GetObjectItemCaseSensitive(j, "to");
  const cJSON *subject = cJSON_GetObjectItemCaseSensitive(j, "subject");
  if (!cJSON_IsString(to) || !cJSON_IsString(subject) ||
      !strchr(to->valuestring, '@')) {
    m->api->set_error(msg,
                      "body is not {\"to\": \"user@host\", \"subject\": ...}");
    cJSON_Delete(j);
    return WARREN_REJECT;
  }
  const char *domain = strchr(to->valuestring, '@') + 1;
  if (domain_listed(m->fail_domains, domain)) {
    m->api->set_error(msg, "mail server for %s is unavailable", domain);
    cJSON_Delete(j);
    return WARREN_RETRY;
  }
  fprintf(m->outbox, "to=%s subject=%s message_id=%s\n", to->valuestring,
          subject->valuestring, msg->message_id);
  fflush(m->outbox);
  m->api->log(WARREN_LOG_INFO, "sent \"%s\" to %s", subject->valuestring,
              to->valuestring);
  cJSON_Delete(j);
  return WARREN_ACK;
}

static void mail_shutdown(void *state) {
  mailer *m = state;
  fclose(m->outbox);
  free(m);
}

WARREN_HANDLER_DEFINE("email", mail_init, mail_handle, mail_shutdown);
