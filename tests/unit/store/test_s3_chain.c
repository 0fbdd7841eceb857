/* Where the S3 store's credentials, region and endpoint come from, in the
 * AWS SDKs' order: the config, the environment, the profile in the shared
 * files (HOME/.aws or AWS_CONFIG_FILE / AWS_SHARED_CREDENTIALS_FILE), with
 * AWS_PROFILE or the config's `profile` choosing it. Each test runs with a
 * scratch HOME and a clean AWS environment. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "store/s3_internal.h"

static char home[256];

static const char *const aws_env[] = {
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
};

static int setup(void **state)
{
	(void)state;
	char aws[300];

	snprintf(home, sizeof(home), "/tmp/ubiblk-s3-chain-XXXXXX");
	if (!mkdtemp(home))
		return -1;
	snprintf(aws, sizeof(aws), "%s/.aws", home);
	mkdir(aws, 0700);
	setenv("HOME", home, 1);
	for (size_t i = 0; i < ARRAY_SIZE(aws_env); i++)
		unsetenv(aws_env[i]);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[300];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", home);
	return system(cmd) == 0 ? 0 : -1;
}

static void write_home_file(const char *name, const char *text)
{
	char path[300];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", home, name);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static struct archive_source_config s3_config(void)
{
	struct archive_source_config cfg = {
	    .store = ARCHIVE_STORE_S3, .bucket = (char *)"b", .connections = 16};
	return cfg;
}

/* Resolves credentials; the result's fields as "id secret token source". */
static int resolve(const struct archive_source_config *cfg, char *out, size_t size,
		   struct error *err)
{
	struct s3_profile p;
	struct s3_credentials c;
	int ret = s3_profile_load(cfg->profile, &p, err);

	if (ret)
		return ret;
	ret = s3_credentials_resolve(cfg, &p, &c, err);
	if (!ret) {
		snprintf(out, size, "%s %s %s %s", c.access_key_id, c.secret_access_key,
			 c.session_token ? c.session_token : "-", c.source);
		s3_credentials_free(&c);
	}
	s3_profile_free(&p);
	return ret;
}

static void expect_credentials(const struct archive_source_config *cfg, const char *expected)
{
	char got[512];
	struct error err = {0};

	if (resolve(cfg, got, sizeof(got), &err))
		fail_msg("no credentials: %s", err.text);
	if (strcmp(got, expected) != 0)
		fail_msg("got \"%s\", expected \"%s\"", got, expected);
}

static void expect_no_credentials(const struct archive_source_config *cfg, int code,
				  const char *text)
{
	char got[512];
	struct error err = {0};

	assert_int_equal(resolve(cfg, got, sizeof(got), &err), code);
	if (!strstr(err.text, text))
		fail_msg("\"%s\" lacks \"%s\"", err.text, text);
}

static const char shared_credentials[] = "# comment\n"
					 "[default]\n"
					 "aws_access_key_id = DEFAULTID\n"
					 "aws_secret_access_key = defaultsecret\n"
					 "\n"
					 "[ops]\n"
					 "  ; indented comment\n"
					 "aws_access_key_id=OPSID\n"
					 "aws_secret_access_key =  ops/secret+x==  \n"
					 "aws_session_token = opstoken\n"
					 "[profile ops]\n"
					 "aws_access_key_id = NOTTHISONE\n";

static const char shared_config[] = "[default]\n"
				    "region = eu-west-1\n"
				    "[profile ops]\n"
				    "region = eu-central-1\n"
				    "endpoint_url = https://ops.example.com\n"
				    "aws_access_key_id = CONFIGID\n"
				    "aws_secret_access_key = configsecret\n"
				    "s3 =\n"
				    "  addressing_style = path\n"
				    "[ops]\n"
				    "region = not-a-profile-section\n"
				    "[profile role]\n"
				    "role_arn = arn:aws:iam::123:role/x\n"
				    "source_profile = default\n"
				    "[profile half]\n"
				    "aws_access_key_id = HALF\n";

static void test_config_credentials_win(void **state)
{
	(void)state;
	struct archive_source_config cfg = s3_config();

	write_home_file(".aws/credentials", shared_credentials);
	setenv("AWS_ACCESS_KEY_ID", "ENVID", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "envsecret", 1);
	setenv("AWS_SESSION_TOKEN", "envtoken", 1);
	cfg.has_credentials = true;
	cfg.access_key_id = (char *)"CFGID";
	cfg.secret_access_key = (char *)"cfgsecret";
	/* The config's keys replace the chain: no token from the environment. */
	expect_credentials(&cfg, "CFGID cfgsecret - the config's credentials");
	cfg.session_token = (char *)"cfgtoken";
	expect_credentials(&cfg, "CFGID cfgsecret cfgtoken the config's credentials");
}

static void test_environment_before_profile(void **state)
{
	(void)state;
	struct archive_source_config cfg = s3_config();

	write_home_file(".aws/credentials", shared_credentials);
	setenv("AWS_ACCESS_KEY_ID", "ENVID", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "envsecret", 1);
	expect_credentials(&cfg, "ENVID envsecret - AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY");
	setenv("AWS_SESSION_TOKEN", "envtoken", 1);
	/* Even a profile named in the config loses to the environment. */
	cfg.profile = (char *)"ops";
	expect_credentials(&cfg,
			   "ENVID envsecret envtoken AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY");
	/* Half an environment pair is no pair: the profile answers. */
	unsetenv("AWS_SECRET_ACCESS_KEY");
	expect_credentials(&cfg, "OPSID ops/secret+x== opstoken profile ops");
}

static void test_profile_selection(void **state)
{
	(void)state;
	struct archive_source_config cfg = s3_config();

	write_home_file(".aws/credentials", shared_credentials);
	write_home_file(".aws/config", shared_config);
	expect_credentials(&cfg, "DEFAULTID defaultsecret - profile default");
	setenv("AWS_PROFILE", "ops", 1);
	/* The credentials file's keys win over the config file's. */
	expect_credentials(&cfg, "OPSID ops/secret+x== opstoken profile ops");
	/* The config's `profile` wins over AWS_PROFILE. */
	cfg.profile = (char *)"default";
	expect_credentials(&cfg, "DEFAULTID defaultsecret - profile default");
}

static void test_config_file_only_profile(void **state)
{
	(void)state;
	struct archive_source_config cfg = s3_config();

	write_home_file(".aws/config", shared_config);
	cfg.profile = (char *)"ops";
	expect_credentials(&cfg, "CONFIGID configsecret - profile ops");
}

static void test_file_locations_from_environment(void **state)
{
	(void)state;
	struct archive_source_config cfg = s3_config();
	char path[300];

	write_home_file("creds-elsewhere", "[x]\naws_access_key_id = ELSEWHERE\n"
					   "aws_secret_access_key = s\n");
	write_home_file(".aws/credentials", "[x]\naws_access_key_id = HOME\n"
					    "aws_secret_access_key = s\n");
	cfg.profile = (char *)"x";
	expect_credentials(&cfg, "HOME s - profile x");
	snprintf(path, sizeof(path), "%s/creds-elsewhere", home);
	setenv("AWS_SHARED_CREDENTIALS_FILE", path, 1);
	expect_credentials(&cfg, "ELSEWHERE s - profile x");
	/* "~/" means HOME. */
	setenv("AWS_SHARED_CREDENTIALS_FILE", "~/creds-elsewhere", 1);
	expect_credentials(&cfg, "ELSEWHERE s - profile x");
}

static void test_missing_and_unusable_profiles(void **state)
{
	(void)state;
	struct archive_source_config cfg = s3_config();

	expect_no_credentials(&cfg, -ENOENT, "No S3 credentials: set credentials in the config");
	write_home_file(".aws/config", shared_config);
	cfg.profile = (char *)"nosuch";
	expect_no_credentials(&cfg, -ENOENT, "S3 profile nosuch not found in");
	cfg.profile = (char *)"role";
	expect_no_credentials(&cfg, -ENOTSUP, "through a role, SSO or credential_process");
	cfg.profile = (char *)"half";
	expect_no_credentials(&cfg, -EINVAL,
			      "S3 profile half has aws_access_key_id but no aws_secret_access_key");
}

static char *region_of(const struct archive_source_config *cfg, struct error *err)
{
	struct s3_profile p;
	char *region = NULL;

	assert_int_equal(s3_profile_load(cfg->profile, &p, err), 0);
	if (s3_region_resolve(cfg, &p, &region, err))
		region = NULL;
	s3_profile_free(&p);
	return region;
}

static void expect_region(const struct archive_source_config *cfg, const char *expected)
{
	struct error err = {0};
	char *region = region_of(cfg, &err);

	if (!region)
		fail_msg("no region: %s", err.text);
	assert_string_equal(region, expected);
	free(region);
}

static void test_region_precedence(void **state)
{
	(void)state;
	struct archive_source_config cfg = s3_config();
	struct error err = {0};

	assert_null(region_of(&cfg, &err));
	assert_non_null(strstr(err.text, "No S3 region"));
	write_home_file(".aws/config", shared_config);
	expect_region(&cfg, "eu-west-1");
	cfg.profile = (char *)"ops";
	expect_region(&cfg, "eu-central-1");
	setenv("AWS_DEFAULT_REGION", "us-west-1", 1);
	expect_region(&cfg, "us-west-1");
	setenv("AWS_REGION", "us-west-2", 1);
	expect_region(&cfg, "us-west-2");
	cfg.region = (char *)"auto";
	expect_region(&cfg, "auto");
	cfg.region = (char *)"us-east-1:evil";
	assert_null(region_of(&cfg, &err));
	assert_non_null(strstr(err.text, "Invalid S3 region"));
}

static void expect_endpoint(const struct archive_source_config *cfg, const char *expected)
{
	struct s3_profile p;
	struct error err = {0};
	char *endpoint;

	assert_int_equal(s3_profile_load(cfg->profile, &p, &err), 0);
	assert_int_equal(s3_endpoint_resolve(cfg, &p, "eu-north-1", &endpoint, &err), 0);
	assert_string_equal(endpoint, expected);
	free(endpoint);
	s3_profile_free(&p);
}

static void test_endpoint_precedence(void **state)
{
	(void)state;
	struct archive_source_config cfg = s3_config();

	expect_endpoint(&cfg, "https://s3.eu-north-1.amazonaws.com");
	write_home_file(".aws/config", shared_config);
	cfg.profile = (char *)"ops";
	expect_endpoint(&cfg, "https://ops.example.com");
	setenv("AWS_ENDPOINT_URL", "http://all.example.com", 1);
	expect_endpoint(&cfg, "http://all.example.com");
	setenv("AWS_ENDPOINT_URL_S3", "http://s3only.example.com", 1);
	expect_endpoint(&cfg, "http://s3only.example.com");
	setenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true", 1);
	expect_endpoint(&cfg, "https://s3.eu-north-1.amazonaws.com");
	cfg.endpoint = (char *)"http://127.0.0.1:9000";
	expect_endpoint(&cfg, "http://127.0.0.1:9000");
	unsetenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS");
	expect_endpoint(&cfg, "http://127.0.0.1:9000");
}

/* store_open resolves everything without touching the network, and says
 * what is missing. */
static void test_store_open_without_network(void **state)
{
	(void)state;
	struct archive_source_config cfg = s3_config();
	struct store *s = NULL;
	struct error err = {0};

	assert_int_equal(store_open(&cfg, NULL, &s, &err), -ENOENT);
	assert_null(s);
	assert_non_null(strstr(err.text, "No S3 credentials"));
	cfg.has_credentials = true;
	cfg.access_key_id = (char *)"AKID";
	cfg.secret_access_key = (char *)"secret";
	assert_int_equal(store_open(&cfg, NULL, &s, &err), -EINVAL);
	assert_non_null(strstr(err.text, "No S3 region"));
	cfg.region = (char *)"us-east-1";
	cfg.endpoint = (char *)"s3.example.com";
	assert_int_equal(store_open(&cfg, NULL, &s, &err), -EINVAL);
	assert_non_null(strstr(err.text, "Invalid S3 endpoint s3.example.com"));
	cfg.endpoint = (char *)"http://192.0.2.1:9";
	assert_int_equal(store_open(&cfg, NULL, &s, &err), 0);
	assert_int_equal(store_concurrency(s), 16);
	store_close(s);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(test_config_credentials_win),
	    T(test_environment_before_profile),
	    T(test_profile_selection),
	    T(test_config_file_only_profile),
	    T(test_file_locations_from_environment),
	    T(test_missing_and_unusable_profiles),
	    T(test_region_precedence),
	    T(test_endpoint_precedence),
	    T(test_store_open_without_network),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
