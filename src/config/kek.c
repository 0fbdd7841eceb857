/* The key-encryption-key file: a YAML map of method, key, init_vector and
 * auth_data, read to EOF so a FIFO or /dev/stdin works. Values are checked
 * lazily, when a secret is unwrapped (kek_cipher.c), so a KEK without a key
 * still serves a config without secrets. */
#include "config_internal.h"

#include "common/common.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const kek_methods[] = {"none", "aes256-gcm"};

void kek_init_none(struct kek *kek)
{
	memset(kek, 0, sizeof(*kek));
	kek->method = KEK_METHOD_NONE;
}

void kek_free(struct kek *kek)
{
	bytes_free(&kek->key);
	bytes_free(&kek->init_vector);
	bytes_free(&kek->auth_data);
	kek_init_none(kek);
}

int kek_from_map(const struct yaml_map *map, struct kek *kek, struct error *err)
{
	int method = 0;
	bool present = false;
	int ret;

	kek_init_none(kek);
	ret = yaml_map_variant(map, "method", kek_methods, ARRAY_SIZE(kek_methods), &method,
			       &present, err);
	if (ret)
		return ret;
	if (!present)
		return yaml_map_missing(map, "method", err);
	kek->method = method == 1 ? KEK_METHOD_AES256_GCM : KEK_METHOD_NONE;

	ret = yaml_map_base64(map, "key", false, &kek->key, err);
	if (!ret)
		ret = yaml_map_base64(map, "init_vector", false, &kek->init_vector, err);
	if (!ret)
		ret = yaml_map_base64(map, "auth_data", false, &kek->auth_data, err);
	if (ret)
		kek_free(kek);
	return ret;
}

static int kek_parse_text(const char *yaml, size_t len, struct kek *kek, struct error *err)
{
	struct yaml_tree tree;
	struct yaml_map map;
	int ret;

	kek_init_none(kek);
	error_clear(err);
	ret = yaml_tree_load(&tree, yaml, len, err);
	if (ret == 0) {
		ret = yaml_map_root(&tree, false, &map, err);
		if (!ret)
			ret = kek_from_map(&map, kek, err);
		yaml_tree_free(&tree);
	}
	error_default(err, ret);
	return ret;
}

int kek_parse(const char *yaml, size_t len, struct kek *kek, struct error *err)
{
	int ret = kek_parse_text(yaml, len, kek, err);

	if (ret)
		error_prefix(err, "Error parsing KEK: ");
	return ret;
}

/* A KEK in a regular file that others may read is no secret, so it is
 * refused (see docs/differences.md). The descriptor already opened is
 * checked, so the file cannot be swapped between check and read. FIFOs,
 * pipes on /dev/stdin and other non-regular files carry the key only once
 * and are accepted. */
static int kek_check_mode(int fd, const char *path, struct error *err)
{
	struct stat st;

	if (fstat(fd, &st) < 0) {
		int ret = -errno;
		return error_set(err, ret, "Failed to read KEK file %s: %s", path, strerror(-ret));
	}
	if (!S_ISREG(st.st_mode) || (st.st_mode & (S_IRWXG | S_IRWXO)) == 0)
		return 0;
	return error_set(err, -EACCES,
			 "KEK file %s is %s by group or others (mode %04o); chmod 600 it", path,
			 (st.st_mode & (S_IRGRP | S_IROTH)) ? "readable" : "accessible",
			 (unsigned)(st.st_mode & 07777));
}

int kek_load(const char *path, struct kek *kek, struct error *err)
{
	char *text;
	size_t len;
	int ret;

	kek_init_none(kek);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		return error_set(err, ret, "Failed to read KEK file %s: %s", path, strerror(-ret));
	}
	ret = kek_check_mode(fd, path, err);
	if (ret) {
		close(fd);
		return ret;
	}
	ret = config_read_fd(fd, &text, &len);
	close(fd);
	if (ret)
		return error_set(err, ret, "Failed to read KEK file %s: %s", path, strerror(-ret));
	ret = kek_parse_text(text, len, kek, err);
	secret_wipe(text, len);
	free(text);
	if (ret)
		error_prefix(err, "Error parsing KEK file %s: ", path);
	return ret;
}
