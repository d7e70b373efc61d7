/* config: sluice.yaml settings and pipeline files.
 *
 * Files are YAML (libyaml) or JSON, loaded into one jansson tree that
 * remembers where each node came from, and checked by one validator. Every
 * error names file:line:column and the key path, e.g.
 *   pipelines.d/app.yaml:12:9: stages.build.timeout: expected a duration like "10m"
 * Secret values are read from files and are never part of an error message.
 */
#ifndef SLUICE_CONFIG_H
#define SLUICE_CONFIG_H

#include <jansson.h>
#include <stddef.h>

/* Process settings (sluice.yaml). Every field has a default, so an empty or
 * absent file is valid. Relative paths are resolved against the file's
 * directory (or the working directory when there is no file). */
struct settings {
	char *brokers;		    /* kafka.brokers: "host:port,..." (after reading "@FILE") */
	char *topic_prefix;	    /* kafka.topic_prefix, default "sluice." */
	int session_timeout_ms;	    /* kafka.session_timeout, default 6s: how soon a dead
				     * consumer\'s partitions move to another */
	int fetch_wait_ms;	    /* kafka.fetch_wait, default 10ms: how long a fetch that
				     * finds no message waits at the broker */
	char *redis_url;	    /* redis.url, default "redis://127.0.0.1:6379" */
	char *redis_user;	    /* redis.user: AUTH's ACL user; NULL: the default user */
	char *redis_password_file;  /* redis.password_file; NULL: no AUTH */
	char *redis_password;	    /* what it holds, read by settings_load; never logged */
	char *key_prefix;	    /* redis.key_prefix, default "sluice:" */
	int redis_timeout_ms;	    /* redis.timeout, default 5s */
	char *listen;		    /* agent.listen, default "127.0.0.1:8080" */
	char *public_url;	    /* agent.public_url, default "http://" + listen, or
				     * "https://" with agent.tls_cert */
	int public_url_default;	    /* public_url is that default, not set in the file */
	size_t max_body;	    /* agent.max_body, default 25 MiB */
	size_t max_request_memory;  /* agent.max_request_memory, default 256 MiB (at least
				     * max_body): requests being received, all connections */
	int http_timeout_ms;	    /* agent.http_timeout, default 30s: a client that sends
				     * nothing for this long is dropped */
	int max_connections;	    /* agent.max_connections, default 1024: open at once;
				     * more wait in the listening socket's backlog */
	long long run_retention_ms; /* agent.run_retention, default 90d: runs that ended
				     * longer ago are removed; 0 ("forever"): kept */
	char *pipelines_dir;	    /* pipelines_dir, default "pipelines.d" */
	char *state_dir;	    /* worker.state_dir, default "/var/lib/sluice" */
	char *artifacts_dir;	    /* worker.artifacts_dir: $SLUICE_ARTIFACTS is <it>/<run>;
				     * NULL: <state_dir>/workspaces/<run>/.artifacts */
	int concurrency;	    /* worker.concurrency, default 1 */
	int kill_grace_ms;	    /* worker.kill_grace, default 10s */
	int checkout_timeout_ms;    /* worker.checkout_timeout, default 10m: the mirror's clone
				     * or fetch (waiting for another's included) and the
				     * workspace's checkout */
	int lease_ms;		    /* worker.lease, default 30s */
	int requeue_after_ms;	    /* agent.requeue_after, default 60s */
	int scheduler_ms;	    /* agent.scheduler_interval, default 500ms */
	int drain_timeout_ms;	    /* worker.drain_timeout, default 60s: how long SIGTERM waits */
	size_t log_cap;		    /* worker.log_cap, default 4 MiB of output kept per stage */
	char *metrics_listen; /* worker.metrics_listen: "IP:PORT" for GET /metrics; NULL: none */
	char *log_level;      /* log_level: debug, info (default), warn, error */

	/* Commit statuses (agent): posted only when github.token_file is set.
	 * github.api_url, default "https://api.github.com"; the back-off after
	 * a 5xx or network error starts at github.backoff (default 1s) and
	 * doubles up to github.backoff_max (default 5m); a status not posted
	 * within github.give_up_after (default 1h) is dropped. */
	char *github_api_url;
	char *github_token_file;
	int github_backoff_ms;
	int github_backoff_max_ms;
	int github_give_up_ms;

	/* Workspace removal: worker.workspace_ttl (default 24h) and
	 * worker.min_free, "10%" of the state dir's filesystem (default) or a
	 * size such as "5GiB"; exactly one of percent and bytes is non-zero. */
	long long workspace_ttl_ms;
	int min_free_percent;
	long long min_free_bytes;

	/* API access (agent/auth.h): api.tokens_file, lines "name role
	 * sha256hex"; NULL leaves the API open. api.public_reads: GETs need no
	 * token. agent.tls_cert and agent.tls_key (PEM files, both or neither):
	 * the listener speaks HTTPS. */
	char *tokens_file;
	int public_reads;
	char *tls_cert;
	char *tls_key;
};

/* path may be NULL: defaults only. "kafka.brokers: '@FILE'" is read here. */
int settings_load(const char *path, struct settings *s, char *err, size_t errlen);
/* agent.listen (or --listen), "host:port" or "[v6]:port", into host (at most
 * hostlen bytes with its NUL, SETTINGS_HOST_MAX will do) and port; -1 when
 * it is not one. */
#define SETTINGS_HOST_MAX 256
int settings_split_listen(const char *listen, char *host, size_t hostlen, unsigned short *port);
struct sockaddr;
/* worker.metrics_listen (or --metrics-listen), "IP:PORT" or "[v6]:PORT"
 * with a port from 1 to 65535, into *addr (*addrlen its size in, the
 * address's out); -1 when it is not one. */
int settings_parse_ip_port(const char *listen, struct sockaddr *addr, int *addrlen);
void settings_clear(struct settings *s);
/* agent.listen given on the command line: public_url follows it unless the
 * file sets it, as its default follows agent.listen. 0, or -1 out of memory. */
int settings_listen_on(struct settings *s, const char *listen);
/* --log-level given on the command line: the level in force, which a
 * reload keeps and reports, in place of the file's. 0, or -1 out of memory. */
int settings_log_level_on(struct settings *s, const char *level);
/* 1 when the setting named as in sluice.yaml ("redis.url") has different
 * values in a and b (for redis.password_file: its path or the password it
 * holds), 0 when not, -1 for a name it does not know. For reloads, to name
 * the settings that only a restart applies. */
int settings_differ(const struct settings *a, const struct settings *b, const char *key);
/* An error about a file a setting names, found after settings_load: writes
 * "path:line:col: key: message" into err, at the value of key ("a.b", as in
 * sluice.yaml) in the settings file path, and returns -1. */
int settings_fail_at(const char *path, const char *key, char *err, size_t errlen, const char *fmt,
		     ...) __attribute__((format(printf, 5, 6)));
/* The settings of the Kafka and Redis connections, which every process sets
 * up at start: only a restart applies them (for settings_differ). */
#define SETTINGS_CONNECTION_KEYS                                                                   \
	"kafka.brokers", "kafka.topic_prefix", "kafka.session_timeout", "kafka.fetch_wait",        \
	    "redis.url", "redis.user", "redis.password_file", "redis.key_prefix", "redis.timeout"

/* trigger.github.forks: what a pull request from another repository (a
 * fork, whose author need not be trusted) gets. */
enum pipeline_forks {
	PIPELINE_FORKS_NO_SECRETS, /* a run without the pipeline's secrets (default) */
	PIPELINE_FORKS_SKIP,	   /* no run */
	PIPELINE_FORKS_SECRETS	   /* a run like any other pull request's */
};

struct pipeline_def {
	json_t *def;
	char *text;
};

/* A pipeline file, validated. The normalized definition (def) is what a run
 * records at creation and what workers execute, so a run never changes when
 * the file does:
 *   {"name": "app",
 *    "vars": {"K": "v", ...},
 *    "secrets": {"NAME": "/abs/path/to/file", ...},
 *    "checkout": {"url": "file:///srv/git/app"}          (absent: the payload's clone_url)
 *    "stages": {"build": {"kind": "build", "run": ["make", "${SLUICE_SHA}"],
 *                          "needs": [], "timeout": 3600}, ...}}   (file order, timeout in s)
 * A stage has exactly one of "run" (argv), "sh" (a script for /bin/sh -e -c)
 * and "http" ({"method", "url", "headers": {}, "body"?, "expect"? (absent:
 * any 2xx), "timeout_ms", "retries", "backoff_ms", "ca_file"?}); optional
 * "inherit_env" (names), "log_cap" (bytes) and "when" (config/when.h). A
 * pipeline with environments also has "environments" and a stage
 * "deploy@<env>" for each of them (config/environments.h).
 */
/* Whether kind is one a stage may have (build, test, scan, push, deploy):
 * each has its job topic, <prefix>jobs.<kind>. */
int pipeline_is_kind(const char *kind);

/* The longest stage or environment name: a worker takes no job whose stage
 * name ("deploy@<env>" for an environment) is 128 bytes or longer. */
#define PIPELINE_STAGE_NAME_MAX 64

/* The most stages a run may have, its environments' deployments included:
 * a cancel or a retry goes through all of them in one script, which holds
 * Redis meanwhile (queue/scripts/cancel.lua, retry_run.lua). With tens of
 * thousands that takes seconds, every worker and request waiting, and the
 * agent's command timeout runs out: it answers 503 to a change it made. */
#define PIPELINE_STAGES_MAX 4096

struct pipeline {
	char *name; /* "name:" or the file name without extension */
	char *file;
	char *repository; /* trigger.github.repository, "owner/name" */
	json_t *events;	  /* trigger.github.events: array of strings, default ["push"] */
	json_t *branches; /* trigger.github.branches: array of globs, NULL = every branch */
	json_t *tags;	  /* trigger.github.tags: array of globs, NULL = no tag */
	char *secret;	  /* the webhook secret, read from trigger.github.secret_file */
	json_t *def;	  /* normalized definition, owned */
	char *def_text;	  /* def as compact JSON, what each run records */
	enum pipeline_forks forks; /* trigger.github.forks */
	/* What a pull request's run records: def without its environments, for
	 * a change is deployed once merged, not while it is proposed; and for
	 * one from a fork under PIPELINE_FORKS_NO_SECRETS, without secrets. */
	struct pipeline_def pull, fork;
};

struct pipeline_set {
	struct pipeline *items;
	size_t n;
};

/* The definition a run records: p's own (def, def_text) for a push, a tag
 * or a trigger; p->pull or p->fork for a pull request (pull_request,
 * from_fork). */
struct pipeline_def pipeline_run_def(const struct pipeline *p, int pull_request, int from_fork);

int pipeline_load_file(const char *path, struct pipeline *p, char *err, size_t errlen);
/* A pipeline file's text received from elsewhere, named name in messages;
 * relative paths start from dir as if the file were there. */
int pipeline_load_text(const char *name, const char *dir, const char *text, size_t len,
		       struct pipeline *p, char *err, size_t errlen);
/* As pipeline_load_text, but the files the pipeline names are not opened
 * (the API's validate: its answer must not tell the sender which files the
 * agent can read); p has no webhook secret. */
int pipeline_check_text(const char *name, const char *dir, const char *text, size_t len,
			struct pipeline *p, char *err, size_t errlen);
void pipeline_clear(struct pipeline *p);
/* Every *.yaml, *.yml and *.json file of dir, in name order; names must be unique. */
int pipelines_load_dir(const char *dir, struct pipeline_set *set, char *err, size_t errlen);
void pipelines_clear(struct pipeline_set *set);

/* "90", "90s", "10m", "1h30m", "250ms" → milliseconds; -1 when malformed. */
long long config_parse_duration_ms(const char *text);
/* ms as a person would write it: whole days as "N days" (rounded down),
 * below a day the largest unit that divides it ("5m", "90s", "250ms"). */
void config_format_duration(long long ms, char *buf, size_t len);

#endif
