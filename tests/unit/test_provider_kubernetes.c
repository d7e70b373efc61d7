/* Tests for the kubernetes provider (stages/provider_kubernetes.c).
 *
 * No real API server is available here: a local stand-in (tests/unit/
 * apistub.h) replays the responses the Kubernetes API documents for these
 * requests (a Deployment object as it moves through a rollout, a Status
 * object for an error), and the tests check the exact requests the provider
 * sends: method, path, content type, body and bearer token.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "stages/provider.h"
#include "tests/unit/apistub.h"

#include <curl/curl.h>
#include <event2/event.h>
#include <stdlib.h>
#include <unistd.h>
#include "tests/unit/provider_test.h"

#define DEPLOY_PATH "/apis/apps/v1/namespaces/prod/deployments/app"
#define PATCH_TYPE  "application/strategic-merge-patch+json"

static struct apistub stub;
static char dir[64];
static char token_file[128];

static void write_token(const char *token)
{
	FILE *f = fopen(token_file, "w");

	assert_non_null(f);
	fprintf(f, "%s\n", token);
	fclose(f);
}

static int group_setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/sluice-kube-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	snprintf(token_file, sizeof(token_file), "%s/token", dir);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	base = event_base_new();
	return base && apistub_start(&stub, base) == 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
	(void)state;
	apistub_stop(&stub);
	event_base_free(base);
	curl_global_cleanup();
	unlink(token_file);
	rmdir(dir);
	return 0;
}

static int setup(void **state)
{
	(void)state;
	apistub_reset(&stub);
	write_token("tok-1");
	return 0;
}

static struct provider *make_with(const char *token, const char *extra)
{
	char json[1024];

	snprintf(json, sizeof(json),
		 "{\"type\": \"kubernetes\", \"server\": \"http://127.0.0.1:%d\", \"token_file\": "
		 "\"%s\", \"namespace\": \"prod\", \"container\": \"app\", \"service\": \"app\", "
		 "\"poll_ms\": 10 %s}",
		 stub.port, token, extra);
	return provider_test_make(json_loads(json, 0, NULL));
}

static struct provider *make(const char *extra)
{
	return make_with(token_file, extra);
}

static void run(struct provider *p, enum provider_verb verb, const char *image, const char *color,
		struct outcome *o)
{
	struct provider_action a = {.verb = verb, .image = image, .weight = -1, .color = color};
	provider_test_run(p, &a, o, 5);
}

/* A Deployment as GET returns it, cut to the fields the rollout rules read. */
static void deployment(int generation, int observed, int replicas, int status_replicas, int updated,
		       int available, int unavailable, const char *reason)
{
	char body[2048];

	snprintf(body, sizeof(body),
		 "{\"kind\": \"Deployment\", \"apiVersion\": \"apps/v1\", \"metadata\": {\"name\": "
		 "\"app\", \"namespace\": \"prod\", \"generation\": %d}, \"spec\": {\"replicas\": "
		 "%d}, \"status\": {\"observedGeneration\": %d, \"replicas\": %d, "
		 "\"updatedReplicas\": %d, \"readyReplicas\": %d, \"availableReplicas\": %d, "
		 "\"unavailableReplicas\": %d, \"conditions\": [{\"type\": \"Available\", "
		 "\"status\": \"True\", \"reason\": \"MinimumReplicasAvailable\"}, {\"type\": "
		 "\"Progressing\", \"status\": \"%s\", \"reason\": \"%s\"}]}}",
		 generation, replicas, observed, status_replicas, updated, available, available,
		 unavailable, strcmp(reason, "ProgressDeadlineExceeded") ? "True" : "False",
		 reason);
	apistub_reply(&stub, 200, body);
}

/* apply and scale_down read the Deployment at path, then patch it with body. */
static void assert_read_then_patched(const char *path, const char *body)
{
	assert_int_equal(stub.nreq, 2);
	assert_string_equal(stub.req[0].method, "GET");
	assert_string_equal(stub.req[0].uri, path);
	assert_string_equal(stub.req[1].method, "PATCH");
	assert_string_equal(stub.req[1].uri, path);
	assert_string_equal(stub.req[1].content_type, PATCH_TYPE);
	assert_string_equal(stub.req[1].body, body);
}

static void test_apply_sends_a_strategic_merge_patch_of_the_image(void **state)
{
	struct provider *p = make(", \"deployment\": \"app\"");
	struct outcome o;
	(void)state;

	deployment(2, 1, 3, 3, 0, 3, 0, "NewReplicaSetAvailable");
	run(p, PROVIDER_APPLY, "registry.local/app:1.4.2", NULL, &o);
	assert_true(o.ok);
	assert_read_then_patched(DEPLOY_PATH, "{\"spec\":{\"template\":{\"spec\":{\"containers\":"
					      "[{\"name\":\"app\",\"image\":\"registry.local/"
					      "app:1.4.2\"}]}}}}");
	assert_string_equal(stub.req[1].authorization, "Bearer tok-1");
	assert_non_null(strstr(o.msg, "apply done: HTTP 200"));
	provider_free(p);
}

/* A RollingUpdate's bounds go in the patch that sets the image, a count
 * as a number and a percentage as a string, as the API's IntOrString. */
static void test_a_rolling_apply_patches_the_deployments_strategy_too(void **state)
{
	struct provider *p = make(", \"deployment\": \"app\"");
	struct provider_action a = {.verb = PROVIDER_APPLY,
				    .image = "img:2",
				    .weight = -1,
				    .max_surge = "1",
				    .max_unavailable = "0"};
	struct outcome o;
	(void)state;

	deployment(2, 2, 3, 3, 3, 3, 0, "NewReplicaSetAvailable");
	provider_test_run(p, &a, &o, 5);
	assert_true(o.ok);
	assert_read_then_patched(DEPLOY_PATH,
				 "{\"spec\":{\"template\":{\"spec\":{\"containers\":[{\"name\":"
				 "\"app\",\"image\":\"img:2\"}]}},\"strategy\":{\"type\":"
				 "\"RollingUpdate\",\"rollingUpdate\":{\"maxSurge\":1,"
				 "\"maxUnavailable\":0}}}}");
	apistub_reset(&stub);
	deployment(3, 3, 3, 3, 3, 3, 0, "NewReplicaSetAvailable");
	a.max_surge = "25%";
	a.max_unavailable = "10%";
	provider_test_run(p, &a, &o, 5);
	assert_true(o.ok);
	assert_read_then_patched(DEPLOY_PATH,
				 "{\"spec\":{\"template\":{\"spec\":{\"containers\":[{\"name\":"
				 "\"app\",\"image\":\"img:2\"}]}},\"strategy\":{\"type\":"
				 "\"RollingUpdate\",\"rollingUpdate\":{\"maxSurge\":\"25%\","
				 "\"maxUnavailable\":\"10%\"}}}}");
	provider_free(p);
}

static void test_verify_waits_through_kubectls_rollout_states(void **state)
{
	struct provider *p = make(", \"deployment\": \"app\"");
	struct outcome o;
	(void)state;

	deployment(2, 1, 3, 3, 0, 3, 0, "NewReplicaSetAvailable"); /* not observed yet */
	deployment(2, 2, 3, 4, 1, 3, 1, "ReplicaSetUpdated");	   /* 1 of 3 updated */
	deployment(2, 2, 3, 4, 3, 3, 1, "ReplicaSetUpdated");	   /* old one terminating */
	deployment(2, 2, 3, 3, 3, 2, 1, "ReplicaSetUpdated");	   /* 2 of 3 available */
	deployment(2, 2, 3, 3, 3, 3, 1, "ReplicaSetUpdated");	   /* one still unavailable */
	deployment(2, 2, 3, 3, 3, 3, 0, "NewReplicaSetAvailable"); /* done */
	run(p, PROVIDER_VERIFY, NULL, NULL, &o);
	assert_true(o.ok);
	assert_int_equal(stub.nreq, 6);
	for (int i = 0; i < stub.nreq; i++) {
		assert_string_equal(stub.req[i].method, "GET");
		assert_string_equal(stub.req[i].uri, DEPLOY_PATH);
		assert_string_equal(stub.req[i].authorization, "Bearer tok-1");
	}
	assert_string_equal(o.msg, "verify done: deployment prod/app: successfully rolled out (3 "
				   "of 3 replicas updated and available)");
	provider_free(p);
}

static void test_progress_deadline_exceeded_fails_verify(void **state)
{
	struct provider *p = make(", \"deployment\": \"app\"");
	struct outcome o;
	(void)state;

	deployment(2, 2, 3, 4, 1, 3, 1, "ReplicaSetUpdated");
	deployment(2, 2, 3, 4, 1, 3, 1, "ProgressDeadlineExceeded");
	run(p, PROVIDER_VERIFY, NULL, NULL, &o);
	assert_false(o.ok);
	assert_int_equal(stub.nreq, 2);
	assert_string_equal(o.msg, "verify failed: deployment prod/app: deployment exceeded its "
				   "progress deadline");
	provider_free(p);
}

static void test_verify_gives_up_after_its_timeout(void **state)
{
	struct provider *p = make(", \"deployment\": \"app\", \"timeout_ms\": 150");
	struct outcome o;
	(void)state;

	deployment(2, 2, 3, 4, 1, 3, 1, "ReplicaSetUpdated");
	run(p, PROVIDER_VERIFY, NULL, NULL, &o);
	assert_false(o.ok);
	assert_true(stub.nreq >= 2);
	assert_string_equal(o.msg, "verify failed: deployment prod/app: 1 out of 3 new replicas "
				   "have been updated (timed out)");
	provider_free(p);
}

static void test_switch_patches_the_service_selector(void **state)
{
	struct provider *p = make(", \"color_label\": \"slot\"");
	struct outcome o;
	(void)state;

	apistub_reply(&stub, 200, "{\"kind\": \"Service\", \"apiVersion\": \"v1\"}");
	run(p, PROVIDER_SWITCH, NULL, "green", &o);
	assert_true(o.ok);
	assert_int_equal(stub.nreq, 1);
	assert_string_equal(stub.req[0].method, "PATCH");
	assert_string_equal(stub.req[0].uri, "/api/v1/namespaces/prod/services/app");
	assert_string_equal(stub.req[0].content_type, PATCH_TYPE);
	assert_string_equal(stub.req[0].body, "{\"spec\":{\"selector\":{\"slot\":\"green\"}}}");
	provider_free(p);
}

static void test_scale_down_zeroes_the_colours_deployment_noting_its_replicas(void **state)
{
	struct provider *p = make(", \"deployment\": \"app-${SLUICE_COLOR}\"");
	struct outcome o;
	(void)state;

	deployment(2, 2, 3, 3, 3, 3, 0, "NewReplicaSetAvailable");
	run(p, PROVIDER_SCALE_DOWN, NULL, "blue", &o);
	assert_true(o.ok);
	assert_read_then_patched(DEPLOY_PATH "-blue",
				 "{\"spec\":{\"replicas\":0},\"metadata\":{\"annotations\":{"
				 "\"sluice.dev/replicas\":\"3\"}}}");
	provider_free(p);
}

/* Blue/green scales the old colour down; the next deployment goes to it. */
static void test_apply_gives_a_scaled_down_deployment_its_replicas_back(void **state)
{
	struct provider *p = make(", \"deployment\": \"app\"");
	struct outcome o;
	(void)state;

	apistub_reply(&stub, 200,
		      "{\"kind\": \"Deployment\", \"metadata\": {\"name\": \"app\", "
		      "\"generation\": 4, \"annotations\": {\"sluice.dev/replicas\": \"3\"}}, "
		      "\"spec\": {\"replicas\": 0}, \"status\": {\"observedGeneration\": 4}}");
	run(p, PROVIDER_APPLY, "img:2", NULL, &o);
	assert_true(o.ok);
	assert_read_then_patched(DEPLOY_PATH,
				 "{\"spec\":{\"template\":{\"spec\":{\"containers\":[{\"name\":"
				 "\"app\",\"image\":\"img:2\"}]}},\"replicas\":3},\"metadata\":{"
				 "\"annotations\":{\"sluice.dev/replicas\":null}}}");
	provider_free(p);
}

/* A canary's promote has no colour: the stable Deployment gets the
 * release, as an apply to it; with a colour, promote moves the Service. */
static void test_a_canarys_promote_gives_the_stable_deployment_the_release(void **state)
{
	struct provider *p = make(", \"deployment\": \"app-${SLUICE_COLOR}\"");
	struct provider *service_only = make("");
	struct provider_action a = {.verb = PROVIDER_PROMOTE, .weight = -1};
	struct outcome o;
	char err[256] = "";
	(void)state;

	assert_true(provider_supports(p, PROVIDER_PROMOTE));
	deployment(2, 2, 3, 3, 3, 3, 0, "NewReplicaSetAvailable");
	run(p, PROVIDER_PROMOTE, "img:3", NULL, &o);
	assert_true(o.ok);
	assert_read_then_patched(DEPLOY_PATH "-stable",
				 "{\"spec\":{\"template\":{\"spec\":{\"containers\":[{\"name\":"
				 "\"app\",\"image\":\"img:3\"}]}}}}");
	assert_non_null(strstr(o.msg, "promote done: HTTP 200"));

	apistub_reset(&stub);
	apistub_reply(&stub, 200, "{\"kind\": \"Service\", \"apiVersion\": \"v1\"}");
	run(p, PROVIDER_PROMOTE, "img:3", "green", &o);
	assert_true(o.ok);
	assert_int_equal(stub.nreq, 1);
	assert_string_equal(stub.req[0].uri, "/api/v1/namespaces/prod/services/app");

	/* Without a Deployment there is nothing to promote to. */
	assert_int_equal(provider_start(service_only, &a, on_done, &o, err, sizeof(err)), -1);
	assert_string_equal(err, "promote: needs a colour, or a deployment to promote to");
	a.image = NULL;
	assert_int_equal(provider_start(p, &a, on_done, &o, err, sizeof(err)), -1);
	assert_string_equal(err, "promote: needs an image");
	provider_free(service_only);
	provider_free(p);
}

static void test_api_error_reports_the_status_message(void **state)
{
	struct provider *p = make(", \"deployment\": \"app\"");
	struct outcome o;
	(void)state;

	apistub_reply(&stub, 404,
		      "{\"kind\": \"Status\", \"apiVersion\": \"v1\", \"status\": \"Failure\", "
		      "\"message\": \"deployments.apps \\\"app\\\" not found\", \"reason\": "
		      "\"NotFound\", \"code\": 404}");
	run(p, PROVIDER_APPLY, "img:2", NULL, &o);
	assert_false(o.ok);
	assert_non_null(strstr(o.msg, "apply failed: HTTP 404 from"));
	assert_non_null(strstr(o.msg, ": deployments.apps \"app\" not found"));
	provider_free(p);
}

static void test_token_is_read_again_for_each_request(void **state)
{
	struct provider *p = make(", \"deployment\": \"app\"");
	struct outcome o;
	(void)state;

	apistub_reply(&stub, 200, "{}");
	run(p, PROVIDER_APPLY, "img:2", NULL, &o);
	write_token("tok-rotated");
	run(p, PROVIDER_APPLY, "img:3", NULL, &o);
	assert_int_equal(stub.nreq, 4);
	assert_string_equal(stub.req[1].authorization, "Bearer tok-1");
	assert_string_equal(stub.req[3].authorization, "Bearer tok-rotated");
	provider_free(p);
}

/* A "${CREDENTIALS_DIRECTORY}/" path is the worker's own credential, found
 * through its environment when the action runs, as a stage's secret is. */
static void test_credential_files_are_the_workers_own(void **state)
{
	const char *ca =
	    ", \"deployment\": \"app\", \"ca_file\": \"${CREDENTIALS_DIRECTORY}/ca.crt\"";
	struct provider *p;
	struct outcome o;
	(void)state;

	setenv("CREDENTIALS_DIRECTORY", dir, 1);
	p = make_with("${CREDENTIALS_DIRECTORY}/token", ", \"deployment\": \"app\"");
	apistub_reply(&stub, 200, "{}");
	run(p, PROVIDER_APPLY, "img:2", NULL, &o);
	assert_true(o.ok);
	assert_string_equal(stub.req[1].authorization, "Bearer tok-1");
	provider_free(p);

	unsetenv("CREDENTIALS_DIRECTORY");
	p = make_with("${CREDENTIALS_DIRECTORY}/token", ", \"deployment\": \"app\"");
	run(p, PROVIDER_APPLY, "img:2", NULL, &o);
	assert_false(o.ok);
	assert_string_equal(o.msg, "apply failed: token_file ${CREDENTIALS_DIRECTORY}/token: "
				   "CREDENTIALS_DIRECTORY is not set");
	provider_free(p);
	p = make(ca);
	run(p, PROVIDER_APPLY, "img:2", NULL, &o);
	assert_false(o.ok);
	assert_string_equal(o.msg, "apply failed: ca_file ${CREDENTIALS_DIRECTORY}/ca.crt: "
				   "CREDENTIALS_DIRECTORY is not set");
	provider_free(p);
}

static void test_unreachable_server_fails(void **state)
{
	char json[512], err[256];
	json_t *def;
	struct provider *p;
	struct outcome o;
	(void)state;

	/* A port of the stand-in's that nothing listens on any more. */
	struct apistub gone;
	assert_int_equal(apistub_start(&gone, base), 0);
	apistub_stop(&gone);
	snprintf(json, sizeof(json),
		 "{\"type\": \"kubernetes\", \"server\": \"http://127.0.0.1:%d\", \"deployment\": "
		 "\"app\", \"container\": \"app\"}",
		 gone.port);
	def = json_loads(json, 0, NULL);
	p = provider_new(base, def, err, sizeof(err));
	json_decref(def);
	assert_non_null(p);
	run(p, PROVIDER_APPLY, "img:2", NULL, &o);
	assert_false(o.ok);
	assert_non_null(strstr(o.msg, "apply failed:"));
	provider_free(p);
}

static void test_an_answer_too_long_fails_saying_so(void **state)
{
	struct provider *p = make(", \"deployment\": \"app\"");
	struct outcome o;
	(void)state;

	deployment(2, 2, 3, 3, 3, 3, 0, "NewReplicaSetAvailable");
	stub.resp[0].pad = 5 << 20;
	run(p, PROVIDER_VERIFY, NULL, NULL, &o);
	assert_false(o.ok);
	assert_non_null(strstr(o.msg, "verify failed: the answer from http://127.0.0.1:"));
	assert_non_null(strstr(o.msg, DEPLOY_PATH " is longer than 4194304 bytes"));
	provider_free(p);
}

static void test_actions_without_what_they_need_are_refused(void **state)
{
	struct provider *p = make(", \"deployment\": \"app\"");
	struct provider_action a = {.verb = PROVIDER_APPLY, .weight = -1};
	struct outcome o = {0};
	char err[256] = "";
	(void)state;

	assert_int_equal(provider_start(p, &a, on_done, &o, err, sizeof(err)), -1);
	assert_string_equal(err, "apply: needs an image");
	a.verb = PROVIDER_SWITCH;
	assert_int_equal(provider_start(p, &a, on_done, &o, err, sizeof(err)), -1);
	assert_string_equal(err, "switch: needs a colour");
	a.verb = PROVIDER_SET_WEIGHT;
	a.weight = 10;
	assert_int_equal(provider_start(p, &a, on_done, &o, err, sizeof(err)), -1);
	assert_string_equal(err, "the kubernetes provider cannot set_weight");
	assert_int_equal(stub.nreq, 0);
	provider_free(p);
}

static void expect_error(const char *json, const char *want)
{
	char err[256] = "";
	json_t *def = json_loads(json, 0, NULL);

	assert_non_null(def);
	assert_null(provider_new(base, def, err, sizeof(err)));
	assert_string_equal(err, want);
	json_decref(def);
}

static void test_bad_definitions_are_refused_with_the_key(void **state)
{
	(void)state;
	unsetenv("KUBERNETES_SERVICE_HOST");
	expect_error("{\"type\": \"kubernetes\", \"deployment\": \"app\", \"container\": \"app\"}",
		     "provider.server: required outside a cluster (KUBERNETES_SERVICE_HOST is not "
		     "set)");
	expect_error("{\"type\": \"kubernetes\", \"server\": \"ftp://x\", \"deployment\": \"a\"}",
		     "provider.server: an http(s):// URL");
	expect_error("{\"type\": \"kubernetes\", \"server\": \"https://k:6443\"}",
		     "provider: needs a deployment, a service or both");
	expect_error("{\"type\": \"kubernetes\", \"server\": \"https://k:6443\", \"deployment\": "
		     "\"app\"}",
		     "provider.container: required with a deployment");
	expect_error("{\"type\": \"kubernetes\", \"server\": \"https://k:6443\", \"service\": "
		     "\"app\", \"namespace\": \"a/../b\"}",
		     "provider.namespace: \"a/../b\" is not a Kubernetes name");
	expect_error("{\"type\": \"kubernetes\", \"server\": \"https://k:6443\", \"service\": "
		     "\"app\", \"poll_ms\": 0}",
		     "provider.poll_ms: a positive number of milliseconds, at most 86400000");
}

/* The label key the Service's selector matches: one the API server would
 * refuse fails every switch, after the release was applied. */
static void test_the_colour_label_is_a_kubernetes_label_key(void **state)
{
	static const char *const bad[] = {
	    "not a label!", "", "-color", "color-", "a/", "/color", "Example.com/color",
	    "a..b/color", "a/b/c", "a_b.io/color",
	    /* a name of 64, a prefix of 254 */
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa."
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa."
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa."
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/c"};
	static const char *const good[] = {
	    "slot",
	    "Color_2",
	    "a.b-c",
	    "app.kubernetes.io/color",
	    "sluice.dev/Slot.x",
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa."
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa."
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa."
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/c"};
	char err[512], want[512];
	json_t *def;
	struct provider *p;
	(void)state;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		def = json_pack("{s:s, s:s, s:s, s:s}", "type", "kubernetes", "server",
				"https://k:6443", "service", "app", "color_label", bad[i]);
		err[0] = '\0';
		p = provider_new(base, def, err, sizeof(err));
		json_decref(def);
		if (p)
			fail_msg("\"%s\" taken", bad[i]);
		snprintf(want, sizeof(want),
			 bad[i][0] ? "provider.color_label: \"%s\" is not a Kubernetes label key"
				   : "provider.color_label: not a string",
			 bad[i]);
		assert_string_equal(err, want);
	}
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		def = json_pack("{s:s, s:s, s:s, s:s}", "type", "kubernetes", "server",
				"https://k:6443", "service", "app", "color_label", good[i]);
		p = provider_new(base, def, err, sizeof(err));
		json_decref(def);
		if (!p)
			fail_msg("\"%s\" refused: %s", good[i], err);
		provider_free(p);
	}
}

static void test_in_cluster_configuration_comes_from_the_environment(void **state)
{
	char err[256] = "";
	json_t *def = json_pack("{s:s, s:s}", "type", "kubernetes", "service", "app");
	struct provider *p;
	(void)state;

	setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1", 1);
	setenv("KUBERNETES_SERVICE_PORT", "443", 1);
	p = provider_new(base, def, err, sizeof(err));
	unsetenv("KUBERNETES_SERVICE_HOST");
	unsetenv("KUBERNETES_SERVICE_PORT");
	json_decref(def);
	assert_non_null(p);
	assert_true(provider_supports(p, PROVIDER_SWITCH));
	assert_false(provider_supports(p, PROVIDER_APPLY));
	provider_free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup(test_apply_sends_a_strategic_merge_patch_of_the_image, setup),
	    cmocka_unit_test_setup(test_a_rolling_apply_patches_the_deployments_strategy_too,
				   setup),
	    cmocka_unit_test_setup(test_verify_waits_through_kubectls_rollout_states, setup),
	    cmocka_unit_test_setup(test_progress_deadline_exceeded_fails_verify, setup),
	    cmocka_unit_test_setup(test_verify_gives_up_after_its_timeout, setup),
	    cmocka_unit_test_setup(test_switch_patches_the_service_selector, setup),
	    cmocka_unit_test_setup(
		test_scale_down_zeroes_the_colours_deployment_noting_its_replicas, setup),
	    cmocka_unit_test_setup(test_apply_gives_a_scaled_down_deployment_its_replicas_back,
				   setup),
	    cmocka_unit_test_setup(test_a_canarys_promote_gives_the_stable_deployment_the_release,
				   setup),
	    cmocka_unit_test_setup(test_api_error_reports_the_status_message, setup),
	    cmocka_unit_test_setup(test_token_is_read_again_for_each_request, setup),
	    cmocka_unit_test_setup(test_credential_files_are_the_workers_own, setup),
	    cmocka_unit_test_setup(test_unreachable_server_fails, setup),
	    cmocka_unit_test_setup(test_an_answer_too_long_fails_saying_so, setup),
	    cmocka_unit_test_setup(test_actions_without_what_they_need_are_refused, setup),
	    cmocka_unit_test_setup(test_bad_definitions_are_refused_with_the_key, setup),
	    cmocka_unit_test_setup(test_the_colour_label_is_a_kubernetes_label_key, setup),
	    cmocka_unit_test_setup(test_in_cluster_configuration_comes_from_the_environment, setup),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
