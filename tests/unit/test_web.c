/* The dashboard's assets as compiled into the agent: each one is found by
 * name with its Content-Type and ETag, and the page keeps to what its
 * Content-Security-Policy allows (no inline script, style or handlers). */
#include <ctype.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "agent/web.h"

static void content_type_follows_the_extension(void **state)
{
	(void)state;
	assert_string_equal(web_content_type("index.html"), "text/html; charset=utf-8");
	assert_string_equal(web_content_type("app.css"), "text/css; charset=utf-8");
	assert_string_equal(web_content_type("app.js"), "text/javascript; charset=utf-8");
	assert_string_equal(web_content_type("favicon.svg"), "image/svg+xml");
	assert_string_equal(web_content_type("notes"), "application/octet-stream");
	assert_string_equal(web_content_type("archive.js.gz"), "application/octet-stream");
}

static void the_page_and_its_assets_are_compiled_in(void **state)
{
	static const char *const names[] = {"index.html", "app.js", "app.css", "favicon.svg"};
	(void)state;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		const struct web_asset *w = web_find(names[i]);
		assert_non_null(w);
		assert_true(w->len > 0);
		/* The generator keeps a NUL after the bytes, not counted in len. */
		assert_int_equal(w->data[w->len], 0);
	}
	assert_null(web_find("missing.js"));
	assert_null(web_find("../index.html"));
	assert_null(web_find(""));
}

static void every_etag_is_a_quoted_content_hash(void **state)
{
	(void)state;
	for (const struct web_asset *w = web_assets; w->name; w++) {
		size_t n = strlen(w->etag);
		assert_int_equal(n, 18);
		assert_int_equal(w->etag[0], '"');
		assert_int_equal(w->etag[n - 1], '"');
		for (size_t i = 1; i + 1 < n; i++)
			assert_true(isxdigit((unsigned char)w->etag[i]));
		for (const struct web_asset *o = w + 1; o->name; o++)
			assert_string_not_equal(w->etag, o->etag);
	}
}

static int contains(const struct web_asset *w, const char *needle)
{
	size_t n = strlen(needle);
	for (size_t i = 0; i + n <= w->len; i++) {
		if (strncasecmp((const char *)w->data + i, needle, n) == 0)
			return 1;
	}
	return 0;
}

static void the_page_has_no_inline_script_or_style(void **state)
{
	const struct web_asset *page = web_find("index.html");
	(void)state;
	assert_non_null(page);
	assert_true(contains(page, "<script src=\"/assets/app.js\""));
	assert_false(contains(page, "<script>"));
	assert_false(contains(page, "<style"));
	assert_false(contains(page, " style="));
	assert_false(contains(page, " onclick="));
	assert_false(contains(page, " onload="));
	assert_false(contains(page, "javascript:"));
	/* Values from the API are set as text, never parsed as markup. */
	assert_false(contains(web_find("app.js"), "innerHTML"));
	assert_false(contains(web_find("app.js"), "insertAdjacentHTML"));
	assert_false(contains(web_find("app.js"), "document.write"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(content_type_follows_the_extension),
	    cmocka_unit_test(the_page_and_its_assets_are_compiled_in),
	    cmocka_unit_test(every_etag_is_a_quoted_content_hash),
	    cmocka_unit_test(the_page_has_no_inline_script_or_style),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
