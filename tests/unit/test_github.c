/* Tests for agent/github: what a pull request payload says of its head's
 * repository (a fork or the repository itself), from GitHub's own
 * pull_request payload with head.repo changed; which pushes' head commit
 * messages ask to skip CI; which commit a tag's push builds; that a push of
 * no commit deleted its ref; which clone URLs a payload may have cloned;
 * that a ref or pull request git could not have made is refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/github.h"

static json_t *pull_request_fixture(void)
{
	const char *dir = getenv("SLUICE_FIXTURES");
	char path[1024];
	snprintf(path, sizeof(path), "%s/pull_request-opened.payload.json",
		 dir ? dir : "../shared/fixtures/github");
	json_error_t e;
	json_t *p = json_load_file(path, 0, &e);
	assert_non_null(p);
	return p;
}

/* Parses the fixture with head.repo set to head_repo (JSON text). */
static void parse_with_head_repo(const char *head_repo, struct github_event *ev)
{
	json_t *p = pull_request_fixture();
	json_t *head = json_object_get(json_object_get(p, "pull_request"), "head");
	assert_int_equal(
	    json_object_set_new(head, "repo", json_loads(head_repo, JSON_DECODE_ANY, NULL)), 0);
	char *body = json_dumps(p, JSON_COMPACT);
	json_decref(p);
	char err[256];
	assert_int_equal(
	    github_event_parse("pull_request", body, strlen(body), ev, err, sizeof(err)), 0);
	free(body);
	assert_null(ev->no_build);
	assert_int_equal(ev->pull_request, 1);
	assert_string_equal(ev->repository, "Codertocat/Hello-World");
}

static void test_a_pull_request_from_the_repository_itself_is_not_from_a_fork(void **state)
{
	(void)state;
	const char *same[] = {"{\"full_name\": \"Codertocat/Hello-World\"}",
			      "{\"full_name\": \"codertocat/hello-world\"}"};
	for (size_t i = 0; i < sizeof(same) / sizeof(same[0]); i++) {
		struct github_event ev;
		parse_with_head_repo(same[i], &ev);
		assert_int_equal(ev.from_fork, 0);
		github_event_clear(&ev);
	}
}

static void test_a_pull_request_from_another_or_a_deleted_repository_is_from_a_fork(void **state)
{
	(void)state;
	const char *other[] = {"{\"full_name\": \"someone/Hello-World\"}", "null", "{}"};
	for (size_t i = 0; i < sizeof(other) / sizeof(other[0]); i++) {
		struct github_event ev;
		parse_with_head_repo(other[i], &ev);
		assert_int_equal(ev.from_fork, 1);
		github_event_clear(&ev);
	}
}

static void test_a_push_is_no_pull_request(void **state)
{
	(void)state;
	static const char push[] = "{\"ref\": \"refs/heads/main\", \"after\": "
				   "\"0123456789abcdef0123456789abcdef01234567\", "
				   "\"repository\": {\"full_name\": \"a/b\"}}";
	struct github_event ev;
	char err[256];
	assert_int_equal(github_event_parse("push", push, sizeof(push) - 1, &ev, err, sizeof(err)),
			 0);
	assert_int_equal(ev.pull_request, 0);
	assert_int_equal(ev.from_fork, 0);
	github_event_clear(&ev);
}

static void test_a_push_whose_head_commit_asks_to_skip_ci_builds_nothing(void **state)
{
	(void)state;
	/* Messages as JSON text. [skip actions] asks GitHub Actions alone to
	 * skip the push; a skip-checks trailer counts only as the last line. */
	static const struct {
		const char *message;
		int skips;
	} cases[] = {
	    {"\"docs: typo [skip ci]\"", 1},
	    {"\"[ci skip] docs\"", 1},
	    {"\"wip\\n\\n[no ci]\"", 1},
	    {"\"docs: typo\\n\\n\\nskip-checks: true\"", 1},
	    {"\"docs: typo\\n\\n\\nSigned-off-by: A <a@b>\\nskip-checks:true\\n\"", 1},
	    {"\"fix: parse [skip  ci] right\"", 0},
	    {"\"ci: honour [skip actions]\"", 0},
	    {"\"skip-checks: true\\n\\nit was wrong\"", 0},
	    {"\"skip-checks: false\"", 0},
	    {"null", 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char push[1024], err[256];
		int len = snprintf(push, sizeof(push),
				   "{\"ref\": \"refs/heads/main\", \"after\": "
				   "\"0123456789abcdef0123456789abcdef01234567\", "
				   "\"head_commit\": {\"message\": %s}, "
				   "\"repository\": {\"full_name\": \"a/b\"}}",
				   cases[i].message);
		assert_true(len > 0 && (size_t)len < sizeof(push));
		struct github_event ev;
		assert_int_equal(
		    github_event_parse("push", push, (size_t)len, &ev, err, sizeof(err)), 0);
		if ((ev.no_build != NULL) != cases[i].skips)
			fail_msg("message %s: %s", cases[i].message,
				 ev.no_build ? ev.no_build : "builds");
		assert_string_equal(ev.branch, "main");
		github_event_clear(&ev);
	}
}

static void test_a_tag_push_builds_the_commit_and_not_an_annotated_tag_object(void **state)
{
	(void)state;
	static const char push[] = "{\"ref\": \"refs/tags/v1.0\", \"after\": "
				   "\"1111111111111111111111111111111111111111\", "
				   "\"head_commit\": {\"id\": "
				   "\"2222222222222222222222222222222222222222\"}, "
				   "\"repository\": {\"full_name\": \"a/b\"}}";
	struct github_event ev;
	char err[256];
	assert_int_equal(github_event_parse("push", push, sizeof(push) - 1, &ev, err, sizeof(err)),
			 0);
	assert_string_equal(ev.tag, "v1.0");
	assert_string_equal(ev.sha, "2222222222222222222222222222222222222222");
	github_event_clear(&ev);
}

static void test_a_push_of_no_commit_deleted_its_ref_whatever_deleted_says(void **state)
{
	(void)state;
	static const char *const deleted[] = {"", "\"deleted\": false, ", "\"deleted\": null, "};
	for (size_t i = 0; i < sizeof(deleted) / sizeof(deleted[0]); i++) {
		char push[512], err[256];
		int len =
		    snprintf(push, sizeof(push),
			     "{\"ref\": \"refs/heads/main\", %s\"after\": "
			     "\"0000000000000000000000000000000000000000\", "
			     "\"head_commit\": null, \"repository\": {\"full_name\": \"a/b\"}}",
			     deleted[i]);
		assert_true(len > 0 && (size_t)len < sizeof(push));
		struct github_event ev;
		assert_int_equal(
		    github_event_parse("push", push, (size_t)len, &ev, err, sizeof(err)), 0);
		assert_non_null(ev.no_build);
		assert_string_equal(ev.no_build, "the push deleted its ref");
		assert_null(ev.sha);
		github_event_clear(&ev);
	}
}

static void test_only_https_and_ssh_clone_urls_with_a_host_may_be_cloned(void **state)
{
	(void)state;
	static const char *const ok[] = {"https://github.com/a/b.git",
					 "https://x-access-token:t@github.com/a/b.git",
					 "ssh://git@github.com/a/b.git"};
	static const char *const refused[] = {"file:///srv/git/b",
					      "/srv/git/b",
					      "b",
					      "git@github.com:a/b.git",
					      "git://github.com/a/b.git",
					      "http://github.com/a/b.git",
					      "ext::sh -c id",
					      "https://",
					      "https:///etc",
					      "https://github.com/a/b\n.git",
					      "HTTPS://github.com/a/b.git",
					      ""};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		if (!github_clone_url_ok(ok[i]))
			fail_msg("%s refused", ok[i]);
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
		if (github_clone_url_ok(refused[i]))
			fail_msg("%s taken", refused[i]);
	assert_false(github_clone_url_ok(NULL));
	/* A URL longer would be no repository's: its runs could not even
	 * hand it to git. */
	char url[GITHUB_CLONE_URL_MAX + 2];
	memset(url, 'a', sizeof(url) - 1);
	url[sizeof(url) - 1] = '\0';
	memcpy(url, "https://github.com/", strlen("https://github.com/"));
	assert_false(github_clone_url_ok(url));
	url[GITHUB_CLONE_URL_MAX] = '\0';
	assert_true(github_clone_url_ok(url));
}

/* The payload with ref (JSON text) parses to rc. */
static void expect_push_ref(const char *ref, int rc)
{
	char push[512], err[256];
	int len = snprintf(push, sizeof(push),
			   "{\"ref\": %s, \"after\": \"0123456789abcdef0123456789abcdef01234567\", "
			   "\"repository\": {\"full_name\": \"a/b\"}}",
			   ref);
	assert_true(len > 0 && (size_t)len < sizeof(push));
	struct github_event ev;
	if (github_event_parse("push", push, (size_t)len, &ev, err, sizeof(err)) != rc)
		fail_msg("ref %s: not %d", ref, rc);
	github_event_clear(&ev);
}

static void test_a_push_to_a_ref_git_would_not_make_is_refused(void **state)
{
	(void)state;
	static const char *const bad[] = {"\"refs/heads/\"",	   "\"refs/tags/\"",
					  "\"refs/heads/a\\nb\"",  "\"refs/heads/a b\"",
					  "\"refs/heads/../x\"",   "\"refs/heads//x\"",
					  "\"refs/tags/v1.lock\"", "\"refs/heads/a\\u0001\""};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_push_ref(bad[i], -1);
	expect_push_ref("\"refs/heads/release/1.x\"", 0);
	expect_push_ref("\"refs/tags/v1.0.0\"", 0);
	/* Not a branch or tag: no run, not an error. */
	expect_push_ref("\"refs/notes/x y\"", 0);
}

/* The null sha names no commit: a run of it would fail every checkout. */
static void test_a_pull_request_of_no_number_head_commit_or_base_branch_is_refused(void **state)
{
	(void)state;
	static const struct {
		const char *key, *value;
	} cases[] = {{"number", "0"},
		     {"number", "-1"},
		     {"base", "\"\""},
		     {"base", "\"a..b\""},
		     {"head", "\"0000000000000000000000000000000000000000\""},
		     {"head", "\"00000000000000000000000000000000000000000000000000000000000000"
			      "00\""},
		     {"head", "\"6dcb09b5b57875f334f61aebed695e2e4193db5\""},
		     {"head", "\"6DCB09B5B57875F334F61AEBED695E2E4193DB5E\""}};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		json_t *p = pull_request_fixture();
		json_t *v = json_loads(cases[i].value, JSON_DECODE_ANY, NULL);
		json_t *pr = json_object_get(p, "pull_request");
		if (strcmp(cases[i].key, "number") == 0)
			json_object_set_new(p, "number", v);
		else
			json_object_set_new(json_object_get(pr, cases[i].key),
					    strcmp(cases[i].key, "head") == 0 ? "sha" : "ref", v);
		char *body = json_dumps(p, JSON_COMPACT), err[256];
		json_decref(p);
		struct github_event ev;
		if (github_event_parse("pull_request", body, strlen(body), &ev, err, sizeof(err)) !=
		    -1)
			fail_msg("%s %s taken", cases[i].key, cases[i].value);
		github_event_clear(&ev);
		free(body);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_a_pull_request_from_the_repository_itself_is_not_from_a_fork),
	    cmocka_unit_test(
		test_a_pull_request_from_another_or_a_deleted_repository_is_from_a_fork),
	    cmocka_unit_test(test_a_push_is_no_pull_request),
	    cmocka_unit_test(test_a_push_whose_head_commit_asks_to_skip_ci_builds_nothing),
	    cmocka_unit_test(test_a_tag_push_builds_the_commit_and_not_an_annotated_tag_object),
	    cmocka_unit_test(test_a_push_of_no_commit_deleted_its_ref_whatever_deleted_says),
	    cmocka_unit_test(test_only_https_and_ssh_clone_urls_with_a_host_may_be_cloned),
	    cmocka_unit_test(test_a_push_to_a_ref_git_would_not_make_is_refused),
	    cmocka_unit_test(
		test_a_pull_request_of_no_number_head_commit_or_base_branch_is_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
