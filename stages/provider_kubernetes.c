/* provider_kubernetes: a Deployment and a Service through the Kubernetes
 * API, with libcurl's multi interface on the loop (lib/curlev.h).
 *
 * def: {"type": "kubernetes", "server": "https://host:6443", "token_file",
 * "ca_file", "namespace" (default "default"), "deployment" (may hold
 * ${SLUICE_COLOR}), "container", "service", "color_label" (default
 * "color"), "poll_ms" (default 2 s), "timeout_ms" (verify's limit, default
 * 10 minutes)}. Without "server" the in-cluster configuration is used: the
 * KUBERNETES_SERVICE_HOST/PORT environment and the service account's token,
 * CA and namespace files, read when the provider is created where the
 * deployment runs, not when its definition is checked. A pipeline file's
 * token_file and ca_file reach here resolved (rollout_load); one under
 * "${CREDENTIALS_DIRECTORY}/" is the worker's own credential. apply
 * patches the container's image (strategic merge), and for a
 * RollingUpdate in the same request the Deployment's strategy with its
 * maxSurge and maxUnavailable; verify polls the
 * Deployment until kubectl's rollout-status rules say it is rolled out,
 * and fails on ProgressDeadlineExceeded; switch (and promote or abort with
 * a colour) patches the Service's selector to the colour; promote without
 * one (a canary's) patches the image into the stable Deployment, the
 * deployment named with SLUICE_COLOR "stable", as apply; scale_down sets
 * the colour's Deployment to 0 replicas, noting in an annotation how many
 * it had, and the next apply to it gives them back, so that a colour
 * scaled down serves again once it is deployed.
 */
#include "stages/provider.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/file.h"
#include "lib/clock.h"
#include "lib/curlev.h"
#include "lib/curlreq.h"
#include "stages/expand.h"

#define DEFAULT_POLL_MS	   2000
#define DEFAULT_TIMEOUT_MS (10 * 60 * 1000)
#define REQUEST_TIMEOUT_MS 30000
#define MAX_RESPONSE	   (4 * 1024 * 1024)
#define MSG_MAX		   1024
#define SA_DIR		   "/var/run/secrets/kubernetes.io/serviceaccount"
#define PATCH_TYPE	   "Content-Type: application/strategic-merge-patch+json"
#define REPLICAS_NOTE	   "sluice.dev/replicas"

struct kube {
	struct event_base *base;
	struct curlev *multi;
	char *server;
	char *token_file;
	char *ca_file;
	char *namespace;
	char *deployment;
	char *container;
	char *service;
	char *color_label;
	int poll_ms;
	int timeout_ms;
	/* the action in flight */
	CURL *easy;
	int added;
	struct curl_slist *headers;
	char *url;
	char *body;
	json_t *patch; /* apply's or scale_down's, until the Deployment is read */
	struct curlreq_answer resp;
	enum provider_verb verb;
	char *target; /* the Deployment's name, expanded */
	long long deadline_ms;
	struct event *poll_ev;
	struct event *done_ev;
	int ok;
	char msg[MSG_MAX];
	provider_done_cb done;
	void *arg;
};

/* --- configuration ------------------------------------------------------ */

static int opt_string(const json_t *def, const char *key, char **out, char *err, size_t errlen)
{
	const json_t *v = json_object_get(def, key);

	if (!v)
		return 0;
	if (!json_is_string(v) || json_string_length(v) == 0) {
		snprintf(err, errlen, "provider.%s: not a string", key);
		return -1;
	}
	*out = strdup(json_string_value(v));
	if (!*out) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

/* A name that goes into a URL path as it is: a DNS label or subdomain. */
static int check_name(const char *key, const char *name, int templated, char *err, size_t errlen)
{
	for (const char *c = name; *c; c++) {
		int ok =
		    (*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '-' || *c == '.';
		if (templated && strchr("${}_ABCDEFGHIJKLMNOPQRSTUVWXYZ", *c))
			ok = 1;
		if (!ok) {
			snprintf(err, errlen, "provider.%s: \"%s\" is not a Kubernetes name", key,
				 name);
			return -1;
		}
	}
	return 0;
}

static int is_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* The len bytes at s are a DNS subdomain (RFC 1123) as Kubernetes takes
 * one: at most 253, labels of lowercase letters, digits and '-' joined
 * by dots, each beginning and ending with a letter or digit. */
static int dns_subdomain_ok(const char *s, size_t len)
{
	size_t i, start = 0;

	if (len == 0 || len > 253)
		return 0;
	for (i = 0; i <= len; i++) {
		if (i < len && s[i] != '.') {
			if (!(s[i] >= 'a' && s[i] <= 'z') && !(s[i] >= '0' && s[i] <= '9') &&
			    s[i] != '-')
				return 0;
			continue;
		}
		if (i == start || s[start] == '-' || s[i - 1] == '-')
			return 0;
		start = i + 1;
	}
	return 1;
}

/* A label key as the API server takes it: an optional DNS subdomain and
 * '/', then a name of 1 to 63 letters, digits, '-', '_' and '.' that
 * begins and ends with a letter or digit. */
static int label_key_ok(const char *key)
{
	const char *slash = strchr(key, '/');
	const char *name = slash ? slash + 1 : key;
	size_t len = strlen(name);

	if (slash && !dns_subdomain_ok(key, (size_t)(slash - key)))
		return 0;
	if (len == 0 || len > 63 || !is_alnum(name[0]) || !is_alnum(name[len - 1]))
		return 0;
	for (const char *c = name; *c; c++)
		if (!is_alnum(*c) && !strchr("-_.", *c))
			return 0;
	return 1;
}

/* In-cluster: the API server from the environment kubelet sets, the
 * service account's files mounted into every pod. */
static int in_cluster(struct kube *k, char *err, size_t errlen)
{
	const char *host = getenv("KUBERNETES_SERVICE_HOST");
	const char *port = getenv("KUBERNETES_SERVICE_PORT");
	char url[300];

	if (!host || !port || !*host || !*port) {
		snprintf(err, errlen,
			 "provider.server: required outside a cluster "
			 "(KUBERNETES_SERVICE_HOST is not set)");
		return -1;
	}
	snprintf(url, sizeof(url), strchr(host, ':') ? "https://[%s]:%s" : "https://%s:%s", host,
		 port);
	k->server = strdup(url);
	if (!k->token_file)
		k->token_file = strdup(SA_DIR "/token");
	if (!k->ca_file)
		k->ca_file = strdup(SA_DIR "/ca.crt");
	if (!k->namespace) {
		FILE *f = fopen(SA_DIR "/namespace", "r");
		char ns[256] = "";
		if (f) {
			if (fgets(ns, sizeof(ns), f))
				ns[strcspn(ns, "\r\n")] = '\0';
			fclose(f);
		}
		if (ns[0] && check_name("namespace", ns, 0, err, errlen) < 0)
			return -1;
		if (ns[0])
			k->namespace = strdup(ns);
	}
	if (!k->server || !k->token_file || !k->ca_file) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

static void kube_destroy(void *state);
static void on_done(evutil_socket_t fd, short what, void *arg);
static void on_poll(evutil_socket_t fd, short what, void *arg);

static const char *const kube_keys[] = {"type",	       "server",     "token_file", "ca_file",
					"namespace",   "deployment", "container",  "service",
					"color_label", "poll",	     "timeout",	   NULL};

/* def into k, checked: everything but the in-cluster settings, which
 * only the machine running the deployment has. -1 with err, k filled as
 * far as it got, for kube_destroy. */
static int kube_read(struct kube *k, const json_t *def, char *err, size_t errlen)
{
	if (opt_string(def, "server", &k->server, err, errlen) < 0 ||
	    opt_string(def, "token_file", &k->token_file, err, errlen) < 0 ||
	    opt_string(def, "ca_file", &k->ca_file, err, errlen) < 0 ||
	    opt_string(def, "namespace", &k->namespace, err, errlen) < 0 ||
	    opt_string(def, "deployment", &k->deployment, err, errlen) < 0 ||
	    opt_string(def, "container", &k->container, err, errlen) < 0 ||
	    opt_string(def, "service", &k->service, err, errlen) < 0 ||
	    opt_string(def, "color_label", &k->color_label, err, errlen) < 0 ||
	    provider_def_ms(def, "poll_ms", DEFAULT_POLL_MS, 86400000, &k->poll_ms, err, errlen) <
		0 ||
	    provider_def_ms(def, "timeout_ms", DEFAULT_TIMEOUT_MS, 86400000, &k->timeout_ms, err,
			    errlen) < 0)
		return -1;
	if (k->server && strncmp(k->server, "https://", 8) != 0 &&
	    strncmp(k->server, "http://", 7) != 0) {
		snprintf(err, errlen, "provider.server: an http(s):// URL");
		return -1;
	}
	if (!k->deployment && !k->service) {
		snprintf(err, errlen, "provider: needs a deployment, a service or both");
		return -1;
	}
	if (k->deployment && !k->container) {
		snprintf(err, errlen, "provider.container: required with a deployment");
		return -1;
	}
	if ((k->namespace && check_name("namespace", k->namespace, 0, err, errlen) < 0) ||
	    (k->deployment && check_name("deployment", k->deployment, 1, err, errlen) < 0) ||
	    (k->service && check_name("service", k->service, 0, err, errlen) < 0))
		return -1;
	if (k->color_label && !label_key_ok(k->color_label)) {
		snprintf(err, errlen, "provider.color_label: \"%s\" is not a Kubernetes label key",
			 k->color_label);
		return -1;
	}
	return 0;
}

/* A pipeline is valid or not wherever it is loaded: the agent or sluicectl
 * validate need not run in the cluster a worker deploys to. */
static int kube_check(const json_t *def, char *err, size_t errlen)
{
	struct kube *k = calloc(1, sizeof(*k));
	int rc;

	if (!k) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	rc = kube_read(k, def, err, errlen);
	kube_destroy(k);
	return rc;
}

static void *kube_create(struct event_base *base, const json_t *def, char *err, size_t errlen)
{
	struct kube *k = calloc(1, sizeof(*k));

	if (!k) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	k->base = base;
	if (kube_read(k, def, err, errlen) < 0)
		goto fail;
	if (!k->server && in_cluster(k, err, errlen) < 0)
		goto fail;
	if ((!k->namespace && !(k->namespace = strdup("default"))) ||
	    (!k->color_label && !(k->color_label = strdup("color")))) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	k->multi = curlev_new(base);
	k->easy = curl_easy_init();
	k->poll_ev = evtimer_new(base, on_poll, k);
	k->done_ev = event_new(base, -1, 0, on_done, k);
	if (!k->multi || !k->easy) {
		snprintf(err, errlen, CURLEV_NO_CLIENT);
		goto fail;
	}
	if (!k->poll_ev || !k->done_ev) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	return k;
fail:
	kube_destroy(k);
	return NULL;
}

static int kube_supports(void *state, enum provider_verb verb)
{
	struct kube *k = state;

	switch (verb) {
	case PROVIDER_APPLY:
	case PROVIDER_VERIFY:
	case PROVIDER_SCALE_DOWN:
		return k->deployment != NULL;
	case PROVIDER_PROMOTE:
		return k->service != NULL || k->deployment != NULL;
	case PROVIDER_SWITCH:
	case PROVIDER_ABORT:
		return k->service != NULL;
	default:
		return 0;
	}
}

/* --- requests ----------------------------------------------------------- */

static void clear_request(struct kube *k)
{
	if (k->added) {
		curlev_remove(k->multi, k->easy);
		k->added = 0;
	}
	curl_slist_free_all(k->headers);
	k->headers = NULL;
	free(k->url);
	k->url = NULL;
	curlreq_answer_clear(&k->resp);
}

static void clear_action(struct kube *k)
{
	clear_request(k);
	free(k->body);
	k->body = NULL;
	json_decref(k->patch);
	k->patch = NULL;
	free(k->target);
	k->target = NULL;
	if (k->poll_ev)
		evtimer_del(k->poll_ev);
	if (k->done_ev)
		event_del(k->done_ev);
}

static void finish(struct kube *k, int ok, const char *msg)
{
	k->ok = ok;
	snprintf(k->msg, sizeof(k->msg), "%.*s", (int)sizeof(k->msg) - 1, msg);
	clear_request(k);
	evtimer_del(k->poll_ev);
	event_active(k->done_ev, EV_TIMEOUT, 0);
}

static void on_done(evutil_socket_t fd, short what, void *arg)
{
	struct kube *k = arg;
	provider_done_cb done = k->done;
	void *done_arg = k->arg;
	char msg[MSG_MAX];
	int ok = k->ok;
	(void)fd;
	(void)what;

	snprintf(msg, sizeof(msg), "%s", k->msg);
	clear_action(k);
	done(ok, msg, done_arg);
}

/* A file of key as this worker opens it: a credential in its own
 * $CREDENTIALS_DIRECTORY (the agent that loaded the pipeline may have
 * none), any other path as rollout_load resolved it. */
static char *local_path(const char *key, const char *configured, char *why, size_t whylen)
{
	char *path = config_file_expand(configured);

	if (!path)
		snprintf(why, whylen, "%s %s: %s", key, configured,
			 config_file_expand_error(errno));
	return path;
}

/* The service account token is read for every request: kubelet rotates it
 * in place. */
static int read_token(const char *configured, char *out, size_t outlen, char *why, size_t whylen)
{
	char *path = local_path("token_file", configured, why, whylen);
	FILE *f;
	size_t n;

	if (!path)
		return -1;
	f = fopen(path, "r");
	free(path);
	if (!f) {
		snprintf(why, whylen, "token_file %s: %s", configured, strerror(errno));
		return -1;
	}
	n = fread(out, 1, outlen - 1, f);
	fclose(f);
	out[n] = '\0';
	out[strcspn(out, "\r\n")] = '\0';
	if (!out[0]) {
		snprintf(why, whylen, "token_file %s: empty", configured);
		return -1;
	}
	return 0;
}

static void on_response(CURL *easy, CURLcode rc, void *arg);

static void request(struct kube *k, const char *method, const char *path)
{
	char line[8192], why[512];
	size_t n;

	clear_request(k);
	n = strlen(k->server) + strlen(path) + 1;
	k->url = malloc(n);
	if (!k->url) {
		finish(k, 0, "out of memory");
		return;
	}
	snprintf(k->url, n, "%s%s", k->server, path);
	/* the server may end in "/" */
	if (k->server[0] && k->server[strlen(k->server) - 1] == '/' && path[0] == '/')
		memmove(k->url + strlen(k->server) - 1, k->url + strlen(k->server),
			strlen(path) + 1);
	k->headers = curl_slist_append(NULL, "Accept: application/json");
	if (k->token_file) {
		char token[4096];
		if (read_token(k->token_file, token, sizeof(token), why, sizeof(why)) < 0) {
			snprintf(line, sizeof(line), "%s failed: %s", provider_verb_name(k->verb),
				 why);
			finish(k, 0, line);
			return;
		}
		snprintf(line, sizeof(line), "Authorization: Bearer %s", token);
		k->headers = curl_slist_append(k->headers, line);
	}
	if (k->body)
		k->headers = curl_slist_append(k->headers, PATCH_TYPE);
	k->headers = curl_slist_append(k->headers, "Expect:");
	if (!k->headers) {
		finish(k, 0, "out of memory");
		return;
	}
	CURL *e = k->easy;
	curl_easy_reset(e);
	curlreq_setup(e, k->url, REQUEST_TIMEOUT_MS, k->headers, "sluice-worker", NULL);
	if (k->ca_file) {
		char *ca = local_path("ca_file", k->ca_file, why, sizeof(why));
		if (!ca) {
			snprintf(line, sizeof(line), "%s failed: %s", provider_verb_name(k->verb),
				 why);
			finish(k, 0, line);
			return;
		}
		curl_easy_setopt(e, CURLOPT_CAINFO, ca); /* curl keeps a copy */
		free(ca);
	}
	k->resp.max = MAX_RESPONSE;
	curlreq_collect(e, &k->resp);
	curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
	if (k->body) {
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, k->body);
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(k->body));
	}
	if (curlev_add(k->multi, e, on_response, k) < 0) {
		finish(k, 0, "cannot start the request");
		return;
	}
	k->added = 1;
}

/* --- kubectl rollout status --------------------------------------------- */

static long long num(const json_t *obj, const char *key)
{
	return json_integer_value(json_object_get(obj, key));
}

/* kubectl's DeploymentStatusViewer: 1 rolled out, 0 still going (why says
 * where it stands), -1 failed. */
static int rollout_status(const json_t *d, char *why, size_t whylen)
{
	const json_t *meta = json_object_get(d, "metadata");
	const json_t *spec = json_object_get(d, "spec");
	const json_t *status = json_object_get(d, "status");
	const json_t *cond;
	size_t i;

	if (num(meta, "generation") > num(status, "observedGeneration")) {
		snprintf(why, whylen, "waiting for the deployment spec update to be observed");
		return 0;
	}
	json_array_foreach(json_object_get(status, "conditions"), i, cond)
	{
		const char *type = json_string_value(json_object_get(cond, "type"));
		const char *reason = json_string_value(json_object_get(cond, "reason"));
		if (type && reason && !strcmp(type, "Progressing") &&
		    !strcmp(reason, "ProgressDeadlineExceeded")) {
			snprintf(why, whylen, "deployment exceeded its progress deadline");
			return -1;
		}
	}
	long long replicas = json_object_get(spec, "replicas") ? num(spec, "replicas") : 1;
	long long updated = num(status, "updatedReplicas");
	long long current = num(status, "replicas");
	long long available = num(status, "availableReplicas");
	long long unavailable = num(status, "unavailableReplicas");
	if (updated < replicas) {
		snprintf(why, whylen, "%lld out of %lld new replicas have been updated", updated,
			 replicas);
		return 0;
	}
	if (current > updated) {
		snprintf(why, whylen, "%lld old replicas are pending termination",
			 current - updated);
		return 0;
	}
	if (available < updated) {
		snprintf(why, whylen, "%lld of %lld updated replicas are available", available,
			 updated);
		return 0;
	}
	if (unavailable > 0) {
		snprintf(why, whylen, "%lld replicas are unavailable", unavailable);
		return 0;
	}
	snprintf(why, whylen,
		 "successfully rolled out (%lld of %lld replicas updated and available)", available,
		 replicas);
	return 1;
}

static int set_body(struct kube *k, json_t *patch, char *err, size_t errlen)
{
	k->body = patch ? json_dumps(patch, JSON_COMPACT) : NULL;
	json_decref(patch);
	if (!k->body) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

static void deployment_path(const struct kube *k, char *path, size_t len)
{
	snprintf(path, len, "/apis/apps/v1/namespaces/%s/deployments/%s", k->namespace, k->target);
}

static void on_poll(evutil_socket_t fd, short what, void *arg)
{
	struct kube *k = arg;
	char path[512];
	(void)fd;
	(void)what;

	deployment_path(k, path, sizeof(path));
	request(k, "GET", path);
}

/* The replicas a scale_down noted on the Deployment d; 0 when none. */
static long long noted_replicas(const json_t *d)
{
	const json_t *notes = json_object_get(json_object_get(d, "metadata"), "annotations");
	const char *text = json_string_value(json_object_get(notes, REPLICAS_NOTE));
	char *end;
	long long n;

	if (!text)
		return 0;
	n = strtoll(text, &end, 10);
	return end != text && !*end && n > 0 && n <= INT32_MAX ? n : 0;
}

/* Completes apply's or scale_down's patch from the Deployment d as it is:
 * scale_down notes the replicas it takes away (none taken leaves an
 * earlier note be), apply (or promote to stable) gives the noted ones back
 * to a Deployment it finds at 0 and drops the note. -1 when out of
 * memory. */
static int complete_patch(enum provider_verb verb, const json_t *d, json_t *patch)
{
	const json_t *replicas = json_object_get(json_object_get(d, "spec"), "replicas");
	long long now = replicas ? json_integer_value(replicas) : 1;
	long long noted = noted_replicas(d);
	char text[32];
	json_t *meta;

	if (verb == PROVIDER_SCALE_DOWN && now > 0) {
		snprintf(text, sizeof(text), "%lld", now);
		meta = json_pack("{s:{s:s}}", "annotations", REPLICAS_NOTE, text);
	} else if ((verb == PROVIDER_APPLY || verb == PROVIDER_PROMOTE) && noted > 0) {
		meta = json_pack("{s:{s:n}}", "annotations", REPLICAS_NOTE);
		if (meta && now == 0 &&
		    json_object_set_new(json_object_get(patch, "spec"), "replicas",
					json_integer(noted)) < 0) {
			json_decref(meta);
			return -1;
		}
	} else {
		return 0;
	}
	return json_object_set_new(patch, "metadata", meta);
}

static void on_response(CURL *easy, CURLcode rc, void *arg)
{
	struct kube *k = arg;
	const char *verb = provider_verb_name(k->verb);
	char msg[MSG_MAX], why[512];
	long status = 0;
	json_t *doc;

	k->added = 0;
	if (k->resp.too_big) {
		snprintf(msg, sizeof(msg), "%s failed: the answer from %s is longer than %d bytes",
			 verb, k->url, MAX_RESPONSE);
		finish(k, 0, msg);
		return;
	}
	if (rc != CURLE_OK) {
		snprintf(msg, sizeof(msg), "%s failed: %s: %s", verb, k->url,
			 curl_easy_strerror(rc));
		finish(k, 0, msg);
		return;
	}
	curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
	doc = k->resp.data ? json_loads(k->resp.data, 0, NULL) : NULL;
	if (status < 200 || status > 299) {
		/* The API answers errors with a Status object saying why. */
		const char *reason = json_string_value(json_object_get(doc, "message"));
		snprintf(msg, sizeof(msg), "%s failed: HTTP %ld from %s%s%s", verb, status, k->url,
			 reason ? ": " : "", reason ? reason : "");
		json_decref(doc);
		finish(k, 0, msg);
		return;
	}
	if (k->patch) {
		/* apply or scale_down: the Deployment read, it is patched now */
		json_t *patch = k->patch;
		char path[512];

		k->patch = NULL;
		if (!json_is_object(doc)) {
			snprintf(msg, sizeof(msg), "%s failed: %s did not answer with a Deployment",
				 verb, k->url);
			json_decref(doc);
			json_decref(patch);
			finish(k, 0, msg);
			return;
		}
		if (complete_patch(k->verb, doc, patch) < 0) {
			json_decref(patch);
			patch = NULL;
		}
		json_decref(doc);
		if (set_body(k, patch, why, sizeof(why)) < 0) {
			snprintf(msg, sizeof(msg), "%s failed: %s", verb, why);
			finish(k, 0, msg);
			return;
		}
		deployment_path(k, path, sizeof(path));
		request(k, "PATCH", path);
		return;
	}
	if (k->verb != PROVIDER_VERIFY) {
		snprintf(msg, sizeof(msg), "%s done: HTTP %ld from %s", verb, status, k->url);
		json_decref(doc);
		finish(k, 1, msg);
		return;
	}
	if (!json_is_object(doc)) {
		snprintf(msg, sizeof(msg), "verify failed: %s did not answer with a Deployment",
			 k->url);
		finish(k, 0, msg);
		return;
	}
	int state = rollout_status(doc, why, sizeof(why));
	json_decref(doc);
	if (state != 0 || clock_mono_ms() >= k->deadline_ms) {
		snprintf(msg, sizeof(msg), "verify %s: deployment %s/%s: %s%s",
			 state > 0 ? "done" : "failed", k->namespace, k->target, why,
			 state == 0 ? " (timed out)" : "");
		finish(k, state > 0, msg);
		return;
	}
	clear_request(k);
	struct timeval tv = {k->poll_ms / 1000, (k->poll_ms % 1000) * 1000};
	evtimer_add(k->poll_ev, &tv);
}

/* --- actions ------------------------------------------------------------ */

/* maxSurge or maxUnavailable as the API's IntOrString takes it: a count
 * as a number (the string "1" is refused), a percentage as a string. */
static json_t *int_or_percent(const char *v)
{
	return strchr(v, '%') ? json_string(v) : json_integer(strtoll(v, NULL, 10));
}

/* apply's patch: the container's image; a RollingUpdate's bounds too, so
 * that the Deployment replaces its pods within them and not within
 * whatever it was created with. NULL when out of memory. */
static json_t *apply_patch(const struct kube *k, const struct provider_action *a)
{
	json_t *patch = json_pack("{s:{s:{s:{s:[{s:s,s:s}]}}}}", "spec", "template", "spec",
				  "containers", "name", k->container, "image", a->image);

	if (!patch || !a->max_surge || !a->max_unavailable)
		return patch;
	if (json_object_set_new(json_object_get(patch, "spec"), "strategy",
				json_pack("{s:s, s:{s:o, s:o}}", "type", "RollingUpdate",
					  "rollingUpdate", "maxSurge", int_or_percent(a->max_surge),
					  "maxUnavailable", int_or_percent(a->max_unavailable))) <
	    0) {
		json_decref(patch);
		return NULL;
	}
	return patch;
}

/* Reads the Deployment, then sends patch completed from what it says
 * (complete_patch). patch is taken. */
static int read_then_patch(struct kube *k, json_t *patch, char *err, size_t errlen)
{
	char path[512];

	if (!patch) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	k->patch = patch;
	deployment_path(k, path, sizeof(path));
	request(k, "GET", path);
	return 0;
}

static int kube_start(void *state, const struct provider_action *a, provider_done_cb done,
		      void *arg, char *err, size_t errlen)
{
	struct kube *k = state;
	const char *verb = provider_verb_name(a->verb);
	char path[512], why[256];
	json_t *vars = NULL;
	struct provider_action stable;
	int to_stable = a->verb == PROVIDER_PROMOTE && (!a->color || !*a->color);

	k->verb = a->verb;
	k->done = done;
	k->arg = arg;
	if (to_stable) {
		stable = *a;
		stable.color = "stable";
		stable.max_surge = stable.max_unavailable = NULL;
		a = &stable;
	}
	if (k->deployment) {
		vars = provider_action_vars(a);
		if (!vars || expand_text(k->deployment, vars, EXPAND_URL, &k->target, why,
					 sizeof(why)) < 0) {
			snprintf(err, errlen, "provider.deployment: %s",
				 vars ? why : "out of memory");
			goto fail;
		}
	}
	if (to_stable && !k->deployment) {
		snprintf(err, errlen, "promote: needs a colour, or a deployment to promote to");
		goto fail;
	}
	switch (to_stable ? PROVIDER_APPLY : a->verb) {
	case PROVIDER_APPLY:
		if (!a->image || !*a->image) {
			snprintf(err, errlen, "%s: needs an image", verb);
			goto fail;
		}
		if (read_then_patch(k, apply_patch(k, a), err, errlen) < 0)
			goto fail;
		break;
	case PROVIDER_SCALE_DOWN:
		if (read_then_patch(k, json_pack("{s:{s:i}}", "spec", "replicas", 0), err, errlen) <
		    0)
			goto fail;
		break;
	case PROVIDER_SWITCH:
	case PROVIDER_PROMOTE:
	case PROVIDER_ABORT:
		if (!a->color || !*a->color) {
			snprintf(err, errlen, "%s: needs a colour", verb);
			goto fail;
		}
		if (set_body(
			k, json_pack("{s:{s:{s:s}}}", "spec", "selector", k->color_label, a->color),
			err, errlen) < 0)
			goto fail;
		snprintf(path, sizeof(path), "/api/v1/namespaces/%s/services/%s", k->namespace,
			 k->service);
		request(k, "PATCH", path);
		break;
	case PROVIDER_VERIFY:
		k->deadline_ms = clock_mono_ms() + k->timeout_ms;
		on_poll(-1, 0, k);
		break;
	default:
		snprintf(err, errlen, "the kubernetes provider cannot %s", verb);
		goto fail;
	}
	json_decref(vars);
	return 0;
fail:
	json_decref(vars);
	clear_action(k);
	return -1;
}

static void kube_cancel(void *state)
{
	clear_action(state);
}

static void kube_destroy(void *state)
{
	struct kube *k = state;

	clear_action(k);
	if (k->easy)
		curl_easy_cleanup(k->easy);
	curlev_free(k->multi);
	if (k->poll_ev)
		event_free(k->poll_ev);
	if (k->done_ev)
		event_free(k->done_ev);
	free(k->server);
	free(k->token_file);
	free(k->ca_file);
	free(k->namespace);
	free(k->deployment);
	free(k->container);
	free(k->service);
	free(k->color_label);
	free(k);
}

const struct provider_ops provider_kubernetes_ops = {
    .type = "kubernetes",
    .keys = kube_keys,
    .check = kube_check,
    .create = kube_create,
    .supports = kube_supports,
    .start = kube_start,
    .cancel = kube_cancel,
    .destroy = kube_destroy,
};
