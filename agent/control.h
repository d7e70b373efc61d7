/* control: run control through the API: retry a run or one stage, start a
 * run by hand, list the pipelines loaded.
 *
 * A manual trigger without a sha resolves its ref with `git ls-remote`, a
 * child process watched from the loop (stages/process.h), so the agent
 * never waits on a remote. Retries go through retry_run.lua, which checks
 * the run's state before it changes anything (compare-and-set).
 */
#ifndef SLUICE_CONTROL_H
#define SLUICE_CONTROL_H

#include <event2/http.h>
#include <stddef.h>

#include "agent/agent.h"

/* Each answers the request and returns 1 when path is one of its
 * endpoints, 0 (nothing done) when not. */
int control_get(struct agent *a, struct evhttp_request *req, const char *path);
int control_post(struct agent *a, struct evhttp_request *req, const char *path);
/* Ends the triggers still resolving a ref: their git processes are killed. */
void control_stop(struct agent *a);

/* A manual trigger's ref: "refs/heads/NAME" or "refs/tags/NAME" as given,
 * a bare "NAME" as the branch refs/heads/NAME. NAME must be a valid git ref
 * name (git check-ref-format). 0 and the full ref in out, -1 with why. */
int control_ref_normalize(const char *ref, char *out, size_t outlen, char *why, size_t whylen);
/* One line of `git ls-remote` output ("<sha>\t<ref>"): when it names ref,
 * the sha goes to sha (a tag's peeled "<ref>^{}" line to peeled); lines
 * about other refs change nothing. */
void control_ls_remote_line(const char *line, size_t len, const char *ref, char *sha, char *peeled,
			    size_t shalen);

#endif
