/* `warren dlq ...`: operator tooling for a handler's dead-letter queue. */
#ifndef WR_DLQ_H
#define WR_DLQ_H

/* argv starts at the subcommand (list|show|replay|purge). Returns the
 * process exit code: 0 done, 1 broker trouble, 2 usage or config error. */
int wr_dlq_main(int argc, char **argv);

#endif
