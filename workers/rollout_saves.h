/* rollout_saves: the saves a deployment's attempt makes of its state
 * (rollout_save.lua), each with the deploy.step event of its change.
 *
 * They are sent in order, one at a time, and each is sent again, with
 * back-off, until Redis answers it: a save made while Redis is away lands
 * once it is back, its event with it, before the saves after it. Each save
 * is numbered (the rollout_saves in the process, the save in it), so that
 * one sent again after its answer was lost changes nothing. A save answered "fenced" (the attempt
 * is no longer this worker's) drops the rest. The stage's last script (its outcome, a park, a
 * hand-back) waits for them (rollout_saves_wait): it would fence off any save behind it.
 */
#ifndef SLUICE_ROLLOUT_SAVES_H
#define SLUICE_ROLLOUT_SAVES_H

struct worker;
struct rollout_saves;

/* The saves of one attempt; NULL when out of memory. */
struct rollout_saves *rollout_saves_new(struct worker *w, const char *run, const char *stage,
					int attempt);
/* Queues a save: the state (JSON text), its event's type and data (or NULL)
 * and the operator's command acted on ("" for none), copied. -1 when out
 * of memory (the save is lost, as when its attempt ends first). */
int rollout_saves_add(struct rollout_saves *s, const char *state, const char *type,
		      const char *data, const char *command);
/* 1 when saves wait for an answer: then(arg) follows once every one has
 * been answered (one continuation at a time; a new one replaces it). 0,
 * and no call, when none waits. Unless even_offline, a save Redis does not
 * answer ends the wait too, the saves left dropped: what waits would fail
 * as well (a hand-back), and must not hold up a worker stopping. */
int rollout_saves_wait(struct rollout_saves *s, int even_offline, void (*then)(void *arg),
		       void *arg);
/* Drops the saves not answered yet; an answer on its way finds nothing. */
void rollout_saves_free(struct rollout_saves *s);

#endif
