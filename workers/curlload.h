/* curlload: the worker's libcurl, loaded when a stage first needs it.
 *
 * Most workers never make an HTTP call: build, test and scan stages are
 * processes. Linked in, libcurl and the libraries it brings (GnuTLS,
 * p11-kit, Kerberos, LDAP, libssh2 ...) cost every worker about 3.6 MiB of
 * resident memory from its start, most of it in their constructors. So the
 * worker is linked without libcurl, and curlload.c defines the libcurl
 * functions sluice calls, each passing the call on to the library it opens
 * (dlopen) on first use. The agent, sluicectl and the tests link libcurl
 * itself and do not use this file.
 *
 * Only the functions that make something (curl_easy_init, curl_multi_init,
 * curl_slist_append, curl_url) load the library; the others are given what
 * those made and so run only once it is loaded. When it cannot be loaded,
 * the makers return NULL and the reason is logged once, and it is not tried
 * again; curl_easy_strerror and the freeing functions work either way.
 * Like the rest of the worker's HTTP code, these run on its event loop's
 * thread only.
 */
#ifndef SLUICE_CURLLOAD_H
#define SLUICE_CURLLOAD_H

/* The library's file name, as the dynamic loader looks it up (a test builds
 * the loader with a name that is not there). */
#ifndef CURLLOAD_LIBRARY
#define CURLLOAD_LIBRARY "libcurl.so.4"
#endif

/* 1 when libcurl is loaded in this process, 0 when not (yet). */
int curlload_loaded(void);

#endif
