/* The load order every tool shares: the KEK file first (and unlinked at once
 * when asked, before anything else can fail, so a config mistake never
 * leaves the KEK behind), then the device config, unwrapped with it. */
#include "config/config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int kek_load_for_tool(const char *kek_path, bool unlink_kek, struct kek *kek, struct error *err)
{
	kek_init_none(kek);
	if (!kek_path)
		return 0;
	int ret = kek_load(kek_path, kek, err);
	if (ret < 0)
		return ret;
	if (unlink_kek && unlink(kek_path) < 0) {
		ret = error_set(err, -errno, "cannot remove the KEK file %s: %s", kek_path,
				strerror(errno));
		kek_free(kek);
		return ret;
	}
	return 0;
}

int device_config_load_with_kek(const char *config_path, const char *kek_path, bool unlink_kek,
				struct device_config *cfg, struct error *err)
{
	struct kek kek;
	device_config_init(cfg);
	int ret = kek_load_for_tool(kek_path, unlink_kek, &kek, err);
	if (ret < 0)
		return ret;
	ret = device_config_load(config_path, &kek, cfg, err);
	kek_free(&kek);
	return ret;
}
