#include "support.h"

#include <amqp.h>
#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <warren/producer.h>
#include <warren/status.h>

#include "cfg.h"
#include "conn.h"
#include "headers.h"
#include "pool.h"

int tw_port(void) {
  const char *p = getenv("WARREN_TEST_PORT");
  return p ? atoi(p) : 5683;
}

const char *tw_dir(const char *test) {
  static char dir[256];
  snprintf(dir, sizeof dir, "/tmp/warren-it-%s-%d", test, (int)getpid());
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd) != 0) return NULL;
  mkdir(dir, 0755);
  return dir;
}

pid_t tw_warren_start(const char *dir, const char *rest) {
  char cfg[300], log[300];
  snprintf(cfg, sizeof cfg, "%s/warren.cfg", dir);
  snprintf(log, sizeof log, "%s/warren.log", dir);
  FILE *f = fopen(cfg, "w");
  if (!f) return -1;
  fprintf(f,
          "broker = { host = \"127.0.0.1\"; port = %d; heartbeat = 5; };\n"
          "worker = { reconnect_min = 0.2; reconnect_max = 2.0; "
          "shutdown_grace = 20.0; };\n%s",
          tw_port(), rest);
  fclose(f);
  pid_t pid = fork();
  if (pid == 0) {
    FILE *lf = freopen(log, "w", stderr);
    (void)lf;
    /* WARREN_WRAPPER lets scripts/test run the worker under valgrind. */
    const char *wrap = getenv("WARREN_WRAPPER");
    if (wrap && *wrap) {
      char cmd[1024];
      snprintf(cmd, sizeof cmd, "exec %s %s %s", wrap, WARREN_BIN, cfg);
      execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
    } else {
      execl(WARREN_BIN, WARREN_BIN, cfg, (char *)NULL);
    }
    _exit(127);
  }
  return pid;
}

pid_t tw_start_record(const char *test, const char *q, const char *extra,
                      const char *settings, char *log, char *rec) {
  const char *dir = tw_dir(test);
  char text[4096];
  snprintf(log, 300, "%s/warren.log", dir);
  snprintf(rec, 300, "%s/rec", dir);
  snprintf(text, sizeof text,
           "handlers = ( { name = \"h\"; queue = \"%s\";\n"
           "  plugin = \"" TEST_HANDLER_DIR "/record.so\";\n"
           "  %s\n  settings = { log = \"%s\"; %s }; } );\n",
           q, extra, rec, settings);
  pid_t w = tw_warren_start(dir, text);
  return tw_wait_text(log, "consuming 1 queue(s)", 30) ? w : -1;
}

int tw_warren_stop(pid_t pid, int sig, double timeout_s) {
  if (sig) kill(pid, sig);
  double until = wr_now() + timeout_s;
  int status;
  while (wr_now() < until) {
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    nanosleep(&(struct timespec){0, 20 * 1000 * 1000}, NULL);
  }
  kill(pid, SIGKILL);
  waitpid(pid, &status, 0);
  return -1;
}

int tw_publish(const char *queue, int n, const char *prefix) {
  warren_producer_opts o = {.size = sizeof o, .port = tw_port()};
  warren_producer *p;
  int rc = warren_producer_open(&o, &p);
  if (rc) return rc;
  char id[128];
  for (int i = 1; i <= n && rc == 0; i++) {
    snprintf(id, sizeof id, "%s%d", prefix, i);
    warren_publish_opts po = {.size = sizeof po, .message_id = id};
    rc = warren_producer_publish(p, "", queue, id, strlen(id), &po);
  }
  if (rc == 0) rc = warren_producer_flush(p, 30000);
  int rc2 = warren_producer_close(p);
  return rc ? rc : rc2;
}

/* Run a shell command; its output (stdout and stderr) into out. */
static int run(const char *cmd, char *out, size_t outlen) {
  FILE *p = popen(cmd, "r");
  if (!p) return -1;
  size_t n = fread(out, 1, outlen - 1, p);
  out[n] = '\0';
  int st = pclose(p);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int tw_ctl(char *out, size_t outlen, const char *args) {
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "%s ctl test %d %s 2>&1", WARREN_BROKER_SCRIPT,
           tw_port(), args);
  return run(cmd, out, outlen);
}

static int job_number(const char *s, const char *prefix, int n) {
  size_t pl = strlen(prefix);
  if (strncmp(s, prefix, pl) != 0) return -1;
  int k = atoi(s + pl);
  return k >= 1 && k <= n ? k : -1;
}

int tw_count(const char *path, const char *what, const char *prefix,
             int *counts, int n) {
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  char line[512], word[64], id[256];
  int total = 0;
  while (fgets(line, sizeof line, f)) {
    if (sscanf(line, "%63s %255s", word, id) != 2 || strcmp(word, what) != 0)
      continue;
    int k = job_number(id, prefix, n);
    if (k < 0) continue;
    if (counts) counts[k]++;
    total++;
  }
  fclose(f);
  return total;
}

int tw_wait_count(const char *path, const char *what, const char *prefix,
                  int n, int want, double timeout_s) {
  double until = wr_now() + timeout_s;
  int got;
  while ((got = tw_count(path, what, prefix, NULL, n)) < want &&
         wr_now() < until)
    nanosleep(&(struct timespec){0, 5 * 1000 * 1000}, NULL);
  return got;
}

int tw_wait_text(const char *path, const char *needle, double timeout_s) {
  double until = wr_now() + timeout_s;
  do {
    FILE *f = fopen(path, "r");
    char line[2048];
    int found = 0;
    while (f && !found && fgets(line, sizeof line, f)) found = strstr(line, needle) != NULL;
    if (f) fclose(f);
    if (found) return 1;
    nanosleep(&(struct timespec){0, 20 * 1000 * 1000}, NULL);
  } while (wr_now() < until);
  return 0;
}

/* A connection to the test node with channel 1 open, or NULL. */
static amqp_connection_state_t test_conn(void) {
  wr_broker_cfg b = {.host = "127.0.0.1", .port = tw_port(), .vhost = "/",
                     .user = "guest", .password = "guest", .heartbeat = 0,
                     .connect_timeout = 5};
  amqp_connection_state_t c;
  char err[512];
  if (wr_conn_open(&b, &c, err, sizeof err) != WARREN_OK) {
    fprintf(stderr, "test broker: %s\n", err);
    return NULL;
  }
  amqp_channel_open(c, 1);
  return c;
}

int tw_drain(const char *queue, const char *prefix, int *counts, int n) {
  amqp_connection_state_t c = test_conn();
  if (!c) return -1;
  int taken = 0;
  for (;;) {
    amqp_maybe_release_buffers(c);
    amqp_rpc_reply_t r = amqp_basic_get(c, 1, amqp_cstring_bytes(queue), 0);
    if (r.reply_type != AMQP_RESPONSE_NORMAL ||
        r.reply.id != AMQP_BASIC_GET_OK_METHOD)
      break;
    uint64_t tag = ((amqp_basic_get_ok_t *)r.reply.decoded)->delivery_tag;
    amqp_message_t m;
    if (amqp_read_message(c, 1, &m, 0).reply_type != AMQP_RESPONSE_NORMAL) break;
    char id[256] = "";
    if (m.properties._flags & AMQP_BASIC_MESSAGE_ID_FLAG)
      snprintf(id, sizeof id, "%.*s", (int)m.properties.message_id.len,
               (const char *)m.properties.message_id.bytes);
    int k = job_number(id, prefix, n);
    if (k > 0) counts[k]++;
    taken++;
    amqp_destroy_message(&m);
    amqp_basic_ack(c, 1, tag, 0);
  }
  wr_conn_close(c);
  return taken;
}

int tw_take_one(const char *queue, char *dump, size_t len) {
  amqp_connection_state_t c = test_conn();
  if (!c) return 0;
  amqp_rpc_reply_t r = amqp_basic_get(c, 1, amqp_cstring_bytes(queue), 1);
  int got = 0;
  amqp_message_t m;
  if (r.reply_type == AMQP_RESPONSE_NORMAL && r.reply.id == AMQP_BASIC_GET_OK_METHOD &&
      amqp_read_message(c, 1, &m, 0).reply_type == AMQP_RESPONSE_NORMAL) {
    got = 1;
    const amqp_basic_properties_t *p = &m.properties;
    size_t o = (size_t)snprintf(dump, len, "id=%.*s\nbody=%.*s\n",
                                (int)p->message_id.len, (const char *)p->message_id.bytes,
                                (int)m.body.len, (const char *)m.body.bytes);
    for (int i = 0; (p->_flags & AMQP_BASIC_HEADERS_FLAG) && i < p->headers.num_entries && o < len; i++) {
      const amqp_table_entry_t *e = &p->headers.entries[i];
      int64_t v;
      if (wr_hdr_amqp_int(&e->value, &v))
        o += (size_t)snprintf(dump + o, len - o, "h.%.*s=%lld\n", (int)e->key.len,
                              (const char *)e->key.bytes, (long long)v);
      else if (e->value.kind == AMQP_FIELD_KIND_UTF8)
        o += (size_t)snprintf(dump + o, len - o, "h.%.*s=%.*s\n", (int)e->key.len,
                              (const char *)e->key.bytes, (int)e->value.value.bytes.len,
                              (const char *)e->value.value.bytes.bytes);
    }
    amqp_destroy_message(&m);
  }
  wr_conn_close(c);
  return got;
}

pid_t tw_child_of(pid_t pid) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)pid, (int)pid);
  FILE *f = fopen(path, "r");
  int child = -1;
  if (f) {
    if (fscanf(f, "%d", &child) != 1) child = -1;
    fclose(f);
  }
  return child;
}

int tw_warren_cli(char *out, size_t outlen, const char *args) {
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "%s %s 2>&1", WARREN_BIN, args);
  return run(cmd, out, outlen);
}

int tw_wait_all(const char *path, const char *prefix, int *done, int n,
                double timeout_s) {
  double until = wr_now() + timeout_s;
  int missing, dupes;
  for (;;) {
    memset(done, 0, sizeof(int) * (size_t)(n + 1));
    tw_count(path, "end", prefix, done, n);
    missing = tw_missing(done, NULL, n, &dupes);
    if (!missing || wr_now() >= until) return missing;
    nanosleep(&(struct timespec){0, 50 * 1000 * 1000}, NULL);
  }
}

static size_t discard_body(char *p, size_t size, size_t n, void *ctx) {
  (void)p, (void)ctx;
  return size * n;
}

long tw_http_get(int port, const char *path) {
  char url[256];
  snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
  CURL *c = curl_easy_init();
  if (!c) return -1;
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 3000L);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard_body);
  long code = -1;
  if (curl_easy_perform(c) == CURLE_OK)
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
  curl_easy_cleanup(c);
  return code;
}

int tw_missing(const int *a, const int *b, int n, int *dupes) {
  int missing = 0;
  *dupes = 0;
  for (int i = 1; i <= n; i++) {
    int seen = a[i] + (b ? b[i] : 0);
    if (seen == 0) missing++;
    if (seen > 1) *dupes += seen - 1;
  }
  return missing;
}
