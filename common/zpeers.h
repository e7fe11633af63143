/*
 * zpeers.h: how many peers a ZeroMQ socket is connected to, from its
 * monitor events.
 *
 * A PUB's zmq_send() succeeds with nobody there (the message is dropped),
 * so a stage that should hold work back while its peer is away (outbox-relay
 * with the router down) or report readiness only once connected
 * (router --tail) watches the socket here.
 *
 * Contract: a peer counts from its ZMQ_EVENT_CONNECTED (connect side) or
 * ZMQ_EVENT_ACCEPTED (bind side) until its ZMQ_EVENT_DISCONNECTED; these come
 * in pairs for every connection, whatever happens to its handshake.
 * "Connected" therefore means the transport is up; the ZMTP handshake and,
 * for pub/sub, the subscriptions follow within microseconds on ipc:// and a
 * round trip on tcp://, which is what zpeers_settled() waits out.
 *
 * The watcher owns an inproc PAIR socket (linger 0) on the same context;
 * poll zpeers_socket() for ZMQ_POLLIN and call zpeers_update() when it
 * fires (or at any time: it never blocks). In an event loop on the PAIR's
 * ZMQ_FD, which is an edge, call zpeers_update() once right after
 * zpeers_watch(): events already queued would otherwise never raise it.
 * zpeers_close() before closing the
 * watched socket and before zmq_ctx_term().
 */
#ifndef INFONCHAT_ZPEERS_H
#define INFONCHAT_ZPEERS_H

struct zpeers {
	void *sock;                 /* the watched socket (not owned) */
	void *mon;                  /* PAIR receiving its events (owned) */
	int count;                  /* peers connected now */
	long long since;            /* clock_ms() when count last rose from 0 */
	unsigned long long connects, disconnects;
};

/* Start watching sock. Returns 0, or -1 with errno set (nothing to close). */
int zpeers_watch(struct zpeers *p, void *ctx, void *sock);

/*
 * Read every pending event without blocking and update the counts.
 * Returns 1 when count went from 0 to >0 or back, 0 when it did not, -1 on
 * an error of the monitor socket (errno set; the counts stay as they were).
 */
int zpeers_update(struct zpeers *p);

/* The PAIR socket to poll for ZMQ_POLLIN (NULL when not watching). */
void *zpeers_socket(const struct zpeers *p);

/*
 * True when at least one peer has been connected for settle_ms or more
 * (now is a clock_ms() value). Updates nothing; call zpeers_update() first.
 */
int zpeers_settled(const struct zpeers *p, long long now, long settle_ms);

/* Stop watching and close the PAIR socket (no-op when not watching). */
void zpeers_close(struct zpeers *p);

#endif
