/*
 * A listening address from the config (health.listen): shared by the
 * health listener and the config check.
 */
#ifndef WR_ADDR_H
#define WR_ADDR_H

#include <stddef.h>
#include <sys/socket.h>

/* Where to listen: listen is an IPv4 or IPv6 literal ("::" is every
 * address of both families), or a host name resolved with getaddrinfo
 * (its first address). The address with port goes to sa and len. Returns
 * 0, or -1 with the reason in err. Also used to check the config
 * (config/cfg.c), so a name that does not resolve is refused at load. */
int wr_addr_listen(const char *listen, int port, struct sockaddr_storage *sa,
                   socklen_t *len, char *err, size_t errlen);

#endif
