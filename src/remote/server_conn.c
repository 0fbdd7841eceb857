/* One connection of remote-stripe-server: a non-blocking state machine
 * driven by epoll events, the disk's completions and the clock.
 *
 *   HANDSHAKE -> REQUEST -> (WAIT_BUFFER ->) (DISK ->) REPLY -> REQUEST ...
 *
 * It reads one request at a time and nothing more until that request is
 * answered, so a client that sends faster than it reads only fills its own
 * socket buffers. Any protocol, I/O or TLS error ends this session alone; a
 * failed disk read is answered SERVER_ERROR and the session goes on. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <arpa/inet.h>
#include <unistd.h>

#include "remote/remote_internal.h"
#include "server_internal.h"

#define NS_PER_MS 1000000ull

static uint64_t ms_from_now(const struct server *s, uint32_t ms)
{
	return s->now_ns + (uint64_t)ms * NS_PER_MS;
}

static uint32_t idle_ms(const struct server *s)
{
	const struct remote_timeouts *t = &s->opts->timeouts;
	return t->idle_ms ? t->idle_ms : t->io_ms;
}

void conn_set_deadline(struct server *s, struct conn *c, uint64_t deadline_ns)
{
	c->deadline_ns = deadline_ns;
	if (deadline_ns < s->next_sweep_ns)
		s->next_sweep_ns = deadline_ns;
}

void server_format_address(const struct sockaddr_storage *sa, char *out, size_t len)
{
	char host[INET6_ADDRSTRLEN] = "?";
	if (sa->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		snprintf(out, len, "%s:%u", host, ntohs(in->sin_port));
	} else if (sa->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		snprintf(out, len, "[%s]:%u", host, ntohs(in6->sin6_port));
	} else if (sa->ss_family == AF_UNIX) {
		snprintf(out, len, "(local socket)");
	} else {
		snprintf(out, len, "(unknown address family %d)", sa->ss_family);
	}
}

static void set_interest(struct server *s, struct conn *c, uint32_t events)
{
	if (c->events == events)
		return;
	struct epoll_event ev = {.events = events, .data.ptr = c};
	if (epoll_ctl(s->epfd, EPOLL_CTL_MOD, c->fd, &ev) == 0)
		c->events = events;
}

/* ---- reply buffers ---- */

static void wait_queue_remove(struct server *s, struct conn *c)
{
	if (c->wait_prev)
		c->wait_prev->wait_next = c->wait_next;
	else
		s->waiting_head = c->wait_next;
	if (c->wait_next)
		c->wait_next->wait_prev = c->wait_prev;
	else
		s->waiting_tail = c->wait_prev;
	c->wait_prev = c->wait_next = NULL;
}

static void start_disk_read(struct server *s, struct conn *c, struct reply_slot *slot)
{
	slot->owner = c;
	slot->reading = true;
	c->slot = slot;
	c->state = CONN_DISK;
	set_interest(s, c, 0);
	uint64_t sector = c->stripe * s->stripe_sectors;
	uint64_t sectors = s->disk_sectors - sector;
	if (sectors > s->stripe_sectors)
		sectors = s->stripe_sectors;
	uint8_t *data = slot->mem + s->align;
	/* The disk's last stripe may be short: its tail reads as zeros, as a
	 * stripe past the end of a file does for every client. */
	size_t bytes = (size_t)sectors * SECTOR_SIZE;
	if (bytes < s->stripe_bytes)
		memset(data + bytes, 0, s->stripe_bytes - bytes);
	slot->iov = (struct iovec){.iov_base = data, .iov_len = bytes};
	bdev_add_readv(s->ch, sector, &slot->iov, 1, (uint64_t)(slot - s->slots));
}

/* A free buffer, allocated on first use; NULL when the pool is exhausted. */
static struct reply_slot *take_slot(struct server *s)
{
	struct reply_slot *slot = s->free_slots;
	if (!slot)
		return NULL;
	if (!slot->mem) {
		slot->mem = buffer_alloc(s->align, s->align + s->stripe_bytes);
		if (!slot->mem)
			return NULL;
	}
	s->free_slots = slot->next_free;
	slot->next_free = NULL;
	return slot;
}

/* Hands the buffer to the longest waiting connection, or back to the pool. */
static void release_slot(struct server *s, struct reply_slot *slot)
{
	slot->owner = NULL;
	struct conn *c = s->waiting_head;
	if (c) {
		wait_queue_remove(s, c);
		start_disk_read(s, c, slot);
		return;
	}
	slot->next_free = s->free_slots;
	s->free_slots = slot;
}

/* ---- taking turns ---- */

static void ready_remove(struct server *s, struct conn *c)
{
	if (!c->ready)
		return;
	if (c->ready_prev)
		c->ready_prev->ready_next = c->ready_next;
	else
		s->ready_head = c->ready_next;
	if (c->ready_next)
		c->ready_next->ready_prev = c->ready_prev;
	else
		s->ready_tail = c->ready_prev;
	c->ready_prev = c->ready_next = NULL;
	c->ready = false;
	s->ready_count--;
}

/* At the tail: everyone already waiting goes first. */
static void ready_add(struct server *s, struct conn *c)
{
	if (c->ready)
		return;
	c->ready = true;
	c->ready_next = NULL;
	c->ready_prev = s->ready_tail;
	if (s->ready_tail)
		s->ready_tail->ready_next = c;
	else
		s->ready_head = c;
	s->ready_tail = c;
	s->ready_count++;
}

/* ---- closing ---- */

void conn_close(struct server *s, struct conn *c, const char *why)
{
	if (c->state == CONN_DEAD)
		return;
	if (why)
		log_info("client %s: %s", c->addr, why);
	else
		log_info("client %s disconnected", c->addr);
	if (c->state == CONN_WAIT_BUFFER)
		wait_queue_remove(s, c);
	ready_remove(s, c);
	if (c->slot) {
		/* A read still in flight owns the buffer until it completes. */
		if (c->slot->reading)
			c->slot->owner = NULL;
		else
			release_slot(s, c->slot);
		c->slot = NULL;
	}
	if (c->ssl)
		server_tls_close(c->ssl);
	c->ssl = NULL;
	epoll_ctl(s->epfd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	c->fd = -1;
	c->state = CONN_DEAD;
	if (c->prev)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	s->conn_count--;
	s->closed_since_trim++;
	c->prev = NULL;
	c->next = s->dead;
	s->dead = c;
}

void server_free_dead(struct server *s)
{
	while (s->dead) {
		struct conn *c = s->dead;
		s->dead = c->next;
		free(c);
	}
}

static void close_with_error(struct server *s, struct conn *c, const struct error *why)
{
	conn_close(s, c, why->text[0] ? why->text : "connection error");
}

/* ---- transport: plain TCP or TLS ---- */

static int transport_read(struct conn *c, void *buf, size_t len, struct error *why)
{
	if (c->ssl)
		return server_tls_read(c->ssl, buf, len, why);
	for (;;) {
		ssize_t n = recv(c->fd, buf, len, 0);
		if (n >= 0)
			return (int)n;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return SERVER_IO_WANT_READ;
		if (errno == ECONNRESET)
			return 0;
		error_set(why, -errno, "read failed: %s", strerror(errno));
		return SERVER_IO_ERROR;
	}
}

static int transport_write(struct conn *c, const void *buf, size_t len, struct error *why)
{
	if (c->ssl)
		return server_tls_write(c->ssl, buf, len, why);
	for (;;) {
		/* MSG_NOSIGNAL: a peer that left must not kill the process. */
		ssize_t n = send(c->fd, buf, len, MSG_NOSIGNAL);
		if (n > 0)
			return (int)(n > INT32_MAX ? INT32_MAX : n);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return SERVER_IO_WANT_WRITE;
		error_set(why, n < 0 ? -errno : -EIO, "write failed: %s",
			  n < 0 ? strerror(errno) : "nothing written");
		return SERVER_IO_ERROR;
	}
}

static uint32_t want_events(int r)
{
	return r == SERVER_IO_WANT_WRITE ? EPOLLOUT : EPOLLIN;
}

/* ---- requests ---- */

static void start_reply(struct server *s, struct conn *c, const uint8_t *out, size_t len)
{
	c->out = out;
	c->out_len = len;
	c->out_off = 0;
	c->state = CONN_REPLY;
	conn_set_deadline(s, c, ms_from_now(s, s->opts->timeouts.io_ms));
}

static void reply_status(struct server *s, struct conn *c, uint8_t status)
{
	c->status = status;
	start_reply(s, c, &c->status, 1);
}

static void consume(struct conn *c, uint8_t n)
{
	memmove(c->in, c->in + n, c->in_len - n);
	c->in_len = (uint8_t)(c->in_len - n);
}

/* Starts answering the request at the head of c->in; false when it is not
 * complete yet. */
static bool dispatch(struct server *s, struct conn *c)
{
	if (c->in_len == 0)
		return false;
	const struct remote_server_options *o = s->opts;
	switch (c->in[0]) {
	case REMOTE_OP_METADATA:
		consume(c, 1);
		start_reply(s, c, s->metadata_reply, s->metadata_reply_len);
		return true;
	case REMOTE_OP_READ_STRIPE: {
		if (c->in_len < REMOTE_READ_STRIPE_REQUEST_BYTES)
			return false;
		c->stripe = remote_get_u64(c->in + 1);
		consume(c, REMOTE_READ_STRIPE_REQUEST_BYTES);
		uint8_t status = server_stripe_status(o->headers, o->header_count, c->stripe);
		if (status != REMOTE_STATUS_OK) {
			reply_status(s, c, status);
			return true;
		}
		bool pool_empty = !s->free_slots;
		struct reply_slot *slot = take_slot(s);
		if (slot) {
			start_disk_read(s, c, slot);
			return true;
		}
		if (!pool_empty) {
			log_warn("client %s: no memory for a stripe reply", c->addr);
			reply_status(s, c, REMOTE_STATUS_SERVER_ERROR);
			return true;
		}
		/* Every buffer is busy: wait without reading, so this client's
		 * further bytes stay in its socket. */
		c->state = CONN_WAIT_BUFFER;
		set_interest(s, c, 0);
		c->wait_prev = s->waiting_tail;
		c->wait_next = NULL;
		if (s->waiting_tail)
			s->waiting_tail->wait_next = c;
		else
			s->waiting_head = c;
		s->waiting_tail = c;
		return true;
	}
	default:
		/* The byte is consumed; the next one is a new opcode. */
		consume(c, 1);
		reply_status(s, c, REMOTE_STATUS_INVALID_COMMAND);
		return true;
	}
}

static void enter_request(struct server *s, struct conn *c)
{
	c->state = CONN_REQUEST;
	conn_set_deadline(s, c, ms_from_now(s, idle_ms(s)));
}

/* The server stops after this reply. Closing a socket with unread input
 * (requests the client sent ahead) makes the kernel send a reset, which may
 * destroy the reply still on its way; so the session ends with a FIN after
 * the reply and waits for the client to close, discarding what it sends. */
static void linger(struct server *s, struct conn *c)
{
	if (c->ssl)
		server_tls_close_notify(c->ssl);
	shutdown(c->fd, SHUT_WR);
	c->state = CONN_LINGER;
	conn_set_deadline(s, c, ms_from_now(s, s->opts->timeouts.io_ms));
}

/* One read of what a lingering peer still sends: > 0 something was
 * discarded, 0 nothing more for now, < 0 the peer closed (or failed). One
 * read per step, so a peer that keeps sending takes turns like any other. */
static int discard_input(struct conn *c)
{
	uint8_t sink[4096];
	for (;;) {
		ssize_t n = recv(c->fd, sink, sizeof(sink), 0);
		if (n > 0)
			return 1;
		if (n < 0 && errno == EINTR)
			continue;
		return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -1;
	}
}

/* Runs the state machine until it has to wait, or until it used its turn
 * (then it goes on the ready list and the loop resumes it next turn). */
static void advance(struct server *s, struct conn *c)
{
	struct error why = {0};
	for (uint32_t steps = 0;; steps++) {
		if (steps == SERVER_STEPS_PER_TURN) {
			ready_add(s, c);
			return;
		}
		switch (c->state) {
		case CONN_HANDSHAKE: {
			int r = server_tls_handshake(c->ssl, &why);
			if (r > 0) {
				log_info("client %s: TLS-PSK session, identity \"%s\"", c->addr,
					 server_tls_identity(c->ssl));
				enter_request(s, c);
				continue;
			}
			if (r == SERVER_IO_WANT_READ || r == SERVER_IO_WANT_WRITE) {
				set_interest(s, c, want_events(r));
				return;
			}
			if (r == 0)
				error_set(&why, -ECONNRESET,
					  "TLS handshake failed: connection closed");
			close_with_error(s, c, &why);
			return;
		}
		case CONN_REQUEST: {
			if (s->stopping && c->in_len == 0) {
				conn_close(s, c, "server stopping");
				return;
			}
			if (dispatch(s, c))
				continue;
			int r =
			    transport_read(c, c->in + c->in_len, sizeof(c->in) - c->in_len, &why);
			if (r > 0) {
				c->in_len = (uint8_t)(c->in_len + r);
				continue;
			}
			if (r == SERVER_IO_WANT_READ || r == SERVER_IO_WANT_WRITE) {
				set_interest(s, c, want_events(r));
				return;
			}
			if (r == 0 && c->in_len == 0) {
				conn_close(s, c, NULL);
				return;
			}
			if (r == 0)
				error_set(&why, -EPROTO,
					  "connection closed in the middle of a request");
			close_with_error(s, c, &why);
			return;
		}
		case CONN_WAIT_BUFFER:
		case CONN_DISK:
			set_interest(s, c, 0);
			return;
		case CONN_REPLY: {
			size_t left = c->out_len - c->out_off;
			if (left == 0) {
				if (c->slot) {
					struct reply_slot *slot = c->slot;
					c->slot = NULL;
					release_slot(s, slot);
				}
				if (s->stopping) {
					linger(s, c);
					continue;
				}
				enter_request(s, c);
				continue;
			}
			int r = transport_write(c, c->out + c->out_off, left, &why);
			if (r > 0) {
				c->out_off += (size_t)r;
				conn_set_deadline(s, c, ms_from_now(s, s->opts->timeouts.io_ms));
				continue;
			}
			if (r == SERVER_IO_WANT_READ || r == SERVER_IO_WANT_WRITE) {
				set_interest(s, c, want_events(r));
				return;
			}
			if (r == 0)
				error_set(&why, -ECONNRESET, "connection closed during a reply");
			close_with_error(s, c, &why);
			return;
		}
		case CONN_LINGER: {
			int r = discard_input(c);
			if (r > 0)
				continue;
			if (r == 0) {
				set_interest(s, c, EPOLLIN);
				return;
			}
			conn_close(s, c, "server stopping");
			return;
		}
		case CONN_DEAD:
		default:
			return;
		}
	}
}

void conn_run_ready(struct server *s)
{
	/* Only those waiting now: one that uses up this turn too goes back at
	 * the tail, for the next loop turn. */
	for (uint32_t n = s->ready_count; n > 0 && s->ready_head; n--) {
		struct conn *c = s->ready_head;
		ready_remove(s, c);
		advance(s, c);
	}
}

void conn_on_event(struct server *s, struct conn *c, uint32_t events)
{
	if (c->state == CONN_DEAD)
		return;
	if ((c->state == CONN_DISK || c->state == CONN_WAIT_BUFFER) &&
	    (events & (EPOLLHUP | EPOLLERR))) {
		/* Nothing is read or written now, so only a dead socket wakes
		 * us: level-triggered, it would keep doing so. */
		int soerr = 0;
		socklen_t len = sizeof(soerr);
		getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
		struct error why;
		error_set(&why, -ECONNRESET, "connection lost while its reply was prepared%s%s",
			  soerr ? ": " : "", soerr ? strerror(soerr) : "");
		close_with_error(s, c, &why);
		return;
	}
	advance(s, c);
}

void conn_expired(struct server *s, struct conn *c)
{
	switch (c->state) {
	case CONN_HANDSHAKE:
		conn_close(s, c, "TLS handshake timed out");
		break;
	case CONN_REQUEST:
		conn_close(s, c,
			   c->in_len ? "timed out in the middle of a request" : "idle timeout");
		break;
	case CONN_REPLY:
		conn_close(s, c, "timed out sending a reply (the client stopped reading)");
		break;
	case CONN_LINGER:
		conn_close(s, c, "server stopping");
		break;
	default:
		break; /* waiting for the server itself: no deadline */
	}
}

void conn_stop(struct server *s, struct conn *c)
{
	if (c->state == CONN_HANDSHAKE || (c->state == CONN_REQUEST && c->in_len == 0))
		conn_close(s, c, "server stopping");
	else if (c->state == CONN_REQUEST)
		conn_close(s, c, "server stopping in the middle of a request");
}

void conn_disk_done(struct server *s, struct reply_slot *slot, int result)
{
	slot->reading = false;
	struct conn *c = slot->owner;
	if (!c) {
		release_slot(s, slot);
		return;
	}
	if (result < 0) {
		log_warn("client %s: reading stripe %llu failed: %s", c->addr,
			 (unsigned long long)c->stripe, strerror(-result));
		c->slot = NULL;
		release_slot(s, slot);
		reply_status(s, c, REMOTE_STATUS_SERVER_ERROR);
	} else {
		uint8_t *header = slot->mem + s->align - REMOTE_REPLY_HEADER_BYTES;
		header[0] = REMOTE_STATUS_OK;
		remote_put_u64(header + 1, s->stripe_bytes);
		start_reply(s, c, header, REMOTE_REPLY_HEADER_BYTES + s->stripe_bytes);
	}
	advance(s, c);
}

void conn_accepted(struct server *s, int fd, const struct sockaddr_storage *sa, socklen_t len)
{
	(void)len;
	struct conn *c = calloc(1, sizeof(*c));
	if (!c) {
		log_warn("dropping a connection: out of memory");
		close(fd);
		return;
	}
	c->fd = fd;
	server_format_address(sa, c->addr, sizeof(c->addr));
	int one = 1;
	/* Replies are single writes the client waits for: never delay them. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	log_info("accepted connection from %s", c->addr);

	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
	if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		log_warn("client %s: cannot watch the connection: %s", c->addr, strerror(errno));
		close(fd);
		free(c);
		return;
	}
	c->events = EPOLLIN;
	c->next = s->conns;
	if (s->conns)
		s->conns->prev = c;
	s->conns = c;
	s->conn_count++;

	if (s->opts->tls) {
		struct error why = {0};
		if (server_tls_attach(s->opts->tls, fd, &c->ssl, &why) < 0) {
			close_with_error(s, c, &why);
			return;
		}
		c->state = CONN_HANDSHAKE;
		conn_set_deadline(s, c, ms_from_now(s, s->opts->timeouts.connect_ms));
	} else {
		enter_request(s, c);
	}
	advance(s, c);
}
