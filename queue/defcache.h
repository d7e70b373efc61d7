/* defcache: the pipeline definitions of the runs a process worked on
 * lately, each decoded once, kept as its user wants them (any JSON value).
 *
 * A run's definition never changes once intake has recorded it. Holding it,
 * a worker claims the run's next stages without it (claim.lua's
 * "have-def"), and the agent routes a stage's result without reading it
 * (agent/router.c keeps it with the skeleton route.lua is given), so a
 * definition as large as its pipeline is neither sent by Redis nor decoded
 * again for every stage. The runs used last are kept, as many as the cache
 * was made for.
 */
#ifndef SLUICE_DEFCACHE_H
#define SLUICE_DEFCACHE_H

#include <jansson.h>
#include <stddef.h>

/* The worker's: the runs it claims stages of at once are few. */
#define DEFCACHE_RUNS 8

struct defcache;

/* A cache of runs entries (at least one); NULL when out of memory. */
struct defcache *defcache_new(size_t runs);
void defcache_free(struct defcache *c);
/* Forgets every entry (references others hold stay valid); NULL: nothing. */
void defcache_clear(struct defcache *c);
/* What is kept for run, as a new reference, or NULL when nothing is. */
json_t *defcache_get(struct defcache *c, const char *run);
/* Keeps def (taking a reference of its own; nothing when NULL) for run, in
 * place of the entry used least recently when the cache is full. */
void defcache_put(struct defcache *c, const char *run, json_t *def);

#endif
