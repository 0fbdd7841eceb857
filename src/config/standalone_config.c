/* The standalone configs of the remote and archive tools: the same fields as
 * the matching stripe source, at the top level of their own file, with their
 * own message prefixes. */
#include "config_internal.h"

#include "common/common.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* The listen/server config is not internally tagged, so its strings are
 * lenient; the archive target config is tagged by `type`, so typed. */
static int remote_from_text(const char *yaml, size_t len, const struct kek *kek,
			    struct remote_source_config *out, struct error *err)
{
	struct yaml_tree tree;
	struct yaml_map map;
	int ret;

	memset(out, 0, sizeof(*out));
	error_clear(err);
	ret = yaml_tree_load(&tree, yaml, len, err);
	if (ret == 0) {
		ret = yaml_map_root(&tree, false, &map, err);
		if (!ret)
			ret = remote_source_parse(&map, out, err);
		yaml_tree_free(&tree);
	}
	if (ret) {
		error_default(err, ret);
		error_prefix(err, "Failed to parse remote config YAML: ");
	}
	if (!ret)
		ret = remote_source_unwrap(out, kek, "", err);
	if (!ret)
		ret = remote_source_validate(out, "", err);
	error_default(err, ret);
	if (ret)
		remote_source_free(out);
	return ret;
}

static int archive_from_text(const char *yaml, size_t len, const struct kek *kek,
			     struct archive_source_config *out, struct error *err)
{
	struct yaml_tree tree;
	struct yaml_map map;
	struct wrapped_credentials creds;
	int ret;

	memset(out, 0, sizeof(*out));
	memset(&creds, 0, sizeof(creds));
	error_clear(err);
	ret = yaml_tree_load(&tree, yaml, len, err);
	if (ret == 0) {
		ret = yaml_map_root(&tree, true, &map, err);
		if (!ret)
			ret = archive_source_parse(&map, out, &creds, err);
		yaml_tree_free(&tree);
	}
	if (ret) {
		error_default(err, ret);
		error_prefix(err, "Failed to parse archive target config YAML: ");
	}
	if (!ret)
		ret = archive_source_unwrap(out, &creds, kek, "", err);
	if (!ret)
		ret = archive_source_validate(out, "", err);
	error_default(err, ret);
	wrapped_credentials_free(&creds);
	if (ret)
		archive_source_free(out);
	return ret;
}

int remote_config_parse(const char *yaml, size_t len, const struct kek *kek,
			struct remote_source_config *out, struct error *err)
{
	return remote_from_text(yaml, len, kek, out, err);
}

int archive_config_parse(const char *yaml, size_t len, const struct kek *kek,
			 struct archive_source_config *out, struct error *err)
{
	return archive_from_text(yaml, len, kek, out, err);
}

int remote_config_load(const char *path, const struct kek *kek, struct remote_source_config *out,
		       struct error *err)
{
	char *text;
	size_t len;
	int ret;

	memset(out, 0, sizeof(*out));
	ret = config_read_file(path, &text, &len);
	if (ret)
		return error_set(err, ret, "Failed to read remote config file %s: %s", path,
				 strerror(-ret));
	ret = remote_from_text(text, len, kek, out, err);
	secret_wipe(text, len);
	free(text);
	if (ret)
		error_prefix(err, "config %s: ", path);
	return ret;
}

int archive_config_load(const char *path, const struct kek *kek, struct archive_source_config *out,
			struct error *err)
{
	char *text;
	size_t len;
	int ret;

	memset(out, 0, sizeof(*out));
	ret = config_read_file(path, &text, &len);
	if (ret)
		return error_set(err, ret, "Failed to read archive target config %s: %s", path,
				 strerror(-ret));
	ret = archive_from_text(text, len, kek, out, err);
	secret_wipe(text, len);
	free(text);
	if (ret)
		error_prefix(err, "config %s: ", path);
	return ret;
}

void remote_config_free(struct remote_source_config *remote)
{
	remote_source_free(remote);
}

void archive_config_free(struct archive_source_config *archive)
{
	archive_source_free(archive);
}
