/* env_cookie: the mark in every child's environment that names the process
 * that started it, and killing whatever carries it.
 *
 * A descendant that left its stage's process group (setsid, a daemonizing
 * tool) is in no group the orphan guard knows of, but it keeps its
 * environment: process_spawn gives each child SLUICE_WORKER_COOKIE, random
 * and drawn once per process, followed by the child's serial. The process
 * that started them tells by the serial which child such a descendant came
 * from, and the guard kills every process of its user that still carries
 * the cookie once that process is gone (as Jenkins' ProcessTreeKiller
 * does). One that cleared its environment (env -i), or that its user may
 * not read (non-dumpable, as ssh-agent makes itself), is not found.
 */
#ifndef SLUICE_ENV_COOKIE_H
#define SLUICE_ENV_COOKIE_H

#include <stddef.h>
#include <sys/types.h>

#define ENV_COOKIE_NAME "SLUICE_WORKER_COOKIE"
/* Room for a child's entry (env_cookie_child_entry), its NUL included. */
#define ENV_COOKIE_CHILD_MAX (sizeof(ENV_COOKIE_NAME "=") + 32 + 1 + 20)
/* A serial no child has: the entry carried none. */
#define ENV_COOKIE_NO_SERIAL ((unsigned long)-1)

/* "SLUICE_WORKER_COOKIE=<32 hex digits>", the same for the life of this
 * process, drawn at the first call; "" when the kernel gave no random bytes
 * (nothing is marked then). Call it first before a fork whose child uses
 * it. */
const char *env_cookie_entry(void);
/* The entry for one child: env_cookie_entry() followed by "-" and serial,
 * a number the caller gives each child, so that a descendant that left its
 * child's process group can be told apart by the child it came from
 * (env_cookie_serial_of); written in buf of size bytes
 * (ENV_COOKIE_CHILD_MAX), or "" when there is no cookie. */
const char *env_cookie_child_entry(char *buf, size_t size, unsigned long serial);
/* Reads the environment of pid: 1 with *serial when it holds this
 * process's cookie with a child's serial; 0 when it holds none (cleared,
 * another process's, or this one's without a serial); -1 when it cannot be
 * read (gone, or its user may not read it: a non-dumpable process). */
int env_cookie_serial_of(pid_t pid, unsigned long *serial);
/* Whether an environment entry ("NAME=value") sets the cookie, whatever its
 * value. */
int env_cookie_is_set_by(const char *entry);
/* SIGKILLs every process of this effective user, but the caller, whose
 * environment holds entry exactly, or followed by a child's serial, walking /proc again until a
 * walk finds none (a dying process may have forked), a bounded number of times. The number killed.
 * Async-signal-safe: for a process forked from one with threads. */
int env_cookie_kill(const char *entry);

#endif
