/* regreport: what a lifecycle run decided and did, as a table for people or
 * as one JSON object (--json).
 *
 * The table has a row per tag and per manifest without tag: action (keep,
 * delete, untag, forget), tag, full digest, created time (UTC), result
 * (planned in a dry run; deleted, gone, unsupported or failed otherwise)
 * and the reason. A last line sums it up.
 */
#ifndef SLUICE_REGREPORT_H
#define SLUICE_REGREPORT_H

#include <stdio.h>

#include "registry/regargs.h"
#include "registry/regpolicy.h"

struct regreport {
	const struct regargs *args;
	const char *registry; /* as messages show it */
	const char *state_file;
	const struct regpolicy_plan *plan;
	int state_saved;
};

/* 0, or -1 on a write error. */
int regreport_table(const struct regreport *r, FILE *out);
int regreport_json(const struct regreport *r, FILE *out);

#endif
