/* check: schema helpers shared by settings and pipeline files. */
#include "config/check.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "config/file.h"
#include "lib/glob.h"

static int vfail(const struct config_check *ck, const struct config_doc_node *n, int line, int col,
		 const char *fmt, va_list ap)
{
	char path[256], raw[512], msg[512];

	/* Messages quote what the file says: its control bytes are escaped,
	 * as the path's are. */
	vsnprintf(raw, sizeof(raw), fmt, ap);
	config_doc_escape(msg, sizeof(msg), raw);
	config_doc_path(n, path, sizeof(path));
	if (path[0])
		snprintf(ck->err, ck->errlen, "%s:%d:%d: %s: %s", ck->file, line, col, path, msg);
	else
		snprintf(ck->err, ck->errlen, "%s:%d:%d: %s", ck->file, line, col, msg);
	return -1;
}

int config_check_fail(const struct config_check *ck, const struct config_doc_node *n,
		      const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfail(ck, n, n->line, n->col, fmt, ap);
	va_end(ap);
	return -1;
}

int config_check_fail_key(const struct config_check *ck, const struct config_doc_node *n,
			  const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	if (n->key)
		vfail(ck, n, n->key_line, n->key_col, fmt, ap);
	else
		vfail(ck, n, n->line, n->col, fmt, ap);
	va_end(ap);
	return -1;
}

int config_check_keys(const struct config_check *ck, const struct config_doc_node *n,
		      const char *const *allowed)
{
	const struct config_doc_node *c;

	if (!json_is_object(n->value))
		return config_check_fail(ck, n, "expected a mapping");
	for (c = n->first; c; c = c->next) {
		const char *const *a;

		for (a = allowed; *a && strcmp(*a, c->key); a++)
			;
		if (!*a)
			return config_check_fail_key(ck, c, "unknown key");
	}
	return 0;
}

int config_check_missing(const struct config_check *ck, const struct config_doc_node *map,
			 const char *key, const char *hint)
{
	char path[256];

	config_doc_path(map, path, sizeof(path));
	snprintf(ck->err, ck->errlen, "%s:%d:%d: %s%s%s: missing required key%s%s%s", ck->file,
		 map->line, map->col, path, path[0] ? "." : "", key, hint ? " (" : "",
		 hint ? hint : "", hint ? ")" : "");
	return -1;
}

int config_check_require(const struct config_check *ck, const struct config_doc_node *map,
			 const char *key, const struct config_doc_node **out)
{
	*out = config_doc_get(map, key);
	if (*out)
		return 0;
	return config_check_missing(ck, map, key, NULL);
}

int config_check_string(const struct config_check *ck, const struct config_doc_node *n,
			int allow_empty, const char **out)
{
	if (!json_is_string(n->value))
		return config_check_fail(ck, n, "expected a string");
	if (!allow_empty && !json_string_length(n->value))
		return config_check_fail(ck, n, "must not be empty");
	*out = json_string_value(n->value);
	return 0;
}

int config_check_text(const struct config_check *ck, const struct config_doc_node *n,
		      const char **out)
{
	if (!n->text || json_is_null(n->value))
		return config_check_fail(ck, n, "expected a string");
	*out = n->text;
	return 0;
}

int config_check_text_list(const struct config_check *ck, const struct config_doc_node *n,
			   int allow_single, json_t **out)
{
	const struct config_doc_node *c;
	const char *s = NULL;
	json_t *list;

	if (!json_is_array(n->value) && !(allow_single && n->text && !json_is_null(n->value)))
		return config_check_fail(ck, n, "expected a list of strings");
	list = json_array();
	if (!list)
		return config_check_fail(ck, n, "out of memory");
	if (!json_is_array(n->value)) {
		if (json_array_append_new(list, json_string(n->text)) < 0)
			goto nomem;
		*out = list;
		return 0;
	}
	for (c = n->first; c; c = c->next) {
		if (config_check_text(ck, c, &s) < 0) {
			json_decref(list);
			return -1;
		}
		if (json_array_append_new(list, json_string(s)) < 0)
			goto nomem;
	}
	*out = list;
	return 0;
nomem:
	json_decref(list);
	return config_check_fail(ck, n, "out of memory");
}

int config_check_argv(const struct config_check *ck, const struct config_doc_node *n, json_t **out)
{
	if (!json_is_array(n->value))
		return config_check_fail(ck, n, "expected a list of strings");
	if (!json_array_size(n->value))
		return config_check_fail(ck, n, "must not be empty");
	if (config_check_text_list(ck, n, 0, out) < 0)
		return -1;
	/* No program is named "": every run of the command would fail. */
	if (!*json_string_value(json_array_get(*out, 0))) {
		json_decref(*out);
		*out = NULL;
		return config_check_fail(ck, n->first, "must not be empty");
	}
	return 0;
}

int config_check_headers(const struct config_check *ck, const struct config_doc_node *n,
			 json_t **out)
{
	json_t *headers;

	if (!json_is_object(n->value))
		return config_check_fail(ck, n, "expected a mapping of header names to values");
	headers = json_object();
	if (!headers)
		return config_check_fail(ck, n, "out of memory");
	for (const struct config_doc_node *h = n->first; h; h = h->next) {
		const char *value = NULL;
		if (!config_check_word(h->key, "-_", 0)) {
			config_check_fail_key(ck, h, "not a header name");
			goto fail;
		}
		if (config_check_text(ck, h, &value) < 0)
			goto fail;
		if (strpbrk(value, "\r\n")) {
			config_check_fail(ck, h, "a header value holds no line break");
			goto fail;
		}
		if (config_check_set(ck, h, headers, h->key, json_string(value)) < 0)
			goto fail;
	}
	*out = headers;
	return 0;
fail:
	json_decref(headers);
	return -1;
}

int config_check_set(const struct config_check *ck, const struct config_doc_node *n, json_t *obj,
		     const char *key, json_t *v)
{
	if (!v || json_object_set_new(obj, key, v) < 0)
		return config_check_fail(ck, n, "out of memory");
	return 0;
}

int config_check_path(const struct config_check *ck, const struct config_doc_node *n,
		      const char *dir, json_t *obj, const char *key)
{
	const char *rel;
	char *path;
	json_t *v;

	if (config_check_string(ck, n, 0, &rel) < 0)
		return -1;
	path = config_file_resolve(dir, rel);
	if (!path)
		return config_check_fail(ck, n, "out of memory");
	if (!ck->unopened && config_file_check_readable(path) < 0) {
		config_check_fail(ck, n, "cannot read \"%s\": %s", path, strerror(errno));
		free(path);
		return -1;
	}
	v = json_string(path);
	free(path);
	return config_check_set(ck, n, obj, key, v);
}

int config_check_glob_list(const struct config_check *ck, const struct config_doc_node *n,
			   json_t **out)
{
	if (config_check_text_list(ck, n, 1, out) < 0)
		return -1;
	if (json_array_size(*out) && !glob_list_includes(*out)) {
		json_decref(*out);
		*out = NULL;
		return config_check_fail(ck, n,
					 "only \"!\" globs, which exclude: no ref would match; "
					 "list the refs to include before them (\"**\")");
	}
	return 0;
}

int config_check_int(const struct config_check *ck, const struct config_doc_node *n, long long min,
		     long long max, long long *out)
{
	long long v;

	if (n->overflow > 0)
		return config_check_fail(ck, n, "is too large (at most %lld)", max);
	if (n->overflow < 0)
		return config_check_fail(ck, n, "is too small (at least %lld)", min);
	if (!json_is_integer(n->value))
		return config_check_fail(ck, n, "expected an integer");
	v = json_integer_value(n->value);
	if (v < min || v > max)
		return config_check_fail(ck, n, "must be between %lld and %lld", min, max);
	*out = v;
	return 0;
}

int config_check_duration_ms(const struct config_check *ck, const struct config_doc_node *n,
			     long long max_ms, long long *out)
{
	long long ms = -1;
	int too_long = 0;

	if (n->overflow > 0) {
		too_long = 1;
		ms = max_ms;
	} else if (json_is_integer(n->value) && json_integer_value(n->value) >= 0) {
		long long s = json_integer_value(n->value);

		/* Compared before multiplying, which would overflow: anything
		 * this big is too long (max_ms + 1 overflows too when max_ms is
		 * LLONG_MAX). */
		too_long = s > max_ms / 1000;
		ms = too_long ? max_ms : s * 1000;
	} else if (json_is_string(n->value)) {
		ms = config_parse_duration_ms(json_string_value(n->value));
	}
	if (ms < 0)
		return config_check_fail(ck, n, "expected a duration like \"10m\"");
	if (ms == 0)
		return config_check_fail(ck, n, "must be longer than 0");
	if (too_long || ms > max_ms) {
		char most[32];
		config_format_duration(max_ms, most, sizeof(most));
		return config_check_fail(ck, n, "is too long (at most %s)", most);
	}
	*out = ms;
	return 0;
}

static long long parse_size(const char *s)
{
	static const struct {
		const char *name;
		long long mult;
	} units[] = {
	    {"", 1}, {"B", 1}, {"KiB", 1LL << 10}, {"MiB", 1LL << 20}, {"GiB", 1LL << 30},
	};
	long long n = 0;
	size_t i;

	if (*s < '0' || *s > '9')
		return -1;
	for (; *s >= '0' && *s <= '9'; s++) {
		if (n > (LLONG_MAX - 9) / 10)
			return -1;
		n = n * 10 + (*s - '0');
	}
	for (i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (!strcmp(s, units[i].name))
			return n > LLONG_MAX / units[i].mult ? -1 : n * units[i].mult;
	return -1;
}

int config_check_size(const struct config_check *ck, const struct config_doc_node *n, long long max,
		      long long *out)
{
	long long v = -1;

	if (n->overflow > 0)
		return config_check_fail(ck, n, "is too large (at most %lld bytes)", max);
	if (json_is_integer(n->value))
		v = json_integer_value(n->value);
	else if (json_is_string(n->value))
		v = parse_size(json_string_value(n->value));
	if (v < 0)
		return config_check_fail(ck, n, "expected a size like \"25MiB\"");
	if (v == 0 || v > max)
		return config_check_fail(ck, n, "must be between 1 and %lld bytes", max);
	*out = v;
	return 0;
}

/* ASCII only, whatever the locale: these names end up in environment
 * variables, Redis keys and file names. */
static int is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static int is_alnum(char c)
{
	return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

int config_check_word(const char *s, const char *extra, int ident)
{
	if (!*s || (ident && is_digit(*s)))
		return 0;
	for (; *s; s++)
		if (!is_alnum(*s) && !strchr(extra, *s))
			return 0;
	return 1;
}
