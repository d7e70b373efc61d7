/* stage_env: run variables, pipeline vars, secrets → command and environment. */
#include "workers/stage_env.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/file.h"
#include "lib/strv.h"
#include "stages/command.h"

#define SECRET_MAX (64 * 1024)

static void wipe(char *p, size_t n)
{
	volatile char *v = p;
	for (size_t i = 0; p && i < n; i++)
		v[i] = 0;
}

static const char *field(const json_t *run, const char *name)
{
	const char *v = json_string_value(json_object_get(run, name));
	return v ? v : "";
}

json_t *stage_env_vars(const json_t *run, const json_t *def, const char *stage, int attempt)
{
	char sha_short[8], attempt_text[16];
	snprintf(sha_short, sizeof(sha_short), "%s", field(run, "sha"));
	snprintf(attempt_text, sizeof(attempt_text), "%d", attempt);

	json_t *vars = json_object();
	const char *name;
	json_t *value;
	/* An environment's deployment carries its own vars: the pipeline's
	 * with the environment's over them (config/environments.h). */
	const json_t *sdef = json_object_get(json_object_get(def, "stages"), stage);
	const json_t *layered = json_object_get(sdef, "vars");
	json_object_foreach(layered ? (json_t *)layered : json_object_get(def, "vars"), name, value)
	{
		json_object_set(vars, name, value);
	}
	const char *env = json_string_value(json_object_get(sdef, "env"));
	if (env)
		json_object_set_new(vars, "SLUICE_ENV", json_string(env));
	/* Run variables win over pipeline vars of the same name. */
	json_t *own =
	    json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "SLUICE_RUN_ID", field(run, "id"),
		      "SLUICE_PIPELINE", field(run, "pipeline"), "SLUICE_REPO",
		      field(run, "repository"), "SLUICE_REF", field(run, "ref"), "SLUICE_SHA",
		      field(run, "sha"), "SLUICE_SHA_SHORT", sha_short, "SLUICE_STAGE", stage,
		      "SLUICE_ATTEMPT", attempt_text, "SLUICE_EVENT", field(run, "event"));
	json_object_update(vars, own);
	json_decref(own);
	/* What earlier stages wrote to $SLUICE_OUTPUT, as <stage>.<KEY>. */
	const char *from;
	json_t *outputs;
	json_object_foreach(json_object_get(run, "outputs"), from, outputs)
	{
		const char *key;
		json_object_foreach(outputs, key, value)
		{
			char full[512];
			snprintf(full, sizeof(full), "%s.%s", from, key);
			json_object_set(vars, full, value);
		}
	}
	return vars;
}

/* Adds to sources each stage of stages that text names in a ${<stage>.
 * (a stage name holds no '.', see config/pipeline.c). */
static int add_sources_of(const char *text, const json_t *stages, json_t *sources)
{
	static const char name_chars[] = "abcdefghijklmnopqrstuvwxyz"
					 "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-";
	for (const char *p = strstr(text, "${"); p; p = strstr(p, "${")) {
		p += 2;
		size_t len = strspn(p, name_chars);
		char name[256];
		if (p[len] != '.' || len == 0 || len >= sizeof(name))
			continue;
		memcpy(name, p, len);
		name[len] = '\0';
		if (json_object_get(stages, name) && !json_object_get(sources, name) &&
		    json_object_set_new(sources, name, json_true()) < 0)
			return -1;
	}
	return 0;
}

static int walk_sources(const json_t *v, const json_t *stages, json_t *sources)
{
	size_t i;
	const char *key;
	json_t *item;
	switch (json_typeof(v)) {
	case JSON_STRING:
		return add_sources_of(json_string_value(v), stages, sources);
	case JSON_ARRAY:
		json_array_foreach(v, i, item)
		{
			if (walk_sources(item, stages, sources) < 0)
				return -1;
		}
		return 0;
	case JSON_OBJECT:
		json_object_foreach((json_t *)v, key, item)
		{
			if (walk_sources(item, stages, sources) < 0)
				return -1;
		}
		return 0;
	default:
		return 0;
	}
}

json_t *stage_env_output_sources(const json_t *def)
{
	json_t *sources = json_object();
	if (sources && walk_sources(def, json_object_get(def, "stages"), sources) < 0) {
		json_decref(sources);
		return NULL;
	}
	return sources;
}

/* configured: as in the run's definition; a credential is looked up in
 * this worker's own $CREDENTIALS_DIRECTORY. */
static char *read_secret(const char *configured, size_t *len, char *err, size_t errlen)
{
	char *path = config_file_expand(configured);
	if (!path) {
		snprintf(err, errlen, "secret file %s: %s", configured,
			 config_file_expand_error(errno));
		return NULL;
	}
	FILE *f = fopen(path, "r");
	if (!f) {
		snprintf(err, errlen, "secret file %s: %s", path, strerror(errno));
		free(path);
		return NULL;
	}
	char *buf = malloc(SECRET_MAX + 1);
	size_t n = buf ? fread(buf, 1, SECRET_MAX + 1, f) : 0;
	/* A read that fails (a directory, an I/O error) must not pass for an
	 * empty secret. */
	int read_errno = ferror(f) ? errno : 0;
	fclose(f);
	if (read_errno) {
		snprintf(err, errlen, "secret file %s: %s", path, strerror(read_errno));
		goto fail;
	}
	if (!buf || n > SECRET_MAX) {
		snprintf(err, errlen, "secret file %s: larger than %d bytes", path, SECRET_MAX);
		goto fail;
	}
	/* An environment variable ends at its first NUL: the stage would get
	 * the value cut short, and the rest would not be masked either. */
	if (memchr(buf, '\0', n) != NULL) {
		snprintf(err, errlen, "secret file %s holds a NUL byte", path);
		goto fail;
	}
	free(path);
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		n--;
	buf[n] = '\0';
	*len = n;
	return buf;
fail:
	wipe(buf, buf ? SECRET_MAX + 1 : 0);
	free(buf);
	free(path);
	return NULL;
}

json_t *stage_env_secrets(const json_t *def, char *err, size_t errlen)
{
	json_t *secrets = json_object();
	const char *name;
	json_t *path;
	if (!secrets) {
		snprintf(err, errlen, "out of memory reading secrets");
		return NULL;
	}
	json_object_foreach(json_object_get(def, "secrets"), name, path)
	{
		size_t len = 0;
		char *value = read_secret(json_string_value(path), &len, err, errlen);
		if (!value)
			goto fail;
		json_t *s = json_stringn_nocheck(value, len);
		wipe(value, len);
		free(value);
		if (!s || json_object_set_new(secrets, name, s) < 0) {
			snprintf(err, errlen, "out of memory reading secrets");
			goto fail;
		}
	}
	return secrets;
fail:
	stage_env_secrets_free(secrets);
	return NULL;
}

void stage_env_secrets_free(json_t *secrets)
{
	const char *name;
	json_t *value;
	if (!secrets)
		return;
	/* jansson owns the bytes; they are wiped in place before release. */
	json_object_foreach(secrets, name, value)
	{
		wipe((char *)json_string_value(value), json_string_length(value));
	}
	json_decref(secrets);
}

char **stage_env_build(const json_t *vars, const json_t *secrets, const json_t *stage, char *err,
		       size_t errlen)
{
	static const char *inherited[] = {"PATH", "HOME", "LANG"};
	json_t *merged = json_object();
	char **env = calloc(1, sizeof(char *));
	size_t n = 0, i;
	const char *name;
	json_t *value;
	if (!env || !merged)
		goto fail;
	for (i = 0; i < sizeof(inherited) / sizeof(inherited[0]); i++) {
		const char *v = getenv(inherited[i]);
		if (!v && strcmp(inherited[i], "PATH") == 0)
			v = "/usr/local/bin:/usr/bin:/bin";
		if (v && json_object_set_new(merged, inherited[i], json_string(v)) < 0)
			goto fail;
	}
	json_array_foreach(json_object_get(stage, "inherit_env"), i, value)
	{
		const char *v = getenv(json_string_value(value));
		if (v && json_object_set_new(merged, json_string_value(value), json_string(v)) < 0)
			goto fail;
	}
	json_object_foreach((json_t *)vars, name, value)
	{
		/* <stage>.<KEY> outputs expand in arguments; they are not
		 * names a shell could read from its environment. */
		if (strchr(name, '.'))
			continue;
		if (json_is_string(value) && json_object_set(merged, name, value) < 0)
			goto fail;
	}
	json_object_foreach((json_t *)secrets, name, value)
	{
		if (json_object_set(merged, name, value) < 0)
			goto fail;
	}
	json_object_foreach(merged, name, value)
	{
		if (strv_append(&env, &n, strv_pair(name, json_string_value(value))) < 0)
			goto fail;
	}
	json_decref(merged);
	return env;
fail:
	snprintf(err, errlen, "out of memory building the environment");
	json_decref(merged);
	strv_free(env);
	return NULL;
}

char **stage_env_argv(const json_t *stage, const json_t *vars, char *err, size_t errlen)
{
	char **argv = command_argv(stage, vars, err, errlen);
	if (argv && !argv[0]) {
		snprintf(err, errlen, "the stage has no command");
		strv_free(argv);
		return NULL;
	}
	return argv;
}
