/* Tests for the walk of a rollout's plan (stages/rollout.h): a canary on an
 * exec provider whose every action appends a line to a log, so that a test
 * asserts on what the provider was asked to do and in which order. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <event2/event.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stages/process.h"
#include "stages/rollout.h"
#include "tests/unit/apistub.h"
#include "tests/unit/run_for.h"
#include "tests/unit/tmpdir.h"

/* What the callbacks saw. */
struct seen {
	struct event_base *base;
	char status[32];
	json_t *state; /* at the last park or done */
	json_t *saved; /* at the last save */
	json_t *steps; /* the data of every deploy.step event */
	int parks;
	int saves;
};

static void on_line(int output, const char *line, size_t len, void *arg)
{
	(void)output;
	(void)line;
	(void)len;
	(void)arg;
}

static void on_save(const json_t *state, const json_t *event, void *arg)
{
	struct seen *s = arg;
	const char *type = json_string_value(json_object_get(event, "type"));

	json_decref(s->saved);
	s->saved = json_deep_copy(state);
	s->saves++;
	if (type && !strcmp(type, "deploy.step"))
		json_array_append(s->steps, json_object_get(event, "data"));
}

static void keep(struct seen *s, const json_t *state)
{
	json_decref(s->state);
	s->state = json_deep_copy(state);
	event_base_loopbreak(s->base);
}

static void on_park(const json_t *state, int64_t until_ms, void *arg)
{
	struct seen *s = arg;
	(void)until_ms;

	s->parks++;
	keep(s, state);
}

static void on_done(const char *status, const char *message, const json_t *state, void *arg)
{
	struct seen *s = arg;
	(void)message;

	snprintf(s->status, sizeof(s->status), "%s", status);
	keep(s, state);
}

static const struct rollout_callbacks cb = {on_line, on_save, on_park, on_done};

/* Until the rollout parks or ends (or 10 s pass). */
static void run_until_stopped(struct seen *s)
{
	int parks = s->parks;

	for (int i = 0; i < 100 && !s->status[0] && s->parks == parks; i++)
		run_for(s->base, 100);
}

/* The provider logs each action as it starts; apply takes a while (so that
 * a command can arrive while it runs), and promote as long as SLOW_PROMOTE
 * says. */
#define ACTION(verb, after)                                                                        \
	"\"" verb "\": {\"sh\": \"echo " verb " w=$SLUICE_WEIGHT c=$SLUICE_COLOR >> $LOG; " after  \
	"\"}"

static json_t *canary(const char *steps, const char *more)
{
	char text[4096];
	json_error_t jerr;
	json_t *spec;

	snprintf(
	    text, sizeof(text),
	    "{\"strategy\": {\"type\": \"Canary\", \"progress_deadline_ms\": 5000,"
	    " \"steps\": %s%s}, \"image\": \"x\","
	    " \"provider\": {\"type\": \"exec\", \"actions\": {" ACTION("apply", "sleep 0.5") "," ACTION(
		"verify",
		"") "," ACTION("set_weight",
			       "") "," ACTION("promote",
					      "sleep $SLOW_PROMOTE") "," ACTION("scale_down",
										"") "}},"
										    " \"hooks\": "
										    "{\"pre\": [], "
										    "\"post\": "
										    "[]}, "
										    "\"checks\": "
										    "{\"pre\": [], "
										    "\"post\": "
										    "[]}}",
	    steps, more);
	spec = json_loads(text, 0, &jerr);
	if (!spec)
		fail_msg("spec: %s", jerr.text);
	return spec;
}

struct fixture {
	struct seen seen;
	char dir[64];
	char log[96];
	json_t *vars;
	json_t *spec;
	struct rollout_params p;
};

static struct fixture *fixture_new(const char *steps, const char *more)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->seen.base = event_base_new();
	f->seen.steps = json_array();
	assert_non_null(f->seen.base);
	assert_int_equal(process_init(f->seen.base), 0);
	assert_int_equal(tmpdir_make(f->dir, sizeof(f->dir), "sluice-test-rollout"), 0);
	snprintf(f->log, sizeof(f->log), "%s/actions.log", f->dir);
	f->vars = json_pack("{s:s, s:s}", "LOG", f->log, "SLOW_PROMOTE", "0");
	f->spec = canary(steps, more);
	f->p =
	    (struct rollout_params){.spec = f->spec, .vars = f->vars, .cwd = "/tmp", .image = "v2"};
	return f;
}

static struct rollout *start(struct fixture *f, const json_t *state)
{
	char err[256] = "";
	struct rollout *r;

	f->p.state = state;
	f->seen.status[0] = '\0';
	r = rollout_start(f->seen.base, &f->p, &cb, &f->seen, err, sizeof(err));
	if (!r)
		fail_msg("rollout_start: %s", err);
	return r;
}

/* The actions the provider carried out, one a line. */
static const char *actions(const struct fixture *f)
{
	static char buf[4096];
	FILE *in = fopen(f->log, "r");
	size_t n = in ? fread(buf, 1, sizeof(buf) - 1, in) : 0;

	buf[n] = '\0';
	if (in)
		fclose(in);
	return buf;
}

static void fixture_free(struct fixture *f)
{
	for (int i = 0; i < 100 && process_running() > 0; i++)
		run_for(f->seen.base, 20);
	tmpdir_remove(f->dir);
	json_decref(f->seen.state);
	json_decref(f->seen.saved);
	json_decref(f->seen.steps);
	json_decref(f->vars);
	json_decref(f->spec);
	process_shutdown();
	event_base_free(f->seen.base);
	free(f);
}

/* Runs the rollout until its current step is name, in flight. */
static void run_until_at(struct fixture *f, const struct rollout *r, const char *name)
{
	for (int i = 0; i < 200 && !f->seen.status[0]; i++) {
		const json_t *st = rollout_state(r);
		const json_t *step =
		    json_array_get(json_object_get(st, "steps"),
				   (size_t)json_integer_value(json_object_get(st, "step")));
		const char *status = json_string_value(json_object_get(step, "status"));

		if (!strcmp(json_string_value(json_object_get(step, "name")), name) && status &&
		    !strcmp(status, "active"))
			return;
		run_for(f->seen.base, 20);
	}
	fail_msg("never at \"%s\"", name);
}

#define PROMOTED_FROM_20_TO_100                                                                    \
	"apply w= c=canary\n"                                                                      \
	"verify w= c=canary\n"                                                                     \
	"set_weight w=20 c=\n"                                                                     \
	"set_weight w=100 c=\n"                                                                    \
	"promote w= c=\n"                                                                          \
	"verify w= c=stable\n"                                                                     \
	"set_weight w=0 c=\n"                                                                      \
	"scale_down w= c=canary\n"

static const char STRAIGHT_TO_100[] = "[{\"set_weight\": 20}, {\"set_weight\": 100}]";

static const char TWO_PAUSES[] = "[{\"set_weight\": 20}, {\"pause\": \"manual\"}, "
				 "{\"set_weight\": 50}, {\"pause\": \"manual\"}, "
				 "{\"set_weight\": 100}]";

/* Every step that is no longer pending in the last state seen was last
 * published (deploy.step under its index) with its name and its status:
 * a consumer of the events knows how each step ended. */
static void assert_the_events_tell_each_step(const struct fixture *f)
{
	const json_t *step, *e, *last;
	size_t i, j;

	json_array_foreach(json_object_get(f->seen.state, "steps"), i, step)
	{
		const char *status = json_string_value(json_object_get(step, "status"));
		if (!strcmp(status, "pending"))
			continue;
		last = NULL;
		json_array_foreach(f->seen.steps, j, e)
		{
			if (json_integer_value(json_object_get(e, "step")) == (json_int_t)i)
				last = e;
		}
		if (!last)
			fail_msg("step %zu (%s, %s) was never published", i,
				 json_string_value(json_object_get(step, "name")), status);
		assert_string_equal(json_string_value(json_object_get(last, "name")),
				    json_string_value(json_object_get(step, "name")));
		assert_string_equal(json_string_value(json_object_get(last, "status")), status);
	}
}

/* Runs the rollout until it parks at its first pause, then takes the
 * parked state up as another worker would, to carry out an operator's
 * command: that worker's rollout. */
static struct rollout *parked_then_commanded(struct fixture *f, const char *command)
{
	struct rollout *r = start(f, NULL);
	json_t *parked;

	run_until_stopped(&f->seen);
	assert_int_equal(f->seen.parks, 1);
	rollout_free(r);
	parked = json_incref(f->seen.state);
	r = start(f, parked);
	json_decref(parked);
	assert_int_equal(rollout_command(r, command, "ops"), 0);
	return r;
}

/* Parked at its first pause, resumed on a worker that takes the command:
 * the weight goes to 100 and the canary is promoted, none of the skipped
 * steps (setWeight 50, the second pause) is carried out. */
static void a_full_promotion_at_a_pause_goes_to_100_then_promotes(void **state)
{
	struct fixture *f = fixture_new(TWO_PAUSES, "");
	struct rollout *r = parked_then_commanded(f, "promote_full");
	const json_t *pause;
	(void)state;

	run_until_stopped(&f->seen);
	assert_string_equal(f->seen.status, "succeeded");
	assert_int_equal(f->seen.parks, 1);
	assert_string_equal(actions(f), PROMOTED_FROM_20_TO_100);
	/* The pause it was waiting at, after the inserted setWeight 100. */
	pause = json_array_get(json_object_get(f->seen.state, "steps"), 4);
	assert_string_equal(json_string_value(json_object_get(pause, "name")),
			    "pause until promoted");
	assert_string_equal(json_string_value(json_object_get(pause, "status")), "skipped");
	assert_string_equal(json_string_value(json_object_get(pause, "message")),
			    "full promotion by ops");
	assert_non_null(json_object_get(pause, "finished"));
	assert_the_events_tell_each_step(f);
	rollout_free(r);
	fixture_free(f);
}

/* The state saved right after a full promotion, taken up by another worker:
 * it too carries out none of the skipped steps. */
static void a_rollout_resumed_after_a_full_promotion_skips_what_it_skipped(void **state)
{
	struct fixture *f = fixture_new(TWO_PAUSES, "");
	struct rollout *r = parked_then_commanded(f, "promote_full");
	json_t *saved = json_deep_copy(rollout_state(r));
	(void)state;

	rollout_free(r);
	r = start(f, saved);
	run_until_stopped(&f->seen);
	assert_string_equal(f->seen.status, "succeeded");
	assert_int_equal(f->seen.parks, 1);
	assert_string_equal(actions(f), PROMOTED_FROM_20_TO_100);
	rollout_free(r);
	json_decref(saved);
	fixture_free(f);
}

/* While the canary is being applied: the apply carries on (it is not
 * started again), the canary is verified, and only then does it get all
 * the traffic; no pause holds it. */
static void a_full_promotion_during_apply_waits_for_apply_and_verify(void **state)
{
	struct fixture *f = fixture_new("[{\"set_weight\": 20}, {\"pause\": \"manual\"}, "
					"{\"set_weight\": 100}]",
					"");
	struct rollout *r = start(f, NULL);
	(void)state;

	run_for(f->seen.base, 150);
	assert_string_equal(actions(f), "apply w= c=canary\n");
	assert_int_equal(rollout_command(r, "promote_full", "ops"), 0);
	run_until_stopped(&f->seen);
	assert_string_equal(f->seen.status, "succeeded");
	assert_int_equal(f->seen.parks, 0);
	assert_string_equal(actions(f), "apply w= c=canary\n"
					"verify w= c=canary\n"
					"set_weight w=100 c=\n"
					"promote w= c=\n"
					"verify w= c=stable\n"
					"set_weight w=0 c=\n"
					"scale_down w= c=canary\n");
	assert_the_events_tell_each_step(f);
	rollout_free(r);
	fixture_free(f);
}

/* A background analysis none of whose measurements could be taken (the
 * metrics server is away, fewer errors than consecutiveErrorLimit) is
 * stopped once the steps are over: its verdict, Failed, is kept, and the
 * canary is promoted all the same, nothing aborted. */
static void a_background_analysis_stopped_after_the_steps_aborts_nothing(void **state)
{
	struct fixture *f = fixture_new(
	    "[{\"set_weight\": 20}, {\"pause_ms\": 800}, {\"set_weight\": 100}]",
	    ", \"background\": {\"interval_ms\": 10000, \"count\": 0, \"starting_step\": 0,"
	    " \"failure_condition\": \"result[0] > 0.5\", \"consecutive_error_limit\": 4,"
	    " \"failure_limit\": 0, \"inconclusive_limit\": 0, \"no_data\": \"inconclusive\","
	    " \"provider\": {\"prometheus\": {\"address\": \"http://127.0.0.1:1\","
	    " \"query\": \"errors\"}}}");
	struct rollout *r = start(f, NULL);
	const json_t *a;
	size_t i;
	const char *verdict = NULL;
	(void)state;

	run_until_stopped(&f->seen);
	assert_string_equal(f->seen.status, "succeeded");
	assert_int_equal(f->seen.parks, 0);
	assert_null(json_object_get(f->seen.state, "abort"));
	assert_string_equal(actions(f), "apply w= c=canary\n"
					"verify w= c=canary\n"
					"set_weight w=20 c=\n"
					"set_weight w=100 c=\n"
					"promote w= c=\n"
					"verify w= c=stable\n"
					"set_weight w=0 c=\n"
					"scale_down w= c=canary\n");
	json_array_foreach(json_object_get(f->seen.state, "analyses"), i, a)
	{
		if (!strcmp(json_string_value(json_object_get(a, "name")), "background"))
			verdict = json_string_value(json_object_get(a, "verdict"));
	}
	assert_non_null(verdict);
	assert_string_equal(verdict, "Failed");
	rollout_free(r);
	fixture_free(f);
}

/* The canary's background analysis from its canary step starting_step on:
 * one measurement of prom's error rate, which is to be under 5 %. */
static void measure_in_background(struct fixture *f, struct apistub *prom, const char *rate,
				  int starting_step)
{
	char address[64], reply[256];

	assert_int_equal(apistub_start(prom, f->seen.base), 0);
	snprintf(reply, sizeof(reply),
		 "{\"status\": \"success\", \"data\": {\"resultType\": \"vector\", "
		 "\"result\": [{\"metric\": {}, \"value\": [1, \"%s\"]}]}}",
		 rate);
	apistub_reply(prom, 200, reply);
	snprintf(address, sizeof(address), "http://127.0.0.1:%d", prom->port);
	json_object_set_new(
	    json_object_get(f->spec, "strategy"), "background",
	    json_pack("{s:i, s:i, s:i, s:s, s:i, s:i, s:i, s:s, s:{s:s, s:s, s:s}}", "count", 1,
		      "interval_ms", 0, "starting_step", starting_step, "success_condition",
		      "result[0] < 0.05", "consecutive_error_limit", 4, "failure_limit", 0,
		      "inconclusive_limit", 0, "no_data", "inconclusive", "provider", "type",
		      "prometheus", "address", address, "query", "errors"));
}

/* A background analysis whose count is taken during the steps is over for
 * the release, as Argo Rollouts' is: neither the steps after it nor a
 * worker resuming the parked rollout start it again. */
static void a_background_analysis_with_a_count_measures_once(void **state)
{
	struct fixture *f = fixture_new(TWO_PAUSES, "");
	struct apistub prom;
	struct rollout *r;
	json_t *parked = NULL, *a;
	size_t i;
	const json_t *background = NULL;
	(void)state;

	measure_in_background(f, &prom, "0.01", 0);
	r = start(f, NULL);
	for (int pauses = 0; pauses < 4 && !f->seen.status[0]; pauses++) {
		int parks = f->seen.parks;
		run_until_stopped(&f->seen);
		if (f->seen.parks > parks) {
			/* Parked: another worker takes it up. */
			rollout_free(r);
			json_decref(parked);
			parked = json_incref(f->seen.state);
			r = start(f, parked);
		}
		rollout_command(r, "promote", "ops");
	}
	assert_string_equal(f->seen.status, "succeeded");
	assert_int_equal(prom.nreq, 1);
	json_array_foreach(json_object_get(f->seen.state, "analyses"), i, a)
	{
		if (!strcmp(json_string_value(json_object_get(a, "name")), "background"))
			background = a;
	}
	assert_non_null(background);
	assert_string_equal(json_string_value(json_object_get(background, "verdict")),
			    "Successful");
	assert_int_equal(json_array_size(json_object_get(background, "measurements")), 1);
	rollout_free(r);
	json_decref(parked);
	apistub_stop(&prom);
	fixture_free(f);
}

/* Runs the canary to its promotion to stable (past the point of no
 * return), calls interrupt meanwhile, and checks that the final steps
 * carried on: the promote not stopped halfway, nothing aborted. */
static void assert_the_final_steps_carry_on(void (*interrupt)(struct rollout *))
{
	struct fixture *f = fixture_new(STRAIGHT_TO_100, "");
	struct rollout *r;

	json_object_set_new(f->vars, "SLOW_PROMOTE", json_string("0.5"));
	r = start(f, NULL);
	run_until_at(f, r, "promote the canary to stable");
	interrupt(r);
	run_until_stopped(&f->seen);
	assert_string_equal(f->seen.status, "succeeded");
	assert_null(json_object_get(f->seen.state, "abort"));
	assert_string_equal(actions(f), PROMOTED_FROM_20_TO_100);
	rollout_free(r);
	fixture_free(f);
}

static void abort_is_refused(struct rollout *r)
{
	assert_int_equal(rollout_command(r, "abort", "ops"), -1);
}

/* An operator's abort while the canary is being promoted is refused. */
static void an_abort_past_the_point_of_no_return_is_refused(void **state)
{
	(void)state;
	assert_the_final_steps_carry_on(abort_is_refused);
}

/* The run is cancelled while the canary is being promoted: the deployment
 * ends as its final steps do. */
static void a_cancel_past_the_point_of_no_return_lets_the_final_steps_finish(void **state)
{
	(void)state;
	assert_the_final_steps_carry_on(rollout_cancel);
}

/* A kubernetes provider without a server deploys in the worker's cluster:
 * on a worker outside one, the deployment fails saying so before any of
 * it runs, its pre hook included. */
static void a_kubernetes_provider_outside_its_cluster_fails_before_anything_runs(void **state)
{
	struct fixture *f = fixture_new("[]", "");
	json_t *spec = json_pack(
	    "{s:{s:s}, s:s, s:{s:s, s:s, s:s}, s:{s:[{s:s, s:s, s:[s, s, s], s:i}], s:[]},"
	    " s:{s:[], s:[]}}",
	    "strategy", "type", "RollingUpdate", "image", "x", "provider", "type", "kubernetes",
	    "deployment", "app", "container", "app", "hooks", "pre", "name", "migrate", "kind",
	    "command", "run", "sh", "-c", "echo migrate >> $LOG", "timeout_ms", 5000, "post",
	    "checks", "pre", "post");
	char err[256] = "";
	(void)state;

	assert_non_null(spec);
	f->p.spec = spec;
	unsetenv("KUBERNETES_SERVICE_HOST");
	assert_null(rollout_start(f->seen.base, &f->p, &cb, &f->seen, err, sizeof(err)));
	assert_string_equal(err, "provider.server: required outside a cluster "
				 "(KUBERNETES_SERVICE_HOST is not set)");
	run_for(f->seen.base, 200);
	assert_string_equal(actions(f), "");
	json_decref(spec);
	fixture_free(f);
}

/* A rolling update's apply has its bounds, a rollback's too (the
 * previous release replaces the instances within them); its verify has
 * none. */
static void a_rolling_updates_apply_has_its_bounds(void **state)
{
	struct fixture *f = fixture_new("[]", "");
	json_t *spec = json_pack(
	    "{s:{s:s, s:i, s:s, s:s}, s:s, s:{s:s, s:{s:{s:s}, s:{s:s}}}, s:{s:[], s:[]},"
	    " s:{s:[], s:[]}}",
	    "strategy", "type", "RollingUpdate", "progress_deadline_ms", 5000, "max_surge", "1",
	    "max_unavailable", "25%", "image", "x", "provider", "type", "exec", "actions", "apply",
	    "sh", "echo apply $SLUICE_IMAGE $SLUICE_MAX_SURGE $SLUICE_MAX_UNAVAILABLE >> $LOG",
	    "verify", "sh", "echo verify ${SLUICE_MAX_SURGE-none} >> $LOG", "hooks", "pre", "post",
	    "checks", "pre", "post");
	struct rollout *r;
	(void)state;

	assert_non_null(spec);
	f->p.spec = spec;
	r = start(f, NULL);
	run_until_stopped(&f->seen);
	assert_string_equal(f->seen.status, "succeeded");
	rollout_free(r);
	f->p.rollback = "v1";
	r = start(f, NULL);
	run_until_stopped(&f->seen);
	assert_string_equal(f->seen.status, "rolled_back");
	rollout_free(r);
	assert_string_equal(actions(f),
			    "apply v2 1 25%\nverify none\napply v1 1 25%\nverify none\n");
	json_decref(spec);
	fixture_free(f);
}

/* The rollout ended (status) with its current step, name, stopped in
 * flight: that step ended "aborted" with a message that begins with why,
 * in the state and in the last deploy.step event about it, and no step is
 * left active. */
static void assert_interrupted(const struct fixture *f, const char *status, const char *name,
			       const char *why)
{
	const json_t *steps = json_object_get(f->seen.state, "steps");
	json_int_t at = json_integer_value(json_object_get(f->seen.state, "step"));
	const json_t *step = json_array_get(steps, (size_t)at), *s, *event = NULL;
	size_t i;

	assert_string_equal(f->seen.status, status);
	json_array_foreach(steps, i, s)
	{
		assert_string_not_equal(json_string_value(json_object_get(s, "status")), "active");
	}
	assert_string_equal(json_string_value(json_object_get(step, "name")), name);
	assert_string_equal(json_string_value(json_object_get(step, "status")), "aborted");
	assert_ptr_equal(strstr(json_string_value(json_object_get(step, "message")), why),
			 json_string_value(json_object_get(step, "message")));
	assert_non_null(json_object_get(step, "finished"));
	json_array_foreach(f->seen.steps, i, s)
	{
		if (json_integer_value(json_object_get(s, "step")) == at)
			event = s;
	}
	assert_non_null(event);
	assert_string_equal(json_string_value(json_object_get(event, "name")), name);
	assert_string_equal(json_string_value(json_object_get(event, "status")), "aborted");
	assert_string_equal(json_string_value(json_object_get(event, "message")),
			    json_string_value(json_object_get(step, "message")));
}

/* The run is cancelled while the canary is being applied. */
static void a_cancel_ends_the_step_in_flight_aborted(void **state)
{
	struct fixture *f = fixture_new(STRAIGHT_TO_100, "");
	struct rollout *r = start(f, NULL);
	(void)state;

	run_until_at(f, r, "deploy the canary");
	rollout_cancel(r);
	run_until_stopped(&f->seen);
	assert_interrupted(f, "cancelled", "deploy the canary",
			   "interrupted: the run was cancelled");
	rollout_free(r);
	fixture_free(f);
}

/* An operator aborts a rollout parked at a pause: a worker takes it up to
 * carry out the abort. */
static void an_abort_at_a_parked_pause_ends_the_pause_aborted(void **state)
{
	struct fixture *f = fixture_new(TWO_PAUSES, "");
	struct rollout *r = parked_then_commanded(f, "abort");
	(void)state;

	run_until_stopped(&f->seen);
	assert_interrupted(f, "aborted", "pause until promoted", "interrupted: aborted by ops");
	rollout_free(r);
	fixture_free(f);
}

/* A background analysis fails during the pause it measures through. */
static void a_failed_background_analysis_ends_the_pause_aborted(void **state)
{
	struct fixture *f =
	    fixture_new("[{\"set_weight\": 20}, {\"pause_ms\": 5000}, {\"set_weight\": 100}]", "");
	struct apistub prom;
	struct rollout *r;
	(void)state;

	measure_in_background(f, &prom, "0.9", 1);
	r = start(f, NULL);
	run_until_stopped(&f->seen);
	assert_interrupted(f, "aborted", "pause 5 s",
			   "interrupted: analysis (background) Failed: ");
	rollout_free(r);
	apistub_stop(&prom);
	fixture_free(f);
}

static void assert_begins_with(const char *s, const char *prefix)
{
	assert_non_null(s);
	if (strncmp(s, prefix, strlen(prefix)) != 0)
		fail_msg("\"%s\" does not begin with \"%s\"", s, prefix);
}

/* The abort procedure's entry for the rollback of the pre hooks, in the
 * last state seen. */
static const json_t *rollback_entry(const struct fixture *f)
{
	const json_t *a;
	size_t i;

	json_array_foreach(json_object_get(f->seen.state, "abort"), i, a)
	{
		if (!strcmp(json_string_value(json_object_get(a, "kind")), "rollback"))
			return a;
	}
	fail_msg("no rollback in the abort procedure");
	return NULL;
}

/* Aborted at its pause, a canary whose pre hook ran has that hook's
 * rollback (exiting with exit_code) carried out: the abort procedure
 * records how it ended. */
static const json_t *abort_with_a_rollback(struct fixture *f, int exit_code)
{
	char script[32];
	struct rollout *r;

	snprintf(script, sizeof(script), "exit %d", exit_code);
	json_object_set_new(json_object_get(f->spec, "hooks"), "pre",
			    json_pack("[{s:s, s:s, s:s, s:i, s:{s:s, s:s, s:s, s:i}}]", "name",
				      "migrate", "kind", "command", "sh", "true", "timeout_ms",
				      5000, "rollback", "name", "migrate (rollback)", "kind",
				      "command", "sh", script, "timeout_ms", 5000));
	r = parked_then_commanded(f, "abort");
	run_until_stopped(&f->seen);
	assert_string_equal(f->seen.status, "aborted");
	rollout_free(r);
	return rollback_entry(f);
}

static void the_rollback_of_the_pre_hooks_ends_done(void **state)
{
	struct fixture *f = fixture_new(TWO_PAUSES, "");
	const json_t *a = abort_with_a_rollback(f, 0);
	(void)state;

	assert_string_equal(json_string_value(json_object_get(a, "status")), "done");
	fixture_free(f);
}

static void a_rollback_of_the_pre_hooks_that_fails_ends_failed_saying_why(void **state)
{
	struct fixture *f = fixture_new(TWO_PAUSES, "");
	const json_t *a = abort_with_a_rollback(f, 3);
	(void)state;

	assert_string_equal(json_string_value(json_object_get(a, "status")), "failed");
	assert_begins_with(json_string_value(json_object_get(a, "message")),
			   "migrate (rollback) failed: ");
	assert_begins_with(json_string_value(json_object_get(f->seen.state, "message")),
			   "aborted by ops; rollback of the pre hooks failed: "
			   "migrate (rollback) failed: ");
	fixture_free(f);
}

/* Aborted at its pause at 20 %, a canary whose traffic cannot be set back
 * (set_weight 0 fails): the scale-down that follows succeeds, the weights
 * recorded are still those the traffic has, and the deployment's message
 * says what failed. */
static void weights_stay_where_an_abort_failed_to_move_the_traffic(void **state)
{
	struct fixture *f = fixture_new(TWO_PAUSES, "");
	const json_t *w;
	struct rollout *r;
	(void)state;

	json_t *actions_def = json_object_get(json_object_get(f->spec, "provider"), "actions");
	json_object_set_new(
	    actions_def, "set_weight",
	    json_pack("{s:s}", "sh",
		      "echo set_weight w=$SLUICE_WEIGHT >> $LOG; test $SLUICE_WEIGHT != 0"));
	/* The provider's own abort succeeding moves no traffic either. */
	json_object_set_new(actions_def, "abort",
			    json_pack("{s:s}", "sh", "echo abort c=$SLUICE_COLOR >> $LOG"));
	r = parked_then_commanded(f, "abort");
	run_until_stopped(&f->seen);
	assert_string_equal(f->seen.status, "aborted");
	assert_string_equal(actions(f), "apply w= c=canary\n"
					"verify w= c=canary\n"
					"set_weight w=20\n"
					"set_weight w=0\n"
					"abort c=stable\n"
					"scale_down w= c=canary\n");
	w = json_object_get(f->seen.state, "weights");
	assert_int_equal(json_integer_value(json_object_get(w, "stable")), 80);
	assert_int_equal(json_integer_value(json_object_get(w, "canary")), 20);
	assert_string_equal(json_string_value(json_object_get(f->seen.state, "message")),
			    "aborted by ops; all traffic back to stable failed: "
			    "set_weight failed with exit code 1");
	rollout_free(r);
	fixture_free(f);
}

/* With a traffic provider that aborts (traffic back to stable), the
 * provider's own abort, cleanup the pipeline wrote, runs too, on the
 * provider: the abort procedure as documented. */
static void an_abort_runs_the_provider_s_abort_beside_the_traffic_s(void **state)
{
	struct fixture *f = fixture_new(TWO_PAUSES, "");
	struct rollout *r;
	(void)state;

	json_object_set_new(
	    json_object_get(json_object_get(f->spec, "provider"), "actions"), "abort",
	    json_pack("{s:s}", "sh", "echo provider-abort c=$SLUICE_COLOR >> $LOG"));
	json_object_set_new(f->spec, "traffic",
			    json_pack("{s:s, s:{s:{s:s}, s:{s:s}}}", "type", "exec", "actions",
				      "set_weight", "sh",
				      "echo traffic-weight w=$SLUICE_WEIGHT >> $LOG", "abort", "sh",
				      "echo traffic-abort >> $LOG"));
	r = parked_then_commanded(f, "abort");
	run_until_stopped(&f->seen);
	assert_string_equal(f->seen.status, "aborted");
	assert_string_equal(actions(f), "apply w= c=canary\n"
					"verify w= c=canary\n"
					"traffic-weight w=20\n"
					"traffic-abort\n"
					"provider-abort c=stable\n"
					"scale_down w= c=canary\n");
	const json_t *w = json_object_get(f->seen.state, "weights");
	assert_int_equal(json_integer_value(json_object_get(w, "canary")), 0);
	rollout_free(r);
	fixture_free(f);
}

/* A background analysis that ends Inconclusive during the canary's last
 * step, a pause it measures through: the rollout waits for a person before
 * it promotes the canary. */
static void an_inconclusive_background_analysis_waits_before_the_promotion(void **state)
{
	struct fixture *f = fixture_new("[{\"set_weight\": 20}, {\"pause_ms\": 1000}]", "");
	struct apistub prom;
	struct rollout *r;
	const json_t *st;
	(void)state;

	measure_in_background(f, &prom, "0.01", 1);
	apistub_reset(&prom);
	apistub_reply(&prom, 200,
		      "{\"status\": \"success\", \"data\": {\"resultType\": \"vector\", "
		      "\"result\": []}}");
	r = start(f, NULL);
	run_until_stopped(&f->seen);
	assert_int_equal(f->seen.parks, 1);
	st = json_array_get(json_object_get(f->seen.state, "steps"),
			    (size_t)json_integer_value(json_object_get(f->seen.state, "step")));
	assert_string_equal(json_string_value(json_object_get(st, "name")),
			    "inconclusive: waiting for promote");
	assert_string_equal(json_string_value(json_object_get(f->seen.state, "pause")), "manual");
	assert_string_equal(actions(f), "apply w= c=canary\n"
					"verify w= c=canary\n"
					"set_weight w=20 c=\n");
	rollout_free(r);
	apistub_stop(&prom);
	fixture_free(f);
}

/* The step the state is at. */
static const json_t *at_step(const json_t *state)
{
	return json_array_get(json_object_get(state, "steps"),
			      (size_t)json_integer_value(json_object_get(state, "step")));
}

/* An inconclusive verdict is saved until a pause takes it: a worker taking
 * the rollout up at a timed pause (after a hand-back) still waits for a
 * person there, saying why, and once promoted it does not wait again at
 * the steps after. */
static void an_inconclusive_verdict_is_waited_for_once_and_across_workers(void **state)
{
	struct fixture *f =
	    fixture_new("[{\"set_weight\": 20}, {\"pause_ms\": 60000}, {\"set_weight\": 50}]", "");
	struct rollout *r = start(f, NULL);
	json_t *parked;
	const json_t *st;
	(void)state;

	run_until_stopped(&f->seen);
	assert_int_equal(f->seen.parks, 1);
	assert_string_equal(json_string_value(json_object_get(f->seen.state, "pause")), "timed");
	rollout_free(r);
	/* As on_background_done leaves it when the verdict comes. */
	parked = json_deep_copy(f->seen.state);
	json_object_set_new(parked, "inconclusive_hold", json_true());
	r = start(f, parked);
	json_decref(parked);
	run_until_stopped(&f->seen);
	assert_int_equal(f->seen.parks, 2);
	assert_string_equal(json_string_value(json_object_get(f->seen.state, "pause")), "manual");
	st = at_step(f->seen.state);
	assert_true(json_is_true(json_object_get(st, "manual")));
	assert_true(json_is_true(json_object_get(st, "inconclusive")));
	assert_null(json_object_get(f->seen.state, "inconclusive_hold"));
	rollout_free(r);
	/* Promoted by a person, on yet another worker: no second wait. */
	parked = json_incref(f->seen.state);
	r = start(f, parked);
	json_decref(parked);
	assert_int_equal(rollout_command(r, "promote", "ops"), 0);
	run_until_stopped(&f->seen);
	assert_string_equal(f->seen.status, "succeeded");
	assert_int_equal(f->seen.parks, 2);
	assert_non_null(strstr(actions(f), "set_weight w=50 c=\n"));
	rollout_free(r);
	fixture_free(f);
}

/* The entry of state.analyses named name, or NULL. */
static const json_t *analysis_of(const json_t *state, const char *name)
{
	const json_t *a;
	size_t i;

	json_array_foreach(json_object_get(state, "analyses"), i, a)
	{
		if (!strcmp(json_string_value(json_object_get(a, "name")), name))
			return a;
	}
	return NULL;
}

/* A canary paused for a person while a background analysis of count and
 * interval_ms measures it, run until its first measurement is saved. */
static struct rollout *first_measurement_saved(struct fixture *f, struct apistub *prom, int count,
					       int interval_ms)
{
	json_t *bg;
	struct rollout *r;

	measure_in_background(f, prom, "0.01", 0);
	bg = json_object_get(json_object_get(f->spec, "strategy"), "background");
	json_object_set_new(bg, "count", json_integer(count));
	json_object_set_new(bg, "interval_ms", json_integer(interval_ms));
	r = start(f, NULL);
	for (int i = 0; i < 200; i++) {
		run_for(f->seen.base, 20);
		const json_t *a = analysis_of(f->seen.saved, "background");
		if (json_array_size(json_object_get(a, "measurements")) == 1)
			break;
	}
	assert_int_equal(json_array_size(json_object_get(analysis_of(f->seen.saved, "background"),
							 "measurements")),
			 1);
	assert_int_equal(prom->nreq, 1);
	return r;
}

/* A background analysis whose worker stops while it measures (the rollout
 * freed, the state it saved last taken up by another) carries on from what
 * it saved: the measurement before is still there, and its count of two
 * holds across both, the second one taken its interval after the first. */
static void a_background_analysis_carries_on_from_its_saved_measurements(void **state)
{
	struct fixture *f = fixture_new(
	    "[{\"set_weight\": 20}, {\"pause\": \"manual\"}, {\"set_weight\": 100}]", "");
	json_t *saved;
	const json_t *a = NULL, *ms;
	struct apistub prom;
	struct rollout *r;
	(void)state;

	r = first_measurement_saved(f, &prom, 2, 2000);
	saved = json_deep_copy(f->seen.saved);
	rollout_free(r);
	r = start(f, saved);
	for (int i = 0; i < 200; i++) {
		a = analysis_of(rollout_state(r), "background");
		if (json_object_get(a, "verdict"))
			break;
		run_for(f->seen.base, 20);
	}
	assert_string_equal(json_string_value(json_object_get(a, "verdict")), "Successful");
	assert_int_equal(prom.nreq, 2);
	ms = json_object_get(a, "measurements");
	assert_int_equal(json_array_size(ms), 2);
	assert_true(json_equal(
	    json_array_get(ms, 0),
	    json_array_get(json_object_get(analysis_of(saved, "background"), "measurements"), 0)));
	/* An interval after the first, not at once. "at" is the wall clock in
	 * ms, read apart from the monotonic time the timer runs on, and
	 * libevent counts a timer from the time it cached for the loop's turn:
	 * a few ms early under load (it failed once with 1 ms allowed). */
	assert_true(json_integer_value(json_object_get(json_array_get(ms, 1), "at")) >=
		    json_integer_value(json_object_get(json_array_get(ms, 0), "at")) + 2000 - 50);
	assert_int_equal(rollout_command(r, "promote", "ops"), 0);
	run_until_stopped(&f->seen);
	assert_string_equal(f->seen.status, "succeeded");
	rollout_free(r);
	json_decref(saved);
	apistub_stop(&prom);
	fixture_free(f);
}

/* An analysis's progress is saved as each measurement is recorded, and
 * not in between: with a minute between measurements, nothing is saved
 * for the seconds after the first once the steps have come to their pause
 * (they run beside the analysis, and save as they go). */
static void an_analysis_is_saved_at_each_measurement_and_not_in_between(void **state)
{
	struct fixture *f = fixture_new(
	    "[{\"set_weight\": 20}, {\"pause\": \"manual\"}, {\"set_weight\": 100}]", "");
	struct apistub prom;
	struct rollout *r;
	json_t *paused = json_string("Paused");
	int saves;
	(void)state;

	r = first_measurement_saved(f, &prom, 3, 60000);
	for (int i = 0; i < 200 && !json_equal(json_object_get(f->seen.saved, "phase"), paused);
	     i++)
		run_for(f->seen.base, 20);
	assert_true(json_equal(json_object_get(f->seen.saved, "phase"), paused));
	saves = f->seen.saves;
	run_for(f->seen.base, 2500);
	assert_int_equal(f->seen.saves, saves);
	assert_int_equal(prom.nreq, 1);
	json_decref(paused);
	rollout_free(r);
	apistub_stop(&prom);
	fixture_free(f);
}

/* An analysis in its initialDelay when its worker stops is saved with its
 * start: the next one waits what is left of the delay, not all of it
 * again (3 s, stopped after 1.5 s: measured within 2.2 s of the restart). */
static void an_analysis_s_initial_delay_counts_from_its_first_start(void **state)
{
	struct fixture *f = fixture_new(
	    "[{\"set_weight\": 20}, {\"pause\": \"manual\"}, {\"set_weight\": 100}]", "");
	json_t *bg, *saved;
	struct apistub prom;
	struct rollout *r;
	(void)state;

	measure_in_background(f, &prom, "0.01", 0);
	bg = json_object_get(json_object_get(f->spec, "strategy"), "background");
	json_object_set_new(bg, "initial_delay_ms", json_integer(3000));
	r = start(f, NULL);
	run_for(f->seen.base, 1500);
	assert_int_equal(prom.nreq, 0);
	assert_non_null(json_object_get(analysis_of(f->seen.saved, "background"), "started"));
	saved = json_deep_copy(f->seen.saved);
	rollout_free(r);
	r = start(f, saved);
	run_for(f->seen.base, 2200);
	assert_int_equal(prom.nreq, 1);
	rollout_free(r);
	json_decref(saved);
	apistub_stop(&prom);
	fixture_free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(a_full_promotion_at_a_pause_goes_to_100_then_promotes),
	    cmocka_unit_test(a_rollout_resumed_after_a_full_promotion_skips_what_it_skipped),
	    cmocka_unit_test(a_full_promotion_during_apply_waits_for_apply_and_verify),
	    cmocka_unit_test(a_background_analysis_stopped_after_the_steps_aborts_nothing),
	    cmocka_unit_test(a_background_analysis_with_a_count_measures_once),
	    cmocka_unit_test(an_abort_past_the_point_of_no_return_is_refused),
	    cmocka_unit_test(a_cancel_past_the_point_of_no_return_lets_the_final_steps_finish),
	    cmocka_unit_test(a_kubernetes_provider_outside_its_cluster_fails_before_anything_runs),
	    cmocka_unit_test(a_rolling_updates_apply_has_its_bounds),
	    cmocka_unit_test(a_cancel_ends_the_step_in_flight_aborted),
	    cmocka_unit_test(an_abort_at_a_parked_pause_ends_the_pause_aborted),
	    cmocka_unit_test(a_failed_background_analysis_ends_the_pause_aborted),
	    cmocka_unit_test(the_rollback_of_the_pre_hooks_ends_done),
	    cmocka_unit_test(a_rollback_of_the_pre_hooks_that_fails_ends_failed_saying_why),
	    cmocka_unit_test(weights_stay_where_an_abort_failed_to_move_the_traffic),
	    cmocka_unit_test(an_abort_runs_the_provider_s_abort_beside_the_traffic_s),
	    cmocka_unit_test(an_inconclusive_background_analysis_waits_before_the_promotion),
	    cmocka_unit_test(an_inconclusive_verdict_is_waited_for_once_and_across_workers),
	    cmocka_unit_test(a_background_analysis_carries_on_from_its_saved_measurements),
	    cmocka_unit_test(an_analysis_is_saved_at_each_measurement_and_not_in_between),
	    cmocka_unit_test(an_analysis_s_initial_delay_counts_from_its_first_start),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
