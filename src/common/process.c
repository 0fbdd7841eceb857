#include "common.h"

#include <errno.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>

void forbid_core_dumps(void)
{
	struct rlimit none = {0, 0};
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
		log_warn("prctl(PR_SET_DUMPABLE, 0): %s", strerror(errno));
	if (setrlimit(RLIMIT_CORE, &none) < 0)
		log_warn("setrlimit(RLIMIT_CORE, 0): %s", strerror(errno));
}
