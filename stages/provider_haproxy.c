/* provider_haproxy: traffic through HAProxy's runtime API (the stats socket
 * at level admin), one command per connection, over a unix socket or TCP,
 * non-blocking on the loop.
 *
 * def: {"type": "haproxy", "socket": "/run/haproxy/admin.sock" |
 * "unix:/path" | "127.0.0.1:9999" (numeric only: nothing is resolved),
 * "backend": "app", "stable": server(s), "canary": server(s), "colors":
 * {"blue": server(s), "green": server(s)}, "timeout_ms": N for each
 * command, from connecting to the answer's last byte}.
 * A weight of N gives the canary servers together N % of the traffic and
 * the stable ones the rest, whatever their numbers; switch readies the colour's servers and drains
 * the others; scale_down puts the colour's servers in maintenance; abort sends all traffic back to
 * stable (or to the colour it names); verify reads "show servers state" and checks what the action
 * says should hold. A blue/green preview colour's verify first drains its servers, which takes them
 * out of the maintenance a scale_down left them in: HAProxy checks their health again, and sends
 * them no new traffic before the switch.
 */
#include "stages/provider.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/util.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "lib/utf8.h"

#define DEFAULT_TIMEOUT_MS 5000
#define MAX_COMMANDS	   64
#define MAX_REPLY	   (256 * 1024)
#define MSG_MAX		   1024
#define MAX_WEIGHT	   256 /* HAProxy's */

/* srv_admin_state bits (HAProxy's SRV_ADMF_MAINT and SRV_ADMF_DRAIN): any
 * maintenance, any drain. SRV_ADMF_CMAINT (0x04, "disabled" in the
 * configuration) is not among them: it stays set once such a server is
 * made ready. */
#define ADMIN_MAINT 0x23
#define ADMIN_DRAIN 0x18
#define OP_RUNNING  2

struct haproxy {
	struct event_base *base;
	struct sockaddr_storage addr;
	int addrlen;
	char *backend;
	json_t *stable; /* arrays of server names */
	json_t *canary;
	json_t *colors; /* colour → array of server names */
	int timeout_ms;
	/* the action in flight */
	struct provider_action action;
	char *color;
	char *cmds[MAX_COMMANDS];
	int ncmds;
	int next;
	int verifying; /* the last command is "show servers state" */
	struct bufferevent *bev;
	struct evbuffer *reply;
	struct event *kick_ev;
	struct event *timeout_ev; /* the command's whole exchange */
	struct event *done_ev;
	int ok;
	char msg[MSG_MAX];
	provider_done_cb done;
	void *arg;
};

/* --- configuration ------------------------------------------------------ */

/* A name that cannot reach into another command or backend. */
static int server_name(const json_t *s)
{
	return json_is_string(s) && json_string_length(s) > 0 &&
	       !strpbrk(json_string_value(s), " /;\n\t");
}

/* Each server in one list alone, of those seen (name → key) holds: one both
 * stable and canary would take one weight and then the other, and one in
 * two colours would drain or go into maintenance with the colour going out
 * while the other still serves through it. No more of them than the
 * commands of one action (set_weight or switch sets them all), which would
 * otherwise fail each time it runs. */
static int server_once(json_t *seen, const json_t *s, const char *key, char *err, size_t errlen)
{
	const char *name = json_string_value(s);
	const char *first = json_string_value(json_object_get(seen, name));

	if (!first && json_object_size(seen) >= MAX_COMMANDS) {
		snprintf(err, errlen, "provider.%s: too many servers (an action sets at most %d)",
			 key, MAX_COMMANDS);
		return -1;
	}

	if (first && strcmp(first, key) == 0) {
		snprintf(err, errlen, "provider.%s: \"%s\" is named twice", key, name);
		return -1;
	}
	if (first) {
		snprintf(err, errlen, "provider.%s: \"%s\" is in %s too", key, name, first);
		return -1;
	}
	if (json_object_set_new(seen, name, json_string(key)) < 0) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

/* A server name or a list of them, none among seen → a new array; NULL
 * with err. */
static json_t *server_list(const json_t *v, const char *key, json_t *seen, char *err, size_t errlen)
{
	json_t *s;
	size_t i;

	if (server_name(v))
		return server_once(seen, v, key, err, errlen) < 0 ? NULL : json_pack("[O]", v);
	if (!json_is_array(v) || json_array_size(v) == 0)
		goto bad;
	json_array_foreach(v, i, s)
	{
		if (!server_name(s))
			goto bad;
		if (server_once(seen, s, key, err, errlen) < 0)
			return NULL;
	}
	return json_incref((json_t *)v);
bad:
	snprintf(err, errlen, "provider.%s: a server name or a list of them", key);
	return NULL;
}

static int parse_socket(struct haproxy *h, const char *s, char *err, size_t errlen)
{
	if (strncmp(s, "unix:", 5) == 0)
		s += 5;
	if (s[0] == '/') {
		struct sockaddr_un *un = (struct sockaddr_un *)&h->addr;
		if (strlen(s) >= sizeof(un->sun_path)) {
			snprintf(err, errlen, "provider.socket: the path is too long");
			return -1;
		}
		un->sun_family = AF_UNIX;
		strcpy(un->sun_path, s);
		h->addrlen = (int)sizeof(*un);
		return 0;
	}
	h->addrlen = (int)sizeof(h->addr);
	if (evutil_parse_sockaddr_port(s, (struct sockaddr *)&h->addr, &h->addrlen) < 0) {
		snprintf(err, errlen,
			 "provider.socket: \"%s\" is neither a unix socket path nor ip:port", s);
		return -1;
	}
	return 0;
}

static void haproxy_destroy(void *state);

static void on_done(evutil_socket_t fd, short what, void *arg);
static void on_kick(evutil_socket_t fd, short what, void *arg);
static void on_timeout(evutil_socket_t fd, short what, void *arg);

static const char *const haproxy_keys[] = {"type",   "socket", "backend", "stable",
					   "canary", "colors", "timeout", NULL};

static void *haproxy_create(struct event_base *base, const json_t *def, char *err, size_t errlen)
{
	const char *socket = json_string_value(json_object_get(def, "socket"));
	const char *backend = json_string_value(json_object_get(def, "backend"));
	const json_t *colors = json_object_get(def, "colors");
	struct haproxy *h = calloc(1, sizeof(*h));
	json_t *seen = json_object(); /* server → its list, stable/canary then colours */
	const char *name;
	json_t *v;
	char key[128];

	if (!h || !seen) {
		free(h);
		json_decref(seen);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	h->base = base;
	if (!socket || !*socket) {
		snprintf(err, errlen, "provider.socket: required, the runtime API's address");
		goto fail;
	}
	if (parse_socket(h, socket, err, errlen) < 0)
		goto fail;
	if (!backend || !*backend || strpbrk(backend, " /;\n\t")) {
		snprintf(err, errlen, "provider.backend: required, a backend name");
		goto fail;
	}
	h->backend = strdup(backend);
	if (json_object_get(def, "stable") || json_object_get(def, "canary")) {
		h->stable =
		    server_list(json_object_get(def, "stable"), "stable", seen, err, errlen);
		if (!h->stable)
			goto fail;
		h->canary =
		    server_list(json_object_get(def, "canary"), "canary", seen, err, errlen);
		if (!h->canary)
			goto fail;
	}
	/* Colours are apart from stable and canary: those set weights, these
	 * states. */
	json_object_clear(seen);
	if (colors) {
		if (!json_is_object(colors) || json_object_size(colors) < 2) {
			snprintf(err, errlen,
				 "provider.colors: a map of two or more colours to "
				 "their servers");
			goto fail;
		}
		h->colors = json_object();
		json_object_foreach((json_t *)colors, name, v)
		{
			snprintf(key, sizeof(key), "colors.%s", name);
			json_t *list = server_list(v, key, seen, err, errlen);
			if (!list)
				goto fail;
			json_object_set_new(h->colors, name, list);
		}
	}
	if (!h->stable && !h->colors) {
		snprintf(err, errlen, "provider: needs stable and canary servers, or colors");
		goto fail;
	}
	if (provider_def_ms(def, "timeout_ms", DEFAULT_TIMEOUT_MS, 600000, &h->timeout_ms, err,
			    errlen) < 0)
		goto fail;
	h->done_ev = event_new(base, -1, 0, on_done, h);
	h->kick_ev = event_new(base, -1, 0, on_kick, h);
	h->timeout_ev = evtimer_new(base, on_timeout, h);
	if (!h->backend || !h->done_ev || !h->kick_ev || !h->timeout_ev || (colors && !h->colors)) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	json_decref(seen);
	return h;
fail:
	json_decref(seen);
	haproxy_destroy(h);
	return NULL;
}

static int haproxy_supports(void *state, enum provider_verb verb)
{
	struct haproxy *h = state;

	switch (verb) {
	case PROVIDER_VERIFY:
		return 1;
	case PROVIDER_SET_WEIGHT:
		return h->stable != NULL;
	case PROVIDER_SWITCH:
	case PROVIDER_SCALE_DOWN:
		return h->colors != NULL;
	case PROVIDER_PROMOTE:
	case PROVIDER_ABORT:
		return 1;
	default:
		return 0;
	}
}

/* --- one action: a list of commands ------------------------------------- */

static void clear_action(struct haproxy *h)
{
	if (h->bev) {
		bufferevent_free(h->bev);
		h->bev = NULL;
	}
	if (h->reply) {
		evbuffer_free(h->reply);
		h->reply = NULL;
	}
	for (int i = 0; i < h->ncmds; i++)
		free(h->cmds[i]);
	h->ncmds = 0;
	h->next = 0;
	h->verifying = 0;
	free(h->color);
	h->color = NULL;
	if (h->kick_ev)
		event_del(h->kick_ev);
	if (h->timeout_ev)
		evtimer_del(h->timeout_ev);
	if (h->done_ev)
		event_del(h->done_ev);
}

/* The outcome is known; the caller hears of it from the loop. */
static void finish(struct haproxy *h, int ok, const char *msg)
{
	h->ok = ok;
	/* It may quote whatever answered at the runtime API's address. */
	utf8_copy(h->msg, sizeof(h->msg), msg, strlen(msg));
	if (h->bev) {
		bufferevent_free(h->bev);
		h->bev = NULL;
	}
	evtimer_del(h->timeout_ev);
	event_active(h->done_ev, EV_TIMEOUT, 0);
}

static void on_done(evutil_socket_t fd, short what, void *arg)
{
	struct haproxy *h = arg;
	provider_done_cb done = h->done;
	void *done_arg = h->arg;
	char msg[MSG_MAX];
	int ok = h->ok;
	(void)fd;
	(void)what;

	snprintf(msg, sizeof(msg), "%s", h->msg);
	clear_action(h);
	done(ok, msg, done_arg);
}

static int add_cmd(struct haproxy *h, const char *fmt, const char *server, const char *arg)
{
	char line[512];

	if (h->ncmds >= MAX_COMMANDS)
		return -1;
	snprintf(line, sizeof(line), fmt, h->backend, server, arg);
	h->cmds[h->ncmds] = strdup(line);
	if (!h->cmds[h->ncmds])
		return -1;
	h->ncmds++;
	return 0;
}

static int add_each(struct haproxy *h, const json_t *servers, const char *fmt, const char *arg)
{
	size_t i;
	json_t *s;

	json_array_foreach(servers, i, s)
	{
		if (add_cmd(h, fmt, json_string_value(s), arg) < 0)
			return -1;
	}
	return 0;
}

/* The weight of each canary and each stable server that gives the canary
 * servers together weight % of the traffic: with one of each, weight and
 * 100 - weight; with more on a side, each of its servers weighs less. */
static void split_weight(const struct haproxy *h, int weight, int *canary, int *stable)
{
	long long c = (long long)json_array_size(h->canary);
	long long s = (long long)json_array_size(h->stable);
	long long wc = weight * s, ws = (100 - weight) * c;
	long long top = wc > ws ? wc : ws;

	if (top > MAX_WEIGHT) {
		wc = (wc * MAX_WEIGHT + top / 2) / top;
		ws = (ws * MAX_WEIGHT + top / 2) / top;
	}
	/* A share too small to round to a weight still gets the least one. */
	*canary = weight > 0 && wc == 0 ? 1 : (int)wc;
	*stable = weight < 100 && ws == 0 ? 1 : (int)ws;
}

static int add_weights(struct haproxy *h, int weight)
{
	char canary[16], stable[16];
	int wc, ws;

	split_weight(h, weight, &wc, &ws);
	snprintf(canary, sizeof(canary), "%d", wc);
	snprintf(stable, sizeof(stable), "%d", ws);
	if (add_each(h, h->canary, "set server %s/%s weight %s", canary) < 0)
		return -1;
	return add_each(h, h->stable, "set server %s/%s weight %s", stable);
}

/* The colour's servers take the traffic, the others drain (connections in
 * progress finish, no new ones start). */
static int add_switch(struct haproxy *h, const char *color)
{
	const char *name;
	json_t *servers;

	json_object_foreach(h->colors, name, servers)
	{
		if (strcmp(name, color) != 0 &&
		    add_each(h, servers, "set server %s/%s state %s", "drain") < 0)
			return -1;
	}
	return add_each(h, json_object_get(h->colors, color), "set server %s/%s state %s", "ready");
}

static int plan(struct haproxy *h, const struct provider_action *a, char *err, size_t errlen)
{
	const char *verb = provider_verb_name(a->verb);
	int rc = 0;

	if (a->color && h->colors && !json_object_get(h->colors, a->color) &&
	    !(a->verb == PROVIDER_VERIFY && h->stable &&
	      (!strcmp(a->color, "canary") || !strcmp(a->color, "stable")))) {
		snprintf(err, errlen, "%s: no servers for the colour \"%s\"", verb, a->color);
		return -1;
	}
	switch (a->verb) {
	case PROVIDER_SET_WEIGHT:
		if (a->weight < 0) {
			snprintf(err, errlen, "set_weight: needs a weight");
			return -1;
		}
		rc = add_weights(h, a->weight);
		break;
	case PROVIDER_SWITCH:
	case PROVIDER_SCALE_DOWN:
	case PROVIDER_PROMOTE:
	case PROVIDER_ABORT:
		if (a->color && h->colors) {
			if (a->verb == PROVIDER_SCALE_DOWN)
				rc = add_each(h, json_object_get(h->colors, a->color),
					      "set server %s/%s state %s", "maint");
			else
				rc = add_switch(h, a->color);
		} else if (h->stable &&
			   (a->verb == PROVIDER_PROMOTE || a->verb == PROVIDER_ABORT)) {
			rc = add_weights(h, a->verb == PROVIDER_PROMOTE ? 100 : 0);
		} else {
			snprintf(err, errlen, "%s: needs a colour", verb);
			return -1;
		}
		break;
	case PROVIDER_VERIFY:
		if (a->preview && a->color && h->colors)
			rc = add_each(h, json_object_get(h->colors, a->color),
				      "set server %s/%s state %s", "drain");
		if (rc == 0)
			rc = add_cmd(h, "show servers state %s%s%s", "", "");
		h->verifying = 1;
		break;
	default:
		snprintf(err, errlen, "the haproxy provider cannot %s", verb);
		return -1;
	}
	if (rc < 0) {
		snprintf(err, errlen, "%s: too many servers", verb);
		return -1;
	}
	return 0;
}

/* --- verify: "show servers state" --------------------------------------- */

struct server_state {
	int found;
	int op_state;
	int admin_state;
	int weight;
};

static int column(char **names, int n, const char *name)
{
	for (int i = 0; i < n; i++)
		if (strcmp(names[i], name) == 0)
			return i;
	return -1;
}

/* Fills st for server; -1 with why when the reply is not a state dump. */
static int find_server(char *dump, const char *server, struct server_state *st, char *why,
		       size_t whylen)
{
	char *names[64], *fields[64];
	int nnames = 0, c_name = -1, c_op = -1, c_admin = -1, c_weight = -1;
	char *save = NULL, *line;
	char *copy = strdup(dump);

	memset(st, 0, sizeof(*st));
	if (!copy) {
		snprintf(why, whylen, "out of memory");
		return -1;
	}
	for (line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *fsave = NULL, *f;
		int n = 0;
		if (line[0] == '#') {
			for (f = strtok_r(line + 1, " ", &fsave); f && nnames < 64;
			     f = strtok_r(NULL, " ", &fsave))
				names[nnames++] = f;
			c_name = column(names, nnames, "srv_name");
			c_op = column(names, nnames, "srv_op_state");
			c_admin = column(names, nnames, "srv_admin_state");
			c_weight = column(names, nnames, "srv_uweight");
			continue;
		}
		if (c_name < 0 || c_op < 0 || c_admin < 0 || c_weight < 0)
			continue;
		for (f = strtok_r(line, " ", &fsave); f && n < 64; f = strtok_r(NULL, " ", &fsave))
			fields[n++] = f;
		if (n <= c_name || n <= c_op || n <= c_admin || n <= c_weight ||
		    strcmp(fields[c_name], server) != 0)
			continue;
		st->found = 1;
		st->op_state = atoi(fields[c_op]);
		st->admin_state = atoi(fields[c_admin]);
		st->weight = atoi(fields[c_weight]);
		break;
	}
	free(copy);
	if (c_name < 0 || c_op < 0 || c_admin < 0 || c_weight < 0) {
		snprintf(why, whylen, "not a server state dump: %.200s", dump);
		return -1;
	}
	return 0;
}

static const char *state_name(const struct server_state *st)
{
	if (st->admin_state & ADMIN_MAINT)
		return "maint";
	if (st->admin_state & ADMIN_DRAIN)
		return st->op_state == OP_RUNNING ? "drain" : "drain and down";
	return st->op_state == OP_RUNNING ? "up" : "down";
}

static void append(char *out, size_t outlen, const char *fmt, const char *server,
		   const struct server_state *st)
{
	size_t used = strlen(out);

	if (used + 1 < outlen)
		snprintf(out + used, outlen - used, fmt, used ? ", " : "", server, st->weight,
			 state_name(st));
}

/* What the action says should hold: with a weight, the canary and stable
 * servers at it; with a colour, its servers up and taking traffic (a
 * preview's up, drained or not); otherwise every server not in maintenance
 * up. */
static void check_servers(struct haproxy *h, char *dump)
{
	const char *name;
	json_t *servers;
	char seen[MSG_MAX / 2] = "", why[MSG_MAX / 4] = "";
	int bad = 0;
	int refused = h->action.preview ? ADMIN_MAINT : ADMIN_MAINT | ADMIN_DRAIN;
	json_t *groups = json_object();

	if (!groups) {
		finish(h, 0, "verify: out of memory");
		return;
	}
	if (h->stable) {
		json_object_set(groups, "canary", h->canary);
		json_object_set(groups, "stable", h->stable);
	}
	if (h->colors)
		json_object_update(groups, h->colors);
	json_object_foreach(groups, name, servers)
	{
		size_t i;
		json_t *s;
		json_array_foreach(servers, i, s)
		{
			const char *server = json_string_value(s);
			struct server_state st;
			int want_weight = -1, want_up = 0;
			if (find_server(dump, server, &st, why, sizeof(why)) < 0) {
				bad = 1;
				goto out;
			}
			if (!st.found) {
				snprintf(why, sizeof(why), "%s/%s: no such server", h->backend,
					 server);
				bad = 1;
				goto out;
			}
			append(seen, sizeof(seen), "%s%s weight %d %s", server, &st);
			if (h->action.weight >= 0 && h->stable) {
				int wc, ws;
				split_weight(h, h->action.weight, &wc, &ws);
				if (!strcmp(name, "canary"))
					want_weight = wc;
				else if (!strcmp(name, "stable"))
					want_weight = ws;
			}
			if (h->color)
				want_up = !strcmp(name, h->color);
			else if (h->action.weight < 0)
				want_up = !(st.admin_state & ADMIN_MAINT);
			if (!bad && want_weight >= 0 && st.weight != want_weight) {
				snprintf(why, sizeof(why), "%s has weight %d, not %d", server,
					 st.weight, want_weight);
				bad = 1;
			}
			if (!bad && want_up &&
			    (st.op_state != OP_RUNNING || (st.admin_state & refused))) {
				snprintf(why, sizeof(why), "%s is %s", server, state_name(&st));
				bad = 1;
			}
		}
	}
out:
	json_decref(groups);
	char msg[MSG_MAX + 64];
	if (bad)
		snprintf(msg, sizeof(msg), "verify failed: %s (%s: %s)", why, h->backend, seen);
	else
		snprintf(msg, sizeof(msg), "verify done: %s: %s", h->backend, seen);
	finish(h, !bad, msg);
}

/* --- the connection ----------------------------------------------------- */

static void next_command(struct haproxy *h);

static void command_done(struct haproxy *h)
{
	size_t len = evbuffer_get_length(h->reply);
	char *text = malloc(len + 1);
	char msg[MSG_MAX];

	if (!text) {
		finish(h, 0, "out of memory");
		return;
	}
	evbuffer_remove(h->reply, text, len);
	text[len] = '\0';
	bufferevent_free(h->bev);
	h->bev = NULL;
	/* Every answer ends with a line break, even the empty one of a set
	 * command that worked: a connection closed before it (a reloading
	 * haproxy, another service) carried out nothing. */
	if (len == 0 || text[len - 1] != '\n') {
		snprintf(msg, sizeof(msg),
			 "%s failed: \"%s\": the runtime API closed the connection without a "
			 "complete answer",
			 provider_verb_name(h->action.verb), h->cmds[h->next - 1]);
		free(text);
		finish(h, 0, msg);
		return;
	}
	if (h->verifying && h->next == h->ncmds) {
		check_servers(h, text);
		free(text);
		return;
	}
	/* A set command answers nothing when it worked. */
	size_t lead = strspn(text, " \r\n");
	if (text[lead]) {
		text[lead + strcspn(text + lead, "\r\n")] = '\0';
		snprintf(msg, sizeof(msg), "%s failed: \"%s\": %s",
			 provider_verb_name(h->action.verb), h->cmds[h->next - 1], text + lead);
		free(text);
		finish(h, 0, msg);
		return;
	}
	free(text);
	next_command(h);
}

static void on_read(struct bufferevent *bev, void *arg)
{
	struct haproxy *h = arg;

	evbuffer_add_buffer(h->reply, bufferevent_get_input(bev));
	if (evbuffer_get_length(h->reply) > MAX_REPLY)
		finish(h, 0, "the runtime API's reply is too long");
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	struct haproxy *h = arg;
	char msg[MSG_MAX];
	const char *verb = provider_verb_name(h->action.verb);

	if (what & BEV_EVENT_CONNECTED)
		return;
	if (what & BEV_EVENT_EOF) {
		evbuffer_add_buffer(h->reply, bufferevent_get_input(bev));
		command_done(h);
		return;
	}
	snprintf(msg, sizeof(msg), "%s failed: runtime API: %s", verb,
		 evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
	finish(h, 0, msg);
}

/* A deadline, not an idle timeout: an answer that trickles in must not
 * hold the action for longer than the command's time. */
static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct haproxy *h = arg;
	char msg[MSG_MAX];
	(void)fd;
	(void)what;

	snprintf(msg, sizeof(msg), "%s failed: the runtime API did not answer within %d ms",
		 provider_verb_name(h->action.verb), h->timeout_ms);
	finish(h, 0, msg);
}

static void next_command(struct haproxy *h)
{
	char msg[MSG_MAX];
	struct timeval tv = {h->timeout_ms / 1000, (h->timeout_ms % 1000) * 1000};

	if (h->next == h->ncmds) {
		snprintf(msg, sizeof(msg), "%s done:", provider_verb_name(h->action.verb));
		for (int i = 0; i < h->ncmds; i++) {
			size_t used = strlen(msg);
			/* "set server app/canary weight 20" → " app/canary weight 20" */
			snprintf(msg + used, sizeof(msg) - used, "%s %s", i ? "," : "",
				 h->cmds[i] + strlen("set server "));
		}
		finish(h, 1, msg);
		return;
	}
	evbuffer_drain(h->reply, evbuffer_get_length(h->reply));
	h->bev = bufferevent_socket_new(h->base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (!h->bev) {
		finish(h, 0, "out of memory");
		return;
	}
	bufferevent_setcb(h->bev, on_read, NULL, on_event, h);
	bufferevent_enable(h->bev, EV_READ | EV_WRITE);
	evtimer_add(h->timeout_ev, &tv);
	const char *cmd = h->cmds[h->next++];
	if (bufferevent_write(h->bev, cmd, strlen(cmd)) < 0 ||
	    bufferevent_write(h->bev, "\n", 1) < 0) {
		finish(h, 0, "out of memory");
		return;
	}
	if (bufferevent_socket_connect(h->bev, (struct sockaddr *)&h->addr, h->addrlen) < 0) {
		snprintf(msg, sizeof(msg), "%s failed: cannot connect to the runtime API: %s",
			 provider_verb_name(h->action.verb),
			 evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
		finish(h, 0, msg);
	}
}

static void on_kick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	next_command(arg);
}

static int haproxy_start(void *state, const struct provider_action *a, provider_done_cb done,
			 void *arg, char *err, size_t errlen)
{
	struct haproxy *h = state;

	if (plan(h, a, err, errlen) < 0)
		goto fail;
	h->reply = evbuffer_new();
	if (!h->reply || (a->color && !(h->color = strdup(a->color)))) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	h->action = *a;
	h->action.color = h->color;
	h->action.image = NULL;
	h->action.env = NULL;
	h->done = done;
	h->arg = arg;
	/* The first connection starts from the loop, so that even a failure
	 * to connect reaches the caller after this returns. */
	event_active(h->kick_ev, EV_TIMEOUT, 0);
	return 0;
fail:
	clear_action(h);
	return -1;
}

static void haproxy_cancel(void *state)
{
	clear_action(state);
}

static void haproxy_destroy(void *state)
{
	struct haproxy *h = state;

	clear_action(h);
	if (h->done_ev)
		event_free(h->done_ev);
	if (h->kick_ev)
		event_free(h->kick_ev);
	if (h->timeout_ev)
		event_free(h->timeout_ev);
	free(h->backend);
	json_decref(h->stable);
	json_decref(h->canary);
	json_decref(h->colors);
	free(h);
}

const struct provider_ops provider_haproxy_ops = {
    .type = "haproxy",
    .keys = haproxy_keys,
    .create = haproxy_create,
    .supports = haproxy_supports,
    .start = haproxy_start,
    .cancel = haproxy_cancel,
    .destroy = haproxy_destroy,
};
