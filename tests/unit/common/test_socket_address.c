/* socket_address_parse (common.h): the literal "IPv4:port" / "[IPv6]:port"
 * grammar shared by the remote layer's server addresses and the metrics
 * endpoint; the port floor; one reason per refusal, with nothing written. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "common/common.h"

#define NOT_IPV4      "not a literal IPv4 address (host names are not resolved)"
#define NOT_IPV6      "not a literal IPv6 address"
#define NO_PORT	      "expected IPv4:port or [IPv6]:port"
#define NO_BRACKET    "expected [IPv6]:port"
#define NEEDS_BRACKET "an IPv6 address needs brackets: [IPv6]:port"
#define PORT_FROM_0   "the port must be a number from 0 to 65535"
#define PORT_FROM_1   "the port must be a number from 1 to 65535"

static void ipv4_literal(void **state)
{
	struct sockaddr_storage ss;
	socklen_t len = 0;
	assert_int_equal(socket_address_parse("192.0.2.10:4555", false, &ss, &len, NULL), 0);
	const struct sockaddr_in *sa = (const struct sockaddr_in *)&ss;
	assert_int_equal(sa->sin_family, AF_INET);
	assert_int_equal(ntohs(sa->sin_port), 4555);
	assert_int_equal(ntohl(sa->sin_addr.s_addr), 0xc000020a);
	assert_int_equal(len, sizeof(struct sockaddr_in));
	assert_int_equal(socket_address_parse("1.2.3.4:65535", false, &ss, &len, NULL), 0);
	assert_int_equal(ntohs(sa->sin_port), 65535);
	assert_int_equal(socket_address_parse("0.0.0.0:1", false, &ss, &len, NULL), 0);
}

static void ipv6_literal(void **state)
{
	struct sockaddr_storage ss;
	socklen_t len = 0;
	assert_int_equal(socket_address_parse("[::1]:9101", false, &ss, &len, NULL), 0);
	const struct sockaddr_in6 *sa = (const struct sockaddr_in6 *)&ss;
	assert_int_equal(sa->sin6_family, AF_INET6);
	assert_int_equal(ntohs(sa->sin6_port), 9101);
	assert_memory_equal(&sa->sin6_addr, &in6addr_loopback, sizeof(in6addr_loopback));
	assert_int_equal(sa->sin6_scope_id, 0);
	assert_int_equal(len, sizeof(struct sockaddr_in6));
	assert_int_equal(socket_address_parse("[2001:db8::7]:80", false, &ss, &len, NULL), 0);
	assert_int_equal(socket_address_parse("[::ffff:10.0.0.1]:80", false, &ss, &len, NULL), 0);
	/* The longest literal there is (45 characters) still fits. */
	assert_int_equal(socket_address_parse("[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255]:1",
					      false, &ss, &len, NULL),
			 0);
}

static void port_zero_only_when_allowed(void **state)
{
	struct sockaddr_storage ss;
	socklen_t len = 0;
	const char *why = NULL;
	assert_int_equal(socket_address_parse("127.0.0.1:0", true, &ss, &len, &why), 0);
	assert_int_equal(ntohs(((const struct sockaddr_in *)&ss)->sin_port), 0);
	assert_int_equal(socket_address_parse("[::1]:0", true, &ss, &len, &why), 0);
	assert_int_equal(len, sizeof(struct sockaddr_in6));
	assert_null(why);
	assert_int_equal(socket_address_parse("127.0.0.1:0", false, &ss, &len, &why), -EINVAL);
	assert_string_equal(why, PORT_FROM_1);
}

/* Refused with `reason`, and neither output touched. */
static void refused(const char *text, bool port_zero_ok, const char *reason)
{
	struct sockaddr_storage ss, untouched;
	socklen_t len = 12345;
	const char *why = NULL;
	memset(&ss, 0x55, sizeof(ss));
	memcpy(&untouched, &ss, sizeof(ss));
	assert_int_equal(socket_address_parse(text, port_zero_ok, &ss, &len, &why), -EINVAL);
	assert_non_null(why);
	assert_string_equal(why, reason);
	assert_memory_equal(&ss, &untouched, sizeof(ss));
	assert_int_equal(len, 12345);
}

static void host_names_are_refused(void **state)
{
	refused("localhost:80", false, NOT_IPV4);
	refused("example.com:80", true, NOT_IPV4);
	refused("1.2.3:80", false, NOT_IPV4); /* inet_aton would take it */
	refused("[localhost]:80", false, NOT_IPV6);
	refused("[1.2.3.4]:80", false, NOT_IPV6);
}

static void the_port_is_required(void **state)
{
	refused("127.0.0.1", false, NO_PORT);
	refused("", true, NO_PORT);
	refused("[::1]", false, NO_BRACKET);
	refused("[::1]4555", false, NO_BRACKET);
	refused("[::1:4555", false, NO_BRACKET);
}

static void ipv6_needs_brackets(void **state)
{
	refused("::1:4555", false, NEEDS_BRACKET);
	refused("2001:db8::1:80", true, NEEDS_BRACKET);
}

static void bad_ports(void **state)
{
	const char *ports[] = {"",    "-1",   "+80",   " 80",	"80 ",
			       "80x", "0x50", "65536", "99999", "000080"};
	char text[32];
	for (size_t i = 0; i < ARRAY_SIZE(ports); i++) {
		snprintf(text, sizeof(text), "127.0.0.1:%s", ports[i]);
		refused(text, true, PORT_FROM_0);
		refused(text, false, PORT_FROM_1);
		snprintf(text, sizeof(text), "[::1]:%s", ports[i]);
		refused(text, true, PORT_FROM_0);
	}
	/* The port before the host: the reason names the first problem. */
	refused("localhost:0", false, PORT_FROM_1);
}

static void empty_hosts(void **state)
{
	refused(":80", true, NOT_IPV4);
	refused("[]:80", true, NOT_IPV6);
}

static void overlong_input(void **state)
{
	char text[1024];
	memset(text, '1', 1000);
	memcpy(text + 1000, ":80", 4);
	refused(text, true, NOT_IPV4);
	text[0] = '[';
	memcpy(text + 1000, "]:80", 5);
	refused(text, true, NOT_IPV6);
	/* One character past the longest literal: refused without a copy. */
	refused("[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.2555]:1", true, NOT_IPV6);
	memcpy(text, "127.0.0.1:", 10);
	memset(text + 10, '1', 100);
	text[110] = '\0';
	refused(text, true, PORT_FROM_0);
}

static void reason_is_optional(void **state)
{
	struct sockaddr_storage ss;
	socklen_t len;
	assert_int_equal(socket_address_parse("localhost:80", false, &ss, &len, NULL), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(ipv4_literal),
	    cmocka_unit_test(ipv6_literal),
	    cmocka_unit_test(port_zero_only_when_allowed),
	    cmocka_unit_test(host_names_are_refused),
	    cmocka_unit_test(the_port_is_required),
	    cmocka_unit_test(ipv6_needs_brackets),
	    cmocka_unit_test(bad_ports),
	    cmocka_unit_test(empty_hosts),
	    cmocka_unit_test(overlong_input),
	    cmocka_unit_test(reason_is_optional),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
