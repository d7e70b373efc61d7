/* github: what a GitHub webhook payload asks to build.
 *
 * Checks the whole payload as JSON in one pass and reads only the fields
 * sluice needs from push and pull_request payloads (and knows the events
 * that build nothing). The strings live until github_event_clear.
 */
#ifndef SLUICE_GITHUB_H
#define SLUICE_GITHUB_H

#include <stddef.h>

struct github_event {
	const char *event;	/* X-GitHub-Event */
	const char *repository; /* repository.full_name */
	const char *clone_url;	/* repository.clone_url */
	const char *ref;	/* refs/heads/x, refs/tags/x, refs/pull/N/head; "" if none */
	const char *sha;	/* the commit to build */
	const char *branch;	/* matched against branch globs, or NULL */
	const char *tag;	/* matched against tag globs, or NULL */
	const char *no_build;	/* why the event builds nothing, or NULL */
	int pull_request;	/* a pull request to build */
	int from_fork;		/* ... whose head is in another repository */
	char pull_ref[48];	/* what ref points to for a pull request */
	char *store;		/* the payload's strings */
};

/* 0 and *ev filled (possibly with no_build set); -1 with err when the body
 * is not a JSON object ("malformed JSON payload: ...") or lacks a field its
 * event must have. Call github_event_clear in both cases. */
int github_event_parse(const char *event, const char *body, size_t len, struct github_event *ev,
		       char *err, size_t errlen);
void github_event_clear(struct github_event *ev);

/* The longest clone_url taken: a GitHub repository's is a few hundred
 * bytes at most (a host name of 253, an owner of 39, a name of 100). */
#define GITHUB_CLONE_URL_MAX 2048

/* Whether a payload's clone_url is one the workers may clone: https:// or
 * ssh:// with a host, of at most GITHUB_CLONE_URL_MAX bytes. A file:// URL,
 * a local path or another transport would let whoever holds a webhook
 * secret have the workers read any repository on their machines. */
int github_clone_url_ok(const char *url);

#endif
