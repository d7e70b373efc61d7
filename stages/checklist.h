/* checklist: the hooks and checks around a deployment, run one item after
 * another on the caller's libevent loop and reported item by item.
 *
 * An item is a command (run:/sh:, through stages/process.h), an HTTP request
 * whose status and body are checked (lib/curlev.h), or a TLS handshake whose
 * peer certificate is checked for trust, host name and remaining validity.
 * Nothing blocks the loop. Every callback runs from the loop, never from
 * within checklist_start; the checklist is freed right after done returns.
 * Commands need process_init (stages/process.h) on the same loop.
 */
#ifndef SLUICE_CHECKLIST_H
#define SLUICE_CHECKLIST_H

#include <event2/event.h>
#include <jansson.h>
#include <stddef.h>

#include "config/check.h"
#include "config/doc.h"

#define CHECKLIST_MAX_ITEMS	       100
#define CHECKLIST_MAX_NAME	       128
#define CHECKLIST_CHECK_TIMEOUT_MS     30000
#define CHECKLIST_HOOK_TIMEOUT_MS      (10 * 60 * 1000)
#define CHECKLIST_MAX_TIMEOUT_MS       (24LL * 3600 * 1000)
#define CHECKLIST_DEFAULT_MIN_DAYS     14
#define CHECKLIST_MAX_BODY	       (1024 * 1024) /* of an HTTP answer, searched for body */
#define CHECKLIST_ROLLBACK_NAME_SUFFIX " (rollback)"

/* In a pipeline file, a list of checks:
 *   - name: load balancer healthy
 *     http: {url: "http://127.0.0.1:8080/healthz", status: 200, body: "ok",
 *            method: GET, headers: {X-Token: "${TOKEN}"}, timeout: 5s}
 *   - name: certificate valid for 14 days
 *     tls: {host: 127.0.0.1, port: 8443, minDays: 14, serverName: app.example.com,
 *           ca: certs/ca.pem, verify: true}
 *   - name: quotas
 *     run: ["./check-quotas.sh"]       # or sh: "script"
 *     timeout: 1m                      # any item; default 30 s
 * becomes, item by item:
 *   {"name", "kind": "http", "url", "status", "method", "headers", "body"?, "timeout_ms"}
 *   {"name", "kind": "tls", "host", "port", "min_days", "server_name"?, "ca"?, "verify",
 *    "timeout_ms"}
 *   {"name", "kind": "command", "run": [...] | "sh": "...", "timeout_ms"}
 * A relative ca is found in the working directory of the run (cwd of
 * checklist_start), as relative commands are.
 * A list of hooks: {name, run | sh, timeout (default 10 min), rollback?: {run | sh,
 * timeout}}, rollback only where allow_rollback (pre hooks); each becomes a
 * command item, its rollback one too, named "<name> (rollback)".
 * Names are unique within a list. Errors are "file:line:col: key.path: message". */
int checklist_load_checks(const struct config_check *ck, const struct config_doc_node *n,
			  json_t **out);
int checklist_load_hooks(const struct config_check *ck, const struct config_doc_node *n,
			 int allow_rollback, json_t **out);

enum checklist_mode {
	CHECKLIST_ALL,		/* checks: every item runs and is reported */
	CHECKLIST_UNTIL_FAILURE /* hooks: stop at the first failure */
};

/* A line for the stage log: each item's start and end, and (output 1)
 * each line a command printed. */
typedef void (*checklist_line_cb)(int output, const char *line, size_t len, void *arg);
/* Each item as it ends: {"name", "kind", "status": "passed"|"failed",
 * "message", "ms": its duration, "at": when it started, ms since the epoch}.
 * Borrowed. */
typedef void (*checklist_item_cb)(const json_t *result, void *arg);
/* Once, when the list is done: ok when every item that ran passed; results
 * holds the results of the items that ran, in order. Borrowed. */
typedef void (*checklist_done_cb)(int ok, const json_t *results, void *arg);

struct checklist;

/* items: normalized items as above. vars: NAME -> string, the environment
 * of commands (of the worker's own environment only PATH, HOME and LANG,
 * unless vars sets them) and the ${NAME} of run arguments and of an http
 * item's url, headers and body. cwd: where commands run (NULL: the
 * worker's). NULL with err when items are not valid. line and item may be
 * NULL. An empty list is done at once, with ok. */
struct checklist *checklist_start(struct event_base *base, const json_t *items,
				  enum checklist_mode mode, const json_t *vars, const char *cwd,
				  checklist_line_cb line, checklist_item_cb item,
				  checklist_done_cb done, void *arg, char *err, size_t errlen);
/* Stops what runs (a command is killed with its process group) and frees;
 * no callback follows. Only before done has run. */
void checklist_cancel(struct checklist *c);

/* The rollback items of the hooks (normalized pre hooks) whose results are
 * in ran (the results of a pre-hook run: the hooks that started), newest
 * first, ready for checklist_start(CHECKLIST_ALL). A new array, or NULL
 * when out of memory. */
json_t *checklist_rollback_items(const json_t *hooks, const json_t *ran);

#endif
