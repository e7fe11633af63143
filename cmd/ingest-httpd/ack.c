#include "ack.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <zmq.h>

#include "buf.h"
#include "crashpoint.h"
#include "http.h"
#include "log.h"
#include "zpeers.h"

#define PING_SLOT 0xffffffffu
#define TICK_MS 20

struct slot {
	uint32_t gen;
	uint32_t prev, next;      /* FIFO of pending slots, oldest first */
	void *ctx;                /* NULL when free */
	uint64_t deadline_ns;
};

struct ack {
	struct event_base *base;
	void *sock;
	struct event *ev_sock, *ev_tick, *ev_flush, *ev_peers;
	struct zpeers peers;      /* the writer's connection, from monitor events */
	struct buf outq;          /* submitted, not yet sent: [slot][gen][len][envelope]... */
	size_t outq_n;            /* envelopes in outq */
	int flush_armed;
	int flushing;             /* on_flush() is running */
	uint64_t timeout_ns;
	ack_fn fn;
	void *arg;
	struct slot *slots;       /* grown on demand up to max_slots */
	uint32_t nslots, max_slots, free_head, head, tail;
	size_t npending;
	uint64_t last_pong_ns, last_ping_ns;
};

#define NIL 0xfffffffeu
#define FLUSH_EVERY 16

static void
fifo_unlink(struct ack *a, uint32_t i)
{
	struct slot *s = &a->slots[i];

	if (s->prev != NIL) a->slots[s->prev].next = s->next; else a->head = s->next;
	if (s->next != NIL) a->slots[s->next].prev = s->prev; else a->tail = s->prev;
}

/* Free slot i and call back with its result. */
static void
complete(struct ack *a, uint32_t i, enum ack_status st, const char *event_id,
    const char *message)
{
	struct slot *s = &a->slots[i];
	void *ctx = s->ctx;

	fifo_unlink(a, i);
	s->ctx = NULL;
	s->gen++;
	s->next = a->free_head;
	a->free_head = i;
	a->npending--;
	if (st == ACK_ACCEPTED)
		CRASH_POINT("httpd.before-reply");    /* stored, the sender not yet told */
	a->fn(ctx, st, event_id, message, a->arg);
}

static void
handle_reply(struct ack *a, const unsigned char token[8], const char *text, size_t len)
{
	uint32_t slot, gen;
	cJSON *j;
	const cJSON *status, *eid, *msg;
	enum ack_status st;

	memcpy(&slot, token, 4);
	memcpy(&gen, token + 4, 4);
	if (slot == PING_SLOT) {
		a->last_pong_ns = http_now_ns();
		return;
	}
	if (slot >= a->nslots || a->slots[slot].ctx == NULL || a->slots[slot].gen != gen) {
		log_debug("late writer reply ignored", " slot=%u", slot);
		return;
	}
	j = cJSON_ParseWithLength(text, len);
	status = cJSON_GetObjectItemCaseSensitive(j, "status");
	eid = cJSON_GetObjectItemCaseSensitive(j, "event_id");
	msg = cJSON_GetObjectItemCaseSensitive(j, "message");
	if (!cJSON_IsString(status)) {
		log_error("malformed writer reply", " len=%zu", len);
		st = ACK_REJECTED;
	} else if (strcmp(status->valuestring, "accepted") == 0) {
		st = ACK_ACCEPTED;
	} else if (strcmp(status->valuestring, "duplicate") == 0) {
		st = ACK_DUPLICATE;
	} else if (strcmp(status->valuestring, "unknown_workspace") == 0) {
		st = ACK_UNKNOWN_WORKSPACE;
	} else if (strcmp(status->valuestring, "unavailable") == 0) {
		st = ACK_TIMEOUT;    /* not stored now; the sender may retry */
	} else {
		st = ACK_REJECTED;
	}
	a->last_pong_ns = http_now_ns();   /* any reply shows the writer alive */
	complete(a, slot, st, cJSON_IsString(eid) ? eid->valuestring : NULL,
	    cJSON_IsString(msg) ? msg->valuestring : "writer refused the event");
	cJSON_Delete(j);
}

/* ZMQ_FD is edge-triggered: read until ZMQ_EVENTS says nothing is left. */
static void
drain(struct ack *a)
{
	for (;;) {
		int events = 0;
		size_t elen = sizeof events;
		zmq_msg_t tok, body;
		int more = 0;
		size_t mlen = sizeof more;

		if (zmq_getsockopt(a->sock, ZMQ_EVENTS, &events, &elen) < 0 ||
		    !(events & ZMQ_POLLIN))
			return;
		zmq_msg_init(&tok);
		zmq_msg_init(&body);
		if (zmq_msg_recv(&tok, a->sock, ZMQ_DONTWAIT) < 0) {
			zmq_msg_close(&tok);
			zmq_msg_close(&body);
			return;
		}
		zmq_getsockopt(a->sock, ZMQ_RCVMORE, &more, &mlen);
		if (more && zmq_msg_recv(&body, a->sock, ZMQ_DONTWAIT) >= 0 &&
		    zmq_msg_size(&tok) == 8) {
			handle_reply(a, zmq_msg_data(&tok), zmq_msg_data(&body),
			    zmq_msg_size(&body));
		} else {
			log_error("malformed writer reply frames", " size=%zu", zmq_msg_size(&tok));
		}
		/* Swallow any further frames of this message. */
		for (;;) {
			zmq_getsockopt(a->sock, ZMQ_RCVMORE, &more, &mlen);
			if (!more)
				break;
			zmq_msg_close(&body);
			zmq_msg_init(&body);
			if (zmq_msg_recv(&body, a->sock, ZMQ_DONTWAIT) < 0)
				break;
		}
		zmq_msg_close(&tok);
		zmq_msg_close(&body);
	}
}

static void
on_sock(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	drain(arg);
}

static int
send_frames(struct ack *a, uint32_t slot, uint32_t gen, const char *data, size_t len)
{
	unsigned char token[8];
	int rc;

	memcpy(token, &slot, 4);
	memcpy(token + 4, &gen, 4);
	rc = zmq_send(a->sock, token, 8, ZMQ_DONTWAIT | ZMQ_SNDMORE);
	if (rc >= 0)
		rc = zmq_send(a->sock, data, len, ZMQ_DONTWAIT);
	return rc < 0 ? -1 : 0;
}

/*
 * Sends wait for the end of the loop turn, so the envelopes of every request
 * completed in one turn go to ZeroMQ back to back: its I/O thread wakes once
 * for them all rather than once each (those wake-ups were a quarter of the
 * CPU a request cost). A send that fails answers its request at once; that
 * answer can let the connection's next pipelined request in, whose
 * ack_submit() appends to outq while this loop runs: hence outq.p and
 * outq.len are read afresh on every pass, and the entry is sent there too.
 */
static void
on_flush(evutil_socket_t fd, short what, void *arg)
{
	struct ack *a = arg;
	size_t off = 0;

	(void)fd;
	(void)what;
	a->flush_armed = 0;
	a->flushing = 1;
	while (off + 12 <= a->outq.len) {
		uint32_t slot, gen, len;

		memcpy(&slot, a->outq.p + off, 4);
		memcpy(&gen, a->outq.p + off + 4, 4);
		memcpy(&len, a->outq.p + off + 8, 4);
		off += 12;
		/* A slot answered meanwhile (timeout, shutdown) has a new generation. */
		if (a->slots[slot].ctx != NULL && a->slots[slot].gen == gen &&
		    send_frames(a, slot, gen, a->outq.p + off, len) < 0)
			complete(a, slot, ACK_TIMEOUT, NULL, "inbox-writer is not reachable");
		off += len;
	}
	buf_reset(&a->outq);
	a->outq_n = 0;
	a->flushing = 0;
	/* A send can swallow the edge of ZMQ_FD: look for replies soon. */
	event_active(a->ev_sock, EV_READ, 0);
}

/* Answer every request still waiting with ACK_TIMEOUT and message. */
static void
fail_pending(struct ack *a, const char *message)
{
	while (a->head != NIL)
		complete(a, a->head, ACK_TIMEOUT, NULL, message);
}

/*
 * The writer's connection dropped (it was killed, or stopped): what it did
 * not answer will never be answered on this connection, so answer 503 now
 * instead of at --ack-timeout. Replies already here are taken first. A 503
 * does not say "not stored": the sender's retry with the same key gets the
 * stored event's id if the writer had committed it.
 */
static void
on_peers(evutil_socket_t fd, short what, void *arg)
{
	struct ack *a = arg;
	unsigned long long gone = a->peers.disconnects;

	(void)fd;
	(void)what;
	if (zpeers_update(&a->peers) < 0 || a->peers.disconnects == gone)
		return;
	drain(a);
	a->last_pong_ns = 0;    /* not ready (/readyz) until a writer answers again */
	if (a->npending > 0)
		log_warn("inbox-writer connection lost: failing unanswered requests", " pending=%zu",
		    a->npending);
	fail_pending(a, "inbox-writer went away before confirming");
}

static void
on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct ack *a = arg;
	uint64_t now = http_now_ns();

	(void)fd;
	(void)what;
	drain(a);
	while (a->head != NIL && a->slots[a->head].deadline_ns <= now)
		complete(a, a->head, ACK_TIMEOUT, NULL, "no confirmation from inbox-writer in time");
	if (now - a->last_ping_ns >= 1000000000u) {
		a->last_ping_ns = now;
		(void)send_frames(a, PING_SLOT, 0, "ping", 4);
		event_active(a->ev_sock, EV_READ, 0);
	}
}

/*
 * More pending slots: 256 at first, then twice as many, up to --max-pending.
 * Slots are named by index (the token the writer echoes), so moving the
 * array is safe. Allocating all 65,536 of the default at start was 2 MB of
 * every ingest-httpd, for a figure that in practice stays near the number
 * of connections. Returns 0, or -1 with errno EAGAIN (full) or ENOMEM.
 */
static int
slots_grow(struct ack *a)
{
	uint32_t n = a->nslots ? a->nslots * 2 : 256;
	struct slot *s;

	if (a->nslots >= a->max_slots) {
		errno = EAGAIN;
		return -1;
	}
	if (n > a->max_slots)
		n = a->max_slots;
	s = realloc(a->slots, (size_t)n * sizeof *s);
	if (s == NULL) {
		errno = ENOMEM;
		return -1;
	}
	memset(s + a->nslots, 0, (size_t)(n - a->nslots) * sizeof *s);
	for (uint32_t i = a->nslots; i < n; i++)
		s[i].next = i + 1 < n ? i + 1 : a->free_head;
	a->free_head = a->nslots;
	a->slots = s;
	a->nslots = n;
	return 0;
}

struct ack *
ack_new(struct event_base *base, void *zctx, const struct endpoint *ep,
    int timeout_ms, size_t max_pending, ack_fn fn, void *arg)
{
	struct ack *a = calloc(1, sizeof *a);
	/*
	 * The slot table bounds what is in flight; the socket must not refuse
	 * before it. ZeroMQ learns that its peer has read in steps of half its
	 * mark, so a mark of exactly max_pending refused sends (503) with fewer
	 * than max_pending waiting while the writer was busy: twice is room.
	 */
	int fd, pfd, one = 1, hwm = (int)(2 * max_pending), ivl = 100, ivl_max = 1000;
	size_t fdlen = sizeof fd;
	struct timeval tick = { 0, TICK_MS * 1000 };

	if (a == NULL)
		return NULL;
	buf_init(&a->outq, 0);
	a->base = base;
	a->fn = fn;
	a->arg = arg;
	a->timeout_ns = (uint64_t)timeout_ms * 1000000u;
	a->max_slots = (uint32_t)max_pending;
	a->head = a->tail = a->free_head = NIL;
	if (slots_grow(a) < 0)
		goto fail;
	a->sock = zsock_new(zctx, ZMQ_DEALER, 0);
	if (a->sock == NULL ||
	    zmq_setsockopt(a->sock, ZMQ_IMMEDIATE, &one, sizeof one) < 0 ||
	    zmq_setsockopt(a->sock, ZMQ_SNDHWM, &hwm, sizeof hwm) < 0 ||
	    zmq_setsockopt(a->sock, ZMQ_RCVHWM, &hwm, sizeof hwm) < 0 ||
	    zmq_setsockopt(a->sock, ZMQ_RECONNECT_IVL, &ivl, sizeof ivl) < 0 ||
	    zmq_setsockopt(a->sock, ZMQ_RECONNECT_IVL_MAX, &ivl_max, sizeof ivl_max) < 0 ||
	    zsock_attach(a->sock, ep) < 0 ||
	    zmq_getsockopt(a->sock, ZMQ_FD, &fd, &fdlen) < 0)
		goto fail;
	if (zpeers_watch(&a->peers, zctx, a->sock) < 0 ||
	    zmq_getsockopt(zpeers_socket(&a->peers), ZMQ_FD, &pfd, &fdlen) < 0)
		goto fail;
	a->ev_peers = event_new(base, pfd, EV_READ | EV_PERSIST, on_peers, a);
	/* ZMQ_FD is an edge: read what is there now, or it may never fire. */
	(void)zpeers_update(&a->peers);
	a->ev_sock = event_new(base, fd, EV_READ | EV_PERSIST, on_sock, a);
	a->ev_tick = event_new(base, -1, EV_PERSIST, on_tick, a);
	a->ev_flush = event_new(base, -1, 0, on_flush, a);
	if (a->ev_sock == NULL || a->ev_tick == NULL || a->ev_flush == NULL ||
	    a->ev_peers == NULL || event_add(a->ev_peers, NULL) < 0 ||
	    event_add(a->ev_sock, NULL) < 0 || event_add(a->ev_tick, &tick) < 0)
		goto fail;
	return a;
fail:
	ack_free(a);
	return NULL;
}

void
ack_free(struct ack *a)
{
	if (a == NULL)
		return;
	if (a->ev_sock)
		event_free(a->ev_sock);
	if (a->ev_tick)
		event_free(a->ev_tick);
	if (a->ev_flush)
		event_free(a->ev_flush);
	if (a->ev_peers)
		event_free(a->ev_peers);
	zpeers_close(&a->peers);
	buf_free(&a->outq);
	zsock_destroy(&a->sock);
	free(a->slots);
	free(a);
}

int
ack_submit(struct ack *a, const char *line, size_t len, void *ctx)
{
	uint32_t i = a->free_head, len32 = (uint32_t)len;
	size_t mark;
	struct slot *s;

	if (len > UINT32_MAX) {
		errno = EMSGSIZE;
		return -1;
	}
	if (i == NIL) {
		if (slots_grow(a) < 0)
			return -1;
		i = a->free_head;
	}
	s = &a->slots[i];
	mark = a->outq.len;
	buf_append(&a->outq, &i, 4);
	buf_append(&a->outq, &s->gen, 4);
	buf_append(&a->outq, &len32, 4);
	buf_append(&a->outq, line, len);
	if (a->outq.failed) {
		a->outq.len = mark;    /* out of memory: keep the queue as it was */
		a->outq.failed = 0;
		errno = ENOMEM;
		return -1;
	}
	a->outq_n++;
	a->free_head = s->next;
	s->ctx = ctx;
	s->deadline_ns = http_now_ns() + a->timeout_ns;
	s->next = NIL;
	s->prev = a->tail;
	if (a->tail != NIL)
		a->slots[a->tail].next = i;
	else
		a->head = i;
	a->tail = i;
	a->npending++;
	if (!a->flush_armed) {
		a->flush_armed = 1;
		event_active(a->ev_flush, EV_WRITE, 0);
	}
	return 0;
}

/*
 * A loop turn with hundreds of requests ready takes milliseconds, and the
 * writer would wait for all of it and then get one burst: its database
 * connections sat idle meanwhile. So between two connections' reads, once
 * FLUSH_EVERY envelopes wait they go at once (still one I/O thread wake-up
 * for many), the rest at the end of the turn. Never from inside a request's
 * processing: a failed send answers its request, which can take the
 * connection's next request in.
 */
void
ack_flush_some(struct ack *a)
{
	if (a->outq_n >= FLUSH_EVERY && !a->flushing)
		on_flush(-1, 0, a);
}

int
ack_writer_ready(const struct ack *a)
{
	return a->last_pong_ns != 0 && http_now_ns() - a->last_pong_ns < 3000000000u;
}

size_t
ack_pending(const struct ack *a)
{
	return a->npending;
}

void
ack_fail_all(struct ack *a)
{
	fail_pending(a, "shutting down");
}
