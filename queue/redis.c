/* redis: one hiredis async connection on the libevent loop, kept up by
 * reconnecting with back-off, with a deadline on every command.
 *
 * Each command is a struct cmd. While hiredis holds a command (in_hiredis),
 * hiredis owns the record and frees it through on_hiredis_reply, which it
 * calls exactly once per command: with the reply, or with NULL when the
 * context is freed. A command can be finished earlier (timeout, shutdown); it
 * is then marked done, its callback runs, and the late hiredis call only
 * frees the record. hiredis 0.14 cannot cancel one command, so a timeout
 * drops the whole connection and reconnects.
 *
 * hiredis must not be freed from inside its connect or disconnect callbacks,
 * and user callbacks may call redis_free at any time; so contexts are only
 * freed from our own libevent callbacks (or deferred by hiredis itself when
 * inside a reply callback), and struct redis is freed only when the outermost
 * of our entry points returns (enter/leave).
 */
#include "queue/redis.h"

#include <hiredis/async.h>
#include <hiredis/adapters/libevent.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/hex.h"
#include "lib/log.h"
#include "lib/sha.h"

#define DEFAULT_TIMEOUT_MS 5000

enum conn_state {
	CONN_DOWN,	 /* no context; a reconnect is scheduled */
	CONN_CONNECTING, /* TCP or unix connect in progress */
	CONN_LOADING,	 /* connected; SCRIPT LOADs and the PING barrier in flight */
	CONN_READY,	 /* user commands go out */
};

struct cmd_list {
	struct cmd *head, *tail;
	size_t n;
};

struct cmd {
	struct cmd *prev, *next;
	struct cmd_list *list; /* r->sent or r->failing while not done */
	struct redis *r;       /* valid only while not done */
	redis_cb cb;
	void *arg;
	char *buf; /* the formatted command, kept to resend after NOSCRIPT */
	int len;
	struct event *timer;
	const char *fail; /* error to deliver from the loop */
	int script;	  /* script handle for EVALSHA, else -1 */
	int in_hiredis;
	int done;
	int retried;
};

struct script {
	const char *source; /* the caller's, not copied */
	char sha[41];
};

struct redis {
	struct event_base *base;
	char *url;
	char *host;
	int port;
	char *path;
	char *user;	/* NULL: the default user */
	char *password; /* NULL: no AUTH */
	int timeout_ms;

	redisAsyncContext *ac;
	enum conn_state state;
	int backoff_ms;
	int outage_logged;
	unsigned long connects;
	struct event *reconnect_ev;
	struct event *connect_timeout_ev;
	struct event *drop_ev;
	struct event *deliver_ev;
	char drop_why[128];

	struct cmd_list sent;
	struct cmd_list failing;

	struct script *scripts;
	int nscripts;

	void (*on_connect)(struct redis *r, void *arg);
	void *on_connect_arg;

	int depth;
	int freeing;
};

static void cmd_submit(struct redis *r, struct cmd *c, int internal);

static struct timeval ms_to_tv(int ms)
{
	struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
	return tv;
}

static void list_push(struct cmd_list *l, struct cmd *c)
{
	c->list = l;
	c->next = NULL;
	c->prev = l->tail;
	if (l->tail)
		l->tail->next = c;
	else
		l->head = c;
	l->tail = c;
	l->n++;
}

static void list_remove(struct cmd *c)
{
	struct cmd_list *l = c->list;
	if (!l)
		return;
	if (c->prev)
		c->prev->next = c->next;
	else
		l->head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	else
		l->tail = c->prev;
	l->n--;
	c->list = NULL;
	c->prev = c->next = NULL;
}

/* --- lifetime of struct redis ------------------------------------------- */

/* What redis_new copied; the password is wiped, not just freed. */
static void free_settings(struct redis *r)
{
	free(r->url);
	free(r->host);
	free(r->path);
	free(r->user);
	if (r->password)
		explicit_bzero(r->password, strlen(r->password));
	free(r->password);
}

static void destroy(struct redis *r)
{
	event_free(r->reconnect_ev);
	event_free(r->connect_timeout_ev);
	event_free(r->drop_ev);
	event_free(r->deliver_ev);
	if (r->ac) {
		redisAsyncContext *ac = r->ac;
		r->ac = NULL;
		/* Inside a reply callback hiredis defers this until the callback
		 * returns; the records it still holds are all done and just freed. */
		ac->data = NULL;
		redisAsyncFree(ac);
	}
	free(r->scripts);
	free_settings(r);
	free(r);
}

static void enter(struct redis *r)
{
	r->depth++;
}

/* After leave() returns, r may be gone. */
static void leave(struct redis *r)
{
	if (--r->depth == 0 && r->freeing)
		destroy(r);
}

/* --- commands ------------------------------------------------------------ */

static void cmd_free(struct cmd *c)
{
	if (c->timer)
		event_free(c->timer);
	redisFreeCommand(c->buf);
	free(c);
}

/* Runs the callback once; the caller holds enter(r). */
static void cmd_finish(struct cmd *c, redisReply *reply, const char *err)
{
	struct redis *r = c->r;
	redis_cb cb = c->cb;
	void *arg = c->arg;

	list_remove(c);
	c->done = 1;
	c->r = NULL;
	if (c->timer) {
		event_free(c->timer);
		c->timer = NULL;
	}
	if (!c->in_hiredis)
		cmd_free(c);
	if (cb)
		cb(r, reply, err, arg);
}

struct timeval redis_retry_wait(int *ms)
{
	struct timeval tv = ms_to_tv(*ms);

	*ms = *ms * 2 > REDIS_RETRY_MAX_MS ? REDIS_RETRY_MAX_MS : *ms * 2;
	return tv;
}

int redis_err_passing(const char *err)
{
	static const char *const own[] = {"not connected", "connection lost", "timeout",
					  "out of memory"};
	static const char *const refusals[] = {"OOM ", "LOADING ", "BUSY ", "TRYAGAIN ",
					       "MASTERDOWN "};

	if (!err)
		return 0;
	for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++)
		if (strcmp(err, own[i]) == 0)
			return 1;
	for (size_t i = 0; i < sizeof(refusals) / sizeof(refusals[0]); i++)
		if (strncmp(err, refusals[i], strlen(refusals[i])) == 0)
			return 1;
	return 0;
}

static void queue_failure(struct redis *r, struct cmd *c, const char *err)
{
	c->fail = err;
	list_push(&r->failing, c);
	event_active(r->deliver_ev, EV_TIMEOUT, 1);
}

/* Fails, from the loop, the commands that could not be sent; those queued by
 * these very callbacks wait for the next pass. */
static void on_deliver(evutil_socket_t fd, short what, void *arg)
{
	struct redis *r = arg;
	(void)fd;
	(void)what;
	enter(r);
	size_t n = r->failing.n;
	while (n-- > 0 && r->failing.head && !r->freeing)
		cmd_finish(r->failing.head, NULL, r->failing.head->fail);
	if (!r->freeing && r->failing.head)
		event_active(r->deliver_ev, EV_TIMEOUT, 1);
	leave(r);
}

static void schedule_drop(struct redis *r, const char *why)
{
	if (r->freeing || !r->ac)
		return;
	r->state = CONN_DOWN;
	snprintf(r->drop_why, sizeof(r->drop_why), "%s", why);
	event_active(r->drop_ev, EV_TIMEOUT, 1);
}

static int send_script_load(struct redis *r, int script);
static void on_hiredis_reply(redisAsyncContext *ac, void *reply_, void *privdata);

static int resend_after_noscript(struct redis *r, redisAsyncContext *ac, struct cmd *c)
{
	c->retried = 1;
	/* Pipelined: the server runs the load before the retry. */
	if (send_script_load(r, c->script) < 0)
		return -1;
	if (redisAsyncFormattedCommand(ac, on_hiredis_reply, c, c->buf, (size_t)c->len) != REDIS_OK)
		return -1;
	c->in_hiredis = 1;
	return 0;
}

static void on_hiredis_reply(redisAsyncContext *ac, void *reply_, void *privdata)
{
	struct cmd *c = privdata;
	redisReply *reply = reply_;

	c->in_hiredis = 0;
	if (c->done) {
		cmd_free(c);
		return;
	}
	struct redis *r = c->r;
	enter(r);
	if (!reply) {
		cmd_finish(c, NULL, "connection lost");
	} else if (reply->type == REDIS_REPLY_ERROR) {
		if (c->script >= 0 && !c->retried && strncmp(reply->str, "NOSCRIPT", 8) == 0 &&
		    resend_after_noscript(r, ac, c) == 0) {
			leave(r);
			return;
		}
		cmd_finish(c, NULL, reply->str);
	} else {
		cmd_finish(c, reply, NULL);
	}
	leave(r);
}

static void on_cmd_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct cmd *c = arg;
	struct redis *r = c->r;
	(void)fd;
	(void)what;
	enter(r);
	log_warn("redis: command timed out, reconnecting", LOG_S("url", r->url),
		 LOG_I("timeout_ms", r->timeout_ms));
	schedule_drop(r, "command timed out");
	cmd_finish(c, NULL, "timeout");
	leave(r);
}

/* internal: commands of the connect sequence may go out before CONN_READY. */
static void cmd_submit(struct redis *r, struct cmd *c, int internal)
{
	int usable = r->ac && (r->state == CONN_READY || (internal && r->state == CONN_LOADING));
	if (!usable) {
		queue_failure(r, c, "not connected");
		return;
	}
	c->timer = evtimer_new(r->base, on_cmd_timeout, c);
	if (!c->timer) {
		queue_failure(r, c, "out of memory");
		return;
	}
	if (redisAsyncFormattedCommand(r->ac, on_hiredis_reply, c, c->buf, (size_t)c->len) !=
	    REDIS_OK) {
		event_free(c->timer);
		c->timer = NULL;
		queue_failure(r, c, "not connected");
		return;
	}
	c->in_hiredis = 1;
	list_push(&r->sent, c);
	struct timeval tv = ms_to_tv(r->timeout_ms);
	evtimer_add(c->timer, &tv);
}

/* Takes buf (a formatted command); on failure frees it. */
static int cmd_queue(struct redis *r, redis_cb cb, void *arg, char *buf, int len, int script,
		     int internal)
{
	struct cmd *c = calloc(1, sizeof(*c));
	if (!c) {
		redisFreeCommand(buf);
		return -1;
	}
	c->r = r;
	c->cb = cb;
	c->arg = arg;
	c->buf = buf;
	c->len = len;
	c->script = script;
	cmd_submit(r, c, internal);
	return 0;
}

static int vcommand(struct redis *r, redis_cb cb, void *arg, const char *fmt, va_list ap)
{
	char *buf = NULL;

	if (r->freeing)
		return -1;
	int len = redisvFormatCommand(&buf, fmt, ap);
	if (len < 0)
		return -1;
	return cmd_queue(r, cb, arg, buf, len, -1, 0);
}

int redis_command(struct redis *r, redis_cb cb, void *arg, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int rc = vcommand(r, cb, arg, fmt, ap);
	va_end(ap);
	return rc;
}

int redis_command_argv(struct redis *r, redis_cb cb, void *arg, int argc, const char **argv,
		       const size_t *lens)
{
	char *buf = NULL;

	if (r->freeing || argc <= 0)
		return -1;
	int len = redisFormatCommandArgv(&buf, argc, argv, lens);
	if (len < 0)
		return -1;
	return cmd_queue(r, cb, arg, buf, len, -1, 0);
}

/* --- hashes read together ---------------------------------------------------- */

struct hash_item {
	redis_cb cb;
	void *arg;
	char *key;
};

struct redis_hashes {
	struct redis *r;
	int script;
	struct hash_item *items;
	int n, room;
};

static void hashes_fail(struct redis_hashes *h, struct redis *r, const char *err)
{
	for (int i = 0; i < h->n; i++)
		h->items[i].cb(r, NULL, err, h->items[i].arg);
}

static void hashes_free(struct redis_hashes *h)
{
	for (int i = 0; i < h->n; i++)
		free(h->items[i].key);
	free(h->items);
	free(h);
}

static void on_hashes(struct redis *r, redisReply *reply, const char *err, void *arg)
{
	struct redis_hashes *h = arg;
	if (!err && (reply->type != REDIS_REPLY_ARRAY || reply->elements != (size_t)h->n))
		err = "hashes not read";
	if (err)
		hashes_fail(h, r, err);
	else
		for (int i = 0; i < h->n; i++)
			h->items[i].cb(r, reply->element[i], NULL, h->items[i].arg);
	hashes_free(h);
}

struct redis_hashes *redis_hashes_begin(struct redis *r, int script)
{
	struct redis_hashes *h = calloc(1, sizeof(*h));
	if (!h)
		return NULL;
	h->r = r;
	h->script = script;
	return h;
}

int redis_hashes_add(struct redis_hashes *h, redis_cb cb, void *arg, const char *key_fmt, ...)
{
	va_list ap;
	char *key;

	if (h->n == h->room) {
		int room = h->room ? h->room * 2 : 8;
		struct hash_item *items = realloc(h->items, sizeof(*items) * (size_t)room);
		if (!items)
			return -1;
		h->items = items;
		h->room = room;
	}
	va_start(ap, key_fmt);
	int len = vasprintf(&key, key_fmt, ap);
	va_end(ap);
	if (len < 0)
		return -1;
	h->items[h->n++] = (struct hash_item){cb, arg, key};
	return 0;
}

void redis_hashes_read(struct redis_hashes *h)
{
	struct redis *r = h->r;
	const char **keys = malloc(sizeof(*keys) * (size_t)(h->n ? h->n : 1));
	for (int i = 0; keys && i < h->n; i++)
		keys[i] = h->items[i].key;
	int rc = keys ? redis_script_run(r, h->script, on_hashes, h, h->n, h->n, keys, NULL) : -1;
	free(keys);
	if (rc < 0) {
		enter(r);
		hashes_fail(h, r, r->freeing ? "shutting down" : "out of memory");
		hashes_free(h);
		leave(r);
	}
}

/* --- scripts -------------------------------------------------------------- */

static void on_script_loaded(struct redis *r, redisReply *reply, const char *err, void *arg)
{
	int script = (int)(intptr_t)arg;
	if (err) {
		if (strcmp(err, "shutting down") != 0)
			log_error("redis: SCRIPT LOAD failed", LOG_I("script", script),
				  LOG_S("error", err));
		return;
	}
	if (reply->type == REDIS_REPLY_STRING && reply->len == 40)
		memcpy(r->scripts[script].sha, reply->str, 40);
}

static int send_script_load(struct redis *r, int script)
{
	char *buf = NULL;
	int len = redisFormatCommand(&buf, "SCRIPT LOAD %s", r->scripts[script].source);
	if (len < 0)
		return -1;
	return cmd_queue(r, on_script_loaded, (void *)(intptr_t)script, buf, len, -1, 1);
}

int redis_script_add(struct redis *r, const struct lua_script *script)
{
	char sha[41];
	/* Known before any connection, so that EVALSHA can be formatted at
	 * once; SCRIPT LOAD replies with the same digest. */
	if (script->sha1) {
		snprintf(sha, sizeof(sha), "%s", script->sha1);
	} else {
		unsigned char md[SHA1_LEN];
		sha1_digest(script->source, strlen(script->source), md);
		hex_encode(md, sizeof(md), sha);
	}
	for (int i = 0; i < r->nscripts; i++)
		if (strcmp(r->scripts[i].sha, sha) == 0)
			return i;
	struct script *s = realloc(r->scripts, sizeof(*s) * (size_t)(r->nscripts + 1));
	if (!s)
		return -1;
	r->scripts = s;
	s = &r->scripts[r->nscripts];
	s->source = script->source;
	memcpy(s->sha, sha, sizeof(sha));
	return r->nscripts++;
}

int redis_script_run(struct redis *r, int script, redis_cb cb, void *arg, int nkeys, int argc,
		     const char **argv, const size_t *lens)
{
	char nk[16];
	char *buf = NULL;
	int rc = -1;

	if (r->freeing || script < 0 || script >= r->nscripts || argc < 0 || nkeys < 0 ||
	    nkeys > argc)
		return -1;
	const char **v = malloc(sizeof(*v) * (size_t)(argc + 3));
	size_t *l = malloc(sizeof(*l) * (size_t)(argc + 3));
	if (!v || !l)
		goto fail;
	snprintf(nk, sizeof(nk), "%d", nkeys);
	v[0] = "EVALSHA";
	v[1] = r->scripts[script].sha;
	v[2] = nk;
	for (int i = 0; i < 3; i++)
		l[i] = strlen(v[i]);
	for (int i = 0; i < argc; i++) {
		v[i + 3] = argv[i];
		l[i + 3] = lens ? lens[i] : strlen(argv[i]);
	}
	int len = redisFormatCommandArgv(&buf, argc + 3, v, l);
	if (len < 0)
		goto fail;
	rc = cmd_queue(r, cb, arg, buf, len, script, 0);
fail:
	free(v);
	free(l);
	return rc;
}

/* --- connection ----------------------------------------------------------- */

static void schedule_reconnect(struct redis *r)
{
	if (r->freeing)
		return;
	struct timeval tv = redis_retry_wait(&r->backoff_ms);
	evtimer_add(r->reconnect_ev, &tv);
}

/* One warning per outage rather than one per attempt. */
static void note_down(struct redis *r, const char *what, const char *err)
{
	if (r->outage_logged)
		return;
	r->outage_logged = 1;
	log_warn(what, LOG_S("url", r->url), LOG_S("error", err && *err ? err : "unknown"));
}

/* Frees the context from our own event callback, never from inside hiredis.
 * Commands it still holds finish with "connection lost". */
static void drop_now(struct redis *r, const char *why)
{
	redisAsyncContext *ac = r->ac;
	if (!ac)
		return;
	enter(r);
	r->ac = NULL;
	r->state = CONN_DOWN;
	event_del(r->connect_timeout_ev);
	note_down(r, "redis: connection dropped", why);
	ac->data = NULL;
	redisAsyncFree(ac);
	schedule_reconnect(r);
	leave(r);
}

static void on_drop(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct redis *r = arg;
	drop_now(r, r->drop_why);
}

static void on_connect_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct redis *r = arg;
	(void)fd;
	(void)what;
	if (r->state == CONN_CONNECTING)
		drop_now(r, "connect timed out");
}

int redis_version_ok(const char *info, char *found, size_t len)
{
	const char *v = info ? strstr(info, "redis_version:") : NULL;
	if (!v)
		return -1;
	v += strlen("redis_version:");
	snprintf(found, len, "%.*s", (int)strcspn(v, "\r\n"), v);
	return atoi(found) >= REDIS_MIN_MAJOR;
}

/* A server older than the scripts need is not used: each connection to it
 * is dropped, logged once, and tried again with back-off like any outage.
 * A server that does not answer INFO is taken as it is. */
static void on_version(struct redis *r, redisReply *reply, const char *err, void *arg)
{
	char found[32], why[96];
	(void)arg;
	if (err || !reply || reply->type != REDIS_REPLY_STRING ||
	    redis_version_ok(reply->str, found, sizeof(found)) != 0)
		return;
	snprintf(why, sizeof(why), "redis %s is older than %d.0, which sluice needs", found,
		 REDIS_MIN_MAJOR);
	note_down(r, "redis: server too old", why);
	schedule_drop(r, why);
}

/* The PING after the scripts' loads: its reply means the scripts are in. */
static void on_ready(struct redis *r, redisReply *reply, const char *err, void *arg)
{
	(void)reply;
	(void)arg;
	/* Dropped meanwhile (a server too old). */
	if (!err && r->state != CONN_LOADING)
		return;
	if (err) {
		if (strcmp(err, "shutting down") != 0)
			note_down(r, "redis: connect sequence failed", err);
		schedule_drop(r, err);
		return;
	}
	r->state = CONN_READY;
	r->connects++;
	r->backoff_ms = REDIS_RETRY_FIRST_MS;
	r->outage_logged = 0;
	log_info("redis: connected", LOG_S("url", r->url), LOG_I("scripts", r->nscripts));
	if (r->on_connect)
		r->on_connect(r, r->on_connect_arg);
}

static int send_ready_ping(struct redis *r)
{
	char *buf = NULL;
	int len = redisFormatCommand(&buf, "PING");
	if (len < 0)
		return -1;
	return cmd_queue(r, on_ready, NULL, buf, len, -1, 1);
}

/* The scripts Redis lacks (all of them after its restart) are loaded; those
 * it has are not read at all, so that their text stays out of memory. Then
 * the PING whose reply says they are in. */
static void on_scripts_exist(struct redis *r, redisReply *reply, const char *err, void *arg)
{
	(void)arg;
	if (!err && r->state != CONN_LOADING)
		return;
	/* A script added since the question was sent is loaded by the NOSCRIPT
	 * reply to its first run. */
	if (!err && (reply->type != REDIS_REPLY_ARRAY || reply->elements > (size_t)r->nscripts))
		err = "unexpected reply to SCRIPT EXISTS";
	if (err) {
		if (strcmp(err, "shutting down") != 0) {
			note_down(r, "redis: connect sequence failed", err);
			schedule_drop(r, err);
		}
		return;
	}
	for (size_t i = 0; i < reply->elements; i++) {
		const redisReply *has = reply->element[i];
		if ((has->type != REDIS_REPLY_INTEGER || has->integer != 1) &&
		    send_script_load(r, (int)i) < 0) {
			schedule_drop(r, "out of memory");
			return;
		}
	}
	if (send_ready_ping(r) < 0)
		schedule_drop(r, "out of memory");
}

static int send_script_exists(struct redis *r)
{
	if (r->nscripts == 0)
		return send_ready_ping(r);
	const char **argv = malloc(sizeof(*argv) * (size_t)(r->nscripts + 2));
	if (!argv)
		return -1;
	argv[0] = "SCRIPT";
	argv[1] = "EXISTS";
	for (int i = 0; i < r->nscripts; i++)
		argv[i + 2] = r->scripts[i].sha;
	char *buf = NULL;
	int len = redisFormatCommandArgv(&buf, r->nscripts + 2, argv, NULL);
	free(argv);
	if (len < 0)
		return -1;
	return cmd_queue(r, on_scripts_exist, NULL, buf, len, -1, 1);
}

/* A refused AUTH (a wrong password, or one the server does not want) is
 * logged once per outage, like any failed connect, and retried with
 * back-off: the server answers every other command with NOAUTH meanwhile. */
static void on_auth(struct redis *r, redisReply *reply, const char *err, void *arg)
{
	(void)reply;
	(void)arg;
	if (!err || strcmp(err, "shutting down") == 0)
		return;
	note_down(r, "redis: authentication failed", err);
	schedule_drop(r, err);
}

/* First on every connection, so that what follows runs as the user. */
static int send_auth(struct redis *r)
{
	const char *argv[3] = {"AUTH"};
	int argc = 1;
	char *buf = NULL;

	if (r->user)
		argv[argc++] = r->user;
	argv[argc++] = r->password;
	int len = redisFormatCommandArgv(&buf, argc, argv, NULL);
	if (len < 0)
		return -1;
	return cmd_queue(r, on_auth, NULL, buf, len, -1, 1);
}

static void on_hiredis_connect(const redisAsyncContext *ac, int status)
{
	struct redis *r = ac->data;
	if (!r)
		return;
	event_del(r->connect_timeout_ev);
	if (status != REDIS_OK) {
		/* hiredis frees the context when this returns. */
		r->ac = NULL;
		r->state = CONN_DOWN;
		note_down(r, "redis: cannot connect", ac->errstr);
		schedule_reconnect(r);
		return;
	}
	r->state = CONN_LOADING;
	if (r->password && send_auth(r) < 0) {
		schedule_drop(r, "out of memory");
		return;
	}
	char *buf = NULL;
	int len = redisFormatCommand(&buf, "INFO server");
	if (len < 0 || cmd_queue(r, on_version, NULL, buf, len, -1, 1) < 0) {
		schedule_drop(r, "out of memory");
		return;
	}
	if (send_script_exists(r) < 0)
		schedule_drop(r, "out of memory");
}

static void on_hiredis_disconnect(const redisAsyncContext *ac, int status)
{
	struct redis *r = ac->data;
	(void)status;
	if (!r)
		return;
	/* hiredis frees the context when this returns. */
	r->ac = NULL;
	r->state = CONN_DOWN;
	event_del(r->connect_timeout_ev);
	note_down(r, "redis: connection lost", ac->errstr);
	schedule_reconnect(r);
}

static void on_reconnect(evutil_socket_t fd, short what, void *arg)
{
	struct redis *r = arg;
	(void)fd;
	(void)what;
	/* hiredis resolves host names with getaddrinfo, which blocks: an address
	 * or a name from /etc/hosts keeps this instant. */
	redisAsyncContext *ac =
	    r->path ? redisAsyncConnectUnix(r->path) : redisAsyncConnect(r->host, r->port);
	if (!ac) {
		note_down(r, "redis: cannot connect", "out of memory");
		schedule_reconnect(r);
		return;
	}
	if (ac->err || redisLibeventAttach(ac, r->base) != REDIS_OK) {
		note_down(r, "redis: cannot connect", ac->errstr);
		redisAsyncFree(ac);
		schedule_reconnect(r);
		return;
	}
	ac->data = r;
	redisAsyncSetConnectCallback(ac, on_hiredis_connect);
	redisAsyncSetDisconnectCallback(ac, on_hiredis_disconnect);
	r->ac = ac;
	r->state = CONN_CONNECTING;
	struct timeval tv = ms_to_tv(r->timeout_ms);
	evtimer_add(r->connect_timeout_ev, &tv);
}

/* --- public -------------------------------------------------------------- */

static int parse_url(struct redis *r, const char *url)
{
	if (strncmp(url, "unix:", 5) == 0) {
		const char *p = url + 5;
		if (strncmp(p, "//", 2) == 0)
			p += 2;
		if (*p != '/')
			return -1;
		r->path = strdup(p);
		return r->path ? 0 : -1;
	}
	if (strncmp(url, "redis://", 8) == 0)
		url += 8;
	/* user:password@ is never taken: the url is logged. */
	if (strchr(url, '@'))
		return REDIS_URL_CREDENTIALS;

	const char *host = url, *host_end, *port = NULL;
	if (*url == '[') {
		host = url + 1;
		host_end = strchr(host, ']');
		if (!host_end)
			return -1;
		if (host_end[1] == ':')
			port = host_end + 2;
		else if (host_end[1] != '\0')
			return -1;
	} else {
		host_end = strrchr(url, ':');
		if (host_end)
			port = host_end + 1;
		else
			host_end = url + strlen(url);
	}
	if (host_end == host)
		return -1;
	r->port = 6379;
	if (port) {
		char *end;
		long p = strtol(port, &end, 10);
		if (end == port || *end != '\0' || p < 1 || p > 65535)
			return -1;
		r->port = (int)p;
	}
	r->host = strndup(host, (size_t)(host_end - host));
	return r->host ? 0 : -1;
}

int redis_url_check(const char *url)
{
	struct redis r = {0};
	int rc = parse_url(&r, url);

	free(r.host);
	free(r.path);
	return rc;
}

struct redis *redis_new(struct event_base *base, const char *url, const char *user,
			const char *password, int timeout_ms)
{
	struct redis *r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	r->base = base;
	r->timeout_ms = timeout_ms > 0 ? timeout_ms : DEFAULT_TIMEOUT_MS;
	r->backoff_ms = REDIS_RETRY_FIRST_MS;
	r->url = strdup(url);
	if (!r->url)
		goto fail;
	int rc = parse_url(r, url);
	if (rc < 0) {
		log_error("redis: bad url",
			  LOG_S("url", rc == REDIS_URL_CREDENTIALS
					   ? "(not shown: it holds a password)"
					   : url),
			  LOG_S("expected", "redis://host:port, host:port or unix:/path"));
		goto fail;
	}
	if (password) {
		r->user = user ? strdup(user) : NULL;
		r->password = strdup(password);
		if ((user && !r->user) || !r->password)
			goto fail;
	}
	r->reconnect_ev = evtimer_new(base, on_reconnect, r);
	r->connect_timeout_ev = evtimer_new(base, on_connect_timeout, r);
	r->drop_ev = event_new(base, -1, 0, on_drop, r);
	r->deliver_ev = event_new(base, -1, 0, on_deliver, r);
	if (!r->reconnect_ev || !r->connect_timeout_ev || !r->drop_ev || !r->deliver_ev)
		goto fail;
	/* The first connect starts from the loop, after the caller has added
	 * its scripts and on_connect callback. */
	struct timeval now = {0, 0};
	evtimer_add(r->reconnect_ev, &now);
	return r;
fail:
	if (r->reconnect_ev)
		event_free(r->reconnect_ev);
	if (r->connect_timeout_ev)
		event_free(r->connect_timeout_ev);
	if (r->drop_ev)
		event_free(r->drop_ev);
	if (r->deliver_ev)
		event_free(r->deliver_ev);
	free_settings(r);
	free(r);
	return NULL;
}

void redis_free(struct redis *r)
{
	if (!r || r->freeing)
		return;
	r->freeing = 1;
	enter(r);
	while (r->sent.head)
		cmd_finish(r->sent.head, NULL, "shutting down");
	while (r->failing.head)
		cmd_finish(r->failing.head, NULL, "shutting down");
	leave(r);
}

int redis_connected(const struct redis *r)
{
	return r->state == CONN_READY;
}

unsigned long redis_connect_count(const struct redis *r)
{
	return r->connects;
}

void redis_on_connect(struct redis *r, void (*cb)(struct redis *r, void *arg), void *arg)
{
	r->on_connect = cb;
	r->on_connect_arg = arg;
}
