/* sluicectl: command-line client of the sluice agent's HTTP API. */
#include <curl/curl.h>
#include <stdio.h>

#include "ctl/cli.h"

int main(int argc, char **argv)
{
	int rc;

	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		fprintf(stderr, "sluicectl: cannot initialise libcurl\n");
		return 1;
	}
	rc = ctl_cli_main(argc, argv, stdout, stderr);
	curl_global_cleanup();
	return rc;
}
