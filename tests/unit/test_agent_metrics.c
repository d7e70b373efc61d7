/* Route labels of the agent's HTTP metrics: templates, never raw paths. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "agent/agent_metrics.h"

static void route_is(const char *path, const char *want)
{
	char out[96];
	agent_metrics_route(path, out, sizeof(out));
	assert_string_equal(out, want);
}

static void ids_become_placeholders(void **state)
{
	(void)state;
	route_is("/api/v1/runs", "/api/v1/runs");
	route_is("/api/v1/runs/r_01a2162354b112a84800a982", "/api/v1/runs/{id}");
	route_is("/api/v1/runs/r_1/stages/build/log", "/api/v1/runs/{id}/stages/{id}/log");
	route_is("/api/v1/runs/r_1/environments/staging/approve",
		 "/api/v1/runs/{id}/environments/{id}/approve");
	route_is("/api/v1/runs/r_1/cancel", "/api/v1/runs/{id}/cancel");
	route_is("/hooks/github", "/hooks/github");
	route_is("/metrics", "/metrics");
	route_is("/healthz", "/healthz");
	route_is("/", "/");
	route_is("/api/v1/pipelines/app/trigger", "/api/v1/pipelines/{id}/trigger");
	route_is("/api/v1/pipelines/validate", "/api/v1/pipelines/validate");
	route_is("/runs/r_01a2162354b112a84800a982", "/runs/{id}");
	route_is("/assets/app.js", "/assets/{id}");
}

static void paths_outside_the_endpoints_are_other(void **state)
{
	(void)state;
	route_is("/wp-admin/setup.php", "other");
	route_is("/favicon.ico", "/favicon.ico");
	route_is("/api/v1/a/b/c/d/e/f/g/h", "other"); /* deeper than any endpoint */
	/* Names of endpoints in another order or place are no endpoint: a
	 * client could otherwise make series without end. */
	route_is("/api/runs/log/cancel", "other");
	route_is("/api/v1/runs/r_1/log", "other");
	route_is("/api/v1/runs/", "other");
	route_is("/metrics/api/v1", "other");
	route_is("/hooks/runs", "other");
	route_is("/healthz/", "other");
	route_is("", "other");
	route_is(NULL, "other");
	route_is("relative", "other");
}

static void a_long_id_still_fits_the_template(void **state)
{
	(void)state;
	char path[600] = "/api/v1/runs/";
	memset(path + strlen(path), 'x', 500);
	route_is(path, "/api/v1/runs/{id}");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(ids_become_placeholders),
	    cmocka_unit_test(paths_outside_the_endpoints_are_other),
	    cmocka_unit_test(a_long_id_still_fits_the_template),
	};
	return cmocka_run_group_tests_name("agent_metrics", tests, NULL, NULL);
}
