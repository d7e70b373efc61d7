/* fmt: sanitizing, time and duration text for sluicectl's output. */
#include "ctl/fmt.h"

#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <wchar.h>

#include "lib/utf8.h"

/* Bidirectional embeddings, overrides and isolates reorder what follows
 * them on screen, so they can make one value look like another. */
static int is_hidden_control(uint32_t cp)
{
	if (cp < 0x20)
		return cp != '\t';
	if (cp >= 0x7F && cp <= 0x9F)
		return 1;
	if (cp >= 0x202A && cp <= 0x202E)
		return 1;
	return cp >= 0x2066 && cp <= 0x2069;
}

/* Length of the escape sequence at in[0] == ESC (n bytes available), up to
 * its end or the end of the text; *sgr set when it is a colour or style
 * (CSI with digits, ';' and ':' only, ending in 'm'). ECMA-48: CSI is
 * ESC [ parameters intermediates final; OSC, DCS, SOS, PM and APC strings
 * run to BEL or ST (ESC \); anything else is ESC and one byte. */
static size_t escape_length(const unsigned char *in, size_t n, int *sgr)
{
	size_t i = 1;
	*sgr = 0;
	if (n < 2)
		return n;
	if (in[1] == '[') {
		int plain = 1;
		for (i = 2; i < n && in[i] >= 0x30 && in[i] <= 0x3F; i++)
			plain = plain && (in[i] <= '9' || in[i] == ';' || in[i] == ':');
		while (i < n && in[i] >= 0x20 && in[i] <= 0x2F) {
			plain = 0;
			i++;
		}
		if (i >= n)
			return n;
		*sgr = plain && in[i] == 'm';
		return i + 1;
	}
	if (in[1] == ']' || in[1] == 'P' || in[1] == 'X' || in[1] == '^' || in[1] == '_') {
		for (i = 2; i < n; i++) {
			if (in[i] == '\a')
				return i + 1;
			if (in[i] == 0x1b && i + 1 < n && in[i + 1] == '\\')
				return i + 2;
		}
		return n;
	}
	return 2;
}

#define SGR_RESET "\033[0m"

/* s without what is hidden or acts on a terminal; with keep_sgr, colour
 * and style sequences stay (ctl_fmt_log_text), other escapes go whole. */
static char *shown_text(const char *s, size_t len, int keep_sgr)
{
	const unsigned char *in = (const unsigned char *)s;
	char *out = malloc(len + sizeof(SGR_RESET));
	size_t o = 0;
	int styled = 0;

	if (!out)
		return NULL;
	for (size_t i = 0; i < len;) {
		if (keep_sgr && in[i] == 0x1b) {
			int sgr;
			size_t n = escape_length(in + i, len - i, &sgr);
			if (sgr) {
				memcpy(out + o, in + i, n);
				o += n;
				/* ESC [ m and ESC [ 0 m reset every style. */
				styled = !(n == 3 || (n == 4 && in[i + 2] == '0'));
			}
			i += n;
			continue;
		}
		size_t n = in[i] < 0x80 ? 1 : utf8_length(in + i, in + len);
		if (n == 0) {
			out[o++] = '?';
			i++;
			continue;
		}
		if (in[i] == '\t' && !keep_sgr)
			out[o++] = ' '; /* in a table a tab would jump to a tab stop */
		else if (!is_hidden_control(utf8_code_point(in + i, n))) {
			memcpy(out + o, in + i, n);
			o += n;
		}
		i += n;
	}
	/* A style a line set (black on black, concealed) ends with it: it
	 * must not hide the lines after it, or the shell's prompt. */
	if (styled) {
		memcpy(out + o, SGR_RESET, sizeof(SGR_RESET) - 1);
		o += sizeof(SGR_RESET) - 1;
	}
	out[o] = '\0';
	return out;
}

char *ctl_fmt_sanitize(const char *s, size_t len)
{
	return shown_text(s, len, 0);
}

char *ctl_fmt_log_text(const char *s, size_t len)
{
	return shown_text(s, len, 1);
}

size_t ctl_fmt_width(const char *s)
{
	/* wcwidth reads the character classes of the calling thread's locale:
	 * C.UTF-8 is built into the C library, whatever the user's locale. */
	static locale_t utf8;
	size_t w = 0, n = strlen(s);
	mbstate_t st;

	if (!utf8)
		utf8 = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
	locale_t old = utf8 ? uselocale(utf8) : (locale_t)0;
	memset(&st, 0, sizeof(st));
	while (n > 0) {
		wchar_t wc;
		size_t k = utf8 ? mbrtowc(&wc, s, n, &st) : (size_t)-1;
		if (k == (size_t)-1 || k == (size_t)-2 || k == 0) {
			/* No such locale, or not a character: one column a code point. */
			k = 1;
			while (k < n && ((unsigned char)s[k] & 0xC0) == 0x80)
				k++;
			memset(&st, 0, sizeof(st));
			w++;
		} else {
			int cw = wcwidth(wc);
			w += cw < 0 ? 1 : (size_t)cw;
		}
		s += k;
		n -= k;
	}
	if (utf8)
		uselocale(old);
	return w;
}

/* Reads exactly n decimal digits. */
static int read_digits(const char **p, int n, int *value)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		char c = (*p)[i];
		if (c < '0' || c > '9')
			return -1;
		v = v * 10 + (c - '0');
	}
	*p += n;
	*value = v;
	return 0;
}

static int skip_char(const char **p, char c)
{
	if (**p != c)
		return -1;
	(*p)++;
	return 0;
}

int ctl_fmt_parse_time(const char *s, int64_t *ms)
{
	const char *p = s;
	struct tm tm = {0};
	int year, mon, day, hour, min, sec;
	int frac_ms = 0;
	int offset_min = 0;
	time_t secs;

	if (read_digits(&p, 4, &year) || skip_char(&p, '-') || read_digits(&p, 2, &mon) ||
	    skip_char(&p, '-') || read_digits(&p, 2, &day))
		return -1;
	if (*p != 'T' && *p != 't' && *p != ' ')
		return -1;
	p++;
	if (read_digits(&p, 2, &hour) || skip_char(&p, ':') || read_digits(&p, 2, &min) ||
	    skip_char(&p, ':') || read_digits(&p, 2, &sec))
		return -1;
	if (mon < 1 || mon > 12 || day < 1 || day > 31 || hour > 23 || min > 59 || sec > 60)
		return -1;
	if (*p == '.') {
		int scale = 100;
		p++;
		if (*p < '0' || *p > '9')
			return -1;
		for (; *p >= '0' && *p <= '9'; p++) {
			frac_ms += (*p - '0') * scale;
			scale /= 10;
		}
	}
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		int sign = *p == '-' ? -1 : 1;
		int oh, om;
		p++;
		if (read_digits(&p, 2, &oh) || skip_char(&p, ':') || read_digits(&p, 2, &om) ||
		    oh > 23 || om > 59)
			return -1;
		offset_min = sign * (oh * 60 + om);
	} else {
		return -1;
	}
	if (*p != '\0')
		return -1;
	tm.tm_year = year - 1900;
	tm.tm_mon = mon - 1;
	tm.tm_mday = day;
	tm.tm_hour = hour;
	tm.tm_min = min;
	tm.tm_sec = sec;
	secs = timegm(&tm);
	*ms = ((int64_t)secs - (int64_t)offset_min * 60) * 1000 + frac_ms;
	return 0;
}

void ctl_fmt_time(int64_t ms, char *out, size_t len)
{
	int64_t floor_secs = ms / 1000 - (ms % 1000 < 0);
	time_t secs = (time_t)floor_secs;
	struct tm tm;

	if (!gmtime_r(&secs, &tm)) {
		snprintf(out, len, "-");
		return;
	}
	snprintf(out, len, "%04d-%02d-%02d %02d:%02d:%02d", tm.tm_year + 1900, tm.tm_mon + 1,
		 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

void ctl_fmt_duration(int64_t ms, char *out, size_t len)
{
	long long s = (long long)(ms / 1000);

	if (ms < 0)
		snprintf(out, len, "-");
	else if (ms < 1000)
		snprintf(out, len, "%lldms", (long long)ms);
	else if (s < 60)
		snprintf(out, len, "%llds", s);
	else if (s < 3600)
		snprintf(out, len, "%lldm%02llds", s / 60, s % 60);
	else
		snprintf(out, len, "%lldh%02lldm%02llds", s / 3600, s / 60 % 60, s % 60);
}
