/* Object URLs. A bucket is addressed virtual-hosted
 * (<scheme>://<bucket>.<host>/<key>) or path style
 * (<scheme>://<host>/<bucket>/<key>); the automatic choice is the AWS SDKs':
 * virtual-hosted unless the endpoint host is an IP literal (no name to put
 * the bucket in front of) or the bucket is not a DNS label. Keys are
 * percent-encoded once, as SigV4 signs S3 paths. */
#include "s3_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void s3_endpoint_free(struct s3_endpoint *e)
{
	free(e->scheme);
	free(e->host);
	free(e->port);
	free(e->path);
	memset(e, 0, sizeof(*e));
}

static bool host_char_ok(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '.' || c == '_';
}

static bool path_char_ok(char c)
{
	/* Printable ASCII without the characters that end a path or need
	 * encoding in one. */
	return c > ' ' && c < 0x7f && !strchr("?#%\\\"<>^`{|}", c);
}

static int bad_endpoint(const char *url, const char *why, struct error *err)
{
	return error_set(err, -EINVAL, "Invalid S3 endpoint %.200s: %s", url, why);
}

int s3_endpoint_parse(const char *url, struct s3_endpoint *out, struct error *err)
{
	const char *p, *host, *host_end, *port, *path;
	size_t path_len;

	memset(out, 0, sizeof(*out));
	if (strncasecmp(url, "https://", 8) == 0) {
		out->scheme = strdup("https");
		p = url + 8;
	} else if (strncasecmp(url, "http://", 7) == 0) {
		out->scheme = strdup("http");
		p = url + 7;
	} else {
		return bad_endpoint(url, "it must start with http:// or https://", err);
	}
	host = p;
	if (*p == '[') {
		p = strchr(p, ']');
		if (!p)
			goto bad_host;
		p++;
	} else {
		while (host_char_ok(*p))
			p++;
	}
	host_end = p;
	if (host_end == host)
		goto bad_host;
	port = p;
	if (*p == ':') {
		unsigned long n = 0;

		p++;
		while (*p >= '0' && *p <= '9' && n <= 65535)
			n = n * 10 + (unsigned long)(*p++ - '0');
		if (p == port + 1 || n == 0 || n > 65535)
			goto bad_port;
	}
	if (*p != '\0' && *p != '/')
		goto bad_host;
	path = p;
	for (; *p; p++)
		if (!path_char_ok(*p))
			goto bad_path;
	path_len = strlen(path);
	while (path_len > 0 && path[path_len - 1] == '/')
		path_len--;
	out->host = strndup(host, (size_t)(host_end - host));
	out->port = strndup(port, (size_t)(path - port));
	out->path = strndup(path, path_len);
	if (!out->scheme || !out->host || !out->port || !out->path) {
		s3_endpoint_free(out);
		return error_set(err, -ENOMEM, "Out of memory for the S3 endpoint");
	}
	if (out->host[0] == '[' && !s3_host_is_ip_literal(out->host)) {
		s3_endpoint_free(out);
		return bad_endpoint(url, "not an IPv6 address in brackets", err);
	}
	return 0;
bad_host:
	s3_endpoint_free(out);
	return bad_endpoint(url, "expected a host name, an IPv4 address or [IPv6]", err);
bad_port:
	s3_endpoint_free(out);
	return bad_endpoint(url, "the port must be 1..65535", err);
bad_path:
	s3_endpoint_free(out);
	return bad_endpoint(url, "no query, fragment, % or spaces in its path", err);
}

bool s3_bucket_is_dns_label(const char *bucket)
{
	size_t len = strlen(bucket);

	if (len < 3 || len > 63)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = bucket[i];
		bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');

		if (!alnum && (c != '-' || i == 0 || i == len - 1))
			return false;
	}
	return true;
}

bool s3_host_is_ip_literal(const char *host)
{
	unsigned char addr[16];
	size_t len = strlen(host);

	if (len >= 2 && host[0] == '[' && host[len - 1] == ']' && len - 2 < INET6_ADDRSTRLEN) {
		char inner[INET6_ADDRSTRLEN];

		memcpy(inner, host + 1, len - 2);
		inner[len - 2] = '\0';
		return inet_pton(AF_INET6, inner, addr) == 1;
	}
	return inet_pton(AF_INET, host, addr) == 1;
}

int s3_addressing_choose(enum s3_addressing wanted, const struct s3_endpoint *endpoint,
			 const char *bucket, enum s3_addressing *chosen, struct error *err)
{
	bool ip = s3_host_is_ip_literal(endpoint->host);
	bool label = s3_bucket_is_dns_label(bucket);

	switch (wanted) {
	case S3_ADDRESSING_PATH:
		*chosen = S3_ADDRESSING_PATH;
		return 0;
	case S3_ADDRESSING_VIRTUAL:
		if (ip)
			return error_set(err, -EINVAL,
					 "addressing: virtual needs an endpoint host name, not the "
					 "IP address %.64s",
					 endpoint->host);
		if (!label)
			return error_set(err, -EINVAL,
					 "addressing: virtual needs a bucket name that is a DNS "
					 "label (3-63 of a-z, 0-9 and '-'): %.64s",
					 bucket);
		*chosen = S3_ADDRESSING_VIRTUAL;
		return 0;
	case S3_ADDRESSING_AUTO:
	default:
		*chosen = !ip && label ? S3_ADDRESSING_VIRTUAL : S3_ADDRESSING_PATH;
		return 0;
	}
}

static bool unreserved(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '.' || c == '_' || c == '~';
}

/* s percent-encoded but for unreserved bytes and, when keep_slash, '/'. */
static char *encode(const char *s, bool keep_slash)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t len = strlen(s);
	char *out = malloc(3 * len + 1), *o = out;

	if (!out)
		return NULL;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (unreserved(c) || (keep_slash && c == '/')) {
			*o++ = (char)c;
		} else {
			*o++ = '%';
			*o++ = hex[c >> 4];
			*o++ = hex[c & 15];
		}
	}
	*o = '\0';
	return out;
}

int s3_base_url(const struct s3_endpoint *e, const char *bucket, enum s3_addressing chosen,
		char **url)
{
	char *b = encode(bucket, false);
	int n;

	if (!b)
		return -ENOMEM;
	if (chosen == S3_ADDRESSING_VIRTUAL)
		n = asprintf(url, "%s://%s.%s%s%s/", e->scheme, b, e->host, e->port, e->path);
	else
		n = asprintf(url, "%s://%s%s%s/%s/", e->scheme, e->host, e->port, e->path, b);
	free(b);
	if (n < 0) {
		*url = NULL;
		return -ENOMEM;
	}
	return 0;
}

int s3_key_prefix(const char *prefix, char **out)
{
	size_t start = 0, n = 0;
	size_t len;
	char *o;

	if (!prefix)
		prefix = "";
	len = strlen(prefix);
	o = malloc(len + 2);

	*out = o;
	if (!o)
		return -ENOMEM;
	/* "." components dropped ("a/./b" is "a/b"), the rest joined by '/'. */
	for (size_t i = 0; i <= len;) {
		size_t j = i;

		while (j < len && prefix[j] != '/')
			j++;
		if (!(j - i == 1 && prefix[i] == '.')) {
			memcpy(o + n, prefix + i, j - i);
			n += j - i;
			o[n++] = '/';
		}
		i = j + 1;
	}
	/* Then leading and trailing '/' stripped, and one '/' appended. */
	while (start < n && o[start] == '/')
		start++;
	while (n > start && o[n - 1] == '/')
		n--;
	memmove(o, o + start, n - start);
	n -= start;
	if (n > 0)
		o[n++] = '/';
	o[n] = '\0';
	return 0;
}

int s3_object_url(const char *base, const char *key, char **url)
{
	char *k = encode(key, true);
	int n;

	if (!k)
		return -ENOMEM;
	n = asprintf(url, "%s%s", base, k);
	free(k);
	if (n < 0) {
		*url = NULL;
		return -ENOMEM;
	}
	return 0;
}
