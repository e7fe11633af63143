#include "prefixes.h"

#include <string.h>

int
prefixes_add(struct prefixes *p, const char *option, const char *arg,
    const char **err)
{
	int topic = strcmp(option, "topic") == 0;
	int *n = topic ? &p->ntopics : &p->nkinds;

	if (!topic && strcmp(option, "kind") != 0) {
		*err = "not a prefix option";
		return -1;
	}
	if (*n >= PREFIXES_MAX) {
		*err = "too many prefixes (64 at most)";
		return -1;
	}
	(topic ? p->topics : p->kinds)[(*n)++] = arg;
	return 0;
}
