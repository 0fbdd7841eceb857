/* unix_listener_open / unix_listener_close: see "Unix-socket listeners" in
 * common.h. */
#include "common/common.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define LISTEN_BACKLOG 16

/* Whether a server still accepts connections on the socket at addr. */
static bool socket_is_live(const struct sockaddr_un *addr)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return false;
	int rc = connect(fd, (const struct sockaddr *)addr, sizeof(*addr));
	/* EAGAIN: a listener whose backlog is full, still alive. */
	bool live = rc == 0 || errno == EAGAIN;
	close(fd);
	return live;
}

/* Removes a stale socket file at the path; anything else is refused. */
static int remove_stale_socket(const struct sockaddr_un *addr, const char *what, struct error *err)
{
	const char *path = addr->sun_path;
	struct stat st;
	if (lstat(path, &st) < 0) {
		if (errno == ENOENT)
			return 0;
		return error_set(err, -errno, "failed to remove existing %s %s: %s", what, path,
				 strerror(errno));
	}
	if (S_ISDIR(st.st_mode))
		return error_set(err, -EISDIR, "failed to remove existing %s %s: it is a directory",
				 what, path);
	if (!S_ISSOCK(st.st_mode))
		return error_set(err, -EEXIST,
				 "failed to remove existing %s %s: it is not a socket (refusing to "
				 "delete it)",
				 what, path);
	if (socket_is_live(addr))
		return error_set(
		    err, -EADDRINUSE,
		    "failed to remove existing %s %s: another server is listening on it", what,
		    path);
	if (unlink(path) < 0 && errno != ENOENT)
		return error_set(err, -errno, "failed to remove existing %s %s: %s", what, path,
				 strerror(errno));
	return 0;
}

static int fill_address(struct sockaddr_un *addr, const char *path)
{
	size_t len = strlen(path);
	if (len == 0 || len >= sizeof(addr->sun_path))
		return -ENAMETOOLONG;
	memset(addr, 0, sizeof(*addr));
	addr->sun_family = AF_UNIX;
	memcpy(addr->sun_path, path, len + 1);
	return 0;
}

/* Binds, sets the mode and listens under `bound` (the final path or a
 * temporary one beside it). */
static int bind_and_listen(int fd, const struct sockaddr_un *bound, mode_t mode, const char *what,
			   const char *path, struct error *err)
{
	/* Linux creates the socket file with the socket's own mode minus the
	 * umask: owner-only until the chmod below. The process umask is not
	 * touched, since other threads may already run. */
	if (fchmod(fd, 0600) < 0)
		log_debug("%s: fchmod before bind: %s", what, strerror(errno));
	if (bind(fd, (const struct sockaddr *)bound, sizeof(*bound)) < 0)
		return error_set(err, -errno, "failed to bind %s %s: %s", what, path,
				 strerror(errno));
	const char *step = NULL;
	if (chmod(bound->sun_path, mode) < 0)
		step = "failed to set permissions of";
	else if (listen(fd, LISTEN_BACKLOG) < 0)
		step = "failed to listen on";
	if (step) {
		int rc = -errno;
		unlink(bound->sun_path);
		return error_set(err, rc, "%s %s %s: %s", step, what, path, strerror(-rc));
	}
	return 0;
}

/* A file that appeared at the path since the stale socket was removed is not
 * replaced; a filesystem without RENAME_NOREPLACE gets a plain rename. */
static int rename_no_replace(const char *from, const char *to)
{
	if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS)
		return -1;
	return rename(from, to);
}

int unix_listener_open(const char *path, mode_t mode, const char *what, struct unix_listener *out,
		       struct error *err)
{
	out->fd = -1;
	struct sockaddr_un final;
	if (fill_address(&final, path) < 0)
		return error_set(err, -ENAMETOOLONG, "failed to bind %s %s: path too long", what,
				 path);
	int rc = remove_stale_socket(&final, what, err);
	if (rc < 0)
		return rc;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return error_set(err, -errno, "failed to create %s %s: %s", what, path,
				 strerror(errno));
	/* Listening under a temporary name first and renaming it onto the
	 * path means whoever sees the path can connect: there is no moment in
	 * which the file exists but connections are refused. A path too long
	 * for the temporary name is bound directly. */
	char temporary[sizeof(final.sun_path) + 32];
	snprintf(temporary, sizeof(temporary), "%s.%d.tmp", path, (int)getpid());
	struct sockaddr_un bound;
	bool renamed = fill_address(&bound, temporary) == 0;
	if (!renamed)
		bound = final;
	else
		unlink(temporary); /* left by an earlier process with our pid */
	rc = bind_and_listen(fd, &bound, mode, what, path, err);
	/* The inode is kept across the rename: it is what close compares. */
	struct stat st = {0};
	if (rc == 0 && lstat(bound.sun_path, &st) < 0) {
		int error = errno;
		rc = error_set(err, -error, "failed to inspect %s %s: %s", what, bound.sun_path,
			       strerror(error));
		unlink(bound.sun_path);
	}
	if (rc == 0 && renamed && rename_no_replace(bound.sun_path, path) < 0) {
		int error = errno;
		rc = error_set(err, -error, "failed to bind %s %s: renaming %s onto it: %s", what,
			       path, bound.sun_path, strerror(error));
		unlink(bound.sun_path);
	}
	if (rc < 0) {
		close(fd);
		return rc;
	}
	out->fd = fd;
	out->dev = st.st_dev;
	out->ino = st.st_ino;
	return 0;
}

void unix_listener_close(struct unix_listener *l, const char *path)
{
	if (l->fd < 0)
		return;
	close(l->fd);
	l->fd = -1;
	struct stat st;
	if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode) && st.st_dev == l->dev &&
	    st.st_ino == l->ino)
		unlink(path);
}
