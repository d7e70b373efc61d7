/* Fuzz target: what intake does with a webhook before anything is recorded.
 *
 * Input: "EVENT\nX-Hub-Signature-256\nBODY". The signature is checked over
 * the raw body as intake does; the body is then parsed whatever the check
 * said (so that the fuzzer reaches the parser) and, as intake does for a
 * verified push or pull_request, matched against one pipeline's branch globs
 * and planned with its `when` conditions.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/github.h"
#include "agent/signature.h"
#include "config/config.h"
#include "config/when.h"
#include "lib/glob.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static json_t *def;
static struct signature_keys *keys;

/* Two pipelines, two secrets, as intake holds them. */
static struct signature_keys *pipeline_keys(void)
{
	static struct pipeline p[] = {{.secret = "It's a Secret to Everybody"},
				      {.secret = "another secret"}};
	static const struct pipeline_set set = {p, 2};
	if (!keys)
		keys = signature_keys_new(&set);
	return keys;
}

static const json_t *pipeline_def(void)
{
	if (!def)
		def = json_loads("{\"stages\": {"
				 "\"build\": {\"kind\": \"build\"},"
				 "\"test\": {\"kind\": \"test\", \"needs\": [\"build\"],"
				 " \"when\": {\"branches\": [\"main\", \"release/**\"]}},"
				 "\"tagged\": {\"kind\": \"deploy\", \"when\": {\"tags\": [\"v*\"],"
				 " \"events\": [\"push\"]}}}}",
				 0, NULL);
	return def;
}

/* The next '\n'-terminated line of [*p, end) as a NUL-terminated copy. */
static char *line(const char **p, const char *end)
{
	const char *nl = memchr(*p, '\n', (size_t)(end - *p));
	const char *stop = nl ? nl : end;
	char *out = strndup(*p, (size_t)(stop - *p));
	*p = nl ? nl + 1 : end;
	return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data, *end = p + size;
	char *event = line(&p, end);
	char *sig = line(&p, end);
	/* The body as intake gets it: evbuffer_pullup'd, not NUL-terminated. */
	size_t len = (size_t)(end - p);
	char *body = malloc(len ? len : 1);
	char err[256], verified[2];
	struct github_event ev;

	if (!event || !sig || !body || !pipeline_keys())
		goto out;
	memcpy(body, p, len);
	(void)signature_keys_verify(keys, body, len, sig, verified);
	if (github_event_parse(event, body, len, &ev, err, sizeof(err)) == 0 && !ev.no_build) {
		size_t queued = 0;
		const char *text = ev.tag ? ev.tag : ev.branch;
		if (text)
			(void)glob_match("release/**", text);
		json_decref(when_plan(pipeline_def(), ev.event, ev.branch, ev.tag, &queued));
	}
	github_event_clear(&ev);
out:
	free(event);
	free(sig);
	free(body);
	return 0;
}
