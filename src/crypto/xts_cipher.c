/* xts_cipher: the public cipher API of crypto.h over the engine chosen at
 * start-up (xts_engine.h).
 *
 * The choice, once per process: UBIBLK_XTS_ENGINE when set (an engine the
 * machine cannot run, or an unknown name, makes every xts_cipher_new fail
 * with a message saying so: an operator who forced an engine wants to know,
 * not to get another), else the first engine of `preferred` this machine
 * runs. The choice is logged once at debug level; xts_engine_chosen() tells
 * --version and the version RPC. */
#include "crypto/xts_engine.h"

#include "common/common.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* Fastest first (docs/benchmarks.md); OpenSSL last: it runs everywhere. */
static const struct xts_engine *const preferred[] = {&xts_engine_vaes, &xts_engine_gcrypt,
						     &xts_engine_openssl};
#define ENGINE_COUNT (sizeof(preferred) / sizeof(preferred[0]))

struct xts_cipher {
	const struct xts_engine *engine;
	void *state;
};

static pthread_once_t choose_once = PTHREAD_ONCE_INIT;
static const struct xts_engine *chosen;
static char choice_problem[160]; /* when chosen is NULL */

static const struct xts_engine *engine_named(const char *name)
{
	for (size_t i = 0; i < ENGINE_COUNT; i++)
		if (strcmp(preferred[i]->name, name) == 0)
			return preferred[i];
	return NULL;
}

static void choose(void)
{
	const char *forced = getenv(XTS_ENGINE_ENV);
	if (forced && *forced) {
		const struct xts_engine *e = engine_named(forced);
		const char *why = e ? e->unsupported() : NULL;
		if (!e) {
			/* The names from the table, so the message cannot go stale. */
			int len = snprintf(choice_problem, sizeof(choice_problem),
					   "%s=%.32s: no such XTS engine (known: ", XTS_ENGINE_ENV,
					   forced);
			for (size_t i = 0; i < ENGINE_COUNT && (size_t)len < sizeof(choice_problem);
			     i++)
				len += snprintf(choice_problem + len, sizeof(choice_problem) - len,
						"%s%s", i ? ", " : "", preferred[i]->name);
			if ((size_t)len < sizeof(choice_problem))
				snprintf(choice_problem + len, sizeof(choice_problem) - len, ")");
		} else if (why)
			snprintf(choice_problem, sizeof(choice_problem),
				 "%s=%s: this machine cannot run it (%s)", XTS_ENGINE_ENV, forced,
				 why);
		else
			chosen = e;
		if (chosen)
			log_debug("xts: engine %s (forced by %s)", chosen->name, XTS_ENGINE_ENV);
		else
			log_debug("xts: %s", choice_problem);
		return;
	}
	for (size_t i = 0; i < ENGINE_COUNT && !chosen; i++) {
		const char *why = preferred[i]->unsupported();
		if (why)
			log_debug("xts: engine %s not used: %s", preferred[i]->name, why);
		else
			chosen = preferred[i];
	}
	log_debug("xts: engine %s", chosen->name);
}

const char *xts_engine_chosen(void)
{
	pthread_once(&choose_once, choose);
	return chosen ? chosen->name : "none";
}

const char *xts_engine_problem(void)
{
	pthread_once(&choose_once, choose);
	return chosen ? NULL : choice_problem;
}

size_t xts_engine_count(void)
{
	return ENGINE_COUNT;
}

const char *xts_engine_name_at(size_t index)
{
	return index < ENGINE_COUNT ? preferred[index]->name : NULL;
}

const char *xts_engine_unsupported_at(size_t index)
{
	return index < ENGINE_COUNT ? preferred[index]->unsupported() : "no such engine";
}

static int cipher_new(const struct xts_engine *engine, const uint8_t key1[XTS_KEY_BYTES],
		      const uint8_t key2[XTS_KEY_BYTES], struct xts_cipher **out, struct error *err)
{
	*out = NULL;
	/* OpenSSL's own XTS refuses to encrypt with equal halves ("xts
	 * duplicated keys"), and equal halves weaken XTS: refused here, once,
	 * at start-up, whatever the engine. */
	if (CRYPTO_memcmp(key1, key2, XTS_KEY_BYTES) == 0)
		return error_set(
		    err, -EINVAL,
		    "encryption_key: the two keys must differ (AES-XTS with equal halves "
		    "is refused by OpenSSL and weak)");
	struct xts_cipher *c = calloc(1, sizeof(*c));
	if (!c)
		return error_set(err, -ENOMEM, "out of memory for the XTS cipher");
	c->engine = engine;
	int rc = engine->open(key1, key2, &c->state);
	if (rc < 0) {
		free(c);
		return error_set(err, rc, "cannot set up AES-256-XTS (engine %s): %s", engine->name,
				 strerror(-rc));
	}
	*out = c;
	return 0;
}

int xts_cipher_new(const uint8_t key1[XTS_KEY_BYTES], const uint8_t key2[XTS_KEY_BYTES],
		   struct xts_cipher **out, struct error *err)
{
	pthread_once(&choose_once, choose);
	if (!chosen) {
		*out = NULL;
		return error_set(err, -EINVAL, "%s", choice_problem);
	}
	return cipher_new(chosen, key1, key2, out, err);
}

int xts_cipher_new_engine(const char *engine, const uint8_t key1[XTS_KEY_BYTES],
			  const uint8_t key2[XTS_KEY_BYTES], struct xts_cipher **out,
			  struct error *err)
{
	*out = NULL;
	const struct xts_engine *e = engine_named(engine);
	if (!e)
		return error_set(err, -EINVAL, "no such XTS engine: %s", engine);
	const char *why = e->unsupported();
	if (why)
		return error_set(err, -ENOTSUP, "XTS engine %s: %s", engine, why);
	return cipher_new(e, key1, key2, out, err);
}

const char *xts_cipher_engine(const struct xts_cipher *c)
{
	return c->engine->name;
}

void xts_cipher_free(struct xts_cipher *c)
{
	if (!c)
		return;
	c->engine->close(c->state);
	free(c);
}

void xts_fence(void)
{
#if defined(__SSE2__)
	_mm_sfence();
#endif
}

int xts_encrypt_unfenced(struct xts_cipher *c, uint64_t first, const uint8_t *in, uint8_t *out,
			 size_t nsectors)
{
	return c->engine->crypt_sectors(c->state, true, first, in, out, nsectors);
}

int xts_encrypt(struct xts_cipher *c, uint64_t first, const uint8_t *in, uint8_t *out,
		size_t nsectors)
{
	int rc = c->engine->crypt_sectors(c->state, true, first, in, out, nsectors);
	xts_fence();
	return rc;
}

int xts_decrypt(struct xts_cipher *c, uint64_t first, const uint8_t *in, uint8_t *out,
		size_t nsectors)
{
	int rc = c->engine->crypt_sectors(c->state, false, first, in, out, nsectors);
	xts_fence();
	return rc;
}

int xts_crypt_unit(struct xts_cipher *c, bool encrypt, const uint8_t tweak[XTS_TWEAK_BYTES],
		   const uint8_t *in, uint8_t *out)
{
	return c->engine->crypt_unit(c->state, encrypt, tweak, in, out);
}
