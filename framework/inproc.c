#include "inproc.h"

#include <stdlib.h>
#include <string.h>

#include <warren/status.h>

#include "extras.h"
#include "headers.h"
#include "ipc.h"
#include "sign.h"
#include "pool.h"
#include "worker.h"

int wr_inproc_init(wr_inproc *ip, const char *name, const warren_handler *def,
                   const config_setting_t *settings, size_t max_result) {
  *ip = (wr_inproc){name, def, NULL, 0, 0, max_result};
  if (wr_worker_init(name, def, settings, &ip->state) != 0) return -1;
  ip->ready = 1;
  return 0;
}

void wr_inproc_shutdown(wr_inproc *ip) {
  if (ip->ready && ip->def->shutdown) ip->def->shutdown(ip->state);
  ip->ready = 0;
}

int32_t wr_inproc_run(wr_inproc *ip, wr_job *job, const char **err,
                      size_t *err_len) {
  static struct warren_headers hdrs;
  static unsigned char blob[WR_HDR_MAX_BLOB];
  static char str[WR_JOB_HEADERS][256]; /* AMQP short strings: <= 255 */
  wr_ipc_field f[WR_JOB_NFIELDS];
  wr_pool_job_fields(job, f);
  const char *fp[WR_JOB_NFIELDS];
  uint64_t len[WR_JOB_NFIELDS];
  for (int i = 0; i < WR_JOB_HEADERS; i++) {
    len[i] = f[i].len < 255 ? f[i].len : 255;
    if (len[i]) memcpy(str[i], f[i].ptr, len[i]);
    str[i][len[i]] = '\0';
    fp[i] = str[i];
  }
  const amqp_basic_properties_t *p = &job->env.message.properties;
  size_t hlen;
  const amqp_table_t *t =
      wr_hdr_visible(p, ip->name, &ip->warned_headers, &hlen);
  wr_hdr_encode(t, blob);
  fp[WR_JOB_HEADERS] = (const char *)blob;
  len[WR_JOB_HEADERS] = hlen;
  fp[WR_JOB_BODY] = f[WR_JOB_BODY].ptr;
  len[WR_JOB_BODY] = f[WR_JOB_BODY].len;
  warren_message m;
  wr_worker_trace tr;
  wr_worker_trace_set(&tr, job->trace.trace_id, job->trace.span_id,
                      job->trace.flags, job->trace.on);
  wr_worker_meta meta = {job->env.delivery_tag,          job->meta.attempt,
                         job->env.redelivered ? 1u : 0u, job->meta.crashes,
                         wr_pool_job_present(job),       &tr};
  wr_worker_message(&m, fp, len, &hdrs, &meta);
  *err = NULL;
  *err_len = 0;
  if (job->signed_ok &&
      !wr_sign_body_matches(m.body, m.body_len, job->body_sha256))
    return WR_IPC_BAD_BODY;
  wr_worker_set_max_result(ip->max_result);
  int32_t r = wr_worker_run(ip->name, ip->def, ip->state, &m, err, err_len);
  const wr_extras_buf *x = wr_worker_extras();
  if (x->len && (job->xbuf = malloc(x->len))) { /* as a worker sends them */
    memcpy(job->xbuf, x->p, x->len);
    job->xlen = x->len;
  }
  return r;
}
