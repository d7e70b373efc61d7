/* args: sluicectl's command line, parsed without side effects.
 *
 * Options may come before or after the command; "--" ends them. On a usage
 * error ctl_args_parse returns -1 with a one-line message and the caller
 * exits with status 2. Strings in struct ctl_args point into argv.
 */
#ifndef SLUICE_CTL_ARGS_H
#define SLUICE_CTL_ARGS_H

#include <stddef.h>

#define CTL_DEFAULT_URL "http://127.0.0.1:8080"
/* What is trimmed around a URL or a token: a value read from a file, or a
 * variable filled from one, keeps its line break. */
#define CTL_BLANK " \t\r\n"

enum ctl_command {
	CTL_CMD_NONE,
	CTL_CMD_RUNS,
	CTL_CMD_SHOW,
	CTL_CMD_LOGS,
	CTL_CMD_CANCEL,
	CTL_CMD_RETRY,
	CTL_CMD_TRIGGER,
	CTL_CMD_PIPELINES,
	CTL_CMD_VALIDATE,
	CTL_CMD_APPROVE,
	CTL_CMD_REJECT,
	CTL_CMD_PLAN,
	CTL_CMD_TOKEN,
	CTL_CMD_HELP,
	CTL_CMD_PROMOTE,
	CTL_CMD_ABORT,
	CTL_CMD_ROLLBACK,
};

/* validate takes this many files at most in one call. */
#define CTL_MAX_FILES 256

struct ctl_args {
	enum ctl_command cmd;
	const char *url;	/* --url, NULL when not given */
	const char *token_file; /* --token-file, NULL when not given */
	const char *ca_file;	/* --ca-file, NULL when not given */
	int json;
	int help;	      /* --help or -h: show help for cmd (or general help) */
	int version;	      /* --version */
	long limit;	      /* --limit, 0 when not given */
	const char *pipeline; /* runs --pipeline; trigger PIPELINE */
	const char *status;
	const char *before; /* runs --before RUN: the page older than it */
	const char *after;  /* runs --after RUN: the page newer than it */
	int follow;	    /* logs -f */
	const char *run;    /* show, logs, cancel, retry */
	const char *stage;  /* logs; retry: a stage or an environment, NULL for the whole run */
	const char *ref;    /* trigger --ref; runs --ref (a filter) */
	const char *sha;    /* trigger --sha, NULL when not given */
	/* validate, plan (one file) */
	const char *files[CTL_MAX_FILES];
	int nfiles;
	const char *env;    /* approve, reject, promote, abort, rollback: ENV */
	const char *reason; /* approve, reject --reason; promote, abort, retry, rollback too */
	const char *by;	    /* --by with --reason, NULL when not given */
	int full;	    /* promote --full */
	const char *topic;  /* help COMMAND, NULL for general help */
	const char *name;   /* token hash NAME ROLE */
	const char *role;
};

int ctl_args_parse(struct ctl_args *a, int argc, char **argv, char *err, size_t errlen);
/* --url, else a non-empty $SLUICE_URL, else CTL_DEFAULT_URL. */
const char *ctl_args_url(const struct ctl_args *a);
/* Whether url (blanks around it allowed) is an http:// or https:// one, or
 * one without a scheme (http). */
int ctl_url_scheme_ok(const char *url);
/* The CA certificates that verify an https agent: --ca-file, else a
 * non-empty $SLUICE_CA_FILE, else NULL (the system's). */
const char *ctl_args_ca_file(const struct ctl_args *a);
/* The API token: the first line of --token-file, else a non-empty
 * $SLUICE_TOKEN, else none (0 with out[0] = '\0'). -1 with a message when
 * the file cannot be read or holds no token. */
int ctl_args_token(const struct ctl_args *a, char *out, size_t outlen, char *err, size_t errlen);
/* The command named s, or CTL_CMD_NONE. */
enum ctl_command ctl_args_command(const char *s);

#endif
