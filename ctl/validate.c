/* validate: pipeline files and sluice.yaml checked as the agent loads them. */
#include "ctl/validate.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "config/doc.h"
#include "config/file.h"
#include "lib/tlsctx.h"
#include "lib/tokens.h"

#define ERR_MAX 1024
/* As the agent reads github.token_file. */
#define CTL_TOKEN_FILE_MAX 4096

int ctl_validate_is_pipeline(const char *path, char *err, size_t errlen)
{
	struct config_doc doc = {0};
	int rc;

	if (config_doc_load(&doc, path, err, errlen) < 0)
		return -1;
	rc = config_doc_get(doc.top, "stages") || config_doc_get(doc.top, "trigger");
	config_doc_clear(&doc);
	return rc;
}

static int validate_pipeline(const char *path, FILE *out, FILE *err)
{
	struct pipeline p;
	char msg[ERR_MAX];
	const char *name;
	json_t *v;
	size_t stages = 0;

	if (pipeline_load_file(path, &p, msg, sizeof(msg)) < 0) {
		fprintf(err, "%s\n", msg);
		return 1;
	}
	/* Deployments are materialized as stages; they are counted as the
	 * environments they belong to. */
	json_object_foreach(json_object_get(p.def, "stages"), name, v)
	{
		if (!json_object_get(v, "env"))
			stages++;
	}
	fprintf(out, "%s: ok (pipeline %s: %zu stage%s", path, p.name, stages,
		stages == 1 ? "" : "s");
	const json_t *envs = json_object_get(p.def, "environments");
	const char *sep = ", environments ";
	json_object_foreach((json_t *)envs, name, v)
	{
		fprintf(out, "%s%s", sep, name);
		sep = " \u2192 ";
	}
	fputs(")\n", out);
	pipeline_clear(&p);
	return 0;
}

/* The files the agent reads as it starts, and refuses to start without: the
 * API tokens, the GitHub token and the TLS certificate and key. An error
 * names the setting's position in path. */
static int check_agent_files(const char *path, const struct settings *s, char *msg, size_t msglen)
{
	char why[ERR_MAX];

	if (s->tokens_file) {
		struct tokens t;
		if (tokens_load(s->tokens_file, &t, why, sizeof(why)) < 0)
			return settings_fail_at(path, "api.tokens_file", msg, msglen, "%s", why);
		tokens_clear(&t);
	}
	/* A credential is the agent's own, found in its unit's environment. */
	if (s->github_token_file && strncmp(s->github_token_file, CONFIG_FILE_CREDENTIALS,
					    strlen(CONFIG_FILE_CREDENTIALS)) != 0) {
		char *token = config_file_read_token(s->github_token_file, CTL_TOKEN_FILE_MAX);
		if (!token)
			return settings_fail_at(path, "github.token_file", msg, msglen,
						"\"%s\": %s", s->github_token_file,
						config_file_token_error(errno));
		explicit_bzero(token, strlen(token));
		free(token);
	}
	if (s->tls_cert) {
		const char *bad;
		SSL_CTX *ctx = tlsctx_server(s->tls_cert, s->tls_key, &bad, why, sizeof(why));
		if (!ctx)
			return settings_fail_at(
			    path, bad == s->tls_key ? "agent.tls_key" : "agent.tls_cert", msg,
			    msglen, "\"%s\": %s", bad, why);
		SSL_CTX_free(ctx);
	}
	return 0;
}

static int validate_settings(const char *path, FILE *out, FILE *err)
{
	struct settings s;
	struct pipeline_set set = {0};
	char msg[ERR_MAX];

	if (settings_load(path, &s, msg, sizeof(msg)) < 0) {
		fprintf(err, "%s\n", msg);
		return 1;
	}
	if (check_agent_files(path, &s, msg, sizeof(msg)) < 0 ||
	    pipelines_load_dir(s.pipelines_dir, &set, msg, sizeof(msg)) < 0) {
		fprintf(err, "%s\n", msg);
		settings_clear(&s);
		return 1;
	}
	fprintf(out, "%s: ok (settings; %zu pipeline%s in %s", path, set.n, set.n == 1 ? "" : "s",
		s.pipelines_dir);
	for (size_t i = 0; i < set.n; i++)
		fprintf(out, "%s%s", i ? ", " : ": ", set.items[i].name);
	fputs(")\n", out);
	pipelines_clear(&set);
	settings_clear(&s);
	return 0;
}

int ctl_validate(const char *const *files, int nfiles, FILE *out, FILE *err)
{
	char msg[ERR_MAX];
	int failed = 0;

	for (int i = 0; i < nfiles; i++) {
		int kind = ctl_validate_is_pipeline(files[i], msg, sizeof(msg));

		if (kind < 0) {
			fprintf(err, "%s\n", msg);
			failed = 1;
		} else if (kind) {
			failed |= validate_pipeline(files[i], out, err);
		} else {
			failed |= validate_settings(files[i], out, err);
		}
	}
	return failed;
}
