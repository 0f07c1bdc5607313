#include "addr.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* Letters, digits, dots and hyphens: anything else is neither a literal
 * nor a name, and is refused without asking the resolver. */
static int host_name_syntax(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > 253) return 0;
  for (size_t i = 0; i < n; i++)
    if (!isalnum((unsigned char)s[i]) && s[i] != '.' && s[i] != '-') return 0;
  return 1;
}

int wr_addr_listen(const char *listen, int port, struct sockaddr_storage *sa,
                   socklen_t *len, char *err, size_t errlen) {
  struct addrinfo hints = {.ai_family = AF_UNSPEC,
                           .ai_socktype = SOCK_STREAM,
                           .ai_flags = AI_PASSIVE | AI_NUMERICHOST};
  struct addrinfo *res = NULL;
  int rc = getaddrinfo(listen, NULL, &hints, &res);
  if (rc == EAI_NONAME && host_name_syntax(listen)) {
    /* Not a literal: a name. No AI_ADDRCONFIG, which would drop ::1 on a
     * host with IPv6 on its loopback only. */
    hints.ai_flags = AI_PASSIVE;
    rc = getaddrinfo(listen, NULL, &hints, &res);
  } else if (rc == EAI_NONAME) {
    snprintf(err, errlen,
             "must be an IPv4 or IPv6 address or a host name such as "
             "127.0.0.1, ::1, :: or localhost (got '%s')",
             listen);
    return -1;
  }
  if (rc != 0) {
    snprintf(err, errlen, "cannot resolve '%s': %s", listen, gai_strerror(rc));
    return -1;
  }
  memset(sa, 0, sizeof *sa);
  memcpy(sa, res->ai_addr, res->ai_addrlen);
  *len = res->ai_addrlen;
  freeaddrinfo(res);
  if (sa->ss_family == AF_INET6)
    ((struct sockaddr_in6 *)sa)->sin6_port = htons((uint16_t)port);
  else
    ((struct sockaddr_in *)sa)->sin_port = htons((uint16_t)port);
  return 0;
}
