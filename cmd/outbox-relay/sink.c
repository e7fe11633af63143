#include "sink.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "clock.h"
#include "log.h"

int
sink_open_stdout(struct sink *s)
{
	memset(s, 0, sizeof *s);
	s->ep.kind = EP_STDIO;
	return lineout_init(&s->out, STDOUT_FILENO, 256 * 1024);
}

int
sink_open_pub(struct sink *s, void *ctx, const struct endpoint *ep, int hwm,
    int linger_ms, int gate_bind)
{
	int e;

	memset(s, 0, sizeof *s);
	s->ep = *ep;
	s->out.fd = -1;
	s->gated = ep->kind == EP_CONNECT || gate_bind;
	s->sock = zsock_new(ctx, ZMQ_PUB, linger_ms);
	if (s->sock == NULL)
		return -1;
	if (zmq_setsockopt(s->sock, ZMQ_SNDHWM, &hwm, sizeof hwm) < 0 ||
	    zpeers_watch(&s->peers, ctx, s->sock) < 0)
		goto fail;
	if (zsock_attach(s->sock, ep) < 0) {
		zpeers_close(&s->peers);
		goto fail;
	}
	return 0;
fail:
	e = errno;
	zsock_destroy(&s->sock);
	errno = e;
	return -1;
}

void *
sink_poll_socket(const struct sink *s)
{
	return s->sock ? zpeers_socket(&s->peers) : NULL;
}

int
sink_ready(struct sink *s)
{
	int ready;

	if (s->sock == NULL || !s->gated)
		return 1;
	if (zpeers_update(&s->peers) < 0)
		log_warn("cannot read connection events", " err=%s", log_q(zmq_strerror(errno)));
	ready = zpeers_settled(&s->peers, clock_ms(), SINK_SETTLE_MS);
	if (ready != s->was_ready) {
		if (ready)
			log_info("output connected", " out=%s peers=%d", endpoint_text(&s->ep),
			    s->peers.count);
		else
			log_warn("output not connected: holding rows until it is", " out=%s",
			    endpoint_text(&s->ep));
		s->was_ready = ready;
	}
	return ready;
}

long
sink_wait_hint(const struct sink *s, long cap)
{
	long left;

	if (s->sock == NULL || !s->gated || s->peers.count == 0)
		return cap;
	left = (long)(s->peers.since + SINK_SETTLE_MS - clock_ms());
	if (left < 0)
		return cap;
	return left + 1 < cap ? left + 1 : cap;
}

int
sink_wait_ready(struct sink *s, volatile sig_atomic_t *stop)
{
	while (!sink_ready(s)) {
		zmq_pollitem_t pi = { sink_poll_socket(s), 0, ZMQ_POLLIN, 0 };

		if (*stop)
			return -1;
		log_flush();
		if (zmq_poll(&pi, 1, sink_wait_hint(s, 200)) < 0 && errno != EINTR)
			return -1;
	}
	return 0;
}

int
sink_send(struct sink *s, const char *topic, size_t tlen, const char *line,
    size_t len)
{
	if (s->sock == NULL) {
		if (lineout_put(&s->out, line, len) < 0)
			return -1;
		s->sent++;
		return 0;
	}
	/* A PUB never blocks: at the high-water mark it drops the message. */
	while (zmq_send(s->sock, topic, tlen, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
		if (errno != EINTR)
			return -1;
	while (zmq_send(s->sock, line, len, ZMQ_DONTWAIT) < 0)
		if (errno != EINTR)
			return -1;
	s->sent++;
	return 0;
}

int
sink_flush(struct sink *s)
{
	return s->sock == NULL ? lineout_flush(&s->out) : 0;
}

void
sink_close(struct sink *s)
{
	if (s->sock != NULL) {
		zpeers_close(&s->peers);
		zsock_destroy(&s->sock);
	} else {
		lineout_free(&s->out);
	}
}
