/* Which failures get another attempt, and when. The classes are the AWS
 * SDKs' "standard" retry mode: transport failures that a new connection may
 * not meet, throttling, and the server errors S3 documents as transient.
 * Errors that would repeat (a refused signature, a missing key, a
 * certificate that does not verify, an object too large) are final. */
#include "s3_internal.h"

#include <string.h>

bool s3_curl_is_retryable(CURLcode res)
{
	switch (res) {
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_COULDNT_CONNECT:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_WEIRD_SERVER_REPLY:
		return true;
	default:
		return false;
	}
}

/* S3 codes that mean "slow down" or "try again", whatever the status. */
static const char *const transient_codes[] = {
    "SlowDown",
    "RequestTimeout",
    "InternalError",
    "ServiceUnavailable",
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "RequestThrottled",
    "PriorRequestNotComplete",
};

bool s3_http_is_retryable(long status, const char *code)
{
	if (status == 429 || status == 500 || status == 502 || status == 503 || status == 504)
		return true;
	for (size_t i = 0; code && i < ARRAY_SIZE(transient_codes); i++)
		if (strcmp(code, transient_codes[i]) == 0)
			return true;
	return false;
}

uint32_t s3_backoff_ms(uint32_t attempt, uint32_t base_ms, uint32_t cap_ms, uint32_t random)
{
	uint64_t ceiling = base_ms;

	for (uint32_t i = 1; i < attempt && ceiling < cap_ms; i++)
		ceiling *= 2;
	if (ceiling > cap_ms)
		ceiling = cap_ms;
	return (uint32_t)((ceiling * random) >> 32);
}
