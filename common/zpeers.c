#include "zpeers.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <zmq.h>

#include "clock.h"

int
zpeers_watch(struct zpeers *p, void *ctx, void *sock)
{
	char addr[64];
	int linger = 0, e;

	memset(p, 0, sizeof *p);
	/* One inproc name per watched socket: its address is unique. */
	snprintf(addr, sizeof addr, "inproc://zpeers-%p", sock);
	if (zmq_socket_monitor(sock, addr, ZMQ_EVENT_CONNECTED |
	    ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED) < 0)
		return -1;
	p->mon = zmq_socket(ctx, ZMQ_PAIR);
	if (p->mon == NULL)
		goto fail;
	if (zmq_setsockopt(p->mon, ZMQ_LINGER, &linger, sizeof linger) < 0 ||
	    zmq_connect(p->mon, addr) < 0)
		goto fail;
	p->sock = sock;
	return 0;
fail:
	e = errno;
	if (p->mon != NULL)
		(void)zmq_close(p->mon);
	p->mon = NULL;
	(void)zmq_socket_monitor(sock, NULL, 0);
	errno = e;
	return -1;
}

/* One event: [u16 event, u32 value] then [endpoint]. 1 read, 0 none, -1 error. */
static int
read_event(struct zpeers *p, uint16_t *event)
{
	zmq_msg_t m;
	int more;
	size_t mlen = sizeof more;
	int got = 0;

	for (;;) {
		if (zmq_msg_init(&m) < 0)
			return -1;
		if (zmq_msg_recv(&m, p->mon, ZMQ_DONTWAIT) < 0) {
			int e = errno;
			(void)zmq_msg_close(&m);
			if (e == EAGAIN && got == 0)
				return 0;
			if (e == EINTR && got == 0)
				return 0;
			errno = e;
			return -1;
		}
		if (got == 0 && zmq_msg_size(&m) >= 2)
			memcpy(event, zmq_msg_data(&m), 2);
		got++;
		if (zmq_getsockopt(p->mon, ZMQ_RCVMORE, &more, &mlen) < 0) {
			(void)zmq_msg_close(&m);
			return -1;
		}
		(void)zmq_msg_close(&m);
		if (!more)
			return 1;
	}
}

int
zpeers_update(struct zpeers *p)
{
	int before = p->count > 0, rc;
	uint16_t ev = 0;

	if (p->mon == NULL)
		return 0;
	while ((rc = read_event(p, &ev)) > 0) {
		if (ev == ZMQ_EVENT_CONNECTED || ev == ZMQ_EVENT_ACCEPTED) {
			p->connects++;
			if (p->count++ == 0)
				p->since = clock_ms();
		} else if (ev == ZMQ_EVENT_DISCONNECTED) {
			p->disconnects++;
			if (p->count > 0)
				p->count--;
		}
	}
	if (rc < 0)
		return -1;
	return before != (p->count > 0);
}

void *
zpeers_socket(const struct zpeers *p)
{
	return p->mon;
}

int
zpeers_settled(const struct zpeers *p, long long now, long settle_ms)
{
	return p->count > 0 && now - p->since >= settle_ms;
}

void
zpeers_close(struct zpeers *p)
{
	if (p->mon == NULL)
		return;
	(void)zmq_socket_monitor(p->sock, NULL, 0);
	(void)zmq_close(p->mon);
	p->mon = NULL;
	p->sock = NULL;
	p->count = 0;
}
