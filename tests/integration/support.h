/* Helpers for integration tests against the real broker node that the
 * ctest fixture starts (scripts/broker, port $WARREN_TEST_PORT). */
#ifndef TW_SUPPORT_H
#define TW_SUPPORT_H

#include <stddef.h>
#include <sys/types.h>

#include <amqp.h>

int tw_port(void);

/*
 * A fault-injecting TCP proxy (proxy.c): a thread of the test process on
 * a loopback port of its own (5830..5849), forwarding each connection to
 * upstream_port (0: the test node). Returns the port workers connect to,
 * or -1. Modes: TW_PROXY_PASS forwards; TW_PROXY_BLACKHOLE accepts and
 * never forwards nor answers (a partition: TCP connects, no broker
 * speaks), also on the connections already open; TW_PROXY_LATENCY
 * forwards each read latency_ms later. tw_proxy_reset sends a RST to both
 * sides of every open connection. It dies with the test process.
 */
enum { TW_PROXY_PASS, TW_PROXY_BLACKHOLE, TW_PROXY_LATENCY };
int tw_proxy_start(int upstream_port);
void tw_proxy_mode(int mode, int latency_ms);
void tw_proxy_reset(void);
/* Connections open through the proxy now. */
int tw_proxy_connections(void);
void tw_proxy_stop(void);

/* The three-node cluster the `cluster` fixture starts (scripts/broker
 * cluster-start cluster P P+1 P+2, P = $WARREN_CLUSTER_PORT): node i's
 * AMQP port, i = 0, 1, 2. */
int tw_cluster_port(int i);
/* The AMQP port tw_publish and the raw AMQP helpers below (tw_drain,
 * tw_queue_len, ...) talk to from now on; 0: the test node, tw_port(). */
void tw_use_port(int port);

/*
 * Every integration suite runs tw_init before and nothing after each
 * test: cleanup is done by the Criterion runner process (a report hook in
 * support.c), so it happens whatever the outcome, also when the test
 * crashed or timed out. It kills the process group of every worker the
 * test started, restarts the broker app if the test left it stopped, and
 * removes the test's folder when the test passed (kept and printed
 * otherwise).
 */
void tw_init(void);
#define TW_SUITE(name, secs) TestSuite(name, .init = tw_init, .timeout = (secs))
/* The same for tests on the cluster, which need not the test node: before
 * each test every node whose port is closed is brought back, and the
 * helpers talk to node 0. A test that took a node down (tw_cluster_node)
 * gets it back from the cleanup whatever its outcome. */
void tw_cluster_init(void);
#define TW_CLUSTER_SUITE(name, secs) \
  TestSuite(name, .init = tw_cluster_init, .timeout = (secs))
/* rabbitmqctl against the cluster node on port; output into out. */
int tw_cluster_ctl(int port, char *out, size_t outlen, const char *args);
/* scripts/broker VERB for the cluster node on port: "kill9", "stop-app",
 * "start-app", "revive" or "pid". Its output, the last newline stripped,
 * into out; returns the exit code. kill9 and stop-app mark the test so
 * that the cleanup revives the node. */
int tw_cluster_node(const char *verb, int port, char *out, size_t outlen);
/* The AMQP port of the node holding the quorum queue's leader, asked of
 * a node that is up; -1 if unknown. */
int tw_cluster_leader(const char *queue);
void tw_cluster_node_down(void);

/* This test's folder, /tmp/warren-it-<port>-<suite>.<test>. */
const char *tw_dir(void);
/* Write dir/warren.cfg with the broker section for the test node followed
 * by `rest`, start the worker (own process group, killed if the test
 * process dies) with stdout and stderr to dir/warren.log. */
pid_t tw_warren_start(const char *dir, const char *rest);
/* One more option for the workers started next (e.g. "--burst"); NULL:
 * none. Reset it after starting. */
extern const char *tw_warren_option;
/* The same with the given broker section (a whole "broker = {...};"). */
pid_t tw_warren_start_broker(const char *dir, const char *broker,
                             const char *rest);
/* The same with a broker section and `worker` in the worker group. */
pid_t tw_warren_start_with(const char *dir, const char *broker,
                           const char *worker, const char *rest);
/* The same with `worker` added to the worker group. */
pid_t tw_warren_start_worker(const char *dir, const char *worker,
                             const char *rest);
/* The test node's certificates (scripts/tls-certs): ca.pem, other-ca.pem,
 * client.pem, client.key; its TLS port is tw_port() + 2. */
const char *tw_tls_dir(void);
/* Start a worker with one handler "h" running the record test plugin on
 * queue q: `extra` goes into the handler's group, `settings` into its
 * settings (log = <dir>/rec is added). Waits until it consumes; the paths
 * of its log and record file go to log and rec (300 bytes each). */
pid_t tw_start_record(const char *q, const char *extra, const char *settings,
                      char *log, char *rec);
/* stop_app / start_app on the test node. While it is stopped a marker in
 * the test's folder tells the cleanup to start it again. */
int tw_broker_stop_app(char *out, size_t outlen);
int tw_broker_start_app(char *out, size_t outlen);
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
int tw_wait_count(const char *path, const char *what, const char *prefix, int n,
                  int want, double timeout_s);
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
/* A request with libcurl: method (NULL: GET), an Authorization header
 * (NULL: none); the body into body (truncated to len, NUL-terminated).
 * The status, or -1. */
long tw_http(int port, const char *method, const char *path, const char *auth,
             char *body, size_t len);
/* GET url with libcurl (an IPv6 host in brackets); the status, or -1. */
long tw_http_url(const char *url);
/* A TCP port on 127.0.0.1 that was free a moment ago (from the kernel's
 * ephemeral range), for a worker's HTTP listener. */
int tw_free_port(void);

/* Write signing key `secret` to <tw_dir()>/<id>.key, mode 600, with a
 * trailing newline (as `openssl rand -hex 32 > key` would). */
void tw_key_file(const char *id, const char *secret);

/* The Python that runs the tests' Python producers: TEST_PYTHON, chosen by
 * CMake as one that imports pika. Fails the test when it cannot import
 * pika: a test that cannot run must not pass. */
const char *tw_python(void);

/* Report and return the number of ids never seen and seen twice. */
int tw_missing(const int *a, const int *b, int n, int *dupes);

/* Raw AMQP on the test node, for what the producer API cannot do. */
/* A connection with channel 1 open in confirm mode (wr_confirms_*), or
 * NULL. Close it with wr_conn_close. */
amqp_connection_state_t tw_conn_confirming(void);
/* Publish one persistent job (mandatory, confirmed) to queue with
 * message id = body = id and the given headers (NULL: none). Returns 0
 * when the broker confirmed it, -1 otherwise. */
int tw_publish_raw(const char *queue, const char *id,
                   const amqp_table_t *headers);
/* The same without headers, with a per-message TTL: the `expiration`
 * property, in milliseconds as AMQP spells it ("1000"). */
int tw_publish_expiring(const char *queue, const char *id,
                        const char *expiration);
/* Declare a durable classic queue that refuses every publish
 * (x-max-length 0, x-overflow reject-publish): the broker nacks copies. */
int tw_declare_refusing(const char *queue);
/* Declare a plain durable classic queue. */
int tw_declare_plain(const char *queue);
int tw_delete_queue(const char *queue);
/* The queues a test uses, NULL-terminated: each is deleted now, so that
 * nothing an earlier run left in them (a failed run, or a passing run
 * before on the same node) counts in this one, and again by the cleanup
 * after the test, whatever its outcome. Call it before the test declares
 * or publishes anything. Returns 0 when every delete went through (a
 * queue that does not exist counts as deleted). */
int tw_own_queues(const char *queue, ...);
int tw_unbind(const char *queue, const char *exchange, const char *key);
/* Messages ready in queue, or -1 if it does not exist. */
int tw_queue_len(const char *queue);
/* Take one message (acked when ack, else it goes back when the channel
 * closes) and describe it: "id=...", "body=...", "exchange=...", "rk=..."
 * (as published), "expiration=..." and "priority=..." when it has them,
 * then every header
 * as tw_table_dump writes it. Returns 1, or 0 if the queue is empty. */
int tw_get(const char *queue, int ack, char *dump, size_t len);
/* Every entry of t as "h.<key>=<type letter>:<value>" lines, tables and
 * arrays spelled out recursively, so two dumps compare types and values.
 * Returns the length written. */
size_t tw_table_dump(const amqp_table_t *t, char *out, size_t len);

/* How often needle occurs in file path (its first 4 MiB). */
int tw_occurrences(const char *path, const char *needle);

/* Run a shell command (printf-style), with WARREN_BROKER_URL unset and
 * under a 60 s timeout; what it prints on stdout into out (truncated to
 * len, NUL-terminated). Its exit status, or -1. */
int tw_sh(char *out, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
