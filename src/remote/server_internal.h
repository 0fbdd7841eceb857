/* remote-stripe-server's event loop, shared by server*.c.
 *
 * One thread does everything: it accepts, runs every connection as a
 * non-blocking state machine and reads stripes through one bdev channel
 * whose completion fd sits in the same epoll set, so neither a slow disk nor
 * a slow client ever blocks the loop.
 *
 * Memory is bounded whatever clients do: a connection holds at most one
 * request (9 bytes) and reads no further while it is being answered; a
 * stripe reply needs a buffer from a fixed pool, and a connection waiting
 * for one simply waits (its socket stays unread). METADATA replies share one
 * read-only blob. */
#ifndef UBIBLK_REMOTE_SERVER_INTERNAL_H
#define UBIBLK_REMOTE_SERVER_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "remote/remote.h"

typedef struct ssl_st SSL;

/* At most this many stripe replies in memory at once, and at most this many
 * bytes of them (so a 64 MiB stripe size still fits a small budget). */
#define SERVER_REPLY_BUFFERS_MAX 64u
#define SERVER_REPLY_BYTES_MAX	 (256u << 20)
/* Steps one connection may take per loop turn. A client that pipelines
 * requests answered without the disk and reads every answer always has more
 * input ready: without a bound it would keep the loop to itself. */
#define SERVER_STEPS_PER_TURN 64u
/* How long accepting pauses after the process ran out of descriptors or
 * memory: long enough not to spin, short enough not to be noticed. */
#define SERVER_ACCEPT_PAUSE_MS 100u

enum conn_state {
	CONN_HANDSHAKE,	  /* TLS handshake, deadline connect_ms */
	CONN_REQUEST,	  /* reading a request, deadline idle_ms */
	CONN_WAIT_BUFFER, /* a READ_STRIPE waits for a reply buffer; nothing read */
	CONN_DISK,	  /* the stripe is being read from the disk; nothing read */
	CONN_REPLY,	  /* sending a reply, deadline io_ms after the last progress */
	CONN_LINGER,	  /* stopping: FIN sent after the last reply, input discarded
			   * until the peer closes, deadline io_ms */
	CONN_DEAD,	  /* closed; freed at the end of the loop turn */
};

struct reply_slot {
	uint8_t *mem;	    /* header room (`align` bytes), then the stripe */
	struct conn *owner; /* NULL while free, or after its connection died */
	bool reading;	    /* a disk read into it is in flight */
	struct iovec iov;   /* the read's iovec: valid until it completes */
	struct reply_slot *next_free;
};

struct conn {
	struct conn *prev, *next;	      /* every live connection */
	struct conn *wait_prev, *wait_next;   /* CONN_WAIT_BUFFER queue */
	struct conn *ready_prev, *ready_next; /* used its turn with work left */
	bool ready;
	int fd;
	SSL *ssl; /* NULL for plain TCP */
	enum conn_state state;
	uint32_t events; /* current epoll interest */
	uint64_t deadline_ns;
	uint64_t stripe; /* the READ_STRIPE being answered */
	struct reply_slot *slot;
	uint8_t in[REMOTE_READ_STRIPE_REQUEST_BYTES];
	uint8_t in_len;
	uint8_t status; /* a one-byte reply */
	const uint8_t *out;
	size_t out_len, out_off;
	char addr[64]; /* "1.2.3.4:5" or "[::1]:5", for logs */
};

struct server {
	const struct remote_server_options *opts;
	int epfd;
	int listen_fd;
	bool listening;	     /* listen_fd is in the epoll set */
	bool one_connection; /* remote_server_serve_fd: no listener, ends with it */
	uint64_t accept_resume_ns;
	bool refusing;	     /* at max_connections: logged once per burst */
	bool accept_failing; /* accept errors: logged once per burst */
	uint64_t refused;    /* connections refused in the current burst */
	bool stopping;
	uint64_t stop_deadline_ns;
	uint64_t now_ns; /* this loop turn's clock */
	uint64_t next_sweep_ns;

	struct bdev_channel *ch;
	uint64_t disk_sectors;
	uint32_t stripe_sectors;
	size_t stripe_bytes;
	size_t align; /* header room before a stripe: the device's alignment */

	uint8_t *metadata_reply; /* 00, u64 size, blob: shared by every connection */
	size_t metadata_reply_len;

	struct reply_slot slots[SERVER_REPLY_BUFFERS_MAX];
	uint32_t slot_count;
	struct reply_slot *free_slots;
	struct conn *waiting_head, *waiting_tail;
	/* Connections that stopped at SERVER_STEPS_PER_TURN with input or
	 * output still possible: epoll may not wake them again (the input can
	 * sit in OpenSSL's buffer or c->in), so the loop resumes them itself. */
	struct conn *ready_head, *ready_tail;
	uint32_t ready_count;

	struct conn *conns;
	uint32_t conn_count;
	uint64_t closed_since_trim; /* see give_back_memory() */
	struct conn *dead;	    /* closed this turn, linked through next */
};

/* server_headers.c: the status a READ_STRIPE of `index` gets before the disk
 * is read (OK: read it). */
uint8_t server_stripe_status(const uint8_t *headers, uint64_t count, uint64_t index);

/* server_conn.c */
void conn_accepted(struct server *s, int fd, const struct sockaddr_storage *sa, socklen_t len);
void conn_on_event(struct server *s, struct conn *c, uint32_t events);
/* Gives the connections on the ready list their next turn. */
void conn_run_ready(struct server *s);
/* Its deadline passed: ends the session with a message saying which. */
void conn_expired(struct server *s, struct conn *c);
/* The disk read into `slot` completed with `result` (0 or -errno). */
void conn_disk_done(struct server *s, struct reply_slot *slot, int result);
/* Stop: ends sessions that are not answering a request. */
void conn_stop(struct server *s, struct conn *c);
/* Ends the session now; why NULL: the peer left ("disconnected"). */
void conn_close(struct server *s, struct conn *c, const char *why);
void server_format_address(const struct sockaddr_storage *sa, char *out, size_t len);
void conn_set_deadline(struct server *s, struct conn *c, uint64_t deadline_ns);
void server_free_dead(struct server *s);

/* server_tls.c: the TLS side of a connection. Every call is non-blocking;
 * the result is > 0 for progress, 0 for the peer's orderly end, or
 * SERVER_IO_WANT_READ / SERVER_IO_WANT_WRITE, or SERVER_IO_ERROR with `why`
 * filled. */
#define SERVER_IO_WANT_READ  (-1)
#define SERVER_IO_WANT_WRITE (-2)
#define SERVER_IO_ERROR	     (-3)
int server_tls_attach(const struct remote_tls *tls, int fd, SSL **out, struct error *err);
int server_tls_handshake(SSL *ssl, struct error *why);
int server_tls_read(SSL *ssl, void *buf, size_t len, struct error *why);
int server_tls_write(SSL *ssl, const void *buf, size_t len, struct error *why);
/* The identity the client presented (after the handshake), or "". */
const char *server_tls_identity(SSL *ssl);
/* One non-blocking attempt to send close_notify (after a finished
 * handshake). */
void server_tls_close_notify(SSL *ssl);
/* server_tls_close_notify, then frees the session. */
void server_tls_close(SSL *ssl);

#endif
