/* retry: retry policies, from pipeline file to verdict. */
#include "config/retry.h"

#include <string.h>

#define MAX_RETRIES  100
#define MAX_ATTEMPTS 100

static const char *const retry_keys[] = {"max", "on_exit", "on", "backoff", NULL};
static const char *const reasons[] = {"failed", "timeout", "lost", NULL};

static int known_reason(const char *s)
{
	for (const char *const *r = reasons; *r; r++)
		if (strcmp(s, *r) == 0)
			return 1;
	return 0;
}

static int has_reason(const json_t *on, const char *reason)
{
	size_t i;
	json_t *v;
	json_array_foreach(on, i, v)
	{
		if (strcmp(json_string_value(v), reason) == 0)
			return 1;
	}
	return 0;
}

static int load_exit_codes(const struct config_check *ck, const struct config_doc_node *n,
			   json_t *codes)
{
	if (!json_is_array(n->value))
		return config_check_fail(ck, n, "expected a list of exit codes");
	for (const struct config_doc_node *c = n->first; c; c = c->next) {
		long long code;
		if (config_check_int(ck, c, 1, 255, &code) < 0)
			return -1;
		if (json_array_append_new(codes, json_integer(code)) < 0)
			return config_check_fail(ck, c, "out of memory");
	}
	return 0;
}

static int load_reasons(const struct config_check *ck, const struct config_doc_node *n, json_t *on)
{
	if (!json_is_array(n->value))
		return config_check_fail(ck, n, "expected a list of failed, timeout, lost");
	for (const struct config_doc_node *c = n->first; c; c = c->next) {
		const char *reason;
		if (config_check_string(ck, c, 0, &reason) < 0)
			return -1;
		if (!known_reason(reason))
			return config_check_fail(
			    ck, c, "unknown reason \"%s\" (known: failed, timeout, lost)", reason);
		if (!has_reason(on, reason) && json_array_append_new(on, json_string(reason)) < 0)
			return config_check_fail(ck, c, "out of memory");
	}
	return 0;
}

static int load_policy(const struct config_check *ck, const struct config_doc_node *r,
		       json_t *policy)
{
	const struct config_doc_node *n;
	json_t *codes = json_object_get(policy, "on_exit");
	json_t *on = json_object_get(policy, "on");
	long long max, backoff_ms = RETRY_DEFAULT_BACKOFF_MS;

	if (!json_is_object(r->value))
		return config_check_fail(ck, r, "expected a mapping like {max: 2, on_exit: [1]}");
	if (config_check_keys(ck, r, retry_keys) < 0 ||
	    config_check_require(ck, r, "max", &n) < 0 ||
	    config_check_int(ck, n, 1, MAX_RETRIES, &max) < 0)
		return -1;
	n = config_doc_get(r, "on_exit");
	if (n && load_exit_codes(ck, n, codes) < 0)
		return -1;
	n = config_doc_get(r, "on");
	if (n && load_reasons(ck, n, on) < 0)
		return -1;
	n = config_doc_get(r, "backoff");
	if (n && config_check_duration_ms(ck, n, RETRY_MAX_BACKOFF_MS, &backoff_ms) < 0)
		return -1;
	if (!json_array_size(codes) && !json_array_size(on) &&
	    (json_array_append_new(on, json_string("failed")) < 0 ||
	     json_array_append_new(on, json_string("timeout")) < 0))
		return config_check_fail(ck, r, "out of memory");
	if (json_object_set_new(policy, "max", json_integer(max)) < 0 ||
	    json_object_set_new(policy, "backoff_ms", json_integer(backoff_ms)) < 0)
		return config_check_fail(ck, r, "out of memory");
	return 0;
}

int retry_load(const struct config_check *ck, const struct config_doc_node *stage,
	       json_t *stage_def)
{
	/* The stage's own max_attempts, else the file's: at the top of the
	 * document, above stages: or, for a deployment, environments:. */
	const struct config_doc_node *top = stage;
	const struct config_doc_node *n = config_doc_get(stage, "max_attempts");
	const struct config_doc_node *r = config_doc_get(stage, "retry");
	long long max_attempts = RETRY_DEFAULT_MAX_ATTEMPTS;

	while (top->parent)
		top = top->parent;
	if (!n)
		n = config_doc_get(top, "max_attempts");
	if (n && config_check_int(ck, n, 1, MAX_ATTEMPTS, &max_attempts) < 0)
		return -1;
	if (r) {
		json_t *policy = json_pack("{s:[],s:[]}", "on_exit", "on");
		if (!policy || json_object_set_new(stage_def, "retry", policy) < 0)
			return config_check_fail(ck, r, "out of memory");
		if (load_policy(ck, r, policy) < 0)
			return -1;
		json_int_t max = json_integer_value(json_object_get(policy, "max"));
		if (has_reason(json_object_get(policy, "on"), "lost") && max + 1 > max_attempts)
			max_attempts = max + 1;
	}
	if (max_attempts != RETRY_DEFAULT_MAX_ATTEMPTS &&
	    json_object_set_new(stage_def, "max_attempts", json_integer(max_attempts)) < 0)
		return config_check_fail(ck, stage, "out of memory");
	return 0;
}

enum retry_verdict retry_decide(const json_t *stage_def, const char *status, int exit_code,
				int attempt)
{
	const json_t *policy = json_object_get(stage_def, "retry");
	const json_t *on = json_object_get(policy, "on");
	int covered = 0;

	if (!policy || !status)
		return RETRY_NONE;
	if (strcmp(status, "failed") == 0) {
		covered = has_reason(on, "failed");
		size_t i;
		json_t *code;
		json_array_foreach(json_object_get(policy, "on_exit"), i, code)
		{
			if (exit_code >= 0 && json_integer_value(code) == exit_code)
				covered = 1;
		}
	} else if (strcmp(status, "timed_out") == 0) {
		covered = has_reason(on, "timeout");
	}
	if (!covered)
		return RETRY_NONE;
	return attempt <= json_integer_value(json_object_get(policy, "max")) ? RETRY_AGAIN
									     : RETRY_EXHAUSTED;
}

long long retry_backoff_ms(const json_t *stage_def, int attempt)
{
	const json_t *b = json_object_get(json_object_get(stage_def, "retry"), "backoff_ms");
	long long ms = json_is_integer(b) ? json_integer_value(b) : RETRY_DEFAULT_BACKOFF_MS;

	for (int i = 1; i < attempt && ms < RETRY_MAX_BACKOFF_MS; i++)
		ms *= 2;
	if (ms > RETRY_MAX_BACKOFF_MS)
		ms = RETRY_MAX_BACKOFF_MS;
	return ms < 0 ? 0 : ms;
}

int retry_max_attempts(const json_t *stage_def)
{
	const json_t *m = json_object_get(stage_def, "max_attempts");
	json_int_t n = json_is_integer(m) ? json_integer_value(m) : RETRY_DEFAULT_MAX_ATTEMPTS;

	return n < 1 ? 1 : n > MAX_ATTEMPTS ? MAX_ATTEMPTS : (int)n;
}
