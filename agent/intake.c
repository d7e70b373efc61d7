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

#include "agent/agent.h"
#include "agent/agent_metrics.h"
#include "agent/connection.h"
#include "agent/github.h"
#include "agent/http.h"
#include "agent/record.h"
#include "agent/signature.h"
#include "config/when.h"
#include "lib/clock.h"
#include "lib/glob.h"
#include "lib/log.h"
#include "lib/random.h"

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
		return p->tags && glob_list_match(p->tags, ev->tag);
	if (p->branches)
		return glob_list_match(p->branches, ev->branch);
	/* Tags alone leave branch pushes out, as GitHub Actions' push filters
	 * do; a pull request, which has no tag, is matched by its event. */
	return !p->tags || strcmp(ev->event, "push") != 0;
}

static const char *checkout_url(const struct pipeline *p)
{
	return json_string_value(json_object_get(json_object_get(p->def, "checkout"), "url"));
}

/* Time-ordered and unguessable: 48 bits of milliseconds, 48 random bits. */
void intake_new_run_id(char *out, size_t len, long long now_ms)
{
	unsigned char rnd[6] = {0};
	if (random_bytes(rnd, sizeof(rnd)) < 0)
		log_warn("getrandom failed; run id has less entropy");
	unsigned long long ms = (unsigned long long)now_ms;
	snprintf(out, len, "r_%012llx%02x%02x%02x%02x%02x%02x", ms & 0xffffffffffffULL, rnd[0],
		 rnd[1], rnd[2], rnd[3], rnd[4], rnd[5]);
}

static void on_recorded(const char *status, const char *runs, const char *err, void *arg)
{
	struct intake_call *call = arg;
	if (!status) {
		log_error("run not recorded", LOG_S("delivery", call->delivery),
			  LOG_S("error", err));
		http_pending_error(call->pending, 503, "unavailable",
				   "the run could not be recorded; deliver again later");
		call_free(call);
		return;
	}
	int duplicate = strcmp(status, "duplicate") == 0;
	if (!duplicate)
		outbox_kick(call->agent->outbox);
	size_t i;
	json_t *name;
	json_array_foreach(duplicate ? NULL : call->pipelines, i, name)
	{
		agent_metrics_run_created(call->agent, json_string_value(name));
	}
	log_info(duplicate ? "delivery seen before" : "runs created",
		 LOG_S("delivery", call->delivery), LOG_S("runs", runs));
	/* runs is JSON already, the array intake.lua wrote. */
	size_t room = strlen(runs) + 64;
	char *body = malloc(room);
	if (body) {
		int len = snprintf(body, room, "{\"runs\":%s%s}", runs,
				   duplicate ? ",\"duplicate\":true" : "");
		http_pending_reply_text(call->pending, 202, body, (size_t)len);
	} else {
		http_pending_error(call->pending, 500, "internal", "out of memory");
	}
	free(body);
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

	/* Never JSON, signed or not (connection.h): said as it is, rather than
	 * as a signature that fails over the byte put in the NUL's place. */
	if (memchr(body, CONNECTION_NUL, len)) {
		http_reply_error(req, 400, "bad_request",
				 "the body holds a NUL or another control byte, which JSON does "
				 "not allow unescaped");
		return;
	}

	/* Only pipelines whose secret verified are candidates. */
	size_t n = a->pipelines.n;
	char *verified = calloc(n ? n : 1, 1);
	if (!verified) {
		http_reply_error(req, 500, "internal", "out of memory");
		return;
	}
	if (!signature_keys_verify(a->signature_keys, body, len, signature, verified)) {
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

	/* Which pipelines start a run. */
	const char *reason = ev.no_build;
	const struct pipeline *unclonable = NULL; /* one that would clone a refused URL */
	size_t nruns = 0, skipped = 0, forks_skipped = 0;
	/* plans[i]: the status each stage of pipeline i starts in (when.h). */
	json_t *plans = json_array();
	for (size_t i = 0; !reason && plans && i < n; i++) {
		const struct pipeline *p = &a->pipelines.items[i];
		verified[i] = verified[i] && pipeline_wants(p, &ev);
		if (verified[i] && ev.from_fork && p->forks == PIPELINE_FORKS_SKIP) {
			verified[i] = 0;
			forks_skipped++;
		}
		struct pipeline_def rd = pipeline_run_def(p, ev.pull_request, ev.from_fork);
		size_t queued = 0;
		json_t *plan = verified[i] ? when_plan(rd.def, ev.event, ev.branch, ev.tag, &queued)
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
		if (!checkout_url(p) && !github_clone_url_ok(ev.clone_url))
			unclonable = p;
		nruns++;
	}
	if (!plans) {
		free(verified);
		github_event_clear(&ev);
		http_reply_error(req, 500, "internal", "out of memory");
		return;
	}
	if (!reason && unclonable) {
		json_decref(plans);
		free(verified);
		log_warn("webhook refused: its clone_url is not one the workers may clone",
			 LOG_S("delivery", delivery), LOG_S("pipeline", unclonable->name));
		snprintf(err, sizeof(err),
			 "repository.clone_url is not an https:// or ssh:// URL of at most %d "
			 "bytes, and pipeline %s has no checkout.url to clone instead",
			 GITHUB_CLONE_URL_MAX, unclonable->name);
		github_event_clear(&ev);
		http_reply_error(req, 400, "bad_request", err);
		return;
	}
	if (!reason && nruns == 0)
		reason =
		    skipped ? "every stage of the matching pipelines is skipped by its when"
		    : forks_skipped
			? "the matching pipelines run no pull request from a fork (forks: skip)"
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

	char delivery_key[256];
	snprintf(delivery_key, sizeof(delivery_key), "%s:%s", hook_id ? hook_id : "0", delivery);
	struct intake_call *call = calloc(1, sizeof(*call));
	if (call)
		call->pipelines = json_array();
	long long now = clock_now_ms();
	int failed = !call || !call->pipelines ||
		     record_begin(a->recorder, delivery_key, DELIVERY_TTL_S, now, ev.repository,
				  ev.event, ev.ref, ev.sha) < 0;
	int begun = !failed;
	for (size_t i = 0; !failed && i < n; i++) {
		if (!verified[i])
			continue;
		const struct pipeline *p = &a->pipelines.items[i];
		struct pipeline_def rd = pipeline_run_def(p, ev.pull_request, ev.from_fork);
		const char *url = checkout_url(p);
		char run[40];
		intake_new_run_id(run, sizeof(run), now);
		failed = record_run(a->recorder, run, p->name,
				    url		   ? url
				    : ev.clone_url ? ev.clone_url
						   : "",
				    rd.text, rd.def, json_array_get(plans, i)) < 0 ||
			 json_array_append_new(call->pipelines, json_string(p->name)) < 0;
	}
	json_decref(plans);
	free(verified);
	github_event_clear(&ev);
	if (!failed) {
		call->pending = http_pending_new(a, req);
		failed = !call->pending;
	}
	if (failed) {
		if (begun)
			record_cancel(a->recorder);
		call_free(call);
		http_reply_error(req, 500, "internal", "the delivery's runs could not be prepared");
		return;
	}
	call->agent = a;
	snprintf(call->delivery, sizeof(call->delivery), "%s", delivery_key);
	record_commit(a->recorder, on_recorded, call);
}
