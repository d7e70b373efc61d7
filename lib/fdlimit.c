/* fdlimit: the open-files limit raised for this process alone (fdlimit.h). */
#include "lib/fdlimit.h"

#include <errno.h>
#include <string.h>

#include "lib/log.h"

static struct {
	int raised;
	struct rlimit original;
} mod;

long fdlimit_raise(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0) {
		log_warn("cannot read the open files limit", LOG_S("error", strerror(errno)));
		return -1;
	}
	if (rl.rlim_cur == rl.rlim_max)
		return (long)rl.rlim_cur;
	struct rlimit raised = {rl.rlim_max, rl.rlim_max};
	if (setrlimit(RLIMIT_NOFILE, &raised) < 0) {
		log_warn("cannot raise the open files limit", LOG_I("limit", rl.rlim_cur),
			 LOG_S("error", strerror(errno)));
		return (long)rl.rlim_cur;
	}
	log_info("open files limit raised", LOG_I("from", rl.rlim_cur), LOG_I("to", rl.rlim_max));
	if (!mod.raised) {
		mod.original = rl;
		mod.raised = 1;
	}
	return (long)raised.rlim_cur;
}

int fdlimit_child(struct rlimit *out)
{
	if (!mod.raised)
		return 0;
	*out = mod.original;
	return 1;
}

int fdlimit_walk_max(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 65536)
		return (int)rl.rlim_cur;
	return 65536;
}
