/* remote-stripe-server's event loop: the listening socket, the stop
 * eventfd, the disk channel's completion fd and every connection in one
 * epoll set, deadlines checked each turn. See server_internal.h. */
#include <errno.h>
#include <malloc.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "remote/remote_internal.h"
#include "server_internal.h"

#define NS_PER_MS     1000000ull
#define EVENTS_MAX    64
#define ACCEPTS_BATCH 64 /* per turn, so connecting never starves serving */

/* The stop request may come from a signal handler: a flag for a stop asked
 * before the loop runs, and an eventfd (made once, never closed, so a late
 * signal never writes to a recycled descriptor) to wake the loop. */
static int stop_requested; /* lock-free atomic: signal-safe and thread-safe */
static int stop_fd = -1;
static pthread_once_t stop_once = PTHREAD_ONCE_INIT;

static void make_stop_fd(void)
{
	int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	__atomic_store_n(&stop_fd, fd, __ATOMIC_RELEASE);
}

void remote_server_request_stop(void)
{
	int saved = errno;
	__atomic_store_n(&stop_requested, 1, __ATOMIC_RELEASE);
	int fd = __atomic_load_n(&stop_fd, __ATOMIC_ACQUIRE);
	if (fd >= 0) {
		uint64_t one = 1;
		ssize_t r = write(fd, &one, sizeof(one));
		(void)r;
	}
	errno = saved;
}

static bool stop_requested_now(void)
{
	return __atomic_load_n(&stop_requested, __ATOMIC_ACQUIRE) != 0;
}

/* Markers for the epoll entries that are not connections. */
static char mark_listen, mark_stop, mark_disk;

static void drain_eventfd(int fd)
{
	uint64_t v;
	ssize_t r = read(fd, &v, sizeof(v));
	(void)r;
}

/* ---- listening ---- */

/* "host:port" or "[v6]:port"; an empty host is every address. */
static int split_address(const char *text, char *host, size_t hlen, char *port, size_t plen,
			 struct error *err)
{
	const char *colon;
	const char *h = text;
	size_t h_len;
	if (text[0] == '[') {
		const char *close = strchr(text, ']');
		if (!close || close[1] != ':')
			return error_set(err, -EINVAL,
					 "invalid listen address %s: expected [IPv6]:port", text);
		h = text + 1;
		h_len = (size_t)(close - h);
		colon = close + 1;
	} else {
		colon = strrchr(text, ':');
		if (!colon)
			return error_set(err, -EINVAL,
					 "invalid listen address %s: expected host:port", text);
		h_len = (size_t)(colon - text);
		if (memchr(text, ':', h_len))
			return error_set(
			    err, -EINVAL,
			    "invalid listen address %s: an IPv6 address needs brackets, "
			    "[addr]:port",
			    text);
	}
	const char *p = colon + 1;
	size_t p_len = strlen(p);
	char *end;
	unsigned long v =
	    p_len && p_len <= 5 && strspn(p, "0123456789") == p_len ? strtoul(p, &end, 10) : 65536;
	if (v > 65535)
		return error_set(err, -EINVAL, "invalid listen address %s: bad port", text);
	if (h_len >= hlen || p_len >= plen)
		return error_set(err, -EINVAL, "invalid listen address %s: too long", text);
	memcpy(host, h, h_len);
	host[h_len] = '\0';
	memcpy(port, p, p_len + 1);
	return 0;
}

static int open_listener(const char *address, int *out, struct error *err)
{
	char host[256], port[8];
	int ret = split_address(address, host, sizeof(host), port, sizeof(port), err);
	if (ret < 0)
		return ret;
	struct addrinfo hints = {
	    .ai_family = AF_UNSPEC,
	    .ai_socktype = SOCK_STREAM,
	    .ai_flags = AI_PASSIVE | AI_NUMERICSERV,
	};
	struct addrinfo *list = NULL;
	int gai = getaddrinfo(host[0] ? host : NULL, port, &hints, &list);
	if (gai != 0)
		return error_set(err, -EADDRNOTAVAIL, "cannot resolve %s: %s", address,
				 gai_strerror(gai));
	int saved = EADDRNOTAVAIL;
	int fd = -1;
	for (struct addrinfo *ai = list; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
			    ai->ai_protocol);
		if (fd < 0) {
			saved = errno;
			continue;
		}
		int one = 1;
		/* A restarted server must not wait for the old sessions'
		 * TIME_WAIT to end. */
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, SOMAXCONN) == 0)
			break;
		saved = errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(list);
	if (fd < 0)
		return error_set(err, -saved, "cannot listen on %s: %s", address, strerror(saved));
	*out = fd;
	return 0;
}

static int epoll_add(int epfd, int fd, void *ptr)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = ptr};
	return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

static void pause_accepting(struct server *s)
{
	if (s->listening)
		epoll_ctl(s->epfd, EPOLL_CTL_DEL, s->listen_fd, NULL);
	s->listening = false;
	s->accept_resume_ns = s->now_ns + SERVER_ACCEPT_PAUSE_MS * NS_PER_MS;
}

static void resume_accepting(struct server *s)
{
	if (s->one_connection || s->listening || s->stopping || s->now_ns < s->accept_resume_ns)
		return;
	if (epoll_add(s->epfd, s->listen_fd, &mark_listen) == 0)
		s->listening = true;
	else
		s->accept_resume_ns = s->now_ns + SERVER_ACCEPT_PAUSE_MS * NS_PER_MS;
}

/* Errors that concern only the connection being accepted. */
static bool accept_error_is_per_connection(int e)
{
	return e == ECONNABORTED || e == EPROTO || e == EPERM || e == ENETDOWN ||
	       e == ENOPROTOOPT || e == EHOSTDOWN || e == ENONET || e == EHOSTUNREACH ||
	       e == EOPNOTSUPP || e == ENETUNREACH;
}

static void accept_ready(struct server *s)
{
	uint32_t max = s->opts->max_connections;
	for (int i = 0; i < ACCEPTS_BATCH; i++) {
		struct sockaddr_storage sa;
		socklen_t len = sizeof(sa);
		int fd = accept4(s->listen_fd, (struct sockaddr *)&sa, &len,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			int e = errno;
			if (e == EINTR || accept_error_is_per_connection(e))
				continue;
			if (e == EAGAIN || e == EWOULDBLOCK)
				return;
			/* Out of descriptors or memory: transient; pause rather
			 * than spin on a listening socket that stays readable. */
			if (!s->accept_failing)
				log_warn("accepting connections failed: %s; retrying every %u ms",
					 strerror(e), SERVER_ACCEPT_PAUSE_MS);
			s->accept_failing = true;
			pause_accepting(s);
			return;
		}
		if (s->accept_failing) {
			log_info("accepting connections again");
			s->accept_failing = false;
		}
		if (s->conn_count >= max) {
			if (!s->refusing)
				log_warn("%u connections, the maximum: refusing new connections "
					 "until some end",
					 max);
			s->refusing = true;
			s->refused++;
			close(fd);
			continue;
		}
		if (s->refusing) {
			log_info("accepting connections again (%llu refused)",
				 (unsigned long long)s->refused);
			s->refusing = false;
			s->refused = 0;
		}
		conn_accepted(s, fd, &sa, len);
	}
}

/* ---- disk ---- */

static void run_disk(struct server *s)
{
	struct bdev_completion done[16];
	for (;;) {
		if (bdev_needs_submit(s->ch))
			bdev_submit(s->ch);
		int n = bdev_poll(s->ch, done, (int)ARRAY_SIZE(done));
		if (n <= 0)
			return;
		for (int i = 0; i < n; i++)
			conn_disk_done(s, &s->slots[done[i].id], done[i].result);
	}
}

/* ---- deadlines and stopping ---- */

static bool has_deadline(const struct conn *c)
{
	return c->state == CONN_HANDSHAKE || c->state == CONN_REQUEST || c->state == CONN_REPLY ||
	       c->state == CONN_LINGER;
}

static void sweep(struct server *s)
{
	uint64_t next = UINT64_MAX;
	struct conn *c = s->conns;
	while (c) {
		struct conn *n = c->next;
		if (has_deadline(c)) {
			if (c->deadline_ns <= s->now_ns)
				conn_expired(s, c);
			else if (c->deadline_ns < next)
				next = c->deadline_ns;
		}
		c = n;
	}
	s->next_sweep_ns = next;
}

static void begin_stop(struct server *s)
{
	if (s->stopping)
		return;
	s->stopping = true;
	s->stop_deadline_ns = s->now_ns + (uint64_t)s->opts->timeouts.io_ms * NS_PER_MS;
	log_info("stopping: no new connections; finishing the replies in flight");
	if (s->listening)
		epoll_ctl(s->epfd, EPOLL_CTL_DEL, s->listen_fd, NULL);
	s->listening = false;
	if (s->listen_fd >= 0)
		close(s->listen_fd);
	s->listen_fd = -1;
	struct conn *c = s->conns;
	while (c) {
		struct conn *n = c->next;
		conn_stop(s, c);
		c = n;
	}
}

static void close_all(struct server *s, const char *why)
{
	while (s->conns)
		conn_close(s, s->conns, why);
}

static int wait_timeout_ms(const struct server *s)
{
	uint64_t wake = s->next_sweep_ns;
	if (!s->one_connection && !s->listening && !s->stopping && s->accept_resume_ns < wake)
		wake = s->accept_resume_ns;
	if (s->stopping && s->stop_deadline_ns < wake)
		wake = s->stop_deadline_ns;
	int timeout = -1;
	if (s->ready_head)
		return 0; /* connections with work left: just look for news */
	if (wake != UINT64_MAX) {
		uint64_t now = now_ns();
		uint64_t ms = wake <= now ? 0 : (wake - now + NS_PER_MS - 1) / NS_PER_MS;
		timeout = ms > 60000 ? 60000 : (int)ms;
	}
	/* Reads the kernel did not take yet signal nothing: retry soon. */
	if (bdev_needs_submit(s->ch) && (timeout < 0 || timeout > 1))
		timeout = 1;
	return timeout;
}

/* A TLS session costs tens of KiB of small allocations; after a burst of
 * connections glibc keeps the freed memory in its arenas, and VmRSS would
 * stay at the burst's peak for good. Once the burst has ended (no
 * connection left) the free memory is handed back to the kernel. */
#define TRIM_AFTER_CLOSED 64u

static void give_back_memory(struct server *s)
{
	if (s->conn_count != 0 || s->closed_since_trim < TRIM_AFTER_CLOSED)
		return;
	s->closed_since_trim = 0;
	malloc_trim(0);
}

static void loop(struct server *s, int disk_fd)
{
	struct epoll_event events[EVENTS_MAX];
	for (;;) {
		if (stop_requested_now() && !s->stopping) {
			s->now_ns = now_ns();
			begin_stop(s);
		}
		if ((s->stopping || s->one_connection) && !s->conns)
			return;
		int n = epoll_wait(s->epfd, events, EVENTS_MAX, wait_timeout_ms(s));
		s->now_ns = now_ns();
		for (int i = 0; i < n; i++) {
			void *p = events[i].data.ptr;
			if (p == &mark_stop)
				drain_eventfd(stop_fd);
			else if (p == &mark_listen)
				accept_ready(s);
			else if (p == &mark_disk)
				drain_eventfd(disk_fd);
			else
				conn_on_event(s, p, events[i].events);
		}
		if (stop_requested_now())
			begin_stop(s);
		conn_run_ready(s);
		run_disk(s);
		resume_accepting(s);
		if (s->now_ns >= s->next_sweep_ns)
			sweep(s);
		if (s->stopping && s->now_ns >= s->stop_deadline_ns)
			close_all(s, "server stopped before the reply was sent");
		server_free_dead(s);
		give_back_memory(s);
	}
}

/* ---- set-up ---- */

static int build_metadata_reply(struct server *s, struct error *err)
{
	const struct remote_server_options *o = s->opts;
	struct metadata m = {
	    .shift = (uint8_t)o->shift,
	    .header_count = o->header_count,
	    .headers = (uint8_t *)o->headers,
	};
	size_t blob = REMOTE_METADATA_MIN_BYTES + (size_t)o->header_count;
	s->metadata_reply_len = REMOTE_REPLY_HEADER_BYTES + blob;
	s->metadata_reply = malloc(s->metadata_reply_len);
	if (!s->metadata_reply)
		return error_set(err, -ENOMEM, "cannot allocate the metadata reply");
	s->metadata_reply[0] = REMOTE_STATUS_OK;
	for (int i = 0; i < 8; i++)
		s->metadata_reply[1 + i] = (uint8_t)((uint64_t)blob >> (8 * i));
	int ret = meta_serialize(&m, s->metadata_reply + REMOTE_REPLY_HEADER_BYTES, blob);
	if (ret < 0)
		return error_set(err, ret, "cannot encode the metadata: %s", strerror(-ret));
	return 0;
}

static int check_options(const struct remote_server_options *o, bool listening, struct error *err)
{
	if ((listening && !o->address) || !o->device || (!o->headers && o->header_count))
		return error_set(err, -EINVAL,
				 "server options: address, device and headers "
				 "are required");
	if (o->shift < META_MIN_SHIFT || o->shift > META_MAX_LOAD_SHIFT)
		return error_set(err, -EINVAL, "stripe shift %u is out of range", o->shift);
	if (listening && o->max_connections == 0)
		return error_set(err, -EINVAL, "max_connections must be at least 1");
	if (o->header_count > REMOTE_METADATA_MAX_BYTES - REMOTE_METADATA_MIN_BYTES)
		return error_set(err, -EFBIG,
				 "%llu stripes: the metadata would exceed what clients accept",
				 (unsigned long long)o->header_count);
	uint64_t stripes = meta_stripe_count(bdev_sector_count(o->device), (uint8_t)o->shift);
	if (o->header_count > stripes)
		return error_set(err, -EINVAL, "%llu headers for a disk of %llu stripes",
				 (unsigned long long)o->header_count, (unsigned long long)stripes);
	return 0;
}

/* Everything but the listening socket. */
static int set_up_serving(struct server *s, struct error *err)
{
	const struct remote_server_options *o = s->opts;
	s->disk_sectors = bdev_sector_count(o->device);
	s->stripe_sectors = 1u << o->shift;
	s->stripe_bytes = (size_t)s->stripe_sectors * SECTOR_SIZE;
	s->align = bdev_buffer_alignment(o->device);
	size_t count = SERVER_REPLY_BYTES_MAX / s->stripe_bytes;
	s->slot_count = count < 1			   ? 1
			: count > SERVER_REPLY_BUFFERS_MAX ? SERVER_REPLY_BUFFERS_MAX
							   : (uint32_t)count;
	for (uint32_t i = s->slot_count; i-- > 0;) {
		s->slots[i].next_free = s->free_slots;
		s->free_slots = &s->slots[i];
	}
	int ret = build_metadata_reply(s, err);
	if (ret < 0)
		return ret;
	ret = bdev_channel_create(o->device, s->slot_count, &s->ch);
	if (ret < 0)
		return error_set(err, ret, "cannot open a disk channel: %s", strerror(-ret));
	s->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (s->epfd < 0)
		return error_set(err, -errno, "epoll_create1: %s", strerror(errno));
	pthread_once(&stop_once, make_stop_fd);
	int sfd = __atomic_load_n(&stop_fd, __ATOMIC_ACQUIRE);
	if (sfd < 0)
		return error_set(err, -EMFILE, "cannot create the stop eventfd");
	if ((ret = epoll_add(s->epfd, sfd, &mark_stop)) < 0)
		return error_set(err, ret, "epoll: %s", strerror(-ret));
	int dfd = bdev_completion_fd(s->ch);
	if (dfd >= 0 && (ret = epoll_add(s->epfd, dfd, &mark_disk)) < 0)
		return error_set(err, ret, "epoll: %s", strerror(-ret));
	return 0;
}

static int set_up_listening(struct server *s, struct error *err)
{
	const struct remote_server_options *o = s->opts;
	int ret = open_listener(o->address, &s->listen_fd, err);
	if (ret < 0)
		return ret;
	if ((ret = epoll_add(s->epfd, s->listen_fd, &mark_listen)) < 0)
		return error_set(err, ret, "epoll: %s", strerror(-ret));
	s->listening = true;

	struct sockaddr_storage sa;
	socklen_t len = sizeof(sa);
	char text[80] = "?";
	if (getsockname(s->listen_fd, (struct sockaddr *)&sa, &len) == 0)
		server_format_address(&sa, text, sizeof(text));
	log_info("listening on %s", text);
	if (o->ready)
		o->ready(o->ready_arg, text);
	return 0;
}

static void tear_down(struct server *s)
{
	close_all(s, "server stopped");
	server_free_dead(s);
	/* Waits for reads in flight: no buffer is freed under the kernel. */
	bdev_channel_destroy(s->ch);
	for (uint32_t i = 0; i < s->slot_count; i++)
		buffer_free(s->slots[i].mem);
	if (s->listen_fd >= 0)
		close(s->listen_fd);
	if (s->epfd >= 0)
		close(s->epfd);
	free(s->metadata_reply);
}

static struct server *server_new(const struct remote_server_options *opts, struct error *err)
{
	struct server *s = calloc(1, sizeof(*s));
	if (!s) {
		error_set(err, -ENOMEM, "cannot allocate the server");
		return NULL;
	}
	s->opts = opts;
	s->epfd = -1;
	s->listen_fd = -1;
	s->next_sweep_ns = UINT64_MAX;
	s->now_ns = now_ns();
	return s;
}

/* After the loop: frees s and forgets a stop request, so the next server of
 * the process starts afresh. */
static void server_end(struct server *s)
{
	tear_down(s);
	free(s);
	int sfd = __atomic_load_n(&stop_fd, __ATOMIC_ACQUIRE);
	if (sfd >= 0)
		drain_eventfd(sfd);
	__atomic_store_n(&stop_requested, 0, __ATOMIC_RELEASE);
}

int remote_server_run(const struct remote_server_options *opts, struct error *err)
{
	int ret = check_options(opts, true, err);
	if (ret < 0)
		return ret;
	struct server *s = server_new(opts, err);
	if (!s)
		return -ENOMEM;
	ret = set_up_serving(s, err);
	if (ret == 0)
		ret = set_up_listening(s, err);
	if (ret == 0) {
		loop(s, bdev_completion_fd(s->ch));
		log_info("stopped");
	}
	server_end(s);
	return ret;
}

int remote_server_serve_fd(const struct remote_server_options *opts, int fd, struct error *err)
{
	int ret = check_options(opts, false, err);
	struct server *s = ret < 0 ? NULL : server_new(opts, err);
	if (!s) {
		close(fd);
		return ret < 0 ? ret : -ENOMEM;
	}
	s->one_connection = true;
	ret = set_up_serving(s, err);
	if (ret == 0 && (ret = fd_set_nonblocking(fd)) < 0)
		error_set(err, ret, "cannot make the connection non-blocking: %s", strerror(-ret));
	if (ret < 0) {
		close(fd);
	} else {
		struct sockaddr_storage sa = {0};
		socklen_t len = sizeof(sa);
		if (getpeername(fd, (struct sockaddr *)&sa, &len) < 0)
			len = 0;
		conn_accepted(s, fd, &sa, len);
		/* Its first request may have reached the disk already, and a
		 * device that completes at once signals no fd: take the
		 * completions now, as every loop turn does after serving. */
		run_disk(s);
		server_free_dead(s);
		loop(s, bdev_completion_fd(s->ch));
	}
	server_end(s);
	return ret;
}
