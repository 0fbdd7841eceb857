/* ubiblk-bench: command line of the vhost-user-blk front end in src/bench. */
#include "bench/bench.h"
#include "bench/value_parse.h"
#include "common/common.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXIT_USAGE 2

static const char usage_text[] =
    "Usage: ubiblk-bench --socket PATH [--mode MODE] [OPTIONS]\n"
    "\n"
    "A vhost-user-blk front end: connects to a vhost-user-blk backend (vhost-backend,\n"
    "qemu-storage-daemon, ...) the way a VMM would, shares its memory through a memfd\n"
    "and drives the virtqueues itself, one thread per queue. Reports IOPS, bandwidth\n"
    "and latency percentiles, or verifies that every acknowledged write is intact.\n"
    "\n"
    "Mode:\n"
    "  -m, --mode MODE         what the run does (default randread):\n"
    "    randread, randwrite   random reads / writes of --bs over the range\n"
    "    read, write           sequential; each queue streams through its own share\n"
    "    rw, randrw            sequential / random mix, --rwmixread percent reads\n"
    "    verify                write stamped, checksummed blocks and read them back;\n"
    "                          exit 1 naming offset, expected and found data on any\n"
    "                          stale, misplaced or corrupt sector\n"
    "\n"
    "Connection and queues:\n"
    "  -s, --socket PATH       vhost-user-blk socket to connect to (required)\n"
    "  -q, --queues N          virtqueues to drive, one thread each (default 1)\n"
    "  -d, --iodepth N         requests in flight per queue (default 1)\n"
    "      --queue-size N      virtqueue size, a power of two >= 3 x iodepth, or\n"
    "                          >= iodepth with --indirect (default: the smallest)\n"
    "      --indirect          put each request's three descriptors in an indirect\n"
    "                          table, as Linux guests do: one ring entry per request\n"
    "      --completion MODE   poll: spin on the used ring, no interrupts (default);\n"
    "                          event: sleep on the call eventfd (better when the\n"
    "                          CPUs are fewer than bench plus backend threads)\n"
    "      --no-event-idx      do not negotiate VIRTIO_RING_F_EVENT_IDX\n"
    "      --cpus LIST         pin queue threads, one CPU per queue (\"2,3\", \"0-3\")\n"
    "      --timeout TIME      fail when a request is unanswered this long (default 30s)\n"
    "\n"
    "Workload:\n"
    "  -b, --bs SIZE           block size, a multiple of 512 (default 4k)\n"
    "  -t, --runtime TIME      run for TIME (\"10\", \"1.5s\", \"2m\") instead of one pass\n"
    "  -n, --io-count N        issue N requests in total (split across queues)\n"
    "      --offset SIZE       start of the range (default 0)\n"
    "      --size SIZE         length of the range (default: to the end of the device)\n"
    "      --rwmixread PCT     percent of reads in rw and randrw (default 50)\n"
    "      --seed N            seed for offsets and verify data (default: random)\n"
    "      --dump FILE         read mode only: write every block read successfully into\n"
    "                          FILE at its offset on the device (FILE created 0644 if\n"
    "                          missing, never truncated: only the range is written), to\n"
    "                          compare with a reference image, e.g. with cmp\n"
    "  Without --runtime or --io-count a run makes one pass: as many requests as the\n"
    "  range has blocks. SIZE takes k, m, g, t suffixes (binary: 4k = 4096).\n"
    "\n"
    "Verify:\n"
    "      --verify-state FILE record, per block, the generation of its last\n"
    "                          acknowledged write and the highest one issued; kept up\n"
    "                          to date while the run goes, so it survives the backend\n"
    "                          (or the bench) being killed. An existing FILE supplies\n"
    "                          --bs, --offset, --size and --seed.\n"
    "      --verify-phase P    write: write only (needs --verify-state)\n"
    "                          read: check every block FILE says was written\n"
    "                          both: write, flush, then check (default)\n"
    "  The write phase writes every block once in order, or with --runtime/--io-count\n"
    "  overwrites random blocks. Each 512-byte sector carries its offset, the seed, the\n"
    "  block's generation and a checksum; after a crash a sector may hold any\n"
    "  generation from the last acknowledged to the last issued one, nothing older.\n"
    "\n"
    "Output:\n"
    "      --json              print the report as one JSON object on stdout\n"
    "  -h, --help              print this help\n"
    "  -V, --version           print the version\n"
    "  Errors and mismatches go to stderr (UBIBLK_LOG=debug|info|warn|error).\n"
    "\n"
    "Exit status: 0 success; 1 data mismatch or failed requests; 2 usage or setup\n"
    "error; 3 backend disconnected, hung or broke the protocol; 4 interrupted.\n"
    "\n"
    "Examples:\n"
    "  ubiblk-bench -s /run/vm.sock --mode randread --bs 4k --iodepth 32 --runtime 10\n"
    "  ubiblk-bench -s /run/vm.sock --mode write --bs 1m --iodepth 4 --queues 4 --json\n"
    "  ubiblk-bench -s /run/vm.sock --mode verify --size 64m --queues 4 --iodepth 8\n"
    "  ubiblk-bench -s /run/vm.sock --mode read --bs 64k --iodepth 4 --dump out.img\n"
    "  # across a backend restart:\n"
    "  ubiblk-bench -s SOCK --mode verify --verify-phase write --verify-state st --runtime 20\n"
    "  (restart or kill -9 the backend at any time, start it again)\n"
    "  ubiblk-bench -s SOCK --mode verify --verify-phase read --verify-state st\n";

enum long_only {
	OPT_QUEUE_SIZE = 256,
	OPT_COMPLETION,
	OPT_NO_EVENT_IDX,
	OPT_INDIRECT,
	OPT_CPUS,
	OPT_TIMEOUT,
	OPT_OFFSET,
	OPT_SIZE,
	OPT_RWMIXREAD,
	OPT_SEED,
	OPT_VERIFY_STATE,
	OPT_VERIFY_PHASE,
	OPT_DUMP,
	OPT_JSON,
};

static const struct option long_options[] = {
    {"socket", required_argument, NULL, 's'},
    {"mode", required_argument, NULL, 'm'},
    {"queues", required_argument, NULL, 'q'},
    {"iodepth", required_argument, NULL, 'd'},
    {"bs", required_argument, NULL, 'b'},
    {"runtime", required_argument, NULL, 't'},
    {"io-count", required_argument, NULL, 'n'},
    {"queue-size", required_argument, NULL, OPT_QUEUE_SIZE},
    {"completion", required_argument, NULL, OPT_COMPLETION},
    {"no-event-idx", no_argument, NULL, OPT_NO_EVENT_IDX},
    {"indirect", no_argument, NULL, OPT_INDIRECT},
    {"cpus", required_argument, NULL, OPT_CPUS},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"offset", required_argument, NULL, OPT_OFFSET},
    {"size", required_argument, NULL, OPT_SIZE},
    {"rwmixread", required_argument, NULL, OPT_RWMIXREAD},
    {"seed", required_argument, NULL, OPT_SEED},
    {"verify-state", required_argument, NULL, OPT_VERIFY_STATE},
    {"verify-phase", required_argument, NULL, OPT_VERIFY_PHASE},
    {"dump", required_argument, NULL, OPT_DUMP},
    {"json", no_argument, NULL, OPT_JSON},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},
    {NULL, 0, NULL, 0},
};

static int bad_value(const char *option, const char *value, const char *expected)
{
	fprintf(stderr, "ubiblk-bench: %s %s: expected %s (see --help)\n", option, value, expected);
	return -EINVAL;
}

/* A count that must fit in 32 bits. */
static int parse_u32(const char *option, const char *value, uint32_t *out)
{
	uint64_t v;
	if (parse_count(value, &v) < 0 || v > UINT32_MAX)
		return bad_value(option, value, "a whole number");
	*out = (uint32_t)v;
	return 0;
}

static int parse_option(int opt, const char *arg, struct bench_options *o, bool *json)
{
	uint64_t v;
	switch (opt) {
	case 's':
		o->socket_path = arg;
		return 0;
	case 'm':
		return bench_mode_parse(arg, &o->mode) < 0
			   ? bad_value("--mode", arg,
				       "randread, randwrite, read, write, rw, randrw or verify")
			   : 0;
	case 'q':
		return parse_u32("--queues", arg, &o->queues);
	case 'd':
		return parse_u32("--iodepth", arg, &o->iodepth);
	case 'b':
		if (parse_size(arg, &v) < 0 || v > UINT32_MAX)
			return bad_value("--bs", arg, "a size such as 4k");
		o->block_size = (uint32_t)v;
		o->block_size_set = true;
		return 0;
	case 't':
		return parse_duration_ns(arg, &o->runtime_ns) < 0 || o->runtime_ns == 0
			   ? bad_value("--runtime", arg, "a duration such as 10, 1.5s or 2m")
			   : 0;
	case 'n':
		return parse_count(arg, &o->io_count) < 0 || o->io_count == 0
			   ? bad_value("--io-count", arg, "a positive number")
			   : 0;
	case OPT_QUEUE_SIZE:
		return parse_u32("--queue-size", arg, &o->queue_size);
	case OPT_COMPLETION:
		if (strcmp(arg, "poll") == 0)
			o->wait = BENCH_WAIT_POLL;
		else if (strcmp(arg, "event") == 0)
			o->wait = BENCH_WAIT_EVENT;
		else
			return bad_value("--completion", arg, "poll or event");
		return 0;
	case OPT_NO_EVENT_IDX:
		o->event_idx = false;
		return 0;
	case OPT_INDIRECT:
		o->indirect = true;
		return 0;
	case OPT_CPUS:
		return parse_cpu_list(arg, o->cpus, BENCH_MAX_QUEUES, &o->ncpus) < 0
			   ? bad_value("--cpus", arg, "a CPU list such as 2,3 or 0-3")
			   : 0;
	case OPT_TIMEOUT:
		return parse_duration_ns(arg, &o->timeout_ns) < 0 || o->timeout_ns == 0
			   ? bad_value("--timeout", arg, "a duration such as 30 or 500ms")
			   : 0;
	case OPT_OFFSET:
		o->range_offset_set = true;
		return parse_size(arg, &o->range_offset) < 0
			   ? bad_value("--offset", arg, "a size such as 1m")
			   : 0;
	case OPT_SIZE:
		o->range_size_set = true;
		return parse_size(arg, &o->range_size) < 0 || o->range_size == 0
			   ? bad_value("--size", arg, "a positive size such as 256m")
			   : 0;
	case OPT_RWMIXREAD:
		return parse_u32("--rwmixread", arg, &o->rwmixread) < 0 || o->rwmixread > 100
			   ? bad_value("--rwmixread", arg, "a percentage, 0 to 100")
			   : 0;
	case OPT_SEED:
		o->seed_set = true;
		return parse_count(arg, &o->seed) < 0 ? bad_value("--seed", arg, "a number") : 0;
	case OPT_VERIFY_STATE:
		o->verify_state_path = arg;
		return 0;
	case OPT_VERIFY_PHASE:
		return bench_verify_phase_parse(arg, &o->verify_phase) < 0
			   ? bad_value("--verify-phase", arg, "write, read or both")
			   : 0;
	case OPT_DUMP:
		o->dump_path = arg;
		return 0;
	case OPT_JSON:
		*json = true;
		return 0;
	default:
		fprintf(stderr, "Try 'ubiblk-bench --help'.\n");
		return -EINVAL;
	}
}

static bool options_consistent(const struct bench_options *o)
{
	if (!o->socket_path) {
		fprintf(stderr, "ubiblk-bench: --socket PATH is required (see --help)\n");
		return false;
	}
	if (o->mode != BENCH_VERIFY &&
	    (o->verify_state_path || o->verify_phase != BENCH_VERIFY_BOTH)) {
		fprintf(stderr, "ubiblk-bench: --verify-state and --verify-phase need --mode "
				"verify\n");
		return false;
	}
	if (o->dump_path && o->mode != BENCH_READ) {
		fprintf(stderr, "ubiblk-bench: --dump needs --mode read\n");
		return false;
	}
	if (o->runtime_ns && o->io_count) {
		fprintf(stderr, "ubiblk-bench: give --runtime or --io-count, not both\n");
		return false;
	}
	return true;
}

int main(int argc, char **argv)
{
	log_init();
	struct bench_options o = {
	    .mode = BENCH_RANDREAD,
	    .block_size = 4096,
	    .iodepth = 1,
	    .queues = 1,
	    .rwmixread = 50,
	    .wait = BENCH_WAIT_POLL,
	    .event_idx = true,
	    .timeout_ns = 30ull * 1000000000ull,
	    .verify_phase = BENCH_VERIFY_BOTH,
	};
	bool json = false;
	int opt;
	while ((opt = getopt_long(argc, argv, "s:m:q:d:b:t:n:hV", long_options, NULL)) != -1) {
		if (opt == 'h') {
			fputs(usage_text, stdout);
			return 0;
		}
		if (opt == 'V') {
			printf("ubiblk-bench %s\n", UBIBLK_VERSION);
			return 0;
		}
		if (parse_option(opt, optarg, &o, &json) < 0)
			return EXIT_USAGE;
	}
	if (optind < argc) {
		fprintf(stderr, "ubiblk-bench: unexpected argument '%s' (see --help)\n",
			argv[optind]);
		return EXIT_USAGE;
	}
	if (!options_consistent(&o))
		return EXIT_USAGE;
	struct bench_report report;
	if (bench_run(&o, &report) < 0)
		return EXIT_USAGE;
	if (json)
		bench_report_print_json(&o, &report);
	else
		bench_report_print_text(&o, &report);
	fflush(stdout);
	return bench_exit_status(&report);
}
