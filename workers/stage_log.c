/* stage_log: log lines to Redis, and the children's output held while too
 * many of them are unanswered. */
#include "workers/stage_log.h"

#include <stdio.h>
#include <stdlib.h>

#include "lib/clock.h"
#include "lib/utf8.h"
#include "stages/process.h"
#include "workers/worker.h"

struct log_write {
	struct worker *w;
	size_t cost;
};

static void on_written(struct redis *r, redisReply *reply, const char *err, void *arg)
{
	struct log_write *lw = arg;
	struct worker *w = lw->w;
	(void)r;
	(void)reply;
	(void)err;

	w->log_in_flight -= lw->cost;
	free(lw);
	if (w->log_held && w->log_in_flight <= STAGE_LOG_RELEASE_BYTES) {
		w->log_held = 0;
		process_hold_output(0);
	}
}

void stage_log_write(struct worker *w, const char *run, const char *stage, enum logmask_stream s,
		     const char *line, size_t len)
{
	static const char *const names[] = {"stdout", "stderr", "system"};
	struct log_write *lw = malloc(sizeof(*lw));
	char t[32], *repaired = NULL;

	if (lw == NULL || utf8_repair(line, len, &repaired, &len) < 0) {
		free(lw);
		return;
	}
	lw->w = w;
	lw->cost = len + STAGE_LOG_WRITE_COST;
	snprintf(t, sizeof(t), "%lld", (long long)clock_now_ms());
	/* Never trimmed: log_cap bounds each attempt's lines, and a trim would
	 * drop the first lines of a log within its cap, or an earlier
	 * attempt's. */
	if (redis_command(w->redis, on_written, lw, "XADD %slog:%s:%s * t %s s %s l %b",
			  w->settings.key_prefix, run, stage, t, names[s],
			  repaired ? repaired : line, len) < 0) {
		free(lw);
		free(repaired);
		return;
	}
	free(repaired);
	w->log_in_flight += lw->cost;
	if (!w->log_held && w->log_in_flight > STAGE_LOG_HOLD_BYTES) {
		w->log_held = 1;
		process_hold_output(1);
	}
}
