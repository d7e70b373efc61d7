/* gitref: git check-ref-format's rules for a branch or tag name. */
#include "lib/gitref.h"

#include <string.h>

static int byte_ok(unsigned char ch)
{
	return ch > 0x20 && ch != 0x7f && !strchr("~^:?*[\\", ch);
}

int gitref_name_ok(const char *name)
{
	size_t len = strlen(name);
	if (len == 0 || len > GITREF_NAME_MAX || name[len - 1] == '.' || strstr(name, "..") ||
	    strstr(name, "@{") || strcmp(name, "@") == 0)
		return 0;
	for (size_t i = 0; i < len; i++) {
		if (!byte_ok((unsigned char)name[i]))
			return 0;
	}
	for (const char *c = name;; c++) {
		size_t n = strcspn(c, "/");
		if (n == 0 || n > GITREF_COMPONENT_MAX || c[0] == '.' ||
		    (n >= 5 && strncmp(c + n - 5, ".lock", 5) == 0))
			return 0;
		c += n;
		if (!*c)
			return 1;
	}
}
