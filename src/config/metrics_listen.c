/* The metrics_listen address: "HOST:PORT" with a numeric IPv4 address or a
 * bracketed IPv6 one, loopback only.
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
#include <stdlib.h>
#include <string.h>

#define HOST_MAX 64

static bool ipv4_loopback(const struct in_addr *a)
{
	return (ntohl(a->s_addr) >> 24) == 127;
}

static int parse_port(const char *text, const char *listen, uint16_t *port, struct error *err)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(text, &end, 10);
	if (!*text || *end || errno || v > 65535 || text[0] == '-' || text[0] == '+')
		return error_set(err, -EINVAL, "metrics_listen: %s: the port must be 0..65535",
				 listen);
	*port = (uint16_t)v;
	return 0;
}

int metrics_listen_parse(const char *listen, struct sockaddr_storage *addr, uint32_t *addrlen,
			 struct error *err)
{
	char host[HOST_MAX];
	const char *port_text;
	bool v6 = listen[0] == '[';
	const char *host_start = v6 ? listen + 1 : listen;
	const char *host_end = v6 ? strchr(host_start, ']') : strrchr(listen, ':');
	if (!host_end || (v6 && host_end[1] != ':') || (!v6 && strchr(listen, ':') != host_end))
		return error_set(err, -EINVAL,
				 "metrics_listen: %s: expected ADDRESS:PORT, e.g. 127.0.0.1:9101 "
				 "or [::1]:9101",
				 listen);
	port_text = v6 ? host_end + 2 : host_end + 1;
	size_t host_len = (size_t)(host_end - host_start);
	if (host_len == 0 || host_len >= sizeof(host))
		return error_set(err, -EINVAL, "metrics_listen: %s: no address before the port",
				 listen);
	memcpy(host, host_start, host_len);
	host[host_len] = '\0';
	uint16_t port;
	int ret = parse_port(port_text, listen, &port, err);
	if (ret)
		return ret;
	memset(addr, 0, sizeof(*addr));
	if (v6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)addr;
		if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1)
			return error_set(err, -EINVAL,
					 "metrics_listen: %s: not a numeric IPv6 address", listen);
		if (!IN6_IS_ADDR_LOOPBACK(&a->sin6_addr))
			goto not_loopback;
		a->sin6_family = AF_INET6;
		a->sin6_port = htons(port);
		*addrlen = sizeof(*a);
		return 0;
	}
	struct sockaddr_in *a = (struct sockaddr_in *)addr;
	if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
		return error_set(err, -EINVAL,
				 "metrics_listen: %s: not a numeric IPv4 address (host names are "
				 "not accepted; IPv6 goes in brackets)",
				 listen);
	if (!ipv4_loopback(&a->sin_addr))
		goto not_loopback;
	a->sin_family = AF_INET;
	a->sin_port = htons(port);
	*addrlen = sizeof(*a);
	return 0;
not_loopback:
	return error_set(
	    err, -EINVAL,
	    "metrics_listen: %s is not a loopback address: the metrics endpoint has no "
	    "authentication, so it only listens on 127.0.0.0/8 or [::1] (see "
	    "docs/metrics.md)",
	    listen);
}
