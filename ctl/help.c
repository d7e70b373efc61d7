/* help: usage text for sluicectl and each of its commands. */
#include "ctl/help.h"

void ctl_help_usage(FILE *out)
{
	fputs("usage: sluicectl [--url URL] [--json] COMMAND [ARGS]\n"
	      "\n"
	      "Commands:\n"
	      "  runs [--limit N] [--pipeline P] [--status S]   list runs, newest first\n"
	      "  show RUN                                       one run and its stages\n"
	      "  logs RUN STAGE                                 the log of one stage\n"
	      "  cancel RUN                                     stop a run: nothing more starts\n"
	      "  help [COMMAND]                                 this text, or a command's\n"
	      "\n"
	      "Options (before or after the command):\n"
	      "  --url URL      agent address (default $SLUICE_URL, else " CTL_DEFAULT_URL ")\n"
	      "  --json         print the API's JSON instead of a table\n"
	      "  -h, --help     show help\n"
	      "  --version      show the version\n"
	      "\n"
	      "Exit status: 0 success, 1 failure, 2 usage error.\n",
	      out);
}

void ctl_help_brief(FILE *out)
{
	fputs("usage: sluicectl [--url URL] [--json] runs|show RUN|logs RUN STAGE|cancel RUN|"
	      "help [COMMAND]\n"
	      "Run 'sluicectl --help' for the options.\n",
	      out);
}

int ctl_help_command(FILE *out, enum ctl_command cmd)
{
	switch (cmd) {
	case CTL_CMD_RUNS:
		fputs("usage: sluicectl runs [--limit N] [--pipeline P] [--status S] [--json]\n"
		      "\n"
		      "Lists runs, newest first: RUN, PIPELINE, REF, SHA, STATUS, CREATED (UTC)\n"
		      "and DURATION (\"-\" while the run is not finished).\n"
		      "\n"
		      "  --limit N      at most N runs\n"
		      "  --pipeline P   only runs of pipeline P\n"
		      "  --status S     only runs in status S (queued, running, succeeded,\n"
		      "                 failed, cancelled)\n"
		      "  --json         the API's response, indented\n",
		      out);
		return 0;
	case CTL_CMD_SHOW:
		fputs("usage: sluicectl show RUN [--json]\n"
		      "\n"
		      "Shows one run (pipeline, repository, event, ref, sha, status, times)\n"
		      "and a table of its stages: STAGE, STATUS, ATTEMPT, EXIT, STARTED,\n"
		      "DURATION.\n"
		      "\n"
		      "  --json         the API's response, indented\n",
		      out);
		return 0;
	case CTL_CMD_LOGS:
		fputs("usage: sluicectl logs RUN STAGE [--json]\n"
		      "\n"
		      "Prints the log of one stage of a run, stdout and stderr lines alike,\n"
		      "to standard output.\n"
		      "\n"
		      "  --json         one JSON object a line: id, time, stream, line\n",
		      out);
		return 0;
	case CTL_CMD_CANCEL:
		fputs("usage: sluicectl cancel RUN [--json]\n"
		      "\n"
		      "Cancels a run: stages not started yet are cancelled, running ones are\n"
		      "stopped by their workers within a second, nothing more starts. Prints\n"
		      "the run as show does. Fails when the run has already finished.\n"
		      "\n"
		      "  --json         the API's response, indented\n",
		      out);
		return 0;
	case CTL_CMD_HELP:
		fputs("usage: sluicectl help [COMMAND]\n"
		      "\n"
		      "Shows the general help, or the help of COMMAND.\n",
		      out);
		return 0;
	case CTL_CMD_NONE:
		break;
	}
	return -1;
}
