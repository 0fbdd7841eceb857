/* The cipher against known vectors: worked vectors in ubiblk's tweak layout
 * (the test keys on a 'Hello, world!' sector, computed with an independent
 * IEEE 1619 implementation, OpenSSL's EVP_aes_256_xts and isa-l_crypto,
 * which agree) and IEEE 1619-2007
 * XTS-AES-256 vectors 10 to 14 (512-byte data units, fed with IEEE's tweak
 * layout through xts_crypt_unit), plus the refusal of equal key halves and
 * agreement with the independent EVP_aes_256_xts reference.
 *
 * Every test runs once with the engine xts_cipher_new chooses and once more
 * through each engine this machine can run (xts_cipher_new_engine); the
 * engines it cannot run are named on stdout. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>

#include "crypto/crypto.h"
#include "crypto/xts_internal.h"
#include "xts_reference.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

static void from_hex(const char *hex, uint8_t *out, size_t len)
{
	assert_int_equal(strlen(hex), 2 * len);
	for (size_t i = 0; i < len; i++) {
		unsigned v;
		assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
		out[i] = (uint8_t)v;
	}
}

static void assert_hex(const uint8_t *got, const char *want_hex)
{
	size_t len = strlen(want_hex) / 2;
	uint8_t want[64];
	assert_true(len <= sizeof(want));
	from_hex(want_hex, want, len);
	assert_memory_equal(got, want, len);
}

static void sha256(const uint8_t *data, size_t len, uint8_t out[32])
{
	unsigned n = 0;
	assert_int_equal(EVP_Digest(data, len, out, &n, EVP_sha256(), NULL), 1);
	assert_int_equal(n, 32);
}

/* ---- worked vectors: key1 = 0123456789abcdef, key2 = fedcba9876543210,
 * each repeated 4 times; sector 0, 1 and 0x0102030405060708 ---- */

static uint8_t spec_key1[32], spec_key2[32];

static void spec_keys(void)
{
	for (int i = 0; i < 32; i++) {
		spec_key1[i] = (uint8_t[]){0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef}[i % 8];
		spec_key2[i] = (uint8_t[]){0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10}[i % 8];
	}
}

static void spec_plaintext(uint8_t sector[512])
{
	memset(sector, 0, 512);
	memcpy(sector, "Hello, world!", 13);
}

static const struct {
	uint64_t sector;
	const char *head, *tail, *sha;
} spec_vectors[] = {
    {0, "26d9489bc33c42058b19157456f543cd5849577c85a0524fe488d3b202903a33",
     "cd5e5d599646cf47af889d0bcd172486cd7408bbcfe5dedeee6339120f54eafc",
     "0f1e9409adc7673b1130ddd27298918875255456429bbe8f1b504c9ffebeaff0"},
    {1, "3c06a23053c648a726af8c5e3ae79b5c7f947fc8f0ac4365b8623a3384dee455",
     "b78251f8e6b4eeeade57a4399e8375a9e792f9ab5da2013c180e7942397b3114",
     "91c62dbb453ea96dc229b90716b708d12732731ecf5f5937286f9f4b91e31d6a"},
    {0x0102030405060708ull, "e96830aa6e1cece3bd0accace57b0149ebfd3a6cd4e4316462266a0d26351681",
     "3806cc271dad62314a949561b27af94f08eb363de7041bb1a385ce3cfc1bb3dc",
     "eaf6b724d9a97534921a9c29d5100708bbd8af81751b4cbe3f8e43a02062e875"},
};

/* NULL: the chosen one. */
static const char *engine_under_test;

static struct xts_cipher *new_cipher(const uint8_t *k1, const uint8_t *k2)
{
	struct xts_cipher *c = NULL;
	struct error err = {0};
	int rc = engine_under_test ? xts_cipher_new_engine(engine_under_test, k1, k2, &c, &err)
				   : xts_cipher_new(k1, k2, &c, &err);
	if (rc < 0)
		fail_msg("%s", err.text);
	return c;
}

static void spec_vectors_encrypt_and_decrypt(void **state)
{
	(void)state;
	spec_keys();
	struct xts_cipher *c = new_cipher(spec_key1, spec_key2);
	uint8_t plain[512], cipher[512], back[512], digest[32];
	spec_plaintext(plain);
	for (size_t i = 0; i < sizeof(spec_vectors) / sizeof(spec_vectors[0]); i++) {
		assert_int_equal(xts_encrypt(c, spec_vectors[i].sector, plain, cipher, 1), 0);
		assert_hex(cipher, spec_vectors[i].head);
		assert_hex(cipher + 480, spec_vectors[i].tail);
		sha256(cipher, sizeof(cipher), digest);
		assert_hex(digest, spec_vectors[i].sha);
		assert_int_equal(xts_decrypt(c, spec_vectors[i].sector, cipher, back, 1), 0);
		assert_memory_equal(back, plain, 512);
		/* In place gives the same. */
		memcpy(back, plain, 512);
		assert_int_equal(xts_encrypt(c, spec_vectors[i].sector, back, back, 1), 0);
		assert_memory_equal(back, cipher, 512);
	}
	xts_cipher_free(c);
}

/* The spec's negative checks: dm-crypt's plain64 layout and swapped keys
 * give other first blocks for sector 1, and ours gives neither. */
static void spec_negative_checks(void **state)
{
	(void)state;
	spec_keys();
	uint8_t plain[512], ours[512], other[512];
	spec_plaintext(plain);
	struct xts_cipher *c = new_cipher(spec_key1, spec_key2);
	assert_int_equal(xts_encrypt(c, 1, plain, ours, 1), 0);
	xts_cipher_free(c);

	assert_int_equal(ref_xts(spec_key1, spec_key2, true, REF_TWEAK_PLAIN64, 1, plain, other, 1),
			 0);
	assert_hex(other, "5d512fcb08d7ea8dc81e808d5a27edb0");
	assert_memory_not_equal(ours, other, 16);

	c = new_cipher(spec_key2, spec_key1);
	assert_int_equal(xts_encrypt(c, 1, plain, other, 1), 0);
	xts_cipher_free(c);
	assert_hex(other, "1125502a4c84b4c40cc39a47e20f0620");
	assert_memory_not_equal(ours, other, 16);
}

/* ---- IEEE 1619-2007 Annex B, XTS-AES-256, 512-byte data units ---- */

static const struct {
	int number;
	uint64_t sequence; /* the data unit sequence number */
	const char *ciphertext;
} ieee_vectors[] = {
    {10, 0xffull,
     "1c3b3a102f770386e4836c99e370cf9bea00803f5e482357a4ae12d414a3e63b"
     "5d31e276f8fe4a8d66b317f9ac683f44680a86ac35adfc3345befecb4bb188fd"
     "5776926c49a3095eb108fd1098baec70aaa66999a72a82f27d848b21d4a741b0"
     "c5cd4d5fff9dac89aeba122961d03a757123e9870f8acf1000020887891429ca"
     "2a3e7a7d7df7b10355165c8b9a6d0a7de8b062c4500dc4cd120c0f7418dae3d0"
     "b5781c34803fa75421c790dfe1de1834f280d7667b327f6c8cd7557e12ac3a0f"
     "93ec05c52e0493ef31a12d3d9260f79a289d6a379bc70c50841473d1a8cc81ec"
     "583e9645e07b8d9670655ba5bbcfecc6dc3966380ad8fecb17b6ba02469a020a"
     "84e18e8f84252070c13e9f1f289be54fbc481457778f616015e1327a02b140f1"
     "505eb309326d68378f8374595c849d84f4c333ec4423885143cb47bd71c5edae"
     "9be69a2ffeceb1bec9de244fbe15992b11b77c040f12bd8f6a975a44a0f90c29"
     "a9abc3d4d893927284c58754cce294529f8614dcd2aba991925fedc4ae74ffac"
     "6e333b93eb4aff0479da9a410e4450e0dd7ae4c6e2910900575da401fc07059f"
     "645e8b7e9bfdef33943054ff84011493c27b3429eaedb4ed5376441a77ed4385"
     "1ad77f16f541dfd269d50d6a5f14fb0aab1cbb4c1550be97f7ab4066193c4caa"
     "773dad38014bd2092fa755c824bb5e54c4f36ffda9fcea70b9c6e693e148c151"},
    {11, 0xffffull,
     "77a31251618a15e6b92d1d66dffe7b50b50bad552305ba0217a610688eff7e11"
     "e1d0225438e093242d6db274fde801d4cae06f2092c728b2478559df58e837c2"
     "469ee4a4fa794e4bbc7f39bc026e3cb72c33b0888f25b4acf56a2a9804f1ce6d"
     "3d6e1dc6ca181d4b546179d55544aa7760c40d06741539c7e3cd9d2f6650b201"
     "3fd0eeb8c2b8e3d8d240ccae2d4c98320a7442e1c8d75a42d6e6cfa4c2eca179"
     "8d158c7aecdf82490f24bb9b38e108bcda12c3faf9a21141c3613b58367f922a"
     "aa26cd22f23d708dae699ad7cb40a8ad0b6e2784973dcb605684c08b8d6998c6"
     "9aac049921871ebb65301a4619ca80ecb485a31d744223ce8ddc2394828d6a80"
     "470c092f5ba413c3378fa6054255c6f9df4495862bbb3287681f931b687c888a"
     "bf844dfc8fc28331e579928cd12bd2390ae123cf03818d14dedde5c0c24c8ab0"
     "18bfca75ca096f2d531f3d1619e785f1ada437cab92e980558b3dce1474afb75"
     "bfedbf8ff54cb2618e0244c9ac0d3c66fb51598cd2db11f9be39791abe447c63"
     "094f7c453b7ff87cb5bb36b7c79efb0872d17058b83b15ab0866ad8a58656c5a"
     "7e20dbdf308b2461d97c0ec0024a2715055249cf3b478ddd4740de654f75ca68"
     "6e0d7345c69ed50cdc2a8b332b1f8824108ac937eb050585608ee734097fc090"
     "54fbff89eeaeea791f4a7ab1f9868294a4f9e27b42af8100cb9d59cef9645803"},
    {12, 0xffffffull,
     "e387aaa58ba483afa7e8eb469778317ecf4cf573aa9d4eac23f2cdf914e4e200"
     "a8b490e42ee646802dc6ee2b471b278195d60918ececb44bf79966f83faba049"
     "9298ebc699c0c8634715a320bb4f075d622e74c8c932004f25b41e361025b5a8"
     "7815391f6108fc4afa6a05d9303c6ba68a128a55705d415985832fdeaae6c8e1"
     "9110e84d1b1f199a2692119edc96132658f09da7c623efcec712537a3d94c0bf"
     "5d7e352ec94ae5797fdb377dc1551150721adf15bd26a8efc2fcaad56881fa9e"
     "62462c28f30ae1ceaca93c345cf243b73f542e2074a705bd2643bb9f7cc79bb6"
     "e7091ea6e232df0f9ad0d6cf502327876d82207abf2115cdacf6d5a48f6c1879"
     "a65b115f0f8b3cb3c59d15dd8c769bc014795a1837f3901b5845eb491adfefe0"
     "97b1fa30a12fc1f65ba22905031539971a10f2f36c321bb51331cdefb39e3964"
     "c7ef079994f5b69b2edd83a71ef549971ee93f44eac3938fcdd61d01fa71799d"
     "a3a8091c4c48aa9ed263ff0749df95d44fef6a0bb578ec69456aa5408ae32c7a"
     "f08ad7ba8921287e3bbee31b767be06a0e705c864a769137df28292283ea81a2"
     "480241b44d9921cdbec1bc28dc1fda114bd8e5217ac9d8ebafa720e9da4f9ace"
     "231cc949e5b96fe76ffc21063fddc83a6b8679c00d35e09576a875305bed5f36"
     "ed242c8900dd1fa965bc950dfce09b132263a1eef52dd6888c309f5a7d712826"},
    {13, 0xffffffffull,
     "bf53d2dade78e822a4d949a9bc6766b01b06a8ef70d26748c6a7fc36d80ae4c5"
     "520f7c4ab0ac8544424fa405162fef5a6b7f229498063618d39f0003cb5fb8d1"
     "c86b643497da1ff945c8d3bedeca4f479702a7a735f043ddb1d6aaade3c4a0ac"
     "7ca7f3fa5279bef56f82cd7a2f38672e824814e10700300a055e1630b8f1cb0e"
     "919f5e942010a416e2bf48cb46993d3cb6a51c19bacf864785a00bc2ecff15d3"
     "50875b246ed53e68be6f55bd7e05cfc2b2ed6432198a6444b6d8c247fab941f5"
     "69768b5c429366f1d3f00f0345b96123d56204c01c63b22ce78baf116e525ed9"
     "0fdea39fa469494d3866c31e05f295ff21fea8d4e6e13d67e47ce722e9698a1c"
     "1048d68ebcde76b86fcf976eab8aa9790268b7068e017a8b9b749409514f1053"
     "027fd16c3786ea1bac5f15cb79711ee2abe82f5cf8b13ae73030ef5b9e4457e7"
     "5d1304f988d62dd6fc4b94ed38ba831da4b7634971b6cd8ec325d9c61c00f1df"
     "73627ed3745a5e8489f3a95c69639c32cd6e1d537a85f75cc844726e8a72fc00"
     "77ad22000f1d5078f6b866318c668f1ad03d5a5fced5219f2eabbd0aa5c0f460"
     "d183f04404a0d6f469558e81fab24a167905ab4c7878502ad3e38fdbe62a4155"
     "6cec37325759533ce8f25f367c87bb5578d667ae93f9e2fd99bcbc5f2fbba88c"
     "f6516139420fcff3b7361d86322c4bd84c82f335abb152c4a93411373aaa8220"},
    {14, 0xffffffffffull,
     "64497e5a831e4a932c09be3e5393376daa599548b816031d224bbf50a818ed23"
     "50eae7e96087c8a0db51ad290bd00c1ac1620857635bf246c176ab463be30b80"
     "8da548081ac847b158e1264be25bb0910bbc92647108089415d45fab1b3d2604"
     "e8a8eff1ae4020cfa39936b66827b23f371b92200be90251e6d73c5f86de5fd4"
     "a950781933d79a28272b782a2ec313efdfcc0628f43d744c2dc2ff3dcb66999b"
     "50c7ca895b0c64791eeaa5f29499fb1c026f84ce5b5c72ba1083cddb5ce45434"
     "631665c333b60b11593fb253c5179a2c8db813782a004856a1653011e93fb6d8"
     "76c18366dd8683f53412c0c180f9c848592d593f8609ca736317d356e13e2bff"
     "3a9f59cd9aeb19cd482593d8c46128bb32423b37a9adfb482b99453fbe25a41b"
     "f6feb4aa0bef5ed24bf73c762978025482c13115e4015aac992e5613a3b5c2f6"
     "85b84795cb6e9b2656d8c88157e52c42f978d8634c43d06fea928f2822e465aa"
     "6576e9bf419384506cc3ce3c54ac1a6f67dc66f3b30191e698380bc999b05abc"
     "e19dc0c6dcc2dd001ec535ba18deb2df1a101023108318c75dc98611a09dc48a"
     "0acdec676fabdf222f07e026f059b672b56e5cbc8e1d21bbd867dd9272120546"
     "81d70ea737134cdfce93b6f82ae22423274e58a0821cc5502e2d0ab4585e94de"
     "6975be5e0b4efce51cd3e70c25a1fbbbd609d273ad5b0d59631c531f6a0a57b9"},
};

static void ieee_1619_vectors_10_to_14(void **state)
{
	(void)state;
	uint8_t key1[32], key2[32];
	from_hex("2718281828459045235360287471352662497757247093699959574966967627", key1, 32);
	from_hex("3141592653589793238462643383279502884197169399375105820974944592", key2, 32);
	struct xts_cipher *c = new_cipher(key1, key2);
	uint8_t plain[512], want[512], got[512];
	for (int i = 0; i < 512; i++)
		plain[i] = (uint8_t)i;
	for (size_t v = 0; v < sizeof(ieee_vectors) / sizeof(ieee_vectors[0]); v++) {
		from_hex(ieee_vectors[v].ciphertext, want, sizeof(want));
		/* IEEE's tweak: the sequence number as a 128-bit little-endian
		 * integer, i.e. in bytes 0..7 (ubiblk puts the sector in 8..15). */
		uint8_t tweak[XTS_TWEAK_BYTES] = {0};
		for (int b = 0; b < 8; b++)
			tweak[b] = (uint8_t)(ieee_vectors[v].sequence >> (8 * b));
		assert_int_equal(xts_crypt_unit(c, true, tweak, plain, got), 0);
		if (memcmp(got, want, sizeof(got)) != 0)
			fail_msg("IEEE 1619 vector %d: wrong ciphertext", ieee_vectors[v].number);
		assert_int_equal(xts_crypt_unit(c, false, tweak, want, got), 0);
		assert_memory_equal(got, plain, sizeof(plain));
	}
	xts_cipher_free(c);
}

/* ---- keys ---- */

static void equal_halves_are_refused(void **state)
{
	(void)state;
	uint8_t key[32];
	memset(key, 0x5a, sizeof(key));
	struct xts_cipher *c = (struct xts_cipher *)&c;
	struct error err = {0};
	assert_int_equal(xts_cipher_new(key, key, &c, &err), -EINVAL);
	assert_null(c);
	assert_string_equal(err.text,
			    "encryption_key: the two keys must differ (AES-XTS with equal "
			    "halves is refused by OpenSSL and weak)");

	struct bdev *null_dev, *dev = NULL;
	assert_int_equal(bdev_open_null(8, &null_dev), 0);
	error_clear(&err);
	assert_int_equal(crypt_bdev_open(null_dev, key, key, &dev, &err), -EINVAL);
	assert_null(dev);
	assert_non_null(strstr(err.text, "the two keys must differ"));
	bdev_close(null_dev);

	/* One differing byte is enough. */
	uint8_t other[32];
	memcpy(other, key, sizeof(other));
	other[31] ^= 1;
	c = new_cipher(key, other);
	xts_cipher_free(c);
}

/* ---- runs of sectors against the independent reference ---- */

static void fill_pattern(uint8_t *buf, size_t len, uint32_t seed)
{
	uint32_t x = seed | 1;
	for (size_t i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		buf[i] = (uint8_t)x;
	}
}

/* Runs longer than the cipher's internal batch, odd lengths, a sector
 * number whose low bytes carry over: all equal to one EVP_aes_256_xts call
 * per sector. Out of place into aligned memory (streaming stores), into
 * misaligned memory, and in place. */
static void runs_match_reference(void **state)
{
	(void)state;
	uint8_t key1[32], key2[32];
	fill_pattern(key1, 32, 11);
	fill_pattern(key2, 32, 22);
	struct xts_cipher *c = new_cipher(key1, key2);
	enum { MAX_SECTORS = 67 };
	uint8_t *plain = malloc(MAX_SECTORS * 512), *ours = malloc(MAX_SECTORS * 512),
		*ref = malloc(MAX_SECTORS * 512), *odd = malloc(MAX_SECTORS * 512 + 1);
	assert_non_null(plain);
	assert_non_null(ours);
	assert_non_null(ref);
	assert_non_null(odd);
	const struct {
		uint64_t first;
		size_t count;
	} runs[] = {{0, 1},
		    {5, 15},
		    {16, 16},
		    {100, 17},
		    {0xffffffffull - 3, 33},
		    {0x00ffffffffffffe0ull, MAX_SECTORS},
		    {UINT64_MAX - 7, 8}};
	for (size_t r = 0; r < sizeof(runs) / sizeof(runs[0]); r++) {
		size_t bytes = runs[r].count * 512;
		fill_pattern(plain, bytes, (uint32_t)r + 100);
		assert_int_equal(xts_encrypt(c, runs[r].first, plain, ours, runs[r].count), 0);
		assert_int_equal(ref_xts(key1, key2, true, REF_TWEAK_UBIBLK, runs[r].first, plain,
					 ref, runs[r].count),
				 0);
		assert_memory_equal(ours, ref, bytes);
		assert_int_equal(xts_encrypt(c, runs[r].first, plain, odd + 1, runs[r].count), 0);
		assert_memory_equal(odd + 1, ref, bytes);
		assert_int_equal(xts_decrypt(c, runs[r].first, odd + 1, odd + 1, runs[r].count), 0);
		assert_memory_equal(odd + 1, plain, bytes);
		/* Decryption in place, and by the reference. */
		assert_int_equal(xts_decrypt(c, runs[r].first, ours, ours, runs[r].count), 0);
		assert_memory_equal(ours, plain, bytes);
		assert_int_equal(ref_xts(key1, key2, false, REF_TWEAK_UBIBLK, runs[r].first, ref,
					 ref, runs[r].count),
				 0);
		assert_memory_equal(ref, plain, bytes);
	}
	free(plain);
	free(ours);
	free(ref);
	free(odd);
	xts_cipher_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(spec_vectors_encrypt_and_decrypt),
	    cmocka_unit_test(spec_negative_checks),
	    cmocka_unit_test(ieee_1619_vectors_10_to_14),
	    cmocka_unit_test(equal_halves_are_refused),
	    cmocka_unit_test(runs_match_reference),
	};
	int failures = cmocka_run_group_tests_name("the chosen engine", tests, NULL, NULL);
	printf("chosen engine: %s\n", xts_engine_chosen());
	for (size_t i = 0; i < xts_engine_count(); i++) {
		const char *why = xts_engine_unsupported_at(i);
		if (why) {
			printf("engine %s: not tested, this machine cannot run it (%s)\n",
			       xts_engine_name_at(i), why);
			continue;
		}
		engine_under_test = xts_engine_name_at(i);
		failures += cmocka_run_group_tests_name(engine_under_test, tests, NULL, NULL);
	}
	return failures;
}
