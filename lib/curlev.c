/* curlev: curl multi's socket interface on libevent events. */
#include "lib/curlev.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* One socket curl asked us to watch. */
struct watch {
	struct event *ev;
	struct watch *next, **prevp;
};

/* One easy handle added, and whom to tell when it is done. */
struct transfer {
	CURL *easy;
	curlev_done_cb cb;
	void *arg;
	struct transfer *next;
};

struct curlev {
	struct event_base *base;
	CURLM *multi;
	struct event *timer;
	struct watch *watches;
	struct transfer *transfers;
};

static struct transfer *take(struct curlev *m, CURL *easy)
{
	for (struct transfer **p = &m->transfers; *p; p = &(*p)->next) {
		struct transfer *t = *p;
		if (t->easy == easy) {
			*p = t->next;
			return t;
		}
	}
	return NULL;
}

/* Each finished handle leaves the multi before its callback runs, so the
 * callback may add it again or free it. */
static void check_finished(struct curlev *m)
{
	CURLMsg *msg;
	int left;

	while ((msg = curl_multi_info_read(m->multi, &left)) != NULL) {
		if (msg->msg != CURLMSG_DONE)
			continue;
		CURL *easy = msg->easy_handle;
		CURLcode rc = msg->data.result;
		struct transfer *t = take(m, easy);
		curl_multi_remove_handle(m->multi, easy);
		if (t) {
			t->cb(easy, rc, t->arg);
			free(t);
		}
	}
}

static void on_socket_event(evutil_socket_t fd, short what, void *arg)
{
	struct curlev *m = arg;
	int running;
	int action =
	    (what & EV_READ ? CURL_CSELECT_IN : 0) | (what & EV_WRITE ? CURL_CSELECT_OUT : 0);

	curl_multi_socket_action(m->multi, fd, action, &running);
	check_finished(m);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct curlev *m = arg;
	int running;
	(void)fd;
	(void)what;

	curl_multi_socket_action(m->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	check_finished(m);
}

static void watch_free(struct watch *w)
{
	*w->prevp = w->next;
	if (w->next)
		w->next->prevp = w->prevp;
	event_free(w->ev);
	free(w);
}

static int on_curl_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
	struct curlev *m = userp;
	struct watch *w = socketp;
	(void)easy;

	if (what == CURL_POLL_REMOVE) {
		if (w) {
			watch_free(w);
			curl_multi_assign(m->multi, s, NULL);
		}
		return 0;
	}
	short kind = (short)(EV_PERSIST | (what & CURL_POLL_IN ? EV_READ : 0) |
			     (what & CURL_POLL_OUT ? EV_WRITE : 0));
	if (!w) {
		w = calloc(1, sizeof(*w));
		if (!w)
			return -1;
		w->ev = event_new(m->base, s, kind, on_socket_event, m);
		if (!w->ev) {
			free(w);
			return -1;
		}
		w->next = m->watches;
		w->prevp = &m->watches;
		if (m->watches)
			m->watches->prevp = &w->next;
		m->watches = w;
		curl_multi_assign(m->multi, s, w);
	} else {
		event_del(w->ev);
		event_assign(w->ev, m->base, s, kind, on_socket_event, m);
	}
	return event_add(w->ev, NULL) < 0 ? -1 : 0;
}

static int on_curl_timer_set(CURLM *multi, long timeout_ms, void *userp)
{
	struct curlev *m = userp;
	(void)multi;

	if (timeout_ms < 0) {
		evtimer_del(m->timer);
		return 0;
	}
	struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
	return evtimer_add(m->timer, &tv) < 0 ? -1 : 0;
}

struct curlev *curlev_new(struct event_base *base)
{
	struct curlev *m = calloc(1, sizeof(*m));

	if (!m)
		return NULL;
	m->base = base;
	m->multi = curl_multi_init();
	m->timer = evtimer_new(base, on_timer, m);
	if (!m->multi || !m->timer) {
		curlev_free(m);
		return NULL;
	}
	curl_multi_setopt(m->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
	curl_multi_setopt(m->multi, CURLMOPT_SOCKETDATA, m);
	curl_multi_setopt(m->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer_set);
	curl_multi_setopt(m->multi, CURLMOPT_TIMERDATA, m);
	return m;
}

int curlev_add(struct curlev *m, CURL *easy, curlev_done_cb cb, void *arg)
{
	struct transfer *t = calloc(1, sizeof(*t));

	if (!t)
		return -1;
	t->easy = easy;
	t->cb = cb;
	t->arg = arg;
	if (curl_multi_add_handle(m->multi, easy) != CURLM_OK) {
		free(t);
		return -1;
	}
	t->next = m->transfers;
	m->transfers = t;
	return 0;
}

void curlev_remove(struct curlev *m, CURL *easy)
{
	struct transfer *t = take(m, easy);

	if (!t)
		return;
	curl_multi_remove_handle(m->multi, easy);
	free(t);
}

void curlev_free(struct curlev *m)
{
	if (!m)
		return;
	while (m->transfers)
		curlev_remove(m, m->transfers->easy);
	if (m->multi)
		curl_multi_cleanup(m->multi);
	while (m->watches)
		watch_free(m->watches);
	if (m->timer)
		event_free(m->timer);
	free(m);
}

int curlev_show_url(const char *url, char *out, size_t outlen, char *err, size_t errlen)
{
	CURLU *u = curl_url();
	char *scheme = NULL, *host = NULL, *port = NULL, *path = NULL;
	int rc = -1;

	if (!u || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
		snprintf(err, errlen, "not a valid URL");
		goto done;
	}
	if (strcasecmp(scheme, "http") != 0 && strcasecmp(scheme, "https") != 0) {
		snprintf(err, errlen, "only http and https are allowed");
		goto done;
	}
	curl_url_get(u, CURLUPART_PORT, &port, 0);
	curl_url_get(u, CURLUPART_PATH, &path, 0);
	int n =
	    snprintf(out, outlen, "%s://%s%s%s", scheme, host, port ? ":" : "", port ? port : "");
	const char *p = path ? path : "/";
	size_t len = strlen(p);
	/* A path too long is cut before a '/', never inside a segment: a
	 * value in the path (a secret, percent-encoded) is one segment, and
	 * a log masks it only whole. */
	if (n >= 0 && (size_t)n + len >= outlen) {
		len = 0;
		for (size_t i = 0; p[i] && (size_t)n + i + sizeof("/...") <= outlen; i++)
			if (p[i] == '/')
				len = i;
	}
	if (n >= 0 && (size_t)n < outlen)
		snprintf(out + n, outlen - (size_t)n, "%.*s%s", (int)len, p,
			 len < strlen(p) ? "/..." : "");
	rc = 0;
done:
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_free(path);
	curl_url_cleanup(u);
	return rc;
}
