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
 * come four lanes at a time, each lane T shifted by its own count with the
 * carried-out bits folded back by a carry-less multiply with 0x87 (no
 * data-dependent branch or load: constant time; see unit_masks).
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
#define TWEAK_BATCH   32u /* units whose tweaks are encrypted together */
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

/* The 32 masks of a unit, T * alpha^n for n = 0..31, four lanes a vector:
 * vector i lane j holds n = 4i + j. Each is computed from T directly, not
 * from the one before, so the eight vectors do not wait on each other:
 * T * alpha^n is T shifted left n bits as a 128-bit integer, the n bits
 * leaving the top folded back by a carry-less multiply with 0x87 (n + 8 <
 * 64: the product fits the low half, no second reduction). Per-lane shift
 * counts: left n, right 64 - n (a shift by 64 gives 0). */
static const uint64_t mask_shift_left[UNIT_VECTORS][8] __attribute__((aligned(64))) = {
    {0, 0, 1, 1, 2, 2, 3, 3},	      {4, 4, 5, 5, 6, 6, 7, 7},
    {8, 8, 9, 9, 10, 10, 11, 11},     {12, 12, 13, 13, 14, 14, 15, 15},
    {16, 16, 17, 17, 18, 18, 19, 19}, {20, 20, 21, 21, 22, 22, 23, 23},
    {24, 24, 25, 25, 26, 26, 27, 27}, {28, 28, 29, 29, 30, 30, 31, 31}};

VAES_TARGET static inline __attribute__((always_inline)) __m512i
unit_masks(__m512i t, unsigned vector, __m512i poly)
{
	const __m512i sixty_four = _mm512_set1_epi64(64);
	__m512i left = _mm512_load_si512((const void *)mask_shift_left[vector]);
	__m512i out = _mm512_srlv_epi64(t, _mm512_sub_epi64(sixty_four, left));
	__m512i low_to_high = _mm512_bslli_epi128(out, 8);	    /* low qword's, into high */
	__m512i folded = _mm512_clmulepi64_epi128(out, poly, 0x01); /* high's, times 0x87 */
	return _mm512_ternarylogic_epi64(_mm512_sllv_epi64(t, left), low_to_high, folded, 0x96);
}

/* ---- AES over vectors ---- */

/* Encrypts `count` (<= TWEAK_BATCH) initial tweaks with
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

/* The units of a batch, their encrypted tweaks in `tweaks`. One body for
 * both directions and both kinds of store, always inlined into the four
 * functions below so the compiler specialises it for each (constant
 * arguments) and keeps the 8 data and 8 mask vectors in registers.
 * `stream`: out is 64-byte aligned and not in, so it gets non-temporal
 * stores (read by a device next, not by this CPU: no need to fetch its
 * lines first). */
VAES_TARGET static inline __attribute__((always_inline)) void
crypt_units(const struct xts_vaes *c, bool encrypt, bool stream, const __m128i *tweaks,
	    size_t count, const uint8_t *in, uint8_t *out)
{
	const __m512i poly = _mm512_set4_epi32(0, 0, 0, 0x87);
	const __m128i *keys = encrypt ? c->enc : c->dec;
	for (size_t s = 0; s < count; s++, in += XTS_UNIT_BYTES, out += XTS_UNIT_BYTES) {
		__m512i m[UNIT_VECTORS], x[UNIT_VECTORS];
		__m512i t = _mm512_broadcast_i32x4(tweaks[s]);
#pragma GCC unroll 8
		for (unsigned i = 0; i < UNIT_VECTORS; i++)
			m[i] = unit_masks(t, i, poly);
		__m512i k = _mm512_broadcast_i32x4(keys[0]);
#pragma GCC unroll 8
		for (unsigned i = 0; i < UNIT_VECTORS; i++)
			x[i] = _mm512_ternarylogic_epi64(
			    _mm512_loadu_si512((const void *)(in + 64 * i)), m[i], k, 0x96);
#pragma GCC unroll 13
		for (unsigned r = 1; r < ROUNDS; r++) {
			k = _mm512_broadcast_i32x4(keys[r]);
#pragma GCC unroll 8
			for (unsigned i = 0; i < UNIT_VECTORS; i++)
				x[i] = encrypt ? _mm512_aesenc_epi128(x[i], k)
					       : _mm512_aesdec_epi128(x[i], k);
		}
		/* The last round's key XOR folds the mask in: last key ^ mask. */
		k = _mm512_broadcast_i32x4(keys[ROUNDS]);
#pragma GCC unroll 8
		for (unsigned i = 0; i < UNIT_VECTORS; i++) {
			__m512i km = _mm512_xor_si512(k, m[i]);
			x[i] = encrypt ? _mm512_aesenclast_epi128(x[i], km)
				       : _mm512_aesdeclast_epi128(x[i], km);
			if (stream)
				_mm512_stream_si512((void *)(out + 64 * i), x[i]);
			else
				_mm512_storeu_si512((void *)(out + 64 * i), x[i]);
		}
	}
}

typedef void units_fn(const struct xts_vaes *c, const __m128i *tweaks, size_t count,
		      const uint8_t *in, uint8_t *out);

VAES_TARGET static void encrypt_stored(const struct xts_vaes *c, const __m128i *tweaks,
				       size_t count, const uint8_t *in, uint8_t *out)
{
	crypt_units(c, true, false, tweaks, count, in, out);
}

VAES_TARGET static void encrypt_streamed(const struct xts_vaes *c, const __m128i *tweaks,
					 size_t count, const uint8_t *in, uint8_t *out)
{
	crypt_units(c, true, true, tweaks, count, in, out);
}

VAES_TARGET static void decrypt_stored(const struct xts_vaes *c, const __m128i *tweaks,
				       size_t count, const uint8_t *in, uint8_t *out)
{
	crypt_units(c, false, false, tweaks, count, in, out);
}

VAES_TARGET static void decrypt_streamed(const struct xts_vaes *c, const __m128i *tweaks,
					 size_t count, const uint8_t *in, uint8_t *out)
{
	crypt_units(c, false, true, tweaks, count, in, out);
}

/* Streaming stores when out is 64-byte aligned and not in. */
static units_fn *units_for(bool encrypt, const uint8_t *in, const uint8_t *out)
{
	bool stream = in != out && ((uintptr_t)out & 63u) == 0;
	if (encrypt)
		return stream ? encrypt_streamed : encrypt_stored;
	return stream ? decrypt_streamed : decrypt_stored;
}

VAES_TARGET static int vaes_crypt_sectors(void *state, bool encrypt, uint64_t first,
					  const uint8_t *in, uint8_t *out, size_t nsectors)
{
	struct xts_vaes *c = state;
	units_fn *units = units_for(encrypt, in, out);
	while (nsectors) {
		size_t count = nsectors < TWEAK_BATCH ? nsectors : TWEAK_BATCH;
		/* ubiblk's initial tweak: 8 zero bytes, the sector as u64 LE. */
		for (size_t s = 0; s < count; s++)
			c->tweaks[s] = _mm_set_epi64x((long long)(first + s), 0);
		encrypt_tweaks(c, c->tweaks, count);
		units(c, c->tweaks, count, in, out);
		first += count;
		in += count * XTS_UNIT_BYTES;
		out += count * XTS_UNIT_BYTES;
		nsectors -= count;
	}
	return 0; /* streaming stores left unfenced: xts_engine.h */
}

VAES_TARGET static int vaes_crypt_unit(void *state, bool encrypt,
				       const uint8_t tweak[XTS_TWEAK_BYTES], const uint8_t *in,
				       uint8_t *out)
{
	struct xts_vaes *c = state;
	c->tweaks[0] = _mm_loadu_si128((const __m128i *)tweak);
	encrypt_tweaks(c, c->tweaks, 1);
	units_for(encrypt, in, out)(c, c->tweaks, 1, in, out);
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
