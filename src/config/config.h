/* Device configuration (ubiblk's YAML format) and the key-encryption-key
 * (KEK) file. Every field of the format is parsed and validated at load time;
 * see docs/config.md. Errors are reported as one line naming the field. */
#ifndef UBIBLK_CONFIG_H
#define UBIBLK_CONFIG_H

#include "common/common.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <linux/virtio_blk.h> /* VIRTIO_BLK_ID_BYTES: the longest device_id */

/* Byte string owned by its struct (secrets are wiped when freed). */
struct bytes {
	uint8_t *data;
	size_t len;
	bool present;
};

enum kek_method { KEK_METHOD_NONE = 0, KEK_METHOD_AES256_GCM };

struct kek {
	enum kek_method method;
	struct bytes key;	  /* 32 bytes when used */
	struct bytes init_vector; /* 12 bytes when used */
	struct bytes auth_data;	  /* any length */
};

enum io_engine { IO_ENGINE_IO_URING = 0, IO_ENGINE_SYNC, IO_ENGINE_NULL };

enum stripe_source_kind {
	STRIPE_SOURCE_NONE = 0,
	STRIPE_SOURCE_RAW, /* stripe_source: {source: raw} or legacy image_path */
	STRIPE_SOURCE_REMOTE,
	STRIPE_SOURCE_ARCHIVE,
};

enum archive_store { ARCHIVE_STORE_FILESYSTEM = 0, ARCHIVE_STORE_S3 };

/* How S3 URLs name the bucket: auto picks virtual-hosted
 * (https://<bucket>.<host>/<key>) unless the endpoint host is an IP literal
 * or the bucket is not a DNS label, which get path style
 * (https://<host>/<bucket>/<key>). */
enum s3_addressing { S3_ADDRESSING_AUTO = 0, S3_ADDRESSING_PATH, S3_ADDRESSING_VIRTUAL };

struct remote_source_config {
	char *address;
	char *psk_identity;	 /* NULL when absent */
	struct bytes psk_secret; /* after KEK unwrapping */
	uint32_t connections;	 /* 1..64, default 16: stripes fetched at once */
};

struct archive_source_config {
	enum archive_store store;
	char *path;	/* filesystem */
	char *bucket;	/* s3 */
	char *prefix;	/* s3, optional */
	char *endpoint; /* s3, optional */
	char *region;	/* s3, optional */
	char *profile;	/* s3, optional */
	bool has_credentials;
	char *access_key_id;	 /* s3 credentials, after KEK unwrapping (UTF-8) */
	char *secret_access_key; /* s3 credentials, after KEK unwrapping (UTF-8) */
	char *session_token;	 /* s3 credentials, optional (NULL), unwrapped like the keys */
	enum s3_addressing addressing; /* s3 `addressing`, default auto */
	uint32_t max_attempts;	       /* s3, 1..10, default 3: tries per request */
	uint32_t connections;	       /* default 16 */
	struct kek archive_kek;	       /* default method none */
};

struct stripe_source_config {
	enum stripe_source_kind kind;
	char *raw_path;	      /* STRIPE_SOURCE_RAW: stripe_source.path or image_path */
	bool from_image_path; /* the legacy image_path form was used */
	struct remote_source_config remote;
	struct archive_source_config archive;
};

struct device_config {
	char *path; /* required */
	/* Legacy `image_path` as written (NULL when absent). When set, `source` is
	 * resolved to the equivalent raw source after validation. */
	char *image_path;
	struct stripe_source_config source;
	char *metadata_path;   /* NULL when absent */
	char *rpc_socket_path; /* NULL when absent */
	char *metrics_listen;  /* NULL when absent: no HTTP metrics endpoint */
	char *socket;	       /* NULL when absent */
	uint32_t *cpus;	       /* NULL when absent */
	size_t cpus_len;
	uint32_t num_queues;		/* 1..64, default 1 */
	uint32_t queue_size;		/* power of two 1..32768, default 64 */
	uint32_t seg_size_max;		/* 512..1 MiB, default 65536 */
	uint32_t seg_count_max;		/* 1..256, default 4 */
	uint64_t poll_queue_timeout_us; /* <= 10 s, default 1000 */
	bool copy_on_read;
	bool track_written;
	bool write_through;
	bool autofetch;
	bool has_encryption_key;
	uint8_t encryption_key[2][32]; /* key1 (data), key2 (tweak), after KEK unwrapping */
	char device_id[VIRTIO_BLK_ID_BYTES + 1]; /* default "ubiblk" */
	enum io_engine io_engine;		 /* default io_uring */
};

/* Frees and wipes a byte string (it may hold a secret); leaves it absent. */
void bytes_free(struct bytes *b);

/* Defaults for every field; path etc. NULL. */
void device_config_init(struct device_config *cfg);
/* Read, parse, unwrap secrets with `kek` (NULL = method none) and validate.
 * On failure returns a negative errno and writes one line into err. */
int device_config_load(const char *path, const struct kek *kek, struct device_config *cfg,
		       struct error *err);
/* What every tool does with -k/-u, before it reads any config: load the KEK
 * file (method none when kek_path is NULL) and unlink it right after
 * reading when unlink_kek, so a later mistake never leaves it behind. On
 * success the caller frees *kek (kek_free) once its configs are loaded. */
int kek_load_for_tool(const char *kek_path, bool unlink_kek, struct kek *kek, struct error *err);
/* What every tool does with -f/-k/-u: kek_load_for_tool, then the config. */
int device_config_load_with_kek(const char *config_path, const char *kek_path, bool unlink_kek,
				struct device_config *cfg, struct error *err);
/* Same, from text already in memory (used by tests). */
int device_config_parse(const char *yaml, size_t len, const struct kek *kek,
			struct device_config *cfg, struct error *err);
void device_config_free(struct device_config *cfg);

/* KEK file: YAML map with method, key, init_vector, auth_data. */
void kek_init_none(struct kek *kek);
int kek_load(const char *path, struct kek *kek, struct error *err);
int kek_parse(const char *yaml, size_t len, struct kek *kek, struct error *err);
void kek_free(struct kek *kek);

/* Secrets under a KEK. method none returns a copy; aes256-gcm decrypts
 * ct||tag with the KEK's fixed nonce, or, when the KEK has no init_vector or
 * that fails, nonce||ct||tag (a fresh nonce per secret). err gets the
 * format's text, e.g. "Key is required". out must be freed with
 * bytes_free(). */
int kek_unwrap(const struct kek *kek, const uint8_t *in, size_t len, struct bytes *out,
	       struct error *err);
/* The inverse in the fixed-nonce form (ct||tag under the KEK's init_vector),
 * the form the archive format stores per-archive keys in; method none
 * returns a copy. */
int kek_wrap(const struct kek *kek, const uint8_t *in, size_t len, struct bytes *out,
	     struct error *err);

/* Standalone configs of the remote and archive tools. */
/* Listen/server config: top-level address, psk_identity, psk_secret. */
int remote_config_load(const char *path, const struct kek *kek, struct remote_source_config *out,
		       struct error *err);
int remote_config_parse(const char *yaml, size_t len, const struct kek *kek,
			struct remote_source_config *out, struct error *err);
void remote_config_free(struct remote_source_config *remote);
/* Archive target config: top-level `type` plus the archive fields. */
int archive_config_load(const char *path, const struct kek *kek, struct archive_source_config *out,
			struct error *err);
int archive_config_parse(const char *yaml, size_t len, const struct kek *kek,
			 struct archive_source_config *out, struct error *err);
void archive_config_free(struct archive_source_config *archive);

/* False when an S3 prefix has a `..` segment, is `.` or starts with `./`. */
bool s3_prefix_is_safe(const char *prefix);

/* Base64 (RFC 4648 standard alphabet). strict: padding required and canonical.
 * Returns 0 or -EINVAL with a message like "Invalid symbol 37, offset 0." */
int base64_decode(const char *text, bool strict, struct bytes *out, struct error *err);
/* Standard padded base64 of data into a new NUL-terminated string (free()). */
int base64_encode(const uint8_t *data, size_t len, char **out);

const char *io_engine_name(enum io_engine engine);

struct sockaddr_storage;
/* metrics_listen ("127.0.0.1:9101", "[::1]:9101"; port 0: any free one) as
 * a socket address. Numeric loopback addresses only: anything else is
 * -EINVAL with a line saying why (docs/config.md). */
int metrics_listen_parse(const char *listen, struct sockaddr_storage *addr, uint32_t *addrlen,
			 struct error *err);

#endif
