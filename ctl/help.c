/* help: usage text for sluicectl and each of its commands. */
#include "ctl/help.h"

void ctl_help_usage(FILE *out)
{
	fputs("usage: sluicectl [--url URL] [--token-file FILE] [--json] COMMAND [ARGS]\n"
	      "\n"
	      "Commands:\n"
	      "  runs [--limit N] [--pipeline P] [--status S] [--ref R]\n"
	      "       [--before RUN|--after RUN]                list runs, newest first\n"
	      "  show RUN                                       one run and its stages\n"
	      "  logs RUN STAGE [-f]                            the log of one stage\n"
	      "  cancel RUN                                     stop a run: nothing more starts\n"
	      "  retry RUN [STAGE]                              run failed stages again, same sha\n"
	      "  retry RUN ENV [--reason TEXT]                  deploy a failed or aborted\n"
	      "                                                 deployment again from the start\n"
	      "  trigger PIPELINE --ref REF [--sha SHA]         start a run by hand\n"
	      "  pipelines                                      the pipelines the agent loaded\n"
	      "  validate FILE...                               check files offline\n"
	      "  plan FILE                                      stage graph and environments\n"
	      "  token hash NAME ROLE                           a new API token and its line\n"
	      "  approve RUN ENV --reason TEXT [--by NAME]      let a promotion go on\n"
	      "  reject RUN ENV --reason TEXT [--by NAME]       stop a promotion and its run\n"
	      "  promote RUN ENV [--full] [--reason TEXT]       end a rollout's pause (--full:\n"
	      "                                                 skip to 100 %)\n"
	      "  abort RUN ENV [--reason TEXT]                  stop a rollout, traffic to stable\n"
	      "  rollback RUN ENV [--reason TEXT]               put ENV's previous release back\n"
	      "  help [COMMAND]                                 this text, or a command's\n"
	      "\n"
	      "Options (before or after the command):\n"
	      "  --url URL      agent address (default $SLUICE_URL, else " CTL_DEFAULT_URL ")\n"
	      "  --token-file FILE\n"
	      "                 API token from the first line of FILE (default $SLUICE_TOKEN)\n"
	      "  --ca-file FILE CA certificates (PEM) that verify an https agent\n"
	      "                 (default $SLUICE_CA_FILE, else the system's)\n"
	      "  --json         print the API's JSON instead of a table\n"
	      "  -h, --help     show help\n"
	      "  --version      show the version\n"
	      "\n"
	      "Exit status: 0 success, 1 failure, 2 usage error.\n",
	      out);
}

void ctl_help_brief(FILE *out)
{
	fputs("usage: sluicectl [--url URL] [--token-file FILE] [--json] runs|show RUN|\n"
	      "       logs RUN STAGE [-f]|cancel RUN|retry RUN [STAGE]|\n"
	      "       trigger PIPELINE --ref REF [--sha SHA]|pipelines|validate FILE...|\n"
	      "       plan FILE|token hash NAME ROLE|\n"
	      "       approve|reject RUN ENV --reason TEXT [--by NAME]|\n"
	      "       promote RUN ENV [--full]|abort|rollback RUN ENV|retry RUN ENV|\n"
	      "       help [COMMAND]\n"
	      "Run 'sluicectl --help' for the options.\n",
	      out);
}

int ctl_help_command(FILE *out, enum ctl_command cmd)
{
	switch (cmd) {
	case CTL_CMD_RUNS:
		fputs("usage: sluicectl runs [--limit N] [--pipeline P] [--status S] [--ref R]\n"
		      "                      [--before RUN|--after RUN] [--json]\n"
		      "\n"
		      "Lists runs, newest first: RUN, PIPELINE, REF, SHA, STATUS, CREATED (UTC)\n"
		      "and DURATION (\"-\" while the run is not finished).\n"
		      "\n"
		      "  --limit N      at most N runs\n"
		      "  --pipeline P   only runs of pipeline P\n"
		      "  --status S     only runs in status S (queued, running, waiting,\n"
		      "                 succeeded, failed, cancelled, rejected, superseded,\n"
		      "                 aborted)\n"
		      "  --ref R        only runs of ref R (refs/heads/main, or main for the\n"
		      "                 branch or tag main)\n"
		      "  --before RUN   the page of the runs just older than RUN (a table ends\n"
		      "                 with \"more: --before RUN\" when there is one)\n"
		      "  --after RUN    the page of the runs just newer than RUN, still newest\n"
		      "                 first (a table ends with \"newer: --after RUN\" when\n"
		      "                 there is one)\n"
		      "  --json         the API's response, indented\n",
		      out);
		return 0;
	case CTL_CMD_SHOW:
		fputs("usage: sluicectl show RUN [--json]\n"
		      "\n"
		      "Shows one run (pipeline, repository, event, ref, sha, status, times)\n"
		      "and a table of its stages: STAGE, STATUS, ATTEMPT, EXIT, STARTED,\n"
		      "DURATION; then, for each stage that had more than one attempt, its\n"
		      "ended attempts with their WORKER; then, when the pipeline has\n"
		      "environments, ENVIRONMENT, STATUS, STARTED, DURATION, APPROVAL\n"
		      "(decision, by whom, why) and HELD UNTIL (a deny window); then, for\n"
		      "deployments with a strategy, STRATEGY, STEP, PHASE, WEIGHTS, PAUSED\n"
		      "UNTIL, CHECKS and ACTIONS (the commands that apply now), and their\n"
		      "analyses: MEASURED value, CONDITION and RESULT.\n"
		      "\n"
		      "  --json         the API's response, indented\n",
		      out);
		return 0;
	case CTL_CMD_LOGS:
		fputs("usage: sluicectl logs RUN STAGE [-f] [--json]\n"
		      "\n"
		      "Prints the log of one stage of a run, stdout and stderr lines alike,\n"
		      "to standard output.\n"
		      "\n"
		      "  -f, --follow   keep printing lines as the stage writes them, until it\n"
		      "                 has finished (a dropped connection, or the agent's\n"
		      "                 Redis away for a while, is resumed where it stopped)\n"
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
	case CTL_CMD_RETRY:
		fputs("usage: sluicectl retry RUN [STAGE] [--json]\n"
		      "       sluicectl retry RUN ENV [--reason TEXT] [--by NAME] [--json]\n"
		      "\n"
		      "Runs again, on the same sha, every stage of a finished run that failed,\n"
		      "timed out, was cancelled or lost (or only STAGE, which may also be\n"
		      "retried while the run is still going), and the stages skipped because\n"
		      "of them. Stages that succeeded keep their results and are not run\n"
		      "again. Attempt numbers continue. Prints the run as show does.\n"
		      "\n"
		      "With an environment ENV of the run instead of a stage (or deploy@ENV,\n"
		      "which is never a stage), deploys the run to ENV again from the start,\n"
		      "after that deployment failed or was aborted: the next attempt, the\n"
		      "promotion deploying and the run running again, the environment locked\n"
		      "for it (refused while another run holds the lock, or when a newer run\n"
		      "has been deployed there since). Prints one line.\n"
		      "\n"
		      "  --reason TEXT  why, recorded with the command (ENV only)\n"
		      "  --by NAME      who (default: anonymous; the token's name with a token)\n"
		      "  --json         the API's response, indented\n",
		      out);
		return 0;
	case CTL_CMD_PROMOTE:
		fputs("usage: sluicectl promote RUN ENV [--full] [--reason TEXT] [--by NAME]\n"
		      "                         [--json]\n"
		      "\n"
		      "Ends the pause the rollout of RUN to ENV waits at (a canary's pause: {},\n"
		      "a blue/green deployment waiting to switch) and lets it go on to its next\n"
		      "step; a rollout parked at a pause is queued again for a worker. Fails\n"
		      "when the rollout is not paused, unless --full is given: then the\n"
		      "remaining steps and analyses are skipped and the new release gets all\n"
		      "the traffic, once it is applied and verified (what runs before that is\n"
		      "not interrupted). A blue/green rollout that has switched and waits its\n"
		      "scale-down delay has nothing left to promote: refused, --full or not.\n"
		      "Prints one line: what was sent and where the deployment stands.\n"
		      "\n"
		      "  --full         skip the remaining steps: 100 % once the canary is ready\n"
		      "  --reason TEXT  why, recorded with the command\n"
		      "  --by NAME      who (default: anonymous; the token's name with a token)\n"
		      "  --json         the API's response, indented\n",
		      out);
		return 0;
	case CTL_CMD_ABORT:
		fputs("usage: sluicectl abort RUN ENV [--reason TEXT] [--by NAME] [--json]\n"
		      "\n"
		      "Aborts the rollout of RUN to ENV while it is in progress (queued,\n"
		      "running or paused): its worker sends the traffic back to the stable\n"
		      "release, scales the new one down and runs the rollback commands of the\n"
		      "pre hooks that ran; the deployment and the run end aborted. retry RUN\n"
		      "ENV deploys it again. A rollout past its point of no return (the\n"
		      "canary being promoted to stable, the blue/green post checks passed)\n"
		      "ignores it and finishes; its log says so. Prints one line.\n"
		      "\n"
		      "  --reason TEXT  why, recorded with the command\n"
		      "  --by NAME      who (default: anonymous; the token's name with a token)\n"
		      "  --json         the API's response, indented\n",
		      out);
		return 0;
	case CTL_CMD_ROLLBACK:
		fputs("usage: sluicectl rollback RUN ENV [--reason TEXT] [--by NAME] [--json]\n"
		      "\n"
		      "Puts ENV's previous release back when RUN is its current one: the\n"
		      "deployment's provider restores the previous image, without steps or\n"
		      "analysis, and the previous run is current again. RUN must have\n"
		      "finished and ENV must not be locked by another deployment. Prints one\n"
		      "line.\n"
		      "\n"
		      "  --reason TEXT  why, recorded with the command\n"
		      "  --by NAME      who (default: anonymous; the token's name with a token)\n"
		      "  --json         the API's response, indented\n",
		      out);
		return 0;
	case CTL_CMD_TRIGGER:
		fputs("usage: sluicectl trigger PIPELINE --ref REF [--sha SHA] [--json]\n"
		      "\n"
		      "Starts a run of PIPELINE (event \"manual\") for REF: a branch name,\n"
		      "refs/heads/NAME or refs/tags/NAME. Without --sha the agent asks the\n"
		      "repository where REF points (git ls-remote). Prints the run as show\n"
		      "does.\n"
		      "\n"
		      "  --ref REF      the branch or tag to build\n"
		      "  --sha SHA      the commit to build (40 hexadecimal digits, 64 in a\n"
		      "                 SHA-256 repository)\n"
		      "  --json         the API's response, indented\n",
		      out);
		return 0;
	case CTL_CMD_PIPELINES:
		fputs("usage: sluicectl pipelines [--json]\n"
		      "\n"
		      "Lists the pipelines the agent has loaded: PIPELINE, REPOSITORY,\n"
		      "EVENTS, STAGES and ENVIRONMENTS (the promotion chain).\n"
		      "\n"
		      "  --json         the API's response, with each pipeline's definition\n"
		      "                 at /api/v1/pipelines/NAME\n",
		      out);
		return 0;
	case CTL_CMD_VALIDATE:
		fputs("usage: sluicectl validate FILE...\n"
		      "\n"
		      "Checks pipeline files and sluice.yaml files offline, with the agent's\n"
		      "own loader: a file with stages: or trigger: is a pipeline, any other\n"
		      "a sluice.yaml, checked together with the pipelines of its\n"
		      "pipelines_dir and the files the agent reads as it starts (API tokens,\n"
		      "GitHub token, TLS certificate and key). Prints \"FILE: ok (...)\" for\n"
		      "each valid file and each error as FILE:LINE:COLUMN: KEY: MESSAGE.\n"
		      "Exit status 0 when every file is valid, 1 otherwise.\n",
		      out);
		return 0;
	case CTL_CMD_APPROVE:
	case CTL_CMD_REJECT:
		fputs("usage: sluicectl approve|reject RUN ENV --reason TEXT [--by NAME] [--json]\n"
		      "\n"
		      "Decides the promotion of RUN to environment ENV, which must be waiting\n"
		      "for an approval. approve lets it go on to its next gates (a deny\n"
		      "window, the environment's lock) and deploy; reject ends it and the run\n"
		      "as rejected. Who, when and why are recorded with the decision.\n"
		      "\n"
		      "  --reason TEXT  why (required)\n"
		      "  --by NAME      who decides (default: anonymous; the token's name with a\n"
		      "                 token)\n"
		      "  --json         the API's response, indented\n",
		      out);
		return 0;
	case CTL_CMD_PLAN:
		fputs("usage: sluicectl plan FILE [--json]\n"
		      "\n"
		      "Shows, offline, what a pipeline file will do: its stages in dependency\n"
		      "order (STEP: stages of one step may run in parallel; KIND, NEEDS, WHEN),\n"
		      "then its environments in promotion order with the gates each\n"
		      "deployment passes (deny windows, approval) and how it deploys. The\n"
		      "file is loaded as validate loads it; an invalid file fails with its\n"
		      "error, a sluice.yaml as no pipeline file.\n"
		      "\n"
		      "  --json         the plan as JSON: steps, environments\n",
		      out);
		return 0;
	case CTL_CMD_TOKEN:
		fputs("usage: sluicectl token hash NAME ROLE\n"
		      "\n"
		      "Makes a new random API token for NAME with ROLE (read, approve or\n"
		      "admin). The token goes to standard error, for you to hand over; the\n"
		      "line for the agent's api.tokens_file (NAME ROLE SHA256) goes to\n"
		      "standard output, so that\n"
		      "  sluicectl token hash ci admin >> /etc/sluice/tokens\n"
		      "stores only its hash. Reload the agent (SIGHUP) to use it.\n",
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
