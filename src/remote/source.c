/* The remote stripe source: `connections` threads, each owning one client
 * connection and fetching one stripe at a time, so the fetch worker never
 * waits on the network. Requests go to a shared queue (any connected thread
 * takes the next one); completions come back through a list and an eventfd.
 *
 * A lost connection is re-dialled with backoff while the other connections
 * keep serving; the stripe it was reading goes back to the queue once. When
 * no connection is up, a queued stripe waits at most connect_ms and then
 * fails (the fetch worker retries it, and marks it Failed after its
 * retries), so a dead server turns into I/O errors, never a hang. After
 * `attempts` failed dials in a row, or a server whose stripe size or count
 * changed, the source is down: every fetch fails at once, with one log
 * line saying why. */
#include "remote/remote_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "fetch/source_internal.h"

#define REMOTE_CONNECTIONS_MAX 64u

struct job {
	uint64_t stripe;
	void *buf;
	int result;
	bool retried; /* already lost one connection: the next loss fails it */
	uint64_t queued_ns;
	struct job *next;
};

struct job_list {
	struct job *head, *tail;
};

struct remote_source;

struct connection {
	struct remote_source *src;
	unsigned index;
	pthread_t thread;
	bool started;
	struct remote_client *client; /* touched by its thread only while started */
};

struct remote_source {
	struct stripe_source base;
	struct remote_address address;
	struct remote_tls *tls; /* NULL: plain TCP */
	struct remote_timeouts timeouts;
	struct remote_backoff backoff;
	struct remote_metadata meta; /* the first connection's: has_stripe, checks */
	unsigned count;
	struct connection conns[REMOTE_CONNECTIONS_MAX];
	int completion_fd;
	int stop_fd;

	pthread_mutex_t lock;
	pthread_cond_t cond; /* queue changed, stopping, or a connection state */
	struct job_list pending;
	struct job_list done;
	unsigned outstanding; /* requested, completion not yet polled */
	unsigned connected;
	uint64_t none_connected_since_ns;
	bool down;
	bool stopping;
	bool opened;
};

static struct remote_source *to_remote(struct stripe_source *src)
{
	return (struct remote_source *)src;
}

static const struct remote_source *to_remote_const(const struct stripe_source *src)
{
	return (const struct remote_source *)src;
}

static void list_push(struct job_list *l, struct job *j)
{
	j->next = NULL;
	if (l->tail)
		l->tail->next = j;
	else
		l->head = j;
	l->tail = j;
}

static void list_push_front(struct job_list *l, struct job *j)
{
	j->next = l->head;
	l->head = j;
	if (!l->tail)
		l->tail = j;
}

static struct job *list_pop(struct job_list *l)
{
	struct job *j = l->head;
	if (j) {
		l->head = j->next;
		if (!l->head)
			l->tail = NULL;
	}
	return j;
}

static void list_free(struct job_list *l)
{
	struct job *j;
	while ((j = list_pop(l)) != NULL)
		free(j);
}

/* Called with the lock held. */
static void complete_locked(struct remote_source *s, struct job *j, int result)
{
	j->result = result;
	list_push(&s->done, j);
	uint64_t one = 1;
	ssize_t n = write(s->completion_fd, &one, sizeof(one));
	(void)n; /* a full counter is still readable: nothing is lost */
}

static void fail_pending_locked(struct remote_source *s, int result)
{
	struct job *j;
	while ((j = list_pop(&s->pending)) != NULL)
		complete_locked(s, j, result);
}

/* With no connection up, a queued stripe waits at most connect_ms. */
static uint64_t expiry_of(const struct remote_source *s, const struct job *j)
{
	uint64_t since =
	    j->queued_ns > s->none_connected_since_ns ? j->queued_ns : s->none_connected_since_ns;
	return since + (uint64_t)s->timeouts.connect_ms * 1000000u;
}

/* Fails the queued stripes that waited too long; returns the next expiry
 * (UINT64_MAX: none). Called with the lock held. */
static uint64_t expire_locked(struct remote_source *s, uint64_t now)
{
	if (s->connected > 0)
		return UINT64_MAX;
	uint64_t next = UINT64_MAX;
	struct job_list keep = {0};
	struct job *j;
	while ((j = list_pop(&s->pending)) != NULL) {
		uint64_t at = expiry_of(s, j);
		if (at <= now) {
			log_warn("remote %s: stripe %llu: no connection to the server within "
				 "%u ms",
				 s->address.text, (unsigned long long)j->stripe,
				 s->timeouts.connect_ms);
			complete_locked(s, j, -ENOTCONN);
		} else {
			list_push(&keep, j);
			if (at < next)
				next = at;
		}
	}
	s->pending = keep;
	return next;
}

static void timed_wait_locked(struct remote_source *s, uint64_t until_ns)
{
	if (until_ns == UINT64_MAX) {
		pthread_cond_wait(&s->cond, &s->lock);
		return;
	}
	struct timespec now_ts;
	clock_gettime(CLOCK_MONOTONIC, &now_ts);
	uint64_t now = now_ns();
	uint64_t wait = until_ns > now ? until_ns - now : 0;
	uint64_t at = (uint64_t)now_ts.tv_sec * 1000000000u + (uint64_t)now_ts.tv_nsec + wait;
	struct timespec ts = {.tv_sec = (time_t)(at / 1000000000u),
			      .tv_nsec = (long)(at % 1000000000u)};
	pthread_cond_timedwait(&s->cond, &s->lock, &ts);
}

static void set_connected_locked(struct remote_source *s, bool up)
{
	if (up) {
		s->connected++;
	} else if (--s->connected == 0) {
		s->none_connected_since_ns = now_ns();
	}
	pthread_cond_broadcast(&s->cond);
}

static void go_down_locked(struct remote_source *s)
{
	s->down = true;
	fail_pending_locked(s, -ENOTCONN);
	pthread_cond_broadcast(&s->cond);
}

/* A new connection must show the disk the source was built for. */
static int check_same_server(const struct remote_source *s, const struct remote_client *c,
			     struct error *err)
{
	const struct remote_metadata *m = remote_client_metadata(c);
	if (m->shift != s->meta.shift)
		return error_set(err, -ESTALE,
				 "the server's stripe size changed from %u to %u bytes: refusing "
				 "it",
				 SECTOR_SIZE << s->meta.shift, SECTOR_SIZE << m->shift);
	if (m->header_count != s->meta.header_count)
		return error_set(err, -ESTALE,
				 "the server's stripe count changed from %llu to %llu: refusing it",
				 (unsigned long long)s->meta.header_count,
				 (unsigned long long)m->header_count);
	return 0;
}

/* Dials until connected, stopped or out of attempts; lock held on entry and
 * exit, released while waiting and dialling. */
static void reconnect_locked(struct connection *conn)
{
	struct remote_source *s = conn->src;
	uint32_t delay_ms = s->backoff.first_ms;
	struct error err = {0};
	for (uint32_t attempt = 1; !s->stopping && !s->down; attempt++) {
		uint64_t dial_at = now_ns() + (uint64_t)delay_ms * 1000000u;
		while (!s->stopping && !s->down) {
			uint64_t now = now_ns();
			if (now >= dial_at)
				break;
			uint64_t next = expire_locked(s, now);
			timed_wait_locked(s, next < dial_at ? next : dial_at);
		}
		if (s->stopping || s->down)
			return;
		pthread_mutex_unlock(&s->lock);
		struct remote_client *c = NULL;
		error_clear(&err);
		int rc = remote_client_connect_stoppable(&s->address, s->tls, &s->timeouts,
							 s->stop_fd, &c, &err);
		if (rc == 0) {
			rc = check_same_server(s, c, &err);
			if (rc < 0) {
				remote_client_close(c);
				c = NULL;
			}
		}
		pthread_mutex_lock(&s->lock);
		if (rc == 0) {
			log_info("remote %s: connection %u re-established", s->address.text,
				 conn->index);
			conn->client = c;
			set_connected_locked(s, true);
			return;
		}
		if (rc == -ECANCELED || s->stopping)
			return;
		if (rc == -ESTALE) {
			log_error("remote %s: %s; fetches from it fail from now on",
				  s->address.text, err.text);
			go_down_locked(s);
			return;
		}
		if (attempt >= s->backoff.attempts) {
			log_error("remote %s: giving up after %u attempts to reconnect (%s); "
				  "fetches from it fail from now on",
				  s->address.text, attempt, err.text);
			go_down_locked(s);
			return;
		}
		log_warn("remote %s: reconnect attempt %u of %u failed: %s", s->address.text,
			 attempt, s->backoff.attempts, err.text);
		delay_ms = delay_ms > s->backoff.max_ms / 2 ? s->backoff.max_ms : delay_ms * 2;
	}
}

static void fetch_one(struct connection *conn, struct job *j)
{
	struct remote_source *s = conn->src;
	uint8_t status;
	struct error err = {0};
	int rc = remote_client_read_stripe(conn->client, j->stripe, j->buf, &status, &err);
	pthread_mutex_lock(&s->lock);
	if (rc == 0 || !remote_client_broken(conn->client)) {
		if (rc < 0)
			log_warn("remote %s: stripe %llu: %s", s->address.text,
				 (unsigned long long)j->stripe, err.text);
		complete_locked(s, j, rc);
		return;
	}
	pthread_mutex_unlock(&s->lock);
	remote_client_close(conn->client);
	conn->client = NULL;
	pthread_mutex_lock(&s->lock);
	set_connected_locked(s, false);
	if (s->stopping) {
		complete_locked(s, j, -ECANCELED);
		return;
	}
	log_warn("remote %s: connection %u lost (%s); reconnecting", s->address.text, conn->index,
		 err.text);
	/* The stripe goes to another connection, once: a stripe that breaks
	 * every connection it is read on must not take them all down. */
	if (j->retried) {
		complete_locked(s, j, rc);
		return;
	}
	j->retried = true;
	list_push_front(&s->pending, j);
	pthread_cond_broadcast(&s->cond);
}

/* Closes a connection found stale between requests; lock held on entry and
 * exit. */
static void drop_idle_locked(struct connection *conn)
{
	struct remote_source *s = conn->src;
	struct remote_client *c = conn->client;
	conn->client = NULL;
	set_connected_locked(s, false);
	log_warn("remote %s: connection %u was closed by the server while idle; reconnecting",
		 s->address.text, conn->index);
	pthread_mutex_unlock(&s->lock);
	remote_client_close(c);
	pthread_mutex_lock(&s->lock);
}

static void *connection_main(void *arg)
{
	struct connection *conn = arg;
	struct remote_source *s = conn->src;
	pthread_mutex_lock(&s->lock);
	while (!s->stopping) {
		if (!conn->client) {
			if (s->down) {
				pthread_cond_wait(&s->cond, &s->lock);
				continue;
			}
			reconnect_locked(conn);
			continue;
		}
		struct job *j = list_pop(&s->pending);
		if (!j) {
			pthread_cond_wait(&s->cond, &s->lock);
			continue;
		}
		if (remote_client_stale(conn->client)) {
			/* Closed by the server while idle (it restarted): not the
			 * stripe's failure, so the stripe keeps its place. */
			list_push_front(&s->pending, j);
			drop_idle_locked(conn);
			continue;
		}
		pthread_mutex_unlock(&s->lock);
		fetch_one(conn, j); /* returns with the lock held */
	}
	bool had_client = conn->client != NULL;
	pthread_mutex_unlock(&s->lock);
	remote_client_close(conn->client);
	conn->client = NULL;
	if (had_client) {
		pthread_mutex_lock(&s->lock);
		set_connected_locked(s, false);
		pthread_mutex_unlock(&s->lock);
	}
	return NULL;
}

static void remote_close(struct stripe_source *src)
{
	struct remote_source *s = to_remote(src);
	if (!s->opened)
		return;
	pthread_mutex_lock(&s->lock);
	s->stopping = true;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	uint64_t one = 1;
	ssize_t n = write(s->stop_fd, &one, sizeof(one));
	(void)n;
	for (unsigned i = 0; i < s->count; i++) {
		if (s->conns[i].started)
			pthread_join(s->conns[i].thread, NULL);
		s->conns[i].started = false;
	}
	uint64_t v;
	n = read(s->stop_fd, &v, sizeof(v));
	n = read(s->completion_fd, &v, sizeof(v));
	(void)n;
	/* Every thread has stopped: no buffer is in use any more. */
	list_free(&s->pending);
	list_free(&s->done);
	s->outstanding = 0;
	s->stopping = false;
	s->opened = false;
}

static int remote_open(struct stripe_source *src)
{
	struct remote_source *s = to_remote(src);
	if (s->opened)
		return 0;
	s->opened = true;
	for (unsigned i = 0; i < s->count; i++) {
		char name[24]; /* room for any unsigned: GCC's -Wformat-truncation */
		snprintf(name, sizeof(name), "remote-%u", i);
		int rc = thread_start(&s->conns[i].thread, name, connection_main, &s->conns[i]);
		if (rc < 0) {
			remote_close(src);
			return rc;
		}
		s->conns[i].started = true;
	}
	return 0;
}

static int remote_request(struct stripe_source *src, uint64_t stripe, void *buf)
{
	struct remote_source *s = to_remote(src);
	if (!s->opened)
		return -ENOTCONN;
	struct job *j = calloc(1, sizeof(*j));
	if (!j)
		return -ENOMEM;
	j->stripe = stripe;
	j->buf = buf;
	j->queued_ns = now_ns();
	pthread_mutex_lock(&s->lock);
	if (s->down) {
		pthread_mutex_unlock(&s->lock);
		free(j);
		return -ENOTCONN;
	}
	list_push(&s->pending, j);
	s->outstanding++;
	/* Broadcast: a thread waiting in backoff must see the new deadline. */
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

static int remote_poll(struct stripe_source *src, struct source_completion *out, int max)
{
	struct remote_source *s = to_remote(src);
	uint64_t v;
	/* Drained before taking the list: a completion added after this read
	 * writes the eventfd again, so none is missed. */
	ssize_t n = read(s->completion_fd, &v, sizeof(v));
	(void)n;
	int got = 0;
	pthread_mutex_lock(&s->lock);
	struct job *j;
	while (got < max && (j = list_pop(&s->done)) != NULL) {
		out[got].stripe = j->stripe;
		out[got].result = j->result;
		got++;
		s->outstanding--;
		free(j);
	}
	if (s->done.head) {
		uint64_t one = 1;
		n = write(s->completion_fd, &one, sizeof(one));
	}
	pthread_mutex_unlock(&s->lock);
	return got;
}

static bool remote_busy(const struct stripe_source *src)
{
	struct remote_source *s = (struct remote_source *)to_remote_const(src);
	pthread_mutex_lock(&s->lock);
	bool busy = s->outstanding > 0;
	pthread_mutex_unlock(&s->lock);
	return busy;
}

static int remote_completion_fd(const struct stripe_source *src)
{
	return to_remote_const(src)->completion_fd;
}

static bool remote_has_stripe(const struct stripe_source *src, uint64_t stripe)
{
	return remote_metadata_has_stripe(&to_remote_const(src)->meta, stripe);
}

static void remote_destroy(struct stripe_source *src)
{
	struct remote_source *s = to_remote(src);
	remote_close(src);
	for (unsigned i = 0; i < s->count; i++)
		remote_client_close(s->conns[i].client);
	remote_tls_free(s->tls);
	remote_metadata_free(&s->meta);
	if (s->completion_fd >= 0)
		close(s->completion_fd);
	if (s->stop_fd >= 0)
		close(s->stop_fd);
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

static const struct stripe_source_ops remote_ops = {
    .open = remote_open,
    .close = remote_close,
    .request = remote_request,
    .poll = remote_poll,
    .busy = remote_busy,
    .completion_fd = remote_completion_fd,
    .has_stripe = remote_has_stripe,
    .destroy = remote_destroy,
};

static int copy_metadata(struct remote_metadata *to, const struct remote_metadata *from)
{
	*to = *from;
	to->headers = malloc(from->header_count + 1);
	if (!to->headers)
		return -ENOMEM;
	memcpy(to->headers, from->headers, from->header_count);
	return 0;
}

static int connect_all(struct remote_source *s, uint32_t stripe_sectors, struct error *err)
{
	for (unsigned i = 0; i < s->count; i++) {
		struct remote_client *c;
		int rc = remote_client_connect(&s->address, s->tls, &s->timeouts, &c, err);
		if (rc < 0)
			return rc;
		s->conns[i].client = c;
		if (i == 0) {
			const struct remote_metadata *m = remote_client_metadata(c);
			if ((UINT32_C(1) << m->shift) != stripe_sectors)
				return error_set(err, -EINVAL,
						 "remote stripe sector count %u does not match "
						 "expected %u",
						 1u << m->shift, stripe_sectors);
			if (copy_metadata(&s->meta, m) < 0)
				return error_set(err, -ENOMEM, "out of memory for the metadata");
		} else {
			rc = check_same_server(s, c, err);
			if (rc < 0)
				return rc;
		}
	}
	s->connected = s->count;
	return 0;
}

int stripe_source_remote_with_backoff(const struct remote_source_config *cfg,
				      uint32_t stripe_sectors,
				      const struct remote_timeouts *timeouts,
				      const struct remote_backoff *backoff,
				      struct stripe_source **out, struct error *err)
{
	*out = NULL;
	if (!is_power_of_two(stripe_sectors))
		return error_set(err, -EINVAL, "stripe size of %u sectors is no power of two",
				 stripe_sectors);
	unsigned count = cfg->connections ? cfg->connections : 16u;
	if (count > REMOTE_CONNECTIONS_MAX)
		return error_set(err, -EINVAL, "connections: %u is out of range 1..%u", count,
				 REMOTE_CONNECTIONS_MAX);
	struct remote_source *s = calloc(1, sizeof(*s));
	if (!s)
		return error_set(err, -ENOMEM, "out of memory");
	s->completion_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	s->stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	pthread_mutex_init(&s->lock, NULL);
	pthread_condattr_t attr;
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&s->cond, &attr);
	pthread_condattr_destroy(&attr);
	s->count = count;
	for (unsigned i = 0; i < count; i++) {
		s->conns[i].src = s;
		s->conns[i].index = i;
	}
	s->timeouts.connect_ms =
	    timeouts && timeouts->connect_ms ? timeouts->connect_ms : REMOTE_CONNECT_TIMEOUT_MS;
	s->timeouts.io_ms = timeouts && timeouts->io_ms ? timeouts->io_ms : REMOTE_IO_TIMEOUT_MS;
	s->backoff = backoff
			 ? *backoff
			 : (struct remote_backoff){REMOTE_BACKOFF_FIRST_MS, REMOTE_BACKOFF_MAX_MS,
						   REMOTE_BACKOFF_ATTEMPTS};
	source_init(&s->base, &remote_ops, stripe_sectors, 0);
	int rc = s->completion_fd < 0 || s->stop_fd < 0
		     ? error_set(err, -errno, "eventfd: %s", strerror(errno))
		     : 0;
	if (rc == 0)
		rc = remote_address_parse(cfg->address, &s->address, err);
	if (rc == 0 && cfg->psk_identity)
		rc = remote_tls_new(REMOTE_TLS_CLIENT, cfg->psk_identity, cfg->psk_secret.data,
				    cfg->psk_secret.len, &s->tls, err);
	if (rc == 0)
		rc = connect_all(s, stripe_sectors, err);
	if (rc < 0) {
		remote_destroy(&s->base);
		return rc;
	}
	s->base.sectors = s->meta.source_stripes * stripe_sectors;
	*out = &s->base;
	return 0;
}

int stripe_source_remote(const struct remote_source_config *cfg, uint32_t stripe_sectors,
			 const struct remote_timeouts *timeouts, struct stripe_source **out,
			 struct error *err)
{
	return stripe_source_remote_with_backoff(cfg, stripe_sectors, timeouts, NULL, out, err);
}
