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

/* Reads a standalone config file and hands its text to `parse`; the text
 * may hold secrets, so it is wiped. `what` names the file in the message a
 * read failure gives ("Failed to read <what> <path>: ..."). */
static int load_config_file(const char *path, const char *what, const struct kek *kek,
			    int (*parse)(const char *, size_t, const struct kek *, void *,
					 struct error *),
			    void *out, struct error *err)
{
	char *text;
	size_t len;
	int ret = config_read_file(path, &text, &len);
	if (ret)
		return error_set(err, ret, "Failed to read %s %s: %s", what, path, strerror(-ret));
	ret = parse(text, len, kek, out, err);
	secret_wipe(text, len);
	free(text);
	if (ret)
		error_prefix(err, "config %s: ", path);
	return ret;
}

static int parse_remote(const char *yaml, size_t len, const struct kek *kek, void *out,
			struct error *err)
{
	return remote_from_text(yaml, len, kek, out, err);
}

static int parse_archive(const char *yaml, size_t len, const struct kek *kek, void *out,
			 struct error *err)
{
	return archive_from_text(yaml, len, kek, out, err);
}

int remote_config_load(const char *path, const struct kek *kek, struct remote_source_config *out,
		       struct error *err)
{
	memset(out, 0, sizeof(*out));
	return load_config_file(path, "remote config file", kek, parse_remote, out, err);
}

int archive_config_load(const char *path, const struct kek *kek, struct archive_source_config *out,
			struct error *err)
{
	memset(out, 0, sizeof(*out));
	return load_config_file(path, "archive target config", kek, parse_archive, out, err);
}

void remote_config_free(struct remote_source_config *remote)
{
	remote_source_free(remote);
}

void archive_config_free(struct archive_source_config *archive)
{
	archive_source_free(archive);
}
