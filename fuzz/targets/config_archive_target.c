/*
 * The archive tool's target config as archive_config_parse reads it: the
 * top-level `type` (filesystem or s3) and the store's fields, credentials
 * and archive_kek values unwrapped with the KEK byte 0 picks
 * (config_fuzz.h). A parse that succeeds must hold what
 * archive_source_validate promises; a failure leaves nothing allocated and
 * says why in one line.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config_fuzz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	config_fuzz_quiet_logs();
	return 0;
}

static void check_freed(const struct archive_source_config *a)
{
	if (a->path || a->bucket || a->prefix || a->endpoint || a->region || a->profile ||
	    a->access_key_id || a->secret_access_key || a->session_token ||
	    a->archive_kek.key.present || a->archive_kek.init_vector.present ||
	    a->archive_kek.auth_data.present)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	struct kek kek_storage;
	const struct kek *kek = config_fuzz_kek(data[0], &kek_storage);
	struct archive_source_config archive;
	struct error err = {{0}};
	if (archive_config_parse((const char *)data + 1, size - 1, kek, &archive, &err) == 0) {
		config_fuzz_check_archive(&archive);
		archive_config_free(&archive);
	} else {
		config_fuzz_check_error(&err);
	}
	check_freed(&archive);
	kek_free(&kek_storage);
	return 0;
}
