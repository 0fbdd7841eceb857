/* Writes a disk image as an archive with the format layer, so the
 * independent Python decoder (tests/archive-golden/make_golden.py --check)
 * can read what our encoder produces:
 *
 *   write-archive-tool OUT_DIR DISK STRIPE_SECTORS none|snappy plain|KEK_YAML|clear
 *
 * plain: not encrypted; clear: encrypted, keys stored in clear (KEK method
 * none); otherwise encrypted, keys wrapped with the KEK file. The XTS keys
 * are the golden ones (SHA-256 of "archive golden key1" / "...key2"); all-zero
 * stripes are left out. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "archive/archive.h"

static int die(const char *what, const struct error *err)
{
	fprintf(stderr, "write-archive-tool: %s: %s\n", what, err ? err->text : strerror(errno));
	return 1;
}

static uint8_t *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	*len = (size_t)ftell(f);
	fseek(f, 0, SEEK_SET);
	uint8_t *data = malloc(*len + 1);
	if (data && fread(data, 1, *len, f) != *len) {
		free(data);
		data = NULL;
	}
	if (data)
		data[*len] = 0;
	fclose(f);
	return data;
}

static int put(const char *dir, const char *name, const void *data, size_t len)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "wb");
	if (!f)
		return -1;
	int rc = fwrite(data, 1, len, f) == len ? 0 : -1;
	return fclose(f) || rc ? -1 : 0;
}

int main(int argc, char **argv)
{
	struct error err = {0};
	if (argc != 6) {
		fprintf(stderr,
			"usage: %s OUT_DIR DISK STRIPE_SECTORS none|snappy "
			"plain|KEK_YAML|clear\n",
			argv[0]);
		return 2;
	}
	const char *out = argv[1], *mode = argv[5];
	size_t disk_len = 0, kek_len = 0;
	uint8_t *disk = slurp(argv[2], &disk_len);
	if (!disk)
		return die(argv[2], NULL);
	struct archive_metadata meta = {.format_version = ARCHIVE_FORMAT_VERSION,
					.stripe_sector_count = strtoull(argv[3], NULL, 10)};
	meta.compression =
	    strcmp(argv[4], "snappy") == 0 ? ARCHIVE_COMPRESSION_SNAPPY : ARCHIVE_COMPRESSION_NONE;
	struct archive_codec codec = {.stripe_sector_count = meta.stripe_sector_count,
				      .compression = meta.compression};
	struct kek kek;
	kek_init_none(&kek);
	if (strcmp(mode, "plain") != 0) {
		if (strcmp(mode, "clear") != 0) {
			char *text = (char *)slurp(mode, &kek_len);
			if (!text || kek_parse(text, kek_len, &kek, &err))
				return die(mode, text ? &err : NULL);
			free(text);
		}
		uint8_t key1[32], key2[32];
		archive_sha256((const uint8_t *)"archive golden key1", 19, key1);
		archive_sha256((const uint8_t *)"archive golden key2", 19, key2);
		if (archive_keys_wrap(&kek, key1, key2, &meta, &err) ||
		    xts_cipher_new(key1, key2, &codec.xts, &err))
			return die("keys", &err);
	}
	char data_dir[4096];
	snprintf(data_dir, sizeof(data_dir), "%s/data", out);
	if (mkdir(out, 0755) && errno != EEXIST)
		return die(out, NULL);
	if (mkdir(data_dir, 0755) && errno != EEXIST)
		return die(data_dir, NULL);

	size_t stripe_bytes = meta.stripe_sector_count * ARCHIVE_SECTOR_BYTES;
	size_t cap = archive_object_bound(&codec, stripe_bytes);
	uint8_t *plain = calloc(1, stripe_bytes), *obj = malloc(cap),
		*zeros = calloc(1, stripe_bytes);
	struct archive_stripe_map map = {0};
	for (uint64_t i = 0; i * stripe_bytes < disk_len; i++) {
		size_t off = i * stripe_bytes,
		       n = disk_len - off < stripe_bytes ? disk_len - off : stripe_bytes;
		memset(plain, 0, stripe_bytes);
		memcpy(plain, disk + off, n);
		if (memcmp(plain, zeros, stripe_bytes) == 0)
			continue;
		size_t len;
		uint8_t hash[ARCHIVE_HASH_BYTES];
		char name[ARCHIVE_OBJECT_NAME_SIZE];
		if (archive_object_encode(&codec, i, plain, stripe_bytes, obj, cap, &len, hash,
					  &err))
			return die("encode", &err);
		archive_object_name(hash, name);
		if (put(out, name, obj, len) || archive_stripe_map_put(&map, i, hash))
			return die(name, NULL);
	}
	char *text;
	if (archive_stripe_map_write(&map, &text, &err) ||
	    put(out, ARCHIVE_STRIPE_HASHES_NAME, text, strlen(text)))
		return die(ARCHIVE_STRIPE_HASHES_NAME, &err);
	free(text);
	if (archive_metadata_write(&meta, &text, &err) ||
	    put(out, ARCHIVE_METADATA_NAME, text, strlen(text)))
		return die(ARCHIVE_METADATA_NAME, &err);
	free(text);
	archive_stripe_map_free(&map);
	archive_metadata_free(&meta);
	xts_cipher_free(codec.xts);
	kek_free(&kek);
	free(plain);
	free(obj);
	free(zeros);
	free(disk);
	return 0;
}
