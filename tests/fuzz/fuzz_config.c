/* Fuzz target: the configuration loader on any file text.
 *
 * Each input is loaded as a YAML/JSON document, as a pipeline file (its
 * secret_file resolved in a scratch directory holding "secret"), and as
 * sluice.yaml (written there first, since settings are only read from a
 * file).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"
#include "config/doc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[4096];
static char settings_path[4200];

static int scratch(void)
{
	if (dir[0])
		return 0;
	/* Under $TMPDIR, which run.sh points into its work directory. */
	const char *tmp = getenv("TMPDIR");
	snprintf(dir, sizeof(dir), "%s/sluice-fuzz-config-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(dir))
		return -1;
	char path[4200];
	snprintf(path, sizeof(path), "%s/secret", dir);
	FILE *f = fopen(path, "w");
	if (!f)
		return -1;
	fputs("It's a Secret to Everybody\n", f);
	fclose(f);
	snprintf(settings_path, sizeof(settings_path), "%s/sluice.yaml", dir);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config_doc doc;
	struct pipeline p;
	struct settings s;
	char err[512];

	if (scratch() < 0)
		abort();
	if (config_doc_load_text(&doc, "fuzz.yaml", (const char *)data, size, err, sizeof(err)) ==
	    0)
		config_doc_clear(&doc);
	if (pipeline_load_text("fuzz.yaml", dir, (const char *)data, size, &p, err, sizeof(err)) ==
	    0)
		pipeline_clear(&p);
	FILE *f = fopen(settings_path, "w");
	if (!f)
		abort();
	fwrite(data, 1, size, f);
	fclose(f);
	if (settings_load(settings_path, &s, err, sizeof(err)) == 0)
		settings_clear(&s);
	return 0;
}
