/*
 * prefixes.h: the --topic and --kind filters a subscriber or a replay takes
 * (repeatable options; none given means everything). A topic prefix matches
 * the start of "<workspace_id>/<kind>"; a kind prefix the start of the part
 * after the first '/', so one kind can be followed across workspaces.
 */
#ifndef INFONCHAT_PREFIXES_H
#define INFONCHAT_PREFIXES_H

#define PREFIXES_MAX 64

struct prefixes {
	const char *topics[PREFIXES_MAX];
	int ntopics;
	const char *kinds[PREFIXES_MAX];
	int nkinds;
};

/*
 * Take the argument of option "topic" or "kind" (the string must outlive p).
 * Returns 0, or -1 with a static reason in *err.
 */
int prefixes_add(struct prefixes *p, const char *option, const char *arg,
    const char **err);

#endif
