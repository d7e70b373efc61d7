/* request: url and header templates of HTTP requests, expanded. */
#include "stages/request.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config/doc.h"
#include "lib/curlev.h"
#include "lib/curlreq.h"
#include "stages/expand.h"

int request_method_known(const char *method)
{
	static const char *const methods[] = {"GET",   "HEAD",	 "POST",    "PUT",
					      "PATCH", "DELETE", "OPTIONS", NULL};

	for (const char *const *m = methods; *m; m++)
		if (strcasecmp(method, *m) == 0)
			return 1;
	return 0;
}

int request_url_form(const char *tmpl)
{
	return strncmp(tmpl, "${", 2) == 0 || strncasecmp(tmpl, "http://", 7) == 0 ||
	       strncasecmp(tmpl, "https://", 8) == 0;
}

static int has_control(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return 1;
	return 0;
}

int request_url(const char *tmpl, const json_t *vars, char **url, char *shown, size_t shownlen,
		char *err, size_t errlen)
{
	char why[256];

	if (expand_text(tmpl, vars, EXPAND_URL, url, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "url: %s", why);
		return -1;
	}
	if (has_control(*url) || strchr(*url, ' ')) {
		snprintf(err, errlen, "url: holds a space or a control character");
		return -1;
	}
	if (curlev_show_url(*url, shown, shownlen, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "url: %s", why);
		return -1;
	}
	return 0;
}

int request_headers(const json_t *headers, const json_t *vars, struct curl_slist **list,
		    char **content_type, char *err, size_t errlen)
{
	char *type = NULL;
	const char *name;
	json_t *tmpl;

	json_object_foreach((json_t *)headers, name, tmpl)
	{
		char *value = NULL, why[256];
		if (expand_text(json_string_value(tmpl), vars, EXPAND_PLAIN, &value, why,
				sizeof(why)) < 0) {
			snprintf(err, errlen, "headers.%s: %s", name, why);
			goto fail;
		}
		if (has_control(value)) {
			free(value);
			snprintf(err, errlen, "headers.%s: the value holds a line break", name);
			goto fail;
		}
		if (curlreq_header(list, "%s: %s", name, value) < 0) {
			free(value);
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
		if (strcasecmp(name, "Content-Type") == 0) {
			free(type);
			type = value;
		} else {
			free(value);
		}
	}
	if (content_type)
		*content_type = type;
	else
		free(type);
	return 0;
fail:
	free(type);
	return -1;
}

static int request_template(const struct config_doc_node *n,
			    int (*f)(const struct config_doc_node *n, void *arg), void *arg)
{
	return n && json_is_string(n->value) ? f(n, arg) : 0;
}

int request_templates(const struct config_doc_node *req,
		      int (*f)(const struct config_doc_node *n, void *arg), void *arg)
{
	const struct config_doc_node *headers = config_doc_get(req, "headers"), *c;

	if (request_template(config_doc_get(req, "url"), f, arg) < 0)
		return -1;
	for (c = headers ? headers->first : NULL; c; c = c->next)
		if (request_template(c, f, arg) < 0)
			return -1;
	return request_template(config_doc_get(req, "body"), f, arg);
}
