/* args: option and command parsing for sluicectl. */
#include "ctl/args.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/utf8.h"

enum opt_id {
	OPT_URL,
	OPT_LIMIT,
	OPT_PIPELINE,
	OPT_STATUS,
	OPT_JSON,
	OPT_HELP,
	OPT_VERSION,
	OPT_REF,
	OPT_SHA,
	OPT_REASON,
	OPT_BY,
	OPT_TOKEN_FILE,
	OPT_CA_FILE,
	OPT_BEFORE,
	OPT_AFTER,
	OPT_FOLLOW,
	OPT_FULL
};

/* What follows an option: nothing, a value, or a value that goes into a
 * JSON body, which must be UTF-8. */
enum opt_value { VALUE_NONE, VALUE_ANY, VALUE_TEXT };

static const struct {
	const char *name;
	enum opt_id id;
	enum opt_value takes_value;
} options[] = {
    {"--url", OPT_URL, VALUE_ANY},
    {"--limit", OPT_LIMIT, VALUE_ANY},
    {"--pipeline", OPT_PIPELINE, VALUE_ANY},
    {"--status", OPT_STATUS, VALUE_ANY},
    {"--json", OPT_JSON, VALUE_NONE},
    {"--help", OPT_HELP, VALUE_NONE},
    {"-h", OPT_HELP, VALUE_NONE},
    {"--version", OPT_VERSION, VALUE_NONE},
    {"--ref", OPT_REF, VALUE_TEXT},
    {"--sha", OPT_SHA, VALUE_TEXT},
    {"--reason", OPT_REASON, VALUE_TEXT},
    {"--by", OPT_BY, VALUE_TEXT},
    {"--token-file", OPT_TOKEN_FILE, VALUE_ANY},
    {"--ca-file", OPT_CA_FILE, VALUE_ANY},
    {"--before", OPT_BEFORE, VALUE_ANY},
    {"--after", OPT_AFTER, VALUE_ANY},
    {"--follow", OPT_FOLLOW, VALUE_NONE},
    {"-f", OPT_FOLLOW, VALUE_NONE},
    {"--full", OPT_FULL, VALUE_NONE},
};

enum ctl_command ctl_args_command(const char *s)
{
	if (strcmp(s, "runs") == 0)
		return CTL_CMD_RUNS;
	if (strcmp(s, "show") == 0)
		return CTL_CMD_SHOW;
	if (strcmp(s, "logs") == 0)
		return CTL_CMD_LOGS;
	if (strcmp(s, "cancel") == 0)
		return CTL_CMD_CANCEL;
	if (strcmp(s, "retry") == 0)
		return CTL_CMD_RETRY;
	if (strcmp(s, "trigger") == 0)
		return CTL_CMD_TRIGGER;
	if (strcmp(s, "pipelines") == 0)
		return CTL_CMD_PIPELINES;
	if (strcmp(s, "validate") == 0)
		return CTL_CMD_VALIDATE;
	if (strcmp(s, "approve") == 0)
		return CTL_CMD_APPROVE;
	if (strcmp(s, "reject") == 0)
		return CTL_CMD_REJECT;
	if (strcmp(s, "plan") == 0)
		return CTL_CMD_PLAN;
	if (strcmp(s, "token") == 0)
		return CTL_CMD_TOKEN;
	if (strcmp(s, "help") == 0)
		return CTL_CMD_HELP;
	if (strcmp(s, "promote") == 0)
		return CTL_CMD_PROMOTE;
	if (strcmp(s, "abort") == 0)
		return CTL_CMD_ABORT;
	if (strcmp(s, "rollback") == 0)
		return CTL_CMD_ROLLBACK;
	return CTL_CMD_NONE;
}

int ctl_url_scheme_ok(const char *url)
{
	url += strspn(url, CTL_BLANK);
	/* None at all is http, as libcurl takes it. */
	return !strstr(url, "://") || strncasecmp(url, "http://", 7) == 0 ||
	       strncasecmp(url, "https://", 8) == 0;
}

const char *ctl_args_url(const struct ctl_args *a)
{
	const char *env = getenv("SLUICE_URL");

	if (a->url)
		return a->url;
	if (env && env[strspn(env, CTL_BLANK)] != '\0')
		return env;
	return CTL_DEFAULT_URL;
}

const char *ctl_args_ca_file(const struct ctl_args *a)
{
	const char *env = getenv("SLUICE_CA_FILE");

	if (a->ca_file)
		return a->ca_file;
	return env && *env ? env : NULL;
}

/* Trims the blanks and line breaks around the token in s (a file's line
 * with its newline, a variable filled from a file or a secret that kept
 * one); -1 when nothing, or more than one word, is left. */
static int token_trim(char *s)
{
	size_t lead = strspn(s, CTL_BLANK);
	size_t len = strcspn(s + lead, CTL_BLANK);

	if (len == 0 || s[lead + len + strspn(s + lead + len, CTL_BLANK)] != '\0')
		return -1;
	memmove(s, s + lead, len);
	s[len] = '\0';
	return 0;
}

int ctl_args_token(const struct ctl_args *a, char *out, size_t outlen, char *err, size_t errlen)
{
	const char *env = getenv("SLUICE_TOKEN");

	out[0] = '\0';
	if (!a->token_file) {
		if (env && *env) {
			if (strlen(env) >= outlen) {
				snprintf(err, errlen, "SLUICE_TOKEN is too long to be a token");
				return -1;
			}
			snprintf(out, outlen, "%s", env);
			if (token_trim(out) < 0) {
				snprintf(err, errlen,
					 "SLUICE_TOKEN is not a token: blank, or with a space or "
					 "line break inside");
				out[0] = '\0';
				return -1;
			}
		}
		return 0;
	}
	FILE *f = fopen(a->token_file, "re");
	if (!f) {
		snprintf(err, errlen, "cannot read the token file %s: %s", a->token_file,
			 strerror(errno));
		return -1;
	}
	if (!fgets(out, (int)outlen, f))
		out[0] = '\0';
	/* A directory opens, and fails only here. */
	int read_errno = ferror(f) ? errno : 0;
	fclose(f);
	if (read_errno) {
		snprintf(err, errlen, "cannot read the token file %s: %s", a->token_file,
			 strerror(read_errno));
		out[0] = '\0';
		return -1;
	}
	if (token_trim(out) < 0) {
		snprintf(err, errlen, "the token file %s holds no token on its first line",
			 a->token_file);
		out[0] = '\0';
		return -1;
	}
	return 0;
}

static int parse_limit(const char *s, long *out, char *err, size_t errlen)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (*s == '\0' || *end != '\0' || errno || v <= 0 || v > INT_MAX) {
		snprintf(err, errlen, "--limit wants a positive number, not '%s'", s);
		return -1;
	}
	*out = v;
	return 0;
}

/* Whether s is UTF-8, as the JSON it goes into must be (a reason typed in
 * a Latin-1 terminal is not). */
static int utf8_text(const char *s)
{
	char *repaired = NULL;
	size_t len;
	int rc = utf8_repair(s, strlen(s), &repaired, &len);
	free(repaired);
	return rc == 0;
}

/* Handles the option at argv[*i] and advances *i past its value if it takes
 * one. Accepts "--name value" and "--name=value". */
static int parse_option(struct ctl_args *a, int argc, char **argv, int *i, char *err, size_t errlen)
{
	const char *arg = argv[*i];
	const char *eq = strchr(arg, '=');
	size_t name_len = eq ? (size_t)(eq - arg) : strlen(arg);
	const char *value = NULL;
	size_t k;

	for (k = 0; k < sizeof(options) / sizeof(options[0]); k++) {
		if (strlen(options[k].name) == name_len &&
		    strncmp(arg, options[k].name, name_len) == 0)
			break;
	}
	if (k == sizeof(options) / sizeof(options[0])) {
		snprintf(err, errlen, "unknown option '%s'", arg);
		return -1;
	}
	if (options[k].takes_value == VALUE_NONE && eq) {
		snprintf(err, errlen, "option %s takes no value", options[k].name);
		return -1;
	}
	if (options[k].takes_value != VALUE_NONE) {
		if (eq) {
			value = eq + 1;
		} else if (*i + 1 < argc) {
			value = argv[++*i];
		} else {
			snprintf(err, errlen, "option %s needs a value", options[k].name);
			return -1;
		}
		if (value[strspn(value, CTL_BLANK)] == '\0') {
			snprintf(err, errlen, "option %s needs a non-empty value", options[k].name);
			return -1;
		}
		if (options[k].takes_value == VALUE_TEXT && !utf8_text(value)) {
			snprintf(err, errlen, "option %s: the value is not UTF-8 text",
				 options[k].name);
			return -1;
		}
	}
	switch (options[k].id) {
	case OPT_URL:
		if (!ctl_url_scheme_ok(value)) {
			snprintf(err, errlen, "option --url: not an http:// or https:// URL");
			return -1;
		}
		a->url = value;
		break;
	case OPT_LIMIT:
		return parse_limit(value, &a->limit, err, errlen);
	case OPT_PIPELINE:
		a->pipeline = value;
		break;
	case OPT_STATUS:
		a->status = value;
		break;
	case OPT_JSON:
		a->json = 1;
		break;
	case OPT_HELP:
		a->help = 1;
		break;
	case OPT_VERSION:
		a->version = 1;
		break;
	case OPT_REF:
		a->ref = value;
		break;
	case OPT_SHA:
		a->sha = value;
		break;
	case OPT_REASON:
		a->reason = value;
		break;
	case OPT_BY:
		a->by = value;
		break;
	case OPT_TOKEN_FILE:
		a->token_file = value;
		break;
	case OPT_CA_FILE:
		a->ca_file = value;
		break;
	case OPT_BEFORE:
		a->before = value;
		break;
	case OPT_AFTER:
		a->after = value;
		break;
	case OPT_FOLLOW:
		a->follow = 1;
		break;
	case OPT_FULL:
		a->full = 1;
		break;
	}
	return 0;
}

/* RUN ENV of a command on a run's environment, which takes --reason and
 * --by and no other option than those also names (" (and --full)"). */
static int run_and_env(struct ctl_args *a, char **pos, int npos, const char *also, char *err,
		       size_t errlen)
{
	if (a->limit || a->pipeline || a->status || a->ref || a->sha || a->before || a->after ||
	    a->follow) {
		snprintf(err, errlen, "%s takes --reason and --by only%s", pos[0], also);
		return -1;
	}
	if (npos - 1 < 2) {
		snprintf(err, errlen, "%s: missing %s", pos[0], npos == 1 ? "RUN" : "ENV");
		return -1;
	}
	if (npos - 1 > 2) {
		snprintf(err, errlen, "%s: unexpected argument '%s'", pos[0], pos[3]);
		return -1;
	}
	if (!*pos[1] || !*pos[2]) {
		snprintf(err, errlen, "%s: arguments must not be empty", pos[0]);
		return -1;
	}
	a->run = pos[1];
	a->env = pos[2];
	return 0;
}

/* approve|reject RUN ENV --reason TEXT [--by NAME] */
static int check_decision(struct ctl_args *a, char **pos, int npos, char *err, size_t errlen)
{
	if (run_and_env(a, pos, npos, "", err, errlen) < 0)
		return -1;
	if (!a->reason) {
		snprintf(err, errlen,
			 "%s: missing --reason TEXT (it is recorded with the decision)", pos[0]);
		return -1;
	}
	return 0;
}

/* promote RUN ENV [--full], abort RUN ENV, rollback RUN ENV; each with
 * [--reason TEXT] [--by NAME] */
static int check_deploy(struct ctl_args *a, char **pos, int npos, char *err, size_t errlen)
{
	return run_and_env(a, pos, npos, a->cmd == CTL_CMD_PROMOTE ? " (and --full)" : "", err,
			   errlen);
}

/* retry RUN [STAGE|ENV], trigger PIPELINE --ref REF [--sha SHA], pipelines,
 * validate FILE... */
static int check_control(struct ctl_args *a, char **pos, int npos, char *err, size_t errlen)
{
	int least = a->cmd == CTL_CMD_PIPELINES || a->cmd == CTL_CMD_VALIDATE ? 0 : 1;
	int most = a->cmd == CTL_CMD_RETRY ? 2 : least;

	if (a->limit || a->pipeline || a->status || a->before || a->after) {
		snprintf(err, errlen,
			 "--limit, --pipeline, --status, --before and --after apply to runs only");
		return -1;
	}
	if (a->follow) {
		snprintf(err, errlen, "-f applies to logs only");
		return -1;
	}
	if (a->cmd != CTL_CMD_TRIGGER && (a->ref || a->sha)) {
		snprintf(err, errlen, "--ref and --sha apply to trigger only");
		return -1;
	}
	if (npos - 1 < least) {
		snprintf(err, errlen, "%s: missing %s", pos[0],
			 a->cmd == CTL_CMD_RETRY ? "RUN" : "PIPELINE");
		return -1;
	}
	if (npos - 1 > most) {
		snprintf(err, errlen, "%s: unexpected argument '%s'", pos[0], pos[most + 1]);
		return -1;
	}
	for (int i = 1; i < npos; i++) {
		if (*pos[i] == '\0') {
			snprintf(err, errlen, "%s: arguments must not be empty", pos[0]);
			return -1;
		}
	}
	switch (a->cmd) {
	case CTL_CMD_VALIDATE:
		if (!a->nfiles) {
			snprintf(err, errlen, "validate: missing FILE");
			return -1;
		}
		break;
	case CTL_CMD_TRIGGER:
		if (!a->ref) {
			snprintf(err, errlen, "trigger: missing --ref REF");
			return -1;
		}
		a->pipeline = pos[1];
		break;
	case CTL_CMD_RETRY:
		a->run = pos[1];
		a->stage = npos > 2 ? pos[2] : NULL;
		/* Only a deployment's retry is recorded with who and why. */
		if ((a->reason || a->by) && !a->stage) {
			snprintf(err, errlen,
				 "retry: --reason and --by apply to retry RUN ENV only");
			return -1;
		}
		break;
	default:
		break;
	}
	return 0;
}

/* plan FILE; token hash NAME ROLE: offline, without the API's options. */
static int check_offline(struct ctl_args *a, char **pos, int npos, char *err, size_t errlen)
{
	if (a->limit || a->pipeline || a->status || a->before || a->after || a->follow || a->ref ||
	    a->sha || a->reason || a->by) {
		snprintf(err, errlen, "%s takes no such option", pos[0]);
		return -1;
	}
	if (a->cmd == CTL_CMD_PLAN) {
		if (a->nfiles != 1) {
			snprintf(err, errlen,
				 a->nfiles ? "plan: one FILE at a time" : "plan: missing FILE");
			return -1;
		}
		return 0;
	}
	if (npos < 2 || strcmp(pos[1], "hash") != 0) {
		snprintf(err, errlen, "token: expected 'token hash NAME ROLE'");
		return -1;
	}
	if (npos != 4) {
		snprintf(err, errlen, "token hash: %s",
			 npos < 4 ? "missing NAME or ROLE" : "too many arguments");
		return -1;
	}
	a->name = pos[2];
	a->role = pos[3];
	return 0;
}

/* Checks the positional arguments and options against the command. */
static int check_command(struct ctl_args *a, char **pos, int npos, char *err, size_t errlen)
{
	static const char *const params[][2] = {[CTL_CMD_SHOW] = {"RUN", NULL},
						[CTL_CMD_LOGS] = {"RUN", "STAGE"},
						[CTL_CMD_CANCEL] = {"RUN", NULL}};
	int wanted;

	a->cmd = ctl_args_command(pos[0]);
	if (a->cmd == CTL_CMD_NONE) {
		snprintf(err, errlen, "unknown command '%s'", pos[0]);
		return -1;
	}
	if (a->cmd == CTL_CMD_HELP) {
		if (npos > 2) {
			snprintf(err, errlen, "help: unexpected argument '%s'", pos[2]);
			return -1;
		}
		a->topic = npos == 2 ? pos[1] : NULL;
		return 0;
	}
	if (a->help)
		return 0;
	if (a->full && a->cmd != CTL_CMD_PROMOTE) {
		snprintf(err, errlen, "--full applies to promote only");
		return -1;
	}
	/* Their output is text only: a script asking for JSON would be handed
	 * text to parse. */
	if (a->json && (a->cmd == CTL_CMD_VALIDATE || a->cmd == CTL_CMD_TOKEN)) {
		snprintf(err, errlen, "%s has no --json output", pos[0]);
		return -1;
	}
	if (a->cmd == CTL_CMD_APPROVE || a->cmd == CTL_CMD_REJECT)
		return check_decision(a, pos, npos, err, errlen);
	if (a->cmd == CTL_CMD_PROMOTE || a->cmd == CTL_CMD_ABORT || a->cmd == CTL_CMD_ROLLBACK)
		return check_deploy(a, pos, npos, err, errlen);
	if (a->cmd == CTL_CMD_PLAN || a->cmd == CTL_CMD_TOKEN)
		return check_offline(a, pos, npos, err, errlen);
	if ((a->reason || a->by) && a->cmd != CTL_CMD_RETRY) {
		snprintf(err, errlen,
			 "--reason and --by apply to approve, reject, promote, abort, retry "
			 "and rollback only");
		return -1;
	}
	if (a->cmd == CTL_CMD_RETRY || a->cmd == CTL_CMD_TRIGGER || a->cmd == CTL_CMD_PIPELINES ||
	    a->cmd == CTL_CMD_VALIDATE)
		return check_control(a, pos, npos, err, errlen);
	if (a->sha || (a->ref && a->cmd != CTL_CMD_RUNS)) {
		snprintf(err, errlen, "--ref and --sha apply to trigger only (and --ref to runs)");
		return -1;
	}
	if (a->follow && a->cmd != CTL_CMD_LOGS) {
		snprintf(err, errlen, "-f applies to logs only");
		return -1;
	}
	wanted = a->cmd == CTL_CMD_RUNS ? 0 : a->cmd == CTL_CMD_LOGS ? 2 : 1;
	if (npos - 1 < wanted) {
		snprintf(err, errlen, "%s: missing %s", pos[0], params[a->cmd][npos - 1]);
		return -1;
	}
	if (npos - 1 > wanted) {
		snprintf(err, errlen, "%s: unexpected argument '%s'", pos[0], pos[wanted + 1]);
		return -1;
	}
	if (a->cmd != CTL_CMD_RUNS &&
	    (a->limit || a->pipeline || a->status || a->before || a->after)) {
		snprintf(err, errlen,
			 "--limit, --pipeline, --status, --before and --after apply to runs only");
		return -1;
	}
	/* One page is older or newer than a run, not both. */
	if (a->before && a->after) {
		snprintf(err, errlen, "runs: --before or --after, not both");
		return -1;
	}
	if (a->cmd >= CTL_CMD_SHOW) {
		a->run = pos[1];
		if (*a->run == '\0') {
			snprintf(err, errlen, "RUN must not be empty");
			return -1;
		}
	}
	if (a->cmd == CTL_CMD_LOGS) {
		a->stage = pos[2];
		if (*a->stage == '\0') {
			snprintf(err, errlen, "STAGE must not be empty");
			return -1;
		}
	}
	return 0;
}

int ctl_args_parse(struct ctl_args *a, int argc, char **argv, char *err, size_t errlen)
{
	char *pos[4];
	int npos = 0;
	int options_done = 0;

	memset(a, 0, sizeof(*a));
	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i];

		if (!options_done && strcmp(arg, "--") == 0) {
			options_done = 1;
			continue;
		}
		if (!options_done && arg[0] == '-' && arg[1] != '\0') {
			if (parse_option(a, argc, argv, &i, err, errlen) < 0)
				return -1;
			continue;
		}
		if (npos == 1 && (ctl_args_command(pos[0]) == CTL_CMD_VALIDATE ||
				  ctl_args_command(pos[0]) == CTL_CMD_PLAN)) {
			if (a->nfiles == CTL_MAX_FILES) {
				snprintf(err, errlen, "validate: at most %d files at once",
					 CTL_MAX_FILES);
				return -1;
			}
			a->files[a->nfiles++] = argv[i];
			continue;
		}
		if (npos == (int)(sizeof(pos) / sizeof(pos[0]))) {
			snprintf(err, errlen, "too many arguments");
			return -1;
		}
		pos[npos++] = argv[i];
	}
	if (a->version)
		return 0;
	if (npos == 0) {
		if (a->help)
			return 0;
		snprintf(err, errlen, "missing command");
		return -1;
	}
	return check_command(a, pos, npos, err, errlen);
}
