/*
 * isolation = false: a handler run inside the supervisor, one job after
 * the other, with no crash isolation (a crash or hang of the handler takes
 * the supervisor with it; the broker then redelivers its unacked jobs).
 * For trusted, fast handlers.
 */
#ifndef WR_INPROC_H
#define WR_INPROC_H

struct wr_sup;
struct wr_handler_rt;

/* init() of the handler, in this process. 0 or -1. */
int wr_inproc_init(struct wr_handler_rt *h);
/* Run h's waiting jobs until none is left, the connection is gone or a
 * drain starts. */
void wr_inproc_run(struct wr_sup *s, struct wr_handler_rt *h);
/* shutdown() of the handler, if its init() succeeded. */
void wr_inproc_shutdown(struct wr_handler_rt *h);

#endif
