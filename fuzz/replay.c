/*
 * Runs a fuzz target's LLVMFuzzerTestOneInput over saved inputs, without
 * libFuzzer: every test build (gcc, ASan+UBSan, TSan) replays the seed corpus
 * and the regression inputs this way, so an input that once crashed a parser
 * keeps failing the suite if the fix is ever lost.
 *
 *   fuzz-replay-NAME PATH...   each PATH a file or a folder of files
 *
 * A missing folder is skipped (git keeps no empty folders), but at least one
 * input must run: a target whose corpus went missing fails. Exits 0 when
 * every input returned; a crash or a sanitizer report ends the process.
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

static int read_file(const char *path, uint8_t **data, size_t *size)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return -errno;
	size_t cap = 4096, len = 0;
	uint8_t *buf = malloc(cap);
	size_t n;
	while (buf && (n = fread(buf + len, 1, cap - len, f)) > 0) {
		len += n;
		if (len == cap) {
			cap *= 2;
			uint8_t *grown = realloc(buf, cap);
			if (!grown) {
				free(buf);
				buf = NULL;
				break;
			}
			buf = grown;
		}
	}
	int failed = ferror(f);
	fclose(f);
	if (!buf || failed) {
		free(buf);
		return -EIO;
	}
	*data = buf;
	*size = len;
	return 0;
}

static int run_file(const char *path)
{
	/* Initialised: gcc -O3 cannot see that read_file sets both on success. */
	uint8_t *data = NULL;
	size_t size = 0;
	int rc = read_file(path, &data, &size);
	if (rc) {
		fprintf(stderr, "%s: %s\n", path, strerror(-rc));
		return rc;
	}
	/* An exact-size copy, so ASan sees a read past the input's end. */
	uint8_t *exact = malloc(size ? size : 1);
	if (!exact) {
		free(data);
		return -ENOMEM;
	}
	memcpy(exact, data, size);
	free(data);
	LLVMFuzzerTestOneInput(exact, size);
	free(exact);
	return 0;
}

static int compare_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Runs every regular file in a folder, in name order; returns the count. */
static int run_folder(const char *dir, unsigned *count)
{
	DIR *d = opendir(dir);
	if (!d)
		return -errno;
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			char **grown = realloc(names, cap * sizeof(*names));
			if (!grown)
				abort();
			names = grown;
		}
		if (asprintf(&names[n], "%s/%s", dir, e->d_name) < 0)
			abort();
		n++;
	}
	closedir(d);
	qsort(names, n, sizeof(*names), compare_names);
	int rc = 0;
	for (size_t i = 0; i < n; i++) {
		struct stat st;
		if (rc == 0 && stat(names[i], &st) == 0 && S_ISREG(st.st_mode)) {
			rc = run_file(names[i]);
			if (rc == 0)
				(*count)++;
		}
		free(names[i]);
	}
	free(names);
	return rc;
}

int main(int argc, char **argv)
{
	if (LLVMFuzzerInitialize)
		LLVMFuzzerInitialize(&argc, &argv);
	unsigned count = 0;
	for (int i = 1; i < argc; i++) {
		struct stat st;
		if (stat(argv[i], &st) != 0) {
			printf("%s: absent, skipped\n", argv[i]);
			continue;
		}
		int rc = S_ISDIR(st.st_mode) ? run_folder(argv[i], &count) : run_file(argv[i]);
		if (rc == 0 && !S_ISDIR(st.st_mode))
			count++;
		if (rc) {
			fprintf(stderr, "%s: %s\n", argv[i], strerror(-rc));
			return 1;
		}
	}
	printf("%u inputs replayed\n", count);
	if (count == 0) {
		fprintf(stderr, "no inputs: the target's corpus is missing\n");
		return 1;
	}
	return 0;
}
