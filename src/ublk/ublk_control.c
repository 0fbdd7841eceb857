/* /dev/ublk-control: opening it (with the messages an operator needs when
 * the driver is missing) and issuing control commands on a small io_uring
 * with 128-byte SQEs. Used by the main thread only. */
#include "ublk/ublk_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/common.h"

#define CONTROL_RING_ENTRIES 16

int ublk_control_open(struct ublk_control **out, struct error *err)
{
	int fd = open(UBLK_CONTROL_PATH, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		if (e == ENOENT)
			return error_set(
			    err, -e,
			    "%s does not exist: the ublk driver is not loaded (run "
			    "`modprobe ublk_drv`; the kernel needs CONFIG_BLK_DEV_UBLK)",
			    UBLK_CONTROL_PATH);
		if (e == EACCES || e == EPERM)
			return error_set(
			    err, -e, "%s: %s (ublk needs root, or a udev rule that grants access)",
			    UBLK_CONTROL_PATH, strerror(e));
		return error_set(err, -e, "%s: %s", UBLK_CONTROL_PATH, strerror(e));
	}
	struct ublk_control *ctrl = calloc(1, sizeof(*ctrl));
	if (!ctrl) {
		close(fd);
		return error_set(err, -ENOMEM, "out of memory");
	}
	ctrl->fd = fd;
	int rc = io_uring_queue_init(CONTROL_RING_ENTRIES, &ctrl->ring, IORING_SETUP_SQE128);
	if (rc < 0) {
		close(fd);
		free(ctrl);
		return error_set(err, rc,
				 "cannot create an io_uring with 128-byte entries for %s: %s (ublk "
				 "needs Linux 6.0 or later)",
				 UBLK_CONTROL_PATH, strerror(-rc));
	}
	*out = ctrl;
	return 0;
}

void ublk_control_close(struct ublk_control *ctrl)
{
	if (!ctrl)
		return;
	io_uring_queue_exit(&ctrl->ring);
	close(ctrl->fd);
	free(ctrl);
}

static int issue(struct ublk_control *ctrl, uint32_t opcode, const struct ublk_wire_ctrl_cmd *cmd)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&ctrl->ring);
	if (!sqe)
		return -EBUSY; /* never: one command at a time */
	memset(sqe, 0, 2 * sizeof(*sqe));
	sqe->opcode = IORING_OP_URING_CMD;
	sqe->fd = ctrl->fd;
	sqe->cmd_op = opcode;
	uint64_t id = ++ctrl->last_id;
	sqe->user_data = id;
	memcpy(sqe->cmd, cmd, sizeof(*cmd));
	int rc = io_uring_submit(&ctrl->ring);
	if (rc < 0)
		return rc;
	/* Only this command's answer counts: one left over from a command
	 * whose wait failed must not be taken for it. */
	for (;;) {
		struct io_uring_cqe *cqe;
		do
			rc = io_uring_wait_cqe(&ctrl->ring, &cqe);
		while (rc == -EINTR);
		if (rc < 0)
			return rc;
		bool ours = cqe->user_data == id;
		int res = cqe->res;
		io_uring_cqe_seen(&ctrl->ring, cqe);
		if (ours)
			return res;
	}
}

/* What a kernel answers to an opcode it does not know: -ENOTSUPP (524, the
 * kernel-internal code 6.1 returns for unknown control commands) or
 * -EOPNOTSUPP. */
static bool unknown_opcode(int res)
{
	return res == -524 || res == -EOPNOTSUPP;
}

int ublk_control_command(struct ublk_control *ctrl, enum ublk_wire_ctrl_nr nr, uint32_t dev_id,
			 uint64_t data0, void *buf, uint16_t len)
{
	struct ublk_wire_ctrl_cmd cmd = {
	    .dev_id = dev_id,
	    .queue_id = UBLK_WIRE_NO_QUEUE,
	    .len = len,
	    .addr = (uint64_t)(uintptr_t)buf,
	    .data = {data0},
	};
	int res = issue(ctrl, ublk_wire_ctrl_opcode(nr), &cmd);
	/* Kernels before 6.3 only know the legacy opcodes. Any other failure
	 * is the kernel's answer to the command itself, and is kept: retrying
	 * could hide it (or, for ADD_DEV, add a second device). */
	if (unknown_opcode(res) && nr <= UBLK_WIRE_LAST_LEGACY_CTRL) {
		int legacy = issue(ctrl, (uint32_t)nr, &cmd);
		log_debug("ublk control command 0x%x: %s with the ioctl opcode, %s with the legacy "
			  "one",
			  (unsigned)nr, strerror(-res), legacy < 0 ? strerror(-legacy) : "ok");
		res = legacy;
	}
	return res;
}
