/* sluice-registry: container registry housekeeping through the Registry
 * HTTP API v2; today its one command is the lifecycle policy job. */
#include <curl/curl.h>
#include <stdio.h>

#include "registry/lifecycle.h"
#include "registry/regargs.h"

#define EXIT_USAGE 2

int main(int argc, char **argv)
{
	struct regargs a;
	char err[1024] = "";
	int rc;

	if (regargs_parse(&a, argc, argv, err, sizeof(err)) < 0) {
		fprintf(stderr, "sluice-registry: %s\n", err);
		regargs_usage(stderr);
		regargs_clear(&a);
		return EXIT_USAGE;
	}
	if (a.version) {
		printf("sluice-registry %s\n", REGARGS_VERSION);
		regargs_clear(&a);
		return 0;
	}
	if (a.help) {
		regargs_usage(stdout);
		regargs_clear(&a);
		return 0;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		fprintf(stderr, "sluice-registry: cannot initialise libcurl\n");
		regargs_clear(&a);
		return 1;
	}
	rc = lifecycle_run(&a, stdout, stderr);
	curl_global_cleanup();
	regargs_clear(&a);
	return rc;
}
