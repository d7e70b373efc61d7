/* tokens: parsing the tokens file, finding a presented token, making one. */
#include "lib/tokens.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/hex.h"

#define TOKENS_FILE_MAX (1024 * 1024)
#define TOKEN_RANDOM	32

static const char *const role_names[] = {
    [TOKENS_READ] = "read", [TOKENS_APPROVE] = "approve", [TOKENS_ADMIN] = "admin"};

enum tokens_role tokens_role_parse(const char *s)
{
	for (int r = TOKENS_READ; r <= TOKENS_ADMIN; r++) {
		if (strcmp(s, role_names[r]) == 0)
			return (enum tokens_role)r;
	}
	return TOKENS_NONE;
}

const char *tokens_role_name(enum tokens_role role)
{
	return role >= TOKENS_READ && role <= TOKENS_ADMIN ? role_names[role] : "none";
}

int tokens_name_ok(const char *name)
{
	size_t len = strlen(name);
	if (len == 0 || len >= TOKENS_NAME_MAX)
		return 0;
	return strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.@-") ==
	       len;
}

static int parse_digest(const char *hex, unsigned char *out)
{
	return hex_decode(hex, out, TOKENS_DIGEST_LEN);
}

/* One non-comment line split in place into its three fields. */
static int parse_line(char *line, const char *file, int lineno, struct tokens *t, char *err,
		      size_t errlen)
{
	char *fields[4] = {NULL};
	int n = 0;
	char *save = NULL;
	for (char *f = strtok_r(line, " \t\r", &save); f; f = strtok_r(NULL, " \t\r", &save)) {
		if (n == 4)
			break;
		fields[n++] = f;
	}
	if (n == 0)
		return 0;
	if (n != 3) {
		snprintf(err, errlen, "%s:%d: expected \"NAME ROLE SHA256HEX\"", file, lineno);
		return -1;
	}
	struct tokens_entry e = {0};
	if (!tokens_name_ok(fields[0])) {
		snprintf(err, errlen,
			 "%s:%d: the name must be 1 to %d letters, digits or _.@- characters", file,
			 lineno, TOKENS_NAME_MAX - 1);
		return -1;
	}
	e.role = tokens_role_parse(fields[1]);
	if (e.role == TOKENS_NONE) {
		snprintf(err, errlen, "%s:%d: unknown role \"%.32s\" (read, approve or admin)",
			 file, lineno, fields[1]);
		return -1;
	}
	/* The message never repeats the field: it may be a token pasted by
	 * mistake. */
	if (parse_digest(fields[2], e.digest) < 0) {
		snprintf(err, errlen,
			 "%s:%d: expected the SHA-256 of the token as 64 hexadecimal digits "
			 "(sluicectl token hash NAME ROLE makes a line)",
			 file, lineno);
		return -1;
	}
	snprintf(e.name, sizeof(e.name), "%s", fields[0]);
	for (size_t i = 0; i < t->n; i++) {
		if (strcmp(t->items[i].name, e.name) == 0) {
			snprintf(err, errlen, "%s:%d: the name %s is used twice", file, lineno,
				 e.name);
			return -1;
		}
		if (memcmp(t->items[i].digest, e.digest, TOKENS_DIGEST_LEN) == 0) {
			snprintf(err, errlen, "%s:%d: the same token as %s", file, lineno,
				 t->items[i].name);
			return -1;
		}
	}
	struct tokens_entry *items = realloc(t->items, (t->n + 1) * sizeof(*items));
	if (!items) {
		snprintf(err, errlen, "%s: out of memory", file);
		return -1;
	}
	t->items = items;
	t->items[t->n++] = e;
	return 0;
}

int tokens_parse(const char *text, size_t len, const char *file, struct tokens *t, char *err,
		 size_t errlen)
{
	char *copy = malloc(len + 1);
	int lineno = 0, rc = 0;

	memset(t, 0, sizeof(*t));
	if (!copy) {
		snprintf(err, errlen, "%s: out of memory", file);
		return -1;
	}
	memcpy(copy, text, len);
	copy[len] = '\0';
	if (memchr(copy, '\0', len)) {
		snprintf(err, errlen, "%s: not a text file", file);
		rc = -1;
	}
	for (char *line = copy; rc == 0 && line && *line;) {
		char *nl = strchr(line, '\n');
		if (nl)
			*nl = '\0';
		lineno++;
		char *hash = strchr(line, '#');
		if (hash)
			*hash = '\0';
		rc = parse_line(line, file, lineno, t, err, errlen);
		line = nl ? nl + 1 : NULL;
	}
	/* The text may hold tokens pasted in clear by mistake. */
	OPENSSL_cleanse(copy, len);
	free(copy);
	if (rc < 0)
		tokens_clear(t);
	return rc;
}

int tokens_load(const char *path, struct tokens *t, char *err, size_t errlen)
{
	FILE *f = fopen(path, "re");
	char *buf = NULL;
	size_t len = 0;
	int rc = -1;

	memset(t, 0, sizeof(*t));
	if (!f) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	buf = malloc(TOKENS_FILE_MAX + 1);
	if (!buf) {
		snprintf(err, errlen, "%s: out of memory", path);
		goto done;
	}
	len = fread(buf, 1, TOKENS_FILE_MAX + 1, f);
	if (ferror(f)) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		goto done;
	}
	if (len > TOKENS_FILE_MAX) {
		snprintf(err, errlen, "%s: larger than %d bytes", path, TOKENS_FILE_MAX);
		goto done;
	}
	rc = tokens_parse(buf, len, path, t, err, errlen);
done:
	if (buf) {
		OPENSSL_cleanse(buf, len);
		free(buf);
	}
	fclose(f);
	return rc;
}

void tokens_clear(struct tokens *t)
{
	free(t->items);
	t->items = NULL;
	t->n = 0;
}

const struct tokens_entry *tokens_find(const struct tokens *t, const char *token)
{
	unsigned char digest[TOKENS_DIGEST_LEN];
	const struct tokens_entry *found = NULL;

	SHA256((const unsigned char *)token, strlen(token), digest);
	/* No early exit: the time taken does not tell which entry matched. */
	for (size_t i = 0; i < t->n; i++) {
		if (CRYPTO_memcmp(t->items[i].digest, digest, TOKENS_DIGEST_LEN) == 0)
			found = &t->items[i];
	}
	OPENSSL_cleanse(digest, sizeof(digest));
	return found;
}

int tokens_generate(char *out, size_t outlen)
{
	unsigned char raw[TOKEN_RANDOM];

	if (outlen < TOKENS_TOKEN_MAX || RAND_bytes(raw, sizeof(raw)) != 1)
		return -1;
	memcpy(out, "slc_", 4);
	hex_encode(raw, sizeof(raw), out + 4);
	OPENSSL_cleanse(raw, sizeof(raw));
	return 0;
}

int tokens_line(const char *name, enum tokens_role role, const char *token, char *out,
		size_t outlen)
{
	unsigned char digest[TOKENS_DIGEST_LEN];
	char hex[2 * TOKENS_DIGEST_LEN + 1];

	if (!tokens_name_ok(name) || role == TOKENS_NONE)
		return -1;
	SHA256((const unsigned char *)token, strlen(token), digest);
	hex_encode(digest, sizeof(digest), hex);
	int n = snprintf(out, outlen, "%s %s %s", name, tokens_role_name(role), hex);
	return n < 0 || (size_t)n >= outlen ? -1 : 0;
}
