/* reload: SIGHUP re-reads sluice.yaml and the pipelines directory. */
#include "agent/reload.h"

#include <stdio.h>
#include <string.h>

#include "agent/auth.h"
#include "agent/signature.h"
#include "agent/statuses.h"
#include "lib/log.h"

/* The connections, the listening socket and timers set up at start. */
static const char *const restart_keys[] = {SETTINGS_CONNECTION_KEYS,
					   "agent.max_body",
					   "agent.max_request_memory",
					   "agent.http_timeout",
					   "agent.max_connections",
					   "agent.requeue_after",
					   "agent.scheduler_interval",
					   "agent.tls_cert",
					   "agent.tls_key",
					   NULL};

static int text_equal(const char *x, const char *y)
{
	return strcmp(x ? x : "", y ? y : "") == 0;
}

static int json_same(const json_t *x, const json_t *y)
{
	return (!x && !y) || (x && y && json_equal(x, y));
}

static int pipeline_same(const struct pipeline *p, const struct pipeline *q)
{
	return text_equal(p->file, q->file) && text_equal(p->repository, q->repository) &&
	       text_equal(p->secret, q->secret) && json_same(p->events, q->events) &&
	       json_same(p->branches, q->branches) && json_same(p->tags, q->tags) &&
	       json_same(p->def, q->def);
}

static const struct pipeline *find(const struct pipeline_set *set, const char *name)
{
	for (size_t i = 0; i < set->n; i++) {
		if (strcmp(set->items[i].name, name) == 0)
			return &set->items[i];
	}
	return NULL;
}

static void log_changes(const struct pipeline_set *old, const struct pipeline_set *next)
{
	for (size_t i = 0; i < next->n; i++) {
		const struct pipeline *p = &next->items[i];
		const struct pipeline *was = find(old, p->name);
		if (!was)
			log_info("pipeline added", LOG_S("pipeline", p->name),
				 LOG_S("file", p->file));
		else if (!pipeline_same(was, p))
			log_info("pipeline changed", LOG_S("pipeline", p->name),
				 LOG_S("file", p->file));
	}
	for (size_t i = 0; i < old->n; i++) {
		if (!find(next, old->items[i].name))
			log_info("pipeline removed", LOG_S("pipeline", old->items[i].name));
	}
}

/* The GitHub token and the API tokens the new settings name, read before
 * anything is applied: a file that cannot be read refuses the reload whole,
 * at its setting's position in the settings file config. The API tokens
 * are read last, so that a failure leaves only the GitHub token to free. */
static int read_tokens(const char *config, const struct settings *next, char **github_token,
		       struct tokens **tokens, char *err, size_t errlen)
{
	char why[512];

	if (next->github_token_file) {
		*github_token = statuses_read_token(next->github_token_file, why, sizeof(why));
		if (!*github_token)
			return settings_fail_at(config, "github.token_file", err, errlen,
						"\"%s\": %s", next->github_token_file, why);
	}
	if (next->tokens_file) {
		*tokens = auth_read_tokens(next->tokens_file, why, sizeof(why));
		if (!*tokens)
			return settings_fail_at(config, "api.tokens_file", err, errlen, "%s", why);
	}
	return 0;
}

static void swap_text(char **a, char **b)
{
	char *t = *a;
	*a = *b;
	*b = t;
}

int agent_reload(const struct agent_reload *r)
{
	struct agent *a = r->agent;
	struct settings next;
	struct pipeline_set pipelines = {0};
	struct signature_keys *keys = NULL;
	char *github_token = NULL;
	struct tokens *tokens = NULL;
	struct statuses *statuses = NULL;
	char err[1024];

	if (settings_load(r->config, &next, err, sizeof(err)) < 0)
		goto refused;
	if (pipelines_load_dir(next.pipelines_dir, &pipelines, err, sizeof(err)) < 0)
		goto fail;
	keys = signature_keys_new(&pipelines);
	if (!keys) {
		snprintf(err, sizeof(err), "cannot prepare the webhook secrets");
		goto fail;
	}
	if (read_tokens(r->config, &next, &github_token, &tokens, err, sizeof(err)) < 0)
		goto fail;
	/* Statuses turned on need their consumer, which may not be had (out
	 * of descriptors, say): made last, after everything that could
	 * refuse the reload otherwise, as it joins a consumer group. */
	if (github_token && !a->statuses && !(statuses = statuses_new(a, err, sizeof(err))))
		goto fail;
	for (size_t i = 0; restart_keys[i]; i++) {
		if (settings_differ(&a->settings, &next, restart_keys[i]) == 1)
			log_warn("setting changed but needs a restart; old value kept",
				 LOG_S("key", restart_keys[i]));
	}
	if (!r->listen_fixed && settings_differ(&a->settings, &next, "agent.listen") == 1)
		log_warn("setting changed but needs a restart; old value kept",
			 LOG_S("key", "agent.listen"));
	/* A public_url left to its default follows the listen address, which
	 * is reported above, or was given as --listen and is not the file's. */
	if (!(a->settings.public_url_default && next.public_url_default) &&
	    settings_differ(&a->settings, &next, "agent.public_url") == 1)
		log_warn("setting changed but needs a restart; old value kept",
			 LOG_S("key", "agent.public_url"));
	if (!r->log_level_fixed && log_set_level(next.log_level) == 0)
		swap_text(&a->settings.log_level, &next.log_level);
	swap_text(&a->settings.pipelines_dir, &next.pipelines_dir);
	swap_text(&a->settings.github_api_url, &next.github_api_url);
	swap_text(&a->settings.github_token_file, &next.github_token_file);
	a->settings.github_backoff_ms = next.github_backoff_ms;
	a->settings.github_backoff_max_ms = next.github_backoff_max_ms;
	a->settings.github_give_up_ms = next.github_give_up_ms;
	swap_text(&a->settings.tokens_file, &next.tokens_file);
	a->settings.public_reads = next.public_reads;
	a->settings.run_retention_ms = next.run_retention_ms;
	settings_clear(&next);
	statuses_reload(a, github_token, statuses);
	auth_reload(a, tokens);

	/* Nothing keeps a pointer into the set across events: intake matches
	 * and copies each definition into the run it creates. */
	log_changes(&a->pipelines, &pipelines);
	pipelines_clear(&a->pipelines);
	a->pipelines = pipelines;
	signature_keys_free(a->signature_keys);
	a->signature_keys = keys;
	log_info("configuration reloaded", LOG_I("pipelines", a->pipelines.n),
		 LOG_S("pipelines_dir", a->settings.pipelines_dir),
		 LOG_S("log_level", a->settings.log_level),
		 LOG_I("run_retention_ms", a->settings.run_retention_ms));
	return 0;
fail:
	auth_tokens_free(tokens);
	statuses_token_free(github_token);
	signature_keys_free(keys);
	pipelines_clear(&pipelines);
	settings_clear(&next);
refused:
	log_error("reload refused: the running configuration is kept", LOG_S("error", err));
	return -1;
}

void agent_reload_on_signal(evutil_socket_t sig, short what, void *arg)
{
	(void)sig;
	(void)what;
	agent_reload(arg);
}
