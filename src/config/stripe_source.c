/* The `stripe_source` variants raw / remote / archive, a map tagged by its
 * `source` key (archive has a second tag, `type`). Secrets stay KEK-wrapped
 * here; see config_secrets.c. */
#include "config_internal.h"

#include "common/common.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define S3_DEFAULT_CONNECTIONS	   16
#define S3_DEFAULT_MAX_ATTEMPTS	   3
#define REMOTE_DEFAULT_CONNECTIONS 16

static const char *const source_kinds[] = {"raw", "remote", "archive"};
static const char *const archive_stores[] = {"filesystem", "s3"};
/* In the order of enum s3_addressing. */
static const char *const s3_addressings[] = {"auto", "path", "virtual"};

static int required_string(const struct yaml_map *map, const char *key, char **out,
			   struct error *err)
{
	int ret = yaml_map_string(map, key, out, err);

	if (ret == 0 && !*out)
		ret = yaml_map_missing(map, key, err);
	return ret;
}

void wrapped_credentials_free(struct wrapped_credentials *creds)
{
	bytes_free(&creds->access_key_id);
	bytes_free(&creds->secret_access_key);
	bytes_free(&creds->session_token);
}

int remote_source_parse(const struct yaml_map *map, struct remote_source_config *remote,
			struct error *err)
{
	int ret = required_string(map, "address", &remote->address, err);

	if (!ret)
		ret = yaml_map_optional_string(map, "psk_identity", &remote->psk_identity, err);
	if (!ret)
		ret = yaml_map_base64(map, "psk_secret", true, &remote->psk_secret, err);
	remote->connections = REMOTE_DEFAULT_CONNECTIONS;
	if (!ret)
		ret = yaml_map_u32(map, "connections", &remote->connections, err);
	return ret;
}

static int credentials_parse(const struct yaml_map *map, struct archive_source_config *archive,
			     struct wrapped_credentials *creds, struct error *err)
{
	struct yaml_map creds_map;
	bool present;
	int ret = yaml_map_child(map, "credentials", &creds_map, &present, err);

	if (ret || !present)
		return ret;
	ret = yaml_map_base64(&creds_map, "access_key_id", true, &creds->access_key_id, err);
	if (!ret && !creds->access_key_id.present)
		ret = yaml_map_missing(&creds_map, "access_key_id", err);
	if (!ret)
		ret = yaml_map_base64(&creds_map, "secret_access_key", true,
				      &creds->secret_access_key, err);
	if (!ret && !creds->secret_access_key.present)
		ret = yaml_map_missing(&creds_map, "secret_access_key", err);
	if (!ret)
		ret =
		    yaml_map_base64(&creds_map, "session_token", true, &creds->session_token, err);
	if (!ret)
		archive->has_credentials = true;
	return ret;
}

static int s3_fields_parse(const struct yaml_map *map, struct archive_source_config *archive,
			   struct wrapped_credentials *creds, struct error *err)
{
	int addressing = S3_ADDRESSING_AUTO;
	bool present;
	int ret = required_string(map, "bucket", &archive->bucket, err);

	if (!ret)
		ret = yaml_map_optional_string(map, "prefix", &archive->prefix, err);
	if (!ret)
		ret = yaml_map_optional_string(map, "endpoint", &archive->endpoint, err);
	if (!ret)
		ret = yaml_map_optional_string(map, "region", &archive->region, err);
	if (!ret)
		ret = yaml_map_optional_string(map, "profile", &archive->profile, err);
	if (!ret)
		ret = credentials_parse(map, archive, creds, err);
	if (!ret)
		ret = yaml_map_u32(map, "connections", &archive->connections, err);
	if (!ret)
		ret = yaml_map_variant(map, "addressing", s3_addressings,
				       ARRAY_SIZE(s3_addressings), &addressing, &present, err);
	if (!ret)
		archive->addressing = (enum s3_addressing)addressing;
	if (!ret)
		ret = yaml_map_u32(map, "max_attempts", &archive->max_attempts, err);
	return ret;
}

int archive_source_parse(const struct yaml_map *map, struct archive_source_config *archive,
			 struct wrapped_credentials *creds, struct error *err)
{
	int store = 0;
	bool present;
	struct yaml_map kek_map;
	int ret;

	/* The filesystem store always behaves as 16 connections. */
	archive->connections = S3_DEFAULT_CONNECTIONS;
	archive->max_attempts = S3_DEFAULT_MAX_ATTEMPTS;
	kek_init_none(&archive->archive_kek);
	ret = yaml_map_variant(map, "type", archive_stores, ARRAY_SIZE(archive_stores), &store,
			       &present, err);
	if (ret)
		return ret;
	if (!present)
		return yaml_map_missing(map, "type", err);
	archive->store = store == 1 ? ARCHIVE_STORE_S3 : ARCHIVE_STORE_FILESYSTEM;
	if (archive->store == ARCHIVE_STORE_FILESYSTEM)
		ret = required_string(map, "path", &archive->path, err);
	else
		ret = s3_fields_parse(map, archive, creds, err);
	if (ret)
		return ret;

	ret = yaml_map_child(map, "archive_kek", &kek_map, &present, err);
	if (!ret && present)
		ret = kek_from_map(&kek_map, &archive->archive_kek, err);
	return ret;
}

int stripe_source_parse(const struct yaml_map *map, struct stripe_source_config *source,
			struct wrapped_credentials *creds, struct error *err)
{
	int kind = 0;
	bool present;
	int ret = yaml_map_variant(map, "source", source_kinds, ARRAY_SIZE(source_kinds), &kind,
				   &present, err);

	if (ret)
		return ret;
	if (!present)
		return yaml_map_missing(map, "source", err);
	switch (kind) {
	case 0:
		source->kind = STRIPE_SOURCE_RAW;
		return required_string(map, "path", &source->raw_path, err);
	case 1:
		source->kind = STRIPE_SOURCE_REMOTE;
		return remote_source_parse(map, &source->remote, err);
	default:
		source->kind = STRIPE_SOURCE_ARCHIVE;
		return archive_source_parse(map, &source->archive, creds, err);
	}
}

void remote_source_free(struct remote_source_config *remote)
{
	free(remote->address);
	free(remote->psk_identity);
	bytes_free(&remote->psk_secret);
	memset(remote, 0, sizeof(*remote));
}

void archive_source_free(struct archive_source_config *archive)
{
	free(archive->path);
	free(archive->bucket);
	free(archive->prefix);
	free(archive->endpoint);
	free(archive->region);
	free(archive->profile);
	secret_string_free(archive->access_key_id);
	secret_string_free(archive->secret_access_key);
	secret_string_free(archive->session_token);
	kek_free(&archive->archive_kek);
	memset(archive, 0, sizeof(*archive));
}

void stripe_source_free(struct stripe_source_config *source)
{
	free(source->raw_path);
	remote_source_free(&source->remote);
	archive_source_free(&source->archive);
	memset(source, 0, sizeof(*source));
}
