/* github: push and pull_request payloads → ref, sha, branch or tag. */
#include "agent/github.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/gitref.h"
#include "lib/jsonscan.h"

/* The only values read from a payload; GitHub sends a few kilobytes more. */
enum field {
	F_FULL_NAME,
	F_CLONE_URL,
	F_REF,
	F_AFTER,
	F_DELETED,
	F_HEAD_ID,
	F_HEAD_MESSAGE,
	F_ACTION,
	F_NUMBER,
	F_PULL_REQUEST,
	F_HEAD_SHA,
	F_HEAD_REPO,
	F_BASE_REF,
	F_COUNT
};

static const char *const paths[F_COUNT] = {
    [F_FULL_NAME] = "repository.full_name",
    [F_CLONE_URL] = "repository.clone_url",
    [F_REF] = "ref",
    [F_AFTER] = "after",
    [F_DELETED] = "deleted",
    [F_HEAD_ID] = "head_commit.id",
    [F_HEAD_MESSAGE] = "head_commit.message",
    [F_ACTION] = "action",
    [F_NUMBER] = "number",
    [F_PULL_REQUEST] = "pull_request",
    [F_HEAD_SHA] = "pull_request.head.sha",
    [F_HEAD_REPO] = "pull_request.head.repo.full_name",
    [F_BASE_REF] = "pull_request.base.ref",
};

static const char *str(const struct jsonscan_field *f)
{
	return f->type == JSONSCAN_STRING ? f->string : NULL;
}

static int is_sha(const char *s)
{
	size_t n = s ? strlen(s) : 0;
	if (n != 40 && n != 64)
		return 0;
	return strspn(s, "0123456789abcdef") == n;
}

/* GitHub's name for no commit: a push whose after is all zeros deleted its
 * ref, whatever its deleted field says. */
static int is_null_sha(const char *s)
{
	return is_sha(s) && strspn(s, "0") == strlen(s);
}

/* What GitHub Actions honours in a push's head commit message, but for its
 * own [skip actions] and [actions skip], which ask to skip Actions alone: one
 * of the markers anywhere, or a last line "skip-checks: true" (a trailer;
 * the space is optional). */
static int asks_to_skip_ci(const char *message)
{
	static const char *const markers[] = {"[skip ci]", "[ci skip]", "[no ci]"};
	if (!message)
		return 0;
	for (size_t i = 0; i < sizeof(markers) / sizeof(markers[0]); i++)
		if (strstr(message, markers[i]))
			return 1;
	size_t end = strlen(message);
	while (end > 0 && strchr(" \t\r\n", message[end - 1]))
		end--;
	size_t start = end;
	while (start > 0 && message[start - 1] != '\n')
		start--;
	const char *last = message + start;
	size_t len = end - start;
	return (len == 17 && strncmp(last, "skip-checks: true", len) == 0) ||
	       (len == 16 && strncmp(last, "skip-checks:true", len) == 0);
}

static int parse_push(const struct jsonscan_field *f, struct github_event *ev, char *err,
		      size_t errlen)
{
	const char *ref = str(&f[F_REF]);
	const char *after = str(&f[F_AFTER]);
	if (!ref || !after) {
		snprintf(err, errlen, "push payload without ref or after");
		return -1;
	}
	ev->ref = ref;
	if (f[F_DELETED].type == JSONSCAN_TRUE || is_null_sha(after)) {
		ev->no_build = "the push deleted its ref";
		return 0;
	}
	if (!is_sha(after)) {
		snprintf(err, errlen, "push payload: after is not a commit sha");
		return -1;
	}
	ev->sha = after;
	if (strncmp(ref, "refs/heads/", 11) == 0) {
		ev->branch = ref + 11;
	} else if (strncmp(ref, "refs/tags/", 10) == 0) {
		ev->tag = ref + 10;
		/* after is what the ref points to: for an annotated tag, the tag
		 * object, which no commit status can name. GitHub sends the
		 * commit it points to as head_commit. */
		const char *commit = str(&f[F_HEAD_ID]);
		if (is_sha(commit))
			ev->sha = commit;
	} else {
		ev->no_build = "the push is neither to a branch nor to a tag";
	}
	/* GitHub sends no other; a run of one could not even be given it
	 * (SLUICE_REF). */
	const char *name = ev->branch ? ev->branch : ev->tag;
	if (name && !gitref_name_ok(name)) {
		snprintf(err, errlen, "push payload: ref is not a branch or tag name git allows");
		return -1;
	}
	if (!ev->no_build && asks_to_skip_ci(str(&f[F_HEAD_MESSAGE])))
		ev->no_build = "the head commit's message asks to skip CI";
	return 0;
}

static int parse_pull_request(const struct jsonscan_field *f, struct github_event *ev, char *err,
			      size_t errlen)
{
	const char *action = str(&f[F_ACTION]);
	if (!action || f[F_PULL_REQUEST].type != JSONSCAN_OBJECT) {
		snprintf(err, errlen, "pull_request payload without action or pull_request");
		return -1;
	}
	if (strcmp(action, "opened") != 0 && strcmp(action, "synchronize") != 0 &&
	    strcmp(action, "reopened") != 0) {
		ev->no_build = "pull_request action builds nothing";
		return 0;
	}
	const char *sha = str(&f[F_HEAD_SHA]);
	const char *base = str(&f[F_BASE_REF]);
	if (f[F_NUMBER].type != JSONSCAN_NUMBER || !f[F_NUMBER].is_integer || !sha || !base) {
		snprintf(err, errlen, "pull_request payload without number, head.sha or base.ref");
		return -1;
	}
	/* A pull request's head is a commit: the zeros name none. */
	if (!is_sha(sha) || is_null_sha(sha)) {
		snprintf(err, errlen, "pull_request payload: head.sha is not a commit sha");
		return -1;
	}
	if (f[F_NUMBER].integer < 1 || !gitref_name_ok(base)) {
		snprintf(err, errlen,
			 "pull_request payload: number is not positive or base.ref is not a "
			 "branch name git allows");
		return -1;
	}
	snprintf(ev->pull_ref, sizeof(ev->pull_ref), "refs/pull/%lld/head", f[F_NUMBER].integer);
	ev->ref = ev->pull_ref;
	ev->sha = sha;
	ev->branch = base;
	/* head.repo is null once the fork is deleted: another repository all
	 * the same. GitHub's names are case-insensitive. */
	const char *head = str(&f[F_HEAD_REPO]);
	ev->pull_request = 1;
	ev->from_fork = !head || strcasecmp(head, ev->repository) != 0;
	return 0;
}

int github_event_parse(const char *event, const char *body, size_t len, struct github_event *ev,
		       char *err, size_t errlen)
{
	struct jsonscan_field f[F_COUNT];
	char why[200];

	memset(ev, 0, sizeof(*ev));
	ev->event = event;
	ev->ref = "";
	for (int i = 0; i < F_COUNT; i++)
		f[i].path = paths[i];
	int type = jsonscan_parse(body, len, f, F_COUNT, &ev->store, why, sizeof(why));
	if (type < 0) {
		snprintf(err, errlen, "malformed JSON payload: %s", why);
		return -1;
	}
	if (type != JSONSCAN_OBJECT) {
		snprintf(err, errlen, "malformed JSON payload: not an object");
		return -1;
	}
	ev->repository = str(&f[F_FULL_NAME]);
	ev->clone_url = str(&f[F_CLONE_URL]);
	if (strcmp(event, "push") == 0 || strcmp(event, "pull_request") == 0) {
		if (!ev->repository) {
			snprintf(err, errlen, "payload without repository.full_name");
			return -1;
		}
		if (strcmp(event, "push") == 0)
			return parse_push(f, ev, err, errlen);
		return parse_pull_request(f, ev, err, errlen);
	}
	ev->no_build = "event starts no pipeline";
	return 0;
}

void github_event_clear(struct github_event *ev)
{
	free(ev->store);
	ev->store = NULL;
}

int github_clone_url_ok(const char *url)
{
	static const char *const schemes[] = {"https://", "ssh://"};
	/* Longer, it is no repository's: one of megabytes would fail every
	 * stage of its run, too long for an argument of git. */
	if (!url || strlen(url) > GITHUB_CLONE_URL_MAX)
		return 0;
	/* No URL holds a space or a control byte. */
	for (const char *c = url; *c; c++) {
		if ((unsigned char)*c <= 0x20 || *c == 0x7f)
			return 0;
	}
	for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
		size_t n = strlen(schemes[i]);
		if (strncmp(url, schemes[i], n) == 0)
			return url[n] && url[n] != '/';
	}
	return 0;
}
