/* github: what a GitHub webhook payload asks to build.
 *
 * Reads the fields sluice needs from push and pull_request payloads (and
 * knows the events that build nothing). Strings point into the payload and
 * live as long as it does.
 */
#ifndef SLUICE_GITHUB_H
#define SLUICE_GITHUB_H

#include <jansson.h>
#include <stddef.h>

struct github_event {
	const char *event;	/* X-GitHub-Event */
	const char *repository; /* repository.full_name */
	const char *clone_url;	/* repository.clone_url */
	char ref[512];		/* refs/heads/x, refs/tags/x, refs/pull/N/head */
	const char *sha;	/* the commit to build */
	const char *branch;	/* matched against branch globs, or NULL */
	const char *tag;	/* matched against tag globs, or NULL */
	const char *no_build;	/* why the event builds nothing, or NULL */
};

/* 0 and *ev filled (possibly with no_build set); -1 with err when the
 * payload lacks a field its event must have. */
int github_event_parse(const char *event, const json_t *payload, struct github_event *ev, char *err,
		       size_t errlen);

#endif
