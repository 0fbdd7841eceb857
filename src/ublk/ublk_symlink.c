/* --device-symlink: a stable name for /dev/ublkbN (the kernel picks N).
 * Nothing here may stop the device from being served or removed, so every
 * failure is a warning. */
#include "ublk/ublk_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/common.h"

/* mkdir -p of path's parent folder. */
static int make_parents(const char *path)
{
	char *copy = strdup(path);
	if (!copy)
		return -ENOMEM;
	int rc = 0;
	for (char *slash = strchr(copy + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
		*slash = '\0';
		if (mkdir(copy, 0777) < 0 && errno != EEXIST) {
			rc = -errno;
			log_warn("device symlink: cannot create folder %s: %s", copy,
				 strerror(errno));
			break;
		}
		*slash = '/';
	}
	free(copy);
	return rc;
}

void ublk_symlink_create(const char *path, const char *target)
{
	if (!path || !path[0] || make_parents(path) < 0)
		return;
	struct stat st;
	if (lstat(path, &st) == 0) {
		log_warn("device symlink: replacing the existing %s", path);
		if (unlink(path) < 0) {
			log_warn("device symlink: cannot remove %s: %s", path, strerror(errno));
			return;
		}
	}
	if (symlink(target, path) < 0)
		log_warn("device symlink: cannot link %s to %s: %s", path, target, strerror(errno));
	else
		log_info("device symlink %s -> %s", path, target);
}

void ublk_symlink_remove(const char *path)
{
	struct stat st;
	if (lstat(path, &st) < 0) {
		if (errno != ENOENT)
			log_warn("device symlink: cannot check %s: %s", path, strerror(errno));
		return;
	}
	if (!S_ISLNK(st.st_mode)) {
		log_warn("device symlink: %s is no longer a symlink; leaving it", path);
		return;
	}
	if (unlink(path) < 0)
		log_warn("device symlink: cannot remove %s: %s", path, strerror(errno));
}
