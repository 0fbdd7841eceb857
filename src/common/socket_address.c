/* Literal TCP socket addresses: "IPv4:port" or "[IPv6]:port", for the
 * stripe servers a client dials and the metrics endpoint a backend listens
 * on. No name resolution, so a config never depends on DNS (nor waits for
 * it), and a check on the address (loopback only) holds for what is used. */
#include "common/common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>

/* The text cut at the separator colon; host is not NUL-terminated. */
struct address_parts {
	bool v6;
	const char *host;
	size_t host_len;
	const char *port;
};

/* Brackets are what tells an IPv6 address's colons from the port's. */
static const char *split_bracketed(const char *text, struct address_parts *p)
{
	const char *close = strchr(text, ']');
	if (!close || close[1] != ':')
		return "expected [IPv6]:port";
	p->host = text + 1;
	p->host_len = (size_t)(close - p->host);
	p->port = close + 2;
	return NULL;
}

static const char *split(const char *text, struct address_parts *p)
{
	p->v6 = text[0] == '[';
	if (p->v6)
		return split_bracketed(text, p);
	/* The last colon, so an unbracketed IPv6 address gets its own reason
	 * below instead of a vague one here. */
	const char *colon = strrchr(text, ':');
	if (!colon)
		return "expected IPv4:port or [IPv6]:port";
	p->host = text;
	p->host_len = (size_t)(colon - text);
	p->port = colon + 1;
	return NULL;
}

/* Decimal digits only: strtoul() would also take spaces, a sign and, with
 * "-1", wrap to a huge value. */
static bool parse_port(const char *s, bool port_zero_ok, uint16_t *port)
{
	if (!*s || strlen(s) > 5)
		return false;
	unsigned long v = 0;
	for (const char *c = s; *c; c++) {
		if (*c < '0' || *c > '9')
			return false;
		v = v * 10 + (unsigned long)(*c - '0');
	}
	if (v > 65535 || (v == 0 && !port_zero_ok))
		return false;
	*port = (uint16_t)v;
	return true;
}

/* A host longer than any literal address cannot be one: refused like any
 * other non-literal, without a copy that would need a bigger buffer. */
static bool host_to_binary(int family, const struct address_parts *p, void *out)
{
	char host[INET6_ADDRSTRLEN];
	if (p->host_len >= sizeof(host))
		return false;
	memcpy(host, p->host, p->host_len);
	host[p->host_len] = '\0';
	return inet_pton(family, host, out) == 1;
}

static const char *to_ipv6(const struct address_parts *p, uint16_t port,
			   struct sockaddr_storage *ss, socklen_t *len)
{
	struct sockaddr_in6 *sa = (struct sockaddr_in6 *)ss;
	if (!host_to_binary(AF_INET6, p, &sa->sin6_addr))
		return "not a literal IPv6 address";
	sa->sin6_family = AF_INET6;
	sa->sin6_port = htons(port);
	*len = sizeof(*sa);
	return NULL;
}

static const char *to_ipv4(const struct address_parts *p, uint16_t port,
			   struct sockaddr_storage *ss, socklen_t *len)
{
	struct sockaddr_in *sa = (struct sockaddr_in *)ss;
	if (!host_to_binary(AF_INET, p, &sa->sin_addr))
		return memchr(p->host, ':', p->host_len)
			   ? "an IPv6 address needs brackets: [IPv6]:port"
			   : "not a literal IPv4 address (host names are not resolved)";
	sa->sin_family = AF_INET;
	sa->sin_port = htons(port);
	*len = sizeof(*sa);
	return NULL;
}

/* The text's shape, then the port, then the host: the first failure is the
 * reason given, so each input keeps the one reason messages have quoted. */
static const char *parse(const char *text, bool port_zero_ok, struct sockaddr_storage *ss,
			 socklen_t *len)
{
	struct address_parts p;
	const char *why = split(text, &p);
	if (why)
		return why;
	uint16_t port;
	if (!parse_port(p.port, port_zero_ok, &port))
		return port_zero_ok ? "the port must be a number from 0 to 65535"
				    : "the port must be a number from 1 to 65535";
	memset(ss, 0, sizeof(*ss));
	return p.v6 ? to_ipv6(&p, port, ss, len) : to_ipv4(&p, port, ss, len);
}

int socket_address_parse(const char *text, bool port_zero_ok, struct sockaddr_storage *addr,
			 socklen_t *addrlen, const char **why)
{
	struct sockaddr_storage ss;
	socklen_t len;
	const char *reason = parse(text, port_zero_ok, &ss, &len);
	if (reason) {
		if (why)
			*why = reason;
		return -EINVAL;
	}
	*addr = ss;
	*addrlen = len;
	return 0;
}
