#include "joblog.h"

#include "../config/cfg.h"
#include "clock.h"
#include "log.h"
#include "metrics.h"

static void settled(void *ctx, size_t h, const wr_job *job, wr_outcome o,
                    const char *err) {
  warren_log_level lv = o == WR_OUT_ACKED ? WARREN_LOG_DEBUG : WARREN_LOG_INFO;
  if (!wr_log_enabled(lv)) return; /* acks cost nothing at info */
  const wr_cfg *cfg = ctx;
  const amqp_basic_properties_t *p = &job->env.message.properties;
  int has_id = (p->_flags & AMQP_BASIC_MESSAGE_ID_FLAG) != 0;
  double ran = wr_job_ran(job, wr_now());
  wr_log_job f = {cfg->handlers[h].name,
                  has_id ? (const char *)p->message_id.bytes : "",
                  has_id ? p->message_id.len : 0,
                  job->meta.attempt,
                  wr_metrics_outcome(o),
                  ran >= 0 ? ran * 1000.0 : -1};
  if (err)
    wr_log_job_line(lv, &f, "handler %s: job finished: %s", f.handler, err);
  else
    wr_log_job_line(lv, &f, "handler %s: job finished", f.handler);
}

const wr_job_events wr_joblog_events = {.settled = settled};
