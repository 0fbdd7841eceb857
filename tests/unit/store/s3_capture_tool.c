/* Sends one S3 request exactly as the S3 store builds it (s3_request_setup,
 * credentials AKIDEXAMPLE / wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY,
 * us-east-1, X-Amz-Date pinned to 20150830T123600Z) to a local listener and
 * writes the raw request that arrived to stdout, for test_s3_botocore.py:
 *
 *   s3-capture-tool get|put|head KEY [BODY_FILE [SESSION_TOKEN]]
 *
 * The URL is path style, http://127.0.0.1:<port>/examplebucket/<KEY>. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_capture.h"
#include "store/s3_internal.h"

static size_t discard(char *p, size_t size, size_t n, void *arg)
{
	(void)p;
	(void)arg;
	return size * n;
}

int main(int argc, char **argv)
{
	struct s3_credentials creds = {
	    .access_key_id = "AKIDEXAMPLE",
	    .secret_access_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
	};
	struct s3_request req = {.amz_date = "20150830T123600Z",
				 .connect_timeout_ms = 5000,
				 .attempt_timeout_ms = 20000};
	struct http_capture cap;
	struct s3_signer signer;
	struct curl_slist *headers = NULL;
	uint8_t *body = NULL;
	size_t len = 0;
	char hash[65], base[128], *url;
	CURL *h;

	if (argc < 3)
		return 2;
	req.op = strcmp(argv[1], "put") == 0	? STORE_PUT
		 : strcmp(argv[1], "head") == 0 ? STORE_HEAD
						: STORE_GET;
	if (argc > 3 && strcmp(argv[3], "-") != 0) {
		FILE *f = fopen(argv[3], "rb");
		if (!f)
			return 2;
		fseek(f, 0, SEEK_END);
		len = (size_t)ftell(f);
		fseek(f, 0, SEEK_SET);
		body = malloc(len + 1);
		if (fread(body, 1, len, f) != len)
			return 2;
		fclose(f);
	}
	if (argc > 4)
		creds.session_token = argv[4];
	curl_global_init(CURL_GLOBAL_DEFAULT);
	h = curl_easy_init();
	s3_payload_hash(body, len, hash);
	req.body = body;
	req.body_len = len;
	req.payload_hash = hash;
	if (s3_signer_init(&signer, &creds, "us-east-1", "s3") || http_capture_start(&cap, NULL))
		return 1;
	snprintf(base, sizeof(base), "http://127.0.0.1:%u/examplebucket/", cap.port);
	if (s3_object_url(base, argv[2], &url))
		return 1;
	req.url = url;
	if (s3_request_setup(h, &signer, &req, &headers))
		return 1;
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
	if (curl_easy_perform(h) != CURLE_OK)
		return 1;
	http_capture_wait(&cap);
	fwrite(cap.request, 1, cap.request_len, stdout);
	http_capture_free(&cap);
	curl_slist_free_all(headers);
	curl_easy_cleanup(h);
	s3_signer_free(&signer);
	free(url);
	free(body);
	return 0;
}
