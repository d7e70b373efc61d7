/* pipeline: one pipeline file → struct pipeline and its normalized def.
 *
 * Everything a run needs is checked here, at load time, so a file that loads
 * cannot fail a run later: stage names and kinds, needs (known, acyclic),
 * timeouts, that secret files exist and are readable, that run: arguments
 * and http: templates name only variables a run defines. Secret contents are
 * never read into def and never named in a message.
 */
#include "config/config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/check.h"
#include "config/doc.h"
#include "config/environments.h"
#include "config/file.h"
#include "config/retry.h"
#include "config/when.h"
#include "stages/checkout.h"
#include "stages/env_cookie.h"
#include "stages/expand.h"
#include "stages/request.h"
#include "stages/rollout.h"

#define DEFAULT_TIMEOUT_MS (3600LL * 1000)
#define MAX_TIMEOUT_MS	   (30LL * 86400 * 1000)
#define MAX_SECRET_FILE	   65536
#define MAX_REPOSITORY	   200
#define REPO_CHARS	   "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-/"

static const char *const top_keys[] = {"name",	 "trigger",	 "checkout",	 "vars", "secrets",
				       "stages", "max_attempts", "environments", NULL};
static const char *const trigger_keys[] = {"github", NULL};
static const char *const github_keys[] = {"repository",	 "events", "branches", "tags",
					  "secret_file", "forks",  NULL};
static const char *const checkout_keys[] = {"url", NULL};
static const char *const stage_keys[] = {
    "kind",	    "run",	   "sh",      "http",	  "needs", "timeout", "retry",
    "max_attempts", "inherit_env", "log_cap", "checkout", "when",  NULL};
static const char *const executors[] = {"run", "sh", "http", NULL};
static const char *const http_keys[] = {"method",  "url",     "headers", "body",    "expect",
					"timeout", "retries", "backoff", "ca_file", NULL};
static const char *const events[] = {"push", "pull_request", NULL};
static const char *const kinds[] = {"build", "test", "scan", "push", "deploy", NULL};

/* What the needs check keeps of each stage between the two passes. */
struct stage_ref {
	const struct config_doc_node *node;
	const struct config_doc_node *needs; /* NULL when absent */
	size_t *deps;			     /* indexes of needed stages */
	size_t ndeps;
	int color; /* cycle search: 0 unvisited, 1 on the path, 2 done */
	size_t next;
};

struct loading {
	struct config_check ck;
	const char *dir; /* of the pipeline file, absolute */
	struct pipeline *p;
	json_t *def;
	struct stage_ref *stages;
	size_t nstages;
};

static int in_list(const char *s, const char *const *list)
{
	for (; *list; list++)
		if (!strcmp(s, *list))
			return 1;
	return 0;
}

int pipeline_is_kind(const char *kind)
{
	return in_list(kind, kinds);
}

static int nomem(struct loading *ld, const struct config_doc_node *n)
{
	return config_check_fail(&ld->ck, n, "out of memory");
}

static int load_name(struct loading *ld, const struct config_doc_node *top)
{
	const struct config_doc_node *n = config_doc_get(top, "name");
	const char *base, *dot;
	const char *name;

	if (n) {
		if (config_check_string(&ld->ck, n, 0, &name) < 0)
			return -1;
		/* "." and ".." would be path segments in its URLs. */
		if (!config_check_word(name, "_.-", 0) || !strcmp(name, ".") || !strcmp(name, ".."))
			return config_check_fail(&ld->ck, n,
						 "invalid pipeline name (use letters, digits, "
						 "'_', '.' and '-', not \".\" or \"..\")");
		ld->p->name = strdup(name);
	} else {
		base = strrchr(ld->p->file, '/');
		base = base ? base + 1 : ld->p->file;
		dot = strrchr(base, '.');
		ld->p->name =
		    dot && dot != base ? strndup(base, (size_t)(dot - base)) : strdup(base);
		if (ld->p->name && !config_check_word(ld->p->name, "_.-", 0))
			return config_check_fail(&ld->ck, top,
						 "the file name is not a valid pipeline name; "
						 "set \"name:\"");
	}
	if (!ld->p->name)
		return nomem(ld, top);
	return 0;
}

static int load_repository(struct loading *ld, const struct config_doc_node *gh)
{
	const struct config_doc_node *n;
	const char *repo, *slash;

	if (config_check_require(&ld->ck, gh, "repository", &n) < 0 ||
	    config_check_string(&ld->ck, n, 0, &repo) < 0)
		return -1;
	slash = strchr(repo, '/');
	if (!slash || slash == repo || !slash[1] || strchr(slash + 1, '/'))
		return config_check_fail(&ld->ck, n, "expected \"owner/name\"");
	/* What GitHub allows in owner and repository names. */
	if (strspn(repo, REPO_CHARS) != strlen(repo) || strlen(repo) > MAX_REPOSITORY)
		return config_check_fail(&ld->ck, n,
					 "expected \"owner/name\" of letters, digits, '.', '_' and "
					 "'-', at most %d bytes",
					 MAX_REPOSITORY);
	ld->p->repository = strdup(repo);
	if (!ld->p->repository)
		return nomem(ld, n);
	return 0;
}

static int load_events(struct loading *ld, const struct config_doc_node *gh)
{
	const struct config_doc_node *n = config_doc_get(gh, "events");
	size_t i;

	if (!n) {
		ld->p->events = json_pack("[s]", "push");
		return ld->p->events ? 0 : nomem(ld, gh);
	}
	if (config_check_text_list(&ld->ck, n, 1, &ld->p->events) < 0)
		return -1;
	if (!json_array_size(ld->p->events))
		return config_check_fail(&ld->ck, n, "must not be empty");
	for (i = 0; i < json_array_size(ld->p->events); i++) {
		const char *e = json_string_value(json_array_get(ld->p->events, i));
		const struct config_doc_node *item = n->first;
		size_t k;

		if (in_list(e, events))
			continue;
		for (k = 0; item && k < i; k++)
			item = item->next;
		if (when_event_inert(e))
			return config_check_fail(&ld->ck, item ? item : n,
						 "\"%s\" starts no run: runs start from push and "
						 "pull_request events (a tag's push: tags)",
						 e);
		return config_check_fail(&ld->ck, item ? item : n,
					 "unknown event \"%s\" (known: push, pull_request)", e);
	}
	return 0;
}

/* The webhook secret: the file's content less its trailing newline. */
static int load_secret(struct loading *ld, const struct config_doc_node *gh)
{
	const struct config_doc_node *n;
	const char *rel;
	char *path, *buf = NULL;
	size_t len = 0;
	int rc = -1;

	if (config_check_require(&ld->ck, gh, "secret_file", &n) < 0 ||
	    config_check_string(&ld->ck, n, 0, &rel) < 0)
		return -1;
	path = config_file_resolve(ld->dir, rel);
	if (!path)
		return nomem(ld, n);
	if (ld->ck.unopened) {
		/* No secret: the pipeline is checked, never run. */
		free(path);
		return 0;
	}
	if (config_file_read(path, MAX_SECRET_FILE, &buf, &len) < 0) {
		config_check_fail(&ld->ck, n, "cannot read \"%s\": %s", path, strerror(errno));
		goto done;
	}
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
		buf[--len] = '\0';
	if (strlen(buf) != len) {
		config_check_fail(&ld->ck, n, "file \"%s\" contains a NUL byte", path);
		goto done;
	}
	if (!len) {
		config_check_fail(&ld->ck, n, "file \"%s\" is empty", path);
		goto done;
	}
	ld->p->secret = buf;
	buf = NULL;
	rc = 0;
done:
	if (buf)
		memset(buf, 0, len);
	free(buf);
	free(path);
	return rc;
}

static int load_trigger(struct loading *ld, const struct config_doc_node *top)
{
	const struct config_doc_node *t, *gh, *n;

	if (config_check_require(&ld->ck, top, "trigger", &t) < 0 ||
	    config_check_keys(&ld->ck, t, trigger_keys) < 0 ||
	    config_check_require(&ld->ck, t, "github", &gh) < 0 ||
	    config_check_keys(&ld->ck, gh, github_keys) < 0 || load_repository(ld, gh) < 0 ||
	    load_events(ld, gh) < 0)
		return -1;
	n = config_doc_get(gh, "branches");
	if (n && config_check_glob_list(&ld->ck, n, &ld->p->branches) < 0)
		return -1;
	n = config_doc_get(gh, "tags");
	if (n && config_check_glob_list(&ld->ck, n, &ld->p->tags) < 0)
		return -1;
	n = config_doc_get(gh, "forks");
	if (n) {
		const char *forks;
		if (config_check_string(&ld->ck, n, 0, &forks) < 0)
			return -1;
		if (strcmp(forks, "no-secrets") == 0)
			ld->p->forks = PIPELINE_FORKS_NO_SECRETS;
		else if (strcmp(forks, "skip") == 0)
			ld->p->forks = PIPELINE_FORKS_SKIP;
		else if (strcmp(forks, "with-secrets") == 0)
			ld->p->forks = PIPELINE_FORKS_SECRETS;
		else
			return config_check_fail(&ld->ck, n,
						 "expected one of no-secrets, skip, with-secrets");
	}
	return load_secret(ld, gh);
}

/* Whether git takes url as a local path: no "scheme://", and no ':' before
 * its first '/' (that is host:path, scp-like). */
static int local_path(const char *url)
{
	const char *colon = strchr(url, ':'), *slash = strchr(url, '/');
	return !strstr(url, "://") && (!colon || (slash && slash < colon));
}

static int load_checkout(struct loading *ld, const struct config_doc_node *top)
{
	const struct config_doc_node *c = config_doc_get(top, "checkout");
	const struct config_doc_node *n;
	const char *url;
	char why[256];

	if (!c)
		return 0;
	if (config_check_keys(&ld->ck, c, checkout_keys) < 0)
		return -1;
	n = config_doc_get(c, "url");
	if (!n)
		return 0;
	if (config_check_string(&ld->ck, n, 0, &url) < 0)
		return -1;
	/* Every checkout of the pipeline would fail on it. */
	if (checkout_url_check(url, why, sizeof(why)) < 0)
		return config_check_fail(&ld->ck, n, "%s", why);
	/* A relative path is the file's, as every other path in it: git would
	 * take it from whatever directory the worker (or the agent) runs in. */
	char *resolved = local_path(url) ? config_file_resolve(ld->dir, url) : strdup(url);
	if (!resolved)
		return nomem(ld, n);
	int rc = json_object_set_new(ld->def, "checkout", json_pack("{ss}", "url", resolved));
	free(resolved);
	return rc < 0 ? nomem(ld, n) : 0;
}

/* A vars: or secrets: mapping: NAME → text into out; secrets' texts are
 * paths to check. */
static int load_name_map(struct loading *ld, const struct config_doc_node *m, int secrets,
			 json_t *out)
{
	const struct config_doc_node *c;

	if (!json_is_object(m->value))
		return config_check_fail(&ld->ck, m, "expected a mapping");
	for (c = m->first; c; c = c->next) {
		const char *v;
		char *path;
		json_t *s;

		if (!config_check_word(c->key, "_", 1))
			return config_check_fail_key(&ld->ck, c,
						     "invalid name (use letters, digits and '_', "
						     "not starting with a digit)");
		/* Run variables win over a var of the same name, and a secret
		 * over them: either way the pipeline would not get what it
		 * wrote. */
		if (strncmp(c->key, "SLUICE_", 7) == 0)
			return config_check_fail_key(&ld->ck, c,
						     "the SLUICE_ prefix is reserved for the "
						     "variables sluice sets");
		if (!secrets) {
			if (config_check_text(&ld->ck, c, &v) < 0)
				return -1;
			if (json_object_set_new(out, c->key, json_string(v)) < 0)
				return nomem(ld, c);
			continue;
		}
		if (config_check_string(&ld->ck, c, 0, &v) < 0)
			return -1;
		path = config_file_resolve(ld->dir, v);
		if (!path)
			return nomem(ld, c);
		if (!ld->ck.unopened && config_file_check_readable(path) < 0) {
			config_check_fail(&ld->ck, c, "cannot read \"%s\": %s", path,
					  strerror(errno));
			free(path);
			return -1;
		}
		s = json_string(path);
		free(path);
		if (json_object_set_new(out, c->key, s) < 0)
			return nomem(ld, c);
	}
	return 0;
}

static int load_names(struct loading *ld, const struct config_doc_node *top, const char *key)
{
	const struct config_doc_node *m = config_doc_get(top, key);
	json_t *out = json_object();

	if (!out || json_object_set_new(ld->def, key, out) < 0)
		return nomem(ld, top);
	return m ? load_name_map(ld, m, !strcmp(key, "secrets"), out) : 0;
}

/* The value of an http: header, expect or the like that is one item or a
 * list of them: item i of n (n itself when it is not a list). */
static const struct config_doc_node *list_item(const struct config_doc_node *n, size_t i)
{
	const struct config_doc_node *item = n->first;

	if (!json_is_array(n->value))
		return n;
	while (item && i--)
		item = item->next;
	return item;
}

static int load_http_expect(struct loading *ld, const struct config_doc_node *n, json_t *out)
{
	json_t *codes = json_array();
	size_t i, count = json_is_array(n->value) ? json_array_size(n->value) : 1;

	if (!codes || json_object_set_new(out, "expect", codes) < 0)
		return nomem(ld, n);
	if (json_is_array(n->value) && !count)
		return config_check_fail(&ld->ck, n, "must not be empty");
	for (i = 0; i < count; i++) {
		long long code;

		if (config_check_int(&ld->ck, list_item(n, i), 100, 599, &code) < 0)
			return -1;
		if (json_array_append_new(codes, json_integer(code)) < 0)
			return nomem(ld, n);
	}
	return 0;
}

static int load_http_headers(struct loading *ld, const struct config_doc_node *m, json_t *out)
{
	const struct config_doc_node *c;
	json_t *headers = json_object();

	if (!headers || json_object_set_new(out, "headers", headers) < 0)
		return nomem(ld, m);
	if (!json_is_object(m->value))
		return config_check_fail(&ld->ck, m, "expected a mapping");
	for (c = m->first; c; c = c->next) {
		const char *v;

		if (!config_check_word(c->key, "-_.", 0))
			return config_check_fail_key(&ld->ck, c,
						     "invalid header name (use letters, digits, "
						     "'-', '_' and '.')");
		if (config_check_text(&ld->ck, c, &v) < 0)
			return -1;
		if (strpbrk(v, "\r\n"))
			return config_check_fail(&ld->ck, c,
						 "a header value cannot hold a line "
						 "break");
		if (json_object_set_new(headers, c->key, json_string(v)) < 0)
			return nomem(ld, c);
	}
	return 0;
}

/* http: → {"method", "url", "headers", "body"?, "expect"? (absent: any 2xx),
 * "timeout_ms", "retries", "backoff_ms", "ca_file"?}. */
static int load_http(struct loading *ld, const struct config_doc_node *h, json_t **out)
{
	const struct config_doc_node *n;
	const char *method = "GET", *url, *body;
	long long timeout_ms = 30000, backoff_ms = 1000, retries = 3;
	char upper[16];
	size_t i;

	if (!json_is_object(h->value))
		return config_check_fail(&ld->ck, h, "expected a mapping");
	n = config_doc_get(h, "insecure");
	if (n)
		return config_check_fail_key(&ld->ck, n,
					     "TLS verification cannot be turned off; set ca_file "
					     "to trust a private CA");
	if (config_check_keys(&ld->ck, h, http_keys) < 0 ||
	    config_check_require(&ld->ck, h, "url", &n) < 0 ||
	    config_check_string(&ld->ck, n, 0, &url) < 0)
		return -1;
	if (!request_url_form(url))
		return config_check_fail(&ld->ck, n, "expected an http:// or https:// URL");
	*out = json_pack("{ss}", "url", url);
	if (!*out)
		return nomem(ld, n);
	n = config_doc_get(h, "method");
	if (n) {
		if (config_check_string(&ld->ck, n, 0, &method) < 0)
			return -1;
		for (i = 0; i < sizeof(upper) - 1 && method[i]; i++)
			upper[i] = (char)toupper((unsigned char)method[i]);
		upper[i] = '\0';
		if (method[i] || !request_method_known(upper))
			return config_check_fail(
			    &ld->ck, n, "unknown method \"%s\" (known: " REQUEST_METHODS ")",
			    method);
		method = upper;
	}
	if (json_object_set_new(*out, "method", json_string(method)) < 0)
		return nomem(ld, h);
	n = config_doc_get(h, "headers");
	if (n && load_http_headers(ld, n, *out) < 0)
		return -1;
	if (!n && json_object_set_new(*out, "headers", json_object()) < 0)
		return nomem(ld, h);
	n = config_doc_get(h, "body");
	if (n) {
		if (config_check_text(&ld->ck, n, &body) < 0)
			return -1;
		if (!strcmp(method, "GET") || !strcmp(method, "HEAD"))
			return config_check_fail_key(&ld->ck, n, "a %s request has no body",
						     method);
		if (json_object_set_new(*out, "body", json_string(body)) < 0)
			return nomem(ld, n);
	}
	n = config_doc_get(h, "expect");
	if (n && load_http_expect(ld, n, *out) < 0)
		return -1;
	n = config_doc_get(h, "timeout");
	if (n && config_check_duration_ms(&ld->ck, n, MAX_TIMEOUT_MS, &timeout_ms) < 0)
		return -1;
	n = config_doc_get(h, "retries");
	if (n && config_check_int(&ld->ck, n, 0, 100, &retries) < 0)
		return -1;
	n = config_doc_get(h, "backoff");
	if (n && config_check_duration_ms(&ld->ck, n, MAX_TIMEOUT_MS, &backoff_ms) < 0)
		return -1;
	n = config_doc_get(h, "ca_file");
	if (n && config_check_path(&ld->ck, n, ld->dir, *out, "ca_file") < 0)
		return -1;
	if (json_object_set_new(*out, "timeout_ms", json_integer(timeout_ms)) < 0 ||
	    json_object_set_new(*out, "retries", json_integer(retries)) < 0 ||
	    json_object_set_new(*out, "backoff_ms", json_integer(backoff_ms)) < 0)
		return nomem(ld, h);
	return 0;
}

/* Exactly one of run: (an argument list), sh: (a script) and http: (a
 * request); *key names it in def, *out is its normalized value. */
static int load_executor(struct loading *ld, const struct config_doc_node *st, const char **key,
			 json_t **out)
{
	const struct config_doc_node *n = NULL, *c;
	const char *script;
	size_t i;

	for (i = 0; executors[i]; i++) {
		c = config_doc_get(st, executors[i]);
		if (c && n)
			return config_check_fail_key(&ld->ck, c,
						     "only one of run, sh and http may be given "
						     "(this stage already has %s)",
						     n->key);
		if (c)
			n = c;
	}
	if (!n)
		return config_check_missing(&ld->ck, st, "run",
					    "or sh: a script, or http: a request");
	*key = n->key;
	if (!strcmp(n->key, "sh")) {
		if (config_check_string(&ld->ck, n, 0, &script) < 0)
			return -1;
		*out = json_string(script);
		return *out ? 0 : nomem(ld, n);
	}
	if (!strcmp(n->key, "http")) {
		if (load_http(ld, n, out) < 0) {
			json_decref(*out);
			*out = NULL;
			return -1;
		}
		return 0;
	}
	return config_check_argv(&ld->ck, n, out);
}

/* The variables sluice sets (workers/stage_env.c): for every stage, for a
 * deployment, and for a run: command (workers/job.c). Every command also
 * gets ENV_COOKIE_NAME (stages/env_cookie.h), which no template may name
 * and no stage may inherit. */
static const char *const run_names[] = {
    "SLUICE_RUN_ID",	"SLUICE_PIPELINE", "SLUICE_REPO",    "SLUICE_REF",   "SLUICE_SHA",
    "SLUICE_SHA_SHORT", "SLUICE_STAGE",	   "SLUICE_ATTEMPT", "SLUICE_EVENT", NULL};
static const char *const deployment_names[] = {"SLUICE_ENV", NULL};
static const char *const command_names[] = {"SLUICE_OUTPUT", "SLUICE_ARTIFACTS", NULL};

/* inherit_env: names of the worker's environment the stage may see;
 * log_cap: bytes of output kept; checkout: false. Each only when given. */
static int load_stage_env(struct loading *ld, const struct config_doc_node *st, json_t *stage)
{
	const struct config_doc_node *n = config_doc_get(st, "inherit_env");
	json_t *names = NULL;
	long long cap;
	size_t i;

	if (n) {
		if (config_check_text_list(&ld->ck, n, 1, &names) < 0)
			return -1;
		if (json_object_set_new(stage, "inherit_env", names) < 0)
			return nomem(ld, n);
		for (i = 0; i < json_array_size(names); i++) {
			const char *name = json_string_value(json_array_get(names, i));

			if (!config_check_word(name, "_", 1))
				return config_check_fail(&ld->ck, list_item(n, i),
							 "invalid variable name (use letters, "
							 "digits and '_', not starting with a "
							 "digit)");
			/* What sluice sets wins over the worker's environment:
			 * the stage would not see the value it asked for. */
			if (in_list(name, run_names) || in_list(name, deployment_names) ||
			    in_list(name, command_names) || strcmp(name, ENV_COOKIE_NAME) == 0)
				return config_check_fail(&ld->ck, list_item(n, i),
							 "%s is a variable sluice sets: a stage "
							 "cannot inherit it",
							 name);
		}
	}
	n = config_doc_get(st, "log_cap");
	if (n) {
		if (config_check_size(&ld->ck, n, 1LL << 30, &cap) < 0)
			return -1;
		if (json_object_set_new(stage, "log_cap", json_integer(cap)) < 0)
			return nomem(ld, n);
	}
	/* checkout: false runs the stage in an empty directory of its own, for
	 * stages that need no repository (notifications, API calls). */
	n = config_doc_get(st, "checkout");
	if (n) {
		if (!json_is_boolean(n->value))
			return config_check_fail(&ld->ck, n, "expected true or false");
		if (json_is_false(n->value) &&
		    json_object_set_new(stage, "checkout", json_false()) < 0)
			return nomem(ld, n);
	}
	return 0;
}

static int load_stage(struct loading *ld, const struct config_doc_node *st, json_t *stages)
{
	const struct config_doc_node *n;
	const char *kind = st->key;
	long long timeout_ms = DEFAULT_TIMEOUT_MS;
	const char *executor = NULL;
	json_t *run = NULL, *needs = NULL;

	if (!config_check_word(st->key, "_-", 0) || strlen(st->key) > PIPELINE_STAGE_NAME_MAX)
		return config_check_fail_key(&ld->ck, st,
					     "invalid stage name (use at most %d letters, digits, "
					     "'_' and '-')",
					     PIPELINE_STAGE_NAME_MAX);
	if (config_check_keys(&ld->ck, st, stage_keys) < 0)
		return -1;
	n = config_doc_get(st, "kind");
	if (n) {
		if (config_check_string(&ld->ck, n, 0, &kind) < 0)
			return -1;
		if (!pipeline_is_kind(kind))
			return config_check_fail(&ld->ck, n,
						 "unknown kind \"%s\" (known: build, test, scan, "
						 "push, deploy)",
						 kind);
	} else if (!pipeline_is_kind(kind)) {
		return config_check_missing(&ld->ck, st, "kind",
					    "the stage name is not one of build, test, scan, "
					    "push, deploy");
	}
	if (load_executor(ld, st, &executor, &run) < 0)
		return -1;
	n = config_doc_get(st, "needs");
	if (n && config_check_text_list(&ld->ck, n, 1, &needs) < 0)
		goto fail;
	if (!needs)
		needs = json_array();
	n = config_doc_get(st, "timeout");
	if (n && config_check_duration_ms(&ld->ck, n, MAX_TIMEOUT_MS, &timeout_ms) < 0)
		goto fail;
	if (json_object_set_new(stages, st->key,
				json_pack("{ss so so sI}", "kind", kind, executor, run, "needs",
					  needs, "timeout",
					  (json_int_t)((timeout_ms + 999) / 1000))) < 0)
		return nomem(ld, st);
	if (load_stage_env(ld, st, json_object_get(stages, st->key)) < 0)
		return -1;
	if (when_load(&ld->ck, st, json_object_get(stages, st->key)) < 0)
		return -1;
	return retry_load(&ld->ck, st, json_object_get(stages, st->key));
fail:
	json_decref(run);
	json_decref(needs);
	return -1;
}

/* The needs entry i of a stage: an item of its list, or the single name. */
static const struct config_doc_node *need_node(const struct stage_ref *s, size_t i)
{
	const struct config_doc_node *item = s->needs->first;

	if (!json_is_array(s->needs->value))
		return s->needs;
	while (item && i--)
		item = item->next;
	return item;
}

static int resolve_needs(struct loading *ld, json_t *stages)
{
	json_t *index = json_object();
	size_t i, j;
	int rc = -1;

	/* A name → position index keeps this linear in the number of needs. */
	if (!index)
		return nomem(ld, ld->stages[0].node);
	for (i = 0; i < ld->nstages; i++)
		if (json_object_set_new(index, ld->stages[i].node->key,
					json_integer((json_int_t)i)) < 0) {
			nomem(ld, ld->stages[i].node);
			goto done;
		}
	for (i = 0; i < ld->nstages; i++) {
		struct stage_ref *s = &ld->stages[i];
		json_t *needs = json_object_get(json_object_get(stages, s->node->key), "needs");

		if (!json_array_size(needs))
			continue;
		s->deps = calloc(json_array_size(needs), sizeof(*s->deps));
		if (!s->deps) {
			nomem(ld, s->needs);
			goto done;
		}
		for (j = 0; j < json_array_size(needs); j++) {
			const char *name = json_string_value(json_array_get(needs, j));
			json_t *at = json_object_get(index, name);

			if (!at) {
				config_check_fail(&ld->ck, need_node(s, j), "unknown stage \"%s\"",
						  name);
				goto done;
			}
			if ((size_t)json_integer_value(at) == i) {
				config_check_fail(&ld->ck, need_node(s, j),
						  "a stage cannot need itself");
				goto done;
			}
			s->deps[s->ndeps++] = (size_t)json_integer_value(at);
		}
	}
	rc = 0;
done:
	json_decref(index);
	return rc;
}

/* "a -> b -> c -> a" for the stages path[from..depth) closing back on the
 * first; a cycle too long for the message ends in "...". */
static int cycle_error(struct loading *ld, const size_t *path, size_t from, size_t depth,
		       const struct stage_ref *closing)
{
	char names[400];
	size_t used = 0, at;

	names[0] = '\0';
	for (at = from; at <= depth; at++) {
		const char *name = ld->stages[path[at < depth ? at : from]].node->key;
		int w = snprintf(names + used, sizeof(names) - used, "%s%s",
				 at > from ? " -> " : "", name);

		if (w < 0 || (size_t)w >= sizeof(names) - used) {
			strcpy(names + (used < sizeof(names) - 8 ? used : sizeof(names) - 8),
			       " -> ...");
			break;
		}
		used += (size_t)w;
	}
	return config_check_fail(&ld->ck, need_node(closing, closing->next - 1),
				 "dependency cycle: %s", names);
}

/* Depth-first search with an explicit stack: a file may hold thousands of
 * stages in a chain, too many for recursion. */
static int find_cycle(struct loading *ld)
{
	size_t *path = calloc(ld->nstages + 1, sizeof(*path));
	size_t depth, root, at;

	if (!path)
		return nomem(ld, ld->stages[0].node);
	for (root = 0; root < ld->nstages; root++) {
		if (ld->stages[root].color)
			continue;
		depth = 0;
		path[depth++] = root;
		ld->stages[root].color = 1;
		while (depth) {
			struct stage_ref *u = &ld->stages[path[depth - 1]];
			size_t v;

			if (u->next == u->ndeps) {
				u->color = 2;
				depth--;
				continue;
			}
			v = u->deps[u->next++];
			if (ld->stages[v].color == 0) {
				ld->stages[v].color = 1;
				path[depth++] = v;
			} else if (ld->stages[v].color == 1) {
				for (at = 0; path[at] != v; at++)
					;
				cycle_error(ld, path, at, depth, u);
				free(path);
				return -1;
			}
		}
	}
	free(path);
	return 0;
}

static int load_stages(struct loading *ld, const struct config_doc_node *top)
{
	const struct config_doc_node *m, *c;
	json_t *stages = json_object();

	if (!stages || json_object_set_new(ld->def, "stages", stages) < 0)
		return nomem(ld, top);
	if (config_check_require(&ld->ck, top, "stages", &m) < 0)
		return -1;
	if (!json_is_object(m->value))
		return config_check_fail(&ld->ck, m, "expected a mapping");
	if (!json_object_size(m->value))
		return config_check_fail(&ld->ck, m, "must not be empty");
	ld->stages = calloc(json_object_size(m->value), sizeof(*ld->stages));
	if (!ld->stages)
		return nomem(ld, m);
	for (c = m->first; c; c = c->next) {
		if (load_stage(ld, c, stages) < 0)
			return -1;
		ld->stages[ld->nstages].node = c;
		ld->stages[ld->nstages].needs = config_doc_get(c, "needs");
		ld->nstages++;
	}
	if (resolve_needs(ld, stages) < 0)
		return -1;
	return find_cycle(ld);
}

/* An environment's deploy: spec, loaded as a stage named "deploy". */
static int env_stage(void *arg, const struct config_doc_node *spec, json_t **out)
{
	struct loading *ld = arg;
	json_t *one = json_object();

	if (!one)
		return nomem(ld, spec);
	if (load_stage(ld, spec, one) < 0) {
		json_decref(one);
		return -1;
	}
	*out = json_incref(json_object_get(one, spec->key));
	json_decref(one);
	return 0;
}

static int env_names(void *arg, const struct config_doc_node *m, int secrets, json_t *out)
{
	return load_name_map(arg, m, secrets, out);
}

static int load_environments(struct loading *ld, const struct config_doc_node *top)
{
	const struct environments_loader l = {.ck = &ld->ck,
					      .dir = ld->dir,
					      .def = ld->def,
					      .stage = env_stage,
					      .names = env_names,
					      .arg = ld};
	return environments_load(&l, top);
}

/* What a stage's templates may name: its vars, for an http: request or a
 * rollout its secrets too, the run's variables (those sluice sets where the
 * template is expanded: SLUICE_ is a prefix no var or secret may take) and
 * the outputs of the pipeline's stages (<stage>.<KEY>). */
struct template_names {
	struct loading *ld;
	const json_t *vars;
	const json_t *secrets;
	const json_t *stages;
	int expands_secrets;
	int deployment;
	const char *const *own; /* what sluice sets for this template alone */
	const char *self;	/* the stage whose template it is; NULL: a deployment */
	int secret_named;	/* the undefined name is a secret, not expanded here */
	int not_needed;		/* it is an output of a stage self does not need */
};

/* Whether the stage from needs the stage name, directly or through others
 * (needs are acyclic by now); seen marks the stages looked at already. */
static int needs_stage(const json_t *stages, const char *from, const char *name, json_t *seen)
{
	size_t i;
	const json_t *need;
	json_array_foreach(json_object_get(json_object_get(stages, from), "needs"), i, need)
	{
		const char *n = json_string_value(need);
		if (!n || json_object_get(seen, n))
			continue;
		if (strcmp(n, name) == 0)
			return 1;
		json_object_set_new(seen, n, json_true());
		if (needs_stage(stages, n, name, seen))
			return 1;
	}
	return 0;
}

static int template_name_defined(const char *name, void *arg)
{
	struct template_names *t = arg;
	const char *dot = strchr(name, '.');
	int secret = json_object_get(t->secrets, name) != NULL;

	if (json_object_get(t->vars, name) || (secret && t->expands_secrets) ||
	    in_list(name, run_names) || (t->deployment && in_list(name, deployment_names)) ||
	    (t->own && in_list(name, t->own)))
		return 1;
	if (dot) {
		char *stage = strndup(name, (size_t)(dot - name));
		int known =
		    stage && json_object_get(t->stages, stage) && dot[1] && !strchr(dot + 1, '.');
		/* A stage runs once those it needs are done: another's outputs
		 * may not be there yet, and its own never are. */
		if (known && t->self) {
			json_t *seen = json_object();
			known = seen && needs_stage(t->stages, t->self, stage, seen);
			json_decref(seen);
			t->not_needed = !known;
		}
		free(stage);
		return known;
	}
	t->secret_named = secret;
	return 0;
}

static int check_template(const struct config_doc_node *n, const char *tmpl,
			  struct template_names *t)
{
	char why[256];

	t->secret_named = 0;
	t->not_needed = 0;
	if (!tmpl || expand_check(tmpl, template_name_defined, t, why, sizeof(why)) == 0)
		return 0;
	if (t->not_needed)
		return config_check_fail(&t->ld->ck, n,
					 "%s (an output of a stage that %s does not need, directly "
					 "or through others: it is not there when %s runs)",
					 why, t->self, t->self);
	if (t->secret_named)
		return config_check_fail(&t->ld->ck, n,
					 "%s (a secret is in the environment, not expanded in "
					 "run: arguments)",
					 why);
	return config_check_fail(&t->ld->ck, n, "%s", why);
}

/* What the templates of a stage, whose definition is stage, may name. */
static struct template_names stage_template_names(struct loading *ld, const json_t *stage)
{
	const json_t *layered = json_object_get(stage, "vars");
	const json_t *secrets = json_object_get(stage, "secrets");

	return (struct template_names){
	    .ld = ld,
	    .vars = layered ? layered : json_object_get(ld->def, "vars"),
	    .secrets = secrets ? secrets : json_object_get(ld->def, "secrets"),
	    .stages = json_object_get(ld->def, "stages"),
	    .deployment = json_object_get(stage, "env") != NULL,
	};
}

static int check_request_template(const struct config_doc_node *n, void *arg)
{
	return check_template(n, json_string_value(n->value), arg);
}

/* An inherit_env name that is also a var or a secret of the stage: the
 * pipeline's value would win over the worker's, unseen (workers/stage_env.c). */
static int check_inherited(struct loading *ld, const struct config_doc_node *st,
			   const json_t *stage, const struct template_names *t)
{
	const struct config_doc_node *n = config_doc_get(st, "inherit_env");
	const json_t *names = json_object_get(stage, "inherit_env");
	size_t i;

	for (i = 0; n && i < json_array_size(names); i++) {
		const char *name = json_string_value(json_array_get(names, i));
		const char *what = json_object_get(t->vars, name)      ? "var"
				   : json_object_get(t->secrets, name) ? "secret"
								       : NULL;
		if (what)
			return config_check_fail(&ld->ck, list_item(n, i),
						 "%s is a %s of the pipeline: a stage cannot "
						 "inherit it",
						 name, what);
	}
	return 0;
}

/* The run: arguments and http: templates of the stage name at node st
 * (NULL: a deployment, after every stage), whose definition is stage, name
 * only what will be defined when it runs: a
 * name that will not be would fail every run of it. Its inherit_env names
 * no var or secret. */
static int check_stage_templates(struct loading *ld, const struct config_doc_node *st,
				 const char *name, const json_t *stage)
{
	struct template_names t = stage_template_names(ld, stage);
	t.self = name;
	const json_t *run = json_object_get(stage, "run");
	const struct config_doc_node *n = config_doc_get(st, "run");
	size_t i;

	if (check_inherited(ld, st, stage, &t) < 0)
		return -1;

	t.own = command_names;
	for (i = 0; n && i < json_array_size(run); i++)
		if (check_template(list_item(n, i), json_string_value(json_array_get(run, i)), &t) <
		    0)
			return -1;
	t.expands_secrets = 1;
	t.own = NULL;
	return request_templates(config_doc_get(st, "http"), check_request_template, &t);
}

static int check_rollout_template(const struct config_doc_node *n, const char *const *own,
				  void *arg)
{
	struct template_names *t = arg;

	t->own = own;
	return check_template(n, json_string_value(n->value), t);
}

/* The templates of the rollout of the environment at env, whose deployment
 * is stage: the worker expands its secrets in each (stages/rollout.c). */
static int check_rollout_templates(struct loading *ld, const struct config_doc_node *env,
				   const json_t *stage)
{
	struct template_names t = stage_template_names(ld, stage);

	t.expands_secrets = 1;
	return rollout_load_templates(env, check_rollout_template, &t);
}

/* After everything is loaded: the stages' own, and the environments'
 * deployments and rollouts (with their layered vars and secrets). */
static int check_templates(struct loading *ld, const struct config_doc_node *top)
{
	const json_t *stages = json_object_get(ld->def, "stages");
	const struct config_doc_node *m = config_doc_get(top, "stages"), *c;
	char name[256];

	for (c = m->first; c; c = c->next)
		if (check_stage_templates(ld, c, c->key, json_object_get(stages, c->key)) < 0)
			return -1;
	m = config_doc_get(top, "environments");
	for (c = m ? m->first : NULL; c; c = c->next) {
		const struct config_doc_node *deploy = config_doc_get(c, "deploy");
		const json_t *stage;

		snprintf(name, sizeof(name), "%s%s", ENVIRONMENTS_STAGE_PREFIX, c->key);
		stage = json_object_get(stages, name);
		if (deploy && check_stage_templates(ld, deploy, NULL, stage) < 0)
			return -1;
		if (json_object_get(stage, "rollout") && check_rollout_templates(ld, c, stage) < 0)
			return -1;
	}
	return 0;
}

/* PIPELINE_STAGES_MAX, told at stages: when they alone are too many, else at
 * the environments whose deployments make them so. */
static int check_stage_count(struct loading *ld, const struct config_doc_node *top)
{
	size_t n = json_object_size(json_object_get(ld->def, "stages"));
	const char *at = ld->nstages > PIPELINE_STAGES_MAX ? "stages" : "environments";

	if (n <= PIPELINE_STAGES_MAX)
		return 0;
	return config_check_fail(&ld->ck, config_doc_get(top, at),
				 "%zu stages, each environment counting as one: at most %d", n,
				 PIPELINE_STAGES_MAX);
}

/* A name both a var and a secret of the pipeline: ${NAME} in run:
 * arguments would be the var, and the stage's environment the secret. */
static int check_names_once(struct loading *ld, const struct config_doc_node *top)
{
	const json_t *vars = json_object_get(ld->def, "vars");
	const char *name;
	const json_t *v;
	json_object_foreach((json_t *)json_object_get(ld->def, "secrets"), name, v)
	{
		if (json_object_get(vars, name))
			return config_check_fail_key(
			    &ld->ck, config_doc_get(config_doc_get(top, "secrets"), name),
			    "%s is a var of the pipeline too: a name is a var or a secret", name);
	}
	return 0;
}

static int load(struct loading *ld, const struct config_doc_node *top)
{
	if (config_check_keys(&ld->ck, top, top_keys) < 0 || load_name(ld, top) < 0 ||
	    load_trigger(ld, top) < 0)
		return -1;
	if (json_object_set_new(ld->def, "name", json_string(ld->p->name)) < 0)
		return nomem(ld, top);
	if (load_names(ld, top, "vars") < 0 || load_names(ld, top, "secrets") < 0 ||
	    check_names_once(ld, top) < 0 || load_checkout(ld, top) < 0 ||
	    load_stages(ld, top) < 0 || load_environments(ld, top) < 0 ||
	    check_stage_count(ld, top) < 0 || check_templates(ld, top) < 0)
		return -1;
	return 0;
}

/* A copy of def without what keys names, at its top and in each stage; a
 * stage holding drop_stage_with is left out whole. NULL when out of memory. */
static json_t *def_without(const json_t *def, const char *const *keys, const char *drop_stage_with)
{
	json_t *copy = json_deep_copy(def);
	json_t *stages = json_object_get(copy, "stages");
	const char *name;
	json_t *stage;
	void *tmp;
	json_object_foreach_safe(stages, tmp, name, stage)
	{
		if (json_object_get(stage, drop_stage_with)) {
			json_object_del(stages, name);
			continue;
		}
		for (const char *const *k = keys; *k; k++)
			json_object_del(stage, *k);
	}
	for (const char *const *k = keys; copy && *k; k++)
		json_object_del(copy, *k);
	return copy;
}

/* What pull requests' runs record (config.h): no environments nor their
 * deployment stages; from a fork, no secrets either, which the run says so
 * that the worker can tell the stage's log. */
static int run_defs(struct pipeline *p)
{
	static const char *const pull[] = {"environments", NULL};
	static const char *const fork[] = {"environments", "secrets", NULL};
	p->pull.def = def_without(p->def, pull, "env");
	p->fork.def = def_without(p->def, fork, "env");
	if (!p->pull.def || !p->fork.def ||
	    json_object_set_new(p->fork.def, "secrets_withheld",
				json_string("a pull request from a fork")) < 0)
		return -1;
	p->pull.text = json_dumps(p->pull.def, JSON_COMPACT);
	p->fork.text = json_dumps(p->fork.def, JSON_COMPACT);
	return p->pull.text && p->fork.text ? 0 : -1;
}

/* text NULL: read path. dir_of: the file whose directory relative paths
 * start from. unopened: the files the pipeline names are not opened. */
static int load_pipeline(const char *path, const char *dir_of, const char *text, size_t len,
			 int unopened, struct pipeline *p, char *err, size_t errlen)
{
	struct loading ld = {
	    .ck = {.file = path, .err = err, .errlen = errlen, .unopened = unopened}, .p = p};
	struct config_doc doc = {0};
	char *dir = NULL;
	size_t i;
	int rc = -1;

	memset(p, 0, sizeof(*p));
	p->file = strdup(path);
	dir = config_file_dir(dir_of);
	ld.def = p->def = json_object();
	if (!dir) {
		snprintf(err, errlen, "%s: cannot find the working directory: %s", path,
			 strerror(errno));
		goto done;
	}
	if (!p->file || !p->def) {
		snprintf(err, errlen, "%s: out of memory", path);
		goto done;
	}
	ld.dir = dir;
	if ((text ? config_doc_load_text(&doc, path, text, len, err, errlen)
		  : config_doc_load(&doc, path, err, errlen)) < 0)
		goto done;
	rc = load(&ld, doc.top);
	if (rc == 0) {
		p->def_text = json_dumps(p->def, JSON_COMPACT);
		if (!p->def_text || run_defs(p) < 0) {
			snprintf(err, errlen, "%s: out of memory", path);
			rc = -1;
		}
	}
done:
	for (i = 0; i < ld.nstages; i++)
		free(ld.stages[i].deps);
	free(ld.stages);
	config_doc_clear(&doc);
	free(dir);
	if (rc < 0)
		pipeline_clear(p);
	return rc;
}

int pipeline_load_file(const char *path, struct pipeline *p, char *err, size_t errlen)
{
	return load_pipeline(path, path, NULL, 0, 0, p, err, errlen);
}

static int load_text(const char *name, const char *dir, const char *text, size_t len, int unopened,
		     struct pipeline *p, char *err, size_t errlen)
{
	char *dir_of = NULL;
	if (asprintf(&dir_of, "%s/%s", dir, name) < 0) {
		snprintf(err, errlen, "%s: out of memory", name);
		memset(p, 0, sizeof(*p));
		return -1;
	}
	int rc = load_pipeline(name, dir_of, text, len, unopened, p, err, errlen);
	free(dir_of);
	return rc;
}

int pipeline_load_text(const char *name, const char *dir, const char *text, size_t len,
		       struct pipeline *p, char *err, size_t errlen)
{
	return load_text(name, dir, text, len, 0, p, err, errlen);
}

int pipeline_check_text(const char *name, const char *dir, const char *text, size_t len,
			struct pipeline *p, char *err, size_t errlen)
{
	return load_text(name, dir, text, len, 1, p, err, errlen);
}

void pipeline_clear(struct pipeline *p)
{
	free(p->name);
	free(p->file);
	free(p->repository);
	json_decref(p->events);
	json_decref(p->branches);
	json_decref(p->tags);
	if (p->secret) {
		memset(p->secret, 0, strlen(p->secret));
		free(p->secret);
	}
	json_decref(p->def);
	free(p->def_text);
	json_decref(p->pull.def);
	free(p->pull.text);
	json_decref(p->fork.def);
	free(p->fork.text);
	memset(p, 0, sizeof(*p));
}

struct pipeline_def pipeline_run_def(const struct pipeline *p, int pull_request, int from_fork)
{
	if (!pull_request)
		return (struct pipeline_def){p->def, p->def_text};
	return from_fork && p->forks == PIPELINE_FORKS_NO_SECRETS ? p->fork : p->pull;
}
