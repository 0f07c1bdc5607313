/*
 * The clocks Warren reads: one monotonic (timeouts, backoff, liveness)
 * and the wall clock (timestamps written into headers).
 */
#ifndef WR_CLOCK_H
#define WR_CLOCK_H

#include <stdint.h>

/* Monotonic seconds. */
double wr_now(void);
/* Monotonic milliseconds (the clock of wr_now). */
long long wr_now_ms(void);
/* Unix time in milliseconds. */
int64_t wr_unix_ms(void);
/* Unix time in nanoseconds (span times). */
int64_t wr_unix_ns(void);

#endif
