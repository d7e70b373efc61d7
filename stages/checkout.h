/* checkout: the repository at a commit, in a workspace directory.
 *
 * A bare mirror per repository URL under <state_dir>/mirrors is cloned once
 * and fetched afterwards (serialized across processes with flock), then the
 * workspace is cloned from it with --shared and the commit checked out
 * detached. Every git command is a child process through process.h, so
 * nothing blocks the loop. file:// URLs and local paths work.
 */
#ifndef SLUICE_CHECKOUT_H
#define SLUICE_CHECKOUT_H

#include "stages/process.h"

struct checkout;

/* ok: 0 on success; -1 with error (the failing git command's last stderr
 * line included). log lines of git's output go to on_line. */
typedef void (*checkout_done_cb)(int ok, const char *error, void *arg);

/* A script for sh -c that removes the trees its arguments name, even where
 * a stage left directories it may not write or enter (a Go module cache is
 * read-only). */
extern const char checkout_rm_script[];

/* 0 when git may clone url with the transports checkouts allow (file, git,
 * http, https, ssh): a URL of one of them, an scp-like host:path or a local
 * path. -1 with why for one that starts with '-' or names another transport
 * (ext::, fd::, a typo such as htps://), which every checkout would refuse. */
int checkout_url_check(const char *url, char *why, size_t whylen);

/* url as a log may show it: its user part, which may hold a token
 * (https://x-access-token:TOKEN@github.com/...), replaced by "***". */
void checkout_url_shown(const char *url, char *out, size_t len);

struct checkout *checkout_start(const char *state_dir, const char *url, const char *sha,
				const char *workspace, int timeout_ms, process_line_cb on_line,
				checkout_done_cb done, void *arg);
void checkout_cancel(struct checkout *c);

#endif
