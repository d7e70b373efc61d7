/* reload: what SIGHUP changes in a running sluice-agent.
 *
 * sluice.yaml is read again: log_level (unless fixed on the command line),
 * the github settings (the token file is read again) and the pipelines
 * directory apply at once, the pipelines added, changed and
 * removed are logged; runs already created keep the definition they
 * recorded. Settings that only a restart applies (brokers, Redis, listen
 * address...) are reported and kept. Any error keeps the whole running
 * configuration and is logged with its file:line:column.
 */
#ifndef SLUICE_AGENT_RELOAD_H
#define SLUICE_AGENT_RELOAD_H

#include "agent/agent.h"

struct agent_reload {
	struct agent *agent;
	const char *config;  /* --config, or NULL */
	int listen_fixed;    /* --listen given: agent.listen is not the file's */
	int log_level_fixed; /* --log-level given: log_level is not the file's */
};

/* 0 when the new configuration is in force, -1 when it was refused. */
int agent_reload(const struct agent_reload *r);
/* The SIGHUP event's callback; arg is a struct agent_reload. */
void agent_reload_on_signal(evutil_socket_t sig, short what, void *arg);

#endif
