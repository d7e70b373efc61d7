/* workspace: the directories stages run in, and their removal.
 *
 * A stage runs in <state_dir>/workspaces/<run>/<stage>. Removal works on whole
 * runs: a run's directory goes once it is older than worker.workspace_ttl, and
 * while the state directory's filesystem has less free space than
 * worker.min_free the oldest runs go first. A run a stage holds, in this
 * worker or in any other sharing the state directory, is never removed.
 * Removal renames the directory out of the way (instant, so a new job for that
 * run starts afresh) and deletes it with `rm -rf` in a child process, so the
 * event loop never waits on a large tree.
 */
#ifndef SLUICE_WORKSPACE_H
#define SLUICE_WORKSPACE_H

#include <event2/event.h>
#include <stddef.h>

#include "config/config.h"

struct workspace;

/* The workspace of one stage of a run. 0, or -1 when it does not fit. */
int workspace_path(const struct settings *s, const char *run, const char *stage, char *out,
		   size_t len);

/* Creates the directory path and its parents; 0, or -1 with errno set. */
int workspace_make(const char *path);

/* Creates the run's directory and holds it (a shared flock on it) until
 * workspace_release: no sweep of any process removes it meanwhile. The
 * descriptor, or -1 with errno set. */
int workspace_hold(const struct settings *s, const char *run);
void workspace_release(int fd);

/* Sweeps now and then periodically (every minute, more often for a short
 * ttl). settings is read at every sweep, so a reload takes effect at the
 * next one. Needs process_init. */
struct workspace *workspace_start(struct event_base *base, const struct settings *settings);
/* Sweeps now unless a removal is still running. */
void workspace_sweep(struct workspace *ws);
/* A removal child is running. */
int workspace_busy(const struct workspace *ws);
/* Stops the timer and a removal still running (SIGTERM, then SIGKILL after
 * its grace: the worker waits for its children before it exits); whatever
 * it leaves is removed by the next worker's first sweep. */
void workspace_free(struct workspace *ws);

#endif
