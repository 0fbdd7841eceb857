/* vhost-user message reading: header checks, size checks, descriptor rules,
 * disconnects and the abort descriptor. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/common.h"
#include "front_end.h"
#include "vhost/message_io.h"

struct pair {
	int front;
	int back;
};

static int setup(void **state)
{
	static struct pair p;
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return -1;
	p.front = sv[0];
	p.back = sv[1];
	*state = &p;
	return 0;
}

static int teardown(void **state)
{
	struct pair *p = *state;
	if (p->front >= 0)
		close(p->front);
	close(p->back);
	return 0;
}

static int receive(struct pair *p, struct vhost_user_message *msg, struct error *err)
{
	return vhost_user_receive(p->back, -1, msg, err);
}

static void expect_bad(struct pair *p, const char *fragment)
{
	struct vhost_user_message msg;
	struct error err = {.text = ""};
	assert_int_equal(receive(p, &msg, &err), -EBADMSG);
	assert_non_null(strstr(err.text, fragment));
	assert_int_equal(msg.fd_count, 0);
}

static void test_valid_message(void **state)
{
	struct pair *p = *state;
	fe_request_u64(p->front, VHOST_USER_SET_FEATURES, 0x1234);
	struct vhost_user_message msg;
	struct error err;
	assert_int_equal(receive(p, &msg, &err), 0);
	assert_int_equal(msg.hdr.request, VHOST_USER_SET_FEATURES);
	assert_int_equal(msg.hdr.size, 8);
	assert_int_equal(msg.payload.u64, 0x1234);
	assert_int_equal(msg.fd_count, 0);
}

static void test_bad_version(void **state)
{
	struct pair *p = *state;
	fe_send(p->front, VHOST_USER_GET_FEATURES, 0x2, NULL, 0, NULL, 0);
	expect_bad(p, "version");
}

static void test_reply_flag_on_request(void **state)
{
	struct pair *p = *state;
	fe_send(p->front, VHOST_USER_GET_FEATURES, VHOST_USER_VERSION | VHOST_USER_REPLY_FLAG, NULL,
		0, NULL, 0);
	expect_bad(p, "REPLY");
}

static void test_unknown_flag_bits(void **state)
{
	struct pair *p = *state;
	fe_send(p->front, VHOST_USER_GET_FEATURES, VHOST_USER_VERSION | 0x10, NULL, 0, NULL, 0);
	expect_bad(p, "unknown flag");
}

static void test_oversized_payload(void **state)
{
	struct pair *p = *state;
	/* Only the header: the size field alone must be rejected. */
	struct vhost_user_header hdr = {VHOST_USER_SET_CONFIG, VHOST_USER_VERSION,
					VHOST_USER_MAX_PAYLOAD + 1};
	assert_int_equal(send(p->front, &hdr, sizeof(hdr), 0), sizeof(hdr));
	expect_bad(p, "exceeds");
}

static void test_fixed_size_mismatch(void **state)
{
	struct pair *p = *state;
	uint32_t four = 4;
	fe_request(p->front, VHOST_USER_SET_FEATURES, &four, sizeof(four));
	expect_bad(p, "expected 8");

	uint8_t payload[8] = {0};
	fe_request(p->front, VHOST_USER_GET_FEATURES, payload, sizeof(payload));
	expect_bad(p, "expected 0");

	uint8_t addr[39] = {0};
	fe_request(p->front, VHOST_USER_SET_VRING_ADDR, addr, sizeof(addr));
	expect_bad(p, "expected 40");
}

static void test_fds_on_request_without_fds_are_closed(void **state)
{
	struct pair *p = *state;
	int before = fe_open_fd_count();
	int fd = eventfd(0, EFD_CLOEXEC);
	fe_send(p->front, VHOST_USER_GET_FEATURES, VHOST_USER_VERSION, NULL, 0, &fd, 1);
	close(fd);
	expect_bad(p, "unexpected file descriptor");
	assert_int_equal(fe_open_fd_count(), before);
}

static void test_fds_kept_on_kick(void **state)
{
	struct pair *p = *state;
	int fd = eventfd(0, EFD_CLOEXEC);
	uint64_t index = 0;
	fe_send(p->front, VHOST_USER_SET_VRING_KICK, VHOST_USER_VERSION, &index, sizeof(index), &fd,
		1);
	close(fd);
	struct vhost_user_message msg;
	struct error err;
	assert_int_equal(receive(p, &msg, &err), 0);
	assert_int_equal(msg.fd_count, 1);
	assert_true(msg.fds[0] >= 0);
	int before = fe_open_fd_count();
	vhost_user_message_close_fds(&msg);
	assert_int_equal(fe_open_fd_count(), before - 1);
	assert_int_equal(msg.fd_count, 0);
}

static void test_too_many_fds(void **state)
{
	struct pair *p = *state;
	int before = fe_open_fd_count();
	int fds[VHOST_USER_MAX_FDS + 1];
	for (unsigned int i = 0; i < ARRAY_SIZE(fds); i++)
		fds[i] = eventfd(0, EFD_CLOEXEC);
	uint8_t table[8] = {0};
	fe_send(p->front, VHOST_USER_SET_MEM_TABLE, VHOST_USER_VERSION, table, sizeof(table), fds,
		ARRAY_SIZE(fds));
	for (unsigned int i = 0; i < ARRAY_SIZE(fds); i++)
		close(fds[i]);
	expect_bad(p, "more than 32");
	assert_int_equal(fe_open_fd_count(), before);
}

static void test_disconnect_before_header(void **state)
{
	struct pair *p = *state;
	close(p->front);
	p->front = -1;
	struct vhost_user_message msg;
	struct error err;
	assert_int_equal(receive(p, &msg, &err), -ECONNRESET);
	assert_non_null(strstr(err.text, "disconnected"));
}

static void test_disconnect_inside_header(void **state)
{
	struct pair *p = *state;
	uint8_t partial[5] = {1, 0, 0, 0, 1};
	assert_int_equal(send(p->front, partial, sizeof(partial), 0), sizeof(partial));
	close(p->front);
	p->front = -1;
	struct vhost_user_message msg;
	struct error err;
	assert_int_equal(receive(p, &msg, &err), -ECONNRESET);
	assert_non_null(strstr(err.text, "inside a header"));
}

static void test_disconnect_inside_payload(void **state)
{
	struct pair *p = *state;
	struct vhost_user_header hdr = {VHOST_USER_SET_FEATURES, VHOST_USER_VERSION, 8};
	assert_int_equal(send(p->front, &hdr, sizeof(hdr), 0), sizeof(hdr));
	assert_int_equal(send(p->front, "abc", 3, 0), 3);
	close(p->front);
	p->front = -1;
	struct vhost_user_message msg;
	struct error err;
	assert_int_equal(receive(p, &msg, &err), -ECONNRESET);
	assert_non_null(strstr(err.text, "3 of 8"));
}

static void test_message_in_pieces(void **state)
{
	struct pair *p = *state;
	struct vhost_user_header hdr = {VHOST_USER_SET_PROTOCOL_FEATURES, VHOST_USER_VERSION, 8};
	uint64_t value = 0x8209;
	uint8_t bytes[sizeof(hdr) + sizeof(value)];
	memcpy(bytes, &hdr, sizeof(hdr));
	memcpy(bytes + sizeof(hdr), &value, sizeof(value));
	/* The second half arrives while the receiver is already waiting. */
	assert_int_equal(send(p->front, bytes, 7, 0), 7);
	pid_t child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		usleep(50000);
		_exit(send(p->front, bytes + 7, sizeof(bytes) - 7, 0) == sizeof(bytes) - 7 ? 0 : 1);
	}
	struct vhost_user_message msg;
	struct error err;
	assert_int_equal(receive(p, &msg, &err), 0);
	assert_int_equal(msg.payload.u64, 0x8209);
	int status;
	assert_int_equal(waitpid(child, &status, 0), child);
	assert_int_equal(status, 0);
}

static void test_abort_fd_interrupts_wait(void **state)
{
	struct pair *p = *state;
	int abort_fd = eventfd(1, EFD_CLOEXEC);
	uint8_t partial[4] = {1, 0, 0, 0};
	assert_int_equal(send(p->front, partial, sizeof(partial), 0), sizeof(partial));
	struct vhost_user_message msg;
	struct error err;
	assert_int_equal(vhost_user_receive(p->back, abort_fd, &msg, &err), -ECANCELED);
	close(abort_fd);
}

static void test_reply_format(void **state)
{
	struct pair *p = *state;
	assert_int_equal(vhost_user_send_u64_reply(p->back, -1, VHOST_USER_GET_FEATURES, 42), 0);
	assert_int_equal(fe_reply_u64(p->front, VHOST_USER_GET_FEATURES), 42);
	assert_true(fe_nothing_pending(p->front));
}

static void test_request_tables(void **state)
{
	(void)state;
	assert_string_equal(vhost_user_request_name(VHOST_USER_GET_CONFIG), "GET_CONFIG");
	assert_string_equal(vhost_user_request_name(999), "UNKNOWN");
	assert_true(vhost_user_request_may_carry_fds(VHOST_USER_ADD_MEM_REG));
	assert_true(vhost_user_request_may_carry_fds(VHOST_USER_SET_VRING_CALL));
	assert_false(vhost_user_request_may_carry_fds(VHOST_USER_GET_VRING_BASE));
	assert_false(vhost_user_request_may_carry_fds(VHOST_USER_SET_VRING_NUM));
	assert_int_equal(vhost_user_fixed_payload_size(VHOST_USER_SET_VRING_ADDR), 40);
	assert_int_equal(vhost_user_fixed_payload_size(VHOST_USER_ADD_MEM_REG), 40);
	assert_int_equal(vhost_user_fixed_payload_size(VHOST_USER_SET_MEM_TABLE), -1);
	assert_int_equal(vhost_user_fixed_payload_size(VHOST_USER_GET_CONFIG), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_valid_message, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_version, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_reply_flag_on_request, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_unknown_flag_bits, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_oversized_payload, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_fixed_size_mismatch, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_fds_on_request_without_fds_are_closed, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_fds_kept_on_kick, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_too_many_fds, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_disconnect_before_header, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_disconnect_inside_header, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_disconnect_inside_payload, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_message_in_pieces, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_abort_fd_interrupts_wait, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_reply_format, setup, teardown),
	    cmocka_unit_test(test_request_tables),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
