/* Every XTS engine this machine can run against OpenSSL's EVP_aes_256_xts
 * (tests/unit/crypto/xts_reference.c, one data unit per call, no code
 * shared with src/crypto), byte for byte:
 * - random keys, every sector count from 1 to 256, random first sectors and
 *   the edges (0, around 2^32, 2^64 - 256 .. 2^64 - 1), in both directions;
 * - out of place into 64-byte aligned memory (the streaming-store path),
 *   into misaligned memory, and in place;
 * - a disk written by one engine is read by every other;
 * - forcing an engine with UBIBLK_XTS_ENGINE, and the errors for an unknown
 *   one (in a child process: the choice is made once per process).
 * Engines this machine cannot run are named on stdout, not tested. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>

#include "crypto/crypto.h"
#include "crypto/xts_internal.h"
#include "xts_reference.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_SECTORS 256u
#define SECTOR	    512u

static void random_bytes(void *buf, size_t len)
{
	assert_int_equal(getrandom(buf, len, 0), (ssize_t)len);
}

static uint64_t random_u64(void)
{
	uint64_t v;
	random_bytes(&v, sizeof(v));
	return v;
}

static void random_keys(uint8_t key1[32], uint8_t key2[32])
{
	do {
		random_bytes(key1, 32);
		random_bytes(key2, 32);
	} while (memcmp(key1, key2, 32) == 0);
}

static struct xts_cipher *open_engine(const char *engine, const uint8_t *k1, const uint8_t *k2)
{
	struct xts_cipher *c = NULL;
	struct error err = {0};
	if (xts_cipher_new_engine(engine, k1, k2, &c, &err) < 0)
		fail_msg("engine %s: %s", engine, err.text);
	assert_string_equal(xts_cipher_engine(c), engine);
	return c;
}

/* The first sector for a run of `count`: a random one, or an edge. A run
 * that would pass 2^64 - 1 is moved back: the disk's sectors end there. */
static uint64_t first_sector(unsigned count, unsigned variant)
{
	uint64_t first;
	switch (variant % 4) {
	case 0:
		first = random_u64();
		break;
	case 1:
		first = 0x100000000ull - count / 2; /* crosses 2^32 */
		break;
	case 2:
		first = UINT64_MAX - (count - 1); /* ends at 2^64 - 1 */
		break;
	default:
		first = random_u64() % 1000000;
		break;
	}
	if (first > UINT64_MAX - (count - 1))
		first = UINT64_MAX - (count - 1);
	return first;
}

struct buffers {
	uint8_t *plain, *ref, *ours, *aligned, *odd_base;
};

static void buffers_new(struct buffers *b)
{
	size_t bytes = MAX_SECTORS * SECTOR;
	b->plain = malloc(bytes);
	b->ref = malloc(bytes);
	b->ours = malloc(bytes);
	assert_int_equal(posix_memalign((void **)&b->aligned, 64, bytes), 0);
	b->odd_base = malloc(bytes + 1);
	assert_non_null(b->plain);
	assert_non_null(b->ref);
	assert_non_null(b->ours);
	assert_non_null(b->odd_base);
}

static void buffers_free(struct buffers *b)
{
	free(b->plain);
	free(b->ref);
	free(b->ours);
	free(b->aligned);
	free(b->odd_base);
}

static void check_engine(const char *engine)
{
	uint8_t key1[32], key2[32];
	random_keys(key1, key2);
	struct xts_cipher *c = open_engine(engine, key1, key2);
	struct buffers b;
	buffers_new(&b);
	uint8_t *odd = b.odd_base + 1;
	for (unsigned count = 1; count <= MAX_SECTORS; count++) {
		size_t bytes = (size_t)count * SECTOR;
		uint64_t first = first_sector(count, count);
		random_bytes(b.plain, bytes);
		/* Encrypt: aligned (streaming stores), misaligned, in place. */
		assert_int_equal(
		    ref_xts(key1, key2, true, REF_TWEAK_UBIBLK, first, b.plain, b.ref, count), 0);
		assert_int_equal(xts_encrypt(c, first, b.plain, b.aligned, count), 0);
		if (memcmp(b.aligned, b.ref, bytes) != 0)
			fail_msg("%s: encrypt of %u sectors from %llu differs from OpenSSL", engine,
				 count, (unsigned long long)first);
		assert_int_equal(xts_encrypt(c, first, b.plain, odd, count), 0);
		assert_memory_equal(odd, b.ref, bytes);
		memcpy(b.ours, b.plain, bytes);
		assert_int_equal(xts_encrypt(c, first, b.ours, b.ours, count), 0);
		assert_memory_equal(b.ours, b.ref, bytes);
		/* Decrypt random ciphertext against the reference the same ways. */
		random_bytes(b.ours, bytes);
		assert_int_equal(
		    ref_xts(key1, key2, false, REF_TWEAK_UBIBLK, first, b.ours, b.ref, count), 0);
		assert_int_equal(xts_decrypt(c, first, b.ours, b.aligned, count), 0);
		if (memcmp(b.aligned, b.ref, bytes) != 0)
			fail_msg("%s: decrypt of %u sectors from %llu differs from OpenSSL", engine,
				 count, (unsigned long long)first);
		assert_int_equal(xts_decrypt(c, first, b.ours, odd, count), 0);
		assert_memory_equal(odd, b.ref, bytes);
		assert_int_equal(xts_decrypt(c, first, b.ours, b.ours, count), 0);
		assert_memory_equal(b.ours, b.ref, bytes);
	}
	buffers_free(&b);
	xts_cipher_free(c);
}

static void every_engine_matches_openssl(void **state)
{
	(void)state;
	unsigned tested = 0;
	for (size_t i = 0; i < xts_engine_count(); i++) {
		const char *why = xts_engine_unsupported_at(i);
		if (why) {
			printf("engine %s: not tested, this machine cannot run it (%s)\n",
			       xts_engine_name_at(i), why);
			continue;
		}
		check_engine(xts_engine_name_at(i));
		printf("engine %s: 1..%u sectors, both directions, equal to EVP_aes_256_xts\n",
		       xts_engine_name_at(i), MAX_SECTORS);
		tested++;
	}
	/* OpenSSL runs everywhere: at least it was checked. */
	assert_true(tested >= 1);
}

/* What one engine writes, every other reads; the disk's bytes do not
 * depend on the engine. */
static void engines_read_each_others_disks(void **state)
{
	(void)state;
	uint8_t key1[32], key2[32];
	random_keys(key1, key2);
	struct buffers b;
	buffers_new(&b);
	size_t bytes = MAX_SECTORS * SECTOR;
	uint64_t first = 0xfffffff0ull; /* crosses 2^32 */
	random_bytes(b.plain, bytes);
	for (size_t w = 0; w < xts_engine_count(); w++) {
		if (xts_engine_unsupported_at(w))
			continue;
		struct xts_cipher *writer = open_engine(xts_engine_name_at(w), key1, key2);
		assert_int_equal(xts_encrypt(writer, first, b.plain, b.ref, MAX_SECTORS), 0);
		xts_cipher_free(writer);
		for (size_t r = 0; r < xts_engine_count(); r++) {
			if (xts_engine_unsupported_at(r))
				continue;
			struct xts_cipher *reader = open_engine(xts_engine_name_at(r), key1, key2);
			assert_int_equal(xts_decrypt(reader, first, b.ref, b.ours, MAX_SECTORS), 0);
			if (memcmp(b.ours, b.plain, bytes) != 0)
				fail_msg("a disk written by %s does not read back through %s",
					 xts_engine_name_at(w), xts_engine_name_at(r));
			xts_cipher_free(reader);
		}
	}
	buffers_free(&b);
}

/* In a child: set UBIBLK_XTS_ENGINE, then report what xts_cipher_new and
 * xts_engine_chosen say through the exit code and a pipe. */
static void forced(const char *value, char *chosen, size_t chosen_len, char *error,
		   size_t error_len)
{
	int fds[2];
	assert_int_equal(pipe(fds), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(fds[0]);
		setenv(XTS_ENGINE_ENV, value, 1);
		uint8_t k1[32] = {1}, k2[32] = {2};
		struct xts_cipher *c = NULL;
		struct error err = {0};
		int rc = xts_cipher_new(k1, k2, &c, &err);
		char line[512];
		int n = snprintf(line, sizeof(line), "%s\n%s\n", xts_engine_chosen(),
				 rc < 0 ? err.text : "");
		if (write(fds[1], line, (size_t)n) != n)
			_exit(3);
		xts_cipher_free(c);
		_exit(0);
	}
	close(fds[1]);
	char out[512] = {0};
	size_t got = 0;
	ssize_t n;
	while ((n = read(fds[0], out + got, sizeof(out) - 1 - got)) > 0)
		got += (size_t)n;
	close(fds[0]);
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	char *nl = strchr(out, '\n');
	assert_non_null(nl);
	*nl = '\0';
	snprintf(chosen, chosen_len, "%s", out);
	char *rest = nl + 1;
	char *nl2 = strchr(rest, '\n');
	if (nl2)
		*nl2 = '\0';
	snprintf(error, error_len, "%s", rest);
}

static void the_environment_forces_an_engine(void **state)
{
	(void)state;
	char chosen[64], error[256];
	for (size_t i = 0; i < xts_engine_count(); i++) {
		const char *name = xts_engine_name_at(i);
		const char *why = xts_engine_unsupported_at(i);
		forced(name, chosen, sizeof(chosen), error, sizeof(error));
		if (why) {
			/* Refused, saying so: never another engine in its place. */
			assert_string_equal(chosen, "none");
			assert_non_null(strstr(error, "this machine cannot run it"));
		} else {
			assert_string_equal(chosen, name);
			assert_string_equal(error, "");
		}
	}
	forced("aes-ni-magic", chosen, sizeof(chosen), error, sizeof(error));
	assert_string_equal(chosen, "none");
	assert_string_equal(error, "UBIBLK_XTS_ENGINE=aes-ni-magic: no such XTS engine (known: "
				   "vaes-avx512, gcrypt, openssl)");
	/* Empty: chosen by the CPU, the first engine this machine runs. */
	forced("", chosen, sizeof(chosen), error, sizeof(error));
	for (size_t i = 0; i < xts_engine_count(); i++)
		if (!xts_engine_unsupported_at(i)) {
			assert_string_equal(chosen, xts_engine_name_at(i));
			break;
		}
	assert_string_equal(error, "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(every_engine_matches_openssl),
	    cmocka_unit_test(engines_read_each_others_disks),
	    cmocka_unit_test(the_environment_forces_an_engine),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
