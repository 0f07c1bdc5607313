/*
 * versioned: a test handler built twice, as versioned_v1.so and
 * versioned_v2.so (tests/CMakeLists.txt sets PLUGIN_VERSION), to upgrade a
 * running worker from one to the other (tests/integration/test_reload.c).
 * For each job it appends
 *   start <message_id> <version> <pid>
 *   end <message_id> <version> <pid>
 * to the file in settings.log (O_APPEND, one write per line), sleeping
 * settings.sleep_ms in between; init appends `init <version> <pid>`.
 * The version is a string in the plugin's data, read at both ends of the
 * job: a job that saw a half-swapped plugin would show two versions.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <warren/handler.h>

#ifndef PLUGIN_VERSION
#define PLUGIN_VERSION "v0"
#endif

static const char version[] = PLUGIN_VERSION;

typedef struct ver {
  int fd;
  long sleep_ms;
} ver;

static void note(int fd, const char *what, const char *id) {
  char line[512];
  int n = snprintf(line, sizeof line, "%s %s %s %d\n", what, id ? id : "-",
                   version, (int)getpid());
  if (n > 0 && (size_t)n < sizeof line && write(fd, line, (size_t)n) < 0) {
  }
}

static int ver_init(const warren_api *api, const warren_settings *s,
                    void **state) {
  warren_value v;
  ver *r = calloc(1, sizeof *r);
  if (!r) return -1;
  if (api->setting_get(s, "log", &v) != 0 || v.type != WARREN_VALUE_STRING) {
    free(r);
    return -1;
  }
  r->fd = open(v.str, O_WRONLY | O_APPEND | O_CREAT, 0644);
  if (api->setting_get(s, "sleep_ms", &v) == 0 && v.type == WARREN_VALUE_INT)
    r->sleep_ms = (long)v.i;
  note(r->fd, "init", "-");
  *state = r;
  return 0;
}

static warren_result ver_handle(void *state, const warren_message *m) {
  ver *r = state;
  note(r->fd, "start", m->message_id);
  if (r->sleep_ms)
    nanosleep(
        &(struct timespec){r->sleep_ms / 1000, (r->sleep_ms % 1000) * 1000000L},
        NULL);
  note(r->fd, "end", m->message_id);
  return WARREN_ACK;
}

static void ver_shutdown(void *state) {
  ver *r = state;
  close(r->fd);
  free(r);
}

WARREN_HANDLER_DEFINE("versioned", ver_init, ver_handle, ver_shutdown);
