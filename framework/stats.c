#include "stats.h"

#include "log.h"

static void received(void *ctx, size_t h, const wr_job *job) {
  (void)job;
  ((wr_handler_stats *)ctx)[h].delivered++;
}

static void settled(void *ctx, size_t h, const wr_job *job, wr_outcome o,
                    const char *err) {
  (void)job, (void)err;
  wr_handler_stats *s = &((wr_handler_stats *)ctx)[h];
  switch (o) {
    case WR_OUT_ACKED:
      s->acked++;
      break;
    case WR_OUT_FAILED:
      s->failed++;
      break;
    case WR_OUT_REJECTED:
      s->rejected++;
      break;
    case WR_OUT_CRASHED:
    case WR_OUT_DELIVERIES: /* it may have killed the supervisor */
      s->lost++;
      break;
    case WR_OUT_TIMEOUT:
      s->timeouts++;
      break;
    case WR_OUT_MALFORMED:
      s->malformed++;
      break;
    case WR_OUT_TOO_LARGE:
      s->too_large++;
      break;
    case WR_OUT_SIGNATURE:
      s->signature++;
      break;
    case WR_OUT_REVOKED:
      s->revoked++;
      break;
  }
}

static void confirmed(void *ctx, size_t h, const wr_job *job, int ok) {
  wr_handler_stats *s = &((wr_handler_stats *)ctx)[h];
  if (!ok)
    s->republish_failed++;
  else if (job->dead)
    s->dead++;
  else
    s->retried++;
}

static void dropped(void *ctx, size_t h, size_t n) {
  ((wr_handler_stats *)ctx)[h].dropped += n;
}

static void replied(void *ctx, size_t h, const wr_job *job, int delivered) {
  (void)job;
  wr_handler_stats *s = &((wr_handler_stats *)ctx)[h];
  if (delivered)
    s->results++;
  else
    s->results_lost++;
}

const wr_job_events wr_stats_events = {
    .received = received,
    .settled = settled,
    .confirmed = confirmed,
    .dropped = dropped,
    .replied = replied,
};

void wr_stats_log(const char *name, const wr_handler_stats *s) {
  wr_info(
      "handler %s: delivered %lu, acked %lu, failed %lu, rejected %lu, "
      "crashed %lu, timed out %lu, malformed %lu, too large %lu, signature "
      "refused %lu, revoked %lu; sent to retry %lu, "
      "dead-lettered %lu, copies refused %lu; left to the broker at "
      "disconnect %lu; results sent %lu, to a missing reply queue %lu",
      name, s->delivered, s->acked, s->failed, s->rejected, s->lost,
      s->timeouts, s->malformed, s->too_large, s->signature, s->revoked,
      s->retried, s->dead, s->republish_failed, s->dropped, s->results,
      s->results_lost);
}
