/* tmpdir: a temporary directory for the files a unit test writes, removed
 * with everything below it. Header-only: each test binary is built from its
 * one source file.
 */
#ifndef SLUICE_TESTS_TMPDIR_H
#define SLUICE_TESTS_TMPDIR_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

/* A new directory "/tmp/<prefix>-XXXXXX" into dir: 0, or -1. */
static inline int tmpdir_make(char *dir, size_t dirlen, const char *prefix)
{
	if (snprintf(dir, dirlen, "/tmp/%s-XXXXXX", prefix) >= (int)dirlen)
		return -1;
	return mkdtemp(dir) ? 0 : -1;
}

static inline int tmpdir_remove_entry(const char *path, const struct stat *st, int flag,
				      struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* Removes dir and everything below it. */
static inline void tmpdir_remove(const char *dir)
{
	nftw(dir, tmpdir_remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Writes text to path, replacing what was there: 0, or -1. */
static inline int tmpdir_write(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	if (!f)
		return -1;
	fputs(text, f);
	return fclose(f) == 0 ? 0 : -1;
}

#endif
