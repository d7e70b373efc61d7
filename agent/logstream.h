/* logstream: a stage's log as Server-Sent Events, live.
 *
 * Each stream polls Redis (XRANGE after the last entry sent) every 100 ms
 * through the agent's shared asynchronous client, so an open stream never
 * holds the loop or the connection. Every line is one event whose id is the
 * log stream's entry id, so a client that reconnects with Last-Event-ID
 * misses nothing and gets nothing twice. When the stage has finished and
 * every line is sent, an "end" event carries its status and the stream
 * closes; a comment every 15 s keeps proxies from timing it out.
 */
#ifndef SLUICE_LOGSTREAM_H
#define SLUICE_LOGSTREAM_H

#include <jansson.h>

#include <event2/http.h>

struct agent;

/* Answers req with the log of stage of run from after the entry id after
 * ("" for the start): 404 (JSON) for an unknown run or stage, else the
 * event stream. The caller has checked that run and stage are path
 * segments and after an entry id. */
void logstream_start(struct agent *a, struct evhttp_request *req, const char *run,
		     const char *stage, const char *after);
/* The agent stops: every stream ends now. */
void logstream_stop_all(struct agent *a);

/* One log entry as the API shows it: {"id", "time", "stream", "line"},
 * time_ms as stored ("" or NULL when absent). A line that is not UTF-8 (one
 * stored before workers repaired them) is shown with U+FFFD for each bad
 * byte rather than left out. NULL when out of memory. */
json_t *logstream_line(const char *id, const char *time_ms, const char *stream, const char *line);

struct evbuffer;
/* Appends the event of one log entry to out: "id: ID\ndata: LINE\n\n", LINE
 * the object of logstream_line. -1 when out of memory. */
int logstream_add_line(struct evbuffer *out, const char *id, const char *time_ms,
		       const char *stream, const char *line);

#endif
