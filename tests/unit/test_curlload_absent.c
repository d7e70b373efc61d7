/* Tests for workers/curlload when libcurl cannot be loaded: this binary
 * builds the loader with a library name that does not exist. The makers
 * give NULL, which callers report (CURLEV_NO_CLIENT), the reason is logged
 * once, and nothing else fails. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "tests/unit/tmpdir.h"
#include "workers/curlload.h"

static size_t count(const char *text, const char *what)
{
	size_t n = 0;
	for (const char *p = text; (p = strstr(p, what)) != NULL; p++)
		n++;
	return n;
}

static void makers_give_null_and_the_reason_is_logged_once(void **state)
{
	(void)state;
	char dir[64], path[128];
	assert_int_equal(tmpdir_make(dir, sizeof(dir), "sluice-curlload"), 0);
	snprintf(path, sizeof(path), "%s/stderr", dir);
	fflush(stderr);
	int saved = dup(2);
	FILE *f = fopen(path, "w+");
	assert_non_null(f);
	assert_int_not_equal(dup2(fileno(f), 2), -1);

	CURL *easy = curl_easy_init();
	CURLM *multi = curl_multi_init();
	CURLU *url = curl_url();
	struct curl_slist *list = curl_slist_append(NULL, "X-Test: 1");
	char *escaped = curl_easy_escape(NULL, "a b", 0);
	int loaded = curlload_loaded();
	const char *why = curl_easy_strerror(CURLE_OK);
	curl_slist_free_all(list);
	curl_easy_cleanup(easy);

	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	char log[4096] = "";
	rewind(f);
	size_t n = fread(log, 1, sizeof(log) - 1, f);
	log[n] = '\0';
	fclose(f);
	tmpdir_remove(dir);

	assert_null(easy);
	assert_null(multi);
	assert_null(url);
	assert_null(list);
	assert_null(escaped);
	assert_false(loaded);
	assert_string_equal(why, "libcurl is not loaded");
	assert_int_equal(count(log, "cannot load libcurl"), 1);
	assert_int_equal(count(log, "library=" CURLLOAD_LIBRARY), 1);
	assert_int_equal(count(log, "cannot open shared object file"), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(makers_give_null_and_the_reason_is_logged_once),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
