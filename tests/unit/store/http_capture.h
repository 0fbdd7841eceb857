/* A one-shot HTTP listener on 127.0.0.1 for tests: it accepts one
 * connection, reads one request (headers and a Content-Length body),
 * answers with a fixed response and keeps the raw request bytes, so a test
 * sees exactly what libcurl sent. */
#ifndef TEST_HTTP_CAPTURE_H
#define TEST_HTTP_CAPTURE_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

struct http_capture {
	int listen_fd;
	uint16_t port;
	pthread_t thread;
	const char *response; /* sent whole after the request; default 200, empty */
	char *request;	      /* NUL-terminated raw request, after http_capture_wait */
	size_t request_len;
};

/* Binds an ephemeral port and starts the listener thread. 0 or -errno. */
int http_capture_start(struct http_capture *c, const char *response);
/* Joins the thread; c->request holds what arrived (free with
 * http_capture_free). */
void http_capture_wait(struct http_capture *c);
void http_capture_free(struct http_capture *c);

/* The value of the first header `name` (case-insensitive) in a raw
 * request, malloc()ed, or NULL. */
char *http_header(const char *request, const char *name);

#endif
