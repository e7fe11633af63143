/*
 * proxy.h: the router proper, XSUB in front of XPUB.
 *
 * Publishers (outbox-relays) connect their PUBs to the XSUB; subscribers
 * connect their SUBs to the XPUB. Messages go front to back unchanged (all
 * frames, normally [topic, envelope]); subscription messages go back to
 * front, so each relay learns which prefixes anyone wants and sends nothing
 * else (with no subscriber at all it sends nothing).
 *
 * What happens at the marks, on purpose:
 *   - XPUB: one queue of hwm messages per subscriber; when a subscriber's
 *     queue is full, messages for that subscriber are dropped and everyone
 *     else goes on (ZMQ_XPUB_NODROP stays off): a slow or stopped
 *     subscriber never stalls the router, the relays or other subscribers.
 *     Heartbeats (10 s, 30 s timeout) free the queue of a peer that died
 *     without closing its connection.
 *   - XSUB: hwm messages queued per publisher; past it the router stops
 *     reading from that publisher and its PUB drops at its own mark.
 *   - XPUB_VERBOSER: every subscribe and unsubscribe of every subscriber is
 *     seen (and counted) here and passed upstream, where XSUB keeps count.
 */
#ifndef ROUTER_PROXY_H
#define ROUTER_PROXY_H

#include "endpoint.h"
#include "zpeers.h"

#define PROXY_LINGER_MS 1000    /* to hand queued messages to subscribers at exit */
#define PROXY_DRAIN_MS 1000     /* to forward what publishers delivered, at exit */

struct proxy {
	void *front;             /* XSUB, publishers */
	void *back;              /* XPUB, subscribers */
	struct zpeers pubs, subs;
	unsigned long long msgs_in, msgs_out, bytes_in, send_errors;
	unsigned long long subscribes, unsubscribes;
};

/*
 * Open both sockets as in and out say (normally bound), with high-water
 * mark hwm. Returns 0, or -1 with errno and *which ("in" or "out").
 */
int proxy_open(struct proxy *p, void *ctx, const struct endpoint *in,
    const struct endpoint *out, int hwm, const char **which);

/*
 * Forward until stage_stop, logging the counters every stats_ms (0: only on
 * SIGHUP and at the end); then forward what the publishers have delivered
 * (for at most PROXY_DRAIN_MS) and return. Returns 0, or -1 when polling failed.
 */
int proxy_run(struct proxy *p, long stats_ms);

/* One logfmt line with the counters. */
void proxy_log(struct proxy *p, const char *msg);

void proxy_close(struct proxy *p);

#endif
