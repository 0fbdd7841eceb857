/* Pieces of the config layer shared between its files (internal to
 * src/config). The load pipeline is: read file -> YAML tree -> structs with
 * secrets still wrapped -> unwrap with the KEK -> validate. */
#ifndef UBIBLK_CONFIG_INTERNAL_H
#define UBIBLK_CONFIG_INTERNAL_H

#include "config/config.h"
#include "yaml_fields.h"

/* Copies config text for a message: control characters escaped (\n, \xNN)
 * so a message stays one line, cut with "..." after `max` input bytes. */
void config_quote(const char *text, size_t len, size_t max, char *buf, size_t size);

/* Config and KEK files are small; anything bigger is refused (-EFBIG). */
#define CONFIG_FILE_MAX (1u << 20)

/* Reads a whole file (regular, FIFO, /dev/stdin) into a NUL-terminated
 * buffer. Returns 0 or a negative errno. */
int config_read_file(const char *path, char **text, size_t *len);
/* The same from an open descriptor (left open), for callers that fstat it. */
int config_read_fd(int fd, char **text, size_t *len);

/* A KEK-shaped map (method, key, init_vector, auth_data; lenient base64). */
int kek_from_map(const struct yaml_map *map, struct kek *kek, struct error *err);

/* S3 credentials as parsed: base64-decoded but still wrapped by the KEK. */
struct wrapped_credentials {
	struct bytes access_key_id;
	struct bytes secret_access_key;
	struct bytes session_token; /* optional */
};

void wrapped_credentials_free(struct wrapped_credentials *creds);

/* The fields of a remote source (also the standalone listen config). */
int remote_source_parse(const struct yaml_map *map, struct remote_source_config *remote,
			struct error *err);
/* The fields of an archive source after its `type` tag. */
int archive_source_parse(const struct yaml_map *map, struct archive_source_config *archive,
			 struct wrapped_credentials *creds, struct error *err);
/* The `stripe_source` map (tag `source`). */
int stripe_source_parse(const struct yaml_map *map, struct stripe_source_config *source,
			struct wrapped_credentials *creds, struct error *err);
void remote_source_free(struct remote_source_config *remote);
void archive_source_free(struct archive_source_config *archive);
void stripe_source_free(struct stripe_source_config *source);

/* Unwrapping of every secret in a source, in the order config_secrets.c
 * describes. prefix names the map in messages ("stripe_source." or ""). */
int remote_source_unwrap(struct remote_source_config *remote, const struct kek *kek,
			 const char *prefix, struct error *err);
int archive_source_unwrap(struct archive_source_config *archive, struct wrapped_credentials *creds,
			  const struct kek *kek, const char *prefix, struct error *err);

/* Unwraps encryption_key (into cfg->encryption_key) and the source's secrets. */
int device_config_unwrap(struct device_config *cfg, struct bytes wrapped_keys[2],
			 struct wrapped_credentials *creds, const struct kek *kek,
			 struct error *err);

/* All load-time checks of a parsed, unwrapped device config. */
int device_config_validate(const struct device_config *cfg, struct error *err);
int remote_source_validate(const struct remote_source_config *remote, const char *prefix,
			   struct error *err);
int archive_source_validate(const struct archive_source_config *archive, const char *prefix,
			    struct error *err);

#endif
