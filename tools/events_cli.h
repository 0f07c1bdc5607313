/* `warren events ...`: the lifecycle events (docs/events.md) in a
 * terminal. */
#ifndef WR_EVENTS_TOOL_H
#define WR_EVENTS_TOOL_H

/* argv starts at "events"; CONFIG_FILE follows, with options anywhere.
 * Runs until SIGINT or SIGTERM. Returns the process exit code: 0 stopped
 * by a signal, 1 broker trouble, 2 usage or config error. */
#include <stddef.h>

int wr_events_tool_main(int argc, char **argv);

/* An event's "time" (unix seconds) as the human lines show it,
 * 2025-01-02T03:04:05.678Z, into out (len >= WR_EVENTS_TIME_LEN). */
#define WR_EVENTS_TIME_LEN 32
void wr_events_format_time(double at, char *out, size_t len);

#endif
