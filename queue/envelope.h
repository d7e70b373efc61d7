/* envelope: CloudEvents 1.0 in structured JSON mode, the format of every
 * Kafka message sluice sends.
 *
 * Encoding fills specversion, a fresh id, time, and datacontenttype
 * application/json. Decoding validates the required attributes (specversion
 * "1.0", id, source, type non-empty strings; subject and time strings when
 * present, time in RFC 3339) and that data is a JSON object, and says
 * precisely what is wrong otherwise.
 */
#ifndef SLUICE_ENVELOPE_H
#define SLUICE_ENVELOPE_H

#include <jansson.h>
#include <stddef.h>

#include "lib/jsontext.h"

struct envelope {
	char *id;
	char *source;
	char *type;
	char *subject; /* NULL when absent */
	char *time;    /* NULL when absent */
	json_t *data;  /* a JSON object, owned */
};

/* Returns a malloc'd JSON text, or NULL. data is borrowed. */
char *envelope_encode(const char *source, const char *type, const char *subject,
		      const json_t *data);
/* The envelope from source on, after its specversion, id and time:
 * "source":…,"type":…,"subject":… (when not NULL),"datacontenttype":
 * "application/json","data": — data's value and the closing brace are the
 * caller's. For a text whose id and time another writes first (the events
 * intake.lua records: emit_prepared in queue/scripts/lib/events.lua). */
void envelope_write_rest(struct jsontext *t, const char *source, const char *type,
			 const char *subject);
int envelope_decode(const char *buf, size_t len, struct envelope *out, char *err, size_t errlen);
void envelope_clear(struct envelope *e);
/* data's "attempt" (a job's, a stage result's): a whole number from 1 to
 * INT_MAX, or -1 when it is none (absent, another type, out of range). */
int envelope_attempt(const json_t *data);

#endif
