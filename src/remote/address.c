/* Literal socket addresses of stripe servers. A client dials exactly what
 * the config says: no name resolution, so a config never depends on DNS
 * (and never waits for it). */
#include "remote/remote.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int refuse(struct error *err, const char *text, const char *reason)
{
	return error_set(err, -EINVAL, "invalid server address %s: %s", text, reason);
}

/* Decimal 1..65535, digits only (no sign, no spaces). */
static bool parse_port(const char *s, uint16_t *port)
{
	if (!*s || strlen(s) > 5)
		return false;
	unsigned long v = 0;
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '9')
			return false;
		v = v * 10 + (unsigned long)(*p - '0');
	}
	if (v == 0 || v > 65535)
		return false;
	*port = (uint16_t)v;
	return true;
}

int remote_address_parse(const char *text, struct remote_address *out, struct error *err)
{
	memset(out, 0, sizeof(*out));
	if (!text)
		text = "";
	size_t len = strlen(text);
	snprintf(out->text, sizeof(out->text), "%s", text);
	if (len >= sizeof(out->text))
		return refuse(err, out->text, "too long");
	char host[sizeof(out->text)];
	const char *port_text;
	bool v6 = text[0] == '[';
	if (v6) {
		const char *close = strchr(text, ']');
		if (!close || close[1] != ':')
			return refuse(err, text, "expected [IPv6]:port");
		size_t host_len = (size_t)(close - text - 1);
		memcpy(host, text + 1, host_len);
		host[host_len] = '\0';
		port_text = close + 2;
	} else {
		const char *colon = strrchr(text, ':');
		if (!colon)
			return refuse(err, text, "expected IPv4:port or [IPv6]:port");
		size_t host_len = (size_t)(colon - text);
		memcpy(host, text, host_len);
		host[host_len] = '\0';
		port_text = colon + 1;
	}
	uint16_t port;
	if (!parse_port(port_text, &port))
		return refuse(err, text, "the port must be a number from 1 to 65535");
	if (v6) {
		struct sockaddr_in6 *sa = (struct sockaddr_in6 *)&out->addr;
		if (inet_pton(AF_INET6, host, &sa->sin6_addr) != 1)
			return refuse(err, text, "not a literal IPv6 address");
		sa->sin6_family = AF_INET6;
		sa->sin6_port = htons(port);
		out->len = sizeof(*sa);
	} else {
		struct sockaddr_in *sa = (struct sockaddr_in *)&out->addr;
		if (inet_pton(AF_INET, host, &sa->sin_addr) != 1)
			return refuse(err, text,
				      strchr(host, ':')
					  ? "an IPv6 address needs brackets: [IPv6]:port"
					  : "not a literal IPv4 address (host names are "
					    "not resolved)");
		sa->sin_family = AF_INET;
		sa->sin_port = htons(port);
		out->len = sizeof(*sa);
	}
	return 0;
}
