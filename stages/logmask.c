/* logmask: secret masking and the log cap of one stage attempt. */
#include "stages/logmask.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/lines.h"
#include "stages/expand.h"

#define MASK	      "[masked]"
#define MIN_B64_FORM  8
#define B64_MAX_ALIGN 3
/* Patterns are found by their first KEY_LEN bytes, which all have. */
#define KEY_LEN 4
_Static_assert(LOGMASK_MIN_SECRET >= KEY_LEN, "a secret shorter than a pattern's key");

struct pattern {
	char *s;
	size_t n;
	uint32_t next; /* the next pattern in its bucket, plus one; 0 ends it */
};

/* The unemitted end of a line that arrived in pieces. */
struct held {
	char *buf;
	size_t len;
	size_t cap;
};

struct logmask {
	struct pattern *pats;
	size_t npats;
	/* Buckets of patterns by key: the first pattern of each, plus one. A
	 * line is looked at once, each of its positions in one bucket, however
	 * many patterns there are (a key file has one per line). */
	uint32_t *buckets;
	size_t nbuckets; /* a power of two, at least twice npats */
	size_t longest;
	size_t cap;
	size_t piece;
	size_t kept;
	int capped;
	unsigned long long dropped_lines;
	unsigned long long dropped_bytes;
	int dropping[2]; /* a dropped line's end is still to come: its pieces count once */
	int finished;
	struct held held[2]; /* stdout, stderr */
	logmask_emit_cb emit;
	void *arg;
	/* scratch space: the covered bytes of a line, and its masked copy */
	unsigned char *covered;
	size_t covered_cap;
	char *out;
	size_t out_cap;
};

struct logmask *logmask_new(size_t cap, size_t piece, logmask_emit_cb emit, void *arg)
{
	struct logmask *m = calloc(1, sizeof(*m));

	if (m == NULL)
		return NULL;
	m->cap = cap;
	m->piece = piece;
	m->emit = emit;
	m->arg = arg;
	return m;
}

static void wipe_free(void *p, size_t n)
{
	if (p == NULL)
		return;
	/* volatile: a memset right before free may otherwise be dropped. */
	volatile unsigned char *v = p;
	for (size_t i = 0; i < n; i++)
		v[i] = 0;
	free(p);
}

void logmask_free(struct logmask *m)
{
	if (m == NULL)
		return;
	for (size_t i = 0; i < m->npats; i++)
		wipe_free(m->pats[i].s, m->pats[i].n);
	free(m->pats);
	free(m->buckets);
	for (int i = 0; i < 2; i++)
		wipe_free(m->held[i].buf, m->held[i].cap);
	wipe_free(m->covered, m->covered_cap);
	wipe_free(m->out, m->out_cap);
	free(m);
}

static uint32_t key_at(const char *s)
{
	uint32_t key;
	memcpy(&key, s, KEY_LEN);
	return key;
}

/* Every bit of the key moves the bucket: keys of base64 or of hex text
 * differ in a few bits of each byte. */
static size_t bucket_of(const struct logmask *m, uint32_t key)
{
	key ^= key >> 16;
	key *= 0x45d9f3bu;
	key ^= key >> 16;
	return key & (m->nbuckets - 1);
}

/* Doubles the buckets and sorts every pattern into them again. */
static int grow_buckets(struct logmask *m)
{
	size_t n = m->nbuckets ? m->nbuckets * 2 : 64;
	uint32_t *b = calloc(n, sizeof(*b));

	if (b == NULL)
		return -1;
	free(m->buckets);
	m->buckets = b;
	m->nbuckets = n;
	for (size_t i = 0; i < m->npats; i++) {
		size_t k = bucket_of(m, key_at(m->pats[i].s));
		m->pats[i].next = b[k];
		b[k] = (uint32_t)(i + 1);
	}
	return 0;
}

static int add_pattern(struct logmask *m, const char *s, size_t n)
{
	uint32_t key = key_at(s);

	if (m->nbuckets > 0)
		for (uint32_t p = m->buckets[bucket_of(m, key)]; p; p = m->pats[p - 1].next)
			if (m->pats[p - 1].n == n && memcmp(m->pats[p - 1].s, s, n) == 0)
				return 0;
	if ((m->npats + 1) * 2 > m->nbuckets && grow_buckets(m) < 0)
		return -1;
	struct pattern *grown = realloc(m->pats, (m->npats + 1) * sizeof(*grown));
	if (grown == NULL)
		return -1;
	m->pats = grown;
	char *copy = malloc(n);
	if (copy == NULL)
		return -1;
	memcpy(copy, s, n);
	size_t k = bucket_of(m, key);
	m->pats[m->npats].s = copy;
	m->pats[m->npats].n = n;
	m->pats[m->npats].next = m->buckets[k];
	m->npats++;
	m->buckets[k] = (uint32_t)m->npats;
	if (n > m->longest)
		m->longest = n;
	return 0;
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Standard base64 of in, with "=" padding; out holds 4 * ceil(n / 3) bytes. */
static size_t b64_encode(const unsigned char *in, size_t n, char *out)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)in[i + 1] << 8;
		if (i + 2 < n)
			v |= in[i + 2];
		out[o++] = b64[(v >> 18) & 63];
		out[o++] = b64[(v >> 12) & 63];
		out[o++] = i + 1 < n ? b64[(v >> 6) & 63] : '=';
		out[o++] = i + 2 < n ? b64[v & 63] : '=';
	}
	return o;
}

/* The base64 characters that depend on the secret's bytes alone when it
 * starts at byte offset `align` (0..2) of a longer stream: character k
 * covers bits [6k, 6k + 6) of the stream and the secret bits
 * [8 * align, 8 * (align + n)). */
static int add_b64_forms(struct logmask *m, const char *value, size_t n)
{
	size_t room = (n + B64_MAX_ALIGN + 2) / 3 * 4 + 4;
	unsigned char *in = calloc(1, n + B64_MAX_ALIGN);
	char *enc = malloc(room);
	int rc = -1;

	if (in == NULL || enc == NULL)
		goto done;
	size_t len = b64_encode((const unsigned char *)value, n, enc);
	if (add_pattern(m, enc, len) < 0)
		goto done;
	for (size_t align = 0; align < B64_MAX_ALIGN; align++) {
		memset(in, 0, n + B64_MAX_ALIGN);
		memcpy(in + align, value, n);
		b64_encode(in, align + n, enc);
		size_t first = (8 * align + 5) / 6;
		size_t end = 8 * (align + n) / 6;
		if (end > first && end - first >= MIN_B64_FORM &&
		    add_pattern(m, enc + first, end - first) < 0)
			goto done;
	}
	rc = 0;
done:
	wipe_free(in, in ? n + B64_MAX_ALIGN : 0);
	wipe_free(enc, enc ? room : 0);
	return rc;
}

/* An http: request carries the value percent-encoded in its URL, which
 * the stage's log and error show, and escaped in a JSON body, which a
 * server may echo in the response the log shows. */
static int add_request_forms(struct logmask *m, const char *value, size_t n)
{
	static const enum expand_mode modes[] = {EXPAND_URL, EXPAND_JSON};

	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		char *enc = expand_encode(value, n, modes[i]);
		if (enc == NULL)
			return -1;
		size_t len = strlen(enc);
		int rc = add_pattern(m, enc, len);
		wipe_free(enc, len);
		if (rc < 0)
			return -1;
	}
	return 0;
}

struct secret_lines {
	struct logmask *m;
	size_t len; /* of the whole secret, added already */
};

static int add_secret_line(const char *line, size_t n, void *arg)
{
	const struct secret_lines *s = arg;

	if (n < LOGMASK_MIN_SECRET || n >= s->len)
		return 0;
	return add_pattern(s->m, line, n);
}

int logmask_add_secret(struct logmask *m, const char *value, size_t len)
{
	if (len < LOGMASK_MIN_SECRET)
		return 1;
	if (add_pattern(m, value, len) < 0 || add_b64_forms(m, value, len) < 0 ||
	    add_request_forms(m, value, len) < 0)
		return -1;
	/* Output is stored line by line: a secret of several lines (a key
	 * file) is masked line by line as well. */
	struct secret_lines lines = {m, len};
	return lines_each(value, len, add_secret_line, &lines);
}

static int grow(void **buf, size_t *cap, size_t need)
{
	if (need <= *cap)
		return 0;
	size_t n = *cap ? *cap : 256;
	while (n < need)
		n *= 2;
	void *p = realloc(*buf, n);
	if (p == NULL)
		return -1;
	*buf = p;
	*cap = n;
	return 0;
}

/* Marks in m->covered the bytes of every occurrence of every pattern;
 * returns the number of occurrences, or -1 when out of memory. Each
 * position is tried against every pattern starting with its KEY_LEN bytes,
 * so overlapping occurrences ("aaaa" in "aaaaa") are all found. */
static long find_secrets(struct logmask *m, const char *text, size_t len)
{
	long hits = 0;
	int ready = 0;

	for (size_t at = 0; m->nbuckets > 0 && at + KEY_LEN <= len; at++) {
		uint32_t key = key_at(text + at);
		for (uint32_t p = m->buckets[bucket_of(m, key)]; p; p = m->pats[p - 1].next) {
			const struct pattern *pt = &m->pats[p - 1];
			if (pt->n > len - at || memcmp(text + at, pt->s, pt->n) != 0)
				continue;
			if (!ready) {
				if (grow((void **)&m->covered, &m->covered_cap, len) < 0)
					return -1;
				memset(m->covered, 0, len);
				ready = 1;
			}
			memset(m->covered + at, 1, pt->n);
			hits++;
		}
	}
	return hits;
}

/* The masked copy of text[0, len) in m->out; *outlen its length. Runs of
 * covered bytes become one "[masked]" each, so overlapping and adjacent
 * secrets do not reveal where one ends. */
static const char *masked_copy(struct logmask *m, const char *text, size_t len, size_t *outlen)
{
	size_t o = 0, need = 0;

	/* A secret shorter than "[masked]" makes the copy longer than the
	 * line: its length is counted first. */
	for (size_t i = 0; i < len; i++)
		need += !m->covered[i] ? 1 : i == 0 || !m->covered[i - 1] ? sizeof(MASK) - 1 : 0;
	if (grow((void **)&m->out, &m->out_cap, need + 1) < 0)
		return NULL;
	for (size_t i = 0; i < len;) {
		if (!m->covered[i]) {
			m->out[o++] = text[i++];
			continue;
		}
		while (i < len && m->covered[i])
			i++;
		memcpy(m->out + o, MASK, sizeof(MASK) - 1);
		o += sizeof(MASK) - 1;
	}
	*outlen = o;
	return m->out;
}

/* ends: line is the last part of its line (a line longer than a piece is
 * stored, or dropped, in parts). */
static void store(struct logmask *m, enum logmask_stream s, const char *line, size_t len, int ends)
{
	if (s != LOGMASK_SYSTEM) {
		size_t cost = len + LOGMASK_LINE_COST;
		if (m->capped || m->kept + cost > m->cap) {
			m->capped = 1;
			m->dropped_lines += !m->dropping[s];
			m->dropped_bytes += len;
			m->dropping[s] = !ends;
			return;
		}
		m->kept += cost;
	}
	m->emit(s, line, len, m->arg);
}

/* Masks and stores text[0, len); a line that cannot be masked for want of
 * memory is replaced rather than stored as it is. */
static void mask_store(struct logmask *m, enum logmask_stream s, const char *text, size_t len,
		       int ends)
{
	long hits = m->npats ? find_secrets(m, text, len) : 0;
	const char *out = text;
	size_t outlen = len;

	if (hits > 0)
		out = masked_copy(m, text, len, &outlen);
	if (hits < 0 || out == NULL) {
		static const char oom[] = "[line not stored: out of memory while masking]";
		store(m, s, oom, sizeof(oom) - 1, ends);
		return;
	}
	store(m, s, out, outlen, ends);
}

/* cut moved back to the start of a UTF-8 character that would straddle it:
 * a stored piece never ends inside one, which would show as two U+FFFD.
 * Bytes that are no such character leave it where it is. */
static size_t char_boundary(const char *buf, size_t cut)
{
	size_t i = cut;
	while (i > 0 && cut - i < 3 && ((unsigned char)buf[i - 1] & 0xc0) == 0x80)
		i--;
	if (i == 0)
		return cut;
	unsigned char lead = (unsigned char)buf[i - 1];
	size_t n = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
	return i - 1 + n > cut ? i - 1 : cut;
}

/* A piece of a longer line: everything but its last longest-1 bytes can be
 * masked and stored now, short of a masked run that reaches into the kept
 * end (kept whole, so that it is seen again with what follows). */
static void piece(struct logmask *m, enum logmask_stream s, const char *line, size_t len, int more)
{
	struct held *h = &m->held[s];
	size_t hold = m->longest > 0 ? m->longest - 1 : 0;

	if (grow((void **)&h->buf, &h->cap, h->len + len) < 0) {
		mask_store(m, s, line, len, !more);
		return;
	}
	memcpy(h->buf + h->len, line, len);
	h->len += len;
	if (!more) {
		mask_store(m, s, h->buf, h->len, 1);
		h->len = 0;
		return;
	}
	if (h->len <= hold)
		return;
	size_t cut = char_boundary(h->buf, h->len - hold);
	if (cut == 0)
		return;
	long hits = m->npats ? find_secrets(m, h->buf, h->len) : 0;
	if (hits > 0 && m->covered[cut - 1] && m->covered[cut]) {
		size_t start = cut - 1;
		while (start > 0 && m->covered[start - 1])
			start--;
		size_t end = cut;
		while (end < h->len && m->covered[end])
			end++;
		/* A run of overlapping hits longer than a piece is stored up
		 * to its end rather than held without bound. */
		cut = start > 0 || h->len <= hold + m->piece ? start : end;
		if (cut == 0)
			return;
	}
	mask_store(m, s, h->buf, cut, 0);
	memmove(h->buf, h->buf + cut, h->len - cut);
	h->len -= cut;
}

void logmask_line(struct logmask *m, enum logmask_stream s, const char *line, size_t len)
{
	if (s == LOGMASK_SYSTEM) {
		mask_store(m, s, line, len, 1);
		return;
	}
	int more = m->piece > 0 && len == m->piece;
	if (more || m->held[s].len > 0)
		piece(m, s, line, len, more);
	else
		mask_store(m, s, line, len, 1);
}

char *logmask_text(const struct logmask *m, const char *text)
{
	/* The scratch buffers are not shared with this copy: it may be
	 * called from within an emit callback. */
	struct logmask scratch = *m;
	size_t len = strlen(text), outlen = len;
	const char *out = text;
	char *copy = NULL;

	scratch.covered = NULL;
	scratch.covered_cap = 0;
	scratch.out = NULL;
	scratch.out_cap = 0;
	long hits = m->npats ? find_secrets(&scratch, text, len) : 0;
	if (hits > 0)
		out = masked_copy(&scratch, text, len, &outlen);
	if (hits >= 0 && out != NULL)
		copy = strndup(out, outlen);
	wipe_free(scratch.covered, scratch.covered_cap);
	wipe_free(scratch.out, scratch.out_cap);
	return copy;
}

static void format_size(size_t n, char *buf, size_t len)
{
	if (n >= 1024 * 1024 && n % (1024 * 1024) == 0)
		snprintf(buf, len, "%zu MiB", n / (1024 * 1024));
	else if (n >= 1024 && n % 1024 == 0)
		snprintf(buf, len, "%zu KiB", n / 1024);
	else
		snprintf(buf, len, "%zu bytes", n);
}

void logmask_finish(struct logmask *m)
{
	char size[64], text[256];

	if (m->finished)
		return;
	m->finished = 1;
	for (int s = 0; s < 2; s++) {
		if (m->held[s].len > 0) {
			mask_store(m, (enum logmask_stream)s, m->held[s].buf, m->held[s].len, 1);
			m->held[s].len = 0;
		}
	}
	if (!m->capped)
		return;
	format_size(m->cap, size, sizeof(size));
	int n =
	    snprintf(text, sizeof(text), "[%llu lines (%llu bytes) dropped: log cap of %s reached]",
		     m->dropped_lines, m->dropped_bytes, size);
	m->emit(LOGMASK_SYSTEM, text, (size_t)n, m->arg);
}
