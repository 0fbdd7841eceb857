/*
 * The device config (YAML) as device_config_parse reads it: parse, unwrap
 * every secret with the KEK byte 0 picks (config_fuzz.h), validate. A parse
 * that succeeds must hold values within the bounds docs/config.md gives; a
 * failure must leave nothing allocated and say why in one line.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config_fuzz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	config_fuzz_quiet_logs();
	return 0;
}

static bool is_power_of_two_u32(uint32_t v)
{
	return v && (v & (v - 1)) == 0;
}

static void check_config(const struct device_config *cfg)
{
	if (!cfg->path || cfg->path[0] == '\0')
		abort();
	if (cfg->num_queues < 1 || cfg->num_queues > 64 || !is_power_of_two_u32(cfg->queue_size) ||
	    cfg->queue_size > 32768 || cfg->seg_size_max < 512 || cfg->seg_size_max > (1u << 20) ||
	    cfg->seg_count_max < 1 || cfg->seg_count_max > 256 ||
	    cfg->poll_queue_timeout_us > 10000000u)
		abort();
	if (cfg->cpus && cfg->cpus_len != cfg->num_queues)
		abort();
	if (strlen(cfg->device_id) > VIRTIO_BLK_ID_BYTES ||
	    (unsigned)cfg->io_engine > IO_ENGINE_NULL)
		abort();
	/* Any stripe source needs the metadata file; remote and archive fetch
	 * on read, so they need copy_on_read. */
	switch (cfg->source.kind) {
	case STRIPE_SOURCE_NONE:
		if (cfg->image_path)
			abort();
		break;
	case STRIPE_SOURCE_RAW:
		if (!cfg->source.raw_path || !cfg->metadata_path ||
		    cfg->source.from_image_path != (cfg->image_path != NULL) ||
		    (cfg->image_path && strcmp(cfg->image_path, cfg->source.raw_path) != 0))
			abort();
		break;
	case STRIPE_SOURCE_REMOTE:
		if (!cfg->metadata_path || !cfg->copy_on_read || cfg->image_path)
			abort();
		config_fuzz_check_remote(&cfg->source.remote);
		break;
	case STRIPE_SOURCE_ARCHIVE:
		if (!cfg->metadata_path || !cfg->copy_on_read || cfg->image_path)
			abort();
		config_fuzz_check_archive(&cfg->source.archive);
		break;
	default:
		abort();
	}
}

/* A failed parse frees everything (device_config_free resets to defaults). */
static void check_failed(const struct device_config *cfg, const struct error *err)
{
	config_fuzz_check_error(err);
	if (cfg->path || cfg->image_path || cfg->metadata_path || cfg->socket || cfg->cpus ||
	    cfg->source.kind != STRIPE_SOURCE_NONE || cfg->source.raw_path ||
	    cfg->has_encryption_key)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	struct kek kek_storage;
	const struct kek *kek = config_fuzz_kek(data[0], &kek_storage);
	struct device_config cfg;
	struct error err = {{0}};
	int ret = device_config_parse((const char *)data + 1, size - 1, kek, &cfg, &err);
	if (ret == 0) {
		check_config(&cfg);
		device_config_free(&cfg);
	} else {
		check_failed(&cfg, &err);
	}
	kek_free(&kek_storage);
	return 0;
}
