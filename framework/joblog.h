/*
 * One log line per finished attempt, with the job's fields (handler,
 * message id, attempt, outcome, duration) that log_format = "json" or
 * "logfmt" writes as keys: a subscriber of the job's lifecycle. Acked
 * jobs are logged at debug level, failed attempts at info.
 */
#ifndef WR_JOBLOG_H
#define WR_JOBLOG_H

#include "lifecycle.h"

/* Subscribe with ctx = the wr_cfg (for handler names). */
extern const wr_job_events wr_joblog_events;

#endif
