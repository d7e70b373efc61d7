/* duration: "90", "90s", "10m", "1h30m", "250ms" → milliseconds.
 *
 * A bare number is seconds. Units ms, s, m, h, d may be combined in any
 * order; anything else, including signs, spaces and overflow, is -1.
 */
#include "config/config.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

static long long unit_ms(const char **p)
{
	static const struct {
		const char *name;
		long long ms;
	} units[] = {
	    /* "ms" before "m" so that the longer unit wins. */
	    {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000},
	};
	size_t i;

	for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		size_t len = strlen(units[i].name);

		if (!strncmp(*p, units[i].name, len)) {
			*p += len;
			return units[i].ms;
		}
	}
	return -1;
}

long long config_parse_duration_ms(const char *text)
{
	const char *p = text;
	long long total = 0;
	int parts = 0;

	if (!text || !*text)
		return -1;
	while (*p) {
		long long n = 0, unit;

		if (*p < '0' || *p > '9')
			return -1;
		for (; *p >= '0' && *p <= '9'; p++) {
			if (n > (LLONG_MAX - (*p - '0')) / 10)
				return -1;
			n = n * 10 + (*p - '0');
		}
		if (!*p && parts == 0)
			unit = 1000;
		else if ((unit = unit_ms(&p)) < 0)
			return -1;
		if (n > (LLONG_MAX - total) / unit)
			return -1;
		total += n * unit;
		parts++;
	}
	return total;
}

void config_format_duration(long long ms, char *buf, size_t len)
{
	if (ms >= 86400000)
		snprintf(buf, len, "%lld days", ms / 86400000);
	else if (ms % 3600000 == 0)
		snprintf(buf, len, "%lldh", ms / 3600000);
	else if (ms % 60000 == 0)
		snprintf(buf, len, "%lldm", ms / 60000);
	else if (ms % 1000 == 0)
		snprintf(buf, len, "%llds", ms / 1000);
	else
		snprintf(buf, len, "%lldms", ms);
}
