/* tokens: the API's bearer tokens, as the agent stores them and sluicectl
 * makes them.
 *
 * A tokens file holds one token a line, "NAME ROLE SHA256HEX" ('#' starts a
 * comment): the SHA-256 of the token, never the token itself. A presented
 * token is hashed and compared with every stored digest in constant time.
 * Roles are ordered: read < approve (read + approvals) < admin (everything).
 */
#ifndef SLUICE_TOKENS_H
#define SLUICE_TOKENS_H

#include <stddef.h>

#define TOKENS_NAME_MAX	  64
#define TOKENS_DIGEST_LEN 32
/* "slc_" and 64 hexadecimal digits, with the NUL. */
#define TOKENS_TOKEN_MAX 72

enum tokens_role { TOKENS_NONE = 0, TOKENS_READ, TOKENS_APPROVE, TOKENS_ADMIN };

struct tokens_entry {
	char name[TOKENS_NAME_MAX];
	enum tokens_role role;
	unsigned char digest[TOKENS_DIGEST_LEN];
};

struct tokens {
	struct tokens_entry *items;
	size_t n;
};

/* Parses text (len bytes); file names the source in messages
 * ("tokens:3: unknown role \"root\""). On error t is left empty. */
int tokens_parse(const char *text, size_t len, const char *file, struct tokens *t, char *err,
		 size_t errlen);
/* Reads and parses path (at most 1 MiB). */
int tokens_load(const char *path, struct tokens *t, char *err, size_t errlen);
void tokens_clear(struct tokens *t);

/* The entry whose digest is SHA-256(token), or NULL. Every entry is
 * compared, each in constant time. */
const struct tokens_entry *tokens_find(const struct tokens *t, const char *token);

/* "read", "approve", "admin"; NONE for anything else. */
enum tokens_role tokens_role_parse(const char *s);
const char *tokens_role_name(enum tokens_role role);
/* A name fit for the file: 1 to 63 of [A-Za-z0-9_.@-]. */
int tokens_name_ok(const char *name);

/* A new random token into out (TOKENS_TOKEN_MAX bytes). */
int tokens_generate(char *out, size_t outlen);
/* The file's line for token (no newline): "NAME ROLE SHA256HEX". */
int tokens_line(const char *name, enum tokens_role role, const char *token, char *out,
		size_t outlen);

#endif
