/* job: one stage attempt on this worker, from claim to recorded result.
 *
 *   claim.lua (lease + running) → offset stored → checkout → command →
 *   finish.lua (outcome + result message, lease released)
 *
 * While the job runs its lease is renewed every lease/3 (a renewal Redis
 * did not take is tried again within a second); if the lease is lost (this
 * worker was presumed dead), the command is cancelled and the outcome is
 * not recorded: another attempt owns the stage now. A lease this worker
 * cannot renew (Redis away) counts as lost before it can end: the command
 * is stopped by then, so that the attempt queued once Redis is back never
 * runs beside it (the fence, lease_fence_ms). Recording the outcome is
 * retried with back-off until Redis takes it, so a finished stage is never
 * forgotten.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/clock.h"
#include "lib/log.h"
#include "queue/envelope.h"
#include "queue/jobs.h"
#include "stages/checkout.h"
#include "stages/http.h"
#include "stages/logmask.h"
#include "stages/expand.h"
#include "stages/process.h"
#include "stages/rollout.h"
#include "lib/strv.h"
#include "lib/utf8.h"
#include "queue/defcache.h"
#include "workers/rollout_saves.h"
#include "workers/stage_env.h"
#include "workers/stage_log.h"
#include "workers/stage_outputs.h"
#include "workers/worker.h"
#include "workers/worker_metrics.h"
#include "workers/workspace.h"

/* How soon a renewal Redis did not take is tried again (at most lease/3). */
#define RENEW_RETRY_MS 1000
/* How often an outcome looks whether its log lines are written. */
#define LOG_WAIT_POLL_MS 100
/* How often a running job looks whether its run was cancelled. */
#define CANCEL_POLL_MS 250

enum job_phase { JOB_CLAIMING, JOB_CHECKOUT, JOB_RUNNING, JOB_RECORDING };

struct job {
	struct job *next, **prevp;
	struct worker *w;
	struct kafka_ticket *ticket; /* until the claim is recorded */
	enum job_phase phase;
	char run[128];
	char stage[128];
	int attempt;
	int lease_ms;	 /* as claimed: a reload changes the lease of later jobs only */
	json_t *runinfo; /* the run hash, without the definition */
	json_t *def;	 /* the run's pipeline definition (shared with w->defs) */
	int run_dir;	 /* workspace_hold of the run's directory, or -1 */
	struct checkout *checkout;
	struct process *proc;
	struct http *http;
	struct rollout *rollout;
	struct rollout_saves *saves;	/* its saves, in order (rollout_saves.h) */
	struct rollout_start *starting; /* its state, while it is read */
	char *park_state;		/* a park waiting for the saves: the state, */
	int64_t park_until;		/* and the end of its timed pause (or 0) */
	char command[32];		/* the operator's command acted on, to take off the stage */
	char *rollout_end;	/* the rollout's state as it ended, recorded with the outcome */
	char output_path[1200]; /* $SLUICE_OUTPUT */
	char *outputs;		/* what the stage wrote there, as a JSON object */
	struct logmask *mask;	/* every log line passes through it */
	json_t *secrets;	/* NAME → value, for the environment and http templates */
	struct event *renew;
	struct status_query *renew_query; /* the renewal in flight, if any */
	int64_t renew_sent_ms;		  /* monotonic: when it was sent */
	int64_t claim_sent_ms;		  /* monotonic: the last claim's send */
	int64_t lease_ends_ms;		  /* monotonic: the lease held ends no sooner */
	struct event *fence;		  /* then, less lease_fence_ms: the stage stops */
	struct event *retry;
	int retry_ms;
	int lease_lost;
	int log_waited;	    /* its outcome has waited for its log lines */
	int64_t claimed_ms; /* monotonic: the stage duration's start */
	int handing_back;
	struct event *watch;		  /* polls the run's status (cancel) */
	struct status_query *watch_query; /* the poll in flight, if any */
	struct status_query *command_query;
	int run_cancelled;
	/* the outcome, once known */
	const char *status;
	char exit_code[16];
	char signal[16];
	char error[512];
};

/* A poll in flight (the run's status, or a rollout's waiting command), kept
 * in the job's slot for it; job_free detaches it, so a late reply finds no
 * job. */
struct status_query {
	struct job *job;
	struct status_query **slot;
};

/* A query of the job for its slot; NULL while one is still in flight
 * there (or out of memory). The caller puts it in the slot once sent. */
static struct status_query *query_new(struct job *j, struct status_query **slot)
{
	struct status_query *q;

	if (*slot)
		return NULL;
	q = calloc(1, sizeof(*q));
	if (!q)
		return NULL;
	q->job = j;
	q->slot = slot;
	return q;
}

/* The job a query's reply is for, its slot free again; NULL when the job
 * is gone. */
static struct job *query_reply(void *arg)
{
	struct status_query *q = arg;
	struct job *j = q->job;

	if (j)
		*q->slot = NULL;
	free(q);
	return j;
}

static void rollout_start_drop(struct job *j);

static void job_free(struct job *j)
{
	*j->prevp = j->next;
	if (j->next)
		j->next->prevp = j->prevp;
	if (j->renew)
		event_free(j->renew);
	if (j->renew_query)
		j->renew_query->job = NULL;
	rollout_start_drop(j);
	if (j->fence)
		event_free(j->fence);
	event_free(j->retry);
	if (j->watch)
		event_free(j->watch);
	if (j->watch_query)
		j->watch_query->job = NULL;
	if (j->command_query)
		j->command_query->job = NULL;
	workspace_release(j->run_dir);
	rollout_free(j->rollout);
	rollout_saves_free(j->saves);
	free(j->park_state);
	free(j->outputs);
	free(j->rollout_end);
	json_decref(j->runinfo);
	json_decref(j->def);
	logmask_free(j->mask);
	stage_env_secrets_free(j->secrets);
	struct worker *w = j->w;
	free(j);
	w->running--;
	worker_slot_freed(w);
}

/* A line for the stage's log stream, as the mask lets it through; "system"
 * lines are sluice's own. (A character cut by the 64 KiB pieces of a longer
 * line shows as U+FFFD.) */
static void store_line(enum logmask_stream s, const char *line, size_t len, void *arg)
{
	struct job *j = arg;
	stage_log_write(j->w, j->run, j->stage, s, line, len);
}

static void log_line(struct job *j, enum logmask_stream s, const char *line, size_t len)
{
	if (j->mask)
		logmask_line(j->mask, s, line, len);
	else
		store_line(s, line, len, j);
}

static void log_system(struct job *j, const char *text)
{
	log_line(j, LOGMASK_SYSTEM, text, strlen(text));
}

static void on_process_line(enum process_stream s, const char *line, size_t len, void *arg)
{
	log_line(arg, s == PROCESS_STDOUT ? LOGMASK_STDOUT : LOGMASK_STDERR, line, len);
}

static void on_http_line(enum http_line_kind k, const char *line, size_t len, void *arg)
{
	log_line(arg, k == HTTP_LINE_BODY ? LOGMASK_STDOUT : LOGMASK_SYSTEM, line, len);
}

/* The stage's output is complete: held-back pieces and the count of
 * lines the cap dropped go out. */
static void log_end(struct job *j)
{
	if (j->mask)
		logmask_finish(j->mask);
}

static void rollout_stopped(struct job *j);
static int rollout_start_stopped(struct job *j);
static int retry_pending(const struct job *j);

static int is_rollout(const struct job *j)
{
	return json_object_get(json_object_get(json_object_get(j->def, "stages"), j->stage),
			       "rollout") != NULL;
}

/* A cancelled run's rollout is aborted, not dropped: traffic goes back to
 * stable. So it is started even when the cancel comes before it is, and
 * aborted at once (on_env_color). */
static int cancelling_rollout(const struct job *j)
{
	return j->run_cancelled && !j->handing_back && !j->lease_lost && is_rollout(j);
}

/* Stops whatever the job is running; its completion callback follows. */
static void stop_work(struct job *j)
{
	if (j->rollout && cancelling_rollout(j))
		rollout_cancel(j->rollout);
	else if (j->rollout)
		rollout_stopped(j);
	else if (j->proc)
		process_cancel(j->proc);
	else if (j->http)
		http_cancel(j->http);
	else if (j->checkout && !cancelling_rollout(j))
		checkout_cancel(j->checkout);
	else if (j->starting && retry_pending(j))
		rollout_start_stopped(j);
}

/* --- recording the outcome ----------------------------------------------- */

/* again(j) in ms. The job has one retry at a time: its claim, its
 * deployment's state, its outcome or its park. */
static void retry_in(struct job *j, int ms, event_callback_fn again)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

	event_del(j->retry);
	evtimer_assign(j->retry, j->w->base, again, j);
	evtimer_add(j->retry, &tv);
}

/* again(j) after j->retry_ms, which then doubles (redis_retry_wait); what
 * was not done is logged as msg with why. */
static void retry_later(struct job *j, const char *msg, const char *why, event_callback_fn again)
{
	int ms = j->retry_ms;

	log_warn(msg, LOG_S("run", j->run), LOG_S("stage", j->stage), LOG_S("error", why),
		 LOG_I("retry_ms", ms));
	redis_retry_wait(&j->retry_ms);
	retry_in(j, ms, again);
}

/* Whether a retry is waiting for its turn. */
static int retry_pending(const struct job *j)
{
	return evtimer_pending(j->retry, NULL);
}

static void record(struct job *j);

static void on_record_retry(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	record(arg);
}

static void record_later(struct job *j, const char *why)
{
	retry_later(j, "outcome not recorded yet", why, on_record_retry);
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
		const json_t *stage = json_object_get(json_object_get(j->def, "stages"), j->stage);
		worker_metrics_stage_finished(
		    j->w, json_string_value(json_object_get(stage, "kind")), j->status,
		    (double)(clock_mono_ms() - j->claimed_ms) / 1000);
		outbox_kick(j->w->outbox);
	} else {
		log_warn("outcome fenced off: another attempt owns the stage", LOG_S("run", j->run),
			 LOG_S("stage", j->stage), LOG_I("attempt", j->attempt));
	}
	job_free(j);
}

/* The stage's "retry" and "max_attempts" for finish.lua, which puts them on
 * the stage.finished event: taken from the definition decoded here, so that
 * Redis does not decode the whole definition again for every stage. */
static char *retry_policy(const struct job *j)
{
	const json_t *stage = json_object_get(json_object_get(j->def, "stages"), j->stage);
	json_t *retry = json_object_get(stage, "retry");
	json_t *max_attempts = json_object_get(stage, "max_attempts");
	json_t *policy = json_object();
	char *text;

	if (!policy)
		return NULL;
	if (retry)
		json_object_set(policy, "retry", retry);
	if (max_attempts)
		json_object_set(policy, "max_attempts", max_attempts);
	text = json_dumps(policy, JSON_COMPACT);
	json_decref(policy);
	return text;
}

/* The attempt's result for sluice.results, ended with status (malloc'd;
 * NULL when out of memory). */
static char *result_value(const struct job *j, const char *status)
{
	char subject[512];
	snprintf(subject, sizeof(subject), "runs/%s/stages/%s/attempts/%d", j->run, j->stage,
		 j->attempt);
	json_t *data = json_pack("{s:s,s:s,s:i,s:s}", "run", j->run, "stage", j->stage, "attempt",
				 j->attempt, "status", status);
	if (data && j->exit_code[0])
		json_object_set_new(data, "exit_code", json_integer(atoi(j->exit_code)));
	char *value =
	    data ? envelope_encode("sluice-worker", "dev.sluice.stage.finished", subject, data)
		 : NULL;
	json_decref(data);
	return value;
}

/* Whether the job's last script (finish, park, hand-back) waits for the
 * rollout's saves still on their way: it would fence them off. then(j)
 * follows once they are answered. The outcome and a park wait even while
 * Redis is away, as they are retried until Redis takes them; a hand-back
 * stops waiting at the first save Redis does not answer (even_offline 0):
 * it would fail too, the lease runs out and the next attempt carries on
 * from the last save that landed, and a worker told to stop is not held up
 * by Redis. */
static int saves_first(struct job *j, void (*then)(void *), int even_offline)
{
	return j->saves && rollout_saves_wait(j->saves, even_offline, then, j);
}

static void record_after_saves(void *arg)
{
	record(arg);
}

static void record(struct job *j)
{
	struct worker *w = j->w;
	char topic[256], attempt[16], now[32];
	/* finish.lua would fence off the saves still on their way. */
	if (saves_first(j, record_after_saves, 1)) {
		log_info("outcome waits for the rollout's saves", LOG_S("run", j->run),
			 LOG_S("stage", j->stage), LOG_S("status", j->status));
		return;
	}
	/* A reader of the log takes the outcome for the end of its lines. */
	if (stage_log_waiting(w, j->run, j->stage)) {
		if (!j->log_waited)
			log_info("outcome waits for the stage's log lines", LOG_S("run", j->run),
				 LOG_S("stage", j->stage));
		j->log_waited = 1;
		retry_in(j, LOG_WAIT_POLL_MS, on_record_retry);
		return;
	}
	snprintf(topic, sizeof(topic), "%sresults", w->settings.topic_prefix);
	snprintf(attempt, sizeof(attempt), "%d", j->attempt);
	snprintf(now, sizeof(now), "%lld", (long long)clock_now_ms());

	char *value = result_value(j, j->status);
	char *policy = retry_policy(j);
	if (!value || !policy) {
		free(value);
		free(policy);
		record_later(j, "out of memory");
		return;
	}
	const char *argv[] = {w->settings.key_prefix,
			      j->run,
			      j->stage,
			      attempt,
			      w->token,
			      j->status,
			      j->exit_code,
			      j->signal,
			      j->error,
			      now,
			      topic,
			      value,
			      j->outputs ? j->outputs : "",
			      policy,
			      j->rollout_end ? j->rollout_end : ""};
	if (redis_script_run(w->redis, w->scripts.finish, on_recorded, j, 0, 15, argv, NULL) < 0)
		record_later(j, "script not sent");
	free(value);
	free(policy);
}

static void on_outputs_note(const char *text, void *arg)
{
	log_system(arg, text);
}

/* The job's last script is about to be sent (finish, handback or park): no
 * renewal or watch may follow it, or its reply would find the job freed. */
static void stop_ticking(struct job *j)
{
	j->phase = JOB_RECORDING;
	if (j->renew)
		evtimer_del(j->renew);
	if (j->fence)
		evtimer_del(j->fence);
	if (j->watch)
		evtimer_del(j->watch);
}

static void finish(struct job *j, const char *status, const char *error)
{
	char outputs_error[256];

	stop_ticking(j);
	/* A stage that cannot hand on what it wrote has not done its work. */
	if (j->output_path[0] && !strcmp(status, "succeeded") &&
	    stage_outputs_read(j->output_path, j->mask, &j->outputs, on_outputs_note, j,
			       outputs_error, sizeof(outputs_error)) < 0) {
		status = "failed";
		error = outputs_error;
	}
	j->status = status;
	log_end(j);
	if (error) {
		/* The error is stored with the stage: it must not carry a secret
		 * that a command or a server echoed back, nor a character cut in
		 * two by a buffer it went through (a long command's name): its
		 * stage.finished event and the API's JSON hold it as UTF-8. */
		char *masked = j->mask ? logmask_text(j->mask, error) : NULL;
		const char *shown = masked ? masked : error;
		utf8_copy(j->error, sizeof(j->error), shown, strlen(shown));
		free(masked);
		log_system(j, error);
	}
	if (j->lease_lost) {
		/* Another attempt owns the stage; finish.lua would fence us off. */
		log_warn("stage abandoned: lease lost", LOG_S("run", j->run),
			 LOG_S("stage", j->stage), LOG_I("attempt", j->attempt));
		job_free(j);
		return;
	}
	j->retry_ms = REDIS_RETRY_FIRST_MS;
	record(j);
}

/* --- handing back on shutdown -------------------------------------------- */

/* The stage left this worker through a script (handback.lua, park.lua):
 * what the script said is logged with msg, the outbox publishes the job the
 * script queued, and the job is freed. */
static void job_left(struct job *j, const char *msg, const redisReply *reply, const char *err)
{
	log_info(msg, LOG_S("run", j->run), LOG_S("stage", j->stage),
		 LOG_S("outcome", reply && reply->type == REDIS_REPLY_STRING ? reply->str
									     : (err ? err : "?")));
	if (reply)
		outbox_kick(j->w->outbox);
	job_free(j);
}

static void on_handed_back(struct redis *r, redisReply *reply, const char *err, void *arg)
{
	(void)r;
	job_left(arg, "stage handed back", reply, err);
}

/* The stage goes back with the job of attempt + 1: a late result of this
 * attempt is fenced off, as for a lost one. In a cancelled run a deployment
 * may end here instead, with the result "cancelled" (handback.lua). */
static void hand_back(struct job *j);

static void hand_back_after_saves(void *arg)
{
	hand_back(arg);
}

static void hand_back(struct job *j)
{
	struct worker *w = j->w;
	/* The next attempt carries on from the last save. */
	if (saves_first(j, hand_back_after_saves, 0))
		return;
	stop_ticking(j);
	log_end(j);
	const char *kind = json_string_value(
	    json_object_get(json_object_get(json_object_get(j->def, "stages"), j->stage), "kind"));
	json_t *job =
	    jobs_prepare(&w->settings, j->run, j->stage, kind ? kind : "build", j->attempt + 1);
	char *result = result_value(j, "cancelled");
	char attempt[16], now[32], topic[256];
	snprintf(attempt, sizeof(attempt), "%d", j->attempt);
	snprintf(now, sizeof(now), "%lld", (long long)clock_now_ms());
	snprintf(topic, sizeof(topic), "%sresults", w->settings.topic_prefix);
	if (!job || !result) {
		json_decref(job);
		free(result);
		job_free(j);
		return;
	}
	const char *argv[] = {w->settings.key_prefix,
			      j->run,
			      j->stage,
			      attempt,
			      w->token,
			      now,
			      json_string_value(json_object_get(job, "topic")),
			      json_string_value(json_object_get(job, "value")),
			      topic,
			      result};
	if (redis_script_run(w->redis, w->scripts.handback, on_handed_back, j, 0, 10, argv, NULL) <
	    0)
		job_free(j);
	json_decref(job);
	free(result);
}

void job_hand_back_all(struct worker *w)
{
	w->handing_back = 1;
	struct job *next;
	/* A job may be freed by its stop (a rollout handed back at once). */
	for (struct job *j = w->jobs; j; j = next) {
		next = j->next;
		/* A claim waiting to be tried again (Redis away) is given up:
		 * its offset is unstored, so the partition's next owner takes
		 * the job; had an earlier try landed unanswered, its lease runs
		 * out. One in flight is given up when it fails (on_claimed). */
		if (j->phase == JOB_CLAIMING && retry_pending(j)) {
			log_info("job left unclaimed: the worker stops", LOG_S("run", j->run),
				 LOG_S("stage", j->stage), LOG_I("attempt", j->attempt));
			job_free(j);
			continue;
		}
		if (j->handing_back || j->phase == JOB_CLAIMING || j->phase == JOB_RECORDING)
			continue;
		j->handing_back = 1;
		stop_work(j);
	}
}

/* --- running ------------------------------------------------------------- */

/* The signal that ended the stage's command, as j->signal: "SIGTERM", or
 * "SIGRTMIN+3" for a real-time signal, which has no name of its own. */
static void note_signal(struct job *j, int sig)
{
	const char *abbrev = sigabbrev_np(sig);
	if (abbrev)
		snprintf(j->signal, sizeof(j->signal), "SIG%s", abbrev);
	else if (sig >= SIGRTMIN && sig <= SIGRTMAX)
		snprintf(j->signal, sizeof(j->signal), "SIGRTMIN+%d", sig - SIGRTMIN);
	else
		snprintf(j->signal, sizeof(j->signal), "signal %d", sig);
}

/* Only a command the hand-back stopped is handed back. One whose outcome
 * was known before (it had exited, and its pipes were still waited for)
 * is recorded: handing it back would run it again, after its success. */
static void on_process_exit(const struct process_result *r, void *arg)
{
	struct job *j = arg;
	char text[512];
	j->proc = NULL;
	if (j->handing_back && r->outcome == PROCESS_CANCELLED) {
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
		note_signal(j, r->term_signal);
		snprintf(text, sizeof(text), "killed by %s", j->signal);
		finish(j, "failed", text);
		return;
	case PROCESS_TIMED_OUT:
		if (r->term_signal)
			note_signal(j, r->term_signal);
		snprintf(text, sizeof(text), "timed out after %lld ms", r->duration_ms);
		finish(j, "timed_out", text);
		return;
	case PROCESS_CANCELLED:
		if (r->term_signal)
			note_signal(j, r->term_signal);
		finish(j, "cancelled", "cancelled");
		return;
	case PROCESS_SPAWN_FAILED:
		snprintf(j->exit_code, sizeof(j->exit_code), "%d", r->exit_code);
		finish(j, "failed", r->error);
		return;
	}
}

static void run_rollout(struct job *j, const char *workspace);

/* $SLUICE_OUTPUT (a new file for this attempt), in the run's directory of
 * this worker, and $SLUICE_ARTIFACTS: <worker.artifacts_dir>/<run> (shared
 * storage when workers span machines), or beside the run's workspaces. */
static int prepare_outputs(struct job *j, json_t *vars, char *err, size_t errlen)
{
	char dir[1024], artifacts[1024];
	const char *shared = j->w->settings.artifacts_dir;
	int n = shared ? snprintf(artifacts, sizeof(artifacts), "%s/%s", shared, j->run) : 0;
	const char *failed = NULL;
	int fd = -1;

	if (workspace_path(&j->w->settings, j->run, ".outputs", dir, sizeof(dir)) < 0 || n < 0 ||
	    (size_t)n >= sizeof(artifacts) ||
	    (!shared && workspace_path(&j->w->settings, j->run, ".artifacts", artifacts,
				       sizeof(artifacts)) < 0)) {
		snprintf(err, errlen, "the outputs or artifacts directory's path is too long");
		return -1;
	}
	n = snprintf(j->output_path, sizeof(j->output_path), "%s/%s", dir, j->stage);
	if (n < 0 || (size_t)n >= sizeof(j->output_path)) {
		snprintf(err, errlen, "the outputs directory's path is too long");
		j->output_path[0] = '\0';
		return -1;
	}
	/* The file is made anew, never opened as it is: an earlier attempt may
	 * have left a FIFO there, whose open would block the worker until a
	 * reader came, or a symbolic link to write through. */
	if (workspace_make(dir) < 0)
		failed = dir;
	else if (workspace_make(artifacts) < 0)
		failed = artifacts;
	else if ((unlink(j->output_path) < 0 && errno != ENOENT) ||
		 (fd = open(j->output_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666)) < 0)
		failed = j->output_path;
	if (failed) {
		snprintf(err, errlen, "cannot create %.300s: %s", failed, strerror(errno));
		j->output_path[0] = '\0';
		return -1;
	}
	close(fd);
	json_object_set_new(vars, "SLUICE_OUTPUT", json_string(j->output_path));
	json_object_set_new(vars, "SLUICE_ARTIFACTS", json_string(artifacts));
	return 0;
}

static void run_command(struct job *j, const char *workspace)
{
	struct worker *w = j->w;
	char err[512];
	const json_t *stage = json_object_get(json_object_get(j->def, "stages"), j->stage);
	if (json_object_get(stage, "rollout")) {
		run_rollout(j, workspace);
		return;
	}
	json_t *vars = stage_env_vars(j->runinfo, j->def, j->stage, j->attempt);
	if (vars && prepare_outputs(j, vars, err, sizeof(err)) < 0) {
		json_decref(vars);
		finish(j, "failed", err);
		return;
	}
	char **argv = stage_env_argv(stage, vars, err, sizeof(err));
	char **envp = argv ? stage_env_build(vars, j->secrets, stage, err, sizeof(err)) : NULL;
	json_decref(vars);
	if (!argv || !envp) {
		strv_free(argv);
		finish(j, "failed", err);
		return;
	}
	json_int_t timeout_s = json_integer_value(json_object_get(stage, "timeout"));
	struct process_spec spec = {
	    .argv = (const char *const *)argv,
	    .envp = (const char *const *)envp,
	    .cwd = workspace,
	    .timeout_ms = timeout_s > 0 ? (int64_t)timeout_s * 1000 : 0,
	    .kill_grace_ms = w->settings.kill_grace_ms,
	};
	j->phase = JOB_RUNNING;
	j->proc = process_spawn(&spec, on_process_line, on_process_exit, j);
	int spawn_errno = errno;
	strv_free(argv);
	strv_free(envp);
	if (!j->proc) {
		snprintf(err, sizeof(err), "the worker cannot start the command: %s",
			 strerror(spawn_errno));
		finish(j, "failed", err);
	}
}

/* --- http: stages ------------------------------------------------------- */

/* As for a command: only a request the hand-back stopped is handed back,
 * not one whose outcome was decided and not yet delivered. */
static void on_http_exit(const struct http_result *r, void *arg)
{
	struct job *j = arg;
	j->http = NULL;
	if (j->handing_back && r->outcome == HTTP_CANCELLED) {
		hand_back(j);
		return;
	}
	switch (r->outcome) {
	case HTTP_SUCCEEDED:
		finish(j, "succeeded", NULL);
		return;
	case HTTP_FAILED:
		finish(j, "failed", r->error);
		return;
	case HTTP_TIMED_OUT:
		finish(j, "timed_out", r->error);
		return;
	case HTTP_CANCELLED:
		finish(j, "cancelled", "cancelled");
		return;
	}
}

/* Templates see the run's variables and, as a request has no environment
 * to read them from, the secrets. */
static void run_http(struct job *j)
{
	char err[512];
	const json_t *stage = json_object_get(json_object_get(j->def, "stages"), j->stage);
	json_t *vars = stage_env_vars(j->runinfo, j->def, j->stage, j->attempt);
	json_int_t timeout_s = json_integer_value(json_object_get(stage, "timeout"));
	if (!vars || json_object_update(vars, j->secrets) < 0) {
		json_decref(vars);
		finish(j, "failed", "out of memory");
		return;
	}
	j->phase = JOB_RUNNING;
	j->http = http_start(j->w->base, json_object_get(stage, "http"), vars,
			     timeout_s > 0 ? (int64_t)timeout_s * 1000 : 0, on_http_line,
			     on_http_exit, j, err, sizeof(err));
	json_decref(vars);
	if (!j->http)
		finish(j, "failed", err);
}

/* Secrets are read and the mask is set up before the first line of the
 * attempt, so that even the checkout's output is masked. */
static int prepare_log(struct job *j)
{
	const json_t *stage = json_object_get(json_object_get(j->def, "stages"), j->stage);
	const json_t *cap = json_object_get(stage, "log_cap");
	char err[512];
	const char *name;
	json_t *value;

	j->secrets =
	    stage_env_secrets(json_object_get(stage, "secrets") ? stage : j->def, err, sizeof(err));
	if (!j->secrets) {
		finish(j, "failed", err);
		return -1;
	}
	j->mask = logmask_new(json_is_integer(cap) ? (size_t)json_integer_value(cap)
						   : j->w->settings.log_cap,
			      PROCESS_LINE_PIECE, store_line, j);
	if (!j->mask) {
		finish(j, "failed", "out of memory");
		return -1;
	}
	const char *withheld = json_string_value(json_object_get(j->def, "secrets_withheld"));
	if (withheld) {
		snprintf(err, sizeof(err),
			 "the pipeline's secrets are withheld from this run: %s "
			 "(trigger.github.forks)",
			 withheld);
		log_system(j, err);
	}
	json_object_foreach(j->secrets, name, value)
	{
		int rc = logmask_add_secret(j->mask, json_string_value(value),
					    json_string_length(value));
		if (rc < 0) {
			finish(j, "failed", "out of memory");
			return -1;
		}
		if (rc > 0) {
			snprintf(err, sizeof(err),
				 "secret %s is shorter than %d bytes: it is not masked in this log",
				 name, LOGMASK_MIN_SECRET);
			log_system(j, err);
		}
	}
	return 0;
}

struct checkout_done {
	struct job *job;
	char workspace[1024];
};

/* git's lines during the checkout: arg is the checkout's, not the job. */
static void on_checkout_line(enum process_stream s, const char *line, size_t len, void *arg)
{
	struct checkout_done *d = arg;
	on_process_line(s, line, len, d->job);
}

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
	if (ok < 0 && j->run_cancelled) {
		free(d);
		finish(j, "cancelled", "cancelled: the run was cancelled");
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

/* How long before the lease can end the stage is stopped when the lease
 * could not be renewed: the kill grace, at most a quarter of the lease (two
 * renewals failed by then). SIGKILL comes when the lease ends. */
static int lease_fence_ms(const struct job *j)
{
	int grace = j->w->settings.kill_grace_ms;
	return grace < j->lease_ms / 4 ? grace : j->lease_ms / 4;
}

static void on_fence(evutil_socket_t fd, short what, void *arg)
{
	struct job *j = arg;
	int64_t now = clock_mono_ms();
	int64_t left = j->lease_ends_ms > now ? j->lease_ends_ms - now : 0;
	(void)fd;
	(void)what;
	if (j->phase == JOB_RECORDING || j->lease_lost)
		return;
	log_warn("lease not renewed in time; stopping the stage", LOG_S("run", j->run),
		 LOG_S("stage", j->stage), LOG_I("attempt", j->attempt),
		 LOG_I("lease_ms", j->lease_ms), LOG_I("lease_left_ms", left));
	worker_metrics_lease_renewal_failed(j->w, 1);
	j->lease_lost = 1;
	if (j->proc && !j->rollout)
		process_cancel_within(j->proc, (int)left);
	else
		stop_work(j);
}

/* (Re)sets the fence to the lease's end, less lease_fence_ms. */
static void fence_arm(struct job *j)
{
	int64_t wait = j->lease_ends_ms - lease_fence_ms(j) - clock_mono_ms();
	if (wait < 0)
		wait = 0;
	struct timeval tv = {(time_t)(wait / 1000), (suseconds_t)(wait % 1000) * 1000};
	if (!j->fence)
		j->fence = evtimer_new(j->w->base, on_fence, j);
	if (j->fence)
		evtimer_add(j->fence, &tv);
}

/* The next renewal in delay_ms. */
static void renew_arm(struct job *j, int delay_ms)
{
	if (!j->renew)
		return;
	struct timeval tv = {delay_ms / 1000, (delay_ms % 1000) * 1000};
	evtimer_add(j->renew, &tv);
}

/* The first renewal: a lease with less than two thirds left (claimed again
 * after a lost answer) is renewed at once, any other a third of it on. */
static void renew_first(struct job *j)
{
	int at_once = j->lease_ends_ms - clock_mono_ms() < j->lease_ms - j->lease_ms / 3;
	renew_arm(j, at_once ? 0 : j->lease_ms / 3);
}

/* After a renewal Redis did not take: again soon, until the fence. */
static void renew_again(struct job *j, const char *why)
{
	int period = j->lease_ms / 3;
	log_warn("lease not renewed", LOG_S("run", j->run), LOG_S("stage", j->stage),
		 LOG_S("error", why));
	worker_metrics_lease_renewal_failed(j->w, 0);
	renew_arm(j, period < RENEW_RETRY_MS ? period : RENEW_RETRY_MS);
}

static void on_renewed(struct redis *r, redisReply *reply, const char *err, void *arg)
{
	struct job *j = query_reply(arg);
	(void)r;
	if (!j || j->phase == JOB_RECORDING || j->lease_lost)
		return;
	if (!reply || reply->type != REDIS_REPLY_INTEGER) {
		/* Redis is away, or refused the script (out of memory): the
		 * lease may still be ours. */
		renew_again(j, reply && reply->type == REDIS_REPLY_ERROR ? reply->str
			       : err					 ? err
									 : "unexpected reply");
		return;
	}
	if (reply->integer == 1) {
		/* PEXPIRE ran after the renewal was sent. */
		j->lease_ends_ms = j->renew_sent_ms + j->lease_ms;
		fence_arm(j);
		renew_arm(j, j->lease_ms / 3);
		return;
	}
	log_warn("lease lost; cancelling the stage", LOG_S("run", j->run), LOG_S("stage", j->stage),
		 LOG_I("attempt", j->attempt));
	worker_metrics_lease_renewal_failed(j->w, 1);
	j->lease_lost = 1;
	/* The lease is gone already: the next attempt may be running, here
	 * too (in the same workspace). The stage gets no grace. */
	if (j->proc && !j->rollout)
		process_cancel_within(j->proc, 0);
	else
		stop_work(j);
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
	snprintf(lease, sizeof(lease), "%d", j->lease_ms);
	snprintf(now, sizeof(now), "%lld", (long long)clock_now_ms());
	const char *argv[] = {
	    w->settings.key_prefix, j->run, j->stage, attempt, w->token, lease, now};
	/* One renewal at a time; its answer sets the next. */
	struct status_query *q = query_new(j, &j->renew_query);
	if (!q)
		return;
	j->renew_sent_ms = clock_mono_ms();
	if (redis_script_run(w->redis, w->scripts.lease_renew, on_renewed, q, 0, 7, argv, NULL) <
	    0) {
		free(q);
		renew_again(j, "not sent");
		return;
	}
	j->renew_query = q;
}

/* --- deployments with a strategy ---------------------------------------- */

static int mask_messages(const struct logmask *m, json_t *v)
{
	const char *key;
	json_t *item;
	size_t i;

	json_array_foreach(v, i, item)
	{
		if (mask_messages(m, item) < 0)
			return -1;
	}
	json_object_foreach(v, key, item)
	{
		if (!json_is_string(item) || strcmp(key, "message") != 0) {
			if (mask_messages(m, item) < 0)
				return -1;
			continue;
		}
		char *masked = logmask_text(m, json_string_value(item));
		int rc = masked ? json_string_set(item, masked) : -1;
		free(masked);
		if (rc < 0)
			return -1;
	}
	return 0;
}

/* v as JSON text, with the secrets masked in every "message": a rollout's
 * state and events quote what its commands printed and its servers
 * answered, and reach the API and sluice.events. Only messages, as the
 * rest (the image, the plan's colours) is what a later attempt resumes
 * with. NULL when out of memory. */
static char *rollout_text(const struct job *j, const json_t *v)
{
	json_t *copy = json_deep_copy(v);
	char *text = NULL;

	if (copy && (!j->mask || mask_messages(j->mask, copy) == 0))
		text = json_dumps(copy, JSON_COMPACT);
	json_decref(copy);
	return text;
}

/* A rollout's state goes to the stage (rollout_save.lua), with its event
 * and the command it acted on, after the saves before it, even if Redis is
 * away meanwhile (rollout_saves.h); fenced off when the attempt is not
 * ours. */
static void save_rollout(struct job *j, const json_t *state, const json_t *event)
{
	char *text = rollout_text(j, state);
	char *data = event ? rollout_text(j, json_object_get(event, "data")) : NULL;
	const char *type = event ? json_string_value(json_object_get(event, "type")) : NULL;

	if (!j->saves)
		j->saves = rollout_saves_new(j->w, j->run, j->stage, j->attempt);
	if (!j->saves || !text || (event && !data) ||
	    rollout_saves_add(j->saves, text, type, data, j->command) < 0)
		log_warn("rollout state not saved: out of memory", LOG_S("run", j->run),
			 LOG_S("stage", j->stage));
	j->command[0] = '\0';
	free(text);
	free(data);
}

/* What a check's or a hook's command printed is the stage's output, under
 * its log cap as a command stage's is; the rollout's own lines are not. */
static void on_rollout_line(int output, const char *line, size_t len, void *arg)
{
	log_line(arg, output ? LOGMASK_STDOUT : LOGMASK_SYSTEM, line, len);
}

static void on_rollout_save(const json_t *state, const json_t *event, void *arg)
{
	save_rollout(arg, state, event);
}

/* The rollout is over for this job (parked or done). It is freed from the
 * loop: it calls back from deep within itself and its providers. */
static void on_rollout_over(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	rollout_free(arg);
}

/* The job is done with its rollout, perhaps from within one of its
 * callbacks: it is freed from the loop, and says nothing more meanwhile
 * (the job may be freed first). */
static void rollout_over(struct job *j)
{
	struct rollout *r = j->rollout;

	j->rollout = NULL;
	if (!r)
		return;
	rollout_mute(r);
	if (event_base_once(j->w->base, -1, EV_TIMEOUT, on_rollout_over, r, NULL) < 0)
		log_warn("a finished rollout is not freed", LOG_S("run", j->run));
}

static void park(struct job *j);

static void on_park_retry(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	park(arg);
}

/* A park Redis did not answer, or refused for now, is sent again until it
 * takes it, as an outcome is: park.lua takes it only while the attempt
 * still owns the stage. One it refuses for good is left to the lease. */
static void on_parked(struct redis *r, redisReply *reply, const char *err, void *arg)
{
	struct job *j = arg;
	(void)r;
	if (!reply && redis_err_passing(err)) {
		retry_later(j, "deployment not parked yet", err, on_park_retry);
		return;
	}
	job_left(j,
		 reply ? "deployment parked"
		       : "deployment not parked: the lease runs out and the stage is retried",
		 reply, err);
}

static void park_after_saves(void *arg)
{
	park(arg);
}

/* park.lua, with the state the rollout parked in (j->park_state). */
static void park(struct job *j)
{
	struct worker *w = j->w;
	char attempt[16], until[32], now[32];

	if (saves_first(j, park_after_saves, 1)) {
		log_info("park waits for the rollout's saves", LOG_S("run", j->run),
			 LOG_S("stage", j->stage));
		return;
	}
	json_t *job = jobs_prepare(&w->settings, j->run, j->stage, "deploy", j->attempt);
	snprintf(attempt, sizeof(attempt), "%d", j->attempt);
	snprintf(until, sizeof(until), "%lld", (long long)j->park_until);
	snprintf(now, sizeof(now), "%lld", (long long)clock_now_ms());
	const char *argv[] = {w->settings.key_prefix,
			      j->run,
			      j->stage,
			      attempt,
			      w->token,
			      j->park_state ? j->park_state : "{}",
			      until,
			      now,
			      job ? json_string_value(json_object_get(job, "topic")) : "",
			      job ? json_string_value(json_object_get(job, "value")) : ""};
	if (!j->park_state || !job)
		job_left(j, "deployment not parked: the lease runs out and the stage is retried",
			 NULL, "out of memory");
	else if (redis_script_run(w->redis, w->scripts.park, on_parked, j, 0, 10, argv, NULL) < 0)
		on_parked(w->redis, NULL, "script not sent", j);
	json_decref(job);
}

static void on_rollout_park(const json_t *state, int64_t until_ms, void *arg)
{
	struct job *j = arg;

	j->park_state = rollout_text(j, state);
	j->park_until = until_ms;
	log_end(j);
	stop_ticking(j);
	rollout_over(j);
	j->retry_ms = REDIS_RETRY_FIRST_MS;
	park(j);
}

/* The state the rollout ended in goes with the outcome (finish.lua), not
 * in a save of its own: a save lost while Redis was away would leave the
 * stage finished with the state of a step before, and the router reads
 * from it what the deployment left live. */
static void on_rollout_done(const char *status, const char *message, const json_t *state, void *arg)
{
	struct job *j = arg;

	j->rollout_end = rollout_text(j, state);
	rollout_over(j);
	finish(j, status, strcmp(status, "succeeded") != 0 ? message : NULL);
}

static const struct rollout_callbacks rollout_cb = {
    .line = on_rollout_line,
    .save = on_rollout_save,
    .park = on_rollout_park,
    .done = on_rollout_done,
};

/* Hand back or lease lost: the rollout stops where it is; its saved state
 * lets the next attempt carry on. */
static void rollout_stopped(struct job *j)
{
	rollout_over(j);
	if (j->handing_back)
		hand_back(j);
	else
		finish(j, "failed", "lease lost");
}

/* An operator's command the rollout has to see: acted on, then taken off
 * the stage with the next save (even when it does not apply now, so that
 * it does not linger until a later pause). */
static void take_command(struct job *j, const char *command, const char *by)
{
	if (!j->rollout || !command || !*command)
		return;
	snprintf(j->command, sizeof(j->command), "%s", command);
	if (rollout_command(j->rollout, command, by) < 0 && j->rollout)
		save_rollout(j, rollout_state(j->rollout), NULL);
}

/* What a deployment starts from, read from Redis once its workspace is
 * ready; the reads are sent again until Redis answers them. */
struct rollout_start {
	struct job *job; /* NULL once the job is gone, while a read is in flight */
	json_t *fields;	 /* the stage's rollout, command, command_by, mode, rollback_image */
	char workspace[1024];
	int reading; /* a read is in flight */
};

static void rollout_start_free(struct rollout_start *rs)
{
	if (!rs)
		return;
	json_decref(rs->fields);
	free(rs);
}

/* The job is done with its start's reads: the start goes with it, or with
 * the reply of its read in flight. */
static void rollout_start_drop(struct job *j)
{
	struct rollout_start *rs = j->starting;

	if (!rs)
		return;
	j->starting = NULL;
	event_del(j->retry);
	if (rs->reading)
		rs->job = NULL;
	else
		rollout_start_free(rs);
}

/* The reply to a read of the start: its job, or NULL when the job is gone
 * (the start freed then). */
static struct job *rollout_start_reply(struct rollout_start *rs)
{
	struct job *j = rs->job;

	rs->reading = 0;
	if (!j)
		rollout_start_free(rs);
	return j;
}

/* A hand-back or a lost lease ends a deployment that has not started. */
static int rollout_start_stopped(struct job *j)
{
	if (!j->handing_back && !j->lease_lost)
		return 0;
	rollout_start_drop(j);
	if (j->handing_back)
		hand_back(j);
	else
		finish(j, "failed", "lease lost");
	return 1;
}

static void read_rollout_start(struct job *j);

static void on_read_retry(evutil_socket_t fd, short what, void *arg)
{
	struct job *j = arg;
	(void)fd;
	(void)what;
	if (!rollout_start_stopped(j))
		read_rollout_start(j);
}

/* A read Redis did not answer (an outage), or refused for now, is sent
 * again until it takes it, the lease fence or a hand-back; one it refuses
 * for good fails the deployment. */
static void rollout_start_failed(struct job *j, const char *what, const redisReply *reply,
				 const char *err)
{
	char text[512];

	if (!reply && j->w->draining && err && strcmp(err, "shutting down") == 0) {
		job_free(j);
		return;
	}
	if (!reply && redis_err_passing(err)) {
		retry_later(j, "deployment's state not read yet", err, on_read_retry);
		return;
	}
	snprintf(text, sizeof(text), "cannot read %s: %s", what,
		 reply ? "unexpected reply"
		 : err ? err
		       : "no reply");
	rollout_start_drop(j);
	finish(j, "failed", text);
}

static void on_env_color(struct redis *r, redisReply *reply, const char *err, void *arg)
{
	struct rollout_start *rs = arg;
	struct job *j = rollout_start_reply(rs);
	(void)r;

	if (!j || rollout_start_stopped(j))
		return;
	if (!reply) {
		rollout_start_failed(j, "the environment", reply, err);
		return;
	}
	/* The reads are over: the start is this call's, so that nothing the
	 * rollout does from here (a park and its retries) is taken for them. */
	j->starting = NULL;
	const json_t *stage = json_object_get(json_object_get(j->def, "stages"), j->stage);
	const json_t *spec = json_object_get(stage, "rollout");
	const json_t *f = rs->fields;
	const char *saved = json_string_value(json_object_get(f, "rollout"));
	const char *mode = json_string_value(json_object_get(f, "mode"));
	json_t *state = saved ? json_loads(saved, 0, NULL) : NULL;
	json_t *vars = stage_env_vars(j->runinfo, j->def, j->stage, j->attempt);
	char *image = NULL;
	char error[512] = "out of memory";

	if (!vars || json_object_update(vars, j->secrets) < 0 ||
	    expand_arg(json_string_value(json_object_get(spec, "image")), vars, &image, error,
		       sizeof(error)) < 0) {
		char text[600];
		snprintf(text, sizeof(text), "image: %s", error);
		finish(j, "failed", text);
		goto done;
	}
	struct rollout_params p = {
	    .spec = spec,
	    .state = state,
	    .vars = vars,
	    .cwd = rs->workspace,
	    .image = image,
	    .active = reply->type == REDIS_REPLY_STRING ? reply->str : NULL,
	    .rollback = mode && !strcmp(mode, "rollback")
			    ? json_string_value(json_object_get(f, "rollback_image"))
			    : NULL,
	};
	j->phase = JOB_RUNNING;
	j->rollout = rollout_start(j->w->base, &p, &rollout_cb, j, error, sizeof(error));
	if (!j->rollout) {
		finish(j, "failed", error);
		goto done;
	}
	if (j->run_cancelled) {
		/* Cancelled while its checkout or state was read. */
		rollout_cancel(j->rollout);
		goto done;
	}
	take_command(j, json_string_value(json_object_get(f, "command")),
		     json_string_value(json_object_get(f, "command_by")));
done:
	rollout_start_free(rs);
	free(image);
	json_decref(vars);
	json_decref(state);
}

static void on_rollout_fields(struct redis *r, redisReply *reply, const char *err, void *arg)
{
	static const char *const names[] = {"rollout", "command", "command_by", "mode",
					    "rollback_image"};
	struct rollout_start *rs = arg;
	struct job *j = rollout_start_reply(rs);
	(void)r;

	if (!j || rollout_start_stopped(j))
		return;
	if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 5) {
		rollout_start_failed(j, "the deployment's state", reply, err);
		return;
	}
	const char *pipeline = json_string_value(json_object_get(j->runinfo, "pipeline"));
	const char *env = json_string_value(
	    json_object_get(json_object_get(json_object_get(j->def, "stages"), j->stage), "env"));
	json_object_clear(rs->fields);
	for (size_t i = 0; i < 5; i++)
		if (reply->element[i]->type == REDIS_REPLY_STRING)
			json_object_set_new(
			    rs->fields, names[i],
			    json_stringn(reply->element[i]->str, reply->element[i]->len));
	if (redis_command(j->w->redis, on_env_color, rs, "HGET %senv:%s:%s active_color",
			  j->w->settings.key_prefix, pipeline ? pipeline : "",
			  env ? env : "") < 0) {
		rollout_start_failed(j, "the environment", NULL, "not sent");
		return;
	}
	rs->reading = 1;
}

/* The stage's saved state and the environment's active colour, each time
 * from the first: a command may have come meanwhile. */
static void read_rollout_start(struct job *j)
{
	struct rollout_start *rs = j->starting;

	if (redis_command(j->w->redis, on_rollout_fields, rs,
			  "HMGET %srun:%s:stage:%s rollout command command_by mode rollback_image",
			  j->w->settings.key_prefix, j->run, j->stage) < 0) {
		rollout_start_failed(j, "the deployment's state", NULL, "not sent");
		return;
	}
	rs->reading = 1;
}

static void run_rollout(struct job *j, const char *workspace)
{
	struct rollout_start *rs = calloc(1, sizeof(*rs));

	if (!rs || !(rs->fields = json_object())) {
		free(rs);
		finish(j, "failed", "out of memory");
		return;
	}
	rs->job = j;
	snprintf(rs->workspace, sizeof(rs->workspace), "%s", workspace);
	j->starting = rs;
	j->phase = JOB_RUNNING;
	j->retry_ms = REDIS_RETRY_FIRST_MS;
	read_rollout_start(j);
}

/* Sends a poll of the job (the command argv) unless one is still in
 * flight in *slot; cb gets it with the reply and calls query_reply. */
static void poll_send(struct job *j, struct status_query **slot, redis_cb cb, int argc,
		      const char **argv)
{
	struct status_query *q = query_new(j, slot);

	if (!q)
		return;
	if (redis_command_argv(j->w->redis, cb, q, argc, argv, NULL) < 0) {
		free(q);
		return;
	}
	*slot = q;
}

static void on_command(struct redis *r, redisReply *reply, const char *err, void *arg)
{
	struct job *j = query_reply(arg);
	(void)r;
	(void)err;
	if (!j || !reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
	    reply->element[0]->type != REDIS_REPLY_STRING || j->phase == JOB_RECORDING)
		return;
	take_command(j, reply->element[0]->str,
		     reply->element[1]->type == REDIS_REPLY_STRING ? reply->element[1]->str : "");
}

/* --- watching for a cancelled run ---------------------------------------- */

static void on_run_status(struct redis *r, redisReply *reply, const char *err, void *arg)
{
	struct job *j = query_reply(arg);
	(void)r;
	(void)err;
	if (!j || !reply || reply->type != REDIS_REPLY_STRING ||
	    strcmp(reply->str, "cancelled") != 0 || j->run_cancelled || j->phase == JOB_RECORDING)
		return;
	log_info("run cancelled; stopping the stage", LOG_S("run", j->run),
		 LOG_S("stage", j->stage), LOG_I("attempt", j->attempt));
	j->run_cancelled = 1;
	stop_work(j);
}

/* Every CANCEL_POLL_MS: the run's status and, for a rollout, the operator's
 * command waiting for it. */
static void on_watch_tick(evutil_socket_t fd, short what, void *arg)
{
	struct job *j = arg;
	char run_key[300], stage_key[600];
	(void)fd;
	(void)what;
	if (j->phase == JOB_RECORDING)
		return;
	snprintf(run_key, sizeof(run_key), "%srun:%s", j->w->settings.key_prefix, j->run);
	if (j->rollout) {
		snprintf(stage_key, sizeof(stage_key), "%s:stage:%s", run_key, j->stage);
		const char *argv[] = {"HMGET", stage_key, "command", "command_by"};
		poll_send(j, &j->command_query, on_command, 4, argv);
	}
	if (!j->run_cancelled) {
		const char *argv[] = {"HGET", run_key, "status"};
		poll_send(j, &j->watch_query, on_run_status, 3, argv);
	}
}

static void watch_start(struct job *j)
{
	struct timeval tv = {0, CANCEL_POLL_MS * 1000};
	j->watch = event_new(j->w->base, -1, EV_PERSIST, on_watch_tick, j);
	if (j->watch)
		evtimer_add(j->watch, &tv);
}

static void begin(struct job *j)
{
	struct worker *w = j->w;
	const char *url = json_string_value(json_object_get(j->runinfo, "checkout_url"));
	const char *sha = json_string_value(json_object_get(j->runinfo, "sha"));
	if (w->handing_back) {
		/* Claimed after the worker was told to stop at once. */
		j->handing_back = 1;
		hand_back(j);
		return;
	}
	if (prepare_log(j) < 0)
		return;
	/* Held until the job is freed: the workers sharing the state
	 * directory, whatever their kinds, leave the run's directory alone. */
	j->run_dir = workspace_hold(&w->settings, j->run);
	if (j->run_dir < 0) {
		char text[1200];
		snprintf(text, sizeof(text), "cannot create %s/workspaces/%s: %s",
			 w->settings.state_dir, j->run, strerror(errno));
		finish(j, "failed", text);
		return;
	}
	struct checkout_done *d = calloc(1, sizeof(*d));
	if (!d) {
		finish(j, "failed", "out of memory");
		return;
	}
	d->job = j;
	/* A path cut short would name a directory above the stage's, which the
	 * checkout empties first. */
	if (workspace_path(&w->settings, j->run, j->stage, d->workspace, sizeof(d->workspace)) <
	    0) {
		free(d);
		finish(j, "failed", "the stage's workspace path is too long");
		return;
	}

	j->renew = evtimer_new(w->base, on_renew_tick, j);
	renew_first(j);
	fence_arm(j);
	watch_start(j);
	const json_t *stage = json_object_get(json_object_get(j->def, "stages"), j->stage);
	if (json_object_get(stage, "http")) {
		/* A request needs no checkout. */
		free(d);
		run_http(j);
		return;
	}
	if (json_is_false(json_object_get(stage, "checkout"))) {
		/* The stage's own directory, kept across its attempts. */
		if (workspace_make(d->workspace) < 0) {
			char text[1200];
			snprintf(text, sizeof(text), "cannot create %s: %s", d->workspace,
				 strerror(errno));
			free(d);
			finish(j, "failed", text);
			return;
		}
		run_command(j, d->workspace);
		free(d);
		return;
	}

	char text[1024], shown[768];
	checkout_url_shown(url ? url : "?", shown, sizeof(shown));
	snprintf(text, sizeof(text), "checking out %s at %s", shown, sha ? sha : "?");
	log_system(j, text);
	j->phase = JOB_CHECKOUT;
	j->checkout =
	    checkout_start(w->settings.state_dir, url ? url : "", sha ? sha : "", d->workspace,
			   w->settings.checkout_timeout_ms, on_checkout_line, on_checkout, d);
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
		if ((w->draining && err && strcmp(err, "shutting down") == 0) || w->handing_back) {
			log_info("job left unclaimed: the worker stops", LOG_S("run", j->run),
				 LOG_S("stage", j->stage), LOG_I("attempt", j->attempt));
			job_free(j);
			return;
		}
		retry_later(j, "job not claimed yet", err ? err : "unexpected reply",
			    on_claim_retry);
		return;
	}
	const char *outcome = reply->element[0]->str;
	kafka_consumer_done(w->consumer, j->ticket);
	j->ticket = NULL;
	if (strcmp(outcome, "claimed") != 0 || reply->elements != 3 ||
	    reply->element[2]->type != REDIS_REPLY_INTEGER) {
		log_info("job skipped", LOG_S("run", j->run), LOG_S("stage", j->stage),
			 LOG_I("attempt", j->attempt), LOG_S("reason", outcome));
		job_free(j);
		return;
	}
	j->runinfo = json_loadb(reply->element[1]->str, reply->element[1]->len, 0, NULL);
	const char *def = json_string_value(json_object_get(j->runinfo, "def"));
	if (def) {
		/* Not held yet (see claim): decoded once for the run's stages. */
		json_decref(j->def);
		j->def = json_loads(def, 0, NULL);
		defcache_put(w->defs, j->run, j->def);
		json_object_del(j->runinfo, "def");
	}
	log_info("stage started", LOG_S("run", j->run), LOG_S("stage", j->stage),
		 LOG_I("attempt", j->attempt));
	j->claimed_ms = clock_mono_ms();
	/* What the lease had left when claim.lua ran, after the claim went
	 * out (a claim sent again finds the lease its first one set). */
	j->lease_ends_ms = j->claim_sent_ms + reply->element[2]->integer;
	if (!j->def || !json_object_get(json_object_get(j->def, "stages"), j->stage)) {
		j->phase = JOB_CHECKOUT;
		finish(j, "failed", "the run has no definition for this stage");
		return;
	}
	begin(j);
}

/* The job of this worker holding the attempt already, if any: a job
 * delivered again (Kafka delivers at least once) while its first delivery is
 * still here. */
static struct job *holder(struct worker *w, const char *run, const char *stage, int attempt)
{
	for (struct job *j = w->jobs; j; j = j->next) {
		if (j->attempt == attempt && strcmp(j->run, run) == 0 &&
		    strcmp(j->stage, stage) == 0)
			return j;
	}
	return NULL;
}

void job_start(struct worker *w, const char *run, const char *stage, int attempt,
	       struct kafka_ticket *ticket)
{
	/* claim.lua answers this worker's own claim "claimed" again (its reply
	 * may have been lost), so a second delivery must stop here. */
	struct job *held = holder(w, run, stage, attempt);
	if (held) {
		log_info("job skipped", LOG_S("run", run), LOG_S("stage", stage),
			 LOG_I("attempt", attempt), LOG_S("reason", "held"));
		/* Delivered again after a rebalance gave the partition back while
		 * the claim is still retried: the first delivery's ticket stores
		 * nothing any more, so this one keeps the offset until the claim
		 * lands, or the job would be committed past unclaimed. */
		if (kafka_ticket_revoked(held->ticket)) {
			kafka_consumer_done(w->consumer, held->ticket);
			held->ticket = ticket;
			return;
		}
		kafka_consumer_done(w->consumer, ticket);
		return;
	}
	struct job *j = calloc(1, sizeof(*j));
	if (!j) {
		kafka_consumer_done(w->consumer, ticket);
		return;
	}
	/* Its retry's timer, set to what it retries each time (retry_in). */
	j->retry = evtimer_new(w->base, on_claim_retry, j);
	if (!j->retry) {
		free(j);
		kafka_consumer_done(w->consumer, ticket);
		return;
	}
	j->w = w;
	j->ticket = ticket;
	j->run_dir = -1;
	j->phase = JOB_CLAIMING;
	j->attempt = attempt;
	j->lease_ms = w->settings.lease_ms;
	snprintf(j->run, sizeof(j->run), "%s", run);
	snprintf(j->stage, sizeof(j->stage), "%s", stage);
	j->retry_ms = REDIS_RETRY_FIRST_MS;
	j->next = w->jobs;
	j->prevp = &w->jobs;
	if (w->jobs)
		w->jobs->prevp = &j->next;
	w->jobs = j;
	w->running++;
	claim(j);
}

/* The stages whose outputs the run's definition can use, found once per run. */
static json_t *output_sources(struct worker *w, const char *run, const json_t *def)
{
	json_t *sources = defcache_get(w->sources, run);
	if (!sources && (sources = stage_env_output_sources(def)))
		defcache_put(w->sources, run, sources);
	return sources;
}

/* With the run's definition at hand, the claim names the stages whose
 * outputs the run can use (stage_env_output_sources) instead of having
 * claim.lua send the definition (defcache.h) and read every stage's. */
static void claim(struct job *j)
{
	struct worker *w = j->w;
	char attempt_text[16], lease[16], now[32];
	snprintf(attempt_text, sizeof(attempt_text), "%d", j->attempt);
	snprintf(lease, sizeof(lease), "%d", j->lease_ms);
	snprintf(now, sizeof(now), "%lld", (long long)clock_now_ms());
	j->claim_sent_ms = clock_mono_ms();
	const char *fixed[] = {
	    w->settings.key_prefix, j->run, j->stage, attempt_text, w->token, lease, now};
	size_t n = sizeof(fixed) / sizeof(fixed[0]);

	if (!j->def)
		j->def = defcache_get(w->defs, j->run);
	json_t *sources = j->def ? output_sources(w, j->run, j->def) : NULL;
	const char **argv = malloc((n + 1 + json_object_size(sources)) * sizeof(*argv));
	if (!argv || (j->def && !sources)) {
		free(argv);
		json_decref(sources);
		on_claimed(w->redis, NULL, "out of memory", j);
		return;
	}
	memcpy(argv, fixed, sizeof(fixed));
	if (sources) {
		const char *name;
		json_t *v;
		argv[n++] = "have-def";
		json_object_foreach(sources, name, v)
		{
			argv[n++] = name;
		}
	}
	if (redis_script_run(w->redis, w->scripts.claim, on_claimed, j, 0, (int)n, argv, NULL) < 0)
		on_claimed(w->redis, NULL, "script not sent", j);
	free(argv);
	json_decref(sources);
}
