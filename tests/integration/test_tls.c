/* TLS to the real broker: its listener on tw_port() + 2 requires a
 * client certificate (scripts/broker, fail_if_no_peer_cert); the CA,
 * server and client certificates come from scripts/tls-certs. The worker
 * and warren-publish (libwarren) connect with the broker's certificate
 * and host name verified; a wrong CA, a wrong host name and a missing
 * client certificate are refused, each with its cause. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support.h"

TW_SUITE(tls, 120);

/* warren-publish over TLS; its output in out. Returns its exit status. */
static int publish_tls(const char *host, const char *ca, int client_cert,
                       const char *id, char *out, size_t len) {
  char cmd[2000], path[400];
  const char *d = tw_tls_dir();
  snprintf(path, sizeof path, "%s/publish.out", tw_dir());
  int n = snprintf(cmd, sizeof cmd,
                   WARREN_PUBLISH_BIN
                   " --host %s --port %d --tls-ca %s/%s --routing-key it.tls "
                   "--id %s",
                   host, tw_port() + 2, d, ca, id);
  if (client_cert)
    n += snprintf(cmd + n, sizeof cmd - (size_t)n,
                  " --tls-cert %s/client.pem --tls-key %s/client.key", d, d);
  snprintf(cmd + n, sizeof cmd - (size_t)n, " > %s 2>&1", path);
  int rc = system(cmd);
  FILE *f = fopen(path, "r");
  size_t got = f ? fread(out, 1, len - 1, f) : 0;
  out[got] = '\0';
  if (f) fclose(f);
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

/* The worker's broker section over TLS. */
static void broker_tls(char *out, size_t len, const char *host, const char *ca,
                       int client_cert) {
  const char *d = tw_tls_dir();
  int n = snprintf(out, len,
                   "broker = { host = \"%s\"; port = %d; heartbeat = 5;\n"
                   "  tls = { enabled = true; ca_file = \"%s/%s\";",
                   host, tw_port() + 2, d, ca);
  if (client_cert)
    n += snprintf(
        out + n, len - (size_t)n,
        " cert_file = \"%s/client.pem\"; key_file = \"%s/client.key\";", d, d);
  snprintf(out + n, len - (size_t)n, " }; };\n");
}

static pid_t start_tls(const char *host, const char *ca, int client_cert,
                       char *log, char *rec) {
  char broker[2000], rest[2000];
  snprintf(log, 300, "%s/warren.log", tw_dir());
  snprintf(rec, 300, "%s/rec", tw_dir());
  broker_tls(broker, sizeof broker, host, ca, client_cert);
  snprintf(rest, sizeof rest,
           "handlers = ( { name = \"h\"; queue = \"it.tls\";\n"
           "  plugin = \"" TEST_HANDLER_DIR
           "/record.so\";\n  settings = { log = \"%s\"; }; } );\n",
           rec);
  return tw_warren_start_broker(tw_dir(), broker, rest);
}

Test(tls, mtls_worker_and_producer_run_a_job) {
  char log[300], rec[300], out[4096];
  pid_t w = start_tls("localhost", "ca.pem", 1, log, rec);
  cr_assert(tw_wait_text(log, "consuming 1 queue(s)", 30),
            "the worker connected over TLS with its client certificate");
  cr_assert_eq(publish_tls("localhost", "ca.pem", 1, "tls1", out, sizeof out),
               0, "%s", out);
  cr_assert(tw_wait_text(rec, "end tls1", 30), "the job ran");
  cr_assert_eq(tw_warren_stop(w, SIGTERM, 30), 0);
}

Test(tls, the_broker_refuses_a_client_without_a_certificate) {
  char out[4096];
  cr_assert_eq(publish_tls("localhost", "ca.pem", 0, "x", out, sizeof out), 1,
               "%s", out);
  cr_assert(strstr(out, "no client certificate was sent"), "%s", out);
}

/* Both warren-publish and the worker refuse to connect to host with CA
 * file ca, and say `why`; the publisher's text is `said` in full. */
static void refused(const char *host, const char *ca, const char *said,
                    const char *why) {
  char out[4096], log[300], rec[300];
  cr_assert_eq(publish_tls(host, ca, 1, "x", out, sizeof out), 1, "%s", out);
  cr_assert(strstr(out, said), "%s", out);
  pid_t w = start_tls(host, ca, 1, log, rec);
  cr_assert(tw_wait_text(log, why, 30), "the worker says why");
  cr_assert(!tw_wait_text(log, "consuming 1 queue(s)", 0));
  tw_warren_stop(w, SIGTERM, 30);
}

Test(tls, a_wrong_ca_is_refused_naming_the_cause) {
  refused("localhost", "other-ca.pem",
          "SSL peer cert verification failed (the broker's certificate is "
          "not signed by a CA in",
          "SSL peer cert verification failed");
}

/* The certificate is for "localhost", not for 127.0.0.1. */
Test(tls, a_wrong_host_name_is_refused_naming_the_cause) {
  refused("127.0.0.1", "ca.pem",
          "SSL hostname verification failed (the broker's certificate is not "
          "for host name '127.0.0.1')",
          "SSL hostname verification failed");
}
