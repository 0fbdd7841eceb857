/* One-line error messages for the config layer (internal to src/config). */
#ifndef UBIBLK_CONFIG_ERROR_H
#define UBIBLK_CONFIG_ERROR_H

#include "config/config.h"

/* Formats into err (truncating) and returns -EINVAL, so callers can write
 * `return config_error(err, ...)`. */
int config_error(char err[CONFIG_ERROR_MAX], const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Replaces err with "<prefix><err>", keeping the original text. */
void config_error_prefix(char err[CONFIG_ERROR_MAX], const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* After a failure that may not have explained itself (-ENOMEM from an
 * allocation): err empty -> strerror(-ret). Nothing when ret is 0. */
void config_error_default(char err[CONFIG_ERROR_MAX], int ret);

/* Copies config text for a message: control characters escaped (\n, \xNN)
 * so a message stays one line, cut with "..." after `max` input bytes. */
void config_quote(const char *text, size_t len, size_t max, char *buf, size_t size);

#endif
