/* `warren dlq ...`: operator tooling for a handler's dead-letter queue. */
#ifndef WR_DLQ_H
#define WR_DLQ_H

/* argv starts at "dlq" (argv[0], in getopt's place of the program's
 * name); the subcommand (list|show|replay|purge), CONFIG_FILE and HANDLER
 * follow, with options anywhere among them. argv may be permuted.
 * Returns the process exit code: 0 done, 1 broker trouble, 2 usage or
 * config error. */
#include <stdint.h>

int wr_dlq_main(int argc, char **argv);

/* The warren-replays header of a replayed copy, given the dead letter's
 * (0 when it had none): one more, saturating at INT64_MAX; a negative
 * one counts as 0. */
int64_t wr_dlq_next_replays(int64_t replays);

#endif
