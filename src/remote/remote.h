/* Remote stripes: a disk's stripes served over TCP, optionally inside TLS 1.2
 * with a pre-shared key, and fetched from there lazily.
 *
 * Parts, bottom up (arrows point down only):
 *   wire    the protocol's bytes: opcodes, status bytes, the metadata blob;
 *           pure functions on buffers (no I/O), one table per message
 *   tls     OpenSSL contexts for both roles: TLS 1.2 only, exactly
 *           PSK-AES256-GCM-SHA384, no tickets, no certificates
 *   client  one blocking connection with deadlines (connect, handshake,
 *           every read and write), used by one thread at a time
 *   source  the `stripe_source` the fetch worker drives: a pool of client
 *           connections on their own threads; the worker never blocks
 *   server  the event loop of remote-stripe-server: every connection a
 *           non-blocking state machine, disk reads through a bdev channel
 *
 * Protocol (little-endian): a request is one opcode byte, READ_STRIPE adds a
 * u64 stripe index. METADATA is answered 00, u64 size, then the metadata
 * blob (512-byte header sector + one header byte per stripe). READ_STRIPE is
 * answered 00, u64 stripe size (512 << shift), then that many bytes; or one
 * status byte alone. An unknown opcode is answered FE and the next byte is a
 * new opcode. Peers close the connection to end a session (after TLS
 * close_notify when TLS is on).
 *
 * Errors follow the project's convention: 0 or a negative errno, and a
 * `struct error *err` (last, NULL allowed) that names what failed. Secrets
 * (PSK) are copied into memory this layer owns, never logged, and wiped when
 * freed. */
#ifndef UBIBLK_REMOTE_H
#define UBIBLK_REMOTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "bdev/bdev.h"
#include "common/common.h"
#include "config/config.h"
#include "meta/meta.h"

struct stripe_source;

/* ---- wire ---- */

enum remote_opcode {
	REMOTE_OP_METADATA = 0x00,
	REMOTE_OP_READ_STRIPE = 0x01,
};

enum remote_status {
	REMOTE_STATUS_OK = 0x00,
	REMOTE_STATUS_INVALID_STRIPE = 0x01, /* index >= header count */
	REMOTE_STATUS_NO_DATA = 0x02,	     /* the server has no data for it */
	REMOTE_STATUS_NOT_FETCHED = 0x03,    /* it has a source, not fetched yet */
	REMOTE_STATUS_INVALID_COMMAND = 0xFE,
	REMOTE_STATUS_SERVER_ERROR = 0xFF, /* reading the stripe failed */
};

#define REMOTE_READ_STRIPE_REQUEST_BYTES 9u /* opcode + u64 index */
#define REMOTE_REPLY_HEADER_BYTES	 9u /* status + u64 size */
/* A metadata blob is the header sector plus at least nothing, at most
 * 64 MiB: a larger size is a hostile or broken server. */
#define REMOTE_METADATA_MIN_BYTES 512u
#define REMOTE_METADATA_MAX_BYTES (64u << 20)

/* "OK", "INVALID_STRIPE", ..., "UNKNOWN" for any other byte. */
const char *remote_status_name(uint8_t status);

/* What a stripe server says about its disk. `headers` has one byte per
 * stripe (META_HEADER_* bits); a server may pad it with zero headers. */
struct remote_metadata {
	uint32_t shift; /* stripe = 512 << shift bytes */
	uint64_t header_count;
	uint8_t *headers;
	/* Stripes up to and including the last one with WRITTEN or
	 * HAS_SOURCE: the size of the disk the server really serves. */
	uint64_t source_stripes;
};

/* Parses a METADATA blob (magic, version 1.0, shift range, size bounds). */
int remote_metadata_parse(const uint8_t *blob, size_t len, struct remote_metadata *out,
			  struct error *err);
/* Builds the blob a server sends for `header_count` headers; *blob is
 * malloc'ed, the caller frees it. */
int remote_metadata_encode(uint32_t shift, const uint8_t *headers, uint64_t header_count,
			   uint8_t **blob, size_t *len);
void remote_metadata_free(struct remote_metadata *m);
/* Whether the server would serve stripe i: WRITTEN, or HAS_SOURCE. */
bool remote_metadata_has_stripe(const struct remote_metadata *m, uint64_t stripe);

/* ---- TLS-PSK ---- */

#define REMOTE_PSK_IDENTITY_MAX 256u /* OpenSSL's limit */
#define REMOTE_PSK_SECRET_MIN	16u
#define REMOTE_PSK_SECRET_MAX	512u
#define REMOTE_TLS_CIPHER	"PSK-AES256-GCM-SHA384"

/* Checks the identity and secret rules: "PSK identity must not be empty",
 * "PSK secret must be at least 16 bytes long", and the maximum lengths. */
int remote_psk_check(const char *identity, const uint8_t *secret, size_t secret_len,
		     struct error *err);

struct remote_tls;

enum remote_tls_role { REMOTE_TLS_CLIENT, REMOTE_TLS_SERVER };

/* A TLS context for one role holding its own copy of the PSK (checked with
 * remote_psk_check). The server accepts only a client presenting exactly
 * this identity (lengths compared first, then bytes in constant time); any
 * other identity, an empty one included, fails that handshake only. Shared
 * by every connection of the process; free it after the last one. */
int remote_tls_new(enum remote_tls_role role, const char *identity, const uint8_t *secret,
		   size_t secret_len, struct remote_tls **out, struct error *err);
void remote_tls_free(struct remote_tls *tls);

/* ---- addresses and timeouts ---- */

/* A literal socket address: "IPv4:port" or "[IPv6]:port"; hostnames are
 * refused ("invalid server address <text>: <reason>"). */
struct remote_address {
	struct sockaddr_storage addr;
	socklen_t len;
	char text[80]; /* as given, for messages */
};

int remote_address_parse(const char *text, struct remote_address *out, struct error *err);

struct remote_timeouts {
	uint32_t connect_ms; /* TCP connect plus the TLS handshake */
	/* client: one exchange (a request and its whole reply), per started
	 * MiB of payload; server: each read or write that makes no progress */
	uint32_t io_ms;
	uint32_t idle_ms; /* server: a connection with no request (0: io_ms) */
};

#define REMOTE_CONNECT_TIMEOUT_MS 5000u
#define REMOTE_IO_TIMEOUT_MS	  20000u

/* ---- client ---- */

struct remote_client;

/* Connects (TLS handshake when `tls` is not NULL) and fetches the metadata,
 * so a returned client is ready for stripes. `timeouts` NULL: the defaults.
 * The client is used by one thread at a time. */
int remote_client_connect(const struct remote_address *address, const struct remote_tls *tls,
			  const struct remote_timeouts *timeouts, struct remote_client **out,
			  struct error *err);
const struct remote_metadata *remote_client_metadata(const struct remote_client *c);
/* Reads stripe `index` into buf (exactly 512 << shift bytes). 0 on OK; a
 * negative errno with *status set to the server's status byte when it
 * answered one (then the connection is still usable), or to OK with the
 * connection broken (I/O error, timeout, wrong size: close it). */
int remote_client_read_stripe(struct remote_client *c, uint64_t index, void *buf, uint8_t *status,
			      struct error *err);
/* True once the connection failed (I/O error, timeout, a reply that does
 * not fit the request): every later read fails, close it and dial again. */
bool remote_client_broken(const struct remote_client *c);
/* Sends close_notify when TLS is on, then closes. NULL is fine. */
void remote_client_close(struct remote_client *c);

/* ---- the stripe source ---- */

/* The remote stripe source of a backend or init-metadata: connects
 * `connections` clients (1..64) before returning, checks that the server's
 * stripe size is `stripe_sectors`, and then serves the fetch worker's
 * requests on its own threads, one stripe in flight per connection. A
 * connection that fails is re-dialled with backoff (500 ms doubling to 30 s,
 * 10 attempts); a server whose stripe size or count changed is refused. The
 * source's size is the server's source_stripes. */
int stripe_source_remote(const struct remote_source_config *cfg, uint32_t stripe_sectors,
			 const struct remote_timeouts *timeouts, struct stripe_source **out,
			 struct error *err);

/* The server says how many stripes it serves, not where its disk ends
 * inside the last one, so the source's size is whole stripes. A local disk
 * of `disk_sectors` whose last stripe is cut short holds exactly as many
 * stripes: then the source ends where the disk ends, and the disk is not
 * refused as too small for its own image. A source with more stripes than
 * the disk keeps its size (and is refused). `src` must be a remote source. */
void stripe_source_remote_fit(struct stripe_source *src, uint64_t disk_sectors);

/* ---- the server ---- */

struct remote_server_options {
	const char *address;	      /* literal or host name, ":port" */
	const struct remote_tls *tls; /* NULL: plain TCP (the caller warns) */
	struct bdev *device;	      /* plaintext view of the disk (crypt layer when encrypted) */
	uint32_t shift;
	const uint8_t *headers; /* what METADATA sends and READ_STRIPE checks */
	uint64_t header_count;
	uint32_t max_connections;
	struct remote_timeouts timeouts;
	/* NULL, or called once on the serving thread as soon as the socket
	 * listens, with its address ("127.0.0.1:4555", the real port when the
	 * address asked for port 0). */
	void (*ready)(void *arg, const char *address);
	void *ready_arg;
};

/* Serves until remote_server_request_stop() (safe from a signal handler),
 * then stops accepting, finishes the replies in flight and returns 0. Any
 * protocol or I/O error ends that one connection. */
int remote_server_run(const struct remote_server_options *opts, struct error *err);
/* Async-signal-safe. One server runs per process at a time; a stop asked
 * before remote_server_run starts makes it return 0 right after binding. */
void remote_server_request_stop(void);

/* The headers a server serves for a disk of `disk_sectors` sectors. With
 * the disk's metadata `m`: exactly the disk's stripe count (a padded file is
 * cut; a file with fewer headers than stripes is refused), and every stripe
 * without a source marked WRITTEN, because the disk holds its data whether
 * or not the back end recorded the write. Without metadata (m NULL): shift
 * 11, every stripe FETCHED|WRITTEN|HAS_SOURCE. *headers is malloc'ed. A
 * stripe with a source that is not fetched stays so: it is answered
 * NOT_FETCHED. */
int remote_server_headers(const struct metadata *m, uint64_t disk_sectors, uint32_t *shift,
			  uint8_t **headers, uint64_t *count, struct error *err);

#endif
