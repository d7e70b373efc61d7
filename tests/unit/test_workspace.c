/* Tests for workers/workspace: runs older than the ttl are removed, a run a
 * stage holds never is, a free-space shortage removes the oldest runs one at a time,
 * and the worker settings behind it (drain_timeout, workspace_ttl, min_free,
 * log_level) parse or fail with their position. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <event2/event.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <unistd.h>

#include "config/config.h"
#include "stages/process.h"
#include "tests/unit/logcapture.h"
#include "unprivileged.h"
#include "workers/workspace.h"

static struct event_base *base;

/* When set, the next mkdir of this path is followed by the move a sweep
 * makes of a run's directory to the trash. */
static const char *moved_after_mkdir;

/* Every mkdir of the test, workspace.c's included, comes here. */
int mkdir(const char *path, mode_t mode)
{
	int rc = (int)syscall(SYS_mkdirat, AT_FDCWD, path, mode);
	int saved = errno;
	if (moved_after_mkdir && strcmp(path, moved_after_mkdir) == 0) {
		char to[600];
		snprintf(to, sizeof(to), "%s.trash", path);
		assert_int_equal(rename(path, to), 0);
		moved_after_mkdir = NULL;
	}
	errno = saved;
	return rc;
}

/* When set, another worker's sweep moves this run's directory to its trash
 * just before this one opens it; or once this one has opened it to lock it
 * (at its flock), and a stage of the run makes its directory again and holds
 * it, with the settings remade_in, as remade_fd. */
static const char *other_sweep_at_open;
static const char *other_sweep_at_flock;
static const struct settings *remade_in;
static int remade_fd = -1;

static void other_sweep(const char *path)
{
	char to[600];
	snprintf(to, sizeof(to), "%s.other-trash", path);
	assert_int_equal(rename(path, to), 0);
}

/* workspace.c's open(), which _FILE_OFFSET_BITS makes open64. */
int open64(const char *path, int flags, ...)
{
	const char *moved = other_sweep_at_open;
	if (moved && strcmp(path, moved) == 0) {
		other_sweep_at_open = NULL;
		other_sweep(moved);
	}
	return (int)syscall(SYS_openat, AT_FDCWD, path, flags, 0);
}

int flock(int fd, int op)
{
	const char *moved = other_sweep_at_flock;
	if (moved && op == (LOCK_EX | LOCK_NB)) {
		other_sweep_at_flock = NULL;
		other_sweep(moved);
		remade_fd = workspace_hold(remade_in, strrchr(moved, '/') + 1);
		assert_true(remade_fd >= 0);
	}
	return (int)syscall(SYS_flock, fd, op);
}

struct fx {
	char dir[64];
	char root[128];
	struct settings s;
};

static void make_run(struct fx *f, const char *run, int age_s)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", f->root, run);
	assert_int_equal(mkdir(path, 0755), 0);
	snprintf(path, sizeof(path), "%s/%s/build", f->root, run);
	assert_int_equal(mkdir(path, 0755), 0);
	snprintf(path, sizeof(path), "%s/%s", f->root, run);
	struct timeval tv[2] = {{time(NULL) - age_s, 0}, {time(NULL) - age_s, 0}};
	assert_int_equal(utimes(path, tv), 0);
}

/* The run's directory, held as a stage holds it. */
static int hold(struct fx *f, const char *run)
{
	int fd = workspace_hold(&f->s, run);
	assert_true(fd >= 0);
	return fd;
}

static int exists(struct fx *f, const char *run)
{
	char path[512];
	struct stat st;
	snprintf(path, sizeof(path), "%s/%s", f->root, run);
	return stat(path, &st) == 0;
}

static int entries(struct fx *f)
{
	DIR *d = opendir(f->root);
	struct dirent *de;
	int n = 0;
	assert_non_null(d);
	while ((de = readdir(d)))
		n += strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
	closedir(d);
	return n;
}

static void wait_idle(struct workspace *ws)
{
	for (int i = 0; i < 500 && workspace_busy(ws); i++) {
		event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
		usleep(10000);
	}
	assert_false(workspace_busy(ws));
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	char err[256];
	snprintf(f->dir, sizeof(f->dir), "/tmp/sluice-ws-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	assert_int_equal(settings_load(NULL, &f->s, err, sizeof(err)), 0);
	free(f->s.state_dir);
	f->s.state_dir = strdup(f->dir);
	f->s.min_free_percent = 0;
	snprintf(f->root, sizeof(f->root), "%s/workspaces", f->dir);
	assert_int_equal(mkdir(f->root, 0755), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
	assert_int_equal(system(cmd), 0);
	settings_clear(&f->s);
	free(f);
	return 0;
}

static void test_runs_older_than_the_ttl_go_unless_in_use(void **state)
{
	struct fx *f = *state;
	f->s.workspace_ttl_ms = 3600 * 1000;
	make_run(f, "r_old", 7200);
	make_run(f, "r_busy", 7200);
	make_run(f, "r_new", 60);
	int held = hold(f, "r_busy");
	struct workspace *ws = workspace_start(base, &f->s);
	assert_non_null(ws);
	wait_idle(ws);
	assert_false(exists(f, "r_old"));
	assert_true(exists(f, "r_busy"));
	assert_true(exists(f, "r_new"));
	assert_int_equal(entries(f), 2); /* no trash left behind */
	/* Released, it goes like any other. */
	workspace_release(held);
	workspace_sweep(ws);
	wait_idle(ws);
	assert_false(exists(f, "r_busy"));
	workspace_free(ws);
}

/* A sweep may move a run's directory away between the hold's mkdir, which
 * found it, and its open: the hold makes it again. */
static void test_a_hold_makes_again_a_run_a_sweep_moved_away(void **state)
{
	struct fx *f = *state;
	char path[512];
	struct stat held, now;
	make_run(f, "r_1", 7200);
	snprintf(path, sizeof(path), "%s/r_1", f->root);
	moved_after_mkdir = path;
	int fd = workspace_hold(&f->s, "r_1");
	assert_true(fd >= 0);
	assert_null(moved_after_mkdir);
	assert_int_equal(fstat(fd, &held), 0);
	assert_int_equal(stat(path, &now), 0);
	assert_true(held.st_ino == now.st_ino);
	workspace_release(fd);
}

static void test_free_space_shortage_removes_oldest_runs_first(void **state)
{
	struct fx *f = *state;
	f->s.workspace_ttl_ms = 30LL * 24 * 3600 * 1000;
	f->s.min_free_bytes = LLONG_MAX / 2; /* never met: everything removable goes */
	make_run(f, "r_1", 300);
	make_run(f, "r_2", 200);
	make_run(f, "r_busy", 400);
	int held = hold(f, "r_busy");
	struct workspace *ws = workspace_start(base, &f->s);
	/* One run per step, oldest first. */
	assert_true(workspace_busy(ws));
	assert_false(exists(f, "r_1"));
	assert_true(exists(f, "r_2"));
	wait_idle(ws);
	assert_false(exists(f, "r_2"));
	assert_true(exists(f, "r_busy"));
	assert_int_equal(entries(f), 1);
	workspace_release(held);
	workspace_free(ws);
}

/* Runs past the ttl go first; if space is still short once rm has deleted
 * them, the oldest run left goes then, not at the next periodic sweep a
 * minute later. */
static void test_space_still_short_after_expired_runs_go_is_looked_at_again(void **state)
{
	struct fx *f = *state;
	f->s.workspace_ttl_ms = 3600 * 1000;
	f->s.min_free_bytes = LLONG_MAX / 2;
	make_run(f, "r_old", 7200);
	make_run(f, "r_1", 300);
	struct workspace *ws = workspace_start(base, &f->s);
	assert_false(exists(f, "r_old"));
	assert_true(exists(f, "r_1"));
	wait_idle(ws);
	assert_int_equal(entries(f), 0);
	workspace_free(ws);
}

/* Trash an earlier removal left may be what rm cannot delete (files a
 * stage's container made as root): it must not stop the runs from going. */
static void test_leftover_trash_does_not_hold_back_a_removal_for_space(void **state)
{
	struct fx *f = *state;
	f->s.workspace_ttl_ms = 30LL * 24 * 3600 * 1000;
	f->s.min_free_bytes = LLONG_MAX / 2;
	make_run(f, ".trash-1-r_0", 500);
	make_run(f, "r_1", 300);
	struct workspace *ws = workspace_start(base, &f->s);
	assert_false(exists(f, "r_1"));
	wait_idle(ws);
	assert_int_equal(entries(f), 0);
	workspace_free(ws);
}

/* Trash that rm cannot delete piles up, a directory per run, when a stage's
 * container makes files as root: however much of it there is, runs past
 * the ttl go, and so do runs while space is short. */
static void test_any_amount_of_leftover_trash_leaves_room_for_runs(void **state)
{
	struct fx *f = *state;
	char name[64];
	f->s.workspace_ttl_ms = 3600 * 1000;
	for (int i = 0; i < 300; i++) {
		snprintf(name, sizeof(name), ".trash-%d-r_%d", i, i);
		make_run(f, name, 10);
	}
	make_run(f, "r_old", 7200);
	make_run(f, "r_new", 60);
	struct workspace *ws = workspace_start(base, &f->s);
	assert_false(exists(f, "r_old"));
	wait_idle(ws);
	f->s.min_free_bytes = LLONG_MAX / 2;
	for (int i = 0; i < 300; i++) {
		snprintf(name, sizeof(name), ".trash-%d-r_%d", i, i);
		if (!exists(f, name))
			make_run(f, name, 10);
	}
	workspace_sweep(ws);
	assert_false(exists(f, "r_new"));
	wait_idle(ws);
	workspace_free(ws);
}

/* A stage may leave directories it cannot write or enter (a Go module
 * cache is read-only): its run goes all the same. */
static void test_a_run_with_read_only_directories_is_removed(void **state)
{
	struct fx *f = *state;
	char cmd[512];
	f->s.workspace_ttl_ms = 3600 * 1000;
	make_run(f, "r_old", 7200);
	snprintf(cmd, sizeof(cmd),
		 "cd %s/r_old/build && mkdir -p mod/a locked/b && touch mod/a/f locked/b/g && "
		 "chmod 555 mod/a mod && chmod 000 locked/b locked",
		 f->root);
	assert_int_equal(system(cmd), 0);
	struct timeval tv[2] = {{time(NULL) - 7200, 0}, {time(NULL) - 7200, 0}};
	snprintf(cmd, sizeof(cmd), "%s/r_old", f->root);
	assert_int_equal(utimes(cmd, tv), 0);
	struct workspace *ws = workspace_start(base, &f->s);
	wait_idle(ws);
	assert_int_equal(entries(f), 0);
	workspace_free(ws);
}

/* Workers sharing a state directory sweep the same expired run at once:
 * the one that finds it moved already says nothing, and the directory a
 * stage of the run has made again since, and holds, stays. */
static void test_a_run_another_sweep_moved_first_is_left_quietly(void **state)
{
	struct fx *f = *state;
	char r_1[512], r_2[512];
	struct logcapture c;
	f->s.workspace_ttl_ms = 3600 * 1000;
	make_run(f, "r_1", 7200);
	make_run(f, "r_2", 7200);
	snprintf(r_1, sizeof(r_1), "%s/r_1", f->root);
	snprintf(r_2, sizeof(r_2), "%s/r_2", f->root);
	other_sweep_at_open = r_1;
	other_sweep_at_flock = r_2;
	remade_in = &f->s;
	assert_int_equal(logcapture_start(&c), 0);
	struct workspace *ws = workspace_start(base, &f->s);
	wait_idle(ws);
	const char *text = logcapture_text(&c);
	assert_null(other_sweep_at_open);
	assert_null(other_sweep_at_flock);
	assert_null(strstr(text, "cannot remove a workspace"));
	assert_true(exists(f, "r_2"));
	workspace_release(remade_fd);
	workspace_free(ws);
}

/* A stage may take every permission from its own directory, or from the
 * run's (chmod 000 ..): the run goes all the same, and its space is freed.
 * One a stage still holds stays as that stage left it. */
static void test_a_run_a_stage_made_unreadable_is_removed(void **state)
{
	struct fx *f = *state;
	char cmd[512];
	struct stat st;
	f->s.workspace_ttl_ms = 3600 * 1000;
	make_run(f, "r_run", 7200);
	make_run(f, "r_stage", 7200);
	make_run(f, "r_held", 7200);
	int held = hold(f, "r_held");
	snprintf(cmd, sizeof(cmd),
		 "cd %s && touch r_run/build/f r_stage/build/g && chmod 000 r_stage/build && "
		 "chmod 000 r_run r_held",
		 f->root);
	assert_int_equal(system(cmd), 0);
	struct workspace *ws = workspace_start(base, &f->s);
	wait_idle(ws);
	assert_int_equal(entries(f), 1);
	snprintf(cmd, sizeof(cmd), "%s/r_held", f->root);
	assert_int_equal(stat(cmd, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0);
	assert_int_equal(chmod(cmd, 0755), 0);
	workspace_release(held);
	workspace_free(ws);
}

/* A run whose directory a stage made unreadable is held again by its next
 * stage or retry: the directory is this worker's, its permissions given
 * back to it, as the sweep does. */
static void test_a_run_a_stage_made_unreadable_is_held_again(void **state)
{
	struct fx *f = *state;
	char path[512];
	struct stat st;
	make_run(f, "r_1", 0);
	snprintf(path, sizeof(path), "%s/r_1", f->root);
	assert_int_equal(chmod(path, 0), 0);
	int fd = workspace_hold(&f->s, "r_1");
	assert_true(fd >= 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & S_IRWXU, S_IRWXU);
	snprintf(path, sizeof(path), "%s/r_1/build", f->root);
	assert_int_equal(access(path, R_OK | W_OK | X_OK), 0);
	workspace_release(fd);
}

static void test_workspace_path_is_per_run_and_stage(void **state)
{
	struct fx *f = *state;
	char out[512], tiny[8];
	assert_int_equal(workspace_path(&f->s, "r_1", "unit", out, sizeof(out)), 0);
	assert_true(strstr(out, "/workspaces/r_1/unit") != NULL);
	assert_int_equal(workspace_path(&f->s, "r_1", "unit", tiny, sizeof(tiny)), -1);
}

static void test_workspace_make_creates_missing_parents_only(void **state)
{
	struct fx *f = *state;
	char path[512], file[512];
	struct stat st;

	snprintf(path, sizeof(path), "%s/r_1/.outputs/deep", f->root);
	assert_int_equal(workspace_make(path), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	/* Existing directories, and a new one beside them, are fine. */
	assert_int_equal(workspace_make(path), 0);
	snprintf(path, sizeof(path), "%s/r_1/unit", f->root);
	assert_int_equal(workspace_make(path), 0);
	assert_int_equal(stat(path, &st), 0);
	/* A file where a parent should be is an error, with errno. */
	snprintf(file, sizeof(file), "%s/r_file", f->root);
	FILE *fp = fopen(file, "w");
	assert_non_null(fp);
	fclose(fp);
	snprintf(path, sizeof(path), "%s/r_file/unit", f->root);
	errno = 0;
	assert_int_equal(workspace_make(path), -1);
	assert_int_equal(errno, ENOTDIR);
	/* So is a path that does not fit. */
	char *longp = malloc(5000);
	assert_non_null(longp);
	memset(longp, 'a', 4999);
	longp[0] = '/';
	longp[4999] = '\0';
	assert_int_equal(workspace_make(longp), -1);
	assert_int_equal(errno, ENAMETOOLONG);
	free(longp);
}

static void load_text(struct fx *f, const char *text, struct settings *s, char *err, size_t errlen,
		      int want)
{
	char path[128];
	snprintf(path, sizeof(path), "%s/sluice.yaml", f->dir);
	FILE *fp = fopen(path, "w");
	assert_non_null(fp);
	fputs(text, fp);
	fclose(fp);
	assert_int_equal(settings_load(path, s, err, errlen), want);
}

static void test_worker_settings_parse_and_fail_with_position(void **state)
{
	struct fx *f = *state;
	struct settings s, t;
	char err[512];
	load_text(f,
		  "log_level: warn\nworker:\n  drain_timeout: 2m\n  workspace_ttl: 1h\n"
		  "  min_free: 5GiB\n",
		  &s, err, sizeof(err), 0);
	assert_int_equal(s.drain_timeout_ms, 120000);
	assert_true(s.workspace_ttl_ms == 3600LL * 1000);
	assert_true(s.min_free_bytes == 5LL << 30);
	assert_int_equal(s.min_free_percent, 0);
	assert_string_equal(s.log_level, "warn");
	load_text(f, "worker:\n  min_free: 15%\n", &t, err, sizeof(err), 0);
	assert_int_equal(t.min_free_percent, 15);
	assert_int_equal(settings_differ(&s, &t, "worker.min_free"), 1);
	assert_int_equal(settings_differ(&s, &t, "redis.url"), 0);
	assert_int_equal(settings_differ(&s, &t, "no.such.key"), -1);
	settings_clear(&s);
	settings_clear(&t);

	load_text(f, "worker:\n  min_free: 150%\n", &s, err, sizeof(err), -1);
	assert_non_null(strstr(err, "sluice.yaml:2:13: worker.min_free:"));
	load_text(f, "log_level: loud\n", &s, err, sizeof(err), -1);
	assert_non_null(strstr(err, "sluice.yaml:1:12: log_level: expected one of"));
	load_text(f, "worker:\n  drain_timeout: soon\n", &s, err, sizeof(err), -1);
	assert_non_null(strstr(err, "worker.drain_timeout"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_runs_older_than_the_ttl_go_unless_in_use, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_a_hold_makes_again_a_run_a_sweep_moved_away, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(
		test_space_still_short_after_expired_runs_go_is_looked_at_again, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_free_space_shortage_removes_oldest_runs_first,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_leftover_trash_does_not_hold_back_a_removal_for_space, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_any_amount_of_leftover_trash_leaves_room_for_runs,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_a_run_with_read_only_directories_is_removed, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_a_run_another_sweep_moved_first_is_left_quietly,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_a_run_a_stage_made_unreadable_is_removed, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_a_run_a_stage_made_unreadable_is_held_again, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_workspace_path_is_per_run_and_stage, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_workspace_make_creates_missing_parents_only, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_worker_settings_parse_and_fail_with_position,
					    setup, teardown),
	};
	base = event_base_new();
	if (unprivileged() < 0 || !base || process_init(base) < 0)
		return 1;
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	process_shutdown();
	event_base_free(base);
	return rc;
}
