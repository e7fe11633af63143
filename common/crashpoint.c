/* crashpoint: see crashpoint.h.  Empty unless INFONCHAT_CRASH_POINTS. */
#include "crashpoint.h"

#ifdef INFONCHAT_CRASH_POINTS
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

void
crash_point(const char *name)
{
	static long hits;
	static long after = -1;
	static const char *chosen;

	if (after < 0) {
		const char *n = getenv("INFONCHAT_CRASH_AFTER");
		chosen = getenv("INFONCHAT_CRASH_POINT");
		after = n ? strtol(n, NULL, 10) : 1;
		if (after < 1)
			after = 1;
	}
	if (chosen == NULL || strcmp(chosen, name) != 0)
		return;
	if (++hits < after)
		return;
	log_warn("crash point", " point=%s hit=%ld", name, hits);
	(void)kill(getpid(), SIGKILL);
	_exit(137);    /* not reached */
}
#else
/* ISO C wants at least one declaration in a translation unit. */
typedef int crashpoint_unused;
#endif
