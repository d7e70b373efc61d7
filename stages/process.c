/* process: children on the libevent loop, each in its own process group,
 * output read as lines, SIGCHLD handled as an event, and nothing left behind
 * when a child ends, times out or is cancelled. */
#include "stages/process.h"

#include "lib/clock.h"
#include "lib/fdlimit.h"
#include "lib/log.h"
#include "stages/env_cookie.h"
#include "stages/orphan_guard.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#define LINE_CAP PROCESS_LINE_PIECE
/* How long pipes held open by an escaped descendant are waited for once the
 * leader is gone and its group has been killed. */
#define DRAIN_MS     1000
#define DEFAULT_PATH "/usr/local/bin:/usr/bin:/bin"
/* The child's stack until exec: child_main and child_exec need about 5 KiB
 * (a PATH_MAX buffer and libc's syscall wrappers). A guard page below it
 * turns an overflow into a fault rather than a write into whatever is
 * mapped there. */
#define CHILD_STACK (64 * 1024)
/* How often, at most, /proc is searched for leftovers while children run. */
#define LEFTOVER_SCAN_MS 1000

enum stop_reason { STOP_NONE, STOP_TIMEOUT, STOP_CANCEL };
enum child_step { STEP_SETUP, STEP_CHDIR, STEP_EXEC };

/* What a child that could not exec writes to its CLOEXEC report pipe. */
struct child_report {
	int step;
	int err;
};

struct pipe_in {
	int fd; /* -1 once closed */
	struct event *ev;
	char *buf;
	size_t len;
	int in_piece; /* the last delivery was a piece: its line continues */
	enum process_stream stream;
	struct process *owner;
};

struct process {
	pid_t pid;
	struct pipe_in out;
	struct pipe_in err;
	struct event *kill_timer; /* the timeout, then the grace before SIGKILL */
	struct event *drain_timer;
	process_line_cb on_line;
	process_exit_cb on_exit;
	void *arg;
	int kill_grace_ms;
	int64_t kill_at_ms; /* monotonic: the SIGKILL, while in grace */
	int64_t started_ms;
	int64_t duration_ms;
	enum stop_reason stop;
	int in_grace;
	int last_sent;
	int reaped;
	int status;
	int gave_up_drain;
	int finished;
	struct child_report report;
	int spawn_failed;
	char spawn_what[128];
	unsigned long serial;	  /* in its cookie (env_cookie_child_entry) */
	unsigned long long start; /* its start, in clock ticks after boot; 0 until read */
	struct process *next;
};

static struct {
	struct event_base *base;
	struct event *sigchld;
	struct process *list;
	int running;
	void *child_stack;    /* CHILD_STACK bytes, shared by every spawn (see spawn_child) */
	int64_t last_scan_ms; /* of /proc for leftovers while children ran */
	struct event *leftover_timer; /* the search put off (kill_leftovers) */
	int output_held;	      /* process_hold_output */
	unsigned long next_serial;    /* of the next child's cookie */
} mod;

static void on_readable(evutil_socket_t fd, short what, void *arg);
static void on_kill_timer(evutil_socket_t fd, short what, void *arg);
static void on_drain_timer(evutil_socket_t fd, short what, void *arg);
static void on_sigchld(evutil_socket_t sig, short what, void *arg);
static void on_leftover_timer(evutil_socket_t fd, short what, void *arg);

/* --- child side: between clone and exec ---------------------------------
 *
 * The child shares the parent's memory (see spawn_child): it calls only
 * async-signal-safe functions and writes nothing but its own stack (and
 * errno, which the parent reads only when the clone itself failed). Nor is
 * it instrumented by AddressSanitizer, whose runtime state it would share
 * with the parent and which does not know its stack. */
#define CHILD_CODE __attribute__((no_sanitize_address))

static CHILD_CODE _Noreturn void child_fail(int report_fd, int step, int err)
{
	struct child_report r = {.step = step, .err = err};
	ssize_t n = write(report_fd, &r, sizeof(r));
	(void)n;
	_exit(127);
}

/* execvpe would search the worker's own PATH; the child's PATH is the one
 * in envp. Search order and error precedence follow execvp. */
static CHILD_CODE _Noreturn void child_exec(const struct process_spec *spec, const char *path,
					    int report_fd)
{
	char *const *argv = (char *const *)spec->argv;
	char *const *envp = (char *const *)spec->envp;
	const char *file = spec->argv[0];
	size_t flen = strlen(file);
	int err = ENOENT;
	char cand[PATH_MAX];

	if (flen == 0)
		child_fail(report_fd, STEP_EXEC, ENOENT);
	if (strchr(file, '/') != NULL) {
		execve(file, argv, envp);
		child_fail(report_fd, STEP_EXEC, errno);
	}
	for (const char *p = path;; p++) {
		const char *end = strchrnul(p, ':');
		const char *dir = end == p ? "." : p;
		size_t dlen = end == p ? 1 : (size_t)(end - p);
		if (dlen + 1 + flen + 1 <= sizeof(cand)) {
			memcpy(cand, dir, dlen);
			cand[dlen] = '/';
			memcpy(cand + dlen + 1, file, flen + 1);
			execve(cand, argv, envp);
			if (errno == EACCES)
				err = EACCES;
			else if (errno != ENOENT && errno != ENOTDIR)
				child_fail(report_fd, STEP_EXEC, errno);
		}
		if (*end == '\0')
			break;
		p = end;
	}
	child_fail(report_fd, STEP_EXEC, err);
}

/* What the child needs, on the parent's stack: the parent is suspended
 * until the child has exec'd or exited, so it stays valid. */
struct child_args {
	const struct process_spec *spec;
	const char *path;
	int out_w, err_w, report_fd;
	int max_fd;
	int restore_nofile; /* the open-files limit before fdlimit_raise */
	struct rlimit nofile;
};

static CHILD_CODE int child_main(void *arg)
{
	const struct child_args *a = arg;
	const struct process_spec *spec = a->spec;
	int report_fd = a->report_fd;
	struct sigaction dfl = {.sa_handler = SIG_DFL};
	sigset_t none;

	/* The parent's handlers (libevent's among them) and ignored signals
	 * such as SIGPIPE must not carry over into the command. */
	sigemptyset(&dfl.sa_mask);
	for (int sig = 1; sig < NSIG; sig++)
		sigaction(sig, &dfl, NULL);
	sigemptyset(&none);
	pthread_sigmask(SIG_SETMASK, &none, NULL);
	if (a->restore_nofile && setrlimit(RLIMIT_NOFILE, &a->nofile) < 0)
		child_fail(report_fd, STEP_SETUP, errno);

	/* A session of its own, and so a group: the group kill reaches
	 * everything it starts, and, with no controlling terminal even when
	 * the worker has one, whatever asks a person fails at once (ssh for a
	 * passphrase) rather than stopping in the background. */
	if (setsid() < 0)
		child_fail(report_fd, STEP_SETUP, errno);
	if (spec->cwd != NULL && chdir(spec->cwd) < 0)
		child_fail(report_fd, STEP_CHDIR, errno);

	int devnull = open("/dev/null", O_RDONLY);
	if (devnull < 0)
		child_fail(report_fd, STEP_SETUP, errno);
	/* Lift the sources above 2 first so that no dup2 onto 0..2 can
	 * overwrite a source that happened to sit there. */
	int in = fcntl(devnull, F_DUPFD, 3);
	int out = fcntl(a->out_w, F_DUPFD, 3);
	int errfd = fcntl(a->err_w, F_DUPFD, 3);
	if (in < 0 || out < 0 || errfd < 0)
		child_fail(report_fd, STEP_SETUP, errno);
	if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(errfd, 2) < 0)
		child_fail(report_fd, STEP_SETUP, errno);
	/* Marked rather than closed so the report pipe stays open until exec. */
	if (close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) < 0) {
		for (int fd = 3; fd < a->max_fd; fd++)
			fcntl(fd, F_SETFD, FD_CLOEXEC);
	}
	child_exec(spec, a->path, report_fd);
}

/* --- parent side ------------------------------------------------------ */

static void deliver(struct process *p, struct pipe_in *in, const char *line, size_t len)
{
	in->in_piece = len == LINE_CAP;
	if (p->on_line != NULL)
		p->on_line(in->stream, line, len, p->arg);
}

/* Delivers the complete lines in the buffer, whose bytes before scan hold
 * no newline, and keeps the partial tail for the next read; a full buffer
 * without a newline is one 64 KiB piece. A hold of the output (by a line's
 * callback) stops it there: the rest waits in the buffer, scanned again
 * from its start once the hold is released. */
static void split_lines(struct process *p, struct pipe_in *in, size_t scan)
{
	size_t start = 0;
	const char *nl;

	while (!mod.output_held && (nl = memchr(in->buf + scan, '\n', in->len - scan)) != NULL) {
		size_t end = (size_t)(nl - in->buf);
		deliver(p, in, in->buf + start, end - start);
		start = end + 1;
		scan = start;
	}
	if (start > 0) {
		memmove(in->buf, in->buf + start, in->len - start);
		in->len -= start;
	}
	if (!mod.output_held && in->len == LINE_CAP) {
		deliver(p, in, in->buf, in->len);
		in->len = 0;
	}
}

/* Only while the output is not held: the buffer then holds no newline. */
static void close_pipe(struct process *p, struct pipe_in *in)
{
	if (in->fd < 0)
		return;
	/* What is left, or, when the output ended with a piece, an empty
	 * delivery that ends its line (process.h). */
	if (in->len > 0 || in->in_piece) {
		deliver(p, in, in->buf, in->len);
		in->len = 0;
	}
	event_free(in->ev);
	in->ev = NULL;
	close(in->fd);
	in->fd = -1;
}

/* A group member still alive, or a zombie not yet reaped, keeps the group;
 * the completion waits for it so that nothing of the child is left when its
 * exit callback runs. */
static int group_alive(const struct process *p)
{
	return killpg(p->pid, 0) == 0 || errno == EPERM;
}

static int is_done(const struct process *p)
{
	if (p->finished || !p->reaped || p->out.fd >= 0 || p->err.fd >= 0)
		return 0;
	return p->gave_up_drain || !group_alive(p);
}

static void fill_result(const struct process *p, struct process_result *r)
{
	int st = p->status;

	memset(r, 0, sizeof(*r));
	r->duration_ms = p->duration_ms;
	r->exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
	r->term_signal = WIFSIGNALED(st) ? WTERMSIG(st) : 0;
	if (p->spawn_failed) {
		r->outcome = PROCESS_SPAWN_FAILED;
		r->exit_code = 127;
		snprintf(r->error, sizeof(r->error), "%s: %s", p->spawn_what,
			 strerror(p->report.err));
	} else if (p->stop != STOP_NONE) {
		r->outcome = p->stop == STOP_TIMEOUT ? PROCESS_TIMED_OUT : PROCESS_CANCELLED;
		if (r->term_signal == 0)
			r->term_signal = p->last_sent;
		snprintf(r->error, sizeof(r->error), "%s",
			 p->stop == STOP_TIMEOUT ? "timed out" : "cancelled");
	} else if (WIFSIGNALED(st)) {
		r->outcome = PROCESS_SIGNALLED;
		snprintf(r->error, sizeof(r->error), "killed by signal %d (%s)", r->term_signal,
			 strsignal(r->term_signal));
	} else {
		r->outcome = PROCESS_EXITED;
	}
}

static void process_free(struct process *p)
{
	if (p->out.ev != NULL)
		event_free(p->out.ev);
	if (p->err.ev != NULL)
		event_free(p->err.ev);
	if (p->out.fd >= 0)
		close(p->out.fd);
	if (p->err.fd >= 0)
		close(p->err.fd);
	if (p->kill_timer != NULL)
		event_free(p->kill_timer);
	if (p->drain_timer != NULL)
		event_free(p->drain_timer);
	free(p->out.buf);
	free(p->err.buf);
	free(p);
}

/* The state, the parent, the process group and the start (clock ticks
 * after boot) of pid, from /proc/<pid>/stat. */
static int read_stat(pid_t pid, char *state, pid_t *ppid, pid_t *pgrp, unsigned long long *start)
{
	char path[64];
	char buf[512];

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	/* The command name may hold spaces and parentheses: the fields that
	 * follow start after its last ')'. */
	const char *rp = strrchr(buf, ')');
	int pp, pg;
	if (rp == NULL || sscanf(rp + 1,
				 " %c %d %d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d "
				 "%*d %*d %*d %llu",
				 state, &pp, &pg, start) != 4)
		return -1;
	*ppid = pp;
	*pgrp = pg;
	return 0;
}

/* The child whose group is pgrp (its leader's pid), running or, once its
 * leader is reaped, with its group killed and the rest still dying; or
 * NULL. */
static const struct process *group_owner(pid_t pgrp)
{
	for (const struct process *p = mod.list; p != NULL; p = p->next)
		if (p->pid == pgrp)
			return p;
	return NULL;
}

/* Whether the child with this serial still runs. */
static int serial_running(unsigned long serial)
{
	for (const struct process *p = mod.list; p != NULL; p = p->next)
		if (p->serial == serial)
			return !p->reaped;
	return 0;
}

/* Whether a child still running started no later than start: one a
 * process that started then may have come from. */
static int running_since(unsigned long long start)
{
	for (struct process *p = mod.list; p != NULL; p = p->next) {
		char state;
		pid_t ppid, pgrp;
		if (p->reaped)
			continue;
		if (p->start == 0 && read_stat(p->pid, &state, &ppid, &pgrp, &p->start) < 0)
			continue;
		if (p->start <= start)
			return 1;
	}
	return 0;
}

/* Whether pid, a child of ours in no child's group, may belong to a child
 * still running, which it is then left to: the child its cookie names
 * (env_cookie_child_entry), or, when its environment cannot tell (cleared,
 * or unreadable: a non-dumpable process such as ssh-agent), any child that
 * was running when it started. */
static int left_to_running(pid_t pid, unsigned long long start)
{
	unsigned long serial;
	int found = env_cookie_serial_of(pid, &serial);
	if (found > 0)
		return serial_running(serial);
	return running_since(start);
}

/* A descendant that left its group with setsid() escapes the group kill.
 * As a subreaper we inherit it when its parent dies: a child of ours in no
 * running child's group is such a leftover once the child it came from has
 * ended (left_to_running: a daemon a stage started, as `setsid -f` or a
 * server's --daemonize do, serves it until then), and so, once it is
 * killed, is each child it had: on_sigchld searches again. Finding them means reading
 * every process's stat. With no child running that is done after every
 * stage, but only when there is a child at all: usually there is none
 * (ECHILD), and one waitid replaces the walk through /proc. While others
 * run it is done at most every LEFTOVER_SCAN_MS: a search due sooner is put
 * off until then (leftover_timer), so that a leftover lives up to about a
 * second longer but a busy worker does not walk /proc per stage.
 * killed_group is the group of a child that has just ended, killed whole
 * then (on_sigchld), or 0: its members still dying are ours too, but no
 * leftovers to warn of, nor are those of a child whose leader is reaped
 * but whose end still waits for its group to go. */
static void kill_leftovers(pid_t killed_group)
{
	siginfo_t si;
	DIR *d;
	struct dirent *e;
	pid_t self = getpid();

	if (mod.running > 0) {
		int64_t now = clock_mono_ms();
		int64_t wait_ms = mod.last_scan_ms + LEFTOVER_SCAN_MS - now;
		if (wait_ms > 0) {
			struct timeval tv = {(time_t)(wait_ms / 1000),
					     (suseconds_t)(wait_ms % 1000) * 1000};
			if (!evtimer_pending(mod.leftover_timer, NULL))
				evtimer_add(mod.leftover_timer, &tv);
			return;
		}
		mod.last_scan_ms = now;
	}
	/* This search is the one put off, if any: it would find nothing more
	 * and put off the next. */
	evtimer_del(mod.leftover_timer);
	memset(&si, 0, sizeof(si));
	if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT | __WALL) < 0 && errno == ECHILD)
		return;
	d = opendir("/proc");
	if (d == NULL)
		return;
	while ((e = readdir(d)) != NULL) {
		pid_t ppid, pgrp;
		unsigned long long start;
		char state, *end;
		long pid = strtol(e->d_name, &end, 10);
		if (pid <= 0 || *end != '\0')
			continue;
		/* A zombie is dead already: on_sigchld reaps it. */
		if (read_stat((pid_t)pid, &state, &ppid, &pgrp, &start) < 0 || ppid != self ||
		    state == 'Z' || state == 'X')
			continue;
		/* As PID 1 (a container without an init) this process inherits
		 * its own guard, orphaned on purpose. */
		if ((pid_t)pid == orphan_guard_pid())
			continue;
		const struct process *owner = group_owner(pgrp);
		if (owner != NULL && !owner->reaped)
			continue;
		if (owner == NULL && pgrp != killed_group && left_to_running((pid_t)pid, start))
			continue;
		if (owner == NULL && pgrp != killed_group)
			log_warn("killing leftover descendant", LOG_I("pid", pid));
		kill((pid_t)pid, SIGKILL);
	}
	closedir(d);
}

static void on_leftover_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	kill_leftovers(0);
}

static void unlink_record(struct process *p)
{
	for (struct process **pp = &mod.list; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == p) {
			*pp = p->next;
			return;
		}
	}
}

static void complete(struct process *p)
{
	struct process_result r;
	pid_t group = p->pid;

	p->finished = 1;
	fill_result(p, &r);
	unlink_record(p);
	mod.running--;
	p->on_exit(&r, p->arg);
	process_free(p);
	kill_leftovers(group);
}

static void complete_ready(void)
{
	struct process *p;

	/* The list may change under an exit callback: restart after each. */
	do {
		for (p = mod.list; p != NULL && !is_done(p); p = p->next)
			;
		if (p != NULL)
			complete(p);
	} while (p != NULL);
}

static void signal_group(struct process *p, int sig)
{
	if (p->reaped)
		return;
	p->last_sent = sig;
	killpg(p->pid, sig);
}

/* Whether the child has exited with its SIGCHLD not handled yet: what it
 * ended with is its outcome, not a stop that comes after it. */
static int leader_exited(const struct process *p)
{
	siginfo_t si;

	memset(&si, 0, sizeof(si));
	return waitid(P_PID, (id_t)p->pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 &&
	       si.si_pid == p->pid;
}

static void begin_stop(struct process *p, enum stop_reason why)
{
	struct timeval tv = {p->kill_grace_ms / 1000, (p->kill_grace_ms % 1000) * 1000};

	if (p->reaped || p->stop != STOP_NONE || leader_exited(p))
		return;
	p->stop = why;
	p->in_grace = 1;
	p->kill_at_ms = clock_mono_ms() + p->kill_grace_ms;
	signal_group(p, SIGTERM);
	evtimer_add(p->kill_timer, &tv);
}

static void on_kill_timer(evutil_socket_t fd, short what, void *arg)
{
	struct process *p = arg;
	(void)fd;
	(void)what;

	if (!p->in_grace)
		begin_stop(p, STOP_TIMEOUT);
	else
		signal_group(p, SIGKILL);
}

static void on_drain_timer(evutil_socket_t fd, short what, void *arg)
{
	struct process *p = arg;
	struct timeval tv = {DRAIN_MS / 1000, (DRAIN_MS % 1000) * 1000};
	(void)fd;
	(void)what;

	if (mod.output_held) {
		/* What the pipes hold is the command's output, not yet read:
		 * the wait for a descendant starts again once it is. */
		evtimer_add(p->drain_timer, &tv);
		return;
	}
	if (p->out.fd >= 0 || p->err.fd >= 0)
		log_warn("descendant kept output open after the child exited; closing",
			 LOG_I("pid", p->pid));
	p->gave_up_drain = 1;
	close_pipe(p, &p->out);
	close_pipe(p, &p->err);
	if (is_done(p))
		complete(p);
}

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
	struct pipe_in *in = arg;
	struct process *p = in->owner;
	(void)what;

	ssize_t n = read(fd, in->buf + in->len, LINE_CAP - in->len);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		close_pipe(p, in);
		if (is_done(p))
			complete(p);
		return;
	}
	in->len += (size_t)n;
	split_lines(p, in, in->len - (size_t)n);
}

static struct process *find_record(pid_t pid)
{
	for (struct process *p = mod.list; p != NULL; p = p->next) {
		if (p->pid == pid && !p->reaped)
			return p;
	}
	return NULL;
}

static void on_leader_exit(struct process *p, int status)
{
	struct timeval tv = {DRAIN_MS / 1000, (DRAIN_MS % 1000) * 1000};

	p->reaped = 1;
	p->status = status;
	orphan_guard_remove(p->pid);
	p->duration_ms = clock_mono_ms() - p->started_ms;
	evtimer_del(p->kill_timer);
	evtimer_add(p->drain_timer, &tv);
}

static void on_sigchld(evutil_socket_t sig, short what, void *arg)
{
	int reaped_stranger = 0;
	(void)sig;
	(void)what;
	(void)arg;

	for (;;) {
		siginfo_t si;
		int status;
		memset(&si, 0, sizeof(si));
		/* Peek without reaping: while the leader is a zombie its pid, and
		 * so its group id, cannot be reused, which makes the group kill
		 * below safe. */
		if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) < 0 || si.si_pid == 0)
			break;
		struct process *p = find_record(si.si_pid);
		if (p != NULL)
			killpg(si.si_pid, SIGKILL);
		if (waitpid(si.si_pid, &status, 0) < 0)
			continue;
		if (p != NULL)
			on_leader_exit(p, status);
		else
			reaped_stranger = 1;
	}
	complete_ready();
	/* A leftover's own children become ours only once it is dead, after
	 * the search that killed it: they are searched for again, whether
	 * other children run or not (kill_leftovers spaces the searches). */
	if (reaped_stranger)
		kill_leftovers(0);
}

/* The guard that kills the children's groups should this process die
 * (orphan_guard.h) learns of a new one; a guard that died is replaced and
 * told of every group still running. */
static void guard_group(pid_t pgid)
{
	if (orphan_guard_add(pgid) == 0)
		return;
	if (errno != EPIPE && errno != ECONNRESET && errno != ENOTCONN) {
		/* A guard alive but not reading: replacing it would make it kill
		 * every stage running. */
		log_warn("the orphan guard was not told of a child",
			 LOG_S("error", strerror(errno)), LOG_I("pid", pgid));
		return;
	}
	if (orphan_guard_restart() < 0) {
		log_warn("no orphan guard: the stages running would outlive this process",
			 LOG_S("error", strerror(errno)));
		return;
	}
	for (const struct process *p = mod.list; p != NULL; p = p->next)
		if (!p->reaped)
			orphan_guard_add(p->pid);
}

int process_init(struct event_base *base)
{
	if (mod.sigchld != NULL) {
		log_error("process_init without process_shutdown after the last one");
		return -1;
	}
	if (mod.child_stack == NULL) {
		size_t guard = (size_t)sysconf(_SC_PAGESIZE);
		char *map = mmap(NULL, guard + CHILD_STACK, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
		if (map == MAP_FAILED || mprotect(map, guard, PROT_NONE) < 0) {
			log_error("cannot map the spawn stack", LOG_S("error", strerror(errno)));
			if (map != MAP_FAILED)
				munmap(map, guard + CHILD_STACK);
			return -1;
		}
		mod.child_stack = map + guard;
	}
	if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0) {
		log_error("cannot become a child subreaper", LOG_S("error", strerror(errno)));
		return -1;
	}
	if (orphan_guard_start() < 0)
		log_warn("no orphan guard: the stages running would outlive this process",
			 LOG_S("error", strerror(errno)));
	mod.sigchld = evsignal_new(base, SIGCHLD, on_sigchld, NULL);
	mod.leftover_timer = evtimer_new(base, on_leftover_timer, NULL);
	if (mod.sigchld == NULL || mod.leftover_timer == NULL || event_add(mod.sigchld, NULL) < 0) {
		log_error("cannot watch SIGCHLD");
		if (mod.sigchld != NULL)
			event_free(mod.sigchld);
		if (mod.leftover_timer != NULL)
			event_free(mod.leftover_timer);
		mod.sigchld = NULL;
		mod.leftover_timer = NULL;
		return -1;
	}
	mod.base = base;
	return 0;
}

void process_shutdown(void)
{
	if (mod.sigchld == NULL)
		return;
	event_free(mod.sigchld);
	event_free(mod.leftover_timer);
	mod.sigchld = NULL;
	mod.leftover_timer = NULL;
	mod.base = NULL;
}

static const char *env_path(const char *const *envp)
{
	for (const char *const *e = envp; *e != NULL; e++) {
		if (strncmp(*e, "PATH=", 5) == 0)
			return *e + 5;
	}
	return DEFAULT_PATH;
}

/* Without its read event a pipe would never reach EOF: it is treated as
 * closed rather than waited on forever. */
static void watch_pipe(struct process *p, struct pipe_in *in)
{
	if (in->fd >= 0 && event_add(in->ev, NULL) < 0)
		close_pipe(p, in);
}

static int init_pipe(struct process *p, struct pipe_in *in, enum process_stream s, int fd)
{
	in->fd = fd;
	in->stream = s;
	in->owner = p;
	in->buf = malloc(LINE_CAP);
	in->ev = event_new(mod.base, fd, EV_READ | EV_PERSIST, on_readable, in);
	if (in->buf == NULL || in->ev == NULL)
		return -1;
	return fcntl(fd, F_SETFL, O_NONBLOCK);
}

static void close_fds(int *fds, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (fds[i] >= 0)
			close(fds[i]);
		fds[i] = -1;
	}
}

/* envp with cookie, the child's entry (env_cookie_child_entry), in place
 * of any it sets, for the orphan guard and kill_leftovers to find what
 * leaves the child's group; malloc'd, the strings envp's and cookie. */
static const char **marked_env(const char *const *envp, const char *cookie)
{
	size_t n = 0;

	while (envp[n] != NULL)
		n++;
	const char **out = malloc((n + 2) * sizeof(*out));
	if (out == NULL)
		return NULL;
	n = 0;
	for (const char *const *e = envp; *e != NULL; e++)
		if (!env_cookie_is_set_by(*e))
			out[n++] = *e;
	if (*cookie != '\0')
		out[n++] = cookie;
	out[n] = NULL;
	return out;
}

/* Starts child_main the way posix_spawn does, with clone(CLONE_VM |
 * CLONE_VFORK): the child runs in this process's memory and this thread is
 * suspended until the child has exec'd or exited. A fork would copy the page
 * tables of the whole worker (librdkafka's threads and buffers included) for
 * the exec to throw away, and leave its pages copy-on-write meanwhile. One
 * stack serves every spawn, since the caller waits while the child uses it.
 * Valgrind runs such a clone as a fork, the child with a copy of the stack;
 * the code is correct either way. */
static pid_t spawn_child(struct child_args *a)
{
	return clone(child_main, (char *)mod.child_stack + CHILD_STACK,
		     CLONE_VM | CLONE_VFORK | SIGCHLD, a);
}

struct process *process_spawn(const struct process_spec *spec, process_line_cb on_line,
			      process_exit_cb on_exit, void *arg)
{
	/* out read/write, err read/write, report read/write */
	int fds[6] = {-1, -1, -1, -1, -1, -1};
	struct process *p = NULL;
	const char **envp = NULL;
	char cookie[ENV_COOKIE_CHILD_MAX];
	sigset_t all, old;

	if (mod.base == NULL || spec == NULL || spec->argv == NULL || spec->argv[0] == NULL ||
	    spec->envp == NULL || on_exit == NULL) {
		log_error("process_spawn: not initialised or bad arguments");
		return NULL;
	}
	p = calloc(1, sizeof(*p));
	if (p == NULL)
		goto fail;
	p->out.fd = p->err.fd = -1;
	if (pipe2(fds, O_CLOEXEC) < 0 || pipe2(fds + 2, O_CLOEXEC) < 0 ||
	    pipe2(fds + 4, O_CLOEXEC) < 0)
		goto fail;
	/* The records own the read ends from here on, whatever happens. */
	int out_ok = init_pipe(p, &p->out, PROCESS_STDOUT, fds[0]);
	int err_ok = init_pipe(p, &p->err, PROCESS_STDERR, fds[2]);
	fds[0] = fds[2] = -1;
	if (out_ok < 0 || err_ok < 0)
		goto fail;
	p->kill_timer = evtimer_new(mod.base, on_kill_timer, p);
	p->drain_timer = evtimer_new(mod.base, on_drain_timer, p);
	if (p->kill_timer == NULL || p->drain_timer == NULL)
		goto fail;
	p->serial = mod.next_serial++;
	envp = marked_env(spec->envp, env_cookie_child_entry(cookie, sizeof(cookie), p->serial));
	if (envp == NULL)
		goto fail;
	struct process_spec marked = *spec;
	marked.envp = envp;

	struct child_args ca = {.spec = &marked,
				.path = env_path(spec->envp),
				.out_w = fds[1],
				.err_w = fds[3],
				.report_fd = fds[5],
				.max_fd = fdlimit_walk_max()};
	ca.restore_nofile = fdlimit_child(&ca.nofile);
	/* Blocked across the clone so that no parent handler runs in the
	 * child before it has reset them. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pid_t pid = spawn_child(&ca);
	int spawn_errno = errno;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	free(envp);
	envp = NULL;
	if (pid < 0) {
		errno = spawn_errno;
		goto fail;
	}
	close_fds(fds + 1, 1);
	close_fds(fds + 3, 1);
	close_fds(fds + 5, 1);

	ssize_t n;
	do {
		n = read(fds[4], &p->report, sizeof(p->report));
	} while (n < 0 && errno == EINTR);
	close_fds(fds + 4, 1);
	if (n == (ssize_t)sizeof(p->report)) {
		p->spawn_failed = 1;
		if (p->report.step == STEP_CHDIR)
			snprintf(p->spawn_what, sizeof(p->spawn_what), "chdir %s", spec->cwd);
		else if (p->report.step == STEP_EXEC)
			snprintf(p->spawn_what, sizeof(p->spawn_what), "exec %s", spec->argv[0]);
		else
			snprintf(p->spawn_what, sizeof(p->spawn_what), "child setup");
	}

	p->pid = pid;
	p->on_line = on_line;
	p->on_exit = on_exit;
	p->arg = arg;
	p->kill_grace_ms = spec->kill_grace_ms > 0 ? spec->kill_grace_ms : 0;
	p->started_ms = clock_mono_ms();
	p->next = mod.list;
	mod.list = p;
	mod.running++;
	guard_group(pid);
	if (!mod.output_held) {
		watch_pipe(p, &p->out);
		watch_pipe(p, &p->err);
	}
	if (spec->timeout_ms > 0 && !p->spawn_failed) {
		struct timeval tv = {(time_t)(spec->timeout_ms / 1000),
				     (suseconds_t)(spec->timeout_ms % 1000) * 1000};
		evtimer_add(p->kill_timer, &tv);
	}
	return p;
fail:;
	int saved = errno;
	log_error("cannot start child", LOG_S("cmd", spec->argv[0]),
		  LOG_S("error", strerror(saved)));
	close_fds(fds, 6);
	free(envp);
	if (p != NULL)
		process_free(p);
	errno = saved;
	return NULL;
}

void process_cancel(struct process *p)
{
	if (p == NULL || p->finished)
		return;
	begin_stop(p, STOP_CANCEL);
}

void process_cancel_within(struct process *p, int grace_ms)
{
	if (p == NULL || p->finished || grace_ms < 0)
		return;
	if (p->in_grace && !p->reaped) {
		/* Stopping already (a timeout, a cancel): its SIGKILL comes
		 * no later than grace_ms from now. */
		int64_t at = clock_mono_ms() + grace_ms;
		if (at < p->kill_at_ms) {
			struct timeval tv = {grace_ms / 1000, (grace_ms % 1000) * 1000};
			p->kill_at_ms = at;
			evtimer_add(p->kill_timer, &tv);
		}
		return;
	}
	if (p->stop == STOP_NONE && grace_ms < p->kill_grace_ms)
		p->kill_grace_ms = grace_ms;
	begin_stop(p, STOP_CANCEL);
}

/* Lines read before the hold go out first; a line's callback may hold the
 * output again, which leaves the rest for the next release. */
static void release_output(void)
{
	for (struct process *p = mod.list; p != NULL && !mod.output_held; p = p->next) {
		struct pipe_in *pipes[] = {&p->out, &p->err};
		for (size_t i = 0; i < 2 && !mod.output_held; i++) {
			if (pipes[i]->fd < 0)
				continue;
			split_lines(p, pipes[i], 0);
			if (!mod.output_held)
				watch_pipe(p, pipes[i]);
		}
	}
}

void process_hold_output(int hold)
{
	hold = hold != 0;
	if (hold == mod.output_held)
		return;
	mod.output_held = hold;
	if (!hold) {
		release_output();
		return;
	}
	for (struct process *p = mod.list; p != NULL; p = p->next) {
		if (p->out.fd >= 0)
			event_del(p->out.ev);
		if (p->err.fd >= 0)
			event_del(p->err.ev);
	}
}

int process_pid(const struct process *p)
{
	return p->pid;
}

int process_running(void)
{
	return mod.running;
}

struct event_base *process_base(void)
{
	return mod.base;
}
