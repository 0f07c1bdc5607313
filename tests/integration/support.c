#include "support.h"

#include <amqp.h>
#include <criterion/criterion.h>
#include <criterion/hooks.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

#include <warren/producer.h>
#include <warren/status.h>

#include "cfg.h"
#include "conn.h"
#include "field.h"
#include "pool.h"

int tw_port(void) {
  const char *p = getenv("WARREN_TEST_PORT");
  return p ? atoi(p) : 5683;
}

int tw_cluster_port(int i) {
  const char *p = getenv("WARREN_CLUSTER_PORT");
  return (p ? atoi(p) : 5761) + i;
}

static int amqp_port_set; /* tw_use_port; 0: the test node */

void tw_use_port(int port) {
  amqp_port_set = port;
}

/* The node the producer and raw AMQP helpers talk to. */
static int amqp_port(void) {
  return amqp_port_set ? amqp_port_set : tw_port();
}

/* Folder of a test, the same whether the runner or the test computes it. */
static void dir_of(const char *suite, const char *test, char *buf, size_t len) {
  snprintf(buf, len, "/tmp/warren-it-%d-%s.%s", tw_port(), suite, test);
}

const char *tw_dir(void) {
  static char dir[300];
  dir_of(criterion_current_suite->name, criterion_current_test->name, dir,
         sizeof dir);
  return dir;
}

static int port_open_at(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
  if (fd >= 0) close(fd);
  return ok;
}

static int port_open(void) {
  return port_open_at(tw_port());
}

/* Start the broker app (after a stop_app) and wait for its AMQP port. */
static int start_app(char *out, size_t outlen) {
  int rc = tw_ctl(out, outlen, "start_app");
  double until = wr_now() + 60;
  while (!port_open() && wr_now() < until)
    nanosleep(&(struct timespec){0, 50 * 1000 * 1000}, NULL);
  return rc == 0 && port_open() ? 0 : -1;
}

static void make_dir(void) {
  char cmd[700];
  snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s", tw_dir(), tw_dir());
  cr_assert_eq(system(cmd), 0, "cannot make %s", tw_dir());
}

void tw_init(void) {
  char out[4096];
  /* A test killed before its cleanup could run may have left it stopped. */
  if (!port_open()) start_app(out, sizeof out);
  make_dir();
}

static int run(const char *cmd, char *out, size_t outlen);

/* scripts/broker VERB cluster PORT [ARGS], output into out. */
static int cluster_script(const char *verb, int port, const char *args,
                          char *out, size_t outlen) {
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "timeout 120 %s %s cluster %d %s 2>&1",
           WARREN_BROKER_SCRIPT, verb, port, args ? args : "");
  return run(cmd, out, outlen);
}

/* Bring back every cluster node whose AMQP port is closed (killed or its
 * app stopped); 0 when all three answer. */
static int revive_all(void) {
  char out[4096];
  int rc = 0;
  for (int i = 0; i < 3; i++) {
    int port = tw_cluster_port(i);
    if (port_open_at(port)) continue;
    if (cluster_script("revive", port, NULL, out, sizeof out) != 0) {
      fprintf(stderr, "cluster node %d did not come back: %s\n", port, out);
      rc = -1;
    }
  }
  return rc;
}

void tw_cluster_init(void) {
  tw_use_port(tw_cluster_port(0));
  cr_assert_eq(revive_all(), 0, "the cluster is not whole");
  make_dir();
}

int tw_cluster_ctl(int port, char *out, size_t outlen, const char *args) {
  return cluster_script("ctl", port, args, out, outlen);
}

void tw_cluster_node_down(void) {
  char mark[400];
  snprintf(mark, sizeof mark, "%s/cluster-node-down", tw_dir());
  FILE *f = fopen(mark, "w");
  if (f) fclose(f);
}

int tw_cluster_node(const char *verb, int port, char *out, size_t outlen) {
  /* Marked before the act: the cleanup revives the node whatever happens. */
  if (!strcmp(verb, "kill9") || !strcmp(verb, "stop-app"))
    tw_cluster_node_down();
  int rc = cluster_script(verb, port, NULL, out, outlen);
  size_t n = strlen(out);
  while (n && out[n - 1] == '\n') out[--n] = '\0';
  return rc;
}

int tw_cluster_leader(const char *queue) {
  char out[4096];
  for (int i = 0; i < 3; i++) {
    if (!port_open_at(tw_cluster_port(i))) continue;
    if (cluster_script("leader", tw_cluster_port(i), queue, out, sizeof out) ==
        0)
      return atoi(out);
  }
  return -1;
}

static void delete_own_queues(const char *dir);

/* Runs in the Criterion runner after each test, whatever its outcome
 * (the test's own process may be gone: crashed or killed at its timeout). */
static void cleanup(const struct criterion_test *t, int passed) {
  char dir[300], path[400], out[4096];
  dir_of(t->category, t->name, dir, sizeof dir);
  snprintf(path, sizeof path, "%s/pgids", dir);
  FILE *f = fopen(path, "r");
  int pg;
  while (f && fscanf(f, "%d", &pg) == 1)
    if (pg > 1) kill(-pg, SIGKILL);
  if (f) fclose(f);
  snprintf(path, sizeof path, "%s/cluster-node-down", dir);
  if (access(path, F_OK) == 0) {
    if (revive_all() == 0) unlink(path);
  }
  snprintf(path, sizeof path, "%s/broker-stopped", dir);
  if (access(path, F_OK) == 0) {
    fprintf(stderr, "%s.%s left the broker stopped: starting it again\n",
            t->category, t->name);
    if (start_app(out, sizeof out) == 0)
      unlink(path);
    else
      fprintf(stderr, "start_app failed: %s\n", out);
  }
  if (access(dir, F_OK) != 0) return;
  delete_own_queues(dir);
  if (passed) {
    snprintf(path, sizeof path, "rm -rf %s", dir);
    if (system(path) != 0) fprintf(stderr, "could not remove %s\n", dir);
  } else {
    fprintf(stderr,
            "%s.%s failed: its files (warren.log, config, records) are "
            "kept in %s\n",
            t->category, t->name, dir);
  }
}

ReportHook(POST_FINI)(struct criterion_test_stats *st) {
  cleanup(st->test, st->test_status != CR_STATUS_FAILED && !st->timed_out);
}

ReportHook(TEST_CRASH)(struct criterion_test_stats *st) {
  cleanup(st->test, 0);
}

static pid_t start_warren(const char *dir, const char *broker,
                          const char *worker, const char *rest);

pid_t tw_warren_start(const char *dir, const char *rest) {
  return tw_warren_start_worker(dir, "", rest);
}

pid_t tw_warren_start_worker(const char *dir, const char *worker,
                             const char *rest) {
  char broker[200];
  snprintf(broker, sizeof broker,
           "broker = { host = \"127.0.0.1\"; port = %d; heartbeat = 5; };\n",
           tw_port());
  return start_warren(dir, broker, worker, rest);
}

pid_t tw_warren_start_broker(const char *dir, const char *broker,
                             const char *rest) {
  return start_warren(dir, broker, "", rest);
}

pid_t tw_warren_start_with(const char *dir, const char *broker,
                           const char *worker, const char *rest) {
  return start_warren(dir, broker, worker, rest);
}

const char *tw_tls_dir(void) {
  static char dir[400];
  const char *run = getenv("WARREN_RUN_DIR");
  snprintf(dir, sizeof dir, "%s/rabbit-test-%d/tls",
           run && *run ? run : WARREN_SOURCE_DIR "/.run", tw_port());
  return dir;
}

const char *tw_warren_option;

/* path = dir/name. A path that does not fit fails the test: cut short, it
 * would name another file. */
static void in_dir(char *path, size_t len, const char *dir, const char *name) {
  int n = snprintf(path, len, "%s/%s", dir, name);
  cr_assert(n >= 0 && (size_t)n < len, "path too long: %s/%s", dir, name);
}

/* The config is broker, the worker group with `worker` in it, rest. */
static pid_t start_warren(const char *dir, const char *broker,
                          const char *worker, const char *rest) {
  char cfg[300], log[300], pgids[300];
  in_dir(cfg, sizeof cfg, dir, "warren.cfg");
  in_dir(log, sizeof log, dir, "warren.log");
  /* The test's own folder even for a worker in a subfolder: the cleanup
   * reads it there. */
  in_dir(pgids, sizeof pgids, tw_dir(), "pgids");
  FILE *f = fopen(cfg, "w");
  if (!f) return -1;
  fprintf(f,
          "%s"
          "worker = { reconnect_min = 0.2; reconnect_max = 2.0; "
          "shutdown_grace = 20.0; %s };\n%s",
          broker, worker, rest);
  fclose(f);
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid == 0) {
    /* Its own group, so the cleanup kills its workers with it; and dead
     * with the test process, so a killed test leaves nothing running. */
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    /* Not on the test's stdout: ctest waits for everyone holding its pipe. */
    int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      dup2(fd, STDOUT_FILENO);
      dup2(fd, STDERR_FILENO);
      close(fd);
    }
    /* WARREN_WRAPPER lets scripts/test run the worker under valgrind. */
    const char *wrap = getenv("WARREN_WRAPPER");
    if (wrap && *wrap) {
      char cmd[1024];
      snprintf(cmd, sizeof cmd, "exec %s %s %s %s", wrap, WARREN_BIN,
               tw_warren_option ? tw_warren_option : "", cfg);
      execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
    } else if (tw_warren_option) {
      execl(WARREN_BIN, WARREN_BIN, tw_warren_option, cfg, (char *)NULL);
    } else {
      execl(WARREN_BIN, WARREN_BIN, cfg, (char *)NULL);
    }
    _exit(127);
  }
  if (pid > 0) {
    setpgid(pid, pid); /* whichever of the two runs first */
    f = fopen(pgids, "a");
    if (f) {
      fprintf(f, "%d\n", (int)pid);
      fclose(f);
    }
  }
  return pid;
}

pid_t tw_start_record(const char *q, const char *extra, const char *settings,
                      char *log, char *rec) {
  const char *dir = tw_dir();
  char text[4096];
  in_dir(log, 300, dir, "warren.log");
  in_dir(rec, 300, dir, "rec");
  snprintf(text, sizeof text,
           "handlers = ( { name = \"h\"; queue = \"%s\";\n"
           "  plugin = \"" TEST_HANDLER_DIR
           "/record.so\";\n"
           "  %s\n  settings = { log = \"%s\"; %s }; } );\n",
           q, extra, rec, settings);
  pid_t w = tw_warren_start(dir, text);
  /* A worker that refuses to start exits at once: no need to wait out
   * the timeout for it (it is reaped here). */
  double until = wr_now() + 30;
  do {
    if (tw_wait_text(log, "consuming 1 queue(s)", 0)) return w;
    if (waitpid(w, &(int){0}, WNOHANG) == w) return -1;
    nanosleep(&(struct timespec){0, 20 * 1000 * 1000}, NULL);
  } while (wr_now() < until);
  return -1;
}

int tw_broker_stop_app(char *out, size_t outlen) {
  char path[400];
  snprintf(path, sizeof path, "%s/broker-stopped", tw_dir());
  FILE *f = fopen(path, "w");
  if (f) fclose(f);
  return tw_ctl(out, outlen, "stop_app");
}

int tw_broker_start_app(char *out, size_t outlen) {
  char path[400];
  snprintf(path, sizeof path, "%s/broker-stopped", tw_dir());
  int rc = start_app(out, outlen);
  if (rc == 0) unlink(path);
  return rc;
}

int tw_warren_stop(pid_t pid, int sig, double timeout_s) {
  if (sig) kill(pid, sig);
  double until = wr_now() + timeout_s;
  int status;
  while (wr_now() < until) {
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid)
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    nanosleep(&(struct timespec){0, 20 * 1000 * 1000}, NULL);
  }
  kill(pid, SIGKILL);
  waitpid(pid, &status, 0);
  return -1;
}

int tw_publish(const char *queue, int n, const char *prefix) {
  warren_producer_opts o = {.size = sizeof o, .port = amqp_port()};
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
  snprintf(cmd, sizeof cmd, "timeout 60 %s ctl test %d %s 2>&1",
           WARREN_BROKER_SCRIPT, tw_port(), args);
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

int tw_wait_count(const char *path, const char *what, const char *prefix, int n,
                  int want, double timeout_s) {
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
    while (f && !found && fgets(line, sizeof line, f))
      found = strstr(line, needle) != NULL;
    if (f) fclose(f);
    if (found) return 1;
    nanosleep(&(struct timespec){0, 20 * 1000 * 1000}, NULL);
  } while (wr_now() < until);
  return 0;
}

/* A connection to the test node (or tw_use_port's) with channel 1 open,
 * or NULL. */
static amqp_connection_state_t test_conn(void) {
  wr_broker_cfg b = {.host = "127.0.0.1",
                     .port = amqp_port(),
                     .vhost = "/",
                     .user = "guest",
                     .password = "guest",
                     .heartbeat = 0,
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

amqp_connection_state_t tw_conn_confirming(void) {
  amqp_connection_state_t c = test_conn();
  if (c) amqp_confirm_select(c, 1);
  if (c && amqp_get_rpc_reply(c).reply_type != AMQP_RESPONSE_NORMAL) {
    fprintf(stderr, "test broker: confirm.select failed\n");
    wr_conn_close(c);
    return NULL;
  }
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
    if (amqp_read_message(c, 1, &m, 0).reply_type != AMQP_RESPONSE_NORMAL)
      break;
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
  if (r.reply_type == AMQP_RESPONSE_NORMAL &&
      r.reply.id == AMQP_BASIC_GET_OK_METHOD &&
      amqp_read_message(c, 1, &m, 0).reply_type == AMQP_RESPONSE_NORMAL) {
    got = 1;
    const amqp_basic_properties_t *p = &m.properties;
    size_t o = (size_t)snprintf(dump, len, "id=%.*s\nbody=%.*s\n",
                                (int)p->message_id.len,
                                (const char *)p->message_id.bytes,
                                (int)m.body.len, (const char *)m.body.bytes);
    for (int i = 0; (p->_flags & AMQP_BASIC_HEADERS_FLAG) &&
                    i < p->headers.num_entries && o < len;
         i++) {
      const amqp_table_entry_t *e = &p->headers.entries[i];
      int64_t v;
      if (wr_field_int(&e->value, &v))
        o += (size_t)snprintf(dump + o, len - o, "h.%.*s=%lld\n",
                              (int)e->key.len, (const char *)e->key.bytes,
                              (long long)v);
      else if (e->value.kind == AMQP_FIELD_KIND_UTF8)
        o += (size_t)snprintf(dump + o, len - o, "h.%.*s=%.*s\n",
                              (int)e->key.len, (const char *)e->key.bytes,
                              (int)e->value.value.bytes.len,
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
  snprintf(cmd, sizeof cmd, "timeout 60 %s %s 2>&1", WARREN_BIN, args);
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
  return tw_http_url(url);
}

long tw_http_url(const char *url) {
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

typedef struct tw_buf {
  char *p;
  size_t len, cap;
} tw_buf;

static size_t keep_body(char *p, size_t size, size_t n, void *ctx) {
  tw_buf *b = ctx;
  size_t k = size * n, room = b->cap - 1 - b->len;
  memcpy(b->p + b->len, p, k < room ? k : room);
  b->len += k < room ? k : room;
  b->p[b->len] = '\0';
  return size * n;
}

long tw_http(int port, const char *method, const char *path, const char *auth,
             char *body, size_t len) {
  char url[256];
  snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
  tw_buf b = {body, 0, len};
  body[0] = '\0';
  CURL *c = curl_easy_init();
  if (!c) return -1;
  struct curl_slist *h = NULL;
  if (auth) h = curl_slist_append(h, auth);
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 3000L);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, keep_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
  if (method) curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
  if (h) curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
  long code = -1;
  if (curl_easy_perform(c) == CURLE_OK)
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
  curl_slist_free_all(h);
  curl_easy_cleanup(c);
  return code;
}

int tw_free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = {.sin_family = AF_INET};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t al = sizeof a;
  int port = -1;
  if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
      getsockname(fd, (struct sockaddr *)&a, &al) == 0)
    port = ntohs(a.sin_port);
  if (fd >= 0) close(fd);
  return port;
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

/* Run one synchronous AMQP call on a fresh connection; 0 when it went
 * through. */
#define TW_RPC(c, what, call)                                               \
  do {                                                                      \
    call;                                                                   \
    char why_[512];                                                         \
    if (wr_conn_reply(c, amqp_get_rpc_reply(c), what, why_, sizeof why_) != \
        WARREN_OK) {                                                        \
      fprintf(stderr, "test broker: %s\n", why_);                           \
      amqp_destroy_connection(c);                                           \
      return -1;                                                            \
    }                                                                       \
  } while (0)

/* tw_publish_raw with a per-message expiration (NULL: none). */
static int publish_raw(const char *queue, const char *id,
                       const amqp_table_t *headers, const char *expiration);

int tw_publish_raw(const char *queue, const char *id,
                   const amqp_table_t *headers) {
  return publish_raw(queue, id, headers, NULL);
}

int tw_publish_expiring(const char *queue, const char *id,
                        const char *expiration) {
  return publish_raw(queue, id, NULL, expiration);
}

static int publish_raw(const char *queue, const char *id,
                       const amqp_table_t *headers, const char *expiration) {
  amqp_connection_state_t c = test_conn();
  if (!c) return -1;
  TW_RPC(c, "confirm.select", amqp_confirm_select(c, 1));
  amqp_basic_properties_t p = {0};
  p._flags = AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_MESSAGE_ID_FLAG;
  p.delivery_mode = 2;
  p.message_id = amqp_cstring_bytes(id);
  if (headers) {
    p._flags |= AMQP_BASIC_HEADERS_FLAG;
    p.headers = *headers;
  }
  if (expiration) {
    p._flags |= AMQP_BASIC_EXPIRATION_FLAG;
    p.expiration = amqp_cstring_bytes(expiration);
  }
  int rc = amqp_basic_publish(c, 1, amqp_cstring_bytes(""),
                              amqp_cstring_bytes(queue), 1, 0, &p,
                              amqp_cstring_bytes(id));
  int acked = 0, returned = 0;
  while (rc == AMQP_STATUS_OK) {
    amqp_frame_t f;
    struct timeval tv = {30, 0};
    if (amqp_simple_wait_frame_noblock(c, &f, &tv) != AMQP_STATUS_OK) break;
    if (f.frame_type != AMQP_FRAME_METHOD) continue;
    if (f.payload.method.id == AMQP_BASIC_RETURN_METHOD) {
      returned = 1;
      amqp_message_t m;
      if (amqp_read_message(c, 1, &m, 0).reply_type == AMQP_RESPONSE_NORMAL)
        amqp_destroy_message(&m);
      continue;
    }
    acked = f.payload.method.id == AMQP_BASIC_ACK_METHOD;
    break;
  }
  wr_conn_close(c);
  return acked && !returned ? 0 : -1;
}

static int declare(const char *queue, amqp_table_t args) {
  amqp_connection_state_t c = test_conn();
  if (!c) return -1;
  TW_RPC(c, queue,
         amqp_queue_declare(c, 1, amqp_cstring_bytes(queue), 0, 1, 0, 0, args));
  wr_conn_close(c);
  return 0;
}

int tw_declare_refusing(const char *queue) {
  amqp_table_entry_t e[2] = {wr_entry_int("x-max-length", 0),
                             wr_entry_str("x-overflow", "reject-publish")};
  return declare(queue, (amqp_table_t){2, e});
}

int tw_declare_plain(const char *queue) {
  return declare(queue, amqp_empty_table);
}

int tw_delete_queue(const char *queue) {
  amqp_connection_state_t c = test_conn();
  if (!c) return -1;
  TW_RPC(c, queue, amqp_queue_delete(c, 1, amqp_cstring_bytes(queue), 0, 0));
  wr_conn_close(c);
  return 0;
}

/* The list of a test's own queues, for the cleanup (tw_own_queues). */
static void queues_path(const char *dir, char *buf, size_t len) {
  snprintf(buf, len, "%s/queues", dir);
}

int tw_own_queues(const char *queue, ...) {
  char path[400];
  queues_path(tw_dir(), path, sizeof path);
  FILE *f = fopen(path, "a");
  int rc = 0;
  va_list ap;
  va_start(ap, queue);
  for (const char *q = queue; q; q = va_arg(ap, const char *)) {
    if (f) fprintf(f, "%s\n", q);
    if (tw_delete_queue(q) != 0) rc = -1;
  }
  va_end(ap);
  if (f) fclose(f);
  return rc;
}

/* Delete the queues listed in dir by tw_own_queues (in the runner, after
 * the test). */
static void delete_own_queues(const char *dir) {
  char path[400], q[300];
  queues_path(dir, path, sizeof path);
  FILE *f = fopen(path, "r");
  while (f && fgets(q, sizeof q, f)) {
    q[strcspn(q, "\n")] = '\0';
    if (*q && tw_delete_queue(q) != 0)
      fprintf(stderr, "could not delete queue %s after the test\n", q);
  }
  if (f) fclose(f);
}

int tw_unbind(const char *queue, const char *exchange, const char *key) {
  amqp_connection_state_t c = test_conn();
  if (!c) return -1;
  TW_RPC(c, queue,
         amqp_queue_unbind(c, 1, amqp_cstring_bytes(queue),
                           amqp_cstring_bytes(exchange),
                           amqp_cstring_bytes(key), amqp_empty_table));
  wr_conn_close(c);
  return 0;
}

int tw_queue_len(const char *queue) {
  amqp_connection_state_t c = test_conn();
  if (!c) return -1;
  amqp_queue_declare_ok_t *ok = amqp_queue_declare(
      c, 1, amqp_cstring_bytes(queue), 1, 0, 0, 0, amqp_empty_table);
  int n = ok ? (int)ok->message_count : -1;
  if (ok)
    wr_conn_close(c);
  else
    amqp_destroy_connection(c);
  return n;
}

static size_t put_value(const amqp_field_value_t *v, char *out, size_t len);

static size_t putf(char *out, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static size_t putf(char *out, size_t len, const char *fmt, ...) {
  if (!len) return 0;
  va_list ap;
  va_start(ap, fmt);
  int w = vsnprintf(out, len, fmt, ap);
  va_end(ap);
  return w < 0 ? 0 : (size_t)w < len ? (size_t)w : len - 1;
}

static size_t put_value(const amqp_field_value_t *v, char *out, size_t len) {
  size_t o = putf(out, len, "%c:", (char)v->kind);
  const amqp_field_value_t *a;
  switch (v->kind) {
    case AMQP_FIELD_KIND_BOOLEAN:
      return o + putf(out + o, len - o, "%d", v->value.boolean);
    case AMQP_FIELD_KIND_I8:
      return o + putf(out + o, len - o, "%d", v->value.i8);
    case AMQP_FIELD_KIND_U8:
      return o + putf(out + o, len - o, "%u", v->value.u8);
    case AMQP_FIELD_KIND_I16:
      return o + putf(out + o, len - o, "%d", v->value.i16);
    case AMQP_FIELD_KIND_U16:
      return o + putf(out + o, len - o, "%u", v->value.u16);
    case AMQP_FIELD_KIND_I32:
      return o + putf(out + o, len - o, "%d", v->value.i32);
    case AMQP_FIELD_KIND_U32:
      return o + putf(out + o, len - o, "%u", v->value.u32);
    case AMQP_FIELD_KIND_I64:
      return o + putf(out + o, len - o, "%lld", (long long)v->value.i64);
    case AMQP_FIELD_KIND_U64:
    case AMQP_FIELD_KIND_TIMESTAMP:
      return o +
             putf(out + o, len - o, "%llu", (unsigned long long)v->value.u64);
    case AMQP_FIELD_KIND_F32:
      return o + putf(out + o, len - o, "%.9g", (double)v->value.f32);
    case AMQP_FIELD_KIND_F64:
      return o + putf(out + o, len - o, "%.17g", v->value.f64);
    case AMQP_FIELD_KIND_DECIMAL:
      return o + putf(out + o, len - o, "%u/%u", v->value.decimal.decimals,
                      v->value.decimal.value);
    case AMQP_FIELD_KIND_UTF8:
      return o + putf(out + o, len - o, "%zu:%.*s", v->value.bytes.len,
                      (int)v->value.bytes.len,
                      (const char *)v->value.bytes.bytes);
    case AMQP_FIELD_KIND_BYTES: /* hex: may hold NULs */
      o += putf(out + o, len - o, "%zu:", v->value.bytes.len);
      for (size_t i = 0; i < v->value.bytes.len; i++)
        o += putf(out + o, len - o, "%02x",
                  ((const unsigned char *)v->value.bytes.bytes)[i]);
      return o;
    case AMQP_FIELD_KIND_VOID:
      return o;
    case AMQP_FIELD_KIND_ARRAY:
      o += putf(out + o, len - o, "[");
      for (int i = 0; i < v->value.array.num_entries; i++) {
        a = &v->value.array.entries[i];
        if (i) o += putf(out + o, len - o, ",");
        o += put_value(a, out + o, len - o);
      }
      return o + putf(out + o, len - o, "]");
    case AMQP_FIELD_KIND_TABLE:
      o += putf(out + o, len - o, "{");
      for (int i = 0; i < v->value.table.num_entries; i++) {
        const amqp_table_entry_t *e = &v->value.table.entries[i];
        o += putf(out + o, len - o, "%s%.*s=", i ? "," : "", (int)e->key.len,
                  (const char *)e->key.bytes);
        o += put_value(&e->value, out + o, len - o);
      }
      return o + putf(out + o, len - o, "}");
    default:
      return o + putf(out + o, len - o, "?");
  }
}

size_t tw_table_dump(const amqp_table_t *t, char *out, size_t len) {
  size_t o = 0;
  if (len) out[0] = '\0';
  for (int i = 0; i < t->num_entries; i++) {
    const amqp_table_entry_t *e = &t->entries[i];
    o += putf(out + o, len - o, "h.%.*s=", (int)e->key.len,
              (const char *)e->key.bytes);
    o += put_value(&e->value, out + o, len - o);
    o += putf(out + o, len - o, "\n");
  }
  return o;
}

int tw_get(const char *queue, int ack, char *dump, size_t len) {
  amqp_connection_state_t c = test_conn();
  if (!c) return 0;
  amqp_rpc_reply_t r = amqp_basic_get(c, 1, amqp_cstring_bytes(queue), ack);
  int got = 0;
  amqp_message_t m;
  if (r.reply_type == AMQP_RESPONSE_NORMAL &&
      r.reply.id == AMQP_BASIC_GET_OK_METHOD &&
      amqp_read_message(c, 1, &m, 0).reply_type == AMQP_RESPONSE_NORMAL) {
    got = 1;
    const amqp_basic_properties_t *p = &m.properties;
    const amqp_basic_get_ok_t *ok = r.reply.decoded;
    size_t o =
        putf(dump, len, "id=%.*s\nbody=%.*s\nexchange=%.*s\nrk=%.*s\n",
             (int)p->message_id.len, (const char *)p->message_id.bytes,
             (int)m.body.len, (const char *)m.body.bytes, (int)ok->exchange.len,
             (const char *)ok->exchange.bytes, (int)ok->routing_key.len,
             (const char *)ok->routing_key.bytes);
    if (p->_flags & AMQP_BASIC_EXPIRATION_FLAG)
      o += putf(dump + o, len - o, "expiration=%.*s\n", (int)p->expiration.len,
                (const char *)p->expiration.bytes);
    if (p->_flags & AMQP_BASIC_PRIORITY_FLAG)
      o += putf(dump + o, len - o, "priority=%u\n", (unsigned)p->priority);
    if (p->_flags & AMQP_BASIC_HEADERS_FLAG)
      tw_table_dump(&p->headers, dump + o, len - o);
    amqp_destroy_message(&m);
  }
  /* Unacked, the message goes back to the queue with the channel. */
  wr_conn_close(c);
  return got;
}

const char *tw_python(void) {
  cr_assert_eq(system(TEST_PYTHON " -c 'import pika' 2>/dev/null"), 0,
               "%s cannot import pika: install python3-pika (scripts/setup "
               "does), or configure with -DWARREN_TEST_PYTHON=<a python3 "
               "that has it>",
               TEST_PYTHON);
  return TEST_PYTHON;
}

void tw_key_file(const char *id, const char *secret) {
  char path[400];
  snprintf(path, sizeof path, "%s/%s.key", tw_dir(), id);
  FILE *f = fopen(path, "w");
  cr_assert(f, "cannot write %s", path);
  fprintf(f, "%s\n", secret);
  fclose(f);
  chmod(path, 0600);
}

/* How often needle occurs in file path. */
int tw_occurrences(const char *path, const char *needle) {
  static char text[4 << 20];
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  size_t n = fread(text, 1, sizeof text - 1, f);
  fclose(f);
  text[n] = '\0';
  int k = 0;
  for (const char *p = text; (p = strstr(p, needle)); p += strlen(needle)) k++;
  return k;
}

int tw_sh(char *out, size_t len, const char *fmt, ...) {
  char cmd[4096];
  int n = snprintf(cmd, sizeof cmd, "unset WARREN_BROKER_URL; timeout 60 ");
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd + n, sizeof cmd - (size_t)n, fmt, ap);
  va_end(ap);
  FILE *p = popen(cmd, "r");
  if (!p) return -1;
  size_t got = fread(out, 1, len - 1, p);
  out[got] = '\0';
  int st = pclose(p);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}
