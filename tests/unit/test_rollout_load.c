/* Tests for rollout_load (stages/rollout_load.c) through a pipeline file:
 * an environment's strategy, providers, hooks and checks become the
 * "rollout" of its deploy@ stage, and each mistake is reported with the
 * file, line, column and key path where it is. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "pipeline_file.h"

/* Seven lines: the environments: section starts on line 8. */
#define HEAD                                                                                       \
	"trigger:\n  github:\n    repository: acme/app\n    secret_file: webhook\n"                \
	"stages:\n  build:\n    run: [make]\n"

/* Lines 8-14: an environment with a provider, ready for a strategy: on
 * line 15. */
#define PRODUCTION                                                                                 \
	"environments:\n"                                                                          \
	"  production:\n"                                                                          \
	"    image: registry.local/app:v2\n"                                                       \
	"    provider:\n"                                                                          \
	"      type: exec\n"                                                                       \
	"      actions:\n"                                                                         \
	"        apply: {run: [./deploy.sh]}\n"

/* Lines 8-12: an environment whose provider is a kubernetes one with a
 * server, ready for more of its keys on line 13. */
#define KUBERNETES                                                                                 \
	"environments:\n"                                                                          \
	"  production:\n"                                                                          \
	"    provider:\n"                                                                          \
	"      type: kubernetes\n"                                                                 \
	"      server: https://k8s.local:6443\n"

static int setup(void **state)
{
	*state = pipeline_file_new("sluice-test-rollout", HEAD);
	return *state ? 0 : -1;
}

static int teardown(void **state)
{
	pipeline_file_free(*state);
	return 0;
}

static const json_t *rollout_of(const struct pipeline_file *f)
{
	return json_object_get(
	    json_object_get(json_object_get(f->p.def, "stages"), "deploy@production"), "rollout");
}

static void test_a_canary_becomes_the_rollout_of_its_deployment(void **state)
{
	struct pipeline_file *f = *state;
	if (pipeline_file_load(f, PRODUCTION "    hooks:\n"
					     "      pre:\n"
					     "        - name: db-migrate\n"
					     "          run: [./migrate.sh]\n"
					     "          rollback: {run: [./unmigrate.sh]}\n"
					     "    strategy:\n"
					     "      type: Canary\n"
					     "      steps:\n"
					     "        - setWeight: 20\n"
					     "        - pause: {duration: 2s}\n"
					     "        - pause: {}\n"
					     "        - setWeight: 100\n") < 0)
		fail_msg("%s", f->err);
	const json_t *r = rollout_of(f);
	assert_non_null(r);
	assert_string_equal(json_string_value(json_object_get(r, "image")),
			    "registry.local/app:v2");
	json_t *want = json_pack("[{s:i}, {s:i}, {s:s}, {s:i}]", "set_weight", 20, "pause_ms", 2000,
				 "pause", "manual", "set_weight", 100);
	assert_true(json_equal(json_object_get(json_object_get(r, "strategy"), "steps"), want));
	json_decref(want);
	const json_t *hook = json_array_get(json_object_get(json_object_get(r, "hooks"), "pre"), 0);
	assert_string_equal(json_string_value(json_object_get(hook, "name")), "db-migrate");
	assert_non_null(json_object_get(hook, "rollback"));
}

static void test_an_unknown_strategy_is_named(void **state)
{
	pipeline_file_expect_error(*state, PRODUCTION "    strategy: {type: Recreate}\n",
				   "15:22: environments.production.strategy.type: unknown strategy "
				   "\"Recreate\" (RollingUpdate, BlueGreen or Canary)");
}

static void test_a_step_has_exactly_one_key(void **state)
{
	pipeline_file_expect_error(
	    *state,
	    PRODUCTION "    strategy:\n"
		       "      type: Canary\n"
		       "      steps:\n"
		       "        - setWeight: 20\n"
		       "        - {setWeight: 50, pause: {}}\n",
	    "19:11: environments.production.strategy.steps[1]: a step is one of "
	    "{setWeight: 20}, {pause: {duration: 10m}}, {pause: {}} or {analysis: {...}}");
}

static void test_a_weight_is_a_percentage(void **state)
{
	pipeline_file_expect_error(
	    *state,
	    PRODUCTION "    strategy:\n"
		       "      type: Canary\n"
		       "      steps:\n"
		       "        - setWeight: 120\n",
	    "18:22: environments.production.strategy.steps[0].setWeight: must be between 0 "
	    "and 100");
}

/* A rolling update that may neither add an instance nor take one away
 * could not begin: both 0 are refused where the second is written,
 * either 0 alone is fine. */
static void test_a_rolling_update_may_not_have_both_bounds_0(void **state)
{
	struct pipeline_file *f = *state;

	pipeline_file_expect_error(
	    *state,
	    PRODUCTION "    strategy: {type: RollingUpdate, maxSurge: 0, maxUnavailable: 0}\n",
	    "15:66: environments.production.strategy.maxUnavailable: may not be 0 when maxSurge is "
	    "0: nothing could be replaced");
	pipeline_file_expect_error(
	    *state,
	    PRODUCTION "    strategy:\n"
		       "      type: RollingUpdate\n"
		       "      rollingUpdate: {maxSurge: 0%, maxUnavailable: 0%}\n",
	    "17:53: environments.production.strategy.rollingUpdate.maxUnavailable: "
	    "may not be 0 when maxSurge is 0: nothing could be replaced");
	if (pipeline_file_load(f, PRODUCTION "    strategy: {type: RollingUpdate, maxSurge: 0, "
					     "maxUnavailable: 1}\n") < 0 ||
	    pipeline_file_load(f, PRODUCTION "    strategy: {type: RollingUpdate, maxSurge: 0}\n") <
		0)
		fail_msg("%s", f->err);
}

static void test_the_background_analysis_starts_at_a_step_that_exists(void **state)
{
	pipeline_file_expect_error(
	    *state,
	    PRODUCTION "    strategy:\n"
		       "      type: Canary\n"
		       "      steps:\n"
		       "        - setWeight: 20\n"
		       "        - pause: {}\n"
		       "      analysis:\n"
		       "        startingStep: 2\n"
		       "        interval: 1s\n"
		       "        successCondition: result[0] < 0.01\n"
		       "        provider:\n"
		       "          prometheus: {address: 'http://127.0.0.1:9090', query: up}\n",
	    "21:23: environments.production.strategy.analysis.startingStep: must be "
	    "between 0 and 1");
}

/* Nothing stops the analysis of a step or of a blue/green promotion: one
 * that measured until stopped would hold its deployment for ever. */
static void test_an_analysis_with_an_interval_needs_a_count_but_in_the_background(void **state)
{
	pipeline_file_expect_error(
	    *state,
	    PRODUCTION "    strategy:\n"
		       "      type: Canary\n"
		       "      steps:\n"
		       "        - setWeight: 20\n"
		       "        - analysis:\n"
		       "            interval: 30s\n"
		       "            successCondition: result[0] < 0.01\n"
		       "            provider:\n"
		       "              prometheus: {address: 'http://127.0.0.1:9090', query: up}\n",
	    "20:13: environments.production.strategy.steps[1].analysis.count: missing required "
	    "key (with an interval; only a canary's background analysis measures until "
	    "stopped)");
	pipeline_file_expect_error(
	    *state,
	    PRODUCTION "    strategy:\n"
		       "      type: BlueGreen\n"
		       "      prePromotionAnalysis:\n"
		       "        interval: 30s\n"
		       "        successCondition: result[0] < 0.01\n"
		       "        provider:\n"
		       "          prometheus: {address: 'http://127.0.0.1:9090', query: up}\n",
	    "18:9: environments.production.strategy.prePromotionAnalysis.count: missing "
	    "required key (with an interval; only a canary's background analysis measures until "
	    "stopped)");
}

static void test_a_strategy_needs_a_provider(void **state)
{
	pipeline_file_expect_error(
	    *state,
	    "environments:\n"
	    "  production:\n"
	    "    image: registry.local/app:v2\n"
	    "    strategy: {type: RollingUpdate}\n",
	    "10:5: environments.production.provider: missing required key (what carries "
	    "the deployment out: exec, http, haproxy or kubernetes)");
}

static void test_an_unknown_provider_type_is_named(void **state)
{
	pipeline_file_expect_error(
	    *state,
	    "environments:\n"
	    "  production:\n"
	    "    provider: {type: nomad, job: app}\n"
	    "    strategy: {type: RollingUpdate}\n",
	    "10:22: environments.production.provider.type: unknown provider \"nomad\" "
	    "(exec, http, haproxy or kubernetes)");
	pipeline_file_expect_error(
	    *state,
	    PRODUCTION "    traffic:\n"
		       "      type: haproxy\n"
		       "      socket: /run/haproxy/admin.sock\n"
		       "      backend: app\n"
		       "      colors: {blue: app-blue, green: 'app green'}\n"
		       "    strategy: {type: BlueGreen}\n",
	    "19:39: environments.production.traffic.colors.green: a server name or a list "
	    "of them");
}

static void test_only_pre_hooks_have_a_rollback(void **state)
{
	pipeline_file_expect_error(
	    *state,
	    PRODUCTION "    hooks:\n"
		       "      post:\n"
		       "        - name: cache-flush\n"
		       "          run: [redis-cli, FLUSHALL]\n"
		       "          rollback: {run: [./warm.sh]}\n"
		       "    strategy: {type: RollingUpdate}\n",
	    "19:11: environments.production.hooks.post[0].rollback: only pre hooks have a "
	    "rollback (it undoes them when the deployment aborts)");
}

static void test_deploy_and_strategy_do_not_go_together(void **state)
{
	pipeline_file_expect_error(
	    *state,
	    PRODUCTION "    deploy: {sh: ./deploy.sh}\n"
		       "    strategy: {type: RollingUpdate}\n",
	    "15:5: environments.production.deploy: an environment with a strategy deploys "
	    "through its provider: remove deploy:");
}

static void test_an_image_needs_a_strategy(void **state)
{
	pipeline_file_expect_error(
	    *state,
	    "environments:\n"
	    "  production:\n"
	    "    image: registry.local/app:v2\n"
	    "    deploy: {sh: ./deploy.sh}\n",
	    "10:5: environments.production.image: image belongs to a deployment "
	    "strategy: add strategy:");
}

/* A template naming what the worker will not define where it expands it
 * would fail the deployment when it runs: it is refused where it is
 * written. */
static void test_a_rollout_template_names_what_is_defined_where_it_expands(void **state)
{
	pipeline_file_expect_error(
	    *state,
	    "environments:\n"
	    "  production:\n"
	    "    image: 'registry.local/app:${SLUICE_IMAGEE}'\n"
	    "    provider: {type: exec, actions: {apply: {run: [./deploy.sh]}}}\n"
	    "    strategy: {type: RollingUpdate}\n",
	    "10:12: environments.production.image: undefined variable "
	    "\"SLUICE_IMAGEE\"");
	pipeline_file_expect_error(*state,
				   PRODUCTION
				   "        verify: {run: [./verify.sh, 'v${SLUICE_IMAGE']}\n"
				   "    strategy: {type: RollingUpdate}\n",
				   "15:37: environments.production.provider.actions.verify.run[1]: "
				   "unterminated \"${\"");
	/* SLUICE_COLOR is an action's, not a hook's. */
	pipeline_file_expect_error(*state,
				   PRODUCTION
				   "    hooks:\n"
				   "      pre:\n"
				   "        - name: db-migrate\n"
				   "          run: [./migrate.sh]\n"
				   "          rollback: {run: [./undo.sh, '${SLUICE_COLOR}']}\n"
				   "    strategy: {type: RollingUpdate}\n",
				   "19:39: environments.production.hooks.pre[0].rollback.run[1]: "
				   "undefined variable \"SLUICE_COLOR\"");
	pipeline_file_expect_error(
	    *state,
	    PRODUCTION "    checks:\n"
		       "      post:\n"
		       "        - name: up\n"
		       "          http: {url: 'http://h/', headers: {X-Image: '${IMAGE}'}}\n"
		       "    strategy: {type: RollingUpdate}\n",
	    "18:55: environments.production.checks.post[0].http.headers.X-Image: undefined "
	    "variable \"IMAGE\"");
	pipeline_file_expect_error(
	    *state,
	    PRODUCTION "    checks:\n"
		       "      pre:\n"
		       "        - name: up\n"
		       "          http: {url: 'http://h/${SLUICE_WEIGHT}'}\n"
		       "    strategy: {type: RollingUpdate}\n",
	    "18:23: environments.production.checks.pre[0].http.url: undefined "
	    "variable \"SLUICE_WEIGHT\"");
	pipeline_file_expect_error(
	    *state,
	    PRODUCTION "    traffic:\n"
		       "      type: http\n"
		       "      actions:\n"
		       "        set_weight: {url: 'https://lb/w', method: PUT, body: '${WEIGHT}'}\n"
		       "    strategy: {type: Canary, steps: [setWeight: 50]}\n",
	    "18:62: environments.production.traffic.actions.set_weight.body: undefined "
	    "variable \"WEIGHT\"");
	pipeline_file_expect_error(
	    *state,
	    "environments:\n"
	    "  production:\n"
	    "    provider: {type: kubernetes, server: 'https://k8s:6443',\n"
	    "               deployment: 'app-${SLUICE_COLR}', container: app}\n"
	    "    strategy: {type: RollingUpdate}\n",
	    "11:28: environments.production.provider.deployment: undefined "
	    "variable \"SLUICE_COLR\"");
}

/* A Canary or BlueGreen with a kubernetes provider needs a Deployment per
 * colour: with one, the new version would replace the old before any
 * check, and the canary's scale_down would leave nothing running. */
static void test_a_canary_or_blue_green_needs_a_deployment_per_colour(void **state)
{
	struct pipeline_file *f = *state;

	pipeline_file_expect_error(
	    f,
	    "environments:\n"
	    "  production:\n"
	    "    provider: {type: kubernetes, server: 'https://k8s:6443',\n"
	    "               deployment: app, container: app}\n"
	    "    strategy: {type: BlueGreen}\n",
	    "11:28: environments.production.provider.deployment: a BlueGreen runs two versions "
	    "side by side, each in a Deployment of its own: name them with ${SLUICE_COLOR} "
	    "(app-${SLUICE_COLOR})");
	pipeline_file_expect_error(
	    f,
	    "environments:\n"
	    "  production:\n"
	    "    provider: {type: exec, actions: {verify: {run: ['true']}}}\n"
	    "    traffic: {type: kubernetes, server: 'https://k8s:6443',\n"
	    "              deployment: app, container: app}\n"
	    "    strategy: {type: Canary, steps: [setWeight: 5]}\n",
	    "12:27: environments.production.traffic.deployment: a Canary runs two versions "
	    "side by side, each in a Deployment of its own: name them with ${SLUICE_COLOR} "
	    "(app-${SLUICE_COLOR})");
	if (pipeline_file_load(f,
			       "environments:\n"
			       "  production:\n"
			       "    provider: {type: kubernetes, server: 'https://k8s:6443',\n"
			       "               deployment: 'app-${SLUICE_COLOR}', container: app}\n"
			       "    strategy: {type: Canary, steps: [setWeight: 5]}\n") < 0)
		fail_msg("%s", f->err);
}

/* Each sees the deployment's vars and secrets, the run's variables, the
 * outputs of stages; hooks and checks the image too, actions their own. */
static void test_a_rollout_template_may_name_its_variables(void **state)
{
	struct pipeline_file *f = *state;

	if (pipeline_file_load(
		f,
		"environments:\n"
		"  production:\n"
		"    vars: {DOMAIN: example.com}\n"
		"    secrets: {TOKEN: webhook}\n"
		"    image: 'registry.local/app:${build.tag}-${SLUICE_SHA_SHORT}'\n"
		"    provider:\n"
		"      type: exec\n"
		"      actions:\n"
		"        apply: {run: [./deploy.sh, '${SLUICE_ACTION} ${SLUICE_IMAGE}',\n"
		"                      '${SLUICE_COLOR} ${SLUICE_ENV} ${TOKEN}']}\n"
		"    traffic:\n"
		"      type: http\n"
		"      actions:\n"
		"        set_weight: {url: 'https://${DOMAIN}/w/${SLUICE_WEIGHT}', method: PUT,\n"
		"                     headers: {Authorization: 'Bearer ${TOKEN}'}}\n"
		"    hooks:\n"
		"      pre:\n"
		"        - name: db-migrate\n"
		"          run: [./migrate.sh, '${SLUICE_IMAGE}', '${TOKEN}']\n"
		"          rollback: {run: [./undo.sh, '${DOMAIN}']}\n"
		"    checks:\n"
		"      post:\n"
		"        - name: up\n"
		"          http: {url: 'https://h/${DOMAIN}', body: '${SLUICE_IMAGE}'}\n"
		"    strategy: {type: BlueGreen}\n") < 0)
		fail_msg("%s", f->err);
}

/* Writes name beside the pipeline file (a certificate will do for any
 * file it names), its path into path. */
static void write_beside(struct pipeline_file *f, const char *name, char *path, size_t pathlen)
{
	snprintf(path, pathlen, "%s/%s", f->dir, name);
	assert_int_equal(tmpdir_write(path, "-----BEGIN CERTIFICATE-----\n"), 0);
}

/* Loading text is refused at where ("line:col: key.path") while name,
 * beside the pipeline file, cannot be read; then name is written there, its
 * path into path. */
static void expect_unreadable_then_write(struct pipeline_file *f, const char *text,
					 const char *where, const char *name, char *path,
					 size_t pathlen)
{
	char want[512];

	snprintf(path, pathlen, "%s/%s", f->dir, name);
	snprintf(want, sizeof(want), "%s: cannot read \"%s\": No such file or directory", where,
		 path);
	pipeline_file_expect_error(f, text, want);
	write_beside(f, name, path, pathlen);
}

/* Lines 8-13: an environment whose provider is a kubernetes one without
 * a server, ready for more of its keys on line 14. */
#define IN_CLUSTER                                                                                 \
	"environments:\n"                                                                          \
	"  production:\n"                                                                          \
	"    image: registry.local/app:v2\n"                                                       \
	"    provider:\n"                                                                          \
	"      type: kubernetes\n"                                                                 \
	"      deployment: app\n"

/* Without a server, a kubernetes provider deploys in the cluster of the
 * worker that runs the deployment: whether the pipeline is valid does not
 * depend on where it is loaded, in a cluster or not. Its definition is
 * still checked. */
/* SLUICE_MAX_SURGE and SLUICE_MAX_UNAVAILABLE are set for a
 * RollingUpdate's apply alone, whichever provider carries it out: named
 * anywhere else they would fail the deployment when it runs. */
static void test_a_rolling_updates_bounds_are_its_applys_alone(void **state)
{
	struct pipeline_file *f = *state;

	if (pipeline_file_load(
		f, "environments:\n"
		   "  production:\n"
		   "    image: registry.local/app:v2\n"
		   "    provider:\n"
		   "      type: exec\n"
		   "      actions:\n"
		   "        apply: {run: [./deploy.sh, '${SLUICE_MAX_SURGE}',\n"
		   "                      '${SLUICE_MAX_UNAVAILABLE}']}\n"
		   "        verify: {run: [./verify.sh]}\n"
		   "    traffic:\n"
		   "      type: http\n"
		   "      actions:\n"
		   "        apply: {url: 'https://lb/${SLUICE_MAX_SURGE}', method: PUT,\n"
		   "                body: '${SLUICE_MAX_UNAVAILABLE}'}\n"
		   "    strategy: {type: RollingUpdate, maxSurge: 1, maxUnavailable: 0}\n") < 0)
		fail_msg("%s", f->err);
	pipeline_file_expect_error(
	    *state,
	    PRODUCTION "        verify: {run: [./verify.sh, '${SLUICE_MAX_SURGE}']}\n"
		       "    strategy: {type: RollingUpdate}\n",
	    "15:37: environments.production.provider.actions.verify.run[1]: undefined "
	    "variable \"SLUICE_MAX_SURGE\"");
	pipeline_file_expect_error(
	    *state,
	    "environments:\n"
	    "  production:\n"
	    "    image: registry.local/app:v2\n"
	    "    provider:\n"
	    "      type: exec\n"
	    "      actions:\n"
	    "        apply: {run: [./deploy.sh, '${SLUICE_MAX_UNAVAILABLE}']}\n"
	    "    strategy: {type: Canary, steps: [setWeight: 50]}\n",
	    "14:36: environments.production.provider.actions.apply.run[1]: undefined "
	    "variable \"SLUICE_MAX_UNAVAILABLE\"");
	pipeline_file_expect_error(
	    *state,
	    PRODUCTION "    hooks:\n"
		       "      pre:\n"
		       "        - name: db-migrate\n"
		       "          run: [./migrate.sh, '${SLUICE_MAX_SURGE}']\n"
		       "    strategy: {type: RollingUpdate}\n",
	    "18:31: environments.production.hooks.pre[0].run[1]: undefined variable "
	    "\"SLUICE_MAX_SURGE\"");
	pipeline_file_expect_error(
	    *state,
	    "environments:\n"
	    "  production:\n"
	    "    provider: {type: kubernetes, server: 'https://k8s:6443',\n"
	    "               deployment: 'app-${SLUICE_MAX_SURGE}', container: app}\n"
	    "    strategy: {type: RollingUpdate}\n",
	    "11:28: environments.production.provider.deployment: undefined variable "
	    "\"SLUICE_MAX_SURGE\"");
}

static void test_a_kubernetes_provider_without_server_loads_outside_a_cluster(void **state)
{
	struct pipeline_file *f = *state;

	unsetenv("KUBERNETES_SERVICE_HOST");
	unsetenv("KUBERNETES_SERVICE_PORT");
	if (pipeline_file_load(f, IN_CLUSTER "      container: app\n"
					     "    strategy: {type: RollingUpdate}\n") < 0)
		fail_msg("%s", f->err);
	assert_null(json_object_get(json_object_get(rollout_of(f), "provider"), "server"));
	pipeline_file_expect_error(f, IN_CLUSTER "    strategy: {type: RollingUpdate}\n",
				   "12:7: environments.production.provider: container: required "
				   "with a deployment");
}

/* A kubernetes provider's token_file and ca_file are an http: stage's
 * ca_file: relative to the pipeline file and readable when it is loaded,
 * but a credential is the worker's own, kept as written. */
static void test_kubernetes_files_are_relative_to_the_pipeline_file(void **state)
{
	struct pipeline_file *f = *state;
	char token[128], ca[128];
	const char *text = KUBERNETES "      token_file: token\n"
				      "      ca_file: ca.pem\n"
				      "      service: app\n"
				      "    strategy: {type: BlueGreen}\n";

	expect_unreadable_then_write(f, text, "13:19: environments.production.provider.token_file",
				     "token", token, sizeof(token));
	expect_unreadable_then_write(f, text, "14:16: environments.production.provider.ca_file",
				     "ca.pem", ca, sizeof(ca));
	if (pipeline_file_load(f, text) < 0)
		fail_msg("%s", f->err);
	const json_t *provider = json_object_get(rollout_of(f), "provider");
	assert_string_equal(json_string_value(json_object_get(provider, "token_file")), token);
	assert_string_equal(json_string_value(json_object_get(provider, "ca_file")), ca);

	if (pipeline_file_load(f,
			       KUBERNETES "      token_file: ${CREDENTIALS_DIRECTORY}/k8s-token\n"
					  "      service: app\n"
					  "    strategy: {type: BlueGreen}\n") < 0)
		fail_msg("%s", f->err);
	provider = json_object_get(rollout_of(f), "provider");
	assert_string_equal(json_string_value(json_object_get(provider, "token_file")),
			    "${CREDENTIALS_DIRECTORY}/k8s-token");
}

/* Lines 8-12: an environment whose provider is an exec one, ready for
 * its first action on line 13. */
#define EXEC_ACTIONS                                                                               \
	"environments:\n"                                                                          \
	"  production:\n"                                                                          \
	"    provider:\n"                                                                          \
	"      type: exec\n"                                                                       \
	"      actions:\n"

/* An exec action is run or sh alone: a misspelt key is refused where it
 * is written rather than ignored when the action runs. */
static void test_an_exec_action_key_is_run_or_sh(void **state)
{
	pipeline_file_expect_error(*state,
				   EXEC_ACTIONS "        apply: {run: [./a.sh], tiemout: 5}\n"
						"    strategy: {type: RollingUpdate}\n",
				   "13:41: environments.production.provider.actions.apply.tiemout: "
				   "unknown key (run, sh)");
}

/* An exec action's program, as a stage's or a hook's, has a name: one
 * that is empty is refused at the item rather than at the action. */
static void test_an_exec_actions_program_is_not_empty(void **state)
{
	pipeline_file_expect_error(*state,
				   EXEC_ACTIONS "        apply: {run: ['', ./a.sh]}\n"
						"    strategy: {type: RollingUpdate}\n",
				   "13:23: environments.production.provider.actions.apply.run[0]: "
				   "must not be empty");
}

/* An http action's ca_file is an http: stage's: relative to the pipeline
 * file, whatever the worker's working directory, and refused when it
 * cannot be read rather than failing the deployment. */
static void test_an_http_action_ca_file_is_relative_to_the_pipeline_file(void **state)
{
	struct pipeline_file *f = *state;
	char ca[128];
	const char *text = "environments:\n"
			   "  production:\n"
			   "    provider:\n"
			   "      type: http\n"
			   "      actions:\n"
			   "        apply: {url: 'https://deploy.local/apply', ca_file: ca.pem}\n"
			   "    strategy: {type: RollingUpdate}\n";

	expect_unreadable_then_write(
	    f, text, "13:61: environments.production.provider.actions.apply.ca_file", "ca.pem", ca,
	    sizeof(ca));
	if (pipeline_file_load(f, text) < 0)
		fail_msg("%s", f->err);
	const json_t *apply = json_object_get(
	    json_object_get(json_object_get(rollout_of(f), "provider"), "actions"), "apply");
	assert_string_equal(json_string_value(json_object_get(apply, "ca_file")), ca);
}

/* A provider's key its type does not read is refused at the key, as any
 * unknown key of the file is: a misspelt one would otherwise leave its
 * default (no token, a 10 minute timeout) in force without a word. */
static void test_a_provider_key_its_type_does_not_read_is_refused(void **state)
{
	pipeline_file_expect_error(*state,
				   KUBERNETES "      tokn_file: token\n"
					      "      service: app\n"
					      "    strategy: {type: BlueGreen}\n",
				   "13:7: environments.production.provider.tokn_file: unknown key");
	pipeline_file_expect_error(*state,
				   PRODUCTION "    traffic:\n"
					      "      type: haproxy\n"
					      "      socket: /run/haproxy/admin.sock\n"
					      "      backend: app\n"
					      "      colors: {blue: app-blue, green: app-green}\n"
					      "      tiemout: 5s\n"
					      "    strategy: {type: BlueGreen}\n",
				   "20:7: environments.production.traffic.tiemout: unknown key");
	pipeline_file_expect_error(*state,
				   PRODUCTION "      tiemout: 5s\n"
					      "    strategy: {type: RollingUpdate}\n",
				   "15:7: environments.production.provider.tiemout: unknown key");
	/* poll is the kubernetes provider's alone. */
	pipeline_file_expect_error(*state,
				   "environments:\n"
				   "  production:\n"
				   "    provider:\n"
				   "      type: http\n"
				   "      poll: 2s\n"
				   "      actions:\n"
				   "        apply: {url: 'https://deploy.local/apply'}\n"
				   "    strategy: {type: RollingUpdate}\n",
				   "12:7: environments.production.provider.poll: unknown key");
}

/* A colour label the API server would refuse is refused where it is
 * written, not when the first switch fails after the release is out. */
static void test_a_colour_label_is_a_kubernetes_label_key(void **state)
{
	pipeline_file_expect_error(*state,
				   KUBERNETES "      service: app\n"
					      "      color_label: 'not a label!'\n"
					      "    strategy: {type: BlueGreen}\n",
				   "14:20: environments.production.provider.color_label: \"not a "
				   "label!\" is not a Kubernetes label key");
}

/* Every key docs/configuration.md gives each type is taken, durations in
 * milliseconds. */
static void test_a_provider_takes_every_key_of_its_type(void **state)
{
	struct pipeline_file *f = *state;
	char path[128];

	write_beside(f, "token", path, sizeof(path));
	write_beside(f, "ca.pem", path, sizeof(path));
	if (pipeline_file_load(f, KUBERNETES "      token_file: token\n"
					     "      ca_file: ca.pem\n"
					     "      namespace: shop\n"
					     "      deployment: app-${SLUICE_COLOR}\n"
					     "      container: app\n"
					     "      service: app\n"
					     "      color_label: slot\n"
					     "      poll: 3s\n"
					     "      timeout: 5m\n"
					     "    traffic:\n"
					     "      type: haproxy\n"
					     "      socket: /run/haproxy/admin.sock\n"
					     "      backend: app\n"
					     "      stable: app-stable\n"
					     "      canary: [app-canary]\n"
					     "      colors: {blue: app-blue, green: app-green}\n"
					     "      timeout: 2s\n"
					     "    strategy: {type: BlueGreen}\n") < 0)
		fail_msg("%s", f->err);
	const json_t *provider = json_object_get(rollout_of(f), "provider");
	assert_int_equal(json_integer_value(json_object_get(provider, "poll_ms")), 3000);
	assert_int_equal(json_integer_value(json_object_get(provider, "timeout_ms")), 300000);
	assert_string_equal(json_string_value(json_object_get(provider, "color_label")), "slot");
	assert_int_equal(json_integer_value(json_object_get(
			     json_object_get(rollout_of(f), "traffic"), "timeout_ms")),
			 2000);

	if (pipeline_file_load(
		f, "environments:\n"
		   "  production:\n"
		   "    provider:\n"
		   "      type: exec\n"
		   "      cwd: deploy\n"
		   "      timeout: 5m\n"
		   "      actions:\n"
		   "        apply: {run: [./deploy.sh]}\n"
		   "    traffic:\n"
		   "      type: http\n"
		   "      timeout: 1m\n"
		   "      actions:\n"
		   "        set_weight: {url: 'https://lb.local/weight', method: POST}\n"
		   "    strategy: {type: Canary, steps: [{setWeight: 10}]}\n") < 0)
		fail_msg("%s", f->err);
	provider = json_object_get(rollout_of(f), "provider");
	assert_string_equal(json_string_value(json_object_get(provider, "cwd")), "deploy");
	assert_int_equal(json_integer_value(json_object_get(provider, "timeout_ms")), 300000);
	assert_int_equal(json_integer_value(json_object_get(
			     json_object_get(rollout_of(f), "traffic"), "timeout_ms")),
			 60000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_a_canary_becomes_the_rollout_of_its_deployment,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_an_unknown_strategy_is_named, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_a_step_has_exactly_one_key, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_a_weight_is_a_percentage, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_a_rolling_update_may_not_have_both_bounds_0, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(
		test_the_background_analysis_starts_at_a_step_that_exists, setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_an_analysis_with_an_interval_needs_a_count_but_in_the_background, setup,
		teardown),
	    cmocka_unit_test_setup_teardown(test_a_strategy_needs_a_provider, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_an_unknown_provider_type_is_named, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_only_pre_hooks_have_a_rollback, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_deploy_and_strategy_do_not_go_together, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_an_image_needs_a_strategy, setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_a_rollout_template_names_what_is_defined_where_it_expands, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_a_rolling_updates_bounds_are_its_applys_alone,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_a_canary_or_blue_green_needs_a_deployment_per_colour, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_a_rollout_template_may_name_its_variables, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(
		test_an_http_action_ca_file_is_relative_to_the_pipeline_file, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_an_exec_action_key_is_run_or_sh, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_an_exec_actions_program_is_not_empty, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_a_provider_key_its_type_does_not_read_is_refused,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_a_colour_label_is_a_kubernetes_label_key, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_a_provider_takes_every_key_of_its_type, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(
		test_a_kubernetes_provider_without_server_loads_outside_a_cluster, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_kubernetes_files_are_relative_to_the_pipeline_file,
					    setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
