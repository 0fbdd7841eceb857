/* The independent reference as a command for the integration tests:
 *
 *   xts-reference encrypt|decrypt KEY1_HEX KEY2_HEX FIRST_SECTOR IN OUT
 *
 * transforms the whole of IN (a multiple of 512 bytes), its first sector
 * numbered FIRST_SECTOR, into OUT. */
#include "xts_reference.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int parse_key(const char *hex, uint8_t key[32])
{
	if (strlen(hex) != 64)
		return -1;
	for (int i = 0; i < 32; i++) {
		unsigned v;
		if (sscanf(hex + 2 * i, "%2x", &v) != 1)
			return -1;
		key[i] = (uint8_t)v;
	}
	return 0;
}

int main(int argc, char **argv)
{
	uint8_t key1[32], key2[32];
	if (argc != 7 || (strcmp(argv[1], "encrypt") && strcmp(argv[1], "decrypt")) ||
	    parse_key(argv[2], key1) || parse_key(argv[3], key2)) {
		fprintf(stderr, "usage: xts-reference encrypt|decrypt KEY1_HEX KEY2_HEX "
				"FIRST_SECTOR IN OUT\n");
		return 2;
	}
	uint64_t first = strtoull(argv[4], NULL, 0);
	FILE *in = fopen(argv[5], "rb"), *out = fopen(argv[6], "wb");
	if (!in || !out) {
		perror("xts-reference");
		return 1;
	}
	static uint8_t buf[1 << 20], res[1 << 20];
	size_t n;
	while ((n = fread(buf, 1, sizeof(buf), in)) > 0) {
		if (n % 512 ||
		    ref_xts(key1, key2, strcmp(argv[1], "encrypt") == 0, REF_TWEAK_UBIBLK, first,
			    buf, res, n / 512) ||
		    fwrite(res, 1, n, out) != n) {
			fprintf(stderr, "xts-reference: failed at sector %llu\n",
				(unsigned long long)first);
			return 1;
		}
		first += n / 512;
	}
	if (ferror(in) || fclose(out) != 0) {
		perror("xts-reference");
		return 1;
	}
	fclose(in);
	return 0;
}
