/* Load-time validation (validate.c): the five stripe source rules in their
 * order and with their texts, then the ranges checked at load, and the
 * metrics_listen address (loopback only). */
#include "config_test_util.h"

#include <netinet/in.h>
#include <sys/socket.h>

#define SOURCE_HEAD "path: d\nmetadata_path: m\ncopy_on_read: true\n"

static void expect_valid(const char *yaml)
{
	struct device_config cfg;
	parse_ok(yaml, &cfg);
	device_config_free(&cfg);
}

static void test_path_required(void **state)
{
	(void)state;
	parse_fails("socket: s\n", "config: missing field `path`");
	/* A plain string field takes an empty value as the empty string. */
	parse_fails("path:\n", "config: path: must not be empty");
	parse_fails("path: \"\"\n", "config: path: must not be empty");
}

static void test_rule1_one_stripe_source(void **state)
{
	(void)state;
	parse_fails(
	    SOURCE_HEAD "image_path: base.raw\nstripe_source: {source: raw, path: b}\n",
	    "config: image_path and stripe_source: Only one stripe source may be specified");
	parse_fails(SOURCE_HEAD "image_path: base.raw\n"
				"stripe_source: {source: archive, type: filesystem, path: /a}\n",
		    "Only one stripe source may be specified");
}

static void test_rule2_psk_pair(void **state)
{
	(void)state;
	parse_fails(SOURCE_HEAD "stripe_source: {source: remote, address: a, psk_identity: id}\n",
		    "config: stripe_source: Both psk_identity and psk_secret must be specified "
		    "together.");
	parse_fails(SOURCE_HEAD "stripe_source: {source: remote, address: a,\n"
				"  psk_secret: \"MDEyMzQ1Njc4OUFCQ0RFRg==\"}\n",
		    "Both psk_identity and psk_secret must be specified together.");
}

static void test_psk_content(void **state)
{
	(void)state;
	parse_fails(SOURCE_HEAD "stripe_source: {source: remote, address: a, psk_identity: \"\",\n"
				"  psk_secret: \"MDEyMzQ1Njc4OUFCQ0RFRg==\"}\n",
		    "config: stripe_source.psk_identity: PSK identity must not be empty");
	parse_fails(SOURCE_HEAD "stripe_source: {source: remote, address: a, psk_identity: i,\n"
				"  psk_secret: \"MDEyMzQ1Njc=\"}\n",
		    "config: stripe_source.psk_secret: PSK secret must be at least 16 bytes long");
}

static void test_rules3_4_copy_on_read(void **state)
{
	(void)state;
	parse_fails("path: d\nmetadata_path: m\nstripe_source: {source: remote, address: a}\n",
		    "config: copy_on_read must be enabled when using remote stripe source.");
	parse_fails("path: d\nmetadata_path: m\ncopy_on_read: false\n"
		    "stripe_source: {source: archive, type: filesystem, path: /a}\n",
		    "config: copy_on_read must be enabled when using archive stripe source.");
	/* A raw source works without copy_on_read. */
	expect_valid("path: d\nmetadata_path: m\nstripe_source: {source: raw, path: b}\n");
}

static void test_rule5_metadata_path(void **state)
{
	(void)state;
	parse_fails("path: d\nstripe_source: {source: raw, path: b}\n",
		    "config: metadata_path must be specified when using a stripe source.");
	parse_fails("path: d\nimage_path: b\n",
		    "metadata_path must be specified when using a stripe source.");
	parse_fails("path: d\ncopy_on_read: true\nstripe_source: {source: remote, address: a}\n",
		    "metadata_path must be specified when using a stripe source.");
	/* metadata_path alone is fine. */
	expect_valid("path: d\nmetadata_path: m\n");
}

static void test_rule_order(void **state)
{
	(void)state;
	/* Rule #1 is reported before #5 and #3. */
	parse_fails("path: d\nimage_path: b\nstripe_source: {source: remote, address: a}\n",
		    "Only one stripe source may be specified");
	/* #2 before #3. */
	parse_fails("path: d\nstripe_source: {source: remote, address: a, psk_identity: x}\n",
		    "Both psk_identity and psk_secret");
	/* #3 before #5. */
	parse_fails("path: d\nstripe_source: {source: remote, address: a}\n",
		    "copy_on_read must be enabled");
}

static void test_num_queues_range(void **state)
{
	(void)state;
	expect_valid("path: d\nnum_queues: 1\n");
	expect_valid("path: d\nnum_queues: 64\n");
	parse_fails("path: d\nnum_queues: 0\n", "config: num_queues: 0 is out of range 1..64");
	parse_fails("path: d\nnum_queues: 65\n", "config: num_queues: 65 is out of range 1..64");
}

static void test_queue_size_range(void **state)
{
	(void)state;
	expect_valid("path: d\nqueue_size: 1\n");
	expect_valid("path: d\nqueue_size: 32768\n");
	parse_fails("path: d\nqueue_size: 0\n",
		    "config: queue_size: 0 is not a non-zero power of two");
	parse_fails("path: d\nqueue_size: 100\n",
		    "config: queue_size: 100 is not a non-zero power of two");
	parse_fails("path: d\nqueue_size: 65536\n",
		    "config: queue_size: 65536 is out of range 1..32768");
}

static void test_segment_ranges(void **state)
{
	(void)state;
	expect_valid("path: d\nseg_size_max: 512\nseg_count_max: 1\n");
	expect_valid("path: d\nseg_size_max: 1048576\nseg_count_max: 256\n");
	parse_fails("path: d\nseg_size_max: 511\n",
		    "config: seg_size_max: 511 is out of range 512..1048576");
	parse_fails("path: d\nseg_size_max: 1048577\n",
		    "config: seg_size_max: 1048577 is out of range 512..1048576");
	parse_fails("path: d\nseg_count_max: 0\n",
		    "config: seg_count_max: 0 is out of range 1..256");
	parse_fails("path: d\nseg_count_max: 257\n",
		    "config: seg_count_max: 257 is out of range 1..256");
}

static void test_poll_timeout_range(void **state)
{
	(void)state;
	expect_valid("path: d\npoll_queue_timeout_us: 0\n");
	expect_valid("path: d\npoll_queue_timeout_us: 10000000\n");
	parse_fails("path: d\npoll_queue_timeout_us: 10000001\n",
		    "config: poll_queue_timeout_us: 10000001 is out of range 0..10000000");
}

static void test_cpus_length(void **state)
{
	(void)state;
	expect_valid("path: d\nnum_queues: 2\ncpus: [1, 2]\n");
	parse_fails("path: d\ncpus: [1, 2]\n", "config: cpus length must equal num_queues");
	parse_fails(
	    "path: d\nnum_queues: 2\ncpus: [1]\n",
	    "config: cpus length must equal num_queues (cpus has 1 entries, num_queues is 2)");
	parse_fails("path: d\ncpus: []\n", "cpus length must equal num_queues");
}

static void test_s3_connections(void **state)
{
	(void)state;
	expect_valid(SOURCE_HEAD "stripe_source: {source: archive, type: s3, bucket: b, "
				 "connections: 256}\n");
	expect_valid(SOURCE_HEAD "stripe_source: {source: archive, type: s3, bucket: b, "
				 "connections: 1}\n");
	parse_fails(SOURCE_HEAD "stripe_source: {source: archive, type: s3, bucket: b, "
				"connections: 0}\n",
		    "config: stripe_source.connections: 0 is out of range 1..256");
	parse_fails(SOURCE_HEAD "stripe_source: {source: archive, type: s3, bucket: b, "
				"connections: 257}\n",
		    "stripe_source.connections: 257 is out of range 1..256");
	/* A filesystem archive ignores the field. */
	expect_valid(SOURCE_HEAD "stripe_source: {source: archive, type: filesystem, path: p, "
				 "connections: 0}\n");
}

static void test_s3_max_attempts_and_addressing(void **state)
{
	(void)state;
	expect_valid(SOURCE_HEAD "stripe_source: {source: archive, type: s3, bucket: b, "
				 "max_attempts: 1, addressing: virtual}\n");
	expect_valid(SOURCE_HEAD "stripe_source: {source: archive, type: s3, bucket: b, "
				 "max_attempts: 10, addressing: auto}\n");
	parse_fails(SOURCE_HEAD "stripe_source: {source: archive, type: s3, bucket: b, "
				"max_attempts: 0}\n",
		    "config: stripe_source.max_attempts: 0 is out of range 1..10");
	parse_fails(SOURCE_HEAD "stripe_source: {source: archive, type: s3, bucket: b, "
				"max_attempts: 11}\n",
		    "stripe_source.max_attempts: 11 is out of range 1..10");
	parse_fails(SOURCE_HEAD "stripe_source: {source: archive, type: s3, bucket: b, "
				"addressing: dns}\n",
		    "stripe_source.addressing: unknown variant `dns`, expected one of `auto`, "
		    "`path`, `virtual`");
}

static void test_remote_connections(void **state)
{
	(void)state;
	expect_valid(SOURCE_HEAD "stripe_source: {source: remote, address: \"127.0.0.1:1\", "
				 "connections: 64}\n");
	expect_valid(SOURCE_HEAD "stripe_source: {source: remote, address: \"127.0.0.1:1\", "
				 "connections: 1}\n");
	parse_fails(SOURCE_HEAD "stripe_source: {source: remote, address: \"127.0.0.1:1\", "
				"connections: 0}\n",
		    "config: stripe_source.connections: 0 is out of range 1..64");
	parse_fails(SOURCE_HEAD "stripe_source: {source: remote, address: \"127.0.0.1:1\", "
				"connections: 65}\n",
		    "config: stripe_source.connections: 65 is out of range 1..64");
	parse_fails(SOURCE_HEAD "stripe_source: {source: remote, address: \"127.0.0.1:1\", "
				"connections: many}\n",
		    "stripe_source.connections");
}

static void test_s3_prefix(void **state)
{
	(void)state;
	static const char *const unsafe[] = {"valid/../invalid", "..", "../x", "a/..", ".", "./a"};
	static const char *const safe[] = {"",	   "a/b", "a/./b", "a/.", "/./a",
					   "a//b", "/a",  "..a",   "a..", "a/.../b"};
	char yaml[256];

	for (size_t i = 0; i < sizeof(unsafe) / sizeof(unsafe[0]); i++) {
		char expected[128];
		assert_false(s3_prefix_is_safe(unsafe[i]));
		snprintf(yaml, sizeof(yaml),
			 SOURCE_HEAD "stripe_source: {source: archive, type: s3, bucket: b, "
				     "prefix: \"%s\"}\n",
			 unsafe[i]);
		snprintf(expected, sizeof(expected),
			 "config: stripe_source.prefix: Invalid S3 prefix (contains . or .. "
			 "components): %s",
			 unsafe[i]);
		parse_fails(yaml, expected);
	}
	parse_fails(SOURCE_HEAD "stripe_source: {source: archive, type: s3, bucket: b, "
				"prefix: \"x/\\n/../y\"}\n",
		    "Invalid S3 prefix (contains . or .. components): x/\\n/../y");
	for (size_t i = 0; i < sizeof(safe) / sizeof(safe[0]); i++) {
		assert_true(s3_prefix_is_safe(safe[i]));
		snprintf(yaml, sizeof(yaml),
			 SOURCE_HEAD "stripe_source: {source: archive, type: s3, bucket: b, "
				     "prefix: \"%s\"}\n",
			 safe[i]);
		expect_valid(yaml);
	}
}

static void test_metrics_listen(void **state)
{
	(void)state;
	struct device_config cfg;
	parse_ok("path: d\n", &cfg);
	assert_null(cfg.metrics_listen); /* off by default */
	device_config_free(&cfg);
	parse_ok("path: d\nmetrics_listen: 127.0.0.1:9101\n", &cfg);
	assert_string_equal(cfg.metrics_listen, "127.0.0.1:9101");
	struct sockaddr_storage addr;
	uint32_t len;
	assert_int_equal(metrics_listen_parse(cfg.metrics_listen, &addr, &len, NULL), 0);
	assert_int_equal(addr.ss_family, AF_INET);
	assert_int_equal(len, sizeof(struct sockaddr_in));
	assert_int_equal(ntohs(((struct sockaddr_in *)&addr)->sin_port), 9101);
	device_config_free(&cfg);
	assert_int_equal(metrics_listen_parse("[::1]:0", &addr, &len, NULL), 0);
	assert_int_equal(addr.ss_family, AF_INET6);
	assert_int_equal(len, sizeof(struct sockaddr_in6));
	expect_valid("path: d\nmetrics_listen: 127.8.9.10:65535\n");
	expect_valid("path: d\nmetrics_listen: \"[::1]:9101\"\n");
	expect_valid("path: d\nmetrics_listen: null\n");
	parse_fails("path: d\nmetrics_listen: 0.0.0.0:9101\n",
		    "config: metrics_listen: 0.0.0.0:9101 is not a loopback address: the metrics "
		    "endpoint has no authentication, so it only listens on 127.0.0.0/8 or [::1] "
		    "(see docs/metrics.md)");
	parse_fails("path: d\nmetrics_listen: 10.1.2.3:80\n",
		    "config: metrics_listen: 10.1.2.3:80 is not a loopback address: the metrics "
		    "endpoint has no authentication, so it only listens on 127.0.0.0/8 or [::1] "
		    "(see docs/metrics.md)");
	parse_fails("path: d\nmetrics_listen: \"[::]:80\"\n",
		    "config: metrics_listen: [::]:80 is not a loopback address: the metrics "
		    "endpoint has no authentication, so it only listens on 127.0.0.0/8 or [::1] "
		    "(see docs/metrics.md)");
	parse_fails("path: d\nmetrics_listen: \"[::ffff:127.0.0.1]:80\"\n",
		    "config: metrics_listen: [::ffff:127.0.0.1]:80 is not a loopback address: the "
		    "metrics endpoint has no authentication, so it only listens on 127.0.0.0/8 or "
		    "[::1] (see docs/metrics.md)");
	/* The reasons are common.h's socket_address_parse(), shared with the
	 * remote layer's server addresses. */
	parse_fails("path: d\nmetrics_listen: localhost:9101\n",
		    "config: metrics_listen: localhost:9101: not a literal IPv4 address (host "
		    "names are not resolved)");
	parse_fails("path: d\nmetrics_listen: \"::1:9101\"\n",
		    "config: metrics_listen: ::1:9101: an IPv6 address needs brackets: "
		    "[IPv6]:port");
	parse_fails("path: d\nmetrics_listen: 127.0.0.1\n",
		    "config: metrics_listen: 127.0.0.1: expected IPv4:port or [IPv6]:port");
	parse_fails("path: d\nmetrics_listen: \"[::1]9101\"\n",
		    "config: metrics_listen: [::1]9101: expected [IPv6]:port");
	parse_fails("path: d\nmetrics_listen: \":9101\"\n",
		    "config: metrics_listen: :9101: not a literal IPv4 address (host names are "
		    "not resolved)");
	parse_fails("path: d\nmetrics_listen: 127.0.0.1:65536\n",
		    "config: metrics_listen: 127.0.0.1:65536: the port must be a number from 0 "
		    "to 65535");
	parse_fails("path: d\nmetrics_listen: 127.0.0.1:-1\n",
		    "config: metrics_listen: 127.0.0.1:-1: the port must be a number from 0 to "
		    "65535");
	parse_fails("path: d\nmetrics_listen: \"127.0.0.1:\"\n",
		    "config: metrics_listen: 127.0.0.1:: the port must be a number from 0 to "
		    "65535");
	parse_fails("path: d\nmetrics_listen: 127.0.0.1:80x\n",
		    "config: metrics_listen: 127.0.0.1:80x: the port must be a number from 0 to "
		    "65535");
	parse_fails(
	    "path: d\nmetrics_listen: [1, 2]\n",
	    "config: Failed to parse device config YAML: metrics_listen: invalid type: sequence, "
	    "expected a string at line 2 column 17");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_path_required),
	    cmocka_unit_test(test_rule1_one_stripe_source),
	    cmocka_unit_test(test_rule2_psk_pair),
	    cmocka_unit_test(test_psk_content),
	    cmocka_unit_test(test_rules3_4_copy_on_read),
	    cmocka_unit_test(test_rule5_metadata_path),
	    cmocka_unit_test(test_rule_order),
	    cmocka_unit_test(test_num_queues_range),
	    cmocka_unit_test(test_queue_size_range),
	    cmocka_unit_test(test_segment_ranges),
	    cmocka_unit_test(test_poll_timeout_range),
	    cmocka_unit_test(test_cpus_length),
	    cmocka_unit_test(test_s3_connections),
	    cmocka_unit_test(test_s3_max_attempts_and_addressing),
	    cmocka_unit_test(test_remote_connections),
	    cmocka_unit_test(test_s3_prefix),
	    cmocka_unit_test(test_metrics_listen),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
