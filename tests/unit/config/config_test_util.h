/* Helpers shared by the config unit tests: parse a YAML text and expect
 * success, or expect a failure whose one-line message contains a text. */
#ifndef UBIBLK_CONFIG_TEST_UTIL_H
#define UBIBLK_CONFIG_TEST_UTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"

/* The example KEK of ubiblk's README (fixed-nonce form). */
#define TEST_KEK_YAML                                                                              \
	"method: aes256-gcm\n"                                                                     \
	"key: \"wHKSFBsRXW/VPLsJKl/mnsMs7X3Pt8NWjzZkch8Ku60=\"\n"                                  \
	"init_vector: \"UEt+wI+Ldq1UgQ/P\"\n"                                                      \
	"auth_data: \"dm0zamdlejhfMA==\"\n"

/* The test keys (key1 = 0123456789abcdef, key2 = fedcba9876543210, each
 * repeated 4 times): plain base64 and wrapped under TEST_KEK_YAML. */
#define KEY1_B64	 "ASNFZ4mrze8BI0VniavN7wEjRWeJq83vASNFZ4mrze8="
#define KEY2_B64	 "/ty6mHZUMhD+3LqYdlQyEP7cuph2VDIQ/ty6mHZUMhA="
#define KEY1_WRAPPED_B64 "rpltzOClkMIifQ4wCaIU7Wt0yu2qWzzpz8KdPEyzoCNy/VSYqfHH1lClpTAe+cjF"
#define KEY2_WRAPPED_B64 "UWaSMx9abz3dgvHP9l3rEpSLNRJVpMMWMD1iw7NMX9y5Fmq5WQOp4ALoz+3R4mXn"

static inline void test_kek(struct kek *kek)
{
	struct error err = {0};
	int ret = kek_parse(TEST_KEK_YAML, strlen(TEST_KEK_YAML), kek, &err);
	if (ret)
		fail_msg("test KEK: %s", err.text);
}

/* Parses and expects success; the caller frees cfg. */
static inline void parse_ok_kek(const char *yaml, const struct kek *kek, struct device_config *cfg)
{
	struct error err = {0};
	int ret = device_config_parse(yaml, strlen(yaml), kek, cfg, &err);
	if (ret)
		fail_msg("expected success for:\n%s\ngot %d: %s", yaml, ret, err.text);
}

static inline void parse_ok(const char *yaml, struct device_config *cfg)
{
	parse_ok_kek(yaml, NULL, cfg);
}

/* Expects -EINVAL with `expected` inside the message, on one line. */
static inline void parse_fails_kek(const char *yaml, const struct kek *kek, const char *expected)
{
	struct error err = {0};
	struct device_config cfg;
	int ret = device_config_parse(yaml, strlen(yaml), kek, &cfg, &err);
	if (ret == 0) {
		device_config_free(&cfg);
		fail_msg("expected failure \"%s\" for:\n%s", expected, yaml);
	}
	assert_int_equal(ret, -EINVAL);
	if (!strstr(err.text, expected))
		fail_msg("for:\n%s\nexpected \"%s\" in \"%s\"", yaml, expected, err.text);
	assert_null(strchr(err.text, '\n'));
	assert_null(cfg.path); /* a failed parse leaves nothing allocated */
}

static inline void parse_fails(const char *yaml, const char *expected)
{
	parse_fails_kek(yaml, NULL, expected);
}

/* Writes text to a new temporary file; returns its malloc'ed path. */
static inline char *write_temp_file(const char *text)
{
	char *path = strdup("/tmp/ubiblk-config-test-XXXXXX");
	if (!path)
		abort(); /* cmocka's asserts do not tell the compiler they stop */
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	size_t len = strlen(text);
	assert_int_equal(write(fd, text, len), (ssize_t)len);
	close(fd);
	return path;
}

static inline void remove_temp_file(char *path)
{
	unlink(path);
	free(path);
}

#endif
