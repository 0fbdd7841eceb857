/* ublk start-up pieces that need no driver: the option checks, the device
 * symlink, and what an operator is told when /dev/ublk-control is missing. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>

#include "bdev_test_util.h"
#include "common/common.h"
#include "ublk/ublk_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static struct ublk_options good_options(void)
{
	return (struct ublk_options){.num_queues = 2, .queue_depth = 64, .max_io_buf_bytes = 65536};
}

static void assert_refused(const struct ublk_options *o, const char *field)
{
	struct error err = {0};
	assert_int_equal(ublk_check_options(o, &err), -EINVAL);
	if (!strstr(err.text, field))
		fail_msg("message \"%s\" does not name %s", err.text, field);
}

static void test_option_checks(void **state)
{
	(void)state;
	struct error err = {0};
	struct ublk_options o = good_options();
	assert_int_equal(ublk_check_options(&o, &err), 0);
	o.queue_depth = 4096;
	o.max_io_buf_bytes = 1u << 20;
	assert_int_equal(ublk_check_options(&o, &err), 0);

	o = good_options();
	o.queue_depth = 8192;
	assert_refused(&o, "queue_size");
	o.queue_depth = 0;
	assert_refused(&o, "queue_size");
	o = good_options();
	o.max_io_buf_bytes = 1000;
	assert_refused(&o, "seg_size_max");
	o.max_io_buf_bytes = 4096 + 512;
	assert_refused(&o, "seg_size_max");
	o.max_io_buf_bytes = 64u << 20;
	assert_refused(&o, "seg_size_max");
	o = good_options();
	o.num_queues = 0;
	assert_refused(&o, "num_queues");
}

static void assert_link(const char *path, const char *target)
{
	char got[PATH_MAX];
	ssize_t n = readlink(path, got, sizeof(got) - 1);
	assert_true(n > 0);
	got[n] = '\0';
	assert_string_equal(got, target);
}

static void test_symlink_created_in_new_folders(void **state)
{
	(void)state;
	char top[TEST_PATH_MAX], link[TEST_PATH_MAX + 32];
	missing_test_path(top); /* a fresh name in the scratch folder */
	snprintf(link, sizeof(link), "%s/a/b/disk", top);
	ublk_symlink_create(link, "/dev/ublkb7");
	assert_link(link, "/dev/ublkb7");
	ublk_symlink_remove(link);
	struct stat st;
	assert_int_equal(lstat(link, &st), -1);
	assert_int_equal(errno, ENOENT);
	/* Removing what is not there is fine. */
	ublk_symlink_remove(link);
	char dir[TEST_PATH_MAX + 32];
	snprintf(dir, sizeof(dir), "%s/a/b", top);
	rmdir(dir);
	snprintf(dir, sizeof(dir), "%s/a", top);
	rmdir(dir);
	rmdir(top);
}

static void test_symlink_replaces_what_is_there(void **state)
{
	(void)state;
	char link[TEST_PATH_MAX];
	make_test_file(link, 512, 1); /* a regular file where the link goes */
	ublk_symlink_create(link, "/dev/ublkb0");
	assert_link(link, "/dev/ublkb0");
	ublk_symlink_create(link, "/dev/ublkb1"); /* an old link */
	assert_link(link, "/dev/ublkb1");
	ublk_symlink_remove(link);
	struct stat st;
	assert_int_equal(lstat(link, &st), -1);
}

static void test_symlink_remove_leaves_other_files(void **state)
{
	(void)state;
	char path[TEST_PATH_MAX];
	make_test_file(path, 512, 1);
	ublk_symlink_remove(path); /* someone put a file there since */
	struct stat st;
	assert_int_equal(lstat(path, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	unlink(path);
}

/* The build host has no ublk driver; where one is loaded, opening works or
 * is refused for lack of rights, with a message saying so. */
static void test_control_open(void **state)
{
	(void)state;
	struct error err = {0};
	struct ublk_control *ctrl = NULL;
	int rc = ublk_control_open(&ctrl, &err);
	if (access(UBLK_CONTROL_PATH, F_OK) < 0) {
		assert_int_equal(rc, -ENOENT);
		assert_non_null(strstr(err.text, "/dev/ublk-control"));
		assert_non_null(strstr(err.text, "modprobe ublk_drv"));
		assert_null(ctrl);
		return;
	}
	if (rc == 0) {
		ublk_control_close(ctrl);
		return;
	}
	assert_true(rc == -EACCES || rc == -EPERM);
	assert_non_null(strstr(err.text, "root"));
}

int main(void)
{
	log_init();
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_option_checks),
	    cmocka_unit_test(test_symlink_created_in_new_folders),
	    cmocka_unit_test(test_symlink_replaces_what_is_there),
	    cmocka_unit_test(test_symlink_remove_leaves_other_files),
	    cmocka_unit_test(test_control_open),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
