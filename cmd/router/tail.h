/*
 * tail.h: router --tail, a subscriber that prints envelopes.
 *
 * A SUB connects to the router's XPUB (or binds, with --in @...),
 * subscribes to each topic prefix (all topics when none) and writes the
 * second frame of every message, the envelope, as one line on stdout.
 * Lines are buffered while more messages are waiting and written out before
 * the tail waits again, so each line is out as soon as the tail is idle.
 * --kind prefixes filter further on the part of the topic after the first
 * "/" (topics are <workspace_id>/<kind>), which prefix subscriptions cannot
 * express across workspaces.
 *
 * Readiness (--notify-fd) comes once the SUB is connected and its
 * subscriptions have had TAIL_SETTLE_MS to travel on to the publishers:
 * from then on, what they publish reaches stdout.
 */
#ifndef ROUTER_TAIL_H
#define ROUTER_TAIL_H

#include "endpoint.h"
#include "stage.h"

#define TAIL_SETTLE_MS 100

struct tail_config {
	const char *const *topics;
	int ntopics;
	const char *const *kinds;
	int nkinds;
	int hwm;
};

/* Run until SIGTERM/SIGINT or stdout closes. Returns a sysexits status. */
int tail_run(void *ctx, const struct endpoint *in, const struct tail_config *cfg,
    struct stage *st);

#endif
