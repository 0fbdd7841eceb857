/* unix_listener_open / unix_listener_close: what is replaced and what is
 * refused, the file's mode, removal of only our own file, and that the path
 * never exists before the socket listens. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/common.h"

struct fixture {
	char dir[64];
	char path[128];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	snprintf(f->dir, sizeof(f->dir), "/tmp/ubiblk-listener-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/s.sock", f->dir);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
	assert_int_equal(system(cmd), 0);
	free(f);
	return 0;
}

static int try_connect(const char *path)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	int rc = connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0 ? 0 : -errno;
	close(fd);
	return rc;
}

static size_t entries_in(const char *dir)
{
	char cmd[160];
	snprintf(cmd, sizeof(cmd), "ls -A %s | wc -l", dir);
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	unsigned long n = 0;
	assert_int_equal(fscanf(p, "%lu", &n), 1);
	pclose(p);
	return n;
}

static void test_listens_with_mode_and_removes_its_file(void **state)
{
	struct fixture *f = *state;
	struct unix_listener l;
	struct error err = {0};
	assert_int_equal(unix_listener_open(f->path, 0660, "test socket", &l, &err), 0);
	struct stat st;
	assert_int_equal(lstat(f->path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0660);
	assert_int_equal(try_connect(f->path), 0);
	/* No temporary name is left beside it. */
	assert_int_equal(entries_in(f->dir), 1);
	unix_listener_close(&l, f->path);
	assert_int_equal(lstat(f->path, &st), -1);
	assert_int_equal(errno, ENOENT);
}

static void test_stale_socket_is_replaced(void **state)
{
	struct fixture *f = *state;
	struct unix_listener first, second;
	assert_int_equal(unix_listener_open(f->path, 0600, "test socket", &first, NULL), 0);
	/* A process killed with -9 leaves its socket file without a listener. */
	close(first.fd);
	assert_int_equal(try_connect(f->path), -ECONNREFUSED);
	struct error err = {0};
	assert_int_equal(unix_listener_open(f->path, 0600, "test socket", &second, &err), 0);
	assert_int_equal(try_connect(f->path), 0);
	unix_listener_close(&second, f->path);
}

static void test_live_socket_is_refused(void **state)
{
	struct fixture *f = *state;
	struct unix_listener first, second;
	assert_int_equal(unix_listener_open(f->path, 0600, "test socket", &first, NULL), 0);
	struct error err = {0};
	assert_int_equal(unix_listener_open(f->path, 0600, "test socket", &second, &err),
			 -EADDRINUSE);
	assert_non_null(strstr(err.text, "another server is listening"));
	assert_int_equal(try_connect(f->path), 0); /* the first still serves */
	unix_listener_close(&first, f->path);
}

static void test_other_files_are_refused_and_kept(void **state)
{
	struct fixture *f = *state;
	FILE *file = fopen(f->path, "w");
	assert_non_null(file);
	fputs("disk image", file);
	fclose(file);
	struct unix_listener l;
	struct error err = {0};
	assert_int_equal(unix_listener_open(f->path, 0600, "test socket", &l, &err), -EEXIST);
	assert_string_equal(err.text + strlen(err.text) - strlen("(refusing to delete it)"),
			    "(refusing to delete it)");
	struct stat st;
	assert_int_equal(lstat(f->path, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(entries_in(f->dir), 1);
	unlink(f->path);
	assert_int_equal(mkdir(f->path, 0700), 0);
	assert_int_equal(unix_listener_open(f->path, 0600, "test socket", &l, &err), -EISDIR);
	rmdir(f->path);
}

static void test_close_leaves_a_newer_socket(void **state)
{
	struct fixture *f = *state;
	struct unix_listener old, newer;
	assert_int_equal(unix_listener_open(f->path, 0600, "test socket", &old, NULL), 0);
	/* Someone removed our file and a newer server took the path. */
	unlink(f->path);
	assert_int_equal(unix_listener_open(f->path, 0600, "test socket", &newer, NULL), 0);
	unix_listener_close(&old, f->path);
	assert_int_equal(try_connect(f->path), 0);
	unix_listener_close(&newer, f->path);
}

static void test_path_too_long(void **state)
{
	(void)state;
	char path[300];
	memset(path, 'a', sizeof(path) - 1);
	path[sizeof(path) - 1] = '\0';
	struct unix_listener l;
	struct error err = {0};
	assert_int_equal(unix_listener_open(path, 0600, "test socket", &l, &err), -ENAMETOOLONG);
	assert_non_null(strstr(err.text, "failed to bind test socket"));
}

/* A client that connects the moment it sees the file must never be refused:
 * a watcher spins on lstat() while listeners are opened and closed, again
 * and again. `phase` is even while a listener is being opened or is open and
 * odd once its close began; a refused connect counts only when the phase was
 * the same even value before the watcher looked and after it was refused, so
 * a listener that is just closing is never blamed. (Binding at the path and
 * listening afterwards fails this within a few rounds.) */
struct watch {
	const char *path;
	int stop;  /* atomic */
	int phase; /* atomic */
	int refused;
	int seen;
};

static int load(int *v)
{
	return __atomic_load_n(v, __ATOMIC_ACQUIRE);
}

static void *watch_main(void *arg)
{
	struct watch *w = arg;
	bool present = false;
	while (!load(&w->stop)) {
		int before = load(&w->phase);
		struct stat st;
		bool now = lstat(w->path, &st) == 0;
		if (now && !present) {
			w->seen++;
			if (try_connect(w->path) == -ECONNREFUSED && before % 2 == 0 &&
			    load(&w->phase) == before)
				w->refused++;
		}
		present = now;
	}
	return NULL;
}

static void test_path_appears_only_when_listening(void **state)
{
	struct fixture *f = *state;
	struct watch w = {.path = f->path};
	pthread_t thread;
	assert_int_equal(pthread_create(&thread, NULL, watch_main, &w), 0);
	for (int round = 0; round < 1500; round++) {
		struct unix_listener l;
		__atomic_store_n(&w.phase, 2 * round, __ATOMIC_RELEASE);
		assert_int_equal(unix_listener_open(f->path, 0600, "test socket", &l, NULL), 0);
		usleep(200);
		__atomic_store_n(&w.phase, 2 * round + 1, __ATOMIC_RELEASE);
		unix_listener_close(&l, f->path);
		usleep(200);
	}
	__atomic_store_n(&w.stop, 1, __ATOMIC_RELEASE);
	pthread_join(thread, NULL);
	assert_true(w.seen > 0);
	assert_int_equal(w.refused, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_listens_with_mode_and_removes_its_file, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_stale_socket_is_replaced, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_live_socket_is_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_other_files_are_refused_and_kept, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_close_leaves_a_newer_socket, setup, teardown),
	    cmocka_unit_test(test_path_too_long),
	    cmocka_unit_test_setup_teardown(test_path_appears_only_when_listening, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
