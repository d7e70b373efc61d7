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
#include "agent/github.h"
#include "agent/http.h"
#include "queue/jobs.h"
#include "agent/signature.h"
#include "lib/clock.h"
#include "lib/glob.h"
#include "lib/log.h"

#define DELIVERY_TTL_S (3 * 24 * 3600 + 3600)

struct intake_call {
	struct agent *agent;
	struct http_pending *pending;
	char delivery[256];
};

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
static void new_run_id(char *out, size_t len)
{
	unsigned char rnd[6] = {0};
	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
		log_warn("getrandom failed; run id has less entropy");
	unsigned long long ms = (unsigned long long)clock_now_ms();
	snprintf(out, len, "r_%012llx%02x%02x%02x%02x%02x%02x", ms & 0xffffffffffffULL, rnd[0],
		 rnd[1], rnd[2], rnd[3], rnd[4], rnd[5]);
}

static json_t *new_run(struct agent *a, const struct pipeline *p, const struct github_event *ev,
		       const char *delivery)
{
	char id[64];
	new_run_id(id, sizeof(id));
	const json_t *checkout = json_object_get(p->def, "checkout");
	const char *url = json_string_value(json_object_get(checkout, "url"));
	if (!url)
		url = ev->clone_url ? ev->clone_url : "";
	char *def = json_dumps(p->def, JSON_COMPACT);
	if (!def)
		return NULL;

	json_t *run = json_pack("{s:s,s:{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s},s:[],s:[]}", "id", id,
				"fields", "pipeline", p->name, "repository", ev->repository,
				"event", ev->event, "ref", ev->ref, "sha", ev->sha, "checkout_url",
				url, "delivery", delivery, "def", def, "stages", "jobs");
	free(def);
	if (!run)
		return NULL;

	const char *name;
	json_t *stage;
	json_object_foreach(json_object_get(p->def, "stages"), name, stage)
	{
		int root = json_array_size(json_object_get(stage, "needs")) == 0;
		json_array_append_new(
		    json_object_get(run, "stages"),
		    json_pack("{s:s,s:s}", "name", name, "status", root ? "queued" : "pending"));
		if (!root)
			continue;
		const char *kind = json_string_value(json_object_get(stage, "kind"));
		json_t *job = jobs_prepare(&a->settings, id, name, kind, 1);
		if (!job) {
			json_decref(run);
			return NULL;
		}
		json_array_append_new(json_object_get(run, "jobs"), job);
	}
	return run;
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
		free(call);
		return;
	}
	int duplicate = strcmp(reply->element[0]->str, "duplicate") == 0;
	json_t *ids = json_loads(reply->element[1]->str, 0, NULL);
	json_t *body = json_pack("{s:o}", "runs", ids ? ids : json_array());
	if (duplicate)
		json_object_set_new(body, "duplicate", json_true());
	else
		outbox_kick(call->agent->outbox);
	log_info(duplicate ? "delivery seen before" : "runs created",
		 LOG_S("delivery", call->delivery), LOG_S("runs", reply->element[1]->str));
	http_pending_reply(call->pending, 202, body);
	free(call);
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

	json_error_t jerr;
	json_t *payload = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!payload || !json_is_object(payload)) {
		free(verified);
		snprintf(err, sizeof(err), "malformed JSON payload: %s",
			 payload ? "not an object" : jerr.text);
		json_decref(payload);
		http_reply_error(req, 400, "bad_request", err);
		return;
	}

	if (strcmp(event, "ping") == 0) {
		free(verified);
		json_decref(payload);
		http_reply_json(req, 200, json_pack("{s:b,s:s}", "ok", 1, "event", "ping"));
		return;
	}

	struct github_event ev;
	if (github_event_parse(event, payload, &ev, err, sizeof(err)) < 0) {
		free(verified);
		json_decref(payload);
		http_reply_error(req, 400, "bad_request", err);
		return;
	}

	json_t *runs = json_array();
	const char *reason = ev.no_build;
	char delivery_key[256];
	snprintf(delivery_key, sizeof(delivery_key), "%s:%s", hook_id ? hook_id : "0", delivery);
	for (size_t i = 0; !reason && i < n; i++) {
		if (!verified[i] || !pipeline_wants(&a->pipelines.items[i], &ev))
			continue;
		json_t *run = new_run(a, &a->pipelines.items[i], &ev, delivery_key);
		if (!run) {
			free(verified);
			json_decref(payload);
			json_decref(runs);
			http_reply_error(req, 500, "internal", "out of memory");
			return;
		}
		json_array_append_new(runs, run);
	}
	free(verified);
	json_decref(payload);
	if (!reason && json_array_size(runs) == 0)
		reason = "no pipeline matches the repository, event and ref";
	if (reason) {
		json_decref(runs);
		log_info("webhook starts no run", LOG_S("delivery", delivery),
			 LOG_S("event", event), LOG_S("reason", reason));
		http_reply_json(req, 202, json_pack("{s:[],s:s}", "runs", "reason", reason));
		return;
	}

	char *runs_text = json_dumps(runs, JSON_COMPACT);
	json_decref(runs);
	struct intake_call *call = calloc(1, sizeof(*call));
	if (!runs_text || !call) {
		free(runs_text);
		free(call);
		http_reply_error(req, 500, "internal", "out of memory");
		return;
	}
	call->agent = a;
	snprintf(call->delivery, sizeof(call->delivery), "%s", delivery_key);
	call->pending = http_pending_new(req);

	char ttl[32], now[32];
	snprintf(ttl, sizeof(ttl), "%d", DELIVERY_TTL_S);
	snprintf(now, sizeof(now), "%lld", (long long)clock_now_ms());
	const char *argv[] = {a->settings.key_prefix, delivery_key, ttl, now, runs_text};
	int rc = redis_script_run(a->redis, a->scripts.intake, on_recorded, call, 0, 5, argv, NULL);
	free(runs_text);
	if (rc < 0) {
		http_pending_error(call->pending, 503, "unavailable",
				   "the run could not be recorded; deliver again later");
		free(call);
	}
}
