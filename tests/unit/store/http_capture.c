/* See http_capture.h. */
#include "http_capture.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

static const char default_response[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";

static size_t content_length(const char *headers)
{
	char *v = http_header(headers, "Content-Length");
	size_t n = v ? strtoul(v, NULL, 10) : 0;

	free(v);
	return n;
}

static void *serve(void *arg)
{
	struct http_capture *c = arg;
	int fd = accept(c->listen_fd, NULL, NULL);
	size_t cap = 1 << 16, len = 0;
	char *buf = malloc(cap + 1);

	if (fd < 0 || !buf) {
		free(buf);
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	for (;;) {
		char *end;
		ssize_t n;

		buf[len] = '\0';
		end = strstr(buf, "\r\n\r\n");
		if (end && len >= (size_t)(end + 4 - buf) + content_length(buf))
			break;
		if (len == cap) {
			char *bigger = realloc(buf, 2 * cap + 1);
			if (!bigger)
				break;
			buf = bigger;
			cap *= 2;
		}
		n = read(fd, buf + len, cap - len);
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	c->request = buf;
	c->request_len = len;
	if (write(fd, c->response, strlen(c->response)) < 0) {
		/* the client went away: its problem, the request is kept */
	}
	shutdown(fd, SHUT_WR);
	close(fd);
	return NULL;
}

int http_capture_start(struct http_capture *c, const char *response)
{
	struct sockaddr_in addr = {.sin_family = AF_INET};
	socklen_t alen = sizeof(addr);

	memset(c, 0, sizeof(*c));
	c->response = response ? response : default_response;
	c->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->listen_fd < 0)
		return -errno;
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(c->listen_fd, (struct sockaddr *)&addr, sizeof(addr)) || listen(c->listen_fd, 1) ||
	    getsockname(c->listen_fd, (struct sockaddr *)&addr, &alen)) {
		int ret = -errno;
		close(c->listen_fd);
		return ret;
	}
	c->port = ntohs(addr.sin_port);
	return -pthread_create(&c->thread, NULL, serve, c);
}

void http_capture_wait(struct http_capture *c)
{
	pthread_join(c->thread, NULL);
	close(c->listen_fd);
	c->listen_fd = -1;
}

void http_capture_free(struct http_capture *c)
{
	free(c->request);
	c->request = NULL;
}

char *http_header(const char *request, const char *name)
{
	size_t n = strlen(name);
	const char *line = strstr(request, "\r\n");

	while (line && strncmp(line, "\r\n\r\n", 4) != 0) {
		const char *start = line + 2;
		const char *eol = strstr(start, "\r\n");

		if (!eol)
			return NULL;
		if (strncasecmp(start, name, n) == 0 && start[n] == ':') {
			const char *v = start + n + 1;
			while (*v == ' ')
				v++;
			return strndup(v, (size_t)(eol - v));
		}
		line = eol;
	}
	return NULL;
}
