/* jobs: job envelopes for sluice.jobs.<kind>. */
#include "queue/jobs.h"

#include <stdio.h>
#include <stdlib.h>

#include "queue/envelope.h"

json_t *jobs_prepare(const struct settings *s, const char *run, const char *stage, const char *kind,
		     int attempt)
{
	char topic[256], subject[512];
	snprintf(topic, sizeof(topic), "%sjobs.%s", s->topic_prefix, kind);
	snprintf(subject, sizeof(subject), "runs/%s/stages/%s/attempts/%d", run, stage, attempt);

	json_t *data = json_pack("{s:s,s:s,s:i,s:s}", "run", run, "stage", stage, "attempt",
				 attempt, "kind", kind);
	char *value =
	    data ? envelope_encode("sluice-agent", "dev.sluice.job.requested", subject, data)
		 : NULL;
	json_decref(data);
	if (!value)
		return NULL;
	json_t *job = json_pack("{s:s,s:s}", "topic", topic, "value", value);
	free(value);
	return job;
}
