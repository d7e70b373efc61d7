/* defcache: the pipeline definitions of recent runs, by run id. */
#include "queue/defcache.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct entry {
	char run[128];
	json_t *def; /* NULL: a free entry */
	uint64_t used;
};

/* A few dozen entries at most: a linear scan is as fast as anything else. */
struct defcache {
	size_t n;
	uint64_t clock;
	struct entry e[];
};

struct defcache *defcache_new(size_t runs)
{
	struct defcache *c = calloc(1, sizeof(*c) + (runs ? runs : 1) * sizeof(struct entry));
	if (c)
		c->n = runs ? runs : 1;
	return c;
}

void defcache_clear(struct defcache *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n; i++) {
		json_decref(c->e[i].def);
		c->e[i].def = NULL;
	}
}

void defcache_free(struct defcache *c)
{
	defcache_clear(c);
	free(c);
}

json_t *defcache_get(struct defcache *c, const char *run)
{
	for (size_t i = 0; i < c->n; i++) {
		struct entry *e = &c->e[i];
		if (e->def && strcmp(e->run, run) == 0) {
			e->used = ++c->clock;
			return json_incref(e->def);
		}
	}
	return NULL;
}

/* The entry of run if there is one, else a free one, else the one used
 * least recently. */
static struct entry *slot_for(struct defcache *c, const char *run)
{
	struct entry *victim = &c->e[0];

	for (size_t i = 0; i < c->n; i++) {
		if (c->e[i].def && strcmp(c->e[i].run, run) == 0)
			return &c->e[i];
	}
	for (size_t i = 0; i < c->n; i++) {
		if (!c->e[i].def)
			return &c->e[i];
		if (c->e[i].used < victim->used)
			victim = &c->e[i];
	}
	return victim;
}

void defcache_put(struct defcache *c, const char *run, json_t *def)
{
	/* A run id longer than an entry holds could not be told apart. */
	if (!def || strlen(run) >= sizeof(c->e[0].run))
		return;
	struct entry *e = slot_for(c, run);
	json_incref(def);
	json_decref(e->def);
	snprintf(e->run, sizeof(e->run), "%s", run);
	e->def = def;
	e->used = ++c->clock;
}
