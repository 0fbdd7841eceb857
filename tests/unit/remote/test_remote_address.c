/* Literal server addresses (remote.h, remote_address_parse): IPv4:port and
 * [IPv6]:port only, with one message shape for every refusal. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>

#include "remote/remote.h"

static void ipv4_literal(void **state)
{
	struct remote_address a;
	assert_int_equal(remote_address_parse("127.0.0.1:4555", &a, NULL), 0);
	const struct sockaddr_in *sa = (const struct sockaddr_in *)&a.addr;
	assert_int_equal(sa->sin_family, AF_INET);
	assert_int_equal(ntohs(sa->sin_port), 4555);
	assert_int_equal(ntohl(sa->sin_addr.s_addr), 0x7f000001);
	assert_int_equal(a.len, sizeof(struct sockaddr_in));
	assert_string_equal(a.text, "127.0.0.1:4555");
	assert_int_equal(remote_address_parse("1.2.3.4:65535", &a, NULL), 0);
	assert_int_equal(remote_address_parse("0.0.0.0:1", &a, NULL), 0);
}

static void ipv6_literal(void **state)
{
	struct remote_address a;
	assert_int_equal(remote_address_parse("[::1]:4555", &a, NULL), 0);
	const struct sockaddr_in6 *sa = (const struct sockaddr_in6 *)&a.addr;
	assert_int_equal(sa->sin6_family, AF_INET6);
	assert_int_equal(ntohs(sa->sin6_port), 4555);
	assert_memory_equal(&sa->sin6_addr, &in6addr_loopback, sizeof(in6addr_loopback));
	assert_int_equal(a.len, sizeof(struct sockaddr_in6));
	assert_int_equal(remote_address_parse("[2001:db8::7]:80", &a, NULL), 0);
	assert_int_equal(remote_address_parse("[::ffff:10.0.0.1]:80", &a, NULL), 0);
}

static void refused(const char *text, const char *message)
{
	struct remote_address a;
	struct error err = {0};
	assert_int_equal(remote_address_parse(text, &a, &err), -EINVAL);
	assert_string_equal(err.text, message);
}

static void everything_else_is_refused(void **state)
{
	refused("localhost:4555", "invalid server address localhost:4555: not a literal IPv4 "
				  "address (host names are not resolved)");
	refused("example.com:80", "invalid server address example.com:80: not a literal IPv4 "
				  "address (host names are not resolved)");
	refused("127.0.0.1", "invalid server address 127.0.0.1: expected IPv4:port or [IPv6]:port");
	refused(
	    "127.0.0.1:99999",
	    "invalid server address 127.0.0.1:99999: the port must be a number from 1 to 65535");
	refused("127.0.0.1:0",
		"invalid server address 127.0.0.1:0: the port must be a number from 1 to 65535");
	refused("127.0.0.1:", "invalid server address 127.0.0.1:: the port must be a number from 1 "
			      "to 65535");
	refused("127.0.0.1:+80", "invalid server address 127.0.0.1:+80: the port must be a number "
				 "from 1 to 65535");
	refused("127.0.0.1:80x", "invalid server address 127.0.0.1:80x: the port must be a number "
				 "from 1 to 65535");
	refused("::1:4555", "invalid server address ::1:4555: an IPv6 address needs brackets: "
			    "[IPv6]:port");
	refused("[::1]4555", "invalid server address [::1]4555: expected [IPv6]:port");
	refused("[::1:4555", "invalid server address [::1:4555: expected [IPv6]:port");
	refused("[1.2.3.4]:80", "invalid server address [1.2.3.4]:80: not a literal IPv6 address");
	refused("", "invalid server address : expected IPv4:port or [IPv6]:port");
	refused("1.2.3:80", "invalid server address 1.2.3:80: not a literal IPv4 address (host "
			    "names are not resolved)");
	char long_text[200];
	memset(long_text, '1', sizeof(long_text) - 1);
	long_text[sizeof(long_text) - 1] = '\0';
	struct remote_address a;
	struct error err = {0};
	assert_int_equal(remote_address_parse(long_text, &a, &err), -EINVAL);
	assert_non_null(strstr(err.text, ": too long"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(ipv4_literal),
	    cmocka_unit_test(ipv6_literal),
	    cmocka_unit_test(everything_else_is_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
