/*
 * remote-stripe-server's listen config (and remote-stripe-shell's server
 * config) as remote_config_parse reads it: top-level address, psk_identity,
 * psk_secret (unwrapped with the KEK byte 0 picks, config_fuzz.h),
 * connections. A parse that succeeds must hold what remote_source_validate
 * promises; a failure leaves nothing allocated and says why in one line.
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	struct kek kek_storage;
	const struct kek *kek = config_fuzz_kek(data[0], &kek_storage);
	struct remote_source_config remote;
	struct error err = {{0}};
	if (remote_config_parse((const char *)data + 1, size - 1, kek, &remote, &err) == 0) {
		config_fuzz_check_remote(&remote);
		remote_config_free(&remote);
		if (remote.address || remote.psk_secret.present)
			abort();
	} else {
		config_fuzz_check_error(&err);
		if (remote.address || remote.psk_identity || remote.psk_secret.present)
			abort();
	}
	kek_free(&kek_storage);
	return 0;
}
