/* curlload: libcurl's functions, passed on to the library opened on first
 * use (curlload.h). */
#define CURL_DISABLE_TYPECHECK
#include "workers/curlload.h"

#include <curl/curl.h>
#include <dlfcn.h>
#include <stdarg.h>

#include "lib/log.h"

/* The functions that make what the others are given: they load libcurl.
 * Each: name, return type, parameters, arguments. NULL when not loaded. */
#define MAKERS(X)                                                                                  \
	X(curl_easy_init, CURL *, (void), ())                                                      \
	X(curl_multi_init, CURLM *, (void), ())                                                    \
	X(curl_url, CURLU *, (void), ())                                                           \
	X(curl_slist_append, struct curl_slist *, (struct curl_slist * l, const char *s), (l, s))  \
	X(curl_easy_escape, char *, (CURL * h, const char *s, int n), (h, s, n))

/* The functions given something a maker made, and what each returns when
 * called without libcurl loaded (which a correct caller never does). */
#define USERS(X)                                                                                   \
	X(curl_multi_cleanup, CURLMcode, (CURLM * m), (m), CURLM_BAD_HANDLE)                       \
	X(curl_multi_add_handle, CURLMcode, (CURLM * m, CURL * e), (m, e), CURLM_BAD_HANDLE)       \
	X(curl_multi_remove_handle, CURLMcode, (CURLM * m, CURL * e), (m, e), CURLM_BAD_HANDLE)    \
	X(curl_multi_socket_action, CURLMcode, (CURLM * m, curl_socket_t s, int ev, int *n),       \
	  (m, s, ev, n), CURLM_BAD_HANDLE)                                                         \
	X(curl_multi_assign, CURLMcode, (CURLM * m, curl_socket_t s, void *p), (m, s, p),          \
	  CURLM_BAD_HANDLE)                                                                        \
	X(curl_multi_info_read, CURLMsg *, (CURLM * m, int *left), (m, left), NULL)                \
	X(curl_url_get, CURLUcode, (CURLU * u, CURLUPart what, char **part, unsigned int f),       \
	  (u, what, part, f), CURLUE_BAD_HANDLE)                                                   \
	X(curl_url_set, CURLUcode, (CURLU * u, CURLUPart what, const char *part, unsigned int f),  \
	  (u, what, part, f), CURLUE_BAD_HANDLE)

/* The functions that return nothing: with libcurl not loaded there is
 * nothing they could be given, so they do nothing. */
#define VOIDS(X)                                                                                   \
	X(curl_easy_cleanup, (CURL * h), (h))                                                      \
	X(curl_easy_reset, (CURL * h), (h))                                                        \
	X(curl_free, (void *p), (p))                                                               \
	X(curl_slist_free_all, (struct curl_slist * l), (l))                                       \
	X(curl_url_cleanup, (CURLU * u), (u))

#define FIELD(name, ret, params, ...)  ret(*name) params;
#define VOID_FIELD(name, params, args) void(*name) params;

static struct {
	MAKERS(FIELD)
	USERS(FIELD)
	VOIDS(VOID_FIELD)
	CURLcode (*curl_easy_setopt)(CURL *, CURLoption, ...);
	CURLcode (*curl_easy_getinfo)(CURL *, CURLINFO, ...);
	CURLMcode (*curl_multi_setopt)(CURLM *, CURLMoption, ...);
	const char *(*curl_easy_strerror)(CURLcode);
} api;

enum state { UNTRIED, LOADED, FAILED };
static enum state state = UNTRIED;

static int bind_all(void *lib)
{
#define BIND(name, ...)                                                                            \
	if (!(*(void **)&api.name = dlsym(lib, #name))) {                                          \
		log_error("libcurl lacks a function sluice calls",                                 \
			  LOG_S("library", CURLLOAD_LIBRARY), LOG_S("function", #name));           \
		return -1;                                                                         \
	}
	MAKERS(BIND)
	USERS(BIND)
	VOIDS(BIND)
	BIND(curl_easy_setopt)
	BIND(curl_easy_getinfo)
	BIND(curl_multi_setopt)
	BIND(curl_easy_strerror)
#undef BIND
	return 0;
}

/* 0 once libcurl is loaded; -1 when it cannot be, logged the first time. */
static int load(void)
{
	if (state != UNTRIED)
		return state == LOADED ? 0 : -1;
	state = FAILED;
	void *lib = dlopen(CURLLOAD_LIBRARY, RTLD_NOW | RTLD_LOCAL);
	if (!lib) {
		log_error("cannot load libcurl: HTTP stages, metric queries and checks fail",
			  LOG_S("library", CURLLOAD_LIBRARY), LOG_S("error", dlerror()));
		return -1;
	}
	if (bind_all(lib) < 0) {
		dlclose(lib);
		return -1;
	}
	state = LOADED;
	return 0;
}

int curlload_loaded(void)
{
	return state == LOADED;
}

#define MAKER(name, ret, params, args)                                                             \
	ret name params                                                                            \
	{                                                                                          \
		if (load() < 0)                                                                    \
			return NULL;                                                               \
		return api.name args;                                                              \
	}
#define USER(name, ret, params, args, fail)                                                        \
	ret name params                                                                            \
	{                                                                                          \
		if (state != LOADED)                                                               \
			return fail;                                                               \
		return api.name args;                                                              \
	}
#define VOID_USER(name, params, args)                                                              \
	void name params                                                                           \
	{                                                                                          \
		if (state == LOADED)                                                               \
			api.name args;                                                             \
	}

MAKERS(MAKER)
USERS(USER)
VOIDS(VOID_USER)

const char *curl_easy_strerror(CURLcode code)
{
	return state == LOADED ? api.curl_easy_strerror(code) : "libcurl is not loaded";
}

/* The one argument after an option is of the type its number says, as
 * libcurl's own headers define the ranges (CURLOPTTYPE_*): a long, a
 * pointer to data or to a function, a curl_off_t, or a pointer to a blob.
 * CURLMOPT_* numbers use the same ranges. */
#define FORWARD_OPTION(call, handle, option, ap)                                                   \
	do {                                                                                       \
		if ((option) < CURLOPTTYPE_OBJECTPOINT)                                            \
			return call(handle, option, va_arg(ap, long));                             \
		if ((option) >= CURLOPTTYPE_OFF_T && (option) < CURLOPTTYPE_BLOB)                  \
			return call(handle, option, va_arg(ap, curl_off_t));                       \
		return call(handle, option, va_arg(ap, void *));                                   \
	} while (0)

#define SETOPT(name, handle_type, option_type, ret, fail)                                          \
	static ret name##_passed(handle_type h, option_type option, va_list ap)                    \
	{                                                                                          \
		FORWARD_OPTION(api.name, h, option, ap);                                           \
	}                                                                                          \
	ret name(handle_type h, option_type option, ...)                                           \
	{                                                                                          \
		if (state != LOADED)                                                               \
			return fail;                                                               \
		va_list ap;                                                                        \
		va_start(ap, option);                                                              \
		ret rc = name##_passed(h, option, ap);                                             \
		va_end(ap);                                                                        \
		return rc;                                                                         \
	}

SETOPT(curl_easy_setopt, CURL *, CURLoption, CURLcode, CURLE_FAILED_INIT)
SETOPT(curl_multi_setopt, CURLM *, CURLMoption, CURLMcode, CURLM_BAD_HANDLE)

/* Every CURLINFO is answered through a pointer. */
CURLcode curl_easy_getinfo(CURL *h, CURLINFO info, ...)
{
	if (state != LOADED)
		return CURLE_FAILED_INIT;
	va_list ap;
	va_start(ap, info);
	void *out = va_arg(ap, void *);
	va_end(ap);
	return api.curl_easy_getinfo(h, info, out);
}
