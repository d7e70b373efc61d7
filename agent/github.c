/* github: push and pull_request payloads → ref, sha, branch or tag. */
#include "agent/github.h"

#include <stdio.h>
#include <string.h>

static const char *str_at(const json_t *obj, const char *a, const char *b)
{
	const json_t *v = json_object_get(obj, a);
	if (b)
		v = json_object_get(v, b);
	return json_string_value(v);
}

static int is_sha(const char *s)
{
	size_t n = s ? strlen(s) : 0;
	if (n != 40 && n != 64)
		return 0;
	return strspn(s, "0123456789abcdef") == n;
}

static int parse_push(const json_t *payload, struct github_event *ev, char *err, size_t errlen)
{
	const char *ref = str_at(payload, "ref", NULL);
	const char *after = str_at(payload, "after", NULL);
	if (!ref || !after) {
		snprintf(err, errlen, "push payload without ref or after");
		return -1;
	}
	snprintf(ev->ref, sizeof(ev->ref), "%s", ref);
	if (json_is_true(json_object_get(payload, "deleted"))) {
		ev->no_build = "the push deleted its ref";
		return 0;
	}
	if (!is_sha(after)) {
		snprintf(err, errlen, "push payload: after is not a commit sha");
		return -1;
	}
	ev->sha = after;
	if (strncmp(ref, "refs/heads/", 11) == 0)
		ev->branch = ref + 11;
	else if (strncmp(ref, "refs/tags/", 10) == 0)
		ev->tag = ref + 10;
	else
		ev->no_build = "the push is neither to a branch nor to a tag";
	return 0;
}

static int parse_pull_request(const json_t *payload, struct github_event *ev, char *err,
			      size_t errlen)
{
	const char *action = str_at(payload, "action", NULL);
	const json_t *pr = json_object_get(payload, "pull_request");
	const json_t *number = json_object_get(payload, "number");
	if (!action || !json_is_object(pr)) {
		snprintf(err, errlen, "pull_request payload without action or pull_request");
		return -1;
	}
	if (strcmp(action, "opened") != 0 && strcmp(action, "synchronize") != 0 &&
	    strcmp(action, "reopened") != 0) {
		ev->no_build = "pull_request action builds nothing";
		return 0;
	}
	const char *sha = str_at(pr, "head", "sha");
	const char *base = str_at(pr, "base", "ref");
	if (!json_is_integer(number) || !is_sha(sha) || !base) {
		snprintf(err, errlen, "pull_request payload without number, head.sha or base.ref");
		return -1;
	}
	snprintf(ev->ref, sizeof(ev->ref), "refs/pull/%lld/head",
		 (long long)json_integer_value(number));
	ev->sha = sha;
	ev->branch = base;
	return 0;
}

int github_event_parse(const char *event, const json_t *payload, struct github_event *ev, char *err,
		       size_t errlen)
{
	memset(ev, 0, sizeof(*ev));
	ev->event = event;
	if (!json_is_object(payload)) {
		snprintf(err, errlen, "payload is not a JSON object");
		return -1;
	}
	ev->repository = str_at(payload, "repository", "full_name");
	ev->clone_url = str_at(payload, "repository", "clone_url");
	if (strcmp(event, "push") == 0 || strcmp(event, "pull_request") == 0) {
		if (!ev->repository) {
			snprintf(err, errlen, "payload without repository.full_name");
			return -1;
		}
		if (strcmp(event, "push") == 0)
			return parse_push(payload, ev, err, errlen);
		return parse_pull_request(payload, ev, err, errlen);
	}
	ev->no_build = "event starts no pipeline";
	return 0;
}
