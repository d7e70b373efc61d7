/* logmask: what of a stage's output reaches its log.
 *
 * Every line passes through here before it is stored: each secret value, its
 * standard base64 form and the forms an http: request carries it in
 * (percent-encoded, JSON-escaped) is replaced by "[masked]"; stdout and
 * stderr lines beyond the stage's cap are counted, not stored, and
 * logmask_finish says how many were dropped. Each line counts
 * LOGMASK_LINE_COST bytes toward the cap beside its own, what storing it takes besides its text
 * (its entry's id, time and stream), so that empty lines reach the cap too. Masking is per line: a
 * secret split across writes is masked once its line is whole; a line longer than the reader's
 * piece size arrives in pieces, and a secret straddling two pieces is masked too (the end of a
 * piece is held back until the next one). Secrets shorter than LOGMASK_MIN_SECRET bytes are not
 * masked: they would hit too often.
 */
#ifndef SLUICE_LOGMASK_H
#define SLUICE_LOGMASK_H

#include <stddef.h>

#define LOGMASK_MIN_SECRET 4
#define LOGMASK_LINE_COST  32

enum logmask_stream { LOGMASK_STDOUT, LOGMASK_STDERR, LOGMASK_SYSTEM };

/* Receives every line to store, already masked. */
typedef void (*logmask_emit_cb)(enum logmask_stream s, const char *line, size_t len, void *arg);

struct logmask;

/* cap: bytes of stdout and stderr lines kept, LOGMASK_LINE_COST more for
 * each (system lines are not counted and always kept). piece: a
 * stdout/stderr line of exactly this length is a piece of a longer line that
 * continues in the next one of its stream (0: lines are always whole). */
struct logmask *logmask_new(size_t cap, size_t piece, logmask_emit_cb emit, void *arg);
/* The value itself, each of its lines, its base64 forms (alone, and as it
 * would appear inside a longer base64 stream at each of the three byte
 * alignments, where that form is at least 8 characters long) and its
 * EXPAND_URL and EXPAND_JSON forms (expand_encode). Returns 0, 1
 * when the value is too short to be masked, -1 when out of memory. */
int logmask_add_secret(struct logmask *m, const char *value, size_t len);
void logmask_line(struct logmask *m, enum logmask_stream s, const char *line, size_t len);
/* The masked copy of text (malloc'd, NUL-terminated); NULL when out of memory. */
char *logmask_text(const struct logmask *m, const char *text);
/* Emits held-back pieces and, when the cap was reached, the system line
 * "[N lines (M bytes) dropped: log cap of 4 MiB reached]". Once only. */
void logmask_finish(struct logmask *m);
/* Wipes the patterns before freeing them. */
void logmask_free(struct logmask *m);

#endif
