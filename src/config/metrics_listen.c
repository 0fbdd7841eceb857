/* The metrics_listen address: common.h's literal "IPv4:port" or
 * "[IPv6]:port" (port 0 allowed), loopback only.
 *
 * Why loopback only: the endpoint has neither authentication nor TLS, and
 * what it tells (I/O rates and sizes, hydration progress, the build) is
 * about the guest's workload. A scraper on another host goes through
 * something that does authenticate (a reverse proxy, an SSH tunnel, the node
 * exporter's textfile collector), so a typo in a config can never publish
 * it to a network. Host names (even "localhost") are refused as well: they
 * would make the check depend on name resolution at start-up. */
#include "config_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>

static bool is_loopback(const struct sockaddr_storage *addr)
{
	if (addr->ss_family == AF_INET6)
		return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)addr)->sin6_addr);
	const struct sockaddr_in *a = (const struct sockaddr_in *)addr;
	return (ntohl(a->sin_addr.s_addr) >> 24) == 127;
}

int metrics_listen_parse(const char *listen, struct sockaddr_storage *addr, uint32_t *addrlen,
			 struct error *err)
{
	const char *why;
	socklen_t len;
	/* Port 0: the kernel picks a free port (logged), so tests and several
	 * backends on one host need not agree on numbers. */
	if (socket_address_parse(listen, true, addr, &len, &why))
		return error_set(err, -EINVAL, "metrics_listen: %s: %s", listen, why);
	if (!is_loopback(addr))
		return error_set(
		    err, -EINVAL,
		    "metrics_listen: %s is not a loopback address: the metrics endpoint has no "
		    "authentication, so it only listens on 127.0.0.0/8 or [::1] (see "
		    "docs/metrics.md)",
		    listen);
	*addrlen = len;
	return 0;
}
