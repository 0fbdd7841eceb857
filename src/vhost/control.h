/* The device state of one vhost-user connection: negotiated features, the
 * guest memory table, one queue worker per virtqueue and the config space,
 * and the handler of every vhost-user request.
 *
 * A failing request ends the connection: the handler reports why in one line
 * and the caller (server.c) tears the state down and listens again. When the
 * front end asked for an acknowledgement (REPLY_ACK negotiated and
 * NEED_REPLY set), it receives 1 before the connection is closed. */
#ifndef UBIBLK_VHOST_CONTROL_H
#define UBIBLK_VHOST_CONTROL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bdev/bdev.h"
#include "vhost/message_io.h"
#include "vhost/vhost.h"

struct vhost_control;

/* Creates the per-connection state and its queue workers (pinned to
 * opts->cpus[i] when given). abort_fd (may be -1) interrupts waits on the
 * socket. Returns 0 or a negative errno (logged). */
int vhost_control_create(const struct vhost_blk_options *opts, struct bdev *dev, int abort_fd,
			 struct vhost_control **out);
/* The same state whose queue workers run no thread (queue_worker_config's
 * `threadless`): every request is handled exactly as above, rings are set
 * up, started and stopped, but no guest request is ever processed and
 * nothing runs besides the caller. This drives the control plane alone and
 * deterministically (fuzz/targets/vhost_user_messages.c); a server never
 * uses it. */
int vhost_control_create_threadless(const struct vhost_blk_options *opts, struct bdev *dev,
				    struct vhost_control **out);
/* Stops every queue (finishing its in-flight requests), joins the workers
 * and drops the memory table. */
void vhost_control_destroy(struct vhost_control *ctl);

/* An eventfd that becomes readable when the front end shrank a shared
 * memory file under one of the connection's mappings (guest_memory.h). The
 * caller polls it and, once vhost_control_memory_broken() is true, ends the
 * connection: the queues stop taking requests from that memory already. */
int vhost_control_fault_fd(const struct vhost_control *ctl);
bool vhost_control_memory_broken(const struct vhost_control *ctl);

/* Reads one message from sock, handles it and sends its reply. Returns 0 to
 * go on, or a negative errno when the connection must end (-ECONNRESET: the
 * front end disconnected; -ECANCELED: stop requested; anything else: a
 * malformed or failing request); err then holds one line saying why,
 * starting with the request's name when the request itself failed. */
int vhost_control_process_message(struct vhost_control *ctl, int sock, struct error *err);

/* The 60-byte config space a device with these options and capacity shows. */
void vhost_blk_config_space_fill(const struct vhost_blk_options *opts, uint64_t capacity,
				 struct virtio_blk_config_space *out);

#endif
