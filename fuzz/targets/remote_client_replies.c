/*
 * The reply stream a stripe server sends the client, as the TLS layer would
 * deliver it. A thread writes the input into one end of a socketpair; on the
 * other end the real client (remote_client_attach: client.c's reply parsing,
 * wire.c's METADATA blob decoder) asks METADATA, then READ_STRIPE 0, 1, 2,
 * ... until its connection breaks (at the latest when the input ends).
 *
 * Checked besides "no crash": the thread reads the client's requests and
 * each must be exactly the next one (00, then 01 + u64 index); accepted
 * metadata is what the blob says (shift in range, one header per byte after
 * the header sector, source_stripes the last stripe served) and encodes and
 * parses back to the same; a stripe read returns exactly the input's
 * payload bytes; a status reply reports the input's status byte and leaves
 * the connection usable only for INVALID_STRIPE, NO_DATA, NOT_FETCHED and
 * SERVER_ERROR; the client never reads past the reply it was given.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "remote/remote_internal.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define PEER_WAIT_MS 20000 /* a client that neither reads nor closes: fail */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	setenv("UBIBLK_LOG", "error", 1);
	log_init();
	return 0;
}

static uint64_t get_u64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

/* ---- the server's side: writes the input, checks the requests ---- */

struct peer {
	int fd;
	const uint8_t *replies;
	size_t len;
	const char *failure;
	/* The request stream seen so far: METADATA, then READ_STRIPE k. */
	bool had_metadata;
	uint64_t next_index;
	uint8_t req[REMOTE_READ_STRIPE_REQUEST_BYTES];
	size_t req_len;
};

static bool take_requests(struct peer *p, const uint8_t *b, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (!p->had_metadata) {
			if (b[i] != REMOTE_OP_METADATA) {
				p->failure = "the first request is not METADATA";
				return false;
			}
			p->had_metadata = true;
			continue;
		}
		p->req[p->req_len++] = b[i];
		if (p->req_len < sizeof(p->req))
			continue;
		if (p->req[0] != REMOTE_OP_READ_STRIPE || get_u64(p->req + 1) != p->next_index) {
			p->failure = "a READ_STRIPE request is not the one asked for";
			return false;
		}
		p->next_index++;
		p->req_len = 0;
	}
	return true;
}

static void *peer_main(void *arg)
{
	struct peer *p = arg;
	size_t written = 0;
	bool ended = false;
	for (;;) {
		if (written == p->len && !ended) {
			/* The server closes: the client reads EOF after the input. */
			shutdown(p->fd, SHUT_WR);
			ended = true;
		}
		struct pollfd pfd = {.fd = p->fd, .events = POLLIN | (ended ? 0 : POLLOUT)};
		int n = poll(&pfd, 1, PEER_WAIT_MS);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			p->failure = "the client neither read nor closed";
			return NULL;
		}
		if (pfd.revents & POLLOUT) {
			ssize_t w = send(p->fd, p->replies + written, p->len - written,
					 MSG_NOSIGNAL | MSG_DONTWAIT);
			if (w > 0)
				written += (size_t)w;
			else if (w < 0 && errno != EAGAIN && errno != EINTR)
				ended = true; /* the client closed: nothing more to give */
		}
		if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
			uint8_t buf[512];
			ssize_t r = recv(p->fd, buf, sizeof(buf), MSG_DONTWAIT);
			if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
				return NULL; /* the client closed its end */
			if (r > 0 && !take_requests(p, buf, (size_t)r))
				return NULL;
		}
	}
}

/* ---- the client ---- */

static bool serves(uint8_t header)
{
	return (header & (META_HEADER_WRITTEN | META_HEADER_HAS_SOURCE)) != 0;
}

/* What the client took from a METADATA reply that it accepted, against the
 * reply's bytes; returns where the next reply starts. */
static size_t check_metadata(const struct remote_metadata *m, const uint8_t *data, size_t size)
{
	if (size < REMOTE_REPLY_HEADER_BYTES || data[0] != REMOTE_STATUS_OK)
		abort();
	uint64_t blob = get_u64(data + 1);
	if (blob < REMOTE_METADATA_MIN_BYTES || blob > REMOTE_METADATA_MAX_BYTES ||
	    blob > size - REMOTE_REPLY_HEADER_BYTES)
		abort();
	if (m->shift < META_MIN_SHIFT || m->shift > META_MAX_LOAD_SHIFT ||
	    m->header_count != blob - 512 || m->source_stripes > m->header_count ||
	    (m->header_count && memcmp(m->headers, data + 9 + 512, m->header_count) != 0))
		abort();
	if (m->source_stripes && !serves(m->headers[m->source_stripes - 1]))
		abort();
	for (uint64_t i = m->source_stripes; i < m->header_count; i++)
		if (serves(m->headers[i]) || remote_metadata_has_stripe(m, i))
			abort();
	if (remote_metadata_has_stripe(m, m->header_count))
		abort();
	/* What a server would send for these headers reads back the same. */
	uint8_t *again;
	size_t again_len;
	struct remote_metadata back;
	if (remote_metadata_encode(m->shift, m->headers, m->header_count, &again, &again_len) !=
		0 ||
	    again_len != blob || remote_metadata_parse(again, again_len, &back, NULL) != 0)
		abort();
	if (back.shift != m->shift || back.header_count != m->header_count ||
	    back.source_stripes != m->source_stripes ||
	    (m->header_count && memcmp(back.headers, m->headers, m->header_count) != 0))
		abort();
	remote_metadata_free(&back);
	free(again);
	return REMOTE_REPLY_HEADER_BYTES + (size_t)blob;
}

static bool status_keeps_connection(uint8_t status)
{
	return status == REMOTE_STATUS_INVALID_STRIPE || status == REMOTE_STATUS_NO_DATA ||
	       status == REMOTE_STATUS_NOT_FETCHED || status == REMOTE_STATUS_SERVER_ERROR;
}

/* READ_STRIPE 0, 1, ... until the connection breaks, each result checked
 * against the reply at `pos` in the input. */
static void read_stripes(struct remote_client *c, const uint8_t *data, size_t size, size_t pos)
{
	size_t stripe = (size_t)512 << remote_client_metadata(c)->shift;
	/* Up to 64 MiB, mostly never touched: mapped (ASan's malloc of that
	 * much costs seconds), with a page that faults right after it. */
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t room = (stripe + page - 1) / page * page;
	uint8_t *map = mmap(NULL, room + page, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (map == MAP_FAILED || mprotect(map + room, page, PROT_NONE) != 0)
		abort();
	uint8_t *buf = map + room - stripe;
	for (uint64_t index = 0; !remote_client_broken(c); index++) {
		uint8_t status = 0xAA;
		int rc = remote_client_read_stripe(c, index, buf, &status, NULL);
		if (rc == 0) {
			if (status != REMOTE_STATUS_OK || size - pos < 9 + stripe ||
			    data[pos] != REMOTE_STATUS_OK || get_u64(data + pos + 1) != stripe ||
			    memcmp(buf, data + pos + 9, stripe) != 0 || remote_client_broken(c))
				abort();
			pos += 9 + stripe;
		} else if (status != REMOTE_STATUS_OK) {
			if (pos >= size || status != data[pos] ||
			    remote_client_broken(c) == status_keeps_connection(status))
				abort();
			pos++;
		} else if (!remote_client_broken(c)) {
			abort(); /* no status and no break: a failure that cannot be */
		}
		/* Only an end of the input (EOF) counts as the server leaving. */
		if (!remote_client_broken(c) && remote_client_closed_while_idle(c) && pos < size)
			abort();
	}
	munmap(map, room + page);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		abort();
	struct peer p = {.fd = sv[1], .replies = data, .len = size};
	pthread_t thread;
	if (pthread_create(&thread, NULL, peer_main, &p) != 0)
		abort();
	struct remote_client *c = NULL;
	struct remote_timeouts t = {.connect_ms = PEER_WAIT_MS, .io_ms = PEER_WAIT_MS};
	if (remote_client_attach(sv[0], "fuzz peer", &t, &c, NULL) == 0) {
		size_t pos = check_metadata(remote_client_metadata(c), data, size);
		read_stripes(c, data, size, pos);
	}
	remote_client_close(c);
	pthread_join(thread, NULL);
	close(sv[1]);
	if (p.failure) {
		fprintf(stderr, "remote-client-replies: %s\n", p.failure);
		abort();
	}
	return 0;
}
