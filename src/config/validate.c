/* Every load-time check of a device config, in one place. The five stripe
 * source rules come first, in a fixed order and with the exact texts that
 * operators and scripts of this config format know; then the ranges of the
 * tuning fields, so a bad value is one line at startup, not a misbehaving
 * queue or a huge allocation (see docs/differences.md). */
#include "config_internal.h"

#include "common/common.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#define NUM_QUEUES_MAX		  64	 /* queue bits 1 << i must fit in 64 bits */
#define QUEUE_SIZE_MAX		  32768u /* virtio split ring limit */
#define SEG_SIZE_MIN		  512u
#define SEG_SIZE_MAX		  (1u << 20)
#define SEG_COUNT_MAX		  256u
#define POLL_QUEUE_TIMEOUT_US_MAX 10000000u
#define S3_CONNECTIONS_MAX	  256u
#define S3_MAX_ATTEMPTS_MAX	  10u
#define REMOTE_CONNECTIONS_MAX	  64u
#define PSK_SECRET_MIN		  16u

bool s3_prefix_is_safe(const char *prefix)
{
	const char *segment = prefix;

	if (strcmp(prefix, ".") == 0 || strncmp(prefix, "./", 2) == 0)
		return false;
	for (;;) {
		const char *slash = strchr(segment, '/');
		size_t len = slash ? (size_t)(slash - segment) : strlen(segment);

		if (len == 2 && segment[0] == '.' && segment[1] == '.')
			return false;
		if (!slash)
			return true;
		segment = slash + 1;
	}
}

static int check_range(const char *field, uint64_t value, uint64_t min, uint64_t max,
		       struct error *err)
{
	if (value < min || value > max)
		return error_set(err, -EINVAL,
				 "%s: %" PRIu64 " is out of range %" PRIu64 "..%" PRIu64, field,
				 value, min, max);
	return 0;
}

int remote_source_validate(const struct remote_source_config *remote, const char *prefix,
			   struct error *err)
{
	if ((remote->psk_identity != NULL) != remote->psk_secret.present)
		return error_set(
		    err, -EINVAL,
		    "%spsk_identity: Both psk_identity and psk_secret must be specified "
		    "together.",
		    prefix);
	/* Checked here, not when TLS credentials are built at the first
	 * connection, so a bad PSK stops start-up with one line. */
	if (remote->psk_identity && remote->psk_identity[0] == '\0')
		return error_set(err, -EINVAL, "%spsk_identity: PSK identity must not be empty",
				 prefix);
	if (remote->psk_secret.present && remote->psk_secret.len < PSK_SECRET_MIN)
		return error_set(err, -EINVAL,
				 "%spsk_secret: PSK secret must be at least 16 bytes long", prefix);
	char field[YAML_FIELD_PATH_MAX];
	snprintf(field, sizeof(field), "%sconnections", prefix);
	return check_range(field, remote->connections, 1, REMOTE_CONNECTIONS_MAX, err);
}

int archive_source_validate(const struct archive_source_config *archive, const char *prefix,
			    struct error *err)
{
	char field[YAML_FIELD_PATH_MAX];
	int ret;

	if (archive->store != ARCHIVE_STORE_S3)
		return 0;
	if (archive->prefix && !s3_prefix_is_safe(archive->prefix)) {
		char quoted[4 * 128 + 4];
		config_quote(archive->prefix, strlen(archive->prefix), 128, quoted, sizeof(quoted));
		return error_set(err, -EINVAL,
				 "%sprefix: Invalid S3 prefix (contains . or .. components): %s",
				 prefix, quoted);
	}
	snprintf(field, sizeof(field), "%sconnections", prefix);
	ret = check_range(field, archive->connections, 1, S3_CONNECTIONS_MAX, err);
	if (ret)
		return ret;
	snprintf(field, sizeof(field), "%smax_attempts", prefix);
	return check_range(field, archive->max_attempts, 1, S3_MAX_ATTEMPTS_MAX, err);
}

/* The five stripe source rules. Their order decides which one a config that
 * breaks several reports, and their texts are the format's: keep both. */
static int check_source_rules(const struct device_config *cfg, struct error *err)
{
	enum stripe_source_kind kind = cfg->source.kind;

	if (cfg->image_path && kind != STRIPE_SOURCE_NONE)
		return error_set(err, -EINVAL,
				 "image_path and stripe_source: Only one stripe source may "
				 "be specified");
	if (kind == STRIPE_SOURCE_REMOTE &&
	    (cfg->source.remote.psk_identity != NULL) != cfg->source.remote.psk_secret.present)
		return error_set(err, -EINVAL,
				 "stripe_source: Both psk_identity and psk_secret must be "
				 "specified together.");
	if (kind == STRIPE_SOURCE_REMOTE && !cfg->copy_on_read)
		return error_set(err, -EINVAL,
				 "copy_on_read must be enabled when using remote stripe source.");
	if (kind == STRIPE_SOURCE_ARCHIVE && !cfg->copy_on_read)
		return error_set(err, -EINVAL,
				 "copy_on_read must be enabled when using archive stripe source.");
	if ((cfg->image_path || kind != STRIPE_SOURCE_NONE) && !cfg->metadata_path)
		return error_set(err, -EINVAL,
				 "metadata_path must be specified when using a stripe source.");
	return 0;
}

static int check_tuning(const struct device_config *cfg, struct error *err)
{
	int ret = check_range("num_queues", cfg->num_queues, 1, NUM_QUEUES_MAX, err);

	if (ret)
		return ret;
	if (!is_power_of_two(cfg->queue_size))
		return error_set(err, -EINVAL, "queue_size: %u is not a non-zero power of two",
				 cfg->queue_size);
	ret = check_range("queue_size", cfg->queue_size, 1, QUEUE_SIZE_MAX, err);
	if (!ret)
		ret =
		    check_range("seg_size_max", cfg->seg_size_max, SEG_SIZE_MIN, SEG_SIZE_MAX, err);
	if (!ret)
		ret = check_range("seg_count_max", cfg->seg_count_max, 1, SEG_COUNT_MAX, err);
	if (!ret)
		ret = check_range("poll_queue_timeout_us", cfg->poll_queue_timeout_us, 0,
				  POLL_QUEUE_TIMEOUT_US_MAX, err);
	if (ret)
		return ret;
	if (cfg->cpus && cfg->cpus_len != cfg->num_queues)
		return error_set(err, -EINVAL,
				 "cpus length must equal num_queues (cpus has %zu entries, "
				 "num_queues is %u)",
				 cfg->cpus_len, cfg->num_queues);
	return 0;
}

int device_config_validate(const struct device_config *cfg, struct error *err)
{
	int ret;

	if (!cfg->path)
		return error_set(err, -EINVAL, "missing field `path`");
	if (cfg->path[0] == '\0')
		return error_set(err, -EINVAL, "path: must not be empty");
	ret = check_source_rules(cfg, err);
	if (!ret)
		ret = check_tuning(cfg, err);
	if (!ret && cfg->metrics_listen) {
		struct sockaddr_storage addr;
		uint32_t addrlen;
		ret = metrics_listen_parse(cfg->metrics_listen, &addr, &addrlen, err);
	}
	if (ret)
		return ret;
	if (cfg->source.kind == STRIPE_SOURCE_REMOTE)
		return remote_source_validate(&cfg->source.remote, "stripe_source.", err);
	if (cfg->source.kind == STRIPE_SOURCE_ARCHIVE)
		return archive_source_validate(&cfg->source.archive, "stripe_source.", err);
	return 0;
}
