/*
 * The names of what Warren declares for a handler consuming queue Q
 * (docs/retries.md lists them): Q.retry.<ms> per backoff step, Q.dlx and
 * Q.dlq. Shared by the worker, its config check and the tools. Each
 * returns buf.
 */
#ifndef WR_NAMES_H
#define WR_NAMES_H

#include <stddef.h>

char *wr_name_retry_queue(const char *queue, double delay_s, char *buf,
                          size_t len);
char *wr_name_dlx(const char *queue, char *buf, size_t len);
char *wr_name_dlq(const char *queue, char *buf, size_t len);

#endif
