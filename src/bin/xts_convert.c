/* The sector conversion of the xts tool, with the checks, messages and output
 * layouts of ubiblk's xts command: decode packs the sectors from offset 0,
 * encode writes each at its own offset (docs/encryption.md). Plain pread/pwrite
 * rather than a bdev: the tool makes one pass over a file, and buffered I/O
 * asks no alignment of the input or the output. */
#include "xts.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/common.h"

#define CHUNK_BYTES	     ((size_t)XTS_CHUNK_SECTORS * SECTOR_SIZE)
#define PROGRESS_MIN_BYTES   (64ull << 20) /* smaller jobs finish before anyone looks */
#define PROGRESS_INTERVAL_NS 200000000ull

struct progress {
	bool on;
	bool drawn;
	const char *verb;
	uint64_t total; /* bytes */
	uint64_t done;
	uint64_t started_ns;
	uint64_t drawn_ns;
};

struct conversion {
	const struct xts_job *job;
	struct xts_cipher *cipher;
	int in_fd;
	int out_fd;
	struct stat in_st;
	uint64_t len;	     /* sectors to convert */
	bool out_positional; /* pwrite at offsets (regular file, block device) */
	struct progress progress;
	struct error error; /* kept until the progress line ends: one line */
};

/* One line on stderr, redrawn in place: "xts: decode  42% of 1024 MiB, 812.3 MB/s". */
static void progress_draw(struct progress *p, bool final)
{
	if (!p->on)
		return;
	uint64_t now = now_ns();
	if (!final && now - p->drawn_ns < PROGRESS_INTERVAL_NS)
		return;
	p->drawn_ns = now;
	double seconds = (double)(now - p->started_ns) / 1e9;
	double rate = seconds > 0 ? (double)p->done / 1e6 / seconds : 0;
	unsigned percent = p->total ? (unsigned)((double)p->done * 100 / (double)p->total) : 100;
	fprintf(stderr, "\rxts: %s %3u%% of %llu MiB, %.1f MB/s\x1b[K", p->verb, percent,
		(unsigned long long)(p->total >> 20), rate);
	fflush(stderr);
	p->drawn = true;
}

static void progress_end(struct progress *p)
{
	if (p->drawn)
		fputc('\n', stderr);
	p->drawn = false;
}

static int input_bytes(struct conversion *cv, uint64_t *bytes)
{
	const char *path = cv->job->input;
	if (fstat(cv->in_fd, &cv->in_st) < 0)
		return error_set(&cv->error, -1, "cannot stat %s: %s", path, strerror(errno));
	if (S_ISREG(cv->in_st.st_mode)) {
		*bytes = (uint64_t)cv->in_st.st_size;
		return 0;
	}
	if (S_ISBLK(cv->in_st.st_mode)) {
		if (ioctl(cv->in_fd, BLKGETSIZE64, bytes) < 0)
			return error_set(&cv->error, -1, "cannot get the size of %s: %s", path,
					 strerror(errno));
		return 0;
	}
	return error_set(&cv->error, -1, "%s is neither a regular file nor a block device", path);
}

/* The range checks, in a fixed order and with the texts users of the xts
 * command already know. */
static int check_range(struct conversion *cv, uint64_t bytes)
{
	const struct xts_job *job = cv->job;
	bool encode = job->action == XTS_ENCODE;
	if (bytes % SECTOR_SIZE) {
		if (encode)
			return error_set(&cv->error, -1,
					 "Input file size %llu is not a multiple of sector size",
					 (unsigned long long)bytes);
		return error_set(&cv->error, -1, "File size is not a multiple of sector size");
	}
	uint64_t total = bytes / SECTOR_SIZE;
	if (job->start >= total)
		return error_set(&cv->error, -1,
				 "Start sector %llu is out of range (%s has %llu sectors)",
				 (unsigned long long)job->start, encode ? "input" : "device",
				 (unsigned long long)total);
	uint64_t available = total - job->start;
	if (job->len_given && job->len > available)
		return error_set(&cv->error, -1,
				 "Requested length %llu exceeds available sectors (%llu)",
				 (unsigned long long)job->len, (unsigned long long)available);
	cv->len = job->len_given ? job->len : available;
	return 0;
}

static bool same_file(const struct stat *a, const struct stat *b)
{
	if (S_ISBLK(a->st_mode) && S_ISBLK(b->st_mode))
		return a->st_rdev == b->st_rdev;
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino;
}

/* Created (0666 & ~umask, as a shell redirection would) or truncated only
 * now, after the checks, so a mistyped range leaves an existing output
 * alone. Opened without O_TRUNC first: writing over the input itself is
 * refused, not half done. */
static int open_output(struct conversion *cv)
{
	const char *path = cv->job->output;
	bool encode = cv->job->action == XTS_ENCODE;
	struct stat st;

	cv->out_fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0666);
	if (cv->out_fd < 0)
		return error_set(&cv->error, -1, "cannot create %s: %s", path, strerror(errno));
	if (fstat(cv->out_fd, &st) < 0)
		return error_set(&cv->error, -1, "cannot stat %s: %s", path, strerror(errno));
	if (same_file(&st, &cv->in_st))
		return error_set(&cv->error, -1,
				 "%s is the input itself; write the output to another file", path);
	cv->out_positional = S_ISREG(st.st_mode) || S_ISBLK(st.st_mode);
	if (encode && !cv->out_positional)
		return error_set(&cv->error, -1,
				 "%s is neither a regular file nor a block device: encode writes "
				 "sectors at their own offsets",
				 path);
	if (S_ISREG(st.st_mode)) {
		/* encode: zeros up to start*512, then the sectors at their offsets. */
		off_t size = encode ? (off_t)(cv->len * SECTOR_SIZE) : 0;
		if (ftruncate(cv->out_fd, 0) < 0 || ftruncate(cv->out_fd, size) < 0)
			return error_set(&cv->error, -1, "cannot truncate %s: %s", path,
					 strerror(errno));
	}
	return 0;
}

static int read_full(struct conversion *cv, uint8_t *buf, size_t n, uint64_t offset)
{
	size_t got = 0;
	while (got < n) {
		ssize_t r = pread(cv->in_fd, buf + got, n - got, (off_t)(offset + got));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return error_set(&cv->error, -1, "cannot read %s at byte %llu: %s",
					 cv->job->input, (unsigned long long)(offset + got),
					 strerror(errno));
		if (r == 0)
			return error_set(&cv->error, -1, "%s ended at byte %llu while being read",
					 cv->job->input, (unsigned long long)(offset + got));
		got += (size_t)r;
	}
	return 0;
}

/* pwrite on files and block devices, write on pipes and character devices
 * (decode to /dev/stdout works). */
static int write_full(struct conversion *cv, const uint8_t *buf, size_t n, uint64_t offset)
{
	size_t put = 0;
	while (put < n) {
		ssize_t w = cv->out_positional
				? pwrite(cv->out_fd, buf + put, n - put, (off_t)(offset + put))
				: write(cv->out_fd, buf + put, n - put);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return error_set(&cv->error, -1, "cannot write %s at byte %llu: %s",
					 cv->job->output, (unsigned long long)(offset + put),
					 strerror(errno));
		put += (size_t)w;
	}
	return 0;
}

static int convert_sectors(struct conversion *cv, uint8_t *buf)
{
	const struct xts_job *job = cv->job;
	bool encode = job->action == XTS_ENCODE;
	uint64_t done = 0;

	while (done < cv->len) {
		uint64_t left = cv->len - done;
		size_t n = left < XTS_CHUNK_SECTORS ? (size_t)left : XTS_CHUNK_SECTORS;
		uint64_t sector = job->start + done;
		if (read_full(cv, buf, n * SECTOR_SIZE, sector * SECTOR_SIZE))
			return -1;
		/* The tweak is the absolute sector number in both directions. */
		int ret = encode ? xts_encrypt(cv->cipher, sector, buf, buf, n)
				 : xts_decrypt(cv->cipher, sector, buf, buf, n);
		if (ret < 0)
			return error_set(&cv->error, -1, "cannot %s sectors %llu..%llu: %s",
					 encode ? "encrypt" : "decrypt", (unsigned long long)sector,
					 (unsigned long long)(sector + n - 1), strerror(-ret));
		/* encode: at the sector's own offset; decode: packed from 0. */
		uint64_t offset = (encode ? sector : done) * SECTOR_SIZE;
		if (write_full(cv, buf, n * SECTOR_SIZE, offset))
			return -1;
		done += n;
		cv->progress.done = done * SECTOR_SIZE;
		progress_draw(&cv->progress, false);
	}
	return 0;
}

static int finish_output(struct conversion *cv)
{
	/* Report a delayed write error now rather than exit 0 over lost data. */
	if (cv->out_positional && fsync(cv->out_fd) < 0)
		return error_set(&cv->error, -1, "cannot flush %s: %s", cv->job->output,
				 strerror(errno));
	int fd = cv->out_fd;
	cv->out_fd = -1;
	if (close(fd) < 0)
		return error_set(&cv->error, -1, "cannot close %s: %s", cv->job->output,
				 strerror(errno));
	return 0;
}

static int run(struct conversion *cv)
{
	const struct xts_job *job = cv->job;
	uint64_t bytes = 0;

	cv->in_fd = open(job->input, O_RDONLY | O_CLOEXEC);
	if (cv->in_fd < 0)
		return error_set(&cv->error, -1, "cannot open %s: %s", job->input, strerror(errno));
	if (input_bytes(cv, &bytes) || check_range(cv, bytes) || open_output(cv))
		return -1;
	if (cv->len == 0)
		return finish_output(cv);

	uint8_t *buf = buffer_alloc(BUFFER_ALIGNMENT, CHUNK_BYTES);
	if (!buf)
		return error_set(&cv->error, -1, "cannot allocate a %zu-byte buffer", CHUNK_BYTES);
	struct progress *p = &cv->progress;
	p->verb = job->action == XTS_ENCODE ? "encode" : "decode";
	p->total = cv->len * SECTOR_SIZE;
	p->on = job->progress && p->total > PROGRESS_MIN_BYTES && isatty(STDERR_FILENO);
	p->started_ns = now_ns();
	int ret = convert_sectors(cv, buf);
	/* The buffer held plaintext. */
	secret_wipe(buf, CHUNK_BYTES);
	buffer_free(buf);
	if (ret == 0)
		ret = finish_output(cv);
	if (ret == 0)
		progress_draw(p, true);
	return ret;
}

int xts_convert(const struct xts_job *job, struct xts_cipher *cipher)
{
	struct conversion cv = {.job = job, .cipher = cipher, .in_fd = -1, .out_fd = -1};
	int ret = run(&cv);
	progress_end(&cv.progress);
	if (cv.out_fd >= 0)
		close(cv.out_fd);
	if (cv.in_fd >= 0)
		close(cv.in_fd);
	if (ret)
		log_error("%s", cv.error.text);
	return ret;
}
