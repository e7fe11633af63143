#include "proxy.h"

#include <errno.h>
#include <string.h>
#include <zmq.h>

#include "clock.h"
#include "envelope.h"
#include "log.h"
#include "stage.h"

#define BURST 4096      /* messages forwarded per wake before looking around */

int
proxy_open(struct proxy *p, void *ctx, const struct endpoint *in,
    const struct endpoint *out, int hwm, const char **which)
{
	int one = 1, zero = 0, hb_ivl = 10000, hb_timeout = 30000;

	memset(p, 0, sizeof *p);
	*which = "in";
	p->front = zsock_new(ctx, ZMQ_XSUB, 0);
	if (p->front == NULL ||
	    zmq_setsockopt(p->front, ZMQ_RCVHWM, &hwm, sizeof hwm) < 0 ||
	    zpeers_watch(&p->pubs, ctx, p->front) < 0 ||
	    zsock_attach(p->front, in) < 0)
		return -1;
	*which = "out";
	p->back = zsock_new(ctx, ZMQ_XPUB, PROXY_LINGER_MS);
	if (p->back == NULL ||
	    zmq_setsockopt(p->back, ZMQ_SNDHWM, &hwm, sizeof hwm) < 0 ||
	    zmq_setsockopt(p->back, ZMQ_XPUB_NODROP, &zero, sizeof zero) < 0 ||
	    zmq_setsockopt(p->back, ZMQ_XPUB_VERBOSER, &one, sizeof one) < 0 ||
	    zmq_setsockopt(p->back, ZMQ_HEARTBEAT_IVL, &hb_ivl, sizeof hb_ivl) < 0 ||
	    zmq_setsockopt(p->back, ZMQ_HEARTBEAT_TIMEOUT, &hb_timeout, sizeof hb_timeout) < 0 ||
	    zpeers_watch(&p->subs, ctx, p->back) < 0 ||
	    zsock_attach(p->back, out) < 0)
		return -1;
	return 0;
}

enum fwd { FWD_ERROR = -1, FWD_NONE, FWD_SENT, FWD_DROPPED };

/*
 * Move one whole message from src to dst, adding its size to *bytes. A
 * failed send (dst) is counted and the rest of the message consumed, so the
 * stream stays aligned on message boundaries. first (when not NULL) gets
 * the first frame, cut to first_cap - 1 bytes and NUL-terminated, with its
 * length in *first_len.
 */
static enum fwd
forward(struct proxy *p, void *src, void *dst, unsigned long long *bytes,
    char *first, size_t first_cap, size_t *first_len)
{
	int nframe = 0, failed = 0, more = 1;

	while (more) {
		zmq_msg_t m;
		size_t size;

		if (zmq_msg_init(&m) < 0)
			return FWD_ERROR;
		if (zmq_msg_recv(&m, src, ZMQ_DONTWAIT) < 0) {
			int e = errno;
			(void)zmq_msg_close(&m);
			if (nframe == 0 && (e == EAGAIN || e == EINTR))
				return FWD_NONE;
			errno = e;
			return FWD_ERROR;
		}
		more = zmq_msg_more(&m);
		size = zmq_msg_size(&m);
		*bytes += size;
		if (nframe++ == 0 && first != NULL) {
			size_t n = size < first_cap - 1 ? size : first_cap - 1;
			memcpy(first, zmq_msg_data(&m), n);
			first[n] = '\0';
			*first_len = n;
		}
		if (nframe == 2 && first == NULL && log_enabled(LL_DEBUG)) {
			/* the envelope frame: name it, so grep <id> finds it here too */
			char id[UUID_LEN + 1], event_id[UUID_LEN + 1];

			envelope_ids(zmq_msg_data(&m), size, id, event_id);
			log_debug("envelope forwarded", " id=%s event_id=%s", id, event_id);
		}
		if (!failed && zmq_msg_send(&m, dst, (more ? ZMQ_SNDMORE : 0) | ZMQ_DONTWAIT) < 0) {
			failed = 1;
			p->send_errors++;
		}
		(void)zmq_msg_close(&m);
	}
	return failed ? FWD_DROPPED : FWD_SENT;
}

/* Messages from publishers to subscribers: up to max; how many, or -1. */
static long
pump_messages(struct proxy *p, long max)
{
	long i;

	for (i = 0; i < max; i++) {
		switch (forward(p, p->front, p->back, &p->bytes_in, NULL, 0, NULL)) {
		case FWD_ERROR: return -1;
		case FWD_NONE: return i;
		case FWD_SENT: p->msgs_in++; p->msgs_out++; break;
		case FWD_DROPPED: p->msgs_in++; break;
		}
	}
	return i;
}

/* Subscriptions from subscribers to publishers: [1|0][prefix]. */
static int
pump_subscriptions(struct proxy *p)
{
	char first[256];
	size_t len = 0;
	unsigned long long bytes = 0;
	enum fwd f;

	while ((f = forward(p, p->back, p->front, &bytes, first, sizeof first, &len)) > FWD_NONE) {
		const char *what = "subscriber message";

		if (len > 0 && first[0] == 1) {
			p->subscribes++;
			what = "subscribe";
		} else if (len > 0 && first[0] == 0) {
			p->unsubscribes++;
			what = "unsubscribe";
		}
		log_info(what, " prefix=%s subscribers=%d", log_q(len > 0 ? first + 1 : ""),
		    p->subs.count);
	}
	return f == FWD_ERROR ? -1 : 0;
}

void
proxy_log(struct proxy *p, const char *msg)
{
	(void)zpeers_update(&p->pubs);
	(void)zpeers_update(&p->subs);
	log_info(msg, " msgs_in=%llu msgs_out=%llu bytes_in=%llu send_errors=%llu"
	    " subscribes=%llu unsubscribes=%llu publishers=%d subscribers=%d",
	    p->msgs_in, p->msgs_out, p->bytes_in, p->send_errors, p->subscribes,
	    p->unsubscribes, p->pubs.count, p->subs.count);
}

int
proxy_run(struct proxy *p, long stats_ms)
{
	long long next_stats = clock_ms() + stats_ms;

	while (!stage_stop) {
		zmq_pollitem_t pi[4] = {
			{ p->front, 0, ZMQ_POLLIN, 0 },
			{ p->back, 0, ZMQ_POLLIN, 0 },
			{ zpeers_socket(&p->pubs), 0, ZMQ_POLLIN, 0 },
			{ zpeers_socket(&p->subs), 0, ZMQ_POLLIN, 0 },
		};
		long timeout = stats_ms > 0 ? clock_until(next_stats, 1000) : 1000;

		log_flush();
		if (zmq_poll(pi, 4, timeout) < 0 && errno != EINTR) {
			log_error("poll failed", " err=%s", log_q(zmq_strerror(errno)));
			return -1;
		}
		if (pi[2].revents)
			(void)zpeers_update(&p->pubs);
		if (pi[3].revents)
			(void)zpeers_update(&p->subs);
		/* Subscriptions first: they decide what the messages reach. */
		if (pi[1].revents && pump_subscriptions(p) < 0)
			log_warn("cannot read subscriptions", " err=%s", log_q(zmq_strerror(errno)));
		if (pi[0].revents && pump_messages(p, BURST) < 0)
			log_warn("cannot read messages", " err=%s", log_q(zmq_strerror(errno)));
		if (stage_reload) {
			stage_reload = 0;
			proxy_log(p, "reload requested: nothing to reload");
		}
		if (stats_ms > 0 && clock_ms() >= next_stats) {
			proxy_log(p, "stats");
			next_stats = clock_ms() + stats_ms;
		}
	}
	/* Drain: what the publishers delivered is passed on, for at most
	 * PROXY_DRAIN_MS (publishers that keep sending could keep us here);
	 * the XPUB's linger then hands it to subscribers. */
	for (long long end = clock_ms() + PROXY_DRAIN_MS; clock_ms() < end; ) {
		long n = pump_messages(p, BURST);
		if (n < 0)
			log_warn("cannot read messages", " err=%s", log_q(zmq_strerror(errno)));
		if (n < BURST)
			break;
	}
	return 0;
}

void
proxy_close(struct proxy *p)
{
	zpeers_close(&p->pubs);
	zpeers_close(&p->subs);
	zsock_destroy(&p->front);
	zsock_destroy(&p->back);
}
