/* One signed S3 request on a curl easy handle. libcurl computes the SigV4
 * signature (CURLOPT_AWS_SIGV4) over the method, the path, the payload and
 * every header set here, so what is signed is exactly what is sent; we add
 * x-amz-content-sha256, which S3 requires and libcurl does not send, and
 * x-amz-security-token for temporary credentials.
 *
 * A PUT body goes through CURLOPT_POSTFIELDS (with the method changed to
 * PUT) rather than a read callback: libcurl then hashes the same bytes we
 * announced in x-amz-content-sha256. No header is set empty to suppress a
 * default one, because libcurl would still sign it. */
#include "s3_internal.h"

#include <errno.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void s3_signer_free(struct s3_signer *s)
{
	free(s->sigv4);
	secret_string_free(s->access_key_id);
	secret_string_free(s->secret_access_key);
	secret_string_free(s->token_header);
	memset(s, 0, sizeof(*s));
}

int s3_signer_init(struct s3_signer *s, const struct s3_credentials *creds, const char *region,
		   const char *service)
{
	memset(s, 0, sizeof(*s));
	if (asprintf(&s->sigv4, "aws:amz:%s:%s", region, service) < 0)
		s->sigv4 = NULL;
	s->access_key_id = strdup(creds->access_key_id);
	s->secret_access_key = strdup(creds->secret_access_key);
	if (creds->session_token &&
	    asprintf(&s->token_header, "x-amz-security-token: %s", creds->session_token) < 0)
		s->token_header = NULL;
	if (!s->sigv4 || !s->access_key_id || !s->secret_access_key ||
	    (creds->session_token && !s->token_header)) {
		s3_signer_free(s);
		return -ENOMEM;
	}
	return 0;
}

void s3_payload_hash(const uint8_t *data, size_t len, char hex[65])
{
	static const char digits[] = "0123456789abcdef";
	uint8_t md[SHA256_DIGEST_LENGTH];

	SHA256(data ? data : (const uint8_t *)"", len, md);
	for (int i = 0; i < SHA256_DIGEST_LENGTH; i++) {
		hex[2 * i] = digits[md[i] >> 4];
		hex[2 * i + 1] = digits[md[i] & 15];
	}
	hex[64] = '\0';
}

static int append(struct curl_slist **list, const char *line)
{
	struct curl_slist *next = curl_slist_append(*list, line);

	if (!next)
		return -ENOMEM;
	*list = next;
	return 0;
}

static int build_headers(const struct s3_signer *signer, const struct s3_request *req,
			 struct curl_slist **headers)
{
	char line[128];
	int ret;

	*headers = NULL;
	snprintf(line, sizeof(line), "x-amz-content-sha256: %s", req->payload_hash);
	ret = append(headers, line);
	if (!ret && signer->token_header)
		ret = append(headers, signer->token_header);
	if (!ret && req->amz_date) {
		snprintf(line, sizeof(line), "X-Amz-Date: %s", req->amz_date);
		ret = append(headers, line);
	}
	/* Instead of libcurl's form type for a POSTFIELDS body. */
	if (!ret && req->op == STORE_PUT)
		ret = append(headers, "Content-Type: application/octet-stream");
	if (ret) {
		curl_slist_free_all(*headers);
		*headers = NULL;
	}
	return ret;
}

int s3_request_setup(CURL *h, const struct s3_signer *signer, const struct s3_request *req,
		     struct curl_slist **headers)
{
	CURLcode rc = CURLE_OK;
	int ret = build_headers(signer, req, headers);

	if (ret)
		return ret;
#define SET(opt, val)                                                                              \
	do {                                                                                       \
		if (rc == CURLE_OK)                                                                \
			rc = curl_easy_setopt(h, opt, val);                                        \
	} while (0)
	SET(CURLOPT_URL, req->url);
	/* Keys are sent as built: no dot-segment squashing by libcurl. */
	SET(CURLOPT_PATH_AS_IS, 1L);
	SET(CURLOPT_PROTOCOLS_STR, "http,https");
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_USERAGENT, "ubiblk/" UBIBLK_VERSION);
	SET(CURLOPT_AWS_SIGV4, signer->sigv4);
	SET(CURLOPT_USERNAME, signer->access_key_id);
	SET(CURLOPT_PASSWORD, signer->secret_access_key);
	SET(CURLOPT_HTTPHEADER, *headers);
	SET(CURLOPT_CONNECTTIMEOUT_MS, (long)req->connect_timeout_ms);
	SET(CURLOPT_TIMEOUT_MS, (long)req->attempt_timeout_ms);
	switch (req->op) {
	case STORE_GET:
		SET(CURLOPT_HTTPGET, 1L);
		break;
	case STORE_HEAD:
		SET(CURLOPT_NOBODY, 1L);
		break;
	case STORE_PUT:
		SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
		SET(CURLOPT_POSTFIELDS, req->body ? (const char *)req->body : "");
		SET(CURLOPT_CUSTOMREQUEST, "PUT");
		break;
	}
#undef SET
	if (rc != CURLE_OK) {
		curl_slist_free_all(*headers);
		*headers = NULL;
		return rc == CURLE_OUT_OF_MEMORY ? -ENOMEM : -EINVAL;
	}
	return 0;
}
