/* checkout: mirror, shared clone and detached checkout as a chain of git
 * child processes, one step started from the exit of the previous one.
 *
 * When the mirror exists the workspace is made from it straight away, and
 * the mirror is fetched (under its lock) only if the commit is not in it yet:
 * a second stage of the same run, or a run of a commit already fetched,
 * costs no lock and no fetch. */
#include "stages/checkout.h"

#include "lib/clock.h"
#include "lib/hex.h"
#include "lib/log.h"
#include "lib/sha.h"
#include "stages/gitreason.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define KILL_GRACE_MS 2000
#define DEFAULT_PATH  "/usr/local/bin:/usr/bin:/bin"
/* Only plain transports: no ext:: or fd:: helper that would run a command
 * or read a descriptor named in a URL. */
#define ALLOW_PROTOCOL "file:git:http:https:ssh"

enum step { STEP_MIRROR, STEP_VERIFY, STEP_CLEAN, STEP_CLONE, STEP_CHECKOUT, STEP_DONE };

/* Runs under the mirror's lock, so the existence test, the clone into a
 * temporary name and the rename are one unit across processes: a clone that
 * was interrupted is never mistaken for a mirror. For the same reason a
 * *.lock file in the mirror is one a git killed mid-fetch left behind (a
 * fetch's maintenance is kept in the foreground, under the lock): left
 * there, it would fail every later fetch. Arguments are positional
 * parameters, never part of the script text. */
static const char mirror_script[] =
    "if [ -d \"$2\" ]; then\n"
    "  find \"$2\" -name '*.lock' -type f -delete\n"
    "  exec git -c gc.autoDetach=false --git-dir=\"$2\" fetch --quiet --prune origin \\\n"
    "    '+refs/*:refs/*'\n"
    "fi\n"
    "rm -rf \"$3\" && git clone --mirror --quiet -- \"$1\" \"$3\" && mv \"$3\" \"$2\"\n";

/* Permissions are mended only when rm fails, and only of directories: a
 * directory's mode is what stops rm, and a file's never does. find does not
 * follow a symbolic link the stage put in a tree's place. */
const char checkout_rm_script[] =
    "rm -rf -- \"$@\" 2>/dev/null && exit 0\n"
    "find \"$@\" -type d ! -perm -u=rwx -exec chmod u+rwx {} \\; 2>/dev/null\n"
    "exec rm -rf -- \"$@\"\n";

struct checkout {
	char *url;
	char *sha;
	char *workspace;
	char *mirror;
	char *lock;
	char *tmp;
	char *git_dir_arg;
	char *commit_arg;
	char *env[8];
	int64_t deadline_ms;
	int timeout_ms;
	process_line_cb on_line;
	checkout_done_cb done;
	void *arg;
	struct process *proc;
	enum step step;
	int mirror_existed;
	int fetched; /* the mirror was cloned or fetched for this checkout */
	int cancelled;
	struct event *defer;
	struct gitreason why; /* of the step's git command */
	char error[512];
};

static void checkout_free(struct checkout *c)
{
	free(c->url);
	free(c->sha);
	free(c->workspace);
	free(c->mirror);
	free(c->lock);
	free(c->tmp);
	free(c->git_dir_arg);
	free(c->commit_arg);
	for (size_t i = 0; i < sizeof(c->env) / sizeof(c->env[0]); i++)
		free(c->env[i]);
	if (c->defer != NULL)
		event_free(c->defer);
	free(c);
}

static void finish(struct checkout *c, const char *error)
{
	if (c->cancelled)
		error = "cancelled";
	c->done(error == NULL ? 0 : -1, error, c->arg);
	checkout_free(c);
}

static void on_defer(evutil_socket_t fd, short what, void *arg)
{
	struct checkout *c = arg;
	(void)fd;
	(void)what;
	finish(c, c->error);
}

/* asprintf leaves its pointer undefined on failure; this returns NULL. */
__attribute__((format(printf, 1, 2))) static char *str_printf(const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	int n = vasprintf(&s, fmt, ap);
	va_end(ap);
	return n < 0 ? NULL : s;
}

static int valid_sha(const char *sha)
{
	size_t n = strspn(sha, "0123456789abcdefABCDEF");
	return sha[n] == '\0' && n >= 7 && n <= 64;
}

static int protocol_allowed(const char *name, size_t n)
{
	/* git's old names for ssh://, which it checks as ssh. */
	if ((n == 7 && strncmp(name, "git+ssh", n) == 0) ||
	    (n == 7 && strncmp(name, "ssh+git", n) == 0)) {
		name = "ssh";
		n = 3;
	}
	for (const char *p = ALLOW_PROTOCOL; *p;) {
		size_t len = strcspn(p, ":");
		if (len == n && strncmp(p, name, n) == 0)
			return 1;
		p += len + (p[len] == ':');
	}
	return 0;
}

/* As git reads a URL: a scheme ([A-Za-z][A-Za-z0-9+.-]*) then "::" names a
 * remote helper, then "://" a transport; anything else is an scp-like
 * host:path or a local path. */
int checkout_url_check(const char *url, char *why, size_t whylen)
{
	size_t n = 0;
	if (url[0] == '-') {
		snprintf(why, whylen, "a repository URL, not an option: it starts with '-'");
		return -1;
	}
	if (isalpha((unsigned char)url[0]))
		while (url[n] != '\0' &&
		       (isalnum((unsigned char)url[n]) || strchr("+.-", url[n]) != NULL))
			n++;
	int helper = n > 0 && strncmp(url + n, "::", 2) == 0;
	int scheme = n > 0 && strncmp(url + n, "://", 3) == 0;
	if (helper || (scheme && !protocol_allowed(url, n))) {
		snprintf(why, whylen, "transport %.*s is not one checkouts use (%s)", (int)n, url,
			 ALLOW_PROTOCOL);
		return -1;
	}
	return 0;
}

void checkout_url_shown(const char *url, char *out, size_t len)
{
	const char *scheme = strstr(url, "://");
	const char *host = scheme != NULL ? scheme + 3 : url;
	size_t authority = strcspn(host, "/");
	const char *at = memrchr(host, '@', authority);

	if (scheme == NULL || at == NULL)
		snprintf(out, len, "%s", url);
	else
		snprintf(out, len, "%.*s***%s", (int)(host - url), url, at);
}

/* A repository's mirror is named by the first 8 bytes of its URL's SHA-256,
 * in hex. */
static void mirror_name(const char *url, char out[17])
{
	unsigned char md[SHA256_LEN];

	sha256_digest(url, strlen(url), md);
	hex_encode(md, 8, out);
}

static int make_dir(const char *path)
{
	return mkdir(path, 0755) == 0 || errno == EEXIST ? 0 : -1;
}

static int add_env(struct checkout *c, size_t *n, const char *key, const char *val)
{
	if (val == NULL)
		return 0;
	c->env[*n] = str_printf("%s=%s", key, val);
	return c->env[(*n)++] == NULL ? -1 : 0;
}

/* git gets a fixed, minimal environment: nothing of ours leaks into it, it
 * never waits for a password, and only ALLOW_PROTOCOL's transports are
 * allowed. */
static int build_env(struct checkout *c)
{
	const char *path = getenv("PATH");
	size_t n = 0;

	if (add_env(c, &n, "PATH", path != NULL ? path : DEFAULT_PATH) < 0 ||
	    add_env(c, &n, "HOME", getenv("HOME")) < 0 ||
	    add_env(c, &n, "LANG", getenv("LANG")) < 0 ||
	    add_env(c, &n, "GIT_TERMINAL_PROMPT", "0") < 0 ||
	    add_env(c, &n, "GIT_CONFIG_NOSYSTEM", "1") < 0 ||
	    add_env(c, &n, "GIT_ALLOW_PROTOCOL", ALLOW_PROTOCOL) < 0)
		return -1;
	return 0;
}

static void on_git_line(enum process_stream s, const char *line, size_t len, void *arg)
{
	struct checkout *c = arg;

	if (s == PROCESS_STDERR)
		gitreason_line(&c->why, line, len);
	/* A first checkout that fails for want of a fetch is not an error the
	 * stage's log should show. */
	if (c->step == STEP_CHECKOUT && !c->fetched)
		return;
	if (c->on_line != NULL)
		c->on_line(s, line, len, c->arg);
}

static const char *step_name(const struct checkout *c)
{
	switch (c->step) {
	case STEP_MIRROR:
		return c->mirror_existed ? "git fetch" : "git clone --mirror";
	case STEP_VERIFY:
		return "git cat-file";
	case STEP_CLEAN:
		return "rm -rf";
	case STEP_CLONE:
		return "git clone";
	default:
		return "git checkout";
	}
}

static void on_step_exit(const struct process_result *r, void *arg);

/* After a fetch for a commit the workspace lacked, the workspace is there
 * already: only the checkout is retried. */
static enum step next_step(const struct checkout *c)
{
	if (c->step == STEP_VERIFY && c->mirror_existed)
		return STEP_CHECKOUT;
	return c->step + 1;
}

/* Starts the current step; 0 when one is running or there is nothing left,
 * -1 with c->error set. */
static int start_step(struct checkout *c)
{
	struct stat st;

	if (c->step == STEP_CLEAN && lstat(c->workspace, &st) < 0)
		c->step = STEP_CLONE;
	if (c->step == STEP_DONE)
		return 0;

	const char *mirror_argv[] = {"flock", c->lock, "sh",	  "-c",	  mirror_script,
				     "sh",    c->url,  c->mirror, c->tmp, NULL};
	const char *verify_argv[] = {"git", c->git_dir_arg, "cat-file", "-e", c->commit_arg, NULL};
	const char *clean_argv[] = {"sh", "-c", checkout_rm_script, "sh", c->workspace, NULL};
	const char *clone_argv[] = {"git", "clone",   "--quiet",    "--shared", "--no-checkout",
				    "--",  c->mirror, c->workspace, NULL};
	const char *checkout_argv[] = {"git",	  "-C",	      c->workspace, "checkout",
				       "--quiet", "--detach", c->sha,	    NULL};
	const char *const *argv[] = {mirror_argv, verify_argv, clean_argv, clone_argv,
				     checkout_argv};

	struct process_spec spec = {
	    .argv = argv[c->step],
	    .envp = (const char *const *)c->env,
	    .kill_grace_ms = KILL_GRACE_MS,
	};
	if (c->timeout_ms > 0) {
		int64_t left = c->deadline_ms - clock_mono_ms();
		if (left <= 0) {
			snprintf(c->error, sizeof(c->error), "checkout timed out after %d ms",
				 c->timeout_ms);
			return -1;
		}
		spec.timeout_ms = (int)left;
	}
	gitreason_reset(&c->why);
	c->proc = process_spawn(&spec, on_git_line, on_step_exit, c);
	if (c->proc == NULL) {
		snprintf(c->error, sizeof(c->error), "cannot start %s: %s", step_name(c),
			 strerror(errno));
		return -1;
	}
	return 0;
}

static void on_step_exit(const struct process_result *r, void *arg)
{
	struct checkout *c = arg;

	c->proc = NULL;
	if (c->cancelled) {
		finish(c, "cancelled");
		return;
	}
	switch (r->outcome) {
	case PROCESS_EXITED:
		if (r->exit_code == 0)
			break;
		if (c->step == STEP_CHECKOUT && !c->fetched) {
			/* The commit is not in the mirror yet: fetch, then retry. */
			c->step = STEP_MIRROR;
			c->fetched = 1;
			if (start_step(c) < 0)
				finish(c, c->error);
			return;
		}
		if (c->step == STEP_VERIFY) {
			char shown[256];
			checkout_url_shown(c->url, shown, sizeof(shown));
			snprintf(c->error, sizeof(c->error), "commit %s not found in %s", c->sha,
				 shown);
		} else
			snprintf(c->error, sizeof(c->error), "%s failed (exit %d)%s%s",
				 step_name(c), r->exit_code, c->why.text[0] ? ": " : "",
				 c->why.text);
		finish(c, c->error);
		return;
	case PROCESS_TIMED_OUT:
		snprintf(c->error, sizeof(c->error), "checkout timed out after %d ms",
			 c->timeout_ms);
		finish(c, c->error);
		return;
	case PROCESS_CANCELLED:
		finish(c, "cancelled");
		return;
	default:
		snprintf(c->error, sizeof(c->error), "%s failed: %s", step_name(c), r->error);
		finish(c, c->error);
		return;
	}
	c->step = next_step(c);
	if (start_step(c) < 0) {
		finish(c, c->error);
		return;
	}
	if (c->step == STEP_DONE)
		finish(c, NULL);
}

struct checkout *checkout_start(const char *state_dir, const char *url, const char *sha,
				const char *workspace, int timeout_ms, process_line_cb on_line,
				checkout_done_cb done, void *arg)
{
	struct event_base *base = process_base();
	struct checkout *c = NULL;
	char *mirrors = NULL;
	char name[17];
	struct timeval now = {0, 0};

	if (base == NULL || state_dir == NULL || url == NULL || sha == NULL || workspace == NULL ||
	    done == NULL) {
		log_error("checkout_start: not initialised or bad arguments");
		return NULL;
	}
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	c->on_line = on_line;
	c->done = done;
	c->arg = arg;
	c->timeout_ms = timeout_ms;
	c->deadline_ms = clock_mono_ms() + timeout_ms;
	c->defer = evtimer_new(base, on_defer, c);
	c->url = strdup(url);
	c->sha = strdup(sha);
	c->workspace = strdup(workspace);
	if (c->defer == NULL || c->url == NULL || c->sha == NULL || c->workspace == NULL)
		goto nomem;

	/* Errors found before any git runs are still reported through done,
	 * from the loop, so the caller sees one path for every failure. */
	if (!valid_sha(sha)) {
		snprintf(c->error, sizeof(c->error), "bad commit sha \"%.80s\"", sha);
		goto defer;
	}
	if (url[0] == '\0' || url[0] == '-') {
		snprintf(c->error, sizeof(c->error), "bad repository URL");
		goto defer;
	}
	mirrors = str_printf("%s/mirrors", state_dir);
	if (mirrors == NULL)
		goto nomem;
	mirror_name(url, name);
	if (make_dir(state_dir) < 0 || make_dir(mirrors) < 0) {
		snprintf(c->error, sizeof(c->error), "cannot create %s: %s", mirrors,
			 strerror(errno));
		goto defer;
	}
	c->mirror = str_printf("%s/%s.git", mirrors, name);
	if (c->mirror == NULL)
		goto nomem;
	c->lock = str_printf("%s.lock", c->mirror);
	c->tmp = str_printf("%s.tmp", c->mirror);
	c->git_dir_arg = str_printf("--git-dir=%s", c->mirror);
	c->commit_arg = str_printf("%s^{commit}", sha);
	if (c->lock == NULL || c->tmp == NULL || c->git_dir_arg == NULL || c->commit_arg == NULL ||
	    build_env(c) < 0)
		goto nomem;
	free(mirrors);
	mirrors = NULL;

	struct stat st;
	c->mirror_existed = stat(c->mirror, &st) == 0;
	c->fetched = !c->mirror_existed;
	c->step = c->mirror_existed ? STEP_CLEAN : STEP_MIRROR;
	if (start_step(c) < 0)
		goto defer;
	return c;
nomem:
	snprintf(c->error, sizeof(c->error), "out of memory");
	if (c->defer == NULL) {
		checkout_free(c);
		free(mirrors);
		return NULL;
	}
defer:
	free(mirrors);
	evtimer_add(c->defer, &now);
	return c;
}

void checkout_cancel(struct checkout *c)
{
	if (c == NULL || c->cancelled)
		return;
	c->cancelled = 1;
	if (c->proc != NULL)
		process_cancel(c->proc);
}
