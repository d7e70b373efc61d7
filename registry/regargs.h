/* regargs: the command line of sluice-registry.
 *
 * Every check that needs no network is made here, so that bad usage is told
 * apart (exit 2) from a failed run (exit 1).
 */
#ifndef SLUICE_REGARGS_H
#define SLUICE_REGARGS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define REGARGS_VERSION "0.1.0"

struct regargs {
	int help;
	int version;
	const char *command; /* "lifecycle" */
	const char *registry;
	const char *repository;
	long keep_last;	       /* 0 when not given */
	const char **patterns; /* --tag-pattern; "*" when --keep-last comes alone */
	size_t npatterns;
	const char **keep; /* --keep */
	size_t nkeep;
	int whole_images;  /* --whole-images */
	int64_t expire_ms; /* 0 when not given */
	const char *state; /* NULL: the default file */
	const char *token_file;
	const char *user_file;
	const char *ca_file;
	long page_size;
	int dry_run;
	int json;
};

/* 0, or -1 with err (a usage error). */
int regargs_parse(struct regargs *a, int argc, char **argv, char *err, size_t errlen);
void regargs_clear(struct regargs *a);
void regargs_usage(FILE *f);

#endif
