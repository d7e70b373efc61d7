/* gitreason: the line of a failed git command's stderr that says why.
 *
 * git says why first ("fatal: '/x' does not appear to be a git
 * repository"), may say more ("fatal: Could not read from remote
 * repository.") and ends with advice ("and the repository exists."). The
 * reason kept is the first "fatal:" or "error:" line, else the last line.
 */
#ifndef SLUICE_GITREASON_H
#define SLUICE_GITREASON_H

#include <stddef.h>

struct gitreason {
	char text[256];
	int is_reason; /* text is a "fatal:"/"error:" line */
};

/* Before each git command. */
void gitreason_reset(struct gitreason *g);
/* Each line of the command's stderr. */
void gitreason_line(struct gitreason *g, const char *line, size_t len);

#endif
