/*
 * sink.h: where the relay's envelopes go.
 *
 * Either stdout (one envelope per line; --out -) or a ZeroMQ PUB socket
 * sending each envelope as two frames, topic then envelope (--out @/>).
 *
 * A PUB drops a message that no connected peer subscribed to, so a PUB that
 * connects (to the router, the usual case) is "ready" only while a peer is
 * connected and has been for SINK_SETTLE_MS, the time its subscriptions
 * take to arrive; until then the relay leaves rows unpublished in the
 * table. A PUB that binds has its subscribers connect to it directly and is
 * always ready: nobody connected means nobody listening. Either way a sent
 * message may still be dropped downstream (high-water marks, a subscriber
 * joining late); the outbox table stays the durable log.
 *
 * sink_send() never blocks on a PUB: at the high-water mark the message
 * is dropped (a slow router must never stall the relay). On stdout it
 * buffers; sink_flush() writes, and only then is a line "sent".
 */
#ifndef RELAY_SINK_H
#define RELAY_SINK_H

#include <signal.h>
#include <stddef.h>

#include "endpoint.h"
#include "lineout.h"
#include "zpeers.h"

#define SINK_SETTLE_MS 100

struct sink {
	void *sock;              /* PUB, or NULL for stdout */
	struct zpeers peers;     /* connections of a PUB */
	int gated;               /* hold sends until a peer is connected */
	int was_ready;           /* for logging changes */
	struct lineout out;      /* stdout */
	struct endpoint ep;
	unsigned long long sent;
};

/* Open stdout. Returns 0 or -1. */
int sink_open_stdout(struct sink *s);

/*
 * Open a PUB bound or connected as ep says, with send high-water mark hwm
 * and linger_ms for what is queued when it closes. gate_bind: hold sends
 * until a peer is connected even when binding (a one-shot replay). Returns
 * 0, or -1 with errno set.
 */
int sink_open_pub(struct sink *s, void *ctx, const struct endpoint *ep,
    int hwm, int linger_ms, int gate_bind);

/* The socket to poll for ZMQ_POLLIN for connection changes, or NULL. */
void *sink_poll_socket(const struct sink *s);

/*
 * Take in connection changes (logging them) and say whether envelopes can
 * be sent now. Never blocks.
 */
int sink_ready(struct sink *s);

/* Poll timeout (ms) that wakes the caller when the sink may become ready. */
long sink_wait_hint(const struct sink *s, long cap);

/* Block until ready or *stop. Returns 0 when ready, -1 when stopped. */
int sink_wait_ready(struct sink *s, volatile sig_atomic_t *stop);

/* Send one envelope. Returns 0, or -1 with errno when the output is gone. */
int sink_send(struct sink *s, const char *topic, size_t tlen,
    const char *line, size_t len);

/* Write out what is buffered (stdout). Returns 0 or -1 with errno. */
int sink_flush(struct sink *s);

/* Close; a PUB keeps sending what it has queued for its linger. */
void sink_close(struct sink *s);

#endif
