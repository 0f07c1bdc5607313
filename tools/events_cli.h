/* `warren events ...`: the lifecycle events (docs/events.md) in a
 * terminal. */
#ifndef WR_EVENTS_TOOL_H
#define WR_EVENTS_TOOL_H

/* argv starts at "events"; CONFIG_FILE follows, with options anywhere.
 * Runs until SIGINT or SIGTERM. Returns the process exit code: 0 stopped
 * by a signal, 1 broker trouble, 2 usage or config error. */
int wr_events_tool_main(int argc, char **argv);

#endif
