/*
 * ack.h: the acknowledgement path from ingest-httpd to inbox-writer.
 *
 * Each envelope goes to the writer over a ZeroMQ DEALER socket as two
 * frames, [token, envelope line]; the writer (ROUTER) answers [token, reply]
 * only after the COMMIT that stored it (or found its duplicate). The 8-byte
 * token names a slot in a table of pending requests, so a late or stray
 * reply is recognised and ignored. A request with no reply within the
 * timeout is answered by the caller with 503; the writer may still store
 * it, which a sender's retry with the same dedupe key then finds.
 *
 * Everything here runs inside the libevent loop and never blocks: a send
 * that ZeroMQ cannot take at once (no writer connected, or its high-water
 * mark reached) fails at once.
 */
#ifndef INGEST_ACK_H
#define INGEST_ACK_H

#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "endpoint.h"

enum ack_status {
	ACK_ACCEPTED,           /* committed now */
	ACK_DUPLICATE,          /* an event with the same dedupe key exists */
	ACK_UNKNOWN_WORKSPACE,
	ACK_REJECTED,           /* the writer refused the envelope (message says why) */
	ACK_TIMEOUT             /* no reply within the timeout */
};

/* Called once per submitted request, with its ctx. event_id may be NULL. */
typedef void (*ack_fn)(void *ctx, enum ack_status st, const char *event_id,
    const char *message, void *arg);

struct ack;

struct ack *ack_new(struct event_base *base, void *zctx,
    const struct endpoint *ep, int timeout_ms, size_t max_pending,
    ack_fn fn, void *arg);
void ack_free(struct ack *a);

/*
 * Hand an envelope to the writer. Returns 0, or -1 when it cannot be sent
 * now. It goes at the end of the loop turn, or at ack_flush_some().
 */
int ack_submit(struct ack *a, const char *line, size_t len, void *ctx);

/*
 * Send the queued envelopes now if there are enough of them to be worth an
 * early send. Call only where no request is being processed (it may answer
 * requests whose send failed).
 */
void ack_flush_some(struct ack *a);

/* True when the writer answered a ping within the last 3 seconds. */
int ack_writer_ready(const struct ack *a);

size_t ack_pending(const struct ack *a);

/* Fail every pending request with ACK_TIMEOUT (used at shutdown). */
void ack_fail_all(struct ack *a);

#endif
