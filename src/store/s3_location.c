/* Where requests go: the region (signed into every request) and the
 * endpoint, each from the first source that has one, in the AWS SDKs'
 * order. */
#include "s3_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *nonempty(const char *v)
{
	return v && *v ? v : NULL;
}

/* A region is a name in the signature's scope and in the libcurl
 * parameter "aws:amz:<region>:s3": letters, digits, '-', '_' and '.'
 * only ("us-east-1", "auto", "garage"). */
static bool region_is_valid(const char *region)
{
	size_t len = strlen(region);

	if (len == 0 || len > 64)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = region[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_' || c == '.'))
			return false;
	}
	return true;
}

int s3_region_resolve(const struct archive_source_config *cfg, const struct s3_profile *profile,
		      char **region, struct error *err)
{
	const char *found = nonempty(cfg->region);

	if (!found)
		found = nonempty(getenv("AWS_REGION"));
	if (!found)
		found = nonempty(getenv("AWS_DEFAULT_REGION"));
	if (!found)
		found = nonempty(profile->region);
	if (!found)
		return error_set(err, -EINVAL,
				 "No S3 region: set region in the config, AWS_REGION, "
				 "AWS_DEFAULT_REGION, or region of profile %s",
				 profile->name);
	if (!region_is_valid(found))
		return error_set(
		    err, -EINVAL,
		    "Invalid S3 region (letters, digits, '-', '_' and '.' only): %.64s", found);
	*region = strdup(found);
	return *region ? 0 : -ENOMEM;
}

/* AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true keeps only the config's own
 * endpoint and the regional default. */
static bool configured_endpoints_ignored(void)
{
	const char *v = getenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS");

	return v && strcasecmp(v, "true") == 0;
}

int s3_endpoint_resolve(const struct archive_source_config *cfg, const struct s3_profile *profile,
			const char *region, char **endpoint, struct error *err)
{
	const char *found = nonempty(cfg->endpoint);

	if (!found && !configured_endpoints_ignored()) {
		found = nonempty(getenv("AWS_ENDPOINT_URL_S3"));
		if (!found)
			found = nonempty(getenv("AWS_ENDPOINT_URL"));
		if (!found)
			found = nonempty(profile->endpoint_url);
	}
	if (found)
		*endpoint = strdup(found);
	else if (asprintf(endpoint, "https://s3.%s.amazonaws.com", region) < 0)
		*endpoint = NULL;
	return *endpoint ? 0 : error_set(err, -ENOMEM, "Out of memory for the S3 endpoint");
}
