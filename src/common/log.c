#include "common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static enum log_level current_level = LOG_INFO;

static const char *const level_names[] = {"ERROR", "WARN", "INFO", "DEBUG"};

void log_init(void)
{
	const char *env = getenv("UBIBLK_LOG");
	if (!env || !*env)
		return;
	for (size_t i = 0; i < ARRAY_SIZE(level_names); i++) {
		if (strcasecmp(env, level_names[i]) == 0) {
			current_level = (enum log_level)i;
			return;
		}
	}
	fprintf(stderr, "[WARN] UBIBLK_LOG=%s is not one of error, warn, info, debug\n", env);
}

bool log_enabled(enum log_level level)
{
	return level <= current_level;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	if (!log_enabled(level))
		return;
	/* Format into one buffer so concurrent threads do not interleave lines. */
	char line[1024];
	int prefix = snprintf(line, sizeof(line), "[%s] ", level_names[level]);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line + prefix, sizeof(line) - (size_t)prefix - 1, fmt, ap);
	va_end(ap);
	size_t len = strlen(line);
	line[len++] = '\n';
	fwrite(line, 1, len, stderr);
}
