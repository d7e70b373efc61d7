/* intake: POST /hooks/github, exactly as DESIGN §4 says.
 *
 * Order matters: the signature is checked over the raw body before anything
 * is parsed, and 2xx is answered only once Redis has recorded the run(s) and
 * their first jobs, because GitHub does not redeliver by itself.
 */
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include "agent/agent.h"
#include "agent/agent_metrics.h"
#include "agent/github.h"
#include "agent/http.h"
#include "queue/jobs.h"
#include "agent/signature.h"
#include "config/when.h"
#include "lib/clock.h"
#include "lib/glob.h"
#include "lib/log.h"

#define DELIVERY_TTL_S (3 * 24 * 3600 + 3600)

struct intake_call {
	struct agent *agent;
	struct http_pending *pending;
	char delivery[256];
	json_t *pipelines; /* of the runs, in order: counted once recorded */
};

static void call_free(struct intake_call *call)
{
	if (call)
		json_decref(call->pipelines);
	free(call);
}

static int globs_match(const json_t *globs, const char *text)
{
	size_t i;
	json_t *g;
	json_array_foreach(globs, i, g)
	{
		if (glob_match(json_string_value(g), text))
			return 1;
	}
	return 0;
}

static int pipeline_wants(const struct pipeline *p, const struct github_event *ev)
{
	size_t i;
	json_t *e;
	int listens = 0;
	if (strcasecmp(p->repository, ev->repository) != 0)
		return 0;
	json_array_foreach(p->events, i, e)
	{
		if (strcmp(json_string_value(e), ev->event) == 0)
			listens = 1;
	}
	if (!listens)
		return 0;
	if (ev->tag)
		return p->tags && globs_match(p->tags, ev->tag);
	return !p->branches || globs_match(p->branches, ev->branch);
}

/* Time-ordered and unguessable: 48 bits of milliseconds, 48 random bits. */
void intake_new_run_id(char *out, size_t len)
{
	unsigned char rnd[6] = {0};
	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
		log_warn("getrandom failed; run id has less entropy");
	unsigned long long ms = (unsigned long long)clock_now_ms();
	snprintf(out, len, "r_%012llx%02x%02x%02x%02x%02x%02x", ms & 0xffffffffffffULL, rnd[0],
		 rnd[1], rnd[2], rnd[3], rnd[4], rnd[5]);
}

/* The ARGV of queue/scripts/intake.lua: the delivery's fields, then for each
 * run its id, pipeline, checkout URL, definition and stages. */
struct run_text {
	char id[40];
	char nstages[24];
};

struct script_args {
	const char **v;
	size_t *len;
	int n;
	json_t *jobs; /* holds the job texts (and plans) that v points to */
	struct run_text *runs;
};

static void push_arg(struct script_args *sa, const char *text)
{
	sa->v[sa->n] = text;
	sa->len[sa->n++] = strlen(text);
}

static int add_run(struct agent *a, struct script_args *sa, struct run_text *rt,
		   const struct pipeline *p, const struct github_event *ev, const json_t *plan)
{
	const json_t *checkout = json_object_get(p->def, "checkout");
	const char *url = json_string_value(json_object_get(checkout, "url"));
	if (!url)
		url = ev->clone_url ? ev->clone_url : "";
	json_t *stages = json_object_get(p->def, "stages");
	intake_new_run_id(rt->id, sizeof(rt->id));
	snprintf(rt->nstages, sizeof(rt->nstages), "%zu", json_object_size(stages));
	push_arg(sa, rt->id);
	push_arg(sa, p->name);
	push_arg(sa, url);
	push_arg(sa, p->def_text);
	push_arg(sa, rt->nstages);

	const char *name;
	json_t *stage;
	json_object_foreach(stages, name, stage)
	{
		const json_t *entry = json_object_get(plan, name);
		const char *status = json_string_value(json_object_get(entry, "status"));
		push_arg(sa, name);
		if (strcmp(status, "queued") != 0) {
			const char *reason = json_string_value(json_object_get(entry, "reason"));
			push_arg(sa, status);
			push_arg(sa, reason ? reason : "");
			push_arg(sa, "");
			continue;
		}
		const char *kind = json_string_value(json_object_get(stage, "kind"));
		json_t *job = jobs_prepare(&a->settings, rt->id, name, kind, 1);
		if (!job || json_array_append_new(sa->jobs, job) < 0)
			return -1;
		push_arg(sa, "queued");
		push_arg(sa, json_string_value(json_object_get(job, "topic")));
		push_arg(sa, json_string_value(json_object_get(job, "value")));
	}
	return 0;
}

static void script_args_clear(struct script_args *sa)
{
	free(sa->v);
	free(sa->len);
	free(sa->runs);
	json_decref(sa->jobs);
	memset(sa, 0, sizeof(*sa));
}

static void on_recorded(struct redis *r, redisReply *reply, const char *err, void *arg)
{
	struct intake_call *call = arg;
	(void)r;
	if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2) {
		log_error("run not recorded", LOG_S("delivery", call->delivery),
			  LOG_S("error", err ? err : "unexpected reply"));
		http_pending_error(call->pending, 503, "unavailable",
				   "the run could not be recorded; deliver again later");
		call_free(call);
		return;
	}
	int duplicate = strcmp(reply->element[0]->str, "duplicate") == 0;
	json_t *ids = json_loads(reply->element[1]->str, 0, NULL);
	json_t *body = json_pack("{s:o}", "runs", ids ? ids : json_array());
	if (duplicate)
		json_object_set_new(body, "duplicate", json_true());
	else
		outbox_kick(call->agent->outbox);
	size_t i;
	json_t *name;
	json_array_foreach(duplicate ? NULL : call->pipelines, i, name)
	{
		agent_metrics_run_created(call->agent, json_string_value(name));
	}
	log_info(duplicate ? "delivery seen before" : "runs created",
		 LOG_S("delivery", call->delivery), LOG_S("runs", reply->element[1]->str));
	http_pending_reply(call->pending, 202, body);
	call_free(call);
}

static int content_type_is_json(const char *ct)
{
	if (!ct)
		return 0;
	size_t n = strcspn(ct, "; \t");
	return n == strlen("application/json") && strncasecmp(ct, "application/json", n) == 0;
}

/* A header given twice (GitHub never does) makes the request ambiguous. */
static const char *single_header(struct evkeyvalq *h, const char *name, int *dup)
{
	const char *found = NULL;
	for (struct evkeyval *kv = h->tqh_first; kv; kv = kv->next.tqe_next) {
		if (strcasecmp(kv->key, name) != 0)
			continue;
		if (found)
			*dup = 1;
		found = kv->value;
	}
	return found;
}

void intake_handle(struct evhttp_request *req, struct agent *a)
{
	struct evkeyvalq *h = evhttp_request_get_input_headers(req);
	char err[256];
	int dup = 0;

	if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
		evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "POST");
		http_reply_error(req, 405, "method_not_allowed", "webhooks are POSTed");
		return;
	}
	const char *event = single_header(h, "X-GitHub-Event", &dup);
	const char *delivery = single_header(h, "X-GitHub-Delivery", &dup);
	const char *hook_id = single_header(h, "X-GitHub-Hook-ID", &dup);
	const char *signature = single_header(h, "X-Hub-Signature-256", &dup);
	const char *ctype = single_header(h, "Content-Type", &dup);
	if (dup) {
		http_reply_error(req, 400, "bad_request", "a GitHub header is given twice");
		return;
	}
	if (!content_type_is_json(ctype)) {
		http_reply_error(req, 415, "unsupported_media_type",
				 "the webhook's content type must be application/json");
		return;
	}
	if (!event || !delivery || !*event || !*delivery || strlen(delivery) > 128 ||
	    strlen(event) > 64 || (hook_id && strlen(hook_id) > 64)) {
		http_reply_error(req, 400, "bad_request",
				 "X-GitHub-Event and X-GitHub-Delivery are required");
		return;
	}

	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(in);
	const char *body = (const char *)evbuffer_pullup(in, -1);
	if (!body)
		body = "";

	/* Each distinct secret is tried once; only pipelines whose secret
	 * verified are candidates. */
	size_t n = a->pipelines.n;
	char *verified = calloc(n ? n : 1, 1);
	int any = 0;
	for (size_t i = 0; verified && i < n; i++) {
		size_t j;
		for (j = 0; j < i; j++) {
			if (strcmp(a->pipelines.items[j].secret, a->pipelines.items[i].secret) == 0)
				break;
		}
		verified[i] = j < i ? verified[j]
				    : (char)signature_verify(a->pipelines.items[i].secret, body,
							     len, signature);
		any |= verified[i];
	}
	if (!any) {
		free(verified);
		log_warn("webhook signature not verified", LOG_S("delivery", delivery),
			 LOG_S("event", event));
		http_reply_error(req, 401, "bad_signature",
				 "X-Hub-Signature-256 does not verify under any configured secret");
		return;
	}

	struct github_event ev;
	if (github_event_parse(event, body, len, &ev, err, sizeof(err)) < 0) {
		free(verified);
		github_event_clear(&ev);
		http_reply_error(req, 400, "bad_request", err);
		return;
	}
	if (strcmp(event, "ping") == 0) {
		free(verified);
		github_event_clear(&ev);
		http_reply_json(req, 200, json_pack("{s:b,s:s}", "ok", 1, "event", "ping"));
		return;
	}

	/* Which pipelines start a run, and how many arguments their runs take. */
	const char *reason = ev.no_build;
	size_t nruns = 0, skipped = 0;
	int argc = 8;
	/* plans[i]: the status each stage of pipeline i starts in (when.h). */
	json_t *plans = json_array();
	for (size_t i = 0; !reason && plans && i < n; i++) {
		verified[i] = verified[i] && pipeline_wants(&a->pipelines.items[i], &ev);
		size_t queued = 0;
		json_t *plan = verified[i] ? when_plan(a->pipelines.items[i].def, ev.event,
						       ev.branch, ev.tag, &queued)
					   : json_null();
		if (!plan || json_array_append_new(plans, plan) < 0) {
			json_decref(plans);
			plans = NULL;
			break;
		}
		/* A run whose every stage is left out by `when` builds nothing. */
		if (verified[i] && !queued) {
			verified[i] = 0;
			skipped++;
		}
		if (!verified[i])
			continue;
		nruns++;
		argc += 5 + 4 * (int)json_object_size(
				    json_object_get(a->pipelines.items[i].def, "stages"));
	}
	if (!plans) {
		free(verified);
		github_event_clear(&ev);
		http_reply_error(req, 500, "internal", "out of memory");
		return;
	}
	if (!reason && nruns == 0)
		reason = skipped ? "every stage of the matching pipelines is skipped by its when"
				 : "no pipeline matches the repository, event and ref";
	if (reason) {
		json_decref(plans);
		free(verified);
		github_event_clear(&ev);
		log_info("webhook starts no run", LOG_S("delivery", delivery),
			 LOG_S("event", event), LOG_S("reason", reason));
		http_reply_json(req, 202, json_pack("{s:[],s:s}", "runs", "reason", reason));
		return;
	}

	char delivery_key[256], ttl[32], now[32];
	snprintf(delivery_key, sizeof(delivery_key), "%s:%s", hook_id ? hook_id : "0", delivery);
	snprintf(ttl, sizeof(ttl), "%d", DELIVERY_TTL_S);
	snprintf(now, sizeof(now), "%lld", (long long)clock_now_ms());
	struct script_args sa = {.v = malloc(sizeof(*sa.v) * (size_t)argc),
				 .len = malloc(sizeof(*sa.len) * (size_t)argc),
				 .jobs = json_array(),
				 .runs = calloc(nruns, sizeof(*sa.runs))};
	struct intake_call *call = calloc(1, sizeof(*call));
	if (call)
		call->pipelines = json_array();
	int failed = !sa.v || !sa.len || !sa.jobs || !sa.runs || !call || !call->pipelines;
	if (!failed) {
		push_arg(&sa, a->settings.key_prefix);
		push_arg(&sa, delivery_key);
		push_arg(&sa, ttl);
		push_arg(&sa, now);
		push_arg(&sa, ev.repository);
		push_arg(&sa, ev.event);
		push_arg(&sa, ev.ref);
		push_arg(&sa, ev.sha);
	}
	for (size_t i = 0, r = 0; !failed && i < n; i++) {
		if (verified[i])
			failed = add_run(a, &sa, &sa.runs[r++], &a->pipelines.items[i], &ev,
					 json_array_get(plans, i)) < 0 ||
				 json_array_append_new(call->pipelines,
						       json_string(a->pipelines.items[i].name)) < 0;
	}
	/* sa.v points into the plans as into the jobs: sa.jobs keeps both. */
	if (json_array_append_new(sa.jobs, plans) < 0)
		failed = 1;
	free(verified);
	if (!failed) {
		call->pending = http_pending_new(req);
		failed = !call->pending;
	}
	if (failed) {
		github_event_clear(&ev);
		script_args_clear(&sa);
		call_free(call);
		http_reply_error(req, 500, "internal", "out of memory");
		return;
	}
	call->agent = a;
	snprintf(call->delivery, sizeof(call->delivery), "%s", delivery_key);
	/* The command is formatted here: the arguments need not outlive it. */
	int rc =
	    redis_script_run(a->redis, a->scripts.intake, on_recorded, call, 0, sa.n, sa.v, sa.len);
	github_event_clear(&ev);
	script_args_clear(&sa);
	if (rc < 0) {
		http_pending_error(call->pending, 503, "unavailable",
				   "the run could not be recorded; deliver again later");
		call_free(call);
	}
}
