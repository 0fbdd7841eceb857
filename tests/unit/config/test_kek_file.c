/* The KEK file on disk: the permission check (a regular file others may
 * access is refused, checked on the opened descriptor) and the order of
 * device_config_load_with_kek (KEK read and parsed, then unlinked, then the
 * config), which decides when --unlink-kek deletes the file. */
#include "config_test_util.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

static bool exists(const char *path)
{
	struct stat st;
	return lstat(path, &st) == 0;
}

static char *kek_file_with_mode(const char *text, mode_t mode)
{
	char *path = write_temp_file(text);
	assert_int_equal(chmod(path, mode), 0);
	return path;
}

static void kek_load_fails(const char *path, int expected_ret, const char *expected)
{
	struct error err = {0};
	struct kek kek;
	assert_int_equal(kek_load(path, &kek, &err), expected_ret);
	assert_string_equal(err.text, expected);
	assert_int_equal(kek.method, KEK_METHOD_NONE);
	assert_false(kek.key.present);
}

static void test_group_or_other_access_is_refused(void **state)
{
	(void)state;
	static const struct {
		mode_t mode;
		const char *what;
	} cases[] = {
	    {0644, "readable"},	  {0640, "readable"},	{0604, "readable"},
	    {0660, "readable"},	  {0620, "accessible"}, {0602, "accessible"},
	    {0610, "accessible"}, {0601, "accessible"}, {0444, "readable"},
	};
	char expected[ERROR_TEXT_MAX];

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		char *path = kek_file_with_mode(TEST_KEK_YAML, cases[i].mode);
		snprintf(expected, sizeof(expected),
			 "KEK file %s is %s by group or others (mode %04o); chmod 600 it", path,
			 cases[i].what, (unsigned)cases[i].mode);
		kek_load_fails(path, -EACCES, expected);
		remove_temp_file(path);
	}
}

static void test_mode_is_checked_before_parsing(void **state)
{
	(void)state;
	char expected[ERROR_TEXT_MAX];
	/* Broken YAML: the mode error wins, the text is never looked at. */
	char *path = kek_file_with_mode("method: [unclosed\n", 0644);

	snprintf(expected, sizeof(expected),
		 "KEK file %s is readable by group or others (mode 0644); chmod 600 it", path);
	kek_load_fails(path, -EACCES, expected);
	remove_temp_file(path);
}

static void test_owner_only_modes_are_accepted(void **state)
{
	(void)state;
	static const mode_t modes[] = {0600, 0400, 0700};
	struct error err = {0};
	struct kek kek;

	for (size_t i = 0; i < ARRAY_SIZE(modes); i++) {
		char *path = kek_file_with_mode(TEST_KEK_YAML, modes[i]);
		assert_int_equal(kek_load(path, &kek, &err), 0);
		assert_int_equal(kek.method, KEK_METHOD_AES256_GCM);
		assert_int_equal(kek.key.len, 32);
		kek_free(&kek);
		remove_temp_file(path);
	}
}

struct fifo_writer {
	const char *path;
	const char *text;
};

static void *write_fifo(void *arg)
{
	const struct fifo_writer *w = arg;
	int fd = open(w->path, O_WRONLY | O_CLOEXEC);
	if (fd >= 0) {
		ssize_t n = write(fd, w->text, strlen(w->text));
		(void)n; /* the reader's parse result tells */
		close(fd);
	}
	return NULL;
}

/* A FIFO (how a KEK is best handed over) is fine whatever its mode. */
static void test_fifo_is_accepted(void **state)
{
	(void)state;
	char dir[] = "/tmp/ubiblk-kek-fifo-XXXXXX";
	char path[sizeof(dir) + 16];
	struct error err = {0};
	struct kek kek;
	pthread_t writer;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/kek", dir);
	assert_int_equal(mkfifo(path, 0666), 0);
	assert_int_equal(chmod(path, 0666), 0); /* whatever the umask left */
	struct fifo_writer w = {.path = path, .text = TEST_KEK_YAML};
	assert_int_equal(pthread_create(&writer, NULL, write_fifo, &w), 0);
	int ret = kek_load(path, &kek, &err);
	pthread_join(writer, NULL);
	if (ret)
		fail_msg("FIFO KEK: %s", err.text);
	assert_int_equal(kek.method, KEK_METHOD_AES256_GCM);
	assert_int_equal(kek.init_vector.len, 12);
	kek_free(&kek);
	unlink(path);
	rmdir(dir);
}

/* ---- device_config_load_with_kek: when is the KEK file deleted? ---- */

#define PLAIN_CONFIG "path: disk.raw\n"
#define WRAPPED_CONFIG                                                                             \
	"path: disk.raw\nencryption_key:\n  - \"" KEY1_WRAPPED_B64 "\"\n  - \"" KEY2_WRAPPED_B64   \
	"\"\n"

/* Loads with unlink_kek; returns the result and whether the KEK survived. */
static int load_unlinking(const char *config_path, const char *kek_path, bool *kek_left,
			  struct error *err)
{
	struct device_config cfg;
	int ret = device_config_load_with_kek(config_path, kek_path, true, &cfg, err);
	if (ret == 0)
		device_config_free(&cfg);
	*kek_left = exists(kek_path);
	return ret;
}

static void test_unlink_after_success(void **state)
{
	(void)state;
	struct error err = {0};
	struct device_config cfg;
	char *kek = kek_file_with_mode(TEST_KEK_YAML, 0600);
	char *config = write_temp_file(WRAPPED_CONFIG);

	assert_int_equal(device_config_load_with_kek(config, kek, true, &cfg, &err), 0);
	assert_false(exists(kek));
	assert_true(cfg.has_encryption_key);
	assert_int_equal(cfg.encryption_key[0][0], 0x01);
	assert_int_equal(cfg.encryption_key[1][0], 0xfe);
	device_config_free(&cfg);

	/* Without unlink the file stays. */
	remove_temp_file(kek);
	kek = kek_file_with_mode(TEST_KEK_YAML, 0600);
	assert_int_equal(device_config_load_with_kek(config, kek, false, &cfg, &err), 0);
	assert_true(exists(kek));
	device_config_free(&cfg);
	remove_temp_file(kek);
	remove_temp_file(config);
}

/* A KEK that could not be read or parsed is not deleted: the operator still
 * needs it. */
static void test_kek_failures_keep_the_file(void **state)
{
	(void)state;
	static const char *const broken[] = {
	    "method: [unclosed\n",	    /* YAML syntax */
	    "key: AQ==\n",		    /* missing method */
	    "method: aes-256\n",	    /* unknown method */
	    "method: none\nkey: \"%%%\"\n", /* base64 */
	};
	struct error err = {0};
	bool left;
	char *config = write_temp_file(PLAIN_CONFIG);

	for (size_t i = 0; i < ARRAY_SIZE(broken); i++) {
		char *kek = kek_file_with_mode(broken[i], 0600);
		assert_int_equal(load_unlinking(config, kek, &left, &err), -EINVAL);
		assert_true(left);
		assert_non_null(strstr(err.text, "Error parsing KEK file "));
		remove_temp_file(kek);
	}
	char *kek = kek_file_with_mode(TEST_KEK_YAML, 0644);
	assert_int_equal(load_unlinking(config, kek, &left, &err), -EACCES);
	assert_true(left);
	assert_non_null(strstr(err.text, "chmod 600 it"));
	remove_temp_file(kek);

	assert_int_equal(load_unlinking(config, "/nonexistent/kek.yaml", &left, &err), -ENOENT);
	assert_string_equal(err.text,
			    "Failed to read KEK file /nonexistent/kek.yaml: No such file or "
			    "directory");
	remove_temp_file(config);
}

/* Once the KEK parsed, it is gone whatever happens to the config. */
static void test_config_failures_after_a_good_kek_delete_it(void **state)
{
	(void)state;
	static const char *const configs[] = {
	    "path: [unclosed\n",			       /* YAML syntax */
	    "socket: s\n",				       /* path missing */
	    "path: d\nnum_queues: 0\n",			       /* validation */
	    "path: d\nencryption_key: [\"AQ==\", \"AQ==\"]\n", /* unwrap fails (tag) */
	    "path: d\nimage_path: i\n",			       /* metadata_path missing */
	};
	struct error err = {0};
	bool left;

	for (size_t i = 0; i < ARRAY_SIZE(configs); i++) {
		char *kek = kek_file_with_mode(TEST_KEK_YAML, 0600);
		char *config = write_temp_file(configs[i]);
		assert_int_equal(load_unlinking(config, kek, &left, &err), -EINVAL);
		assert_false(left);
		assert_null(strstr(err.text, "KEK file"));
		remove_temp_file(config);
		remove_temp_file(kek);
	}
	char *kek = kek_file_with_mode("method: none\n", 0600);
	assert_int_equal(load_unlinking("/nonexistent/disk.yaml", kek, &left, &err), -ENOENT);
	assert_false(left);
	assert_non_null(
	    strstr(err.text, "Failed to read device config file /nonexistent/disk.yaml"));
	remove_temp_file(kek);
}

/* An aes256-gcm KEK without a key parses (values are checked lazily), so it
 * is deleted even though unwrapping then fails with "Key is required". */
static void test_lazy_kek_errors_come_after_the_unlink(void **state)
{
	(void)state;
	struct error err = {0};
	bool left;
	char *kek = kek_file_with_mode("method: aes256-gcm\n", 0600);
	char *config = write_temp_file(WRAPPED_CONFIG);

	assert_int_equal(load_unlinking(config, kek, &left, &err), -EINVAL);
	assert_false(left);
	assert_non_null(strstr(err.text, "Key is required"));
	remove_temp_file(kek);
	remove_temp_file(config);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_group_or_other_access_is_refused),
	    cmocka_unit_test(test_mode_is_checked_before_parsing),
	    cmocka_unit_test(test_owner_only_modes_are_accepted),
	    cmocka_unit_test(test_fifo_is_accepted),
	    cmocka_unit_test(test_unlink_after_success),
	    cmocka_unit_test(test_kek_failures_keep_the_file),
	    cmocka_unit_test(test_config_failures_after_a_good_kek_delete_it),
	    cmocka_unit_test(test_lazy_kek_errors_come_after_the_unlink),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
