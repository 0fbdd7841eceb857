/* The AWS shared config files, as the AWS SDKs and CLI read them: INI-style
 * sections, `key = value` lines, full-line comments starting with # or ;,
 * and indented lines that belong to the property above (sub-properties such
 * as `s3 =` blocks, which this store does not use). The config file names a
 * profile [profile NAME] (the default one [default] or [profile default]);
 * the credentials file names it [NAME]. A section may appear more than
 * once; later keys win. */
#include "s3_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Keys that give a profile its credentials through a role, SSO or a helper
 * process; such a profile has no static keys we could sign with. */
static const char *const unsupported_keys[] = {
    "role_arn",	   "credential_source", "credential_process",
    "sso_session", "sso_start_url",	"web_identity_token_file",
};

static char *trim(char *s)
{
	char *end;

	while (*s == ' ' || *s == '\t')
		s++;
	end = s + strlen(s);
	while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r' || end[-1] == '\n'))
		end--;
	*end = '\0';
	return s;
}

/* The profile a section header names, or NULL for sections that are not
 * profiles (e.g. [sso-session x], [services x], or a bare name in the
 * config file). */
static const char *section_profile(char *header, bool config_file)
{
	char *name = trim(header);

	if (!config_file)
		return name;
	if (strcmp(name, "default") == 0)
		return name;
	if (strncmp(name, "profile", 7) == 0 && (name[7] == ' ' || name[7] == '\t'))
		return trim(name + 8);
	return NULL;
}

static int set_value(char **field, const char *value, bool secret)
{
	char *copy = strdup(value);

	if (!copy)
		return -ENOMEM;
	if (*field) {
		if (secret)
			secret_wipe(*field, strlen(*field));
		free(*field);
	}
	*field = copy;
	return 0;
}

static int take_property(struct s3_profile *p, const char *key, const char *value)
{
	if (strcasecmp(key, "aws_access_key_id") == 0)
		return set_value(&p->access_key_id, value, true);
	if (strcasecmp(key, "aws_secret_access_key") == 0)
		return set_value(&p->secret_access_key, value, true);
	if (strcasecmp(key, "aws_session_token") == 0)
		return set_value(&p->session_token, value, true);
	if (strcasecmp(key, "region") == 0)
		return set_value(&p->region, value, false);
	if (strcasecmp(key, "endpoint_url") == 0)
		return set_value(&p->endpoint_url, value, false);
	for (size_t i = 0; i < ARRAY_SIZE(unsupported_keys); i++)
		if (strcasecmp(key, unsupported_keys[i]) == 0)
			p->unsupported = true;
	return 0;
}

/* Reads the profile's keys from one file into p (keys already set by an
 * earlier file are overwritten). A missing or unreadable file adds
 * nothing. */
static int read_file(const char *path, bool config_file, struct s3_profile *p)
{
	FILE *f = fopen(path, "re");
	char *line = NULL;
	size_t cap = 0;
	bool in_profile = false;
	int ret = 0;

	if (!f) {
		if (errno != ENOENT)
			log_msg(LOG_WARN, "S3: ignoring %s: %s", path, strerror(errno));
		return 0;
	}
	while (ret == 0 && getline(&line, &cap, f) >= 0) {
		bool indented = line[0] == ' ' || line[0] == '\t';
		char *text = trim(line);
		char *eq;

		if (*text == '\0' || *text == '#' || *text == ';')
			continue;
		if (*text == '[') {
			char *close = strrchr(text, ']');
			const char *name;

			if (!close) {
				in_profile = false;
				continue;
			}
			*close = '\0';
			name = section_profile(text + 1, config_file);
			in_profile = name && strcmp(name, p->name) == 0;
			if (in_profile)
				p->found = true;
			continue;
		}
		if (!in_profile || indented)
			continue;
		eq = strchr(text, '=');
		if (!eq)
			continue;
		*eq = '\0';
		ret = take_property(p, trim(text), trim(eq + 1));
	}
	if (line) {
		/* The buffer held secrets. */
		secret_wipe(line, cap);
		free(line);
	}
	fclose(f);
	return ret;
}

/* An environment path, else HOME/<fallback>; "~/" at the start means HOME.
 * NULL in *out (and 0) when neither is available. */
static int file_path(const char *env_name, const char *fallback, char **out)
{
	const char *env = getenv(env_name);
	const char *home = getenv("HOME");
	int n;

	*out = NULL;
	if (env && *env) {
		if (strncmp(env, "~/", 2) == 0 && home)
			n = asprintf(out, "%s/%s", home, env + 2);
		else
			n = asprintf(out, "%s", env);
	} else if (home && *home) {
		n = asprintf(out, "%s/%s", home, fallback);
	} else {
		return 0;
	}
	if (n < 0) {
		*out = NULL;
		return -ENOMEM;
	}
	return 0;
}

int s3_profile_load(const char *config_profile, struct s3_profile *out, struct error *err)
{
	const char *env_profile = getenv("AWS_PROFILE");
	const char *name = "default";
	int ret;

	memset(out, 0, sizeof(*out));
	if (config_profile && *config_profile) {
		name = config_profile;
		out->named = true;
	} else if (env_profile && *env_profile) {
		name = env_profile;
		out->named = true;
	}
	out->name = strdup(name);
	ret = out->name ? 0 : -ENOMEM;
	if (!ret)
		ret = file_path("AWS_CONFIG_FILE", ".aws/config", &out->config_path);
	if (!ret)
		ret = file_path("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials",
				&out->credentials_path);
	/* The credentials file is read last: its keys win. */
	if (!ret && out->config_path)
		ret = read_file(out->config_path, true, out);
	if (!ret && out->credentials_path)
		ret = read_file(out->credentials_path, false, out);
	if (ret) {
		s3_profile_free(out);
		return error_set(err, ret, "Failed to read the AWS shared config files: %s",
				 strerror(-ret));
	}
	return 0;
}

void s3_profile_free(struct s3_profile *p)
{
	free(p->name);
	secret_string_free(p->access_key_id);
	secret_string_free(p->secret_access_key);
	secret_string_free(p->session_token);
	free(p->region);
	free(p->endpoint_url);
	free(p->config_path);
	free(p->credentials_path);
	memset(p, 0, sizeof(*p));
}
