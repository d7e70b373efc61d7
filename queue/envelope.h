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
int envelope_decode(const char *buf, size_t len, struct envelope *out, char *err, size_t errlen);
void envelope_clear(struct envelope *e);

#endif
