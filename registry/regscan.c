/* regscan: tags, manifests and image configs read from the registry. */
#include "registry/regscan.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "ctl/fmt.h"
#include "lib/hex.h"

/* The distribution's own limit for a manifest is 4 MiB. */
#define MAX_MANIFEST (4u * 1024 * 1024)
#define MAX_CONFIG   (16u * 1024 * 1024)
#define MAX_TAGPAGE  (16u * 1024 * 1024)
#define MAX_CHILDREN 1024
#define MAX_PAGES    100000

#define MT_OCI_INDEX	 "application/vnd.oci.image.index.v1+json"
#define MT_OCI_MANIFEST	 "application/vnd.oci.image.manifest.v1+json"
#define MT_DOCKER_LIST	 "application/vnd.docker.distribution.manifest.list.v2+json"
#define MT_DOCKER_IMAGE	 "application/vnd.docker.distribution.manifest.v2+json"
#define MT_OCI_CONFIG	 "application/vnd.oci.image.config.v1+json"
#define MT_DOCKER_CONFIG "application/vnd.docker.container.image.v1+json"

struct scan {
	struct regclient *c;
	const char *repo;
	struct regscan *s;
	char *err;
	size_t errlen;
};

static int is_lower_alnum(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9');
}

static int is_alnum(char ch)
{
	return is_lower_alnum(ch) || (ch >= 'A' && ch <= 'Z');
}

int regscan_digest_ok(const char *s)
{
	const char *p = s;

	/* algorithm: [a-z0-9]+ ([+._-] [a-z0-9]+)* */
	if (!is_lower_alnum(*p))
		return 0;
	while (*p && *p != ':') {
		if (strchr("+._-", *p)) {
			p++;
			if (!is_lower_alnum(*p))
				return 0;
		} else if (!is_lower_alnum(*p)) {
			return 0;
		}
		p++;
	}
	if (*p != ':' || !p[1])
		return 0;
	if (strncmp(s, "sha256:", 7) == 0 && strlen(s) != 7 + 64)
		return 0;
	for (p++; *p; p++)
		if (!is_alnum(*p) && *p != '=' && *p != '_' && *p != '-')
			return 0;
	return 1;
}

int regscan_tag_ok(const char *s)
{
	size_t i, n = strlen(s);

	if (n == 0 || n > 128 || (!is_alnum(s[0]) && s[0] != '_'))
		return 0;
	for (i = 1; i < n; i++)
		if (!is_alnum(s[i]) && !strchr("_.-", s[i]))
			return 0;
	return 1;
}

int regscan_repository_ok(const char *s)
{
	const char *p = s;

	if (strlen(s) > 255)
		return 0;
	for (;;) {
		/* component: [a-z0-9]+ ((\.|_|__|-+) [a-z0-9]+)* */
		if (!is_lower_alnum(*p))
			return 0;
		while (is_lower_alnum(*p))
			p++;
		while (*p == '.' || *p == '_' || *p == '-') {
			if (*p == '.' || (*p == '_' && p[1] != '_'))
				p++;
			else if (*p == '_')
				p += 2;
			else
				while (*p == '-')
					p++;
			if (!is_lower_alnum(*p))
				return 0;
			while (is_lower_alnum(*p))
				p++;
		}
		if (*p == '\0')
			return 1;
		if (*p != '/')
			return 0;
		p++;
	}
}

/* "sha256:<hex>" of data. */
static void sha256_digest(const char *data, size_t len, char out[7 + 64 + 1])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;

	memcpy(out, "sha256:", 7);
	if (!EVP_Digest(data, len, md, &n, EVP_sha256(), NULL) || n != 32) {
		out[7] = '\0';
		return;
	}
	hex_encode(md, n, out + 7);
}

static long find_image(const struct regscan *s, const char *digest)
{
	size_t i;

	for (i = 0; i < s->nimages; i++)
		if (strcmp(s->images[i].digest, digest) == 0)
			return (long)i;
	return -1;
}

static int set_note(struct scan *sc, size_t i, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Why image i has no time, sanitized: it may quote the registry. */
static int set_note(struct scan *sc, size_t i, const char *fmt, ...)
{
	char text[512];
	char *clean;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	clean = ctl_fmt_sanitize(text, strlen(text));
	if (!clean) {
		snprintf(sc->err, sc->errlen, "out of memory");
		return -1;
	}
	free(sc->s->images[i].note);
	sc->s->images[i].note = clean;
	return 0;
}

static int new_image(struct scan *sc, const char *digest, size_t *out)
{
	struct regscan *s = sc->s;
	struct regscan_image *grown = realloc(s->images, (s->nimages + 1) * sizeof(*grown));

	if (!grown)
		goto oom;
	s->images = grown;
	memset(&s->images[s->nimages], 0, sizeof(*grown));
	s->images[s->nimages].created_ms = -1;
	s->images[s->nimages].digest = strdup(digest);
	if (!s->images[s->nimages].digest)
		goto oom;
	*out = s->nimages++;
	return 0;
oom:
	snprintf(sc->err, sc->errlen, "out of memory");
	return -1;
}

/* The config blob's created time into image i. A config that is missing
 * or not an image config leaves the time unknown, with a note. */
static int read_config(struct scan *sc, size_t i, const char *digest, const char *media_type)
{
	struct regclient_response r;
	char path[512], what[640], actual[80];
	json_t *root = NULL;
	const char *created;
	int64_t ms;
	int rc = -1;

	if (media_type && strcmp(media_type, MT_OCI_CONFIG) != 0 &&
	    strcmp(media_type, MT_DOCKER_CONFIG) != 0)
		return set_note(sc, i, "its config is %s, which has no created time", media_type);
	snprintf(path, sizeof(path), "/v2/%s/blobs/%s", sc->repo, digest);
	snprintf(what, sizeof(what), "read the config %s of %s", digest, sc->repo);
	if (regclient_request(sc->c, "GET", path, NULL, MAX_CONFIG, &r, sc->err, sc->errlen) < 0)
		return -1;
	if (r.status == 404) {
		regclient_response_clear(&r);
		return set_note(sc, i, "its config %s is missing", digest);
	}
	if (r.status != 200) {
		regclient_status_error(sc->c, &r, "GET", what, sc->err, sc->errlen);
		goto done;
	}
	sha256_digest(r.body ? r.body : "", r.len, actual);
	if (strncmp(digest, "sha256:", 7) == 0 && strcmp(actual, digest) != 0) {
		snprintf(sc->err, sc->errlen, "cannot %s: its content has the digest %s", what,
			 actual);
		goto done;
	}
	root = r.body ? json_loadb(r.body, r.len, 0, NULL) : NULL;
	created = json_string_value(json_object_get(root, "created"));
	if (!created) {
		rc = set_note(sc, i, "its config has no created time");
		goto done;
	}
	if (ctl_fmt_parse_time(created, &ms) < 0) {
		rc =
		    set_note(sc, i, "its config's created time \"%.64s\" is not RFC 3339", created);
		goto done;
	}
	/* Some builders write Go's zero time (0001-01-01) for no time at all;
	 * a negative time is the unknown one everywhere after the scan. */
	if (ms < 0) {
		rc = set_note(sc, i, "its config's created time \"%.64s\" is before 1970", created);
		goto done;
	}
	sc->s->images[i].created_ms = ms;
	rc = 0;
done:
	json_decref(root);
	regclient_response_clear(&r);
	return rc;
}

static int add_by_digest(struct scan *sc, const char *digest, int depth, size_t *out);

/* Image i from its manifest body: an image's config, or an index's
 * manifests (read in turn) and the newest of their times. */
static int read_manifest(struct scan *sc, size_t i, const char *media_type, const char *body,
			 size_t len, int depth)
{
	json_t *root = json_loadb(body ? body : "", len, 0, NULL);
	const char *mt = media_type;
	const char *body_mt = json_string_value(json_object_get(root, "mediaType"));
	int rc = -1;

	if (!json_is_object(root)) {
		snprintf(sc->err, sc->errlen, "the manifest %s of %s is not a JSON object",
			 sc->s->images[i].digest, sc->repo);
		goto done;
	}
	/* A server may label manifests generically; the body then says. */
	if (!mt || strcmp(mt, "application/json") == 0 || strcmp(mt, "text/plain") == 0)
		mt = body_mt;
	if (!mt) {
		/* OCI lets mediaType out; the shape tells the two kinds apart. */
		mt = json_is_array(json_object_get(root, "manifests")) ? MT_OCI_INDEX
								       : MT_OCI_MANIFEST;
	}
	sc->s->images[i].media_type = strdup(mt);
	if (!sc->s->images[i].media_type) {
		snprintf(sc->err, sc->errlen, "out of memory");
		goto done;
	}
	if (strcmp(mt, MT_OCI_MANIFEST) == 0 || strcmp(mt, MT_DOCKER_IMAGE) == 0) {
		json_t *config = json_object_get(root, "config");
		const char *cd = json_string_value(json_object_get(config, "digest"));
		const char *cm = json_string_value(json_object_get(config, "mediaType"));

		sc->s->images[i].understood = 1;
		if (!cd || !regscan_digest_ok(cd)) {
			rc = set_note(sc, i, "its manifest names no valid config");
			goto done;
		}
		rc = read_config(sc, i, cd, cm);
		goto done;
	}
	if (strcmp(mt, MT_OCI_INDEX) == 0 || strcmp(mt, MT_DOCKER_LIST) == 0) {
		json_t *list = json_object_get(root, "manifests");
		size_t k, n = json_array_size(list);

		sc->s->images[i].understood = 1;
		if (depth >= REGSCAN_MAX_DEPTH || n > MAX_CHILDREN) {
			snprintf(sc->err, sc->errlen,
				 "the index %s of %s nests deeper than %d or lists more than %d "
				 "manifests",
				 sc->s->images[i].digest, sc->repo, REGSCAN_MAX_DEPTH,
				 MAX_CHILDREN);
			goto done;
		}
		sc->s->images[i].children = n ? calloc(n, sizeof(size_t)) : NULL;
		if (n && !sc->s->images[i].children) {
			snprintf(sc->err, sc->errlen, "out of memory");
			goto done;
		}
		for (k = 0; k < n; k++) {
			const char *d =
			    json_string_value(json_object_get(json_array_get(list, k), "digest"));
			size_t child;

			if (!d || !regscan_digest_ok(d)) {
				snprintf(sc->err, sc->errlen,
					 "the index %s of %s lists a manifest without a valid "
					 "digest",
					 sc->s->images[i].digest, sc->repo);
				goto done;
			}
			if (add_by_digest(sc, d, depth + 1, &child) < 0)
				goto done;
			if (child == (size_t)-1)
				continue;
			sc->s->images[i].children[sc->s->images[i].nchildren++] = child;
			int64_t t = sc->s->images[child].created_ms;
			if (t > sc->s->images[i].created_ms)
				sc->s->images[i].created_ms = t;
		}
		if (sc->s->images[i].created_ms < 0)
			rc = set_note(sc, i, "none of its manifests has a created time");
		else
			rc = 0;
		goto done;
	}
	rc = set_note(sc, i, "its media type %s is not one this job reads", mt);
done:
	json_decref(root);
	return rc;
}

/* The digest a manifest response names, checked against its content. */
static int response_digest(struct scan *sc, const struct regclient_response *r, const char *what,
			   char *out, size_t outlen)
{
	char actual[80];

	sha256_digest(r->body ? r->body : "", r->len, actual);
	if (!r->digest) {
		snprintf(out, outlen, "%s", actual);
		return 0;
	}
	if (!regscan_digest_ok(r->digest)) {
		snprintf(sc->err, sc->errlen, "cannot %s: the registry sent an invalid digest",
			 what);
		return -1;
	}
	if (strncmp(r->digest, "sha256:", 7) == 0 && strcmp(r->digest, actual) != 0) {
		snprintf(sc->err, sc->errlen,
			 "cannot %s: the registry names it %s but its content has the digest %s",
			 what, r->digest, actual);
		return -1;
	}
	snprintf(out, outlen, "%s", r->digest);
	return 0;
}

/* GETs the manifest ref (a tag or a digest) of the repository into r and
 * its digest into digest: 1, or 0 when the registry has no such manifest
 * (404), or -1 with sc->err saying "cannot <what>". r is the caller's to
 * clear after 1, and cleared otherwise. */
static int get_manifest(struct scan *sc, const char *ref, const char *what,
			struct regclient_response *r, char *digest, size_t digestlen)
{
	char path[512];
	int rc = -1;

	snprintf(path, sizeof(path), "/v2/%s/manifests/%s", sc->repo, ref);
	if (regclient_request(sc->c, "GET", path, REGSCAN_ACCEPT, MAX_MANIFEST, r, sc->err,
			      sc->errlen) < 0)
		return -1;
	if (r->status == 404)
		rc = 0;
	else if (r->status != 200)
		regclient_status_error(sc->c, r, "GET", what, sc->err, sc->errlen);
	else if (response_digest(sc, r, what, digest, digestlen) == 0)
		return 1;
	regclient_response_clear(r);
	return rc;
}

/* The image of a manifest listed by an index, read unless already known;
 * *out is (size_t)-1 when the registry does not have it. */
static int add_by_digest(struct scan *sc, const char *digest, int depth, size_t *out)
{
	struct regclient_response r;
	char what[640], got[160];
	long known = find_image(sc->s, digest);
	size_t i;
	int found, rc = -1;

	*out = (size_t)-1;
	if (known >= 0) {
		*out = (size_t)known;
		return 0;
	}
	snprintf(what, sizeof(what), "read the manifest %s of %s", digest, sc->repo);
	found = get_manifest(sc, digest, what, &r, got, sizeof(got));
	if (found <= 0)
		return found;
	if (strcmp(got, digest) != 0) {
		snprintf(sc->err, sc->errlen, "cannot %s: the registry sent %s instead", what, got);
		goto done;
	}
	if (new_image(sc, digest, &i) < 0 ||
	    read_manifest(sc, i, r.content_type, r.body, r.len, depth) < 0)
		goto done;
	*out = i;
	rc = 0;
done:
	regclient_response_clear(&r);
	return rc;
}

static int add_tag(struct scan *sc, const char *tag, size_t image)
{
	struct regscan *s = sc->s;
	struct regscan_tag *grown = realloc(s->tags, (s->ntags + 1) * sizeof(*grown));
	char *name = strdup(tag);

	if (grown)
		s->tags = grown;
	if (!grown || !name) {
		free(name);
		snprintf(sc->err, sc->errlen, "out of memory");
		return -1;
	}
	s->tags[s->ntags].name = name;
	s->tags[s->ntags++].image = image;
	return 0;
}

static int resolve_tag(struct scan *sc, const char *tag)
{
	struct regclient_response r;
	char what[640], digest[160];
	long known;
	size_t i;
	int found, rc = -1;

	snprintf(what, sizeof(what), "read the manifest of %s:%s", sc->repo, tag);
	/* Not found: deleted since the listing, no longer there to decide on. */
	found = get_manifest(sc, tag, what, &r, digest, sizeof(digest));
	if (found <= 0)
		return found;
	known = find_image(sc->s, digest);
	if (known >= 0) {
		rc = add_tag(sc, tag, (size_t)known);
		goto done;
	}
	if (new_image(sc, digest, &i) < 0 ||
	    read_manifest(sc, i, r.content_type, r.body, r.len, 0) < 0)
		goto done;
	rc = add_tag(sc, tag, i);
done:
	regclient_response_clear(&r);
	return rc;
}

/* One page of tags/list: its tags resolved, *next its successor or NULL. */
static int read_page(struct scan *sc, const char *target, char **next)
{
	struct regclient_response r;
	char what[512];
	json_t *root = NULL, *tags;
	size_t k;
	int rc = -1;

	*next = NULL;
	snprintf(what, sizeof(what), "list the tags of %s", sc->repo);
	if (regclient_request(sc->c, "GET", target, "application/json", MAX_TAGPAGE, &r, sc->err,
			      sc->errlen) < 0)
		return -1;
	if (r.status == 404 && strncmp(r.error, "NAME_UNKNOWN", 12) == 0) {
		snprintf(sc->err, sc->errlen, "the registry %s has no repository %s",
			 regclient_base(sc->c), sc->repo);
		goto done;
	}
	if (r.status != 200) {
		regclient_status_error(sc->c, &r, "GET", what, sc->err, sc->errlen);
		goto done;
	}
	root = r.body ? json_loadb(r.body, r.len, 0, NULL) : NULL;
	tags = json_object_get(root, "tags");
	if (!json_is_object(root) || (!json_is_array(tags) && !json_is_null(tags) && tags)) {
		snprintf(sc->err, sc->errlen, "cannot %s: the registry's answer is not a tag list",
			 what);
		goto done;
	}
	for (k = 0; k < json_array_size(tags); k++) {
		const char *tag = json_string_value(json_array_get(tags, k));

		if (!tag || !regscan_tag_ok(tag)) {
			snprintf(sc->err, sc->errlen,
				 "cannot %s: the registry lists an invalid tag", what);
			goto done;
		}
		if (resolve_tag(sc, tag) < 0)
			goto done;
	}
	*next = r.next;
	r.next = NULL;
	rc = 0;
done:
	json_decref(root);
	regclient_response_clear(&r);
	return rc;
}

static int by_name_then_place(const void *a, const void *b)
{
	const struct regscan_tag *x = *(const struct regscan_tag *const *)a;
	const struct regscan_tag *y = *(const struct regscan_tag *const *)b;
	int c = strcmp(x->name, y->name);

	return c ? c : (x > y) - (x < y);
}

/* A registry may list a tag twice (an offset-paged listing whose tags moved
 * between pages): the policy would then rank the copies apart and could
 * delete, as the second, a tag it keeps. The first listing stays. */
static int drop_repeated_tags(struct regscan *s, char *err, size_t errlen)
{
	struct regscan_tag **order, *first;
	size_t i, kept = 0;

	if (s->ntags < 2)
		return 0;
	order = malloc(s->ntags * sizeof(*order));
	if (!order) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (i = 0; i < s->ntags; i++)
		order[i] = &s->tags[i];
	qsort(order, s->ntags, sizeof(*order), by_name_then_place);
	for (i = 1, first = order[0]; i < s->ntags; i++) {
		if (strcmp(order[i]->name, first->name) != 0) {
			first = order[i];
			continue;
		}
		free(order[i]->name);
		order[i]->name = NULL;
	}
	free(order);
	for (i = 0; i < s->ntags; i++)
		if (s->tags[i].name)
			s->tags[kept++] = s->tags[i];
	s->ntags = kept;
	return 0;
}

int regscan_repository(struct regclient *c, const char *repo, long page_size, struct regscan *s,
		       char *err, size_t errlen)
{
	struct scan sc = {.c = c, .repo = repo, .s = s, .err = err, .errlen = errlen};
	char first[512];
	char *target, *next = NULL;
	/* The pages read: a link back to one of them (a faulty registry or
	 * proxy) would go round until MAX_PAGES. The first is named by its
	 * path, the links by their URLs: a cycle back to it is caught a page
	 * later. */
	json_t *seen = json_object();
	int pages;

	memset(s, 0, sizeof(*s));
	snprintf(first, sizeof(first), "/v2/%s/tags/list?n=%ld", repo, page_size);
	target = strdup(first);
	if (!target || !seen) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	for (pages = 0; target; pages++) {
		if (pages >= MAX_PAGES) {
			snprintf(err, errlen, "the tag list of %s goes on for more than %d pages",
				 repo, MAX_PAGES);
			goto fail;
		}
		if (json_object_set_new(seen, target, json_true()) < 0) {
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
		if (read_page(&sc, target, &next) < 0)
			goto fail;
		if (next && json_object_get(seen, next)) {
			snprintf(err, errlen,
				 "the registry links a page of tags back to one it sent before "
				 "(%.300s)",
				 next);
			free(next);
			goto fail;
		}
		free(target);
		target = next;
	}
	json_decref(seen);
	seen = NULL;
	if (drop_repeated_tags(s, err, errlen) < 0)
		goto fail;
	return 0;
fail:
	json_decref(seen);
	free(target);
	regscan_clear(s);
	return -1;
}

int regscan_exists(struct regclient *c, const char *repo, const char *digest, char *err,
		   size_t errlen)
{
	struct regclient_response r;
	char path[512], what[640];
	int rc = -1;

	snprintf(path, sizeof(path), "/v2/%s/manifests/%s", repo, digest);
	snprintf(what, sizeof(what), "look up the manifest %s of %s", digest, repo);
	if (regclient_request(c, "HEAD", path, REGSCAN_ACCEPT, 0, &r, err, errlen) < 0)
		return -1;
	if (r.status == 200)
		rc = 1;
	else if (r.status == 404)
		rc = 0;
	else
		regclient_status_error(c, &r, "HEAD", what, err, errlen);
	regclient_response_clear(&r);
	return rc;
}

void regscan_clear(struct regscan *s)
{
	size_t i;

	for (i = 0; i < s->nimages; i++) {
		free(s->images[i].digest);
		free(s->images[i].media_type);
		free(s->images[i].note);
		free(s->images[i].children);
	}
	for (i = 0; i < s->ntags; i++)
		free(s->tags[i].name);
	free(s->images);
	free(s->tags);
	memset(s, 0, sizeof(*s));
}
