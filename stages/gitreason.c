/* gitreason: the reason a git command gives for failing (gitreason.h). */
#include "stages/gitreason.h"

#include <string.h>

void gitreason_reset(struct gitreason *g)
{
	g->text[0] = '\0';
	g->is_reason = 0;
}

void gitreason_line(struct gitreason *g, const char *line, size_t len)
{
	int reason = len >= 6 && (memcmp(line, "fatal:", 6) == 0 || memcmp(line, "error:", 6) == 0);
	if (len == 0 || g->is_reason)
		return;
	size_t n = len < sizeof(g->text) - 1 ? len : sizeof(g->text) - 1;
	memcpy(g->text, line, n);
	g->text[n] = '\0';
	g->is_reason = reason;
}
