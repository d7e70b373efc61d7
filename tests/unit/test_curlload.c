/* Tests for workers/curlload, linked as the worker is: without libcurl.
 * Nothing loads it but a function that makes something; then every kind of
 * argument reaches the library as given (longs, pointers to data and to
 * functions, curl_off_t values, answers through pointers), shown by file://
 * transfers, which need no server. The tests run in order in one process:
 * the first one sees the library not yet loaded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <stdio.h>
#include <string.h>

#include "tests/unit/tmpdir.h"
#include "workers/curlload.h"

/* Whether a mapping of the process names libcurl. */
static int libcurl_mapped(void)
{
	FILE *f = fopen("/proc/self/maps", "r");
	assert_non_null(f);
	char line[512];
	int found = 0;
	while (fgets(line, sizeof(line), f))
		if (strstr(line, "/libcurl.so"))
			found = 1;
	fclose(f);
	return found;
}

static char dir[64], file[128], url[160];
static const char CONTENT[] = "0123456789abcdefghijklmnopqrstuvwxyz\n";

static int setup(void **state)
{
	(void)state;
	if (tmpdir_make(dir, sizeof(dir), "sluice-curlload") < 0)
		return -1;
	snprintf(file, sizeof(file), "%s/body", dir);
	snprintf(url, sizeof(url), "file://%s", file);
	return tmpdir_write(file, CONTENT);
}

static int teardown(void **state)
{
	(void)state;
	tmpdir_remove(dir);
	return 0;
}

struct sink {
	char buf[256];
	size_t len;
};

static size_t on_write(char *data, size_t size, size_t n, void *arg)
{
	struct sink *s = arg;
	size_t len = size * n;
	if (s->len + len >= sizeof(s->buf))
		return 0;
	memcpy(s->buf + s->len, data, len);
	s->len += len;
	s->buf[s->len] = '\0';
	return len;
}

/* A handle reading url into s; the caller performs and cleans it up. */
static CURL *reader(struct sink *s)
{
	CURL *h = curl_easy_init();
	assert_non_null(h);
	memset(s, 0, sizeof(*s));
	assert_int_equal(curl_easy_setopt(h, CURLOPT_URL, url), CURLE_OK);
	assert_int_equal(curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write), CURLE_OK);
	assert_int_equal(curl_easy_setopt(h, CURLOPT_WRITEDATA, s), CURLE_OK);
	assert_int_equal(curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 5000L), CURLE_OK);
	return h;
}

/* Runs h to its end on m, as the worker does (curl_easy_perform is not
 * among the functions it calls): the transfer's result. */
static CURLcode perform_on(CURLM *m, CURL *h)
{
	assert_int_equal(curl_multi_add_handle(m, h), CURLM_OK);
	int running = 1;
	for (int i = 0; running && i < 1000; i++)
		assert_int_equal(curl_multi_socket_action(m, CURL_SOCKET_TIMEOUT, 0, &running),
				 CURLM_OK);
	assert_int_equal(running, 0);
	int left = -1;
	CURLMsg *msg = curl_multi_info_read(m, &left);
	assert_non_null(msg);
	assert_int_equal(msg->msg, CURLMSG_DONE);
	assert_int_equal(left, 0);
	CURLcode rc = msg->data.result;
	assert_int_equal(curl_multi_remove_handle(m, h), CURLM_OK);
	return rc;
}

static CURLcode perform(CURL *h)
{
	CURLM *m = curl_multi_init();
	assert_non_null(m);
	CURLcode rc = perform_on(m, h);
	assert_int_equal(curl_multi_cleanup(m), CURLM_OK);
	return rc;
}

/* Before any maker: nothing loaded, and the other functions refuse or do
 * nothing rather than load it. */
static void nothing_is_loaded_before_a_maker(void **state)
{
	(void)state;
	assert_false(curlload_loaded());
	assert_false(libcurl_mapped());
	assert_string_equal(curl_easy_strerror(CURLE_OK), "libcurl is not loaded");
	assert_int_equal(curl_easy_setopt(NULL, CURLOPT_URL, "x"), CURLE_FAILED_INIT);
	long code = 0;
	assert_int_equal(curl_easy_getinfo(NULL, CURLINFO_RESPONSE_CODE, &code), CURLE_FAILED_INIT);
	assert_int_equal(curl_multi_setopt(NULL, CURLMOPT_MAXCONNECTS, 1L), CURLM_BAD_HANDLE);
	assert_null(curl_multi_info_read(NULL, NULL));
	curl_free(NULL);
	curl_slist_free_all(NULL);
	curl_easy_cleanup(NULL);
	assert_false(curlload_loaded());
	assert_false(libcurl_mapped());
}

/* The first curl_easy_init loads libcurl; a transfer through it gets the
 * file, and the answers through pointers are libcurl's. */
static void a_maker_loads_it_and_a_transfer_works(void **state)
{
	(void)state;
	struct sink s;
	CURL *h = reader(&s);
	assert_true(curlload_loaded());
	assert_true(libcurl_mapped());
	struct curl_slist *headers = curl_slist_append(NULL, "X-Test: 1");
	assert_non_null(headers);
	assert_int_equal(curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers), CURLE_OK);
	assert_int_equal(perform(h), CURLE_OK);
	assert_string_equal(s.buf, CONTENT);

	curl_off_t size = -1;
	assert_int_equal(curl_easy_getinfo(h, CURLINFO_SIZE_DOWNLOAD_T, &size), CURLE_OK);
	assert_int_equal(size, (curl_off_t)strlen(CONTENT));
	char *effective = NULL;
	assert_int_equal(curl_easy_getinfo(h, CURLINFO_EFFECTIVE_URL, &effective), CURLE_OK);
	assert_string_equal(effective, url);
	assert_string_equal(curl_easy_strerror(CURLE_COULDNT_CONNECT),
			    "Couldn't connect to server");
	curl_slist_free_all(headers);
	curl_easy_cleanup(h);
}

/* curl_off_t options reach libcurl with their whole value: a resume offset
 * skips that many bytes, and one past the file, 2^33 + 5 (5 when cut to 32
 * bits), is refused. */
static void off_t_options_keep_their_value(void **state)
{
	(void)state;
	struct sink s;
	CURL *h = reader(&s);
	assert_int_equal(curl_easy_setopt(h, CURLOPT_RESUME_FROM_LARGE, (curl_off_t)30), CURLE_OK);
	assert_int_equal(perform(h), CURLE_OK);
	assert_string_equal(s.buf, CONTENT + 30);

	/* Reset, the handle takes the options again from the start. */
	curl_easy_reset(h);
	memset(&s, 0, sizeof(s));
	assert_int_equal(curl_easy_setopt(h, CURLOPT_URL, url), CURLE_OK);
	assert_int_equal(curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write), CURLE_OK);
	assert_int_equal(curl_easy_setopt(h, CURLOPT_WRITEDATA, &s), CURLE_OK);
	curl_off_t far = ((curl_off_t)1 << 33) + 5;
	assert_int_equal(curl_easy_setopt(h, CURLOPT_RESUME_FROM_LARGE, far), CURLE_OK);
	assert_int_equal(perform(h), CURLE_BAD_DOWNLOAD_RESUME);
	assert_int_equal(s.len, 0);
	curl_easy_cleanup(h);
}

static int sockets_seen;

static int on_socket(CURL *e, curl_socket_t fd, int what, void *arg, void *socketp)
{
	(void)e;
	(void)fd;
	(void)what;
	(void)socketp;
	*(int *)arg += 1;
	return 0;
}

/* A multi handle takes a long and a function option, runs the transfer to
 * its end and reports it done; the URL functions parse and escape. */
static void multi_and_url_functions(void **state)
{
	(void)state;
	CURLM *m = curl_multi_init();
	assert_non_null(m);
	assert_int_equal(curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, 3L), CURLM_OK);
	assert_int_equal(curl_multi_setopt(m, CURLMOPT_SOCKETFUNCTION, on_socket), CURLM_OK);
	assert_int_equal(curl_multi_setopt(m, CURLMOPT_SOCKETDATA, &sockets_seen), CURLM_OK);
	struct sink s;
	CURL *h = reader(&s);
	assert_int_equal(perform_on(m, h), CURLE_OK);
	assert_string_equal(s.buf, CONTENT);
	assert_int_equal(curl_multi_assign(m, 12345, NULL), CURLM_BAD_SOCKET);
	curl_easy_cleanup(h);
	assert_int_equal(curl_multi_cleanup(m), CURLM_OK);

	CURLU *u = curl_url();
	assert_non_null(u);
	assert_int_equal(curl_url_set(u, CURLUPART_URL, "https://example.test:8443/a?b=c", 0),
			 CURLUE_OK);
	char *host = NULL, *port = NULL;
	assert_int_equal(curl_url_get(u, CURLUPART_HOST, &host, 0), CURLUE_OK);
	assert_int_equal(curl_url_get(u, CURLUPART_PORT, &port, 0), CURLUE_OK);
	assert_string_equal(host, "example.test");
	assert_string_equal(port, "8443");
	curl_free(host);
	curl_free(port);
	curl_url_cleanup(u);
	char *escaped = curl_easy_escape(NULL, "a b/c", 0);
	assert_string_equal(escaped, "a%20b%2Fc");
	curl_free(escaped);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(nothing_is_loaded_before_a_maker),
	    cmocka_unit_test(a_maker_loads_it_and_a_transfer_works),
	    cmocka_unit_test(off_t_options_keep_their_value),
	    cmocka_unit_test(multi_and_url_functions),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
