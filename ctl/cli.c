/* cli: argument parsing, help and version, then one command. */
#include "ctl/cli.h"

#include "ctl/args.h"
#include "ctl/commands.h"
#include "ctl/help.h"
#include "ctl/validate.h"
#include "ctl/version.h"

#define EXIT_USAGE  2
#define MESSAGE_MAX 1024

int ctl_cli_main(int argc, char **argv, FILE *out, FILE *err)
{
	struct ctl_args a;
	char msg[MESSAGE_MAX] = "";

	if (ctl_args_parse(&a, argc, argv, msg, sizeof(msg)) < 0) {
		fprintf(err, "sluicectl: %s\n", msg);
		ctl_help_brief(err);
		return EXIT_USAGE;
	}
	if (a.version) {
		fprintf(out, "sluicectl %s\n", CTL_VERSION);
		return 0;
	}
	if (a.cmd == CTL_CMD_HELP && a.topic) {
		if (ctl_help_command(out, ctl_args_command(a.topic)) < 0) {
			fprintf(err, "sluicectl: unknown command '%s'\n", a.topic);
			ctl_help_brief(err);
			return EXIT_USAGE;
		}
		return 0;
	}
	if (a.cmd == CTL_CMD_HELP || a.cmd == CTL_CMD_NONE) {
		ctl_help_usage(out);
		return 0;
	}
	if (a.help) {
		ctl_help_command(out, a.cmd);
		return 0;
	}
	/* Offline: no agent is asked. */
	if (a.cmd == CTL_CMD_VALIDATE)
		return ctl_validate(a.files, a.nfiles, out, err);
	if (ctl_commands_run(&a, out, msg, sizeof(msg)) < 0) {
		fflush(out);
		fprintf(err, "sluicectl: %s\n", msg);
		return 1;
	}
	if (fflush(out) != 0 || ferror(out)) {
		fprintf(err, "sluicectl: write error\n");
		return 1;
	}
	return 0;
}
