/* stage_log: a stage's log lines on their way to its Redis stream
 * (log:<run>:<stage>, one XADD a line), and the back-pressure they put on
 * the worker's children.
 *
 * A command can print lines faster than Redis stores them. Rather than
 * queue writes without bound, each held in memory with its deadline until
 * Redis answers (until they time out, the connection drops and the leases'
 * renewals fail with it), the worker stops reading its children's output
 * (process_hold_output) while more than STAGE_LOG_HOLD_BYTES of writes are
 * unanswered, and reads it again once they are down to
 * STAGE_LOG_RELEASE_BYTES. A write counts its line and STAGE_LOG_WRITE_COST
 * for what it holds besides.
 *
 * A line Redis did not take (not connected, connection lost, timed out, or
 * refused for now: redis_err_passing) is kept, with every line written
 * after it, and they are all sent again after a back-off, in order, until
 * Redis takes them; they count as unanswered meanwhile, so a long outage
 * holds the children's output. A line Redis refuses for good (an error
 * reply) is logged and dropped. A line whose answer was lost after Redis
 * stored it (a timeout) is stored twice.
 */
#ifndef SLUICE_STAGE_LOG_H
#define SLUICE_STAGE_LOG_H

#include <stddef.h>

#include "stages/logmask.h"

#define STAGE_LOG_HOLD_BYTES	(1024 * 1024)
#define STAGE_LOG_RELEASE_BYTES (256 * 1024)
#define STAGE_LOG_WRITE_COST	256

struct worker;

/* Appends line to the log of run's stage, with the time and stream. Stored
 * as UTF-8 without NUL bytes (utf8_repair), so that every reader can show
 * it: a command may print anything. */
void stage_log_write(struct worker *w, const char *run, const char *stage, enum logmask_stream s,
		     const char *line, size_t len);
/* Whether lines of run's stage wait for Redis: its outcome is recorded
 * after them, as a reader of its log takes the outcome for the end of its
 * lines. */
int stage_log_waiting(const struct worker *w, const char *run, const char *stage);
/* Drops the lines still waiting (logged). After redis_free, which fails
 * the writes in flight. */
void stage_log_free(struct worker *w);

#endif
