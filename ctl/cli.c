/* cli: argument parsing, help and version, then one command. */
#include "ctl/cli.h"

#include <string.h>

#include "ctl/args.h"
#include "ctl/commands.h"
#include "ctl/help.h"
#include "ctl/plan.h"
#include "ctl/validate.h"
#include "ctl/version.h"
#include "lib/tokens.h"

#define EXIT_USAGE  2
#define MESSAGE_MAX 1024

/* token hash NAME ROLE: a new token on err (for the person who runs it, not
 * for a file), its line for the tokens file on out. */
static int token_hash(const struct ctl_args *a, FILE *out, FILE *err)
{
	char token[TOKENS_TOKEN_MAX], line[TOKENS_NAME_MAX + 100];
	enum tokens_role role = tokens_role_parse(a->role);

	if (!tokens_name_ok(a->name)) {
		fprintf(err,
			"sluicectl: token hash: NAME must be 1 to %d letters, digits or "
			"_.@- characters\n",
			TOKENS_NAME_MAX - 1);
		return EXIT_USAGE;
	}
	if (role == TOKENS_NONE) {
		fprintf(err, "sluicectl: token hash: ROLE is read, approve or admin\n");
		return EXIT_USAGE;
	}
	if (tokens_generate(token, sizeof(token)) < 0 ||
	    tokens_line(a->name, role, token, line, sizeof(line)) < 0) {
		fprintf(err, "sluicectl: cannot make a token\n");
		return 1;
	}
	/* The line first: a token whose line did not reach the file (a full
	 * disk) would be handed out and then refused. */
	fprintf(out, "%s\n", line);
	if (fflush(out) != 0 || ferror(out)) {
		explicit_bzero(token, sizeof(token));
		fprintf(err, "sluicectl: token hash: cannot write the token's line: write error\n");
		return 1;
	}
	fprintf(err, "token for %s (give it to its user; only its hash is kept):\n%s\n", a->name,
		token);
	explicit_bzero(token, sizeof(token));
	return 0;
}

/* The command a parsed; its exit status. */
static int run(struct ctl_args *a, FILE *out, FILE *err)
{
	char msg[MESSAGE_MAX] = "";

	if (a->version) {
		fprintf(out, "sluicectl %s\n", CTL_VERSION);
		return 0;
	}
	if (a->cmd == CTL_CMD_HELP && a->topic) {
		if (ctl_help_command(out, ctl_args_command(a->topic)) < 0) {
			fprintf(err, "sluicectl: unknown command '%s'\n", a->topic);
			ctl_help_brief(err);
			return EXIT_USAGE;
		}
		return 0;
	}
	if (a->cmd == CTL_CMD_HELP || a->cmd == CTL_CMD_NONE) {
		ctl_help_usage(out);
		return 0;
	}
	if (a->help) {
		ctl_help_command(out, a->cmd);
		return 0;
	}
	/* Offline: no agent is asked. */
	if (a->cmd == CTL_CMD_VALIDATE)
		return ctl_validate(a->files, a->nfiles, out, err);
	if (a->cmd == CTL_CMD_PLAN)
		return ctl_plan(a->files[0], a->json, out, err);
	if (a->cmd == CTL_CMD_TOKEN)
		return token_hash(a, out, err);
	if (ctl_commands_run(a, out, msg, sizeof(msg)) < 0) {
		fflush(out);
		fprintf(err, "sluicectl: %s\n", msg);
		return 1;
	}
	return 0;
}

int ctl_cli_main(int argc, char **argv, FILE *out, FILE *err)
{
	struct ctl_args a;
	char msg[MESSAGE_MAX] = "";

	if (ctl_args_parse(&a, argc, argv, msg, sizeof(msg)) < 0) {
		fprintf(err, "sluicectl: %s\n", msg);
		ctl_help_brief(err);
		return EXIT_USAGE;
	}
	int rc = run(&a, out, err);
	/* Whatever printed it, output cut short (a full disk) fails the
	 * command; a failure has already said why. */
	if (rc == 0 && (fflush(out) != 0 || ferror(out))) {
		fprintf(err, "sluicectl: write error\n");
		return 1;
	}
	return rc;
}
