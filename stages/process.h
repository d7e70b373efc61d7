/* process: child processes on the libevent loop, with no orphans.
 *
 * Each child runs in a session and process group of its own (no controlling
 * terminal, even when this process has one) with stdin on /dev/null and
 * stdout/stderr on pipes that are read line by line from the loop. A timeout
 * or a cancel sends SIGTERM to the group, then SIGKILL to the group after
 * kill_grace. When the leader exits, whatever is left of its group is killed
 * too, so a stage cannot leave daemons behind; one that left the group
 * (setsid), and the children it had, are killed within about a second of
 * its stage's end, whether other stages still run or not. Children are
 * reaped through a SIGCHLD event; the process that uses this module must
 * start every child through it (it reaps with waitpid(-1)). process_init
 * makes the caller a child subreaper, so orphaned grandchildren are reaped
 * here as well, and starts the orphan guard (orphan_guard.h), which kills
 * every child's group, and whatever carries the cookie each child is given
 * (env_cookie.h), should this process die without doing it.
 */
#ifndef SLUICE_PROCESS_H
#define SLUICE_PROCESS_H

#include <event2/event.h>
#include <stddef.h>
#include <stdint.h>

enum process_stream { PROCESS_STDOUT, PROCESS_STDERR };

enum process_outcome {
	PROCESS_EXITED,	   /* exit_code is set */
	PROCESS_SIGNALLED, /* term_signal is set: killed by a signal it did not get from us */
	PROCESS_TIMED_OUT,
	PROCESS_CANCELLED,
	PROCESS_SPAWN_FAILED /* exec failed: error says why (exit_code 127) */
};

struct process_result {
	enum process_outcome outcome;
	int exit_code;	 /* valid for EXITED (and 127 for SPAWN_FAILED) */
	int term_signal; /* the signal that ended it, when one did */
	long long duration_ms;
	char error[256];
};

struct process_spec {
	const char *const *argv; /* argv[0] looked up in PATH of envp */
	const char *const *envp; /* the child's environment, with this process's cookie */
	const char *cwd;	 /* NULL: inherit */
	int64_t timeout_ms;	 /* 0: none */
	int kill_grace_ms;	 /* between SIGTERM and SIGKILL */
};

struct process;

/* line excludes the newline; a final line without one is delivered too, and
 * a line longer than 64 KiB is delivered in pieces of PROCESS_LINE_PIECE
 * bytes: a delivery of exactly that length is always a piece whose line
 * continues in the next delivery of its stream (a whole line is shorter;
 * output that ends with a piece gets an empty delivery after it). */
#define PROCESS_LINE_PIECE (64 * 1024)
typedef void (*process_line_cb)(enum process_stream s, const char *line, size_t len, void *arg);
/* Called once, after the child is reaped and both pipes are closed. The
 * process object is freed right after this returns. */
typedef void (*process_exit_cb)(const struct process_result *r, void *arg);

/* Before any spawn: SIGCHLD event, subreaper and the stack children start
 * on. Once, or again after process_shutdown. */
int process_init(struct event_base *base);
/* Undoes process_init, before its loop is freed: the children it started
 * must have ended. process_init may follow, with another loop. */
void process_shutdown(void);
/* NULL, errno set, when this process cannot start a child now (out of file
 * descriptors, processes or memory). A command that cannot be executed (not
 * found, not executable, bad cwd) is started and ends as spawn_failed. */
struct process *process_spawn(const struct process_spec *spec, process_line_cb on_line,
			      process_exit_cb on_exit, void *arg);
/* While the output is held (hold 1), no child's output is read: what a
 * child writes waits in its pipe, and a child blocks once its pipe is full,
 * as on a slow terminal; lines read already wait with it, and no child's
 * end is reported. For a caller whose lines go somewhere slower than a
 * child can write them. hold 0 releases it: the lines waiting are
 * delivered first (a line's callback may hold the output again). */
void process_hold_output(int hold);
/* SIGTERM now, SIGKILL after kill_grace; the outcome becomes CANCELLED,
 * unless the child had exited already (its end not handled yet): then what
 * it ended with stands. A timeout does the same, as TIMED_OUT. */
void process_cancel(struct process *p);
/* As process_cancel, with SIGKILL after at most grace_ms: a stop that
 * must be over by a deadline (a lease about to end). */
void process_cancel_within(struct process *p, int grace_ms);
int process_pid(const struct process *p);
/* Number of children started and not yet finished. */
int process_running(void);
/* The loop given to process_init (NULL before it), for modules built on
 * this one that need a timer of their own. */
struct event_base *process_base(void);

#endif
