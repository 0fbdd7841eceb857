/* Which keys sign the requests. The order is the AWS SDKs': keys in the
 * config replace every other source (with their optional session token);
 * then the environment; then the selected profile of the shared files. The
 * SDKs' remaining providers (web identity, containers, instance metadata,
 * roles, SSO, helper processes) need the network or other services and are
 * not supported: a profile that relies on them gets a message saying so. */
#include "s3_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void s3_credentials_free(struct s3_credentials *c)
{
	secret_string_free(c->access_key_id);
	secret_string_free(c->secret_access_key);
	secret_string_free(c->session_token);
	free(c->source);
	memset(c, 0, sizeof(*c));
}

static const char *nonempty_env(const char *name)
{
	const char *v = getenv(name);

	return v && *v ? v : NULL;
}

static int take(struct s3_credentials *out, const char *id, const char *secret, const char *token,
		const char *source)
{
	out->access_key_id = strdup(id);
	out->secret_access_key = strdup(secret);
	out->session_token = token && *token ? strdup(token) : NULL;
	out->source = strdup(source);
	if (!out->access_key_id || !out->secret_access_key || !out->source ||
	    (token && *token && !out->session_token)) {
		s3_credentials_free(out);
		return -ENOMEM;
	}
	return 0;
}

static const char *or_none(const char *path)
{
	return path ? path : "(no HOME)";
}

static int from_profile(const struct s3_profile *p, struct s3_credentials *out, struct error *err)
{
	char source[64 + 16];

	if (p->access_key_id && p->secret_access_key) {
		snprintf(source, sizeof(source), "profile %.64s", p->name);
		return take(out, p->access_key_id, p->secret_access_key, p->session_token, source);
	}
	if (p->access_key_id || p->secret_access_key)
		return error_set(err, -EINVAL, "S3 profile %s has %s but no %s (in %s or %s)",
				 p->name,
				 p->access_key_id ? "aws_access_key_id" : "aws_secret_access_key",
				 p->access_key_id ? "aws_secret_access_key" : "aws_access_key_id",
				 or_none(p->credentials_path), or_none(p->config_path));
	if (p->unsupported)
		return error_set(err, -ENOTSUP,
				 "S3 profile %s gets its credentials through a role, SSO or "
				 "credential_process, which is not supported: give it "
				 "aws_access_key_id and aws_secret_access_key, or set credentials "
				 "in the config",
				 p->name);
	if (p->named && !p->found)
		return error_set(err, -ENOENT, "S3 profile %s not found in %s or %s", p->name,
				 or_none(p->credentials_path), or_none(p->config_path));
	return error_set(err, -ENOENT,
			 "No S3 credentials: set credentials in the config, AWS_ACCESS_KEY_ID "
			 "and AWS_SECRET_ACCESS_KEY, or aws_access_key_id and "
			 "aws_secret_access_key of profile %s in %s",
			 p->name, or_none(p->credentials_path));
}

int s3_credentials_resolve(const struct archive_source_config *cfg,
			   const struct s3_profile *profile, struct s3_credentials *out,
			   struct error *err)
{
	const char *env_id = nonempty_env("AWS_ACCESS_KEY_ID");
	const char *env_secret = nonempty_env("AWS_SECRET_ACCESS_KEY");
	int ret;

	memset(out, 0, sizeof(*out));
	if (cfg->has_credentials)
		ret = take(out, cfg->access_key_id, cfg->secret_access_key, cfg->session_token,
			   "the config's credentials");
	else if (env_id && env_secret)
		ret = take(out, env_id, env_secret, nonempty_env("AWS_SESSION_TOKEN"),
			   "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY");
	else
		return from_profile(profile, out, err);
	return ret ? error_set(err, ret, "Out of memory for the S3 credentials") : 0;
}
