/* Tests for stages/checkout against a real local git repository. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "stages/checkout.h"
#include "stages/process.h"
#include "unprivileged.h"

#include <event2/event.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct outcome {
	int calls;
	int ok;
	char error[512];
	int lines;
};

static struct event_base *base;
static char root[256];
static char repo[512];
static char state_dir[512];

static void sh(const char *fmt, ...)
{
	char cmd[4096];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	assert_int_equal(system(cmd), 0);
}

static void read_cmd(char *out, size_t len, const char *fmt, ...)
{
	char cmd[4096];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	FILE *f = popen(cmd, "r");
	assert_non_null(f);
	assert_non_null(fgets(out, (int)len, f));
	out[strcspn(out, "\n")] = '\0';
	assert_int_equal(pclose(f), 0);
}

static void commit_file(const char *content, char *sha, size_t len)
{
	sh("printf '%%s\\n' '%s' > %s/file.txt && git -C %s add file.txt && "
	   "git -C %s -c user.name=t -c user.email=t@example.com commit -q -m '%s'",
	   content, repo, repo, repo, content);
	read_cmd(sha, len, "git -C %s rev-parse HEAD", repo);
}

static int group_setup(void **state)
{
	(void)state;
	char tmpl[] = "/tmp/sluice-checkout-XXXXXX";
	if (unprivileged() < 0)
		return -1;
	char real[PATH_MAX];
	if (mkdtemp(tmpl) == NULL || realpath(tmpl, real) == NULL || strlen(real) >= sizeof(root))
		return -1;
	memcpy(root, real, strlen(real) + 1);
	snprintf(repo, sizeof(repo), "%s/repo", root);
	snprintf(state_dir, sizeof(state_dir), "%s/state", root);
	char cmd[PATH_MAX + 64];
	snprintf(cmd, sizeof(cmd), "git init -q %s", repo);
	if (system(cmd) != 0)
		return -1;
	base = event_base_new();
	if (base == NULL || process_init(base) < 0)
		return -1;
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	char cmd[PATH_MAX + 16];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
	process_shutdown();
	event_base_free(base);
	return system(cmd) == 0 ? 0 : -1;
}

static void on_line(enum process_stream s, const char *line, size_t len, void *arg)
{
	struct outcome *o = arg;
	(void)s;
	(void)line;
	(void)len;
	o->lines++;
}

static void on_done(int ok, const char *error, void *arg)
{
	struct outcome *o = arg;
	o->calls++;
	o->ok = ok;
	snprintf(o->error, sizeof(o->error), "%s", error != NULL ? error : "");
}

static void wait_done(struct outcome *o)
{
	while (o->calls == 0)
		event_base_loop(base, EVLOOP_ONCE);
	assert_int_equal(o->calls, 1);
	assert_int_equal(process_running(), 0);
}

static void run_checkout(const char *sd, const char *url, const char *sha, const char *ws,
			 int timeout_ms, struct outcome *o)
{
	memset(o, 0, sizeof(*o));
	struct checkout *c = checkout_start(sd, url, sha, ws, timeout_ms, on_line, on_done, o);
	assert_non_null(c);
	wait_done(o);
}

/* The repository's HEAD checked out into <root>/<name>, that path into ws. */
static void checkout_head(const char *name, int timeout_ms, char *ws, size_t len, struct outcome *o)
{
	char sha[64];
	read_cmd(sha, sizeof(sha), "git -C %s rev-parse HEAD", repo);
	snprintf(ws, len, "%s/%s", root, name);
	run_checkout(state_dir, repo, sha, ws, timeout_ms, o);
}

static void assert_file(const char *ws, const char *content)
{
	char got[256];
	read_cmd(got, sizeof(got), "cat %s/file.txt", ws);
	assert_string_equal(got, content);
}

static void test_checks_out_head_via_file_url(void **state)
{
	(void)state;
	char sha[64], url[PATH_MAX + 8], ws[PATH_MAX], head[64];
	struct outcome o;
	commit_file("first", sha, sizeof(sha));
	snprintf(url, sizeof(url), "file://%s", repo);
	snprintf(ws, sizeof(ws), "%s/ws-url", root);
	run_checkout(state_dir, url, sha, ws, 30000, &o);
	assert_string_equal(o.error, "");
	assert_int_equal(o.ok, 0);
	assert_file(ws, "first");
	read_cmd(head, sizeof(head), "git -C %s rev-parse HEAD", ws);
	assert_string_equal(head, sha);
}

static void test_checks_out_via_plain_path_with_short_sha(void **state)
{
	(void)state;
	char sha[64], ws[PATH_MAX];
	struct outcome o;
	read_cmd(sha, sizeof(sha), "git -C %s rev-parse HEAD", repo);
	sha[7] = '\0';
	snprintf(ws, sizeof(ws), "%s/ws-path", root);
	run_checkout(state_dir, repo, sha, ws, 30000, &o);
	assert_string_equal(o.error, "");
	assert_int_equal(o.ok, 0);
	assert_file(ws, "first");
}

static void mirror_path(const char *url, char *out, size_t len)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	char hex[17];
	assert_true(EVP_Digest(url, strlen(url), md, &n, EVP_sha256(), NULL));
	for (int i = 0; i < 8; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	snprintf(out, len, "%s/mirrors/%s.git", state_dir, hex);
}

static void test_second_checkout_fetches_into_existing_mirror(void **state)
{
	(void)state;
	char sha[64], ws[PATH_MAX], mirror[PATH_MAX];
	struct stat before, after;
	struct outcome o;
	mirror_path(repo, mirror, sizeof(mirror));
	assert_int_equal(stat(mirror, &before), 0);

	commit_file("second", sha, sizeof(sha));
	snprintf(ws, sizeof(ws), "%s/ws-path", root);
	/* A stray file in the old workspace must not survive. */
	sh("touch %s/stray", ws);
	run_checkout(state_dir, repo, sha, ws, 30000, &o);
	assert_string_equal(o.error, "");
	assert_int_equal(o.ok, 0);
	assert_file(ws, "second");
	assert_int_equal(stat(mirror, &after), 0);
	assert_int_equal(before.st_ino, after.st_ino);
	char stray[PATH_MAX + 8];
	snprintf(stray, sizeof(stray), "%s/stray", ws);
	assert_int_equal(access(stray, F_OK), -1);
}

/* An attempt that left directories it cannot write or enter (a Go module
 * cache is read-only) does not fail the next attempt's checkout. */
static void test_read_only_directories_of_an_attempt_do_not_fail_the_next(void **state)
{
	(void)state;
	char ws[PATH_MAX];
	struct outcome o;
	checkout_head("ws-read-only", 30000, ws, sizeof(ws), &o);
	assert_int_equal(o.ok, 0);
	sh("cd %s && mkdir -p mod/a locked/b && touch mod/a/f locked/b/g && "
	   "chmod 555 mod/a mod && chmod 000 locked/b locked",
	   ws);
	checkout_head("ws-read-only", 30000, ws, sizeof(ws), &o);
	assert_string_equal(o.error, "");
	assert_int_equal(o.ok, 0);
	assert_file(ws, "second");
}

/* The commit is in the mirror already: no fetch runs, so the checkout works
 * even with the origin gone, and the log shows nothing of a retry. */
static void test_commit_already_mirrored_needs_no_fetch(void **state)
{
	(void)state;
	char sha[64], ws[PATH_MAX], moved[PATH_MAX];
	struct outcome o;
	read_cmd(sha, sizeof(sha), "git -C %s rev-parse HEAD", repo);
	snprintf(ws, sizeof(ws), "%s/ws-nofetch", root);
	snprintf(moved, sizeof(moved), "%s.away", repo);
	run_checkout(state_dir, repo, sha, ws, 30000, &o);
	assert_int_equal(o.ok, 0);

	sh("mv %s %s", repo, moved);
	run_checkout(state_dir, repo, sha, ws, 30000, &o);
	sh("mv %s %s", moved, repo);
	assert_string_equal(o.error, "");
	assert_int_equal(o.ok, 0);
	assert_int_equal(o.lines, 0);
	assert_file(ws, "second");
}

static void test_interrupted_clone_is_not_taken_for_a_mirror(void **state)
{
	(void)state;
	char sha[64], url[PATH_MAX + 16], ws[PATH_MAX], mirror[PATH_MAX];
	struct outcome o;
	read_cmd(sha, sizeof(sha), "git -C %s rev-parse HEAD", repo);
	/* Same repository under another spelling: a mirror of its own. */
	snprintf(url, sizeof(url), "%s/.", repo);
	mirror_path(url, mirror, sizeof(mirror));
	sh("mkdir -p %s.tmp && echo junk > %s.tmp/HEAD", mirror, mirror);
	snprintf(ws, sizeof(ws), "%s/ws-tmp", root);
	run_checkout(state_dir, url, sha, ws, 30000, &o);
	assert_string_equal(o.error, "");
	assert_file(ws, "second");
	char tmp[PATH_MAX + 8];
	snprintf(tmp, sizeof(tmp), "%s.tmp", mirror);
	assert_int_equal(access(tmp, F_OK), -1);
}

static void test_unknown_sha_is_not_found(void **state)
{
	(void)state;
	char ws[PATH_MAX], want[PATH_MAX + 128];
	const char *sha = "0123456789abcdef0123456789abcdef01234567";
	struct outcome o;
	snprintf(ws, sizeof(ws), "%s/ws-unknown", root);
	run_checkout(state_dir, repo, sha, ws, 30000, &o);
	assert_int_equal(o.ok, -1);
	snprintf(want, sizeof(want), "commit %s not found in %s", sha, repo);
	assert_string_equal(o.error, want);
}

static void test_malformed_sha_is_refused_without_running_git(void **state)
{
	(void)state;
	char fresh[PATH_MAX + 16], ws[PATH_MAX];
	const char *bad[] = {"abc123", "xyz1234",
			     "0123456789abcdef0123456789abcdef0123456789abcdef"
			     "0123456789abcdef0",
			     "HEAD~1", "1234567 --upload-pack=x"};
	snprintf(fresh, sizeof(fresh), "%s/state-unused", root);
	snprintf(ws, sizeof(ws), "%s/ws-bad", root);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct outcome o;
		char want[256];
		memset(&o, 0, sizeof(o));
		assert_non_null(
		    checkout_start(fresh, repo, bad[i], ws, 30000, on_line, on_done, &o));
		assert_int_equal(process_running(), 0);
		wait_done(&o);
		assert_int_equal(o.ok, -1);
		snprintf(want, sizeof(want), "bad commit sha \"%.80s\"", bad[i]);
		assert_string_equal(o.error, want);
		assert_int_equal(o.lines, 0);
	}
	assert_int_equal(access(fresh, F_OK), -1);
}

static void test_url_shown_hides_its_user_part(void **state)
{
	(void)state;
	const char *cases[][2] = {
	    {"https://x-access-token:ghp_secret@github.com/acme/app.git",
	     "https://***@github.com/acme/app.git"},
	    {"https://ghp_secret@github.com/acme/a@b.git", "https://***@github.com/acme/a@b.git"},
	    {"https://github.com/acme/a@b.git", "https://github.com/acme/a@b.git"},
	    {"file:///srv/git/app", "file:///srv/git/app"},
	    {"git@github.com:acme/app.git", "git@github.com:acme/app.git"},
	};
	char out[256];
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		checkout_url_shown(cases[i][0], out, sizeof(out));
		assert_string_equal(out, cases[i][1]);
	}
}

static void test_option_like_url_is_refused(void **state)
{
	(void)state;
	char ws[PATH_MAX];
	struct outcome o;
	snprintf(ws, sizeof(ws), "%s/ws-opt", root);
	memset(&o, 0, sizeof(o));
	assert_non_null(checkout_start(state_dir, "-oProxyCommand=x", "1234567", ws, 30000, on_line,
				       on_done, &o));
	assert_int_equal(process_running(), 0);
	wait_done(&o);
	assert_int_equal(o.ok, -1);
	assert_string_equal(o.error, "bad repository URL");
}

static void test_urls_of_transports_checkouts_refuse_are_found_before_any(void **state)
{
	(void)state;
	static const char *const ok[] = {"https://github.com/a/b.git",
					 "https://x-access-token:t@github.com/a/b.git",
					 "http://h/a.git",
					 "ssh://git@h/a.git",
					 "git+ssh://git@h/a.git",
					 "git://h/a.git",
					 "file:///srv/git/a",
					 "/srv/git/a",
					 "../a",
					 "a",
					 "git@github.com:a/b.git",
					 "h:a.git"};
	static const char *const refused[] = {"ext::sh -c id",	       "fd::3",
					      "htps://h/a.git",	       "HTTPS://h/a.git",
					      "ftp://h/a.git",	       "-oProxyCommand=x",
					      "https::https://h/a.git"};
	char why[256];
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		if (checkout_url_check(ok[i], why, sizeof(why)) < 0)
			fail_msg("%s refused: %s", ok[i], why);
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
		if (checkout_url_check(refused[i], why, sizeof(why)) == 0)
			fail_msg("%s taken", refused[i]);
	assert_int_equal(checkout_url_check("fd::3", why, sizeof(why)), -1);
	assert_string_equal(why, "transport fd is not one checkouts use (file:git:http:https:ssh)");
}

static void test_missing_repository_reports_git_error(void **state)
{
	(void)state;
	char url[PATH_MAX + 8], ws[PATH_MAX];
	struct outcome o;
	/* Over file://, git says why ("fatal: ... does not appear to be a git
	 * repository") and then gives advice: the reason is what is kept. */
	const char *schemes[] = {"", "file://"};
	for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
		snprintf(url, sizeof(url), "%s%s/no-such-repo", schemes[i], root);
		snprintf(ws, sizeof(ws), "%s/ws-missing", root);
		run_checkout(state_dir, url, "1234567", ws, 30000, &o);
		assert_int_equal(o.ok, -1);
		assert_non_null(strstr(o.error, "git clone --mirror failed (exit "));
		assert_non_null(strstr(o.error, ": fatal: "));
		assert_non_null(strstr(o.error, "no-such-repo"));
		assert_true(o.lines > 1 || i == 0);
	}
}

/* A fetch killed (worker SIGKILLed, machine down) leaves its lock files in
 * the mirror: the next checkout that needs a fetch clears them, rather than
 * failing on "cannot lock ref" for ever. */
static void test_locks_left_by_a_killed_fetch_do_not_block_the_next(void **state)
{
	(void)state;
	char sha[64], ws[PATH_MAX], mirror[PATH_MAX], branch[256];
	struct outcome o;
	mirror_path(repo, mirror, sizeof(mirror));
	read_cmd(branch, sizeof(branch), "git -C %s symbolic-ref HEAD", repo);
	sh("touch %s/%s.lock %s/packed-refs.lock %s/HEAD.lock", mirror, branch, mirror, mirror);
	commit_file("after a killed fetch", sha, sizeof(sha));
	snprintf(ws, sizeof(ws), "%s/ws-locked", root);
	run_checkout(state_dir, repo, sha, ws, 30000, &o);
	assert_string_equal(o.error, "");
	assert_int_equal(o.ok, 0);
	assert_file(ws, "after a killed fetch");
}

static void test_cancel_reports_cancelled(void **state)
{
	(void)state;
	char sha[64], ws[PATH_MAX];
	struct outcome o;
	memset(&o, 0, sizeof(o));
	read_cmd(sha, sizeof(sha), "git -C %s rev-parse HEAD", repo);
	snprintf(ws, sizeof(ws), "%s/ws-cancel", root);
	struct checkout *c = checkout_start(state_dir, repo, sha, ws, 30000, on_line, on_done, &o);
	assert_non_null(c);
	checkout_cancel(c);
	wait_done(&o);
	assert_int_equal(o.ok, -1);
	assert_string_equal(o.error, "cancelled");
}

static void test_timeout_covers_the_whole_checkout(void **state)
{
	(void)state;
	char ws[PATH_MAX];
	struct outcome o;
	checkout_head("ws-timeout", 1, ws, sizeof(ws), &o);
	assert_int_equal(o.ok, -1);
	assert_string_equal(o.error, "checkout timed out after 1 ms");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_checks_out_head_via_file_url),
	    cmocka_unit_test(test_checks_out_via_plain_path_with_short_sha),
	    cmocka_unit_test(test_second_checkout_fetches_into_existing_mirror),
	    cmocka_unit_test(test_commit_already_mirrored_needs_no_fetch),
	    cmocka_unit_test(test_read_only_directories_of_an_attempt_do_not_fail_the_next),
	    cmocka_unit_test(test_interrupted_clone_is_not_taken_for_a_mirror),
	    cmocka_unit_test(test_unknown_sha_is_not_found),
	    cmocka_unit_test(test_malformed_sha_is_refused_without_running_git),
	    cmocka_unit_test(test_url_shown_hides_its_user_part),
	    cmocka_unit_test(test_option_like_url_is_refused),
	    cmocka_unit_test(test_urls_of_transports_checkouts_refuse_are_found_before_any),
	    cmocka_unit_test(test_missing_repository_reports_git_error),
	    cmocka_unit_test(test_locks_left_by_a_killed_fetch_do_not_block_the_next),
	    cmocka_unit_test(test_cancel_reports_cancelled),
	    cmocka_unit_test(test_timeout_covers_the_whole_checkout),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
