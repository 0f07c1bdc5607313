/* Helpers for integration tests against the real broker node that the
 * ctest fixture starts (scripts/broker, port $WARREN_TEST_PORT). */
#ifndef TW_SUPPORT_H
#define TW_SUPPORT_H

#include <stddef.h>
#include <sys/types.h>

int tw_port(void);
/* A fresh folder for this test's files; returns its path (static). */
const char *tw_dir(const char *test);
/* Write FILE=dir/warren.cfg with the broker section for the test node
 * followed by `rest`, start the worker with stderr to dir/warren.log. */
pid_t tw_warren_start(const char *dir, const char *rest);
/* Start a worker with one handler "h" running the record test plugin on
 * queue q: `extra` goes into the handler's group, `settings` into its
 * settings (log = <dir>/rec is added). Waits until it consumes; the paths
 * of its log and record file go to log and rec (300 bytes each). */
pid_t tw_start_record(const char *test, const char *q, const char *extra,
                      const char *settings, char *log, char *rec);
/* Send sig, wait up to timeout_s; returns the exit status or -1. */
int tw_warren_stop(pid_t pid, int sig, double timeout_s);
/* Publish n persistent jobs to queue via the default exchange with ids
 * prefix1..prefixN (confirmed). Returns 0 on success. */
int tw_publish(const char *queue, int n, const char *prefix);
/* rabbitmqctl against the test node; output into out. Returns exit code. */
int tw_ctl(char *out, size_t outlen, const char *args);
/* Lines in path starting with "what prefix" counted per job number into
 * counts[1..n]; returns the number of matching lines. */
int tw_count(const char *path, const char *what, const char *prefix,
             int *counts, int n);
/* Wait until at least want lines of `what prefix` are in path. */
int tw_wait_count(const char *path, const char *what, const char *prefix,
                  int n, int want, double timeout_s);
/* 1 if `needle` occurs in file path (waiting up to timeout_s). */
int tw_wait_text(const char *path, const char *needle, double timeout_s);
/* Take every message left in queue (basic.get + ack), counting ids like
 * tw_count. Returns how many were taken. */
int tw_drain(const char *queue, const char *prefix, int *counts, int n);
/* Take one message from queue (acked) and describe it in dump as lines
 * "id=...", "body=...", "h.<header>=<value>". Returns 1, or 0 if empty. */
int tw_take_one(const char *queue, char *dump, size_t len);
/* The first child process of pid (a worker of the supervisor), or -1. */
pid_t tw_child_of(pid_t pid);
/* Run `warren ARGS` to completion; returns its exit code, output in out. */
int tw_warren_cli(char *out, size_t outlen, const char *args);

/* Wait until every job prefix1..prefixN has an "end" line in path, up
 * to timeout_s; done[1..n] gets the tallies. Returns how many are
 * missing. */
int tw_wait_all(const char *path, const char *prefix, int *done, int n,
                double timeout_s);

/* HTTP GET http://127.0.0.1:port/path with libcurl; the status, or -1. */
long tw_http_get(int port, const char *path);

/* Report and return the number of ids never seen and seen twice. */
int tw_missing(const int *a, const int *b, int n, int *dupes);

#endif
