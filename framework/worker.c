#include "worker.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <warren/status.h>

#include "arena.h"
#include "clock.h"
#include "extras.h"
#include "headers.h"
#include "ipc.h"
#include "log.h"
#include "sign.h"
#include "tracectx.h"

/* The handler being called; one at a time per process. */
static const char *g_name;
static char g_tag[128];

static void set_handler(const char *name) {
  if (g_name == name) return;
  g_name = name;
  snprintf(g_tag, sizeof g_tag, "%s:", name);
}
static char g_err[WR_IPC_MAX_ERROR];
static size_t g_err_len;
static const warren_message *g_current;
static wr_arena *g_arena;      /* where large bodies lie (arena.h) */
static wr_extras_buf g_extras; /* what the running job's handler added */
static int g_sampled;          /* its span records what handlers add */

static void api_log(warren_log_level level, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  wr_logv(level, g_tag, fmt, ap);
  va_end(ap);
}

static void api_logv(warren_log_level level, const char *fmt, va_list ap) {
  wr_logv(level, g_tag, fmt, ap);
}

static void api_set_errorv(const warren_message *msg, const char *fmt,
                           va_list ap) {
  if (!msg || msg != g_current) return; /* only the running job */
  int n = vsnprintf(g_err, sizeof g_err, fmt, ap);
  g_err_len = n < 0                      ? 0
              : (size_t)n < sizeof g_err ? (size_t)n
                                         : sizeof g_err - 1;
}

static void api_set_error(const warren_message *msg, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  api_set_errorv(msg, fmt, ap);
  va_end(ap);
}

static int api_span_set_attribute(const warren_message *msg, const char *key,
                                  const warren_value *value) {
  if (!msg || msg != g_current || !key || !value) return WARREN_INVALID;
  return g_sampled ? wr_extras_attr(&g_extras, key, value) : WARREN_OK;
}

static int api_span_add_event(const warren_message *msg, const char *name,
                              const warren_attribute *attrs, size_t n) {
  if (!msg || msg != g_current || !name) return WARREN_INVALID;
  if (!g_sampled) return WARREN_OK;
  return wr_extras_event(&g_extras, name, (uint64_t)wr_unix_ns(), attrs, n);
}

static int api_publish(const warren_message *msg, const warren_publish *pub) {
  if (!msg || msg != g_current) return WARREN_INVALID;
  /* "<job id>/<n>": a retry that sends the follow-ups again sends the
   * same ids, so their consumers can tell the duplicates. */
  char id[300];
  const char *def = NULL;
  if (msg->message_id[0]) {
    snprintf(id, sizeof id, "%s/%u", msg->message_id, g_extras.nfollow + 1);
    def = id;
  }
  return wr_extras_followup(&g_extras, pub, def);
}

/* Bytes a result may have (the handler's max_result); the worker's
 * comes from its shared memory, an in-process handler's is set per job. */
static size_t g_max_result = WR_RESULT_DEFAULT_MAX;

void wr_worker_set_max_result(size_t max) {
  g_max_result = max;
}

static int api_set_result(const warren_message *msg, const void *body,
                          size_t len, const char *content_type) {
  if (!msg || msg != g_current) return WARREN_INVALID;
  return wr_extras_result(&g_extras, body, len, content_type, g_max_result);
}

static int api_setting_get(const warren_settings *s, const char *path,
                           warren_value *out) {
  memset(out, 0, sizeof *out);
  const config_setting_t *g = (const config_setting_t *)s;
  config_setting_t *v =
      g ? config_setting_lookup((config_setting_t *)g, path) : NULL;
  if (!v) return WARREN_NOT_FOUND;
  switch (config_setting_type(v)) {
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64:
      out->type = WARREN_VALUE_INT;
      out->i = config_setting_get_int64(v);
      return WARREN_OK;
    case CONFIG_TYPE_FLOAT:
      out->type = WARREN_VALUE_DOUBLE;
      out->d = config_setting_get_float(v);
      return WARREN_OK;
    case CONFIG_TYPE_BOOL:
      out->type = WARREN_VALUE_BOOL;
      out->i = config_setting_get_bool(v);
      return WARREN_OK;
    case CONFIG_TYPE_STRING:
      out->type = WARREN_VALUE_STRING;
      out->str = config_setting_get_string(v);
      out->len = strlen(out->str);
      return WARREN_OK;
    default:
      out->type = WARREN_VALUE_OTHER;
      return WARREN_WRONG_TYPE;
  }
}

static const warren_api g_api = {
    .size = sizeof(warren_api),
    .abi_version = WARREN_ABI_VERSION,
    .log = api_log,
    .header_get = wr_hdr_get,
    .header_count = wr_hdr_count,
    .header_at = wr_hdr_at,
    .setting_get = api_setting_get,
    .set_error = api_set_error,
    .span_set_attribute = api_span_set_attribute,
    .span_add_event = api_span_add_event,
    .publish = api_publish,
    .logv = api_logv,
    .set_errorv = api_set_errorv,
    .strerror = warren_strerror,
    .set_result = api_set_result,
};

static _Noreturn void die(int code) {
  _exit(code);
}

/* The worker's receive buffer: bytes [start, end) are unread. It grows
 * to the largest job in it, bounded by WR_IPC_MAX_FRAME, and shrinks back
 * once a job over INBUF_KEEP is done. */
#define INBUF_KEEP (4u << 20)
typedef struct inbuf {
  unsigned char *buf;
  size_t cap, start, end;
} inbuf;

/* Make `need` unread bytes available. 0, 1 on EOF with nothing unread,
 * -1 on error or EOF mid-frame. */
static int fill_to(inbuf *in, int fd, size_t need) {
  while (in->end - in->start < need) {
    if (in->start > 0 && (in->start == in->end || in->cap - in->start < need)) {
      memmove(in->buf, in->buf + in->start, in->end - in->start);
      in->end -= in->start;
      in->start = 0;
    }
    if (need > in->cap || in->cap == 0) {
      size_t cap = need > 65536 ? need : 65536;
      unsigned char *nb = realloc(in->buf, cap);
      if (!nb) {
        wr_error("%s worker: out of memory for a %zu-byte job", g_name, need);
        abort(); /* counted as a crash of this job, which is what it is */
      }
      in->buf = nb;
      in->cap = cap;
    }
    ssize_t r = read(fd, in->buf + in->end, in->cap - in->end);
    if (r < 0 && errno == EINTR) continue;
    if (r == 0 && in->end == in->start) return 1;
    if (r <= 0) return -1;
    in->end += (size_t)r;
  }
  return 0;
}

/* Points msg's fields into the frame payload; 0 or -1 if malformed. */
static int unpack(unsigned char *p, size_t len, warren_message *msg,
                  struct warren_headers *hdrs, wr_ipc_job *jp) {
  wr_ipc_job j;
  if (len < sizeof j) return -1;
  memcpy(&j, p, sizeof j);
  *jp = j;
  size_t off = sizeof j;
  const char *f[WR_JOB_NFIELDS];
  for (int i = 0; i < WR_JOB_NFIELDS; i++) {
    if (j.field_len[i] >= len - off || p[off + j.field_len[i]] != 0) return -1;
    f[i] = (const char *)p + off;
    off += j.field_len[i] + 1;
  }
  if (off != len) return -1;
  if (j.body_off != WR_ARENA_NONE) {
    if (j.field_len[WR_JOB_BODY] ||
        !(f[WR_JOB_BODY] = wr_arena_view(g_arena, j.body_off, j.body_len)))
      return -1;
    j.field_len[WR_JOB_BODY] = j.body_len;
  }
  static wr_worker_trace trace; /* one job at a time */
  wr_worker_trace_set(&trace, j.trace_id, j.span_id, j.trace_flags, j.traced);
  wr_worker_meta m = {j.delivery_tag, j.attempt, j.redelivered,
                      j.crashes,      j.present, &trace};
  return wr_worker_message(msg, f, j.field_len, hdrs, &m);
}

void wr_worker_trace_set(wr_worker_trace *t, const uint8_t trace_id[16],
                         const uint8_t span_id[8], uint8_t flags, int traced) {
  if (!traced) {
    *t = (wr_worker_trace){0};
    return;
  }
  wr_trace_ctx c = {.flags = flags, .valid = 1};
  memcpy(c.trace_id, trace_id, 16);
  memcpy(c.span_id, span_id, 8);
  wr_trace_hex(trace_id, 16, t->trace_id);
  wr_trace_hex(span_id, 8, t->span_id);
  wr_trace_format(&c, t->traceparent);
  t->sampled = (flags & WR_TRACE_SAMPLED) != 0;
}

int wr_worker_message(warren_message *msg, const char *const f[WR_JOB_NFIELDS],
                      const uint64_t len[WR_JOB_NFIELDS],
                      struct warren_headers *hdrs, const wr_worker_meta *m) {
  const wr_worker_trace *trace = m->trace;
  if (wr_hdr_parse(hdrs, (const unsigned char *)f[WR_JOB_HEADERS],
                   len[WR_JOB_HEADERS]) != WARREN_OK)
    return -1;
  *msg = (warren_message){
      .size = sizeof(warren_message),
      .body = f[WR_JOB_BODY],
      .body_len = len[WR_JOB_BODY],
      .exchange = f[WR_JOB_EXCHANGE],
      .routing_key = f[WR_JOB_ROUTING_KEY],
      .message_id = f[WR_JOB_MESSAGE_ID],
      .correlation_id = f[WR_JOB_CORRELATION_ID],
      .content_type = f[WR_JOB_CONTENT_TYPE],
      .headers = hdrs,
      .attempt = m->attempt,
      .redelivered = m->redelivered,
      .delivery_tag = m->delivery_tag,
      .trace_id = trace->trace_id,
      .span_id = trace->span_id,
      .traceparent = trace->traceparent,
      .api = &g_api,
      .crashes = m->crashes,
      .present = m->present,
  };
  g_sampled = trace->sampled;
  return 0;
}

/* Publish the result of the job that just ran (ipc.h explains the
 * protocol), then wake the supervisor if it asked to be woken. */
static int publish(int fd, wr_ipc_shm *shm, uint32_t *done, uint64_t job_id,
                   int32_t result, int over_rss) {
  wr_ipc_slot *s = &shm->slot[*done % WR_IPC_SLOTS];
  /* Written before the result, so the supervisor has it when it reads
   * the result (pool.c waits for it). */
  s->extras = g_extras.len > 0 && result != WR_IPC_SKIPPED;
  if (s->extras && wr_ipc_send(fd, WR_IPC_EXTRAS, &job_id, sizeof job_id,
                               g_extras.p, g_extras.len) != 0)
    return -1;
  wr_extras_clear(&g_extras);
  s->job_id = job_id;
  s->result = result;
  s->err_len = (uint32_t)g_err_len;
  memcpy(s->err, g_err, g_err_len);
  s->over_rss = (uint32_t)over_rss;
  atomic_store(&shm->published, ++*done);
  if (atomic_load(&shm->wake) && atomic_exchange(&shm->wake, 0))
    return wr_ipc_send(fd, WR_IPC_WAKE, NULL, 0, NULL, 0);
  return 0;
}

int wr_worker_init(const char *handler_name, const warren_handler *def,
                   const config_setting_t *settings, void **state) {
  set_handler(handler_name);
  *state = NULL;
  return def->init ? def->init(&g_api, (const warren_settings *)settings, state)
                   : 0;
}

int32_t wr_worker_run(const char *handler_name, const warren_handler *def,
                      void *state, const warren_message *msg, const char **err,
                      size_t *err_len) {
  set_handler(handler_name);
  g_err_len = 0;
  wr_extras_clear(&g_extras);
  g_current = msg;
  int32_t result = (int32_t)def->handle(state, msg);
  g_current = NULL;
  if (result < WARREN_ACK || result > WARREN_REJECT) {
    g_err_len = (size_t)snprintf(
        g_err, sizeof g_err, "handler returned invalid result %d", (int)result);
    result = WARREN_RETRY;
  }
  *err = g_err;
  *err_len = g_err_len;
  return result;
}

int wr_worker_probe(const char *handler_name, const warren_handler *def,
                    const config_setting_t *settings, double timeout_s,
                    char *why, size_t whylen) {
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    snprintf(why, whylen, "cannot fork a process to try init(): %s",
             strerror(errno));
    return WARREN_PLUGIN_INIT;
  }
  if (pid == 0) { /* as a worker starts (pool.c child()), minus the jobs */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(WR_WORKER_EXIT_INIT);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGINT, SIG_IGN);
    signal(SIGTERM, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    setpgid(0, 0);
    close_range(3, ~0U, 0);
    void *state = NULL;
    if (wr_worker_init(handler_name, def, settings, &state) != 0)
      _exit(WR_WORKER_EXIT_INIT);
    if (def->shutdown) def->shutdown(state);
    _exit(WR_WORKER_EXIT_OK);
  }
  double deadline = wr_now() + timeout_s;
  int status = 0;
  pid_t r;
  while ((r = waitpid(pid, &status, WNOHANG)) == 0 && wr_now() < deadline)
    nanosleep(&(struct timespec){0, 2 * 1000 * 1000}, NULL);
  if (r == 0) {
    kill(-pid, SIGKILL);
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    snprintf(why, whylen, "init() did not return within %.0f s", timeout_s);
    return WARREN_PLUGIN_INIT;
  }
  if (r == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0)
    return WARREN_OK;
  if (r == pid && WIFSIGNALED(status))
    snprintf(why, whylen, "init() or shutdown() crashed (signal %d, %s)",
             WTERMSIG(status), strsignal(WTERMSIG(status)));
  else if (r == pid && WEXITSTATUS(status) == WR_WORKER_EXIT_INIT)
    snprintf(why, whylen, "init() returned non-zero");
  else
    snprintf(why, whylen, "the process trying init() exited with status %d",
             r == pid ? WEXITSTATUS(status) : -1);
  return WARREN_PLUGIN_INIT;
}

const wr_extras_buf *wr_worker_extras(void) {
  return &g_extras;
}

void wr_worker_main(int fd, wr_ipc_shm *shm, wr_arena *arena,
                    const char *handler_name, const warren_handler *def,
                    const config_setting_t *settings) {
  void *state = NULL;
  g_max_result = shm->max_result;
  if (wr_worker_init(handler_name, def, settings, &state) != 0) {
    const char *why = "init() returned non-zero";
    wr_ipc_send(fd, WR_IPC_INIT_FAILED, NULL, 0, why, strlen(why));
    die(WR_WORKER_EXIT_INIT);
  }
  if (wr_ipc_send(fd, WR_IPC_READY, NULL, 0, NULL, 0) != 0)
    die(WR_WORKER_EXIT_OK);

  /* Jobs arrive back to back: read as much as the socket holds and take
   * frames from the buffer, so a run of small jobs costs one read(). */
  static struct warren_headers hdrs;
  g_arena = arena;
  inbuf in = {0};
  uint32_t done = 0;
  int retiring = 0;
  for (;;) {
    wr_ipc_hdr h;
    int rc = fill_to(&in, fd, sizeof h);
    if (rc == 1) break; /* supervisor closed: clean stop */
    if (rc == 0) {
      memcpy(&h, in.buf + in.start, sizeof h);
      if (h.type != WR_IPC_JOB || h.len > WR_IPC_MAX_FRAME) rc = -1;
    }
    if (rc == 0) rc = fill_to(&in, fd, sizeof h + (size_t)h.len);
    if (rc != 0) {
      wr_error("%s worker: bad or cut frame from the supervisor", g_name);
      die(WR_WORKER_EXIT_PROTOCOL);
    }
    unsigned char *frame = in.buf + in.start + sizeof h;
    in.start += sizeof h + (size_t)h.len;
    warren_message msg;
    wr_ipc_job job;
    if (unpack(frame, (size_t)h.len, &msg, &hdrs, &job) != 0) {
      wr_error("%s worker: malformed job frame", g_name);
      die(WR_WORKER_EXIT_PROTOCOL);
    }
    const char *err;
    size_t err_len;
    /* A stopping supervisor wants the jobs queued here back untouched, and
     * one that handed them to another worker must not see them run here. */
    int32_t result = WR_IPC_SKIPPED;
    g_err_len = 0;
    uint32_t k = done;
    int over_rss = 0;
    /* A worker due for recycling skips what was queued behind its last
     * job: the supervisor hands it to another worker. */
    if (!retiring && !atomic_load(&shm->stop) &&
        atomic_compare_exchange_strong(&shm->claim, &k, done + 1)) {
      /* A signed job's body is hashed here, not in the supervisor's
       * loop; one that is not what was signed never reaches handle(). */
      if (job.check_body &&
          !wr_sign_body_matches(msg.body, msg.body_len, job.body_sha256))
        result = WR_IPC_BAD_BODY;
      else
        result = wr_worker_run(handler_name, def, state, &msg, &err, &err_len);
      struct rusage ru; /* one getrusage, only when a limit is set */
      if (shm->rss_limit_kb && getrusage(RUSAGE_SELF, &ru) == 0 &&
          ru.ru_maxrss > (long)shm->rss_limit_kb)
        over_rss = retiring = 1;
    }
    if (publish(fd, shm, &done, job.job_id, result, over_rss) != 0) break;
    /* One huge job must not pin its buffer for the worker's life: past
     * INBUF_KEEP it is given back once drained. */
    if (in.cap > INBUF_KEEP && in.start == in.end) {
      free(in.buf);
      in = (inbuf){0};
    }
  }
  free(in.buf);
  if (def->shutdown) def->shutdown(state);
  die(WR_WORKER_EXIT_OK);
}
