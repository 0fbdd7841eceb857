/* The "vaes-avx512" XTS engine: AES-256-XTS on 512-byte units with VAES,
 * VPCLMULQDQ and AVX-512 (x86-64), four AES blocks per instruction.
 *
 * Why our own: OpenSSL 3.0 (Debian 12) runs XTS with AES-NI one block per
 * instruction and, per 512-byte unit, pays a call that re-derives the
 * tweak; libgcrypt 1.10's bulk XTS uses VAES/AVX2 but pays its own per-call
 * set-up for every unit. Here a 512-byte unit is 8 vectors of 4 blocks whose
 * AES rounds are interleaved (8 independent chains keep the AES units busy),
 * and the tweaks of up to 16 units are encrypted together, 4 per vector.
 *
 * XTS per unit: T = AES-Enc(key2, tweak); block j: C = AES(key1, P ^ T_j)
 * ^ T_j with T_j = T * alpha^j in GF(2^128) (the 16 bytes read as a
 * little-endian integer, reduced by x^128 + x^7 + x^2 + x + 1). The masks
 * come four lanes at a time, T_j..T_j+3, and each next vector is the last
 * times alpha^4: a 4-bit shift of each lane whose carried-out bits are
 * folded back with a carry-less multiply by 0x87 (no data-dependent branch
 * or load: constant time).
 *
 * Every function that uses these instructions carries VAES_TARGET and is
 * only reached after vaes_unsupported() returned NULL; the rest of the
 * build keeps its baseline flags. */
#include "crypto/xts_engine.h"

#include "common/common.h"

#include <errno.h>
#include <string.h>

#if defined(__x86_64__)

#include <cpuid.h>
#include <immintrin.h>

#define VAES_TARGET __attribute__((target("aes,avx512f,avx512bw,avx512vl,vaes,vpclmulqdq")))

#define ROUNDS	      14u /* AES-256 */
#define UNIT_VECTORS  (XTS_UNIT_BYTES / 64u)
#define TWEAK_BATCH   16u /* units whose tweaks are encrypted together */
#define TWEAK_VECTORS (TWEAK_BATCH / 4u)

struct xts_vaes {
	__m128i enc[ROUNDS + 1];     /* key1, encryption schedule */
	__m128i dec[ROUNDS + 1];     /* key1, equivalent inverse cipher schedule */
	__m128i tweak[ROUNDS + 1];   /* key2, encryption schedule */
	__m128i tweaks[TWEAK_BATCH]; /* scratch: encrypted tweaks of a batch */
};

/* ---- key schedule (AES-NI) ---- */

/* One step of the AES-256 expansion: `prev2` with the running XOR of its
 * words, XORed with the chosen word of the assist result. */
VAES_TARGET static inline __m128i expand_step(__m128i prev2, __m128i assist)
{
	__m128i k = prev2;
	k = _mm_xor_si128(k, _mm_slli_si128(k, 4));
	k = _mm_xor_si128(k, _mm_slli_si128(k, 4));
	k = _mm_xor_si128(k, _mm_slli_si128(k, 4));
	return _mm_xor_si128(k, assist);
}

/* aeskeygenassist needs its round constant as an immediate: one line per
 * round, written out. Even round keys take RotWord+SubWord+Rcon (word 3 of
 * the assist), odd ones SubWord only (word 2). */
VAES_TARGET static void expand_key(const uint8_t key[XTS_KEY_BYTES], __m128i rk[ROUNDS + 1])
{
	rk[0] = _mm_loadu_si128((const __m128i *)key);
	rk[1] = _mm_loadu_si128((const __m128i *)(key + 16));
#define EVEN(i, rcon)                                                                              \
	rk[i] = expand_step(rk[i - 2],                                                             \
			    _mm_shuffle_epi32(_mm_aeskeygenassist_si128(rk[i - 1], rcon), 0xff))
#define ODD(i)                                                                                     \
	rk[i] = expand_step(rk[i - 2],                                                             \
			    _mm_shuffle_epi32(_mm_aeskeygenassist_si128(rk[i - 1], 0), 0xaa))
	EVEN(2, 0x01);
	ODD(3);
	EVEN(4, 0x02);
	ODD(5);
	EVEN(6, 0x04);
	ODD(7);
	EVEN(8, 0x08);
	ODD(9);
	EVEN(10, 0x10);
	ODD(11);
	EVEN(12, 0x20);
	ODD(13);
	EVEN(14, 0x40);
#undef EVEN
#undef ODD
}

/* The decryption schedule of the equivalent inverse cipher (FIPS-197 5.3.5):
 * the encryption keys reversed, InvMixColumns applied to the inner ones. */
VAES_TARGET static void inverse_schedule(const __m128i enc[ROUNDS + 1], __m128i dec[ROUNDS + 1])
{
	dec[0] = enc[ROUNDS];
	for (unsigned r = 1; r < ROUNDS; r++)
		dec[r] = _mm_aesimc_si128(enc[ROUNDS - r]);
	dec[ROUNDS] = enc[0];
}

/* ---- the GF(2^128) masks ---- */

/* T * alpha for one lane (the first four masks of a unit). */
VAES_TARGET static inline __m128i times_alpha(__m128i t)
{
	const __m128i poly = _mm_set_epi32(0, 1, 0, 0x87);
	__m128i carries = _mm_shuffle_epi32(_mm_srai_epi32(t, 31), 0x13);
	return _mm_xor_si128(_mm_add_epi64(t, t), _mm_and_si128(carries, poly));
}

/* Each of the four lanes times alpha^4. */
VAES_TARGET static inline __m512i times_alpha4(__m512i v, __m512i poly)
{
	__m512i out4 = _mm512_srli_epi64(v, 60);		     /* each qword's top 4 bits */
	__m512i low_to_high = _mm512_bslli_epi128(out4, 8);	     /* low qword's, into high */
	__m512i folded = _mm512_clmulepi64_epi128(out4, poly, 0x01); /* high's, times 0x87 */
	return _mm512_ternarylogic_epi64(_mm512_slli_epi64(v, 4), low_to_high, folded, 0x96);
}

/* [T, T*a, T*a^2, T*a^3] */
VAES_TARGET static inline __m512i first_masks(__m128i t)
{
	__m128i t1 = times_alpha(t), t2 = times_alpha(t1), t3 = times_alpha(t2);
	__m512i v = _mm512_castsi128_si512(t);
	v = _mm512_inserti32x4(v, t1, 1);
	v = _mm512_inserti32x4(v, t2, 2);
	return _mm512_inserti32x4(v, t3, 3);
}

/* ---- AES over vectors ---- */

/* Encrypts `count` (<= TWEAK_BATCH, a multiple of 1) initial tweaks with
 * key2, four per vector, the vectors' rounds interleaved. */
VAES_TARGET static void encrypt_tweaks(struct xts_vaes *c, __m128i *tweaks, size_t count)
{
	__m512i v[TWEAK_VECTORS];
	size_t nvec = (count + 3) / 4;
	for (size_t i = 0; i < nvec; i++)
		v[i] = _mm512_loadu_si512((const void *)(tweaks + 4 * i));
	__m512i k = _mm512_broadcast_i32x4(c->tweak[0]);
	for (size_t i = 0; i < nvec; i++)
		v[i] = _mm512_xor_si512(v[i], k);
	for (unsigned r = 1; r < ROUNDS; r++) {
		k = _mm512_broadcast_i32x4(c->tweak[r]);
		for (size_t i = 0; i < nvec; i++)
			v[i] = _mm512_aesenc_epi128(v[i], k);
	}
	k = _mm512_broadcast_i32x4(c->tweak[ROUNDS]);
	for (size_t i = 0; i < nvec; i++)
		_mm512_storeu_si512((void *)(tweaks + 4 * i), _mm512_aesenclast_epi128(v[i], k));
}

/* One unit whose encrypted tweak is t. `stream`: out is 64-byte aligned
 * and not in, so it gets non-temporal stores (it is read by a device next,
 * not by this CPU: no need to fetch its lines first). */
VAES_TARGET static inline void crypt_one_unit(const struct xts_vaes *c, bool encrypt, __m128i t,
					      const uint8_t *in, uint8_t *out, bool stream)
{
	const __m512i poly = _mm512_set4_epi32(0, 0, 0, 0x87);
	const __m128i *keys = encrypt ? c->enc : c->dec;
	__m512i m[UNIT_VECTORS], x[UNIT_VECTORS];
	m[0] = first_masks(t);
	for (unsigned i = 1; i < UNIT_VECTORS; i++)
		m[i] = times_alpha4(m[i - 1], poly);
	__m512i k = _mm512_broadcast_i32x4(keys[0]);
	for (unsigned i = 0; i < UNIT_VECTORS; i++)
		x[i] = _mm512_ternarylogic_epi64(_mm512_loadu_si512((const void *)(in + 64 * i)),
						 m[i], k, 0x96);
	if (encrypt) {
		for (unsigned r = 1; r < ROUNDS; r++) {
			k = _mm512_broadcast_i32x4(keys[r]);
			for (unsigned i = 0; i < UNIT_VECTORS; i++)
				x[i] = _mm512_aesenc_epi128(x[i], k);
		}
		/* aesenclast's key XOR folds the mask in: last key ^ mask. */
		k = _mm512_broadcast_i32x4(keys[ROUNDS]);
		for (unsigned i = 0; i < UNIT_VECTORS; i++)
			x[i] = _mm512_aesenclast_epi128(x[i], _mm512_xor_si512(k, m[i]));
	} else {
		for (unsigned r = 1; r < ROUNDS; r++) {
			k = _mm512_broadcast_i32x4(keys[r]);
			for (unsigned i = 0; i < UNIT_VECTORS; i++)
				x[i] = _mm512_aesdec_epi128(x[i], k);
		}
		k = _mm512_broadcast_i32x4(keys[ROUNDS]);
		for (unsigned i = 0; i < UNIT_VECTORS; i++)
			x[i] = _mm512_aesdeclast_epi128(x[i], _mm512_xor_si512(k, m[i]));
	}
	for (unsigned i = 0; i < UNIT_VECTORS; i++) {
		if (stream)
			_mm512_stream_si512((void *)(out + 64 * i), x[i]);
		else
			_mm512_storeu_si512((void *)(out + 64 * i), x[i]);
	}
}

static bool streams_to(const uint8_t *in, const uint8_t *out)
{
	return in != out && ((uintptr_t)out & 63u) == 0;
}

VAES_TARGET static int vaes_crypt_sectors(void *state, bool encrypt, uint64_t first,
					  const uint8_t *in, uint8_t *out, size_t nsectors)
{
	struct xts_vaes *c = state;
	bool stream = streams_to(in, out);
	while (nsectors) {
		size_t count = nsectors < TWEAK_BATCH ? nsectors : TWEAK_BATCH;
		/* ubiblk's initial tweak: 8 zero bytes, the sector as u64 LE. */
		for (size_t s = 0; s < count; s++)
			c->tweaks[s] = _mm_set_epi64x((long long)(first + s), 0);
		encrypt_tweaks(c, c->tweaks, count);
		for (size_t s = 0; s < count; s++)
			crypt_one_unit(c, encrypt, c->tweaks[s], in + s * XTS_UNIT_BYTES,
				       out + s * XTS_UNIT_BYTES, stream);
		first += count;
		in += count * XTS_UNIT_BYTES;
		out += count * XTS_UNIT_BYTES;
		nsectors -= count;
	}
	if (stream)
		_mm_sfence(); /* streaming stores are weakly ordered */
	return 0;
}

VAES_TARGET static int vaes_crypt_unit(void *state, bool encrypt,
				       const uint8_t tweak[XTS_TWEAK_BYTES], const uint8_t *in,
				       uint8_t *out)
{
	struct xts_vaes *c = state;
	c->tweaks[0] = _mm_loadu_si128((const __m128i *)tweak);
	encrypt_tweaks(c, c->tweaks, 1);
	bool stream = streams_to(in, out);
	crypt_one_unit(c, encrypt, c->tweaks[0], in, out, stream);
	if (stream)
		_mm_sfence();
	return 0;
}

VAES_TARGET static int vaes_open(const uint8_t key1[XTS_KEY_BYTES],
				 const uint8_t key2[XTS_KEY_BYTES], void **state)
{
	struct xts_vaes *c = secret_alloc(sizeof(*c));
	if (!c)
		return -ENOMEM;
	expand_key(key1, c->enc);
	inverse_schedule(c->enc, c->dec);
	expand_key(key2, c->tweak);
	*state = c;
	return 0;
}

static void vaes_close(void *state)
{
	secret_free(state, sizeof(struct xts_vaes));
}

/* Read from CPUID and XCR0 directly: compilers disagree on the feature
 * names __builtin_cpu_supports knows (clang 14 has no "vaes"). The OS must
 * also save the AVX-512 state: XCR0 bits 1-2 (SSE, AVX) and 5-7 (opmask,
 * upper ZMM halves, ZMM16-31). */
static const char *vaes_unsupported(void)
{
	unsigned eax, ebx, ecx, edx;
	if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx))
		return "no CPUID";
	bool aes = ecx & bit_AES, osxsave = ecx & bit_OSXSAVE;
	if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx))
		return "the CPU lacks VAES or VPCLMULQDQ";
	if (!aes || !(ecx & bit_VAES) || !(ecx & bit_VPCLMULQDQ))
		return "the CPU lacks VAES or VPCLMULQDQ";
	if (!(ebx & bit_AVX512F) || !(ebx & bit_AVX512BW) || !(ebx & bit_AVX512VL))
		return "the CPU lacks AVX-512 (F, BW, VL)";
	if (!osxsave)
		return "the kernel does not enable AVX-512";
	unsigned xcr0_lo, xcr0_hi;
	__asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
	if ((xcr0_lo & 0xe6u) != 0xe6u)
		return "the kernel does not enable AVX-512";
	return NULL;
}

#else /* not x86-64 */

static const char *vaes_unsupported(void)
{
	return "VAES and AVX-512 are x86-64 instructions";
}

static int vaes_open(const uint8_t key1[XTS_KEY_BYTES], const uint8_t key2[XTS_KEY_BYTES],
		     void **state)
{
	(void)key1;
	(void)key2;
	(void)state;
	return -EIO;
}

static void vaes_close(void *state)
{
	(void)state;
}

static int vaes_crypt_sectors(void *state, bool encrypt, uint64_t first, const uint8_t *in,
			      uint8_t *out, size_t nsectors)
{
	(void)state, (void)encrypt, (void)first, (void)in, (void)out, (void)nsectors;
	return -EIO;
}

static int vaes_crypt_unit(void *state, bool encrypt, const uint8_t tweak[XTS_TWEAK_BYTES],
			   const uint8_t *in, uint8_t *out)
{
	(void)state, (void)encrypt, (void)tweak, (void)in, (void)out;
	return -EIO;
}

#endif

const struct xts_engine xts_engine_vaes = {
    .name = "vaes-avx512",
    .unsupported = vaes_unsupported,
    .open = vaes_open,
    .close = vaes_close,
    .crypt_sectors = vaes_crypt_sectors,
    .crypt_unit = vaes_crypt_unit,
};
