/* regargs: getopt_long over sluice-registry's options. */
#include "registry/regargs.h"

#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "lib/curlev.h"
#include "registry/regscan.h"

#define KEEP_LAST_MAX 100000
#define PAGE_SIZE_MAX 10000
/* Ten years: a longer age is a mistake rather than a policy. */
#define EXPIRE_MAX_MS (3650LL * 24 * 3600 * 1000)

enum {
	OPT_REGISTRY = 256,
	OPT_REPOSITORY,
	OPT_KEEP_LAST,
	OPT_TAG_PATTERN,
	OPT_EXPIRE,
	OPT_KEEP,
	OPT_WHOLE_IMAGES,
	OPT_STATE,
	OPT_TOKEN_FILE,
	OPT_USER_FILE,
	OPT_CA_FILE,
	OPT_PAGE_SIZE,
	OPT_DRY_RUN,
	OPT_JSON,
	OPT_VERSION,
};

static const struct option options[] = {
    {"registry", required_argument, NULL, OPT_REGISTRY},
    {"repository", required_argument, NULL, OPT_REPOSITORY},
    {"keep-last", required_argument, NULL, OPT_KEEP_LAST},
    {"tag-pattern", required_argument, NULL, OPT_TAG_PATTERN},
    {"expire-untagged", required_argument, NULL, OPT_EXPIRE},
    {"keep", required_argument, NULL, OPT_KEEP},
    {"whole-images", no_argument, NULL, OPT_WHOLE_IMAGES},
    {"state", required_argument, NULL, OPT_STATE},
    {"token-file", required_argument, NULL, OPT_TOKEN_FILE},
    {"user-file", required_argument, NULL, OPT_USER_FILE},
    {"ca-file", required_argument, NULL, OPT_CA_FILE},
    {"page-size", required_argument, NULL, OPT_PAGE_SIZE},
    {"dry-run", no_argument, NULL, OPT_DRY_RUN},
    {"json", no_argument, NULL, OPT_JSON},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, OPT_VERSION},
    {NULL, 0, NULL, 0},
};

void regargs_usage(FILE *f)
{
	fputs("usage: sluice-registry lifecycle --registry URL --repository NAME\n"
	      "           [--keep-last N [--tag-pattern GLOB]... [--whole-images]]\n"
	      "           [--expire-untagged AGE] [--keep TAG]... [--state FILE]\n"
	      "           [--dry-run] [--json]\n"
	      "           [--token-file FILE | --user-file FILE] [--ca-file FILE]\n"
	      "           [--page-size N]\n"
	      "       sluice-registry --help | --version\n"
	      "\n"
	      "Deletes the tags and manifests a lifecycle policy names, through the\n"
	      "Registry HTTP API v2. --keep-last N keeps the N newest production tags\n"
	      "(matching a --tag-pattern, default every tag) by their image's created\n"
	      "time; --whole-images deletes the image of a production tag beyond them\n"
	      "with every tag it has, unless a kept tag of a pattern or --keep TAG\n"
	      "reaches it; --expire-untagged AGE (\"7d\") deletes manifests that lost\n"
	      "their last tag, once first seen and created at least AGE ago (the state\n"
	      "file remembers them); --keep TAG is never deleted. --dry-run only prints.\n"
	      "Exit status: 0 done, 1 failed, 2 usage. See sluice-registry(8).\n",
	      f);
}

static int append(const char ***list, size_t *n, const char *s)
{
	const char **grown = realloc(*list, (*n + 1) * sizeof(char *));

	if (!grown)
		return -1;
	grown[(*n)++] = s;
	*list = grown;
	return 0;
}

static int parse_long(const char *s, long min, long max, long *out)
{
	char *end;
	long v;

	if (*s < '0' || *s > '9')
		return -1;
	v = strtol(s, &end, 10);
	if (*end || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

/* Checks that the options agree and fills the defaults. */
static int check(struct regargs *a, char *err, size_t errlen)
{
	char show[512];

	if (!a->command) {
		snprintf(err, errlen, "a command is needed: lifecycle");
		return -1;
	}
	if (!a->registry || !a->repository) {
		snprintf(err, errlen, "lifecycle: --registry and --repository are needed");
		return -1;
	}
	if (curlev_show_url(a->registry, show, sizeof(show), err, errlen) < 0) {
		char why[256];
		snprintf(why, sizeof(why), "%s", err);
		snprintf(err, errlen, "--registry %s: %s", a->registry, why);
		return -1;
	}
	if (!regscan_repository_ok(a->repository)) {
		snprintf(err, errlen,
			 "--repository %s: not a repository name (lower-case letters, digits, "
			 "separators . _ - and /)",
			 a->repository);
		return -1;
	}
	if (a->keep_last == 0 && a->expire_ms == 0) {
		snprintf(err, errlen,
			 "lifecycle: nothing to do: give --keep-last, --expire-untagged or both");
		return -1;
	}
	if (a->npatterns && a->keep_last == 0) {
		snprintf(err, errlen, "--tag-pattern only applies with --keep-last");
		return -1;
	}
	if (a->whole_images && a->keep_last == 0) {
		snprintf(err, errlen, "--whole-images only applies with --keep-last");
		return -1;
	}
	if (a->token_file && a->user_file) {
		snprintf(err, errlen, "--token-file and --user-file exclude each other");
		return -1;
	}
	if (a->keep_last > 0 && a->npatterns == 0 && append(&a->patterns, &a->npatterns, "*") < 0) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

int regargs_parse(struct regargs *a, int argc, char **argv, char *err, size_t errlen)
{
	int c;
	long long ms;

	memset(a, 0, sizeof(*a));
	a->page_size = 100;
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, ":h", options, NULL)) != -1) {
		switch (c) {
		case OPT_REGISTRY:
			a->registry = optarg;
			break;
		case OPT_REPOSITORY:
			a->repository = optarg;
			break;
		case OPT_KEEP_LAST:
			if (parse_long(optarg, 1, KEEP_LAST_MAX, &a->keep_last) < 0) {
				snprintf(err, errlen,
					 "--keep-last %s: expected a number from 1 to %d", optarg,
					 KEEP_LAST_MAX);
				return -1;
			}
			break;
		case OPT_TAG_PATTERN:
		case OPT_KEEP:
			if (!*optarg || strlen(optarg) > 128) {
				snprintf(err, errlen, "--%s: expected a tag or a glob",
					 c == OPT_KEEP ? "keep" : "tag-pattern");
				return -1;
			}
			if (append(c == OPT_KEEP ? &a->keep : &a->patterns,
				   c == OPT_KEEP ? &a->nkeep : &a->npatterns, optarg) < 0) {
				snprintf(err, errlen, "out of memory");
				return -1;
			}
			break;
		case OPT_EXPIRE:
			ms = config_parse_duration_ms(optarg);
			if (ms <= 0) {
				snprintf(
				    err, errlen,
				    "--expire-untagged %s: expected an age like 7d, 36h or 90m",
				    optarg);
				return -1;
			}
			if (ms > EXPIRE_MAX_MS) {
				snprintf(err, errlen, "--expire-untagged %s: at most %lldd", optarg,
					 EXPIRE_MAX_MS / (24LL * 3600 * 1000));
				return -1;
			}
			a->expire_ms = ms;
			break;
		case OPT_WHOLE_IMAGES:
			a->whole_images = 1;
			break;
		case OPT_STATE:
			a->state = optarg;
			break;
		case OPT_TOKEN_FILE:
			a->token_file = optarg;
			break;
		case OPT_USER_FILE:
			a->user_file = optarg;
			break;
		case OPT_CA_FILE:
			a->ca_file = optarg;
			break;
		case OPT_PAGE_SIZE:
			if (parse_long(optarg, 1, PAGE_SIZE_MAX, &a->page_size) < 0) {
				snprintf(err, errlen,
					 "--page-size %s: expected a number from 1 to %d", optarg,
					 PAGE_SIZE_MAX);
				return -1;
			}
			break;
		case OPT_DRY_RUN:
			a->dry_run = 1;
			break;
		case OPT_JSON:
			a->json = 1;
			break;
		case 'h':
			a->help = 1;
			return 0;
		case OPT_VERSION:
			a->version = 1;
			return 0;
		case ':':
			snprintf(err, errlen, "%s needs a value", argv[optind - 1]);
			return -1;
		default:
			snprintf(err, errlen, "unknown option %s", argv[optind - 1]);
			return -1;
		}
	}
	if (optind < argc) {
		a->command = argv[optind++];
		if (strcmp(a->command, "help") == 0) {
			a->help = 1;
			return 0;
		}
		if (strcmp(a->command, "lifecycle") != 0) {
			snprintf(err, errlen, "unknown command '%s'", a->command);
			return -1;
		}
	}
	if (optind < argc) {
		snprintf(err, errlen, "unexpected argument '%s'", argv[optind]);
		return -1;
	}
	return check(a, err, errlen);
}

void regargs_clear(struct regargs *a)
{
	free(a->patterns);
	free(a->keep);
	a->patterns = NULL;
	a->keep = NULL;
	a->npatterns = a->nkeep = 0;
}
