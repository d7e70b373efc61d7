/* defcache: the pipeline definitions of the runs a worker claimed lately,
 * each decoded once.
 *
 * A run's definition never changes once intake has recorded it. Holding it,
 * the worker claims the run's next stages without it (claim.lua's
 * "have-def"), so a definition as large as its pipeline is neither encoded
 * by Redis nor decoded here again for every stage. The runs used last are
 * kept, DEFCACHE_RUNS of them.
 */
#ifndef SLUICE_DEFCACHE_H
#define SLUICE_DEFCACHE_H

#include <jansson.h>

#define DEFCACHE_RUNS 8

struct defcache;

struct defcache *defcache_new(void);
void defcache_free(struct defcache *c);
/* The definition of run as a new reference, or NULL when it is not held. */
json_t *defcache_get(struct defcache *c, const char *run);
/* Keeps def (taking a reference of its own) as the definition of run, in
 * place of the entry used least recently when the cache is full. */
void defcache_put(struct defcache *c, const char *run, json_t *def);

#endif
