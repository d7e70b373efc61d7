/* analysis_run: one analysis of a pipeline file, run against its real
 * provider (Prometheus or any HTTP endpoint), for the integration tests that
 * judge a release on real metrics (tests/integration/test_analysis_prometheus.py).
 *
 *   analysis_run FILE   FILE (YAML or JSON) holds "analysis:" as a pipeline
 *                       file's steps do (stages/analysis.h), or
 *                       "background:" as a canary's background analysis
 *
 * The result's JSON goes to stdout on one line. Exit status: 0 Successful,
 * 1 Failed, 2 Inconclusive, 3 when FILE is not a valid analysis. SIGTERM or
 * SIGINT stops the analysis, which then gives the verdict of what it took.
 */
#include <curl/curl.h>
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "config/check.h"
#include "config/doc.h"
#include "stages/analysis.h"

#define EXIT_INVALID 3

struct run {
	struct analysis *analysis; /* NULL once done has run */
	struct event *sigterm, *sigint;
	int status;
};

static void on_done(const struct analysis_result *r, void *arg);
static void on_signal(evutil_socket_t sig, short what, void *arg);

static void on_done(const struct analysis_result *r, void *arg)
{
	struct run *run = arg;
	char *text = json_dumps(r->json, JSON_COMPACT);

	run->analysis = NULL;
	if (text) {
		printf("%s\n", text);
		free(text);
	}
	switch (r->verdict) {
	case ANALYSIS_SUCCESSFUL:
		run->status = 0;
		break;
	case ANALYSIS_FAILED:
		run->status = 1;
		break;
	case ANALYSIS_INCONCLUSIVE:
		run->status = 2;
		break;
	}
	/* The signal events are all that would keep the loop running. */
	event_del(run->sigterm);
	event_del(run->sigint);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct run *run = arg;
	(void)sig;
	(void)what;

	if (run->analysis)
		analysis_stop(run->analysis);
}

/* The normalized analysis of path; NULL with the message in err. */
static json_t *load(const char *path, char *err, size_t errlen)
{
	struct config_doc doc;
	struct config_check ck = {.file = path, .err = err, .errlen = errlen};
	const struct config_doc_node *n, *bg;
	json_t *spec = NULL;

	if (config_doc_load(&doc, path, err, errlen) < 0)
		return NULL;
	n = config_doc_get(doc.top, "analysis");
	bg = config_doc_get(doc.top, "background");
	if (n)
		analysis_load(&ck, n, &spec);
	else if (bg)
		analysis_load_background(&ck, bg, 0, &spec);
	else
		config_check_missing(&ck, doc.top, "analysis", "or background");
	config_doc_clear(&doc);
	return spec;
}

int main(int argc, char **argv)
{
	char err[1024];
	struct run run = {.status = EXIT_INVALID};
	struct event_base *base = NULL;
	json_t *spec;

	if (argc != 2) {
		fprintf(stderr, "usage: analysis_run FILE\n");
		return EXIT_INVALID;
	}
	spec = load(argv[1], err, sizeof(err));
	if (!spec) {
		fprintf(stderr, "%s\n", err);
		return EXIT_INVALID;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		fprintf(stderr, "cannot initialize libcurl\n");
		goto out;
	}
	base = event_base_new();
	if (!base)
		goto out;
	run.sigterm = evsignal_new(base, SIGTERM, on_signal, &run);
	run.sigint = evsignal_new(base, SIGINT, on_signal, &run);
	if (!run.sigterm || !run.sigint || event_add(run.sigterm, NULL) < 0 ||
	    event_add(run.sigint, NULL) < 0) {
		fprintf(stderr, "cannot watch signals\n");
		goto out;
	}
	run.analysis = analysis_start(base, spec, NULL, on_done, &run, err, sizeof(err));
	if (!run.analysis) {
		fprintf(stderr, "%s: %s\n", argv[1], err);
		goto out;
	}
	event_base_dispatch(base);
out:
	if (run.sigterm)
		event_free(run.sigterm);
	if (run.sigint)
		event_free(run.sigint);
	if (base)
		event_base_free(base);
	json_decref(spec);
	curl_global_cleanup();
	return run.status;
}
