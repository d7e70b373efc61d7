/* settings: sluice.yaml, the process settings of agent and worker. */
#include "config/config.h"

#include <errno.h>
#include <event2/util.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/check.h"
#include "config/doc.h"
#include "config/file.h"
#include "queue/kafka.h"
#include "queue/redis.h"

/* Upper bounds that keep the int and size_t fields meaningful. */
#define MAX_DURATION_MS ((long long)INT_MAX)
#define MAX_BODY_BYTES	(1LL << 30)
/* agent.max_request_memory at most, and its default. */
#define MAX_REQUEST_MEMORY     (1LL << 40)
#define DEFAULT_REQUEST_MEMORY (256LL << 20)
#define MAX_CONCURRENCY	       1024
/* agent.max_connections at most: the open-files limit stops it well before. */
#define MAX_CONNECTIONS	   1000000
#define MAX_SETTING_STRING 4096
/* librdkafka's bound on fetch.wait.max.ms. */
#define MAX_FETCH_WAIT_MS      300000
#define MAX_STATE_DIR	       512
#define MIN_SESSION_TIMEOUT_MS 1000
#define MAX_SESSION_TIMEOUT_MS 3600000
/* A lease is renewed every third of it: under a second, renewals would
 * follow each other closer than a Redis round trip may take. */
#define MIN_LEASE_MS 1000
/* Prefixes of every Redis key and Kafka topic name. */
#define MAX_PREFIX 64
/* "@FILE" holds a broker list, not a document. */
#define MAX_BROKERS_FILE 65536
/* redis.password_file holds one line. */
#define MAX_PASSWORD_FILE 4096

static const char *const top_keys[] = {"kafka",	    "redis",  "agent", "worker", "pipelines_dir",
				       "log_level", "github", "api",   NULL};
static const char *const kafka_keys[] = {"brokers", "topic_prefix", "session_timeout", "fetch_wait",
					 NULL};
static const char *const redis_keys[] = {"url",	       "user",	  "password_file",
					 "key_prefix", "timeout", NULL};
static const char *const agent_keys[] = {
    "listen",  "public_url",   "max_body",	  "requeue_after", "scheduler_interval", "tls_cert",
    "tls_key", "http_timeout", "max_connections", "run_retention", "max_request_memory", NULL};
static const char *const api_keys[] = {"tokens_file", "public_reads", NULL};
static const char *const worker_keys[] = {"state_dir",	   "concurrency",      "kill_grace",
					  "lease",	   "drain_timeout",    "workspace_ttl",
					  "min_free",	   "log_cap",	       "metrics_listen",
					  "artifacts_dir", "checkout_timeout", NULL};
static const char *const github_keys[] = {"api_url",	 "token_file",	  "backoff",
					  "backoff_max", "give_up_after", NULL};
static const char *const log_levels[] = {"debug", "info", "warn", "error", NULL};

static int set_defaults(struct settings *s)
{
	memset(s, 0, sizeof(*s));
	s->brokers = strdup("127.0.0.1:9092");
	s->topic_prefix = strdup("sluice.");
	s->redis_url = strdup("redis://127.0.0.1:6379");
	s->key_prefix = strdup("sluice:");
	s->listen = strdup("127.0.0.1:8080");
	s->pipelines_dir = strdup("pipelines.d");
	s->state_dir = strdup("/var/lib/sluice");
	s->redis_timeout_ms = 5000;
	s->max_body = 25u * 1024 * 1024;
	s->max_request_memory = (size_t)DEFAULT_REQUEST_MEMORY;
	s->http_timeout_ms = 30000;
	s->max_connections = 1024;
	s->run_retention_ms = 90LL * 24 * 3600 * 1000;
	s->concurrency = 1;
	s->kill_grace_ms = 10000;
	s->checkout_timeout_ms = 10 * 60 * 1000;
	s->lease_ms = 30000;
	s->session_timeout_ms = 6000;
	s->fetch_wait_ms = 10;
	s->requeue_after_ms = 60000;
	s->scheduler_ms = 500;
	s->drain_timeout_ms = 60000;
	s->log_cap = 4u * 1024 * 1024;
	s->workspace_ttl_ms = 24LL * 3600 * 1000;
	s->min_free_percent = 10;
	s->log_level = strdup("info");
	s->github_api_url = strdup("https://api.github.com");
	s->github_backoff_ms = 1000;
	s->github_backoff_max_ms = 5 * 60 * 1000;
	s->github_give_up_ms = 3600 * 1000;
	if (!s->github_api_url || !s->brokers || !s->topic_prefix || !s->redis_url ||
	    !s->key_prefix || !s->listen || !s->pipelines_dir || !s->state_dir || !s->log_level)
		return -1;
	return 0;
}

static int replace(char **field, const char *value)
{
	char *copy = strdup(value);

	if (!copy)
		return -1;
	free(*field);
	*field = copy;
	return 0;
}

static int load_string(const struct config_check *ck, const struct config_doc_node *map,
		       const char *key, int allow_empty, char **field)
{
	const struct config_doc_node *n = config_doc_get(map, key);
	const char *v;

	if (!n)
		return 0;
	if (config_check_string(ck, n, allow_empty, &v) < 0)
		return -1;
	/* Every setting string is a path, URL, address or name: none needs a
	 * control character, and one would only garble logs and messages. */
	for (const char *c = v; *c; c++) {
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			return config_check_fail(ck, n, "control character at byte %td", c - v);
	}
	if (strlen(v) > MAX_SETTING_STRING)
		return config_check_fail(ck, n, "longer than %d bytes", MAX_SETTING_STRING);
	if (replace(field, v) < 0)
		return config_check_fail(ck, n, "out of memory");
	return 0;
}

static int load_duration(const struct config_check *ck, const struct config_doc_node *map,
			 const char *key, int *field)
{
	const struct config_doc_node *n = config_doc_get(map, key);
	long long ms;

	if (!n)
		return 0;
	if (config_check_duration_ms(ck, n, MAX_DURATION_MS, &ms) < 0)
		return -1;
	*field = (int)ms;
	return 0;
}

/* "@FILE": the broker list lives in a file, e.g. a systemd credential. */
static int read_brokers(const struct config_check *ck, const struct config_doc_node *n,
			const char *dir, char **brokers)
{
	char *path = config_file_resolve(dir, *brokers + 1);
	char *buf = NULL, *start, *end;
	size_t len;
	int rc = -1;

	if (!path)
		return config_check_fail(ck, n, "out of memory");
	if (config_file_read(path, MAX_BROKERS_FILE, &buf, &len) < 0) {
		config_check_fail(ck, n, "cannot read \"%s\": %s", path, strerror(errno));
		goto done;
	}
	start = buf + strspn(buf, " \t\r\n");
	end = start + strcspn(start, "\r\n");
	while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	*end = '\0';
	if (!*start) {
		config_check_fail(ck, n, "file \"%s\" is empty", path);
		goto done;
	}
	if (replace(brokers, start) < 0) {
		config_check_fail(ck, n, "out of memory");
		goto done;
	}
	rc = 0;
done:
	free(buf);
	free(path);
	return rc;
}

static int load_kafka(const struct config_check *ck, const struct config_doc_node *top,
		      const char *dir, struct settings *s)
{
	const struct config_doc_node *m = config_doc_get(top, "kafka");

	if (!m)
		return 0;
	if (config_check_keys(ck, m, kafka_keys) < 0 ||
	    load_string(ck, m, "brokers", 0, &s->brokers) < 0 ||
	    load_string(ck, m, "topic_prefix", 1, &s->topic_prefix) < 0 ||
	    load_duration(ck, m, "session_timeout", &s->session_timeout_ms) < 0 ||
	    load_duration(ck, m, "fetch_wait", &s->fetch_wait_ms) < 0)
		return -1;
	if (s->fetch_wait_ms > MAX_FETCH_WAIT_MS)
		return config_check_fail(ck, config_doc_get(m, "fetch_wait"), "at most 5m");
	/* librdkafka refuses a session.timeout.ms outside 1..3600000, and a
	 * heartbeat every third of a session under a second is all churn. */
	if (s->session_timeout_ms < MIN_SESSION_TIMEOUT_MS ||
	    s->session_timeout_ms > MAX_SESSION_TIMEOUT_MS)
		return config_check_fail(ck, config_doc_get(m, "session_timeout"),
					 "must be from 1s to 1h");
	if (strspn(s->topic_prefix, KAFKA_TOPIC_CHARS) != strlen(s->topic_prefix) ||
	    strlen(s->topic_prefix) > MAX_PREFIX)
		return config_check_fail(ck, config_doc_get(m, "topic_prefix"),
					 "use at most %d letters, digits, '.', '_' and '-'",
					 MAX_PREFIX);
	if (s->brokers[0] == '@')
		return read_brokers(ck, config_doc_get(m, "brokers"), dir, &s->brokers);
	return 0;
}

/* Read here, where the key's position is known: the agent and each worker
 * load their settings themselves, so a credential is found in the
 * environment of the process that connects. */
static int read_redis_password(const struct config_check *ck, const struct config_doc_node *n,
			       const char *dir, struct settings *s)
{
	char *path = config_file_resolve(dir, s->redis_password_file);

	if (!path)
		return config_check_fail(ck, n, "out of memory");
	free(s->redis_password_file);
	s->redis_password_file = path;
	path = config_file_expand(s->redis_password_file);
	if (!path)
		return config_check_fail(ck, n, "\"%s\": %s", s->redis_password_file,
					 config_file_expand_error(errno));
	s->redis_password = config_file_read_token(path, MAX_PASSWORD_FILE);
	int e = errno;
	free(path);
	if (!s->redis_password)
		return config_check_fail(ck, n, "\"%s\": %s", s->redis_password_file,
					 e == EBADMSG ? "must hold the password on one line"
						      : strerror(e));
	return 0;
}

static int load_redis(const struct config_check *ck, const struct config_doc_node *top,
		      const char *dir, struct settings *s)
{
	const struct config_doc_node *m = config_doc_get(top, "redis");
	const struct config_doc_node *n;

	if (!m)
		return 0;
	if (config_check_keys(ck, m, redis_keys) < 0 ||
	    load_string(ck, m, "url", 0, &s->redis_url) < 0 ||
	    load_string(ck, m, "user", 0, &s->redis_user) < 0 ||
	    load_string(ck, m, "password_file", 0, &s->redis_password_file) < 0 ||
	    load_string(ck, m, "key_prefix", 1, &s->key_prefix) < 0 ||
	    load_duration(ck, m, "timeout", &s->redis_timeout_ms) < 0)
		return -1;
	if (strlen(s->key_prefix) > MAX_PREFIX)
		return config_check_fail(ck, config_doc_get(m, "key_prefix"),
					 "longer than %d bytes", MAX_PREFIX);
	n = config_doc_get(m, "url");
	switch (n ? redis_url_check(s->redis_url) : 0) {
	case REDIS_URL_CREDENTIALS:
		return config_check_fail(ck, n,
					 "no user or password here, where logs would show them: "
					 "give them as redis.user and redis.password_file");
	case REDIS_URL_MALFORMED:
		return config_check_fail(ck, n, "expected redis://HOST:PORT or unix:/PATH");
	}
	if (s->redis_user && !s->redis_password_file)
		return config_check_fail(ck, config_doc_get(m, "user"),
					 "needs redis.password_file, the user's password");
	if (s->redis_password_file)
		return read_redis_password(ck, config_doc_get(m, "password_file"), dir, s);
	return 0;
}

static int load_agent(const struct config_check *ck, const struct config_doc_node *top,
		      struct settings *s)
{
	const struct config_doc_node *m = config_doc_get(top, "agent");
	const struct config_doc_node *n;
	char host[SETTINGS_HOST_MAX];
	unsigned short port;
	long long v;

	if (!m)
		return 0;
	if (config_check_keys(ck, m, agent_keys) < 0 ||
	    load_string(ck, m, "listen", 0, &s->listen) < 0 ||
	    load_string(ck, m, "public_url", 0, &s->public_url) < 0 ||
	    load_duration(ck, m, "requeue_after", &s->requeue_after_ms) < 0 ||
	    load_duration(ck, m, "scheduler_interval", &s->scheduler_ms) < 0 ||
	    load_duration(ck, m, "http_timeout", &s->http_timeout_ms) < 0 ||
	    load_string(ck, m, "tls_cert", 0, &s->tls_cert) < 0 ||
	    load_string(ck, m, "tls_key", 0, &s->tls_key) < 0)
		return -1;
	/* Checked here, where its position is known, not once the agent has
	 * connected to everything else and binds. */
	n = config_doc_get(m, "listen");
	if (n && settings_split_listen(s->listen, host, sizeof(host), &port) < 0)
		return config_check_fail(ck, n, "expected HOST:PORT, such as 127.0.0.1:8080");
	if (!s->tls_cert != !s->tls_key)
		return config_check_fail(ck, m, "tls_cert and tls_key go together");
	if (s->http_timeout_ms < 1000)
		return config_check_fail(ck, config_doc_get(m, "http_timeout"), "at least 1s");
	n = config_doc_get(m, "max_body");
	if (n) {
		if (config_check_size(ck, n, MAX_BODY_BYTES, &v) < 0)
			return -1;
		s->max_body = (size_t)v;
	}
	/* Unless given, enough for one body of the largest size. */
	s->max_request_memory = s->max_body > (size_t)DEFAULT_REQUEST_MEMORY
				    ? s->max_body
				    : (size_t)DEFAULT_REQUEST_MEMORY;
	n = config_doc_get(m, "max_request_memory");
	if (n) {
		if (config_check_size(ck, n, MAX_REQUEST_MEMORY, &v) < 0)
			return -1;
		if ((size_t)v < s->max_body)
			return config_check_fail(
			    ck, n, "at least agent.max_body, or no body of that size gets in");
		s->max_request_memory = (size_t)v;
	}
	n = config_doc_get(m, "run_retention");
	if (n && json_is_string(n->value) && strcmp(json_string_value(n->value), "forever") == 0) {
		s->run_retention_ms = 0;
	} else if (n) {
		if (json_is_string(n->value) && !n->overflow &&
		    config_parse_duration_ms(json_string_value(n->value)) < 0)
			return config_check_fail(ck, n,
						 "expected a duration like \"90d\", or forever");
		if (config_check_duration_ms(ck, n, LLONG_MAX, &v) < 0)
			return -1;
		s->run_retention_ms = v;
	}
	n = config_doc_get(m, "max_connections");
	if (n) {
		if (config_check_int(ck, n, 1, MAX_CONNECTIONS, &v) < 0)
			return -1;
		s->max_connections = (int)v;
	}
	return 0;
}

int settings_split_listen(const char *listen, char *host, size_t hostlen, unsigned short *port)
{
	const char *colon = strrchr(listen, ':');
	if (!colon || colon == listen)
		return -1;
	const char *h = listen;
	size_t n = (size_t)(colon - listen);
	if (h[0] == '[' && colon[-1] == ']') {
		h++;
		n -= 2;
	}
	char *end;
	long p = strtol(colon + 1, &end, 10);
	if (n == 0 || n >= hostlen || *end || p <= 0 || p > 65535)
		return -1;
	memcpy(host, h, n);
	host[n] = '\0';
	*port = (unsigned short)p;
	return 0;
}

int settings_parse_ip_port(const char *listen, struct sockaddr *addr, int *addrlen)
{
	/* libevent takes an address without its port, as port 0: any free
	 * one, where no scraper would look. */
	if (evutil_parse_sockaddr_port(listen, addr, addrlen) < 0)
		return -1;
	if (addr->sa_family == AF_INET)
		return ((struct sockaddr_in *)addr)->sin_port ? 0 : -1;
	if (addr->sa_family == AF_INET6)
		return ((struct sockaddr_in6 *)addr)->sin6_port ? 0 : -1;
	return -1;
}

/* "10%" of the filesystem, or a size such as "5GiB". */
static int load_min_free(const struct config_check *ck, const struct config_doc_node *n,
			 struct settings *s)
{
	const char *text = json_is_string(n->value) ? json_string_value(n->value) : "";
	size_t len = strlen(text);
	long long v;

	if (len > 1 && text[len - 1] == '%') {
		char *end;
		errno = 0;
		v = strtoll(text, &end, 10);
		if (errno || end != text + len - 1 || v < 0 || v > 99)
			return config_check_fail(ck, n, "expected a percentage from 0%% to 99%%");
		s->min_free_percent = (int)v;
		s->min_free_bytes = 0;
		return 0;
	}
	if (config_check_size(ck, n, LLONG_MAX, &v) < 0)
		return -1;
	s->min_free_percent = 0;
	s->min_free_bytes = v;
	return 0;
}

static int load_worker(const struct config_check *ck, const struct config_doc_node *top,
		       struct settings *s)
{
	const struct config_doc_node *m = config_doc_get(top, "worker");
	const struct config_doc_node *n;
	long long v;

	if (!m)
		return 0;
	if (config_check_keys(ck, m, worker_keys) < 0 ||
	    load_string(ck, m, "state_dir", 0, &s->state_dir) < 0 ||
	    load_string(ck, m, "artifacts_dir", 0, &s->artifacts_dir) < 0 ||
	    load_duration(ck, m, "kill_grace", &s->kill_grace_ms) < 0 ||
	    load_duration(ck, m, "lease", &s->lease_ms) < 0 ||
	    load_duration(ck, m, "drain_timeout", &s->drain_timeout_ms) < 0 ||
	    load_duration(ck, m, "checkout_timeout", &s->checkout_timeout_ms) < 0)
		return -1;
	if (s->lease_ms < MIN_LEASE_MS)
		return config_check_fail(ck, config_doc_get(m, "lease"), "must be 1s at least");
	n = config_doc_get(m, "workspace_ttl");
	if (n) {
		if (config_check_duration_ms(ck, n, LLONG_MAX, &v) < 0)
			return -1;
		s->workspace_ttl_ms = v;
	}
	n = config_doc_get(m, "min_free");
	if (n && load_min_free(ck, n, s) < 0)
		return -1;
	n = config_doc_get(m, "log_cap");
	if (n) {
		if (config_check_size(ck, n, MAX_BODY_BYTES, &v) < 0)
			return -1;
		s->log_cap = (size_t)v;
	}
	n = config_doc_get(m, "concurrency");
	if (n) {
		if (config_check_int(ck, n, 1, MAX_CONCURRENCY, &v) < 0)
			return -1;
		s->concurrency = (int)v;
	}
	n = config_doc_get(m, "metrics_listen");
	if (n) {
		struct sockaddr_storage ss;
		int sslen = (int)sizeof(ss);
		if (load_string(ck, m, "metrics_listen", 0, &s->metrics_listen) < 0)
			return -1;
		if (settings_parse_ip_port(s->metrics_listen, (struct sockaddr *)&ss, &sslen) < 0)
			return config_check_fail(ck, n, "expected IP:PORT, such as 127.0.0.1:9101");
	}
	return 0;
}

static int load_github(const struct config_check *ck, const struct config_doc_node *top,
		       struct settings *s)
{
	const struct config_doc_node *m = config_doc_get(top, "github");

	if (!m)
		return 0;
	if (config_check_keys(ck, m, github_keys) < 0 ||
	    load_string(ck, m, "api_url", 0, &s->github_api_url) < 0 ||
	    load_string(ck, m, "token_file", 0, &s->github_token_file) < 0 ||
	    load_duration(ck, m, "backoff", &s->github_backoff_ms) < 0 ||
	    load_duration(ck, m, "backoff_max", &s->github_backoff_max_ms) < 0 ||
	    load_duration(ck, m, "give_up_after", &s->github_give_up_ms) < 0)
		return -1;
	/* Paths are joined to it: "https://ghe.example.com/api/v3/" and
	 * ".../api/v3" name the same API. */
	size_t n = strlen(s->github_api_url);
	while (n > 0 && s->github_api_url[n - 1] == '/')
		s->github_api_url[--n] = '\0';
	if (n == 0)
		return config_check_fail(ck, config_doc_get(m, "api_url"), "expected a URL");
	return 0;
}

static int load_api(const struct config_check *ck, const struct config_doc_node *top,
		    struct settings *s)
{
	const struct config_doc_node *m = config_doc_get(top, "api");
	const struct config_doc_node *n;

	if (!m)
		return 0;
	if (config_check_keys(ck, m, api_keys) < 0 ||
	    load_string(ck, m, "tokens_file", 0, &s->tokens_file) < 0)
		return -1;
	n = config_doc_get(m, "public_reads");
	if (n) {
		if (!json_is_boolean(n->value))
			return config_check_fail(ck, n, "expected true or false");
		s->public_reads = json_is_true(n->value);
	}
	return 0;
}

static int load_log_level(const struct config_check *ck, const struct config_doc_node *top,
			  struct settings *s)
{
	const struct config_doc_node *n = config_doc_get(top, "log_level");
	const char *v;

	if (!n)
		return 0;
	if (config_check_string(ck, n, 0, &v) < 0)
		return -1;
	for (size_t i = 0; log_levels[i]; i++) {
		if (strcmp(v, log_levels[i]) == 0)
			return replace(&s->log_level, v) < 0
				   ? config_check_fail(ck, n, "out of memory")
				   : 0;
	}
	return config_check_fail(ck, n, "expected one of debug, info, warn, error");
}

static int resolve_in_place(const char *dir, char **field)
{
	char *abs = config_file_resolve(dir, *field);

	if (!abs)
		return -1;
	free(*field);
	*field = abs;
	return 0;
}

static int load_file(const char *path, const char *dir, struct settings *s, char *err,
		     size_t errlen)
{
	struct config_check ck = {.file = path, .err = err, .errlen = errlen};
	struct config_doc doc;
	const struct config_doc_node *top;
	int rc = -1;

	if (config_doc_load(&doc, path, err, errlen) < 0)
		return -1;
	top = doc.top;
	if (config_check_keys(&ck, top, top_keys) < 0 ||
	    load_string(&ck, top, "pipelines_dir", 0, &s->pipelines_dir) < 0 ||
	    load_log_level(&ck, top, s) < 0 || load_kafka(&ck, top, dir, s) < 0 ||
	    load_redis(&ck, top, dir, s) < 0 || load_agent(&ck, top, s) < 0 ||
	    load_worker(&ck, top, s) < 0 || load_github(&ck, top, s) < 0 ||
	    load_api(&ck, top, s) < 0)
		goto done;
	rc = 0;
done:
	config_doc_clear(&doc);
	return rc;
}

/* The listener's own URL: https when it speaks TLS. */
static char *listen_url(const struct settings *s)
{
	const char *scheme = s->tls_cert ? "https://" : "http://";
	char *url = malloc(strlen(scheme) + strlen(s->listen) + 1);
	if (url)
		sprintf(url, "%s%s", scheme, s->listen);
	return url;
}

int settings_load(const char *path, struct settings *s, char *err, size_t errlen)
{
	char *dir = NULL;

	if (set_defaults(s) < 0)
		goto nomem;
	dir = config_file_dir(path);
	if (!dir) {
		snprintf(err, errlen, "%s: cannot find the working directory: %s",
			 path ? path : ".", strerror(errno));
		goto fail;
	}
	if (path && load_file(path, dir, s, err, errlen) < 0)
		goto fail;
	if (!s->public_url) {
		s->public_url = listen_url(s);
		s->public_url_default = 1;
		if (!s->public_url)
			goto nomem;
	}
	if (resolve_in_place(dir, &s->pipelines_dir) < 0 ||
	    resolve_in_place(dir, &s->state_dir) < 0 ||
	    (s->artifacts_dir && resolve_in_place(dir, &s->artifacts_dir) < 0) ||
	    (s->github_token_file && resolve_in_place(dir, &s->github_token_file) < 0) ||
	    (s->tokens_file && resolve_in_place(dir, &s->tokens_file) < 0) ||
	    (s->tls_cert && resolve_in_place(dir, &s->tls_cert) < 0) ||
	    (s->tls_key && resolve_in_place(dir, &s->tls_key) < 0))
		goto nomem;
	/* Room left in a stage's paths (workers/workspace.c) for the run id,
	 * the stage name and what goes below them. */
	if (strlen(s->state_dir) > MAX_STATE_DIR) {
		snprintf(err, errlen, "%s: worker.state_dir: at most %d bytes once resolved",
			 path ? path : "settings", MAX_STATE_DIR);
		goto fail;
	}
	free(dir);
	return 0;
nomem:
	snprintf(err, errlen, "%s: out of memory", path ? path : "settings");
fail:
	free(dir);
	settings_clear(s);
	return -1;
}

int settings_fail_at(const char *path, const char *key, char *err, size_t errlen, const char *fmt,
		     ...)
{
	struct config_check ck = {.file = path, .err = err, .errlen = errlen};
	struct config_doc doc;
	const struct config_doc_node *n = NULL;
	char section[64], msg[768];
	const char *dot = strchr(key, '.');
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (dot && (size_t)(dot - key) < sizeof(section) &&
	    config_doc_load(&doc, path, err, errlen) == 0) {
		snprintf(section, sizeof(section), "%.*s", (int)(dot - key), key);
		n = config_doc_get(config_doc_get(doc.top, section), dot + 1);
		if (n)
			config_check_fail(&ck, n, "%s", msg);
		config_doc_clear(&doc);
	}
	/* The file changed since it was loaded. */
	if (!n)
		snprintf(err, errlen, "%s: %s: %s", path, key, msg);
	return -1;
}

static int text_differs(const char *x, const char *y)
{
	return strcmp(x ? x : "", y ? y : "") != 0;
}

int settings_differ(const struct settings *a, const struct settings *b, const char *key)
{
	const struct {
		const char *key;
		int differs;
	} table[] = {
	    {"kafka.brokers", text_differs(a->brokers, b->brokers)},
	    {"kafka.topic_prefix", text_differs(a->topic_prefix, b->topic_prefix)},
	    {"kafka.session_timeout", a->session_timeout_ms != b->session_timeout_ms},
	    {"kafka.fetch_wait", a->fetch_wait_ms != b->fetch_wait_ms},
	    {"redis.url", text_differs(a->redis_url, b->redis_url)},
	    {"redis.user", text_differs(a->redis_user, b->redis_user)},
	    {"redis.password_file", text_differs(a->redis_password_file, b->redis_password_file) ||
					text_differs(a->redis_password, b->redis_password)},
	    {"redis.key_prefix", text_differs(a->key_prefix, b->key_prefix)},
	    {"redis.timeout", a->redis_timeout_ms != b->redis_timeout_ms},
	    {"agent.listen", text_differs(a->listen, b->listen)},
	    {"agent.public_url", text_differs(a->public_url, b->public_url)},
	    {"agent.max_body", a->max_body != b->max_body},
	    {"agent.max_request_memory", a->max_request_memory != b->max_request_memory},
	    {"agent.http_timeout", a->http_timeout_ms != b->http_timeout_ms},
	    {"agent.max_connections", a->max_connections != b->max_connections},
	    {"agent.run_retention", a->run_retention_ms != b->run_retention_ms},
	    {"agent.requeue_after", a->requeue_after_ms != b->requeue_after_ms},
	    {"agent.scheduler_interval", a->scheduler_ms != b->scheduler_ms},
	    {"pipelines_dir", text_differs(a->pipelines_dir, b->pipelines_dir)},
	    {"log_level", text_differs(a->log_level, b->log_level)},
	    {"worker.state_dir", text_differs(a->state_dir, b->state_dir)},
	    {"worker.artifacts_dir", text_differs(a->artifacts_dir, b->artifacts_dir)},
	    {"worker.concurrency", a->concurrency != b->concurrency},
	    {"worker.kill_grace", a->kill_grace_ms != b->kill_grace_ms},
	    {"worker.checkout_timeout", a->checkout_timeout_ms != b->checkout_timeout_ms},
	    {"worker.lease", a->lease_ms != b->lease_ms},
	    {"worker.drain_timeout", a->drain_timeout_ms != b->drain_timeout_ms},
	    {"worker.workspace_ttl", a->workspace_ttl_ms != b->workspace_ttl_ms},
	    {"worker.log_cap", a->log_cap != b->log_cap},
	    {"worker.metrics_listen", text_differs(a->metrics_listen, b->metrics_listen)},
	    {"worker.min_free",
	     a->min_free_percent != b->min_free_percent || a->min_free_bytes != b->min_free_bytes},
	    {"github.api_url", text_differs(a->github_api_url, b->github_api_url)},
	    {"github.token_file", text_differs(a->github_token_file, b->github_token_file)},
	    {"github.backoff", a->github_backoff_ms != b->github_backoff_ms},
	    {"github.backoff_max", a->github_backoff_max_ms != b->github_backoff_max_ms},
	    {"github.give_up_after", a->github_give_up_ms != b->github_give_up_ms},
	    {"agent.tls_cert", text_differs(a->tls_cert, b->tls_cert)},
	    {"agent.tls_key", text_differs(a->tls_key, b->tls_key)},
	    {"api.tokens_file", text_differs(a->tokens_file, b->tokens_file)},
	    {"api.public_reads", a->public_reads != b->public_reads},
	};
	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
		if (strcmp(table[i].key, key) == 0)
			return table[i].differs;
	}
	return -1;
}

int settings_listen_on(struct settings *s, const char *listen)
{
	char *copy = strdup(listen);
	if (!copy)
		return -1;
	free(s->listen);
	s->listen = copy;
	if (!s->public_url_default)
		return 0;
	char *url = listen_url(s);
	if (!url)
		return -1;
	free(s->public_url);
	s->public_url = url;
	return 0;
}

int settings_log_level_on(struct settings *s, const char *level)
{
	return replace(&s->log_level, level);
}

void settings_clear(struct settings *s)
{
	free(s->brokers);
	free(s->topic_prefix);
	free(s->redis_url);
	free(s->redis_user);
	free(s->redis_password_file);
	if (s->redis_password)
		explicit_bzero(s->redis_password, strlen(s->redis_password));
	free(s->redis_password);
	free(s->key_prefix);
	free(s->listen);
	free(s->public_url);
	free(s->pipelines_dir);
	free(s->state_dir);
	free(s->artifacts_dir);
	free(s->metrics_listen);
	free(s->log_level);
	free(s->github_api_url);
	free(s->github_token_file);
	free(s->tokens_file);
	free(s->tls_cert);
	free(s->tls_key);
	memset(s, 0, sizeof(*s));
}
