/* Fuzz target: ${VAR} expansion in each of its modes.
 *
 * Input: "TEMPLATE\0VALUE": the template is expanded with a few variables,
 * one of which (PAYLOAD, as a branch name from a webhook) holds VALUE.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "stages/expand.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data;
	const char *nul = memchr(p, '\0', size);
	char *tmpl = strndup(p, nul ? (size_t)(nul - p) : size);
	char *value = nul ? strndup(nul + 1, size - (size_t)(nul + 1 - p)) : strdup("");
	json_t *vars = json_object();
	char err[256];

	if (!tmpl || !value || !vars)
		goto out;
	/* json_string refuses invalid UTF-8; a stage's vars are always valid. */
	json_t *v = json_string(value);
	json_object_set_new(vars, "PAYLOAD", v ? v : json_string("main"));
	json_object_set_new(vars, "SLUICE_SHA",
			    json_string("0123456789abcdef0123456789abcdef01234567"));
	json_object_set_new(vars, "A", json_string(""));
	json_object_set_new(vars, "x.y-z", json_string("/?#%&=${A}"));
	for (int mode = EXPAND_PLAIN; mode <= EXPAND_URL; mode++) {
		char *out = NULL;
		if (expand_text(tmpl, vars, (enum expand_mode)mode, &out, err, sizeof(err)) == 0)
			free(out);
	}
out:
	json_decref(vars);
	free(tmpl);
	free(value);
	return 0;
}
