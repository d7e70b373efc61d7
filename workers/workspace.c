/* workspace: stage directories and their removal by age and free space. */
#include "workers/workspace.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "lib/clock.h"
#include "lib/log.h"
#include "stages/checkout.h"
#include "stages/process.h"

#define TRASH_PREFIX	 ".trash-"
#define SWEEP_MAX_MS	 (60 * 1000)
#define SWEEP_MIN_MS	 1000
#define RM_KILL_GRACE_MS 5000
/* Directories removed by one rm child at most, so that its argv stays small. */
#define MAX_REMOVE_AT_ONCE 256
/* Of those, trash left by earlier removals at most: trash rm cannot delete
 * (files a stage's container made as root) piles up a directory per run,
 * and must leave room for the runs a sweep removes. */
#define MAX_TRASH_AT_ONCE (MAX_REMOVE_AT_ONCE / 2)
/* Times a hold looks again for its run's directory after a sweep took it. */
#define HOLD_TRIES 3

struct removal;

struct workspace {
	struct event *timer;
	const struct settings *settings;
	struct removal *removal; /* the rm child running, if any */
	int short_logged;	 /* "cannot free enough space" said for this shortage */
};

/* Outlives the workspace when it is freed while rm still runs. */
struct removal {
	struct workspace *ws;
	struct process *proc;
	int for_space; /* sweep again when done: free space is checked after each run */
};

struct entry {
	char name[256];
	time_t mtime;
};

int workspace_path(const struct settings *s, const char *run, const char *stage, char *out,
		   size_t len)
{
	/* By stage name rather than stage kind: two stages of one kind (say
	 * unit and lint, both "test") may run at once in one run and must not
	 * share a checkout. */
	int n = snprintf(out, len, "%s/workspaces/%s/%s", s->state_dir, run, stage);
	return n < 0 || (size_t)n >= len ? -1 : 0;
}

/* buf[0..len) is a path to make. Tried as it is first: a stage directory
 * in a run directory that exists already, or a directory that exists, costs
 * one mkdir, and the parents are walked only after ENOENT. */
static int make_dirs(char *buf, size_t len)
{
	if (mkdir(buf, 0755) == 0 || errno == EEXIST)
		return 0;
	if (errno != ENOENT)
		return -1;
	char *slash = memrchr(buf, '/', len);
	if (!slash || slash == buf)
		return -1;
	*slash = '\0';
	int rc = make_dirs(buf, (size_t)(slash - buf));
	*slash = '/';
	if (rc < 0)
		return -1;
	return mkdir(buf, 0755) < 0 && errno != EEXIST ? -1 : 0;
}

int workspace_make(const char *path)
{
	char buf[4096];
	int n = snprintf(buf, sizeof(buf), "%s", path);
	if (n < 0 || (size_t)n >= sizeof(buf)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return make_dirs(buf, (size_t)n);
}

/* The directory open as fd is the one at path still: no sweep has moved it
 * away since it was opened. */
static int still_at(int fd, const char *path)
{
	struct stat held, now;
	return fstat(fd, &held) == 0 && stat(path, &now) == 0 && held.st_dev == now.st_dev &&
	       held.st_ino == now.st_ino;
}

/* Opens a run's directory to lock it. One a stage made unreadable (chmod
 * 000 ..) is made readable first when this worker owns it, or it could
 * never be held by the run's next stage, nor moved or deleted: rm's chmod
 * deals with what is inside. *was is then its mode as found, for a sweep to
 * give back if a stage holds it; 0 when unchanged. */
static int open_run(const char *path, mode_t *was)
{
	const int flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
	struct stat st;
	int fd = open(path, flags);

	*was = 0;
	if (fd >= 0 || errno != EACCES || lstat(path, &st) < 0)
		return fd;
	if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid()) {
		errno = EACCES;
		return -1;
	}
	if (chmod(path, st.st_mode | S_IRWXU) < 0)
		return -1;
	*was = st.st_mode;
	return open(path, flags);
}

/* A sweep holds a run's directory exclusively only while it renames it, so
 * the wait for the shared lock is that of one rename. The directory locked
 * must be the one still at the path: one a sweep has just moved to the trash,
 * before the open or before the lock, is made again. */
int workspace_hold(const struct settings *s, const char *run)
{
	char path[4096];
	int n = snprintf(path, sizeof(path), "%s/workspaces/%s", s->state_dir, run);

	if (n < 0 || (size_t)n >= sizeof(path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	for (int i = 0; i < HOLD_TRIES; i++) {
		if (make_dirs(path, (size_t)n) < 0)
			return -1;
		mode_t was;
		int fd = open_run(path, &was);
		if (fd < 0 && errno == ENOENT)
			continue;
		if (fd < 0)
			return -1;
		if (flock(fd, LOCK_SH) < 0) {
			int saved = errno;
			close(fd);
			errno = saved;
			return -1;
		}
		if (still_at(fd, path))
			return fd;
		close(fd);
	}
	errno = EBUSY;
	return -1;
}

void workspace_release(int fd)
{
	if (fd >= 0)
		close(fd);
}

static void schedule(struct workspace *ws)
{
	long long ms = ws->settings->workspace_ttl_ms / 2;
	if (ms > SWEEP_MAX_MS)
		ms = SWEEP_MAX_MS;
	if (ms < SWEEP_MIN_MS)
		ms = SWEEP_MIN_MS;
	struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
	evtimer_add(ws->timer, &tv);
}

static int by_age(const void *a, const void *b)
{
	const struct entry *x = a, *y = b;
	return (x->mtime > y->mtime) - (x->mtime < y->mtime);
}

/* Run directories under root, oldest first; trash left by an earlier
 * removal is appended to trash instead, up to MAX_TRASH_AT_ONCE. Returns
 * the count or -1. */
static int list_runs(const char *root, struct entry **out, char ***trash, size_t *ntrash)
{
	DIR *d = opendir(root);
	struct entry *list = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;

	*out = NULL;
	if (!d)
		return errno == ENOENT ? 0 : -1;
	while ((de = readdir(d))) {
		struct stat st;
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 ||
		    strlen(de->d_name) >= sizeof(list[0].name))
			continue;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISDIR(st.st_mode))
			continue;
		if (strncmp(de->d_name, TRASH_PREFIX, strlen(TRASH_PREFIX)) == 0) {
			if (*ntrash < MAX_TRASH_AT_ONCE) {
				char *p = malloc(strlen(root) + strlen(de->d_name) + 2);
				if (p) {
					sprintf(p, "%s/%s", root, de->d_name);
					(*trash)[(*ntrash)++] = p;
				}
			}
			continue;
		}
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 64;
			struct entry *grown = realloc(list, ncap * sizeof(*list));
			if (!grown)
				break;
			list = grown;
			cap = ncap;
		}
		snprintf(list[n].name, sizeof(list[n].name), "%s", de->d_name);
		list[n].mtime = st.st_mtime;
		n++;
	}
	closedir(d);
	if (n)
		qsort(list, n, sizeof(*list), by_age);
	*out = list;
	return (int)n;
}

/* Moves a run's directory out of the way unless a stage holds it; its path
 * in the trash, or NULL. */
static char *to_trash(const char *root, const char *name)
{
	size_t len = strlen(root) + strlen(name) + 64;
	char *from = malloc(len), *to = malloc(len);
	mode_t was = 0;
	int fd = -1;
	if (!from || !to)
		goto fail;
	snprintf(from, len, "%s/%s", root, name);
	snprintf(to, len, "%s/%s%lld-%s", root, TRASH_PREFIX, (long long)clock_mono_ms(), name);
	fd = open_run(from, &was);
	if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) < 0 && errno == EWOULDBLOCK) {
		if (was)
			fchmod(fd, was & 07777);
		goto fail;
	}
	/* Workers sharing the state directory sweep it at once: another may
	 * have moved the directory before the open, or before the lock, and a
	 * stage of the run made it again since and holds it. Only the
	 * directory locked is moved, and one gone is no failure. */
	if (fd >= 0 && !still_at(fd, from))
		goto fail;
	if (fd < 0 || rename(from, to) < 0) {
		if (errno != ENOENT)
			log_warn("cannot remove a workspace", LOG_S("path", from),
				 LOG_S("error", strerror(errno)));
		goto fail;
	}
	close(fd);
	free(from);
	return to;
fail:
	if (fd >= 0)
		close(fd);
	free(from);
	free(to);
	return NULL;
}

static int space_short(const struct workspace *ws, const char *root)
{
	const struct settings *s = ws->settings;
	struct statvfs v;
	if (statvfs(root, &v) < 0)
		return 0;
	unsigned long long avail = (unsigned long long)v.f_bavail * v.f_frsize;
	unsigned long long total = (unsigned long long)v.f_blocks * v.f_frsize;
	if (s->min_free_bytes > 0)
		return avail < (unsigned long long)s->min_free_bytes;
	return avail * 100 < total * (unsigned long long)s->min_free_percent;
}

static void on_rm_line(enum process_stream s, const char *line, size_t len, void *arg)
{
	(void)s;
	(void)arg;
	log_warn("workspace removal", LOG_S("output", len ? line : ""));
}

static void on_rm_exit(const struct process_result *r, void *arg)
{
	struct removal *rm = arg;
	struct workspace *ws = rm->ws;
	int again = rm->for_space;
	if (r->outcome != PROCESS_EXITED || r->exit_code != 0)
		log_warn("workspace removal failed", LOG_I("exit", r->exit_code),
			 LOG_S("error", r->error));
	free(rm);
	if (!ws)
		return;
	ws->removal = NULL;
	if (again)
		workspace_sweep(ws);
}

static void start_rm(struct workspace *ws, char **paths, size_t n, int for_space)
{
	static const char *const envp[] = {"PATH=/usr/bin:/bin", "LANG=C", NULL};
	const char **argv = calloc(n + 5, sizeof(*argv));
	struct removal *rm = calloc(1, sizeof(*rm));
	if (!argv || !rm)
		goto fail;
	argv[0] = "sh";
	argv[1] = "-c";
	argv[2] = checkout_rm_script;
	argv[3] = "sh";
	for (size_t i = 0; i < n; i++)
		argv[4 + i] = paths[i];
	rm->ws = ws;
	rm->for_space = for_space;
	struct process_spec spec = {
	    .argv = argv,
	    .envp = envp,
	    .cwd = "/",
	    .kill_grace_ms = RM_KILL_GRACE_MS,
	};
	rm->proc = process_spawn(&spec, on_rm_line, on_rm_exit, rm);
	if (!rm->proc)
		goto fail;
	ws->removal = rm;
	free(argv);
	return;
fail:
	/* The trash stays; the next sweep tries again. */
	log_warn("cannot start the workspace removal");
	free(argv);
	free(rm);
}

void workspace_sweep(struct workspace *ws)
{
	const struct settings *s = ws->settings;
	char root[4096];
	struct entry *runs = NULL;
	char **paths = calloc(MAX_REMOVE_AT_ONCE, sizeof(*paths));
	size_t npaths = 0, expired = 0;
	int for_space = 0;

	if (ws->removal || !paths)
		goto done;
	snprintf(root, sizeof(root), "%s/workspaces", s->state_dir);
	int n = list_runs(root, &runs, &paths, &npaths);
	if (n < 0) {
		log_warn("cannot list workspaces", LOG_S("path", root),
			 LOG_S("error", strerror(errno)));
		goto done;
	}
	time_t cutoff = (time_t)((clock_now_ms() - s->workspace_ttl_ms) / 1000);
	int i = 0;
	for (; i < n && runs[i].mtime < cutoff && npaths < MAX_REMOVE_AT_ONCE; i++) {
		char *p = to_trash(root, runs[i].name);
		if (p) {
			paths[npaths++] = p;
			expired++;
		}
	}
	/* Space is reclaimed one run at a time, oldest first, looking again
	 * after each: the trash frees nothing until rm is done with it. Trash
	 * an earlier removal left does not wait its turn: it may be what rm
	 * cannot delete (files a stage's container made as root), and would
	 * hold back every removal for space. */
	if (expired == 0 && space_short(ws, root)) {
		for (; i < n; i++) {
			char *p = to_trash(root, runs[i].name);
			if (p) {
				paths[npaths++] = p;
				for_space = 1;
				log_info("workspace removed for free space",
					 LOG_S("run", runs[i].name),
					 LOG_I("min_free_bytes", s->min_free_bytes),
					 LOG_I("min_free_percent", s->min_free_percent));
				break;
			}
		}
		if (!for_space && !ws->short_logged)
			log_warn("free space below worker.min_free and no workspace left to remove",
				 LOG_S("path", root));
		ws->short_logged = !for_space;
	} else if (expired == 0) {
		ws->short_logged = 0;
	}
	if (expired) {
		log_info("workspaces expired", LOG_I("runs", expired),
			 LOG_I("ttl_ms", s->workspace_ttl_ms));
		/* What they free shows only once rm is done with them: if space
		 * is short, it is looked at again then, not a minute later. */
		for_space = space_short(ws, root);
	}
	if (npaths)
		start_rm(ws, paths, npaths, for_space);
done:
	for (size_t k = 0; k < npaths; k++)
		free(paths[k]);
	free(paths);
	free(runs);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct workspace *ws = arg;
	(void)fd;
	(void)what;
	workspace_sweep(ws);
	schedule(ws);
}

struct workspace *workspace_start(struct event_base *base, const struct settings *settings)
{
	struct workspace *ws = calloc(1, sizeof(*ws));
	if (!ws)
		return NULL;
	ws->settings = settings;
	ws->timer = evtimer_new(base, on_timer, ws);
	if (!ws->timer) {
		free(ws);
		return NULL;
	}
	workspace_sweep(ws);
	schedule(ws);
	return ws;
}

int workspace_busy(const struct workspace *ws)
{
	return ws->removal != NULL;
}

void workspace_free(struct workspace *ws)
{
	if (!ws)
		return;
	/* A removal under way stops: what is left of the trash is removed by
	 * the next worker's sweep. */
	if (ws->removal) {
		ws->removal->ws = NULL;
		process_cancel(ws->removal->proc);
	}
	event_free(ws->timer);
	free(ws);
}
