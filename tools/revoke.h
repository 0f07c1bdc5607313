/* `warren revoke`: revoke jobs by id in every running Warren process
 * (docs/revoke.md). */
#ifndef WR_REVOKE_H
#define WR_REVOKE_H

/* argv starts at "revoke" (argv[0], in getopt's place of the program's
 * name); CONFIG_FILE and one or more job ids follow, with options
 * anywhere among them. argv may be permuted. Returns the process exit
 * code: 0 the broker confirmed the revoke, 1 broker trouble or no Warren
 * process listening, 2 usage or configuration error. */
int wr_revoke_main(int argc, char **argv);

#endif
