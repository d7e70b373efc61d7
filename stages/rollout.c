/* rollout: the plan of a strategy and the loop that walks it.
 *
 * The plan is a list of steps, each {"name", "kind", ...its parameters,
 * "status", "started", "finished", "message"}; kinds:
 *   checks {phase}        the pre or post checklist, every item reported
 *   hooks {phase}         the pre or post hooks, stopping at the first failure
 *   action {verb, color?, weight?, image?}   one provider action
 *   verify {color?, preview?}  the provider's verify (preview: of a blue/green
 *                         colour before the switch), again every second until it
 *                         holds or the progress deadline passes
 *   analysis {label, spec}
 *   pause {ms | manual, auto?}  auto: a delay nobody needs to promote
 * A step marked "final" comes after the point of no return (the new version
 * is the stable one): its failure fails the deployment without an abort.
 */
#include "stages/rollout.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/clock.h"
#include "lib/utf8.h"
#include "stages/analysis.h"
#include "stages/checklist.h"
#include "stages/provider.h"

#define VERIFY_RETRY_MS 1000
#define MESSAGE_MAX	1024

struct rollout {
	struct event_base *base;
	struct rollout_callbacks cb;
	void *arg;
	json_t *spec;  /* borrowed from the caller for as long as the rollout lives */
	json_t *state; /* own */
	json_t *vars;
	char *cwd;
	char *image;
	char *rollback_image;
	struct provider *provider;
	struct provider *traffic; /* NULL: the provider routes traffic too */
	/* what is in flight */
	struct checklist *checklist;
	struct analysis *analysis;   /* a step's */
	struct analysis *background; /* the canary's background analysis */
	struct provider *busy;	     /* the provider with an action in flight */
	struct event *timer;	     /* pause, verify retry */
	struct event *kick;	     /* the next step, from the loop */
	json_t *abort_plan;	     /* the abort procedure, once begun */
	size_t abort_at;
	const char *end_status; /* after the abort procedure */
	char end_message[MESSAGE_MAX];
	int hold; /* an inconclusive background analysis: wait for an operator
		   * (kept in the state as "inconclusive_hold" until a pause takes it) */
	int background_stopping;
	int ended;
};

static void step_next(struct rollout *r);
static int abort_begin(struct rollout *r, const char *status, const char *why);

/* --- state --------------------------------------------------------------- */

static json_t *steps(const struct rollout *r)
{
	return json_object_get(r->state, "steps");
}

static json_t *current(const struct rollout *r)
{
	return json_array_get(steps(r),
			      (size_t)json_integer_value(json_object_get(r->state, "step")));
}

static const char *str(const json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

static void logf_(struct rollout *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void logf_(struct rollout *r, const char *fmt, ...)
{
	char line[MESSAGE_MAX];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	r->cb.line(0, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1, r->arg);
}

static void save(struct rollout *r, const char *type, json_t *data)
{
	json_t *event = NULL;

	if (type && data)
		event = json_pack("{s:s, s:O}", "type", type, "data", data);
	r->cb.save(r->state, event, r->arg);
	json_decref(event);
	json_decref(data);
}

/* The step's status changes: recorded, logged and published under its own
 * index (a full promotion skips steps after the current one). */
static void mark(struct rollout *r, json_t *step, const char *status, const char *message)
{
	const char *key = !strcmp(status, "active") ? "started" : "finished";
	size_t at = 0;
	json_t *data;

	while (at < json_array_size(steps(r)) && json_array_get(steps(r), at) != step)
		at++;
	json_object_set_new(step, "status", json_string(status));
	if (strcmp(status, "pending") != 0)
		json_object_set_new(step, key, json_integer(clock_now_ms()));
	if (message)
		json_object_set_new(step, "message", json_string(message));
	else if (!strcmp(status, "active"))
		json_object_del(step, "message");
	logf_(r, "step %zu (%s): %s%s%s", at + 1, str(step, "name"), status, message ? ": " : "",
	      message ? message : "");
	data = json_pack("{s:I, s:s, s:s}", "step", (json_int_t)at, "name", str(step, "name"),
			 "status", status);
	if (message)
		json_object_set_new(data, "message", json_string(message));
	json_object_set(data, "weights", json_object_get(r->state, "weights"));
	save(r, "deploy.step", data);
}

static void set_phase(struct rollout *r, const char *phase)
{
	json_object_set_new(r->state, "phase", json_string(phase));
}

static void set_weights(struct rollout *r, const char *a, int wa, const char *b, int wb)
{
	json_object_set_new(r->state, "weights", json_pack("{s:i, s:i}", a, wa, b, wb));
}

/* --- the plan ------------------------------------------------------------ */

static int add(json_t *plan, json_t *step)
{
	if (!step)
		return -1;
	json_object_set_new(step, "status", json_string("pending"));
	return json_array_append_new(plan, step);
}

static json_t *action(const char *name, const char *verb)
{
	return json_pack("{s:s, s:s, s:s}", "name", name, "kind", "action", "verb", verb);
}

static json_t *with(json_t *step, const char *key, json_t *v)
{
	if (step)
		json_object_set_new(step, key, v);
	else
		json_decref(v);
	return step;
}

static void add_phase(json_t *plan, const json_t *spec, const char *kind, const char *phase)
{
	char name[64];

	if (!json_array_size(json_object_get(json_object_get(spec, kind), phase)))
		return;
	snprintf(name, sizeof(name), "%s %s", phase, kind);
	add(plan, json_pack("{s:s, s:s, s:s}", "name", name, "kind", kind, "phase", phase));
}

static void add_analysis(json_t *plan, const char *label, const json_t *spec)
{
	char name[96];

	if (!spec)
		return;
	snprintf(name, sizeof(name), "analysis (%s)", label);
	add(plan, json_pack("{s:s, s:s, s:s, s:O}", "name", name, "kind", "analysis", "label",
			    label, "spec", spec));
}

static void add_pause(json_t *plan, const char *name, long long ms, int automatic)
{
	json_t *p = json_pack("{s:s, s:s}", "name", name, "kind", "pause");

	if (ms > 0)
		json_object_set_new(p, "ms", json_integer(ms));
	else
		json_object_set_new(p, "manual", json_true());
	if (automatic)
		json_object_set_new(p, "auto", json_true());
	add(plan, p);
}

static json_t * final(json_t *step)
{
	return with(step, "final", json_true());
}

/* The verify of a blue/green colour before traffic is switched to it. */
static json_t *preview_verify(const char *name, const char *color)
{
	return json_pack("{s:s, s:s, s:s, s:b}", "name", name, "kind", "verify", "color", color,
			 "preview", 1);
}

static void plan_rolling(struct rollout *r, json_t *plan)
{
	const json_t *spec = r->spec;

	add_phase(plan, spec, "checks", "pre");
	add_phase(plan, spec, "hooks", "pre");
	add(plan, action("apply the new version", "apply"));
	add(plan, json_pack("{s:s, s:s}", "name", "wait until ready", "kind", "verify"));
	add_phase(plan, spec, "checks", "post");
	if (json_array_size(json_object_get(json_object_get(spec, "hooks"), "post")))
		add(plan, final(json_pack("{s:s, s:s, s:s}", "name", "post hooks", "kind", "hooks",
					  "phase", "post")));
}

static void plan_bluegreen(struct rollout *r, json_t *plan, const char *live, const char *idle)
{
	const json_t *s = json_object_get(r->spec, "strategy");
	long long after = json_integer_value(json_object_get(s, "auto_promote_after_ms"));
	char name[128];

	add_phase(plan, r->spec, "checks", "pre");
	add_phase(plan, r->spec, "hooks", "pre");
	snprintf(name, sizeof(name), "deploy to %s (preview)", idle);
	add(plan, with(action(name, "apply"), "color", json_string(idle)));
	snprintf(name, sizeof(name), "wait until %s is ready", idle);
	add(plan, preview_verify(name, idle));
	add_analysis(plan, "prePromotion", json_object_get(s, "pre_analysis"));
	if (!json_is_true(json_object_get(s, "auto_promote")))
		add_pause(plan, after > 0 ? "promote after a delay" : "wait for promote", after, 0);
	snprintf(name, sizeof(name), "switch traffic to %s", idle);
	add(plan, with(action(name, "switch"), "color", json_string(idle)));
	add_analysis(plan, "postPromotion", json_object_get(s, "post_analysis"));
	add_phase(plan, r->spec, "checks", "post");
	if (json_array_size(json_object_get(json_object_get(r->spec, "hooks"), "post")))
		add(plan, final(json_pack("{s:s, s:s, s:s}", "name", "post hooks", "kind", "hooks",
					  "phase", "post")));
	add_pause(plan, "scale-down delay",
		  json_integer_value(json_object_get(s, "scale_down_delay_ms")), 1);
	json_object_set_new(json_array_get(plan, json_array_size(plan) - 1), "final", json_true());
	snprintf(name, sizeof(name), "scale down %s", live);
	add(plan, final(with(action(name, "scale_down"), "color", json_string(live))));
}

static void plan_canary(struct rollout *r, json_t *plan)
{
	const json_t *s = json_object_get(r->spec, "strategy");
	const json_t *step;
	size_t i;
	char name[128];

	add_phase(plan, r->spec, "checks", "pre");
	add_phase(plan, r->spec, "hooks", "pre");
	add(plan, with(action("deploy the canary", "apply"), "color", json_string("canary")));
	add(plan, json_pack("{s:s, s:s, s:s}", "name", "wait until the canary is ready", "kind",
			    "verify", "color", "canary"));
	json_array_foreach(json_object_get(s, "steps"), i, step)
	{
		json_t *p;

		if (json_object_get(step, "set_weight")) {
			int w = (int)json_integer_value(json_object_get(step, "set_weight"));
			snprintf(name, sizeof(name), "setWeight %d", w);
			p = with(action(name, "set_weight"), "weight", json_integer(w));
		} else if (json_object_get(step, "analysis")) {
			snprintf(name, sizeof(name), "step %zu", i + 1);
			add_analysis(plan, name, json_object_get(step, "analysis"));
			p = json_array_get(plan, json_array_size(plan) - 1);
			json_object_set_new(p, "canary_step", json_integer((json_int_t)i));
			continue;
		} else {
			long long ms = json_integer_value(json_object_get(step, "pause_ms"));
			if (ms > 0)
				snprintf(name, sizeof(name), "pause %lld s", (ms + 999) / 1000);
			else
				snprintf(name, sizeof(name), "pause until promoted");
			add_pause(plan, name, ms, 0);
			p = json_array_get(plan, json_array_size(plan) - 1);
			json_object_set_new(p, "canary_step", json_integer((json_int_t)i));
			continue;
		}
		json_object_set_new(p, "canary_step", json_integer((json_int_t)i));
		add(plan, p);
	}
	add_phase(plan, r->spec, "checks", "post");
	add(plan, final(action("promote the canary to stable", "promote")));
	add(plan, final(json_pack("{s:s, s:s, s:s, s:b}", "name", "wait until stable is ready",
				  "kind", "verify", "color", "stable", "final", 1)));
	add(plan,
	    final(with(action("traffic back to stable", "set_weight"), "weight", json_integer(0))));
	add(plan, final(with(action("scale down the canary", "scale_down"), "color",
			     json_string("canary"))));
	if (json_array_size(json_object_get(json_object_get(r->spec, "hooks"), "post")))
		add(plan, final(json_pack("{s:s, s:s, s:s}", "name", "post hooks", "kind", "hooks",
					  "phase", "post")));
}

/* Restores the previous release at once: no hooks, checks or analysis. */
static void plan_rollback(struct rollout *r, json_t *plan, const char *type, const char *live,
			  const char *idle)
{
	char name[160];

	if (!strcmp(type, "Canary")) {
		add(plan, action("restore the previous release on stable", "promote"));
		add(plan, json_pack("{s:s, s:s, s:s}", "name", "wait until stable is ready", "kind",
				    "verify", "color", "stable"));
		add(plan,
		    with(action("all traffic to stable", "set_weight"), "weight", json_integer(0)));
	} else if (!strcmp(type, "BlueGreen")) {
		snprintf(name, sizeof(name), "deploy the previous release to %s", idle);
		add(plan, with(action(name, "apply"), "color", json_string(idle)));
		snprintf(name, sizeof(name), "wait until %s is ready", idle);
		add(plan, preview_verify(name, idle));
		snprintf(name, sizeof(name), "switch traffic to %s", idle);
		add(plan, with(action(name, "switch"), "color", json_string(idle)));
	} else {
		add(plan, action("apply the previous release", "apply"));
		add(plan, json_pack("{s:s, s:s}", "name", "wait until ready", "kind", "verify"));
	}
	json_object_set_new(r->state, "rollback", json_true());
	(void)live;
}

static int plan_new(struct rollout *r, const struct rollout_params *p)
{
	const char *type = str(json_object_get(r->spec, "strategy"), "type");
	const json_t *s = json_object_get(r->spec, "strategy");
	const char *active = str(s, "active"), *preview = str(s, "preview");
	const char *live = NULL, *idle = NULL;
	json_t *plan = json_array();

	if (!plan)
		return -1;
	r->state = json_pack("{s:s, s:s, s:i, s:o, s:s, s:I, s:{}, s:[], s:{}, s:{}}", "strategy",
			     type, "phase", "Progressing", "step", 0, "steps", plan, "image",
			     r->image, "started", (json_int_t)clock_now_ms(), "weights", "analyses",
			     "checks", "hooks");
	if (!r->state)
		return -1;
	if (!strcmp(type, "BlueGreen")) {
		live = p->active && *p->active ? p->active : active;
		idle = !strcmp(live, preview) ? active : preview;
		json_object_set_new(r->state, "color", json_string(idle));
		json_object_set_new(r->state, "old_color", json_string(live));
		set_weights(r, live, 100, idle, 0);
	} else if (!strcmp(type, "Canary")) {
		set_weights(r, "stable", 100, "canary", 0);
	}
	if (r->rollback_image)
		plan_rollback(r, plan, type, live, idle);
	else if (!strcmp(type, "BlueGreen"))
		plan_bluegreen(r, plan, live, idle);
	else if (!strcmp(type, "Canary"))
		plan_canary(r, plan);
	else
		plan_rolling(r, plan);
	return 0;
}

/* --- ending -------------------------------------------------------------- */

static void stop_inflight(struct rollout *r)
{
	if (r->checklist) {
		checklist_cancel(r->checklist);
		r->checklist = NULL;
	}
	if (r->analysis) {
		analysis_free(r->analysis);
		r->analysis = NULL;
	}
	if (r->busy) {
		provider_cancel(r->busy);
		r->busy = NULL;
	}
	if (r->timer)
		evtimer_del(r->timer);
}

static void stop_background(struct rollout *r)
{
	if (r->background) {
		analysis_free(r->background);
		r->background = NULL;
	}
}

static void end(struct rollout *r, const char *status, const char *message)
{
	const char *phase =
	    !strcmp(status, "succeeded") || !strcmp(status, "rolled_back") ? "Healthy"
	    : !strcmp(status, "aborted") || !strcmp(status, "cancelled")   ? "Aborted"
									   : "Degraded";
	stop_inflight(r);
	stop_background(r);
	r->ended = 1;
	set_phase(r, phase);
	json_object_del(r->state, "paused_until");
	json_object_del(r->state, "pause");
	if (message)
		json_object_set_new(r->state, "message", json_string(message));
	logf_(r, "deployment %s%s%s", status, message ? ": " : "", message ? message : "");
	r->cb.done(status, message, r->state, r->arg);
}

/* --- analyses ------------------------------------------------------------ */

/* The entry of state.analyses for label, or NULL. */
static json_t *analysis_find(const struct rollout *r, const char *label)
{
	json_t *e;
	size_t i;

	json_array_foreach(json_object_get(r->state, "analyses"), i, e)
	{
		if (!strcmp(str(e, "name"), label))
			return e;
	}
	return NULL;
}

/* The entry of state.analyses for label, created on first use. */
static json_t *analysis_entry(struct rollout *r, const char *label)
{
	json_t *e = analysis_find(r, label);

	if (e)
		return e;
	e = json_pack("{s:s}", "name", label);
	json_array_append_new(json_object_get(r->state, "analyses"), e);
	return e;
}

static void save_analyses(void *arg);

/* Starts the analysis of label, or carries it on where it was when the
 * worker that ran it before stopped (died, or handed it back): its entry
 * without a verdict is an analysis that was measuring then, since one that
 * ends records its verdict, and one stopped by an abort or a full
 * promotion never starts again. An Argo Rollouts AnalysisRun outlives its
 * controller so: its counts and measurements carry on, and its limits do
 * not start over. */
static struct analysis *analysis_begin(struct rollout *r, const char *label, const json_t *spec,
				       analysis_done_cb done, char *err, size_t errlen)
{
	const json_t *saved = analysis_find(r, label);

	if (saved && json_object_get(saved, "verdict"))
		saved = NULL;
	if (saved)
		logf_(r,
		      "analysis (%s) carries on: %lld successful, %lld failed, %lld "
		      "inconclusive, %lld errors so far",
		      label, (long long)json_integer_value(json_object_get(saved, "successful")),
		      (long long)json_integer_value(json_object_get(saved, "failed")),
		      (long long)json_integer_value(json_object_get(saved, "inconclusive")),
		      (long long)json_integer_value(json_object_get(saved, "errors")));
	struct analysis *a = analysis_resume(r->base, spec, saved, NULL, done, r, err, errlen);
	if (a)
		analysis_on_measured(a, save_analyses);
	return a;
}

static void analysis_record(struct rollout *r, const char *label, const json_t *result)
{
	json_t *e = analysis_entry(r, label);

	json_object_update(e, (json_t *)result);
	json_object_set_new(e, "name", json_string(label));
}

/* As an analysis starts and after each of its measurements: the progress
 * of those running is saved, so that a worker that takes the rollout up
 * after this one died carries them on from there (analysis_begin), its
 * initialDelay counted from its start. */
static void save_analyses(void *arg)
{
	struct rollout *r = arg;

	if (r->analysis)
		analysis_record(r, str(current(r), "label"), analysis_progress(r->analysis));
	if (r->background)
		analysis_record(r, "background", analysis_progress(r->background));
	save(r, NULL, NULL);
}

static void verdict_message(char *out, size_t len, const char *label,
			    const struct analysis_result *res)
{
	snprintf(out, len, "analysis (%s) %s: %s", label, analysis_verdict_name(res->verdict),
		 res->message ? res->message : "");
}

static void on_background_done(const struct analysis_result *res, void *arg)
{
	struct rollout *r = arg;
	char why[MESSAGE_MAX];

	r->background = NULL;
	/* Its count taken, it is over for this release, as Argo Rollouts'
	 * is: the next step would start it again otherwise. */
	if (res->verdict == ANALYSIS_SUCCESSFUL)
		json_object_set_new(r->state, "background_done", json_true());
	/* An inconclusive verdict that decides is saved with it, so that a
	 * worker taking the rollout up still waits for the person. */
	int holds = res->verdict == ANALYSIS_INCONCLUSIVE && !r->abort_plan && !r->ended &&
		    !r->background_stopping;
	if (holds)
		json_object_set_new(r->state, "inconclusive_hold", json_true());
	analysis_record(r, "background", res->json);
	verdict_message(why, sizeof(why), "background", res);
	logf_(r, "%s", why);
	save(r, "deploy.analysis",
	     json_pack("{s:s, s:s, s:s}", "name", "background", "verdict",
		       analysis_verdict_name(res->verdict), "message",
		       res->message ? res->message : ""));
	if (r->abort_plan || r->ended)
		return;
	if (r->background_stopping) {
		/* Stopped after the steps: the verdict is kept, it decides nothing. */
		logf_(r,
		      "background analysis stopped after the steps: its verdict decides nothing");
		return;
	}
	if (res->verdict == ANALYSIS_FAILED) {
		abort_begin(r, "aborted", why);
	} else if (holds) {
		r->hold = 1;
	}
}

/* The person an inconclusive verdict waits for is now waited for, by the
 * pause step: the verdict is not waited for again. */
static void hold_taken(struct rollout *r, json_t *pause)
{
	if (!r->hold)
		return;
	r->hold = 0;
	json_object_del(r->state, "inconclusive_hold");
	json_object_set_new(pause, "manual", json_true());
	json_object_set_new(pause, "inconclusive", json_true());
}

/* The background analysis runs while the current step is a canary step at
 * or after its starting step. */
static void background_check(struct rollout *r)
{
	const json_t *bg = json_object_get(json_object_get(r->spec, "strategy"), "background");
	const json_t *at = json_object_get(current(r), "canary_step");
	char err[256];

	if (!bg || r->abort_plan)
		return;
	if (!at ||
	    json_integer_value(at) < json_integer_value(json_object_get(bg, "starting_step"))) {
		if (r->background && !at && !r->background_stopping &&
		    !json_object_get(analysis_progress(r->background), "verdict")) {
			/* Past the steps: what was measured decides nothing more.
			 * A verdict reached during the steps still does. */
			r->background_stopping = 1;
			analysis_stop(r->background);
		}
		return;
	}
	if (r->background || json_is_true(json_object_get(r->state, "background_done")))
		return;
	r->background = analysis_begin(r, "background", bg, on_background_done, err, sizeof(err));
	if (!r->background) {
		logf_(r, "background analysis not started: %s", err);
		return;
	}
	logf_(r, "background analysis started");
	save_analyses(r);
}

/* --- running a step ------------------------------------------------------ */

static void step_done(struct rollout *r, int ok, const char *message)
{
	json_t *step = current(r);

	if (r->ended)
		return;
	if (ok) {
		mark(r, step, "done", message);
		json_object_set_new(
		    r->state, "step",
		    json_integer(json_integer_value(json_object_get(r->state, "step")) + 1));
		step_next(r);
		return;
	}
	mark(r, step, "failed", message);
	if (json_is_true(json_object_get(step, "final"))) {
		end(r, "failed", message);
		return;
	}
	abort_begin(r, "failed", message);
}

/* An entry of the abort procedure ended: recorded and logged. One that
 * failed is named in the deployment's message too: what it was to undo
 * (traffic on the canary, say) is still there. */
static void abort_entry_end(struct rollout *r, json_t *a, int ok, const char *message)
{
	char text[2 * MESSAGE_MAX];

	if (!message)
		message = ok ? "done" : "failed";
	json_object_set_new(a, "status", json_string(ok ? "done" : "failed"));
	json_object_set_new(a, "message", json_string(message));
	logf_(r, "abort: %s: %s", str(a, "name"), message);
	if (ok)
		return;
	snprintf(text, sizeof(text), "%s; %s failed: %s", r->end_message, str(a, "name"), message);
	utf8_copy(r->end_message, sizeof(r->end_message), text, strlen(text));
}

static void on_action(int ok, const char *message, void *arg)
{
	struct rollout *r = arg;
	json_t *step = current(r);
	const char *verb = str(step, "verb");

	r->busy = NULL;
	if (r->abort_plan) {
		json_t *a = json_array_get(r->abort_plan, r->abort_at - 1);
		abort_entry_end(r, a, ok, message);
		/* Only the entry that moves traffic moves the weights: the
		 * provider's abort or the canary's scale-down succeeding after
		 * a failed set_weight leaves the traffic where it was. */
		if (ok && json_is_true(json_object_get(a, "moves_traffic")))
			set_weights(r, "stable", 100, "canary", 0);
		else if (ok && !strcmp(str(a, "verb"), "switch"))
			set_weights(r, str(a, "color"), 100, str(r->state, "color"), 0);
		step_next(r);
		return;
	}
	if (ok && !strcmp(verb, "set_weight")) {
		int w = (int)json_integer_value(json_object_get(step, "weight"));
		set_weights(r, "stable", 100 - w, "canary", w);
	} else if (ok && !strcmp(verb, "switch")) {
		set_weights(r, str(step, "color"), 100, str(r->state, "old_color"), 0);
		json_object_set_new(r->state, "switched", json_true());
	}
	step_done(r, ok, message);
}

/* set_weight, switch and abort go to the traffic provider when there is one
 * that can; everything else to the provider. */
static struct provider *provider_for(struct rollout *r, enum provider_verb verb)
{
	if (r->traffic && provider_supports(r->traffic, verb) &&
	    (verb == PROVIDER_SET_WEIGHT || verb == PROVIDER_SWITCH || verb == PROVIDER_ABORT))
		return r->traffic;
	if (provider_supports(r->provider, verb))
		return r->provider;
	if (r->traffic && provider_supports(r->traffic, verb))
		return r->traffic;
	return NULL;
}

/* Who carries out verb for step: provider_for's choice, but for a step
 * marked "own", which is the provider's (its abort beside the traffic's). */
static struct provider *provider_of(struct rollout *r, const json_t *step, enum provider_verb verb)
{
	if (!json_is_true(json_object_get(step, "own")))
		return provider_for(r, verb);
	return provider_supports(r->provider, verb) ? r->provider : NULL;
}

/* 0: started; 1: nothing to do (no provider can); -1: failed to start. */
static int start_action(struct rollout *r, const json_t *step, char *err, size_t errlen)
{
	enum provider_verb verb = (enum provider_verb)provider_verb_parse(str(step, "verb"));
	struct provider *p = provider_of(r, step, verb);
	const json_t *w = json_object_get(step, "weight");
	const char *image = str(step, "image");
	/* A rolling update's bounds go with its apply, a rollback's included:
	 * the provider replaces the instances within them. */
	const json_t *s = json_object_get(r->spec, "strategy");
	int rolling = verb == PROVIDER_APPLY && !strcmp(str(s, "type"), "RollingUpdate");
	struct provider_action a = {
	    .verb = verb,
	    .image = image ? image : (r->rollback_image ? r->rollback_image : r->image),
	    .weight = w ? (int)json_integer_value(w) : -1,
	    .color = str(step, "color"),
	    .env = r->vars,
	    .max_surge = rolling ? str(s, "max_surge") : NULL,
	    .max_unavailable = rolling ? str(s, "max_unavailable") : NULL,
	};

	if (!p)
		return 1;
	if (provider_start(p, &a, on_action, r, err, errlen) < 0)
		return -1;
	r->busy = p;
	return 0;
}

static void on_verify(int ok, const char *message, void *arg)
{
	struct rollout *r = arg;
	json_t *step = current(r);
	long long deadline = json_integer_value(json_object_get(step, "deadline"));
	struct timeval tv = {VERIFY_RETRY_MS / 1000, (VERIFY_RETRY_MS % 1000) * 1000};
	char why[MESSAGE_MAX];

	r->busy = NULL;
	if (ok) {
		step_done(r, 1, message);
		return;
	}
	if (clock_now_ms() >= deadline) {
		snprintf(why, sizeof(why), "progress deadline of %lld s exceeded: %s",
			 (long long)json_integer_value(json_object_get(
			     json_object_get(r->spec, "strategy"), "progress_deadline_ms")) /
			     1000,
			 message ? message : "not ready");
		step_done(r, 0, why);
		return;
	}
	json_object_set_new(step, "message", json_string(message ? message : "not ready yet"));
	evtimer_add(r->timer, &tv);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct rollout *r = arg;
	json_t *step = current(r);
	(void)fd;
	(void)what;

	if (!strcmp(str(step, "kind"), "verify")) {
		enum provider_verb verb = PROVIDER_VERIFY;
		struct provider *p = provider_for(r, verb);
		struct provider_action a = {
		    .verb = verb,
		    .image = r->rollback_image ? r->rollback_image : r->image,
		    .weight = -1,
		    .color = str(step, "color"),
		    .preview = json_is_true(json_object_get(step, "preview")),
		    .env = r->vars};
		char err[512];

		if (!p) {
			step_done(r, 1, "the provider has no verify: taken as ready");
			return;
		}
		if (provider_start(p, &a, on_verify, r, err, sizeof(err)) < 0) {
			step_done(r, 0, err);
			return;
		}
		r->busy = p;
		return;
	}
	/* A pause held here (a background analysis measures through it) is over. */
	json_object_del(r->state, "paused_until");
	json_object_del(r->state, "pause");
	set_phase(r, "Progressing");
	step_done(r, 1, "pause over");
}

static void on_checklist_item(const json_t *result, void *arg)
{
	struct rollout *r = arg;
	json_t *step = current(r);
	json_t *group = json_object_get(r->state, str(step, "kind"));
	json_t *list = json_object_get(group, str(step, "phase"));

	if (r->abort_plan) {
		group = json_object_get(r->state, "hooks");
		list = json_object_get(group, "rollback");
		if (!list) {
			list = json_array();
			json_object_set_new(group, "rollback", list);
		}
	} else if (!list) {
		list = json_array();
		json_object_set_new(group, str(step, "phase"), list);
	}
	json_array_append(list, (json_t *)result);
	save(r, NULL, NULL);
}

static void on_checklist(int ok, const json_t *results, void *arg)
{
	struct rollout *r = arg;
	char why[MESSAGE_MAX] = "";
	const json_t *item;
	size_t i;

	r->checklist = NULL;
	json_array_foreach(results, i, item) if (strcmp(str(item, "status"), "passed") != 0)
	{
		snprintf(why, sizeof(why), "%s failed: %s", str(item, "name"),
			 str(item, "message"));
		break;
	}
	if (r->abort_plan) {
		/* The rollback of the pre hooks: the abort procedure goes on
		 * whatever became of it. */
		abort_entry_end(r, json_array_get(r->abort_plan, r->abort_at - 1), ok,
				ok ? NULL : why);
		step_next(r);
		return;
	}
	step_done(r, ok, ok ? NULL : why);
}

static void on_checklist_line(int output, const char *line, size_t len, void *arg)
{
	struct rollout *r = arg;

	r->cb.line(output, line, len, r->arg);
}

static int start_checklist(struct rollout *r, const json_t *items, enum checklist_mode mode,
			   char *err, size_t errlen)
{
	json_t *vars = json_deep_copy(r->vars);

	if (!vars)
		vars = json_object();
	json_object_set_new(vars, "SLUICE_IMAGE", json_string(r->image));
	r->checklist = checklist_start(r->base, items, mode, vars, r->cwd, on_checklist_line,
				       on_checklist_item, on_checklist, r, err, errlen);
	json_decref(vars);
	return r->checklist ? 0 : -1;
}

static void on_step_analysis(const struct analysis_result *res, void *arg)
{
	struct rollout *r = arg;
	json_t *step = current(r);
	char why[MESSAGE_MAX];

	r->analysis = NULL;
	analysis_record(r, str(step, "label"), res->json);
	verdict_message(why, sizeof(why), str(step, "label"), res);
	save(r, "deploy.analysis",
	     json_pack("{s:s, s:s, s:s}", "name", str(step, "label"), "verdict",
		       analysis_verdict_name(res->verdict), "message",
		       res->message ? res->message : ""));
	if (res->verdict == ANALYSIS_SUCCESSFUL) {
		step_done(r, 1, why);
		return;
	}
	if (res->verdict == ANALYSIS_INCONCLUSIVE) {
		/* A person decides: promote goes on, abort aborts. */
		json_object_set_new(step, "inconclusive", json_true());
		json_object_set_new(step, "manual", json_true());
		json_object_set_new(step, "kind", json_string("pause"));
		json_object_set_new(step, "message", json_string(why));
		step_next(r);
		return;
	}
	mark(r, step, "failed", why);
	abort_begin(r, "aborted", why);
}

static void pause_enter(struct rollout *r, json_t *step)
{
	long long ms = json_integer_value(json_object_get(step, "ms"));
	long long until = json_integer_value(json_object_get(r->state, "paused_until"));
	/* A timed pause after an inconclusive verdict waits for promote, and
	 * says so in the step as saved (a worker taking it up keeps waiting). */
	hold_taken(r, step);
	int manual = json_is_true(json_object_get(step, "manual"));

	if (!until && !manual) {
		until = clock_now_ms() + ms;
		json_object_set_new(r->state, "paused_until", json_integer(until));
	}
	if (!manual && clock_now_ms() >= until) {
		json_object_del(r->state, "paused_until");
		step_done(r, 1, "pause over");
		return;
	}
	json_object_set_new(r->state, "pause", json_string(manual ? "manual" : "timed"));
	if (!json_is_true(json_object_get(step, "auto")))
		set_phase(r, "Paused");
	if (manual)
		json_object_del(r->state, "paused_until");
	if (strcmp(str(step, "status"), "active") != 0)
		mark(r, step, "active", manual ? "waiting for promote" : NULL);
	else
		save(r, NULL, NULL);
	if (r->background) {
		/* The analysis measures through the pause: stay. */
		if (!manual) {
			long long left = until - clock_now_ms();
			struct timeval tv = {left / 1000, (left % 1000) * 1000};
			evtimer_add(r->timer, &tv);
		}
		return;
	}
	r->ended = 1;
	r->cb.park(r->state, manual ? 0 : until, r->arg);
}

static void step_run(struct rollout *r)
{
	json_t *step = current(r);
	const char *kind = str(step, "kind");
	char err[512];
	int rc = 0;

	background_check(r);
	if (!strcmp(kind, "pause")) {
		pause_enter(r, step);
		return;
	}
	if (r->hold) {
		/* An inconclusive background analysis waits for a person at
		 * the next step, be it the promotion after the canary's steps
		 * (which could not be aborted any more). */
		json_t *p =
		    json_pack("{s:s, s:s, s:s}", "name", "inconclusive: waiting for promote",
			      "kind", "pause", "status", "pending");
		json_array_insert_new(
		    steps(r), (size_t)json_integer_value(json_object_get(r->state, "step")), p);
		pause_enter(r, p);
		return;
	}
	mark(r, step, "active", NULL);
	if (!strcmp(kind, "action")) {
		rc = start_action(r, step, err, sizeof(err));
		if (rc == 1) {
			snprintf(err, sizeof(err), "no provider can %s: skipped",
				 str(step, "verb"));
			mark(r, step, "skipped", err);
			json_object_set_new(
			    r->state, "step",
			    json_integer(json_integer_value(json_object_get(r->state, "step")) +
					 1));
			step_next(r);
			return;
		}
	} else if (!strcmp(kind, "verify")) {
		if (!json_object_get(step, "deadline"))
			json_object_set_new(
			    step, "deadline",
			    json_integer(clock_now_ms() + json_integer_value(json_object_get(
							      json_object_get(r->spec, "strategy"),
							      "progress_deadline_ms"))));
		on_timer(-1, 0, r);
		return;
	} else if (!strcmp(kind, "checks") || !strcmp(kind, "hooks")) {
		const json_t *items =
		    json_object_get(json_object_get(r->spec, kind), str(step, "phase"));
		/* Carried out again from the start: earlier results are replaced. */
		json_object_del(json_object_get(r->state, kind), str(step, "phase"));
		rc = start_checklist(
		    r, items, !strcmp(kind, "hooks") ? CHECKLIST_UNTIL_FAILURE : CHECKLIST_ALL, err,
		    sizeof(err));
	} else if (!strcmp(kind, "analysis")) {
		r->analysis = analysis_begin(r, str(step, "label"), json_object_get(step, "spec"),
					     on_step_analysis, err, sizeof(err));
		rc = r->analysis ? 0 : -1;
		if (r->analysis)
			save_analyses(r);
	} else {
		snprintf(err, sizeof(err), "unknown step kind \"%s\"", kind);
		rc = -1;
	}
	if (rc < 0)
		step_done(r, 0, err);
}

/* --- the abort procedure ------------------------------------------------- */

/* Whether the abort procedure has the provider's abort: the cleanup an
 * exec or http provider's pipeline wrote always; a haproxy or kubernetes
 * provider's, which moves traffic, only when nothing else moved it back
 * (traffic_moved: the traffic provider's abort or a switch back does). */
static int provider_abort_runs(const struct rollout *r, int traffic_moved)
{
	return provider_supports(r->provider, PROVIDER_ABORT) &&
	       (!traffic_moved || provider_runs_own_actions(r->provider));
}

static void abort_plan_build(struct rollout *r)
{
	const char *type = str(r->state, "strategy");
	json_t *plan = json_array();
	const json_t *pre_ran = json_object_get(json_object_get(r->state, "hooks"), "pre");

	int traffic_aborts = r->traffic && provider_supports(r->traffic, PROVIDER_ABORT);

	if (!strcmp(type, "Canary")) {
		if (traffic_aborts)
			add(plan, with(action("all traffic back to stable", "abort"),
				       "moves_traffic", json_true()));
		else
			add(plan, with(with(action("all traffic back to stable", "set_weight"),
					    "weight", json_integer(0)),
				       "moves_traffic", json_true()));
		if (provider_abort_runs(r, traffic_aborts))
			add(plan, with(with(action("the provider's abort", "abort"), "color",
					    json_string("stable")),
				       "own", json_true()));
		add(plan, with(action("scale down the canary", "scale_down"), "color",
			       json_string("canary")));
	} else if (!strcmp(type, "BlueGreen")) {
		char name[128];
		if (json_is_true(json_object_get(r->state, "switched"))) {
			snprintf(name, sizeof(name), "switch traffic back to %s",
				 str(r->state, "old_color"));
			add(plan, with(action(name, "switch"), "color",
				       json_string(str(r->state, "old_color"))));
		}
		if (provider_abort_runs(r, 1))
			add(plan, with(with(action("the provider's abort", "abort"), "color",
					    json_string(str(r->state, "color"))),
				       "own", json_true()));
		snprintf(name, sizeof(name), "scale down %s", str(r->state, "color"));
		add(plan,
		    with(action(name, "scale_down"), "color", json_string(str(r->state, "color"))));
	} else {
		add(plan, action("the provider's abort", "abort"));
	}
	if (json_array_size(pre_ran)) {
		json_t *items = checklist_rollback_items(
		    json_object_get(json_object_get(r->spec, "hooks"), "pre"), pre_ran);
		if (json_array_size(items))
			add(plan, json_pack("{s:s, s:s, s:o}", "name", "rollback of the pre hooks",
					    "kind", "rollback", "items", items));
		else
			json_decref(items);
	}
	r->abort_plan = plan;
	r->abort_at = 0;
	json_object_set_new(r->state, "abort", json_incref(plan));
}

static void abort_next(struct rollout *r)
{
	char err[512];

	while (r->abort_at < json_array_size(r->abort_plan)) {
		json_t *a = json_array_get(r->abort_plan, r->abort_at++);
		const char *kind = str(a, "kind");
		int rc;

		json_object_set_new(a, "status", json_string("active"));
		if (!strcmp(kind, "rollback")) {
			if (start_checklist(r, json_object_get(a, "items"), CHECKLIST_ALL, err,
					    sizeof(err)) == 0)
				return;
			abort_entry_end(r, a, 0, err);
			continue;
		}
		/* start_action reads the current step: the abort step stands in. */
		enum provider_verb verb = (enum provider_verb)provider_verb_parse(str(a, "verb"));
		struct provider *p = provider_of(r, a, verb);
		const json_t *w = json_object_get(a, "weight");
		struct provider_action act = {.verb = verb,
					      .image = r->image,
					      .weight = w ? (int)json_integer_value(w) : -1,
					      .color = str(a, "color"),
					      .env = r->vars};
		if (!p) {
			json_object_set_new(a, "status", json_string("skipped"));
			continue;
		}
		rc = provider_start(p, &act, on_action, r, err, sizeof(err));
		if (rc == 0) {
			r->busy = p;
			return;
		}
		abort_entry_end(r, a, 0, err);
	}
	end(r, r->end_status, r->end_message);
}

/* 0: the abort procedure has begun; -1: it does not apply. Past the point
 * of no return (a final step) the new version is the stable one: there is
 * nothing to go back to, and stopping the step in flight (the promote, say)
 * would leave it half done, so the final steps carry on. A step stopped
 * here ends "aborted": it neither failed nor will it go on. */
static int abort_begin(struct rollout *r, const char *status, const char *why)
{
	json_t *step = current(r);
	char message[MESSAGE_MAX + 16];

	if (r->abort_plan || r->ended)
		return -1;
	if (json_is_true(json_object_get(step, "final"))) {
		logf_(r, "not aborted (%s): past the point of no return", why ? why : status);
		return -1;
	}
	stop_inflight(r);
	stop_background(r);
	r->end_status = status;
	json_object_set_new(r->state, "abort_status", json_string(status));
	snprintf(r->end_message, sizeof(r->end_message), "%s", why ? why : status);
	if (step && !strcmp(str(step, "status"), "active")) {
		snprintf(message, sizeof(message), "interrupted: %s", r->end_message);
		mark(r, step, "aborted", message);
	}
	json_object_set_new(r->state, "message", json_string(r->end_message));
	json_object_del(r->state, "paused_until");
	json_object_del(r->state, "pause");
	logf_(r, "aborting: %s", r->end_message);
	abort_plan_build(r);
	save(r, "deploy.aborted", json_pack("{s:s}", "message", r->end_message));
	step_next(r);
	return 0;
}

/* --- the loop ------------------------------------------------------------ */

static void on_kick(evutil_socket_t fd, short what, void *arg)
{
	struct rollout *r = arg;
	size_t at = (size_t)json_integer_value(json_object_get(r->state, "step"));
	(void)fd;
	(void)what;

	if (r->ended)
		return;
	if (r->abort_plan) {
		save(r, NULL, NULL);
		abort_next(r);
		return;
	}
	/* A step skipped (by a full promotion) is never carried out, not even
	 * when the rollout resumes at it. */
	while (at < json_array_size(steps(r)) &&
	       !strcmp(str(json_array_get(steps(r), at), "status"), "skipped"))
		at++;
	json_object_set_new(r->state, "step", json_integer((json_int_t)at));
	if (at >= json_array_size(steps(r))) {
		if (json_is_true(json_object_get(r->state, "rollback")))
			end(r, "rolled_back", "the previous release is back");
		else
			end(r, "succeeded", NULL);
		return;
	}
	step_run(r);
}

static void step_next(struct rollout *r)
{
	event_active(r->kick, EV_TIMEOUT, 0);
}

/* --- commands ------------------------------------------------------------ */

/* Whether a full promotion skips s, a step from the current one on: a
 * pause, an analysis or a canary weight not yet skipped, before the point of
 * no return. */
static int promote_skips(const json_t *s)
{
	const char *k = str(s, "kind");

	if (json_is_true(json_object_get(s, "final")) || !strcmp(str(s, "status"), "skipped"))
		return 0;
	return !strcmp(k, "pause") || !strcmp(k, "analysis") ||
	       (json_object_get(s, "canary_step") && !strcmp(k, "action"));
}

/* Skips the remaining pauses, analyses and canary weights (Argo Rollouts'
 * promote --full). A canary gets all the traffic where its first remaining
 * step was: never before it is applied and verified, so that a step in
 * flight before the canary's steps (a hook, the apply, the verify) is left
 * to finish. Only a step that is skipped is stopped where it is. Each
 * skipped step is published as such, the one in flight included. */
static void promote_full(struct rollout *r, const char *by)
{
	size_t i, at = (size_t)json_integer_value(json_object_get(r->state, "step"));
	json_t *s, *was = current(r);
	char why[256];

	snprintf(why, sizeof(why), "full promotion by %s", by && *by ? by : "an operator");
	stop_background(r);
	json_object_set_new(r->state, "background_done", json_true());
	r->hold = 0;
	json_object_del(r->state, "inconclusive_hold");
	if (was && promote_skips(was)) {
		stop_inflight(r);
		json_object_del(r->state, "paused_until");
		json_object_del(r->state, "pause");
		set_phase(r, "Progressing");
	}
	logf_(r, "%s: remaining steps skipped", why);
	/* Canary: the new version takes all traffic before it becomes stable. */
	json_array_foreach(steps(r), i, s)
	{
		if (i >= at && promote_skips(s) && json_object_get(s, "canary_step")) {
			json_t *w = with(action("setWeight 100 (full promotion)", "set_weight"),
					 "weight", json_integer(100));
			json_object_set_new(w, "status", json_string("pending"));
			json_array_insert_new(steps(r), i, w);
			break;
		}
	}
	json_array_foreach(steps(r), i, s)
	{
		if (i >= at && promote_skips(s))
			mark(r, s, "skipped", why);
	}
	save(r, NULL, NULL);
	if (was && !strcmp(str(was, "status"), "skipped"))
		step_next(r);
}

int rollout_command(struct rollout *r, const char *command, const char *by)
{
	json_t *step = current(r);
	char why[256];

	if (r->ended || r->abort_plan)
		return -1;
	if (!strcmp(command, "abort")) {
		snprintf(why, sizeof(why), "aborted by %s", by && *by ? by : "an operator");
		return abort_begin(r, "aborted", why);
	}
	if (!strcmp(command, "promote_full")) {
		promote_full(r, by);
		return 0;
	}
	if (!strcmp(command, "promote")) {
		if (strcmp(str(step, "kind"), "pause") != 0 ||
		    strcmp(str(step, "status"), "active") != 0) {
			logf_(r, "promote by %s ignored: not paused",
			      by && *by ? by : "an operator");
			return -1;
		}
		evtimer_del(r->timer);
		json_object_del(r->state, "paused_until");
		json_object_del(r->state, "pause");
		set_phase(r, "Progressing");
		snprintf(why, sizeof(why), "promoted by %s", by && *by ? by : "an operator");
		step_done(r, 1, why);
		return 0;
	}
	return -1;
}

const json_t *rollout_state(const struct rollout *r)
{
	return r->state;
}

void rollout_cancel(struct rollout *r)
{
	abort_begin(r, "cancelled", "the run was cancelled");
}

/* --- life ---------------------------------------------------------------- */

static void mute_line(int output, const char *line, size_t len, void *arg)
{
	(void)output;
	(void)line;
	(void)len;
	(void)arg;
}

static void mute_save(const json_t *state, const json_t *event, void *arg)
{
	(void)state;
	(void)event;
	(void)arg;
}

static void mute_park(const json_t *state, int64_t until_ms, void *arg)
{
	(void)state;
	(void)until_ms;
	(void)arg;
}

static void mute_done(const char *status, const char *message, const json_t *state, void *arg)
{
	(void)status;
	(void)message;
	(void)state;
	(void)arg;
}

void rollout_mute(struct rollout *r)
{
	static const struct rollout_callbacks mute = {mute_line, mute_save, mute_park, mute_done};
	r->cb = mute;
	r->arg = NULL;
}

void rollout_free(struct rollout *r)
{
	if (!r)
		return;
	stop_inflight(r);
	stop_background(r);
	provider_free(r->provider);
	provider_free(r->traffic);
	if (r->timer)
		event_free(r->timer);
	if (r->kick)
		event_free(r->kick);
	json_decref(r->abort_plan);
	json_decref(r->state);
	json_decref(r->vars);
	json_decref(r->spec);
	free(r->cwd);
	free(r->image);
	free(r->rollback_image);
	free(r);
}

/* A provider whose commands run where the deployment's hooks and checks do
 * (the run's checkout), unless its definition says otherwise. */
static struct provider *provider_in(struct event_base *base, const json_t *def, const char *cwd,
				    char *err, size_t errlen)
{
	json_t *copy = json_deep_copy(def);
	struct provider *p;

	if (!copy) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (cwd && !json_object_get(copy, "cwd") &&
	    !strcmp(str(copy, "type") ? str(copy, "type") : "", "exec"))
		json_object_set_new(copy, "cwd", json_string(cwd));
	p = provider_new(base, copy, err, errlen);
	json_decref(copy);
	return p;
}

struct rollout *rollout_start(struct event_base *base, const struct rollout_params *p,
			      const struct rollout_callbacks *cb, void *arg, char *err,
			      size_t errlen)
{
	struct rollout *r = calloc(1, sizeof(*r));
	const json_t *traffic = json_object_get(p->spec, "traffic");

	if (!r) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	r->base = base;
	r->cb = *cb;
	r->arg = arg;
	r->spec = json_incref((json_t *)p->spec);
	r->vars = p->vars ? json_deep_copy(p->vars) : json_object();
	r->cwd = p->cwd ? strdup(p->cwd) : NULL;
	r->image = strdup(p->image ? p->image : "");
	r->rollback_image = p->rollback ? strdup(p->rollback) : NULL;
	r->timer = evtimer_new(base, on_timer, r);
	r->kick = event_new(base, -1, 0, on_kick, r);
	if (!r->vars || !r->image || !r->timer || !r->kick) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	r->provider = provider_in(base, json_object_get(p->spec, "provider"), p->cwd, err, errlen);
	if (!r->provider)
		goto fail;
	if (traffic && !(r->traffic = provider_in(base, traffic, p->cwd, err, errlen)))
		goto fail;
	if (p->state && json_array_size(json_object_get(p->state, "steps"))) {
		r->state = json_deep_copy(p->state);
		free(r->image);
		r->image = strdup(str(r->state, "image") ? str(r->state, "image") : "");
		if (json_is_true(json_object_get(r->state, "rollback")) && !r->rollback_image)
			r->rollback_image = strdup(r->image);
		r->hold = json_is_true(json_object_get(r->state, "inconclusive_hold"));
	} else if (plan_new(r, p) < 0) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	if (!r->state || !r->image) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	if (json_object_get(r->state, "abort")) {
		/* Stopped while aborting: the abort procedure runs again from
		 * its start (each of its actions is idempotent). */
		const char *status = str(r->state, "abort_status");
		char why[MESSAGE_MAX];
		snprintf(why, sizeof(why), "%s",
			 str(r->state, "message") ? str(r->state, "message") : "aborted");
		json_object_del(r->state, "abort");
		if (abort_begin(r,
				!status			       ? "aborted"
				: !strcmp(status, "failed")    ? "failed"
				: !strcmp(status, "cancelled") ? "cancelled"
							       : "aborted",
				why) == 0)
			return r;
	}
	/* Resumed at a pause, it is paused again; the scale-down delay, which
	 * nobody promotes, is no pause of the rollout's. */
	set_phase(r, json_object_get(r->state, "pause") &&
			     !json_is_true(json_object_get(current(r), "auto"))
			 ? "Paused"
			 : "Progressing");
	step_next(r);
	return r;
fail:
	rollout_free(r);
	return NULL;
}
