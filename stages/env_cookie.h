/* env_cookie: the mark in every child's environment that names the process
 * that started it, and killing whatever carries it.
 *
 * A descendant that left its stage's process group (setsid, a daemonizing
 * tool) is in no group the orphan guard knows of, but it keeps its
 * environment: process_spawn gives each child SLUICE_WORKER_COOKIE, random
 * and drawn once per process, and the guard kills every process of its user
 * that still carries it once the process that started them is gone (as
 * Jenkins' ProcessTreeKiller does). One that cleared its environment
 * (env -i), or that its user may not read (non-dumpable, as ssh-agent
 * makes itself), is not found.
 */
#ifndef SLUICE_ENV_COOKIE_H
#define SLUICE_ENV_COOKIE_H

#define ENV_COOKIE_NAME "SLUICE_WORKER_COOKIE"

/* "SLUICE_WORKER_COOKIE=<32 hex digits>", the same for the life of this
 * process, drawn at the first call; "" when the kernel gave no random bytes
 * (nothing is marked then). Call it first before a fork whose child uses
 * it. */
const char *env_cookie_entry(void);
/* Whether an environment entry ("NAME=value") sets the cookie, whatever its
 * value. */
int env_cookie_is_set_by(const char *entry);
/* SIGKILLs every process of this effective user, but the caller, whose
 * environment holds entry exactly, walking /proc again until a walk finds
 * none (a dying process may have forked), a bounded number of times. The
 * number killed. Async-signal-safe: for a process forked from one with
 * threads. */
int env_cookie_kill(const char *entry);

#endif
