/* job: one stage attempt on this worker, from claim to recorded result.
 *
 *   claim.lua (lease + running) → offset stored → checkout → command →
 *   finish.lua (outcome + result message, lease released)
 *
 * While the job runs its lease is renewed every lease/3; if the lease is
 * lost (this worker was presumed dead), the command is cancelled and the
 * outcome is not recorded: another attempt owns the stage now. Recording
 * the outcome is retried with back-off until Redis takes it, so a finished
 * stage is never forgotten.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/clock.h"
#include "lib/log.h"
#include "queue/envelope.h"
#include "queue/jobs.h"
#include "stages/checkout.h"
#include "stages/process.h"
#include "workers/stage_env.h"
#include "workers/worker.h"

#define LOG_MAXLEN	    100000
#define CHECKOUT_TIMEOUT_MS (10 * 60 * 1000)
#define RECORD_RETRY_MAX_MS 5000

enum job_phase { JOB_CLAIMING, JOB_CHECKOUT, JOB_RUNNING, JOB_RECORDING };

struct job {
	struct job *next, **prevp;
	struct worker *w;
	struct kafka_ticket *ticket; /* until the claim is recorded */
	enum job_phase phase;
	char run[128];
	char stage[128];
	int attempt;
	json_t *runinfo; /* the run hash */
	json_t *def;	 /* the run's pipeline definition */
	struct checkout *checkout;
	struct process *proc;
	struct event *renew;
	struct event *retry;
	int retry_ms;
	int lease_lost;
	int handing_back;
	/* the outcome, once known */
	const char *status;
	char exit_code[16];
	char signal[16];
	char error[512];
};

static void job_free(struct job *j)
{
	*j->prevp = j->next;
	if (j->next)
		j->next->prevp = j->prevp;
	if (j->renew)
		event_free(j->renew);
	if (j->retry)
		event_free(j->retry);
	json_decref(j->runinfo);
	json_decref(j->def);
	struct worker *w = j->w;
	free(j);
	w->running--;
	worker_slot_freed(w);
}

/* A line for the stage's log stream; "system" lines are sluice's own. */
static void log_line(struct job *j, const char *stream, const char *line, size_t len)
{
	struct worker *w = j->w;
	char t[32];
	snprintf(t, sizeof(t), "%lld", (long long)clock_now_ms());
	redis_command(w->redis, NULL, NULL, "XADD %slog:%s:%s MAXLEN ~ %d * t %s s %s l %b",
		      w->settings.key_prefix, j->run, j->stage, LOG_MAXLEN, t, stream, line, len);
}

static void log_system(struct job *j, const char *text)
{
	log_line(j, "system", text, strlen(text));
}

static void on_process_line(enum process_stream s, const char *line, size_t len, void *arg)
{
	log_line(arg, s == PROCESS_STDOUT ? "stdout" : "stderr", line, len);
}

/* --- recording the outcome ----------------------------------------------- */

static void record(struct job *j);

static void on_record_retry(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	record(arg);
}

static void record_later(struct job *j, const char *why)
{
	log_warn("outcome not recorded yet", LOG_S("run", j->run), LOG_S("stage", j->stage),
		 LOG_S("error", why), LOG_I("retry_ms", j->retry_ms));
	if (!j->retry)
		j->retry = evtimer_new(j->w->base, on_record_retry, j);
	struct timeval tv = {j->retry_ms / 1000, (j->retry_ms % 1000) * 1000};
	evtimer_add(j->retry, &tv);
	j->retry_ms = j->retry_ms * 2 > RECORD_RETRY_MAX_MS ? RECORD_RETRY_MAX_MS : j->retry_ms * 2;
}

static void on_recorded(struct redis *r, redisReply *reply, const char *err, void *arg)
{
	struct job *j = arg;
	(void)r;
	if (!reply || reply->type != REDIS_REPLY_STRING) {
		if (j->w->draining && !redis_connected(j->w->redis) && err &&
		    strcmp(err, "shutting down") == 0) {
			job_free(j);
			return;
		}
		record_later(j, err ? err : "unexpected reply");
		return;
	}
	if (strcmp(reply->str, "recorded") == 0) {
		log_info("stage finished", LOG_S("run", j->run), LOG_S("stage", j->stage),
			 LOG_I("attempt", j->attempt), LOG_S("status", j->status),
			 LOG_S("exit", j->exit_code));
		outbox_kick(j->w->outbox);
	} else {
		log_warn("outcome fenced off: another attempt owns the stage", LOG_S("run", j->run),
			 LOG_S("stage", j->stage), LOG_I("attempt", j->attempt));
	}
	job_free(j);
}

static void record(struct job *j)
{
	struct worker *w = j->w;
	char topic[256], subject[512], attempt[16], now[32];
	snprintf(topic, sizeof(topic), "%sresults", w->settings.topic_prefix);
	snprintf(subject, sizeof(subject), "runs/%s/stages/%s/attempts/%d", j->run, j->stage,
		 j->attempt);
	snprintf(attempt, sizeof(attempt), "%d", j->attempt);
	snprintf(now, sizeof(now), "%lld", (long long)clock_now_ms());

	json_t *data = json_pack("{s:s,s:s,s:i,s:s}", "run", j->run, "stage", j->stage, "attempt",
				 j->attempt, "status", j->status);
	if (j->exit_code[0])
		json_object_set_new(data, "exit_code", json_integer(atoi(j->exit_code)));
	char *value = envelope_encode("sluice-worker", "dev.sluice.stage.finished", subject, data);
	json_decref(data);
	if (!value) {
		record_later(j, "out of memory");
		return;
	}
	const char *argv[] = {
	    w->settings.key_prefix, j->run,    j->stage, attempt, w->token, j->status,
	    j->exit_code,	    j->signal, j->error, now,	  topic,    value};
	if (redis_script_run(w->redis, w->scripts.finish, on_recorded, j, 0, 12, argv, NULL) < 0)
		record_later(j, "script not sent");
	free(value);
}

static void finish(struct job *j, const char *status, const char *error)
{
	j->phase = JOB_RECORDING;
	j->status = status;
	if (error) {
		snprintf(j->error, sizeof(j->error), "%s", error);
		log_system(j, error);
	}
	if (j->renew)
		evtimer_del(j->renew);
	if (j->lease_lost) {
		/* Another attempt owns the stage; finish.lua would fence us off. */
		log_warn("stage abandoned: lease lost", LOG_S("run", j->run),
			 LOG_S("stage", j->stage), LOG_I("attempt", j->attempt));
		job_free(j);
		return;
	}
	j->retry_ms = 100;
	record(j);
}

/* --- handing back on shutdown -------------------------------------------- */

static void on_handed_back(struct redis *r, redisReply *reply, const char *err, void *arg)
{
	struct job *j = arg;
	(void)r;
	log_info("stage handed back", LOG_S("run", j->run), LOG_S("stage", j->stage),
		 LOG_S("outcome", reply && reply->type == REDIS_REPLY_STRING ? reply->str
									     : (err ? err : "?")));
	if (reply)
		outbox_kick(j->w->outbox);
	job_free(j);
}

static void hand_back(struct job *j)
{
	struct worker *w = j->w;
	const char *kind = json_string_value(
	    json_object_get(json_object_get(json_object_get(j->def, "stages"), j->stage), "kind"));
	json_t *job =
	    jobs_prepare(&w->settings, j->run, j->stage, kind ? kind : "build", j->attempt);
	char attempt[16];
	snprintf(attempt, sizeof(attempt), "%d", j->attempt);
	if (!job) {
		job_free(j);
		return;
	}
	const char *argv[] = {w->settings.key_prefix,
			      j->run,
			      j->stage,
			      attempt,
			      w->token,
			      json_string_value(json_object_get(job, "topic")),
			      json_string_value(json_object_get(job, "value"))};
	if (redis_script_run(w->redis, w->scripts.handback, on_handed_back, j, 0, 7, argv, NULL) <
	    0)
		job_free(j);
	json_decref(job);
}

void job_hand_back_all(struct worker *w)
{
	for (struct job *j = w->jobs; j; j = j->next) {
		if (j->handing_back || j->phase == JOB_CLAIMING || j->phase == JOB_RECORDING)
			continue;
		j->handing_back = 1;
		if (j->proc)
			process_cancel(j->proc);
		else if (j->checkout)
			checkout_cancel(j->checkout);
	}
}

/* --- running ------------------------------------------------------------- */

static void on_process_exit(const struct process_result *r, void *arg)
{
	struct job *j = arg;
	char text[512];
	j->proc = NULL;
	if (j->handing_back) {
		hand_back(j);
		return;
	}
	switch (r->outcome) {
	case PROCESS_EXITED:
		snprintf(j->exit_code, sizeof(j->exit_code), "%d", r->exit_code);
		snprintf(text, sizeof(text), "exit code %d after %lld ms", r->exit_code,
			 r->duration_ms);
		log_system(j, text);
		finish(j, r->exit_code == 0 ? "succeeded" : "failed", NULL);
		return;
	case PROCESS_SIGNALLED:
		snprintf(j->signal, sizeof(j->signal), "SIG%s", sigabbrev_np(r->term_signal));
		snprintf(text, sizeof(text), "killed by %s", j->signal);
		finish(j, "failed", text);
		return;
	case PROCESS_TIMED_OUT:
		snprintf(text, sizeof(text), "timed out after %lld ms", r->duration_ms);
		finish(j, "timed_out", text);
		return;
	case PROCESS_CANCELLED:
		finish(j, "cancelled", "cancelled");
		return;
	case PROCESS_SPAWN_FAILED:
		snprintf(j->exit_code, sizeof(j->exit_code), "%d", r->exit_code);
		finish(j, "failed", r->error);
		return;
	}
}

static void run_command(struct job *j, const char *workspace)
{
	struct worker *w = j->w;
	char err[512];
	const json_t *stage = json_object_get(json_object_get(j->def, "stages"), j->stage);
	json_t *vars = stage_env_vars(j->runinfo, j->def, j->stage, j->attempt);
	char **argv = stage_env_argv(json_object_get(stage, "run"), vars, err, sizeof(err));
	char **envp = argv ? stage_env_build(vars, j->def, err, sizeof(err)) : NULL;
	json_decref(vars);
	if (!argv || !envp) {
		stage_env_free(argv);
		finish(j, "failed", err);
		return;
	}
	json_int_t timeout_s = json_integer_value(json_object_get(stage, "timeout"));
	struct process_spec spec = {
	    .argv = (const char *const *)argv,
	    .envp = (const char *const *)envp,
	    .cwd = workspace,
	    .timeout_ms = timeout_s > 0 ? (int)(timeout_s * 1000) : 0,
	    .kill_grace_ms = w->settings.kill_grace_ms,
	};
	j->phase = JOB_RUNNING;
	j->proc = process_spawn(&spec, on_process_line, on_process_exit, j);
	stage_env_free(argv);
	stage_env_free(envp);
	if (!j->proc)
		finish(j, "failed", "cannot start the command");
}

struct checkout_done {
	struct job *job;
	char workspace[1024];
};

static void on_checkout(int ok, const char *error, void *arg)
{
	struct checkout_done *d = arg;
	struct job *j = d->job;
	j->checkout = NULL;
	if (j->handing_back) {
		free(d);
		hand_back(j);
		return;
	}
	if (ok < 0) {
		char text[768];
		snprintf(text, sizeof(text), "checkout failed: %s",
			 error ? error : "unknown error");
		free(d);
		finish(j, "failed", text);
		return;
	}
	run_command(j, d->workspace);
	free(d);
}

static void on_renewed(struct redis *r, redisReply *reply, const char *err, void *arg)
{
	struct job *j = arg;
	(void)r;
	if (!reply) {
		/* Redis is away: the lease may still be ours; try again next tick. */
		log_warn("lease not renewed", LOG_S("run", j->run), LOG_S("stage", j->stage),
			 LOG_S("error", err));
		return;
	}
	if (reply->type == REDIS_REPLY_INTEGER && reply->integer == 1)
		return;
	log_warn("lease lost; cancelling the stage", LOG_S("run", j->run), LOG_S("stage", j->stage),
		 LOG_I("attempt", j->attempt));
	j->lease_lost = 1;
	if (j->proc)
		process_cancel(j->proc);
	else if (j->checkout)
		checkout_cancel(j->checkout);
}

static void on_renew_tick(evutil_socket_t fd, short what, void *arg)
{
	struct job *j = arg;
	struct worker *w = j->w;
	(void)fd;
	(void)what;
	if (j->phase == JOB_RECORDING || j->lease_lost)
		return;
	char attempt[16], lease[16], now[32];
	snprintf(attempt, sizeof(attempt), "%d", j->attempt);
	snprintf(lease, sizeof(lease), "%d", w->settings.lease_ms);
	snprintf(now, sizeof(now), "%lld", (long long)clock_now_ms());
	const char *argv[] = {
	    w->settings.key_prefix, j->run, j->stage, attempt, w->token, lease, now};
	redis_script_run(w->redis, w->scripts.lease_renew, on_renewed, j, 0, 7, argv, NULL);
}

static void begin(struct job *j)
{
	struct worker *w = j->w;
	const char *url = json_string_value(json_object_get(j->runinfo, "checkout_url"));
	const char *sha = json_string_value(json_object_get(j->runinfo, "sha"));
	struct checkout_done *d = calloc(1, sizeof(*d));
	if (!d) {
		finish(j, "failed", "out of memory");
		return;
	}
	d->job = j;
	snprintf(d->workspace, sizeof(d->workspace), "%s/workspaces/%s/%s", w->settings.state_dir,
		 j->run, j->stage);

	int period = w->settings.lease_ms / 3;
	struct timeval tv = {period / 1000, (period % 1000) * 1000};
	j->renew = event_new(w->base, -1, EV_PERSIST, on_renew_tick, j);
	if (j->renew)
		evtimer_add(j->renew, &tv);

	char text[1024];
	snprintf(text, sizeof(text), "checking out %s at %s", url ? url : "?", sha ? sha : "?");
	log_system(j, text);
	j->phase = JOB_CHECKOUT;
	j->checkout =
	    checkout_start(w->settings.state_dir, url ? url : "", sha ? sha : "", d->workspace,
			   CHECKOUT_TIMEOUT_MS, on_process_line, on_checkout, d);
	if (!j->checkout) {
		free(d);
		finish(j, "failed", "cannot start the checkout");
	}
}

static void claim(struct job *j);

static void on_claim_retry(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	claim(arg);
}

static void on_claimed(struct redis *r, redisReply *reply, const char *err, void *arg)
{
	struct job *j = arg;
	struct worker *w = j->w;
	(void)r;
	if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements < 1) {
		/* The offset stays unstored while the claim is retried, so the
		 * job is not lost even if this worker dies meanwhile. */
		if (w->draining && err && strcmp(err, "shutting down") == 0) {
			job_free(j);
			return;
		}
		log_warn("job not claimed yet", LOG_S("run", j->run), LOG_S("stage", j->stage),
			 LOG_S("error", err ? err : "unexpected reply"),
			 LOG_I("retry_ms", j->retry_ms));
		if (!j->retry)
			j->retry = evtimer_new(w->base, on_claim_retry, j);
		struct timeval tv = {j->retry_ms / 1000, (j->retry_ms % 1000) * 1000};
		evtimer_add(j->retry, &tv);
		j->retry_ms =
		    j->retry_ms * 2 > RECORD_RETRY_MAX_MS ? RECORD_RETRY_MAX_MS : j->retry_ms * 2;
		return;
	}
	if (j->retry) {
		event_free(j->retry);
		j->retry = NULL;
	}
	const char *outcome = reply->element[0]->str;
	kafka_consumer_done(w->consumer, j->ticket);
	j->ticket = NULL;
	if (strcmp(outcome, "claimed") != 0 || reply->elements != 2) {
		log_info("job skipped", LOG_S("run", j->run), LOG_S("stage", j->stage),
			 LOG_I("attempt", j->attempt), LOG_S("reason", outcome));
		job_free(j);
		return;
	}
	j->runinfo = json_loads(reply->element[1]->str, 0, NULL);
	const char *def = json_string_value(json_object_get(j->runinfo, "def"));
	j->def = def ? json_loads(def, 0, NULL) : NULL;
	log_info("stage started", LOG_S("run", j->run), LOG_S("stage", j->stage),
		 LOG_I("attempt", j->attempt));
	if (!j->def || !json_object_get(json_object_get(j->def, "stages"), j->stage)) {
		j->phase = JOB_CHECKOUT;
		finish(j, "failed", "the run has no definition for this stage");
		return;
	}
	begin(j);
}

void job_start(struct worker *w, const char *run, const char *stage, int attempt,
	       struct kafka_ticket *ticket)
{
	struct job *j = calloc(1, sizeof(*j));
	if (!j) {
		kafka_consumer_done(w->consumer, ticket);
		return;
	}
	j->w = w;
	j->ticket = ticket;
	j->phase = JOB_CLAIMING;
	j->attempt = attempt;
	snprintf(j->run, sizeof(j->run), "%s", run);
	snprintf(j->stage, sizeof(j->stage), "%s", stage);
	j->retry_ms = 100;
	j->next = w->jobs;
	j->prevp = &w->jobs;
	if (w->jobs)
		w->jobs->prevp = &j->next;
	w->jobs = j;
	w->running++;
	claim(j);
}

static void claim(struct job *j)
{
	struct worker *w = j->w;
	char attempt_text[16], lease[16], now[32];
	snprintf(attempt_text, sizeof(attempt_text), "%d", j->attempt);
	snprintf(lease, sizeof(lease), "%d", w->settings.lease_ms);
	snprintf(now, sizeof(now), "%lld", (long long)clock_now_ms());
	const char *argv[] = {
	    w->settings.key_prefix, j->run, j->stage, attempt_text, w->token, lease, now};
	if (redis_script_run(w->redis, w->scripts.claim, on_claimed, j, 0, 7, argv, NULL) < 0)
		on_claimed(w->redis, NULL, "script not sent", j);
}
