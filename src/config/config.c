/* The device config: defaults, the top-level fields, and the load pipeline
 * read -> parse -> unwrap -> validate. */
#include "config_internal.h"

#include "common/common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const io_engine_names[] = {"io_uring", "sync", "null"};

const char *io_engine_name(enum io_engine engine)
{
	if ((size_t)engine < ARRAY_SIZE(io_engine_names))
		return io_engine_names[engine];
	return "unknown";
}

void device_config_init(struct device_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->num_queues = 1;
	cfg->queue_size = 64;
	cfg->seg_size_max = 65536;
	cfg->seg_count_max = 4;
	cfg->poll_queue_timeout_us = 1000;
	snprintf(cfg->device_id, sizeof(cfg->device_id), "ubiblk");
	cfg->io_engine = IO_ENGINE_IO_URING;
	cfg->source.archive.connections = 16;
	kek_init_none(&cfg->source.archive.archive_kek);
}

void device_config_free(struct device_config *cfg)
{
	free(cfg->path);
	free(cfg->image_path);
	stripe_source_free(&cfg->source);
	free(cfg->metadata_path);
	free(cfg->rpc_socket_path);
	free(cfg->metrics_listen);
	free(cfg->socket);
	free(cfg->cpus);
	secret_wipe(cfg->encryption_key, sizeof(cfg->encryption_key));
	device_config_init(cfg);
}

/* Exactly two strings (strict base64), with serde's messages for other shapes. */
static int encryption_key_parse(const struct yaml_map *map, struct bytes keys[2], struct error *err)
{
	yaml_node_t *value;
	int ret = yaml_map_find(map, "encryption_key", &value, err);

	if (ret || !value)
		return ret;
	if (value->type == YAML_SCALAR_NODE && yaml_scalar_type(value) == YAML_SCALAR_NULL)
		return 0;
	if (value->type != YAML_SEQUENCE_NODE)
		return yaml_node_type_error(err, map, "encryption_key", value, true,
					    "a tuple of size 2");

	size_t count = (size_t)(value->data.sequence.items.top - value->data.sequence.items.start);
	if (count < 2)
		return yaml_node_error(err, map, "encryption_key", value,
				       "invalid length %zu, expected a tuple of size 2", count);
	if (count > 2)
		return yaml_node_error(err, map, "encryption_key", value,
				       "invalid length %zu, expected sequence of 2 elements",
				       count);
	for (size_t i = 0; i < 2; i++) {
		yaml_node_t *item = yaml_tree_node(map->tree, value->data.sequence.items.start[i]);
		char field[32];
		struct error b64_err = {0};
		char *text;

		snprintf(field, sizeof(field), "encryption_key[%zu]", i);
		ret = yaml_node_string(map, field, item, false, true, &text, err);
		if (ret)
			return ret;
		ret = base64_decode(text, true, &keys[i], &b64_err);
		secret_string_free(text);
		if (ret)
			return yaml_node_error(err, map, field, item, "%s", b64_err.text);
	}
	return 0;
}

static int device_id_parse(const struct yaml_map *map, struct device_config *cfg, struct error *err)
{
	yaml_node_t *value;
	char *id = NULL;
	int ret = yaml_map_find(map, "device_id", &value, err);

	if (ret || !value)
		return ret;
	ret = yaml_node_string(map, "device_id", value, map->typed_strings, false, &id, err);
	if (ret)
		return ret;
	if (strlen(id) > VIRTIO_BLK_ID_BYTES) {
		free(id);
		return error_set(
		    err, -EINVAL, "device_id exceeds maximum of %d bytes at line %zu column %zu",
		    VIRTIO_BLK_ID_BYTES, value->start_mark.line + 1, value->start_mark.column + 1);
	}
	snprintf(cfg->device_id, sizeof(cfg->device_id), "%s", id);
	free(id);
	return 0;
}

static int scalar_fields_parse(const struct yaml_map *map, struct device_config *cfg,
			       struct error *err)
{
	int engine = 0;
	bool present;
	int ret = yaml_map_string(map, "path", &cfg->path, err);

	if (!ret)
		ret = yaml_map_optional_string(map, "image_path", &cfg->image_path, err);
	if (!ret)
		ret = yaml_map_optional_string(map, "metadata_path", &cfg->metadata_path, err);
	if (!ret)
		ret = yaml_map_optional_string(map, "rpc_socket_path", &cfg->rpc_socket_path, err);
	if (!ret)
		ret = yaml_map_optional_string(map, "metrics_listen", &cfg->metrics_listen, err);
	if (!ret)
		ret = yaml_map_optional_string(map, "socket", &cfg->socket, err);
	if (!ret)
		ret = yaml_map_u32_list(map, "cpus", &cfg->cpus, &cfg->cpus_len, err);
	if (!ret)
		ret = yaml_map_u32(map, "num_queues", &cfg->num_queues, err);
	if (!ret)
		ret = yaml_map_u32(map, "queue_size", &cfg->queue_size, err);
	if (!ret)
		ret = yaml_map_u32(map, "seg_size_max", &cfg->seg_size_max, err);
	if (!ret)
		ret = yaml_map_u32(map, "seg_count_max", &cfg->seg_count_max, err);
	if (!ret)
		ret = yaml_map_u64(map, "poll_queue_timeout_us", &cfg->poll_queue_timeout_us, err);
	if (!ret)
		ret = yaml_map_bool(map, "copy_on_read", &cfg->copy_on_read, err);
	if (!ret)
		ret = yaml_map_bool(map, "track_written", &cfg->track_written, err);
	if (!ret)
		ret = yaml_map_bool(map, "write_through", &cfg->write_through, err);
	if (!ret)
		ret = yaml_map_bool(map, "autofetch", &cfg->autofetch, err);
	if (!ret)
		ret = device_id_parse(map, cfg, err);
	if (!ret)
		ret = yaml_map_variant(map, "io_engine", io_engine_names,
				       ARRAY_SIZE(io_engine_names), &engine, &present, err);
	if (!ret && present)
		cfg->io_engine = (enum io_engine)engine;
	return ret;
}

static int stripe_source_field_parse(const struct yaml_map *map, struct device_config *cfg,
				     struct wrapped_credentials *creds, struct error *err)
{
	struct yaml_map source_map;
	bool present;
	int ret = yaml_map_child(map, "stripe_source", &source_map, &present, err);

	if (ret || !present)
		return ret;
	/* Internally tagged: serde buffers the map and types plain scalars. */
	source_map.typed_strings = true;
	return stripe_source_parse(&source_map, &cfg->source, creds, err);
}

/* After validation (rule #1 ensures there is no stripe_source). */
static int resolve_image_path(struct device_config *cfg)
{
	if (!cfg->image_path)
		return 0;
	cfg->source.kind = STRIPE_SOURCE_RAW;
	cfg->source.from_image_path = true;
	cfg->source.raw_path = strdup(cfg->image_path);
	return cfg->source.raw_path ? 0 : -ENOMEM;
}

static bool has_plaintext_secrets(const struct device_config *cfg, const struct kek *kek)
{
	const struct archive_source_config *archive = &cfg->source.archive;

	if (kek && kek->method != KEK_METHOD_NONE)
		return false;
	return cfg->has_encryption_key || cfg->source.remote.psk_secret.present ||
	       archive->has_credentials || archive->archive_kek.key.present;
}

/* Parse, unwrap and validate; err gets the message without the "config X: "
 * prefix, which the callers add. */
static int config_from_text(const char *yaml, size_t len, const struct kek *kek,
			    struct device_config *cfg, struct error *err)
{
	struct yaml_tree tree;
	struct yaml_map map;
	struct bytes wrapped_keys[2];
	struct wrapped_credentials creds;
	int ret;

	device_config_init(cfg);
	memset(wrapped_keys, 0, sizeof(wrapped_keys));
	memset(&creds, 0, sizeof(creds));
	error_clear(err);
	ret = yaml_tree_load(&tree, yaml, len, err);
	if (ret == 0) {
		ret = yaml_map_root(&tree, false, &map, err);
		if (!ret)
			ret = scalar_fields_parse(&map, cfg, err);
		if (!ret)
			ret = encryption_key_parse(&map, wrapped_keys, err);
		if (!ret)
			ret = stripe_source_field_parse(&map, cfg, &creds, err);
		yaml_tree_free(&tree);
	}
	if (ret) {
		error_default(err, ret);
		error_prefix(err, "Failed to parse device config YAML: ");
		goto out;
	}
	ret = device_config_unwrap(cfg, wrapped_keys, &creds, kek, err);
	if (!ret)
		ret = device_config_validate(cfg, err);
	if (!ret)
		ret = resolve_image_path(cfg);
	if (!ret && has_plaintext_secrets(cfg, kek))
		log_warn("device config holds secrets that are not wrapped with a KEK");
	error_default(err, ret);
out:
	bytes_free(&wrapped_keys[0]);
	bytes_free(&wrapped_keys[1]);
	wrapped_credentials_free(&creds);
	if (ret)
		device_config_free(cfg);
	return ret;
}

int device_config_parse(const char *yaml, size_t len, const struct kek *kek,
			struct device_config *cfg, struct error *err)
{
	int ret = config_from_text(yaml, len, kek, cfg, err);

	if (ret)
		error_prefix(err, "config: ");
	return ret;
}

int device_config_load(const char *path, const struct kek *kek, struct device_config *cfg,
		       struct error *err)
{
	char *text;
	size_t len;
	int ret;

	device_config_init(cfg);
	ret = config_read_file(path, &text, &len);
	if (ret)
		return error_set(err, ret, "Failed to read device config file %s: %s", path,
				 strerror(-ret));
	ret = config_from_text(text, len, kek, cfg, err);
	secret_wipe(text, len);
	free(text);
	if (ret)
		error_prefix(err, "config %s: ", path);
	return ret;
}
